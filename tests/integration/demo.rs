//! `authward demo`: the built-in login service, the proxy and the tour, from the binary alone.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{bin, client, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_its_tour_from_the_binary_alone() {
    let (proxy, upstream, admin) = (free_port(), free_port(), free_port());
    // Run from an empty directory: everything the demo needs is inside the binary.
    let empty = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .current_dir(empty.path())
        .args(["demo", "--listen", &format!("127.0.0.1:{proxy}")])
        .args(["--upstream-listen", &format!("127.0.0.1:{upstream}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .env("AUTHWARD_ADMIN_TOKEN", "demo-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            if line.contains("authward demo is running") {
                let _ = tx.send(all.clone());
            }
        }
    });
    let tour = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the tour finishes");
    // Each step's real answer is printed after its command.
    let answers: Vec<&str> = tour
        .lines()
        .filter(|l| l.trim_start().starts_with("-> "))
        .collect();
    assert_eq!(answers.len(), 15, "{tour}");
    assert!(
        answers[0].contains("-> 200") && answers[0].contains("token"),
        "sign-in: {tour}"
    );
    assert!(answers[1].contains("-> 403"), "SQL injection: {tour}");
    assert!(answers[2].contains("-> 401"), "wrong password: {tour}");
    assert!(
        answers[3].contains("-> 403")
            && answers[3].contains("sign_in_blocked")
            && !answers[3].contains("token"),
        "impossible travel: {tour}"
    );
    assert!(
        answers[4].contains("-> 200") && answers[4].contains("otpauth://totp/authward-demo:alice?secret="),
        "alice's TOTP enrollment: {tour}"
    );
    assert!(
        answers[5].contains("-> 401") && answers[5].contains("mfa_required") && !answers[5].contains("token"),
        "the step-up holds the token: {tour}"
    );
    assert!(
        answers[6].contains("-> 200") && answers[6].contains("\"token\""),
        "the right code releases it: {tour}"
    );
    assert!(
        answers[7].contains("-> 403")
            && answers[7].contains("sign_in_blocked")
            && !answers[7].contains("token"),
        "bob's breached password: {tour}"
    );
    assert!(
        answers[8].contains("-> 201") && answers[8].contains("O'Brien"),
        "O'Brien's sign-up: {tour}"
    );
    assert!(answers[9].contains("-> 401"), "spoofed header: {tour}");
    assert!(
        answers[10].contains("10 × 429 sms_blocked (number_type)")
            && answers[10].contains("the login service sent 0 SMS"),
        "pumping burst: {tour}"
    );
    let history = &answers[11..14];
    assert!(
        history
            .iter()
            .any(|l| l.contains("sign_in blocked from Milton (US): risk high")
                && l.contains("impossible_travel")
                && l.contains("decision block")),
        "alice's history shows the blocked trip: {tour}"
    );
    assert!(
        history
            .iter()
            .any(|l| l.contains("mfa_verify success") || l.contains("sign_in challenged")),
        "alice's history shows the step-up: {tour}"
    );
    assert!(
        answers[14].contains("-> 200") && answers[14].contains("ok"),
        "reload: {tour}"
    );
    assert!(
        tour.contains(
            "authward_risk_decisions_total{decision=\"require_mfa\",level=\"medium\",mode=\"enforce\"} 1"
        ),
        "the script on a new device is medium: {tour}"
    );
    assert!(
        tour.contains("authward_mfa_challenges_total{result=\"held\"} 1")
            && tour.contains("authward_mfa_verifications_total{result=\"verified\"} 1"),
        "{tour}"
    );
    assert!(
        tour.contains("authward_risk_decisions_total{decision=\"block\",level=\"high\",mode=\"enforce\"} 1"),
        "impossible travel is high: {tour}"
    );
    assert!(
        tour.contains(
            "authward_risk_decisions_total{decision=\"block\",level=\"medium\",mode=\"enforce\"} 1"
        ),
        "a breached password blocks whatever the level: {tour}"
    );
    assert!(
        tour.contains(
            "authward_sms_decisions_total{country=\"GB\",decision=\"block\",reason=\"number_type\"} 10"
        ),
        "{tour}"
    );
    assert!(
        tour.contains("authward_sms_decisions_total{country=\"US\",decision=\"allow\",reason=\"none\"} 1"),
        "O'Brien's sign-up: {tour}"
    );
    assert!(
        tour.contains("authward_rule_matches_total{action=\"block\",rule=\"common/sqli-login-fields\"} 1"),
        "{tour}"
    );
    assert!(
        tour.contains("{operation=\"sign_in\",outcome=\"success\",profile=\"json-login\"} 4"),
        "{tour}"
    );
    assert!(
        tour.contains("{operation=\"sign_in\",outcome=\"failure\",profile=\"json-login\"} 1"),
        "{tour}"
    );
    assert!(
        tour.contains("{operation=\"sign_up\",outcome=\"success\",profile=\"json-signup\"} 1"),
        "{tour}"
    );

    // The demo keeps serving: the HTML login page comes through the proxy.
    let page = client()
        .get(format!("http://127.0.0.1:{proxy}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form"));
    let _ = child.kill();
    let _ = child.wait();
}
