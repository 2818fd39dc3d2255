//! The admin listener: health, readiness, metrics, and the token-protected admin API.
//!
//! Routes:
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when a config is loaded and the upstream accepts connections, else 503.
//! - `GET /metrics`: Prometheus text.
//! - `POST /admin/v1/reload`: reloads the config; 200, or 422 with every error's `file:line:column`.
//! - `GET /admin/v1/users/{username}/events?limit=N&cursor=C`: the user's events, newest first
//!   (`{"events": [...], "next_cursor": "..." | null}`; `limit` 20 by default, at most 100; the username
//!   percent-encoded).
//! - `POST /admin/v1/events/{event_id}/feedback` with `{"value": "valid" | "invalid"}`: the updated event.
//! - `PUT /admin/v1/users/{username}/mfa/totp`: enrolls a new TOTP factor, replacing any earlier one;
//!   `{"secret": "<base32>", "otpauth_uri": "otpauth://totp/..."}`, shown this once (404 without `mfa`).
//! - `DELETE /admin/v1/users/{username}/mfa/totp`: removes the factor; 204, or 404 when there is none.
//!
//! Everything under `/admin/v1/` needs `Authorization: Bearer <token>`, compared in constant time. With no
//! token configured the admin API answers 404: it is off, never open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::events::{FeedbackError, FeedbackSource, FeedbackValue, HistoryError};
use crate::proxy::Shared;
use crate::proxy::body::{self, Body};
use crate::proxy::server::Reloader;

/// Serves the admin listener until `stop` flips.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let (shared, reloader, builder) = (shared.clone(), reloader.clone(), builder.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (shared, reloader) = (shared.clone(), reloader.clone());
                async move { Ok::<_, Infallible>(route(&shared, &reloader, req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn route(shared: &Shared, reloader: &Reloader, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n", "text/plain"),
        (&Method::GET, "/readyz") => readiness(shared).await,
        (&Method::GET, "/metrics") => {
            if let Some((keys, bytes)) = shared.store.usage() {
                shared
                    .metrics
                    .store_keys
                    .set(i64::try_from(keys).unwrap_or(i64::MAX));
                shared
                    .metrics
                    .store_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            text(
                StatusCode::OK,
                &shared.metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        (_, p) if p.starts_with("/admin/v1/") || p == "/admin/v1" => {
            let expected = shared.runtime.load().config.admin.token_sha256;
            let Some(expected) = expected else {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "admin_api_disabled",
                    "message": "the admin API is off: set admin.token_env and that variable"}),
                );
            };
            if !authorized(req.headers(), &expected) {
                let mut r = json(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": "unauthorized",
                    "message": "send Authorization: Bearer <admin token>"}),
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            if let Some(rest) = p.strip_prefix("/admin/v1/users/") {
                if let (&Method::GET, Some(user)) = (req.method(), rest.strip_suffix("/events")) {
                    return user_events(shared, user, req.uri().query()).await;
                }
                if let Some(user) = rest.strip_suffix("/mfa/totp") {
                    return totp_factor(shared, req.method(), user).await;
                }
            }
            if let Some(rest) = p.strip_prefix("/admin/v1/events/") {
                if let (&Method::POST, Some(id)) = (req.method(), rest.strip_suffix("/feedback")) {
                    let id = id.to_string();
                    return event_feedback(shared, &id, req.into_body()).await;
                }
            }
            match (req.method(), p) {
                (&Method::POST, "/admin/v1/reload") => match reloader.reload("admin").await {
                    Ok(()) => json(StatusCode::OK, serde_json::json!({"result": "ok"})),
                    Err(errors) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        serde_json::json!({"result": "error", "errors": errors.0.iter().map(|e| serde_json::json!({
                            "file": e.file, "line": e.line, "column": e.column, "message": e.message,
                            "text": e.to_string(),
                        })).collect::<Vec<_>>()}),
                    ),
                },
                _ => json(StatusCode::NOT_FOUND, serde_json::json!({"error": "not_found"})),
            }
        }
        _ => json(StatusCode::NOT_FOUND, serde_json::json!({"error": "not_found"})),
    }
}

/// Events listed per page by default and at most.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// `GET /admin/v1/users/{username}/events?limit=N&cursor=C`.
async fn user_events(shared: &Shared, raw_user: &str, query: Option<&str>) -> Response<Body> {
    let bad = |message: &str| {
        json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "bad_request", "message": message}),
        )
    };
    let Some(username) = percent_decode(raw_user).filter(|u| !u.is_empty() && !u.contains('\0')) else {
        return bad("the username is not valid percent-encoded UTF-8");
    };
    let (mut limit, mut cursor) = (DEFAULT_LIMIT, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "limit" => match v.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(MAX_LIMIT),
                _ => return bad("limit must be a whole number from 1 to 100"),
            },
            "cursor" => cursor = Some(v.into_owned()),
            _ => {}
        }
    }
    let limits = shared.runtime.load().config.events.history;
    match shared
        .recorder
        .history()
        .list(&username, limit, cursor.as_deref(), &limits)
        .await
    {
        Ok(page) => json(
            StatusCode::OK,
            serde_json::json!({"events": page.events, "next_cursor": page.next_cursor}),
        ),
        Err(HistoryError::BadCursor) => bad("the cursor is not one this API handed out"),
        Err(e) => store_error(&e),
    }
}

/// The body of a feedback request.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    value: FeedbackValue,
}

/// `POST /admin/v1/events/{event_id}/feedback`.
async fn event_feedback(shared: &Shared, event_id: &str, incoming: hyper::body::Incoming) -> Response<Body> {
    let bad = |message: &str| {
        json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "bad_request", "message": message}),
        )
    };
    let bytes = match body::read_capped(body::boxed(incoming), 4096).await {
        Ok(body::Capped::Complete(b)) => b,
        Ok(body::Capped::TooLarge { .. }) => return bad("the body is larger than 4096 bytes"),
        Err(_) => return bad("the body could not be read"),
    };
    let Ok(FeedbackBody { value }) = serde_json::from_slice(&bytes) else {
        return bad(r#"send {"value": "valid"} or {"value": "invalid"}"#);
    };
    let config = shared.runtime.load_full().config.clone();
    match shared
        .recorder
        .feedback(&config.events, event_id, value, FeedbackSource::Admin)
        .await
    {
        Ok(event) => json(StatusCode::OK, serde_json::json!(event)),
        Err(FeedbackError::NotFound) => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not_found", "message": "no event with this id is kept"}),
        ),
        Err(FeedbackError::History(e)) => store_error(&e),
    }
}

/// `PUT` and `DELETE /admin/v1/users/{username}/mfa/totp`.
async fn totp_factor(shared: &Shared, method: &Method, raw_user: &str) -> Response<Body> {
    let Some(username) = percent_decode(raw_user).filter(|u| !u.trim().is_empty() && !u.contains('\0'))
    else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "bad_request", "message": "the username is not valid percent-encoded UTF-8"}),
        );
    };
    let Some(mfa) = shared.runtime.load().config.mfa.clone() else {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "mfa_disabled", "message": "MFA is off: add an `mfa` section"}),
        );
    };
    let user = crate::risk::stage::user_key(&username);
    let store = shared.store.as_ref();
    let (action, result) = match *method {
        Method::PUT => (
            "enroll",
            crate::mfa::enroll::enroll(store, &mfa, &user, &username, shared.clock.now_ms())
                .await
                .map(|e| json(StatusCode::OK, serde_json::json!(e))),
        ),
        Method::DELETE => (
            "remove",
            crate::mfa::enroll::remove(store, &user).await.map(|found| {
                if found {
                    text(StatusCode::NO_CONTENT, "", "text/plain")
                } else {
                    json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"error": "not_found", "message": "the user has no TOTP factor"}),
                    )
                }
            }),
        ),
        _ => {
            let mut r = json(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"error": "method_not_allowed"}),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("PUT, DELETE"));
            return r;
        }
    };
    match result {
        Ok(r) => {
            shared.metrics.mfa_enrollments.with_label_values(&[action]).inc();
            tracing::info!(action, "admin API: TOTP factor changed");
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin API: the TOTP factor cannot be changed");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "unavailable", "message": "the store cannot be written now"}),
            )
        }
    }
}

fn store_error(e: &HistoryError) -> Response<Body> {
    tracing::warn!(error = %e, "admin API: the event history is unavailable");
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"error": "unavailable", "message": "the event history cannot be read now"}),
    )
}

/// Decodes `%XX` escapes of a path segment; `None` for a broken escape or text that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Whether the request carries the admin token; digests of equal length are compared in constant time.
fn authorized(headers: &http::HeaderMap, expected_sha256: &[u8; 32]) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return false;
    };
    let got: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    got.ct_eq(expected_sha256).into()
}

async fn readiness(shared: &Shared) -> Response<Body> {
    let runtime = shared.runtime.load_full();
    let authority = runtime.upstream.target().authority.clone();
    let default_port = if runtime.upstream.target().scheme == http::uri::Scheme::HTTPS {
        443
    } else {
        80
    };
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(default_port)
    );
    let reachable = matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&addr)).await,
        Ok(Ok(_))
    );
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        serde_json::json!({"config": "loaded", "upstream": if reachable { "reachable" } else { "unreachable" }}),
    )
}

fn text(status: StatusCode, body: &str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    text(status, &value.to_string(), "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_percent_decoded() {
        assert_eq!(percent_decode("alice").as_deref(), Some("alice"));
        assert_eq!(
            percent_decode("a%40b.example%2Fx").as_deref(),
            Some("a@b.example/x")
        );
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn bearer_token_checks() {
        let expected: [u8; 32] = Sha256::digest(b"s3cret").into();
        let mut h = http::HeaderMap::new();
        assert!(!authorized(&h, &expected));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(authorized(&h, &expected));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cre"));
        assert!(!authorized(&h, &expected));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s3cret"));
        assert!(!authorized(&h, &expected));
    }
}
