//! MaxMind DB readers: city, ASN and anonymous-IP lookups for a client address.

use std::net::IpAddr;

use maxminddb::{Reader, geoip2};
use serde::Serialize;

/// Why a MaxMind database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{db} database: {reason}")]
pub struct GeoError {
    pub db: &'static str,
    pub reason: String,
}

/// What the databases say about one address; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GeoInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
    #[serde(skip_serializing_if = "Anonymity::is_clean")]
    pub anonymous: Anonymity,
}

/// The anonymous-IP database's flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Anonymity {
    pub anonymous: bool,
    pub vpn: bool,
    pub hosting: bool,
    pub public_proxy: bool,
    pub tor_exit: bool,
    pub residential_proxy: bool,
}

impl Anonymity {
    /// True when no flag is set.
    pub fn is_clean(&self) -> bool {
        *self == Anonymity::default()
    }
}

/// The loaded databases; any of them may be absent.
#[derive(Default)]
pub struct Geo {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
    anonymous: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("city", &self.city.is_some())
            .field("asn", &self.asn.is_some())
            .field("anonymous", &self.anonymous.is_some())
            .finish()
    }
}

fn open(db: &'static str, bytes: Option<Vec<u8>>) -> Result<Option<Reader<Vec<u8>>>, GeoError> {
    bytes
        .map(|b| {
            Reader::from_source(b).map_err(|e| GeoError {
                db,
                reason: e.to_string(),
            })
        })
        .transpose()
}

impl Geo {
    /// Opens the databases from their bytes (read from files, or embedded in the binary for the demo).
    pub fn from_bytes(
        city: Option<Vec<u8>>,
        asn: Option<Vec<u8>>,
        anonymous: Option<Vec<u8>>,
    ) -> Result<Geo, GeoError> {
        Ok(Geo {
            city: open("city", city)?,
            asn: open("asn", asn)?,
            anonymous: open("anonymous_ip", anonymous)?,
        })
    }

    /// Whether a city or country database is loaded.
    pub fn has_country(&self) -> bool {
        self.city.is_some()
    }

    /// Whether an ASN database is loaded.
    pub fn has_asn(&self) -> bool {
        self.asn.is_some()
    }

    /// True when no database is loaded.
    pub fn is_empty(&self) -> bool {
        self.city.is_none() && self.asn.is_none() && self.anonymous.is_none()
    }

    /// Looks one address up in every loaded database; lookup errors read as "unknown".
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let mut info = GeoInfo::default();
        if let Some(city) = self.city.as_ref().and_then(|r| decode::<geoip2::City>(r, ip)) {
            info.country = city.country.iso_code.map(str::to_owned);
            info.city = city.city.names.english.map(str::to_owned);
            info.latitude = city.location.latitude;
            info.longitude = city.location.longitude;
        }
        if let Some(asn) = self.asn.as_ref().and_then(|r| decode::<geoip2::Asn>(r, ip)) {
            info.asn = asn.autonomous_system_number;
            info.as_org = asn.autonomous_system_organization.map(str::to_owned);
        }
        if let Some(a) = self
            .anonymous
            .as_ref()
            .and_then(|r| decode::<geoip2::AnonymousIp>(r, ip))
        {
            info.anonymous = Anonymity {
                anonymous: a.is_anonymous.unwrap_or(false),
                vpn: a.is_anonymous_vpn.unwrap_or(false),
                hosting: a.is_hosting_provider.unwrap_or(false),
                public_proxy: a.is_public_proxy.unwrap_or(false),
                tor_exit: a.is_tor_exit_node.unwrap_or(false),
                residential_proxy: a.is_residential_proxy.unwrap_or(false),
            };
        }
        info
    }
}

fn decode<'a, T: serde::Deserialize<'a>>(reader: &'a Reader<Vec<u8>>, ip: IpAddr) -> Option<T> {
    reader.lookup(ip).ok()?.decode::<T>().ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_geo() -> Geo {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/geoip/");
        let read = |f: &str| Some(std::fs::read(format!("{dir}{f}")).unwrap());
        Geo::from_bytes(
            read("GeoIP2-City-Test.mmdb"),
            read("GeoLite2-ASN-Test.mmdb"),
            read("GeoIP2-Anonymous-IP-Test.mmdb"),
        )
        .unwrap()
    }

    #[test]
    fn looks_up_the_test_places() {
        let geo = test_geo();
        let boxford = geo.lookup("2.125.160.216".parse().unwrap());
        assert_eq!(boxford.country.as_deref(), Some("GB"));
        assert_eq!(boxford.city.as_deref(), Some("Boxford"));
        assert!(boxford.anonymous.is_clean());
        let milton = geo.lookup("216.160.83.56".parse().unwrap());
        assert_eq!(
            (milton.country.as_deref(), milton.city.as_deref()),
            (Some("US"), Some("Milton"))
        );
        assert!(milton.latitude.is_some() && milton.asn.is_some());
        let london = geo.lookup("81.2.69.142".parse().unwrap());
        assert!(
            london.anonymous.anonymous,
            "London's test range is flagged anonymous"
        );
        assert_eq!(geo.lookup("127.0.0.1".parse().unwrap()), GeoInfo::default());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let err = Geo::from_bytes(Some(b"not a database".to_vec()), None, None).unwrap_err();
        assert_eq!(err.db, "city");
    }
}
