//! Criterion benchmarks of the web ACL's text transformations: a typical chain over small and large fields.

use std::hint::black_box;
use std::time::Duration;

use authward::waf::transform::{Transform, apply_chain};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The chain a typical injection rule runs on a form or query value.
const CHAIN: [Transform; 4] = [
    Transform::UrlDecode,
    Transform::HtmlEntityDecode,
    Transform::Lowercase,
    Transform::CompressWhiteSpace,
];

/// A form-encoded sign-in value with some escapes, entities, capitals and runs of spaces, cut to `len`.
fn field(len: usize) -> Vec<u8> {
    const PIECE: &[u8] =
        b"user%40Example.COM+O%27Brien&amp;Co  Sign+In&#x3c;b&gt;  &quot;Remember%20Me&quot; ";
    PIECE.iter().copied().cycle().take(len).collect()
}

/// A value with nothing for the chain to change: the zero-copy path.
fn plain(len: usize) -> Vec<u8> {
    b"alice.smith-1987 signs in from home "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("transform_chain");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, len) in [("64B", 64), ("4KiB", 4096)] {
        let encoded = field(len);
        let clean = plain(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("encoded_{name}"), |b| {
            b.iter(|| apply_chain(black_box(&CHAIN), black_box(&encoded)).len())
        });
        group.bench_function(format!("plain_{name}"), |b| {
            b.iter(|| apply_chain(black_box(&CHAIN), black_box(&clean)).len())
        });
    }
    group.finish();
}

criterion_group!(benches, chain);
criterion_main!(benches);
