//! Serde mirror types of the `risk:` section as written in YAML; compiled by `risk::Risk::compile`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::types::{Cidr, Duration, Pattern};

/// Adaptive authentication: signals, their weights, levels and the action for each level.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRisk {
    /// `off`: nothing is scored or recorded; `audit`: score and record, never act; `enforce`: act.
    #[serde(default = "default_mode")]
    pub mode: RiskMode,
    /// The mode for multi-step custom authentication flows (Cognito's CustomAuthMode); `mode` when omitted.
    pub custom_auth_mode: Option<RiskMode>,
    /// Points each signal adds to the score; a signal left out keeps its default weight, 0 turns it off.
    #[serde(default)]
    pub weights: BTreeMap<Signal, u32>,
    /// Score thresholds of the levels (a score at or above `high` is high, and so on).
    #[serde(default)]
    pub thresholds: FileThresholds,
    /// What happens at each level when a sign-in succeeds.
    #[serde(default)]
    pub actions: FileActions,
    /// Impossible travel between two successful sign-ins.
    #[serde(default)]
    pub impossible_travel: FileTravel,
    /// Failure counts and distinct counts that make velocity signals and pre-upstream blocks.
    #[serde(default)]
    pub velocity: FileVelocity,
    /// The compromised-password check.
    #[serde(default)]
    pub compromised_credentials: FileCompromised,
    /// Address ranges always blocked, and ranges never scored.
    #[serde(default)]
    pub exceptions: FileExceptions,
    /// Addresses whose sign-ins get the `deny_list` signal.
    #[serde(default)]
    pub deny_list: Vec<Cidr>,
    /// Files of addresses for the `deny_list` signal (threat-intelligence feeds): one address or CIDR per
    /// line, `#` starts a comment; relative to the config file. Read again on reload.
    #[serde(default)]
    pub deny_list_files: Vec<PathBuf>,
    /// Web-ACL labels (exact names) that add points, each with its weight.
    #[serde(default)]
    pub labels: BTreeMap<String, u32>,
    /// Regular expressions on the User-Agent that mark automation (a missing User-Agent counts too);
    /// the built-in list when omitted.
    pub automation_user_agents: Option<Vec<Pattern>>,
    /// The long-lived device cookie the proxy issues.
    #[serde(default)]
    pub device_cookie: FileDeviceCookie,
    /// What one user's history keeps.
    #[serde(default)]
    pub history: FileHistory,
    /// Per-app-client overrides (the client id comes from the profile's `client_id` field).
    #[serde(default)]
    pub clients: BTreeMap<String, FileClientOverride>,
    /// When the state store fails: `open` (score with what is known, never block for velocity; default)
    /// or `closed` (refuse the sign-in, as `block` would).
    #[serde(default)]
    pub store_failure: crate::waf::file::StoreFailure,
}

fn default_mode() -> RiskMode {
    RiskMode::Audit
}

/// Whether risk is off, recorded only, or acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskMode {
    /// Nothing is scored or recorded.
    Off,
    /// Scored and recorded; never acted on.
    Audit,
    /// Scored, recorded and acted on.
    Enforce,
}

impl RiskMode {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskMode::Off => "off",
            RiskMode::Audit => "audit",
            RiskMode::Enforce => "enforce",
        }
    }
}

/// The signals, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// A device (cookie, or fingerprint without one) this user never signed in from.
    NewDevice,
    /// A country this user never signed in from.
    NewCountry,
    /// A city this user never signed in from.
    NewCity,
    /// A network (ASN) this user never signed in from.
    NewAsn,
    /// Faster than `impossible_travel.max_speed_kmh` from the last successful sign-in.
    ImpossibleTravel,
    /// An anonymizing network (VPN, residential proxy) per the anonymous-IP database.
    AnonymousIp,
    /// A hosting provider's address.
    HostingProvider,
    /// A Tor exit node.
    TorExit,
    /// A public proxy.
    PublicProxy,
    /// An address in `deny_list`.
    DenyList,
    /// Many failed sign-ins for this user, from anywhere.
    FailuresUser,
    /// Many failed sign-ins from this address, for any user.
    FailuresIp,
    /// Many failed sign-ins for this user from this address.
    FailuresUserIp,
    /// Many distinct usernames tried from this address.
    CredentialStuffing,
    /// Many addresses failing for this username.
    DistributedBruteForce,
    /// The password is in the compromised-password filter.
    CompromisedPassword,
    /// The User-Agent looks like a script or a headless browser.
    AutomationUserAgent,
    /// A device the user reported as not theirs (feedback `invalid`).
    CompromisedDevice,
    /// A web-ACL label listed under `labels`.
    WafLabel,
}

impl Signal {
    /// Every signal, in a fixed order.
    pub const ALL: [Signal; 19] = [
        Signal::NewDevice,
        Signal::NewCountry,
        Signal::NewCity,
        Signal::NewAsn,
        Signal::ImpossibleTravel,
        Signal::AnonymousIp,
        Signal::HostingProvider,
        Signal::TorExit,
        Signal::PublicProxy,
        Signal::DenyList,
        Signal::FailuresUser,
        Signal::FailuresIp,
        Signal::FailuresUserIp,
        Signal::CredentialStuffing,
        Signal::DistributedBruteForce,
        Signal::CompromisedPassword,
        Signal::AutomationUserAgent,
        Signal::CompromisedDevice,
        Signal::WafLabel,
    ];

    /// The snake_case name used in events, headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::NewDevice => "new_device",
            Signal::NewCountry => "new_country",
            Signal::NewCity => "new_city",
            Signal::NewAsn => "new_asn",
            Signal::ImpossibleTravel => "impossible_travel",
            Signal::AnonymousIp => "anonymous_ip",
            Signal::HostingProvider => "hosting_provider",
            Signal::TorExit => "tor_exit",
            Signal::PublicProxy => "public_proxy",
            Signal::DenyList => "deny_list",
            Signal::FailuresUser => "failures_user",
            Signal::FailuresIp => "failures_ip",
            Signal::FailuresUserIp => "failures_user_ip",
            Signal::CredentialStuffing => "credential_stuffing",
            Signal::DistributedBruteForce => "distributed_brute_force",
            Signal::CompromisedPassword => "compromised_password",
            Signal::AutomationUserAgent => "automation_user_agent",
            Signal::CompromisedDevice => "compromised_device",
            Signal::WafLabel => "waf_label",
        }
    }

    /// The weight a signal has unless configured.
    pub fn default_weight(self) -> u32 {
        match self {
            Signal::NewDevice => 20,
            Signal::NewCountry => 25,
            Signal::NewCity => 10,
            Signal::NewAsn => 10,
            Signal::ImpossibleTravel => 60,
            Signal::AnonymousIp => 30,
            Signal::HostingProvider => 20,
            Signal::TorExit => 40,
            Signal::PublicProxy => 30,
            Signal::DenyList => 70,
            Signal::FailuresUser => 15,
            Signal::FailuresIp => 20,
            Signal::FailuresUserIp => 25,
            Signal::CredentialStuffing => 40,
            Signal::DistributedBruteForce => 25,
            Signal::CompromisedPassword => 45,
            Signal::AutomationUserAgent => 25,
            Signal::CompromisedDevice => 80,
            Signal::WafLabel => 0,
        }
    }
}

/// Score thresholds of the levels.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileThresholds {
    pub low: u32,
    pub medium: u32,
    pub high: u32,
}

impl Default for FileThresholds {
    fn default() -> Self {
        FileThresholds {
            low: 20,
            medium: 45,
            high: 70,
        }
    }
}

/// The action and notify flag for each level, as Cognito's account-takeover risk configuration has them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileActions {
    pub low: FileLevelAction,
    pub medium: FileLevelAction,
    pub high: FileLevelAction,
}

impl Default for FileActions {
    fn default() -> Self {
        FileActions {
            low: FileLevelAction {
                action: RiskAction::Allow,
                notify: false,
            },
            medium: FileLevelAction {
                action: RiskAction::OptionalMfa,
                notify: true,
            },
            high: FileLevelAction {
                action: RiskAction::Block,
                notify: true,
            },
        }
    }
}

/// One level's action.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileLevelAction {
    pub action: RiskAction,
    /// Send the event to the notification webhook.
    #[serde(default)]
    pub notify: bool,
}

/// What to do with a sign-in at a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskAction {
    /// Let it through.
    Allow,
    /// Ask for a second factor when the user has one.
    OptionalMfa,
    /// Demand a second factor.
    RequireMfa,
    /// Refuse it.
    Block,
}

impl RiskAction {
    /// The snake_case name used in events and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskAction::Allow => "allow",
            RiskAction::OptionalMfa => "optional_mfa",
            RiskAction::RequireMfa => "require_mfa",
            RiskAction::Block => "block",
        }
    }
}

/// Impossible-travel settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileTravel {
    /// Speeds above this between two sign-ins are impossible.
    pub max_speed_kmh: f64,
    /// Shorter distances never count (GeoIP locations are approximate).
    pub min_distance_km: f64,
}

impl Default for FileTravel {
    fn default() -> Self {
        FileTravel {
            max_speed_kmh: 900.0,
            min_distance_km: 200.0,
        }
    }
}

/// A count within a window: the signal fires at `limit`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWindowLimit {
    pub limit: u32,
    pub window: Duration,
    /// At this count the request is refused before the upstream sees it (enforce mode).
    pub block_at: Option<u32>,
}

/// Velocity settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileVelocity {
    /// Failed sign-ins for one user from anywhere (a signal only by default, so that nobody can lock a
    /// user out from elsewhere).
    pub failures_user: FileWindowLimit,
    /// Failed sign-ins from one address.
    pub failures_ip: FileWindowLimit,
    /// Failed sign-ins for one user from one address (brute force; blocks before the upstream).
    pub failures_user_ip: FileWindowLimit,
    /// Distinct usernames tried from one address (credential stuffing).
    pub distinct_users_per_ip: FileWindowLimit,
    /// Distinct addresses failing for one username (distributed brute force).
    pub distinct_ips_per_user: FileWindowLimit,
}

impl Default for FileVelocity {
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        FileVelocity {
            failures_user: FileWindowLimit {
                limit: 10,
                window: m(15),
                block_at: None,
            },
            failures_ip: FileWindowLimit {
                limit: 20,
                window: m(15),
                block_at: Some(100),
            },
            failures_user_ip: FileWindowLimit {
                limit: 5,
                window: m(15),
                block_at: Some(20),
            },
            distinct_users_per_ip: FileWindowLimit {
                limit: 5,
                window: m(10),
                block_at: Some(20),
            },
            distinct_ips_per_user: FileWindowLimit {
                limit: 10,
                window: m(60),
                block_at: None,
            },
        }
    }
}

/// Operations that the compromised-credential check applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompromisedEvent {
    SignIn,
    SignUp,
    PasswordChange,
}

/// What a compromised password leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompromisedAction {
    /// Refuse the operation (sign-up and password change before the upstream, sign-in once it succeeds).
    Block,
    /// Only the `compromised_password` signal's weight.
    None,
}

/// The compromised-credential check.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileCompromised {
    /// A filter built by `authward breach build` (relative to the config file), or `builtin:demo` for the
    /// small list that ships with the binary. No filter: the check is off.
    pub filter: Option<PathBuf>,
    /// The operations checked.
    pub events: Vec<CompromisedEvent>,
    pub action: CompromisedAction,
}

impl Default for FileCompromised {
    fn default() -> Self {
        FileCompromised {
            filter: None,
            events: vec![
                CompromisedEvent::SignIn,
                CompromisedEvent::SignUp,
                CompromisedEvent::PasswordChange,
            ],
            action: CompromisedAction::Block,
        }
    }
}

/// Risk exceptions.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileExceptions {
    /// Sign-ins from these ranges are always blocked (enforce mode), before the upstream sees them.
    pub always_block: Vec<Cidr>,
    /// Sign-ins from these ranges are never scored.
    pub never_score: Vec<Cidr>,
}

/// The device cookie.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileDeviceCookie {
    pub name: String,
    pub max_age: Duration,
    /// Environment variable holding the signing key (any length, 32+ random bytes advised); without it
    /// a random key is made once and kept in the store.
    pub secret_env: Option<String>,
    /// `Secure` attribute: `auto` sets it when the client reached the proxy over TLS.
    pub secure: CookieSecure,
}

impl Default for FileDeviceCookie {
    fn default() -> Self {
        FileDeviceCookie {
            name: "authward_device".into(),
            max_age: Duration::from_secs(400 * 86_400),
            secret_env: None,
            secure: CookieSecure::Auto,
        }
    }
}

/// When the device cookie gets `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CookieSecure {
    /// When the request came over TLS (or a trusted proxy says `X-Forwarded-Proto: https`).
    Auto,
    Always,
    Never,
}

/// Per-user history caps.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileHistory {
    /// Devices, countries, cities and networks kept per user (the least recently seen go first).
    pub max_items: usize,
    /// A user's history is forgotten after this long without a successful sign-in.
    pub ttl: Duration,
}

impl Default for FileHistory {
    fn default() -> Self {
        FileHistory {
            max_items: 20,
            ttl: Duration::from_secs(365 * 86_400),
        }
    }
}

/// Settings for one app client that replace the global ones.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileClientOverride {
    pub mode: Option<RiskMode>,
    pub custom_auth_mode: Option<RiskMode>,
    pub thresholds: Option<FileThresholds>,
    pub actions: Option<FileActions>,
    pub compromised_credentials: Option<FileClientCompromised>,
}

/// A client's compromised-credential settings (the filter is global).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileClientCompromised {
    pub events: Vec<CompromisedEvent>,
    pub action: CompromisedAction,
}
