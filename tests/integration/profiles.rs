//! The shipped profiles end to end: the real binary in front of the demo's real login service.

use authward::demo::login_service::LoginService;

use crate::harness::{Authward, client};

/// Starts the demo login service on a free port; returns its base URL and the stop handle.
async fn login_service() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(LoginService::new().serve(listener, async move {
        let _ = rx.await;
    }));
    (format!("http://{addr}"), tx)
}

fn outcome_count(metrics: &str, operation: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("authward_profile_outcomes_total{"))
        .filter(|l| {
            l.contains(&format!("operation=\"{operation}\"")) && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_form_logins_are_recognised_and_classified() {
    let (upstream, _stop) = login_service().await;
    let aw = Authward::start(&format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {upstream}\ninclude:\n  - {{REPO}}/rules/profiles/json-login.yaml\n  - {{REPO}}/rules/profiles/form-login.yaml\n"
    ));
    let c = client();
    let login = |u: &str, p: &str| serde_json::json!({"username": u, "password": p});
    let r = c
        .post(aw.url("/api/login"))
        .json(&login("alice", "correct-horse-battery"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(aw.url("/api/login"))
        .json(&login("alice", "nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(aw.url("/api/login"))
        .json(&login("mallory", "nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The token the upstream issued reaches the client untouched.
    let me = c.get(aw.url("/api/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);

    // The HTML form login: a redirect that sets a session cookie is a success, the form again a failure.
    let r = c
        .post(aw.url("/login"))
        .form(&[("username", "bob"), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("session=")
    );
    let r = c
        .post(aw.url("/login"))
        .form(&[("username", "bob"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A sign-up with a phone number.
    let r = c
        .post(aw.url("/api/signup"))
        .json(&serde_json::json!({"username": "carol", "password": "a-long-passphrase", "phone": "+447700900123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let m = aw.metrics().await;
    assert_eq!(outcome_count(&m, "sign_in", "success"), 2, "{m}");
    assert_eq!(outcome_count(&m, "sign_in", "failure"), 3, "{m}");
    assert_eq!(outcome_count(&m, "sign_up", "success"), 1, "{m}");
    assert!(
        m.contains("authward_requests_total{operation=\"none\",status=\"200\"} 1"),
        "/api/me is not profiled"
    );

    // The access log names the operation and outcome, and never a password or token.
    let log = aw.logs();
    assert!(log.contains("\"operation\":\"sign_in\"") && log.contains("\"outcome\":\"failure\""));
    for secret in [
        "correct-horse-battery",
        "password123",
        "a-long-passphrase",
        token.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}
