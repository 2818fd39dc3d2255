//! Serde mirror types of the `policies:` section as written in YAML; see `Policies::compile`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::types::{Cidr, Duration, Pattern};

/// One group of policies: the profiles it covers, the settings of each policy, and the app clients.
/// Groups with one `name` in several files merge, key by key, the main config file winning over included
/// files (so a ready pack turns policies on and the main file adds its clients).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FilePolicyGroup {
    /// Unique name, `[a-z0-9_-]+`; groups with one name merge.
    pub name: String,
    /// Globs of the profile names this group covers (`cognito-*`); a profile takes the first group that
    /// names it.
    pub profiles: Option<Vec<String>>,
    /// How refusals answer: `json` (a JSON error naming the policy), `cognito` (the Cognito API's own
    /// errors) or `oauth` (RFC 6749 errors). Default `json`.
    pub respond_as: Option<Dialect>,
    /// Who may create accounts.
    pub sign_up: Option<FileSignUp>,
    /// Operations only trusted callers may perform (Cognito's Admin* targets, the client-credentials grant).
    pub admin: Option<FileAdmin>,
    /// Only the app clients listed under `clients` may call; unknown client ids are refused.
    pub client_allowlist: Option<FileMode>,
    /// Confidential clients (with `secret_env`) must send a valid Cognito SECRET_HASH.
    pub secret_hash: Option<FileMode>,
    /// PKCE on the authorize endpoint (S256, a fresh challenge each time) and its verifier at the token endpoint.
    pub pkce: Option<FilePkce>,
    /// The OAuth grants each client may use at the token endpoint (and `implicit` at the authorize endpoint).
    pub grant_types: Option<FileGrantTypes>,
    /// Requested OAuth scopes must be among the client's `scopes`.
    pub scopes: Option<FileMode>,
    /// Validation of user-submitted attributes on sign-up and attribute updates.
    pub attributes: Option<FileAttributes>,
    /// A minimum zxcvbn strength for new passwords.
    pub password_strength: Option<FilePasswordStrength>,
    /// Refuses the last N passwords of a user on a password change (Argon2id hashes in the durable store).
    pub password_reuse: Option<FilePasswordReuse>,
    /// Refuses new passwords found in the compromised-password filter of `risk.compromised_credentials`.
    pub compromised_password: Option<FileMode>,
    /// The app clients, by client id: the allowlist, secrets, grants, scopes and per-client modes.
    pub clients: Option<BTreeMap<String, FileClient>>,
}

/// The answer format of refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// `{"error": "policy_refused", "policy": ..., "message": ..., "request_id": ...}`.
    #[default]
    Json,
    /// HTTP 400 with `{"__type": "<Name>Exception", "message": ...}`, as the Cognito API answers.
    Cognito,
    /// `{"error": "invalid_request" | "unauthorized_client" | ..., "error_description": ...}` (RFC 6749).
    Oauth,
}

/// What a policy does with a request that breaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Not checked.
    #[default]
    Off,
    /// Checked; a break is counted, logged and labelled, and the request goes on.
    Audit,
    /// Checked; a break is refused before the upstream sees the request.
    Enforce,
}

impl Mode {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Audit => "audit",
            Mode::Enforce => "enforce",
        }
    }
}

/// The policies, by the names used in config, metrics and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    SignUp,
    Admin,
    ClientAllowlist,
    SecretHash,
    Pkce,
    GrantTypes,
    Scopes,
    Attributes,
    PasswordStrength,
    PasswordReuse,
    CompromisedPassword,
}

impl Policy {
    /// Every policy, in the order the stage checks them.
    pub const ALL: [Policy; 11] = [
        Policy::Admin,
        Policy::SignUp,
        Policy::ClientAllowlist,
        Policy::SecretHash,
        Policy::GrantTypes,
        Policy::Scopes,
        Policy::Pkce,
        Policy::Attributes,
        Policy::CompromisedPassword,
        Policy::PasswordStrength,
        Policy::PasswordReuse,
    ];

    /// The snake_case name used in config, metrics and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::SignUp => "sign_up",
            Policy::Admin => "admin",
            Policy::ClientAllowlist => "client_allowlist",
            Policy::SecretHash => "secret_hash",
            Policy::Pkce => "pkce",
            Policy::GrantTypes => "grant_types",
            Policy::Scopes => "scopes",
            Policy::Attributes => "attributes",
            Policy::PasswordStrength => "password_strength",
            Policy::PasswordReuse => "password_reuse",
            Policy::CompromisedPassword => "compromised_password",
        }
    }
}

/// A policy with nothing to set but its mode.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileMode {
    #[serde(default)]
    pub mode: Mode,
}

/// Who may create accounts.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSignUp {
    #[serde(default)]
    pub mode: Mode,
    /// `closed` (default), `open`, `ranges` (only from `ranges`) or `challenge` (after a browser challenge).
    #[serde(default)]
    pub access: SignUpAccess,
    /// Addresses that may sign up when `access` is `ranges`.
    #[serde(default)]
    pub ranges: Vec<Cidr>,
}

/// Who may create accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignUpAccess {
    /// Nobody: sign-up answers as the backend does for a disabled operation.
    #[default]
    Closed,
    /// Anybody.
    Open,
    /// Callers in `ranges` only.
    Ranges,
    /// Callers who complete the browser challenge.
    Challenge,
}

/// Operations only trusted callers may perform.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    #[serde(default)]
    pub mode: Mode,
    /// Globs of the profiles that are admin operations (`cognito-admin-*`).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// OAuth grants that are admin operations (default `[client_credentials]`).
    pub grants: Option<Vec<String>>,
    /// The callers allowed (CIDRs); everyone else is refused.
    #[serde(default)]
    pub ranges: Vec<Cidr>,
}

/// PKCE settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePkce {
    #[serde(default)]
    pub mode: Mode,
    /// How long a code_challenge is remembered to refuse its reuse (default `24h`).
    pub remember: Option<Duration>,
}

/// Grant types allowed by default.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileGrantTypes {
    #[serde(default)]
    pub mode: Mode,
    /// For clients that do not list theirs (default `[authorization_code, refresh_token]`: no password grant).
    pub allowed: Option<Vec<String>>,
}

/// Attribute validation.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAttributes {
    #[serde(default)]
    pub mode: Mode,
    /// Where the attributes are in a JSON body (default `{list: /UserAttributes}`, Cognito's).
    pub from: Option<FileAttributeSource>,
    /// Rules by attribute name; attributes without a rule pass.
    #[serde(default)]
    pub rules: BTreeMap<String, FileAttributeRule>,
}

/// Where user attributes are in a JSON body.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileAttributeSource {
    /// A JSON pointer to a list of `{"Name": ..., "Value": ...}` objects (Cognito's `UserAttributes`).
    List(String),
    /// A JSON pointer to an object whose members are the attributes (`/` for the top level).
    Object(String),
}

/// The checks on one attribute; all given must hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAttributeRule {
    /// The value's type (default `string`).
    #[serde(default, rename = "type")]
    pub kind: AttributeType,
    /// Fewest characters.
    pub min_length: Option<usize>,
    /// Most characters.
    pub max_length: Option<usize>,
    /// A regular expression the whole value must match (it is anchored for you).
    pub pattern: Option<Pattern>,
    /// The characters allowed, as the inside of a regex class (`\p{L}\p{M} .'-`).
    pub chars: Option<String>,
    /// The value may be carried into messages sent to users: refuse URLs, markup, phone numbers and
    /// control characters.
    #[serde(default)]
    pub message_safe: bool,
}

/// An attribute's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributeType {
    /// Any text.
    #[default]
    String,
    /// An email address.
    Email,
    /// An E.164 phone number (`+447700900123`).
    Phone,
    /// An `http` or `https` URL.
    Url,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A date, `YYYY-MM-DD`.
    Date,
}

/// Password strength.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePasswordStrength {
    #[serde(default)]
    pub mode: Mode,
    /// The lowest zxcvbn score accepted, 0 to 4 (default 3).
    pub min_score: Option<u8>,
}

/// Password reuse prevention.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePasswordReuse {
    #[serde(default)]
    pub mode: Mode,
    /// How many of the last passwords are refused, 0 to 24 (as Cognito's PasswordHistorySize; default 5).
    pub remember: Option<usize>,
    /// Argon2id memory cost in KiB (default 19456, OWASP's minimum).
    pub memory_kib: Option<u32>,
    /// Argon2id passes (default 2).
    pub iterations: Option<u32>,
}

/// One app client.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileClient {
    /// Environment variable holding the client secret: the client is confidential and its requests must
    /// carry a valid SECRET_HASH.
    pub secret_env: Option<String>,
    /// Grants this client may use (the group's `grant_types.allowed` otherwise).
    pub grant_types: Option<Vec<String>>,
    /// Scopes this client may request; when omitted, its scopes are not checked.
    pub scopes: Option<Vec<String>>,
    /// Per-client modes that replace the group's (`{pkce: off}` for a client that cannot do PKCE).
    #[serde(default)]
    pub modes: BTreeMap<Policy, Mode>,
}
