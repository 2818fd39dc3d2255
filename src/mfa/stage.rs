//! Stage 9, rewrite: holds a successful sign-in that the risk decision steps up and answers with an MFA
//! challenge instead; answers Cognito's challenge responses; makes revealing failures identical.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Response, StatusCode};

use super::hold::{self, Answer, Binding, Held, Place};
use super::{METHODS_JSON, Mfa, cognito, enroll, enumeration, page};
use crate::events::{EventMfa, EventType};
use crate::pipeline::{Exchange, Flow, Services, Stage};
use crate::profile::file::MfaStyle;
use crate::profile::{FixedResponse, Outcome};
use crate::proxy::body::{self, Body, Capped};
use crate::proxy::json_error;
use crate::risk::device;
use crate::risk::file::{RiskAction, RiskMode};

/// The rewrite stage; it sits after the risk stage, so its response hook reads the risk decision.
pub struct Rewrite {
    mfa: Option<Arc<Mfa>>,
    services: Services,
}

impl Rewrite {
    pub fn new(mfa: Option<Arc<Mfa>>, services: &Services) -> Self {
        Rewrite {
            mfa,
            services: services.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Stage for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    async fn on_request(&self, ex: &mut Exchange) -> Flow {
        let Some(mfa) = &self.mfa else {
            return Flow::Continue;
        };
        let Some((id, code)) = cognito::answer_of(ex) else {
            return Flow::Continue;
        };
        let verdict = super::verify::check(&self.services, mfa, ex, &id, &code).await;
        Flow::Respond(cognito::render(verdict))
    }

    async fn on_response(&self, ex: &mut Exchange, response: &mut Response<Body>) {
        enumeration::apply(ex, response, &self.services.metrics).await;
        if let Some(mfa) = &self.mfa {
            self.step_up(mfa, ex, response).await;
        }
    }
}

/// What happened to a sign-in that asked for MFA.
enum StepUp {
    /// Held under this challenge id.
    Held(String),
    /// Left to the backend (style `backend`).
    Backend,
    /// The user has no factor (or it cannot be read, or the answer cannot be held).
    NoFactor { result: &'static str },
}

impl Rewrite {
    async fn step_up(&self, mfa: &Mfa, ex: &mut Exchange, response: &mut Response<Body>) {
        let Some(a) = ex.risk.as_deref() else {
            return;
        };
        let asks = matches!(a.decision, RiskAction::OptionalMfa | RiskAction::RequireMfa);
        if !asks || a.answered || a.mode != RiskMode::Enforce || a.kind != EventType::SignIn {
            return;
        }
        if ex.outcome != Some(Outcome::Success) {
            return;
        }
        let Some(style) = ex.profile.as_ref().map(|m| m.profile.mfa_style()) else {
            return;
        };
        let required = a.decision == RiskAction::RequireMfa;
        let step = if style == MfaStyle::Backend {
            StepUp::Backend
        } else {
            self.hold(mfa, ex, response).await
        };
        let metric = match &step {
            StepUp::Held(_) => "held",
            StepUp::Backend => "backend",
            StepUp::NoFactor { result } => result,
        };
        let metric = match (metric, required) {
            ("no_factor", true) => "no_factor_blocked",
            ("no_factor", false) => "no_factor_allowed",
            (m, _) => m,
        };
        self.services
            .metrics
            .mfa_challenges
            .with_label_values(&[metric])
            .inc();
        let (result, outcome, decision) = match &step {
            StepUp::Held(id) => {
                *response = challenge(ex, mfa, style, id);
                ("challenged", Some("challenged"), None)
            }
            StepUp::Backend => ("backend", None, None),
            StepUp::NoFactor { result } if required => {
                // As Cognito: a required step-up that the user cannot do is a block.
                *response = blocked(ex);
                ex.rejected = Some("mfa");
                (*result, Some("blocked"), Some("block"))
            }
            StepUp::NoFactor { result } => (*result, None, None),
        };
        // The risk stage made this sign-in's event: say what became of it.
        if let Some(p) = ex
            .events
            .iter_mut()
            .rev()
            .find(|p| p.event.kind == EventType::SignIn)
        {
            if let Some(o) = outcome {
                p.event.outcome = o.into();
            }
            if let Some(d) = decision {
                p.event.decision = d.into();
            }
            p.event.mfa = Some(EventMfa {
                result: result.into(),
                attempts_left: None,
            });
        }
    }

    /// Holds the answer when the user has a factor.
    async fn hold(&self, mfa: &Mfa, ex: &mut Exchange, response: &mut Response<Body>) -> StepUp {
        let store = self.services.store.as_ref();
        let Some(a) = ex.risk.as_deref() else {
            return StepUp::NoFactor { result: "no_factor" };
        };
        let Some(user) = a.user.clone() else {
            return StepUp::NoFactor { result: "no_factor" };
        };
        match enroll::secret(store, mfa, &user).await {
            Ok(Some(_)) => {}
            Ok(None) => return StepUp::NoFactor { result: "no_factor" },
            Err(e) => {
                tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "mfa: the user's factor cannot be read");
                return StepUp::NoFactor { result: "error" };
            }
        }
        let taken = std::mem::replace(response.body_mut(), body::empty());
        let bytes = match body::read_capped(taken, ex.config.listen.response_body_limit).await {
            Ok(Capped::Complete(b)) => b,
            Ok(Capped::TooLarge { .. }) | Err(_) => {
                tracing::warn!(request_id = %ex.ctx.request_id, "mfa: the sign-in's answer cannot be held");
                return StepUp::NoFactor { result: "error" };
            }
        };
        let cookie = a
            .device_id
            .as_ref()
            .and(ex.config.risk.as_ref())
            .and_then(|r| device::cookie(&ex.request.headers, &r.device_cookie.name));
        let geo = ex.ctx.geo();
        let held = Held {
            answer: Answer::capture(response.status(), response.headers(), &bytes),
            binding: Binding {
                network: hold::network(ex.ctx.client_ip, mfa.ipv4_prefix, mfa.ipv6_prefix),
                device: hold::device(cookie, &a.fingerprint),
            },
            user,
            username: a.username.clone(),
            client_id: a.client_id.clone(),
            device_id: a.device_id.clone(),
            fingerprint: a.fingerprint.clone(),
            place: Place {
                country: geo.country.clone(),
                city: geo.city.clone(),
                asn: geo.asn,
                latitude: geo.latitude,
                longitude: geo.longitude,
            },
            decision: a.decision.as_str().into(),
            created_ms: self.services.clock.now_ms(),
        };
        match hold::put(store, &held, mfa.challenge_ttl).await {
            Ok(id) => StepUp::Held(id),
            Err(e) => {
                tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "mfa: the sign-in cannot be held");
                StepUp::NoFactor { result: "error" }
            }
        }
    }
}

/// The answer that stands in for a held sign-in.
fn challenge(ex: &Exchange, mfa: &Mfa, style: MfaStyle, id: &str) -> Response<Body> {
    let profile = ex.profile.as_ref().map(|m| m.profile.clone());
    let template = profile.as_ref().and_then(|p| p.challenge_response().cloned());
    let fallback = match style {
        MfaStyle::Page => return page::redirect(id),
        MfaStyle::Cognito => cognito::default_challenge(),
        MfaStyle::Challenge | MfaStyle::Backend => default_challenge(),
    };
    let t = template.as_deref().unwrap_or(&fallback);
    let expires = mfa.challenge_ttl.as_secs().to_string();
    let fill = |s: &str| {
        s.replace("{{challenge_id}}", id)
            .replace("{{methods}}", METHODS_JSON)
            .replace("{{expires_in}}", &expires)
    };
    let mut r = Response::new(body::full(fill(&String::from_utf8_lossy(&t.body))));
    *r.status_mut() = t.status;
    for (k, v) in &t.headers {
        let value = v
            .to_str()
            .ok()
            .and_then(|s| HeaderValue::from_str(&fill(s)).ok())
            .unwrap_or_else(|| v.clone());
        r.headers_mut().append(k.clone(), value);
    }
    super::verify::no_store(r)
}

/// The challenge answer of style `challenge` when the profile sets none.
fn default_challenge() -> FixedResponse {
    FixedResponse {
        status: StatusCode::UNAUTHORIZED,
        headers: vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body: bytes::Bytes::from_static(
            br#"{"error":"mfa_required","challenge_id":"{{challenge_id}}","methods":{{methods}},"expires_in":{{expires_in}},"verify":"/.authward/mfa/verify"}"#,
        ),
    }
}

/// The profile's block answer, or a JSON 403.
fn blocked(ex: &Exchange) -> Response<Body> {
    match ex.profile.as_ref().and_then(|m| m.profile.block_response()) {
        Some(r) => r.to_response(),
        None => json_error(
            StatusCode::FORBIDDEN,
            "sign_in_blocked",
            "refused for security reasons (a second factor is required and none is enrolled)",
            &ex.ctx.request_id,
        ),
    }
}
