//! Serde mirror types of the `mfa:` section as written in YAML; compiled by `mfa::Mfa::compile`.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::types::Duration;

/// MFA step-up: authward holds a risky sign-in's answer until the user proves a second factor (TOTP).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileMfa {
    /// Environment variable holding the key that encrypts TOTP secrets at rest (AES-256-GCM): 32 random
    /// bytes, base64 (`openssl rand -base64 32`) or 64 hex digits. Changing it makes enrolled factors
    /// unreadable.
    pub key_env: String,
    /// How long a held sign-in waits for its second factor.
    #[serde(default = "default_ttl")]
    pub challenge_ttl: Duration,
    /// Codes tried per challenge at most; once they are used up the challenge is gone.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wrong codes per user, across all of the user's challenges, within `user_window`; beyond it no
    /// code of the user's is checked until the window has passed (someone who has the password could
    /// otherwise open challenge after challenge and guess on). A right code clears the count.
    #[serde(default = "default_user_attempts")]
    pub user_attempts: u32,
    /// The window of `user_attempts`.
    #[serde(default = "default_user_window")]
    pub user_window: Duration,
    /// The issuer that authenticator apps show beside the account (the `otpauth://` URI's issuer).
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// A challenge is answered only from the client's network: the same first `ipv4_prefix` bits of an
    /// IPv4 address.
    #[serde(default = "default_v4")]
    pub ipv4_prefix: u8,
    /// The same first `ipv6_prefix` bits of an IPv6 address.
    #[serde(default = "default_v6")]
    pub ipv6_prefix: u8,
}

fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_attempts() -> u32 {
    5
}
fn default_user_attempts() -> u32 {
    10
}
fn default_user_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_issuer() -> String {
    "authward".into()
}
fn default_v4() -> u8 {
    24
}
fn default_v6() -> u8 {
    64
}
