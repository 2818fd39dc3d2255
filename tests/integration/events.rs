//! Auth events end to end: the file sink, the history API, the signed webhook, feedback by admin and link.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authward::demo::login_service::LoginService;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Sha256;

use crate::harness::{Authward, client, eventually};

const TOKEN: &str = "events-admin-token";
const HOOK_SECRET: &str = "whsec-integration";
const PASSWORD: &str = "correct-horse-battery";
const WRONG: &str = "a-wrong-password-xyz";

async fn login_service() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(LoginService::new().serve(listener, async move {
        let _ = rx.await;
    }));
    (format!("http://{addr}"), tx)
}

/// One request the webhook receiver got.
#[derive(Clone)]
struct Delivery {
    timestamp: String,
    signature: String,
    body: Bytes,
    status: u16,
}

/// A webhook receiver on a free loopback port that records every request and answers the first with 500.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default()
                        };
                        let (timestamp, signature) =
                            (header("x-authward-timestamp"), header("x-authward-signature"));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut seen = seen.lock().unwrap();
                        let status = if seen.is_empty() { 500 } else { 200 };
                        seen.push(Delivery {
                            timestamp,
                            signature,
                            body,
                            status,
                        });
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (format!("http://{addr}/hook"), got)
}

fn config(upstream: &str, hook: &str) -> String {
    format!(
        "listen:
  http: [127.0.0.1:{{PORT}}]
admin:
  listen: 127.0.0.1:{{ADMIN}}
  token_env: TEST_ADMIN_TOKEN
upstream:
  url: {upstream}
include:
  - {{REPO}}/rules/profiles/json-login.yaml
events:
  history: {{max_per_user: 50, ttl: 90d}}
  sinks:
    - file: {{path: {{DIR}}/events.jsonl, max_size: 10MiB, keep: 2}}
  webhook:
    url: {hook}
    scope: all
    secret_env: TEST_HOOK_SECRET
    timeout: 2s
    retries: 3
  feedback_links:
    base_url: http://127.0.0.1:{{PORT}}
    secret_env: TEST_LINK_SECRET
    ttl: 7d
"
    )
}

fn start(upstream: &str, hook: &str) -> Authward {
    Authward::start_with(
        &config(upstream, hook),
        &[
            ("TEST_ADMIN_TOKEN", TOKEN),
            ("TEST_HOOK_SECRET", HOOK_SECRET),
            ("TEST_LINK_SECRET", "link-secret-integration"),
        ],
    )
}

async fn sign_in(aw: &Authward, user: &str, password: &str) -> u16 {
    client()
        .post(aw.url("/api/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The complete lines of the file sink, each one JSON object.
fn sink_lines(aw: &Authward) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(aw.dir.path().join("events.jsonl")).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).expect("every sink line is one JSON object"))
        .collect()
}

async fn user_events(aw: &Authward, user_path: &str, query: &str) -> (u16, serde_json::Value) {
    let r = client()
        .get(aw.admin_url(&format!("/admin/v1/users/{user_path}/events{query}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The signature a receiver computes: HMAC-SHA256 over "<timestamp>.<raw body>".
fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_are_recorded_notified_and_take_feedback() {
    let (upstream, _stop) = login_service().await;
    let (hook, deliveries) = webhook_receiver().await;
    let aw = start(&upstream, &hook);
    let c = client();

    assert_eq!(sign_in(&aw, "alice", PASSWORD).await, 200);
    assert_eq!(sign_in(&aw, "alice", WRONG).await, 401);
    assert_eq!(sign_in(&aw, "eve@example.com", WRONG).await, 401);
    // Not an auth operation: no event.
    c.get(aw.url("/api/me")).send().await.unwrap();

    // The file sink.
    assert!(
        eventually(Duration::from_secs(5), async || sink_lines(&aw).len() == 3).await,
        "{:?}",
        sink_lines(&aw)
    );
    let lines = sink_lines(&aw);
    let outcomes: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["username"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("sign_in", "alice", "success"),
            ("sign_in", "alice", "failure"),
            ("sign_in", "eve@example.com", "failure")
        ]
    );
    assert_eq!(lines[0]["ip"], "127.0.0.1");
    assert_eq!(lines[0]["decision"], "allow");

    // The history API: newest first, paged with a cursor, the username percent-decoded.
    let count = async |user: &str| {
        user_events(&aw, user, "").await.1["events"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let written = async || count("alice").await == 2 && count("eve%40example.com").await == 1;
    assert!(eventually(Duration::from_secs(5), written).await);
    let (status, page) = user_events(&aw, "alice", "").await;
    assert_eq!(status, 200, "{page}");
    let alice: Vec<serde_json::Value> = page["events"].as_array().unwrap().clone();
    assert_eq!(alice.len(), 2);
    assert_eq!(alice[0]["outcome"], "failure");
    assert_eq!(alice[1]["outcome"], "success");
    assert_eq!(alice[1], lines[0], "the same record in the sink and the history");
    assert!(page["next_cursor"].is_null());
    let (_, first) = user_events(&aw, "alice", "?limit=1").await;
    assert_eq!(first["events"][0]["event_id"], alice[0]["event_id"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = user_events(&aw, "alice", &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(second["events"][0]["event_id"], alice[1]["event_id"]);
    assert!(second["next_cursor"].is_null());
    let (status, eve) = user_events(&aw, "eve%40example.com", "").await;
    assert_eq!(status, 200);
    assert_eq!(eve["events"].as_array().unwrap().len(), 1);
    assert_eq!(user_events(&aw, "alice", "?limit=zero").await.0, 400);
    assert_eq!(user_events(&aw, "alice", "?cursor=nonsense").await.0, 400);
    let r = c
        .get(aw.admin_url("/admin/v1/users/alice/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the history needs the admin token");

    // The webhook: every event (scope all), signed; the first attempt got a 500 and was retried.
    assert!(
        eventually(Duration::from_secs(10), async || deliveries.lock().unwrap().len()
            >= 4)
        .await,
        "deliveries: {}",
        deliveries.lock().unwrap().len()
    );
    let got: Vec<Delivery> = deliveries.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "three events, one retried");
    assert_eq!(got[0].status, 500);
    let mut payloads = Vec::new();
    for d in &got {
        assert_eq!(d.signature, expected_signature(&d.timestamp, &d.body));
        let ts: u64 = d.timestamp.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(ts) < 60);
        let text = String::from_utf8(d.body.to_vec()).unwrap();
        assert!(!text.contains(PASSWORD) && !text.contains(WRONG));
        payloads.push(serde_json::from_str::<serde_json::Value>(&text).unwrap());
    }
    let success = payloads
        .iter()
        .find(|p| p["event"]["outcome"] == "success")
        .unwrap();
    assert_eq!(success["event"]["event_id"], alice[1]["event_id"]);
    let delivered = async || {
        let m = aw.metrics().await;
        m.contains("authward_webhook_deliveries_total{result=\"ok\"} 3")
    };
    assert!(
        eventually(Duration::from_secs(5), delivered).await,
        "{}",
        aw.metrics().await
    );

    // A feedback link: opening it (GET) asks for confirmation and records nothing...
    let valid = success["links"]["valid"].as_str().unwrap().to_string();
    assert!(valid.starts_with(&aw.url("/.authward/feedback/")), "{valid}");
    let r = c.get(&valid).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.text().await.unwrap().contains("Yes, this was me"));
    let (_, page) = user_events(&aw, "alice", "").await;
    assert!(page["events"][1]["feedback"].is_null());
    // ... the button (POST) records it, and twice is the same as once.
    for _ in 0..2 {
        let r = c.post(&valid).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(page.contains("we recorded that this sign-in was you"), "{page}");
    }
    let (_, page) = user_events(&aw, "alice", "").await;
    let fb = &page["events"][1]["feedback"];
    assert_eq!(
        (fb["value"].as_str(), fb["source"].as_str()),
        (Some("valid"), Some("link"))
    );

    // A tampered or unknown link: a plain 400 from authward; the login service never sees it.
    let tampered = format!("{}x", valid);
    let r = c.post(&tampered).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not valid"));
    assert_eq!(
        c.get(aw.url("/.authward/feedback/anything"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    // Feedback through the admin API.
    let failure_id = alice[0]["event_id"].as_str().unwrap();
    let r = c
        .post(aw.admin_url(&format!("/admin/v1/events/{failure_id}/feedback")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"value": "invalid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let updated: serde_json::Value = r.json().await.unwrap();
    assert_eq!(updated["event_id"], failure_id);
    assert_eq!(updated["feedback"]["value"], "invalid");
    assert_eq!(updated["feedback"]["source"], "admin");
    let (_, page) = user_events(&aw, "alice", "").await;
    assert_eq!(page["events"][0]["feedback"]["value"], "invalid");
    let post = |path: String, body: &'static str| {
        c.post(aw.admin_url(&path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let bad = post(
        format!("/admin/v1/events/{failure_id}/feedback"),
        r#"{"value": "maybe"}"#,
    );
    assert_eq!(bad.await.unwrap().status(), 400);
    let unknown = post(
        "/admin/v1/events/01HF0000000000000000000000/feedback".into(),
        r#"{"value": "valid"}"#,
    );
    assert_eq!(unknown.await.unwrap().status(), 404);

    let m = aw.metrics().await;
    assert!(
        m.contains("authward_feedback_total{source=\"link\",value=\"valid\"} 1"),
        "{m}"
    );
    assert!(m.contains("authward_feedback_total{source=\"admin\",value=\"invalid\"} 1"));
    assert!(m.contains("authward_events_total{outcome=\"failure\",type=\"sign_in\"} 2"));

    // No password in the sink, no link token in the log.
    let sink = std::fs::read_to_string(aw.dir.path().join("events.jsonl")).unwrap();
    assert!(!sink.contains(PASSWORD) && !sink.contains(WRONG));
    let token = valid.rsplit('/').next().unwrap();
    let log = aw.logs();
    assert!(!log.contains(token), "the link token reached the log");
    assert!(!log.contains(HOOK_SECRET), "the webhook secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_every_queued_event_before_exit() {
    let (upstream, _stop) = login_service().await;
    let (hook, deliveries) = webhook_receiver().await;
    let mut aw = start(&upstream, &hook);
    const N: usize = 12;
    for i in 0..N {
        let password = if i % 2 == 0 { PASSWORD } else { WRONG };
        sign_in(&aw, "alice", password).await;
    }
    // The lines are still in the sink's buffer (flushed a second after writing) and the notifications in
    // the webhook queue: stop now.
    aw.signal("TERM");
    let status = aw.wait_exit(Duration::from_secs(20)).expect("authward exits");
    assert!(status.success(), "{}", aw.logs());
    let lines = sink_lines(&aw);
    assert_eq!(lines.len(), N, "every event is in the file after exit");
    assert!(lines.iter().all(|e| e["username"] == "alice"));
    // The notifications still queued (the first one waits 200 ms to be retried) went out before exit.
    let got = deliveries.lock().unwrap();
    let ok = got.iter().filter(|d| d.status == 200).count();
    assert_eq!(
        (got.len(), ok),
        (N + 1, N),
        "every notification is delivered before exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_webhook_secret_stops_the_start_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(
        &path,
        "upstream: {url: 'http://127.0.0.1:1'}\nevents:\n  webhook:\n    url: https://hooks.example\n    secret_env: NOT_SET_ANYWHERE\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            ":5:17: events.webhook.secret_env: the environment variable `NOT_SET_ANYWHERE` is unset"
        ),
        "{text}"
    );
}
