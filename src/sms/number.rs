//! Phone numbers: E.164 normalization, country and number type from the `phonenumber` crate's metadata.
//!
//! The crate's own parser and classifier match through one process-wide regex cache of 100 entries behind
//! a mutex; with numbers from every country (which an attacker chooses) that cache thrashes and one number
//! costs ~2 ms of CPU under the lock. So the digits are normalized here (no regex), and the crate's
//! metadata patterns (country codes, national prefixes, leading digits, the per-type number patterns) are
//! compiled once per region on first use into regexes that are never evicted: at most the ~250 regions'
//! patterns, a few tens of MB, and a lookup of a few hundred nanoseconds.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};

use phonenumber::metadata::DATABASE;
use phonenumber::metadata::Metadata;
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::Deserialize;

/// Longest input accepted as a phone number once normalized, in bytes; anything longer is malformed.
const MAX_INPUT: usize = 32;
/// Longest text read at all, in bytes: room for fullwidth digits and format characters around a number.
const MAX_RAW_INPUT: usize = 128;
/// Longest international number (ITU-T E.164): 15 digits with the country code.
const MAX_DIGITS: usize = 15;

/// Why a text is not a phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Characters other than digits, `+`, spaces, dashes, `.`, `(` and `)` (once normalized), or too long.
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
    /// Reads a number written in international form (`+44 7911 123456`, `0044...`, `+44 (0)7911
    /// 123456`, `tel:+447911123456`) or, with a default region, in national form (`07911 123456`), and
    /// classifies it. The text is normalized first (NFKC, format characters dropped), so fullwidth
    /// digits and zero-width characters make no other number.
    pub fn parse(raw: &str, default_region: Option<&Region>) -> Result<PhoneNumber, NumberError> {
        let text = normalized(raw)?;
        let raw = text.trim();
        if raw.is_empty() || raw.len() > MAX_INPUT {
            return Err(NumberError::Malformed);
        }
        let bytes = raw.as_bytes();
        let mut digits = String::with_capacity(MAX_DIGITS);
        // Where a `(0)` stood: the digit it adds, which a trunk prefix after the country code drops.
        let mut trunk = None;
        for (i, &c) in bytes.iter().enumerate() {
            match c {
                b'0'..=b'9' => {
                    if c == b'0' && i > 0 && bytes[i - 1] == b'(' && bytes.get(i + 1) == Some(&b')') {
                        trunk = trunk.or(Some(digits.len()));
                    }
                    digits.push(char::from(c));
                }
                b'+' if i == 0 => {}
                // `/` separates the area code in German writing (`0151/23456789`), as libphonenumber reads it.
                b' ' | b'-' | b'.' | b'(' | b')' | b'/' => {}
                _ => return Err(NumberError::Malformed),
            }
        }
        let (international, offset) = if raw.starts_with('+') {
            (Some(digits.as_str()), 0)
        } else {
            (digits.strip_prefix("00"), 2)
        };
        let digits = match (international, default_region) {
            (Some(d), _) => without_trunk_zero(d, trunk.and_then(|t| t.checked_sub(offset))),
            (None, Some(region)) => region.to_international(&digits),
            (None, None) => return Err(NumberError::NoRegion),
        };
        if !(4..=MAX_DIGITS).contains(&digits.len()) {
            return Err(NumberError::Length);
        }
        if digits.starts_with('0') {
            return Err(NumberError::UnknownCountryCode);
        }
        let cc_len = country_code_len(&digits).ok_or(NumberError::UnknownCountryCode)?;
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

/// The number as people write and paste it, in the characters the parser reads: format characters
/// dropped (zero-width spaces and joiners, direction marks, a soft hyphen), compatibility forms folded
/// (NFKC: fullwidth `＋４４` is `+44`, a no-break space a space), Unicode dashes read as `-`, and a
/// `tel:` scheme (RFC 3966) removed. Other characters stay, for the parser to refuse.
fn normalized(raw: &str) -> Result<Cow<'_, str>, NumberError> {
    if raw.len() > MAX_RAW_INPUT {
        return Err(NumberError::Malformed);
    }
    let text = if raw.is_ascii() {
        Cow::Borrowed(raw)
    } else {
        let gc = icu_properties::CodePointMapData::<icu_properties::props::GeneralCategory>::new();
        let visible: String = raw
            .chars()
            .filter(|c| gc.get(*c) != icu_properties::props::GeneralCategory::Format)
            .collect();
        let folded = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(&visible);
        Cow::Owned(
            folded
                .chars()
                .map(|c| match c {
                    '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
                    c => c,
                })
                .collect(),
        )
    };
    let scheme = text
        .trim()
        .get(..4)
        .is_some_and(|s| s.eq_ignore_ascii_case("tel:"));
    Ok(match (scheme, text) {
        (false, text) => text,
        (true, Cow::Borrowed(b)) => Cow::Borrowed(&b.trim()[4..]),
        (true, Cow::Owned(o)) => Cow::Owned(o.trim()[4..].to_owned()),
    })
}

/// How many of the leading digits are a country calling code (1 to 3), if any are.
fn country_code_len(digits: &str) -> Option<usize> {
    (1..=3.min(digits.len())).find(|&n| {
        digits[..n]
            .parse::<u16>()
            .is_ok_and(|cc| INDEX.by_code.contains_key(&cc))
    })
}

/// International digits without the `0` of a `(0)` that follows the country code (`+44 (0)7911
/// 123456`: the trunk prefix that national dialling adds), unless only the digits with it are a number
/// (Italy's fixed lines keep their 0).
fn without_trunk_zero(digits: &str, trunk: Option<usize>) -> String {
    let Some(t) = trunk.filter(|&t| t < digits.len() && country_code_len(&digits[..t]) == Some(t)) else {
        return digits.to_owned();
    };
    let dropped = format!("{}{}", &digits[..t], &digits[t + 1..]);
    if classify(&dropped, t).1.is_none() && classify(digits, t).1.is_some() {
        return digits.to_owned();
    }
    dropped
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
            "tel:",
            "tel:+447911123456;ext=2",
            "tel:tel:+447911123456",
            "fax:+447911123456",
            "+44\u{0660}7911",
            "+44 7911 123456\u{200b}x",
            "\u{ff0b}\u{ff14}\u{ff14}\u{ff41}",
            "1234567890123456789012345678901234567890",
        ] {
            assert!(PhoneNumber::parse(raw, None).is_err(), "{raw:?}");
        }
        let padded = format!("{}+447911123456", "\u{200b}".repeat(40));
        assert_eq!(PhoneNumber::parse(&padded, None), Err(NumberError::Malformed));
        // Every short mix of the accepted characters.
        let alphabet = [
            '0', '1', '4', '8', '9', '+', ' ', '(', ')', '\u{ff10}', '\u{200b}', 't', ':',
        ];
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
    fn what_people_type_and_paste_is_the_same_number() {
        for raw in [
            "+447400123456",
            "+44 (0)7400 123456",
            "+44(0)7400-123456",
            "0044 (0) 7400 123456",
            "tel:+447400123456",
            "TEL:+44-7400-123456",
            " tel:+44.7400.123456 ",
            "\u{ff0b}\u{ff14}\u{ff14}\u{ff17}\u{ff14}\u{ff10}\u{ff10}\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}",
            "+44\u{200b}7400\u{200d}123456\u{feff}",
            "\u{202a}+44 7400 123456\u{202c}",
            "+44\u{a0}7400\u{2009}123456",
            "+44\u{2013}7400\u{2011}123456",
            "+44\u{3000}7400\u{ff0d}123456",
            "+44 7400/123456",
        ] {
            let n = PhoneNumber::parse(raw, None).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!((n.digits(), n.region()), ("447400123456", Some("GB")), "{raw:?}");
        }
        let gb = Region::new("GB").unwrap();
        let n = PhoneNumber::parse("\u{ff10}\u{ff17}\u{ff14}\u{ff10}\u{ff10} 123456", Some(&gb)).unwrap();
        assert_eq!(n.digits(), "447400123456", "fullwidth national form");
        // Italy's fixed lines keep their 0: a `(0)` there is not a trunk prefix to drop.
        let n = parse("+39 (0)2 3661 8300");
        assert_eq!((n.digits(), n.is_valid()), ("390236618300", true));
        // A `(0)` that does not follow the country code is a digit like any other.
        assert_eq!(parse("+447400 (0)12345").digits(), "447400012345");
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
