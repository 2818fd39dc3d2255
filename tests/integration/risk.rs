//! The risk engine end to end: the real binary, the MaxMind test databases, a real upstream.

use std::time::Duration;

use crate::harness::{Authward, Upstream, amz_json, client, echoed_headers, metric_total};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";
/// Boxford, GB and Milton, US in the MaxMind test databases (7 700 km apart).
const BOXFORD: &str = "2.125.160.216";
const MILTON: &str = "216.160.83.56";

/// A config with a sign-in profile on the echo upstream (`/status/200` succeeds, `/status/401` fails),
/// a sign-up profile, and `risk` as given.
fn config(upstream: &str, risk: &str) -> String {
    format!(
        r#"listen: {{http: [127.0.0.1:{{PORT}}]}}
admin: {{listen: 127.0.0.1:{{ADMIN}}, token_env: AW_TOKEN}}
upstream: {{url: {upstream}}}
trusted_proxies: [127.0.0.1/32]
store: {{kind: memory}}
geoip:
  city: {{SHARED}}/data/geoip/GeoIP2-City-Test.mmdb
  asn: {{SHARED}}/data/geoip/GeoLite2-ASN-Test.mmdb
  anonymous_ip: {{SHARED}}/data/geoip/GeoIP2-Anonymous-IP-Test.mmdb
profiles:
  - name: login
    operation: sign_in
    match: {{methods: [POST], path: {{prefix: /status/}}}}
    fields:
      username: {{json: /username}}
      password: {{json: /password}}
      client_id: {{json: /client_id}}
    outcome:
      success: {{status: [200]}}
      failure: {{status: [401]}}
  - name: signup
    operation: sign_up
    match: {{methods: [POST], path: {{exact: /signup}}}}
    fields:
      username: {{json: /username}}
      password: {{json: /password}}
    outcome:
      success: {{status: [200]}}
risk:
{risk}
"#
    )
}

struct Answer {
    status: u16,
    body: serde_json::Value,
    cookie: Option<String>,
}

impl Answer {
    /// A header the upstream received, from the echo.
    fn upstream_header(&self, name: &str) -> Option<String> {
        self.body.get("headers")?;
        echoed_headers(&self.body, name).into_iter().next()
    }
}

struct Client<'a> {
    aw: &'a Authward,
    http: reqwest::Client,
}

impl Client<'_> {
    async fn send(&self, path: &str, body: serde_json::Value, ip: &str, cookie: Option<&str>) -> Answer {
        let mut req = self
            .http
            .post(self.aw.url(path))
            .header("x-forwarded-for", ip)
            .header("user-agent", UA)
            .json(&body);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("authward_device={c}"));
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("authward_device="))
            .map(|v| v.split(';').next().unwrap().to_string());
        let body = r.json().await.unwrap_or(serde_json::Value::Null);
        Answer { status, body, cookie }
    }

    async fn sign_in(&self, user: &str, ok: bool, ip: &str, cookie: Option<&str>) -> Answer {
        let path = if ok { "/status/200" } else { "/status/401" };
        let body = serde_json::json!({"username": user, "password": "s3cret-Pa55word!"});
        self.send(path, body, ip, cookie).await
    }
}

fn risk_level(a: &Answer) -> String {
    let h = a.upstream_header("x-authward-risk").unwrap_or_default();
    h.split(';').next().unwrap_or("").trim().to_string()
}

/// A user's events from the admin API, newest first, once at least `n` are there (history writes run in
/// the background); with `n` = 0, after a short wait.
async fn history(aw: &Authward, user: &str, n: usize) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    for _ in 0..100 {
        let r: serde_json::Value = client()
            .get(aw.admin_url(&format!("/admin/v1/users/{user}/events?limit=100")))
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        events = r["events"].as_array().cloned().unwrap_or_default();
        if n > 0 && events.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    events
}

async fn feedback(aw: &Authward, event_id: &str, value: &str) {
    let r = client()
        .post(aw.admin_url(&format!("/admin/v1/events/{event_id}/feedback")))
        .bearer_auth("t")
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn upstream_calls(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("authward_upstream_request_duration_seconds_count"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_travel_is_blocked_in_enforce_recorded_in_audit_and_ignored_when_off() {
    let up = Upstream::start("login").await;
    for mode in ["enforce", "audit", "off"] {
        let aw = Authward::start_with(
            &config(&up.url(), &format!("  mode: {mode}")),
            &[("AW_TOKEN", "t")],
        );
        let c = Client {
            aw: &aw,
            http: client(),
        };
        let first = c.sign_in("alice", true, BOXFORD, None).await;
        assert_eq!(first.status, 200, "{mode}");
        let second = c.sign_in("alice", true, MILTON, first.cookie.as_deref()).await;
        match mode {
            "enforce" => {
                assert_eq!(risk_level(&first), "level=none");
                let cookie = first.cookie.as_deref().expect("a device cookie on success");
                assert!(!cookie.is_empty());
                assert_eq!(second.status, 403, "{:?}", second.body);
                assert_eq!(second.body["error"], "sign_in_blocked");
                assert!(
                    second.body.get("headers").is_none(),
                    "the upstream's answer is not released"
                );
            }
            "audit" => {
                assert_eq!(second.status, 200);
                assert_eq!(risk_level(&second), "level=high");
                let risk = second.upstream_header("x-authward-risk").unwrap();
                assert!(risk.contains("impossible_travel"), "{risk}");
                assert_eq!(
                    second.upstream_header("x-authward-decision").as_deref(),
                    Some("allow")
                );
            }
            _ => {
                assert_eq!(second.status, 200);
                assert_eq!(second.upstream_header("x-authward-risk"), None);
                assert_eq!(second.upstream_header("x-authward-decision"), None);
                assert!(first.cookie.is_none(), "no device cookie when risk is off");
            }
        }
        let events = history(&aw, "alice", 2).await;
        match mode {
            "enforce" => {
                let e = &events[0];
                assert_eq!(
                    (e["outcome"].as_str(), e["decision"].as_str()),
                    (Some("blocked"), Some("block"))
                );
                assert_eq!(
                    (e["mode"].as_str(), e["risk"]["level"].as_str()),
                    (Some("enforce"), Some("high"))
                );
                let signals: Vec<&str> = e["risk"]["signals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["name"].as_str().unwrap())
                    .collect();
                assert!(signals.contains(&"impossible_travel"), "{signals:?}");
                assert!(e["risk"]["signals"][0]["contribution"].as_u64().unwrap() > 0);
                assert_eq!(e["geo"]["country"], "US");
                assert_eq!(events[1]["outcome"], "success");
                assert_eq!(events[1]["geo"]["city"], "Boxford");
            }
            "audit" => {
                let e = &events[0];
                assert_eq!(
                    (e["outcome"].as_str(), e["decision"].as_str()),
                    (Some("success"), Some("block"))
                );
                assert_eq!(e["mode"], "audit");
                assert_eq!(e["shadow"][0]["source"], "risk");
                assert_eq!(e["shadow"][0]["decision"], "block");
            }
            _ => assert!(events.is_empty(), "nothing recorded with mode off: {events:?}"),
        }
        let text = serde_json::to_string(&events).unwrap();
        assert!(!text.contains("s3cret-Pa55word!"), "no password in events");
        let m = aw.metrics().await;
        let decisions: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("authward_risk_decisions_total{"))
            .collect();
        match mode {
            "enforce" => assert!(
                decisions.iter().any(|l| l.contains("decision=\"block\"")
                    && l.contains("level=\"high\"")
                    && l.contains("mode=\"enforce\"")),
                "{decisions:?}"
            ),
            "audit" => assert!(
                decisions
                    .iter()
                    .any(|l| l.contains("level=\"high\"") && l.contains("mode=\"audit\"")),
                "{decisions:?}"
            ),
            _ => assert!(decisions.is_empty(), "{decisions:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_raises_the_level_and_becomes_known_after_success() {
    let up = Upstream::start("login").await;
    let aw = Authward::start_with(&config(&up.url(), "  mode: enforce"), &[("AW_TOKEN", "t")]);
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let first = c.sign_in("carol", true, BOXFORD, None).await;
    assert_eq!(risk_level(&first), "level=none");
    let laptop = first.cookie.clone().unwrap();
    // The same device again: nothing new.
    let again = c.sign_in("carol", true, BOXFORD, Some(&laptop)).await;
    assert_eq!(risk_level(&again), "level=none");
    assert!(again.cookie.is_none(), "a known cookie is not replaced");
    // Another browser (a cookie carol never used): new device, low, allowed, and then known.
    let other = c.sign_in("dave", true, BOXFORD, None).await.cookie.unwrap();
    let new = c.sign_in("carol", true, BOXFORD, Some(&other)).await;
    assert_eq!(new.status, 200);
    assert_eq!(risk_level(&new), "level=low");
    assert!(
        new.upstream_header("x-authward-risk")
            .unwrap()
            .contains("new_device")
    );
    let known = c.sign_in("carol", true, BOXFORD, Some(&other)).await;
    assert_eq!(risk_level(&known), "level=none");
    // A forged cookie is no device at all: the fingerprint decides, and it is known from the first sign-in.
    let forged = c
        .sign_in("carol", true, BOXFORD, Some("AAAAAAAAAAAAAAAAAAAAAA.AAAA"))
        .await;
    assert_eq!(risk_level(&forged), "level=none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_stuffing_from_one_address_is_blocked_before_the_upstream() {
    let up = Upstream::start("login").await;
    let aw = Authward::start_with(&config(&up.url(), "  mode: enforce"), &[("AW_TOKEN", "t")]);
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let attacker = "198.51.100.7";
    for i in 0..20 {
        let a = c.sign_in(&format!("victim{i}"), false, attacker, None).await;
        assert_eq!(a.status, 401, "attempt {i} reaches the upstream");
    }
    let before = upstream_calls(&aw.metrics().await);
    for i in 20..30 {
        let a = c.sign_in(&format!("victim{i}"), false, attacker, None).await;
        assert_eq!(a.status, 403, "attempt {i}");
    }
    assert_eq!(
        upstream_calls(&aw.metrics().await),
        before,
        "the upstream saw none of the blocked attempts"
    );
    // Another address is not affected.
    let a = c.sign_in("victim0", true, BOXFORD, None).await;
    assert_eq!(a.status, 200);
    assert!(
        aw.metrics()
            .await
            .contains("authward_rejected_requests_total{reason=\"risk\"} 10")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_cannot_lock_the_real_user_out_from_elsewhere() {
    let up = Upstream::start("login").await;
    let aw = Authward::start_with(&config(&up.url(), "  mode: enforce"), &[("AW_TOKEN", "t")]);
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let home = c.sign_in("erin", true, BOXFORD, None).await.cookie.unwrap();
    let attacker = "198.51.100.9";
    let mut blocked = 0;
    for _ in 0..30 {
        if c.sign_in("erin", false, attacker, None).await.status == 403 {
            blocked += 1;
        }
    }
    assert_eq!(
        blocked, 10,
        "the attacker's address is cut off after 20 failures for erin"
    );
    let real = c.sign_in("erin", true, BOXFORD, Some(&home)).await;
    assert_eq!(real.status, 200, "{:?}", real.body);
    let risk = real.upstream_header("x-authward-risk").unwrap();
    assert!(
        risk.contains("failures_user"),
        "the failures still count as a signal: {risk}"
    );
    assert_eq!(
        real.upstream_header("x-authward-decision").as_deref(),
        Some("allow")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breached_password_is_caught_on_sign_in_and_sign_up() {
    let up = Upstream::start("login").await;
    let aw = Authward::start_with(
        &config(
            &up.url(),
            "  mode: enforce\n  compromised_credentials: {filter: 'builtin:demo'}",
        ),
        &[("AW_TOKEN", "t")],
    );
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let good = serde_json::json!({"username": "bob", "password": "a-long-unique-passphrase"});
    let bad = serde_json::json!({"username": "bob", "password": "password123"});
    assert_eq!(
        c.send("/status/200", good.clone(), BOXFORD, None).await.status,
        200
    );
    // Sign-in: blocked when it succeeds (a wrong breached password stays an ordinary failure).
    let r = c.send("/status/200", bad.clone(), BOXFORD, None).await;
    assert_eq!(r.status, 403);
    assert!(r.body.get("headers").is_none());
    assert_eq!(
        c.send("/status/401", bad.clone(), BOXFORD, None).await.status,
        401
    );
    // Sign-up: refused before the upstream stores the password.
    let before = upstream_calls(&aw.metrics().await);
    let r = c.send("/signup", bad, BOXFORD, None).await;
    assert_eq!(r.status, 403);
    assert_eq!(upstream_calls(&aw.metrics().await), before);
    let r = c.send("/signup", good, BOXFORD, None).await;
    assert_eq!(r.status, 200);
    let risk = r.upstream_header("x-authward-risk").unwrap();
    assert!(!risk.contains("compromised_password"), "{risk}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_client_override_wins_over_the_global_setting() {
    let up = Upstream::start("login").await;
    let aw = Authward::start_with(
        &config(
            &up.url(),
            "  mode: audit\n  clients:\n    banking-app: {mode: enforce}\n    kiosk: {mode: off}",
        ),
        &[("AW_TOKEN", "t")],
    );
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let trip = |client_id: &'static str| {
        let c = &c;
        async move {
            let user = format!("frank-{client_id}");
            let body = |_: ()| serde_json::json!({"username": user, "password": "x-Pa55word-long", "client_id": client_id});
            let first = c.send("/status/200", body(()), BOXFORD, None).await;
            c.send("/status/200", body(()), MILTON, first.cookie.as_deref())
                .await
        }
    };
    assert_eq!(
        trip("banking-app").await.status,
        403,
        "enforced for the banking app"
    );
    let web = trip("web").await;
    assert_eq!(
        (web.status, risk_level(&web).as_str()),
        (200, "level=high"),
        "audited globally"
    );
    let kiosk = trip("kiosk").await;
    assert_eq!(
        (kiosk.status, kiosk.upstream_header("x-authward-risk")),
        (200, None),
        "off for the kiosk"
    );
    // A sign-in that an audited client lets through at high risk teaches the shared history nothing: the
    // enforced client still refuses the same trip (a client id is the caller's to choose).
    let body = |client_id: &str| serde_json::json!({"username": "grace", "password": "x-Pa55word-long", "client_id": client_id});
    let first = c.send("/status/200", body("banking-app"), BOXFORD, None).await;
    assert_eq!(first.status, 200);
    let cookie = first.cookie.as_deref();
    let audited = c.send("/status/200", body("web"), MILTON, cookie).await;
    assert_eq!(
        (audited.status, risk_level(&audited).as_str()),
        (200, "level=high")
    );
    let again = c.send("/status/200", body("banking-app"), MILTON, cookie).await;
    assert_eq!(again.status, 403, "laundered through the audited client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_changes_the_next_decision() {
    let up = Upstream::start("login").await;
    let aw = Authward::start_with(&config(&up.url(), "  mode: enforce"), &[("AW_TOKEN", "t")]);
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let home = c.sign_in("gina", true, BOXFORD, None).await.cookie.unwrap();
    // "This was me": the blocked sign-in from Milton teaches authward Milton and the time she was there.
    let away = c.sign_in("gina", true, MILTON, Some(&home)).await;
    assert_eq!(away.status, 403);
    let blocked = history(&aw, "gina", 2).await[0].clone();
    assert_eq!(blocked["outcome"], "blocked");
    feedback(&aw, blocked["event_id"].as_str().unwrap(), "valid").await;
    assert_eq!(history(&aw, "gina", 2).await[0]["feedback"]["value"], "valid");
    let again = c.sign_in("gina", true, MILTON, Some(&home)).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(risk_level(&again), "level=none");

    // "This was not me": a new device's sign-in (low, allowed) makes that device compromised.
    let thief = c.sign_in("harry", true, BOXFORD, None).await.cookie.unwrap();
    let stolen = c.sign_in("gina", true, MILTON, Some(&thief)).await;
    assert_eq!((stolen.status, risk_level(&stolen).as_str()), (200, "level=low"));
    let e = history(&aw, "gina", 4).await[0].clone();
    feedback(&aw, e["event_id"].as_str().unwrap(), "invalid").await;
    let next = c.sign_in("gina", true, MILTON, Some(&thief)).await;
    assert_eq!(next.status, 403, "a device the user disowned scores high");
    let e = history(&aw, "gina", 5).await[0].clone();
    assert!(
        e["risk"]["signals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "compromised_device"),
        "{e}"
    );
    // "Not me" on a thief's first sign-in from a browser of his own: dropping the cookie it was given
    // does not make him a known device again by his fingerprint.
    let thief_ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let send = |cookie: Option<String>| {
        let mut req = c
            .http
            .post(aw.url("/status/200"))
            .header("x-forwarded-for", BOXFORD)
            .header("user-agent", thief_ua)
            .json(&serde_json::json!({"username": "ivy", "password": "s3cret-Pa55word!"}));
        if let Some(cookie) = cookie {
            req = req.header("cookie", format!("authward_device={cookie}"));
        }
        req.send()
    };
    c.sign_in("ivy", true, BOXFORD, None).await;
    let first = send(None).await.unwrap();
    assert_eq!(first.status(), 200);
    let e = history(&aw, "ivy", 2).await[0].clone();
    assert!(
        e["device"]["fingerprint"].as_str().unwrap().starts_with("fp:"),
        "{e}"
    );
    feedback(&aw, e["event_id"].as_str().unwrap(), "invalid").await;
    let back = send(None).await.unwrap().status();
    let e = history(&aw, "ivy", 3).await[0].clone();
    let signals: Vec<&str> = e["risk"]["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(signals.contains(&"compromised_device"), "{back} {signals:?}");
    let m = aw.metrics().await;
    assert!(
        m.contains("authward_feedback_total{source=\"admin\",value=\"valid\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("authward_feedback_total{source=\"admin\",value=\"invalid\"} 2"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notified_level_reaches_the_webhook_and_its_link_records_feedback() {
    use std::sync::{Arc, Mutex};
    let up = Upstream::start("login").await;
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen = got.clone();
    let hook = crate::harness::serve(move |_, body| {
        seen.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()))
    })
    .await;
    let events = format!(
        "events:
  webhook: {{url: {}/hook, secret_env: AW_HOOK}}
  feedback_links: {{base_url: 'http://127.0.0.1:{{PORT}}', secret_env: AW_LINK}}
",
        hook.url()
    );
    let aw = Authward::start_with(
        &format!("{}{events}", config(&up.url(), "  mode: enforce")),
        &[
            ("AW_TOKEN", "t"),
            ("AW_HOOK", "hook-secret"),
            ("AW_LINK", "link-secret-0123456789"),
        ],
    );
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let home = c.sign_in("ivy", true, BOXFORD, None).await.cookie.unwrap();
    assert_eq!(c.sign_in("ivy", true, MILTON, Some(&home)).await.status, 403);
    let payload = {
        let mut found = None;
        for _ in 0..100 {
            if let Some(p) = got.lock().unwrap().first().cloned() {
                found = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        found.expect("the high-level sign-in was notified")
    };
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "only the notified level is posted (not the first sign-in)"
    );
    assert_eq!(payload["event"]["risk"]["level"], "high");
    assert_eq!(payload["event"]["username"], "ivy");
    // The user follows "this was me": the page's button posts to the same link.
    let link = payload["links"]["valid"].as_str().unwrap().to_string();
    let page = client().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        history(&aw, "ivy", 2).await[0].get("feedback").is_none(),
        "opening the link records nothing"
    );
    let r = client().post(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(history(&aw, "ivy", 2).await[0]["feedback"]["value"], "valid");
    assert_eq!(
        c.sign_in("ivy", true, MILTON, Some(&home)).await.status,
        200,
        "feedback by link counts too"
    );
}

/// A Cognito-shaped upstream with a two-round custom challenge: `InitiateAuth` (CUSTOM_AUTH) answers a
/// CUSTOM_CHALLENGE, the first right answer another one, the second the tokens; a wrong answer fails.
async fn cognito_custom_auth() -> (
    crate::harness::Served,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let calls = std::sync::Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let served = crate::harness::serve(move |parts, body| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let (status, answer) = match target.rsplit('.').next().unwrap_or("") {
            "InitiateAuth" => (
                200,
                serde_json::json!({"ChallengeName": "CUSTOM_CHALLENGE", "Session": format!("round1-{n}"),
                    "ChallengeParameters": {"question": "1+1"}}),
            ),
            "RespondToAuthChallenge" => {
                let session = req["Session"].as_str().unwrap_or("");
                let right = req["ChallengeResponses"]["ANSWER"] == "2";
                match (right, session.starts_with("round1-")) {
                    (false, _) => (
                        400,
                        serde_json::json!({"__type": "NotAuthorizedException", "message": "Incorrect answer."}),
                    ),
                    (true, true) => (
                        200,
                        serde_json::json!({"ChallengeName": "CUSTOM_CHALLENGE", "Session": format!("round2-{n}"),
                            "ChallengeParameters": {"question": "2+0"}}),
                    ),
                    (true, false) => (
                        200,
                        serde_json::json!({"AuthenticationResult": {"AccessToken": "eyJ.access.token",
                            "IdToken": "eyJ.id.token", "RefreshToken": "refresh", "ExpiresIn": 3600,
                            "TokenType": "Bearer"}, "ChallengeParameters": {}}),
                    ),
                }
            }
            _ => (400, serde_json::json!({"__type": "InvalidParameterException"})),
        };
        amz_json(status, &answer)
    })
    .await;
    (served, calls)
}

/// Runs one custom-auth sign-in; the answer of each step in order.
async fn custom_sign_in(c: &Client<'_>, user: &str, ip: &str, answers: &[&str]) -> Vec<Answer> {
    let cognito = |target: &str, body: serde_json::Value| {
        let req = c
            .http
            .post(c.aw.url("/"))
            .header("x-forwarded-for", ip)
            .header(
                "user-agent",
                "aws-sdk-js/3.600 ua/2.1 os/linux lang/js md/nodejs#20",
            )
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                format!("AWSCognitoIdentityProviderService.{target}"),
            )
            .body(body.to_string());
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default();
            Answer {
                status,
                body,
                cookie: None,
            }
        }
    };
    let mut out = vec![
        cognito(
            "InitiateAuth",
            serde_json::json!({"AuthFlow": "CUSTOM_AUTH", "ClientId": "app1", "AuthParameters": {"USERNAME": user}}),
        )
        .await,
    ];
    for a in answers {
        let Some(session) = out.last().unwrap().body["Session"].as_str().map(str::to_string) else {
            break;
        };
        out.push(
            cognito(
                "RespondToAuthChallenge",
                serde_json::json!({"ChallengeName": "CUSTOM_CHALLENGE", "ClientId": "app1", "Session": session,
                    "ChallengeResponses": {"USERNAME": user, "ANSWER": a}}),
            )
            .await,
        );
    }
    out
}

fn cognito_config(upstream: &str, risk: &str) -> String {
    format!(
        r#"listen: {{http: [127.0.0.1:{{PORT}}]}}
admin: {{listen: 127.0.0.1:{{ADMIN}}, token_env: AW_TOKEN}}
upstream: {{url: {upstream}}}
trusted_proxies: [127.0.0.1/32]
store: {{kind: memory}}
geoip:
  city: {{SHARED}}/data/geoip/GeoIP2-City-Test.mmdb
  asn: {{SHARED}}/data/geoip/GeoLite2-ASN-Test.mmdb
include: [{{REPO}}/rules/profiles/cognito.yaml]
risk:
{risk}
"#
    )
}

fn decisions(metrics: &str) -> u64 {
    metric_total(metrics, "authward_risk_decisions_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cognito_custom_auth_flow_is_scored_once_and_acted_on_at_the_token_step() {
    let (up, calls) = cognito_custom_auth().await;
    // Password sign-ins are only audited; custom authentication is enforced, as Cognito's CustomAuthMode.
    let aw = Authward::start_with(
        &cognito_config(&up.url(), "  mode: audit\n  custom_auth_mode: enforce"),
        &[("AW_TOKEN", "t")],
    );
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let home = custom_sign_in(&c, "alice", BOXFORD, &["2", "2"]).await;
    assert_eq!(home.iter().map(|a| a.status).collect::<Vec<_>>(), [200, 200, 200]);
    assert_eq!(
        home[2].body["AuthenticationResult"]["AccessToken"],
        "eyJ.access.token"
    );
    assert_eq!(
        decisions(&aw.metrics().await),
        1,
        "one decision for the whole three-step flow"
    );

    // Ten seconds later from the other side of the world: every challenge passes, and the step that
    // would hand out the tokens is refused the way Cognito refuses it.
    let away = custom_sign_in(&c, "alice", MILTON, &["2", "2"]).await;
    assert_eq!(away[0].status, 200);
    assert_eq!(away[1].status, 200);
    assert_eq!(away[2].status, 400);
    assert_eq!(away[2].body["__type"], "NotAuthorizedException");
    assert_eq!(
        away[2].body["message"],
        "Unable to login because of security reasons."
    );
    assert!(away[2].body.get("AuthenticationResult").is_none());
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        6,
        "the upstream saw every step"
    );
    let m = aw.metrics().await;
    assert_eq!(decisions(&m), 2);
    assert!(
        m.contains("authward_risk_decisions_total{decision=\"block\",level=\"high\",mode=\"enforce\"} 1"),
        "{m}"
    );

    // A wrong answer ends the flow as a failure: one more decision, nothing blocked.
    let wrong = custom_sign_in(&c, "alice", BOXFORD, &["3"]).await;
    assert_eq!(wrong[1].status, 400);
    assert_eq!(wrong[1].body["message"], "Incorrect answer.");
    assert_eq!(decisions(&aw.metrics().await), 3);

    // One event per flow, with each challenge's name and result, newest first.
    let events = history(&aw, "alice", 3).await;
    let summary: Vec<(String, Vec<(String, String)>)> = events
        .iter()
        .map(|e| {
            let steps = e["challenges"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap().into(),
                                c["result"].as_str().unwrap().into(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (e["outcome"].as_str().unwrap().to_string(), steps)
        })
        .collect();
    let cc = |r: &str| ("CUSTOM_CHALLENGE".to_string(), r.to_string());
    assert_eq!(
        summary,
        vec![
            ("failure".to_string(), vec![cc("failure")]),
            ("blocked".to_string(), vec![cc("success"), cc("success")]),
            ("success".to_string(), vec![cc("success"), cc("success")]),
        ]
    );
    assert_eq!(events[1]["client_id"], "app1");
    assert_eq!(events[1]["mode"], "enforce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_user_taught_survives_kill_9_with_the_embedded_store() {
    let up = Upstream::start("login").await;
    let state = tempfile::tempdir().unwrap();
    let yaml = config(&up.url(), "  mode: enforce").replace(
        "store: {kind: memory}",
        &format!(
            "store: {{kind: embedded, path: {}/state.redb}}",
            state.path().display()
        ),
    );
    let mut first = Authward::start_with(&yaml, &[("AW_TOKEN", "t")]);
    let laptop = {
        let c = Client {
            aw: &first,
            http: client(),
        };
        let a = c.sign_in("judy", true, BOXFORD, None).await;
        assert_eq!(risk_level(&a), "level=none");
        a.cookie.unwrap()
    };
    // The sign-in's answer came back after her profile was committed; its event is written just after
    // the answer (in the background), so wait until the history API shows it. Then kill -9.
    assert_eq!(history(&first, "judy", 1).await.len(), 1);
    first.signal("KILL");
    assert!(first.wait_exit(Duration::from_secs(5)).is_some());
    let second = Authward::start_with(&yaml, &[("AW_TOKEN", "t")]);
    let c = Client {
        aw: &second,
        http: client(),
    };
    // The same cookie from another browser build: known only if the cookie key and the device survived.
    let r = c
        .http
        .post(second.url("/status/200"))
        .header("x-forwarded-for", BOXFORD)
        .header("user-agent", "Mozilla/5.0 (Macintosh) Safari/605.1.15")
        .header("cookie", format!("authward_device={laptop}"))
        .json(&serde_json::json!({"username": "judy", "password": "s3cret-Pa55word!"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    let risk = echoed_headers(&body, "x-authward-risk");
    assert_eq!(
        risk,
        ["level=none; score=0; signals="],
        "the device is still known"
    );
    // A device she never used is new, and Milton minutes after Boxford is still impossible travel.
    let other = c.sign_in("kim", true, BOXFORD, None).await.cookie.unwrap();
    let new = c.sign_in("judy", true, BOXFORD, Some(&other)).await;
    assert!(
        new.upstream_header("x-authward-risk")
            .unwrap()
            .contains("new_device")
    );
    assert_eq!(c.sign_in("judy", true, MILTON, Some(&laptop)).await.status, 403);
    // And her history is there in the admin API.
    assert!(history(&second, "judy", 4).await.len() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_form_sign_in_gets_the_profile_page_and_no_session_cookie() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        authward::demo::login_service::LoginService::new().serve(listener, async move {
            let _ = rx.await;
        }),
    );
    let aw = Authward::start_with(
        &format!(
            "listen: {{http: [127.0.0.1:{{PORT}}]}}\nadmin: {{listen: 127.0.0.1:{{ADMIN}}}}\nupstream: {{url: http://{addr}}}\nstore: {{kind: memory}}\ninclude: [{{REPO}}/rules/profiles/form-login.yaml]\nrisk:\n  mode: enforce\n  compromised_credentials: {{filter: 'builtin:demo'}}\n"
        ),
        &[],
    );
    let form = |u: &str, p: &str| format!("username={u}&password={p}");
    let post = |body: String| {
        client()
            .post(aw.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", UA)
            .body(body)
            .send()
    };
    let alice = post(form("alice", "correct-horse-battery")).await.unwrap();
    assert!(alice.status().is_redirection());
    assert!(
        alice
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| !c.to_str().unwrap().starts_with("authward_device"))
    );
    // bob's password is right and breached: the login service's redirect and session cookie are withheld.
    let bob = post(form("bob", "password123")).await.unwrap();
    assert_eq!(bob.status(), 403);
    assert!(bob.headers().get_all("set-cookie").iter().next().is_none());
    assert!(
        bob.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(bob.text().await.unwrap().contains("Sign-in refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_on_a_current_thread_runtime_serves_scored_sign_ins_and_drains_on_sigterm() {
    let up = Upstream::start("login").await;
    let state = tempfile::tempdir().unwrap();
    // `--worker-threads 1` (here by its environment variable) runs the whole proxy on one current-thread
    // runtime; the embedded store's blocking reads and its writer must still make progress on it.
    let yaml = config(&up.url(), "  mode: enforce").replace(
        "store: {kind: memory}",
        &format!(
            "store: {{kind: embedded, path: {}/state.redb}}",
            state.path().display()
        ),
    );
    let mut aw = Authward::start_with(&yaml, &[("AW_TOKEN", "t"), ("AUTHWARD_WORKER_THREADS", "1")]);
    let c = Client {
        aw: &aw,
        http: client(),
    };
    let home = c.sign_in("lena", true, BOXFORD, None).await;
    assert_eq!(risk_level(&home), "level=none");
    let away = c.sign_in("lena", true, MILTON, home.cookie.as_deref()).await;
    assert_eq!(away.status, 403, "history written and read back on one thread");
    assert_eq!(history(&aw, "lena", 2).await.len(), 2);
    aw.signal("TERM");
    let status = aw.wait_exit(Duration::from_secs(10)).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breached_password_sent_in_cognitos_choice_based_sign_in_is_caught() {
    // Cognito's USER_AUTH flow: InitiateAuth names the user only and gets SELECT_CHALLENGE; the password
    // comes in RespondToAuthChallenge (ANSWER: PASSWORD), which signs in.
    let up = crate::harness::serve(|parts, body| {
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let answer = match target.rsplit('.').next().unwrap_or("") {
            "InitiateAuth" => serde_json::json!({"ChallengeName": "SELECT_CHALLENGE", "Session": "s-1",
                "AvailableChallenges": ["PASSWORD", "EMAIL_OTP"], "ChallengeParameters": {}}),
            _ if req["ChallengeResponses"]["PASSWORD"].is_string() => serde_json::json!({
                "AuthenticationResult": {"AccessToken": "eyJ.access.token", "IdToken": "eyJ.id.token",
                    "RefreshToken": "refresh", "ExpiresIn": 3600, "TokenType": "Bearer"}, "ChallengeParameters": {}}),
            _ => serde_json::json!({"__type": "InvalidParameterException"}),
        };
        amz_json(200, &answer)
    })
    .await;
    let aw = Authward::start_with(
        &cognito_config(
            &up.url(),
            "  mode: enforce\n  compromised_credentials: {filter: 'builtin:demo'}",
        ),
        &[("AW_TOKEN", "t")],
    );
    let http = client();
    let cognito = |target: &'static str, body: serde_json::Value| {
        http.post(aw.url("/"))
            .header("x-forwarded-for", BOXFORD)
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                format!("AWSCognitoIdentityProviderService.{target}"),
            )
            .body(body.to_string())
            .send()
    };
    for (password, signed_in) in [("a-long-unique-passphrase", true), ("password123", false)] {
        let r = cognito(
            "InitiateAuth",
            serde_json::json!({"AuthFlow": "USER_AUTH", "ClientId": "app1", "AuthParameters": {"USERNAME": "bob"}}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let r = cognito(
            "RespondToAuthChallenge",
            serde_json::json!({"ChallengeName": "SELECT_CHALLENGE", "ClientId": "app1", "Session": "s-1",
                "ChallengeResponses": {"USERNAME": "bob", "ANSWER": "PASSWORD", "PASSWORD": password}}),
        )
        .await
        .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default();
        if signed_in {
            assert_eq!(
                (status, &body["AuthenticationResult"]["AccessToken"]),
                (200, &"eyJ.access.token".into())
            );
        } else {
            // The tokens the upstream issued for a breached password never reach the client.
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["__type"], "NotAuthorizedException");
        }
    }
    let events = history(&aw, "bob", 10).await;
    assert!(
        events
            .iter()
            .any(|e| e["risk"]["compromised_credentials"] == true),
        "{events:?}"
    );
}
