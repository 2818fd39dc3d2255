//! The per-request view that every stage reads: request id, client address (trusted proxies only), geo.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::HeaderMap;

use crate::config::{Config, canonical_ip};
use crate::geo::{Geo, GeoInfo};

/// Facts about the client and the connection, computed once per request.
#[derive(Debug)]
pub struct Context {
    /// A random 128-bit id, sent upstream as `x-authward-request-id`.
    pub request_id: String,
    /// When the request head arrived.
    pub received: Instant,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client: the peer, or the right-most untrusted `X-Forwarded-For` entry when the peer is trusted.
    pub client_ip: IpAddr,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The TLS ClientHello fingerprint (JA4) of the connection, for TLS clients.
    pub ja4: Option<Arc<str>>,
    /// The request path normalized for matching (see [`normalize_path`]); the upstream gets the original.
    pub path: String,
    geo_db: Arc<Geo>,
    geo: OnceLock<GeoInfo>,
}

impl Context {
    /// Builds the context of one request.
    pub fn new(config: &Config, conn: &Connection, request: &http::request::Parts) -> Self {
        let (peer, tls) = (conn.peer, conn.tls);
        Context {
            request_id: new_request_id(),
            received: Instant::now(),
            peer,
            client_ip: client_ip(config, peer.ip(), &request.headers),
            tls,
            ja4: conn.ja4.clone(),
            path: normalize_path(request.uri.path()),
            geo_db: config.geo.clone(),
            geo: OnceLock::new(),
        }
    }

    /// Geolocation of the client, looked up on first use.
    pub fn geo(&self) -> &GeoInfo {
        self.geo.get_or_init(|| self.geo_db.lookup(self.client_ip))
    }
}

/// What the listener knows about a client connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The connection's slot under `listen.max_connections`: a connection upgraded to a tunnel
    /// (WebSocket) keeps it until the tunnel closes.
    pub slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
    pub ja4: Option<Arc<str>>,
}

/// Normalizes a path the way backends read it, so that `/api/%6Cogin`, `//api/login` or
/// `/x/../api/./login` cannot slip past a profile written for `/api/login`: percent-escapes of unreserved
/// characters are decoded (RFC 3986 §6.2.2.2), repeated slashes collapse, and dot segments are removed
/// (§5.2.4), each segment read without its `;parameters` to tell (`/x/;y/../login` is `/login` to Tomcat).
/// An escaped slash or backslash (`%2F`, `%5C`) and a raw backslash are read as separators: WSGI hands
/// Flask and Django the decoded path (`/api%2Flogin` routes to `/api/login` there, as in Go before 1.22),
/// and IIS reads `\` as `/`; where a backend does not, the request is only inspected as a login it is not.
/// Other escapes stay as they are.
pub fn normalize_path(raw: &str) -> String {
    if is_normal(raw.as_bytes()) {
        return raw.to_owned();
    }
    normalize(raw)
}

/// Whether a path is already normal, as most are: absolute, nothing escaped, no empty or dot segment (no
/// `/` followed by `/` or `.`). One pass over the bytes: two `str::contains` with two-byte needles took
/// ~630 instructions for `/api/login`, 2 % of a pass-through sign-in's.
fn is_normal(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'/')
        && memchr::memchr2(b'%', b'\\', bytes).is_none()
        && !bytes
            .windows(2)
            .any(|w| w[0] == b'/' && matches!(w[1], b'/' | b'.'))
}

/// [`normalize_path`] for a path that is not already normal.
fn normalize(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex.filter(|b| b.is_ascii_alphanumeric() || b"-._~/\\".contains(b)) {
                decoded.push(if b == b'\\' { '/' } else { char::from(b) });
                i += 3;
                continue;
            }
        }
        if bytes[i] == b'\\' {
            decoded.push('/');
            i += 1;
            continue;
        }
        // Copy one whole character (the path may hold raw UTF-8 from a lenient client).
        let ch_len = raw[i..].chars().next().map_or(1, char::len_utf8);
        decoded.push_str(&raw[i..i + ch_len]);
        i += ch_len;
    }
    let mut out: Vec<&str> = Vec::new();
    // A segment is read without its `;parameters`, as Tomcat and Jetty read it before they resolve dot
    // segments: `..;x` is `..` and `;x` is empty there.
    for seg in decoded.split('/') {
        match seg.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut path = format!("/{}", out.join("/"));
    if trailing && path.len() > 1 {
        path.push('/');
    }
    path
}

/// The address a client is counted by in per-address limits and counters: an IPv4 address as it is, an
/// IPv6 one by its /64 network. One host or home gets a whole /64 (RFC 6177), so counting its addresses
/// one by one would give it 2^64 fresh starts; the SMS guard's `ip_prefix` groups alike.
pub fn counting_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX)))
        }
        other => other,
    }
}

/// An IP address as text, written into an inline buffer without the formatting machinery (keys built
/// per request read the client address several times). The text is exactly the address's `Display`:
/// dotted decimal for IPv4; for IPv6 lowercase hex groups without leading zeros, the first longest run
/// of two or more zero groups shortened to `::` (RFC 5952), IPv4-mapped addresses as `::ffff:a.b.c.d`.
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; IpText::MAX_LEN],
    len: usize,
}

impl IpText {
    /// The longest text: eight groups of four hex digits and seven colons.
    const MAX_LEN: usize = 39;

    /// The text of `ip`.
    pub fn new(ip: IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; Self::MAX_LEN],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => t.push_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => {
                    t.push(b"::ffff:");
                    t.push_v4(v4);
                }
                None => t.push_v6(v6),
            },
        }
        t
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, hex letters, dots and colons are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push_v4(&mut self, ip: Ipv4Addr) {
        for (i, n) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b".");
            }
            if n >= 100 {
                self.push(&[b'0' + n / 100]);
            }
            if n >= 10 {
                self.push(&[b'0' + n / 10 % 10]);
            }
            self.push(&[b'0' + n % 10]);
        }
    }

    fn push_v6(&mut self, ip: Ipv6Addr) {
        let groups = ip.segments();
        // The first longest run of zero groups: (start, length).
        let (mut zeros, mut run) = ((0, 0), (0, 0));
        for (i, &g) in groups.iter().enumerate() {
            if g != 0 {
                run = (i + 1, 0);
                continue;
            }
            run.1 += 1;
            if run.1 > zeros.1 {
                zeros = run;
            }
        }
        if zeros.1 < 2 {
            self.push_groups(&groups);
            return;
        }
        self.push_groups(&groups[..zeros.0]);
        self.push(b"::");
        self.push_groups(&groups[zeros.0 + zeros.1..]);
    }

    /// Colon-separated hex groups without leading zeros.
    fn push_groups(&mut self, groups: &[u16]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                self.push(b":");
            }
            let digits = (16 - g.leading_zeros() as usize).div_ceil(4).max(1);
            for d in (0..digits).rev() {
                self.push(&[HEX[usize::from(g >> (d * 4)) & 0xf]]);
            }
        }
    }
}

impl std::fmt::Debug for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The client address: `X-Forwarded-For` is read only when the TCP peer is a trusted proxy, right to left,
/// skipping trusted hops; the first untrusted address is the client. Unparsable entries stop the walk there
/// (what lies left of them cannot be trusted).
pub fn client_ip(config: &Config, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = canonical_ip(peer);
    if !config.is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all(http::header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .rev();
    for value in hops {
        let Ok(text) = value.to_str() else { return client };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_forwarded(entry.trim()) else {
                return client;
            };
            let ip = canonical_ip(ip);
            client = ip;
            if !config.is_trusted(ip) {
                return ip;
            }
        }
    }
    client
}

/// Parses one `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, parse_str};

    fn config(trusted: &str) -> Config {
        let text = format!("trusted_proxies: [{trusted}]\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).unwrap();
        crate::config::load(&path, Mode::Check).unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let c = config("10.0.0.0/8");
        let ip = client_ip(&c, "203.0.113.9".parse().unwrap(), &xff(&["1.2.3.4"]));
        assert_eq!(ip.to_string(), "203.0.113.9");
    }

    #[test]
    fn right_most_untrusted_wins() {
        let c = config("10.0.0.0/8, 192.168.0.0/16");
        let h = xff(&["6.6.6.6, 1.2.3.4", "192.168.1.1"]);
        assert_eq!(
            client_ip(&c, "10.0.0.1".parse().unwrap(), &h).to_string(),
            "1.2.3.4"
        );
        // All hops trusted: the left-most is the best we know.
        let h = xff(&["10.1.1.1, 10.2.2.2"]);
        assert_eq!(
            client_ip(&c, "10.0.0.1".parse().unwrap(), &h).to_string(),
            "10.1.1.1"
        );
        // Garbage stops the walk at the last good hop.
        let h = xff(&["6.6.6.6, nonsense, 10.3.3.3"]);
        assert_eq!(
            client_ip(&c, "10.0.0.1".parse().unwrap(), &h).to_string(),
            "10.3.3.3"
        );
        // Ports, brackets and IPv4-mapped peers.
        let h = xff(&["[2001:db8::7]:443"]);
        assert_eq!(
            client_ip(&c, "::ffff:10.0.0.1".parse().unwrap(), &h).to_string(),
            "2001:db8::7"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let c = |s: &str| counting_ip(s.parse().unwrap()).to_string();
        assert_eq!(c("2001:db8:bb:1::1"), "2001:db8:bb:1::");
        assert_eq!(c("2001:db8:bb:1:ffff:ffff:ffff:ffff"), "2001:db8:bb:1::");
        assert_ne!(c("2001:db8:bb:2::1"), c("2001:db8:bb:1::1"));
        assert_eq!(c("198.51.100.7"), "198.51.100.7");
        assert_eq!(c("::ffff:198.51.100.7"), "::ffff:198.51.100.7");
    }

    #[test]
    fn paths_are_normalized_for_matching() {
        for (raw, want) in [
            ("/api/login", "/api/login"),
            ("/api/%6Cogin", "/api/login"),
            ("/api/%6cogin", "/api/login"),
            ("//api///login", "/api/login"),
            ("/x/../api/./login", "/api/login"),
            ("/../../api/login", "/api/login"),
            ("/api/login/", "/api/login/"),
            // WSGI decodes an escaped slash; IIS reads a backslash as one.
            ("/api%2Flogin", "/api/login"),
            ("/api%2flogin", "/api/login"),
            ("/api%5Clogin", "/api/login"),
            ("/api\\login", "/api/login"),
            ("/x%2F..%2Flogin", "/login"),
            ("/api%252Flogin", "/api%252Flogin"),
            ("/%", "/%"),
            ("/a%4", "/a%4"),
            ("/é/%7E", "/é/~"),
            ("", "/"),
            // Tomcat drops `;parameters` before it resolves dot segments.
            ("/x/;y/../login", "/login"),
            ("/api/x/..;a=b/login", "/api/login"),
            ("/api/.;x/login;jsessionid=1", "/api/login;jsessionid=1"),
        ] {
            assert_eq!(normalize_path(raw), want, "{raw}");
        }
    }

    #[test]
    fn the_already_normal_shortcut_changes_no_path() {
        // Every path of up to 6 characters over an alphabet of separators, dots, escapes and letters: the
        // shortcut must only ever take paths that the full normalization leaves as they are.
        let alphabet = ['/', '.', '%', '2', 'F', 'a', '\\'];
        let (mut paths, mut shortcut) = (vec![String::new()], 0);
        for _ in 0..6 {
            paths = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            for p in &paths {
                if is_normal(p.as_bytes()) {
                    shortcut += 1;
                    assert_eq!(normalize(p), *p, "{p}");
                }
                assert_eq!(normalize_path(p), normalize(p), "{p}");
            }
        }
        assert!(shortcut > 1000, "the shortcut took {shortcut} paths");
    }

    /// The text must equal `Display`'s, or keys built from it would change.
    fn same_as_display(ip: IpAddr) {
        assert_eq!(IpText::new(ip).as_str(), ip.to_string(), "{ip:?}");
    }

    #[test]
    fn ipv4_text_is_display() {
        let edges = [0u8, 1, 9, 10, 11, 99, 100, 101, 109, 110, 199, 200, 249, 250, 255];
        for a in edges {
            for b in edges {
                for c in edges {
                    for d in edges {
                        same_as_display(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
                    }
                }
            }
        }
        for n in 0..=u8::MAX {
            same_as_display(IpAddr::V4(Ipv4Addr::new(n, n, n, n)));
        }
        for _ in 0..100_000 {
            same_as_display(IpAddr::V4(Ipv4Addr::from(rand::random::<u32>())));
        }
    }

    #[test]
    fn ipv6_text_is_display() {
        for text in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1:0:0:0:1",
            "0:1:0:1:0:1:0:1",
            "1:0:1:0:1:0:1:0",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:1.2.3.4",
            "::ffff:0.0.0.0",
            "::1.2.3.4",
            "::ffff:0:1.2.3.4",
            "64:ff9b::192.0.2.33",
            "fe80::1:2",
        ] {
            same_as_display(text.parse().unwrap());
        }
        // Every pattern of zero and non-zero groups, with group values of every digit count.
        let values = [
            1u16, 0xa, 0xf, 0x10, 0xab, 0xff, 0x100, 0xabc, 0xfff, 0x1000, 0xabcd, 0xffff,
        ];
        for pattern in 0u32..256 {
            for (k, v) in values.iter().enumerate() {
                let mut groups = [0u16; 8];
                for (i, g) in groups.iter_mut().enumerate() {
                    if pattern & (1 << i) != 0 {
                        *g = values[(k + i) % values.len()].max(*v % 7 + 1);
                    }
                }
                same_as_display(IpAddr::V6(Ipv6Addr::from(groups)));
            }
        }
        // IPv4-mapped addresses.
        for _ in 0..10_000 {
            same_as_display(IpAddr::V6(Ipv4Addr::from(rand::random::<u32>()).to_ipv6_mapped()));
        }
        // Random addresses, with groups zeroed often enough to make runs of every length.
        for _ in 0..100_000 {
            let mut groups: [u16; 8] = rand::random();
            let zeros: u8 = rand::random();
            for (i, g) in groups.iter_mut().enumerate() {
                if zeros & (1 << i) != 0 {
                    *g = 0;
                }
            }
            same_as_display(IpAddr::V6(Ipv6Addr::from(groups)));
        }
    }

    #[test]
    fn yaml_parse_of_trusted_list() {
        let f: crate::config::file::FileConfig = parse_str(
            std::path::Path::new("x.yaml"),
            "trusted_proxies: [127.0.0.1, '::1']\n",
        )
        .unwrap();
        assert_eq!(f.trusted_proxies.len(), 2);
    }
}
