//! `authward check` and `authward schema`: positions that rule authors can act on.

use std::process::Command;

use crate::harness::bin;

/// Runs `authward check` on one file with `text`; returns (exit success, stdout).
fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(bin()).arg("check").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "FILE");
    (out.status.success(), stdout)
}

const GOOD: &str = "\
upstream:
  url: http://127.0.0.1:3000
  timeout: 5s
profiles:
  - name: login
    operation: sign_in
    match:
      path: {regex: '^/api/v[0-9]+/login$'}
    fields:
      username: {json: /username}
    outcome:
      success: {status: [200]}
";

#[test]
fn a_good_file_passes() {
    let (ok, out) = check(GOOD);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "FILE: ok");
}

#[test]
fn mistakes_point_at_their_line_and_column() {
    let cases: &[(&str, &str, &str)] = &[
        // (what, file text, expected "FILE:LINE:COL: ..." prefix and a word of the message)
        (
            "unknown key",
            &GOOD.replace("  timeout: 5s", "  timeout: 5s\n  retries: 3"),
            "FILE:4:3:|retries",
        ),
        (
            "bad duration",
            &GOOD.replace("timeout: 5s", "timeout: 5 parsecs"),
            "FILE:3:12:|duration",
        ),
        (
            "bad regex",
            &GOOD.replace("'^/api/v[0-9]+/login$'", "'^/api/v[0-9+/login$'"),
            "FILE:8:21:|regular expression",
        ),
        (
            "missing required field",
            &GOOD.replace("    operation: sign_in\n", ""),
            "FILE:5:5:|operation",
        ),
        (
            "bad indentation",
            &GOOD.replace("  timeout: 5s", "   timeout: 5s"),
            "FILE:3:11:|mapping values are not allowed",
        ),
        (
            "section not available",
            &format!("{GOOD}challenge:\n  issuer: demo\n"),
            "FILE:14:3:|not available",
        ),
        (
            "mfa key variable unset",
            &format!("{GOOD}mfa:\n  key_env: AUTHWARD_TEST_UNSET_KEY\n"),
            "FILE:14:3:|mfa.key_env",
        ),
        (
            "risk thresholds out of order",
            &format!("{GOOD}risk:\n  thresholds: {{low: 50, medium: 40, high: 90}}\n"),
            "FILE:14:3:|low <= medium <= high",
        ),
        (
            "wrong value type",
            &GOOD.replace("timeout: 5s", "timeout: [5s]"),
            "FILE:3:|expected a duration",
        ),
    ];
    for (what, text, expected) in cases {
        let (ok, out) = check(text);
        assert!(!ok, "{what}: should fail");
        let (prefix, word) = expected.split_once('|').unwrap_or((expected, ""));
        let line = out.lines().next().unwrap_or("");
        assert!(line.starts_with(prefix), "{what}: expected {prefix}…, got {out}");
        assert!(
            line.contains(word),
            "{what}: expected the message to mention {word:?}, got {out}"
        );
    }
}

#[test]
fn include_globs_merge_rule_files_and_report_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("main.yaml"),
        "upstream:\n  url: http://127.0.0.1:3000\ninclude:\n  - rules/*.yaml\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/a.yaml"),
        "profiles:\n  - name: a\n    operation: sign_in\n    match: {path: {exact: /a}}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("rules/b.yaml"), "profiles:\n  - name: b\n    operation: sign_up\n    match: {path: {exact: /b}}\n    fields:\n      phone: {xml: /p}\n").unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg(dir.path().join("main.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("rules/b.yaml:6:15: unknown variant `xml`"),
        "{stdout}"
    );
    assert!(!stdout.contains("a.yaml"), "{stdout}");

    std::fs::write(
        dir.path().join("main.yaml"),
        "upstream:\n  url: http://127.0.0.1:3000\ninclude:\n  - nothing/*.yaml\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg(dir.path().join("main.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("main.yaml:4:5: include `nothing/*.yaml` matched no file"),
        "{stdout}"
    );
}

#[test]
fn the_committed_schema_is_current() {
    let out = Command::new(bin()).arg("schema").output().unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/authward.schema.json")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        committed,
        "run `authward schema > docs/authward.schema.json` after changing the config types"
    );
}

#[test]
fn shipped_rule_files_check_clean() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(bin())
        .arg("check")
        // The demo's `mfa` section reads its key from the environment, as `serve` would.
        .env("AUTHWARD_MFA_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .arg(format!("{root}/rules/demo.yaml"))
        .args(
            ["cognito", "form-login", "json-login", "oauth2-token"]
                .map(|p| format!("{root}/rules/profiles/{p}.yaml")),
        )
        .args(
            [
                "common",
                "login-protection",
                "ip-reputation",
                "geo",
                "tests/config",
                "packs/cognito-best-practices",
            ]
            .map(|p| format!("{root}/rules/{p}.yaml")),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn schema_describes_every_section() {
    let out = Command::new(bin()).arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let props = schema["properties"].as_object().unwrap();
    for section in [
        "listen",
        "tls",
        "admin",
        "upstream",
        "trusted_proxies",
        "store",
        "geoip",
        "profiles",
        "web_acl",
        "sms",
        "risk",
        "policies",
        "mfa",
        "challenge",
        "events",
        "include",
    ] {
        assert!(props.contains_key(section), "schema lacks {section}");
    }
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown keys are errors for editors too"
    );
}
