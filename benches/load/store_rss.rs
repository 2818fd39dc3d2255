//! Resident memory of the memory store holding N tracked keys, for the load harness's scaling table
//! (`benches/load/run.sh`). Fills a fresh store, in a fresh process, with N keys of the kinds a sign-in
//! leaves behind (rate counters, distinct-count sets, fixed-window counters), then prints one CSV line
//! with the columns of [`HEADER`]: what the store counts, its resident growth, their ratio, and whether
//! the caps held (keys and bytes counted, and resident growth, within them).
//!
//! `cargo run --release --bin store-rss -- 1000000 [max_keys] [max_bytes]`; `--header` prints the header.

use std::time::Duration;

use authward::clock;
use authward::store::Store;
use authward::store::memory::{MemoryLimits, MemoryStore};

const HEADER: &str = "keys_requested,keys_held,store_bytes,max_keys,max_bytes,rss_before_kib,rss_after_kib,hwm_kib,\
                      rss_growth_kib,counted_over_resident,cap_held";

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map(|a| a.replace('_', "").parse().expect("a number"))
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--header") {
        println!("{HEADER}");
        return Ok(());
    }
    let keys = arg(1, 10_000);
    let defaults = MemoryLimits::default();
    let limits = MemoryLimits {
        max_keys: arg(2, defaults.max_keys),
        max_bytes: arg(3, defaults.max_bytes),
        ..defaults
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let before = status_kib("VmRSS:");
    let store = MemoryStore::new(limits, clock::system());
    rt.block_on(async {
        let hour = Duration::from_secs(3600);
        for i in 0..keys {
            // The shapes the web ACL and the risk engine write: one key each, 20-40 bytes of name.
            match i % 3 {
                0 => {
                    store
                        .rate_take(&format!("waf:rate:sign-in-rate-per-ip:198.{i}"), 30, hour, 1)
                        .await?;
                }
                1 => {
                    store
                        .set_add(&format!("waf:distinct:ip:198.{i}"), "user-name@example.com", hour)
                        .await?;
                }
                _ => {
                    store
                        .incr(&format!("risk:fail:user:user{i}@example.com"), 1, hour)
                        .await?;
                }
            }
        }
        anyhow::Ok(())
    })?;
    let after = status_kib("VmRSS:");
    let growth = after.saturating_sub(before);
    let resident = growth * 1024;
    let held = store.len() <= limits.max_keys
        && store.bytes() <= limits.max_bytes
        && resident <= u64::try_from(limits.max_bytes).unwrap_or(u64::MAX);
    println!(
        "{keys},{},{},{},{},{before},{after},{},{growth},{:.2},{}",
        store.len(),
        store.bytes(),
        limits.max_keys,
        limits.max_bytes,
        status_kib("VmHWM:"),
        store.bytes() as f64 / resident.max(1) as f64,
        if held { "yes" } else { "NO" }
    );
    Ok(())
}
