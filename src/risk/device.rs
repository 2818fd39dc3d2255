//! The device id: a signed, long-lived `authward_device` cookie, with a fingerprint when there is none.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::signing::SigningKey;

/// The bytes of signature kept in a cookie.
const TAG_LEN: usize = 16;
/// The length of a cookie value: a 16-byte id and the tag in unpadded base64, joined by a dot.
const COOKIE_LEN: usize = 22 + 1 + 22;

/// Signs and checks device cookies.
#[derive(Debug, Clone)]
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    pub fn new(key: &[u8]) -> Self {
        DeviceKey(SigningKey::new(key))
    }

    fn tag(&self, id: &str) -> [u8; TAG_LEN] {
        let full = self.0.sign(&[id.as_bytes()]);
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    /// A new device id and its cookie value (`<id>.<tag>`).
    pub fn issue(&self) -> (String, String) {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let mut value = String::with_capacity(COOKIE_LEN);
        self.write_value(&id, &mut value);
        (id, value)
    }

    /// A new device id and a cookie line that gives it out: `<name>=<id>.<tag>` followed by `attributes`,
    /// in one string of exactly its length.
    pub fn issue_cookie(&self, name: &str, attributes: &[&str]) -> (String, String) {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let len = name.len() + 1 + COOKIE_LEN + attributes.iter().map(|a| a.len()).sum::<usize>();
        let mut line = String::with_capacity(len);
        line.push_str(name);
        line.push('=');
        self.write_value(&id, &mut line);
        for a in attributes {
            line.push_str(a);
        }
        (id, line)
    }

    fn write_value(&self, id: &str, out: &mut String) {
        out.push_str(id);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(self.tag(id), out);
    }

    /// The device id in a cookie value, when its signature holds (compared in constant time).
    pub fn verify(&self, value: &str) -> Option<String> {
        let (id, tag) = value.split_once('.')?;
        if id.len() != 22
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let given = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let want = self.tag(id);
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_slice(), want.as_slice()).into();
        ok.then(|| id.to_string())
    }
}

/// The value of the named cookie in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A fallback device fingerprint for clients that keep no cookies: user agent, accept-language and the
/// TLS fingerprint, hashed (`fp:<hex>`).
pub fn fingerprint(headers: &HeaderMap, ja4: Option<&str>) -> String {
    let h = |n: http::header::HeaderName| headers.get(n).map_or(&[][..], |v| v.as_bytes());
    let mut d = Sha256::new();
    d.update(h(http::header::USER_AGENT));
    d.update([0]);
    d.update(h(http::header::ACCEPT_LANGUAGE));
    d.update([0]);
    d.update(ja4.unwrap_or("").as_bytes());
    let mut fp = [0; 12];
    fp.copy_from_slice(&d.finalize()[..12]);
    crate::store::hex_key("fp:", &fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_verify_only_with_their_key() {
        let k = DeviceKey::new(b"0123456789abcdef0123456789abcdef");
        let (id, value) = k.issue();
        assert_eq!(value.len(), COOKIE_LEN);
        assert_eq!(k.verify(&value).as_deref(), Some(id.as_str()));
        let other = DeviceKey::new(b"another key, just as long as it!");
        assert_eq!(other.verify(&value), None);
        let mut forged = value.clone();
        forged.replace_range(0..1, if value.starts_with('A') { "B" } else { "A" });
        assert_eq!(k.verify(&forged), None);
        assert_eq!(k.verify("garbage"), None);
        assert_eq!(k.verify(""), None);
    }

    #[test]
    fn cookie_and_fingerprint_read_the_request() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; authward_device=xyz.abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "authward_device"), Some("xyz.abc"));
        assert_eq!(cookie(&h, "missing"), None);
        h.insert(http::header::USER_AGENT, "Firefox".parse().unwrap());
        let a = fingerprint(&h, Some("t13d"));
        assert_eq!(a, fingerprint(&h, Some("t13d")));
        assert_ne!(a, fingerprint(&h, Some("t12d")));
        assert!(a.starts_with("fp:"));
    }
}
