//! Criterion benchmarks of the per-request hot paths: client address, body buffering, profile matching
//! and store operations, each against the naive way of doing the same.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};

use authward::config::{Mode, load};
use authward::context::client_ip;
use authward::store::Store;
use authward::store::memory::{MemoryLimits, MemoryStore};

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
            cands
                .resolve(None, &headers, black_box(body))
                .is_ok_and(|m| m.is_some())
        })
    });
}

/// A naive GCRA over one `Mutex<HashMap>`: the baseline the sharded store must beat under contention.
struct NaiveGcra(std::sync::Mutex<std::collections::HashMap<String, u128>>);

impl NaiveGcra {
    fn take(&self, key: &str, limit: u32, period: Duration, now_ns: u128) -> bool {
        let interval = period.as_nanos() / u128::from(limit);
        let tolerance = period.as_nanos() - interval;
        let mut map = self.0.lock().unwrap();
        let tat = map.get(key).copied().unwrap_or(now_ns).max(now_ns);
        if tat - now_ns > tolerance {
            return false;
        }
        map.insert(key.to_string(), tat + interval);
        true
    }
}

fn bench_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new(
        MemoryLimits::default(),
        authward::clock::system(),
    ));
    let naive = Arc::new(NaiveGcra(std::sync::Mutex::new(std::collections::HashMap::new())));
    let keys: Arc<Vec<String>> = Arc::new(
        (0..10_000)
            .map(|i| format!("rl:ip:10.0.{}.{}", i / 256, i % 256))
            .collect(),
    );
    let start = std::time::Instant::now();
    // 1 000 takes over 10 000 keys per iteration, in one async context (the runtime's cost is not measured).
    c.bench_function("store/memory_rate_take_x1000", |b| {
        b.iter(|| {
            rt.block_on(async {
                for k in keys.iter().take(1000) {
                    black_box(
                        store
                            .rate_take(k, 100, Duration::from_secs(60), 1)
                            .await
                            .unwrap()
                            .allowed,
                    );
                }
            })
        })
    });
    c.bench_function("store/naive_mutex_hashmap_gcra_x1000", |b| {
        b.iter(|| {
            rt.block_on(async {
                for k in keys.iter().take(1000) {
                    black_box(naive.take(k, 100, Duration::from_secs(60), start.elapsed().as_nanos()));
                }
            })
        })
    });
    // Contention: 8 tasks on 2 worker threads, 1 000 takes each, over overlapping keys.
    c.bench_function("store/memory_rate_take_8x1000_concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for t in 0..8usize {
                    let (store, keys) = (store.clone(), keys.clone());
                    set.spawn(async move {
                        for k in keys.iter().skip(t * 100).take(1000) {
                            black_box(store.rate_take(k, 100, Duration::from_secs(60), 1).await.is_ok());
                        }
                    });
                }
                while set.join_next().await.is_some() {}
            })
        })
    });
    c.bench_function("store/naive_mutex_hashmap_gcra_8x1000_concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for t in 0..8usize {
                    let (naive, keys) = (naive.clone(), keys.clone());
                    set.spawn(async move {
                        for k in keys.iter().skip(t * 100).take(1000) {
                            black_box(naive.take(
                                k,
                                100,
                                Duration::from_secs(60),
                                start.elapsed().as_nanos(),
                            ));
                        }
                    });
                }
                while set.join_next().await.is_some() {}
            })
        })
    });
}

criterion_group!(benches, bench_client_ip, bench_profiles, bench_store);
criterion_main!(benches);
