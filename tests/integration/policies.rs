//! Security policies end to end: the real binary in front of a Cognito-shaped API and OAuth server, and
//! the real boto3 client against moto's Cognito server, and the PKCE checks driven by authlib.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::{Value, json};

use crate::harness::{Authward, Served, bin, client, free_port, serve};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const STRONG: &str = "Tulip-Meadow-Lantern-42";
const SECRET: &str = "s3cr3t-client-secret";
/// A previous password the backend refuses, as Cognito refuses a wrong one.
const WRONG_PREVIOUS: &str = "a-guess-Orbit-9";

/// A backend shaped like Cognito's API (POST / with `X-Amz-Target`) and its OAuth endpoints
/// (`/oauth2/authorize` redirects with a code, `/oauth2/token` hands out tokens); it records what reached it.
async fn backend() -> (Served, Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let labels = Arc::new(Mutex::new(Vec::new()));
    let (log, label_log) = (seen.clone(), labels.clone());
    let served = serve(move |parts, body| {
        if let Some(l) = parts.headers.get("x-authward-labels").and_then(|v| v.to_str().ok()) {
            label_log.lock().unwrap().push(l.to_string());
        }
        let path = parts.uri.path().to_string();
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("")
            .to_string();
        let n = {
            let mut log = log.lock().unwrap();
            log.push(if target.is_empty() { path.clone() } else { target.clone() });
            log.len()
        };
        let mut r = Response::builder();
        let body = match path.as_str() {
            "/oauth2/authorize" | "/login" => {
                let query = parts.uri.query().unwrap_or("");
                let q: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
                // Cognito's hosted UI: the authorization sends the browser to its sign-in page first.
                let location = if path == "/oauth2/authorize" && get("prompt") == "login" {
                    format!("/login?{query}")
                } else if path == "/login" && body.ends_with(b"password=wrong") {
                    return r.status(200).body(Full::new(Bytes::from("<form>try again</form>"))).unwrap();
                } else {
                    format!("{}?code=code-{n}&state={}", get("redirect_uri"), get("state"))
                };
                return r.status(302).header("location", location).body(Full::new(Bytes::new())).unwrap();
            }
            "/oauth2/token" => {
                r = r.header("content-type", "application/json");
                json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 3600})
            }
            _ => {
                r = r.header("content-type", "application/x-amz-json-1.1");
                let req: Value = serde_json::from_slice(&body).unwrap_or_default();
                if target == "ChangePassword" && req["PreviousPassword"] == WRONG_PREVIOUS {
                    let e = json!({"__type": "NotAuthorizedException", "message": "Incorrect username or password."});
                    return r.status(400).body(Full::new(Bytes::from(e.to_string()))).unwrap();
                }
                match target.as_str() {
                    "SignUp" => json!({"UserSub": format!("sub-{n}"), "UserConfirmed": false}),
                    "InitiateAuth" | "AdminInitiateAuth" => json!({"AuthenticationResult": {
                        "AccessToken": "eyJ.e30.c2ln", "ExpiresIn": 3600, "TokenType": "Bearer"}, "ChallengeParameters": {}}),
                    "AdminCreateUser" => json!({"User": {"Username": "dave"}}),
                    _ => json!({}),
                }
            }
        };
        r.status(200).body(Full::new(Bytes::from(body.to_string()))).unwrap()
    })
    .await;
    (served, seen, labels)
}

/// The policies under test, every one in `mode`, in front of `upstream`.
fn config(upstream: &str, mode: &str) -> String {
    format!(
        r#"listen: {{http: [127.0.0.1:{{PORT}}]}}
admin: {{listen: 127.0.0.1:{{ADMIN}}}}
upstream: {{url: {upstream}}}
store: {{kind: memory}}
include: [{{REPO}}/rules/profiles/cognito.yaml, {{REPO}}/rules/profiles/oauth2-token.yaml]
risk: {{mode: off, compromised_credentials: {{filter: "builtin:demo"}}}}
policies:
  - name: cognito
    profiles: ["cognito-*"]
    respond_as: cognito
    sign_up: {{mode: {mode}, access: closed}}
    admin: {{mode: {mode}, profiles: ["cognito-admin*"], ranges: [10.0.0.0/8]}}
    client_allowlist: {{mode: {mode}}}
    secret_hash: {{mode: {mode}}}
    attributes: {{mode: {mode}, rules: {{given_name: {{max_length: 64, message_safe: true}}}}}}
    password_strength: {{mode: {mode}, min_score: 3}}
    password_reuse: {{mode: {mode}, remember: 2, memory_kib: 64, iterations: 1}}
    compromised_password: {{mode: {mode}}}
    clients:
      confidential: {{secret_env: WEB_SECRET, modes: {{sign_up: off}}}}
      public: {{}}
  - name: oauth
    profiles: ["oauth2-*"]
    respond_as: oauth
    admin: {{mode: {mode}}}
    client_allowlist: {{mode: {mode}}}
    pkce: {{mode: {mode}}}
    grant_types: {{mode: {mode}}}
    scopes: {{mode: {mode}}}
    clients:
      web: {{scopes: [openid, email]}}
"#
    )
}

/// Cognito's SECRET_HASH, computed here independently of the proxy.
fn secret_hash(secret: &str, user: &str, client: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{user}{client}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// An access token whose payload names `user`, as Cognito's do (the proxy does not verify it).
fn access_token(user: &str) -> String {
    let claims = URL_SAFE_NO_PAD.encode(json!({"username": user, "token_use": "access"}).to_string());
    format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln")
}

struct Answer {
    status: u16,
    body: Value,
    location: Option<String>,
}

async fn cognito(aw: &Authward, target: &str, body: Value) -> Answer {
    let r = client()
        .post(aw.url("/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{target}"),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    answer(r).await
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let body = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default();
    Answer {
        status,
        body,
        location,
    }
}

async fn authorize(aw: &Authward, query: &str) -> Answer {
    let url = aw.url(&format!("/oauth2/authorize?response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s1{query}"));
    answer(client().get(url).send().await.unwrap()).await
}

async fn token(aw: &Authward, form: &str) -> Answer {
    let r = client()
        .post(aw.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// `authward_policy_decisions_total{decision, policy}`, 0 when absent.
fn decisions(metrics: &str, policy: &str, decision: &str) -> u64 {
    let series = format!("authward_policy_decisions_total{{decision=\"{decision}\",policy=\"{policy}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// code_challenge = BASE64URL(SHA256(code_verifier)), computed with Python's hashlib.
const CHALLENGE_A: &str = "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc";
const VERIFIER_A: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE_B: &str = "Gpc0MDVIrBN-iUsGhfmQFQ3-b3vQcrwDnPI7_giASHY";
const VERIFIER_B: &str = "hosted-ui-verifier-0123456789-abcdefghijklmnopqrstuv";

/// One request that breaks one policy, and how an enforcing proxy answers it.
struct Case {
    policy: &'static str,
    /// A Cognito target and body, or an OAuth request (`authorize?...` or `token` with a form).
    request: Req,
    status: u16,
    /// `__type` for Cognito answers, `error` for OAuth ones.
    error: &'static str,
}

enum Req {
    Cognito(&'static str, Value),
    Authorize(String),
    Token(&'static str),
}

fn cases() -> Vec<Case> {
    let c = |policy, target, body, error| Case {
        policy,
        request: Req::Cognito(target, body),
        status: 400,
        error,
    };
    let o = |policy, request, error| Case {
        policy,
        request,
        status: 400,
        error,
    };
    vec![
        c(
            "sign_up",
            "SignUp",
            json!({"ClientId": "public", "Username": "mallory", "Password": STRONG}),
            "NotAuthorizedException",
        ),
        c(
            "admin",
            "AdminCreateUser",
            json!({"UserPoolId": "eu-west-1_x", "Username": "dave"}),
            "AccessDeniedException",
        ),
        c(
            "client_allowlist",
            "InitiateAuth",
            json!({"ClientId": "stranger", "AuthFlow": "USER_PASSWORD_AUTH",
                "AuthParameters": {"USERNAME": "alice", "PASSWORD": STRONG}}),
            "ResourceNotFoundException",
        ),
        c(
            "secret_hash",
            "InitiateAuth",
            json!({"ClientId": "confidential", "AuthFlow": "USER_PASSWORD_AUTH", "AuthParameters":
                {"USERNAME": "alice", "PASSWORD": STRONG, "SECRET_HASH": secret_hash("wrong", "alice", "confidential")}}),
            "NotAuthorizedException",
        ),
        c(
            "attributes",
            "UpdateUserAttributes",
            json!({"AccessToken": access_token("alice"),
                "UserAttributes": [{"Name": "given_name", "Value": "win a prize at https://evil.test"}]}),
            "InvalidParameterException",
        ),
        c(
            "compromised_password",
            "ConfirmForgotPassword",
            json!({"ClientId": "public", "Username": "bob", "ConfirmationCode": "123456", "Password": "password123"}),
            "InvalidPasswordException",
        ),
        c(
            "password_strength",
            "ConfirmForgotPassword",
            json!({"ClientId": "public", "Username": "bob", "ConfirmationCode": "123456", "Password": "zzzzzzzzzz1"}),
            "InvalidPasswordException",
        ),
        o("pkce", Req::Authorize(String::new()), "invalid_request"),
        o(
            "pkce",
            Req::Authorize(format!(
                "&code_challenge={CHALLENGE_A}&code_challenge_method=plain"
            )),
            "invalid_request",
        ),
        o(
            "grant_types",
            Req::Token("grant_type=password&username=alice&password=x&client_id=web"),
            "unauthorized_client",
        ),
        o(
            "scopes",
            Req::Authorize(format!(
                "&scope=openid%20admin&code_challenge={CHALLENGE_A}&code_challenge_method=S256"
            )),
            "invalid_scope",
        ),
        o(
            "admin",
            Req::Token("grant_type=client_credentials&client_id=web"),
            "unauthorized_client",
        ),
        Case {
            policy: "client_allowlist",
            request: Req::Token("grant_type=refresh_token&refresh_token=r&client_id=stranger"),
            status: 401,
            error: "invalid_client",
        },
    ]
}

async fn send(aw: &Authward, req: &Req) -> Answer {
    match req {
        Req::Cognito(target, body) => cognito(aw, target, body.clone()).await,
        Req::Authorize(q) => authorize(aw, q).await,
        Req::Token(form) => token(aw, form).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_refuses_in_enforce_mode_and_only_counts_in_audit_mode() {
    let (up, seen, labels) = backend().await;
    for mode in ["enforce", "audit"] {
        let aw = Authward::start_with(&config(&up.url(), mode), &[("WEB_SECRET", SECRET)]);
        for case in cases() {
            let before = seen.lock().unwrap().len();
            let a = send(&aw, &case.request).await;
            let reached = seen.lock().unwrap().len() > before;
            let what = format!("{mode} {}: {} {}", case.policy, a.status, a.body);
            if mode == "enforce" {
                assert_eq!(a.status, case.status, "{what}");
                let error = a
                    .body
                    .get("__type")
                    .or(a.body.get("error"))
                    .and_then(Value::as_str);
                assert_eq!(error, Some(case.error), "{what}");
                assert!(!reached, "{what}: the upstream saw a refused request");
            } else {
                assert!(a.status == 200 || a.status == 302, "{what}");
                assert!(reached, "{what}: audit mode must forward");
            }
        }
        let m = aw.metrics().await;
        let decision = if mode == "enforce" {
            "refuse"
        } else {
            "would_refuse"
        };
        for case in cases() {
            assert!(
                decisions(&m, case.policy, decision) >= 1,
                "{mode}: no {decision} for {}\n{m}",
                case.policy
            );
        }
        let other = if mode == "enforce" {
            "would_refuse"
        } else {
            "refuse"
        };
        assert!(!m.contains(&format!("decision=\"{other}\"")), "{mode}: {m}");
        // Audit records what enforce would have done, on the request the upstream saw.
        if mode == "audit" {
            let logs = aw.logs();
            assert!(logs.contains("policy would refuse the request"), "{logs}");
            let labels = labels.lock().unwrap().join(" ");
            for case in cases() {
                let label = format!("authward:policy:audit:{}", case.policy);
                assert!(
                    labels.contains(&label),
                    "the upstream was not told {label}: {labels}"
                );
            }
            assert!(
                !logs.contains("password123") && !logs.contains(STRONG),
                "a password reached the log"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_keep_the_policies_pass_untouched() {
    let (up, seen, _) = backend().await;
    let aw = Authward::start_with(&config(&up.url(), "enforce"), &[("WEB_SECRET", SECRET)]);
    let good_hash = secret_hash(SECRET, "alice", "confidential");
    // A right SECRET_HASH, where Cognito puts it for each target.
    let sign_in = cognito(
        &aw,
        "InitiateAuth",
        json!({"ClientId": "confidential", "AuthFlow": "USER_PASSWORD_AUTH",
            "AuthParameters": {"USERNAME": "alice", "PASSWORD": STRONG, "SECRET_HASH": good_hash}}),
    )
    .await;
    assert_eq!(sign_in.status, 200, "{}", sign_in.body);
    assert!(sign_in.body["AuthenticationResult"].is_object());
    // Sign-up is open for the confidential client only, and needs its SECRET_HASH.
    let sign_up = json!({"ClientId": "confidential", "Username": "carol", "Password": STRONG,
        "SecretHash": secret_hash(SECRET, "carol", "confidential"),
        "UserAttributes": [{"Name": "given_name", "Value": "Carol"}]});
    assert_eq!(cognito(&aw, "SignUp", sign_up).await.status, 200);
    let missing = cognito(
        &aw,
        "SignUp",
        json!({"ClientId": "confidential", "Username": "carol", "Password": STRONG}),
    )
    .await;
    assert_eq!(missing.body["__type"], "NotAuthorizedException");
    assert_eq!(
        missing.body["message"],
        "Client confidential is configured with secret but SECRET_HASH was not received"
    );
    // A refusal names the attribute and never the value.
    let bad = cognito(
        &aw,
        "UpdateUserAttributes",
        json!({"AccessToken": access_token("alice"),
            "UserAttributes": [{"Name": "given_name", "Value": "<img src=x onerror=alert(1)>"}]}),
    )
    .await;
    assert_eq!(
        bad.body["message"],
        "Attributes did not conform to the schema: given_name: must not contain markup"
    );
    assert_eq!(seen.lock().unwrap().as_slice(), ["InitiateAuth", "SignUp"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_challenges_are_fresh_and_codes_need_their_verifier() {
    let (up, _, _) = backend().await;
    let aw = Authward::start_with(&config(&up.url(), "enforce"), &[("WEB_SECRET", SECRET)]);
    let pkce = format!("&scope=openid&code_challenge={CHALLENGE_A}&code_challenge_method=S256");
    let first = authorize(&aw, &pkce).await;
    assert_eq!(first.status, 302);
    let code = first
        .location
        .unwrap()
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let again = authorize(&aw, &pkce).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.body["error"], "invalid_request");
    assert!(
        again.body["error_description"]
            .as_str()
            .unwrap()
            .contains("used before")
    );

    let exchange = |extra: &str| format!("grant_type=authorization_code&client_id=web&code={code}{extra}");
    let without = token(&aw, &exchange("")).await;
    assert_eq!(
        (without.status, without.body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let wrong = token(
        &aw,
        &exchange("&code_verifier=not-the-verifier-at-all-but-long-enough-00000"),
    )
    .await;
    assert_eq!(wrong.body["error"], "invalid_grant");
    let right = token(&aw, &exchange(&format!("&code_verifier={VERIFIER_A}"))).await;
    assert_eq!(right.status, 200, "{}", right.body);
    // A code the proxy never saw issued (PKCE unknown) is the authorization server's to judge.
    let unknown = token(&aw, "grant_type=authorization_code&client_id=web&code=elsewhere").await;
    assert_eq!(unknown.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_ui_steps_share_a_challenge_until_it_produces_a_code() {
    let (up, _, _) = backend().await;
    let aw = Authward::start_with(&config(&up.url(), "enforce"), &[("WEB_SECRET", SECRET)]);
    let pkce = format!("&prompt=login&code_challenge={CHALLENGE_B}&code_challenge_method=S256");
    let start = authorize(&aw, &pkce).await;
    assert_eq!(start.status, 302);
    let login = start.location.unwrap();
    assert!(
        login.starts_with("/login?") && !login.contains("code="),
        "{login}"
    );
    let sign_in = |password: &'static str| {
        client()
            .post(aw.url(&login))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username=alice&password={password}"))
            .send()
    };
    // A wrong password and a retry: the same challenge, one authorization.
    assert_eq!(sign_in("wrong").await.unwrap().status(), 200);
    let done = answer(sign_in("right").await.unwrap()).await;
    assert_eq!(done.status, 302);
    let code = done
        .location
        .unwrap()
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let exchange = |extra: &str| format!("grant_type=authorization_code&client_id=web&code={code}{extra}");
    assert_eq!(token(&aw, &exchange("")).await.body["error"], "invalid_request");
    assert_eq!(
        token(&aw, &exchange(&format!("&code_verifier={VERIFIER_B}")))
            .await
            .status,
        200
    );
    // Spent: a new authorization with it is refused.
    assert_eq!(authorize(&aw, &pkce).await.body["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_of_recent_passwords_is_refused_to_the_account_holder_only() {
    let (up, seen, _) = backend().await;
    let aw = Authward::start_with(&config(&up.url(), "enforce"), &[("WEB_SECRET", SECRET)]);
    let (p1, p2, p3) = (
        "Staple-Orbit-Lantern-1",
        "Staple-Orbit-Lantern-2",
        "Staple-Orbit-Lantern-3",
    );
    // The reset's new password is remembered once the upstream accepts it.
    let reset = json!({"ClientId": "public", "Username": "alice", "ConfirmationCode": "1", "Password": p1});
    assert_eq!(cognito(&aw, "ConfirmForgotPassword", reset).await.status, 200);
    let change = |previous: &str, proposed: &str| json!({"AccessToken": access_token("alice"), "PreviousPassword": previous, "ProposedPassword": proposed});
    let same = cognito(&aw, "ChangePassword", change(p1, p1)).await;
    assert_eq!(same.body["__type"], "PasswordHistoryPolicyViolationException");
    // Without the current password the caller proves nothing and learns nothing: the upstream decides.
    let stranger = cognito(&aw, "ChangePassword", change(WRONG_PREVIOUS, p1)).await;
    assert_eq!(
        stranger.body["message"], "Incorrect username or password.",
        "the upstream's answer"
    );
    assert_eq!(cognito(&aw, "ChangePassword", change(p1, p2)).await.status, 200);
    assert_eq!(cognito(&aw, "ChangePassword", change(p2, p3)).await.status, 200);
    // remember: 2 keeps p3 and p2; p1 is free again.
    let reused = cognito(&aw, "ChangePassword", change(p3, p2)).await;
    assert_eq!(reused.body["__type"], "PasswordHistoryPolicyViolationException");
    assert_eq!(cognito(&aw, "ChangePassword", change(p3, p1)).await.status, 200);
    // A change the upstream refuses is not remembered: p1 stays the newest, p3 the one before.
    let refused = cognito(
        &aw,
        "ChangePassword",
        change(WRONG_PREVIOUS, "Staple-Orbit-Lantern-4"),
    )
    .await;
    assert_eq!(refused.status, 400);
    let back = cognito(&aw, "ChangePassword", change(p1, p3)).await;
    assert_eq!(back.body["__type"], "PasswordHistoryPolicyViolationException");
    assert_eq!(seen.lock().unwrap().len(), 6);
    let m = aw.metrics().await;
    assert_eq!(decisions(&m, "password_reuse", "refuse"), 3, "{m}");
}

#[test]
fn policy_mistakes_point_at_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authward.yaml");
    let yaml = "upstream: {url: http://127.0.0.1:1}\npolicies:\n  - name: g\n    profiles: [a]\n    password_reuse: {remember: 30}\n";
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(bin()).arg("check").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("authward.yaml:3:5: policies.g.password_reuse.remember: 0 to 24"),
        "{text}"
    );
}

// === The real clients: boto3 against moto's Cognito, authlib against a test authorization server ===

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a script under `tests/python/` and returns its last stdout line as JSON.
fn python(script: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(format!("{REPO}/tests/python/{script}"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .output()
        .expect("python3 (scripts/test.sh installs what the tests need)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed (scripts/test.sh installs moto, boto3 and authlib):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// moto's server on a free port, ready to answer.
fn moto() -> (Process, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m moto.server (scripts/test.sh installs moto[server])");
    let p = Process(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (p, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_through_authward_to_moto_secret_hash_and_closed_sign_up() {
    let (_moto, port) = moto();
    let moto_url = format!("http://127.0.0.1:{port}");
    let ids = python("cognito_moto.py", &["setup", &moto_url]);
    let (confidential, public) = (
        ids["confidential"].as_str().unwrap(),
        ids["public"].as_str().unwrap(),
    );
    // The ready pack, with this pool's clients added in the main file.
    let yaml = format!(
        r#"listen: {{http: [127.0.0.1:{{PORT}}]}}
admin: {{listen: 127.0.0.1:{{ADMIN}}}}
upstream: {{url: {moto_url}}}
store: {{kind: memory}}
include:
  - {{REPO}}/rules/profiles/cognito.yaml
  - {{REPO}}/rules/profiles/oauth2-token.yaml
  - {{REPO}}/rules/packs/cognito-best-practices.yaml
risk: {{mode: off, compromised_credentials: {{filter: "builtin:demo"}}}}
policies:
  - name: cognito
    clients:
      {confidential}: {{secret_env: COGNITO_SECRET, modes: {{sign_up: off}}}}
      {public}: {{}}
  - name: cognito-oauth
    clients: {{web: {{}}}}
"#
    );
    let aw = Authward::start_with(&yaml, &[("COGNITO_SECRET", ids["secret"].as_str().unwrap())]);
    let out = python(
        "cognito_moto.py",
        &["run", &aw.url(""), &moto_url, &ids.to_string()],
    );
    let code = |case: &str| out[case]["code"].as_str().map(str::to_owned);
    let message = |case: &str| out[case]["message"].as_str().unwrap_or("").to_owned();

    assert_eq!(out["sign_up_right_hash"]["ok"], true, "{out}");
    assert_eq!(
        code("sign_up_wrong_hash").as_deref(),
        Some("NotAuthorizedException")
    );
    assert_eq!(
        message("sign_up_wrong_hash"),
        format!("Unable to verify secret hash for client {confidential}")
    );
    assert_eq!(code("sign_up_no_hash").as_deref(), Some("NotAuthorizedException"));
    assert!(message("sign_up_no_hash").contains("SECRET_HASH was not received"));
    assert_eq!(code("sign_up_closed").as_deref(), Some("NotAuthorizedException"));
    assert_eq!(
        message("sign_up_closed"),
        "SignUp is not permitted for this user pool"
    );
    // Only the sign-up with the right SECRET_HASH reached moto.
    assert_eq!(out["moto_users"], json!(["carol"]), "{out}");
    assert_eq!(out["sign_in_right_hash"]["ok"], true, "{out}");
    assert_eq!(out["sign_in_right_hash"]["authenticated"], true, "{out}");
    // moto's own message for a bad hash is the hash itself; this one is authward's, as Cognito's.
    assert_eq!(
        message("sign_in_wrong_hash"),
        format!("Unable to verify secret hash for client {confidential}")
    );
    assert_eq!(
        code("unknown_client").as_deref(),
        Some("ResourceNotFoundException")
    );
    let m = aw.metrics().await;
    assert_eq!(decisions(&m, "secret_hash", "refuse"), 3, "{m}");
    assert_eq!(decisions(&m, "sign_up", "refuse"), 1, "{m}");
    assert_eq!(decisions(&m, "client_allowlist", "refuse"), 1, "{m}");
    let logs = aw.logs();
    assert!(
        !logs.contains(ids["secret"].as_str().unwrap()),
        "the client secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_pkce_through_authward() {
    let (up, seen, _) = backend().await;
    let aw = Authward::start_with(&config(&up.url(), "enforce"), &[("WEB_SECRET", SECRET)]);
    let out = python("pkce_authlib.py", &[&aw.url("")]);
    assert_eq!(out["pkce_flow"]["token"], true, "{out}");
    for (case, error) in [
        ("replayed_challenge", "invalid_request"),
        ("no_pkce", "invalid_request"),
        ("plain_method", "invalid_request"),
        ("missing_verifier", "invalid_request"),
        ("wrong_verifier", "invalid_grant"),
        ("scope_not_allowed", "invalid_scope"),
        ("password_grant", "unauthorized_client"),
        ("client_credentials", "unauthorized_client"),
    ] {
        assert_eq!(out[case]["error"], error, "{case}: {out}");
    }
    let seen = seen.lock().unwrap();
    // The token endpoint saw only the exchange with the right verifier.
    assert_eq!(
        seen.iter().filter(|s| *s == "/oauth2/token").count(),
        1,
        "{seen:?}"
    );
}
