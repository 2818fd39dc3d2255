//! Criterion benchmarks of the embedded store's records: `get` latency against raw redb reads (inline, on
//! the blocking pool, on a small thread pool) and the memory store, and durable `put` throughput with
//! concurrent writers (group commit) against one commit per write.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redb::{Database, TableDefinition};

use authward::store::embedded::{EmbeddedOptions, EmbeddedStore};
use authward::store::memory::{MemoryLimits, MemoryStore};
use authward::store::{Store, record_key};

/// Records read by the `get` benchmarks.
const RECORDS: usize = 10_000;
/// About a user profile's size.
const VALUE_BYTES: usize = 512;
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn embedded(dir: &Path) -> Arc<EmbeddedStore> {
    let opts = EmbeddedOptions {
        path: dir.join("bench.redb"),
        max_records: 1_000_000,
        memory: MemoryLimits::default(),
    };
    Arc::new(EmbeddedStore::open(opts, authward::clock::system()).unwrap())
}

fn keys() -> Vec<String> {
    (0..RECORDS)
        .map(|i| record_key("profile", &format!("user{i}")))
        .collect()
}

/// A plain redb file with the same keys and values, for the baselines.
fn raw(dir: &Path, keys: &[String], value: &[u8]) -> Arc<Database> {
    let db = Database::create(dir.join("raw.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(TABLE).unwrap();
        for k in keys {
            t.insert(k.as_str(), value).unwrap();
        }
    }
    txn.commit().unwrap();
    Arc::new(db)
}

fn raw_get(db: &Database, key: &str) -> usize {
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(TABLE).unwrap();
    t.get(key).unwrap().map_or(0, |v| v.value().len())
}

fn bench_get(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(keys());
    let value = Bytes::from(vec![b'p'; VALUE_BYTES]);
    let store = embedded(dir.path());
    let memory = MemoryStore::new(MemoryLimits::default(), authward::clock::system());
    rt.block_on(async {
        // Many writers, so that the setup takes a few large commits.
        let mut set = tokio::task::JoinSet::new();
        for chunk in keys.chunks(10) {
            let (store, chunk, value) = (store.clone(), chunk.to_vec(), value.clone());
            set.spawn(async move {
                for k in chunk {
                    store.put(&k, value.clone(), None).await.unwrap();
                }
            });
        }
        while set.join_next().await.is_some() {}
        for k in keys.iter() {
            memory.put(k, value.clone(), None).await.unwrap();
        }
    });
    let db = raw(dir.path(), &keys, &value);

    let mut g = c.benchmark_group("record_get");
    g.bench_function("embedded", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    black_box(store.get(&keys[i % RECORDS]).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("raw_redb_inline", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % RECORDS;
            black_box(raw_get(&db, &keys[i]))
        })
    });
    g.bench_function("raw_redb_spawn_blocking", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let (db, keys) = (db.clone(), keys.clone());
                    let n = tokio::task::spawn_blocking(move || raw_get(&db, &keys[i % RECORDS]))
                        .await
                        .unwrap();
                    black_box(n);
                }
                start.elapsed()
            })
        })
    });
    // A small pool of reader threads fed by a channel: the other way to keep reads off the async threads.
    let (tx, rx) = std::sync::mpsc::channel::<(usize, tokio::sync::oneshot::Sender<usize>)>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for _ in 0..2 {
        let (rx, db, keys) = (rx.clone(), db.clone(), keys.clone());
        std::thread::spawn(move || {
            loop {
                let job = rx.lock().unwrap().recv();
                let Ok((i, reply)) = job else { return };
                let _ = reply.send(raw_get(&db, &keys[i % RECORDS]));
            }
        });
    }
    g.bench_function("raw_redb_pool_2", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    tx.send((i, reply)).unwrap();
                    black_box(answer.await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("memory_store", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    black_box(memory.get(&keys[i % RECORDS]).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

/// `iters` durable puts of fresh keys shared among `writers` concurrent tasks; returns the elapsed time.
fn concurrent_puts(
    rt: &tokio::runtime::Runtime,
    store: &Arc<EmbeddedStore>,
    writers: u64,
    iters: u64,
) -> Duration {
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let value = Bytes::from(vec![b'e'; VALUE_BYTES]);
    rt.block_on(async {
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for w in 0..writers {
            let (store, value) = (store.clone(), value.clone());
            let n = iters / writers + u64::from(w < iters % writers);
            set.spawn(async move {
                for i in 0..n {
                    let key = record_key("bench", &format!("{run}-{w}-{i}"));
                    store.put(&key, value.clone(), None).await.unwrap();
                }
            });
        }
        while set.join_next().await.is_some() {}
        start.elapsed()
    })
}

fn bench_put(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(dir.path());
    let mut g = c.benchmark_group("record_put");
    g.sample_size(10).throughput(Throughput::Elements(1));
    for writers in [1, 16, 128] {
        g.bench_function(format!("embedded_{writers}_writers"), |b| {
            b.iter_custom(|iters| concurrent_puts(&rt, &store, writers, iters))
        });
    }
    // The baselines: one durable commit per write, as without group commit, with the two-phase commit the
    // store uses and with redb's quick repair (which the store does not use).
    let db = Database::create(dir.path().join("raw.redb")).unwrap();
    let value = vec![b'e'; VALUE_BYTES];
    for variant in ["two_phase", "quick_repair"] {
        let mut i = 0u64;
        g.bench_function(format!("raw_redb_commit_per_write_{variant}"), |b| {
            b.iter(|| {
                i += 1;
                let mut txn = db.begin_write().unwrap();
                match variant {
                    "two_phase" => txn.set_two_phase_commit(true),
                    _ => txn.set_quick_repair(true),
                }
                txn.open_table(TABLE)
                    .unwrap()
                    .insert(format!("k{i}").as_str(), value.as_slice())
                    .unwrap();
                txn.commit().unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_get, bench_put);
criterion_main!(benches);
