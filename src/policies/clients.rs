//! App clients: the allowlist, per-client settings, and Cognito's SECRET_HASH checked in constant time.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::file::{FileClient, Mode, Policy};
use super::{Invalid, Strictness, invalid};
use crate::config::Sources;
use crate::profile::Secret;

/// Where Cognito requests carry the SECRET_HASH: the top level (SignUp, ForgotPassword, ...), the
/// authentication parameters (InitiateAuth, AdminInitiateAuth) and the challenge responses.
const SECRET_HASH_POINTERS: [&str; 3] = [
    "/SecretHash",
    "/AuthParameters/SECRET_HASH",
    "/ChallengeResponses/SECRET_HASH",
];

/// One compiled app client.
#[derive(Debug, Default)]
pub struct Client {
    /// The client secret, for confidential clients.
    pub secret: Option<Secret>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub modes: HashMap<Policy, Mode>,
}

impl Client {
    /// Compiles a client, reading its secret from the environment.
    pub(super) fn compile(
        id: &str,
        f: &FileClient,
        strictness: Strictness,
        sources: &dyn Sources,
    ) -> Result<Client, Invalid> {
        if id.is_empty() {
            return Err(invalid("clients", "a client id must not be empty"));
        }
        let path = format!("clients.{id}.secret_env");
        let secret = match &f.secret_env {
            Some(var) if var.trim().is_empty() => return Err(invalid(path, "name an environment variable")),
            Some(var) => match sources.env(var) {
                Some(s) if !s.is_empty() => Some(Secret::new(s)),
                _ if strictness == Strictness::Check => None,
                _ => return Err(invalid(path, format!("environment variable `{var}` is not set"))),
            },
            None => None,
        };
        Ok(Client {
            secret,
            grant_types: f.grant_types.clone(),
            scopes: f.scopes.clone(),
            modes: f.modes.iter().map(|(p, m)| (*p, *m)).collect(),
        })
    }
}

/// Cognito's SECRET_HASH: Base64(HMAC-SHA256(key = client secret, message = username + client id)).
pub fn secret_hash(secret: &str, username: &str, client_id: &str) -> String {
    STANDARD.encode(mac(secret, username, client_id))
}

fn mac(secret: &str, username: &str, client_id: &str) -> [u8; 32] {
    crate::signing::hmac_sha256(secret.as_bytes(), &[username.as_bytes(), client_id.as_bytes()])
}

/// Whether `presented` is the SECRET_HASH of `username` for the client; the digests compare in constant time.
pub fn verify_secret_hash(secret: &str, username: &str, client_id: &str, presented: &str) -> bool {
    match STANDARD.decode(presented.trim()) {
        Ok(tag) => {
            subtle::ConstantTimeEq::ct_eq(tag.as_slice(), mac(secret, username, client_id).as_slice()).into()
        }
        Err(_) => false,
    }
}

/// The SECRET_HASH a Cognito request carries, if any.
pub fn presented_secret_hash(json: &Value) -> Option<&str> {
    SECRET_HASH_POINTERS
        .iter()
        .find_map(|p| json.pointer(p).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently, the way AWS documents it, with Python's standard library:
    //   base64.b64encode(hmac.new(secret.encode(), (username + client_id).encode(), hashlib.sha256).digest())
    // (moto's `check_secret_hash` computes the same).
    const CASES: [(&str, &str, &str, &str); 2] = [
        (
            "s3cr3t-client-secret",
            "alice",
            "3n4b5urk1ft4fl3mg5e62d9ado",
            "TklKnmpNJdjloKrAH26rfaJGaXSuUX+UVypn9CqbuIQ=",
        ),
        (
            "1example23456789",
            "carol@example.com",
            "7example23456789",
            "OqjPeFG4/JBSEG6yaUfily6aCxD4xpOqBCuPYh1NM2s=",
        ),
    ];

    #[test]
    fn secret_hash_matches_the_documented_computation() {
        for (secret, user, client, expected) in CASES {
            assert_eq!(secret_hash(secret, user, client), expected);
            assert!(verify_secret_hash(secret, user, client, expected));
        }
    }

    #[test]
    fn a_wrong_secret_user_client_or_encoding_fails() {
        let (secret, user, client, good) = CASES[0];
        assert!(!verify_secret_hash("other-secret", user, client, good));
        assert!(!verify_secret_hash(secret, "Alice", client, good));
        assert!(!verify_secret_hash(
            secret,
            user,
            "3n4b5urk1ft4fl3mg5e62d9adp",
            good
        ));
        // The order is username then client id.
        assert!(!verify_secret_hash(secret, client, user, good));
        assert!(!verify_secret_hash(secret, user, client, "not base64!"));
        assert!(!verify_secret_hash(secret, user, client, &good[..good.len() - 4]));
        assert!(!verify_secret_hash(secret, user, client, ""));
    }

    #[test]
    fn the_secret_hash_is_found_where_cognito_puts_it() {
        for body in [
            r#"{"SecretHash": "h"}"#,
            r#"{"AuthParameters": {"USERNAME": "u", "SECRET_HASH": "h"}}"#,
            r#"{"ChallengeResponses": {"SECRET_HASH": "h"}}"#,
        ] {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(presented_secret_hash(&v), Some("h"), "{body}");
        }
        let v: Value = serde_json::from_str(r#"{"SecretHash": ""}"#).unwrap();
        assert_eq!(presented_secret_hash(&v), None);
    }
}
