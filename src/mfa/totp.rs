//! Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA-1, 6 digits, 30-second steps.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits in a code.
pub const DIGITS: u32 = 6;
/// Steps either side of now that are accepted (clock drift, typing time).
pub const WINDOW: u64 = 1;
/// Bytes in a new secret (160 bits, as RFC 4226 recommends for HMAC-SHA-1).
pub const SECRET_LEN: usize = 20;

/// The time step of a moment in milliseconds since the UNIX epoch.
pub fn step_at(now_ms: u64) -> u64 {
    now_ms / 1000 / STEP_SECS
}

/// The HOTP value (RFC 4226 §5.3) of `secret` at `counter`, before reduction to digits.
fn hotp(secret: &[u8], counter: u64) -> u32 {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bytes = [
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ];
    u32::from_be_bytes(bytes)
}

/// The code of `secret` at time step `step`, with `digits` digits (zero-padded).
pub fn code(secret: &[u8], step: u64, digits: u32) -> String {
    let value = hotp(secret, step) % 10u32.pow(digits);
    format!("{value:0width$}", width = digits as usize)
}

/// The time step whose code `given` is, among now and [`WINDOW`] steps either side; `None` when none
/// matches. Every candidate is compared, in constant time, so timing does not tell which step was close.
pub fn check(secret: &[u8], given: &str, now_ms: u64) -> Option<u64> {
    let given = given.trim();
    if given.len() != DIGITS as usize || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(now_ms);
    let mut found = None;
    for step in now.saturating_sub(WINDOW)..=now.saturating_add(WINDOW) {
        let want = code(secret, step, DIGITS);
        if bool::from(want.as_bytes().ct_eq(given.as_bytes())) {
            found = found.or(Some(step));
        }
    }
    found
}

/// RFC 4648 base32 without padding, the form authenticator apps take secrets in.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes RFC 4648 base32 (case-insensitive; spaces, dashes and `=` padding ignored), as a person or
/// a script would copy a secret; `None` on any other character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !matches!(c, b' ' | b'-' | b'=')) {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The `otpauth://totp/...` URI that authenticator apps read from a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| {
        form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1: the 8-digit codes for the ASCII secret "12345678901234567890".
    const RFC6238_SHA1: &[(u64, &str)] = &[
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];
    const SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_test_vectors() {
        for (t, want) in RFC6238_SHA1 {
            let step = step_at(t * 1000);
            assert_eq!(code(SECRET, step, 8), *want, "T = {t}");
            // Six digits are the last six of the eight: the same number, reduced further.
            assert_eq!(code(SECRET, step, DIGITS), want[2..], "T = {t}");
        }
    }

    #[test]
    fn check_accepts_one_step_either_side_and_nothing_else() {
        let now_ms = 1_111_111_111_000;
        let now = step_at(now_ms);
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let step = now.checked_add_signed(offset).unwrap();
            let c = code(SECRET, step, DIGITS);
            assert_eq!(check(SECRET, &c, now_ms), ok.then_some(step), "offset {offset}");
        }
        assert_eq!(
            check(SECRET, &format!(" {} ", code(SECRET, now, DIGITS)), now_ms),
            Some(now)
        );
        for bad in ["", "12345", "1234567", "12345a", "１２３４５６"] {
            assert_eq!(check(SECRET, bad, now_ms), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_and_the_otpauth_uri() {
        // RFC 4648 §10.
        for (raw, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(raw.as_bytes()), want);
            assert_eq!(base32_decode(want).unwrap(), raw.as_bytes());
            assert_eq!(base32_decode(&want.to_lowercase()).unwrap(), raw.as_bytes());
        }
        assert_eq!(base32_decode("MZXW 6YTB-OI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZ1W"), None);
        let uri = otpauth_uri("Acme Login", "alice@example.com", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Login:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20Login&algorithm=SHA1&digits=6&period=30"
        );
    }
}
