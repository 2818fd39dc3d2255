//! Conversion rate (codes verified / codes sent) per number range and per country, and the temporary,
//! escalating blocks that a low rate trips.
//!
//! Sends and verifications are counted in fixed windows in the store; the rate over the sliding window is
//! estimated from the current window and the previous one, weighted by how much of it still overlaps. A
//! successful send leaves a pending record under the number and the username for one window, so that
//! the verify operation (which may carry only one of them) can credit the range and country it went to.
//! A tripped block deletes the range's counters: after it expires, only new evidence trips it again,
//! and then for twice as long (up to `max_block`), so a pump that goes on meets ever longer blocks.

use std::time::Duration;

use bytes::Bytes;

use crate::store::{Op, Reply, Store, StoreError};

/// What a rate or block is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A number range (`+44791112`).
    Prefix,
    /// A destination country (`GB`).
    Country,
}

impl Scope {
    fn tag(self) -> &'static str {
        match self {
            Scope::Prefix => "p",
            Scope::Country => "c",
        }
    }
}

/// The conversion check's settings.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub window: Duration,
    pub min_sent: u64,
    pub country_min_sent: Option<u64>,
    pub threshold: f64,
    pub block_for: Duration,
    pub max_block: Duration,
}

/// A range or country that is blocked now.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    pub scope: Scope,
    /// Time left.
    pub remaining: Duration,
    /// Whether this request tripped the block (rather than met one in force).
    pub tripped: bool,
    /// The rate that tripped it (for a new block).
    pub rate: Option<f64>,
}

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finding {
    pub blocked: Option<Blocked>,
    /// The destination country's current rate, when some codes were sent there (for the gauge).
    pub country_rate: Option<f64>,
}

fn counter_key(scope: Scope, id: &str, what: char, index: u64) -> String {
    format!("sms:cv:{}:{id}:{what}:{index}", scope.tag())
}

fn block_key(scope: Scope, id: &str) -> String {
    format!("sms:cv:{}:{id}:block", scope.tag())
}

fn strikes_key(scope: Scope, id: &str) -> String {
    format!("sms:cv:{}:{id}:strikes", scope.tag())
}

fn pending_key(kind: &str, id: &str) -> String {
    format!("sms:pend:{kind}:{}", super::digest(id))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Conversion {
    fn index(&self, now_ms: u64) -> u64 {
        now_ms / ms(self.window)
    }

    /// How much of the previous window still lies inside the sliding window.
    fn previous_weight(&self, now_ms: u64) -> f64 {
        let w = ms(self.window);
        1.0 - (now_ms % w) as f64 / w as f64
    }

    /// The scopes of one number, with the volume each needs before its rate counts.
    fn scopes<'a>(
        &self,
        prefix: Option<&'a str>,
        country: Option<&'a str>,
    ) -> Vec<(Scope, &'a str, Option<u64>)> {
        let mut v = Vec::with_capacity(2);
        if let Some(p) = prefix {
            v.push((Scope::Prefix, p, Some(self.min_sent)));
        }
        if let Some(c) = country {
            v.push((Scope::Country, c, self.country_min_sent));
        }
        v
    }

    /// Finds a block in force for the number's range or country, or trips one when the rate has fallen
    /// under the threshold with enough volume.
    pub async fn check(
        &self,
        store: &dyn Store,
        prefix: Option<&str>,
        country: Option<&str>,
        now_ms: u64,
    ) -> Result<Finding, StoreError> {
        let scopes = self.scopes(prefix, country);
        let (cur, prev) = (self.index(now_ms), self.index(now_ms).saturating_sub(1));
        let mut ops = Vec::with_capacity(scopes.len() * 5);
        for (scope, id, _) in &scopes {
            ops.push(Op::Get {
                key: block_key(*scope, id),
            });
            for (what, index) in [('s', cur), ('s', prev), ('v', cur), ('v', prev)] {
                ops.push(Op::Counter {
                    key: counter_key(*scope, id, what, index),
                });
            }
        }
        let replies = store.batch(ops).await?;
        let weight = self.previous_weight(now_ms);
        let mut finding = Finding::default();
        let mut rates = Vec::with_capacity(scopes.len());
        for ((scope, id, min), r) in scopes.iter().zip(replies.chunks(5)) {
            let int = |i: usize| match r.get(i) {
                Some(Reply::Int(n)) => (*n).max(0) as f64,
                _ => 0.0,
            };
            if let Some(Reply::Value(Some(until))) = r.first() {
                let until = std::str::from_utf8(until)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                if until > now_ms && finding.blocked.is_none() {
                    finding.blocked = Some(Blocked {
                        scope: *scope,
                        remaining: Duration::from_millis(until - now_ms),
                        tripped: false,
                        rate: None,
                    });
                }
            }
            let sent = int(1) + int(2) * weight;
            let verified = int(3) + int(4) * weight;
            let rate = if sent > 0.0 {
                Some((verified / sent).min(1.0))
            } else {
                None
            };
            if *scope == Scope::Country {
                finding.country_rate = rate;
            }
            rates.push((*scope, *id, *min, sent, rate));
        }
        if finding.blocked.is_some() {
            return Ok(finding);
        }
        for (scope, id, min, sent, rate) in rates {
            let (Some(min), Some(rate)) = (min, rate) else {
                continue;
            };
            if sent >= min as f64 && rate < self.threshold {
                finding.blocked = Some(self.trip(store, scope, id, rate, now_ms).await?);
                break;
            }
        }
        Ok(finding)
    }

    /// Blocks the scope for `block_for` doubled per earlier block (up to `max_block`) and clears its
    /// counters, so only new evidence trips it again.
    async fn trip(
        &self,
        store: &dyn Store,
        scope: Scope,
        id: &str,
        rate: f64,
        now_ms: u64,
    ) -> Result<Blocked, StoreError> {
        let strikes = store
            .get(&strikes_key(scope, id))
            .await?
            .and_then(|b| std::str::from_utf8(&b).ok().and_then(|s| s.parse::<u32>().ok()))
            .unwrap_or(0);
        let factor = 1u32 << strikes.min(20);
        let duration = self.block_for.saturating_mul(factor).min(self.max_block);
        let until = now_ms.saturating_add(ms(duration));
        let created = store
            .put_if_absent(
                &block_key(scope, id),
                Bytes::from(until.to_string()),
                Some(duration),
            )
            .await?;
        if !created {
            // A concurrent request tripped it first.
            return Ok(Blocked {
                scope,
                remaining: duration,
                tripped: false,
                rate: None,
            });
        }
        let (cur, prev) = (self.index(now_ms), self.index(now_ms).saturating_sub(1));
        let mut ops = vec![Op::Put {
            key: strikes_key(scope, id),
            value: Bytes::from((strikes + 1).to_string()),
            ttl: Some(duration + self.max_block),
        }];
        for (what, index) in [('s', cur), ('s', prev), ('v', cur), ('v', prev)] {
            ops.push(Op::Delete {
                key: counter_key(scope, id, what, index),
            });
        }
        store.batch(ops).await?;
        Ok(Blocked {
            scope,
            remaining: duration,
            tripped: true,
            rate: Some(rate),
        })
    }

    /// Counts a code sent to the range and country, and leaves a pending record under the number and the
    /// username for the verify operation.
    pub async fn record_sent(
        &self,
        store: &dyn Store,
        prefix: Option<&str>,
        country: Option<&str>,
        number: Option<&str>,
        username: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let index = self.index(now_ms);
        let ttl = self.window * 2;
        let mut ops: Vec<Op> = self
            .scopes(prefix, country)
            .into_iter()
            .map(|(scope, id, _)| Op::Incr {
                key: counter_key(scope, id, 's', index),
                by: 1,
                ttl,
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        let record = Bytes::from(format!("{}\t{}", prefix.unwrap_or(""), country.unwrap_or("")));
        for (kind, id) in [("n", number), ("u", username.map(str::to_lowercase).as_deref())] {
            if let Some(id) = id.filter(|s| !s.is_empty()) {
                ops.push(Op::Put {
                    key: pending_key(kind, id),
                    value: record.clone(),
                    ttl: Some(self.window),
                });
            }
        }
        store.batch(ops).await.map(|_| ())
    }

    /// Credits a verified code to the range and country it was sent to, found by the number or, failing
    /// that, the username; each send is credited once. Returns the range and country.
    pub async fn record_verified(
        &self,
        store: &dyn Store,
        number: Option<&str>,
        username: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
        let mut record = None;
        for (kind, id) in [("n", number), ("u", username.map(str::to_lowercase).as_deref())] {
            if let Some(id) = id.filter(|s| !s.is_empty()) {
                if let Some(r) = store.take(&pending_key(kind, id)).await? {
                    record = Some(r);
                    break;
                }
            }
        }
        let Some(record) = record else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&record);
        let (prefix, country) = text.split_once('\t').unwrap_or((&text, ""));
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let (prefix, country) = (some(prefix), some(country));
        let index = self.index(now_ms);
        let ops = self
            .scopes(prefix.as_deref(), country.as_deref())
            .into_iter()
            .map(|(scope, id, _)| Op::Incr {
                key: counter_key(scope, id, 'v', index),
                by: 1,
                ttl: self.window * 2,
            })
            .collect();
        store.batch(ops).await?;
        Ok(Some((prefix, country)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::store::memory::{MemoryLimits, MemoryStore};

    const MIN: Duration = Duration::from_secs(60);

    fn conversion() -> Conversion {
        Conversion {
            window: 60 * MIN,
            min_sent: 10,
            country_min_sent: Some(100),
            threshold: 0.2,
            block_for: 15 * MIN,
            max_block: 60 * MIN,
        }
    }

    #[tokio::test]
    async fn verified_sends_keep_a_range_open() {
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let store = MemoryStore::new(MemoryLimits::default(), clock.clone());
        let c = conversion();
        for i in 0..30 {
            let now = clock.now_ms();
            let f = c.check(&store, Some("+44791112"), Some("GB"), now).await.unwrap();
            assert_eq!(f.blocked, None, "send {i}");
            let number = format!("44791112{i:04}");
            c.record_sent(
                &store,
                Some("+44791112"),
                Some("GB"),
                Some(&number),
                Some("u"),
                now,
            )
            .await
            .unwrap();
            // Seven in ten verify, by number or (the last ones) by username.
            if i % 10 < 7 {
                let by_number = (i % 2 == 0).then_some(number.as_str());
                let credited = c
                    .record_verified(&store, by_number, Some("U"), now)
                    .await
                    .unwrap();
                assert_eq!(credited, Some((Some("+44791112".into()), Some("GB".into()))));
            }
            clock.advance(MIN);
        }
        let f = c
            .check(&store, Some("+44791112"), Some("GB"), clock.now_ms())
            .await
            .unwrap();
        assert!(f.country_rate.is_some_and(|r| r > 0.6), "{f:?}");
        // A second verification of one send credits nothing.
        assert_eq!(
            c.record_verified(&store, Some("x"), None, clock.now_ms())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_low_rate_trips_a_block_that_expires_and_escalates() {
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let store = MemoryStore::new(MemoryLimits::default(), clock.clone());
        let c = conversion();
        let mut blocks = Vec::new();
        for _ in 0..400 {
            let now = clock.now_ms();
            let f = c.check(&store, Some("+88234"), Some("001"), now).await.unwrap();
            match f.blocked {
                Some(b) if b.tripped => {
                    assert_eq!(b.scope, Scope::Prefix);
                    assert_eq!(b.rate, Some(0.0));
                    blocks.push(b.remaining);
                }
                Some(_) => {}
                None => {
                    c.record_sent(&store, Some("+88234"), Some("001"), None, None, now)
                        .await
                        .unwrap();
                }
            }
            clock.advance(MIN);
        }
        assert_eq!(blocks[..3], [15 * MIN, 30 * MIN, 60 * MIN], "{blocks:?}");
        assert!(blocks[3..].iter().all(|d| *d == 60 * MIN), "capped at max_block");
    }

    #[tokio::test]
    async fn a_country_trips_with_its_own_volume() {
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let store = MemoryStore::new(MemoryLimits::default(), clock.clone());
        let c = Conversion {
            country_min_sent: Some(5),
            ..conversion()
        };
        // Five ranges of one country, one send each: no range has volume, the country has.
        for i in 0..5 {
            let prefix = format!("+23480{i}");
            let f = c
                .check(&store, Some(&prefix), Some("NG"), clock.now_ms())
                .await
                .unwrap();
            assert_eq!(f.blocked, None);
            c.record_sent(&store, Some(&prefix), Some("NG"), None, None, clock.now_ms())
                .await
                .unwrap();
        }
        let f = c
            .check(&store, Some("+234809"), Some("NG"), clock.now_ms())
            .await
            .unwrap();
        assert_eq!(
            f.blocked.map(|b| (b.scope, b.tripped)),
            Some((Scope::Country, true))
        );
        assert_eq!(f.country_rate, Some(0.0));
    }
}
