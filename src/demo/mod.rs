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
    (
        "rules/sms/premium-prefixes.txt",
        include_bytes!("../../rules/sms/premium-prefixes.txt"),
    ),
    (
        "rules/sms/prices.yaml",
        include_bytes!("../../rules/sms/prices.yaml"),
    ),
];

/// Builds the demo's sources: the embedded files with the chosen addresses, the admin token and the key
/// that encrypts TOTP secrets.
pub fn sources(opts: &DemoOptions, admin_token: &str, mfa_key: &str) -> EmbeddedSources {
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
    s.env.insert("AUTHWARD_MFA_KEY".into(), mfa_key.into());
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
    // TOTP secrets live in the memory store for the demo: a key for this run is enough.
    let mfa_key = match std::env::var("AUTHWARD_MFA_KEY") {
        Ok(k) if !k.trim().is_empty() => k.trim().to_string(),
        _ => hex::encode(rand::random::<[u8; 32]>()),
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
        sources: Arc::new(sources(&opts, &token, &mfa_key)),
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
    title: String,
    curl: String,
    to: SocketAddr,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
}

impl Step {
    /// Prints the step, sends it, prints the answer; the answer's status and body.
    async fn play(self) -> Option<(u16, String)> {
        println!("\n{}\n  $ {}", self.title, self.curl);
        match send(
            self.to,
            self.method,
            self.path,
            &self.headers,
            self.body.as_deref(),
        )
        .await
        {
            Ok((status, text)) => {
                println!("  -> {status} {}", truncate(&text, 160));
                Some((status, text))
            }
            Err(e) => {
                println!("  -> failed: {e}");
                None
            }
        }
    }
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
    let curl_ua = ("user-agent", "curl/8.5.0".to_string());
    let from = |ip: &str| ("x-forwarded-for", ip.to_string());
    let auth = ("authorization", format!("Bearer {token}"));
    let login = |user: &str, pass: &str| serde_json::json!({"username": user, "password": pass}).to_string();
    let signup = r#"{"username":"O'Brien","password":"a-long-passphrase","phone":"+14155550123"}"#;
    let sign_in = |title: &str, user: &str, pass: &str, ip: Option<&str>| {
        let xff = ip.map_or_else(String::new, |ip| format!(" -H 'X-Forwarded-For: {ip}'"));
        let mut headers = vec![json.clone(), ua.clone()];
        headers.extend(ip.map(from));
        Step {
            title: title.to_string(),
            curl: format!(
                "curl -s http://{proxy}/api/login -H 'content-type: application/json'{xff} -d '{}'",
                login(user, pass)
            ),
            to: proxy,
            method: "POST",
            path: "/api/login",
            headers,
            body: Some(login(user, pass)),
        }
    };
    println!("\nThe tour (each step is a real request through authward; its answer follows):");
    sign_in(
        "1. alice signs in from Boxford, GB (X-Forwarded-For is trusted from 127.0.0.1 in the demo): recognised by the json-login profile, scored, forwarded, a success that starts her history",
        "alice",
        "correct-horse-battery",
        Some(BOXFORD),
    )
    .play()
    .await;
    sign_in(
        "2. An SQL injection in the username: blocked by the web ACL before the login service sees it",
        "admin' OR 1=1--",
        "x",
        None,
    )
    .play()
    .await;
    sign_in(
        "3. A wrong password from Boxford: a failure, counted for the velocity signals",
        "alice",
        "guess",
        Some(BOXFORD),
    )
    .play()
    .await;
    sign_in(
        "4. alice's password, minutes later from Milton, US, 7 700 km away: impossible travel, high risk, blocked although the password was right",
        "alice",
        "correct-horse-battery",
        Some(MILTON),
    )
    .play()
    .await;
    mfa_steps(proxy, admin, &auth, &curl_ua).await;
    sign_in(
        "8. bob signs in with password123, a password from breach lists: the login service accepts it, authward does not hand out the token",
        "bob",
        "password123",
        Some(BOXFORD),
    )
    .play()
    .await;
    Step {
        title: "9. O'Brien signs up with a phone number (an apostrophe is a name, not an injection)".into(),
        curl: format!("curl -s http://{proxy}/api/signup -H 'content-type: application/json' -d '{signup}'"),
        to: proxy,
        method: "POST",
        path: "/api/signup",
        headers: vec![json.clone(), ua.clone()],
        body: Some(signup.to_string()),
    }
    .play()
    .await;
    Step {
        title: "10. A spoofed x-authward-decision header: removed before the login service sees it".into(),
        curl: format!("curl -s http://{proxy}/api/me -H 'x-authward-decision: allow'"),
        to: proxy,
        method: "GET",
        path: "/api/me",
        headers: vec![("x-authward-decision", "allow".into())],
        body: None,
    }
    .play()
    .await;
    pumping_burst(proxy, service).await;
    println!(
        "\n12. What authward counted (outcomes of profiled operations, web-ACL matches, risk, SMS and MFA decisions):"
    );
    println!(
        "  $ curl -s http://{admin}/metrics | grep -E 'authward_(profile_outcomes|rule_matches|risk_decisions|sms_decisions|mfa_[a-z]+)_total'"
    );
    if let Ok((_, text)) = send(admin, "GET", "/metrics", &[], None).await {
        let counted = |l: &&str| {
            l.starts_with("authward_profile_outcomes_total")
                || l.starts_with("authward_rule_matches_total")
                || l.starts_with("authward_risk_decisions_total")
                || l.starts_with("authward_sms_decisions_total")
                || l.starts_with("authward_mfa_")
        };
        for line in text.lines().filter(counted) {
            println!("  {line}");
        }
    }
    println!(
        "\n13. alice's event history, newest first: each sign-in with its place, risk, decision and outcome"
    );
    println!(
        "  $ curl -s 'http://{admin}/admin/v1/users/alice/events?limit=3' -H 'Authorization: Bearer {token}'"
    );
    // History writes run in the background: give them a moment.
    let mut history = Vec::new();
    for _ in 0..50 {
        if let Ok((200, text)) = send(
            admin,
            "GET",
            "/admin/v1/users/alice/events?limit=3",
            std::slice::from_ref(&auth),
            None,
        )
        .await
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
    Step {
        title: "14. The admin API needs the token: reload the config".into(),
        curl: format!("curl -s -X POST http://{admin}/admin/v1/reload -H 'Authorization: Bearer {token}'"),
        to: admin,
        method: "POST",
        path: "/admin/v1/reload",
        headers: vec![auth.clone()],
        body: None,
    }
    .play()
    .await;
}

/// Steps 5 to 7: alice enrolls a TOTP factor, a risky sign-in of hers is held, and her code releases it.
async fn mfa_steps(
    proxy: SocketAddr,
    admin: SocketAddr,
    auth: &(&'static str, String),
    curl_ua: &(&'static str, String),
) {
    let enrolled = Step {
        title: "5. The admin enrolls a TOTP factor for alice (in an app, the otpauth:// URI is a QR code)"
            .into(),
        curl: format!(
            "curl -s -X PUT http://{admin}/admin/v1/users/alice/mfa/totp -H '{}: {}'",
            auth.0, auth.1
        ),
        to: admin,
        method: "PUT",
        path: "/admin/v1/users/alice/mfa/totp",
        headers: vec![auth.clone()],
        body: None,
    }
    .play()
    .await;
    let secret = enrolled
        .and_then(|(_, text)| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| crate::mfa::totp::base32_decode(v["secret"].as_str()?));
    let login = r#"{"username":"alice","password":"correct-horse-battery"}"#;
    let headers = vec![
        ("content-type", "application/json".to_string()),
        curl_ua.clone(),
        ("x-forwarded-for", BOXFORD.to_string()),
    ];
    let challenged = Step {
        title: "6. alice's password from Boxford, but from a script on a device she never used (curl): new device and automation add up to medium, which asks for MFA; the login service's token is held, and a challenge is the answer".into(),
        curl: format!(
            "curl -s http://{proxy}/api/login -H 'content-type: application/json' -H 'X-Forwarded-For: {BOXFORD}' -d '{login}'"
        ),
        to: proxy,
        method: "POST",
        path: "/api/login",
        headers: headers.clone(),
        body: Some(login.to_string()),
    }
    .play()
    .await;
    let challenge = challenged
        .and_then(|(_, text)| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["challenge_id"].as_str().map(str::to_string));
    let (Some(secret), Some(challenge)) = (secret, challenge) else {
        println!("\n7. (skipped: no challenge to answer)");
        return;
    };
    let now = crate::clock::system().now_ms();
    let code = crate::mfa::totp::code(&secret, crate::mfa::totp::step_at(now), crate::mfa::totp::DIGITS);
    let verify = serde_json::json!({"challenge_id": challenge, "code": code}).to_string();
    Step {
        title: format!(
            "7. alice types the code her authenticator shows ({code}, computed here from the secret), from the same device and network: the held answer, the token, exactly as the login service sent it"
        ),
        curl: format!(
            "curl -s http://{proxy}/.authward/mfa/verify -H 'content-type: application/json' -H 'X-Forwarded-For: {BOXFORD}' -d '{verify}'"
        ),
        to: proxy,
        method: "POST",
        path: "/.authward/mfa/verify",
        headers,
        body: Some(verify),
    }
    .play()
    .await;
}

/// Step 11: a burst of code requests to consecutive numbers of a UK premium-rate range, each from
/// another address, as a pumper's script sends them.
async fn pumping_burst(proxy: SocketAddr, service: &login_service::LoginService) {
    const BURST: u32 = 10;
    let json = ("content-type", "application/json".to_string());
    println!(
        "\n11. SMS pumping: {BURST} codes asked for consecutive numbers of a UK premium-rate range (+44 909 879 00xx),\n   each from another address: stopped before the login service sends (and pays for) any"
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
