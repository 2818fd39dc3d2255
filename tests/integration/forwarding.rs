//! Forwarding: methods, bodies, headers, streaming, client IP trust, errors and caps.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Authward, Upstream, client, echoed_headers, metric_total, metric_value};

fn config(upstream: &str, extra: &str) -> String {
    format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\nupstream:\n  url: {upstream}\n  timeout: 500ms\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_methods_bodies_and_headers() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    let c = client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let r = c
            .request(method.parse().unwrap(), aw.url("/echo/path?x=1&y=two"))
            .header("x-custom", "kept")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "dropped")
            .body(if method == "GET" {
                String::new()
            } else {
                format!("body of {method}")
            })
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-upstream"], "a");
        let request_id = r.headers()["x-authward-request-id"].to_str().unwrap().to_string();
        assert!(
            r.headers().get("x-authward-decision").is_none(),
            "upstream's x-authward-* headers are stripped"
        );
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(echo["method"], method);
        assert_eq!(echo["path"], "/echo/path");
        assert_eq!(echo["query"], "x=1&y=two");
        if method != "GET" {
            assert_eq!(echo["body"], format!("body of {method}"));
        }
        assert_eq!(echoed_headers(&echo, "x-custom"), ["kept"]);
        assert!(
            echoed_headers(&echo, "x-hop").is_empty(),
            "headers named by Connection are hop-by-hop"
        );
        assert!(echoed_headers(&echo, "connection").is_empty() || method == "GET");
        assert_eq!(
            echoed_headers(&echo, "x-authward-request-id"),
            [request_id.as_str()]
        );
        assert_eq!(request_id.len(), 32);
        assert_eq!(echoed_headers(&echo, "host"), [up.addr.to_string()]);
        assert_eq!(
            echoed_headers(&echo, "x-forwarded-host"),
            [format!("127.0.0.1:{}", aw.port)]
        );
        assert_eq!(echoed_headers(&echo, "x-forwarded-proto"), ["http"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_bodies_both_ways() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    // 4 MiB up, in 64 chunks, never buffered whole by the proxy.
    let chunks = futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b'z'; 65536])));
    let r = client()
        .post(aw.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["body_len"], 64 * 65536);
    // 8 MiB down, streamed.
    let r = client()
        .get(aw.url("/stream?chunks=128&size=65536"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut total = 0usize;
    let mut s = r.bytes_stream();
    while let Some(chunk) = s.next().await {
        total += chunk.unwrap().len();
    }
    assert_eq!(total, 128 * 65536);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_spoofed_internal_headers() {
    let up = Upstream::start("a").await;
    // Untrusted peer: its X-Forwarded-For is replaced, its x-authward-* headers are removed.
    let aw = Authward::start(&config(&up.url(), ""));
    let r = client()
        .get(aw.url("/echo"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-authward-decision", "allow")
        .header("X-Authward-Risk", "none")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echoed_headers(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_headers(&echo, "x-forwarded-proto"), ["http"]);
    assert!(echoed_headers(&echo, "x-authward-decision").is_empty());
    assert!(echoed_headers(&echo, "x-authward-risk").is_empty());
    let log = aw.access_log();
    assert_eq!(
        log.last().unwrap()["client_ip"],
        "127.0.0.1",
        "an untrusted peer's XFF is not believed"
    );
    drop(aw);

    // Trusted peer: the chain is kept and extended, and the right-most untrusted entry is the client.
    let aw = Authward::start(&config(&up.url(), "trusted_proxies: [127.0.0.1, 10.0.0.0/8]\n"));
    let r = client()
        .get(aw.url("/echo"))
        .header("x-forwarded-for", "6.6.6.6, 2.125.160.216, 10.1.2.3")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        echoed_headers(&echo, "x-forwarded-for"),
        ["6.6.6.6, 2.125.160.216, 10.1.2.3, 127.0.0.1"]
    );
    let log = aw.access_log();
    assert_eq!(log.last().unwrap()["client_ip"], "2.125.160.216");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_json_502_and_504() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    let r = client().get(aw.url("/slow?ms=3000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_timeout");
    drop(aw);

    let closed = format!("http://127.0.0.1:{}", crate::harness::free_port());
    let aw = Authward::start(&config(&closed, ""));
    let r = client()
        .post(aw.url("/api/login"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    assert_eq!(body["request_id"].as_str().unwrap().len(), 32);
    let metrics = aw.metrics().await;
    assert!(
        metrics.contains("authward_upstream_errors_total{kind=\"connect\"} 1"),
        "{metrics}"
    );
}

const PROFILED: &str = "listen:\n  body_limit: 1KiB\nprofiles:\n  - name: login\n    operation: sign_in\n    match:\n      methods: [POST]\n      path: {exact: /api/login}\n    fields:\n      username: {json: /username}\n      password: {json: /password}\n    outcome:\n      success: {status: [200]}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_read_whole_must_arrive_within_the_body_read_timeout() {
    use std::sync::atomic::Ordering;
    let (addr, conns, answered) = counting_upstream(Closes::Never).await;
    let cfg =
        config(&format!("http://{addr}"), PROFILED).replace("listen:\n  http: [127.0.0.1:{PORT}]\n", "");
    let cfg = cfg.replace(
        "listen:\n  body_limit: 1KiB\n",
        "listen:\n  http: [127.0.0.1:{PORT}]\n  body_limit: 1KiB\n  body_read_timeout: 300ms\n",
    );
    let aw = Authward::start(&cfg);
    // A sign-in that announces 40 bytes and sends 10: 408 after 300 ms, the connection closed, and the
    // upstream never asked.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    s.write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"username\"")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the slow body held its connection");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "answered before the timeout"
    );
    assert_eq!(conns.load(Ordering::SeqCst), 0);
    assert_eq!(answered.load(Ordering::SeqCst), 0);
    let metrics = aw.metrics().await;
    assert!(
        metrics.contains("authward_rejected_requests_total{reason=\"body_timeout\"} 1"),
        "{metrics}"
    );
    // A body that comes in pieces within the timeout is read whole and the sign-in goes through.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let body = br#"{"username":"alice","password":"pw"}"#;
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(&body[10..]).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(answered.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_stalls_while_read_for_its_outcome_is_a_504() {
    // The upstream sends its head and part of the body, then nothing (the connection stays open).
    let addr = fixed_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"tok",
        Duration::from_secs(60),
    )
    .await;
    let profile = PROFILED.replace(
        "success: {status: [200]}",
        "success: {status: [200], json: {pointer: /token, present: true}}",
    );
    let cfg =
        config(&format!("http://{addr}"), &profile).replace("listen:\n  http: [127.0.0.1:{PORT}]\n", "");
    let cfg = cfg.replace(
        "listen:\n  body_limit: 1KiB\n",
        "listen:\n  http: [127.0.0.1:{PORT}]\n  body_limit: 1KiB\n",
    );
    let aw = Authward::start(&cfg);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        client()
            .post(aw.url("/api/login"))
            .body(r#"{"username":"alice","password":"pw"}"#)
            .send(),
    )
    .await
    .expect("the stalled answer held the sign-in")
    .unwrap();
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiled_bodies_are_capped_with_413() {
    let up = Upstream::start("a").await;
    let cfg = config(&up.url(), PROFILED).replace("listen:\n  http: [127.0.0.1:{PORT}]\n", "");
    let cfg = cfg.replace(
        "listen:\n  body_limit: 1KiB\n",
        "listen:\n  http: [127.0.0.1:{PORT}]\n  body_limit: 1KiB\n",
    );
    let aw = Authward::start(&cfg);
    let c = client();
    // Declared too large.
    let big = format!(r#"{{"username":"alice","password":"{}"}}"#, "x".repeat(2000));
    let r = c
        .post(aw.url("/api/login"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Chunked, no length: caught while reading.
    let chunks = futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 600])));
    let r = c
        .post(aw.url("/api/login"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.headers()["connection"],
        "close",
        "the unread rest makes the connection unusable"
    );
    // Within the cap: forwarded whole.
    let r = c
        .post(aw.url("/api/login"))
        .body(r#"{"username":"alice","password":"pw"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["body_len"], 36);
    // Unprofiled routes stream, whatever their size.
    let r = c.post(aw.url("/upload")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let log = aw.access_log();
    assert!(log.iter().any(|l| l["rejected"] == "body_too_large"));
    assert!(!aw.logs().contains("\"pw\""), "a password never reaches the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    for garbage in [
        "GARBAGE\r\n\r\n".as_bytes(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc\r\nzz\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
            .await
            .unwrap();
        s.write_all(garbage).await.unwrap();
        let mut buf = vec![0; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(
            head.starts_with("HTTP/1.1 4"),
            "{:?} got {head}",
            String::from_utf8_lossy(garbage)
        );
    }
    // The proxy is still up.
    assert_eq!(client().get(aw.url("/echo")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_shuts_its_sending_side_after_the_request_still_gets_the_answer() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    for request in [
        "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "GET /echo HTTP/1.0\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
            .await
            .unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
            .await
            .expect("the proxy closes after answering")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{request:?} got {answer:?}"
        );
        assert!(answer.contains("x-upstream: a"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(
        &config(&up.url(), "").replace("  http: [", "  header_read_timeout: 300ms\n  http: ["),
    );
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // The head never ends: the proxy closes the connection (with or without a 408) well before 10 s.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow client was not cut off");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_web_acl_read_in_part_keeps_its_content_length() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(
        &config(
            &up.url(),
            "include: [\"{REPO}/rules/common.yaml\"]\nweb_acl:\n  rules:\n    - {name: common, priority: 10, group: common}\n",
        )
        .replace("  http: [", "  body_limit: 1KiB\n  http: ["),
    );
    // Past the web ACL's read cap, the part read is inspected and put back in front of the rest.
    let body = "x".repeat(5000);
    let r = client()
        .post(aw.url("/upload"))
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    // The upstream gets the client's framing: an application server that reads no chunked bodies (WSGI's
    // wsgiref) still gets the body.
    assert_eq!(echoed_headers(&echo, "content-length"), ["5000"]);
    assert!(echoed_headers(&echo, "transfer-encoding").is_empty(), "{echo}");
    assert_eq!(echo["body"], body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_no_upstream_timeout_and_a_stalled_one_is_the_clients() {
    let up = Upstream::start("a").await;
    // `upstream.timeout: 500ms`; the client's body may pause for up to 700 ms.
    let aw =
        Authward::start(&config(&up.url(), "").replace("  http: [", "  body_read_timeout: 700ms\n  http: ["));
    let upload = |chunks: usize, pause: Duration| {
        let stream = futures_util::stream::iter(0..chunks).then(move |i| async move {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; 1000]))
        });
        client()
            .post(aw.url("/echo"))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
    };
    // Eight chunks 200 ms apart: 1.4 s of upload, far past the upstream's 500 ms, which counts from the end.
    let r = upload(8, Duration::from_millis(200)).await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["body_len"], 8000);
    // A client that stops sending its body for longer than `listen.body_read_timeout`: 408, not the
    // upstream's 504.
    let r = upload(2, Duration::from_secs(3)).await.unwrap();
    assert_eq!(r.status(), 408);
    let metrics = aw.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "authward_upstream_errors_total{kind=\"client_timeout\"}"
        ),
        Some(1),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_and_busy_ones_kept() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = Upstream::start("a").await;
    let aw = Authward::start(
        &config(&up.url(), "")
            .replace("  http: [", "  header_read_timeout: 300ms\n  http: [")
            .replace("timeout: 500ms", "timeout: 5s"),
    );
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    let mut conn = tokio::spawn(conn);
    let get = |path: &str| {
        hyper::Request::get(format!("http://127.0.0.1:{}{path}", aw.port))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // A request whose answer takes three idle limits keeps the connection open: the next request, sent
    // as soon as it is answered, is served on the same connection (not refused by a GOAWAY).
    let r = send.send_request(get("/slow?ms=1000")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = send.send_request(get("/echo")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), hyper::Version::HTTP_2);
    // Then it sits idle and is closed within two limits (without the limit, never).
    let closed = tokio::time::timeout(Duration::from_secs(5), &mut conn).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection was kept open");
    assert!(send.send_request(get("/echo")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cookies_reach_an_http1_upstream_as_one_header() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    // Browsers send each cookie in its own header over HTTP/2 (RFC 9113 §8.2.3).
    let req = hyper::Request::get(format!("http://127.0.0.1:{}/echo", aw.port))
        .header("cookie", "session=s1")
        .header("x-between", "1")
        .header("cookie", "csrf=c2")
        .header("cookie", "theme=dark")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        echoed_headers(&echo, "cookie"),
        ["session=s1; csrf=c2; theme=dark"]
    );
    // One cookie header passes as it is.
    let r = client()
        .get(aw.url("/echo"))
        .header("cookie", "a=1; b=2")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echoed_headers(&echo, "cookie"), ["a=1; b=2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_free_their_slots() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), "").replace(
        "  http: [",
        "  header_read_timeout: 300ms\n  max_connections: 3\n  http: [",
    ));
    // Three clients connect and say nothing, one byte that could start HTTP/2's preface, or the bare
    // preface: every slot is taken.
    let mut silent = Vec::new();
    for opening in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
            .await
            .unwrap();
        s.write_all(opening).await.unwrap();
        silent.push(s);
    }
    // Each is closed well before 10 s (without it, never: hyper's header timeout starts at the first byte)...
    for s in &mut silent {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a silent connection was kept open");
    }
    // ...and a client that speaks is served.
    let r = tokio::time::timeout(Duration::from_secs(10), client().get(aw.url("/echo")).send())
        .await
        .expect("served once the silent connections were closed")
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client that speaks at once is not cut off by the first-bytes deadline later on (requests 200 ms
    // apart, the last past 300 ms after the connection opened).
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    for last in [false, false, true] {
        let close = if last { "Connection: close\r\n" } else { "" };
        s.write_all(format!("GET /echo HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf).matches("HTTP/1.1 200").count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_stalls_mid_body_is_cut_off_after_the_read_timeout_and_frees_its_slot() {
    // An upstream that sends a head and one chunk, then nothing, and holds its connections open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .await;
            held.push(s);
        }
    });
    let aw = Authward::start(
        &config(&format!("http://{addr}"), "")
            .replace("  timeout: 500ms", "  timeout: 500ms\n  read_timeout: 300ms")
            .replace("  http: [", "  max_connections: 1\n  http: ["),
    );
    let request = "GET /events HTTP/1.1\r\nHost: x\r\n\r\n";
    // The client gets the head and the first chunk; then the answer is cut off, not left hanging, and never
    // looks complete (no last chunk).
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("the stalled answer was cut off");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("hello"),
        "{text}"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a cut-off answer looks complete: {text}"
    );
    // A client that leaves during a stalled answer frees its slot (max_connections: 1) by then too.
    let mut gone = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    assert!(raw_head(&mut gone, request).await.starts_with("http/1.1 200"));
    drop(gone);
    let mut next = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    assert!(raw_head(&mut next, request).await.starts_with("http/1.1 200"));
    let cut = metric_value(
        &aw.metrics().await,
        r#"authward_upstream_errors_total{kind="read_timeout"}"#,
    )
    .expect("the cut-off answers are counted");
    assert!(cut >= 2, "{cut} cut off");
    assert!(aw.logs().contains("stalled: cut off"), "{}", aw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_queues_extra_clients() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), "").replace("  http: [", "  max_connections: 1\n  http: ["));
    let c1 = client();
    let c2 = client();
    let first = tokio::spawn({
        let url = aw.url("/hold?ms=800");
        async move {
            c1.get(url).send().await.unwrap();
            std::time::Instant::now()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c2.get(aw.url("/echo")).send().await.unwrap();
    let second_done = std::time::Instant::now();
    assert_eq!(r.status(), 200);
    let first_done = first.await.unwrap();
    assert!(
        second_done >= first_done,
        "the second connection waited for the first one's slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connect_timeout_is_a_504() {
    // An upstream whose accept queue is full: the kernel drops new SYNs, so connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let aw = Authward::start(
        &config(&format!("http://{addr}"), "")
            .replace("  timeout: 500ms\n", "  connect_timeout: 300ms\n  timeout: 5s\n"),
    );
    let r = client().get(aw.url("/echo")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_timeout");
    let metrics = aw.metrics().await;
    assert!(
        metrics.contains("authward_upstream_errors_total{kind=\"timeout\"} 1"),
        "{metrics}"
    );
    drop((fillers, listener));
}

/// When a [`counting_upstream`] closes a connection without saying so.
#[derive(Clone, Copy, PartialEq)]
enum Closes {
    /// Never: keep-alive.
    Never,
    /// Right after its first answer.
    AfterFirstAnswer,
    /// When the second request arrives on it, unanswered: the race of an upstream closing an idle
    /// kept-alive connection just as the proxy sends on it, made certain.
    OnSecondRequest,
}

/// A raw HTTP/1.1 upstream on loopback that counts the connections it accepts and the requests it answers
/// (bodies by `Content-Length`), closing connections as `closes` says.
async fn counting_upstream(
    closes: Closes,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (conns, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, a) = (conns.clone(), answered.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let a = a.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut requests = 0;
                loop {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let body_len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if buf.len() < end + 4 + body_len {
                            break;
                        }
                        buf.drain(..end + 4 + body_len);
                        requests += 1;
                        if requests == 2 && closes == Closes::OnSecondRequest {
                            return;
                        }
                        let n = a.fetch_add(1, Ordering::SeqCst) + 1;
                        let body = format!("answer {n}");
                        let out = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        if s.write_all(out.as_bytes()).await.is_err() || closes == Closes::AfterFirstAnswer {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, conns, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_closed_under_a_request_is_retried_only_when_safe() {
    use std::sync::atomic::Ordering;
    let (addr, conns, answered) = counting_upstream(Closes::OnSecondRequest).await;
    let aw = Authward::start(&config(&format!("http://{addr}"), ""));
    let c = client();
    // GET without a body: sent again on a new connection, so every client request gets its answer.
    for i in 1..=5 {
        let r = c.get(aw.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), format!("answer {i}"));
    }
    assert_eq!(answered.load(Ordering::SeqCst), 5);
    // The first request opened a connection; each later one met the closing connection and took a new one.
    assert_eq!(conns.load(Ordering::SeqCst), 5);
    // A POST may have been processed before the close: never sent twice, the client gets a 502.
    let r = c.post(aw.url("/x")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(answered.load(Ordering::SeqCst), 5);
    let metrics = aw.metrics().await;
    assert!(
        metrics.contains("authward_upstream_errors_total{kind=\"protocol\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    use std::sync::atomic::Ordering;
    let (addr, conns, answered) = counting_upstream(Closes::Never).await;
    let aw = Authward::start(&config(&format!("http://{addr}"), ""));
    let c = client();
    for i in 1..=20 {
        let r = c.get(aw.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), format!("answer {i}"));
    }
    assert_eq!(answered.load(Ordering::SeqCst), 20);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "twenty requests in a row share one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_idle_connections_loses_no_request() {
    use std::sync::atomic::Ordering;
    let (addr, conns, answered) = counting_upstream(Closes::AfterFirstAnswer).await;
    let aw = Authward::start(&config(&format!("http://{addr}"), ""));
    let c = client();
    for i in 1..=20 {
        let r = c.get(aw.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), format!("answer {i}"));
    }
    assert_eq!(answered.load(Ordering::SeqCst), 20);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        20,
        "a closed connection is never used again"
    );
    let metrics = aw.metrics().await;
    assert_eq!(
        metric_total(&metrics, "authward_upstream_errors_total"),
        0,
        "{metrics}"
    );
}

/// A raw upstream that switches to an echo protocol (101) when asked for `Upgrade: websocket` and answers
/// anything else with a plain 200; it keeps every request head it read, lowercased.
async fn switching_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let end = loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                seen.lock().unwrap().push(head.clone());
                if !head.contains("\r\nupgrade: websocket") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nplain")
                        .await;
                    return;
                }
                let switched =
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n";
                if s.write_all(switched.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let echo = [b"echo:".as_slice(), &chunk[..n]].concat();
                            if s.write_all(&echo).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, heads)
}

/// Sends a raw request head and reads the answer's head (lowercased).
async fn raw_head(s: &mut tokio::net::TcpStream, head: &str) -> String {
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed before the head ended: {}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_tunnelled_after_the_web_acl_and_hold_their_connection_slot() {
    let (addr, heads) = switching_upstream().await;
    let acl = "web_acl:\n  rules:\n    - name: no-admin-socket\n      priority: 1\n      action: block\n      \
               statement:\n        byte_match: {field: uri_path, position: starts_with, values: [/admin]}\n";
    let aw = Authward::start(
        &config(&format!("http://{addr}"), acl).replace("  http: [", "  max_connections: 1\n  http: ["),
    );
    let ask = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };

    // The web ACL sees the upgrade request like any other: blocked, the upstream never asked.
    let mut blocked = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let head = raw_head(&mut blocked, &ask("/admin/socket")).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    drop(blocked);
    assert!(heads.lock().unwrap().is_empty());

    // Allowed: the upstream is asked to switch, the client gets its 101, then bytes flow both ways.
    let mut ws = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let head = raw_head(&mut ws, &ask("/socket")).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("\r\nupgrade: websocket\r\n") && head.contains("\r\nconnection: upgrade\r\n"),
        "{head}"
    );
    let sent = heads.lock().unwrap()[0].clone();
    assert!(
        sent.contains("\r\nupgrade: websocket\r\n") && sent.contains("\r\nconnection: upgrade\r\n"),
        "{sent}"
    );
    assert!(
        sent.contains("\r\nsec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n"),
        "{sent}"
    );
    for message in ["hello", "again"] {
        ws.write_all(message.as_bytes()).await.unwrap();
        let mut got = vec![0u8; 5 + message.len()];
        tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut got))
            .await
            .expect("the echo")
            .unwrap();
        assert_eq!(got, format!("echo:{message}").as_bytes());
    }

    // The open tunnel keeps the only connection slot: another client waits until it closes.
    let queued = tokio::spawn({
        let url = aw.url("/after");
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !queued.is_finished(),
        "a second client got in while the tunnel held the slot"
    );
    drop(ws);
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "plain"));

    // Only WebSocket is tunnelled: h2c would carry further requests past every stage (h2c smuggling).
    let mut h2c = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let head = raw_head(
        &mut h2c,
        "GET /h2c HTTP/1.1\r\nHost: app.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    drop(h2c); // (it holds the only connection slot)
    let last = heads.lock().unwrap().last().unwrap().clone();
    assert!(
        last.starts_with("get /h2c") && !last.contains("upgrade") && !last.contains("http2-settings"),
        "{last}"
    );

    // `Upgrade` without `upgrade` among the `Connection` options is a hop-by-hop header like any other.
    let r = client()
        .get(aw.url("/plain"))
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "plain");
    let last = heads.lock().unwrap().last().unwrap().clone();
    assert!(!last.contains("upgrade"), "{last}");
}

/// Opens a WebSocket-style tunnel through authward to [`switching_upstream`] and checks that it echoes.
async fn open_tunnel(port: u16) -> tokio::net::TcpStream {
    let mut ws = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = raw_head(
        &mut ws,
        "GET /socket HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    ping(&mut ws).await;
    ws
}

async fn ping(ws: &mut tokio::net::TcpStream) {
    ws.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut got))
        .await
        .expect("the echo")
        .expect("the tunnel is open");
    assert_eq!(&got, b"echo:ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tunnel_is_closed_after_the_idle_timeout_and_frees_its_slot() {
    let (addr, _) = switching_upstream().await;
    let aw = Authward::start(&config(&format!("http://{addr}"), "").replace(
        "  http: [",
        "  max_connections: 1\n  tunnel_idle_timeout: 1500ms\n  http: [",
    ));
    let mut ws = open_tunnel(aw.port).await;
    // Traffic more often than the timeout keeps it open.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        ping(&mut ws).await;
    }
    // Then silence: authward closes the tunnel (the client reads its end) and the slot is free again.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), ws.read_to_end(&mut rest))
        .await
        .expect("the quiet tunnel was never closed");
    assert_eq!(read.unwrap(), 0);
    let r = tokio::time::timeout(Duration::from_secs(5), client().get(aw.url("/after")).send())
        .await
        .expect("the slot was not freed")
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_open_tunnel_up_to_the_grace_period() {
    let (addr, _) = switching_upstream().await;
    let grace = |g: &str| {
        config(&format!("http://{addr}"), "")
            .replace("  http: [", &format!("  shutdown_grace: {g}\n  http: ["))
    };

    // A tunnel open at SIGTERM keeps carrying bytes while the listener is closed, and the proxy exits as
    // soon as the client closes it.
    let mut aw = Authward::start(&grace("30s"));
    let mut ws = open_tunnel(aw.port).await;
    aw.signal("TERM");
    let refused = crate::harness::eventually(Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
            .await
            .is_err()
    })
    .await;
    assert!(refused, "the listener closes on SIGTERM");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ping(&mut ws).await;
    }
    assert!(
        aw.wait_exit(Duration::from_millis(300)).is_none(),
        "exited with a tunnel open"
    );
    ws.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), ws.read_to_end(&mut rest))
        .await
        .expect("the tunnel's other side closes too")
        .unwrap();
    let status = aw
        .wait_exit(Duration::from_secs(10))
        .expect("exits once the tunnel closed");
    assert!(status.success(), "{status:?}");

    // A tunnel still open when the grace period ends is closed, and the proxy exits.
    let mut aw = Authward::start(&grace("1s"));
    let mut ws = open_tunnel(aw.port).await;
    aw.signal("TERM");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), ws.read_to_end(&mut rest))
        .await
        .expect("the tunnel outlived the grace period");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?} {rest:?}");
    let status = aw
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the grace period");
    assert!(status.success(), "{status:?}");
    assert!(aw.logs().contains("grace period over"), "{}", aw.logs());
}

/// A raw upstream whose answers take every framing of HTTP/1.1, chosen by the request's path: chunked with
/// extensions and trailers, interim 1xx answers before the final one, no body (HEAD, 204, 304), and
/// `/close`, a body that runs to the close. Counts the connections it accepts.
async fn framing_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length = head
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length: ")
                                .map(|v| v.parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    }
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
                    buf.drain(..end + 4 + length);
                    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let answer = match target.as_str() {
                        "/chunked" => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n6;x=y\r\nhello \r\n5\r\nworld\r\n0\r\nx-checksum: 1\r\n\r\n".to_string(),
                        "/interim" => format!(
                            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        ),
                        "/head" => "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n".to_string(),
                        "/none" => "HTTP/1.1 204 No Content\r\n\r\n".to_string(),
                        "/same" => "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n".to_string(),
                        "/expired" => "HTTP/1.1 419 Page Expired\r\ncontent-length: 0\r\n\r\n".to_string(),
                        _ => {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the close").await;
                            return;
                        }
                    };
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_in_every_framing_reach_the_client_on_one_kept_alive_connection() {
    use std::sync::atomic::Ordering;
    let (addr, conns) = framing_upstream().await;
    let aw = Authward::start(&config(&format!("http://{addr}"), ""));
    let c = client();
    for _ in 0..2 {
        let r = c.get(aw.url("/chunked")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.text().await.unwrap(), "hello world");

        let r = c.post(aw.url("/interim")).body("{\"a\":1}").send().await.unwrap();
        assert_eq!(r.status(), 201);
        assert!(r.headers().get("link").is_none());
        assert_eq!(r.text().await.unwrap(), "{\"a\":1}");

        let r = c.head(aw.url("/head")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "1234");

        let r = c.get(aw.url("/none")).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(r.text().await.unwrap(), "");

        let r = c.get(aw.url("/same")).send().await.unwrap();
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["etag"], "\"v1\"");
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "ten answers, one upstream connection"
    );

    // A status without a phrase of its own keeps the upstream's.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let head = raw_head(&mut s, "GET /expired HTTP/1.1\r\nhost: app\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 419 page expired\r\n"), "{head}");
    drop(s);

    // A body that runs to the close comes whole, and its connection is never used again.
    let r = c.get(aw.url("/close")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "until the close");
    let r = c.get(aw.url("/chunked")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello world");
    assert_eq!(conns.load(Ordering::SeqCst), 2);

    // CONNECT opens no tunnel and never reaches the upstream.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let head = raw_head(
        &mut s,
        "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    let metrics = aw.metrics().await;
    assert_eq!(
        metric_total(&metrics, "authward_upstream_errors_total"),
        0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_expects_100_continue_gets_it_and_its_body_goes_on() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    let head = raw_head(
        &mut s,
        "POST /echo HTTP/1.1\r\nhost: app\r\nexpect: 100-continue\r\ncontent-length: 11\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 100 continue"), "{head}");
    s.write_all(b"hello world").await.unwrap();
    let head = raw_head(&mut s, "").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.unwrap();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["body_len"], 11);
}

/// Sends one raw request on a new connection and reads the whole answer (the request asks for the close).
async fn raw_exchange(port: u16, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("an answer and the close")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_headers_are_checked_and_the_targets_authority_wins() {
    let up = Upstream::start("a").await;
    let aw = Authward::start(&config(&up.url(), ""));
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, with two, or with one that is no host.
    for request in [
        "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: x/../y\r\nConnection: close\r\n\r\n",
        "GET /echo HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        "GET http://x@evil.example/echo HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw_exchange(aw.port, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.0 400"),
            "{request:?}: {answer}"
        );
    }
    // HTTP/1.0 needs no Host; a port and an IPv6 literal are hosts.
    for request in [
        "GET /echo HTTP/1.0\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: login.example:8443\r\nConnection: close\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw_exchange(aw.port, request).await;
        assert!(answer.contains(" 200 OK"), "{request:?}: {answer}");
    }
    // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2).
    let answer = raw_exchange(
        aw.port,
        "GET http://target.example/echo HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed_headers(&echo, "x-forwarded-host"), ["target.example"]);
    let metrics = aw.metrics().await;
    assert_eq!(
        metric_value(&metrics, "authward_rejected_requests_total{reason=\"bad_host\"}"),
        Some(6)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_upstreams_answer_goes_to_http_1_1_clients_as_http_1_1() {
    let addr = fixed_upstream(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", Duration::ZERO).await;
    let aw = Authward::start(&config(&format!("http://{addr}"), ""));
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
        .await
        .unwrap();
    // Two requests on one connection: our own protocol version, and the connection kept.
    for _ in 0..2 {
        let head = raw_head(&mut s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let mut body = [0u8; 2];
        s.read_exact(&mut body).await.unwrap();
        assert_eq!(&body, b"ok");
    }
}

/// An upstream that reads a request, writes `answer` and holds the connection for `hold` before closing it.
async fn fixed_upstream(answer: &'static [u8], hold: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
                tokio::time::sleep(hold).await;
            });
        }
    });
    addr
}
