//! Listeners, TLS termination, the upstream client, forwarding, timeouts and body caps.

pub mod body;
mod h1;
pub mod ja4;
pub mod pool;
pub mod server;
pub mod tunnel;
mod upload;
pub mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::context::{Connection, Context};
use crate::events;
use crate::metrics::Metrics;
use crate::pipeline::{Exchange, Pipeline, RequestBody, Services};
use crate::store::Store;
use body::Body;
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;
use upstream::{ForwardError, Upstream};

/// Everything built from one compiled config; swapped whole on reload.
pub struct Runtime {
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
    pub upstream: Upstream,
}

impl Runtime {
    /// Builds the pipeline and the upstream client for a config (which must have an upstream).
    pub fn build(config: Config, services: &Services) -> Result<Self, ForwardError> {
        let target = config
            .upstream
            .clone()
            .ok_or_else(|| ForwardError::Request("the config has no upstream".into()))?;
        let config = Arc::new(config);
        Ok(Runtime {
            pipeline: Pipeline::new(&config, services),
            upstream: Upstream::new(target, services.metrics.clone())?,
            config,
        })
    }
}

/// State shared by every connection: the current runtime, metrics, the store and the event recorder.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    /// Process-wide, kept across reloads.
    pub recorder: Arc<events::Recorder>,
    /// Client connections being served and the tunnels upgraded ones became: on SIGTERM the proxy waits
    /// for them all, up to `listen.shutdown_grace`.
    pub connections: TaskTracker,
}

impl Shared {
    /// The services stages are built with.
    pub fn services(&self) -> Services {
        Services {
            metrics: self.metrics.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// Serves one client request: context, pipeline (with forwarding), then the access log, metrics and auth
/// events. Feedback links (`/.authward/feedback/`) and the MFA endpoints (`/.authward/mfa/`) are answered
/// here and never reach the pipeline or the upstream.
pub async fn handle(
    shared: &Shared,
    request: Request<hyper::body::Incoming>,
    conn: &Connection,
) -> Response<Body> {
    // In-flight requests keep the runtime they started with, whatever a reload does meanwhile.
    let runtime = shared.runtime.load_full();
    let (mut parts, incoming) = request.into_parts();
    strip_internal(&mut parts.headers);
    let ctx = Context::new(&runtime.config, conn, &parts);
    let mut ex = Exchange::new(
        runtime.config.clone(),
        ctx,
        parts,
        RequestBody::Streaming(body::boxed(incoming)),
    );
    let mut response = if ex.request.uri.path().starts_with(events::links::PATH_PREFIX) {
        let recorder = &shared.recorder;
        events::links::serve(
            recorder,
            &runtime.config.events,
            &ex.request.method,
            ex.request.uri.path(),
        )
        .await
    } else if ex.request.uri.path().starts_with(crate::mfa::PATH_PREFIX) {
        crate::mfa::serve(&shared.services(), &mut ex).await
    } else if let Some(why) = bad_host(&ex.request) {
        ex.rejected = Some("bad_host");
        json_error(StatusCode::BAD_REQUEST, "bad_request", why, &ex.ctx.request_id)
    } else if ex.request.method == http::Method::CONNECT {
        // A reverse proxy opens no tunnels to where a client names: CONNECT never reaches the upstream.
        json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "CONNECT is not served here",
            &ex.ctx.request_id,
        )
    } else {
        runtime.pipeline.run(&mut ex, &runtime.upstream).await
    };
    if body_left_unread(&ex) {
        // Answered here before the client's body was read to its end (413, a web-ACL block past the part
        // inspected): an HTTP/1 connection cannot carry another request, so say so. A client still
        // sending would meet a reset instead of the answer (its write fails, or the unread bytes make the
        // close a reset): a small rest is read and dropped first, as nginx's lingering close does.
        linger(&mut ex).await;
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(v) = HeaderValue::from_str(&ex.ctx.request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-authward-request-id"), v);
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        tunnel(shared, &mut ex, &mut response, conn);
    }
    record(shared, &mut ex, &response);
    response
}

/// Why a request's `Host` is refused with 400 before any stage, as RFC 9112 §3.2 asks and nginx does: an
/// HTTP/1.1 request without one, any request with two (backends and caches may each read another), or a
/// value that is no host and port (`a b`, `x/../y`). Empty is allowed (a target without an authority).
fn bad_host(parts: &http::request::Parts) -> Option<&'static str> {
    // An absolute-form target's authority stands in for Host upstream: no user in it either.
    if parts.uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Some("the request target's authority holds a user name");
    }
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(b);
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some("the request has more than one Host header"),
        (None, _) if parts.version == http::Version::HTTP_11 => {
            Some("an HTTP/1.1 request needs a Host header")
        }
        (Some(h), None) if !h.as_bytes().iter().all(host_byte) => {
            Some("the Host header is not a host and port")
        }
        _ => None,
    }
}

/// Joins a client connection and the upstream's once both have switched protocols (the upstream said 101
/// and the client has read it), and copies bytes both ways until either side closes or the tunnel has been
/// quiet for `listen.tunnel_idle_timeout`. The tunnel holds the client connection's slot under
/// `listen.max_connections`, and a shutdown waits for it like for a request in flight.
fn tunnel(shared: &Shared, ex: &mut Exchange, response: &mut Response<Body>, conn: &Connection) {
    let client = ex.request.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let upstream = hyper::upgrade::on(&mut *response);
    let (slot, request_id) = (conn.slot.clone(), ex.ctx.request_id.clone());
    let idle = ex.config.listen.tunnel_idle_timeout;
    shared.connections.spawn(async move {
        let _slot = slot;
        let Some(client) = client else { return };
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => match tunnel::join(TokioIo::new(client), TokioIo::new(upstream), idle)
                .await
            {
                tunnel::Closed::Done { up, down } => tracing::debug!(%request_id, up, down, "tunnel closed"),
                tunnel::Closed::Idle => tracing::debug!(%request_id, ?idle, "tunnel idle: closed"),
                tunnel::Closed::Broken(e) => tracing::debug!(%request_id, error = %e, "tunnel broke off"),
            },
            Err(e) => tracing::debug!(%request_id, error = %e, "protocol switch failed"),
        }
    });
}

/// Step 10 of the flow for every request: metrics, one access-log line, and the request's auth events to
/// the recorder. Never logs a body, a query string, a password, a code or a token.
fn record(shared: &Shared, ex: &mut Exchange, response: &Response<Body>) {
    let events = std::mem::take(&mut ex.events);
    shared.recorder.record(ex, events);
    let operation = ex.operation();
    let status = response.status();
    let elapsed = ex.ctx.received.elapsed();
    let m = &shared.metrics;
    m.requests.with_label_values(&[operation, status.as_str()]).inc();
    m.request_duration
        .with_label_values(&[operation])
        .observe(elapsed.as_secs_f64());
    if let Some(reason) = ex.rejected {
        m.rejected.with_label_values(&[reason]).inc();
    }
    if ex.config.listen.access_log {
        tracing::info!(
            target: "authward::access",
            request_id = %ex.ctx.request_id,
            client_ip = %ex.ctx.client_ip,
            method = %ex.request.method,
            path = %logged_path(ex.request.uri.path()),
            status = status.as_u16(),
            operation,
            profile = ex.profile.as_ref().map(|m| m.profile.name()),
            outcome = ex.outcome.map(|o| o.as_str()),
            waf_action = ex.waf.as_ref().map(|v| v.action_name()),
            waf_rule = ex.waf.as_ref().and_then(|v| v.terminating.as_ref()).map(|(r, _)| r.as_str()),
            waf_shadow = ex.waf.as_ref().filter(|v| !v.shadow.is_empty()).map(|v| v.shadow.iter().map(|(r, a)| format!("{r}:{a}")).collect::<Vec<_>>().join(",")),
            labels = (!ex.labels.is_empty()).then(|| ex.labels.join(",")),
            sms_decision = ex.sms.as_ref().map(|v| v.label()),
            sms_reason = ex.sms.as_ref().and_then(|v| v.reason).map(|r| r.as_str()),
            rejected = ex.rejected,
            upstream_error = ex.upstream.error,
            upstream_ms = ex.upstream.duration.map(|d| d.as_secs_f64() * 1000.0),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    }
}

/// The path as the access log shows it: a feedback link's token is a credential and is left out.
fn logged_path(path: &str) -> &str {
    if path.starts_with(events::links::PATH_PREFIX) {
        "/.authward/feedback/[token]"
    } else {
        path
    }
}

/// Whether the request announced a body that was neither forwarded nor read whole.
/// Most of an unread request body [`linger`] reads and drops, and for how long.
const LINGER_BYTES: u64 = 1 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what is left of a request body answered before it was read, when it announces at most
/// [`LINGER_BYTES`] (or is chunked), for at most [`LINGER_TIME`] and that many bytes.
async fn linger(ex: &mut Exchange) {
    use http_body_util::BodyExt;
    if body::content_length(&ex.request.headers).is_some_and(|n| n > LINGER_BYTES) {
        return;
    }
    let RequestBody::Streaming(body) = &mut ex.body else {
        return;
    };
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

fn body_left_unread(ex: &Exchange) -> bool {
    body::has_body(&ex.request.headers)
        && ex.request.version <= http::Version::HTTP_11
        && matches!(ex.body, RequestBody::Streaming(_))
        && ex.upstream.status.is_none()
        && ex.upstream.error.is_none()
}

/// Drops every `x-authward-*` header: a client's (or an upstream's) claims about authward's decisions.
pub fn strip_internal(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-authward-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// A JSON error answer made by authward itself.
pub fn json_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message, "request_id": request_id });
    let mut response = Response::new(body::full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
