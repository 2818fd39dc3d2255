//! Browser challenge and CAPTCHA: what a client gets when a rule asks it to prove itself.
//!
//! This version answers 403 with a notice (JSON, or HTML for browsers); the challenge page, its assets
//! under `/.authward/challenge/` and the clearance token replace [`required`]'s answer when they land,
//! and nothing else needs to change.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::proxy::body::{self, Body};

/// Which proof a rule asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A silent proof of work that a browser solves.
    Challenge,
    /// A CAPTCHA that a person solves.
    Captcha,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Challenge => "challenge",
            Kind::Captcha => "captcha",
        }
    }
}

/// The answer to a request that must complete a challenge first.
pub fn required(kind: Kind, request_headers: &HeaderMap, request_id: &str) -> Response<Body> {
    let wants_html = request_headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let (body, content_type) = if wants_html {
        (
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Verification required</title></head>\
                 <body><h1>Verification required</h1><p>This request needs a browser {} before it can go on. \
                 Reference: {request_id}</p></body></html>",
                kind.name()
            ),
            "text/html; charset=utf-8",
        )
    } else {
        (
            serde_json::json!({
                "error": format!("{}_required", kind.name()),
                "message": format!("this request needs a {} before it can go on", kind.name()),
                "request_id": request_id,
            })
            .to_string(),
            "application/json",
        )
    };
    let mut r = Response::new(body::full(body));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
