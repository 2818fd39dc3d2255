//! The SMS guard's pipeline stages: check a send before the upstream sees it (4), and settle it once the
//! answer is classified (after 7): count sent and verified codes, refund unsent ones, record the event.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};

use super::budget::Period;
use super::{Decision, Reason, Role, SendRequest, SmsGuard, Verdict};
use crate::clock::SharedClock;
use crate::events::{Event, EventSms, EventType, Pending, ShadowDecision};
use crate::metrics::Metrics;
use crate::pipeline::{Exchange, Flow, Hooks, Services, Stage};
use crate::profile::Outcome;
use crate::proxy::body::{self, Body};
use crate::store::Store;

/// Stage 4: runs the checks for a guarded send and answers here when one acts (enforce mode).
pub struct Guard {
    guard: Arc<SmsGuard>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

impl Guard {
    pub fn new(guard: Arc<SmsGuard>, services: &Services) -> Self {
        Guard {
            guard,
            store: services.store.clone(),
            metrics: services.metrics.clone(),
            clock: services.clock.clone(),
        }
    }
}

fn country_label(v: &Verdict) -> &'static str {
    match (&v.number, v.country) {
        (_, Some(c)) => c,
        (Some(_), None) => "invalid",
        (None, None) => "unknown",
    }
}

fn set_spend(metrics: &Metrics, spend: &[(Period, f64)], currency: &str) {
    for (period, total) in spend {
        metrics
            .sms_spend
            .with_label_values(&[period.as_str(), currency])
            .set(total.max(0.0));
    }
}

impl Stage for Guard {
    fn name(&self) -> &'static str {
        "sms_guard"
    }

    fn hooks(&self) -> Hooks {
        Hooks::REQUEST.profiled()
    }

    async fn on_request(&self, ex: &mut Exchange) -> Flow {
        let Some(matched) = &ex.profile else {
            return Flow::Continue;
        };
        let Some(p) = self.guard.profile(matched.profile.name()) else {
            return Flow::Continue;
        };
        if p.role != Role::Send || (matched.fields.phone.is_none() && p.skip_without_number) {
            return Flow::Continue;
        }
        let ip_country = ex.ctx.geo().country.clone();
        let req = SendRequest {
            phone: matched.fields.phone.as_deref(),
            default_region: p.default_region.as_ref(),
            username: matched.fields.username.as_deref(),
            client_ip: ex.ctx.client_ip,
            ip_country: ip_country.as_deref(),
            labels: &ex.labels,
        };
        let v = self
            .guard
            .check(&req, self.store.as_ref(), self.clock.now_ms())
            .await;
        let reason = v.reason.map_or("none", Reason::as_str);
        self.metrics
            .sms_decisions
            .with_label_values(&[v.label(), reason, country_label(&v)])
            .inc();
        set_spend(&self.metrics, &v.spend, self.guard.currency());
        if let (Some(rate), Some(country)) = (v.country_rate, v.country) {
            self.metrics
                .sms_conversion
                .with_label_values(&[country])
                .set(rate);
        }
        if v.decision != Decision::Allow {
            let also: Vec<&str> = v.also.iter().map(|r| r.as_str()).collect();
            tracing::info!(
                target: "authward::sms",
                request_id = %ex.ctx.request_id,
                decision = v.label(),
                reason,
                also = (!also.is_empty()).then(|| also.join(",")),
                number = v.number.as_ref().map(|n| n.masked()),
                country = v.country,
                prefix = v.prefix.as_deref(),
                number_type = v.number.as_ref().and_then(|n| n.kind()).map(|k| k.as_str()),
                profile = matched.profile.name(),
                "sms guard"
            );
        }
        let response = match (v.enforced, v.decision) {
            (true, Decision::Block) => Some(blocked(&v, &ex.ctx.request_id)),
            (true, Decision::FakeSuccess) => Some(match &p.fake_success {
                Some(t) => t.render(
                    v.number.as_ref(),
                    matched.fields.username.as_deref(),
                    &ex.ctx.request_id,
                ),
                None => blocked(&v, &ex.ctx.request_id),
            }),
            _ => None,
        };
        ex.sms = Some(v);
        match response {
            Some(r) => {
                ex.rejected = Some("sms");
                Flow::Respond(r)
            }
            None => Flow::Continue,
        }
    }
}

/// A refusal: 400 for an invalid number, else 429 with `Retry-After`.
fn blocked(v: &Verdict, request_id: &str) -> Response<Body> {
    let reason = v.reason.map_or("blocked", Reason::as_str);
    let (status, error, message) = if v.reason == Some(Reason::InvalidNumber) {
        (
            StatusCode::BAD_REQUEST,
            "invalid_phone_number",
            "the phone number is not a valid number",
        )
    } else {
        (
            StatusCode::TOO_MANY_REQUESTS,
            "sms_blocked",
            "no SMS can be sent to this number now",
        )
    };
    let body = serde_json::json!({
        "error": error, "reason": reason, "message": message, "request_id": request_id,
    });
    let mut r = Response::new(body::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        let secs = v.retry_after.max(Duration::from_secs(1)).as_secs_f64().ceil() as u64;
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// After stage 7: counts a sent code (or refunds an unsent one) and a verified code, and records the
/// `sms_send` and `sms_verify` events.
pub struct Settle {
    guard: Arc<SmsGuard>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

impl Settle {
    pub fn new(guard: Arc<SmsGuard>, services: &Services) -> Self {
        Settle {
            guard,
            store: services.store.clone(),
            metrics: services.metrics.clone(),
            clock: services.clock.clone(),
        }
    }
}

impl Stage for Settle {
    fn name(&self) -> &'static str {
        "sms_settle"
    }

    fn hooks(&self) -> Hooks {
        Hooks::RESPONSE.profiled()
    }

    async fn on_response(&self, ex: &mut Exchange, _response: &mut Response<Body>) {
        let Some(matched) = &ex.profile else { return };
        let Some(p) = self.guard.profile(matched.profile.name()) else {
            return;
        };
        let now = self.clock.now_ms();
        let username = matched.fields.username.clone();
        let event = match p.role {
            Role::Send => {
                let Some(v) = &ex.sms else { return };
                let forwarded = ex.upstream.status.is_some();
                let sent = ex.upstream.status.is_some_and(|s| s.as_u16() < 400)
                    && ex.outcome != Some(Outcome::Failure);
                let spend = self
                    .guard
                    .settle_send(v, sent, username.as_deref(), self.store.as_ref(), now)
                    .await;
                set_spend(&self.metrics, &spend, self.guard.currency());
                let outcome = match (forwarded, sent) {
                    (false, _) => "blocked",
                    (true, true) => "success",
                    (true, false) => "failure",
                };
                self.event(ex, v, EventType::SmsSend, outcome, now)
            }
            Role::Verify => {
                if ex.outcome != Some(Outcome::Success) {
                    return;
                }
                let v = self
                    .guard
                    .verified(
                        matched.fields.phone.as_deref(),
                        p.default_region.as_ref(),
                        username.as_deref(),
                        self.store.as_ref(),
                        now,
                    )
                    .await;
                self.event(ex, &v, EventType::SmsVerify, "success", now)
            }
        };
        ex.events.push(Pending { event, notify: false });
    }
}

impl Settle {
    fn event(&self, ex: &Exchange, v: &Verdict, kind: EventType, outcome: &'static str, now: u64) -> Event {
        let mut e = Event::for_exchange(ex, kind, now);
        e.mode = self.guard.mode_name().into();
        e.outcome = outcome.into();
        e.decision = match (v.enforced, v.decision) {
            (true, d @ (Decision::Block | Decision::FakeSuccess)) => d.as_str().into(),
            _ => "allow".into(),
        };
        if !v.enforced && v.decision.stops() {
            if let Some(r) = v.reason {
                e.shadow.push(ShadowDecision {
                    source: format!("sms:{}", r.as_str()),
                    decision: v.decision.as_str().into(),
                });
            }
        }
        e.sms = Some(EventSms {
            number: v.number.as_ref().map(|n| n.masked()).unwrap_or_default(),
            country: v.country.map(str::to_owned),
            prefix: v.prefix.clone(),
            reason: v.reason.map(|r| r.as_str().to_owned()),
        });
        e
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use http_body_util::BodyExt;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{Config, EmbeddedSources, Mode, load_from};
    use crate::context::{Connection, Context};
    use crate::pipeline::RequestBody;
    use crate::profile::stage::Recognize;
    use crate::store::memory::{MemoryLimits, MemoryStore};

    fn config(sms: &str) -> Arc<Config> {
        let yaml =
            format!("upstream: {{url: 'http://127.0.0.1:9'}}\ninclude: [json-login.yaml]\nsms:\n{sms}");
        let mut files = EmbeddedSources::default();
        files.files.insert(PathBuf::from("c.yaml"), yaml.into_bytes());
        files.files.insert(
            PathBuf::from("json-login.yaml"),
            include_bytes!("../../rules/profiles/json-login.yaml").to_vec(),
        );
        Arc::new(load_from(Path::new("c.yaml"), Mode::Serve, &files).unwrap_or_else(|e| panic!("{e}")))
    }

    fn services() -> Services {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        Services {
            metrics: Arc::new(Metrics::new()),
            store: Arc::new(MemoryStore::new(MemoryLimits::default(), clock.clone())),
            clock,
        }
    }

    async fn exchange(config: &Arc<Config>, phone: &str) -> Exchange {
        let (parts, ()) = http::Request::post("/api/sms/send")
            .header("content-type", "application/json")
            .body(())
            .unwrap()
            .into_parts();
        let conn = Connection {
            peer: "192.0.2.7:40000".parse().unwrap(),
            tls: false,
            slot: None,
            ja4: None,
        };
        let mut ex = Exchange::new(
            config.clone(),
            Context::new(config, &conn, &parts),
            parts,
            RequestBody::Buffered(bytes::Bytes::from(format!(r#"{{"phone": "{phone}"}}"#))),
        );
        assert!(matches!(
            Recognize::new(config.profiles.clone()).on_request(&mut ex).await,
            Flow::Continue
        ));
        ex
    }

    #[tokio::test]
    async fn a_block_answers_429_and_records_a_masked_event() {
        let config = config("  number_types: {block: [premium_rate]}\n");
        let services = services();
        let (guard, settle) = (
            Guard::new(config.sms.clone(), &services),
            Settle::new(config.sms.clone(), &services),
        );
        let mut ex = exchange(&config, "+449098790042").await;
        let Flow::Respond(mut response) = guard.on_request(&mut ex).await else {
            panic!("not blocked");
        };
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "3600");
        assert_eq!(ex.rejected, Some("sms"));
        settle.on_response(&mut ex, &mut response).await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["error"].as_str(), v["reason"].as_str()),
            (Some("sms_blocked"), Some("number_type"))
        );
        let [pending] = ex.events.as_slice() else {
            panic!("{:?}", ex.events)
        };
        let e = &pending.event;
        assert_eq!(
            (e.kind, &*e.decision, &*e.outcome, &*e.mode),
            (EventType::SmsSend, "block", "blocked", "enforce")
        );
        assert_eq!(
            e.sms,
            Some(EventSms {
                number: "+44 ******** 42".into(),
                country: Some("GB".into()),
                prefix: Some("+44909879".into()),
                reason: Some("number_type".into()),
            })
        );
        let json = serde_json::to_string(e).unwrap();
        assert!(!json.contains("9098790042"), "the whole number leaked: {json}");
        let m = services.metrics.render();
        assert!(
            m.contains(
                r#"authward_sms_decisions_total{country="GB",decision="block",reason="number_type"} 1"#
            ),
            "{m}"
        );
    }

    #[tokio::test]
    async fn audit_mode_records_a_shadow_decision_and_a_sent_code() {
        let config = config("  mode: audit\n  number_types: {block: [premium_rate]}\n");
        let services = services();
        let (guard, settle) = (
            Guard::new(config.sms.clone(), &services),
            Settle::new(config.sms.clone(), &services),
        );
        let mut ex = exchange(&config, "+449098790042").await;
        assert!(matches!(guard.on_request(&mut ex).await, Flow::Continue));
        ex.upstream.status = Some(StatusCode::OK);
        ex.outcome = Some(Outcome::Success);
        settle
            .on_response(&mut ex, &mut Response::new(body::empty()))
            .await;
        let e = &ex.events[0].event;
        assert_eq!(
            (&*e.decision, &*e.outcome, &*e.mode),
            ("allow", "success", "audit")
        );
        assert_eq!(
            e.shadow,
            vec![ShadowDecision {
                source: "sms:number_type".into(),
                decision: "block".into()
            }]
        );
    }

    #[tokio::test]
    async fn an_invalid_number_is_a_400() {
        let config = config("  {}\n");
        let services = services();
        let guard = Guard::new(config.sms.clone(), &services);
        let mut ex = exchange(&config, "+44 (0) not a number").await;
        let Flow::Respond(response) = guard.on_request(&mut ex).await else {
            panic!("passed");
        };
        assert_eq!(response.status(), 400);
        assert!(!response.headers().contains_key("retry-after"));
    }
}
