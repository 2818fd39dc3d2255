//! HMAC-SHA256, the one keyed hash the proxy signs and checks with (device cookies, feedback links,
//! webhooks, Cognito's SECRET_HASH).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // `new_from_slice` fails only for MAC types with a fixed key length; HMAC takes keys of any length,
    // so no key (empty, short, or as long as a config value can be) reaches this `expect`.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
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
}
