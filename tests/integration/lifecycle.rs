//! Hot reload (file watch, SIGHUP, admin API) while traffic flows, and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::{Authward, Upstream, client, eventually};

fn config(upstream: &str) -> String {
    format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\n  shutdown_grace: 5s\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\n  token_env: TEST_ADMIN_TOKEN\nupstream:\n  url: {upstream}\n"
    )
}

async fn which_upstream(c: &reqwest::Client, url: &str) -> Option<String> {
    let r = c.get(url).send().await.ok()?;
    r.headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_good_and_bad_files_while_requests_flow() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let aw = Authward::start_with(&config(&a.url()), &[("TEST_ADMIN_TOKEN", "tok")]);
    let url = aw.url("/echo");

    // Steady traffic during every reload; not one request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let c = client();

    // 1. A good file, picked up by the file watcher: traffic moves to upstream b.
    aw.write_config(&config(&b.url()));
    assert!(
        eventually(Duration::from_secs(10), async || which_upstream(&c, &url)
            .await
            .as_deref()
            == Some("b"))
        .await,
        "the watcher reloads: {}",
        aw.logs()
    );

    // 2. A bad file: reported with its position, and b keeps serving.
    aw.write_config(&config(&a.url()).replace("upstream:\n", "upstream:\n  colour: red\n"));
    let r = c
        .post(aw.admin_url("/admin/v1/reload"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    let text = body["errors"][0]["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("authward.yaml:8:3:") && text.contains("colour"),
        "{text}"
    );
    assert_eq!(which_upstream(&c, &url).await.as_deref(), Some("b"));

    // 3. SIGHUP with a good file again: back to a.
    aw.write_config(&config(&a.url()));
    aw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), async || which_upstream(&c, &url)
            .await
            .as_deref()
            == Some("a"))
        .await
    );

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 20);
    let m = aw.metrics().await;
    assert!(
        m.contains("authward_config_reloads_total{result=\"error\"}"),
        "{m}"
    );
    assert!(aw.logs().contains("config reload failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let up = Upstream::start("a").await;
    let mut aw = Authward::start(&config(&up.url()));
    let in_flight = tokio::spawn({
        let url = aw.url("/hold?ms=1500");
        async move { client().get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    aw.signal("TERM");
    // New connections are refused once the listener is closed.
    let refused = eventually(Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(("127.0.0.1", aw.port))
            .await
            .is_err()
    })
    .await;
    assert!(refused, "the listener closes on SIGTERM");
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the request in flight finished"
    );
    let status = aw
        .wait_exit(Duration::from_secs(10))
        .expect("authward exits after draining");
    assert!(status.success(), "{status}");
}
