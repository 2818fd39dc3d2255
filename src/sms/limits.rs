//! Rate limits per number, username, IP, IP range, number range, country and overall, and the check for
//! many distinct numbers of one small range (a pumper walking through a range).

use std::net::IpAddr;
use std::time::Duration;

use crate::config::types::Rate;
use crate::store::{Op, Reply, Store, StoreError};

use super::Reason;

/// One configured limit.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub reason: Reason,
    pub rate: Rate,
}

/// The limits in the order they are reported: the most specific first.
#[derive(Debug, Default)]
pub struct Limits {
    pub per_number: Option<Rate>,
    pub per_username: Option<Rate>,
    pub per_ip: Option<Rate>,
    pub per_ip_prefix: Option<Rate>,
    pub per_number_prefix: Option<Rate>,
    pub per_country: Option<Rate>,
    pub global: Option<Rate>,
}

/// What the limits are counted by for one request; absent parts skip their limits.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// E.164 digits.
    pub number: Option<&'a str>,
    pub username: Option<&'a str>,
    pub ip: IpAddr,
    pub number_prefix: Option<&'a str>,
    pub country: Option<&'a str>,
}

/// The client's network: /24 for IPv4, /64 for IPv6.
pub fn ip_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl Limits {
    /// Takes one unit from every applicable limit (in one store round trip: every limit counts the
    /// request, as rate rules do) and returns the first one exceeded, with the longest wait.
    pub async fn take(
        &self,
        store: &dyn Store,
        k: &Keys<'_>,
    ) -> Result<Option<(Reason, Duration)>, StoreError> {
        let username = k.username.map(crate::risk::stage::user_key);
        let candidates = [
            (Reason::LimitNumber, self.per_number, k.number.map(str::to_owned)),
            (Reason::LimitUsername, self.per_username, username),
            // An IPv6 client is counted by its /64, as everywhere in authward: a host holds a whole one.
            (
                Reason::LimitIp,
                self.per_ip,
                Some(crate::context::counting_ip(k.ip).to_string()),
            ),
            (Reason::LimitIpPrefix, self.per_ip_prefix, Some(ip_prefix(k.ip))),
            (
                Reason::LimitNumberPrefix,
                self.per_number_prefix,
                k.number_prefix.map(str::to_owned),
            ),
            (
                Reason::LimitCountry,
                self.per_country,
                k.country.map(str::to_owned),
            ),
            (Reason::LimitGlobal, self.global, Some(String::new())),
        ];
        let mut reasons = Vec::new();
        let mut ops = Vec::new();
        for (reason, rate, part) in candidates {
            let (Some(rate), Some(part)) = (rate, part) else {
                continue;
            };
            reasons.push(reason);
            ops.push(Op::RateTake {
                key: format!("sms:rl:{}:{}", reason.as_str(), super::digest(&part)),
                limit: rate.count,
                period: rate.per,
                cost: 1,
            });
        }
        if ops.is_empty() {
            return Ok(None);
        }
        let replies = store.batch(ops).await?;
        let mut exceeded: Option<(Reason, Duration)> = None;
        for (reason, reply) in reasons.into_iter().zip(replies) {
            if let Reply::Rate(d) = reply {
                if !d.allowed {
                    exceeded = Some(match exceeded {
                        Some((first, wait)) => (first, wait.max(d.retry_after)),
                        None => (reason, d.retry_after),
                    });
                }
            }
        }
        Ok(exceeded)
    }
}

/// Distinct numbers per small range.
#[derive(Debug, Clone, Copy)]
pub struct Sequential {
    pub window: Duration,
    pub range_digits: u32,
    pub threshold: u64,
}

impl Sequential {
    /// Adds the number (as a count) to its range, counted aligned and shifted by half a range; true when
    /// either holds more distinct numbers than the threshold.
    pub async fn add(&self, store: &dyn Store, number: u64) -> Result<bool, StoreError> {
        let size = 10u64.pow(self.range_digits);
        let shifted = number.saturating_add(size / 2);
        let ops = [("a", number), ("b", shifted)]
            .into_iter()
            .map(|(tag, n)| Op::SetAdd {
                key: format!(
                    "sms:seq:{}:{tag}:{}",
                    self.range_digits,
                    super::digest(&(n / size).to_string())
                ),
                member: (n % size).to_string(),
                ttl: self.window,
            })
            .collect();
        let replies = store.batch(ops).await?;
        Ok(replies
            .iter()
            .any(|r| matches!(r, Reply::Count(n) if *n > self.threshold)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::{MemoryLimits, MemoryStore};

    fn store() -> (MemoryStore, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        (MemoryStore::new(MemoryLimits::default(), clock.clone()), clock)
    }

    #[test]
    fn ip_prefixes() {
        assert_eq!(ip_prefix("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            ip_prefix("2001:db8:1:2:3::9".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[tokio::test]
    async fn per_ip_counts_an_ipv6_client_by_its_64() {
        let (s, _) = store();
        let limits = Limits {
            per_ip: Some("2/h".parse().unwrap()),
            ..Limits::default()
        };
        let take = |ip: &str| {
            let keys = Keys {
                number: None,
                username: None,
                ip: ip.parse().unwrap(),
                number_prefix: None,
                country: None,
            };
            let (limits, s) = (&limits, &s);
            async move { limits.take(s, &keys).await.unwrap().map(|(r, _)| r) }
        };
        assert_eq!(take("2001:db8:1:2::1").await, None);
        assert_eq!(take("2001:db8:1:2:ffff::9").await, None);
        // A third address of the same /64 is the same client.
        assert_eq!(take("2001:db8:1:2:abcd::3").await, Some(Reason::LimitIp));
        // Another /64, and IPv4 addresses one by one.
        assert_eq!(take("2001:db8:1:3::1").await, None);
        assert_eq!(take("192.0.2.1").await, None);
        assert_eq!(take("192.0.2.2").await, None);
        assert_eq!(take("192.0.2.3").await, None);
    }

    #[tokio::test]
    async fn sequential_catches_a_walk_across_a_range_boundary() {
        let (s, clock) = store();
        let seq = Sequential {
            window: Duration::from_secs(600),
            range_digits: 2,
            threshold: 3,
        };
        // 447911123497..447911123500 straddles an aligned range of 100; the shifted range holds them all.
        let mut tripped = Vec::new();
        for n in 447_911_123_497u64..447_911_123_503 {
            tripped.push(seq.add(&s, n).await.unwrap());
        }
        assert_eq!(tripped, [false, false, false, true, true, true]);
        // The same number again is not a new one; the window forgets.
        clock.advance(Duration::from_secs(601));
        for _ in 0..5 {
            assert!(!seq.add(&s, 447_911_123_497).await.unwrap());
        }
        // Far-apart numbers are different ranges.
        for n in 0..10u64 {
            assert!(!seq.add(&s, 447_911_000_000 + n * 1000).await.unwrap());
        }
    }
}
