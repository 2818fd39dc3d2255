//! A user's sign-in history: known devices, countries, cities and networks, and the last successful sign-in.

use serde::{Deserialize, Serialize};

/// One device a user signed in from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownDevice {
    /// The device cookie's id, or `fp:<fingerprint>`.
    pub id: String,
    pub last_seen_ms: u64,
    /// Reported "not me" (feedback `invalid`): sign-ins from it score high.
    #[serde(default)]
    pub compromised: bool,
}

/// Where and when the last successful sign-in happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastSignIn {
    pub time_ms: u64,
    pub latitude: f64,
    pub longitude: f64,
}

/// The durable per-user record (`rec/user/<username>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserHistory {
    #[serde(default)]
    pub devices: Vec<KnownDevice>,
    /// Most recently seen last.
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub cities: Vec<String>,
    #[serde(default)]
    pub asns: Vec<u32>,
    pub last: Option<LastSignIn>,
    #[serde(default)]
    pub successes: u64,
    /// Device cookies given out after a successful sign-in and not yet seen back, newest last. Kept apart
    /// from `devices` so that clients that never keep cookies (scripts, SDKs) cannot push the user's real
    /// devices out: a cookie joins `devices` when it comes back with a successful sign-in.
    #[serde(default)]
    pub issued: Vec<String>,
}

/// Issued cookies kept per user until they come back.
pub const MAX_ISSUED: usize = 5;

/// A place a sign-in came from.
#[derive(Debug, Clone, Default)]
pub struct Place<'a> {
    pub country: Option<&'a str>,
    pub city: Option<&'a str>,
    pub asn: Option<u32>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

impl UserHistory {
    /// Whether the user has signed in successfully before (novelty means nothing otherwise).
    pub fn has_succeeded(&self) -> bool {
        self.successes > 0 || !self.devices.is_empty()
    }

    /// Whether the device id is known (or its cookie was given out after a successful sign-in) and not
    /// reported compromised.
    pub fn knows_device(&self, id: &str) -> bool {
        self.devices.iter().any(|d| d.id == id && !d.compromised) || self.issued.iter().any(|i| i == id)
    }

    /// Notes a device cookie given out after a successful sign-in, keeping the [`MAX_ISSUED`] newest.
    pub fn note_issued(&mut self, id: &str) {
        self.issued.retain(|i| i != id);
        self.issued.push(id.to_string());
        if self.issued.len() > MAX_ISSUED {
            let extra = self.issued.len() - MAX_ISSUED;
            self.issued.drain(..extra);
        }
    }

    /// Whether the device was reported as not the user's.
    pub fn device_compromised(&self, id: &str) -> bool {
        self.devices.iter().any(|d| d.id == id && d.compromised)
    }

    pub fn knows_country(&self, c: &str) -> bool {
        self.countries.iter().any(|x| x == c)
    }

    pub fn knows_city(&self, c: &str) -> bool {
        self.cities.iter().any(|x| x == c)
    }

    pub fn knows_asn(&self, a: u32) -> bool {
        self.asns.contains(&a)
    }

    /// Records a device as known (and not compromised), keeping at most `cap` devices.
    pub fn trust_device(&mut self, id: &str, now_ms: u64, cap: usize) {
        self.issued.retain(|i| i != id);
        match self.devices.iter_mut().find(|d| d.id == id) {
            Some(d) => {
                d.last_seen_ms = now_ms;
                d.compromised = false;
            }
            None => self.devices.push(KnownDevice {
                id: id.to_string(),
                last_seen_ms: now_ms,
                compromised: false,
            }),
        }
        if self.devices.len() > cap {
            self.devices.sort_by_key(|d| std::cmp::Reverse(d.last_seen_ms));
            self.devices.truncate(cap);
        }
    }

    /// Marks a device as not the user's; it stays listed so that sign-ins from it score high.
    pub fn distrust_device(&mut self, id: &str, now_ms: u64, cap: usize) {
        self.trust_device(id, now_ms, cap);
        if let Some(d) = self.devices.iter_mut().find(|d| d.id == id) {
            d.compromised = true;
        }
    }

    /// Records a place as known, keeping the `cap` most recent of each kind.
    pub fn trust_place(&mut self, place: &Place<'_>, cap: usize) {
        fn bump<T: PartialEq + Clone>(list: &mut Vec<T>, v: &T, cap: usize) {
            list.retain(|x| x != v);
            list.push(v.clone());
            if list.len() > cap {
                let extra = list.len() - cap;
                list.drain(..extra);
            }
        }
        /// As `bump`, reusing the listed string when the text is known (no copy made to compare with).
        fn bump_str(list: &mut Vec<String>, v: &str, cap: usize) {
            let owned = match list.iter().position(|x| x == v) {
                Some(i) => {
                    let known = list.remove(i);
                    list.retain(|x| x != v);
                    known
                }
                None => v.to_string(),
            };
            list.push(owned);
            if list.len() > cap {
                let extra = list.len() - cap;
                list.drain(..extra);
            }
        }
        if let Some(c) = place.country {
            bump_str(&mut self.countries, c, cap);
        }
        if let Some(c) = place.city {
            bump_str(&mut self.cities, c, cap);
        }
        if let Some(a) = place.asn {
            bump(&mut self.asns, &a, cap);
        }
    }

    /// Records a successful, allowed sign-in: device, place, and the last time and position.
    pub fn record_success(&mut self, devices: &[&str], place: &Place<'_>, now_ms: u64, cap: usize) {
        for d in devices {
            self.trust_device(d, now_ms, cap);
        }
        self.trust_place(place, cap);
        if let (Some(latitude), Some(longitude)) = (place.latitude, place.longitude) {
            self.last = Some(LastSignIn {
                time_ms: now_ms,
                latitude,
                longitude,
            });
        }
        self.successes = self.successes.saturating_add(1);
    }
}

/// Great-circle distance in kilometres (haversine, mean Earth radius).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const R: f64 = 6371.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxford_to_milton_is_about_7700_km() {
        // The MaxMind test databases' Boxford, GB and Milton, US.
        let d = distance_km(51.75, -1.25, 47.2513, -122.3149);
        assert!((7600.0..7800.0).contains(&d), "{d}");
        assert!(distance_km(10.0, 10.0, 10.0, 10.0) < 1e-9);
    }

    #[test]
    fn history_caps_and_trust() {
        let mut h = UserHistory::default();
        assert!(!h.has_succeeded());
        for i in 0..5u64 {
            h.trust_device(&format!("d{i}"), i, 3);
        }
        assert_eq!(h.devices.len(), 3);
        assert!(h.knows_device("d4") && !h.knows_device("d0"));
        h.distrust_device("d4", 10, 3);
        assert!(!h.knows_device("d4") && h.device_compromised("d4"));
        h.trust_device("d4", 11, 3);
        assert!(h.knows_device("d4"));
        let p = |c: &'static str| Place {
            country: Some(c),
            ..Default::default()
        };
        for c in ["GB", "US", "FR", "GB", "DE"] {
            h.trust_place(&p(c), 3);
        }
        assert_eq!(h.countries, ["FR", "GB", "DE"]);
        // A stored list with a repeat (written by hand, or by an older version) keeps one, moved last.
        h.countries = vec!["GB".into(), "FR".into(), "GB".into(), "DE".into()];
        h.trust_place(&p("GB"), 3);
        assert_eq!(h.countries, ["FR", "DE", "GB"]);
        h.trust_place(&p("US"), 2);
        assert_eq!(h.countries, ["GB", "US"]);
    }

    #[test]
    fn cookies_that_never_come_back_do_not_push_real_devices_out() {
        let mut h = UserHistory::default();
        h.trust_device("laptop", 1, 3);
        for i in 0..50 {
            h.note_issued(&format!("script-{i}"));
        }
        assert!(h.knows_device("laptop"));
        assert_eq!(h.issued.len(), MAX_ISSUED);
        assert!(h.knows_device("script-49") && !h.knows_device("script-0"));
        // A cookie that comes back with a success becomes a device.
        h.trust_device("script-49", 2, 3);
        assert!(!h.issued.contains(&"script-49".to_string()));
        assert!(h.devices.iter().any(|d| d.id == "script-49"));
    }
}
