//! Criterion benchmarks of the SMS guard: one whole decision, and number classification with the
//! guard's per-region index against the `phonenumber` crate's own parser and classifier.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

use authward::clock;
use authward::config::{Mode, load};
use authward::sms::number::{NumberType, PhoneNumber, Region};
use authward::sms::{Decision, SendRequest};
use authward::store::memory::{MemoryLimits, MemoryStore};
use phonenumber::metadata::DATABASE;

/// One example mobile (or fixed-line) number of every region in the metadata, in E.164.
fn every_region() -> Vec<String> {
    let mut out = Vec::new();
    for code in 1..1000u16 {
        for meta in DATABASE.by_code(&code).unwrap_or_default() {
            let d = meta.descriptors();
            let example = d
                .mobile()
                .and_then(|x| x.example())
                .or(d.fixed_line().and_then(|x| x.example()));
            if let Some(e) = example {
                out.push(format!("+{code}{e}"));
            }
        }
    }
    out
}

fn bench_numbers(c: &mut Criterion) {
    let numbers = every_region();
    let mut i = 0;
    c.bench_function("sms/number_index_every_region", |b| {
        b.iter(|| {
            i = (i + 1) % numbers.len();
            PhoneNumber::parse(black_box(&numbers[i]), None).map(|n| n.kind())
        })
    });
    let mut i = 0;
    c.bench_function("sms/phonenumber_crate_every_region_baseline", |b| {
        b.iter(|| {
            i = (i + 1) % numbers.len();
            phonenumber::parse(None, black_box(&numbers[i])).map(|n| n.number_type(&DATABASE))
        })
    });
}

fn bench_decision(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.yaml");
    let yaml = format!(
        "include:\n  - {0}/rules/profiles/json-login.yaml\nsms:\n  blocked_prefixes: {{lists: [{0}/rules/sms/premium-prefixes.txt]}}\n  \
         budget: {{prices: {0}/rules/sms/prices.yaml, hourly: {{alert: 1000000, cap: 1000000000}}}}\n",
        root.display()
    );
    std::fs::write(&path, yaml).unwrap();
    let cfg = load(&path, Mode::Check).unwrap();
    let guard = cfg.sms.clone();
    let clock = clock::system();
    let store = MemoryStore::new(MemoryLimits::default(), clock.clone());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // British mobile numbers spread over the plan, so no range or number repeats often.
    let gb = Region::new("GB").unwrap();
    let mut x: u64 = 7;
    let phones: Vec<String> = std::iter::from_fn(|| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Some(format!("+447{:09}", (x >> 20) % 1_000_000_000))
    })
    .filter(|p| {
        PhoneNumber::parse(p, Some(&gb))
            .is_ok_and(|n| n.region() == Some("GB") && n.kind() == Some(NumberType::Mobile))
    })
    .take(4096)
    .collect();
    let store = Arc::new(store);
    let request = |i: u32| SendRequest {
        phone: Some(&phones[i as usize % phones.len()]),
        default_region: None,
        username: None,
        client_ip: std::net::IpAddr::from(0x0b00_0000u32.wrapping_add(i.wrapping_mul(257)).to_be_bytes()),
        ip_country: Some("GB"),
        labels: &[],
    };
    // What is measured is a decision that runs every check: nearly all of these are allowed (a new /24
    // per request, numbers spread over the plan).
    let allowed = (0..1000u32)
        .filter(|i| {
            let v = rt.block_on(guard.check(&request(1_000_000 + i), store.as_ref(), clock.now_ms()));
            v.decision == Decision::Allow
        })
        .count();
    assert!(allowed >= 990, "{allowed} of 1000 allowed");
    let mut i: u32 = 0;
    c.bench_function("sms/check_allow_default_checks_and_budget", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let req = request(i);
            let v = rt.block_on(guard.check(black_box(&req), store.as_ref(), clock.now_ms()));
            black_box(v.decision)
        })
    });
}

criterion_group!(benches, bench_numbers, bench_decision);
criterion_main!(benches);
