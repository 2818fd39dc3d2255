//! `authward breach build`: a hash list in, a filter file out that `BreachFilter::open` reads.

use std::io::Write;
use std::process::{Command, Stdio};

use sha1::{Digest, Sha1};

use authward::risk::breach::BreachFilter;

use crate::harness::bin;

/// A Pwned-Passwords-style list (`SHA1HEX:COUNT`, CRLF, a blank line) of `password123` and 999 others.
fn hash_list() -> (Vec<String>, String) {
    let mut passwords: Vec<String> = (0..999).map(|i| format!("breached-{i}")).collect();
    passwords.push("password123".to_string());
    let mut text = String::from("\r\n");
    for (i, p) in passwords.iter().enumerate() {
        text.push_str(&format!(
            "{}:{}\r\n",
            hex::encode_upper(Sha1::digest(p.as_bytes())),
            i + 1
        ));
    }
    (passwords, text)
}

#[test]
fn build_writes_a_filter_that_open_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (passwords, text) = hash_list();
    let input = dir.path().join("pwnedpasswords.txt");
    let output = dir.path().join("breach.bin");
    std::fs::write(&input, &text).unwrap();
    let out = Command::new(bin())
        .args(["breach", "build", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&output).unwrap().len();
    assert!(
        stdout.starts_with(&format!("{}: 1000 keys, {size} bytes, ", output.display())),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("(1001 lines, 1000 hashes, 0 under --min-count)"),
        "{stdout}"
    );

    let filter = BreachFilter::open(&output).unwrap();
    assert_eq!(filter.key_count(), 1000);
    assert!(passwords.iter().all(|p| filter.contains_password(p)));
    let others = (0..10_000)
        .filter(|i| filter.contains_password(&format!("fine-{i}")))
        .count();
    assert!(others < 60, "{others} false positives in 10 000");
}

#[test]
fn build_reads_stdin_and_names_a_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, text) = hash_list();
    let output = dir.path().join("breach.bin");
    let run = |input: &str| {
        let mut child = Command::new(bin())
            .args(["breach", "build", "--input", "-", "--output"])
            .arg(&output)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&text);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        BreachFilter::open(&output)
            .unwrap()
            .contains_password("password123")
    );

    std::fs::remove_file(&output).unwrap();
    let out = run(&format!("{text}not a hash\n"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("-: line 1002: expected a 40-digit hexadecimal SHA-1"),
        "{stderr}"
    );
    assert!(!output.exists());
}
