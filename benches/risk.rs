//! Criterion benchmarks of one risk evaluation: the store round trip that gathers the facts (memory
//! store, a user with history and counters) and the scoring itself.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use authward::config::EmbeddedSources;
use authward::geo::GeoInfo;
use authward::risk::stage::load_facts;
use authward::risk::user::{Place, UserHistory};
use authward::risk::{Facts, Risk};
use authward::store::memory::{MemoryLimits, MemoryStore};
use authward::store::{Store, record_key};

const NOW: u64 = 1_700_000_000_000;

fn milton() -> GeoInfo {
    GeoInfo {
        country: Some("US".into()),
        city: Some("Milton".into()),
        latitude: Some(47.2513),
        longitude: Some(-122.3149),
        asn: Some(209),
        ..Default::default()
    }
}

fn bench_risk(c: &mut Criterion) {
    let f = authward::config::parse_str(
        Path::new("risk.yaml"),
        "mode: enforce\nlabels: {'awswaf:bot': 10}",
    )
    .unwrap();
    let risk = Risk::compile(&f, Path::new(""), &EmbeddedSources::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(
        MemoryLimits::default(),
        authward::clock::system(),
    ));
    let mut history = UserHistory::default();
    for i in 0..10 {
        let place = Place {
            country: Some("GB"),
            city: Some("Boxford"),
            asn: Some(5089 + i),
            latitude: Some(51.75),
            longitude: Some(-1.25),
        };
        history.record_success(&[&format!("device-{i}")], &place, NOW - 3_600_000, 20);
    }
    rt.block_on(async {
        store
            .put(
                &record_key("user", "alice"),
                serde_json::to_vec(&history).unwrap().into(),
                None,
            )
            .await
            .unwrap();
        for _ in 0..3 {
            store.incr("risk:warm", 1, Duration::from_secs(60)).await.unwrap();
        }
    });
    let geo = milton();
    let labels = vec!["authward:operation:sign_in".to_string()];
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";
    let assess = |history: Option<&UserHistory>, counts: [u64; 5]| {
        risk.assess(
            &risk.global,
            &Facts {
                now_ms: NOW,
                ip: Some("216.160.83.56".parse().unwrap()),
                geo: Some(&geo),
                history,
                device_id: Some("device-3"),
                fingerprint: Some("fp:0123456789abcdef"),
                user_agent: Some(ua),
                labels: &labels,
                failures_user: counts[0],
                failures_ip: counts[1],
                failures_user_ip: counts[2],
                distinct_users_per_ip: counts[3],
                distinct_ips_per_user: counts[4],
                compromised_password: false,
            },
        )
    };
    c.bench_function("risk/assess_scoring_only", |b| {
        b.iter(|| black_box(assess(black_box(Some(&history)), [1, 2, 1, 1, 1])))
    });
    c.bench_function("risk/evaluate_with_memory_store", |b| {
        b.iter(|| {
            let (h, counts) = rt
                .block_on(load_facts(store.as_ref(), Some("alice"), "216.160.83.56"))
                .unwrap();
            black_box(assess(h.as_ref(), counts))
        })
    });
}

criterion_group!(benches, bench_risk);
criterion_main!(benches);
