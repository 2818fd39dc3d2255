//! Hostile input through every stage at once: the real binary with the shipped profiles, rule sets and
//! policy pack, risk, the SMS guard and MFA on, fed malformed bodies, fields of the wrong type, broken
//! encodings, forged cookies and addresses. Every request must get an answer (a panic in a request task
//! drops the connection without one), none a 5xx, and the process must stay up without a panic logged.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Authward, Upstream, client};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn config(upstream: &str) -> String {
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
include:
  - {{REPO}}/rules/profiles/json-login.yaml
  - {{REPO}}/rules/profiles/form-login.yaml
  - {{REPO}}/rules/profiles/cognito.yaml
  - {{REPO}}/rules/common.yaml
  - {{REPO}}/rules/login-protection.yaml
  - {{REPO}}/rules/packs/cognito-best-practices.yaml
web_acl:
  rules:
    - {{name: common, priority: 10, group: common}}
    - {{name: login, priority: 20, group: login-protection}}
risk: {{mode: enforce, compromised_credentials: {{filter: 'builtin:demo'}}}}
sms: {{mode: enforce, blocked_prefixes: {{lists: [{{REPO}}/rules/sms/premium-prefixes.txt]}}}}
mfa: {{key_env: AW_MFA}}
policies:
  - name: cognito
    clients:
      c: {{secret_env: AW_SECRET}}
      public: {{}}
  - name: cognito-oauth
    clients: {{web: {{}}}}
"#
    )
}

/// Sends one raw request on its own connection and returns the status of the answer, or `None` when
/// the connection ended without one.
async fn status_of(port: u16, raw: &[u8]) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(raw).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let head = std::str::from_utf8(buf.get(..12)?).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A request with `body`, its length declared; extra header lines in `headers` (each ending in CRLF).
fn request(method: &str, path: &[u8], headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: login.test\r\nConnection: close\r\n");
    r.extend_from_slice(headers);
    r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

const JSON: &[u8] = b"Content-Type: application/json\r\n";
const FORM: &[u8] = b"Content-Type: application/x-www-form-urlencoded\r\n";

fn cognito(target: &str) -> Vec<u8> {
    format!("Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: AWSCognitoIdentityProviderService.{target}\r\n")
        .into_bytes()
}

fn hostile_requests() -> Vec<(String, Vec<u8>)> {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let long = "A".repeat(60_000);
    let json_bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"\xEF\xBB\xBF".to_vec(),
        b"\xEF\xBB\xBF{\"username\":\"bom\",\"password\":\"p\"}".to_vec(),
        b"null".to_vec(),
        b"[1,2,3]".to_vec(),
        deep.clone().into_bytes(),
        br#"{"username":12,"password":true}"#.to_vec(),
        br#"{"username":{"a":[1,{"b":null}]},"password":["x"]}"#.to_vec(),
        br#"{"username":"\ud800","password":"\udfff\u0000"}"#.to_vec(),
        b"{\"username\":\"\xff\xfe\xfd\",\"password\":\"\xc3\x28\"}".to_vec(),
        format!(r#"{{"username":"{long}","password":"{long}"}}"#).into_bytes(),
        br#"{"username":"a","username":"b","password":"c","password":"d"}"#.to_vec(),
        br#"{"username":"x' OR 1=1 --","password":"<script>alert(1)</script>"}"#.to_vec(),
        br#"{"username":"","password":"","client_id":7,"phone":"+"}"#.to_vec(),
        br#"{"username":"1e999","password":-0.0e-999999}"#.to_vec(),
    ];
    let phones = [
        "+",
        "+0",
        "+999999999999999999999999999999",
        "+٣٣٣٣٣٣٣٣",
        "+44 (0) 7700 900123 ext 5",
        "+1-800-FLOWERS",
        "+881\u{202e}1234567",
        "++++++++",
        "+1\u{0000}2345678901",
        "+33 1 23 45 67 89 00 11 22 33",
    ];
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, body) in json_bodies.iter().enumerate() {
        for path in ["/api/login", "/api/signup", "/api/sms/send", "/api/sms/verify"] {
            out.push((
                format!("json body {i} to {path}"),
                request("POST", path.as_bytes(), JSON, body),
            ));
        }
        for target in [
            "InitiateAuth",
            "RespondToAuthChallenge",
            "SignUp",
            "ForgotPassword",
            "ChangePassword",
        ] {
            out.push((
                format!("json body {i} to cognito {target}"),
                request("POST", b"/", &cognito(target), body),
            ));
        }
    }
    for phone in phones {
        let body =
            serde_json::json!({"phone": phone, "phone_number": phone, "username": "u", "password": "p"});
        out.push((
            format!("phone {phone:?}"),
            request("POST", b"/api/sms/send", JSON, body.to_string().as_bytes()),
        ));
        out.push((
            format!("sign-up phone {phone:?}"),
            request("POST", b"/api/signup", JSON, body.to_string().as_bytes()),
        ));
        let cognito_sign_up = serde_json::json!({
            "ClientId": "c", "Username": "u", "Password": "p",
            "UserAttributes": [{"Name": "phone_number", "Value": phone}, {"Name": "email", "Value": phone}]
        });
        out.push((
            format!("cognito sign-up phone {phone:?}"),
            request(
                "POST",
                b"/",
                &cognito("SignUp"),
                cognito_sign_up.to_string().as_bytes(),
            ),
        ));
    }
    for form in [
        &b"username=%ZZ&password=%"[..],
        b"username=%FF%FE&password=%C3%28",
        b"=&=&&&==",
        b"username&password",
        b"username=a&username=b&password=c",
        b"username=%00%00&password=%2",
    ] {
        out.push((
            format!("form {:?}", String::from_utf8_lossy(form)),
            request("POST", b"/login", FORM, form),
        ));
        out.push((
            format!("form as json {:?}", String::from_utf8_lossy(form)),
            request("POST", b"/api/login", FORM, form),
        ));
    }
    let sign_in = br#"{"username":"alice@example.com","password":"correct horse"}"#;
    for headers in [
        &b"X-Forwarded-For: 1.2.3.4.5, ::ffff:zz, [::1]:80, 999.1.1.1\r\n"[..],
        b"X-Forwarded-For: ,,,,,\r\n",
        b"X-Forwarded-For: 2001:db8::1%eth0\r\n",
        b"Cookie: aw_device=AAAA.BBBB; aw_device=; =; ;;;\r\n",
        b"Cookie: aw_device=\xff\xfe.\x80\r\n",
        b"User-Agent: \xff\xfe\x80 obs-text\r\nAccept-Language: \xe9\xe9\r\n",
        b"Authorization: Basic !!!!\r\n",
        b"Content-Type: application/json; charset=\"\r\n",
        b"Content-Type: \xff/\xfe\r\n",
    ] {
        let mut h = JSON.to_vec();
        h.extend_from_slice(headers);
        out.push((
            format!("headers {:?}", String::from_utf8_lossy(headers)),
            request("POST", b"/api/login", &h, sign_in),
        ));
    }
    for path in [
        &b"/api/%6Cogin"[..],
        b"//api/./login/../login",
        b"/api/login?username=%ZZ&x=%FF",
        b"/%",
        b"/%%%%",
        b"/.authward/mfa/",
        b"/.authward/mfa/verify",
        b"/.authward/feedback/%ZZ",
        b"/.authward/feedback/not.a.token",
        b"/.authward/feedback/AAAA.BBBB.CCCC",
    ] {
        for method in ["GET", "POST"] {
            out.push((
                format!("{method} {}", String::from_utf8_lossy(path)),
                request(
                    method,
                    path,
                    JSON,
                    br#"{"challenge_id":"x","code":"12345678901234567890"}"#,
                ),
            ));
        }
    }
    let mfa_answer = serde_json::json!({
        "ChallengeName": "SOFTWARE_TOKEN_MFA", "ClientId": "c", "Session": "\u{0}not-a-session",
        "ChallengeResponses": {"USERNAME": 5, "SOFTWARE_TOKEN_MFA_CODE": "abc"}
    });
    // This session's parsers: compressed bodies, multipart forms, folded paths, upgrades.
    let gzipped = crate::harness::gzip(br#"{"username":"gz@example.com","password":"p"}"#);
    let encoded: Vec<(&str, Vec<u8>)> = vec![
        ("gzip", b"not gzip".to_vec()),
        ("gzip", gzipped[..gzipped.len() / 2].to_vec()),
        ("gzip", Vec::new()),
        ("gzip", [gzipped.clone(), b"trailing junk".to_vec()].concat()),
        ("deflate", b"\x78\x9c\xff\xff\xff".to_vec()),
        ("deflate", b"\x00\x01".to_vec()),
        ("gzip, gzip", gzipped.clone()),
        ("br", gzipped.clone()),
        ("\x7f\x00", gzipped.clone()),
    ];
    for (i, (encoding, body)) in encoded.into_iter().enumerate() {
        let headers = [JSON, format!("Content-Encoding: {encoding}\r\n").as_bytes()].concat();
        out.push((
            format!("encoded body {i} ({encoding})"),
            request("POST", b"/api/login", &headers, &body),
        ));
    }
    let part = |name: &str, value: &str| {
        format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    let multipart: Vec<(&str, Vec<u8>)> = vec![
        ("multipart/form-data", part("username", "x")),
        ("multipart/form-data; boundary=b", part("username", "x")),
        (
            "multipart/form-data; boundary=b",
            "--b\r\nContent-Disposition: form-data\r\n\r\nnameless\r\n--b--\r\n".into(),
        ),
        ("multipart/form-data; boundary=b", "--b--\r\n".into()),
        ("multipart/form-data; boundary=b", "--b\r\n\r\n\r\n".into()),
        (
            "multipart/form-data; boundary=b",
            (0..2000).map(|i| part(&format!("f{i}"), "v")).collect::<String>() + "--b--\r\n",
        ),
        ("multipart/form-data; boundary=\"\"", part("username", "x")),
        (
            "multipart/form-data; boundary=b",
            format!("{}{}--b--\r\n", part("username", "a"), part("username", "b")),
        ),
    ]
    .into_iter()
    .map(|(ct, body)| (ct, body.into_bytes()))
    .collect();
    for (i, (content_type, mut body)) in multipart.into_iter().enumerate() {
        if i == 0 {
            body.extend_from_slice(b"\xff\xfe");
        }
        let headers = format!("Content-Type: {content_type}\r\n").into_bytes();
        out.push((
            format!("multipart body {i}"),
            request("POST", b"/api/login", &headers, &body),
        ));
    }
    for path in [
        "/API/LOGIN;;;",
        "/api/login;=;=/",
        "/Api/Login;jsessionid=%ff",
        "/;/;/;",
        "/api/login;a=b/..;/x",
    ] {
        out.push((
            format!("path {path:?}"),
            request("POST", path.as_bytes(), FORM, b"username=a&password=b&username=c"),
        ));
    }
    for upgrade in [
        "Upgrade: websocket\r\nConnection: Upgrade\r\n",
        "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        "Connection: Upgrade\r\n",
        "Upgrade: websocket, h2c\r\nConnection: upgrade, upgrade\r\n",
    ] {
        out.push((
            format!("upgrade {upgrade:?}"),
            request("GET", b"/ws", upgrade.as_bytes(), b""),
        ));
    }
    out.push((
        "cognito MFA answer with a forged session".into(),
        request(
            "POST",
            b"/",
            &cognito("RespondToAuthChallenge"),
            mfa_answer.to_string().as_bytes(),
        ),
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_through_every_stage_never_crashes_or_5xxs() {
    let up = Upstream::start("login").await;
    let aw = Authward::start_with(
        &config(&up.url()),
        &[("AW_TOKEN", "t"), ("AW_MFA", KEY), ("AW_SECRET", "s3cret")],
    );
    let requests = hostile_requests();
    assert!(requests.len() > 150, "{}", requests.len());
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (i, (what, raw)) in requests.iter().enumerate() {
        // Each request from its own address (the proxy trusts loopback's X-Forwarded-For), so that
        // per-address limits do not stop the input before the later stages see it.
        let at = raw.iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
        let mut raw = raw.clone();
        raw.splice(
            at..at,
            format!("X-Forwarded-For: 198.18.{}.{}\r\n", i / 250, i % 250 + 1).into_bytes(),
        );
        match status_of(aw.port, &raw).await {
            Some(status) => {
                assert!(status < 500, "{what}: {status}\n{}", aw.logs());
                *statuses.entry(status).or_default() += 1;
            }
            None => panic!("{what}: no answer\n{}", aw.logs()),
        }
    }
    eprintln!("answers by status: {statuses:?}");
    // The input reached the upstream and the stages behind the web ACL, not only its refusals.
    assert!(statuses.get(&200).copied().unwrap_or(0) > 20, "{statuses:?}");
    // Still up and answering, and nothing panicked on the way.
    let r = client()
        .post(aw.url("/api/login"))
        .header("x-forwarded-for", "2.125.160.216")
        .json(&serde_json::json!({"username": "bob@example.com", "password": "a long passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let logs = aw.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}
