//! Plain serde types that mirror the `web_acl` YAML; [`super::compile`] turns them into the running form.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::injection::Sensitivity;
use super::transform::Transform;
use crate::config::file::Positioned;
use crate::config::types::{ByteSize, Cidr, Duration, Pattern};

/// The `web_acl` section of a config or of an included rule file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWebAcl {
    /// What happens to a request that no terminating rule decided: `allow` (default) or `block`. Set by
    /// the main config; an included file (an imported web ACL) may repeat it only when it agrees.
    pub default_action: Option<FileAction>,
    /// Rules, evaluated by ascending priority.
    #[serde(default)]
    pub rules: Vec<Positioned<FileRule>>,
    /// Named rule groups, referenced from rules with `group:`.
    #[serde(default)]
    pub groups: Vec<Positioned<FileGroup>>,
    /// Files of CIDRs (one per line, `#` comments) named by `ip_set` statements with `file:`, relative to
    /// the config file; read at load and at every reload.
    #[serde(default)]
    pub ip_set_files: BTreeMap<String, PathBuf>,
    /// When the state store fails during a rate-based rule: `open` (the rule does not match; default) or
    /// `closed` (the rule matches).
    #[serde(default)]
    pub store_failure: StoreFailure,
}

/// Fail-open or fail-closed on store errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreFailure {
    #[default]
    Open,
    Closed,
}

/// A named list of rules that other rules reference.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileGroup {
    /// The name rules use to reference the group.
    pub name: String,
    /// A short description.
    #[serde(default)]
    pub description: Option<String>,
    /// The group's rules, evaluated by ascending priority inside the group.
    pub rules: Vec<Positioned<FileRule>>,
}

/// One rule: a statement and what to do when it matches, or a reference to a group.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    /// Unique name; appears in logs, metrics and the `x-authward-labels` header.
    pub name: String,
    /// Lower runs first; unique within its list.
    pub priority: i64,
    /// What the rule inspects. Exactly one of `statement` and `group`.
    pub statement: Option<FileStatement>,
    /// Runs a rule group here instead of a statement.
    pub group: Option<String>,
    /// What to do on a match (default `block`); for a group reference, forces every rule of the group
    /// to this action (for example `count` to try a group out first).
    pub action: Option<FileAction>,
    /// Per-rule action overrides inside a referenced group.
    #[serde(default)]
    pub rule_overrides: BTreeMap<String, FileAction>,
    /// Labels added to the request when the rule matches.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Evaluate and record "would have acted", but never act.
    #[serde(default)]
    pub shadow: bool,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// Stop evaluating and let the request through.
    Allow,
    /// Stop evaluating and answer 403 (or a custom response).
    Block,
    /// Stop evaluating and answer with this response.
    #[serde(rename = "block_with")]
    BlockWith(FileBlockResponse),
    /// Add the labels and go on.
    Count,
    /// Ask the client to prove it is a browser (a 403 notice until the challenge page lands).
    Challenge,
    /// Ask for a CAPTCHA (a 403 notice until the challenge page lands).
    Captcha,
}

/// A custom block answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBlockResponse {
    /// HTTP status, 200–599 (default 403).
    #[serde(default = "default_block_status")]
    pub status: u16,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body (default: a JSON error naming the rule).
    pub body: Option<String>,
}

fn default_block_status() -> u16 {
    403
}

/// A condition on the request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileStatement {
    /// All must match.
    And(Vec<FileStatement>),
    /// Any must match.
    Or(Vec<FileStatement>),
    /// Must not match.
    Not(Box<FileStatement>),
    /// Literal strings in a field.
    ByteMatch(FileByteMatch),
    /// One regular expression.
    Regex(FileRegex),
    /// Many regular expressions compiled into one set; matches when any does.
    RegexSet(FileRegexSet),
    /// SQL injection in a field.
    Sqli(FileInjection),
    /// Cross-site scripting in a field.
    Xss(FileInjection),
    /// The size of a field (after transformations).
    SizeConstraint(FileSize),
    /// The client address in a set of networks.
    IpSet(FileIpSet),
    /// The client's country (ISO 3166-1 alpha-2) from the MaxMind city or country DB.
    GeoMatch(FileGeo),
    /// The client's autonomous system from the MaxMind ASN DB.
    AsnMatch(FileAsn),
    /// A label that an earlier rule added.
    LabelMatch(FileLabelMatch),
    /// More than `limit` requests per `window` for one aggregation key.
    RateBased(FileRateBased),
}

/// How a byte match compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The whole value equals the string.
    Exactly,
    /// The value starts with it.
    StartsWith,
    /// The value ends with it.
    EndsWith,
    /// The value contains it anywhere.
    Contains,
    /// The value contains it as a word (bounded by non-word characters or the ends).
    ContainsWord,
}

/// `byte_match`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileByteMatch {
    pub field: FileField,
    /// How the strings are compared.
    pub position: Position,
    /// One string, or `values` for many (folded into one automaton).
    pub value: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
}

/// `regex`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRegex {
    pub field: FileField,
    pub pattern: Pattern,
    #[serde(default)]
    pub transforms: Vec<Transform>,
}

/// `regex_set`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRegexSet {
    pub field: FileField,
    pub patterns: Vec<Pattern>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
}

/// `sqli` and `xss`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileInjection {
    pub field: FileField,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// `low` (few false positives, the default) or `high`.
    #[serde(default)]
    pub sensitivity: Sensitivity,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `size_constraint`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSize {
    pub field: FileField,
    pub comparison: Comparison,
    pub size: ByteSize,
    #[serde(default)]
    pub transforms: Vec<Transform>,
}

/// Which address a network statement looks at.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileAddress {
    /// The client address (the TCP peer, or `X-Forwarded-For` from trusted proxies).
    #[default]
    Ip,
    /// An address in a header, even from untrusted peers (as AWS WAF's forwarded IP config).
    ForwardedIp(FileForwardedIp),
}

/// An address read from a header.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileForwardedIp {
    /// The header, e.g. `X-Forwarded-For`.
    pub header: String,
    /// Which entry of a comma-separated list: `first` (default), `last`, or `any` (ip_set only).
    #[serde(default)]
    pub position: ForwardedPosition,
    /// Whether a request without a valid address in the header matches.
    #[serde(default)]
    pub fallback_match: bool,
}

/// Entry of a forwarded-address list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForwardedPosition {
    #[default]
    First,
    Last,
    Any,
}

/// `ip_set`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileIpSet {
    /// Networks inline.
    #[serde(default)]
    pub cidrs: Vec<Cidr>,
    /// Names of `ip_set_files` entries whose networks join the set.
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub address: FileAddress,
}

/// `geo_match`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileGeo {
    /// ISO 3166-1 alpha-2 codes.
    pub countries: Vec<String>,
    #[serde(default)]
    pub address: FileAddress,
}

/// `asn_match`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAsn {
    pub asns: Vec<u32>,
    #[serde(default)]
    pub address: FileAddress,
}

/// `label_match`: `key: ns:name` matches that label; `namespace: ns:` matches any label under it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileLabelMatch {
    pub key: Option<String>,
    pub namespace: Option<String>,
}

/// What the rate is counted over.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileRateKey {
    /// The client address.
    Ip,
    /// The first address of a header (`X-Forwarded-For`).
    ForwardedIp(String),
    /// A header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// A query argument's value.
    QueryArg(String),
    /// The normalized URI path.
    UriPath,
    /// The HTTP method.
    Method,
    /// The request's labels in this namespace.
    LabelNamespace(String),
    /// The TLS ClientHello fingerprint.
    Ja4,
    /// The profile's username.
    Username,
    /// One counter for every request in scope.
    Constant,
}

/// Which requests a rate-based rule counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateCount {
    /// Every request in scope.
    #[default]
    All,
    /// Only requests whose upstream answer was a failed sign-in (account-takeover style); the rule then
    /// matches later requests of the same key while the failures stay over the limit.
    FailedSignIn,
}

/// `rate_based`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRateBased {
    /// Requests allowed per window per key.
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// Aggregation keys, one to five; a request lacking one of them is not counted.
    #[serde(default = "default_rate_keys")]
    pub keys: Vec<FileRateKey>,
    /// Only requests that match this statement are counted and limited.
    pub scope_down: Option<Box<FileStatement>>,
    /// Count distinct values of this key instead of requests (for example `username` with `keys: [ip]`:
    /// many usernames from one address). The window restarts when a key is quiet for a whole window.
    pub distinct: Option<FileRateKey>,
    #[serde(default)]
    pub count: RateCount,
}

fn default_rate_keys() -> Vec<FileRateKey> {
    vec![FileRateKey::Ip]
}

/// Which part of the request a statement inspects.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileField {
    /// The HTTP method.
    Method,
    /// The path, as sent (before any transformation).
    UriPath,
    /// The query string without `?`.
    QueryString,
    /// One query argument's value (name compared case-insensitively).
    SingleQueryArg(String),
    /// Every query argument's value.
    AllQueryArgs,
    /// One header's value (name case-insensitive).
    SingleHeader(String),
    /// Header names, values or both, with an include or exclude list.
    Headers(FileParts),
    /// Cookie names, values or both, with an include or exclude list.
    Cookies(FileParts),
    /// The raw body (buffered on profiled routes; up to `listen.body_limit` elsewhere).
    Body(FileBody),
    /// The body parsed as JSON.
    JsonBody(FileJsonBody),
    /// One form field's value (urlencoded, or a multipart/form-data text part).
    Form(String),
    /// Every form field's value (urlencoded, or multipart/form-data text parts).
    AllFormFields,
    /// The TLS ClientHello fingerprint (JA4); empty for plain HTTP.
    Ja4,
    /// Header names in the order the client sent them, joined with `:`.
    HeaderOrder,
    /// The profile's username.
    Username,
    /// The profile's phone number.
    Phone,
    /// The profile's client id.
    ClientId,
    /// The profile's password (only when a rule names it; never by `body`/`json_body`/`all_form_fields`).
    Password,
}

/// Which part of name/value pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Keys,
    Values,
    #[default]
    All,
}

/// Headers or cookies.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileParts {
    #[serde(default)]
    pub part: Part,
    /// Only these names (header names compare case-insensitively, cookie names exactly, as RFC 6265 says).
    #[serde(default)]
    pub include: Vec<String>,
    /// All names but these (compared as `include` is).
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// What happens with a body larger than what authward reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Inspect the part that was read.
    #[default]
    Continue,
    /// Treat the statement as matched.
    Match,
    /// Treat the statement as not matched.
    NoMatch,
}

/// `body`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBody {
    #[serde(default)]
    pub oversize: Oversize,
}

/// What to do with a body that is not valid JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvalidJson {
    /// Inspect the raw body as text.
    #[default]
    EvaluateAsString,
    Match,
    NoMatch,
}

/// `json_body`: one pointer, or every key and/or value.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileJsonBody {
    /// A JSON pointer (`/user/name`); absent means the whole document.
    pub pointer: Option<String>,
    /// Keys, values (default) or both, of every member under the pointer.
    #[serde(default = "default_json_part")]
    pub part: Part,
    #[serde(default)]
    pub invalid: InvalidJson,
    #[serde(default)]
    pub oversize: Oversize,
}

fn default_json_part() -> Part {
    Part::Values
}
