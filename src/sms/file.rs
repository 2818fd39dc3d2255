//! Serde mirror types of the `sms:` section and of a profile's `sms:` block; see `SmsGuard::compile`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::number::NumberType;
use crate::config::types::{Duration, Rate};
use crate::profile::Operation;
use crate::waf::file::StoreFailure;

/// SMS pumping and toll-fraud protection: checks on every request that makes the backend send an SMS.
/// Each check has a reason code in events, metrics and logs; see `docs/sms.md`. `null` turns a check
/// with a default off.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSms {
    /// `enforce` (default): tripped checks act; `audit`: decide, record and count, but forward
    /// everything; `off`: the guard does nothing.
    #[serde(default)]
    pub mode: FileMode,
    /// Guard only profiles of these operations (default: every profile whose `sms.role` is `send` or
    /// `verify`).
    pub operations: Option<Vec<Operation>>,
    /// Guard only these profiles, by name (default: all, as `operations` allows).
    pub profiles: Option<Vec<String>>,
    /// What a tripped check does unless the check says otherwise: `block` (default: 429 with
    /// `Retry-After`) or `fake_success` (the profile's `sms.fake_success` answer, not forwarded).
    #[serde(default)]
    pub action: FileAction,
    /// A number that does not parse or is not a number of its country's plan: `reject` (default: 400
    /// with a JSON error) or `pass` (forwarded; only the IP, username and global limits apply).
    #[serde(default)]
    pub invalid_number: FileInvalidNumber,
    /// A number's prefix (its range, for `limits.per_number_prefix`, conversion rates and events) is
    /// its E.164 form without this many trailing digits: 4 (default) makes ranges of 10 000 numbers.
    #[serde(default = "default_prefix_trailing_digits")]
    pub prefix_trailing_digits: u8,
    /// How long the number that a user's code went to is kept (default 30d; `null`: not kept). A send
    /// whose request names no number but a user (Cognito's `ResendConfirmationCode` and
    /// `ForgotPassword`) is checked, counted and charged as a send to that number, and its fake answer
    /// shows that number's last digits. The store holds the number under a digest of the username.
    #[serde(default = "default_remember_numbers")]
    pub remember_numbers: Option<Duration>,
    /// Destination countries: allow, block or monitor, as AWS End User Messaging's country rules.
    #[serde(default)]
    pub countries: FileCountries,
    /// The number's country differs from the client IP's country (needs `geoip`). Default: monitor.
    #[serde(default = "default_geo_mismatch")]
    pub geo_mismatch: Option<FileGeoMismatch>,
    /// Number ranges that are refused whatever their type: premium-rate and known-abused ranges.
    #[serde(default)]
    pub blocked_prefixes: FileBlockedPrefixes,
    /// Number types (from libphonenumber's metadata) that are refused.
    #[serde(default)]
    pub number_types: FileNumberTypes,
    /// The requests that carry one of these web-ACL labels (exact, or a namespace ending in `:`).
    pub labels: Option<FileLabels>,
    /// Rate limits per number, username, client IP, IP range, number range, country and overall.
    #[serde(default)]
    pub limits: FileLimits,
    /// Many distinct numbers of one small range in a short window (a pumper walking a range).
    #[serde(default = "default_sequential")]
    pub sequential: Option<FileSequential>,
    /// Codes verified / codes sent per number range and per country; pumped traffic verifies almost
    /// nothing. Needs a profile with `sms.role: verify`.
    #[serde(default = "default_conversion")]
    pub conversion: Option<FileConversion>,
    /// Estimated spend per hour and per day from a price table, with alert levels and hard caps.
    pub budget: Option<FileBudget>,
    /// When the state store fails: `open` (default: the check passes and is recorded as
    /// `store_unavailable`) or `closed` (the request is refused with that reason).
    #[serde(default)]
    pub store_failure: StoreFailure,
}

/// Whether the guard acts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    Off,
    Audit,
    #[default]
    Enforce,
}

impl<'de> Deserialize<'de> for FileMode {
    /// Also takes YAML 1.1's `off` (a boolean `false` to some parsers) as `off`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FileMode;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("off, audit or enforce")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<FileMode, E> {
                if b {
                    Err(E::custom("expected off, audit or enforce"))
                } else {
                    Ok(FileMode::Off)
                }
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FileMode, E> {
                match s {
                    "off" => Ok(FileMode::Off),
                    "audit" => Ok(FileMode::Audit),
                    "enforce" => Ok(FileMode::Enforce),
                    _ => Err(E::custom(format!("expected off, audit or enforce, found `{s}`"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// What a tripped check does by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// 429 with `Retry-After` and `{"error": "sms_blocked", "reason": ...}`.
    #[default]
    Block,
    /// The profile's `sms.fake_success` answer; the upstream never sees the request.
    FakeSuccess,
}

/// What one check does when it trips (default: the section's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileCheckAction {
    Block,
    FakeSuccess,
    /// Record and count the reason; the request goes on.
    Monitor,
}

/// What happens to a number that is not valid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileInvalidNumber {
    /// 400 with `{"error": "invalid_phone_number"}`.
    #[default]
    Reject,
    /// Forwarded: the upstream decides.
    Pass,
}

/// Country rules by ISO 3166 code (`GB`), or `001` for non-geographic numbers (+800, +808, +870,
/// +881, +882, +883, +979).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileCountries {
    /// The rule for countries not listed (default `allow`).
    #[serde(default)]
    pub default: FileCountryRule,
    /// Rules by country code.
    #[serde(default)]
    pub rules: BTreeMap<String, FileCountryRule>,
    /// What `block` does (default: the section's `action`).
    pub action: Option<FileCheckAction>,
}

/// One country's rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileCountryRule {
    #[default]
    Allow,
    /// Trips `country_blocked`.
    Block,
    /// Records `country_monitored` and goes on.
    Monitor,
}

/// The number's country and the client IP's country differ.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileGeoMismatch {
    /// What a mismatch does (default `monitor`: a signal, as travellers and expatriates mismatch too).
    #[serde(default = "monitor")]
    pub action: FileCheckAction,
}

/// Prefix list files.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBlockedPrefixes {
    /// Files of E.164 prefixes, one per line (`+882`; `!+88234` allows a range inside a blocked one;
    /// `#` comments), relative to the config file; read at load and at every reload. The longest
    /// matching prefix decides.
    #[serde(default)]
    pub lists: Vec<PathBuf>,
    /// What a match does (default: the section's `action`).
    pub action: Option<FileCheckAction>,
}

/// Number types to refuse.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileNumberTypes {
    /// Default: premium_rate, shared_cost, personal_number, pager, uan, voicemail. Also: voip,
    /// toll_free, fixed_line, mobile, fixed_line_or_mobile.
    #[serde(default = "default_blocked_types")]
    pub block: Vec<NumberType>,
    /// What a blocked type does (default: the section's `action`).
    pub action: Option<FileCheckAction>,
}

impl Default for FileNumberTypes {
    fn default() -> Self {
        FileNumberTypes {
            block: default_blocked_types(),
            action: None,
        }
    }
}

/// Web-ACL labels that refuse an SMS.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileLabels {
    /// Labels (`bot:suspected`) or namespaces ending in `:` (`ip-reputation:`).
    pub refuse: Vec<String>,
    /// What a match does (default: the section's `action`).
    pub action: Option<FileCheckAction>,
}

/// Rate limits (GCRA: a burst of COUNT, then one every WINDOW/COUNT); `null` turns one off.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Per destination number (default 5/h).
    #[serde(default = "default_per_number")]
    pub per_number: Option<Rate>,
    /// Per username, for operations that name one (default 5/h).
    #[serde(default = "default_per_username")]
    pub per_username: Option<Rate>,
    /// Per client IP: an IPv4 address, an IPv6 /64 as authward counts clients everywhere (default 10/h).
    #[serde(default = "default_per_ip")]
    pub per_ip: Option<Rate>,
    /// Per client network: /24 for IPv4, /64 for IPv6 (default 30/h).
    #[serde(default = "default_per_ip_prefix")]
    pub per_ip_prefix: Option<Rate>,
    /// Per number range (see `prefix_trailing_digits`; default 20/h).
    #[serde(default = "default_per_number_prefix")]
    pub per_number_prefix: Option<Rate>,
    /// Per destination country (default off).
    pub per_country: Option<Rate>,
    /// All SMS together (default off).
    pub global: Option<Rate>,
    /// What an exceeded limit does (default: the section's `action`).
    pub action: Option<FileCheckAction>,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            per_number: default_per_number(),
            per_username: default_per_username(),
            per_ip: default_per_ip(),
            per_ip_prefix: default_per_ip_prefix(),
            per_number_prefix: default_per_number_prefix(),
            per_country: None,
            global: None,
            action: None,
        }
    }
}

/// Distinct numbers of one small range within a window.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSequential {
    /// How long numbers are remembered (default 10m).
    #[serde(default = "default_sequential_window")]
    pub window: Duration,
    /// Numbers that differ only in their last N digits are one range (default 2: 100 numbers). Ranges
    /// are counted twice, aligned and shifted by half, so any run of 10^N / 2 consecutive numbers
    /// falls inside one counted range.
    #[serde(default = "default_range_digits")]
    pub range_digits: u8,
    /// More distinct numbers than this in one range within the window trips (default 3).
    #[serde(default = "default_sequential_threshold")]
    pub threshold: u32,
    /// What a trip does (default: the section's `action`).
    pub action: Option<FileCheckAction>,
}

/// Conversion rate per number range and country.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConversion {
    /// The sliding window that sends and verifications are counted in (default 1h).
    #[serde(default = "default_conversion_window")]
    pub window: Duration,
    /// Codes sent to a range within the window before its rate counts (default 20).
    #[serde(default = "default_min_sent")]
    pub min_sent: u32,
    /// Codes sent to a country within the window before its rate counts (default 200; `null`: only
    /// ranges are blocked).
    #[serde(default = "default_country_min_sent")]
    pub country_min_sent: Option<u32>,
    /// Verified / sent below this (0 to 1) trips a block of the range or country (default 0.2).
    #[serde(default = "default_conversion_threshold")]
    pub threshold: f64,
    /// How long the first block lasts (default 15m); each new block while the attack goes on lasts
    /// twice as long as the one before.
    #[serde(default = "default_block_for")]
    pub block_for: Duration,
    /// The longest block (default 24h). Escalation is forgotten after this long without a block.
    #[serde(default = "default_max_block")]
    pub max_block: Duration,
    /// What a block does (default: the section's `action`).
    pub action: Option<FileCheckAction>,
}

/// Spend per hour and per day.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBudget {
    /// Price table (`currency`, `default`, `countries: {GB: 0.04}`), relative to the config file; read at
    /// load and at every reload. `rules/sms/prices.yaml` has approximate prices.
    pub prices: PathBuf,
    /// The currency of the amounts below; must be the price table's (default USD).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Per clock hour (UTC).
    pub hourly: Option<FileBudgetWindow>,
    /// Per day (UTC).
    pub daily: Option<FileBudgetWindow>,
    /// What a reached cap does (default: the section's `action`).
    pub action: Option<FileCheckAction>,
}

/// Amounts for one budget window.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBudgetWindow {
    /// From this estimated spend on, sends are recorded as `budget_*_alert` and a warning is logged.
    pub alert: Option<f64>,
    /// A send that would take the estimated spend past this trips `budget_*_cap`.
    pub cap: Option<f64>,
}

// === A profile's `sms:` block ===

/// How a profile's operation takes part in SMS protection.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileProfileSms {
    /// `send`: the backend sends an SMS (guarded); `verify`: the backend checks a code (a success counts
    /// for conversion rates); `none`. Default: `send` for `sms_send`, `verify` for `sms_verify`, `none`
    /// otherwise.
    pub role: Option<FileSmsRole>,
    /// The region (`GB`) that numbers written without a country code are read in.
    pub default_region: Option<String>,
    /// A send without a number in the request (the backend knows it, as Cognito's
    /// ResendConfirmationCode): `guard` (default: per-username, IP and global limits and the budget at
    /// the default price) or `skip` (no SMS goes out without a number, as an e-mail sign-up).
    #[serde(default)]
    pub without_number: FileWithoutNumber,
    /// The answer for `fake_success`: what the upstream answers to a successful send. The body may use
    /// `{{last:N}}` (the number's last N digits), `{{mask:K:L}}` (`+`, the first K digits, `*` for the
    /// middle, the last L digits), `{{uuid}}` (a random UUID), `{{username}}` (JSON-escaped) and
    /// `{{request_id}}`. Digits of a number the request does not carry render as `*`.
    pub fake_success: Option<FileFakeSuccess>,
}

/// A profile's SMS role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileSmsRole {
    Send,
    Verify,
    None,
}

/// Sends without a number in the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileWithoutNumber {
    #[default]
    Guard,
    Skip,
}

/// A canned answer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileFakeSuccess {
    /// Status code (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers; their values take the body's placeholders (`x-amzn-RequestId: '{{uuid}}'`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body template: `{{last:N}}`, `{{mask:K:L}}`, `{{uuid}}`, `{{username}}`, `{{request_id}}`.
    #[serde(default)]
    pub body: String,
}

fn default_prefix_trailing_digits() -> u8 {
    4
}
fn monitor() -> FileCheckAction {
    FileCheckAction::Monitor
}
fn default_geo_mismatch() -> Option<FileGeoMismatch> {
    Some(FileGeoMismatch { action: monitor() })
}
fn default_blocked_types() -> Vec<NumberType> {
    vec![
        NumberType::PremiumRate,
        NumberType::SharedCost,
        NumberType::PersonalNumber,
        NumberType::Pager,
        NumberType::Uan,
        NumberType::Voicemail,
    ]
}
fn rate(count: u32, secs: u64) -> Option<Rate> {
    Some(Rate {
        count,
        per: std::time::Duration::from_secs(secs),
    })
}
fn default_per_number() -> Option<Rate> {
    rate(5, 3600)
}
fn default_per_username() -> Option<Rate> {
    rate(5, 3600)
}
fn default_per_ip() -> Option<Rate> {
    rate(10, 3600)
}
fn default_per_ip_prefix() -> Option<Rate> {
    rate(30, 3600)
}
fn default_per_number_prefix() -> Option<Rate> {
    rate(20, 3600)
}
fn default_sequential() -> Option<FileSequential> {
    Some(FileSequential {
        window: default_sequential_window(),
        range_digits: default_range_digits(),
        threshold: default_sequential_threshold(),
        action: None,
    })
}
fn default_sequential_window() -> Duration {
    Duration::from_secs(600)
}
fn default_range_digits() -> u8 {
    2
}
fn default_sequential_threshold() -> u32 {
    3
}
fn default_remember_numbers() -> Option<Duration> {
    Some(Duration::from_secs(30 * 86_400))
}
fn default_conversion() -> Option<FileConversion> {
    Some(FileConversion {
        window: default_conversion_window(),
        min_sent: default_min_sent(),
        country_min_sent: default_country_min_sent(),
        threshold: default_conversion_threshold(),
        block_for: default_block_for(),
        max_block: default_max_block(),
        action: None,
    })
}
fn default_conversion_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_min_sent() -> u32 {
    20
}
fn default_country_min_sent() -> Option<u32> {
    Some(200)
}
fn default_conversion_threshold() -> f64 {
    0.2
}
fn default_block_for() -> Duration {
    Duration::from_secs(900)
}
fn default_max_block() -> Duration {
    Duration::from_secs(86_400)
}
fn default_currency() -> String {
    "USD".into()
}
fn default_status() -> u16 {
    200
}
