//! Phone numbers: E.164 normalization, country and number type from the `phonenumber` crate's metadata.
//!
//! The crate's own parser and classifier match through one process-wide regex cache of 100 entries behind
//! a mutex; with numbers from every country (which an attacker chooses) that cache thrashes and one number
//! costs ~2 ms of CPU under the lock. So the digits are normalized here (no regex), and the crate's
//! metadata patterns (country codes, national prefixes, leading digits, the per-type number patterns) are
//! compiled once per region on first use into regexes that are never evicted: at most the ~250 regions'
//! patterns, a few tens of MB, and a lookup of a few hundred nanoseconds.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};

use phonenumber::metadata::DATABASE;
use phonenumber::metadata::Metadata;
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::Deserialize;

/// Longest input accepted as a phone number, in bytes; anything longer is malformed.
const MAX_INPUT: usize = 32;
/// Longest international number (ITU-T E.164): 15 digits with the country code.
const MAX_DIGITS: usize = 15;

/// Why a text is not a phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Characters other than digits, `+`, spaces, `-`, `.`, `(` and `)`, or too long.
    #[error("not a phone number")]
    Malformed,
    /// Too few or too many digits for an international number.
    #[error("wrong number of digits")]
    Length,
    /// No country code is assigned to the leading digits.
    #[error("unknown country code")]
    UnknownCountryCode,
    /// A national number and no default region to read it in.
    #[error("no country code and no default region")]
    NoRegion,
}

/// The kind of line a number belongs to, per libphonenumber's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NumberType {
    FixedLine,
    Mobile,
    /// Where the numbering plan cannot tell (the United States, Canada, ...).
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    PersonalNumber,
    Voip,
    Pager,
    /// Universal access ("company") numbers.
    Uan,
    Voicemail,
}

impl NumberType {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberType::FixedLine => "fixed_line",
            NumberType::Mobile => "mobile",
            NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::PremiumRate => "premium_rate",
            NumberType::SharedCost => "shared_cost",
            NumberType::PersonalNumber => "personal_number",
            NumberType::Voip => "voip",
            NumberType::Pager => "pager",
            NumberType::Uan => "uan",
            NumberType::Voicemail => "voicemail",
        }
    }
}

/// A normalized phone number: never logged or stored in clear (`Debug` shows the masked form).
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    /// E.164 digits, country code first, without the `+`.
    digits: String,
    /// How many of `digits` are the country code (1 to 3).
    cc_len: usize,
    /// The region (`GB`), `001` for non-geographic numbers (+800, +882...), `None` when the number
    /// matches no region's patterns.
    region: Option<&'static str>,
    kind: Option<NumberType>,
}

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

impl PhoneNumber {
    /// Reads a number written in international form (`+44 7911 123456`, `0044...`) or, with a default
    /// region, in national form (`07911 123456`), and classifies it.
    pub fn parse(raw: &str, default_region: Option<&Region>) -> Result<PhoneNumber, NumberError> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_INPUT {
            return Err(NumberError::Malformed);
        }
        let mut digits = String::with_capacity(MAX_DIGITS);
        for (i, c) in raw.char_indices() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(NumberError::Malformed),
            }
        }
        let international = if raw.starts_with('+') {
            Some(digits.as_str())
        } else {
            digits.strip_prefix("00")
        };
        let digits = match (international, default_region) {
            (Some(d), _) => d.to_owned(),
            (None, Some(region)) => region.to_international(&digits),
            (None, None) => return Err(NumberError::NoRegion),
        };
        if !(4..=MAX_DIGITS).contains(&digits.len()) {
            return Err(NumberError::Length);
        }
        if digits.starts_with('0') {
            return Err(NumberError::UnknownCountryCode);
        }
        let cc_len = (1..=3)
            .find(|&n| {
                digits[..n]
                    .parse::<u16>()
                    .is_ok_and(|cc| INDEX.by_code.contains_key(&cc))
            })
            .ok_or(NumberError::UnknownCountryCode)?;
        let (region, kind) = classify(&digits, cc_len);
        Ok(PhoneNumber {
            digits,
            cc_len,
            region,
            kind,
        })
    }

    /// Whether the number matches its country's numbering plan.
    pub fn is_valid(&self) -> bool {
        self.kind.is_some()
    }

    /// The region (`GB`, `001` for non-geographic numbers); `None` for an invalid number.
    pub fn region(&self) -> Option<&'static str> {
        self.region
    }

    /// The number's type; `None` for an invalid number.
    pub fn kind(&self) -> Option<NumberType> {
        self.kind
    }

    /// The E.164 digits without the `+`: for store keys (hashed) and prefix matching only.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The country calling code (`44`).
    pub fn country_code(&self) -> &str {
        &self.digits[..self.cc_len]
    }

    /// The number as a count: for range arithmetic.
    pub fn value(&self) -> u64 {
        // At most 15 ASCII digits: always fits.
        self.digits.parse().unwrap_or(0)
    }

    /// The country code and the last two digits: `+44 ******** 23`.
    pub fn masked(&self) -> String {
        let national = &self.digits[self.cc_len..];
        let keep = national.len().min(2);
        let stars = national.len() - keep;
        format!(
            "+{} {} {}",
            self.country_code(),
            "*".repeat(stars),
            &national[stars..]
        )
    }

    /// The number's range: the E.164 form without its last `trailing` digits (`+44791112` for
    /// `trailing = 4`), never shorter than the country code and one digit.
    pub fn prefix(&self, trailing: usize) -> String {
        let keep = self
            .digits
            .len()
            .saturating_sub(trailing)
            .max((self.cc_len + 1).min(self.digits.len()));
        format!("+{}", &self.digits[..keep])
    }

    /// The last `n` digits (fewer when the number is shorter).
    pub fn last_digits(&self, n: usize) -> &str {
        &self.digits[self.digits.len().saturating_sub(n)..]
    }
}

// === Region (for national numbers) ===

/// A region that national numbers are read in (a profile's `default_region`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    country_code: u16,
    national_prefix: Option<String>,
}

impl Region {
    /// The region with this id (`GB`, `US`), if the metadata knows it.
    pub fn new(id: &str) -> Option<Region> {
        let meta = DATABASE.by_id(id).filter(|_| id != "001")?;
        Some(Region {
            country_code: meta.country_code(),
            national_prefix: meta.national_prefix().map(str::to_owned),
        })
    }

    /// National digits in international form: drops the national (trunk) prefix when the rest still is a
    /// number of the region (`07911123456` → `447911123456`), as dialling does.
    fn to_international(&self, national: &str) -> String {
        let cc = self.country_code.to_string();
        let stripped = self
            .national_prefix
            .as_deref()
            .and_then(|p| national.strip_prefix(p))
            .filter(|rest| {
                let candidate = format!("{cc}{rest}");
                classify(&candidate, cc.len()).1.is_some()
            });
        format!("{cc}{}", stripped.unwrap_or(national))
    }
}

// === The compiled metadata ===

/// The metadata of every country code, with each region's patterns compiled on first use.
struct Index {
    by_code: HashMap<u16, Vec<RegionEntry>>,
}

struct RegionEntry {
    meta: &'static Metadata,
    /// The region's patterns, compiled when a number first needs them; `None` if a pattern does not
    /// compile (the region's numbers then count as invalid).
    compiled: OnceLock<Option<Arc<Patterns>>>,
}

struct Patterns {
    leading_digits: Option<Regex>,
    general: Desc,
    /// In libphonenumber's order of precedence.
    special: Vec<(NumberType, Desc)>,
    fixed_line: Option<Desc>,
    mobile: Option<Desc>,
    /// Fixed-line and mobile numbers share one pattern (they cannot be told apart).
    same_fixed_mobile: bool,
}

struct Desc {
    re: Regex,
    lengths: Vec<u16>,
}

impl Desc {
    fn compile(d: &phonenumber::metadata::Descriptor) -> Result<Desc, regex::Error> {
        Ok(Desc {
            re: anchored(d.national_number().as_str(), true)?,
            lengths: d.possible_length().to_vec(),
        })
    }

    fn is_match(&self, national: &str) -> bool {
        let len = u16::try_from(national.len()).unwrap_or(u16::MAX);
        (self.lengths.is_empty() || self.lengths.contains(&len)) && self.re.is_match(national)
    }
}

/// Metadata patterns are digit classes laid out over several lines (whitespace is not part of them);
/// without Unicode they compile ~5× faster and smaller.
fn anchored(pattern: &str, whole: bool) -> Result<Regex, regex::Error> {
    let p = if whole {
        format!("^(?:{pattern})$")
    } else {
        format!("^(?:{pattern})")
    };
    RegexBuilder::new(&p)
        .ignore_whitespace(true)
        .unicode(false)
        .size_limit(1 << 22)
        .build()
}

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let mut by_code: HashMap<u16, Vec<RegionEntry>> = HashMap::new();
    for code in 1..1000u16 {
        let Some(metas) = DATABASE.by_code(&code) else {
            continue;
        };
        // The database's region list is in libphonenumber's order (the main country first).
        let order = DATABASE.region(&code).unwrap_or_default();
        let mut metas: Vec<&'static Metadata> = metas;
        metas.sort_by_key(|m| order.iter().position(|r| *r == m.id()).unwrap_or(usize::MAX));
        by_code.insert(
            code,
            metas
                .into_iter()
                .map(|meta| RegionEntry {
                    meta,
                    compiled: OnceLock::new(),
                })
                .collect(),
        );
    }
    Index { by_code }
});

/// Loads the metadata now (~0.1 s), so the first number on the request path does not pay for it.
pub fn warm_up() {
    LazyLock::force(&INDEX);
}

impl RegionEntry {
    fn patterns(&self) -> Option<&Patterns> {
        self.compiled
            .get_or_init(|| match Patterns::compile(self.meta) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::warn!(region = self.meta.id(), error = %e, "sms: phone metadata does not compile");
                    None
                }
            })
            .as_deref()
    }
}

impl Patterns {
    fn compile(meta: &Metadata) -> Result<Patterns, regex::Error> {
        let d = meta.descriptors();
        let opt = |x: Option<&phonenumber::metadata::Descriptor>| x.map(Desc::compile).transpose();
        let mut special = Vec::new();
        for (kind, desc) in [
            (NumberType::PremiumRate, d.premium_rate()),
            (NumberType::TollFree, d.toll_free()),
            (NumberType::SharedCost, d.shared_cost()),
            (NumberType::Voip, d.voip()),
            (NumberType::PersonalNumber, d.personal_number()),
            (NumberType::Pager, d.pager()),
            (NumberType::Uan, d.uan()),
            (NumberType::Voicemail, d.voicemail()),
        ] {
            if let Some(desc) = opt(desc)? {
                special.push((kind, desc));
            }
        }
        let same_fixed_mobile = match (d.fixed_line(), d.mobile()) {
            (Some(f), Some(m)) => f.national_number().as_str() == m.national_number().as_str(),
            _ => false,
        };
        Ok(Patterns {
            leading_digits: meta
                .leading_digits()
                .map(|r| anchored(r.as_str(), false))
                .transpose()?,
            general: Desc::compile(d.general())?,
            special,
            fixed_line: opt(d.fixed_line())?,
            mobile: opt(d.mobile())?,
            same_fixed_mobile,
        })
    }

    /// libphonenumber's `getNumberType`.
    fn kind(&self, national: &str) -> Option<NumberType> {
        if !self.general.is_match(national) {
            return None;
        }
        if let Some((kind, _)) = self.special.iter().find(|(_, d)| d.is_match(national)) {
            return Some(*kind);
        }
        let mobile = self.mobile.as_ref().is_some_and(|d| d.is_match(national));
        if self.fixed_line.as_ref().is_some_and(|d| d.is_match(national)) {
            return Some(if self.same_fixed_mobile || mobile {
                NumberType::FixedLineOrMobile
            } else {
                NumberType::FixedLine
            });
        }
        mobile.then_some(NumberType::Mobile)
    }
}

/// The region and type of E.164 `digits` whose first `cc_len` digits are the country code, as
/// libphonenumber's `getRegionCodeForNumber` and `getNumberType` find them.
fn classify(digits: &str, cc_len: usize) -> (Option<&'static str>, Option<NumberType>) {
    let Some(entries) = digits[..cc_len]
        .parse::<u16>()
        .ok()
        .and_then(|cc| INDEX.by_code.get(&cc))
    else {
        return (None, None);
    };
    let national = &digits[cc_len..];
    let kind_in = |e: &RegionEntry| e.patterns().and_then(|p| p.kind(national));
    if let [only] = entries.as_slice() {
        let kind = kind_in(only);
        return (kind.map(|_| only.meta.id()), kind);
    }
    for e in entries {
        let Some(p) = e.patterns() else { continue };
        let leading = p.leading_digits.as_ref().map(|re| re.is_match(national));
        match leading {
            Some(true) => {
                let kind = p.kind(national);
                return (kind.map(|_| e.meta.id()), kind);
            }
            Some(false) => {}
            None => {
                if let Some(kind) = p.kind(national) {
                    return (Some(e.meta.id()), Some(kind));
                }
            }
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s, None).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn international_numbers_get_their_region_and_type() {
        for (raw, region, kind) in [
            ("+447911123456", "GG", NumberType::Mobile),
            ("+44 7400 123456", "GB", NumberType::Mobile),
            ("+442079460123", "GB", NumberType::FixedLine),
            ("+44 909 879 0000", "GB", NumberType::PremiumRate),
            ("+447012345678", "GB", NumberType::PersonalNumber),
            ("+1 (415) 555-0100", "US", NumberType::FixedLineOrMobile),
            ("+16475550123", "CA", NumberType::FixedLineOrMobile),
            ("0033 6 12 34 56 78", "FR", NumberType::Mobile),
            ("+4915112345678", "DE", NumberType::Mobile),
            ("+393123456789", "IT", NumberType::Mobile),
            ("+390236618300", "IT", NumberType::FixedLine),
            ("+881612345678", "001", NumberType::Mobile),
            ("+80812345678", "001", NumberType::SharedCost),
            ("+979123456789", "001", NumberType::PremiumRate),
        ] {
            let n = parse(raw);
            assert_eq!((n.region(), n.kind()), (Some(region), Some(kind)), "{raw}");
        }
        // Ofcom's drama range and numbers of the wrong length are not valid numbers.
        for raw in ["+447700900123", "+3712123456", "+88234123456"] {
            assert!(!parse(raw).is_valid(), "{raw}");
        }
    }

    #[test]
    fn national_numbers_need_a_region() {
        let gb = Region::new("GB").unwrap();
        let n = PhoneNumber::parse("07400 123456", Some(&gb)).unwrap();
        assert_eq!((n.digits(), n.region()), ("447400123456", Some("GB")));
        let it = Region::new("IT").unwrap();
        let n = PhoneNumber::parse("02 3661 8300", Some(&it)).unwrap();
        assert_eq!(n.digits(), "390236618300", "Italy keeps its leading 0");
        assert_eq!(
            PhoneNumber::parse("07400 123456", None),
            Err(NumberError::NoRegion)
        );
        assert!(Region::new("XX").is_none() && Region::new("001").is_none());
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for raw in [
            "",
            "+",
            "++44",
            "+44+",
            "abc",
            "+44 7911 123456 ext 2",
            "+4479111234567890123",
            "+999123456",
            "+0123456",
            "tel:+447911123456",
            "+44\u{0660}7911",
            "1234567890123456789012345678901234567890",
        ] {
            assert!(PhoneNumber::parse(raw, None).is_err(), "{raw:?}");
        }
        // Every short mix of the accepted characters.
        let alphabet = ['0', '1', '4', '8', '9', '+', ' ', '(', ')'];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 18) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((x >> (i * 3)) % alphabet.len() as u64) as usize])
                .collect();
            let _ = PhoneNumber::parse(&s, Region::new("GB").as_ref());
        }
    }

    #[test]
    fn masks_prefixes_and_digits() {
        let n = parse("+44 7911 123456");
        assert_eq!(n.masked(), "+44 ******** 56");
        assert_eq!(format!("{n:?}"), "+44 ******** 56");
        assert_eq!(n.prefix(4), "+44791112");
        assert_eq!(
            n.prefix(20),
            "+447",
            "never shorter than the country code and a digit"
        );
        assert_eq!(n.last_digits(4), "3456");
        assert_eq!(n.value(), 447_911_123_456);
        assert_eq!(n.country_code(), "44");
    }

    /// As libphonenumber's own tests have it: every example number in the metadata is a valid number of
    /// its type (fixed-line and mobile examples may be either where the plan cannot tell them apart).
    #[test]
    fn every_example_number_has_its_type() {
        let mut checked = 0;
        for entries in INDEX.by_code.values() {
            for e in entries {
                let d = e.meta.descriptors();
                let cc = e.meta.country_code();
                let p = e.patterns().expect("metadata compiles");
                for (kind, desc) in [
                    (NumberType::Mobile, d.mobile()),
                    (NumberType::FixedLine, d.fixed_line()),
                    (NumberType::PremiumRate, d.premium_rate()),
                    (NumberType::TollFree, d.toll_free()),
                    (NumberType::SharedCost, d.shared_cost()),
                    (NumberType::Voip, d.voip()),
                ] {
                    let Some(example) = desc.and_then(|x| x.example()) else {
                        continue;
                    };
                    let got = p.kind(example);
                    let ok = got == Some(kind)
                        || (matches!(kind, NumberType::Mobile | NumberType::FixedLine)
                            && got == Some(NumberType::FixedLineOrMobile));
                    assert!(ok, "+{cc} {example} in {}: {got:?}, not {kind:?}", e.meta.id());
                    let n = parse(&format!("+{cc}{example}"));
                    assert!(n.is_valid(), "+{cc}{example}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 700, "{checked}");
    }
}
