//! The pooled upstream client (HTTP/1.1 and HTTP/2, http and https) and request forwarding.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::{self, Body};
use super::h1::RequestHead;
use super::pool::{H1Pool, PoolError};
use super::upload::{Expired, Upload};
use crate::config;
use crate::context::IpText;
use crate::metrics::Metrics;
use crate::pipeline::{Exchange, RequestBody};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why the upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to the upstream: {0}")]
    Connect(String),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("cannot build the upstream request: {0}")]
    Request(String),
    #[error("the client's request body broke off or was malformed")]
    ClientBody,
    #[error("the client sent none of its request body for {0:?}")]
    ClientSlow(std::time::Duration),
}

impl ForwardError {
    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardError::Connect(_) => "connect",
            ForwardError::Timeout(_) => "timeout",
            ForwardError::Protocol(_) => "protocol",
            ForwardError::Request(_) => "request",
            ForwardError::ClientBody => "client_body",
            ForwardError::ClientSlow(_) => "client_timeout",
        }
    }

    /// The answer the client gets: 504 for a timeout, 502 otherwise, with a JSON body; 400 and 408 when
    /// the client's body, not the upstream, failed.
    pub fn response(&self, request_id: &str) -> Response<Body> {
        if let ForwardError::ClientSlow(_) = self {
            return body::too_slow(request_id);
        }
        if let ForwardError::ClientBody = self {
            return super::json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body is malformed",
                request_id,
            );
        }
        let (status, code) = match self {
            ForwardError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            _ => (StatusCode::BAD_GATEWAY, "bad_gateway"),
        };
        let message = match self {
            ForwardError::Timeout(_) => "the login service did not answer in time",
            _ => "the login service could not be reached",
        };
        super::json_error(status, code, message, request_id)
    }
}

/// The upstream of one compiled config: where it is and a pooled client to it.
pub struct Upstream {
    target: config::Upstream,
    /// The target's authority as a `Host` value, made once.
    host: HeaderValue,
    transport: Transport,
    metrics: Arc<Metrics>,
    /// `authward_upstream_errors_total{kind="read_timeout"}`: answers cut off by `read_timeout`.
    stalled: prometheus::IntCounter,
}

/// How requests reach the upstream.
enum Transport {
    /// Plain HTTP: HTTP/1.1 keep-alive connections from our own pool.
    Plain(Arc<H1Pool>),
    /// HTTPS (HTTP/2 or HTTP/1.1 by ALPN): hyper-util's pooled client.
    Tls(Box<Client<Connector, Body>>),
}

impl Upstream {
    /// Builds the client: our HTTP/1.1 pool for http; for https, system roots plus the configured CA,
    /// HTTP/2 through ALPN.
    pub fn new(target: config::Upstream, metrics: Arc<Metrics>) -> Result<Self, ForwardError> {
        let host = HeaderValue::from_str(target.authority.as_str())
            .map_err(|e| ForwardError::Request(e.to_string()))?;
        let stalled = metrics.upstream_errors.with_label_values(&["read_timeout"]);
        if target.scheme == http::uri::Scheme::HTTP {
            let pool = H1Pool::new(
                &target.authority,
                target.connect_timeout,
                target.pool_idle_timeout,
                target.pool_max_idle,
            );
            return Ok(Upstream {
                target,
                host,
                transport: Transport::Plain(pool),
                stalled,
                metrics,
            });
        }
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for ca in &target.ca {
            roots
                .add(ca.clone())
                .map_err(|e| ForwardError::Request(format!("upstream CA: {e}")))?;
        }
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| ForwardError::Request(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(target.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(target.pool_idle_timeout)
            .pool_max_idle_per_host(target.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream {
            target,
            host,
            transport: Transport::Tls(Box::new(client)),
            stalled,
            metrics,
        })
    }

    /// Where the upstream is, for readiness checks.
    pub fn target(&self) -> &config::Upstream {
        &self.target
    }

    /// Sends the exchange's request upstream and returns the answer, or a 502/504 made here.
    pub async fn forward(&self, ex: &mut Exchange) -> Response<Body> {
        let started = Instant::now();
        let result = self.send(ex).await;
        let elapsed = started.elapsed();
        match result {
            Ok(mut response) => {
                ex.upstream.status = Some(response.status());
                ex.upstream.duration = Some(elapsed);
                // The client gets our protocol version, not the upstream's (RFC 9110 §6.2): an HTTP/1.0
                // upstream's answer goes to an HTTP/1.1 client as HTTP/1.1 (hyper answers 1.0 clients in 1.0).
                *response.version_mut() = Version::HTTP_11;
                self.metrics.upstream_duration.observe(elapsed.as_secs_f64());
                // The protocol the upstream switched to (101) goes on to the client, which asked for it.
                let switched = (response.status() == StatusCode::SWITCHING_PROTOCOLS)
                    .then(|| response.headers().get(header::UPGRADE).cloned())
                    .flatten();
                strip_hop_by_hop(response.headers_mut());
                if let Some(protocol) = switched {
                    let headers = response.headers_mut();
                    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    headers.insert(header::UPGRADE, protocol);
                }
                super::strip_internal(response.headers_mut());
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    response
                } else {
                    let (idle, stalled) = (self.target.read_timeout, self.stalled.clone());
                    response.map(|b| body::idle_limited(b, idle, stalled))
                }
            }
            Err(e) => {
                ex.upstream.error = Some(e.kind());
                self.metrics.upstream_errors.with_label_values(&[e.kind()]).inc();
                tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "upstream failed");
                e.response(&ex.ctx.request_id)
            }
        }
    }

    async fn send(&self, ex: &mut Exchange) -> Result<Response<Body>, ForwardError> {
        let upload = Upload::new();
        let client_idle = ex.config.listen.body_read_timeout;
        let pool = match &self.transport {
            Transport::Plain(pool) => pool,
            Transport::Tls(client) => {
                let request = self.build_request(ex, &upload)?;
                return self.send_tls(client, request, &upload, client_idle).await;
            }
        };
        if upgrade_of(&ex.request).is_some() {
            let request = origin_form(self.build_request(ex, &upload)?);
            return match tokio::time::timeout(self.target.timeout, pool.send_upgrade(request)).await {
                Err(_) => Err(ForwardError::Timeout(self.target.timeout)),
                Ok(Err(PoolError::ConnectTimeout(_))) => {
                    Err(ForwardError::Timeout(self.target.connect_timeout))
                }
                Ok(Err(PoolError::Connect(e))) => Err(ForwardError::Connect(e.to_string())),
                Ok(Err(e)) => Err(ForwardError::Protocol(error_chain(&e))),
                Ok(Ok(response)) => Ok(response),
            };
        }
        // A kept-alive connection the upstream closed just as the request went out: a request that is
        // idempotent and has no body is sent again on a new connection (as nginx does), once.
        let resendable = ex.request.method.is_idempotent() && ex.body.is_empty();
        let head = self.request_head(ex)?;
        let body = take_body(ex, &upload);
        let exchange = async {
            match pool.send(&head, body).await {
                Err(PoolError::Stale) if resendable => {
                    tracing::debug!(request_id = %ex.ctx.request_id, "upstream closed a kept-alive connection; sending again");
                    Ok(pool.send_fresh(&head, body::empty()).await)
                }
                other => Ok(other),
            }
        };
        let result = match upload.timed(exchange, self.target.timeout, client_idle).await {
            Ok(Err(e)) => return Err(e),
            Ok(Ok(r)) => Ok(r),
            Err(expired) => Err(expired),
        };
        if result.as_ref().is_ok_and(Result::is_err) && upload.failed() {
            return Err(ForwardError::ClientBody);
        }
        match result {
            Err(Expired::Client) => Err(ForwardError::ClientSlow(client_idle)),
            Err(Expired::Upstream) => Err(ForwardError::Timeout(self.target.timeout)),
            Ok(Err(PoolError::ConnectTimeout(_))) => Err(ForwardError::Timeout(self.target.connect_timeout)),
            Ok(Err(PoolError::Connect(e))) => Err(ForwardError::Connect(e.to_string())),
            Ok(Err(e)) => Err(ForwardError::Protocol(error_chain(&e))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    async fn send_tls(
        &self,
        client: &Client<Connector, Body>,
        request: Request<Body>,
        upload: &Upload,
        client_idle: std::time::Duration,
    ) -> Result<Response<Body>, ForwardError> {
        let result = upload
            .timed(client.request(request), self.target.timeout, client_idle)
            .await;
        if result.as_ref().is_ok_and(Result::is_err) && upload.failed() {
            // The client, not the upstream, broke the exchange: a 4xx, not a 502.
            return Err(ForwardError::ClientBody);
        }
        match result {
            Err(Expired::Client) => Err(ForwardError::ClientSlow(client_idle)),
            Err(Expired::Upstream) => Err(ForwardError::Timeout(self.target.timeout)),
            Ok(Err(e)) if e.is_connect() => {
                if is_timeout(&e) {
                    Err(ForwardError::Timeout(self.target.connect_timeout))
                } else {
                    Err(ForwardError::Connect(error_chain(&e)))
                }
            }
            Ok(Err(e)) => Err(ForwardError::Protocol(error_chain(&e))),
            Ok(Ok(response)) => Ok(response.map(body::boxed)),
        }
    }

    /// The request for hyper's clients (https upstreams, upgrades): the headers of [`Self::upstream_headers`]
    /// in a new map, with the length of a buffered body.
    fn build_request(&self, ex: &mut Exchange, upload: &Arc<Upload>) -> Result<Request<Body>, ForwardError> {
        let uri = Uri::builder()
            .scheme(self.target.scheme.clone())
            .authority(self.target.authority.clone())
            .path_and_query(self.target_path(&ex.request)?)
            .build()
            .map_err(|e| ForwardError::Request(e.to_string()))?;
        let mut headers = HeaderMap::with_capacity(ex.request.headers.len() + 6);
        self.upstream_headers(ex, |name, value| {
            headers.append(name.clone(), value.clone());
        })?;
        if let RequestBody::Buffered(bytes) = &ex.body {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        let mut request = Request::new(take_body(ex, upload));
        *request.method_mut() = ex.request.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// The request line and headers for our own HTTP/1.1 client, written straight from the client's
    /// headers: no map is copied or changed.
    fn request_head(&self, ex: &Exchange) -> Result<RequestHead, ForwardError> {
        let mut head = RequestHead::new(&ex.request.method, self.target_path(&ex.request)?.as_str());
        self.upstream_headers(ex, |name, value| head.header(name, value))?;
        Ok(head)
    }

    /// The client's path and query behind the upstream's path prefix.
    fn target_path(&self, parts: &http::request::Parts) -> Result<PathAndQuery, ForwardError> {
        match parts.uri.path_and_query() {
            // The common case (no prefix): the client's path and query as they are, without a copy.
            Some(p) if self.target.path_prefix.is_empty() => Ok(p.clone()),
            p => {
                let p = p.map_or("/", |p| p.as_str());
                PathAndQuery::try_from(format!("{}{}", self.target.path_prefix, p))
                    .map_err(|e| ForwardError::Request(e.to_string()))
            }
        }
    }

    /// Every header the upstream gets, each passed to `emit` once, in one policy for every client: the
    /// client's own except the hop-by-hop ones (and those its `Connection` names), `Host` and the
    /// forwarded headers it may not set; then `Host`, the upgrade asked for, `X-Forwarded-For`, `-Proto`
    /// and `-Host` (a trusted peer's values kept and extended, an untrusted peer's replaced, so the
    /// upstream never believes a client's own claims), the labels and the request id.
    fn upstream_headers(
        &self,
        ex: &Exchange,
        mut emit: impl FnMut(&HeaderName, &HeaderValue),
    ) -> Result<(), ForwardError> {
        let parts = &ex.request;
        let headers = &parts.headers;
        let trusted = ex.config.is_trusted(ex.ctx.peer.ip());
        let keep_proto = trusted && headers.contains_key(X_FORWARDED_PROTO);
        let keep_host = trusted && headers.contains_key(X_FORWARDED_HOST);
        let named = connection_named(headers);
        let mut cookies = joined_cookies(headers);
        for (name, value) in headers {
            let ours = *name == header::HOST
                || *name == X_FORWARDED_FOR
                || (*name == X_FORWARDED_PROTO && !keep_proto)
                || (*name == X_FORWARDED_HOST && !keep_host);
            if ours || hop_by_hop_index(name).is_some() || named.contains(name) {
                continue;
            }
            if let (true, Some(joined)) = (*name == header::COOKIE, &mut cookies) {
                // In the first one's place; the others are in it.
                if let Some(v) = joined.take() {
                    emit(name, &v);
                }
                continue;
            }
            emit(name, value);
        }
        if let Some(protocol) = upgrade_of(parts) {
            emit(&header::CONNECTION, &HeaderValue::from_static("upgrade"));
            emit(&header::UPGRADE, &protocol);
        }
        // The target's authority when it has one (an absolute-form target, HTTP/2's `:authority`), which
        // wins over `Host` (RFC 9112 §3.2.2); else `Host`.
        let original_host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| headers.get(header::HOST).cloned());
        match &original_host {
            Some(h) if self.target.preserve_host => emit(&header::HOST, h),
            _ => emit(&header::HOST, &self.host),
        }
        let peer = IpText::new(config::canonical_ip(ex.ctx.peer.ip()));
        let mut chain = String::new();
        if trusted {
            for prior in headers
                .get_all(X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
            {
                chain.push_str(prior);
                chain.push_str(", ");
            }
        }
        chain.push_str(peer.as_str());
        if let Ok(v) = HeaderValue::from_str(&chain) {
            emit(&X_FORWARDED_FOR, &v);
        }
        if !keep_proto {
            let proto = HeaderValue::from_static(if ex.ctx.tls { "https" } else { "http" });
            emit(&X_FORWARDED_PROTO, &proto);
        }
        if let (false, Some(h)) = (keep_host, &original_host) {
            emit(&X_FORWARDED_HOST, h);
        }
        if !ex.labels.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&ex.labels.join(",")) {
                emit(&HeaderName::from_static("x-authward-labels"), &v);
            }
        }
        let id =
            HeaderValue::from_str(&ex.ctx.request_id).map_err(|e| ForwardError::Request(e.to_string()))?;
        emit(&HeaderName::from_static("x-authward-request-id"), &id);
        Ok(())
    }
}

/// The client's `Cookie` headers joined into one with `"; "` when there are several, as HTTP/2 clients send
/// them (one a cookie, RFC 9113 §8.2.3): an HTTP/1.1 server reads only one (Werkzeug joined them with `,`
/// and lost the session). `None` when there are fewer than two; `Some(None)` once the joined one is sent.
fn joined_cookies(headers: &http::HeaderMap) -> Option<Option<HeaderValue>> {
    let mut all = headers.get_all(header::COOKIE).iter();
    let first = all.next()?;
    let second = all.next()?;
    let mut joined = Vec::with_capacity(first.len() + second.len() + 2);
    for v in [first, second].into_iter().chain(all) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok().map(Some)
}

/// The request's body for the upstream, taken from the exchange, reporting to `upload` how its sending
/// goes (and whether the client's side breaks it off).
fn take_body(ex: &mut Exchange, upload: &Arc<Upload>) -> Body {
    match std::mem::replace(&mut ex.body, RequestBody::Buffered(bytes::Bytes::new())) {
        RequestBody::Streaming(b) => upload.track(b, true),
        RequestBody::Buffered(bytes) => upload.track(body::full(bytes), false),
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The protocol an HTTP/1.1 request asks to switch to (its `Upgrade`, with `upgrade` among the
/// `Connection` options), if it is `websocket`: sent on to the upstream, and tunnelled once it agrees (101).
/// hyper marks such requests with the means to take over their connection: without it (most requests,
/// and every request not from a client connection) nothing is looked up.
fn upgrade_of(request: &http::request::Parts) -> Option<HeaderValue> {
    if request.version != Version::HTTP_11 || request.extensions.get::<hyper::upgrade::OnUpgrade>().is_none()
    {
        return None;
    }
    let asked = request
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("upgrade"));
    // WebSocket only: a tunnel carries whatever the client sends next past every stage, so a protocol that
    // carries more HTTP requests (h2c: "h2c smuggling") must never get one.
    let protocol = request.headers.get(header::UPGRADE)?;
    let websocket = protocol.as_bytes().eq_ignore_ascii_case(b"websocket");
    (asked && websocket).then(|| protocol.clone())
}

/// HTTP/1.1 on our own connection: the request line carries the origin form.
fn origin_form(mut request: Request<Body>) -> Request<Body> {
    let origin = request.uri().path_and_query().cloned();
    *request.uri_mut() = origin.map_or_else(|| Uri::from_static("/"), Uri::from);
    request
}

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and the obsolete `Proxy-Connection`), plus the proxy
/// authentication headers, which belong to one hop as well.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
];

/// The position of `name` in [`HOP_BY_HOP`]: one match on the text (by its length first), not a
/// comparison with each of them.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "proxy-connection" => 1,
        "keep-alive" => 2,
        "te" => 3,
        "transfer-encoding" => 4,
        "upgrade" => 5,
        "proxy-authorization" => 6,
        "proxy-authenticate" => 7,
        "trailer" => 8,
        _ => return None,
    })
}

/// Removes the hop-by-hop headers, and every header that `Connection` names. One pass over the names finds
/// which are present; only those are removed (most requests carry none and most answers only
/// `Connection: keep-alive`, so that is one removal and no allocation).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection` is HOP_BY_HOP[0].
    if present & 1 != 0 {
        for name in connection_named(headers) {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The headers `Connection` names as hop-by-hop (its options other than `keep-alive` and `close`): none,
/// with no allocation, when there is no `Connection`.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        if err.to_string().contains("timed out") {
            return true;
        }
        cur = err.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut n: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn the_index_names_each_hop_by_hop_header_and_no_other() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        for other in [
            "host",
            "content-length",
            "connections",
            "x-connection",
            "tes",
            "keep-alive2",
        ] {
            assert_eq!(hop_by_hop_index(&HeaderName::from_static(other)), None, "{other}");
        }
    }

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-authenticate", "Basic"),
            ("trailer", "x-sum"),
            ("content-type", "application/json"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["content-type", "set-cookie"]);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn headers_named_by_connection_go_whatever_their_case_and_spacing() {
        let mut h = map(&[
            ("connection", "close, X-Hop"),
            ("connection", " x-other ,keep-alive"),
            ("x-hop", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["x-kept"]);
    }

    #[test]
    fn a_map_without_hop_by_hop_headers_is_left_as_it_is() {
        let mut h = map(&[("host", "a"), ("x-hop", "1"), ("cookie", "c=1")]);
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
        // Only the one present is removed: the others' absence changes nothing.
        let mut h = map(&[("trailer", "x"), ("x-kept", "1")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["x-kept"]);
    }
}
