//! JA4 TLS client fingerprints (FoxIO's JA4), computed from the raw ClientHello peeked off a TCP socket.

// rustls does not expose the whole ClientHello (extension order, unknown extension types), so the
// first TLS records are peeked from the socket before it is handed to rustls, and the ClientHello is
// parsed here. Parsing is bounds-checked throughout (see `Reader`) and bounded to `MAX_HELLO_BYTES`;
// any input, however malformed, gives `None` rather than a panic.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most bytes of a connection's start that are peeked and parsed; the ClientHello, including
/// the headers of every record that carries it, must fit in this many bytes.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// RFC 8446 §5.1: a TLSPlaintext fragment is at most 2^14 bytes.
const MAX_RECORD_LEN: usize = 1 << 14;
const CONTENT_TYPE_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// Truncated-hash value used when a hashed list is empty, as the spec prescribes.
const EMPTY_HASH: &str = "000000000000";
const HASH_LEN: usize = 12;

/// Parses a TLS ClientHello from the start of a TCP stream's bytes (one or more TLS records) and
/// returns its JA4, or None if the bytes are not a complete, well-formed ClientHello.
///
/// The fingerprint follows `technical_details/JA4.md` of FoxIO-LLC/ja4: `t` (TLS over TCP), the
/// two-character version (highest `supported_versions` entry, else the ClientHello's legacy
/// version), `d`/`i` (SNI present or not), the cipher and extension counts (two digits, at most 99),
/// the first and last characters of the first ALPN value (`00` if none), then `_` and the truncated
/// SHA-256 of the sorted cipher list, then `_` and the truncated SHA-256 of the sorted extension list
/// (without SNI and ALPN) followed by `_` and the signature algorithms in their original order. GREASE
/// values (RFC 8701) are ignored everywhere; an empty hashed list gives `000000000000`.
///
/// Bytes after the ClientHello (a further record, early data) are ignored; only the first
/// [`MAX_HELLO_BYTES`] bytes are looked at.
pub fn ja4_from_bytes(bytes: &[u8]) -> Option<String> {
    match reassemble(bytes) {
        Reassembly::Complete(body) => parse_client_hello(&body).map(|hello| hello.ja4()),
        Reassembly::Incomplete | Reassembly::Invalid => None,
    }
}

/// Peeks (without consuming) up to 16 KiB from the socket until a whole ClientHello is available or
/// `timeout` passes, then computes JA4. Never fails the connection: any problem gives None.
pub async fn peek_ja4(stream: &TcpStream, timeout: Duration) -> Option<String> {
    tokio::time::timeout(timeout, peek_until_complete(stream))
        .await
        .ok()
        .flatten()
}

/// First pause between peeks that saw no new bytes; doubled up to [`MAX_PEEK_BACKOFF`].
const MIN_PEEK_BACKOFF: Duration = Duration::from_millis(1);
const MAX_PEEK_BACKOFF: Duration = Duration::from_millis(25);

async fn peek_until_complete(stream: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; MAX_HELLO_BYTES];
    let mut seen = 0usize;
    let mut backoff = MIN_PEEK_BACKOFF;
    let mut peer_closed = false;
    loop {
        // `peek` waits for readability when nothing is queued, but returns at once (with the same
        // bytes) while data is queued, so a partial hello is re-peeked after a short backoff.
        let n = stream.peek(&mut buf).await.ok()?;
        match reassemble(buf.get(..n)?) {
            Reassembly::Complete(body) => return parse_client_hello(&body).map(|hello| hello.ja4()),
            Reassembly::Invalid => return None,
            Reassembly::Incomplete => {}
        }
        // Still incomplete after a peek that followed the peer's FIN: nothing more will come.
        if n == 0 || peer_closed {
            return None;
        }
        peer_closed = stream.ready(Interest::READABLE).await.ok()?.is_read_closed();
        if peer_closed {
            continue; // one last peek, for bytes that arrived together with the FIN
        }
        if n > seen {
            seen = n;
            backoff = MIN_PEEK_BACKOFF;
        } else {
            backoff = (backoff * 2).min(MAX_PEEK_BACKOFF);
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Outcome of collecting the ClientHello handshake message from the leading TLS records.
#[derive(Debug, PartialEq, Eq)]
enum Reassembly {
    /// The ClientHello body (after the 4-byte handshake header).
    Complete(Vec<u8>),
    /// Well-formed so far, but more bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello, or one that cannot fit within [`MAX_HELLO_BYTES`].
    Invalid,
}

/// Walks the handshake records at the start of `bytes` and joins their fragments until the
/// ClientHello handshake message is whole.
fn reassemble(bytes: &[u8]) -> Reassembly {
    let window = bytes.get(..MAX_HELLO_BYTES).unwrap_or(bytes);
    let full_window = window.len() >= MAX_HELLO_BYTES;
    let mut message: Vec<u8> = Vec::new();
    let mut rest = Reader::new(window);
    loop {
        let header = rest.peek_available(RECORD_HEADER_LEN);
        if let Some(verdict) = check_record_header(header) {
            return verdict;
        }
        if header.len() < RECORD_HEADER_LEN {
            return incomplete_unless(full_window);
        }
        let fragment_len = be_uint(header.get(3..RECORD_HEADER_LEN).unwrap_or_default());
        rest.skip(RECORD_HEADER_LEN);
        let Some(fragment) = rest.take(fragment_len) else {
            return incomplete_unless(full_window);
        };
        message.extend_from_slice(fragment);

        if message.first().is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO) {
            return Reassembly::Invalid;
        }
        if let Some(len_bytes) = message.get(1..HANDSHAKE_HEADER_LEN) {
            let body_len = be_uint(len_bytes);
            // Every record costs a header, so a body this long can never fit in the window.
            if HANDSHAKE_HEADER_LEN + body_len + RECORD_HEADER_LEN > MAX_HELLO_BYTES {
                return Reassembly::Invalid;
            }
            if let Some(body) = message.get(HANDSHAKE_HEADER_LEN..HANDSHAKE_HEADER_LEN + body_len) {
                return Reassembly::Complete(body.to_vec());
            }
        }
    }
}

/// Checks as much of a record header as is present; `Some` is a final verdict.
fn check_record_header(header: &[u8]) -> Option<Reassembly> {
    if header.first().is_some_and(|&t| t != CONTENT_TYPE_HANDSHAKE) {
        return Some(Reassembly::Invalid);
    }
    // Legacy record version: 3.x for SSL 3.0 and every TLS version.
    if header.get(1).is_some_and(|&major| major != 0x03) {
        return Some(Reassembly::Invalid);
    }
    if let (Some(&hi), Some(&lo)) = (header.get(3), header.get(4)) {
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        // Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
        if len == 0 || len > MAX_RECORD_LEN {
            return Some(Reassembly::Invalid);
        }
    }
    None
}

/// Incomplete data is only worth waiting for while the window still has room.
fn incomplete_unless(full_window: bool) -> Reassembly {
    if full_window {
        Reassembly::Invalid
    } else {
        Reassembly::Incomplete
    }
}

/// A short big-endian unsigned integer (the 2-byte record and 3-byte handshake lengths).
fn be_uint(bytes: &[u8]) -> usize {
    bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
}

/// A bounds-checked cursor over a byte slice; every read returns `None` instead of panicking.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` leading bytes, without consuming them.
    fn peek_available(&self, n: usize) -> &'a [u8] {
        self.data.get(..n).unwrap_or(self.data)
    }

    fn skip(&mut self, n: usize) {
        self.data = self.data.get(n..).unwrap_or_default();
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.data.split_at_checked(n)?;
        self.data = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    /// A vector with a one-byte length prefix, as a sub-reader.
    fn vec_u8(&mut self) -> Option<Reader<'a>> {
        let len = usize::from(self.u8()?);
        self.take(len).map(Reader::new)
    }

    /// A vector with a two-byte length prefix, as a sub-reader.
    fn vec_u16(&mut self) -> Option<Reader<'a>> {
        let len = usize::from(self.u16()?);
        self.take(len).map(Reader::new)
    }

    /// Reads the rest as big-endian `u16`s; `None` if an odd byte is left over.
    fn u16_list(mut self) -> Option<Vec<u16>> {
        if self.data.len() % 2 != 0 {
            return None;
        }
        let mut out = Vec::with_capacity(self.data.len() / 2);
        while !self.is_empty() {
            out.push(self.u16()?);
        }
        Some(out)
    }
}

/// RFC 8701 GREASE values: 0x0a0a, 0x1a1a, …, 0xfafa.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0x00ff
}

fn without_grease(values: Vec<u16>) -> Vec<u16> {
    values.into_iter().filter(|&v| !is_grease(v)).collect()
}

/// The parts of a ClientHello that JA4 uses, GREASE values already removed.
#[derive(Debug, Default)]
struct ClientHello {
    legacy_version: u16,
    /// Non-GREASE entries of `supported_versions`, if the extension is present.
    supported_versions: Option<Vec<u16>>,
    ciphers: Vec<u16>,
    /// Extension types in wire order.
    extensions: Vec<u16>,
    sni: bool,
    /// The first ALPN protocol name, if there is one.
    first_alpn: Option<Vec<u8>>,
    signature_algorithms: Vec<u16>,
}

/// Parses a ClientHello handshake body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
fn parse_client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader::new(body);
    let mut hello = ClientHello {
        legacy_version: r.u16()?,
        ..ClientHello::default()
    };
    r.take(32)?; // random
    let session_id = r.vec_u8()?;
    if session_id.data.len() > 32 {
        return None;
    }
    hello.ciphers = without_grease(r.vec_u16()?.u16_list()?);
    r.vec_u8()?; // compression methods
    if r.is_empty() {
        // Extensions are optional before TLS 1.3.
        return Some(hello);
    }
    let mut extensions = r.vec_u16()?;
    if !r.is_empty() {
        return None;
    }
    let mut seen_alpn = false;
    let mut seen_sigalgs = false;
    let mut seen_versions = false;
    while !extensions.is_empty() {
        let ext_type = extensions.u16()?;
        let data = extensions.vec_u16()?;
        if is_grease(ext_type) {
            continue;
        }
        hello.extensions.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => hello.sni = true,
            EXT_ALPN if !seen_alpn => {
                seen_alpn = true;
                hello.first_alpn = parse_first_alpn(data)?;
            }
            EXT_SIGNATURE_ALGORITHMS if !seen_sigalgs => {
                seen_sigalgs = true;
                hello.signature_algorithms = without_grease(single_vec_u16(data)?.u16_list()?);
            }
            EXT_SUPPORTED_VERSIONS if !seen_versions => {
                seen_versions = true;
                let mut data = data;
                let list = data.vec_u8()?;
                if !data.is_empty() {
                    return None;
                }
                hello.supported_versions = Some(without_grease(list.u16_list()?));
            }
            _ => {}
        }
    }
    Some(hello)
}

/// An extension body that is exactly one vector with a two-byte length prefix.
fn single_vec_u16(mut data: Reader<'_>) -> Option<Reader<'_>> {
    let inner = data.vec_u16()?;
    data.is_empty().then_some(inner)
}

/// Validates an ALPN extension body (RFC 7301 §3.1) and returns its first protocol name.
/// `Some(None)` is a well-formed but empty list.
fn parse_first_alpn(data: Reader<'_>) -> Option<Option<Vec<u8>>> {
    let mut list = single_vec_u16(data)?;
    let mut first = None;
    while !list.is_empty() {
        let name = list.vec_u8()?;
        if first.is_none() {
            first = Some(name.data.to_vec());
        }
    }
    Some(first)
}

impl ClientHello {
    fn ja4(&self) -> String {
        format!("{}_{}_{}", self.ja4_a(), self.ja4_b(), self.ja4_c())
    }

    fn version(&self) -> u16 {
        self.supported_versions
            .as_ref()
            .and_then(|versions| versions.iter().copied().max())
            .unwrap_or(self.legacy_version)
    }

    fn ja4_a(&self) -> String {
        format!(
            "t{}{}{:02}{:02}{}",
            version_code(self.version()),
            if self.sni { 'd' } else { 'i' },
            self.ciphers.len().min(99),
            self.extensions.len().min(99),
            alpn_code(self.first_alpn.as_deref().unwrap_or_default()),
        )
    }

    fn ja4_b(&self) -> String {
        let mut ciphers = self.ciphers.clone();
        ciphers.sort_unstable();
        truncated_hash(&hex_list(&ciphers))
    }

    fn ja4_c(&self) -> String {
        let mut extensions: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN)
            .collect();
        if extensions.is_empty() {
            return EMPTY_HASH.to_owned();
        }
        extensions.sort_unstable();
        let mut input = hex_list(&extensions);
        if !self.signature_algorithms.is_empty() {
            input.push('_');
            input.push_str(&hex_list(&self.signature_algorithms));
        }
        truncated_hash(&input)
    }
}

fn version_code(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First and last characters of the first ALPN value; if either end byte is not ASCII alphanumeric,
/// the first and last characters of the value's hex form instead; `00` for no (or an empty) value.
fn alpn_code(alpn: &[u8]) -> String {
    let (Some(&first), Some(&last)) = (alpn.first(), alpn.last()) else {
        return "00".to_owned();
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        [char::from(first), char::from(last)].iter().collect()
    } else {
        [hex_digit(first >> 4), hex_digit(last)].iter().collect()
    }
}

/// The lower-case hex digit of a byte's low nibble.
fn hex_digit(nibble: u8) -> char {
    const DIGITS: [u8; 16] = *b"0123456789abcdef";
    char::from(DIGITS[usize::from(nibble & 0x0f)])
}

/// Four-digit lower-case hex values, comma-separated.
fn hex_list(values: &[u16]) -> String {
    values
        .iter()
        .map(|v| format!("{v:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The first 12 lower-case hex characters of SHA-256, or `000000000000` for an empty input.
fn truncated_hash(input: &str) -> String {
    if input.is_empty() {
        return EMPTY_HASH.to_owned();
    }
    let mut digest = hex::encode(Sha256::digest(input.as_bytes()));
    digest.truncate(HASH_LEN);
    digest
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    // ---- helpers -------------------------------------------------------------------------------

    /// The first flight of a real rustls 0.23 client (ring provider, TLS 1.3 + 1.2).
    fn rustls_hello(alpn: &[&[u8]], server_name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).expect("write_tls");
        }
        out
    }

    /// A test-only, independent walk over a single-record ClientHello (plain indexing: it may
    /// panic, which is fine in a test and keeps it visibly separate from the code under test).
    #[derive(Debug, Default)]
    struct Dump {
        legacy_version: u16,
        ciphers: Vec<u16>,
        extensions: Vec<u16>,
        sig_algs: Vec<u16>,
        supported_versions: Vec<u16>,
        alpn: Vec<Vec<u8>>,
    }

    fn be16(b: &[u8], at: usize) -> usize {
        (usize::from(b[at]) << 8) | usize::from(b[at + 1])
    }

    fn dump(record: &[u8]) -> Dump {
        assert_eq!(record[0], 0x16, "handshake record");
        assert_eq!(record[5], 0x01, "ClientHello");
        let b = &record[9..];
        let mut d = Dump {
            legacy_version: be16(b, 0) as u16,
            ..Dump::default()
        };
        let mut i = 2 + 32;
        i += 1 + usize::from(b[i]);
        let cipher_bytes = be16(b, i);
        d.ciphers = (0..cipher_bytes / 2)
            .map(|k| be16(b, i + 2 + 2 * k) as u16)
            .collect();
        i += 2 + cipher_bytes;
        i += 1 + usize::from(b[i]);
        let end = i + 2 + be16(b, i);
        i += 2;
        while i < end {
            let (ty, len) = (be16(b, i), be16(b, i + 2));
            let data = &b[i + 4..i + 4 + len];
            d.extensions.push(ty as u16);
            match ty {
                0x000d => {
                    d.sig_algs = (0..be16(data, 0) / 2)
                        .map(|k| be16(data, 2 + 2 * k) as u16)
                        .collect()
                }
                0x002b => {
                    d.supported_versions = (0..data[0] / 2)
                        .map(|k| be16(data, 1 + 2 * usize::from(k)) as u16)
                        .collect()
                }
                0x0010 => {
                    let mut j = 2;
                    while j < data.len() {
                        let n = usize::from(data[j]);
                        d.alpn.push(data[j + 1..j + 1 + n].to_vec());
                        j += 1 + n;
                    }
                }
                _ => {}
            }
            i += 4 + len;
        }
        d
    }

    fn sha12(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))[..12].to_owned()
    }

    /// JA4 for a GREASE-free TLS 1.3 dump, computed the long way round: hex strings sorted as
    /// strings (equal to numeric order for fixed-width lower-case hex), hashed with sha2 here.
    fn expected_ja4_tls13(d: &Dump) -> String {
        let hexes = |v: &[u16]| v.iter().map(|x| format!("{x:04x}")).collect::<Vec<String>>();
        let mut ciphers = hexes(&d.ciphers);
        ciphers.sort();
        let mut exts: Vec<String> = hexes(&d.extensions)
            .into_iter()
            .filter(|e| e != "0000" && e != "0010")
            .collect();
        exts.sort();
        let alpn = d
            .alpn
            .first()
            .map(|p| format!("{}{}", p[0] as char, p[p.len() - 1] as char));
        let a = format!(
            "t13{}{:02}{:02}{}",
            if d.extensions.contains(&0) { "d" } else { "i" },
            d.ciphers.len(),
            d.extensions.len(),
            alpn.unwrap_or_else(|| "00".into())
        );
        let c_input = format!("{}_{}", exts.join(","), hexes(&d.sig_algs).join(","));
        format!("{a}_{}_{}", sha12(&ciphers.join(",")), sha12(&c_input))
    }

    /// A ClientHello handshake message (header included) with the given contents; `extensions:
    /// None` leaves the extensions block out entirely.
    fn hello_message(legacy_version: u16, ciphers: &[u16], extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
        let mut body = legacy_version.to_be_bytes().to_vec();
        body.extend([0x11; 32]); // random
        body.push(32);
        body.extend([0x22; 32]); // session id
        body.extend(u16::try_from(ciphers.len() * 2).expect("ciphers").to_be_bytes());
        ciphers.iter().for_each(|c| body.extend(c.to_be_bytes()));
        body.extend([1, 0]); // compression: null
        if let Some(extensions) = extensions {
            let mut block = Vec::new();
            for (ty, data) in extensions {
                block.extend(ty.to_be_bytes());
                block.extend(u16::try_from(data.len()).expect("ext len").to_be_bytes());
                block.extend(data);
            }
            body.extend(u16::try_from(block.len()).expect("exts len").to_be_bytes());
            body.extend(block);
        }
        let len = u32::try_from(body.len()).expect("body len").to_be_bytes();
        let mut msg = vec![HANDSHAKE_CLIENT_HELLO, len[1], len[2], len[3]];
        msg.extend(body);
        msg
    }

    /// Wraps a handshake message in handshake records of at most `chunk` bytes each.
    fn records(message: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for fragment in message.chunks(chunk) {
            out.extend([CONTENT_TYPE_HANDSHAKE, 0x03, 0x01]);
            out.extend(u16::try_from(fragment.len()).expect("fragment").to_be_bytes());
            out.extend(fragment);
        }
        out
    }

    fn u16_vec(values: &[u16]) -> Vec<u8> {
        let mut out = u16::try_from(values.len() * 2)
            .expect("len")
            .to_be_bytes()
            .to_vec();
        values.iter().for_each(|v| out.extend(v.to_be_bytes()));
        out
    }

    fn sni_ext(host: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0u8]; // host_name
        entry.extend(u16::try_from(host.len()).expect("host").to_be_bytes());
        entry.extend(host.as_bytes());
        let mut data = u16::try_from(entry.len()).expect("list").to_be_bytes().to_vec();
        data.extend(entry);
        (EXT_SERVER_NAME, data)
    }

    fn alpn_ext(protocols: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for p in protocols {
            list.push(u8::try_from(p.len()).expect("proto"));
            list.extend(*p);
        }
        let mut data = u16::try_from(list.len()).expect("list").to_be_bytes().to_vec();
        data.extend(list);
        (EXT_ALPN, data)
    }

    fn versions_ext(versions: &[u16]) -> (u16, Vec<u8>) {
        let mut data = vec![u8::try_from(versions.len() * 2).expect("versions")];
        versions.iter().for_each(|v| data.extend(v.to_be_bytes()));
        (EXT_SUPPORTED_VERSIONS, data)
    }

    /// The cipher list of the spec's worked example, in wire order.
    const SPEC_CIPHERS: [u16; 15] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
        0x009d, 0x002f, 0x0035,
    ];
    const SPEC_SIG_ALGS: [u16; 8] = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];

    /// The extensions of the spec's worked example, in its wire order
    /// (001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015).
    fn spec_extensions(sig_algs: &[u16], versions: &[u16]) -> Vec<(u16, Vec<u8>)> {
        vec![
            (0x001b, vec![0x02, 0x00, 0x02]),
            sni_ext("example.com"),
            (0x0033, vec![0x00, 0x00]),
            alpn_ext(&[b"h2", b"http/1.1"]),
            (0x4469, vec![0x00, 0x03, 0x02, b'h', b'2']),
            (0x0017, vec![]),
            (0x002d, vec![0x01, 0x01]),
            (EXT_SIGNATURE_ALGORITHMS, u16_vec(sig_algs)),
            (0x0005, vec![0x01, 0x00, 0x00, 0x00, 0x00]),
            (0x0023, vec![]),
            (0x0012, vec![]),
            versions_ext(versions),
            (0xff01, vec![0x00]),
            (0x000b, vec![0x01, 0x00]),
            (0x000a, u16_vec(&[0x001d, 0x0017, 0x0018])),
            (0x0015, vec![0; 20]),
        ]
    }

    fn spec_hello() -> Vec<u8> {
        let exts = spec_extensions(&SPEC_SIG_ALGS, &[0x0304, 0x0303]);
        records(&hello_message(0x0303, &SPEC_CIPHERS, Some(&exts)), MAX_RECORD_LEN)
    }

    /// xorshift64*: a tiny deterministic PRNG so the randomized tests need no extra crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn sections(ja4: &str) -> (String, String, String) {
        let parts: Vec<&str> = ja4.split('_').collect();
        assert_eq!(parts.len(), 3, "{ja4}");
        (parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned())
    }

    fn is_lower_hex12(s: &str) -> bool {
        s.len() == 12
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    // ---- (1) a real rustls ClientHello ---------------------------------------------------------

    #[test]
    fn rustls_client_hello_matches_independent_computation() {
        let hello = rustls_hello(&[b"h2", b"http/1.1"], "localhost");
        let ja4 = ja4_from_bytes(&hello).expect("rustls hello parses");
        let d = dump(&hello);

        // The dump says what the hello is; print it for the record (`--nocapture`).
        let hexes = |v: &[u16]| v.iter().map(|x| format!("{x:04x}")).collect::<Vec<_>>().join(",");
        println!("ciphers     {}", hexes(&d.ciphers));
        println!("extensions  {}", hexes(&d.extensions));
        println!("sig_algs    {}", hexes(&d.sig_algs));
        println!("versions    {}", hexes(&d.supported_versions));
        println!("JA4         {ja4}");

        assert!(
            d.ciphers.iter().chain(&d.extensions).all(|&v| !is_grease(v)),
            "rustls sends no GREASE"
        );
        assert!(d.supported_versions.contains(&0x0304));
        assert_eq!(d.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(d.legacy_version, 0x0303);
        assert!(
            [0x1301, 0x1302, 0x1303].iter().all(|c| d.ciphers.contains(c)),
            "TLS 1.3 suites"
        );
        assert!(
            [EXT_SERVER_NAME, EXT_ALPN, EXT_SIGNATURE_ALGORITHMS]
                .iter()
                .all(|e| d.extensions.contains(e))
        );
        assert_eq!(ja4, expected_ja4_tls13(&d));
        // Worked by hand for rustls 0.23.46 + ring (it shuffles its extension order, which JA4
        // sorts away). If a rustls upgrade changes its hello, the lines printed above give the new
        // lists; the check against the independent computation above still holds.
        assert_eq!(ja4, RUSTLS_JA4, "rustls's ClientHello changed");

        let (a, b, c) = sections(&ja4);
        assert!(a.starts_with("t13d"), "{a}");
        assert_eq!(a.len(), 10);
        assert_eq!(&a[4..6], format!("{:02}", d.ciphers.len()));
        assert_eq!(&a[6..8], format!("{:02}", d.extensions.len()));
        assert!(a.ends_with("h2"));
        assert!(is_lower_hex12(&b) && is_lower_hex12(&c), "{ja4}");
    }

    #[test]
    fn rustls_hello_split_over_records_and_followed_by_more_bytes() {
        let hello = rustls_hello(&[b"h2", b"http/1.1"], "localhost");
        let expected = ja4_from_bytes(&hello).expect("parses");
        let message = &hello[RECORD_HEADER_LEN..];
        for chunk in [1, 2, 3, 4, 5, 64, 100, 333] {
            assert_eq!(
                ja4_from_bytes(&records(message, chunk)).as_deref(),
                Some(expected.as_str()),
                "{chunk}"
            );
        }
        // Trailing bytes (a ChangeCipherSpec, early data, anything) do not matter.
        let mut longer = hello.clone();
        longer.extend([0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        longer.extend(vec![0xee; 2 * MAX_HELLO_BYTES]);
        assert_eq!(ja4_from_bytes(&longer), Some(expected));
    }

    /// rustls 0.23.46 (ring, TLS 1.3 + 1.2, ALPN h2 + http/1.1, SNI localhost), worked by hand:
    /// ciphers  1302,1301,1303,c02c,c02b,cca9,c030,c02f,cca8,00ff (10)
    /// sorted   00ff,1301,1302,1303,c02b,c02c,c02f,c030,cca8,cca9  → sha256 61a7ad8aa9b6…
    /// exts     0000,0005,000a,000b,000d,0010,0017,0023,002b,002d,0033 (11, any order)
    /// sig_algs 0503,0403,0807,0806,0805,0804,0601,0501,0401
    /// c input  0005,000a,000b,000d,0017,0023,002b,002d,0033_0503,0403,0807,0806,0805,0804,0601,0501,0401
    ///          → sha256 3fcd1a44f3e3…
    const RUSTLS_JA4: &str = "t13d1011h2_61a7ad8aa9b6_3fcd1a44f3e3";

    #[test]
    fn rustls_worked_example_from_constructed_bytes() {
        let ciphers = [
            0x1302, 0x1301, 0x1303, 0xc02c, 0xc02b, 0xcca9, 0xc030, 0xc02f, 0xcca8, 0x00ff,
        ];
        let sig_algs = [
            0x0503, 0x0403, 0x0807, 0x0806, 0x0805, 0x0804, 0x0601, 0x0501, 0x0401,
        ];
        let exts = vec![
            (0x0005, vec![0x01, 0x00, 0x00, 0x00, 0x00]),
            (0x0017, vec![]),
            (0x0033, vec![0x00, 0x00]),
            (0x000b, vec![0x01, 0x00]),
            sni_ext("localhost"),
            (EXT_SIGNATURE_ALGORITHMS, u16_vec(&sig_algs)),
            versions_ext(&[0x0304, 0x0303]),
            (0x0023, vec![]),
            (0x000a, u16_vec(&[0x001d, 0x0017, 0x0018])),
            alpn_ext(&[b"h2", b"http/1.1"]),
            (0x002d, vec![0x01, 0x01]),
        ];
        let hello = records(&hello_message(0x0303, &ciphers, Some(&exts)), MAX_RECORD_LEN);
        assert_eq!(ja4_from_bytes(&hello).as_deref(), Some(RUSTLS_JA4));
    }

    // ---- (2) the spec's published example -------------------------------------------------------

    #[test]
    fn spec_example_reproduced_from_bytes() {
        assert_eq!(
            ja4_from_bytes(&spec_hello()).as_deref(),
            Some("t13d1516h2_8daaf6152771_e5627efa2ab1")
        );
    }

    #[test]
    fn spec_example_without_signature_algorithms_ends_without_underscore() {
        // The spec gives 6d807ffa2a79 for the extension list with no signature algorithms; an
        // empty signature_algorithms list keeps the extension (and the count) but drops `_…`.
        let exts = spec_extensions(&[], &[0x0304, 0x0303]);
        let hello = records(&hello_message(0x0303, &SPEC_CIPHERS, Some(&exts)), MAX_RECORD_LEN);
        assert_eq!(
            ja4_from_bytes(&hello).as_deref(),
            Some("t13d1516h2_8daaf6152771_6d807ffa2a79")
        );
    }

    #[test]
    fn spec_hash_strings() {
        let ciphers = "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9";
        assert_eq!(truncated_hash(ciphers), "8daaf6152771");
        let exts = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01";
        assert_eq!(truncated_hash(exts), "6d807ffa2a79");
        let with_sigs = format!("{exts}_0403,0804,0401,0503,0805,0501,0806,0601");
        assert_eq!(
            hex::encode(Sha256::digest(with_sigs.as_bytes())),
            "e5627efa2ab19723084c1033a96c694a45826ab5a460d2d3fd5ffcfe97161c95"
        );
        assert_eq!(truncated_hash(""), "000000000000");
    }

    #[test]
    fn alpn_characters_follow_the_spec() {
        assert_eq!(alpn_code(b"h2"), "h2");
        assert_eq!(alpn_code(b"http/1.1"), "h1");
        assert_eq!(alpn_code(b"x"), "xx");
        assert_eq!(alpn_code(b""), "00");
        assert_eq!(alpn_code(&[0xab]), "ab");
        assert_eq!(alpn_code(&[0xab, 0xcd]), "ad");
        assert_eq!(alpn_code(&[0x30, 0xab]), "3b");
        assert_eq!(alpn_code(&[0x30, 0x31, 0xab, 0xcd]), "3d");
        assert_eq!(alpn_code(&[0x30, 0xab, 0xcd, 0x31]), "01");
        assert_eq!(alpn_code(b"-h2"), "22");
    }

    // ---- (3) GREASE ------------------------------------------------------------------------------

    #[test]
    fn grease_values_are_recognised() {
        let grease: Vec<u16> = (0..16).map(|n| (n << 12) | 0x0a00 | (n << 4) | 0x0a).collect();
        assert_eq!(grease.first(), Some(&0x0a0a));
        assert_eq!(grease.last(), Some(&0xfafa));
        assert!(grease.iter().all(|&g| is_grease(g)));
        let not_grease = [0x0a0b, 0x1a2a, 0x0a1a, 0x0000, 0x00ff, 0x5600, 0xfe0d, 0xaaab];
        assert!(not_grease.iter().all(|&v| !is_grease(v)));
        assert_eq!((0..=u16::MAX).filter(|&v| is_grease(v)).count(), 16);
    }

    #[test]
    fn grease_is_ignored_everywhere() {
        let mut ciphers = vec![0x2a2a];
        ciphers.extend(SPEC_CIPHERS);
        ciphers.push(0xdada);
        let mut sig_algs = vec![0x3a3a];
        sig_algs.extend(SPEC_SIG_ALGS);
        let mut exts = vec![(0x0a0a, vec![])];
        exts.extend(spec_extensions(&sig_algs, &[0x7a7a, 0x0304, 0x0303]));
        exts.push((0xfafa, vec![0x00]));
        let hello = records(&hello_message(0x0303, &ciphers, Some(&exts)), MAX_RECORD_LEN);
        assert_eq!(
            ja4_from_bytes(&hello).as_deref(),
            Some("t13d1516h2_8daaf6152771_e5627efa2ab1")
        );
        // A supported_versions list of nothing but GREASE falls back to the legacy version.
        let exts = vec![sni_ext("a.example"), versions_ext(&[0xeaea])];
        let hello = records(&hello_message(0x0303, &[0x1301], Some(&exts)), MAX_RECORD_LEN);
        assert!(ja4_from_bytes(&hello).expect("parses").starts_with("t12d0102"));
    }

    // ---- (4) SNI, ALPN, version and empty-list rules --------------------------------------------

    #[test]
    fn no_sni_gives_i_and_no_alpn_gives_00() {
        // rustls sends no SNI for an IP address.
        let ja4 = ja4_from_bytes(&rustls_hello(&[b"h2"], "127.0.0.1")).expect("parses");
        assert!(ja4.starts_with("t13i"), "{ja4}");
        assert_eq!(&ja4[8..10], "h2");
        let ja4 = ja4_from_bytes(&rustls_hello(&[], "localhost")).expect("parses");
        assert!(ja4.starts_with("t13d"), "{ja4}");
        assert_eq!(&ja4[8..10], "00");
        let d = dump(&rustls_hello(&[], "localhost"));
        assert!(!d.extensions.contains(&EXT_ALPN));

        // Constructed: no SNI extension, and an ALPN extension with an empty list.
        let exts = vec![alpn_ext(&[]), (EXT_SIGNATURE_ALGORITHMS, u16_vec(&[0x0403]))];
        let hello = records(&hello_message(0x0303, &[0x1301], Some(&exts)), MAX_RECORD_LEN);
        let ja4 = ja4_from_bytes(&hello).expect("parses");
        assert_eq!(&ja4[..11], "t12i010200_");
        assert_eq!(&ja4[24..], truncated_hash("000d_0403"));
    }

    #[test]
    fn version_comes_from_supported_versions_else_legacy() {
        let with = |legacy: u16, exts: &[(u16, Vec<u8>)]| {
            let hello = records(&hello_message(legacy, &[0x002f], Some(exts)), MAX_RECORD_LEN);
            ja4_from_bytes(&hello).expect("parses")[..3].to_owned()
        };
        assert_eq!(with(0x0303, &[versions_ext(&[0x0303, 0x0304])]), "t13");
        assert_eq!(with(0x0303, &[]), "t12");
        assert_eq!(with(0x0302, &[]), "t11");
        assert_eq!(with(0x0301, &[]), "t10");
        assert_eq!(with(0x0300, &[]), "ts3");
        assert_eq!(with(0x0305, &[]), "t00");
        assert_eq!(with(0x0301, &[versions_ext(&[0x0302])]), "t11");
    }

    #[test]
    fn empty_lists_hash_to_zeros_and_counts_cap_at_99() {
        // No extensions block at all, no ciphers.
        let hello = records(&hello_message(0x0303, &[], None), MAX_RECORD_LEN);
        assert_eq!(
            ja4_from_bytes(&hello).as_deref(),
            Some("t12i000000_000000000000_000000000000")
        );
        // Only SNI and ALPN: counted, but the extension hash has nothing left to hash.
        let exts = vec![sni_ext("a.example"), alpn_ext(&[b"http/1.1"])];
        let hello = records(&hello_message(0x0303, &[0x1301], Some(&exts)), MAX_RECORD_LEN);
        let ja4 = ja4_from_bytes(&hello).expect("parses");
        assert_eq!(ja4, format!("t12d0102h1_{}_000000000000", truncated_hash("1301")));
        // 120 ciphers and 120 extensions are shown as 99 each, but all of them are hashed.
        let ciphers: Vec<u16> = (0x0100..0x0178).collect();
        let exts: Vec<(u16, Vec<u8>)> = (0x0100..0x0178).map(|t| (t, vec![])).collect();
        let hello = records(&hello_message(0x0303, &ciphers, Some(&exts)), MAX_RECORD_LEN);
        let ja4 = ja4_from_bytes(&hello).expect("parses");
        assert_eq!(&ja4[..10], "t12i999900");
        assert_eq!(&ja4[11..23], truncated_hash(&hex_list(&ciphers)));
    }

    // ---- (5) peek_ja4 on a real socket pair --------------------------------------------------

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn peek_ja4_does_not_consume_the_hello() {
        let hello = rustls_hello(&[b"h2", b"http/1.1"], "localhost");
        let expected = ja4_from_bytes(&hello).expect("parses");
        let (mut client, mut server) = socket_pair().await;
        client.write_all(&hello).await.expect("write");

        let ja4 = peek_ja4(&server, Duration::from_secs(5)).await;
        assert_eq!(ja4.as_deref(), Some(expected.as_str()));

        let mut read_back = vec![0u8; hello.len()];
        server.read_exact(&mut read_back).await.expect("read after peek");
        assert_eq!(read_back, hello);
    }

    #[tokio::test]
    async fn peek_ja4_waits_for_a_hello_that_arrives_in_pieces() {
        let hello = rustls_hello(&[b"h2", b"http/1.1"], "localhost");
        let expected = ja4_from_bytes(&hello).expect("parses");
        let wire = records(&hello[RECORD_HEADER_LEN..], 150);
        let (mut client, mut server) = socket_pair().await;
        let pieces = wire.clone();
        let writer = tokio::spawn(async move {
            for piece in pieces.chunks(97) {
                client.write_all(piece).await.expect("write");
                client.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            client
        });
        let ja4 = peek_ja4(&server, Duration::from_secs(5)).await;
        assert_eq!(ja4.as_deref(), Some(expected.as_str()));
        let _client = writer.await.expect("writer");
        let mut read_back = vec![0u8; wire.len()];
        server.read_exact(&mut read_back).await.expect("read after peek");
        assert_eq!(read_back, wire);
    }

    #[tokio::test]
    async fn peek_ja4_gives_none_on_garbage_stall_and_close() {
        // Not TLS: answered at once, well inside the timeout.
        let (mut client, server) = socket_pair().await;
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let started = std::time::Instant::now();
        assert_eq!(peek_ja4(&server, Duration::from_secs(5)).await, None);
        assert!(started.elapsed() < Duration::from_secs(2));

        // Half a hello, then silence: None once the timeout passes.
        let hello = rustls_hello(&[b"h2"], "localhost");
        let (mut client, server) = socket_pair().await;
        client.write_all(&hello[..hello.len() / 2]).await.expect("write");
        let started = std::time::Instant::now();
        assert_eq!(peek_ja4(&server, Duration::from_millis(200)).await, None);
        assert!(started.elapsed() >= Duration::from_millis(190));

        // Half a hello, then the client goes away: noticed without waiting for the timeout.
        let (mut client, server) = socket_pair().await;
        client.write_all(&hello[..hello.len() / 2]).await.expect("write");
        drop(client);
        let started = std::time::Instant::now();
        assert_eq!(peek_ja4(&server, Duration::from_secs(5)).await, None);
        assert!(started.elapsed() < Duration::from_secs(2));

        // A whole hello, then the client shuts down its side at once: still fingerprinted.
        let (mut client, server) = socket_pair().await;
        client.write_all(&hello).await.expect("write");
        client.shutdown().await.expect("shutdown");
        assert_eq!(
            peek_ja4(&server, Duration::from_secs(5)).await,
            ja4_from_bytes(&hello)
        );

        // Nothing at all, then close.
        let (client, server) = socket_pair().await;
        drop(client);
        assert_eq!(peek_ja4(&server, Duration::from_secs(5)).await, None);
    }

    // ---- (6) garbage, truncated, oversized ----------------------------------------------------

    #[test]
    fn truncated_hellos_are_incomplete_not_errors() {
        let hello = rustls_hello(&[b"h2", b"http/1.1"], "localhost");
        for len in 0..hello.len() {
            assert_eq!(ja4_from_bytes(&hello[..len]), None, "prefix {len}");
            assert_eq!(reassemble(&hello[..len]), Reassembly::Incomplete, "prefix {len}");
        }
        assert!(ja4_from_bytes(&hello).is_some());
    }

    #[test]
    fn malformed_inputs_give_none() {
        let good = spec_hello();
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            edit(&mut bytes);
            ja4_from_bytes(&bytes)
        };
        assert_eq!(ja4_from_bytes(b""), None);
        assert_eq!(ja4_from_bytes(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(ja4_from_bytes(&[0x80, 0x2e, 0x01, 0x03, 0x01]), None); // SSLv2-style hello
        assert_eq!(with(&|b| b[0] = 0x17), None); // application data record
        assert_eq!(with(&|b| b[1] = 0x02), None); // record version not 3.x
        assert_eq!(with(&|b| b[5] = 0x02), None); // ServerHello
        assert_eq!(with(&|b| b[3..5].copy_from_slice(&[0x40, 0x01])), None); // record > 2^14
        assert_eq!(reassemble(&[0x16, 0x03, 0x01, 0x00, 0x00]), Reassembly::Invalid); // empty record
        assert_eq!(with(&|b| b[9 + 2 + 32] = 33), None); // session id longer than 32
        assert_eq!(with(&|b| b.truncate(b.len() - 1)), None); // extension block cut short
        // Record and handshake lengths that agree but an extension block with a byte left over.
        assert_eq!(
            with(&|b| {
                b.push(0);
                let body = b.len() - 9;
                b[3..5].copy_from_slice(&u16::try_from(body + 4).expect("len").to_be_bytes());
                b[6..9].copy_from_slice(&u32::try_from(body).expect("len").to_be_bytes()[1..]);
            }),
            None
        );
        // The hello's second record is an alert, not a handshake record.
        let mut split = records(&good[RECORD_HEADER_LEN..], 100);
        split[RECORD_HEADER_LEN + 100] = 0x15;
        assert_eq!(ja4_from_bytes(&split), None);
        // Malformed inner extensions: odd-length signature algorithms, ALPN list overrun.
        let exts = vec![(EXT_SIGNATURE_ALGORITHMS, vec![0x00, 0x03, 0x04, 0x03, 0x08])];
        assert_eq!(
            ja4_from_bytes(&records(&hello_message(0x0303, &[1], Some(&exts)), 1 << 14)),
            None
        );
        let exts = vec![(EXT_ALPN, vec![0x00, 0x03, 0x05, b'h', b'2'])];
        assert_eq!(
            ja4_from_bytes(&records(&hello_message(0x0303, &[1], Some(&exts)), 1 << 14)),
            None
        );
        let exts = vec![(EXT_SUPPORTED_VERSIONS, vec![0x03, 0x03, 0x04, 0x03])];
        assert_eq!(
            ja4_from_bytes(&records(&hello_message(0x0303, &[1], Some(&exts)), 1 << 14)),
            None
        );
    }

    /// A hello padded (extension 0x0015) so that its records take exactly `wire_len` bytes.
    fn padded_hello(wire_len: usize, chunk: usize) -> Vec<u8> {
        let base = hello_message(0x0303, &SPEC_CIPHERS, Some(&[(0x0015, vec![])])).len();
        // Wire size = message + one header per record; find the padding that lands on `wire_len`.
        (0..wire_len)
            .map(|pad| {
                records(
                    &hello_message(0x0303, &SPEC_CIPHERS, Some(&[(0x0015, vec![0; pad])])),
                    chunk,
                )
            })
            .skip_while(|wire| wire.len() < wire_len)
            .find(|wire| wire.len() == wire_len)
            .unwrap_or_else(|| panic!("no padding gives {wire_len} bytes from {base}"))
    }

    #[test]
    fn oversized_hellos_give_none_and_the_cap_is_exact() {
        for chunk in [MAX_RECORD_LEN, 4000] {
            let fits = padded_hello(MAX_HELLO_BYTES, chunk);
            assert!(
                ja4_from_bytes(&fits).is_some(),
                "exactly {MAX_HELLO_BYTES} bytes, records of {chunk}"
            );
            let too_big = padded_hello(MAX_HELLO_BYTES + 1, chunk);
            assert_eq!(ja4_from_bytes(&too_big), None, "records of {chunk}");
            assert_eq!(reassemble(&too_big), Reassembly::Invalid);
        }
        // A handshake header that announces 16 MiB is rejected without waiting for it.
        assert_eq!(
            reassemble(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff]),
            Reassembly::Invalid
        );
    }

    #[test]
    fn random_and_mutated_inputs_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let seeds = [
            rustls_hello(&[b"h2", b"http/1.1"], "localhost"),
            rustls_hello(&[], "127.0.0.1"),
            spec_hello(),
            records(&spec_hello()[RECORD_HEADER_LEN..], 37),
        ];
        let mut parsed = 0usize;
        for round in 0..20_000 {
            let mut bytes = if round % 5 == 0 {
                let len = rng.below(600);
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if let Some(first) = b.first_mut() {
                    *first = 0x16;
                }
                if b.len() > 1 {
                    b[1] = 0x03;
                }
                b
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            for _ in 0..=rng.below(4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => bytes[at] ^= 1 << rng.below(8),
                    2 => bytes.truncate(at),
                    _ => bytes.insert(at, rng.next() as u8),
                }
            }
            if let Some(ja4) = ja4_from_bytes(&bytes) {
                parsed += 1;
                let (a, b, c) = sections(&ja4);
                assert_eq!(a.len(), 10, "{ja4}");
                assert!(is_lower_hex12(&b) && is_lower_hex12(&c), "{ja4}");
            }
        }
        assert!(
            parsed > 0,
            "some mutations (e.g. inside the random bytes) still parse"
        );
    }
}
