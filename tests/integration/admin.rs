//! The admin listener: open health endpoints, metrics, and the token-protected API.

use crate::harness::{Authward, Upstream, client};

fn config(upstream: &str) -> String {
    format!(
        "listen:\n  http: [127.0.0.1:{{PORT}}]\nadmin:\n  listen: 127.0.0.1:{{ADMIN}}\n  token_env: TEST_ADMIN_TOKEN\nupstream:\n  url: {upstream}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_the_admin_api() {
    let up = Upstream::start("a").await;
    let aw = Authward::start_with(&config(&up.url()), &[("TEST_ADMIN_TOKEN", "t0ken-for-tests")]);
    let c = client();
    assert_eq!(
        c.get(aw.admin_url("/healthz")).send().await.unwrap().status(),
        200
    );
    let ready = c.get(aw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let r = c.post(aw.admin_url("/admin/v1/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = c
        .post(aw.admin_url("/admin/v1/reload"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(aw.admin_url("/admin/v1/reload"))
        .bearer_auth("t0ken-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Metrics are open and count what happened.
    c.get(aw.url("/x")).send().await.unwrap();
    let m = aw.metrics().await;
    assert!(
        m.contains("authward_requests_total{operation=\"none\",status=\"200\"} 1"),
        "{m}"
    );
    assert!(m.contains("authward_config_reloads_total{result=\"ok\"} 1"));
    assert!(m.contains("authward_upstream_request_duration_seconds_bucket"));
    assert!(
        !aw.logs().contains("t0ken-for-tests"),
        "the token never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_means_the_api_is_off_and_readyz_sees_the_upstream() {
    let closed = format!("http://127.0.0.1:{}", crate::harness::free_port());
    let aw = Authward::start(&config(&closed));
    let c = client();
    let r = c
        .post(aw.admin_url("/admin/v1/reload"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let ready = c.get(aw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "the upstream is down");
}
