//! Held responses: the upstream's whole answer to a sign-in, kept under a challenge id until a second
//! factor releases it, bound to the client's network and device, consumed once. The store sees neither
//! the id (only a hash of it) nor the answer (encrypted with a key derived from the id), so whoever reads
//! the store cannot take the tokens.

use std::net::IpAddr;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::MfaError;
use super::enroll::PendingSecret;
use crate::proxy::body::{self, Body};
use crate::store::Store;

/// The upstream's answer, exactly as it came (header values and body in base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    /// Names and values in order; repeated names (`Set-Cookie`) repeat.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// Captures an answer's head and its whole body.
    pub fn capture(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
        Answer {
            status: status.as_u16(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), STANDARD.encode(v.as_bytes())))
                .collect(),
            body: STANDARD.encode(body),
        }
    }

    /// The answer again, byte for byte.
    pub fn release(&self) -> Result<Response<Body>, MfaError> {
        let corrupt = || MfaError::Corrupt("a held answer does not decode".into());
        let bytes = STANDARD.decode(&self.body).map_err(|_| corrupt())?;
        let mut r = Response::new(body::full(bytes));
        *r.status_mut() = StatusCode::from_u16(self.status).map_err(|_| corrupt())?;
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| corrupt())?;
            let value = STANDARD.decode(v).map_err(|_| corrupt())?;
            let value = HeaderValue::from_bytes(&value).map_err(|_| corrupt())?;
            r.headers_mut().append(name, value);
        }
        Ok(r)
    }
}

/// Where the sign-in came from, for the user's history once the step-up succeeds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub country: Option<String>,
    pub city: Option<String>,
    pub asn: Option<u32>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// What a challenge may be answered from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// The client's network (`203.0.113.0/24`, `2001:db8:1:2::/64`).
    pub network: IpNet,
    /// The device: a hash of the device cookie's value when the client had a valid one, else the
    /// fingerprint (user agent, accept-language, TLS fingerprint).
    pub device: String,
}

/// One held sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub answer: Answer,
    pub binding: Binding,
    /// The user key (normalized username), the username as sent, and the app client.
    pub user: String,
    pub username: Option<String>,
    pub client_id: Option<String>,
    /// The device cookie's id (if the client had a valid one) and the fingerprint, to make known.
    pub device_id: Option<String>,
    pub fingerprint: String,
    pub place: Place,
    /// The risk decision that asked for the step-up.
    pub decision: String,
    pub created_ms: u64,
    /// A self-enrollment: the new secret, stored as the user's factor once a code proves it.
    #[serde(default)]
    pub enrollment: Option<PendingSecret>,
}

/// The network `ip` belongs to, with the configured prefix lengths.
pub fn network(ip: IpAddr, v4: u8, v6: u8) -> IpNet {
    let ip = crate::config::canonical_ip(ip);
    let prefix = if ip.is_ipv4() { v4 } else { v6 };
    // The prefix lengths are checked at config load (at most 32 and 128).
    IpNet::new(ip, prefix).map_or_else(|_| IpNet::from(ip), |n| n.trunc())
}

/// The device part of a binding: the device cookie's value, hashed, when the client presented a valid
/// one; else the fingerprint.
pub fn device(cookie_value: Option<&str>, fingerprint: &str) -> String {
    match cookie_value {
        Some(v) => {
            let d = Sha256::digest([b"authward device cookie\n".as_slice(), v.as_bytes()].concat());
            format!("cookie:{}", hex::encode(&d[..16]))
        }
        None => fingerprint.to_string(),
    }
}

/// Store keys of a challenge: hashed, so the store never holds a usable challenge id.
fn key(kind: &str, id: &str) -> String {
    let d = Sha256::digest([b"authward mfa challenge\n".as_slice(), id.as_bytes()].concat());
    format!("mfa:{kind}:{}", hex::encode(&d[..16]))
}

/// The AES-256-GCM cipher of one held answer: its key comes from the challenge id (128 random bits).
fn cipher(id: &str) -> Aes256Gcm {
    let k = Sha256::digest([b"authward held answer\n".as_slice(), id.as_bytes()].concat());
    Aes256Gcm::new(&k)
}

/// Holds a sign-in under a new challenge id for `ttl`; returns the id.
pub async fn put(store: &dyn Store, held: &Held, ttl: Duration) -> Result<String, MfaError> {
    let id = super::new_challenge_id();
    let plain = serde_json::to_vec(held).map_err(|e| MfaError::Corrupt(e.to_string()))?;
    let nonce: [u8; 12] = rand::random();
    let sealed = cipher(&id)
        .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
        .map_err(|_| MfaError::Corrupt("encryption failed".into()))?;
    let bytes = [nonce.as_slice(), &sealed].concat();
    store.put(&key("hold", &id), bytes.into(), Some(ttl)).await?;
    Ok(id)
}

fn decode(id: &str, bytes: Option<bytes::Bytes>) -> Result<Option<Held>, MfaError> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    if bytes.len() < 12 {
        return Err(MfaError::Corrupt("a held answer is too short".into()));
    }
    let (nonce, sealed) = bytes.split_at(12);
    let plain = cipher(id)
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map_err(|_| MfaError::Corrupt("a held answer does not decrypt".into()))?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|e| MfaError::Corrupt(e.to_string()))
}

/// The held sign-in, if the challenge is live; leaves it held.
pub async fn get(store: &dyn Store, id: &str) -> Result<Option<Held>, MfaError> {
    decode(id, store.get(&key("hold", id)).await?)
}

/// Takes the held sign-in out: of two concurrent takes, one gets it.
pub async fn take(store: &dyn Store, id: &str) -> Result<Option<Held>, MfaError> {
    let held = decode(id, store.take(&key("hold", id)).await?)?;
    store.delete(&key("attempts", id)).await?;
    Ok(held)
}

/// Forgets a challenge (its attempts are used up).
pub async fn drop_challenge(store: &dyn Store, id: &str) -> Result<(), MfaError> {
    store.delete(&key("hold", id)).await?;
    store.delete(&key("attempts", id)).await?;
    Ok(())
}

/// Counts one attempt at a challenge; returns how many there have been, this one included.
pub async fn attempt(store: &dyn Store, id: &str, ttl: Duration) -> Result<u64, MfaError> {
    let n = store.incr(&key("attempts", id), 1, ttl).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::{MemoryLimits, MemoryStore};

    fn held(answer: Answer) -> Held {
        Held {
            answer,
            binding: Binding {
                network: network("198.51.100.77".parse().unwrap(), 24, 64),
                device: device(None, "fp:abc"),
            },
            user: "alice".into(),
            username: Some("Alice".into()),
            client_id: None,
            device_id: None,
            fingerprint: "fp:abc".into(),
            place: Place::default(),
            decision: "require_mfa".into(),
            created_ms: 0,
            enrollment: None,
        }
    }

    #[tokio::test]
    async fn an_answer_is_released_byte_for_byte_once_and_not_after_its_ttl() {
        let clock = Arc::new(ManualClock::new(0));
        let store = MemoryStore::new(MemoryLimits::default(), clock.clone());
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("sid=1; HttpOnly"));
        headers.append("set-cookie", HeaderValue::from_static("csrf=2"));
        headers.append("x-odd", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let body = b"\x00binary\xff{\"token\":\"t\"}".to_vec();
        let answer = Answer::capture(StatusCode::CREATED, &headers, &body);
        let id = put(&store, &held(answer), Duration::from_secs(60)).await.unwrap();
        assert!(crate::mfa::is_challenge_id(&id));
        // The store holds neither the id nor the answer in the clear.
        let stored = store.get(&key("hold", &id)).await.unwrap().unwrap();
        let clear = Answer::capture(StatusCode::CREATED, &headers, &body).body;
        let text = String::from_utf8_lossy(&stored);
        assert!(!text.contains(&id) && !text.contains(&clear) && !text.contains("sid=1"));
        assert!(!key("hold", &id).contains(&id));
        assert!(get(&store, &id).await.unwrap().is_some(), "get leaves it held");
        let back = take(&store, &id).await.unwrap().unwrap();
        let r = back.answer.release().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers(), &headers);
        let got = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.as_ref(), body.as_slice());
        assert!(take(&store, &id).await.unwrap().is_none(), "consumed once");

        let id = put(&store, &back, Duration::from_secs(60)).await.unwrap();
        clock.advance(Duration::from_secs(60));
        assert!(get(&store, &id).await.unwrap().is_none(), "expired");
    }

    #[test]
    fn networks_and_devices() {
        let n = |ip: &str| network(ip.parse().unwrap(), 24, 64).to_string();
        assert_eq!(n("198.51.100.77"), "198.51.100.0/24");
        assert_eq!(n("::ffff:198.51.100.77"), "198.51.100.0/24");
        assert_eq!(n("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        let net = network("198.51.100.77".parse().unwrap(), 24, 64);
        assert!(net.contains(&"198.51.100.1".parse::<IpAddr>().unwrap()));
        assert!(!net.contains(&"198.51.101.1".parse::<IpAddr>().unwrap()));
        assert_eq!(device(None, "fp:1"), "fp:1");
        let c = device(Some("id.tag"), "fp:1");
        assert!(c.starts_with("cookie:") && !c.contains("id.tag"));
        assert_ne!(c, device(Some("id.other"), "fp:1"));
    }
}
