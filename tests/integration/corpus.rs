//! The shipped rule sets against attack and benign corpora placed in login fields: SQL injection and XSS
//! must be blocked (≥ 99 %), command injection (≥ 95 %), names, emails and passphrases must pass (≤ 0.1 %
//! blocked).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use authward::config::{EmbeddedSources, Mode, load_from};
use authward::ruletest::FileRequest;
use authward::store::memory::{MemoryLimits, MemoryStore};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn corpus(name: &str) -> Vec<String> {
    std::fs::read_to_string(format!("{REPO}/tests/corpus/{name}"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The shipped profiles and the common and login-protection rule sets, as a user enables them.
fn config() -> authward::config::Config {
    let mut s = EmbeddedSources::default();
    for f in [
        "profiles/json-login.yaml",
        "profiles/form-login.yaml",
        "common.yaml",
        "login-protection.yaml",
    ] {
        s.files.insert(
            PathBuf::from(format!("rules/{f}")),
            std::fs::read(format!("{REPO}/rules/{f}")).unwrap(),
        );
    }
    let main = "upstream: {url: 'http://127.0.0.1:1'}\ninclude: [profiles/json-login.yaml, profiles/form-login.yaml, common.yaml, login-protection.yaml]\nweb_acl:\n  rules:\n    - {name: common, priority: 10, group: common}\n    - {name: login, priority: 20, group: login-protection}\n";
    s.files
        .insert(PathBuf::from("rules/main.yaml"), main.as_bytes().to_vec());
    load_from(std::path::Path::new("rules/main.yaml"), Mode::Check, &s).unwrap()
}

/// Each value in the login fields an attacker or a user would type it in: the JSON sign-in's username,
/// the JSON sign-up's username, and the HTML form login's username.
fn requests(value: &str, n: usize) -> Vec<FileRequest> {
    let ip = IpAddr::V4(Ipv4Addr::from(0x6440_0000u32 + n as u32 * 4));
    let base = FileRequest {
        method: "POST".into(),
        path: "/api/login".into(),
        headers: Default::default(),
        body: None,
        json: Some(serde_json::json!({"username": value, "password": "correct horse battery staple"})),
        form: None,
        body_size: None,
        client_ip: Some(ip),
        ja4: None,
    };
    let signup = FileRequest {
        path: "/api/signup".into(),
        json: Some(
            serde_json::json!({"username": value, "password": "a-long-passphrase", "phone": "+14155550123"}),
        ),
        client_ip: Some(IpAddr::V4(Ipv4Addr::from(0x6440_0001u32 + n as u32 * 4))),
        ..base.clone()
    };
    let form = FileRequest {
        path: "/login".into(),
        json: None,
        form: Some(
            [
                ("username".to_string(), value.to_string()),
                ("password".to_string(), "pw".to_string()),
            ]
            .into(),
        ),
        client_ip: Some(IpAddr::V4(Ipv4Addr::from(0x6440_0002u32 + n as u32 * 4))),
        ..base.clone()
    };
    vec![base, signup, form]
}

/// How many of `values` were blocked in every login field (attacks) or in any field (benign).
async fn blocked(values: &[String], attack: bool) -> (usize, Vec<String>) {
    let config = config();
    let store = MemoryStore::new(MemoryLimits::default(), authward::clock::system());
    let mut count = 0;
    let mut misses = Vec::new();
    for (n, v) in values.iter().enumerate() {
        let mut results = Vec::new();
        for req in requests(v, n) {
            let prepared = req.prepare().unwrap();
            let (_, _, verdict) = authward::ruletest::evaluate(&config, &store, &prepared, false).await;
            results.push(verdict.action_name() == "block");
        }
        let hit = if attack {
            results.iter().all(|b| *b)
        } else {
            results.iter().any(|b| *b)
        };
        if hit {
            count += 1;
        }
        if hit != attack {
            misses.push(v.clone());
        }
    }
    (count, misses)
}

#[tokio::test]
async fn attacks_are_blocked_and_people_pass() {
    let sqli = corpus("sqli.txt");
    let xss = corpus("xss.txt");
    let cmdi = corpus("cmdi.txt");
    let benign = corpus("benign.txt");
    assert!(
        sqli.len() >= 300 && xss.len() >= 200 && cmdi.len() >= 40 && benign.len() >= 1000,
        "corpus sizes"
    );
    let (s, s_miss) = blocked(&sqli, true).await;
    let (x, x_miss) = blocked(&xss, true).await;
    let (c, c_miss) = blocked(&cmdi, true).await;
    let (b, b_hit) = blocked(&benign, false).await;
    let pct = |n: usize, d: usize| 100.0 * n as f64 / d as f64;
    println!(
        "corpus: SQL injection blocked in every login field: {s}/{} = {:.2} %",
        sqli.len(),
        pct(s, sqli.len())
    );
    println!(
        "corpus: XSS blocked in every login field: {x}/{} = {:.2} %",
        xss.len(),
        pct(x, xss.len())
    );
    println!(
        "corpus: command injection blocked in every login field: {c}/{} = {:.2} %",
        cmdi.len(),
        pct(c, cmdi.len())
    );
    println!(
        "corpus: benign values blocked in any login field: {b}/{} = {:.2} %",
        benign.len(),
        pct(b, benign.len())
    );
    assert!(pct(s, sqli.len()) >= 99.0, "SQLi missed: {s_miss:#?}");
    assert!(pct(x, xss.len()) >= 99.0, "XSS missed: {x_miss:#?}");
    assert!(
        pct(c, cmdi.len()) >= 95.0,
        "command injection missed: {c_miss:#?}"
    );
    assert!(pct(b, benign.len()) <= 0.1, "benign blocked: {b_hit:#?}");
}
