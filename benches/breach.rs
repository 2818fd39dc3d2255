//! Compromised-password filter benchmarks: lookups on a memory-mapped filter, and its build.
//!
//! `cargo bench --bench breach` builds a 10^7-key filter from a synthetic hash list, once, and prints its
//! build time, size and measured false-positive rate; criterion then times lookups on it and the build
//! of 10^6 keys. `AUTHWARD_BREACH_100M=1` adds the same for 10^8 keys (4.4 GB of generated lines, about
//! 3.5 GB of memory, a few minutes). `cargo test --bench breach` runs each benchmark once on 10^5 keys.

use std::hint::black_box;
use std::io::{self, BufRead, Read};
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};

use authward::risk::breach::BreachFilter;

/// SplitMix64, the generator of every synthetic hash.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn next_sha1(state: &mut u64) -> [u8; 20] {
    let mut digest = [0u8; 20];
    for chunk in digest.chunks_mut(8) {
        let bytes = splitmix(state).to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    digest
}

/// A Pwned Passwords list of `left` pseudo-random `SHA1HEX:COUNT` lines, generated as it is read, so
/// that 10^8 lines need no 4.4 GB file.
struct SyntheticList {
    state: u64,
    left: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl SyntheticList {
    fn new(seed: u64, lines: u64) -> Self {
        Self {
            state: seed,
            left: lines,
            buf: Vec::with_capacity(64 * 4096),
            pos: 0,
        }
    }
}

impl BufRead for SyntheticList {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() && self.left > 0 {
            self.buf.clear();
            self.pos = 0;
            let lines = self.left.min(4096);
            for _ in 0..lines {
                let digest = next_sha1(&mut self.state);
                let mut hex = [0u8; 40];
                hex::encode_to_slice(digest, &mut hex).map_err(io::Error::other)?;
                hex.make_ascii_uppercase();
                self.buf.extend_from_slice(&hex);
                self.buf
                    .extend_from_slice(format!(":{}\n", digest[0] as u32 * 37 + 1).as_bytes());
            }
            self.left -= lines;
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount;
    }
}

impl Read for SyntheticList {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Whether criterion measures (`cargo bench`) rather than runs each benchmark once (`cargo test`).
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// Peak and current resident memory, from /proc/self/status.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("RssAnon") || l.starts_with("RssFile"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds a filter of `keys` synthetic hashes through `BreachFilter::build`, maps it, and prints the
/// build time, size, false-positive rate and memory.
fn build_and_report(dir: &Path, label: &str, keys: u64) -> BreachFilter {
    let path = dir.join(format!("{label}.bin"));
    let started = Instant::now();
    let stats = BreachFilter::build(SyntheticList::new(1, keys), &path, |_| {}).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "breach/{label}: built {} keys in {seconds:.1} s: {} bytes ({:.3} bytes/key); after the build: {}",
        stats.keys,
        stats.bytes,
        stats.bytes as f64 / stats.keys as f64,
        memory(),
    );
    let filter = BreachFilter::open(&path).unwrap();
    let mut member = 1;
    assert!((0..10_000).all(|_| filter.contains_sha1(&next_sha1(&mut member))));
    let probes = 1_000_000;
    let mut other = 2;
    let positives = (0..probes)
        .filter(|_| filter.contains_sha1(&next_sha1(&mut other)))
        .count();
    eprintln!(
        "breach/{label}: {:.3} % false positives in {probes} random probes; after them: {}",
        positives as f64 * 100.0 / probes as f64,
        memory(),
    );
    filter
}

/// Lookups of random SHA-1s (what a lookup costs does not depend on the answer: always three slots),
/// and of passwords, which adds their SHA-1.
fn bench_lookups(c: &mut Criterion, label: &str, filter: &BreachFilter) {
    let mut state = 3;
    c.bench_function(&format!("breach/contains_sha1_{label}_mapped"), |b| {
        b.iter(|| filter.contains_sha1(black_box(&next_sha1(&mut state))))
    });
    let passwords: Vec<String> = (0..65_536).map(|i| format!("Summer{i}!x")).collect();
    let mut i = 0;
    c.bench_function(&format!("breach/contains_password_{label}_mapped"), |b| {
        b.iter(|| {
            i = (i + 1) % passwords.len();
            filter.contains_password(black_box(&passwords[i]))
        })
    });
}

fn bench_100m(c: &mut Criterion) {
    if std::env::var_os("AUTHWARD_BREACH_100M").is_none_or(|v| v != "1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let filter = build_and_report(dir.path(), "100M", 100_000_000);
    bench_lookups(c, "100M", &filter);
}

fn bench_10m(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (label, keys) = if measuring() {
        ("10M", 10_000_000)
    } else {
        ("100k", 100_000)
    };
    let filter = build_and_report(dir.path(), label, keys);
    bench_lookups(c, label, &filter);

    let (label, keys) = if measuring() {
        ("1M", 1_000_000)
    } else {
        ("10k", 10_000)
    };
    let path = dir.path().join("build.bin");
    let mut group = c.benchmark_group("breach");
    group.sample_size(10);
    group.bench_function(format!("build_{label}"), |b| {
        b.iter(|| BreachFilter::build(SyntheticList::new(5, keys), &path, |_| {}).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_100m, bench_10m);
criterion_main!(benches);
