//! Stage 9, rewrite: holds a successful sign-in that the risk decision steps up and answers with an MFA
//! challenge instead; answers Cognito's challenge responses; makes revealing failures identical.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Response, StatusCode};

use super::enroll::PendingSecret;
use super::hold::{self, Answer, Binding, Held, Place};
use super::{METHODS_JSON, Mfa, cognito, enroll, enumeration, page};
use crate::events::{EventMfa, EventType};
use crate::pipeline::{Exchange, Flow, Hooks, Services, Stage};
use crate::profile::file::{MfaEnrollment, MfaStyle};
use crate::profile::{FixedResponse, Outcome};
use crate::proxy::body::{self, Body, Capped};
use crate::proxy::json_error;
use crate::risk::Level;
use crate::risk::device;
use crate::risk::file::{RiskAction, RiskMode};
use crate::risk::stage::{Assessed, Familiarity};

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

impl Stage for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    /// Without an `mfa` section only the answer is looked at (one answer for unknown users and wrong
    /// passwords).
    fn hooks(&self) -> Hooks {
        if self.mfa.is_some() {
            Hooks::BOTH.profiled()
        } else {
            Hooks::RESPONSE.profiled()
        }
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
            self.enrollment(mfa, ex, response).await;
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
            self.hold_step_up(mfa, ex, response).await
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
                *response = challenge(ex, mfa, style, id, None);
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
    async fn hold_step_up(&self, mfa: &Mfa, ex: &Exchange, response: &mut Response<Body>) -> StepUp {
        let Some(user) = ex.risk.as_deref().and_then(|a| a.user.as_deref()) else {
            return StepUp::NoFactor { result: "no_factor" };
        };
        match enroll::secret(self.services.store.as_ref(), mfa, user).await {
            Ok(Some(_)) => {}
            Ok(None) => return StepUp::NoFactor { result: "no_factor" },
            Err(e) => {
                tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "mfa: the user's factor cannot be read");
                return StepUp::NoFactor { result: "error" };
            }
        }
        match self.hold(mfa, ex, response, None).await {
            Some(id) => StepUp::Held(id),
            None => StepUp::NoFactor { result: "error" },
        }
    }

    /// A sign-in that the risk engine lets through as it is, of a user with no factor, on a profile that
    /// enables self-enrollment: held until the user proves a new authenticator (see [`offers_enrollment`]).
    async fn enrollment(&self, mfa: &Mfa, ex: &mut Exchange, response: &mut Response<Body>) {
        let Some(m) = ex.profile.as_ref() else {
            return;
        };
        let (setting, style) = (m.profile.mfa_enrollment(), m.profile.mfa_style());
        let offered = ex.rejected.is_none()
            && ex
                .risk
                .as_deref()
                .is_some_and(|a| offers_enrollment(setting, a, ex.outcome));
        let Some(user) = ex
            .risk
            .as_deref()
            .and_then(|a| a.user.clone())
            .filter(|_| offered)
        else {
            return;
        };
        match enroll::secret(self.services.store.as_ref(), mfa, &user).await {
            Ok(None) => {}
            Ok(Some(_)) => return,
            Err(e) => {
                // Enrolled but unreadable, or the store is down: let the sign-in through as it is.
                tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "mfa: the user's factor cannot be read");
                return;
            }
        }
        let secret = PendingSecret::new();
        let account = ex
            .risk
            .as_deref()
            .and_then(|a| a.username.clone())
            .unwrap_or_else(|| user.clone());
        let shown = secret.shown(mfa, account.trim());
        let held = self.hold(mfa, ex, response, Some(secret)).await;
        let result = if held.is_some() { "enrollment" } else { "error" };
        self.services
            .metrics
            .mfa_challenges
            .with_label_values(&[result])
            .inc();
        let Some(id) = held else {
            return;
        };
        *response = challenge(ex, mfa, style, &id, Some(&shown));
        if let Some(p) = ex
            .events
            .iter_mut()
            .rev()
            .find(|p| p.event.kind == EventType::SignIn)
        {
            p.event.outcome = "challenged".into();
            p.event.mfa = Some(EventMfa {
                result: "enrollment".into(),
                attempts_left: None,
            });
        }
    }

    /// Holds the answer under a new challenge id, with the secret being enrolled for an enrollment; when
    /// it cannot be held, the answer is left as it came (when it could be read back) and `None` returned.
    async fn hold(
        &self,
        mfa: &Mfa,
        ex: &Exchange,
        response: &mut Response<Body>,
        enrollment: Option<PendingSecret>,
    ) -> Option<String> {
        let a = ex.risk.as_deref()?;
        let user = a.user.clone()?;
        let taken = std::mem::replace(response.body_mut(), body::empty());
        let bytes = match body::read_capped(taken, ex.config.listen.response_body_limit).await {
            Ok(Capped::Complete(b)) => b,
            Ok(Capped::TooLarge { body, .. }) => {
                *response.body_mut() = body;
                tracing::warn!(request_id = %ex.ctx.request_id, "mfa: the sign-in's answer is too large to hold");
                return None;
            }
            Err(_) => {
                tracing::warn!(request_id = %ex.ctx.request_id, "mfa: the sign-in's answer cannot be read");
                return None;
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
            enrollment,
        };
        match hold::put(self.services.store.as_ref(), &held, mfa.challenge_ttl).await {
            Ok(id) => Some(id),
            Err(e) => {
                *response.body_mut() = body::full(bytes);
                tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "mfa: the sign-in cannot be held");
                None
            }
        }
    }
}

/// Whether a sign-in offers its user to enroll a factor (once it is known the user has none): the
/// profile enables it, the upstream let the user in, the risk engine lets the sign-in through as it is
/// (enforce mode, decision `allow`, level `none`, no compromised password), and the user's history, as
/// read before the sign-in, puts its device where the setting asks. A sign-in that asks for a step-up
/// never offers enrollment: whoever holds a stolen password must not bind their own authenticator.
pub fn offers_enrollment(setting: MfaEnrollment, a: &Assessed, outcome: Option<Outcome>) -> bool {
    let place = match setting {
        MfaEnrollment::Off => return false,
        MfaEnrollment::KnownDevice => Familiarity::KnownDevice,
        MfaEnrollment::FirstSignIn => Familiarity::FirstSignIn,
    };
    a.familiarity == place
        && outcome == Some(Outcome::Success)
        && a.kind == EventType::SignIn
        && a.mode == RiskMode::Enforce
        && a.decision == RiskAction::Allow
        && a.assessment.level == Level::None
        && !a.assessment.compromised
        && !a.answered
        && a.user.is_some()
}

/// The answer that stands in for a held sign-in; `enrolling` is the new secret of a held enrollment.
fn challenge(
    ex: &Exchange,
    mfa: &Mfa,
    style: MfaStyle,
    id: &str,
    enrolling: Option<&enroll::Enrolled>,
) -> Response<Body> {
    let profile = ex.profile.as_ref().map(|m| m.profile.clone());
    let template = profile.as_ref().and_then(|p| p.challenge_response().cloned());
    let fallback = match (style, enrolling) {
        (MfaStyle::Page, _) => return page::redirect(id),
        (MfaStyle::Cognito, _) => cognito::default_challenge(),
        (MfaStyle::Challenge | MfaStyle::Backend, None) => default_challenge(),
        (MfaStyle::Challenge | MfaStyle::Backend, Some(_)) => default_enrollment(),
    };
    let t = template.as_deref().unwrap_or(&fallback);
    let expires = mfa.challenge_ttl.as_secs().to_string();
    // base32 and a percent-encoded URI: nothing to escape in JSON or a header.
    let (secret, uri) = enrolling.map_or(("", ""), |e| (e.secret.as_str(), e.otpauth_uri.as_str()));
    let fill = |s: &str| {
        s.replace("{{challenge_id}}", id)
            .replace("{{methods}}", METHODS_JSON)
            .replace("{{expires_in}}", &expires)
            .replace("{{secret}}", secret)
            .replace("{{otpauth_uri}}", uri)
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

/// The enrollment answer of style `challenge` when the profile sets no `challenge_response`.
fn default_enrollment() -> FixedResponse {
    FixedResponse {
        status: StatusCode::UNAUTHORIZED,
        headers: vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body: bytes::Bytes::from_static(
            br#"{"error":"mfa_enrollment_required","challenge_id":"{{challenge_id}}","methods":{{methods}},"secret":"{{secret}}","otpauth_uri":"{{otpauth_uri}}","expires_in":{{expires_in}},"verify":"/.authward/mfa/verify"}"#,
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{EmbeddedSources, Mode, load_from};
    use crate::risk::Assessment;

    fn assessed(decision: RiskAction, level: Level, familiarity: Familiarity) -> Assessed {
        let mut s = EmbeddedSources::default();
        s.files
            .insert(PathBuf::from("a.yaml"), b"risk: {mode: enforce}\n".to_vec());
        let config = load_from(&PathBuf::from("a.yaml"), Mode::Check, &s).unwrap();
        Assessed {
            kind: EventType::SignIn,
            policy: config.risk.as_ref().unwrap().global.clone(),
            mode: RiskMode::Enforce,
            assessment: Assessment {
                level,
                score: 0,
                signals: Vec::new(),
                compromised: false,
            },
            decision,
            notify: false,
            user: Some("alice".into()),
            username: Some("alice".into()),
            client_id: None,
            history: None,
            familiarity,
            device_id: None,
            fingerprint: "fp:x".into(),
            flow: None,
            session: None,
            answered: false,
            shadow: Vec::new(),
        }
    }

    #[test]
    fn enrollment_is_offered_only_when_enabled_to_trusted_sign_ins_from_the_place_asked_for() {
        use Familiarity::{FirstSignIn, KnownDevice, Other};
        use MfaEnrollment::{FirstSignIn as First, KnownDevice as Known, Off};
        let ok = Some(Outcome::Success);
        let trusted = |f| assessed(RiskAction::Allow, Level::None, f);
        assert!(offers_enrollment(Known, &trusted(KnownDevice), ok));
        assert!(offers_enrollment(First, &trusted(FirstSignIn), ok));
        // Off, or not the place the setting asks for.
        for f in [KnownDevice, FirstSignIn, Other] {
            assert!(!offers_enrollment(Off, &trusted(f), ok));
        }
        assert!(!offers_enrollment(Known, &trusted(FirstSignIn), ok));
        assert!(!offers_enrollment(Known, &trusted(Other), ok));
        assert!(!offers_enrollment(First, &trusted(KnownDevice), ok));
        // Never for a sign-in that asks for a step-up or is blocked, or scores above none.
        for setting in [Known, First] {
            let f = if setting == Known {
                KnownDevice
            } else {
                FirstSignIn
            };
            for decision in [RiskAction::OptionalMfa, RiskAction::RequireMfa, RiskAction::Block] {
                assert!(!offers_enrollment(
                    setting,
                    &assessed(decision, Level::None, f),
                    ok
                ));
                assert!(!offers_enrollment(
                    setting,
                    &assessed(decision, Level::High, f),
                    ok
                ));
            }
            assert!(!offers_enrollment(
                setting,
                &assessed(RiskAction::Allow, Level::Low, f),
                ok
            ));
            // Only a success, in enforce mode, without a compromised password, of a known user.
            for outcome in [None, Some(Outcome::Failure), Some(Outcome::Challenge)] {
                assert!(!offers_enrollment(setting, &trusted(f), outcome));
            }
            let mut a = trusted(f);
            a.mode = RiskMode::Audit;
            assert!(!offers_enrollment(setting, &a, ok));
            let mut a = trusted(f);
            a.assessment.compromised = true;
            assert!(!offers_enrollment(setting, &a, ok));
            let mut a = trusted(f);
            a.user = None;
            assert!(!offers_enrollment(setting, &a, ok));
            let mut a = trusted(f);
            a.answered = true;
            assert!(!offers_enrollment(setting, &a, ok));
        }
    }
}
