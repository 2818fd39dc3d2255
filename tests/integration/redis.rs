//! The Redis store: replicas share rate limits and event histories through one real `redis-server`; once
//! Redis is gone a rule set to fail closed blocks, and a replica with the local fallback limits on its own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Authward, client, free_port, metric_value};

const TOKEN: &str = "redis-admin-token";

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(upstream: &str, redis: &Redis, fallback: &str) -> Authward {
    let yaml = format!(
        r#"
listen: {{http: [127.0.0.1:{{PORT}}]}}
admin: {{listen: 127.0.0.1:{{ADMIN}}, token_env: TEST_ADMIN_TOKEN}}
upstream: {{url: "{upstream}"}}
store: {{kind: redis, url_env: TEST_REDIS_URL, prefix: "it:", timeout: 300ms, fallback: {fallback}}}
include: ["{{REPO}}/rules/profiles/json-login.yaml"]
events:
  history: {{max_per_user: 50, ttl: 90d}}
web_acl:
  store_failure: closed
  rules:
    - name: failures
      priority: 1
      action: {{block_with: {{status: 429, body: "slow down"}}}}
      statement:
        rate_based:
          limit: 3
          window: 10m
          keys: [ip]
          count: failed_sign_in
          scope_down: {{label_match: {{key: "authward:operation:sign_in"}}}}
"#
    );
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    Authward::start_with(&yaml, &[("TEST_ADMIN_TOKEN", TOKEN), ("TEST_REDIS_URL", &url)])
}

async fn sign_in(aw: &Authward, password: &str) -> u16 {
    client()
        .post(aw.url("/api/login"))
        .json(&serde_json::json!({"username": "alice", "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_limits_and_histories_in_redis_and_fail_closed_without_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        authward::demo::login_service::LoginService::new().serve(listener, async move {
            let _ = rx.await;
        }),
    );
    let redis = Redis::start();
    let upstream = format!("http://{addr}");
    let (a, b) = (
        replica(&upstream, &redis, "none"),
        replica(&upstream, &redis, "none"),
    );
    let local = replica(&upstream, &redis, "local");

    assert_eq!(sign_in(&a, "correct-horse-battery").await, 200);
    // Three failures spread over both replicas use up one shared limit.
    assert_eq!(sign_in(&a, "wrong").await, 401);
    assert_eq!(sign_in(&b, "wrong").await, 401);
    assert_eq!(sign_in(&a, "wrong").await, 401);
    assert_eq!(
        sign_in(&b, "correct-horse-battery").await,
        429,
        "b saw a's failures"
    );
    assert_eq!(sign_in(&a, "correct-horse-battery").await, 429);

    // The history written by a is read through b's admin API.
    let page: serde_json::Value = client()
        .get(b.admin_url("/admin/v1/users/alice/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events.len() >= 4,
        "both replicas' sign-ins in one history: {page}"
    );

    // Redis gone: the rule fails closed on both replicas, within the store's timeout.
    drop(redis);
    let started = Instant::now();
    assert_eq!(sign_in(&a, "correct-horse-battery").await, 429);
    assert_eq!(sign_in(&b, "correct-horse-battery").await, 429);
    assert!(started.elapsed() < Duration::from_secs(10), "answered, not hung");
    assert!(a.logs().contains("store unavailable"), "{}", a.logs());
    let metrics = a.metrics().await;
    let failed = metric_value(&metrics, r#"authward_store_unavailable_total{fallback="none"}"#);
    assert!(failed.is_some_and(|n| n >= 1), "{metrics}");

    // With `fallback: local` the replica serves on, limiting from its own memory.
    assert_eq!(sign_in(&local, "correct-horse-battery").await, 200);
    for _ in 0..3 {
        assert_eq!(sign_in(&local, "wrong").await, 401);
    }
    assert_eq!(
        sign_in(&local, "correct-horse-battery").await,
        429,
        "the local limit holds"
    );
    assert!(
        local.logs().contains("serves from its own memory"),
        "{}",
        local.logs()
    );
}
