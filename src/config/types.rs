//! Value types that YAML configs share: durations, rates, sizes, regexes and CIDRs, each parsed with a clear error.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};

/// Why a scalar value did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

/// Implements `Deserialize` from a string through `FromStr`, and a string JSON Schema with a pattern.
macro_rules! string_value {
    ($ty:ty, $name:literal, $expecting:literal, $pattern:literal, $desc:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = scalar_text(d, $expecting)?;
                s.parse().map_err(|e: ValueError| de::Error::custom(e.0))
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern, "description": $desc })
            }
        }
    };
}

/// Reads a YAML scalar written as a string or a number (`size: 1024`) as text.
fn scalar_text<'de, D: Deserializer<'de>>(d: D, expected: &'static str) -> Result<String, D::Error> {
    struct Scalar(&'static str);
    impl de::Visitor<'_> for Scalar {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Scalar(expected))
}

// === Duration ===

/// A duration written as `500ms`, `10s`, `5m`, `1h` or `1d` (units may be combined: `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(ValueError(
                "expected a duration such as 500ms, 10s, 5m or 1h, found an empty value".into(),
            ));
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError(format!(
                "expected a duration with a unit (500ms, 10s, 5m, 1h), found the bare number `{t}`"
            )));
        }
        humantime::parse_duration(t).map(Duration).map_err(|e| {
            ValueError(format!(
                "expected a duration such as 500ms, 10s, 5m or 1h, found `{t}` ({e})"
            ))
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

string_value!(
    Duration,
    "Duration",
    "a duration such as 500ms, 10s, 5m or 1h",
    "^\\s*([0-9]+\\s*(ns|us|ms|s|m|h|d)\\s*)+$",
    "A duration: 500ms, 10s, 5m, 1h, 1d or a combination such as 1h30m."
);

// === Rate ===

/// A rate written as `COUNT/WINDOW`: `10/m`, `3/10m`, `100/s`, `1000/1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u32,
    pub per: std::time::Duration,
}

impl FromStr for Rate {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        let expected = || format!("expected a rate such as 10/m, 3/10m or 100/s, found `{t}`");
        let (count, window) = t.split_once('/').ok_or_else(|| ValueError(expected()))?;
        let count: u32 = count.trim().parse().map_err(|_| {
            ValueError(format!(
                "{}: the count `{}` is not a whole number",
                expected(),
                count.trim()
            ))
        })?;
        if count == 0 {
            return Err(ValueError(format!(
                "{}: the count must be at least 1",
                expected()
            )));
        }
        let window = window.trim();
        let per = match window {
            "s" | "sec" | "second" => std::time::Duration::from_secs(1),
            "m" | "min" | "minute" => std::time::Duration::from_secs(60),
            "h" | "hour" => std::time::Duration::from_secs(3600),
            "d" | "day" => std::time::Duration::from_secs(86_400),
            w => {
                Duration::from_str(w)
                    .map_err(|_| ValueError(format!("{}: the window `{w}` is not a duration", expected())))?
                    .0
            }
        };
        if per.is_zero() {
            return Err(ValueError(format!(
                "{}: the window must be longer than zero",
                expected()
            )));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

string_value!(
    Rate,
    "Rate",
    "a rate such as 10/m, 3/10m or 100/s",
    "^\\s*[0-9]+\\s*/\\s*([0-9]*\\s*(ms|s|m|h|d)|sec|second|min|minute|hour|day)\\s*$",
    "A rate COUNT/WINDOW: 10/m, 3/10m, 100/s, 1000/1h."
);

// === ByteSize ===

/// A size in bytes written as `1024`, `64KiB`, `1MiB` or `10MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        t.parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|_| {
                ValueError(format!(
                    "expected a size such as 1024, 64KiB or 10MiB, found `{t}`"
                ))
            })
    }
}

string_value!(
    ByteSize,
    "ByteSize",
    "a size such as 1024, 64KiB or 10MiB",
    "^\\s*[0-9]+(\\.[0-9]+)?\\s*([KMGT]i?B|B)?\\s*$",
    "A size in bytes: 1024, 64KiB, 1MiB, 10MB."
);

// === Pattern ===

/// A regular expression, compiled when the config loads so a bad pattern is reported at its position.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for Pattern {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        regex::RegexBuilder::new(s)
            .size_limit(1 << 20)
            .build()
            .map(Pattern)
            .map_err(|e| {
                ValueError(format!(
                    "invalid regular expression: {}",
                    one_line(&e.to_string())
                ))
            })
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e: ValueError| de::Error::custom(e.0))
    }
}

impl JsonSchema for Pattern {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Pattern")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "regex", "description": "A regular expression (Rust regex syntax)." })
    }
}

// === Cidr ===

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `2001:db8::/32`); a bare address means a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(pub ipnet::IpNet);

impl FromStr for Cidr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        if let Ok(net) = t.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        t.parse::<std::net::IpAddr>()
            .map(|ip| Cidr(ipnet::IpNet::from(ip)))
            .map_err(|_| {
                ValueError(format!(
                    "expected an IP address or CIDR such as 10.0.0.0/8 or 2001:db8::/32, found `{t}`"
                ))
            })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e: ValueError| de::Error::custom(e.0))
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Cidr")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "description": "An IP address or CIDR: 10.0.0.0/8, 192.0.2.7, 2001:db8::/32." })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            "500ms".parse::<Duration>().unwrap().0,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(
            "5m".parse::<Duration>().unwrap().0,
            std::time::Duration::from_secs(300)
        );
        assert_eq!(
            "1h30m".parse::<Duration>().unwrap().0,
            std::time::Duration::from_secs(5400)
        );
        let e = "10".parse::<Duration>().unwrap_err();
        assert!(e.0.contains("bare number"), "{e}");
        assert!("ten seconds".parse::<Duration>().is_err());
    }

    #[test]
    fn rates() {
        let r: Rate = "10/m".parse().unwrap();
        assert_eq!((r.count, r.per.as_secs()), (10, 60));
        let r: Rate = "3/10m".parse().unwrap();
        assert_eq!((r.count, r.per.as_secs()), (3, 600));
        let r: Rate = "100 / s".parse().unwrap();
        assert_eq!((r.count, r.per.as_secs()), (100, 1));
        for bad in ["10", "0/m", "x/m", "10/fortnight", "10/0s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn sizes_patterns_cidrs() {
        assert_eq!("64KiB".parse::<ByteSize>().unwrap().0, 65536);
        assert_eq!("1024".parse::<ByteSize>().unwrap().0, 1024);
        assert!("lots".parse::<ByteSize>().is_err());
        assert!(
            "(unclosed"
                .parse::<Pattern>()
                .unwrap_err()
                .0
                .contains("invalid regular expression")
        );
        assert_eq!("10.1.2.3/8".parse::<Cidr>().unwrap().0.to_string(), "10.0.0.0/8");
        assert_eq!("::1".parse::<Cidr>().unwrap().0.to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }
}
