//! MFA step-up end to end: the real binary holds a risky sign-in, a TOTP code enrolled through the admin
//! API releases it, and user-enumeration answers come out identical.

use std::time::{Duration, Instant};

use authward::mfa::totp;
use bytes::Bytes;
use http_body_util::Full;

use crate::harness::{Authward, Served, client, serve};

const RISKY: &str = "risky-client/1.0";
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const HOME: &str = "198.51.100.7";

/// A login API: `/login` and `/native` answer the right password with a token and two cookies, a wrong
/// one with 401, an unknown user (`ghost`) with 404; `/native` also says what decision it was told.
async fn login_api() -> Served {
    serve(|parts, body| {
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let user = req["username"].as_str().unwrap_or("").to_string();
        let told = parts
            .headers
            .get("x-authward-decision")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let r = hyper::Response::builder();
        let r = if user == "ghost" {
            r.status(404)
                .header("content-type", "application/json")
                .body(r#"{"error":"no_such_user"}"#.to_string())
        } else if req["password"] != "right-Pa55word" {
            r.status(401)
                .header("content-type", "application/json")
                .header("x-debug", "wrong password")
                .body(r#"{"error":"wrong_password"}"#.to_string())
        } else {
            r.status(200)
                .header("content-type", "application/json")
                .header("set-cookie", format!("session=s-{user}; Path=/; HttpOnly"))
                .header("set-cookie", "refresh=r1; Path=/auth; HttpOnly")
                .header("x-upstream", "login")
                .body(format!(r#"{{"token":"tok-{user}","told":"{told}"}}"#))
        };
        r.unwrap().map(|b| Full::new(Bytes::from(b)))
    })
    .await
}

fn config(upstream: &str, mfa: &str) -> String {
    format!(
        r#"listen: {{http: [127.0.0.1:{{PORT}}]}}
admin: {{listen: 127.0.0.1:{{ADMIN}}, token_env: AW_TOKEN}}
upstream: {{url: {upstream}}}
trusted_proxies: [127.0.0.1/32]
store: {{kind: memory}}
profiles:
  - name: api-login
    operation: sign_in
    match: {{methods: [POST], path: {{exact: /login}}}}
    fields: {{username: {{json: /username}}, password: {{json: /password}}, client_id: {{json: /client_id}}}}
    outcome: {{success: {{status: [200]}}, failure: {{status: [401, 404]}}}}
    challenge_response:
      status: 401
      headers: {{content-type: application/json, x-mfa-expires: "{{{{expires_in}}}}"}}
      body: '{{"mfa_required":true,"challenge":"{{{{challenge_id}}}}","methods":{{{{methods}}}}}}'
    enumeration:
      unknown_user: {{status: [404]}}
      wrong_password: {{status: [401]}}
      min_duration: 300ms
  - name: first-login
    operation: sign_in
    mfa_enrollment: first_sign_in
    match: {{methods: [POST], path: {{exact: /first}}}}
    fields: {{username: {{json: /username}}, password: {{json: /password}}}}
    outcome: {{success: {{status: [200]}}, failure: {{status: [401, 404]}}}}
  - name: native-login
    operation: sign_in
    mfa: backend
    match: {{methods: [POST], path: {{exact: /native}}}}
    fields: {{username: {{json: /username}}, password: {{json: /password}}}}
    outcome: {{success: {{status: [200]}}, failure: {{status: [401, 404]}}}}
risk:
  mode: enforce
  automation_user_agents: ["^risky"]
  actions: {{low: {{action: require_mfa}}}}
  clients:
    relaxed: {{actions: {{low: {{action: optional_mfa}}}}}}
mfa: {{key_env: AW_MFA{mfa}}}
"#
    )
}

fn start(upstream: &Served, mfa: &str) -> Authward {
    Authward::start_with(
        &config(&upstream.url(), mfa),
        &[("AW_TOKEN", "t"), ("AW_MFA", KEY)],
    )
}

/// One answer, whole.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Got {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The headers without the ones that differ per request.
    fn stable_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k != "date" && k != "x-authward-request-id")
            .cloned()
            .collect()
    }
}

async fn got(r: reqwest::RequestBuilder) -> Got {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Got {
        status,
        headers,
        body: r.bytes().await.unwrap(),
    }
}

async fn sign_in(aw: &Authward, path: &str, body: serde_json::Value, ip: &str, ua: &str) -> Got {
    got(client()
        .post(aw.url(path))
        .header("x-forwarded-for", ip)
        .header("user-agent", ua)
        .json(&body))
    .await
}

fn login(user: &str) -> serde_json::Value {
    serde_json::json!({"username": user, "password": "right-Pa55word"})
}

async fn verify(aw: &Authward, id: &str, code: &str, ip: &str, ua: &str) -> Got {
    got(client()
        .post(aw.url("/.authward/mfa/verify"))
        .header("x-forwarded-for", ip)
        .header("user-agent", ua)
        .json(&serde_json::json!({"challenge_id": id, "code": code})))
    .await
}

/// Enrolls a TOTP factor through the admin API; the secret's bytes.
async fn enroll(aw: &Authward, user: &str) -> Vec<u8> {
    let r = client()
        .put(aw.admin_url(&format!("/admin/v1/users/{user}/mfa/totp")))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e: serde_json::Value = r.json().await.unwrap();
    let secret = e["secret"].as_str().unwrap();
    assert!(
        e["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("otpauth://totp/authward:{user}?secret={secret}&")),
        "{e}"
    );
    totp::base32_decode(secret).unwrap()
}

fn code_now(secret: &[u8]) -> String {
    let now = authward::clock::system();
    totp::code(secret, totp::step_at(now.now_ms()), totp::DIGITS)
}

fn other_code(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 500_000) % 1_000_000)
}

async fn events(aw: &Authward, user: &str, n: usize) -> Vec<serde_json::Value> {
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
        if events.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_a_held_sign_in_is_released_byte_for_byte_by_the_right_code_once() {
    let up = login_api().await;
    let aw = start(&up, "");
    let secret = enroll(&aw, "alice").await;
    // What the upstream answers, asked directly (told what authward tells it).
    let direct = got(client()
        .post(format!("{}/login", up.url()))
        .header("x-authward-decision", "require_mfa")
        .json(&login("alice")))
    .await;

    let challenged = sign_in(&aw, "/login", login("alice"), HOME, RISKY).await;
    assert_eq!(challenged.status, 401, "{:?}", challenged.json());
    let c = challenged.json();
    assert_eq!(
        (c["mfa_required"].as_bool(), c["methods"][0].as_str()),
        (Some(true), Some("totp"))
    );
    assert_eq!(challenged.header("x-mfa-expires"), ["300"]);
    assert!(
        challenged.header("set-cookie").is_empty(),
        "no session cookie before MFA"
    );
    assert!(!String::from_utf8_lossy(&challenged.body).contains("tok-"));
    let id = c["challenge"].as_str().unwrap().to_string();
    let code = code_now(&secret);

    let wrong = verify(&aw, &id, &other_code(&code), HOME, RISKY).await;
    assert_eq!(
        (wrong.status, wrong.json()["attempts_left"].as_u64()),
        (401, Some(4))
    );
    // From another network, or another device, even the right code is refused.
    let away = verify(&aw, &id, &code, "203.0.113.9", RISKY).await;
    assert_eq!(
        (away.status, away.json()["error"].as_str()),
        (403, Some("challenge_refused"))
    );
    assert_eq!(verify(&aw, &id, &code, HOME, "risky-other/2").await.status, 403);
    // The same /24 and device: the upstream's answer, exactly.
    let released = verify(&aw, &id, &code, "198.51.100.99", RISKY).await;
    assert_eq!(released.status, direct.status);
    assert_eq!(released.body, direct.body, "the body byte for byte");
    assert_eq!(released.stable_headers(), direct.stable_headers());
    assert_eq!(
        released.header("set-cookie"),
        [
            "session=s-alice; Path=/; HttpOnly",
            "refresh=r1; Path=/auth; HttpOnly"
        ]
    );
    // Consumed once; and the code cannot be used again for a new challenge.
    let again = verify(&aw, &id, &code, HOME, RISKY).await;
    assert_eq!(
        (again.status, again.json()["error"].as_str()),
        (410, Some("challenge_gone"))
    );
    let next = sign_in(&aw, "/login", login("alice"), HOME, RISKY).await;
    let id2 = next.json()["challenge"].as_str().unwrap().to_string();
    let replay = verify(&aw, &id2, &code, HOME, RISKY).await;
    assert_eq!(replay.status, 401, "a used code is refused: {:?}", replay.json());

    // Events: the sign-in challenged, then each check, never with the code or the challenge id.
    let ev = events(&aw, "alice", 7).await;
    let kinds: Vec<(String, String, String)> = ev
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["outcome"].as_str().unwrap().into(),
                e["mfa"]["result"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let k = |t: &str, o: &str, r: &str| (t.to_string(), o.to_string(), r.to_string());
    assert_eq!(
        kinds,
        [
            k("mfa_verify", "failure", "replayed"),
            k("sign_in", "challenged", "challenged"),
            k("mfa_verify", "success", "verified"),
            k("mfa_verify", "blocked", "refused"),
            k("mfa_verify", "blocked", "refused"),
            k("mfa_verify", "failure", "wrong_code"),
            k("sign_in", "challenged", "challenged"),
        ],
        "{ev:?}"
    );
    assert_eq!(ev[1]["decision"], "require_mfa");
    let text = serde_json::to_string(&ev).unwrap();
    assert!(
        !text.contains(&code) && !text.contains(&id),
        "no code or challenge id in events"
    );
    let m = aw.metrics().await;
    for line in [
        "authward_mfa_challenges_total{result=\"held\"} 2",
        "authward_mfa_verifications_total{result=\"verified\"} 1",
        "authward_mfa_verifications_total{result=\"refused\"} 2",
        "authward_mfa_verifications_total{result=\"replayed\"} 1",
        "authward_mfa_enrollments_total{action=\"enroll\"} 1",
    ] {
        assert!(m.contains(line), "{line}: {m}");
    }
    assert!(!aw.logs().contains(&code), "no code in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_a_first_sign_in_enrolls_a_factor_that_later_step_ups_use() {
    const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0";
    let up = login_api().await;
    let aw = start(&up, "");
    let direct = got(client()
        .post(format!("{}/first", up.url()))
        .header("x-authward-decision", "allow")
        .json(&login("dave")))
    .await;
    // A first sign-in that asks for a step-up is never offered enrollment: no factor, so a block.
    let risky = sign_in(&aw, "/first", login("erin"), HOME, RISKY).await;
    assert_eq!(risky.status, 403, "{:?}", risky.json());

    // A trusted first sign-in: held, and answered with a new secret to enroll.
    let offer = sign_in(&aw, "/first", login("dave"), HOME, BROWSER).await;
    assert_eq!(offer.status, 401, "{:?}", offer.json());
    let o = offer.json();
    assert_eq!(o["error"], "mfa_enrollment_required", "{o}");
    assert_eq!(o["expires_in"], 300);
    assert!(
        offer.header("set-cookie").is_empty(),
        "no session before the factor is proved"
    );
    assert!(!String::from_utf8_lossy(&offer.body).contains("tok-"));
    let id = o["challenge_id"].as_str().unwrap().to_string();
    let b32 = o["secret"].as_str().unwrap();
    assert!(
        o["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("otpauth://totp/authward:dave?secret={b32}&")),
        "{o}"
    );
    let secret = totp::base32_decode(b32).unwrap();
    let code = code_now(&secret);

    // Another network cannot complete it; a wrong code is refused with the attempts left.
    let away = verify(&aw, &id, &code, "203.0.113.9", BROWSER).await;
    assert_eq!(
        (away.status, away.json()["error"].as_str()),
        (403, Some("challenge_refused"))
    );
    let wrong = verify(&aw, &id, &other_code(&code), HOME, BROWSER).await;
    assert_eq!(
        (wrong.status, wrong.json()["attempts_left"].as_u64()),
        (401, Some(4))
    );
    // The right code stores the factor and releases the upstream's answer, byte for byte.
    let released = verify(&aw, &id, &code, HOME, BROWSER).await;
    assert_eq!(released.status, direct.status, "{:?}", released.json());
    assert_eq!(released.body, direct.body, "the body byte for byte");
    let upstream_headers = |g: &Got| -> Vec<(String, String)> {
        g.stable_headers()
            .into_iter()
            .filter(|(k, v)| !(k == "set-cookie" && v.starts_with("authward_device=")))
            .collect()
    };
    assert_eq!(upstream_headers(&released), upstream_headers(&direct));
    assert_eq!(
        verify(&aw, &id, &code, HOME, BROWSER).await.status,
        410,
        "consumed once"
    );

    // From then on the factor is dave's: a risky sign-in is stepped up with it, not blocked.
    let stepped = sign_in(&aw, "/first", login("dave"), HOME, RISKY).await;
    assert_eq!(stepped.status, 401, "{:?}", stepped.json());
    let s = stepped.json();
    assert_eq!(s["error"], "mfa_required", "{s}");
    assert!(s.get("secret").is_none_or(|v| v == ""), "no new secret: {s}");
    let id2 = s["challenge_id"].as_str().unwrap();
    let now = totp::step_at(authward::clock::system().now_ms());
    let next = totp::code(&secret, now + 1, totp::DIGITS);
    let r = verify(&aw, id2, &next, HOME, RISKY).await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("tok-dave"));
    // A trusted sign-in with a factor enrolled is not offered enrollment again.
    let again = sign_in(&aw, "/first", login("dave"), HOME, BROWSER).await;
    assert_eq!(again.status, 200);

    let ev = events(&aw, "dave", 5).await;
    let enrolled = ev
        .iter()
        .find(|e| e["type"] == "mfa_verify" && e["outcome"] == "success")
        .cloned()
        .unwrap_or_default();
    assert!(ev.iter().any(|e| e["mfa"]["result"] == "enrolled"), "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| e["type"] == "sign_in" && e["mfa"]["result"] == "enrollment"),
        "{ev:?}"
    );
    assert_ne!(enrolled, serde_json::Value::Null);
    let text = serde_json::to_string(&ev).unwrap();
    assert!(
        !text.contains(b32) && !text.contains(&code) && !text.contains(&id),
        "{text}"
    );
    let m = aw.metrics().await;
    for line in [
        "authward_mfa_challenges_total{result=\"enrollment\"} 1",
        "authward_mfa_verifications_total{result=\"enrolled\"} 1",
        "authward_mfa_enrollments_total{action=\"self_enroll\"} 1",
    ] {
        assert!(m.contains(line), "{line}: {m}");
    }
    let logs = aw.logs();
    assert!(
        !logs.contains(b32) && !logs.contains(&code),
        "no secret or code in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_guessing_locks_the_challenge_and_a_verified_device_becomes_known() {
    let up = login_api().await;
    let aw = start(&up, "");
    let secret = enroll(&aw, "bob").await;
    let id = sign_in(&aw, "/login", login("bob"), HOME, RISKY).await.json()["challenge"]
        .as_str()
        .unwrap()
        .to_string();
    let code = code_now(&secret);
    for left in (0..5).rev() {
        let r = verify(&aw, &id, &other_code(&code), HOME, RISKY).await;
        assert_eq!((r.status, r.json()["attempts_left"].as_u64()), (401, Some(left)));
    }
    assert_eq!(verify(&aw, &id, &code, HOME, RISKY).await.status, 410, "locked");

    // A step-up that succeeds teaches the history: the device is known from then on.
    let id = sign_in(&aw, "/login", login("bob"), HOME, RISKY).await.json()["challenge"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(verify(&aw, &id, &code, HOME, RISKY).await.status, 200);
    sign_in(&aw, "/login", login("bob"), HOME, "risky-laptop/2").await;
    sign_in(&aw, "/login", login("bob"), HOME, RISKY).await;
    let ev = events(&aw, "bob", 10).await;
    let new_device = |e: &serde_json::Value| {
        e["risk"]["signals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "new_device")
    };
    assert!(!new_device(&ev[0]), "the verified device: {}", ev[0]);
    assert!(new_device(&ev[1]), "another device: {}", ev[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_an_expired_challenge_is_gone() {
    let up = login_api().await;
    let aw = start(&up, ", challenge_ttl: 1s");
    let secret = enroll(&aw, "carol").await;
    let c = sign_in(&aw, "/login", login("carol"), HOME, RISKY).await.json();
    assert_eq!(c["challenge"].as_str().map(str::len), Some(32));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = verify(
        &aw,
        c["challenge"].as_str().unwrap(),
        &code_now(&secret),
        HOME,
        RISKY,
    )
    .await;
    assert_eq!(r.status, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_without_a_factor_require_blocks_optional_allows_and_backend_mode_forwards() {
    let up = login_api().await;
    let aw = start(&up, "");
    let blocked = sign_in(&aw, "/login", login("dave"), HOME, RISKY).await;
    assert_eq!(blocked.status, 403);
    assert_eq!(blocked.json()["error"], "sign_in_blocked");
    assert!(blocked.header("set-cookie").is_empty());
    let mut relaxed = login("dave");
    relaxed["client_id"] = "relaxed".into();
    let allowed = sign_in(&aw, "/login", relaxed, HOME, RISKY).await;
    assert_eq!(
        (allowed.status, allowed.json()["token"].as_str()),
        (200, Some("tok-dave"))
    );
    // Enrolled, but the profile leaves the step-up to the backend: forwarded with the decision.
    enroll(&aw, "dave").await;
    let native = sign_in(&aw, "/native", login("dave"), HOME, RISKY).await;
    assert_eq!(native.status, 200);
    assert_eq!(native.json()["told"], "require_mfa");
    // Removing the factor makes require_mfa a block again.
    let del = |aw: &Authward| {
        client()
            .delete(aw.admin_url("/admin/v1/users/dave/mfa/totp"))
            .bearer_auth("t")
            .send()
    };
    assert_eq!(del(&aw).await.unwrap().status(), 204);
    assert_eq!(del(&aw).await.unwrap().status(), 404);
    assert_eq!(
        sign_in(&aw, "/login", login("dave"), HOME, RISKY).await.status,
        403
    );
    let unauth = client()
        .put(aw.admin_url("/admin/v1/users/dave/mfa/totp"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    let ev = events(&aw, "dave", 4).await;
    let first = ev.last().unwrap();
    assert_eq!(
        (
            first["outcome"].as_str(),
            first["decision"].as_str(),
            first["mfa"]["result"].as_str()
        ),
        (Some("blocked"), Some("block"), Some("no_factor"))
    );
    let m = aw.metrics().await;
    for line in [
        "authward_mfa_challenges_total{result=\"no_factor_blocked\"} 2",
        "authward_mfa_challenges_total{result=\"no_factor_allowed\"} 1",
        "authward_mfa_challenges_total{result=\"backend\"} 1",
        "authward_mfa_enrollments_total{action=\"remove\"} 2",
    ] {
        assert!(m.contains(line), "{line}: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_unknown_users_and_wrong_passwords_get_one_answer_in_the_same_time() {
    let up = login_api().await;
    let aw = start(&up, "");
    let timed = |user: &'static str| {
        let aw = &aw;
        async move {
            let started = Instant::now();
            let body = serde_json::json!({"username": user, "password": "wrong"});
            let g = sign_in(aw, "/login", body, HOME, "Mozilla/5.0 Firefox/130.0").await;
            (g, started.elapsed())
        }
    };
    let (ghost, t1) = timed("ghost").await;
    let (wrong, t2) = timed("erin").await;
    assert_eq!((ghost.status, wrong.status), (401, 401));
    assert_eq!(ghost.body, wrong.body);
    assert_eq!(ghost.stable_headers(), wrong.stable_headers());
    assert_eq!(ghost.json()["error"], "invalid_credentials");
    assert!(wrong.header("x-debug").is_empty());
    assert!(
        t1 >= Duration::from_millis(300) && t2 >= Duration::from_millis(300),
        "{t1:?} {t2:?}"
    );
    let m = aw.metrics().await;
    assert!(
        m.contains("authward_enumeration_answers_total{answer=\"unknown_user\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("authward_enumeration_answers_total{answer=\"wrong_password\"} 1"),
        "{m}"
    );
}

/// A child process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_has(modules: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_cognito_step_up_with_the_real_boto3_client_against_moto() {
    assert!(
        python_has("boto3, moto.server"),
        "python3 with boto3 and moto[server] is needed: run scripts/test.sh, which installs them"
    );
    let port = crate::harness::free_port();
    let moto = Killed(
        std::process::Command::new("python3")
            .args(["-m", "moto.server", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto's server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moto_url = format!("http://127.0.0.1:{port}");
    let aw = Authward::start_with(
        &format!(
            r#"listen: {{http: [127.0.0.1:{{PORT}}]}}
admin: {{listen: 127.0.0.1:{{ADMIN}}, token_env: AW_TOKEN}}
upstream: {{url: {moto_url}}}
store: {{kind: memory}}
include: [{{REPO}}/rules/profiles/cognito.yaml]
risk:
  mode: enforce
  automation_user_agents: ["^Boto3/"]
  actions: {{low: {{action: require_mfa}}}}
mfa: {{key_env: AW_MFA}}
"#
        ),
        &[("AW_TOKEN", "t"), ("AW_MFA", KEY)],
    );
    let out = tokio::task::spawn_blocking({
        let (authward, admin) = (aw.url(""), aw.admin_url(""));
        move || {
            std::process::Command::new("python3")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/python/cognito_mfa.py"
                ))
                .env("COGNITO_URL", &moto_url)
                .env("AUTHWARD_URL", authward)
                .env("ADMIN_URL", admin)
                .env("ADMIN_TOKEN", "t")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    drop(moto);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        aw.logs()
    );
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(r["challenge"], "SOFTWARE_TOKEN_MFA", "{r}");
    assert_eq!(r["tokens_before_mfa"], false, "{r}");
    assert_eq!(r["wrong_code"], "CodeMismatchException", "{r}");
    assert_eq!(r["token_type"], "Bearer", "{r}");
    assert_eq!(r["issuer_is_pool"], true, "moto issued the tokens: {r}");
    assert_eq!(r["username"], "alice", "{r}");
    assert_eq!(r["moto_accepts_the_token"], true, "{r}");
    assert_eq!(r["replay"], "NotAuthorizedException", "{r}");
    let same = "NotAuthorizedException: Incorrect username or password.";
    assert_eq!(
        (r["unknown_user"].as_str(), r["wrong_password"].as_str()),
        (Some(same), Some(same)),
        "{r}"
    );
    let m = aw.metrics().await;
    for line in [
        "authward_mfa_challenges_total{result=\"held\"} 1",
        "authward_mfa_verifications_total{result=\"wrong_code\"} 1",
        "authward_mfa_verifications_total{result=\"verified\"} 1",
        "authward_enumeration_answers_total{answer=\"unknown_user\"} 1",
    ] {
        assert!(m.contains(line), "{line}: {m}");
    }
}

/// A W3C WebDriver session on chromedriver (headless Chromium), driven over its HTTP API.
struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: Killed,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Browser {
        let found = |p: &str| std::path::Path::new(p).exists();
        assert!(
            found("/usr/bin/chromium") && found("/usr/bin/chromedriver"),
            "Debian's chromium and chromium-driver are needed: run scripts/test.sh, which installs them"
        );
        let port = crate::harness::free_port();
        let driver = Killed(
            std::process::Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let r: serde_json::Value = http
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"));
        Browser {
            http,
            base: format!("http://127.0.0.1:{port}/session/{id}"),
            _driver: driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: serde_json::Value) -> serde_json::Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            req = req.json(&body);
        }
        let r: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        assert!(r["value"].get("error").is_none(), "{path}: {r}");
        r["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", serde_json::json!({ "url": url }))
            .await;
    }

    async fn url(&self) -> String {
        let v = self
            .call(reqwest::Method::GET, "/url", serde_json::Value::Null)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    async fn source(&self) -> String {
        let v = self
            .call(reqwest::Method::GET, "/source", serde_json::Value::Null)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                serde_json::json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        let path = format!("/element/{e}/clear");
        self.call(reqwest::Method::POST, &path, serde_json::json!({}))
            .await;
        let path = format!("/element/{e}/value");
        self.call(reqwest::Method::POST, &path, serde_json::json!({ "text": text }))
            .await;
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        let path = format!("/element/{e}/click");
        self.call(reqwest::Method::POST, &path, serde_json::json!({}))
            .await;
    }

    /// Waits until the page's address contains `part`.
    async fn wait_for(&self, part: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url().await;
            if url.contains(part) {
                return url;
            }
            assert!(Instant::now() < deadline, "never reached {part}; at {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the browser; chromedriver itself is killed by its guard.
        let (http, base) = (self.http.clone(), self.base.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { http.delete(base).send().await.map(|_| ()) })
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_the_form_login_page_works_in_headless_chromium() {
    // The demo's login service: an HTML form at `/`, a redirect with a session cookie on success.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        authward::demo::login_service::LoginService::new().serve(listener, async move {
            let _ = stopped.await;
        }),
    );
    // Headless Chromium says so in its user agent: automation, a low level, and low asks for MFA.
    let aw = Authward::start_with(
        &format!(
            r#"listen: {{http: [127.0.0.1:{{PORT}}]}}
admin: {{listen: 127.0.0.1:{{ADMIN}}, token_env: AW_TOKEN}}
upstream: {{url: "http://{upstream}"}}
store: {{kind: memory}}
include: [{{REPO}}/rules/profiles/form-login.yaml]
risk: {{mode: enforce, actions: {{low: {{action: require_mfa}}}}}}
mfa: {{key_env: AW_MFA}}
"#
        ),
        &[("AW_TOKEN", "t"), ("AW_MFA", KEY)],
    );
    let secret = enroll(&aw, "alice").await;
    let b = Browser::start().await;
    b.open(&aw.url("/")).await;
    b.type_into("input[name=username]", "alice").await;
    b.type_into("input[name=password]", "correct-horse-battery").await;
    b.click("button[type=submit]").await;
    let page = b.wait_for("/.authward/mfa/?challenge=").await;
    assert!(b.source().await.contains("authenticator app"), "{page}");
    // A wrong code: the form again, with the tries left.
    let code = code_now(&secret);
    b.type_into("input[name=code]", &other_code(&code)).await;
    b.click("button[type=submit]").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !b.source().await.contains("4 more tries") {
        assert!(Instant::now() < deadline, "{}", b.source().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The right code: the login service's redirect and session cookie, released to the browser.
    b.type_into("input[name=code]", &code).await;
    b.click("button[type=submit]").await;
    b.wait_for("/welcome").await;
    assert!(
        b.source().await.contains("Welcome, alice!"),
        "{}",
        b.source().await
    );
    drop(b);
    let _ = stop.send(());
    let m = aw.metrics().await;
    assert!(
        m.contains("authward_mfa_verifications_total{result=\"verified\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("authward_mfa_verifications_total{result=\"wrong_code\"} 1"),
        "{m}"
    );
}
