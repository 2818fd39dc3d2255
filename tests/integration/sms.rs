//! The SMS guard through the real proxy, in front of an SMS backend that counts what it was asked to send.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::harness::{Authward, amz_json, client, serve};

/// An SMS backend with the json-login API's send and verify endpoints, counting the sends it got.
struct SmsBackend {
    url: String,
    sent: Arc<AtomicUsize>,
    verified: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SmsBackend {
    async fn start() -> SmsBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sent, verified) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let (s, v) = (sent.clone(), verified.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = &mut rx => return,
                };
                let (s, v) = (s.clone(), v.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (s, v) = (s.clone(), v.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let _ = req.into_body().collect().await;
                            let (status, body) = match path.as_str() {
                                "/api/sms/send" => {
                                    s.fetch_add(1, Ordering::SeqCst);
                                    (200, json!({"sent": true, "destination": "+0000*****00"}))
                                }
                                "/api/sms/verify" => {
                                    v.fetch_add(1, Ordering::SeqCst);
                                    (200, json!({"verified": true}))
                                }
                                _ => (404, json!({"error": "not_found"})),
                            };
                            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        SmsBackend {
            url,
            sent,
            verified,
            _stop: tx,
        }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }
}

/// A proxy in front of `backend` with the json-login profiles, trusting 127.0.0.1's X-Forwarded-For,
/// the MaxMind test databases, and this `sms` section.
fn proxy(backend: &SmsBackend, sms: &str) -> Authward {
    Authward::start(&format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {}\n\
         trusted_proxies: [127.0.0.1/32]\ngeoip:\n  city: {{REPO}}/data/geoip/GeoIP2-City-Test.mmdb\n\
         include:\n  - {{REPO}}/rules/profiles/json-login.yaml\nsms:\n{sms}",
        backend.url
    ))
}

/// Sends a code to `phone` as a client at `ip`; returns the status and the JSON answer.
async fn send(aw: &Authward, phone: &str, ip: &str) -> (u16, Value) {
    let r = client()
        .post(aw.url("/api/sms/send"))
        .header("x-forwarded-for", ip)
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").cloned();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status == 429 {
        let secs: u64 = retry.unwrap().to_str().unwrap().parse().unwrap();
        assert!(secs >= 1, "429 comes with Retry-After");
    }
    (status, body)
}

/// `count` sends to consecutive numbers of one range, each from another client address, `parallel` at
/// a time; returns the refusal reasons.
async fn pump(aw: &Authward, count: usize, parallel: usize) -> Vec<String> {
    let mut reasons = Vec::new();
    let numbers: Vec<usize> = (0..count).collect();
    for chunk in numbers.chunks(parallel) {
        let answers = futures_util::future::join_all(chunk.iter().map(|i| {
            let phone = format!("+4474001{:05}", 23_000 + i);
            let ip = format!("{}.{}.{}.7", 11 + i % 200, i / 200 % 250, i % 250);
            async move { send(aw, &phone, &ip).await }
        }))
        .await;
        for (status, body) in answers {
            if status != 200 {
                assert_eq!(
                    (status, body["error"].as_str()),
                    (429, Some("sms_blocked")),
                    "{body}"
                );
                reasons.push(body["reason"].as_str().unwrap().to_string());
            }
        }
    }
    reasons
}

fn decisions(metrics: &str, decision: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("authward_sms_decisions_total{"))
        .filter(|l| {
            l.contains(&format!("decision=\"{decision}\"")) && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A pump that evades the range checks (sequential and per-range limits off, a new client address per
/// request) still stops at the hourly budget: the backend never gets more than the cap pays for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_is_stopped_within_the_budget() {
    let backend = SmsBackend::start().await;
    // GB costs 0.04 in the shipped price table: a cap of 0.40 pays for 10 messages.
    let aw = proxy(
        &backend,
        "  sequential: null\n  limits: {per_number_prefix: null}\n  budget:\n    prices: {REPO}/rules/sms/prices.yaml\n    hourly: {alert: 0.20, cap: 0.40}\n",
    );
    let reasons = pump(&aw, 120, 8).await;
    assert_eq!(backend.sent(), 10, "exactly what the budget allows");
    assert_eq!(reasons.len(), 110);
    assert!(reasons.iter().all(|r| r == "budget_hourly_cap"), "{reasons:?}");
    // One more on its own, so the spend gauge is set by a request that raced with none.
    assert_eq!(send(&aw, "+447400999999", "198.51.100.9").await.0, 429);
    let m = aw.metrics().await;
    assert_eq!(decisions(&m, "block", "budget_hourly_cap"), 111, "{m}");
    assert!(decisions(&m, "monitor", "budget_hourly_alert") >= 5, "{m}");
    assert!(
        m.contains("authward_sms_estimated_spend{currency=\"USD\",window=\"hour\"} 0.4"),
        "{m}"
    );
    // The access log says why, and never holds a whole number.
    let log = aw.logs();
    assert!(log.contains("\"sms_reason\":\"budget_hourly_cap\""), "{log}");
    assert!(!log.contains("447400123"), "a number leaked into the log");
}

/// With the default checks, the same pump is stopped far sooner: after a few numbers of the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_is_stopped_by_the_range_checks() {
    let backend = SmsBackend::start().await;
    let aw = proxy(
        &backend,
        "  budget:\n    prices: {REPO}/rules/sms/prices.yaml\n    hourly: {cap: 0.40}\n",
    );
    let reasons = pump(&aw, 60, 1).await;
    assert_eq!(
        backend.sent(),
        3,
        "three numbers of one range of 100, then no more"
    );
    assert!(reasons.iter().all(|r| r == "sequential"), "{reasons:?}");
}

/// Distinct people in several countries (GeoIP test addresses), at normal rates, who verify their
/// codes: every one passes, and the country's conversion rate shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_traffic_passes() {
    let backend = SmsBackend::start().await;
    let aw = proxy(
        &backend,
        "  budget:\n    prices: {REPO}/rules/sms/prices.yaml\n    hourly: {cap: 5}\n",
    );
    // (number, client address in the number's country per the MaxMind test database)
    let people = [
        ("+447400123456", "2.125.160.216"),
        ("+447700900123", "2.125.160.216"),
        ("+447911123456", "81.2.69.142"),
        ("+14155550100", "216.160.83.56"),
        ("+12015550123", "216.160.83.56"),
        ("+33612345678", "89.160.20.112"),
        ("+4915112345678", "89.160.20.128"),
        ("+46701234567", "89.160.20.112"),
        ("+5511987654321", "175.16.199.0"),
        ("+919876543210", "202.196.224.0"),
        ("+819012345678", "111.235.160.0"),
    ];
    let mut passed = 0;
    for (phone, ip) in people {
        let (status, body) = send(&aw, phone, ip).await;
        if phone == "+447700900123" {
            // Ofcom's drama range is not a number anyone can own.
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_phone_number"))
            );
            continue;
        }
        assert_eq!(status, 200, "{phone}: {body}");
        let r = client()
            .post(aw.url("/api/sms/verify"))
            .header("x-forwarded-for", ip)
            .json(&json!({ "phone": phone, "code": "123456" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        passed += 1;
    }
    assert_eq!(
        (backend.sent(), backend.verified.load(Ordering::SeqCst)),
        (passed, passed)
    );
    let m = aw.metrics().await;
    assert!(
        m.contains("authward_sms_decisions_total{country=\"GB\",decision=\"allow\",reason=\"none\"} 1"),
        "{m}"
    );
    // A second send to a British number reads the country's rate: every code so far was verified.
    assert_eq!(send(&aw, "+447400654321", "2.125.160.216").await.0, 200);
    let m = aw.metrics().await;
    assert!(
        m.contains("authward_sms_conversion_ratio{country=\"GB\"} 1"),
        "{m}"
    );
}

/// fake_success answers as the profile's template says, and the backend never hears of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_success_answers_the_template_without_forwarding() {
    let backend = SmsBackend::start().await;
    let aw = proxy(
        &backend,
        "  action: fake_success\n  number_types: {block: [premium_rate]}\n",
    );
    let (status, body) = send(&aw, "+449098790000", "192.0.2.1").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"sent": true, "destination": "+4490******00"}));
    assert_eq!(backend.sent(), 0);
    let m = aw.metrics().await;
    assert_eq!(decisions(&m, "fake_success", "number_type"), 1, "{m}");
}

/// Audit mode forwards everything and records what it would have done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_forwards_and_records() {
    let backend = SmsBackend::start().await;
    let aw = proxy(
        &backend,
        "  mode: audit\n  number_types: {block: [premium_rate]}\n",
    );
    assert_eq!(send(&aw, "+449098790000", "192.0.2.1").await.0, 200);
    assert_eq!(send(&aw, "not a number", "192.0.2.1").await.0, 200);
    assert_eq!(backend.sent(), 2);
    let m = aw.metrics().await;
    assert_eq!(decisions(&m, "shadow_block", "number_type"), 1, "{m}");
    assert_eq!(decisions(&m, "shadow_block", "invalid_number"), 1, "{m}");
    assert!(aw.logs().contains("\"sms_decision\":\"shadow_block\""));
}

/// A Cognito user pool in front of which SignUp, ResendConfirmationCode and ForgotPassword text a code
/// (counted); every answer carries a request id, as Cognito's do.
async fn cognito_pool(texted: Arc<AtomicUsize>) -> crate::harness::Served {
    serve(move |parts, _| {
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("AWSCognitoIdentityProviderService.")
            .to_string();
        let delivery = json!({"AttributeName": "phone_number", "DeliveryMedium": "SMS", "Destination": "+*******9999"});
        let answer = match target.as_str() {
            "SignUp" => json!({"CodeDeliveryDetails": delivery, "UserConfirmed": false, "UserSub": "5e0c1d9a-0000-4000-8000-000000000000"}),
            "ResendConfirmationCode" | "ForgotPassword" => json!({"CodeDeliveryDetails": delivery}),
            _ => return amz_json(400, &json!({"__type": "InvalidParameterException"})),
        };
        texted.fetch_add(1, Ordering::SeqCst);
        let mut r = amz_json(200, &answer);
        r.headers_mut()
            .insert("x-amzn-requestid", "0f5a3c52-1b1e-4c1e-9d3e-2f6b1a7c9e10".parse().unwrap());
        r
    })
    .await
}

/// authward with the Cognito profiles in front of `pool`, and this `sms` section.
fn cognito_proxy(pool: &crate::harness::Served, sms: &str) -> Authward {
    Authward::start(&format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {}\n\
         trusted_proxies: [127.0.0.1/32]\ninclude:\n  - {{REPO}}/rules/profiles/cognito.yaml\nsms:\n{sms}",
        pool.url()
    ))
}

/// Calls a Cognito target as a client at `ip`; returns the status, the request id header and the answer.
async fn cognito(aw: &Authward, target: &str, body: Value, ip: &str) -> (u16, Option<String>, Value) {
    let r = client()
        .post(aw.url("/"))
        .header("x-forwarded-for", ip)
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{target}"),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let id = r
        .headers()
        .get("x-amzn-requestid")
        .map(|v| v.to_str().unwrap().to_string());
    (status, id, r.json().await.unwrap_or(Value::Null))
}

fn sign_up(user: &str, phone: &str) -> Value {
    json!({"ClientId": "c1", "Username": user, "Password": "Pw-123456789!",
           "UserAttributes": [{"Name": "email", "Value": format!("{user}@example.com")},
                              {"Name": "phone_number", "Value": phone}]})
}

/// Resends and password resets name only the user: they meet the range the user signed up into. Once
/// the conversion check has blocked the range, the pool texts nothing more to it, and the fake answers
/// look like Cognito's: a request id, and the user's own last four digits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_resends_meet_the_range_of_the_sign_up() {
    let texted = Arc::new(AtomicUsize::new(0));
    let pool = cognito_pool(texted.clone()).await;
    let aw = cognito_proxy(
        &pool,
        "  action: fake_success\n  sequential: null\n  limits: {per_ip: null, per_ip_prefix: null, per_number_prefix: null}\n",
    );
    let number = |i: usize| format!("+44740012{:04}", i * 397 % 10_000);
    // Twenty sign-ups into one range, none confirmed (the conversion check's min_sent).
    for i in 0..20 {
        let (status, _, body) = cognito(
            &aw,
            "SignUp",
            sign_up(&format!("pump{i}"), &number(i)),
            "192.0.2.9",
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(texted.load(Ordering::SeqCst), 20);
    // The range is blocked now: a sign-up gets the fake, with a request id as Cognito's have.
    let (status, id, body) = cognito(&aw, "SignUp", sign_up("pump20", &number(20)), "192.0.2.9").await;
    assert_eq!(status, 200, "{body}");
    let id = id.expect("a fake answer carries x-amzn-RequestId");
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "a UUID: {id}");
    // Every resend and reset for the users of the range: faked, each with its user's digits.
    for i in 0..20 {
        let user = format!("pump{i}");
        let target = if i % 2 == 0 {
            "ResendConfirmationCode"
        } else {
            "ForgotPassword"
        };
        let (status, id, body) = cognito(
            &aw,
            target,
            json!({"ClientId": "c1", "Username": user}),
            "192.0.2.9",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(id.is_some(), "{target}: no request id");
        assert_eq!(
            body["CodeDeliveryDetails"]["Destination"],
            format!("+*******{}", &number(i)[9..]),
            "{target}"
        );
    }
    assert_eq!(
        texted.load(Ordering::SeqCst),
        20,
        "no SMS went to the blocked range"
    );
    let m = aw.metrics().await;
    assert_eq!(decisions(&m, "fake_success", "conversion_prefix"), 21, "{m}");
}

/// A sign-up that names two numbers is refused: authward would check one, a backend that builds a map
/// of the attributes would text the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_with_two_numbers_is_refused() {
    let texted = Arc::new(AtomicUsize::new(0));
    let pool = cognito_pool(texted.clone()).await;
    let aw = cognito_proxy(&pool, "  {}\n");
    let mut body = sign_up("ann", "+447400123456");
    body["UserAttributes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Name": "phone_number", "Value": "+449098790000"}));
    let (status, _, _) = cognito(&aw, "SignUp", body, "192.0.2.9").await;
    assert_eq!(status, 400);
    assert_eq!(texted.load(Ordering::SeqCst), 0);
    let m = aw.metrics().await;
    assert!(
        m.contains("authward_rejected_requests_total{reason=\"ambiguous_fields\"} 1"),
        "{m}"
    );
    // The same number twice is no doubt.
    let mut body = sign_up("ann", "+447400123456");
    body["UserAttributes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Name": "phone_number", "Value": "+447400123456"}));
    assert_eq!(cognito(&aw, "SignUp", body, "192.0.2.9").await.0, 200);
}

/// A number as people type or paste it is the number: accepted, and counted under one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_as_people_write_them_share_their_limits() {
    let backend = SmsBackend::start().await;
    let aw = proxy(&backend, "  limits: {per_number: 4/h}\n");
    for (i, phone) in [
        "+44 (0)7400 123456",
        "tel:+447400123456",
        "\u{ff0b}\u{ff14}\u{ff14}\u{ff17}\u{ff14}\u{ff10}\u{ff10}\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}",
        "+44\u{200b}7400\u{200b}123456",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = send(&aw, phone, &format!("192.0.2.{}", 10 + i)).await;
        assert_eq!(status, 200, "{phone:?}: {body}");
    }
    let (status, body) = send(&aw, "+447400123456", "192.0.2.20").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("limit_number")),
        "{body}"
    );
    let (status, body) = send(&aw, "+44 7400 12345x", "192.0.2.21").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (400, Some("invalid_number")),
        "{body}"
    );
    assert_eq!(backend.sent(), 4);
}
