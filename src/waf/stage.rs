//! The web ACL's pipeline stages: inspect every request (3), and count failed sign-ins for rate rules.

use std::borrow::Cow;
use std::sync::Arc;

use http::{Response, StatusCode};

use super::field::RequestView;
use super::{Action, BlockResponse, Context, WebAcl};
use crate::challenge;
use crate::metrics::Metrics;
use crate::pipeline::{Exchange, Flow, Hooks, RequestBody, Stage};
use crate::profile::Outcome;
use crate::proxy::body::{self, Body, Capped};
use crate::store::Store;

/// Stage 3: evaluates the web ACL; a terminating rule answers here and the upstream never sees the request.
pub struct Inspect {
    acl: Arc<WebAcl>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Inspect {
    pub fn new(acl: Arc<WebAcl>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Inspect { acl, store, metrics }
    }
}

impl Stage for Inspect {
    fn name(&self) -> &'static str {
        "web_acl"
    }

    fn hooks(&self) -> Hooks {
        if self.acl.is_empty() {
            Hooks::NONE
        } else {
            Hooks::REQUEST
        }
    }

    async fn on_request(&self, ex: &mut Exchange) -> Flow {
        if self.acl.is_empty() {
            return Flow::Continue;
        }
        // Read what body rules need: profiled routes are already buffered; elsewhere read up to the cap
        // and, past it, inspect its first `listen.body_limit` bytes exactly (per each statement's oversize
        // policy, whatever the chunks the body came in) and stream the rest, all of it, on.
        let mut prefix = None;
        if self.acl.needs_body() && crate::proxy::body::has_body(&ex.request.headers) {
            if let RequestBody::Streaming(_) = ex.body {
                let RequestBody::Streaming(b) =
                    std::mem::replace(&mut ex.body, RequestBody::Buffered(bytes::Bytes::new()))
                else {
                    return Flow::Continue;
                };
                let (limit, timeout) = (ex.config.listen.body_limit, ex.config.listen.body_read_timeout);
                match body::read_capped_within(b, limit, timeout).await {
                    Ok(Capped::Complete(bytes)) => ex.body = RequestBody::Buffered(bytes),
                    Ok(Capped::TooLarge {
                        prefix: p,
                        body: rest,
                    }) => {
                        prefix = Some(p);
                        ex.body = RequestBody::Streaming(rest);
                    }
                    Err(body::ReadError::Timeout(_)) => {
                        ex.rejected = Some("body_timeout");
                        return Flow::Respond(body::too_slow(&ex.ctx.request_id));
                    }
                    Err(body::ReadError::Body(_)) => {
                        ex.rejected = Some("bad_body");
                        return Flow::Respond(crate::proxy::json_error(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            "the request body could not be read",
                            &ex.ctx.request_id,
                        ));
                    }
                }
            }
        }
        let (body, oversize) = match (&ex.body, &prefix) {
            (_, Some(p)) => (Some(&p[..]), true),
            (RequestBody::Buffered(b), None) => (Some(&b[..]), false),
            (RequestBody::Streaming(_), None) => (None, false),
        };
        let body_len = prefix
            .as_ref()
            .and_then(|_| crate::proxy::body::content_length(&ex.request.headers));
        let view = RequestView {
            method: &ex.request.method,
            uri: &ex.request.uri,
            headers: &ex.request.headers,
            body,
            body_oversize: oversize,
            body_len,
            profile: ex.profile.as_ref().map(|m| &m.fields),
            json: ex
                .profile
                .as_ref()
                .and_then(|m| m.json.as_ref())
                .map(|j| j.value()),
            ja4: ex.ctx.ja4.as_deref(),
        };
        let cx = Context {
            client_ip: ex.ctx.client_ip,
            geo: &ex.config.geo,
            store: self.store.as_ref(),
            explain: false,
        };
        let mut labels = std::mem::take(&mut ex.labels);
        let verdict = self.acl.evaluate(&view, &cx, &mut labels).await;
        ex.labels = labels;
        for (rule, action) in &verdict.matched {
            let shadowed = verdict.shadow.iter().any(|(r, _)| r == rule);
            let label = if shadowed {
                shadow_label(action)
            } else {
                Cow::Borrowed(*action)
            };
            self.metrics
                .rule_matches
                .with_label_values(&[rule.as_str(), &label])
                .inc();
        }
        let response = match &verdict.terminating {
            Some((_, Action::Block(b))) => Some(block(b, &ex.ctx.request_id)),
            Some((_, Action::Challenge)) => Some(challenge::required(
                challenge::Kind::Challenge,
                &ex.request.headers,
                &ex.ctx.request_id,
            )),
            Some((_, Action::Captcha)) => Some(challenge::required(
                challenge::Kind::Captcha,
                &ex.request.headers,
                &ex.ctx.request_id,
            )),
            Some((_, Action::Allow | Action::Count)) => None,
            None => self.acl.default_block().map(|b| block(b, &ex.ctx.request_id)),
        };
        if response.is_some() {
            ex.rejected = Some("web_acl");
        }
        ex.waf = Some(verdict);
        match response {
            Some(r) => Flow::Respond(r),
            None => Flow::Continue,
        }
    }
}

/// The metric label of a shadow rule's match: `shadow_<action>`.
fn shadow_label(action: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(match action {
        "allow" => "shadow_allow",
        "block" => "shadow_block",
        "count" => "shadow_count",
        "challenge" => "shadow_challenge",
        "captcha" => "shadow_captcha",
        other => return Cow::Owned(format!("shadow_{other}")),
    })
}

/// A block answer: the rule's custom response, or a JSON 403 that names no rule (the request id links
/// the client's report to the log line).
fn block(b: &BlockResponse, request_id: &str) -> Response<Body> {
    let mut r = match &b.body {
        Some(text) => Response::new(body::full(text.clone())),
        None => {
            let mut r =
                crate::proxy::json_error(b.status, "forbidden", "the request was blocked", request_id);
            *r.status_mut() = b.status;
            r
        }
    };
    *r.status_mut() = b.status;
    for (k, v) in &b.headers {
        r.headers_mut().insert(k.clone(), v.clone());
    }
    r
}

/// After the outcome is known: counts failed sign-ins for rate rules with `count: failed_sign_in`.
pub struct CountFailures {
    acl: Arc<WebAcl>,
    store: Arc<dyn Store>,
}

impl CountFailures {
    pub fn new(acl: Arc<WebAcl>, store: Arc<dyn Store>) -> Self {
        CountFailures { acl, store }
    }
}

impl Stage for CountFailures {
    fn name(&self) -> &'static str {
        "web_acl_failures"
    }

    fn hooks(&self) -> Hooks {
        Hooks::RESPONSE.profiled()
    }

    async fn on_response(&self, ex: &mut Exchange, _response: &mut Response<Body>) {
        if ex.outcome != Some(Outcome::Failure) {
            return;
        }
        if let Some(v) = &ex.waf {
            if !v.pending_failures.is_empty() {
                self.acl
                    .record_failures(&v.pending_failures, self.store.as_ref())
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_labels_name_the_action() {
        for action in [Action::Allow, Action::Count, Action::Challenge, Action::Captcha]
            .iter()
            .map(Action::name)
            .chain(["block", "other"])
        {
            assert_eq!(shadow_label(action), format!("shadow_{action}"));
        }
    }
}
