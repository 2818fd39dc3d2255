//! Validation of user-submitted attributes: type, length, pattern, characters, and content unsafe in messages.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::file::{AttributeType, FileAttributeRule, FileAttributeSource, FileAttributes};
use super::respond::Reason;
use super::{Invalid, invalid};

/// Longest attribute list looked at; Cognito accepts far fewer attributes than this.
const MAX_ATTRIBUTES: usize = 256;

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^@\s]+@[^@\s]+\.[^@\s]+$").expect("static regex"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\+[1-9][0-9]{1,14}$").expect("static regex"));
static URL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^https?://[^\s/?#]+\S*$").expect("static regex"));
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$").expect("static regex")
});
/// Links in any form a mail client or phone would make clickable.
static LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)([a-z][a-z0-9+.-]*://|www\.|\b[a-z0-9-]{1,63}\.(com|net|org|info|biz|io|co|me|ly|xyz|top|site|online|ru|cn|tk|link|click|app|dev|gl|to|cc|us|uk|de)\b)",
    )
    .expect("static regex")
});
/// Markup and template syntax.
static MARKUP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)([<>]|&#|&[a-z]+;|\{\{|\$\{|%3c|%3e)").expect("static regex"));
/// Seven digits or more, with the separators people put in phone numbers.
static PHONE_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?[0-9][0-9 ().-]{5,}[0-9]").expect("static regex"));

/// Where the attributes are in a JSON body.
#[derive(Debug, Clone)]
enum Source {
    List(String),
    Object(String),
}

/// One compiled attribute rule.
#[derive(Debug)]
struct Rule {
    kind: AttributeType,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Regex>,
    chars: Option<Regex>,
    message_safe: bool,
}

/// The compiled attribute rules of a group.
#[derive(Debug)]
pub struct Rules {
    source: Source,
    rules: Vec<(String, Rule)>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            source: Source::List("/UserAttributes".into()),
            rules: Vec::new(),
        }
    }
}

fn pointer(p: &str, path: &str) -> Result<String, Invalid> {
    match p.starts_with('/') || p.is_empty() {
        true => Ok(if p == "/" { String::new() } else { p.to_string() }),
        false => Err(invalid(
            path,
            format!("invalid JSON pointer \"{p}\" (must start with /)"),
        )),
    }
}

impl Rules {
    pub(super) fn compile(f: Option<&FileAttributes>) -> Result<Rules, Invalid> {
        let Some(f) = f else {
            return Ok(Rules::default());
        };
        let source = match &f.from {
            None => Source::List("/UserAttributes".into()),
            Some(FileAttributeSource::List(p)) => Source::List(pointer(p, "attributes.from.list")?),
            Some(FileAttributeSource::Object(p)) => Source::Object(pointer(p, "attributes.from.object")?),
        };
        let rules = f
            .rules
            .iter()
            .map(|(name, r)| {
                Ok((
                    name.clone(),
                    Rule::compile(r, &format!("attributes.rules.{name}"))?,
                ))
            })
            .collect::<Result<_, Invalid>>()?;
        Ok(Rules { source, rules })
    }

    /// Whether the body carries attributes where the rules look.
    pub fn present(&self, json: &Value) -> bool {
        match &self.source {
            Source::List(p) => json.pointer(p).is_some_and(Value::is_array),
            Source::Object(p) => json.pointer(p).is_some_and(Value::is_object),
        }
    }

    /// The first attribute that breaks its rule.
    pub fn check(&self, json: &Value) -> Result<(), Reason> {
        let found: Vec<(&str, &Value)> = match &self.source {
            Source::List(p) => json
                .pointer(p)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .take(MAX_ATTRIBUTES)
                .filter_map(|e| Some((e.get("Name")?.as_str()?, e.get("Value")?)))
                .collect(),
            Source::Object(p) => json
                .pointer(p)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .take(MAX_ATTRIBUTES)
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
        };
        for (name, value) in found {
            if let Some((_, rule)) = self.rules.iter().find(|(n, _)| n == name) {
                rule.check(value).map_err(|problem| Reason::Attribute {
                    name: name.to_string(),
                    problem,
                })?;
            }
        }
        Ok(())
    }
}

impl Rule {
    fn compile(f: &FileAttributeRule, path: &str) -> Result<Rule, Invalid> {
        if let (Some(min), Some(max)) = (f.min_length, f.max_length) {
            if min > max {
                return Err(invalid(format!("{path}.min_length"), "is larger than max_length"));
            }
        }
        let pattern = f
            .pattern
            .as_ref()
            .map(|p| Regex::new(&format!("^(?:{})$", p.0.as_str())))
            .transpose()
            .map_err(|e| invalid(format!("{path}.pattern"), e.to_string()))?;
        let chars = f
            .chars
            .as_ref()
            .map(|c| Regex::new(&format!("^[{c}]*$")))
            .transpose()
            .map_err(|e| invalid(format!("{path}.chars"), format!("not a character class: {e}")))?;
        Ok(Rule {
            kind: f.kind,
            min_length: f.min_length,
            max_length: f.max_length,
            pattern,
            chars,
            message_safe: f.message_safe,
        })
    }

    /// What is wrong with a value, in words that do not repeat it.
    fn check(&self, value: &Value) -> Result<(), String> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err("must be a text value".into()),
        };
        let len = text.chars().count();
        if let Some(min) = self.min_length.filter(|m| len < *m) {
            return Err(format!("must be at least {min} characters"));
        }
        if let Some(max) = self.max_length.filter(|m| len > *m) {
            return Err(format!("must be at most {max} characters"));
        }
        let typed = match self.kind {
            AttributeType::String => true,
            AttributeType::Email => text.len() <= 254 && EMAIL.is_match(&text),
            AttributeType::Phone => PHONE.is_match(&text),
            AttributeType::Url => URL.is_match(&text),
            AttributeType::Number => text.parse::<f64>().is_ok_and(f64::is_finite),
            AttributeType::Boolean => text == "true" || text == "false",
            AttributeType::Date => DATE.is_match(&text),
        };
        if !typed {
            let kind = match self.kind {
                AttributeType::String => "text",
                AttributeType::Email => "an email address",
                AttributeType::Phone => "an E.164 phone number",
                AttributeType::Url => "an http or https URL",
                AttributeType::Number => "a number",
                AttributeType::Boolean => "true or false",
                AttributeType::Date => "a date (YYYY-MM-DD)",
            };
            return Err(format!("must be {kind}"));
        }
        if self.chars.as_ref().is_some_and(|c| !c.is_match(&text)) {
            return Err("has characters that are not allowed".into());
        }
        if self.pattern.as_ref().is_some_and(|p| !p.is_match(&text)) {
            return Err("does not match the required pattern".into());
        }
        if self.message_safe {
            if text.chars().any(|c| c.is_control() || is_invisible(c)) {
                return Err("must not contain control characters".into());
            }
            if LINK.is_match(&text) {
                return Err("must not contain a link".into());
            }
            if MARKUP.is_match(&text) {
                return Err("must not contain markup".into());
            }
            if PHONE_NUMBER.is_match(&text) {
                return Err("must not contain a phone number".into());
            }
        }
        Ok(())
    }
}

/// Format characters that hide or reorder text (bidirectional overrides, zero-width characters).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Rules {
        let f: FileAttributes = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        Rules::compile(Some(&f)).unwrap_or_else(|e| panic!("{}: {}", e.path, e.message))
    }

    fn cognito(attrs: &[(&str, &str)]) -> Value {
        let list: Vec<Value> = attrs
            .iter()
            .map(|(n, v)| serde_json::json!({"Name": n, "Value": v}))
            .collect();
        serde_json::json!({"Username": "u", "UserAttributes": list})
    }

    fn problem(r: &Rules, json: &Value) -> Option<(String, String)> {
        match r.check(json) {
            Ok(()) => None,
            Err(Reason::Attribute { name, problem }) => Some((name, problem)),
            Err(other) => panic!("{other:?}"),
        }
    }

    const RULES: &str = r"
mode: enforce
rules:
  given_name: {max_length: 12, chars: '\p{L}\p{M} .''-', message_safe: true}
  nickname: {message_safe: true}
  email: {type: email}
  phone_number: {type: phone}
  birthdate: {type: date}
  website: {type: url}
  'custom:age': {type: number}
  'custom:code': {pattern: '[A-Z]{3}', min_length: 3}
";

    #[test]
    fn each_rule_refuses_what_it_should_and_names_the_attribute_only() {
        let r = rules(RULES);
        for (attr, value, expected) in [
            ("given_name", "Zoë O'Neil", None),
            (
                "given_name",
                "Bartholomew Smith",
                Some("must be at most 12 characters"),
            ),
            ("given_name", "Ann_1", Some("has characters that are not allowed")),
            ("nickname", "visit evil.com now", Some("must not contain a link")),
            ("nickname", "see https://x.test", Some("must not contain a link")),
            ("nickname", "<b>hi</b>", Some("must not contain markup")),
            ("nickname", "{{7*7}}", Some("must not contain markup")),
            (
                "nickname",
                "call +1 (555) 010-9999",
                Some("must not contain a phone number"),
            ),
            (
                "nickname",
                "tab\there",
                Some("must not contain control characters"),
            ),
            (
                "nickname",
                "rtl\u{202E}txt",
                Some("must not contain control characters"),
            ),
            ("nickname", "Jo 2nd", None),
            ("email", "carol@example.com", None),
            ("email", "carol@", Some("must be an email address")),
            ("phone_number", "+447700900123", None),
            (
                "phone_number",
                "07700 900123",
                Some("must be an E.164 phone number"),
            ),
            ("birthdate", "1990-02-28", None),
            ("birthdate", "1990-13-01", Some("must be a date (YYYY-MM-DD)")),
            ("website", "https://carol.example", None),
            (
                "website",
                "javascript:alert(1)",
                Some("must be an http or https URL"),
            ),
            ("custom:age", "42", None),
            ("custom:age", "forty", Some("must be a number")),
            ("custom:code", "ABC", None),
            ("custom:code", "ABCD", Some("does not match the required pattern")),
            ("custom:code", "AB", Some("must be at least 3 characters")),
            ("unruled", "<anything> https://x.test", None),
        ] {
            let got = problem(&r, &cognito(&[(attr, value)]));
            assert_eq!(
                got,
                expected.map(|p| (attr.to_string(), p.to_string())),
                "{attr} = {value:?}"
            );
            if let Some((_, p)) = &got {
                assert!(!p.contains(value), "the problem repeats the value: {p}");
            }
        }
    }

    #[test]
    fn attributes_are_found_in_a_list_or_an_object() {
        let r = rules(RULES);
        assert!(r.present(&cognito(&[])));
        assert!(!r.present(&serde_json::json!({"Username": "u"})));
        let obj = rules("from: {object: /}\nrules: {display_name: {max_length: 3}}");
        let body = serde_json::json!({"username": "u", "display_name": "long name"});
        assert!(obj.present(&body));
        assert_eq!(
            problem(&obj, &body),
            Some(("display_name".into(), "must be at most 3 characters".into()))
        );
        let nested = serde_json::json!({"display_name": {"a": 1}});
        assert_eq!(
            problem(&obj, &nested),
            Some(("display_name".into(), "must be a text value".into()))
        );
    }

    #[test]
    fn bad_rules_do_not_compile() {
        let f: FileAttributes = serde_saphyr::from_str("rules: {a: {min_length: 3, max_length: 2}}").unwrap();
        assert_eq!(
            Rules::compile(Some(&f)).unwrap_err().path,
            "attributes.rules.a.min_length"
        );
        let f: FileAttributes = serde_saphyr::from_str("rules: {a: {chars: 'a-'}}\nfrom: {list: x}").unwrap();
        assert_eq!(Rules::compile(Some(&f)).unwrap_err().path, "attributes.from.list");
    }
}
