//! The profile's two pipeline stages: recognize the operation (2) and classify the upstream's answer (7).

use std::sync::Arc;

use http::{Response, StatusCode};

use super::{Outcome, Profiles};
use crate::metrics::Metrics;
use crate::pipeline::{Exchange, Flow, Hooks, RequestBody, Stage};
use crate::proxy::body::{self, Body, Capped};
use crate::proxy::json_error;

/// Stage 2: matches the request against the profiles and, for a match, reads the body (within the cap)
/// and extracts the username, password, phone and client id. Unprofiled requests stream untouched.
pub struct Recognize {
    profiles: Arc<Profiles>,
}

impl Recognize {
    pub fn new(profiles: Arc<Profiles>) -> Self {
        Recognize { profiles }
    }
}

impl Stage for Recognize {
    fn name(&self) -> &'static str {
        "profile"
    }

    fn hooks(&self) -> Hooks {
        if self.profiles.is_empty() {
            Hooks::NONE
        } else {
            Hooks::REQUEST
        }
    }

    async fn on_request(&self, ex: &mut Exchange) -> Flow {
        let Some(candidates) =
            self.profiles
                .candidates(&ex.request.method, &ex.ctx.path, &ex.request.headers)
        else {
            return Flow::Continue;
        };
        let limit = candidates.body_limit().unwrap_or(ex.config.listen.body_limit);
        let too_large = |ex: &mut Exchange| {
            ex.rejected = Some("body_too_large");
            Flow::Respond(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("the request body is larger than {limit} bytes"),
                &ex.ctx.request_id,
            ))
        };
        let declared = crate::proxy::body::content_length(&ex.request.headers);
        if declared.is_some_and(|n| n > limit) {
            return too_large(ex);
        }
        let bytes = match std::mem::replace(&mut ex.body, RequestBody::Buffered(bytes::Bytes::new())) {
            RequestBody::Buffered(b) => b,
            RequestBody::Streaming(b) => {
                match body::read_capped_within(b, limit, ex.config.listen.body_read_timeout).await {
                    Ok(Capped::Complete(bytes)) => bytes,
                    Ok(Capped::TooLarge { body, .. }) => {
                        // Put the unread rest back, so the proxy knows the connection cannot be reused.
                        ex.body = RequestBody::Streaming(body);
                        return too_large(ex);
                    }
                    Err(body::ReadError::Timeout(_)) => {
                        ex.rejected = Some("body_timeout");
                        return Flow::Respond(body::too_slow(&ex.ctx.request_id));
                    }
                    Err(e) => {
                        ex.rejected = Some("bad_body");
                        tracing::debug!(request_id = %ex.ctx.request_id, error = %e, "request body read failed");
                        return Flow::Respond(json_error(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            "the request body could not be read",
                            &ex.ctx.request_id,
                        ));
                    }
                }
            }
        };
        // A compressed body is read decoded, and sent on decoded, so that the upstream gets the very fields
        // the profile, the web ACL and the risk engine saw (a gzip sign-in must not slip past them).
        let bytes = match body::decode(&ex.request.headers, &bytes, limit) {
            Ok(None) => bytes,
            Ok(Some(decoded)) => {
                ex.request.headers.remove(http::header::CONTENT_ENCODING);
                decoded
            }
            Err(body::DecodeError::TooLarge(_)) => return too_large(ex),
            Err(e) => {
                ex.rejected = Some("encoded_body");
                let status = match e {
                    body::DecodeError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    _ => StatusCode::BAD_REQUEST,
                };
                return Flow::Respond(json_error(
                    status,
                    "unreadable_body",
                    &e.to_string(),
                    &ex.ctx.request_id,
                ));
            }
        };
        ex.profile = match candidates.resolve(ex.request.uri.query(), &ex.request.headers, &bytes) {
            Ok(m) => m,
            Err(e) => {
                ex.rejected = Some("unreadable_body");
                return Flow::Respond(json_error(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    &e.to_string(),
                    &ex.ctx.request_id,
                ));
            }
        };
        if ex.profile.as_ref().is_some_and(|m| m.ambiguous) {
            ex.rejected = Some("ambiguous_fields");
            return Flow::Respond(json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a field of this request is sent more than once with different values, or as a list or an object",
                &ex.ctx.request_id,
            ));
        }
        if let Some(m) = &ex.profile {
            ex.labels.extend(m.labels());
        }
        ex.body = RequestBody::Buffered(bytes);
        if ex
            .profile
            .as_ref()
            .is_some_and(|m| m.profile.outcome_needs_body())
        {
            // The answer must be read to be classified: ask the upstream for it uncompressed.
            ex.request.headers.remove(http::header::ACCEPT_ENCODING);
        }
        Flow::Continue
    }
}

/// Stage 7: classifies the upstream's answer to a profiled request as success, failure or challenge,
/// reading the answer's body only when the profile needs it (within the response cap; a larger answer
/// passes through unchanged and unclassified).
pub struct Classify {
    metrics: Arc<Metrics>,
}

impl Classify {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Classify { metrics }
    }
}

impl Stage for Classify {
    fn name(&self) -> &'static str {
        "outcome"
    }

    fn hooks(&self) -> Hooks {
        Hooks::RESPONSE.profiled()
    }

    async fn on_response(&self, ex: &mut Exchange, response: &mut Response<Body>) {
        let Some(matched) = ex.profile.as_ref() else {
            return;
        };
        if ex.upstream.status.is_none() {
            return;
        }
        let profile = matched.profile.clone();
        let outcome = if profile.outcome_needs_body() {
            let taken = std::mem::replace(response.body_mut(), body::empty());
            // The answer's head came within the upstream timeout; its body gets as long again.
            let timeout = ex
                .config
                .upstream
                .as_ref()
                .map_or(std::time::Duration::from_secs(30), |u| u.timeout);
            match body::read_capped_within(taken, ex.config.listen.response_body_limit, timeout).await {
                Ok(Capped::Complete(bytes)) => {
                    let o = profile.classify(response.status(), response.headers(), Some(&bytes));
                    *response.body_mut() = body::full(bytes);
                    o
                }
                Ok(Capped::TooLarge { body: rest, .. }) => {
                    *response.body_mut() = rest;
                    Outcome::Unknown
                }
                Err(body::ReadError::Timeout(_)) => {
                    tracing::warn!(request_id = %ex.ctx.request_id, "upstream body stalled");
                    *response = json_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        "the login service did not answer in time",
                        &ex.ctx.request_id,
                    );
                    ex.upstream.error = Some("timeout");
                    Outcome::Unknown
                }
                Err(e) => {
                    tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "upstream body failed");
                    *response = json_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        "the login service's answer broke off",
                        &ex.ctx.request_id,
                    );
                    ex.upstream.error = Some("protocol");
                    Outcome::Unknown
                }
            }
        } else {
            profile.classify(response.status(), response.headers(), None)
        };
        ex.outcome = Some(outcome);
        self.metrics
            .outcomes
            .with_label_values(&[profile.name(), profile.operation().as_str(), outcome.as_str()])
            .inc();
    }
}
