//! HMAC-SHA256, the one keyed hash the proxy signs and checks with (device cookies, feedback links,
//! webhooks, Cognito's SECRET_HASH).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    SigningKey::new(key).sign(parts)
}

/// An HMAC-SHA256 key prepared once for many messages: the key's inner and outer pads are hashed when it
/// is made, so that each signature hashes only its message (half the work for a short one).
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    pub fn new(key: &[u8]) -> Self {
        // `new_from_slice` fails only for MAC types with a fixed key length; HMAC takes keys of any length,
        // so no key (empty, short, or as long as a config value can be) reaches this `expect`.
        SigningKey(<Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// HMAC-SHA256 of the concatenated `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_case_2_and_any_key_length() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(hmac_sha256(b"", &[b"x"]).len(), 32);
        assert_eq!(hmac_sha256(&[7u8; 1000], &[]).len(), 32);
    }

    #[test]
    fn a_prepared_key_signs_as_the_one_shot_function_every_time() {
        for key in [&b""[..], b"Jefe", &[7u8; 64], &[9u8; 65], &[1u8; 1000]] {
            let k = SigningKey::new(key);
            for msg in [&b""[..], b"a", &[3u8; 200]] {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
                mac.update(msg);
                let want: [u8; 32] = mac.finalize().into_bytes().into();
                assert_eq!(k.sign(&[msg]), want);
                assert_eq!(
                    k.sign(&[msg]),
                    want,
                    "signing again starts from the key, not the last message"
                );
            }
        }
        // RFC 4231, test case 2, through a prepared key.
        assert_eq!(
            hex::encode(SigningKey::new(b"Jefe").sign(&[b"what do ya want for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
