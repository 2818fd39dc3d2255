//! Second-factor verification: the check that every front end shares (the JSON endpoint
//! `POST /.authward/mfa/verify`, the MFA page, Cognito's `RespondToAuthChallenge`), its metrics and events.

use std::time::Duration;

use http::header::{CACHE_CONTROL, HeaderValue};
use http::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::hold::{self, Held};
use super::{Mfa, MfaError, enroll, totp};
use crate::events::{Event, EventMfa, EventType, Pending};
use crate::pipeline::{Exchange, Services};
use crate::proxy::body::Body;
use crate::proxy::json_error;
use crate::risk::device;
use crate::risk::user::Place;

/// What a code did to its challenge.
#[derive(Debug)]
pub enum Verdict {
    /// Right: the held answer, exactly as the upstream sent it.
    Released(Response<Body>),
    /// Wrong (or already used); `attempts_left` more may be tried (at 0 the challenge is gone).
    WrongCode { attempts_left: u32 },
    /// No such challenge: never made, expired, released, or its attempts used up.
    Gone,
    /// Presented from another network or device than the sign-in's, or the user has no factor any more.
    Refused,
    /// The store could not be read: try again.
    Unavailable,
}

/// What one check found, for the metrics and the event.
struct Checked {
    verdict: Verdict,
    result: &'static str,
    held: Option<Held>,
}

impl Checked {
    fn new(verdict: Verdict, result: &'static str, held: Option<Held>) -> Self {
        Checked {
            verdict,
            result,
            held,
        }
    }
}

/// How long a used time step stays used: longer than the window in which its code is accepted.
const USED_TTL: Duration = Duration::from_secs(totp::STEP_SECS * (2 * totp::WINDOW + 2));

/// The key that marks a time step's code as used by a user (each code is accepted once per user).
fn used_key(user: &str, step: u64) -> String {
    let d = Sha256::digest(user.as_bytes());
    format!("mfa:used:{}:{step}", hex::encode(&d[..12]))
}

/// Checks `code` against the challenge `id` for the request in `ex`; counts it in the metrics and
/// records an `mfa_verify` event on the exchange. Neither the code nor the id is ever logged.
pub async fn check(services: &Services, mfa: &Mfa, ex: &mut Exchange, id: &str, code: &str) -> Verdict {
    let now = services.clock.now_ms();
    let checked = match run(services, mfa, ex, id, code, now).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "mfa: verification failed");
            Checked::new(Verdict::Unavailable, "error", None)
        }
    };
    services
        .metrics
        .mfa_verifications
        .with_label_values(&[checked.result])
        .inc();
    let (outcome, attempts_left) = match &checked.verdict {
        Verdict::Released(_) => ("success", None),
        Verdict::WrongCode { attempts_left: 0 } => ("blocked", Some(0)),
        Verdict::WrongCode { attempts_left } => ("failure", Some(*attempts_left)),
        Verdict::Refused => ("blocked", None),
        Verdict::Gone | Verdict::Unavailable => ("failure", None),
    };
    let mut e = Event::for_exchange(ex, EventType::MfaVerify, now);
    if let Some(h) = &checked.held {
        e.username = h.username.clone().or(e.username);
        e.client_id = h.client_id.clone().or(e.client_id);
        e.device.id = Some(h.device_id.clone().unwrap_or_else(|| h.fingerprint.clone()));
        e.decision = h.decision.clone();
    }
    e.mode = "enforce".into();
    e.outcome = outcome.into();
    e.mfa = Some(EventMfa {
        result: checked.result.into(),
        attempts_left,
    });
    ex.events.push(Pending {
        event: e,
        notify: false,
    });
    checked.verdict
}

async fn run(
    services: &Services,
    mfa: &Mfa,
    ex: &Exchange,
    id: &str,
    code: &str,
    now: u64,
) -> Result<Checked, MfaError> {
    let store = services.store.as_ref();
    if !super::is_challenge_id(id) {
        return Ok(Checked::new(Verdict::Gone, "expired", None));
    }
    let Some(held) = hold::get(store, id).await? else {
        return Ok(Checked::new(Verdict::Gone, "expired", None));
    };
    if !bound_here(ex, &held) {
        return Ok(Checked::new(Verdict::Refused, "refused", Some(held)));
    }
    let n = hold::attempt(store, id, mfa.challenge_ttl).await?;
    let allowed = u64::from(mfa.attempts);
    if n > allowed {
        hold::drop_challenge(store, id).await?;
        return Ok(Checked::new(Verdict::Gone, "locked", Some(held)));
    }
    let attempts_left = u32::try_from(allowed - n).unwrap_or(0);
    let Some(secret) = enroll::secret(store, mfa, &held.user).await? else {
        // The factor was removed while the sign-in was held.
        hold::drop_challenge(store, id).await?;
        return Ok(Checked::new(Verdict::Refused, "refused", Some(held)));
    };
    let fresh = match totp::check(secret.expose(), code, now) {
        Some(step) => Some(
            store
                .put_if_absent(&used_key(&held.user, step), "1".into(), Some(USED_TTL))
                .await?,
        ),
        None => None,
    };
    if fresh != Some(true) {
        let result = match (fresh, attempts_left) {
            (_, 0) => {
                hold::drop_challenge(store, id).await?;
                "locked"
            }
            (Some(false), _) => "replayed",
            _ => "wrong_code",
        };
        return Ok(Checked::new(
            Verdict::WrongCode { attempts_left },
            result,
            Some(held),
        ));
    }
    // Of two right answers at once, one takes the held answer.
    let Some(held) = hold::take(store, id).await? else {
        return Ok(Checked::new(Verdict::Gone, "expired", None));
    };
    let released = held.answer.release()?;
    learn(services, ex, &held, now).await;
    Ok(Checked::new(Verdict::Released(released), "verified", Some(held)))
}

/// Whether the request comes from the network and the device the challenge is bound to.
fn bound_here(ex: &Exchange, held: &Held) -> bool {
    if !held
        .binding
        .network
        .contains(&crate::config::canonical_ip(ex.ctx.client_ip))
    {
        return false;
    }
    let fingerprint = device::fingerprint(&ex.request.headers, ex.ctx.ja4.as_deref());
    let here = if held.binding.device.starts_with("cookie:") {
        let name = ex.config.risk.as_ref().map(|r| r.device_cookie.name.as_str());
        match name.and_then(|n| device::cookie(&ex.request.headers, n)) {
            Some(v) => hold::device(Some(v), &fingerprint),
            None => return false,
        }
    } else {
        fingerprint
    };
    subtle::ConstantTimeEq::ct_eq(here.as_bytes(), held.binding.device.as_bytes()).into()
}

/// A verified step-up makes the sign-in's device and place known for the user, as an allowed sign-in does.
async fn learn(services: &Services, ex: &Exchange, held: &Held, now: u64) {
    let Some(risk) = ex.config.risk.as_ref() else {
        return;
    };
    let p = &held.place;
    let place = Place {
        country: p.country.as_deref(),
        city: p.city.as_deref(),
        asn: p.asn,
        latitude: p.latitude,
        longitude: p.longitude,
    };
    let mut devices = vec![held.fingerprint.as_str()];
    if let Some(d) = &held.device_id {
        devices.push(d);
    }
    let remembered = crate::risk::stage::remember(
        services.store.as_ref(),
        &risk.history,
        &held.user,
        &devices,
        &place,
        now,
    )
    .await;
    if let Err(e) = remembered {
        tracing::warn!(error = %e, "mfa: the verified device was not added to the history");
    }
}

/// The JSON endpoint's body.
#[derive(serde::Deserialize)]
struct VerifyBody {
    challenge_id: String,
    code: String,
}

/// `POST /.authward/mfa/verify` with `{"challenge_id", "code"}`: the held answer on success; 401 with
/// `attempts_left` for a wrong code, 410 for an unknown or expired challenge, 403 from another network or
/// device.
pub async fn serve_json(services: &Services, mfa: &Mfa, ex: &mut Exchange, body: &[u8]) -> Response<Body> {
    let rid = ex.ctx.request_id.clone();
    let Ok(VerifyBody { challenge_id, code }) = serde_json::from_slice(body) else {
        return no_store(json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            r#"send {"challenge_id": "...", "code": "123456"}"#,
            &rid,
        ));
    };
    match check(services, mfa, ex, &challenge_id, &code).await {
        Verdict::Released(r) => r,
        Verdict::WrongCode { attempts_left } => {
            let body = serde_json::json!({
                "error": "invalid_code",
                "message": if attempts_left > 0 { "the code is not right" } else { "the code is not right; no attempts are left: sign in again" },
                "attempts_left": attempts_left,
                "request_id": rid,
            });
            let mut r = Response::new(crate::proxy::body::full(body.to_string()));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            no_store(r)
        }
        Verdict::Gone => no_store(json_error(
            StatusCode::GONE,
            "challenge_gone",
            "the challenge is unknown, expired or used up: sign in again",
            &rid,
        )),
        Verdict::Refused => no_store(json_error(
            StatusCode::FORBIDDEN,
            "challenge_refused",
            "answer the challenge from the device and network that signed in",
            &rid,
        )),
        Verdict::Unavailable => no_store(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the code cannot be checked now: try again",
            &rid,
        )),
    }
}

/// Marks one of authward's own MFA answers as never to be cached.
pub fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
