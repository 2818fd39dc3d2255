//! TOTP enrollment: a user's secret, encrypted with AES-256-GCM, kept as a durable record (`rec/mfa/<user>`).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{Mfa, MfaError, totp};
use crate::store::{Store, record_key};

/// The record kind of enrollments.
const RECORD: &str = "mfa";

/// Binds a ciphertext to this use and to its user, so a record copied to another user does not decrypt.
const AAD_CONTEXT: &[u8] = b"authward totp secret v1\n";

/// The stored form of one user's factor.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// Format version.
    v: u8,
    /// The AES-GCM nonce, base64.
    nonce: String,
    /// The encrypted secret with its tag, base64.
    secret: String,
    created_ms: u64,
}

/// A decrypted TOTP secret; `Debug` never shows it.
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    /// The secret bytes, for computing codes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

/// What an enrollment hands back once: the secret for authenticator apps.
#[derive(Debug, Serialize)]
pub struct Enrolled {
    /// The secret in base32, as typed into an app.
    pub secret: String,
    /// `otpauth://totp/...`, as a QR code carries it.
    pub otpauth_uri: String,
}

fn aad(user: &str) -> Vec<u8> {
    [AAD_CONTEXT, user.as_bytes()].concat()
}

fn cipher(mfa: &Mfa) -> Aes256Gcm {
    Aes256Gcm::new(mfa.key().into())
}

/// Makes a new secret for `user` (a user key), replacing any earlier one, and returns it for the app.
/// `account` is the name shown in the app (the username as given).
pub async fn enroll(
    store: &dyn Store,
    mfa: &Mfa,
    user: &str,
    account: &str,
    now_ms: u64,
) -> Result<Enrolled, MfaError> {
    let secret = PendingSecret::new();
    let bytes = sealed_record(mfa, user, &secret.0, now_ms)?;
    store.put(&record_key(RECORD, user), bytes.into(), None).await?;
    Ok(secret.shown(mfa, account))
}

/// Stores a self-enrolled secret that the user has just proved, unless `user` has a factor by now (an
/// admin enrolled one, or another sign-in's enrollment got there first): true when stored.
pub async fn enroll_proved(
    store: &dyn Store,
    mfa: &Mfa,
    user: &str,
    secret: &PendingSecret,
    now_ms: u64,
) -> Result<bool, MfaError> {
    let bytes = sealed_record(mfa, user, &secret.0, now_ms)?;
    Ok(store
        .put_if_absent(&record_key(RECORD, user), bytes.into(), None)
        .await?)
}

/// The stored record of `secret` for `user`: encrypted, bound to the user.
fn sealed_record(mfa: &Mfa, user: &str, secret: &[u8], now_ms: u64) -> Result<Vec<u8>, MfaError> {
    let nonce: [u8; 12] = rand::random();
    let sealed = cipher(mfa)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: &aad(user),
            },
        )
        .map_err(|_| MfaError::Corrupt("encryption failed".into()))?;
    let record = Record {
        v: 1,
        nonce: STANDARD.encode(nonce),
        secret: STANDARD.encode(sealed),
        created_ms: now_ms,
    };
    serde_json::to_vec(&record).map_err(|e| MfaError::Corrupt(e.to_string()))
}

/// A new secret that a signing-in user is enrolling: held (encrypted) with the held sign-in until the
/// user proves it with a code; `Debug` never shows it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSecret(#[serde(with = "base64_bytes")] Vec<u8>);

impl PendingSecret {
    /// 160 random bits.
    pub fn new() -> PendingSecret {
        PendingSecret(rand::random::<[u8; totp::SECRET_LEN]>().to_vec())
    }

    /// The secret bytes, for checking codes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as an authenticator app takes it; `account` is the name the app shows.
    pub fn shown(&self, mfa: &Mfa, account: &str) -> Enrolled {
        Enrolled {
            secret: totp::base32(&self.0),
            otpauth_uri: totp::otpauth_uri(&mfa.issuer, account, &self.0),
        }
    }
}

impl Default for PendingSecret {
    fn default() -> Self {
        PendingSecret::new()
    }
}

impl std::fmt::Debug for PendingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingSecret([redacted])")
    }
}

/// Serde of bytes as base64.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Removes `user`'s factor; true when there was one.
pub async fn remove(store: &dyn Store, user: &str) -> Result<bool, MfaError> {
    Ok(store.delete(&record_key(RECORD, user)).await?)
}

/// `user`'s decrypted secret, if enrolled.
pub async fn secret(store: &dyn Store, mfa: &Mfa, user: &str) -> Result<Option<TotpSecret>, MfaError> {
    let Some(bytes) = store.get(&record_key(RECORD, user)).await? else {
        return Ok(None);
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| MfaError::Corrupt(e.to_string()))?;
    let corrupt = |what: &str| MfaError::Corrupt(format!("the enrollment's {what} is not valid"));
    let nonce = STANDARD.decode(&record.nonce).map_err(|_| corrupt("nonce"))?;
    if record.v != 1 || nonce.len() != 12 {
        return Err(corrupt("format"));
    }
    let sealed = STANDARD.decode(&record.secret).map_err(|_| corrupt("secret"))?;
    let plain = cipher(mfa)
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: &aad(user),
            },
        )
        .map_err(|_| MfaError::Undecryptable)?;
    Ok(Some(TotpSecret(plain)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::EmbeddedSources;
    use crate::store::memory::{MemoryLimits, MemoryStore};

    fn mfa(key: &str) -> Mfa {
        let f: crate::mfa::file::FileMfa =
            crate::config::parse_str(std::path::Path::new("m.yaml"), "key_env: K").unwrap();
        let mut s = EmbeddedSources::default();
        s.env.insert("K".into(), key.into());
        Mfa::compile(&f, &s).unwrap()
    }

    const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[tokio::test]
    async fn secrets_are_stored_encrypted_and_read_back_only_with_the_key_and_user() {
        let store = MemoryStore::new(MemoryLimits::default(), Arc::new(ManualClock::new(0)));
        let m = mfa(KEY_A);
        let e = enroll(&store, &m, "alice", "Alice", 1).await.unwrap();
        assert_eq!(e.secret.len(), 32, "160 bits in base32");
        assert!(e.otpauth_uri.starts_with("otpauth://totp/authward:Alice?secret="));
        assert!(e.otpauth_uri.contains(&e.secret));
        let stored = store.get("rec/mfa/alice").await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&stored);
        assert!(!text.contains(&e.secret), "not stored in the clear: {text}");
        let s = secret(&store, &m, "alice").await.unwrap().unwrap();
        assert_eq!(totp::base32(s.expose()), e.secret);
        assert_eq!(format!("{s:?}"), "TotpSecret([redacted])");
        // Another key, or the record moved to another user: it does not decrypt.
        assert!(matches!(
            secret(&store, &mfa(KEY_B), "alice").await,
            Err(MfaError::Undecryptable)
        ));
        store.put("rec/mfa/mallory", stored, None).await.unwrap();
        assert!(matches!(
            secret(&store, &m, "mallory").await,
            Err(MfaError::Undecryptable)
        ));
        // A new enrollment replaces the secret; removal forgets it.
        let again = enroll(&store, &m, "alice", "Alice", 2).await.unwrap();
        assert_ne!(again.secret, e.secret);
        assert!(remove(&store, "alice").await.unwrap());
        assert!(!remove(&store, "alice").await.unwrap());
        assert!(secret(&store, &m, "alice").await.unwrap().is_none());
    }
}
