//! Plain serde types that mirror the YAML config; the compiled form is built from them in `config::compiled`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};

use super::types::{ByteSize, Cidr, Duration};
use crate::policies::file::FilePolicyGroup;
use crate::profile::file::FileProfile;
use crate::sms::file::FileSms;
use crate::waf::file::FileWebAcl;

/// The whole config file: every top-level section of DESIGN.md's "Interfaces".
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the proxy listens and the limits of its listeners.
    #[serde(default)]
    pub listen: FileListen,
    /// TLS certificate and key for the `https` listeners (PEM files, reloaded with the config).
    pub tls: Option<Positioned<FileTls>>,
    /// The admin listener (health, metrics, the admin API).
    #[serde(default)]
    pub admin: Positioned<FileAdmin>,
    /// The login service that authward protects.
    pub upstream: Option<Positioned<FileUpstream>>,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs). Empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// Where state lives.
    #[serde(default)]
    pub store: FileStore,
    /// MaxMind databases for geolocation, ASN and anonymous-IP lookups.
    pub geoip: Option<Positioned<FileGeoip>>,
    /// Route profiles: which requests are sign-ins, sign-ups, SMS sends... and how to read them.
    #[serde(default)]
    pub profiles: Vec<Positioned<FileProfile>>,
    /// Web ACL: rules every request meets, in priority order.
    pub web_acl: Option<Positioned<FileWebAcl>>,
    /// SMS pumping and toll-fraud protection for the operations that make the backend send an SMS.
    pub sms: Option<Positioned<FileSms>>,
    /// Sign-in risk scoring (not available in this version).
    pub risk: Option<Positioned<crate::risk::file::FileRisk>>,
    /// Security best practices enforced at the edge, per group of profiles and per app client.
    #[serde(default)]
    pub policies: Vec<Positioned<FilePolicyGroup>>,
    /// MFA step-up: held sign-ins, TOTP verification and enrollment.
    pub mfa: Option<Positioned<crate::mfa::file::FileMfa>>,
    /// Browser challenge and CAPTCHA (not available in this version).
    pub challenge: Option<NotYetChallenge>,
    /// Auth events: per-user history, sinks, the notification webhook and feedback links.
    #[serde(default)]
    pub events: Positioned<crate::events::file::FileEvents>,
    /// Globs of rule files to merge in, relative to this file.
    #[serde(default)]
    pub include: Vec<Positioned<String>>,
}

/// A rule file brought in by `include:`: the sections that may be split out of the main file.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileFragment {
    /// Route profiles to add.
    #[serde(default)]
    pub profiles: Vec<Positioned<FileProfile>>,
    /// Web ACL rules and rule groups to add.
    pub web_acl: Option<Positioned<FileWebAcl>>,
    /// Policy groups to add (a group named in several files merges; the main file wins).
    #[serde(default)]
    pub policies: Vec<Positioned<FilePolicyGroup>>,
}

/// Listener settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileListen {
    /// Plain-HTTP listeners (HTTP/1.1 and h2c).
    pub http: Vec<SocketAddr>,
    /// TLS listeners (HTTP/1.1 and h2 through ALPN); needs `tls`.
    pub https: Vec<SocketAddr>,
    /// At most this many client connections at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Time allowed for a client to send a request head (HTTP/1.1), for a new connection (after its TLS
    /// handshake) to send its first bytes, and for a kept-alive connection (HTTP/1.1 or HTTP/2) to start
    /// its next request; an idle HTTP/2 connection is closed after one to two of it.
    pub header_read_timeout: Duration,
    /// Time allowed for a client to send a request body that authward reads whole (profiled routes, the
    /// MFA endpoints), and the longest pause in a body streamed to the upstream; a slower client gets 408
    /// and its connection is closed.
    pub body_read_timeout: Duration,
    /// A WebSocket tunnel across which no byte has passed either way for this long is closed (clients and
    /// servers that ping more often keep theirs open).
    pub tunnel_idle_timeout: Duration,
    /// On SIGTERM/SIGINT, time given to requests in flight and open tunnels before connections are closed.
    pub shutdown_grace: Duration,
    /// Cap on a request body that authward must read (profiled routes); larger ones get 413.
    pub body_limit: ByteSize,
    /// Cap on an upstream answer that authward must read to classify it; larger ones pass unclassified.
    pub response_body_limit: ByteSize,
    /// One log line per request (never with passwords, codes or tokens).
    pub access_log: bool,
}

impl Default for FileListen {
    fn default() -> Self {
        FileListen {
            http: vec![SocketAddr::from(([0, 0, 0, 0], 8080))],
            https: Vec::new(),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            tunnel_idle_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            body_limit: ByteSize(64 * 1024),
            response_body_limit: ByteSize(256 * 1024),
            access_log: true,
        }
    }
}

/// PEM files for TLS termination.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Admin listener settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileAdmin {
    /// Address of the admin listener.
    pub listen: SocketAddr,
    /// Environment variable that holds the bearer token for `/admin/v1/`. Unset or empty: the admin API is off.
    pub token_env: Option<String>,
}

impl Default for FileAdmin {
    fn default() -> Self {
        FileAdmin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9901)),
            token_env: None,
        }
    }
}

/// The protected login service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    /// Base URL: `http://127.0.0.1:3000` or `https://login.internal` (a path is prefixed to every request).
    pub url: String,
    /// Time allowed to open a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response head, from the end of the request's body (a large upload
    /// that keeps coming is not a slow upstream), or while the upstream takes none of the body.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// The longest the upstream's answer body may go without a byte once its head has come; then the
    /// answer is cut off and the client's connection closed (nginx's `proxy_read_timeout`).
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Duration,
    /// Extra CA certificates (PEM) to trust for an https upstream, besides the system roots.
    pub ca: Option<PathBuf>,
    /// Keep the client's Host header (default: send the upstream's host, as nginx does).
    #[serde(default)]
    pub preserve_host: bool,
    /// Idle pooled connections are closed after this long.
    #[serde(default = "default_pool_idle")]
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept at most.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_pool_idle() -> Duration {
    Duration::from_secs(90)
}
fn default_pool_max_idle() -> usize {
    256
}

/// State backend.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileStore {
    /// Which backend holds the state: `embedded` (the default: counters in memory, durable records in a
    /// database file), `memory` (everything in process, lost on restart) or `redis` (shared by every
    /// replica).
    pub kind: StoreKind,
    /// Most keys kept in memory (counters, sets, short-lived values); the least recently used go first
    /// beyond it.
    pub max_keys: usize,
    /// Approximate memory cap for the state kept in memory.
    pub max_memory: ByteSize,
    /// `embedded`: the database file of the durable records, relative to this config file's directory;
    /// created if missing. One authward process per file.
    pub path: PathBuf,
    /// `embedded`: most durable records (user profiles, event histories, MFA enrollments) kept in the
    /// file, a list's items (a history's events) counting one each; beyond it the least recently written
    /// go first.
    pub max_records: usize,
    /// `redis`: where Redis (or Valkey) listens, `redis://[user:password@]host:port[/db]` or `rediss://`
    /// for TLS. Better without a password here: see `url_env`.
    pub url: String,
    /// `redis`: environment variable that holds the URL (with its password); wins over `url` when set.
    pub url_env: Option<String>,
    /// `redis` over TLS (`rediss://`): the CA certificate (PEM) that signed the server's, relative to this
    /// config file; without it the system's roots are used.
    pub ca: Option<PathBuf>,
    /// `redis`: put in front of every key, so that deployments can share one Redis.
    pub prefix: String,
    /// `redis`: longest wait for one store operation, connecting included.
    pub timeout: Duration,
    /// `redis`: what an operation Redis does not answer gets: `local` (the default) serves it from this
    /// replica's memory (capped by `max_keys` and `max_memory`), so limits and counters keep holding per
    /// replica; `none` fails it, and each stage's `store_failure` (open or closed) decides.
    pub fallback: StoreFallback,
}

/// Where the Redis store's operations go while Redis cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreFallback {
    /// This replica's own memory: limits per replica until Redis answers again.
    #[default]
    Local,
    /// No fallback: the operation fails and the stage's `store_failure` decides.
    None,
}

impl Default for FileStore {
    fn default() -> Self {
        FileStore {
            kind: StoreKind::Embedded,
            max_keys: 1_000_000,
            max_memory: ByteSize(256 * 1024 * 1024),
            path: PathBuf::from("authward.redb"),
            max_records: 1_000_000,
            url: "redis://127.0.0.1:6379".into(),
            url_env: None,
            ca: None,
            prefix: "authward:".into(),
            timeout: Duration::from_millis(250),
            fallback: StoreFallback::Local,
        }
    }
}

/// State backends available in this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Everything in process, capped, lost on restart: for tests and throw-away runs.
    Memory,
    /// Counters in memory; durable records in a redb database file that survives restarts and crashes.
    Embedded,
    /// Everything in Redis (or Valkey), shared by every replica.
    Redis,
}

/// MaxMind database files (relative paths are relative to the config file).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileGeoip {
    /// GeoIP2/GeoLite2 City (or Country) database.
    pub city: Option<PathBuf>,
    /// GeoLite2 ASN database.
    pub asn: Option<PathBuf>,
    /// GeoIP2 Anonymous IP database.
    pub anonymous_ip: Option<PathBuf>,
}

// === Positioned ===

/// A value with the line and column where it starts, so compile-time errors can point at it.
#[derive(Debug, Clone)]
pub struct Positioned<T> {
    pub value: T,
    pub line: u32,
    pub column: u32,
}

impl<T: Default> Default for Positioned<T> {
    fn default() -> Self {
        Positioned {
            value: T::default(),
            line: 1,
            column: 1,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Positioned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        let (line, column) = (s.referenced.line(), s.referenced.column());
        Ok(Positioned {
            value: s.value,
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        })
    }
}

impl<T: JsonSchema> JsonSchema for Positioned<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        T::json_schema(g)
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

// === NotYet ===

/// Declares a section that DESIGN names but this build does not implement: present means an error, never ignored.
macro_rules! not_yet {
    ($($ty:ident => $name:literal),* $(,)?) => {$(
        #[doc = concat!("The `", $name, "` section, which this version rejects.")]
        #[derive(Debug)]
        pub enum $ty {}

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                Err(de::Error::custom(concat!(
                    "the `", $name, "` section is not available in this version of authward; ",
                    "remove it rather than have it silently ignored"
                )))
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(concat!("NotYet_", $name))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "not": {}, "description": "Not available in this version of authward." })
            }
        }
    )*};
}

not_yet!(
    NotYetChallenge => "challenge",
);
