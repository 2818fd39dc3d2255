//! The web ACL end to end: the real binary, real upstreams, labels, actions, shadow mode, rates, JA4.

use std::time::Duration;

use crate::harness::{Authward, Upstream, client, echoed_headers};

fn config(upstream: &str, web_acl: &str) -> String {
    format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\n  body_limit: 4KiB\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {upstream}\n{web_acl}"
    )
}

const ACL: &str = r#"
profiles:
  - name: login
    operation: sign_in
    match: {methods: [POST], path: {exact: /api/login}}
    fields: {username: {json: /username}, password: {json: /password}}
    outcome: {success: {status: [200]}, failure: {status: [401]}}
web_acl:
  rules:
    - name: tag-api
      priority: 1
      action: count
      labels: [app:api]
      statement: {byte_match: {field: uri_path, position: starts_with, value: /api/}}
    - name: would-block-admin
      priority: 2
      action: block
      shadow: true
      labels: [app:admin-probe]
      statement: {byte_match: {field: uri_path, position: contains, value: admin, transforms: [lowercase]}}
    - name: sqli
      priority: 3
      action:
        block_with: {status: 406, headers: {x-blocked-by: authward}, body: "no thanks"}
      labels: [app:sqli]
      statement:
        sqli: {field: {json_body: {}}, transforms: [url_decode]}
    - name: evil-body
      priority: 4
      action: block
      statement: {byte_match: {field: {body: {oversize: continue}}, position: contains, value: EVIL}}
    - name: prove-it
      priority: 5
      action: challenge
      statement: {byte_match: {field: {single_header: x-suspicious}, position: exactly, value: "yes"}}
    - name: api-only-for-tagged
      priority: 6
      action: allow
      statement: {label_match: {key: "app:api"}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_labels_shadow_and_metrics() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ACL));
    let c = client();

    // count + label: the upstream sees the labels; the shadow rule is recorded, not enforced.
    let r = c.get(aw.url("/api/Admin/users")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        echoed_headers(&echo, "x-authward-labels"),
        ["app:api,app:admin-probe"]
    );
    let last = aw.access_log().pop().unwrap();
    assert_eq!(last["waf_shadow"], "would-block-admin:block");
    assert_eq!(last["waf_action"], "allow");
    assert_eq!(last["waf_rule"], "api-only-for-tagged");

    // A custom block answer; the upstream never sees the request.
    let r = c
        .post(aw.url("/api/login"))
        .json(&serde_json::json!({"username": "x' or '1'='1' --", "password": "pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    assert_eq!(r.headers()["x-blocked-by"], "authward");
    assert_eq!(r.text().await.unwrap(), "no thanks");

    // A body rule on an unprofiled route: the body is read up to the cap, and a larger body is inspected
    // in its first part and still forwarded whole.
    let r = c.post(aw.url("/upload")).body("...EVIL...").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert!(body.get("rule").is_none(), "the client is not told which rule");
    let big = "x".repeat(20_000);
    let r = c.post(aw.url("/upload")).body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["body_len"], 20_000);
    let r = c
        .post(aw.url("/upload"))
        .body(format!("EVIL{big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the inspected first part holds the match");

    // challenge: a 403 notice, JSON or HTML by Accept.
    let r = c
        .get(aw.url("/page"))
        .header("x-suspicious", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "challenge_required"
    );
    let r = c
        .get(aw.url("/page"))
        .header("x-suspicious", "yes")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Verification required"));

    let m = aw.metrics().await;
    assert!(
        m.contains("authward_rule_matches_total{action=\"block\",rule=\"sqli\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("authward_rule_matches_total{action=\"shadow_block\",rule=\"would-block-admin\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("authward_rule_matches_total{action=\"challenge\",rule=\"prove-it\"} 2"),
        "{m}"
    );
}

/// Posts `body` in chunks: `first` bytes, then 1000 at a time; with `announce`, under the body's
/// Content-Length, else chunked.
async fn post_in_chunks(url: String, body: Vec<u8>, first: usize, announce: bool) -> reqwest::Response {
    let len = body.len();
    let mut chunks = vec![body[..first].to_vec()];
    chunks.extend(body[first..].chunks(1000).map(<[u8]>::to_vec));
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let mut req = client().post(url).body(reqwest::Body::wrap_stream(stream));
    if announce {
        req = req.header("content-length", len);
    }
    req.send().await.unwrap()
}

/// A body over `listen.body_limit` (4 KiB here) is inspected in exactly its first `body_limit` bytes,
/// however it arrives in chunks, as `authward test` inspects it, and forwarded whole with the client's
/// Content-Length; a `size_constraint` on the body measures the whole body where Content-Length tells it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_inspected_in_exactly_its_first_body_limit_bytes() {
    let acl = r#"
web_acl:
  rules:
    - name: evil-body
      priority: 1
      statement: {byte_match: {field: {body: {oversize: continue}}, position: contains, value: EVIL}}
    - name: huge
      priority: 2
      action: {block_with: {status: 413}}
      statement:
        and:
          - byte_match: {field: uri_path, position: exactly, value: /size}
          - size_constraint: {field: {body: {}}, comparison: gt, size: 60000}
"#;
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), acl));
    let evil_at = |at: usize| {
        let mut b = vec![b'x'; 20_000];
        b[at..at + 4].copy_from_slice(b"EVIL");
        b
    };
    // EVIL in bytes 4092..4096 lies inside the first 4 KiB, at 4093 it does not, whatever the chunks.
    for (at, first, announce, status) in [
        (4092, 8000, true, 403),
        (4092, 100, false, 403),
        (4093, 8000, true, 200),
        (4093, 8000, false, 200),
        (4093, 100, true, 200),
        (4093, 4096, true, 200),
        (12_000, 16_384, true, 200),
        (16_380, 20_000, true, 200),
    ] {
        let r = post_in_chunks(aw.url("/upload"), evil_at(at), first, announce).await;
        assert_eq!(r.status(), status, "EVIL at {at}, first chunk {first}");
        if status == 200 {
            let echo: serde_json::Value = r.json().await.unwrap();
            assert_eq!(echo["body_len"], 20_000);
            if announce {
                assert_eq!(echoed_headers(&echo, "content-length"), ["20000"]);
            }
        }
    }
    let r = client()
        .post(aw.url("/upload"))
        .body(evil_at(4093))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "in one piece");

    // The whole size where Content-Length gives it; without one, only what was read is measured.
    let big = vec![b'x'; 70_000];
    let r = client()
        .post(aw.url("/size"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        post_in_chunks(aw.url("/size"), big.clone(), 1000, true)
            .await
            .status(),
        413
    );
    assert_eq!(
        post_in_chunks(aw.url("/size"), big, 1000, false).await.status(),
        200
    );
    let r = client()
        .post(aw.url("/size"))
        .body(vec![b'x'; 50_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_from_the_real_upstream_trip_a_rate_rule() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        authward::demo::login_service::LoginService::new().serve(listener, async move {
            let _ = rx.await;
        }),
    );
    let acl = r#"
include: ["{REPO}/rules/profiles/json-login.yaml"]
web_acl:
  rules:
    - name: failures
      priority: 1
      labels: [login:too-many-failures]
      action: {block_with: {status: 429, body: "slow down"}}
      statement:
        rate_based:
          limit: 3
          window: 10m
          keys: [ip]
          count: failed_sign_in
          scope_down: {label_match: {key: "authward:operation:sign_in"}}
"#;
    let aw = Authward::start(&config(&format!("http://{addr}"), acl));
    let c = client();
    let login = |p: &str| serde_json::json!({"username": "alice", "password": p});
    // Successes never count.
    for _ in 0..5 {
        let r = c
            .post(aw.url("/api/login"))
            .json(&login("correct-horse-battery"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..3 {
        let r = c
            .post(aw.url("/api/login"))
            .json(&login("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            401,
            "the login service answers the first three failures"
        );
    }
    // Now even the right password is refused before the login service sees it.
    let r = c
        .post(aw.url("/api/login"))
        .json(&login("correct-horse-battery"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.text().await.unwrap(), "slow down");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ja4_and_header_order_over_tls() {
    let up = Upstream::start("a").await;
    let certs = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(certs.path().join("c.crt"), cert.pem()).unwrap();
    std::fs::write(certs.path().join("c.key"), key.serialize_pem()).unwrap();
    let yaml = format!(
        "listen:\n  http: []\n  https: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\ntls:\n  cert: {d}/c.crt\n  key: {d}/c.key\nupstream:\n  url: {u}\n{acl}",
        d = certs.path().display(),
        u = up.url(),
        acl = r#"web_acl:
  rules:
    - name: tls13-client
      priority: 1
      action: count
      labels: [tls:ja4-t13]
      statement: {regex: {field: ja4, pattern: '^t13d[0-9]{4}(h2|h1)_[0-9a-f]{12}_[0-9a-f]{12}$'}}
    - name: sends-accept
      priority: 2
      action: count
      labels: [client:accept-first]
      statement: {regex: {field: header_order, pattern: '(?:^|:)accept(?::|$)'}}
"#
    );
    let aw = Authward::start(&yaml);
    let ca = reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .use_rustls_tls()
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{}/echo", aw.port))
        .header("accept", "*/*")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    let labels = echoed_headers(&echo, "x-authward-labels");
    assert_eq!(labels.len(), 1);
    assert!(labels[0].contains("tls:ja4-t13"), "{labels:?}");
    assert!(labels[0].contains("client:accept-first"), "{labels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rule_file_is_rejected_whole_and_the_old_acl_keeps_serving() {
    let up = Upstream::start("a").await;
    let good = config(&up.url(), "");
    let with_rule = |stmt: &str| {
        format!(
            "{good}web_acl:\n  rules:\n    - name: block-x\n      priority: 1\n      statement: {{byte_match: {{field: uri_path, position: exactly, value: /x}}}}\n    - name: second\n      priority: 2\n      statement: {stmt}\n"
        )
    };
    let aw = Authward::start(&with_rule(
        "{byte_match: {field: uri_path, position: exactly, value: /y}}",
    ));
    let c = client();
    assert_eq!(c.get(aw.url("/x")).send().await.unwrap().status(), 403);
    assert_eq!(c.get(aw.url("/y")).send().await.unwrap().status(), 403);
    // One bad rule (a regex that does not compile) makes the whole file fail; nothing half-loads.
    aw.write_config(
        &with_rule("{regex: {field: uri_path, pattern: '(unclosed'}}").replace("value: /x", "value: /z"),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        c.get(aw.url("/x")).send().await.unwrap().status(),
        403,
        "the old ACL still serves"
    );
    assert_eq!(c.get(aw.url("/z")).send().await.unwrap().status(), 200);
    assert!(aw.logs().contains("regular expression"), "{}", aw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_set_files_are_read_again_on_reload() {
    let up = Upstream::start("a").await;
    let acl = "web_acl:\n  ip_set_files:\n    deny: deny.txt\n  rules:\n    - name: denied\n      priority: 1\n      statement: {ip_set: {files: [deny]}}\n";
    // The list lives beside the test, outside the harness's directory, and exists before the start.
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("deny.txt");
    std::fs::write(&list, "# nothing of ours yet\n203.0.113.0/24\n").unwrap();
    let aw = Authward::start(&config(
        &up.url(),
        &acl.replace("deny.txt", &list.display().to_string()),
    ));
    assert_eq!(client().get(aw.url("/echo")).send().await.unwrap().status(), 200);
    std::fs::write(&list, "127.0.0.0/8\n").unwrap();
    aw.signal("HUP");
    let blocked = crate::harness::eventually(Duration::from_secs(10), async || {
        client()
            .get(aw.url("/echo"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 403)
    })
    .await;
    assert!(blocked, "the new list is in force after a reload: {}", aw.logs());
}
