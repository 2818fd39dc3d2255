//! Criterion benchmarks of the per-request hot paths: client address, body buffering, profile matching
//! and store operations, each against the naive way of doing the same.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};

use authward::config::{Mode, load};
use authward::context::client_ip;

fn config(yaml: &str) -> authward::config::Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, yaml).unwrap();
    load(&path, Mode::Check).unwrap()
}

fn bench_client_ip(c: &mut Criterion) {
    let cfg = config("trusted_proxies: [10.0.0.0/8, 192.168.0.0/16, 172.16.0.0/12, '::1']\n");
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        "203.0.113.7, 10.1.1.1, 192.168.3.4".parse().unwrap(),
    );
    let peer = "10.0.0.2".parse().unwrap();
    c.bench_function("context/client_ip_trusted_chain", |b| {
        b.iter(|| client_ip(black_box(&cfg), black_box(peer), black_box(&headers)))
    });
    let untrusted = "203.0.113.9".parse().unwrap();
    c.bench_function("context/client_ip_untrusted_peer", |b| {
        b.iter(|| client_ip(black_box(&cfg), black_box(untrusted), black_box(&headers)))
    });
}

fn bench_profiles(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = format!("include:\n  - {0}/rules/profiles/*.yaml\n", root.display());
    let cfg = config(&yaml);
    let headers = HeaderMap::new();
    c.bench_function("profile/candidates_miss", |b| {
        b.iter(|| {
            cfg.profiles
                .candidates(
                    black_box(&Method::GET),
                    black_box("/static/app.js"),
                    black_box(&headers),
                )
                .is_some()
        })
    });
    c.bench_function("profile/candidates_hit", |b| {
        b.iter(|| {
            cfg.profiles
                .candidates(
                    black_box(&Method::POST),
                    black_box("/api/login"),
                    black_box(&headers),
                )
                .is_some()
        })
    });
    let body = br#"{"username":"alice","password":"correct-horse-battery"}"#;
    c.bench_function("profile/resolve_json_login", |b| {
        b.iter(|| {
            let cands = cfg
                .profiles
                .candidates(&Method::POST, "/api/login", &headers)
                .unwrap();
            cands.resolve(None, &headers, black_box(body)).is_some()
        })
    });
}

criterion_group!(benches, bench_client_ip, bench_profiles);
criterion_main!(benches);
