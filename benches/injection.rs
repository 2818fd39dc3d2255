//! Criterion benchmarks of the web ACL's SQL-injection and XSS detectors on 64-byte fields.

use authward::waf::injection::{Sensitivity, detect_sqli, detect_xss};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// A 64-byte benign sign-up value: a name with an apostrophe and a hyphen, and an email.
const BENIGN: &[u8] = b"Siobhan O'Neil-Smith <siobhan.oneil-smith+news@example.co.uk> ok";
/// A 64-byte SQL injection as it would arrive in a username field.
const SQLI: &[u8] = b"admin' OR 1=1 UNION SELECT username,password FROM users LIMIT 1#";
/// A 64-byte XSS payload as it would arrive in a name field.
const XSS: &[u8] = b"\"><img src=x onerror=alert(document.cookie)>Jane Doe the Second!";

fn bench(c: &mut Criterion) {
    assert_eq!((BENIGN.len(), SQLI.len(), XSS.len()), (64, 64, 64));
    let mut g = c.benchmark_group("injection");
    g.bench_function("sqli_benign_64b", |b| {
        b.iter(|| detect_sqli(black_box(BENIGN), Sensitivity::Low))
    });
    g.bench_function("sqli_attack_64b", |b| {
        b.iter(|| detect_sqli(black_box(SQLI), Sensitivity::Low))
    });
    g.bench_function("xss_benign_64b", |b| {
        b.iter(|| detect_xss(black_box(BENIGN), Sensitivity::Low))
    });
    g.bench_function("xss_attack_64b", |b| {
        b.iter(|| detect_xss(black_box(XSS), Sensitivity::Low))
    });
    g.bench_function("sqli_benign_64b_high", |b| {
        b.iter(|| detect_sqli(black_box(BENIGN), Sensitivity::High))
    });
    g.bench_function("xss_benign_64b_high", |b| {
        b.iter(|| detect_xss(black_box(BENIGN), Sensitivity::High))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
