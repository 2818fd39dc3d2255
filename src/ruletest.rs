//! Offline rule tooling: `authward test` runs YAML test cases, `authward explain` traces one request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::clock::ManualClock;
use crate::config::{self, Config, Mode};
use crate::profile::{Matched, Outcome};
use crate::store::Store;
use crate::store::memory::{MemoryLimits, MemoryStore};
use crate::waf::field::RequestView;
use crate::waf::{Action, Context, Verdict};

/// A file of test cases.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTests {
    /// The config the cases run against, relative to this file.
    pub config: PathBuf,
    pub cases: Vec<FileCase>,
}

/// One case: optional history, a request, what must happen.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileCase {
    pub name: String,
    /// Requests sent before, each `times` times, with the upstream outcome to assume.
    #[serde(default)]
    pub history: Vec<FileHistory>,
    pub request: FileRequest,
    pub expect: FileExpect,
}

/// Earlier traffic for rate-based rules.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileHistory {
    pub request: FileRequest,
    #[serde(default = "one")]
    pub times: u32,
    /// The upstream's answer to assume: `success`, `failure` (counts for `failed_sign_in` rules) or `unknown`.
    #[serde(default)]
    pub outcome: Option<Outcome>,
}

fn one() -> u32 {
    1
}

/// A request, as a test or `explain` describes it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRequest {
    #[serde(default = "default_method")]
    pub method: String,
    /// Path with an optional query string.
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A raw body.
    pub body: Option<String>,
    /// A JSON body (sets `content-type: application/json`).
    pub json: Option<serde_json::Value>,
    /// A form body (sets `content-type: application/x-www-form-urlencoded`).
    pub form: Option<BTreeMap<String, String>>,
    /// A JSON body of this many bytes (`{"pad":"xxx…"}`), for size rules.
    pub body_size: Option<crate::config::types::ByteSize>,
    /// The address the request comes from, the TCP peer (default 192.0.2.10). When it is one of the
    /// config's `trusted_proxies`, the client is read from `X-Forwarded-For`, as the proxy does.
    pub client_ip: Option<IpAddr>,
    /// The TLS ClientHello fingerprint.
    pub ja4: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}
fn default_path() -> String {
    "/".into()
}

/// What the case expects.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileExpect {
    /// `allow`, `block`, `challenge` or `captcha`: what happens to the request.
    pub action: String,
    /// The rule that ended evaluation; `none` for the default action. Unchecked when absent.
    pub rule: Option<String>,
    /// Labels the request must carry.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Labels the request must not carry.
    #[serde(default)]
    pub labels_absent: Vec<String>,
}

/// A request ready for evaluation.
pub struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<bytes::Bytes>,
    client_ip: IpAddr,
    ja4: Option<String>,
}

impl FileRequest {
    /// Builds the request; errors name what is malformed.
    pub fn prepare(&self) -> Result<Prepared, String> {
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| format!("bad method `{}`", self.method))?;
        let uri: Uri = self
            .path
            .parse()
            .map_err(|_| format!("bad path `{}`", self.path))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name `{k}`"))?;
            let value = HeaderValue::from_str(v).map_err(|_| format!("bad value for header `{k}`"))?;
            headers.append(name, value);
        }
        let mut body = self.body.clone().map(bytes::Bytes::from);
        if let Some(j) = &self.json {
            body = Some(bytes::Bytes::from(j.to_string()));
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
        }
        if let Some(f) = &self.form {
            let encoded = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(f)
                .finish();
            body = Some(bytes::Bytes::from(encoded));
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/x-www-form-urlencoded"));
        }
        if let Some(size) = self.body_size {
            let len = usize::try_from(size.0)
                .map_err(|_| "body_size is too large".to_string())?
                .max(10);
            body = Some(bytes::Bytes::from(format!(
                "{{\"pad\":\"{}\"}}",
                "x".repeat(len - 10)
            )));
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
        }
        if let Some(b) = &body {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(b.len()));
        }
        Ok(Prepared {
            method,
            uri,
            headers,
            body,
            client_ip: self.client_ip.unwrap_or(IpAddr::from([192, 0, 2, 10])),
            ja4: self.ja4.clone(),
        })
    }
}

impl Prepared {
    /// The client address as the proxy's context stage finds it: the peer (`client_ip`), or the
    /// `X-Forwarded-For` entry a trusted proxy added.
    pub fn client(&self, config: &Config) -> IpAddr {
        crate::context::client_ip(config, self.client_ip, &self.headers)
    }
}

/// Why the proxy's profile stage would refuse this request before any rule sees it: with 413, a body
/// over the profile's `body_limit` (`body_too_large`); with 400, a body the profile cannot read
/// (`unreadable_body`) or a field sent twice with different values (`ambiguous_fields`).
pub fn refusal(config: &Config, req: &Prepared) -> Option<&'static str> {
    let path = crate::context::normalize_path(req.uri.path());
    let body = req.body.as_deref().unwrap_or_default();
    let candidates = config.profiles.candidates(&req.method, &path, &req.headers)?;
    let limit = candidates.body_limit().unwrap_or(config.listen.body_limit);
    if body.len() as u64 > limit {
        return Some("body_too_large");
    }
    match candidates.resolve(req.uri.query(), &req.headers, body) {
        Err(_) => Some("unreadable_body"),
        Ok(Some(m)) if m.ambiguous => Some("ambiguous_fields"),
        Ok(_) => None,
    }
}

/// The status the proxy answers a [`refusal`] with.
fn refusal_status(why: &str) -> u16 {
    if why == "body_too_large" { 413 } else { 400 }
}

/// Runs one request through the profile and the web ACL, as the proxy would before forwarding (a request
/// the profile stage refuses, see [`refusal`], is read as one no profile takes).
pub async fn evaluate(
    config: &Config,
    store: &dyn Store,
    req: &Prepared,
    explain: bool,
) -> (Option<Matched>, Vec<String>, Verdict) {
    let path = crate::context::normalize_path(req.uri.path());
    let body = req.body.as_deref().unwrap_or_default();
    let candidates = config.profiles.candidates(&req.method, &path, &req.headers);
    // As the proxy reads it: a profiled route's body whole (the profile stage refuses a larger one); any
    // other body over `listen.body_limit` as its first `body_limit` bytes, marked oversize, with its
    // whole length known (the proxy reads it from Content-Length).
    let limit = usize::try_from(config.listen.body_limit).unwrap_or(usize::MAX);
    let (inspected, oversize) = match req.body.as_deref() {
        Some(b) if candidates.is_none() && b.len() > limit => (Some(&b[..limit]), true),
        other => (other, false),
    };
    let matched = candidates.and_then(|c| c.resolve(req.uri.query(), &req.headers, body).ok().flatten());
    let view = RequestView {
        method: &req.method,
        uri: &req.uri,
        headers: &req.headers,
        body: inspected,
        body_oversize: oversize,
        body_len: oversize.then_some(body.len() as u64),
        profile: matched.as_ref().map(|m| &m.fields),
        json: matched.as_ref().and_then(|m| m.json.as_ref()).map(|j| j.value()),
        ja4: req.ja4.as_deref(),
    };
    let cx = Context {
        client_ip: req.client(config),
        geo: &config.geo,
        store,
        explain,
    };
    let mut labels: Vec<String> = matched.iter().flat_map(Matched::labels).collect();
    let verdict = config.web_acl.evaluate(&view, &cx, &mut labels).await;
    (matched, labels, verdict)
}

/// Runs every case of every file; prints one line per case and `N passed, M failed` last. True when all pass.
pub async fn run_files(files: &[PathBuf], out: &mut String) -> bool {
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        let tests: FileTests = match config::parse(file, &config::FsSources) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(out, "{e}");
                failed += 1;
                continue;
            }
        };
        let config_path = file.parent().unwrap_or(Path::new("")).join(&tests.config);
        let config = match config::load(&config_path, Mode::Check) {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(out, "{e}");
                failed += tests.cases.len().max(1);
                continue;
            }
        };
        for case in &tests.cases {
            match run_case(&config, case).await {
                Ok(()) => {
                    passed += 1;
                    let _ = writeln!(out, "ok   {}: {}", file.display(), case.name);
                }
                Err(why) => {
                    failed += 1;
                    let _ = writeln!(out, "FAIL {}: {}: {why}", file.display(), case.name);
                }
            }
        }
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    failed == 0
}

async fn run_case(config: &Config, case: &FileCase) -> Result<(), String> {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store = MemoryStore::new(MemoryLimits::default(), clock);
    for h in &case.history {
        let req = h.request.prepare()?;
        if refusal(config, &req).is_some() {
            continue;
        }
        for _ in 0..h.times {
            let (_, _, verdict) = evaluate(config, &store, &req, false).await;
            if h.outcome == Some(Outcome::Failure) {
                config
                    .web_acl
                    .record_failures(&verdict.pending_failures, &store)
                    .await;
            }
        }
    }
    let req = case.request.prepare()?;
    if let Some(why) = refusal(config, &req) {
        // Refused with 400 or 413 before any rule: a block by the profile stage.
        return match (&*case.expect.action, case.expect.rule.as_deref()) {
            ("block", None | Some("profile")) => Ok(()),
            _ => Err(format!(
                "the profile stage refuses this request with {} ({why})",
                refusal_status(why)
            )),
        };
    }
    let (_, labels, verdict) = evaluate(config, &store, &req, false).await;
    let mut problems = Vec::new();
    let action = verdict.action_name();
    if action != case.expect.action {
        problems.push(format!("expected action {}, got {action}", case.expect.action));
    }
    if let Some(rule) = &case.expect.rule {
        let got = verdict
            .terminating
            .as_ref()
            .filter(|(_, a)| !matches!(a, Action::Count))
            .map_or("none", |(r, _)| r.as_str());
        if got != rule {
            problems.push(format!("expected rule {rule}, got {got}"));
        }
    }
    for l in &case.expect.labels {
        if !labels.contains(l) {
            problems.push(format!("missing label {l} (labels: {labels:?})"));
        }
    }
    for l in &case.expect.labels_absent {
        if labels.contains(l) {
            problems.push(format!("unexpected label {l}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `authward explain`: what one request meets, stage by stage and rule by rule.
pub async fn explain(config_path: &Path, request_path: &Path) -> Result<String, String> {
    let config = config::load(config_path, Mode::Check).map_err(|e| e.to_string())?;
    let request: FileRequest = config::parse(request_path, &config::FsSources).map_err(|e| e.to_string())?;
    let req = request
        .prepare()
        .map_err(|e| format!("{}: {e}", request_path.display()))?;
    let store = MemoryStore::new(
        MemoryLimits::default(),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    );
    let mut out = String::new();
    let _ = writeln!(out, "request   {} {}", req.method, req.uri);
    if let Some(why) = refusal(&config, &req) {
        let _ = writeln!(
            out,
            "profile   refused with {} ({why}): no rule sees it, the upstream never gets it",
            refusal_status(why)
        );
        return Ok(out);
    }
    let (matched, labels, verdict) = evaluate(&config, &store, &req, true).await;
    let client = req.client(&config);
    let geo = config.geo.lookup(client);
    let _ = writeln!(
        out,
        "context   client {}{} country {} asn {}{}",
        client,
        if client == req.client_ip {
            String::new()
        } else {
            format!(" (X-Forwarded-For from trusted proxy {})", req.client_ip)
        },
        geo.country.as_deref().unwrap_or("-"),
        geo.asn.map_or("-".to_string(), |a| a.to_string()),
        if geo.anonymous.is_clean() {
            ""
        } else {
            " (anonymous)"
        }
    );
    match &matched {
        Some(m) => {
            let f = &m.fields;
            let _ = writeln!(
                out,
                "profile   {} ({}): username {:?}, password {}, phone {:?}, client_id {:?}",
                m.profile.name(),
                m.profile.operation().as_str(),
                f.username,
                if f.password.is_some() {
                    "[redacted]"
                } else {
                    "none"
                },
                f.phone,
                f.client_id
            );
        }
        None => {
            let _ = writeln!(out, "profile   none matched");
        }
    }
    let _ = writeln!(out, "web_acl   {} rules", config.web_acl.rules().len());
    for (name, matched, trace) in &verdict.trace {
        let _ = writeln!(out, "  {} {name}", if *matched { "MATCH" } else { "-    " });
        for line in &trace.lines {
            let _ = writeln!(out, "          {line}");
        }
    }
    let rule = verdict
        .terminating
        .as_ref()
        .map_or("default action", |(r, _)| r.as_str());
    let _ = writeln!(out, "decision  {} ({rule})", verdict.action_name());
    if !verdict.shadow.is_empty() {
        let _ = writeln!(out, "shadow    would have: {:?}", verdict.shadow);
    }
    let _ = writeln!(
        out,
        "labels    {}",
        if labels.is_empty() {
            "none".to_string()
        } else {
            labels.join(", ")
        }
    );
    Ok(out)
}
