//! Rule authors' tools on the real binary: `test`, `explain` and `check`'s web-ACL lints; the shipped
//! rule sets measured against attack and benign corpora in login fields; and their patterns' compiled size.

use std::process::Command;

use crate::harness::bin;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn shipped_rule_sets_pass_their_cases() {
    let file = format!("{REPO}/rules/tests/rulesets.test.yaml");
    let out = Command::new(bin()).arg("test").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let cases = std::fs::read_to_string(&file)
        .unwrap()
        .matches("\n  - name:")
        .count();
    assert_eq!(
        stdout.lines().last().unwrap(),
        format!("{cases} passed, 0 failed"),
        "{stdout}"
    );
}

#[test]
fn a_failing_case_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.test.yaml");
    std::fs::write(
        &file,
        format!(
            "config: {REPO}/rules/tests/config.yaml\ncases:\n  - name: wrong on purpose\n    request: {{method: GET, path: /, client_ip: 216.160.83.56}}\n    expect: {{action: block}}\n  - name: right\n    request: {{method: GET, path: /, client_ip: 216.160.83.56}}\n    expect: {{action: allow, rule: none}}\n"
        ),
    )
    .unwrap();
    let out = Command::new(bin()).arg("test").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("expected action block, got allow"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last().unwrap(), "1 passed, 1 failed");
}

#[test]
fn explain_shows_each_rule_and_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("req.yaml");
    std::fs::write(
        &req,
        "method: POST\npath: /api/login\njson: {username: \"admin' OR 1=1--\", password: hunter2-secret}\nclient_ip: 2.125.160.216\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["explain", "--config"])
        .arg(format!("{REPO}/rules/tests/config.yaml"))
        .arg("--request")
        .arg(&req)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("country GB"), "{stdout}");
    assert!(stdout.contains("profile   json-login (sign_in)"), "{stdout}");
    assert!(stdout.contains("MATCH common/sqli-login-fields"), "{stdout}");
    assert!(stdout.contains("sqli on json_body: match (sqli: "), "{stdout}");
    assert!(
        stdout.contains("byte_match on all_query_args after [url_decode, lowercase]: no match (0 values)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decision  block (common/sqli-login-fields)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2-secret"),
        "the password never shows: {stdout}"
    );
}

#[test]
fn check_lints_rule_files_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.yaml");
    let text = "\
web_acl:
  rules:
    - name: a
      priority: 1
      statement: {label_match: {key: 'app:never-added'}}
    - name: a
      priority: 1
      statement: {byte_match: {field: method, position: exactly, value: GET}}
    - name: everything
      priority: 5
      action: block
      statement: {ip_set: {cidrs: [0.0.0.0/0, '::/0']}}
    - name: unreachable
      priority: 9
      statement: {byte_match: {field: method, position: exactly, value: POST}}
";
    std::fs::write(&file, text).unwrap();
    let out = Command::new(bin()).arg("check").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&file.display().to_string(), "F");
    assert!(!out.status.success());
    for expected in [
        "F:6:7: web_acl: rule name `a` is used twice",
        "F:6:7: web_acl: rules `a` and `a` have the same priority 1",
        "F:3:7: rule `a` matches label `app:never-added`, but no earlier rule adds it",
        "F:13:7: rule `unreachable` can never run: rule `everything` before it matches every request",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in\n{stdout}");
    }

    std::fs::write(
        &file,
        "web_acl:\n  rules:\n    - name: x\n      priority: 1\n      statement: {json_match: {}}\n",
    )
    .unwrap();
    let out = Command::new(bin()).arg("check").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&file.display().to_string(), "F");
    assert!(
        stdout.starts_with("F:5:") && stdout.contains("unknown variant `json_match`"),
        "{stdout}"
    );
}

#[test]
fn imported_aws_waf_rules_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    for (sample, unconverted) in [("web-acl", false), ("unconvertible", true)] {
        let out = Command::new(bin())
            .args(["import", "aws-waf"])
            .arg(format!("{REPO}/tests/aws-waf/{sample}.json"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.contains("not converted: rule"), unconverted, "{stderr}");
        // The output is a rule file that `check` accepts, next to the MaxMind databases it may need.
        let file = dir.path().join(format!("{sample}.yaml"));
        let geo = format!(
            "geoip:\n  city: {REPO}/data/geoip/GeoIP2-City-Test.mmdb\n  asn: {REPO}/data/geoip/GeoLite2-ASN-Test.mmdb\n"
        );
        std::fs::write(&file, format!("{geo}{}", String::from_utf8_lossy(&out.stdout))).unwrap();
        let check = Command::new(bin()).arg("check").arg(&file).output().unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
}

/// Every regular expression in the shipped rule sets compiles within 256 KiB. Each costs memory for as
/// long as the config is loaded (its programs and its DFA cache): a bounded repetition of a Unicode
/// class (`[^}]{1,100}`) expands a pattern a hundredfold, and six such patterns once added 13 MiB at start
/// and broke the 64 MB target of the load harness.
#[test]
fn shipped_rule_patterns_stay_small() {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("pattern", serde_json::Value::String(p)) => out.push(p.clone()),
                        ("patterns", serde_json::Value::Array(ps)) => {
                            out.extend(ps.iter().filter_map(|p| p.as_str().map(str::to_string)))
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut patterns = Vec::new();
    for entry in glob::glob(&format!("{REPO}/rules/**/*.yaml")).unwrap() {
        let path = entry.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        walk(&doc, &mut patterns);
    }
    assert!(patterns.len() >= 20, "found only {} patterns", patterns.len());
    let big: Vec<&String> = patterns
        .iter()
        .filter(|p| {
            regex::bytes::RegexBuilder::new(p)
                .size_limit(1 << 18)
                .build()
                .is_err()
        })
        .collect();
    assert!(big.is_empty(), "patterns over 256 KiB compiled: {big:#?}");
}
