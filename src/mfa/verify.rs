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

/// The key that counts a user's wrong codes across challenges (see `mfa.user_attempts`).
fn wrong_key(user: &str) -> String {
    let d = Sha256::digest(user.as_bytes());
    format!("mfa:wrong:{}", hex::encode(&d[..12]))
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
        e.device.fingerprint = Some(h.fingerprint.clone());
        e.decision = h.decision.clone().into();
    }
    e.mode = "enforce".into();
    e.outcome = outcome.into();
    e.mfa = Some(EventMfa {
        result: checked.result.into(),
        attempts_left,
    });
    // A new authenticator bound to the account is worth telling its owner about.
    let notify = checked.result == "enrolled";
    ex.events.push(Pending { event: e, notify });
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
    // Too many wrong codes for this user of late, whatever the challenge: no code is checked, so guessing
    // across fresh challenges learns nothing more.
    // Each code is counted before it is checked (and the count cleared by a right one), so that guesses
    // sent at once on many challenges cannot all read a count below the limit.
    let wrong = wrong_key(&held.user);
    if store.incr(&wrong, 1, mfa.user_window).await? > i64::from(mfa.user_attempts) {
        hold::drop_challenge(store, id).await?;
        return Ok(Checked::new(Verdict::Gone, "user_locked", Some(held)));
    }
    let enrolled = enroll::secret(store, mfa, &held.user).await?;
    let secret = match (&held.enrollment, &enrolled) {
        (None, Some(s)) => s.expose(),
        (Some(pending), None) => pending.expose(),
        // The factor was removed while a step-up was held, or one was enrolled while an enrollment was.
        (None, None) | (Some(_), Some(_)) => {
            hold::drop_challenge(store, id).await?;
            return Ok(Checked::new(Verdict::Refused, "refused", Some(held)));
        }
    };
    let fresh = match totp::check(secret, code, now) {
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
    store.delete(&wrong).await?;
    let released = held.answer.release()?;
    let mut result = "verified";
    if let Some(pending) = &held.enrollment {
        // Only now, proved, does the new secret become the user's factor; never over one enrolled since.
        if !enroll::enroll_proved(store, mfa, &held.user, pending, now).await? {
            return Ok(Checked::new(Verdict::Refused, "refused", Some(held)));
        }
        services
            .metrics
            .mfa_enrollments
            .with_label_values(&["self_enroll"])
            .inc();
        result = "enrolled";
    }
    learn(services, ex, &held, now).await;
    Ok(Checked::new(Verdict::Released(released), result, Some(held)))
}

/// Whether the request comes from the network and the device the challenge is bound to.
pub(super) fn bound_here(ex: &Exchange, held: &Held) -> bool {
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
        None,
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use http_body_util::BodyExt;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::{Config, EmbeddedSources, Mode, load_from};
    use crate::context::{Connection, Context};
    use crate::metrics::Metrics;
    use crate::mfa::hold::{Answer, Binding, Place};
    use crate::pipeline::RequestBody;
    use crate::store::memory::{MemoryLimits, MemoryStore};

    const T0: u64 = 1_700_000_000_000;
    const UA: &str = "Mozilla/5.0 Firefox/130.0";

    struct Setup {
        services: Services,
        clock: Arc<ManualClock>,
        config: Arc<Config>,
    }

    fn setup() -> Setup {
        let yaml = "mfa: {key_env: K, challenge_ttl: 2m, attempts: 3}\nrisk: {mode: enforce}\n";
        let mut s = EmbeddedSources::default();
        s.files.insert(PathBuf::from("a.yaml"), yaml.as_bytes().to_vec());
        s.env.insert("K".into(), "00".repeat(32));
        let config = Arc::new(load_from(&PathBuf::from("a.yaml"), Mode::Check, &s).unwrap());
        let clock = Arc::new(ManualClock::new(T0));
        let services = Services {
            metrics: Arc::new(Metrics::new()),
            store: Arc::new(MemoryStore::new(MemoryLimits::default(), clock.clone())),
            clock: clock.clone(),
        };
        Setup {
            services,
            clock,
            config,
        }
    }

    impl Setup {
        fn mfa(&self) -> &Mfa {
            self.config.mfa.as_deref().unwrap()
        }

        /// A verification request from `ip` with a browser's user agent.
        fn exchange(&self, ip: &str, ua: &str) -> Exchange {
            let (parts, ()) = http::Request::post("/.authward/mfa/verify")
                .header("user-agent", ua)
                .body(())
                .unwrap()
                .into_parts();
            let conn = Connection {
                peer: format!("{ip}:4000").parse().unwrap(),
                tls: false,
                slot: None,
                ja4: None,
            };
            Exchange::new(
                self.config.clone(),
                Context::new(&self.config, &conn, &parts),
                parts,
                RequestBody::Buffered(bytes::Bytes::new()),
            )
        }

        /// Enrolls alice; her secret.
        async fn enroll(&self) -> Vec<u8> {
            let store = self.services.store.as_ref();
            enroll::enroll(store, self.mfa(), "alice", "alice", T0)
                .await
                .unwrap();
            enroll::secret(store, self.mfa(), "alice")
                .await
                .unwrap()
                .unwrap()
                .expose()
                .to_vec()
        }

        /// Holds a sign-in of alice's from 198.51.100.7 with the browser's fingerprint.
        async fn hold(&self) -> String {
            self.hold_enrolling(None).await
        }

        /// The same, enrolling `pending` when given.
        async fn hold_enrolling(&self, pending: Option<enroll::PendingSecret>) -> String {
            let ex = self.exchange("198.51.100.7", UA);
            let fingerprint = device::fingerprint(&ex.request.headers, None);
            let mut headers = http::HeaderMap::new();
            headers.append("set-cookie", HeaderValue::from_static("sid=s3ss10n; HttpOnly"));
            let held = Held {
                answer: Answer::capture(StatusCode::OK, &headers, br#"{"token":"t0k3n"}"#),
                binding: Binding {
                    network: hold::network(ex.ctx.client_ip, 24, 64),
                    device: hold::device(None, &fingerprint),
                },
                user: "alice".into(),
                username: Some("Alice".into()),
                client_id: None,
                device_id: None,
                fingerprint,
                place: Place {
                    country: Some("GB".into()),
                    ..Place::default()
                },
                decision: "require_mfa".into(),
                created_ms: T0,
                enrollment: pending,
            };
            hold::put(self.services.store.as_ref(), &held, self.mfa().challenge_ttl)
                .await
                .unwrap()
        }

        async fn check(&self, ip: &str, id: &str, code: &str) -> (Verdict, Vec<Pending>) {
            let mut ex = self.exchange(ip, UA);
            let v = check(&self.services, self.mfa(), &mut ex, id, code).await;
            (v, ex.events)
        }

        fn now_code(&self, secret: &[u8]) -> String {
            totp::code(secret, totp::step_at(self.clock.now_ms()), totp::DIGITS)
        }
    }

    fn wrong(code: &str) -> String {
        let n: u32 = code.parse().unwrap();
        format!("{:06}", (n + 1) % 1_000_000)
    }

    #[tokio::test]
    async fn an_enrollment_stores_the_factor_only_once_a_code_proves_it() {
        let s = setup();
        let store = s.services.store.as_ref();
        let pending = enroll::PendingSecret::new();
        let id = s.hold_enrolling(Some(pending.clone())).await;
        let code = s.now_code(pending.expose());
        // From another network: refused, nothing stored.
        assert!(matches!(
            s.check("203.0.113.9", &id, &code).await.0,
            Verdict::Refused
        ));
        let (v, _) = s.check("198.51.100.7", &id, &wrong(&code)).await;
        assert!(matches!(v, Verdict::WrongCode { attempts_left: 2 }), "{v:?}");
        assert!(enroll::secret(store, s.mfa(), "alice").await.unwrap().is_none());
        let (v, events) = s.check("198.51.100.7", &id, &code).await;
        let Verdict::Released(r) = v else { panic!("{v:?}") };
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), br#"{"token":"t0k3n"}"#);
        let stored = enroll::secret(store, s.mfa(), "alice").await.unwrap().unwrap();
        assert_eq!(stored.expose(), pending.expose());
        let e = &events[0];
        assert_eq!(e.event.mfa.as_ref().unwrap().result, "enrolled");
        assert!(e.notify, "the owner is told of a new authenticator");
        let text = serde_json::to_string(&e.event).unwrap();
        let b32 = totp::base32(pending.expose());
        assert!(!text.contains(&code) && !text.contains(&b32), "{text}");
        assert!(!format!("{pending:?}").contains(&b32));
        let m = &s.services.metrics;
        assert_eq!(m.mfa_enrollments.with_label_values(&["self_enroll"]).get(), 1);

        // An enrollment held while another factor was enrolled cannot replace it.
        let other = enroll::PendingSecret::new();
        let id = s.hold_enrolling(Some(other.clone())).await;
        s.clock.advance(Duration::from_secs(90));
        let code = s.now_code(other.expose());
        assert!(matches!(
            s.check("198.51.100.7", &id, &code).await.0,
            Verdict::Refused
        ));
        let still = enroll::secret(store, s.mfa(), "alice").await.unwrap().unwrap();
        assert_eq!(still.expose(), pending.expose());
    }

    #[tokio::test]
    async fn the_right_code_releases_the_answer_once_and_makes_the_device_known() {
        let s = setup();
        let secret = s.enroll().await;
        let id = s.hold().await;
        let code = s.now_code(&secret);
        let (v, events) = s.check("198.51.100.200", &id, &code).await;
        let Verdict::Released(r) = v else { panic!("{v:?}") };
        assert_eq!(r.headers()["set-cookie"], "sid=s3ss10n; HttpOnly");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), br#"{"token":"t0k3n"}"#);
        let e = &events[0].event;
        assert_eq!(
            (e.kind, &*e.outcome, e.username.as_deref()),
            (EventType::MfaVerify, "success", Some("Alice"))
        );
        assert_eq!(e.mfa.as_ref().unwrap().result, "verified");
        let text = serde_json::to_string(e).unwrap();
        assert!(!text.contains(&code) && !text.contains(&id), "{text}");
        let history = s.services.store.get("rec/user/alice").await.unwrap().unwrap();
        let h: crate::risk::user::UserHistory = serde_json::from_slice(&history).unwrap();
        assert!(h.knows_country("GB") && h.devices.len() == 1, "{h:?}");

        // Consumed: the same challenge again is gone, and the same code on a new challenge is a replay.
        assert!(matches!(
            s.check("198.51.100.7", &id, &code).await.0,
            Verdict::Gone
        ));
        let id2 = s.hold().await;
        let (v, events) = s.check("198.51.100.7", &id2, &code).await;
        assert!(matches!(v, Verdict::WrongCode { attempts_left: 2 }), "{v:?}");
        assert_eq!(events[0].event.mfa.as_ref().unwrap().result, "replayed");
        // The next time step's code is a new code.
        s.clock.advance(Duration::from_secs(totp::STEP_SECS));
        let (v, _) = s.check("198.51.100.7", &id2, &s.now_code(&secret)).await;
        assert!(matches!(v, Verdict::Released(_)), "{v:?}");
        let m = s.services.metrics.render();
        assert!(
            m.contains("authward_mfa_verifications_total{result=\"verified\"} 2"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn guessing_locks_the_challenge() {
        let s = setup();
        let secret = s.enroll().await;
        let id = s.hold().await;
        let code = s.now_code(&secret);
        for left in [2, 1] {
            let (v, events) = s.check("198.51.100.7", &id, &wrong(&code)).await;
            assert!(
                matches!(v, Verdict::WrongCode { attempts_left } if attempts_left == left),
                "{v:?}"
            );
            assert_eq!(events[0].event.outcome, "failure");
        }
        let (v, events) = s.check("198.51.100.7", &id, "not-a-code").await;
        assert!(matches!(v, Verdict::WrongCode { attempts_left: 0 }), "{v:?}");
        assert_eq!(events[0].event.mfa.as_ref().unwrap().result, "locked");
        assert!(
            matches!(s.check("198.51.100.7", &id, &code).await.0, Verdict::Gone),
            "the right code comes too late"
        );
    }

    #[tokio::test]
    async fn guessing_across_challenges_locks_the_user_until_the_window_passes() {
        // Whoever has the password can open challenge after challenge: 3 codes each, 10 wrong ones a user.
        let s = setup();
        let secret = s.enroll().await;
        let code = s.now_code(&secret);
        let mut wrong_codes = 0;
        while wrong_codes < s.mfa().user_attempts {
            let id = s.hold().await;
            for _ in 0..2 {
                let (v, _) = s.check("198.51.100.7", &id, &wrong(&code)).await;
                assert!(matches!(v, Verdict::WrongCode { .. }), "{v:?}");
                wrong_codes += 1;
            }
        }
        // Now even the right code on a fresh challenge is not checked.
        let id = s.hold().await;
        let (v, events) = s.check("198.51.100.7", &id, &code).await;
        assert!(matches!(v, Verdict::Gone), "{v:?}");
        assert_eq!(events[0].event.mfa.as_ref().unwrap().result, "user_locked");
        let other_user_unaffected = s.services.store.counter(&wrong_key("bob")).await.unwrap();
        assert_eq!(other_user_unaffected, 0);
        // Once the window has passed, the right code releases the answer and clears the count.
        s.clock.advance(s.mfa().user_window);
        let id = s.hold().await;
        let (v, _) = s.check("198.51.100.7", &id, &s.now_code(&secret)).await;
        assert!(matches!(v, Verdict::Released(_)), "{v:?}");
        assert_eq!(s.services.store.counter(&wrong_key("alice")).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn another_network_or_device_is_refused_and_an_expired_challenge_is_gone() {
        let s = setup();
        let secret = s.enroll().await;
        let id = s.hold().await;
        let code = s.now_code(&secret);
        let (v, events) = s.check("198.51.101.7", &id, &code).await;
        assert!(matches!(v, Verdict::Refused), "{v:?}");
        assert_eq!(events[0].event.outcome, "blocked");
        let mut ex = s.exchange("198.51.100.7", "curl/8.5");
        assert!(matches!(
            check(&s.services, s.mfa(), &mut ex, &id, &code).await,
            Verdict::Refused
        ));
        // Refusals use up no attempt; the challenge still lives until its TTL.
        s.clock.advance(s.mfa().challenge_ttl);
        let (v, events) = s.check("198.51.100.7", &id, &s.now_code(&secret)).await;
        assert!(matches!(v, Verdict::Gone), "{v:?}");
        assert_eq!(events[0].event.mfa.as_ref().unwrap().result, "expired");
        assert!(matches!(
            s.check("198.51.100.7", "not-an-id", &code).await.0,
            Verdict::Gone
        ));
    }
}
