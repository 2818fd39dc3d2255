//! Compiled statements and their matchers; evaluation reads fields through the per-request cache.

use std::net::IpAddr;
use std::sync::Arc;

use aho_corasick::AhoCorasick;

use super::field::{Cache, Input, Values};
use super::file::{Comparison, ForwardedPosition, Oversize, Position, RateCount};
use super::injection::{self, Sensitivity};
use super::ipset::IpSet;
use crate::geo::Geo;

/// A compiled statement. `rate_based` only appears at the top of a rule ([`super::Rule`]).
#[derive(Debug)]
pub enum Statement {
    And(Vec<Statement>),
    Or(Vec<Statement>),
    Not(Box<Statement>),
    /// A matcher over the values of one input (an index into the ACL's input table).
    Match {
        slot: usize,
        matcher: Matcher,
        oversize: Oversize,
    },
    Size {
        slot: usize,
        comparison: Comparison,
        size: u64,
        oversize: Oversize,
    },
    Ip {
        address: Address,
        set: Arc<IpSet>,
    },
    Geo {
        address: Address,
        countries: Vec<String>,
    },
    Asn {
        address: Address,
        asns: Vec<u32>,
    },
    Label(LabelTest),
}

/// What a content matcher looks for.
#[derive(Debug)]
pub enum Matcher {
    Bytes {
        position: Position,
        values: Vec<Vec<u8>>,
        automaton: Option<AhoCorasick>,
    },
    Regex(regex::bytes::Regex),
    RegexSet(regex::bytes::RegexSet),
    Sqli(Sensitivity),
    Xss(Sensitivity),
}

/// Which address a network statement reads.
#[derive(Debug, Clone)]
pub enum Address {
    Client,
    Forwarded {
        header: http::HeaderName,
        position: ForwardedPosition,
        fallback_match: bool,
    },
}

/// A label test.
#[derive(Debug, Clone)]
pub enum LabelTest {
    Key(String),
    Namespace(String),
}

/// A rate-based rule's settings.
#[derive(Debug)]
pub struct RateRule {
    pub limit: u32,
    pub window: std::time::Duration,
    pub keys: Vec<RateKey>,
    /// The memo slot of `keys`: rules that count by the same keys digest them once per request. `None`
    /// when a key reads labels, which change as rules match.
    pub keys_memo: Option<usize>,
    pub scope_down: Option<Statement>,
    pub count: RateCount,
    pub distinct: Option<RateKey>,
    /// The memo slot of `distinct`, as for `keys`.
    pub distinct_memo: Option<usize>,
}

/// One aggregation key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    Ip,
    ForwardedIp(http::HeaderName),
    Header(http::HeaderName),
    Cookie(String),
    QueryArg(String),
    UriPath,
    Method,
    LabelNamespace(String),
    Ja4,
    Username,
    Constant,
}

/// What the statement needs from outside the request view.
pub struct Env<'a> {
    pub client_ip: IpAddr,
    pub geo: &'a Geo,
    pub labels: &'a [String],
    pub inputs: &'a [Input],
}

/// Why a statement matched, for `authward explain`.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub lines: Vec<String>,
}

impl Statement {
    /// Evaluates the statement; when `trace` is given, appends why each leaf matched or not.
    pub fn eval(&self, cache: &Cache<'_>, env: &Env<'_>, trace: &mut Option<&mut Trace>) -> bool {
        match self {
            Statement::And(all) => all.iter().all(|s| s.eval(cache, env, trace)),
            Statement::Or(any) => any.iter().any(|s| s.eval(cache, env, trace)),
            Statement::Not(s) => !s.eval(cache, env, trace),
            Statement::Match {
                slot,
                matcher,
                oversize,
            } => {
                let input = &env.inputs[*slot];
                let values = cache.values(*slot, input);
                let result = match matcher {
                    Matcher::Sqli(level) | Matcher::Xss(level) => {
                        let key = usize::from(matches!(matcher, Matcher::Xss(_))) * 2
                            + usize::from(*level == Sensitivity::High);
                        let oversize_decides = values.invalid_json.is_some()
                            || (values.oversize && *oversize != Oversize::Continue);
                        if oversize_decides {
                            match_values(values, matcher, *oversize)
                        } else {
                            *cache.detection(*slot, key, || match_values(values, matcher, *oversize))
                        }
                    }
                    _ => match_values(values, matcher, *oversize),
                };
                let matched = result.is_some();
                if let Some(t) = trace.as_deref_mut() {
                    let result = result.map(|i| (i, match_detail(values, matcher, *oversize, i)));
                    t.lines.push(describe_match(input, matcher, values, result));
                }
                matched
            }
            Statement::Size {
                slot,
                comparison,
                size,
                oversize,
            } => {
                let input = &env.inputs[*slot];
                let values = cache.values(*slot, input);
                let matched = if values.oversize && *oversize != Oversize::Continue {
                    *oversize == Oversize::Match
                } else if let Some(policy) = values.invalid_json {
                    policy
                } else {
                    // A body over the limit is measured whole where its length is known.
                    values
                        .items
                        .iter()
                        .any(|v| compare(v.len() as u64 + values.unread, *comparison, *size))
                };
                if let Some(t) = trace.as_deref_mut() {
                    let sizes: Vec<u64> = values
                        .items
                        .iter()
                        .map(|v| v.len() as u64 + values.unread)
                        .collect();
                    t.lines.push(format!(
                        "size_constraint on {}: sizes {sizes:?} {comparison:?} {size}: {}",
                        input.field.describe(),
                        yes(matched)
                    ));
                }
                matched
            }
            Statement::Ip { address, set } => {
                let matched = addresses(address, cache, env)
                    .is_some_and(|ips| ips.iter().any(|ip| set.contains(*ip)))
                    || fallback(address, cache, env);
                trace_line(trace, || {
                    format!(
                        "ip_set ({} ranges) on {}: {}",
                        set.len(),
                        addr_name(address),
                        yes(matched)
                    )
                });
                matched
            }
            Statement::Geo { address, countries } => {
                let country = first_address(address, cache, env).and_then(|ip| env.geo.lookup(ip).country);
                let matched = match &country {
                    Some(c) => countries.iter().any(|x| x == c),
                    None => fallback(address, cache, env),
                };
                trace_line(trace, || {
                    format!("geo_match {countries:?}: country {country:?}: {}", yes(matched))
                });
                matched
            }
            Statement::Asn { address, asns } => {
                let asn = first_address(address, cache, env).and_then(|ip| env.geo.lookup(ip).asn);
                let matched = match asn {
                    Some(a) => asns.contains(&a),
                    None => fallback(address, cache, env),
                };
                trace_line(trace, || {
                    format!("asn_match {asns:?}: asn {asn:?}: {}", yes(matched))
                });
                matched
            }
            Statement::Label(test) => {
                let matched = match test {
                    LabelTest::Key(k) => env.labels.iter().any(|l| l == k),
                    LabelTest::Namespace(ns) => env.labels.iter().any(|l| l.starts_with(ns.as_str())),
                };
                trace_line(trace, || {
                    format!("label_match {test:?} against {:?}: {}", env.labels, yes(matched))
                });
                matched
            }
        }
    }

    /// Label keys this statement tests, for the "matched but never added" check.
    pub fn label_tests(&self, out: &mut Vec<LabelTest>) {
        match self {
            Statement::And(v) | Statement::Or(v) => v.iter().for_each(|s| s.label_tests(out)),
            Statement::Not(s) => s.label_tests(out),
            Statement::Label(t) => out.push(t.clone()),
            _ => {}
        }
    }

    /// Conservatively true when the statement matches every request.
    pub fn always_true(&self) -> bool {
        match self {
            Statement::And(v) => v.iter().all(Statement::always_true),
            Statement::Or(v) => v.iter().any(Statement::always_true),
            Statement::Not(s) => s.never_true(),
            Statement::Ip {
                address: Address::Client,
                set,
            } => set.is_universe(),
            _ => false,
        }
    }

    fn never_true(&self) -> bool {
        match self {
            Statement::And(v) => v.iter().any(Statement::never_true),
            Statement::Or(v) => v.iter().all(Statement::never_true),
            Statement::Not(s) => s.always_true(),
            Statement::Ip { set, .. } => set.is_empty(),
            Statement::Geo { countries, .. } => countries.is_empty(),
            Statement::Asn { asns, .. } => asns.is_empty(),
            _ => false,
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "match" } else { "no match" }
}

fn trace_line(trace: &mut Option<&mut Trace>, line: impl FnOnce() -> String) {
    if let Some(t) = trace.as_deref_mut() {
        t.lines.push(line());
    }
}

fn addr_name(a: &Address) -> String {
    match a {
        Address::Client => "client ip".into(),
        Address::Forwarded { header, .. } => format!("{header}"),
    }
}

/// The addresses a statement reads; `None` when a forwarded header holds none.
fn addresses(address: &Address, cache: &Cache<'_>, env: &Env<'_>) -> Option<Vec<IpAddr>> {
    match address {
        Address::Client => Some(vec![env.client_ip]),
        Address::Forwarded { header, position, .. } => {
            let text: Vec<&str> = cache
                .view()
                .headers
                .get_all(header)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect();
            let parsed = |s: &&str| s.parse::<IpAddr>().ok();
            let ips: Vec<IpAddr> = match position {
                ForwardedPosition::First => text.first().and_then(parsed).into_iter().collect(),
                ForwardedPosition::Last => text.last().and_then(parsed).into_iter().collect(),
                ForwardedPosition::Any => text.iter().filter_map(parsed).collect(),
            };
            (!ips.is_empty()).then_some(ips)
        }
    }
}

fn first_address(address: &Address, cache: &Cache<'_>, env: &Env<'_>) -> Option<IpAddr> {
    addresses(address, cache, env).and_then(|v| v.first().copied())
}

fn fallback(address: &Address, cache: &Cache<'_>, env: &Env<'_>) -> bool {
    match address {
        Address::Forwarded { fallback_match, .. } => {
            *fallback_match && addresses(address, cache, env).is_none()
        }
        Address::Client => false,
    }
}

fn compare(len: u64, c: Comparison, size: u64) -> bool {
    match c {
        Comparison::Eq => len == size,
        Comparison::Ne => len != size,
        Comparison::Lt => len < size,
        Comparison::Le => len <= size,
        Comparison::Gt => len > size,
        Comparison::Ge => len >= size,
    }
}

/// The index of the first value that matched (0 when the body's state decided). For a body over the limit,
/// the oversize policy comes first, as in AWS WAF: `match` and `no_match` decide without reading it (a JSON
/// body cut at the limit is not invalid JSON); `continue` reads what there is, and only then does the
/// invalid-JSON policy apply, to a body that is invalid before the cut.
fn match_values(values: &Values, matcher: &Matcher, oversize: Oversize) -> Option<usize> {
    if values.oversize && oversize != Oversize::Continue {
        return (oversize == Oversize::Match).then_some(0);
    }
    if let Some(m) = values.invalid_json {
        return m.then_some(0);
    }
    values.items.iter().position(|v| matcher.is_match(v))
}

/// What matched value `i` (see [`match_values`]), for explanations.
fn match_detail(values: &Values, matcher: &Matcher, oversize: Oversize, i: usize) -> String {
    if values.oversize && oversize != Oversize::Continue {
        return "oversize body".to_string();
    }
    if values.invalid_json.is_some() {
        return "invalid JSON".to_string();
    }
    values
        .items
        .get(i)
        .and_then(|v| matcher.find(v))
        .unwrap_or_default()
}

impl Matcher {
    /// Whether one value matches.
    pub fn is_match(&self, v: &[u8]) -> bool {
        match self {
            Matcher::Bytes { .. } => self.listed_match(v).is_some(),
            Matcher::Regex(r) => r.is_match(v),
            Matcher::RegexSet(s) => s.is_match(v),
            Matcher::Sqli(level) => injection::detect_sqli(v, *level).is_some(),
            Matcher::Xss(level) => injection::detect_xss(v, *level).is_some(),
        }
    }

    /// For a byte match, the listed value that one value matches.
    fn listed_match(&self, v: &[u8]) -> Option<&[u8]> {
        let Matcher::Bytes {
            position,
            values,
            automaton,
        } = self
        else {
            return None;
        };
        let listed = |i: aho_corasick::PatternID| values[i.as_usize()].as_slice();
        match position {
            Position::Exactly => values.iter().find(|x| x.as_slice() == v).map(Vec::as_slice),
            Position::StartsWith => values.iter().find(|x| v.starts_with(x)).map(Vec::as_slice),
            Position::EndsWith => values.iter().find(|x| v.ends_with(x)).map(Vec::as_slice),
            Position::Contains => automaton.as_ref()?.find(v).map(|m| listed(m.pattern())),
            Position::ContainsWord => automaton.as_ref()?.find_overlapping_iter(v).find_map(|m| {
                let before = m.start().checked_sub(1).map(|i| v[i]);
                let after = v.get(m.end()).copied();
                let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
                (!word(before) && !word(after)).then(|| listed(m.pattern()))
            }),
        }
    }

    /// Whether one value matches; the detail says what was found.
    pub fn find(&self, v: &[u8]) -> Option<String> {
        match self {
            Matcher::Bytes { .. } => self.listed_match(v).map(lossy),
            Matcher::Regex(r) => r
                .find(v)
                .map(|m| format!("regex matched {:?}", lossy(m.as_bytes()))),
            Matcher::RegexSet(s) => {
                let m = s.matches(v);
                m.iter()
                    .next()
                    .map(|i| format!("pattern #{i} {:?}", s.patterns()[i]))
            }
            Matcher::Sqli(level) => injection::detect_sqli(v, *level).map(|d| format!("sqli: {}", d.reason)),
            Matcher::Xss(level) => injection::detect_xss(v, *level).map(|d| format!("xss: {}", d.reason)),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Matcher::Bytes { .. } => "byte_match",
            Matcher::Regex(_) => "regex",
            Matcher::RegexSet(_) => "regex_set",
            Matcher::Sqli(_) => "sqli",
            Matcher::Xss(_) => "xss",
        }
    }
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.into_owned()
    }
}

fn describe_match(
    input: &Input,
    matcher: &Matcher,
    values: &Values,
    result: Option<(usize, String)>,
) -> String {
    let transforms: Vec<&str> = input.transforms.iter().map(|t| t.name()).collect();
    let after = if transforms.is_empty() {
        String::new()
    } else {
        format!(" after [{}]", transforms.join(", "))
    };
    match result {
        Some((i, detail)) => {
            let shown = if matches!(input.field, super::field::Field::Password) {
                "[redacted]".to_string()
            } else {
                values
                    .items
                    .get(i)
                    .map_or_else(String::new, |v| format!(" in {:?}", lossy(v)))
            };
            format!(
                "{} on {}{after}: match ({detail}){shown}",
                matcher.kind(),
                input.field.describe()
            )
        }
        None => format!(
            "{} on {}{after}: no match ({} value{})",
            matcher.kind(),
            input.field.describe(),
            values.items.len(),
            if values.items.len() == 1 { "" } else { "s" }
        ),
    }
}
