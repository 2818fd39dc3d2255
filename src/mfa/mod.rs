//! MFA step-up by response rewriting: held sign-ins, TOTP verification, enrollment, no user enumeration.

pub mod cognito;
pub mod enroll;
pub mod enumeration;
pub mod file;
pub mod hold;
pub mod page;
pub mod stage;
pub mod totp;
pub mod verify;

use std::time::Duration;

use base64::Engine as _;

use http::header::{ALLOW, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::config::Sources;
use crate::pipeline::{Exchange, RequestBody, Services};
use crate::proxy::body::{self, Body};
use crate::proxy::json_error;
use crate::store::StoreError;

/// Requests under this path are answered by authward (the MFA page and verification); never forwarded.
pub const PATH_PREFIX: &str = "/.authward/mfa/";

/// The second-factor methods a challenge offers, as the `{{methods}}` placeholder lists them.
pub const METHODS_JSON: &str = r#"["totp"]"#;

/// The compiled `mfa:` section.
pub struct Mfa {
    /// Encrypts TOTP secrets at rest (AES-256-GCM).
    key: [u8; 32],
    pub challenge_ttl: Duration,
    pub attempts: u32,
    pub user_attempts: u32,
    pub user_window: Duration,
    pub issuer: String,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl std::fmt::Debug for Mfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mfa")
            .field("key", &"[redacted]")
            .field("challenge_ttl", &self.challenge_ttl)
            .field("attempts", &self.attempts)
            .field("user_attempts", &self.user_attempts)
            .field("user_window", &self.user_window)
            .field("issuer", &self.issuer)
            .field("ipv4_prefix", &self.ipv4_prefix)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .finish()
    }
}

/// Why the `mfa` section did not compile.
#[derive(Debug, thiserror::Error)]
#[error("mfa.{path}: {message}")]
pub struct MfaConfigError {
    path: &'static str,
    message: String,
}

fn invalid(path: &'static str, message: impl Into<String>) -> MfaConfigError {
    MfaConfigError {
        path,
        message: message.into(),
    }
}

/// Why an MFA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be decoded.
    #[error("corrupt MFA record: {0}")]
    Corrupt(String),
    /// An enrolled secret does not decrypt with the configured key (the key changed, or the record was
    /// tampered with).
    #[error("the TOTP secret does not decrypt with the configured key")]
    Undecryptable,
}

impl Mfa {
    /// Compiles the section; the key comes from the environment variable it names.
    pub fn compile(f: &file::FileMfa, sources: &dyn Sources) -> Result<Mfa, MfaConfigError> {
        let var = f.key_env.trim();
        if var.is_empty() {
            return Err(invalid("key_env", "name an environment variable"));
        }
        let raw = sources.env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            invalid(
                "key_env",
                format!("the environment variable `{var}` is unset or empty"),
            )
        })?;
        let key = parse_key(raw.trim()).ok_or_else(|| {
            invalid(
                "key_env",
                format!(
                    "`{var}` must hold 32 random bytes, base64 (`openssl rand -base64 32`) or 64 hex digits"
                ),
            )
        })?;
        let ttl = f.challenge_ttl.get();
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600) {
            return Err(invalid("challenge_ttl", "from 1s to 1h"));
        }
        if !(1..=20).contains(&f.attempts) {
            return Err(invalid("attempts", "from 1 to 20"));
        }
        if !(1..=1000).contains(&f.user_attempts) {
            return Err(invalid("user_attempts", "from 1 to 1000"));
        }
        let user_window = f.user_window.get();
        if user_window < Duration::from_secs(60) || user_window > Duration::from_secs(7 * 86_400) {
            return Err(invalid("user_window", "from 1m to 7d"));
        }
        let issuer = f.issuer.trim();
        if issuer.is_empty() || issuer.contains(':') || issuer.len() > 64 {
            return Err(invalid("issuer", "1 to 64 characters, without `:`"));
        }
        if f.ipv4_prefix > 32 {
            return Err(invalid("ipv4_prefix", "from 0 to 32"));
        }
        if f.ipv6_prefix > 128 {
            return Err(invalid("ipv6_prefix", "from 0 to 128"));
        }
        Ok(Mfa {
            key,
            challenge_ttl: ttl,
            attempts: f.attempts,
            user_attempts: f.user_attempts,
            user_window,
            issuer: issuer.to_string(),
            ipv4_prefix: f.ipv4_prefix,
            ipv6_prefix: f.ipv6_prefix,
        })
    }

    /// The key that encrypts TOTP secrets.
    fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

/// 32 bytes from 64 hex digits or from base64 (standard or URL-safe, padded or not).
fn parse_key(text: &str) -> Option<[u8; 32]> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(text).ok())?
    };
    bytes.try_into().ok()
}

/// Serves a request under [`PATH_PREFIX`]: the MFA page (`GET` and `POST /.authward/mfa/`) and the JSON
/// verification (`POST /.authward/mfa/verify`). Bodies are read up to 4 KiB.
pub async fn serve(services: &Services, ex: &mut Exchange) -> Response<Body> {
    let rid = ex.ctx.request_id.clone();
    let Some(mfa) = ex.config.mfa.clone() else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "MFA is not configured", &rid);
    };
    let path = ex.request.uri.path().to_string();
    let page = path == PATH_PREFIX;
    let json = path.strip_prefix(PATH_PREFIX) == Some("verify");
    if !page && !json {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such MFA endpoint", &rid);
    }
    if page && ex.request.method == Method::GET {
        return page::show(services, &mfa, ex).await;
    }
    if ex.request.method != Method::POST {
        let mut r = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
            &rid,
        );
        let allow = if page { "GET, POST" } else { "POST" };
        r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    let incoming = std::mem::replace(&mut ex.body, RequestBody::Buffered(bytes::Bytes::new()));
    let bytes = match incoming {
        RequestBody::Buffered(b) => b,
        RequestBody::Streaming(b) => {
            match body::read_capped_within(b, MAX_BODY, ex.config.listen.body_read_timeout).await {
                Ok(body::Capped::Complete(b)) => b,
                Ok(body::Capped::TooLarge { body, .. }) => {
                    ex.body = RequestBody::Streaming(body);
                    return json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the request body is larger than 4096 bytes",
                        &rid,
                    );
                }
                Err(body::ReadError::Timeout(_)) => return body::too_slow(&rid),
                Err(body::ReadError::Body(_)) => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "the body could not be read",
                        &rid,
                    );
                }
            }
        }
    };
    ex.body = RequestBody::Buffered(bytes.clone());
    if page {
        page::submit(services, &mfa, ex, &bytes).await
    } else {
        verify::serve_json(services, &mfa, ex, &bytes).await
    }
}

/// The largest body the MFA endpoints read.
const MAX_BODY: u64 = 4096;

/// A new challenge id: 128 random bits as 32 lowercase hex digits.
pub fn new_challenge_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `s` has the form of a challenge id (Cognito's own sessions are far longer).
pub fn is_challenge_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmbeddedSources;

    fn compile(yaml: &str, key: Option<&str>) -> Result<Mfa, MfaConfigError> {
        let f: file::FileMfa = crate::config::parse_str(std::path::Path::new("m.yaml"), yaml).unwrap();
        let mut s = EmbeddedSources::default();
        if let Some(k) = key {
            s.env.insert("K".into(), k.into());
        }
        Mfa::compile(&f, &s)
    }

    #[test]
    fn the_key_is_32_bytes_in_hex_or_base64() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        for k in [hex_key, b64.as_str(), b64.trim_end_matches('=')] {
            let m = compile("key_env: K", Some(k)).unwrap();
            assert_eq!(m.challenge_ttl, Duration::from_secs(300));
            assert_eq!((m.attempts, m.ipv4_prefix, m.ipv6_prefix), (5, 24, 64));
            assert_eq!(m.issuer, "authward");
        }
        assert_eq!(compile("key_env: K", Some(hex_key)).unwrap().key()[1], 0x11);
        for bad in [Some("short"), Some(&hex_key[..62]), None] {
            let e = compile("key_env: K", bad).unwrap_err().to_string();
            assert!(e.starts_with("mfa.key_env: "), "{e}");
        }
        let e = compile("{key_env: K, attempts: 0}", Some(hex_key)).unwrap_err();
        assert_eq!(e.to_string(), "mfa.attempts: from 1 to 20");
        let e = compile("{key_env: K, ipv4_prefix: 33}", Some(hex_key)).unwrap_err();
        assert_eq!(e.to_string(), "mfa.ipv4_prefix: from 0 to 32");
        let e = compile("{key_env: K, issuer: 'a:b'}", Some(hex_key)).unwrap_err();
        assert!(e.to_string().starts_with("mfa.issuer"));
        let m = compile("{key_env: K, challenge_ttl: 2s, attempts: 3}", Some(hex_key)).unwrap();
        assert_eq!((m.challenge_ttl, m.attempts), (Duration::from_secs(2), 3));
        assert!(
            format!("{m:?}").contains("key: \"[redacted]\""),
            "the key is never printed"
        );
    }

    #[test]
    fn challenge_ids_are_128_random_bits_in_hex() {
        let a = new_challenge_id();
        assert!(is_challenge_id(&a), "{a}");
        assert_ne!(a, new_challenge_id());
        assert!(!is_challenge_id(&a.to_uppercase()));
        assert!(!is_challenge_id(&a[..31]));
        assert!(!is_challenge_id(
            "AYABeC0ONgJ5yr2nZ3u5GDt4B1kAHQABAAdTZXJ2aWNlABBDb2duaXRvVXNlclBvb2xz"
        ));
    }
}
