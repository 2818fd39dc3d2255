//! The YAML config: loading with `include:`, validation with `FILE:LINE:COL` errors, and the compiled form.
//!
//! Two layers (STYLE.md, pattern 4): [`file`](mod@file) holds plain serde types that mirror the YAML and generate
//! the JSON Schema; [`Config`] is the compiled form that the proxy and the stages run on. A reload builds a
//! new [`Config`] off the hot path and swaps it in one step; a file that does not compile changes nothing.

pub mod file;
pub mod types;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::geo::Geo;
use crate::profile::Profiles;
use file::{FileConfig, FileFragment, FileStore, Positioned};

// === Errors ===

/// One problem in one file, with the position a rule author can jump to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl ConfigError {
    fn at(file: &Path, line: u32, column: u32, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.display().to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Every problem found while loading a config, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

// === Sources ===

/// Where config files come from: the file system, or files embedded in the binary (the demo).
pub trait Sources: Send + Sync {
    /// Reads one file.
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// Expands a glob into the files it names, sorted.
    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String>;
    /// Reads an environment variable that the config names (`token_env`).
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Reads from the file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsSources;

impl Sources for FsSources {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let mut out = Vec::new();
        for entry in glob::glob(&pattern.to_string_lossy()).map_err(|e| e.to_string())? {
            out.push(entry.map_err(|e| e.to_string())?);
        }
        out.sort();
        Ok(out)
    }
}

/// Files and environment variables held in memory: the demo's files compiled into the binary.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedSources {
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    pub env: BTreeMap<String, String>,
}

impl Sources for EmbeddedSources {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not embedded in this binary"))
    }
    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let pat = glob::Pattern::new(&normalize(pattern).to_string_lossy()).map_err(|e| e.to_string())?;
        Ok(self
            .files
            .keys()
            .filter(|p| pat.matches_path(p))
            .cloned()
            .collect())
    }
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
}

/// Drops `.` components and folds `dir/..`, so embedded lookups work with relative includes.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

// === Compiled form ===

/// The compiled config that the proxy runs on. Immutable; a reload replaces it whole.
#[derive(Debug)]
pub struct Config {
    /// The main file and every included file, for the file watcher.
    pub files: Vec<PathBuf>,
    pub listen: Listen,
    /// The certificate for `https` listeners.
    pub tls: Option<Arc<CertifiedKey>>,
    pub admin: Admin,
    /// Absent only for rule files checked on their own.
    pub upstream: Option<Upstream>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The store settings; `path` is resolved against the config file's directory.
    pub store: FileStore,
    pub geo: Arc<Geo>,
    pub profiles: Arc<Profiles>,
    pub web_acl: Arc<crate::waf::WebAcl>,
    /// The risk engine's settings; `None` when the config has no `risk` section.
    pub risk: Option<Arc<crate::risk::Risk>>,
    /// MFA step-up; `None` when the config has no `mfa` section.
    pub mfa: Option<Arc<crate::mfa::Mfa>>,
    pub events: crate::events::EventsConfig,
    /// The SMS guard (off without an `sms` section).
    pub sms: Arc<crate::sms::SmsGuard>,
    /// The policy groups (empty when the config has none).
    pub policies: Arc<crate::policies::Policies>,
}

/// Compiled listener settings.
#[derive(Debug, Clone)]
pub struct Listen {
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub max_connections: usize,
    pub header_read_timeout: std::time::Duration,
    pub body_read_timeout: std::time::Duration,
    pub tunnel_idle_timeout: std::time::Duration,
    pub shutdown_grace: std::time::Duration,
    pub body_limit: u64,
    pub response_body_limit: u64,
    pub access_log: bool,
}

/// Compiled admin settings; `token_sha256` is `None` when the admin API is off.
#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
    pub token_sha256: Option<[u8; 32]>,
}

/// The compiled upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// A path prefix from the URL, without a trailing slash ("" when none).
    pub path_prefix: String,
    pub connect_timeout: std::time::Duration,
    pub timeout: std::time::Duration,
    pub read_timeout: std::time::Duration,
    pub ca: Vec<CertificateDer<'static>>,
    pub preserve_host: bool,
    pub pool_idle_timeout: std::time::Duration,
    pub pool_max_idle: usize,
}

impl Config {
    /// Whether `ip` is in `trusted_proxies`.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) to IPv4, so ranges and lookups see one form.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether a file must define the upstream (`serve`) or may be a rule file on its own (`check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Check,
}

/// Loads, merges and compiles a config from the file system.
pub fn load(path: &Path, mode: Mode) -> Result<Config, ConfigErrors> {
    load_from(path, mode, &FsSources)
}

/// Loads, merges and compiles a config from `sources`.
pub fn load_from(path: &Path, mode: Mode, sources: &dyn Sources) -> Result<Config, ConfigErrors> {
    let main: FileConfig = parse(path, sources)?;
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut files = vec![path.to_path_buf()];
    let mut profiles: Vec<(PathBuf, Positioned<crate::profile::file::FileProfile>)> = main
        .profiles
        .into_iter()
        .map(|p| (path.to_path_buf(), p))
        .collect();
    let mut errors = Vec::new();
    let mut acls: Vec<(PathBuf, Positioned<crate::waf::file::FileWebAcl>, bool)> = Vec::new();
    if let Some(acl) = main.web_acl {
        acls.push((path.to_path_buf(), acl, true));
    }
    // Included groups first, so that the main file's keys win when groups merge.
    let main_policies: Vec<(PathBuf, Positioned<crate::policies::file::FilePolicyGroup>)> = main
        .policies
        .into_iter()
        .map(|p| (path.to_path_buf(), p))
        .collect();
    let mut policies = Vec::new();

    for inc_entry in &main.include {
        let (pattern, line, column) = (&inc_entry.value, inc_entry.line, inc_entry.column);
        let full = base.join(pattern);
        match sources.glob(&full) {
            Ok(found) if found.is_empty() => errors.push(ConfigError::at(
                path,
                line,
                column,
                format!(
                    "include `{pattern}` matched no file (looked for {})",
                    full.display()
                ),
            )),
            Ok(found) => {
                for inc in found {
                    if files.contains(&inc) {
                        continue;
                    }
                    match parse::<FileFragment>(&inc, sources) {
                        Ok(frag) => {
                            profiles.extend(frag.profiles.into_iter().map(|p| (inc.clone(), p)));
                            if let Some(acl) = frag.web_acl {
                                acls.push((inc.clone(), acl, false));
                            }
                            policies.extend(frag.policies.into_iter().map(|p| (inc.clone(), p)));
                        }
                        Err(e) => errors.extend(e.0),
                    }
                    files.push(inc);
                }
            }
            Err(e) => errors.push(ConfigError::at(
                path,
                line,
                column,
                format!("include `{pattern}`: {e}"),
            )),
        }
    }

    let compiled_profiles = compile_profiles(&profiles).map_err(|e| errors.push(e));
    let sms = match (&main.sms, &compiled_profiles) {
        (None, _) => Ok(crate::sms::SmsGuard::off()),
        (Some(s), Ok(_)) => {
            let reader = SmsFiles {
                base: &base,
                sources,
                read: std::cell::RefCell::new(Vec::new()),
            };
            let list: Vec<_> = profiles.iter().map(|(_, p)| &p.value).collect();
            let guard = crate::sms::SmsGuard::compile(&s.value, &list, &reader).map_err(|e| {
                let (file, line, column) = match e.profile.and_then(|i| profiles.get(i)) {
                    Some((f, p)) => (f.as_path(), p.line, p.column),
                    None => (path, s.line, s.column),
                };
                errors.push(ConfigError::at(file, line, column, e.message));
            });
            files.extend(reader.read.into_inner());
            guard
        }
        (Some(_), Err(())) => Err(()),
    };
    let upstream = match (main.upstream, mode) {
        (Some(u), _) => {
            let at = Pos::new(path, &u);
            compile_upstream(u.value, at, &base, sources)
                .map(Some)
                .map_err(|e| errors.push(e))
        }
        (None, Mode::Check) => Ok(None),
        (None, Mode::Serve) => {
            errors.push(ConfigError::at(
                path,
                1,
                1,
                "missing required section `upstream` (with `url`)",
            ));
            Err(())
        }
    };
    let tls = main
        .tls
        .map(|t| compile_tls(&t.value, &base, Pos::new(path, &t), sources))
        .transpose()
        .map_err(|e| errors.push(e));
    if tls.as_ref().is_ok_and(|t| t.is_none()) && !main.listen.https.is_empty() {
        errors.push(ConfigError::at(
            path,
            1,
            1,
            "`listen.https` needs a `tls` section with `cert` and `key`",
        ));
    }
    let geo = main
        .geoip
        .map(|g| compile_geo(&g.value, &base, Pos::new(path, &g), sources))
        .transpose()
        .map_err(|e| errors.push(e));
    let admin =
        compile_admin(&main.admin.value, Pos::new(path, &main.admin), sources).map_err(|e| errors.push(e));
    let events =
        crate::events::settings::compile(&main.events, path, &base, sources).map_err(|e| errors.extend(e));

    let geo = geo.map(|g| Arc::new(g.unwrap_or_default()));
    let web_acl = match &geo {
        Ok(geo) => {
            let parts: Vec<crate::waf::RulePart<'_>> = acls
                .iter()
                .map(|(file, acl, main)| crate::waf::RulePart {
                    file,
                    acl,
                    main: *main,
                })
                .collect();
            crate::waf::compile(&parts, geo, sources).map_err(|e| errors.extend(e))
        }
        Err(()) => Err(()),
    };
    let risk = match &main.risk {
        Some(r) => crate::risk::Risk::compile(&r.value, &base, sources)
            .map(|r| Some(Arc::new(r)))
            .map_err(|e| errors.push(ConfigError::at(path, r.line, r.column, e.to_string()))),
        None => Ok(None),
    };
    policies.extend(main_policies);
    let has_breach_filter = risk
        .as_ref()
        .is_ok_and(|r| r.as_ref().is_some_and(|r| r.breach.is_some()));
    let policies = compile_policies(policies, mode, has_breach_filter, sources).map_err(|e| errors.push(e));
    let mfa = match &main.mfa {
        Some(m) => crate::mfa::Mfa::compile(&m.value, sources)
            .map(|m| Some(Arc::new(m)))
            .map_err(|e| errors.push(ConfigError::at(path, m.line, m.column, e.to_string()))),
        None => Ok(None),
    };
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let (
        Ok(profiles),
        Ok(upstream),
        Ok(tls),
        Ok(geo),
        Ok(admin),
        Ok(web_acl),
        Ok(events),
        Ok(sms),
        Ok(policies),
    ) = (
        compiled_profiles,
        upstream,
        tls,
        geo,
        admin,
        web_acl,
        events,
        sms,
        policies,
    )
    else {
        return Err(ConfigErrors(vec![ConfigError::at(
            path,
            1,
            1,
            "config did not compile",
        )]));
    };
    let l = main.listen;
    Ok(Config {
        files,
        listen: Listen {
            http: l.http,
            https: l.https,
            max_connections: l.max_connections.max(1),
            header_read_timeout: l.header_read_timeout.get(),
            body_read_timeout: l.body_read_timeout.get(),
            tunnel_idle_timeout: l.tunnel_idle_timeout.get(),
            shutdown_grace: l.shutdown_grace.get(),
            body_limit: l.body_limit.0,
            response_body_limit: l.response_body_limit.0,
            access_log: l.access_log,
        },
        tls,
        admin,
        upstream,
        trusted_proxies: main.trusted_proxies.iter().map(|c| c.0).collect(),
        store: FileStore {
            path: base.join(&main.store.path),
            ca: main.store.ca.as_ref().map(|ca| base.join(ca)),
            ..main.store
        },
        geo,
        profiles: Arc::new(profiles),
        web_acl: Arc::new(web_acl),
        risk: risk.unwrap_or_default(),
        mfa: mfa.unwrap_or_default(),
        events,
        sms: Arc::new(sms),
        policies: Arc::new(policies),
    })
}

/// Compiles the policy groups; an error points at the last entry of the offending group, the one whose
/// keys win.
fn compile_policies(
    entries: Vec<(PathBuf, Positioned<crate::policies::file::FilePolicyGroup>)>,
    mode: Mode,
    has_breach_filter: bool,
    sources: &dyn Sources,
) -> Result<crate::policies::Policies, ConfigError> {
    let strictness = match mode {
        Mode::Serve => crate::policies::Strictness::Serve,
        Mode::Check => crate::policies::Strictness::Check,
    };
    let groups = entries.iter().map(|(_, p)| p.value.clone()).collect();
    crate::policies::Policies::compile(groups, strictness, has_breach_filter, sources).map_err(|e| {
        let at = entries.iter().rev().find(|(_, p)| p.value.name == e.group);
        let (file, line, column) = at.map_or((Path::new(""), 0, 0), |(f, p)| (f.as_path(), p.line, p.column));
        ConfigError::at(file, line, column, e.to_string())
    })
}

/// Reads the files that the `sms` section names, relative to the config file, and remembers them for the
/// file watcher.
struct SmsFiles<'a> {
    base: &'a Path,
    sources: &'a dyn Sources,
    read: std::cell::RefCell<Vec<PathBuf>>,
}

impl crate::sms::ReadFile for SmsFiles<'_> {
    fn read_text(&self, path: &Path) -> Result<String, String> {
        let full = self.base.join(path);
        let bytes = self
            .sources
            .read(&full)
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        self.read.borrow_mut().push(full.clone());
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", full.display()))
    }
}

/// Parses one YAML file into `T`, turning the YAML crate's error into a positioned [`ConfigError`].
pub fn parse<T: DeserializeOwned>(path: &Path, sources: &dyn Sources) -> Result<T, ConfigErrors> {
    let bytes = sources
        .read(path)
        .map_err(|e| ConfigError::at(path, 0, 0, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let (line, column) = position_of(&e.as_bytes()[..e.utf8_error().valid_up_to()]);
        ConfigError::at(path, line, column, "the file is not valid UTF-8")
    })?;
    parse_str(path, &text).map_err(ConfigErrors::from)
}

/// Parses YAML text into `T`.
pub fn parse_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return serde_saphyr::from_str("{}").map_err(|e| yaml_error(path, "", &e));
    }
    serde_saphyr::from_str(text).map_err(|e| yaml_error(path, text, &e))
}

fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> ConfigError {
    let (mut line, mut column) = e.location().map_or((0, 0), |l| {
        (
            u32::try_from(l.line()).unwrap_or(0),
            u32::try_from(l.column()).unwrap_or(0),
        )
    });
    let message = plain_message(&e.without_snippet().to_string());
    if message.starts_with("missing field") {
        // The YAML crate places a missing field at the mapping's last key; point at its first key instead.
        (line, column) = block_mapping_start(text, line, column);
    }
    ConfigError::at(path, line, column, message)
}

/// The first key of the block mapping that has a key at `line`:`column` (1-based): walks up over deeper
/// lines, blank lines and comments while sibling keys share the column. Flow mappings are left alone.
fn block_mapping_start(text: &str, line: u32, column: u32) -> (u32, u32) {
    let lines: Vec<&str> = text.lines().collect();
    let col = column as usize;
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let Some(idx) = (line as usize).checked_sub(1).filter(|i| *i < lines.len()) else {
        return (line, column);
    };
    if indent_of(lines[idx]) + 1 != col {
        return (line, column);
    }
    let mut first = idx;
    for i in (0..idx).rev() {
        let (l, t) = (lines[i], lines[i].trim_start());
        let indent = indent_of(l);
        if t.is_empty() || t.starts_with('#') || indent + 1 > col {
            continue;
        }
        if indent + 1 == col && !t.starts_with('-') {
            first = i;
            continue;
        }
        if t.starts_with("- ") && indent + 3 == col {
            first = i;
        }
        break;
    }
    (u32::try_from(first + 1).unwrap_or(line), column)
}

/// Strips the YAML crate's own " at line X column Y" suffix: the position is already in front.
fn plain_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    match first.rfind(" at line ") {
        Some(i) => first[..i].trim_end_matches(',').to_string(),
        None => first.to_string(),
    }
}

fn position_of(bytes: &[u8]) -> (u32, u32) {
    let line = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    let col = bytes.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

fn compile_profiles(
    entries: &[(PathBuf, Positioned<crate::profile::file::FileProfile>)],
) -> Result<Profiles, ConfigError> {
    let files: Vec<_> = entries.iter().map(|(_, p)| p.value.clone()).collect();
    Profiles::compile(&files).map_err(|e| {
        let (file, pos) = entries.get(e.index()).map_or((Path::new(""), (0, 0)), |(f, p)| {
            (f.as_path(), (p.line, p.column))
        });
        ConfigError::at(file, pos.0, pos.1, e.to_string())
    })
}

/// The file and position of a section, for errors found while compiling it.
#[derive(Clone, Copy)]
struct Pos<'a> {
    file: &'a Path,
    line: u32,
    column: u32,
}

impl<'a> Pos<'a> {
    fn new<T>(file: &'a Path, p: &Positioned<T>) -> Self {
        Pos {
            file,
            line: p.line,
            column: p.column,
        }
    }
    fn err(self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.line, self.column, message)
    }
}

fn compile_upstream(
    u: file::FileUpstream,
    at: Pos<'_>,
    base: &Path,
    sources: &dyn Sources,
) -> Result<Upstream, ConfigError> {
    let bad = |m: String| at.err(format!("upstream.url: {m}"));
    let uri: http::Uri = u
        .url
        .parse()
        .map_err(|e| bad(format!("`{}` is not a URL ({e})", u.url)))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| bad(format!("`{}` needs http:// or https://", u.url)))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(bad(format!(
            "scheme `{scheme}` is not supported; use http or https"
        )));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| bad(format!("`{}` has no host", u.url)))?;
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed in the upstream URL".into()));
    }
    let ca = match &u.ca {
        Some(ca) => {
            let full = base.join(ca);
            let pem = sources
                .read(&full)
                .map_err(|e| at.err(format!("upstream.ca: cannot read {}: {e}", full.display())))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| at.err(format!("upstream.ca: {}: {e}", full.display())))?;
            if certs.is_empty() {
                return Err(at.err(format!("upstream.ca: no certificate in {}", full.display())));
            }
            certs
        }
        None => Vec::new(),
    };
    Ok(Upstream {
        scheme,
        authority,
        path_prefix: uri.path().trim_end_matches('/').to_string(),
        connect_timeout: u.connect_timeout.get(),
        timeout: u.timeout.get(),
        read_timeout: u.read_timeout.get(),
        ca,
        preserve_host: u.preserve_host,
        pool_idle_timeout: u.pool_idle_timeout.get(),
        pool_max_idle: u.pool_max_idle,
    })
}

fn compile_tls(
    t: &file::FileTls,
    base: &Path,
    at: Pos<'_>,
    sources: &dyn Sources,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let err = |m: String| at.err(format!("tls: {m}"));
    let (cert_path, key_path) = (base.join(&t.cert), base.join(&t.key));
    let cert_pem = sources
        .read(&cert_path)
        .map_err(|e| err(format!("cannot read {}: {e}", cert_path.display())))?;
    let key_pem = sources
        .read(&key_path)
        .map_err(|e| err(format!("cannot read {}: {e}", key_path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(err(format!("no certificate in {}", cert_path.display())));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| err(format!("no usable private key in {}: {e}", key_path.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| err(format!("unsupported private key in {}: {e}", key_path.display())))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| err(format!("the key does not match the certificate: {e}")))?;
    Ok(Arc::new(ck))
}

fn compile_geo(
    g: &file::FileGeoip,
    base: &Path,
    at: Pos<'_>,
    sources: &dyn Sources,
) -> Result<Geo, ConfigError> {
    let read = |name: &str, p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ConfigError> {
        p.as_ref()
            .map(|p| {
                let full = base.join(p);
                sources
                    .read(&full)
                    .map_err(|e| at.err(format!("geoip.{name}: cannot read {}: {e}", full.display())))
            })
            .transpose()
    };
    Geo::from_bytes(
        read("city", &g.city)?,
        read("asn", &g.asn)?,
        read("anonymous_ip", &g.anonymous_ip)?,
    )
    .map_err(|e| at.err(format!("geoip: {e}")))
}

fn compile_admin(a: &file::FileAdmin, at: Pos<'_>, sources: &dyn Sources) -> Result<Admin, ConfigError> {
    let token_sha256 = match &a.token_env {
        Some(var) if var.trim().is_empty() => {
            return Err(at.err("admin.token_env: name an environment variable"));
        }
        Some(var) => match sources.env(var) {
            Some(t) if !t.trim().is_empty() => Some(Sha256::digest(t.trim().as_bytes()).into()),
            _ => {
                tracing::warn!(variable = %var, "admin token variable is unset or empty: the admin API is off");
                None
            }
        },
        None => None,
    };
    Ok(Admin {
        listen: a.listen,
        token_sha256,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::file::StoreKind;
    use super::{EmbeddedSources, Mode, load_from};

    fn store_of(yaml: &str) -> super::file::FileStore {
        let mut s = EmbeddedSources::default();
        s.files
            .insert(PathBuf::from("etc/aw/main.yaml"), yaml.as_bytes().to_vec());
        load_from(Path::new("etc/aw/main.yaml"), Mode::Check, &s)
            .unwrap()
            .store
    }

    #[test]
    fn the_store_is_embedded_by_default_with_its_file_beside_the_config() {
        let store = store_of("");
        assert_eq!(store.kind, StoreKind::Embedded);
        assert_eq!(store.path, Path::new("etc/aw/authward.redb"));
        assert_eq!(store.max_records, 1_000_000);
        let store = store_of("store: {kind: memory, path: ../state/s.redb, max_records: 5}");
        assert_eq!(store.kind, StoreKind::Memory);
        assert_eq!(store.path, Path::new("etc/aw/../state/s.redb"));
        assert_eq!(store.max_records, 5);
        assert_eq!(
            store_of("store: {path: /var/lib/aw.redb}").path,
            Path::new("/var/lib/aw.redb")
        );
    }
}
