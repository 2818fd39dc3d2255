//! `authward demo`: the built-in login service, authward in front of it, and a printed tour.

pub mod login_service;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use http_body_util::BodyExt;

use crate::config::EmbeddedSources;
use crate::proxy::body;
use crate::proxy::server::{Bound, ServeOptions};

/// Where the demo listens; the defaults are DESIGN's fixed tour addresses.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// The proxy's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The built-in login service's address.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub upstream_listen: SocketAddr,
    /// The admin listener's address.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin_listen: SocketAddr,
    /// Start the services without playing the tour.
    #[arg(long)]
    pub no_tour: bool,
}

/// The demo's files, compiled into the binary so an installed `authward` runs the demo with no checkout.
const EMBEDDED: &[(&str, &[u8])] = &[
    ("rules/demo.yaml", include_bytes!("../../rules/demo.yaml")),
    (
        "rules/profiles/json-login.yaml",
        include_bytes!("../../rules/profiles/json-login.yaml"),
    ),
    (
        "rules/profiles/form-login.yaml",
        include_bytes!("../../rules/profiles/form-login.yaml"),
    ),
    ("rules/common.yaml", include_bytes!("../../rules/common.yaml")),
    (
        "rules/sms/premium-prefixes.txt",
        include_bytes!("../../rules/sms/premium-prefixes.txt"),
    ),
    (
        "rules/sms/prices.yaml",
        include_bytes!("../../rules/sms/prices.yaml"),
    ),
    (
        "rules/login-protection.yaml",
        include_bytes!("../../rules/login-protection.yaml"),
    ),
    (
        "data/geoip/GeoIP2-City-Test.mmdb",
        include_bytes!("../../data/geoip/GeoIP2-City-Test.mmdb"),
    ),
    (
        "data/geoip/GeoLite2-ASN-Test.mmdb",
        include_bytes!("../../data/geoip/GeoLite2-ASN-Test.mmdb"),
    ),
    (
        "data/geoip/GeoIP2-Anonymous-IP-Test.mmdb",
        include_bytes!("../../data/geoip/GeoIP2-Anonymous-IP-Test.mmdb"),
    ),
];

/// Builds the demo's sources: the embedded files with the chosen addresses, and the admin token.
pub fn sources(opts: &DemoOptions, admin_token: &str) -> EmbeddedSources {
    let mut s = EmbeddedSources::default();
    for (path, bytes) in EMBEDDED {
        let mut bytes = bytes.to_vec();
        if *path == "rules/demo.yaml" {
            let text = String::from_utf8_lossy(&bytes)
                .replace("127.0.0.1:8080", &opts.listen.to_string())
                .replace("127.0.0.1:3000", &opts.upstream_listen.to_string())
                .replace("127.0.0.1:9901", &opts.admin_listen.to_string());
            bytes = text.into_bytes();
        }
        s.files.insert(PathBuf::from(path), bytes);
    }
    s.env.insert("AUTHWARD_ADMIN_TOKEN".into(), admin_token.into());
    s
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(
    opts: DemoOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (token, generated) = match std::env::var("AUTHWARD_ADMIN_TOKEN") {
        Ok(t) if !t.trim().is_empty() => (t.trim().to_string(), false),
        _ => (format!("{:032x}", rand::random::<u128>()), true),
    };
    let service = login_service::LoginService::new();
    let listener = tokio::net::TcpListener::bind(opts.upstream_listen)
        .await
        .with_context(|| format!("cannot start the demo login service on {}", opts.upstream_listen))?;
    let upstream_addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_service = stop_rx.clone();
    let service_task = tokio::spawn(service.clone().serve(listener, async move {
        let _ = stop_service.changed().await;
    }));
    let mut opts = opts;
    opts.upstream_listen = upstream_addr;

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Bound>();
    let serve_opts = ServeOptions {
        config_path: PathBuf::from("rules/demo.yaml"),
        sources: Arc::new(sources(&opts, &token)),
        watch_files: false,
        on_ready: Some(Box::new(move |b: &Bound| {
            let _ = ready_tx.send(b.clone());
        })),
    };
    let mut stop_proxy = stop_rx.clone();
    let proxy = tokio::spawn(crate::proxy::server::run(serve_opts, async move {
        let _ = stop_proxy.changed().await;
    }));
    let tour_opts = opts.clone();
    let tour = tokio::spawn(async move {
        let Ok(bound) = ready_rx.await else { return };
        print_welcome(&bound, upstream_addr, &token, generated);
        if !tour_opts.no_tour {
            if let Some(addr) = bound.http.first() {
                play_tour(*addr, bound.admin, &token, &service).await;
            }
        }
        println!("\nauthward demo is running. Try the commands above; Ctrl-C stops it.");
    });
    tokio::select! {
        _ = shutdown => {}
        r = proxy => {
            r??;
            anyhow::bail!("the proxy stopped");
        }
    }
    let _ = stop_tx.send(true);
    tour.abort();
    let _ = service_task.await;
    Ok(())
}

fn print_welcome(bound: &Bound, upstream: SocketAddr, token: &str, generated: bool) {
    let proxy = bound.http.first().map_or_else(String::new, ToString::to_string);
    println!("authward demo");
    println!(
        "  login service  http://{upstream}   (users: alice / correct-horse-battery, bob / password123)"
    );
    println!("  authward       http://{proxy}   (open it in a browser for the login page)");
    println!(
        "  admin          http://{}   /healthz /readyz /metrics",
        bound.admin
    );
    if generated {
        println!("  admin token    {token}   (random; set AUTHWARD_ADMIN_TOKEN to choose one)");
    } else {
        println!("  admin token    from AUTHWARD_ADMIN_TOKEN");
    }
}

/// One request of the tour.
struct Step {
    title: &'static str,
    curl: String,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
}

/// Places in MaxMind's test databases: Boxford, GB and Milton, US.
const BOXFORD: &str = "2.125.160.216";
const MILTON: &str = "216.160.83.56";

async fn play_tour(proxy: SocketAddr, admin: SocketAddr, token: &str, service: &login_service::LoginService) {
    let json = ("content-type", "application/json".to_string());
    // The tour plays a browser (a script's user agent would count as automation).
    let ua = (
        "user-agent",
        "Mozilla/5.0 (authward demo tour) Firefox/130.0".to_string(),
    );
    let from = |ip: &str| ("x-forwarded-for", ip.to_string());
    let login = |user: &str, pass: &str| serde_json::json!({"username": user, "password": pass}).to_string();
    let signup = r#"{"username":"O'Brien","password":"a-long-passphrase","phone":"+14155550123"}"#;
    let steps = vec![
        Step {
            title: "1. alice signs in from Boxford, GB (X-Forwarded-For is trusted from 127.0.0.1 in the demo): recognised by the json-login profile, scored, forwarded, a success that starts her history",
            curl: format!(
                "curl -s http://{proxy}/api/login -H 'content-type: application/json' -H 'X-Forwarded-For: {BOXFORD}' -d '{}'",
                login("alice", "correct-horse-battery")
            ),
            method: "POST",
            path: "/api/login",
            headers: vec![json.clone(), ua.clone(), from(BOXFORD)],
            body: Some(login("alice", "correct-horse-battery")),
        },
        Step {
            title: "2. An SQL injection in the username: blocked by the web ACL before the login service sees it",
            curl: format!(
                "curl -s http://{proxy}/api/login -H 'content-type: application/json' -d '{}'",
                login("admin' OR 1=1--", "x")
            ),
            method: "POST",
            path: "/api/login",
            headers: vec![json.clone(), ua.clone()],
            body: Some(login("admin' OR 1=1--", "x")),
        },
        Step {
            title: "3. A wrong password from Boxford: a failure, counted for the velocity signals",
            curl: format!(
                "curl -s http://{proxy}/api/login -H 'content-type: application/json' -H 'X-Forwarded-For: {BOXFORD}' -d '{}'",
                login("alice", "guess")
            ),
            method: "POST",
            path: "/api/login",
            headers: vec![json.clone(), ua.clone(), from(BOXFORD)],
            body: Some(login("alice", "guess")),
        },
        Step {
            title: "4. alice's password, minutes later from Milton, US, 7 700 km away: impossible travel, high risk, blocked although the password was right",
            curl: format!(
                "curl -s http://{proxy}/api/login -H 'content-type: application/json' -H 'X-Forwarded-For: {MILTON}' -d '{}'",
                login("alice", "correct-horse-battery")
            ),
            method: "POST",
            path: "/api/login",
            headers: vec![json.clone(), ua.clone(), from(MILTON)],
            body: Some(login("alice", "correct-horse-battery")),
        },
        Step {
            title: "5. bob signs in with password123, a password from breach lists: the login service accepts it, authward does not hand out the token",
            curl: format!(
                "curl -s http://{proxy}/api/login -H 'content-type: application/json' -H 'X-Forwarded-For: {BOXFORD}' -d '{}'",
                login("bob", "password123")
            ),
            method: "POST",
            path: "/api/login",
            headers: vec![json.clone(), ua.clone(), from(BOXFORD)],
            body: Some(login("bob", "password123")),
        },
        Step {
            title: "6. O'Brien signs up with a phone number (an apostrophe is a name, not an injection)",
            curl: format!(
                "curl -s http://{proxy}/api/signup -H 'content-type: application/json' -d '{signup}'"
            ),
            method: "POST",
            path: "/api/signup",
            headers: vec![json.clone(), ua.clone()],
            body: Some(signup.to_string()),
        },
        Step {
            title: "7. A spoofed x-authward-decision header: removed before the login service sees it",
            curl: format!("curl -s http://{proxy}/api/me -H 'x-authward-decision: allow'"),
            method: "GET",
            path: "/api/me",
            headers: vec![("x-authward-decision", "allow".into())],
            body: None,
        },
    ];
    println!("\nThe tour (each step is a real request through authward; its answer follows):");
    for step in steps {
        println!("\n{}\n  $ {}", step.title, step.curl);
        match send(proxy, step.method, step.path, &step.headers, step.body.as_deref()).await {
            Ok((status, text)) => println!("  -> {status} {}", truncate(&text, 160)),
            Err(e) => println!("  -> failed: {e}"),
        }
    }
    pumping_burst(proxy, service).await;
    println!(
        "\n9. What authward counted (outcomes of profiled operations, web-ACL matches, risk and SMS decisions):"
    );
    println!(
        "  $ curl -s http://{admin}/metrics | grep -E 'authward_(profile_outcomes|rule_matches|risk_decisions|sms_decisions)_total'"
    );
    if let Ok((_, text)) = send(admin, "GET", "/metrics", &[], None).await {
        let counted = |l: &&str| {
            l.starts_with("authward_profile_outcomes_total")
                || l.starts_with("authward_rule_matches_total")
                || l.starts_with("authward_risk_decisions_total")
                || l.starts_with("authward_sms_decisions_total")
        };
        for line in text.lines().filter(counted) {
            println!("  {line}");
        }
    }
    let auth = [("authorization", format!("Bearer {token}"))];
    println!(
        "\n10. alice's event history, newest first: each sign-in with its place, risk, decision and outcome"
    );
    println!(
        "  $ curl -s 'http://{admin}/admin/v1/users/alice/events?limit=3' -H 'Authorization: Bearer {token}'"
    );
    // History writes run in the background: give them a moment.
    let mut history = Vec::new();
    for _ in 0..50 {
        if let Ok((200, text)) = send(admin, "GET", "/admin/v1/users/alice/events?limit=3", &auth, None).await
        {
            let page: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            history = page["events"].as_array().cloned().unwrap_or_default();
            if history.len() >= 3 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for e in &history {
        let signals: Vec<&str> = e["risk"]["signals"]
            .as_array()
            .map(|s| s.iter().filter_map(|s| s["name"].as_str()).collect())
            .unwrap_or_default();
        println!(
            "  -> {} {} from {} ({}): risk {} [{}], decision {}",
            e["type"].as_str().unwrap_or(""),
            e["outcome"].as_str().unwrap_or(""),
            e["geo"]["city"].as_str().unwrap_or("?"),
            e["geo"]["country"].as_str().unwrap_or("?"),
            e["risk"]["level"].as_str().unwrap_or("none"),
            signals.join(", "),
            e["decision"].as_str().unwrap_or(""),
        );
    }
    println!("\n11. The admin API needs the token: reload the config");
    println!("  $ curl -s -X POST http://{admin}/admin/v1/reload -H 'Authorization: Bearer {token}'");
    match send(admin, "POST", "/admin/v1/reload", &auth, None).await {
        Ok((status, text)) => println!("  -> {status} {}", truncate(&text, 160)),
        Err(e) => println!("  -> failed: {e}"),
    }
}

/// Step 6: a burst of code requests to consecutive numbers of a UK premium-rate range, each from
/// another address, as a pumper's script sends them.
async fn pumping_burst(proxy: SocketAddr, service: &login_service::LoginService) {
    const BURST: u32 = 10;
    let json = ("content-type", "application/json".to_string());
    println!(
        "\n8. SMS pumping: {BURST} codes asked for consecutive numbers of a UK premium-rate range (+44 909 879 00xx),\n   each from another address: stopped before the login service sends (and pays for) any"
    );
    println!(
        "  $ curl -s http://{proxy}/api/sms/send -H 'content-type: application/json' -H 'X-Forwarded-For: 203.0.113.1' -d '{{\"phone\":\"+449098790001\"}}'"
    );
    let before = service.sms_sent().len();
    let mut answers: Vec<String> = Vec::new();
    for i in 1..=BURST {
        let body = format!(r#"{{"phone":"+4490987900{i:02}"}}"#);
        let headers = [json.clone(), ("x-forwarded-for", format!("203.0.113.{i}"))];
        let answer = match send(proxy, "POST", "/api/sms/send", &headers, Some(&body)).await {
            Ok((status, text)) => {
                let reason = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["reason"].as_str().map(str::to_owned));
                match reason {
                    Some(r) => format!("{status} sms_blocked ({r})"),
                    None => status.to_string(),
                }
            }
            Err(e) => format!("failed: {e}"),
        };
        answers.push(answer);
    }
    let mut summary: Vec<(String, usize)> = Vec::new();
    for a in answers {
        match summary.iter_mut().find(|(s, _)| *s == a) {
            Some((_, n)) => *n += 1,
            None => summary.push((a, 1)),
        }
    }
    let summary: Vec<String> = summary.iter().map(|(a, n)| format!("{n} × {a}")).collect();
    let sent = service.sms_sent().len() - before;
    println!("  -> {}; the login service sent {sent} SMS", summary.join(", "));
}

fn truncate(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// A one-shot HTTP/1.1 request, for the tour.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body_text: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(body::full(body_text.unwrap_or("").to_string()))?;
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
