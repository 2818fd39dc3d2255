//! The shipped profiles end to end: the real binary in front of the demo's real login service.

use authward::demo::login_service::LoginService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Authward, client, gzip};

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

/// The web-ACL rule that turns the shipped `common` group on.
const COMMON: &str = "    - {name: common, priority: 10, group: common}\n";

/// authward before an echo upstream with these files of the repository's `rules/` and web-ACL `rules`.
fn before_echo(upstream: &str, include: &[&str], rules: &str) -> Authward {
    let include: String = include
        .iter()
        .map(|f| format!("  - {{REPO}}/rules/{f}\n"))
        .collect();
    let acl = if rules.is_empty() {
        String::new()
    } else {
        format!("web_acl:\n  rules:\n{rules}")
    };
    Authward::start(&format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: \
         {upstream}\ninclude:\n{include}{acl}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_sign_in_bodies_are_inspected_and_sent_on_decoded() {
    let up = crate::harness::Upstream::start("a").await;
    let aw = before_echo(&up.url(), &["profiles/json-login.yaml", "common.yaml"], COMMON);
    let c = client();
    let send = |body: Vec<u8>, encoding: &'static str| {
        c.post(aw.url("/api/login"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let plain = br#"{"username":"alice@example.com","password":"correct-horse"}"#;

    // Read decoded, sent on decoded: the upstream gets the fields authward inspected.
    let r = send(gzip(plain), "gzip").await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["body"], std::str::from_utf8(plain).unwrap());
    assert!(
        crate::harness::echoed_headers(&echo, "content-encoding").is_empty(),
        "{echo}"
    );
    assert_eq!(
        crate::harness::echoed_headers(&echo, "content-length"),
        [plain.len().to_string()]
    );

    // An injection in a compressed body is seen like one in a plain body.
    let sqli = br#"{"username":"admin' OR '1'='1' --","password":"x"}"#;
    assert_eq!(send(gzip(sqli), "gzip").await.unwrap().status(), 403);
    assert_eq!(send(sqli.to_vec(), "identity").await.unwrap().status(), 403);

    // What cannot be read is not let through unread: an encoding authward does not decode (415), a body
    // that does not decode (400), one that inflates past the profile's body limit (413).
    assert_eq!(send(plain.to_vec(), "br").await.unwrap().status(), 415);
    assert_eq!(send(plain.to_vec(), "gzip").await.unwrap().status(), 400);
    let bomb = gzip(&vec![b' '; 4 << 20]);
    assert!(bomb.len() < 16 * 1024);
    assert_eq!(send(bomb, "gzip").await.unwrap().status(), 413);
    let metrics = aw.metrics().await;
    assert!(
        metrics.contains("authward_rejected_requests_total{reason=\"encoded_body\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_sign_in_forms_are_read_like_urlencoded_ones() {
    let up = crate::harness::Upstream::start("a").await;
    let aw = before_echo(
        &up.url(),
        &["profiles/json-login.yaml", "common.yaml"],
        &format!(
            "{COMMON}    - name: no-mallory\n      priority: 20\n      action: block\n      statement:\n        \
             byte_match: {{field: username, position: exactly, values: [mallory]}}\n"
        ),
    );
    // As a browser sends `new FormData(form)`.
    let send = |username: &str| {
        let body = format!(
            "--f0rm\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n{username}\r\n--f0rm\r\n\
             Content-Disposition: form-data; name=\"password\"\r\n\r\ncorrect-horse\r\n--f0rm--\r\n"
        );
        client()
            .post(aw.url("/api/login"))
            .header("content-type", "multipart/form-data; boundary=f0rm")
            .body(body)
            .send()
    };
    // The profile reads the username from the multipart form: a rule on it applies.
    assert_eq!(send("alice").await.unwrap().status(), 200);
    assert_eq!(send("mallory").await.unwrap().status(), 403);
    // The web ACL's form fields include multipart text parts: an injection there is blocked.
    assert_eq!(send("admin' OR '1'='1' --").await.unwrap().status(), 403);
    let metrics = aw.metrics().await;
    assert!(
        metrics.contains("authward_requests_total{operation=\"sign_in\",status=\"403\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_path_spelled_as_backends_route_it_is_still_a_login() {
    let up = crate::harness::Upstream::start("a").await;
    let aw = before_echo(&up.url(), &["profiles/json-login.yaml", "common.yaml"], COMMON);
    let sqli = serde_json::json!({"username": "admin' OR '1'='1' --", "password": "x"});
    // Express and ASP.NET route paths case-insensitively; Tomcat and Jetty drop `;parameters`; Rails
    // takes a format suffix; WSGI (Flask, Django) decodes an escaped slash; IIS reads a backslash as one.
    for path in [
        "/API/Login",
        "/api/login;jsessionid=0A1B",
        "/Api/Login;x=1/",
        "/api/login.json",
        "/api%2Flogin",
        "/api%2flogin",
        "/api%5Clogin",
    ] {
        let r = client().post(aw.url(path)).json(&sqli).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    // The upstream still gets the path as the client sent it.
    let r = client()
        .post(aw.url("/API/Login;jsessionid=0A1B"))
        .json(&serde_json::json!({"username": "alice", "password": "x"}))
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/API/Login;jsessionid=0A1B");
    let metrics = aw.metrics().await;
    assert!(
        metrics.contains("authward_requests_total{operation=\"sign_in\",status=\"403\"} 7"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_that_repeats_its_username_with_another_value_is_refused() {
    let up = crate::harness::Upstream::start("a").await;
    let aw = before_echo(&up.url(), &["profiles/form-login.yaml"], "");
    let send = |body: &'static str| {
        client()
            .post(aw.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // authward would count the first name, PHP or Django would sign in the last: refused, never forwarded.
    let r = send("username=decoy&password=guess&username=victim")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Repeating the same value is not ambiguous.
    let r = send("username=alice&password=pw&username=alice").await.unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["body"],
        "username=alice&password=pw&username=alice"
    );
    let metrics = aw.metrics().await;
    assert!(
        metrics.contains("authward_rejected_requests_total{reason=\"ambiguous_fields\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_that_backends_read_differently_are_refused_or_read_as_backends_read_them() {
    let up = crate::harness::Upstream::start("a").await;
    let aw = before_echo(
        &up.url(),
        &[
            "profiles/json-login.yaml",
            "profiles/form-login.yaml",
            "common.yaml",
        ],
        &format!(
            "{COMMON}    - name: no-mallory\n      priority: 20\n      action: block\n      statement:\n        \
             byte_match: {{field: username, position: exactly, values: [mallory]}}\n"
        ),
    );
    let send = |method: &str, path: &str, content_type: &str, body: &str| {
        client()
            .request(method.parse().unwrap(), aw.url(path))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
    };
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    // (method, path, content type, body, status): 400 is refused before any rule and never forwarded,
    // 403 is the rule on the username that authward read as the backend would, 200 forwarded.
    let cases = [
        // JSON that Python's json, JSON.parse or Go read and serde_json does not.
        (
            "POST",
            "/api/login",
            json,
            r#"{"username": "mallory", "password": "x", "n": NaN}"#,
            400,
        ),
        (
            "POST",
            "/api/login",
            json,
            r#"{"username": "mallory", "password": "x", "n": 1e400}"#,
            400,
        ),
        (
            "POST",
            "/api/login",
            "text/plain",
            r#"{"username": "mallory", "password": "x"} {}"#,
            400,
        ),
        // JSON inside a form: a form parser reads `mallory`, a JSON one `newguy`.
        (
            "POST",
            "/api/login",
            form,
            r#"{"username":"newguy","password":"x","z":"&username=mallory&"}"#,
            400,
        ),
        // The query and the body disagree (Spring reads the query first, passport-local the body).
        (
            "POST",
            "/api/login?username=mallory",
            json,
            r#"{"username": "alice", "password": "x"}"#,
            400,
        ),
        // Go and ASP.NET bind names ignoring case.
        (
            "POST",
            "/api/login",
            json,
            r#"{"username": "alice", "USERNAME": "mallory", "password": "x"}"#,
            400,
        ),
        (
            "POST",
            "/api/login",
            json,
            r#"{"USERNAME": "mallory", "password": "x"}"#,
            403,
        ),
        // Credentials in the query string, Werkzeug's upper-cased method, Tomcat's `..;`.
        ("POST", "/login?username=mallory&password=x", form, "", 403),
        (
            "post",
            "/api/login",
            json,
            r#"{"username": "mallory", "password": "x"}"#,
            403,
        ),
        (
            "POST",
            "/api/login/..;/login",
            json,
            r#"{"username": "alice", "password": "x"}"#,
            403,
        ),
        // Multipart that Werkzeug reads and multer does not: bare LF line ends, two boundaries.
        (
            "POST",
            "/login",
            "multipart/form-data; boundary=b",
            "--b\nContent-Disposition: form-data; name=\"username\"\n\nmallory\n--b--\n",
            400,
        ),
        (
            "POST",
            "/login",
            "multipart/form-data; boundary=a; boundary=b",
            "--b\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nmallory\r\n--b--\r\n",
            400,
        ),
        // A list where text belongs (Express hands `["+881..."]` to Twilio), a query that Rack splits at `;`.
        (
            "POST",
            "/api/sms/send",
            json,
            r#"{"phone": ["+881612345678"]}"#,
            400,
        ),
        ("POST", "/api/sms/send?x=1;phone=%2B881612345678", json, "{}", 400),
        // What backends agree on passes.
        (
            "POST",
            "/api/login?username=alice",
            json,
            r#"{"username": "alice", "password": "x"}"#,
            200,
        ),
        ("POST", "/login", form, "username=al%zzice&password=%FF", 200),
    ];
    for (method, path, content_type, body, status) in cases {
        let r = send(method, path, content_type, body).await.unwrap();
        assert_eq!(r.status(), status, "{method} {path} {body}");
        if status == 200 {
            let echo: serde_json::Value = r.json().await.unwrap();
            assert_eq!(echo["body"], body, "forwarded as sent");
        }
    }
    let metrics = aw.metrics().await;
    for (reason, n) in [("unreadable_body", 5), ("ambiguous_fields", 5)] {
        assert!(
            metrics.contains(&format!(
                "authward_rejected_requests_total{{reason=\"{reason}\"}} {n}"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_path_with_tomcat_parameters_and_dot_segments_is_still_a_login() {
    let up = crate::harness::Upstream::start("a").await;
    // No path-traversal rule here: only the profile can tell these are the login.
    let aw = before_echo(
        &up.url(),
        &["profiles/json-login.yaml"],
        "    - name: no-mallory\n      priority: 20\n      action: block\n      statement:\n        \
         byte_match: {field: username, position: exactly, values: [mallory]}\n",
    );
    let body = r#"{"username": "mallory", "password": "x"}"#;
    // Tomcat drops `;parameters` from each segment, then resolves dot segments: all of these are /api/login.
    // Sent raw: an HTTP client library would resolve the dot segments itself.
    for path in [
        "/x/;y/../api/login",
        "/api/x/..;/login",
        "/api/login/..;/login",
        "/api/.;a/login",
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
            .await
            .unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
    }
}
