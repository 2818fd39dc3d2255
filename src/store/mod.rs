//! The state interface for everything that outlives a request or is shared between replicas.

pub mod embedded;
pub mod memory;
pub mod redis;

/// Keys under this prefix are durable records (user profiles, event history, feedback, MFA enrollments):
/// the `embedded` backend keeps them in its database file; every other key is a counter, set or
/// short-lived value that lives in memory. Build record keys with [`record_key`].
pub const RECORD_PREFIX: &str = "rec/";

/// A durable record's key: `rec/<kind>/<id>`.
pub fn record_key(kind: &str, id: &str) -> String {
    let mut k = String::with_capacity(RECORD_PREFIX.len() + kind.len() + 1 + id.len());
    k.push_str(RECORD_PREFIX);
    k.push_str(kind);
    k.push('/');
    k.push_str(id);
    k
}

/// How long a key holds out when a store is full: keys that any client can make (counters, rate keys,
/// event histories, password histories; one per username or address tried) go first, then users' sign-in
/// histories and successful events (made only by sign-ins that succeeded) and SMS conversion counts (one
/// per range), and only then the keys that no
/// flood of requests may take: MFA factors, the device-cookie key, SMS spend and range blocks. Without
/// it, a flood of failed sign-ins with made-up usernames evicted users' histories and MFA factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keep {
    Expendable = 0,
    Kept = 1,
    Pinned = 2,
}

impl Keep {
    /// The two top bits that [`Keep::band`] sets.
    pub const BAND_MASK: u64 = 0b11 << 62;

    /// The key's class, by its prefix.
    pub fn of(key: &str) -> Keep {
        const PINNED: [&str; 3] = ["rec/mfa/", "rec/meta/", "sms:spend:"];
        const KEPT: [&str; 4] = ["rec/user/", "rec/events-ok/", "sms:cv:", "mfa:wrong:"];
        if PINNED.iter().any(|p| key.starts_with(p))
            || (key.starts_with("sms:cv:") && (key.ends_with(":block") || key.ends_with(":strikes")))
        {
            Keep::Pinned
        } else if KEPT.iter().any(|p| key.starts_with(p)) {
            Keep::Kept
        } else {
            Keep::Expendable
        }
    }

    /// The class in the two top bits of an eviction order (an LRU tick, a write sequence number), so that
    /// ordering by it evicts a whole class before the next.
    pub fn band(self) -> u64 {
        (self as u64) << 62
    }
}

/// A key (or id) made of `prefix` and the lowercase hex of `digest`, such as `risk:fu:<hex>`: written
/// straight into one string of the right size.
pub fn hex_key<const N: usize>(prefix: &str, digest: &[u8; N]) -> String {
    let mut k = String::with_capacity(prefix.len() + 2 * N);
    k.push_str(prefix);
    k.push_str(hex::Buffer::<N>::new().format(digest));
    k
}

use std::time::Duration;

use bytes::Bytes;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot serve requests now; callers decide whether to fail open or closed.
    #[error("{backend} store unavailable: {reason}")]
    Unavailable { backend: &'static str, reason: String },
    /// Stored data could not be decoded.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// A single value is bigger than the store's memory cap.
    #[error("value too large for the store (limit {limit} bytes)")]
    TooLarge { limit: usize },
    /// The key holds a different kind of value than the operation expects.
    #[error("key {key:?} does not hold a {expected}")]
    WrongType { key: String, expected: &'static str },
}

/// The outcome of a GCRA rate check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// How many more unit-cost requests would pass right now.
    pub remaining: u32,
    /// How long to wait before this request would pass (zero when allowed).
    pub retry_after: Duration,
    /// How long until the full burst is available again.
    pub reset_after: Duration,
}

/// One store operation with owned arguments, for [`Store::batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// See [`Store::rate_take`].
    RateTake {
        key: String,
        limit: u32,
        period: Duration,
        cost: u32,
    },
    /// See [`Store::rate_peek`].
    RatePeek {
        key: String,
        limit: u32,
        period: Duration,
    },
    /// See [`Store::incr`].
    Incr { key: String, by: i64, ttl: Duration },
    /// See [`Store::counter`].
    Counter { key: String },
    /// See [`Store::set_add`].
    SetAdd {
        key: String,
        member: String,
        ttl: Duration,
    },
    /// See [`Store::set_len`].
    SetLen { key: String },
    /// See [`Store::set_contains`].
    SetContains { key: String, member: String },
    /// See [`Store::put`].
    Put {
        key: String,
        value: Bytes,
        ttl: Option<Duration>,
    },
    /// See [`Store::put_if_absent`].
    PutIfAbsent {
        key: String,
        value: Bytes,
        ttl: Option<Duration>,
    },
    /// See [`Store::get`].
    Get { key: String },
    /// See [`Store::take`].
    Take { key: String },
    /// See [`Store::delete`].
    Delete { key: String },
    /// See [`Store::list_push`].
    ListPush {
        key: String,
        value: Bytes,
        cap: usize,
        ttl: Option<Duration>,
    },
    /// See [`Store::list_range`].
    ListRange { key: String, start: usize, count: usize },
}

impl Op {
    /// The key the op works on.
    pub fn key(&self) -> &str {
        match self {
            Op::RateTake { key, .. }
            | Op::RatePeek { key, .. }
            | Op::Incr { key, .. }
            | Op::Counter { key }
            | Op::SetAdd { key, .. }
            | Op::SetLen { key }
            | Op::SetContains { key, .. }
            | Op::Put { key, .. }
            | Op::PutIfAbsent { key, .. }
            | Op::Get { key }
            | Op::Take { key }
            | Op::Delete { key }
            | Op::ListPush { key, .. }
            | Op::ListRange { key, .. } => key,
        }
    }
}

/// The result of one [`Op`], in the same position as the op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// From `RateTake` and `RatePeek`.
    Rate(RateDecision),
    /// From `Incr` and `Counter`.
    Int(i64),
    /// From `SetAdd` and `SetLen`.
    Count(u64),
    /// From `SetContains`, `PutIfAbsent` and `Delete`.
    Bool(bool),
    /// From `Put`.
    Unit,
    /// From `Get` and `Take`.
    Value(Option<Bytes>),
    /// From `ListPush`.
    Len(usize),
    /// From `ListRange`.
    Values(Vec<Bytes>),
}

/// Runs one op through the store's own methods (as [`Store::batch`] does unless a backend runs its ops
/// another way).
pub(crate) async fn run_op<S: Store + ?Sized>(store: &S, op: Op) -> Result<Reply, StoreError> {
    match op {
        Op::RateTake {
            key,
            limit,
            period,
            cost,
        } => store.rate_take(&key, limit, period, cost).await.map(Reply::Rate),
        Op::RatePeek { key, limit, period } => store.rate_peek(&key, limit, period).await.map(Reply::Rate),
        Op::Incr { key, by, ttl } => store.incr(&key, by, ttl).await.map(Reply::Int),
        Op::Counter { key } => store.counter(&key).await.map(Reply::Int),
        Op::SetAdd { key, member, ttl } => store.set_add(&key, &member, ttl).await.map(Reply::Count),
        Op::SetLen { key } => store.set_len(&key).await.map(Reply::Count),
        Op::SetContains { key, member } => store.set_contains(&key, &member).await.map(Reply::Bool),
        Op::Put { key, value, ttl } => store.put(&key, value, ttl).await.map(|()| Reply::Unit),
        Op::PutIfAbsent { key, value, ttl } => store.put_if_absent(&key, value, ttl).await.map(Reply::Bool),
        Op::Get { key } => store.get(&key).await.map(Reply::Value),
        Op::Take { key } => store.take(&key).await.map(Reply::Value),
        Op::Delete { key } => store.delete(&key).await.map(Reply::Bool),
        Op::ListPush { key, value, cap, ttl } => store.list_push(&key, value, cap, ttl).await.map(Reply::Len),
        Op::ListRange { key, start, count } => store.list_range(&key, start, count).await.map(Reply::Values),
    }
}

/// The replies of a [`Store::batch`] as its ops run: every op is attempted, and the first error, if any,
/// is the batch's.
pub(crate) struct Replies {
    replies: Vec<Reply>,
    first_err: Option<StoreError>,
}

impl Replies {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Replies {
            replies: Vec::with_capacity(n),
            first_err: None,
        }
    }

    /// Records the result of the next op.
    pub(crate) fn push(&mut self, reply: Result<Reply, StoreError>) {
        match reply {
            Ok(r) => self.replies.push(r),
            Err(e) => {
                self.first_err.get_or_insert(e);
            }
        }
    }

    /// The replies in order, or the first error.
    pub(crate) fn finish(self) -> Result<Vec<Reply>, StoreError> {
        match self.first_err {
            Some(e) => Err(e),
            None => Ok(self.replies),
        }
    }
}

/// Shared state. Every method is one atomic operation on one key and returns owned data; expiry is
/// measured with the store's injected clock. Writing a key with an operation of another kind (other than
/// `put`, which replaces anything) fails with [`StoreError::WrongType`].
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// GCRA: lets `limit` requests through at once, then one every `period / limit`; takes `cost` units
    /// when allowed and changes nothing when denied. A `limit` of 0 or a `cost > limit` always denies
    /// (`retry_after` is then `period`), a zero `period` always allows. The key lives until its theoretical
    /// arrival time has passed.
    async fn rate_take(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        cost: u32,
    ) -> Result<RateDecision, StoreError>;

    /// What a unit-cost [`Store::rate_take`] would answer, without taking; `remaining` counts this request.
    async fn rate_peek(&self, key: &str, limit: u32, period: Duration) -> Result<RateDecision, StoreError>;

    /// Adds `by` (saturating) to a fixed-window counter and returns the new value; `ttl` is set when the
    /// key is created and not extended by later increments.
    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, StoreError>;

    /// The counter's value, 0 when absent or expired.
    async fn counter(&self, key: &str) -> Result<i64, StoreError>;

    /// Adds `member` to a distinct-count set and returns its cardinality; every add refreshes the set's
    /// TTL, and when the set is full the least recently added member makes room.
    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<u64, StoreError>;

    /// The set's cardinality, 0 when absent.
    async fn set_len(&self, key: &str) -> Result<u64, StoreError>;

    /// Whether the set holds `member`.
    async fn set_contains(&self, key: &str, member: &str) -> Result<bool, StoreError>;

    /// Stores `value`, replacing whatever the key held; `None` means no expiry.
    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), StoreError>;

    /// Stores `value` only if the key is absent (or expired); true when stored (one-time nonces).
    async fn put_if_absent(&self, key: &str, value: Bytes, ttl: Option<Duration>)
    -> Result<bool, StoreError>;

    /// The value stored by `put`, if present.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Gets and deletes the value in one step (held responses, one-shot challenges).
    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Deletes the key whatever it holds; true when something live was deleted.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;

    /// Pushes `value` at the front (newest first), keeps the newest `cap` items and returns the new
    /// length; `Some(ttl)` (re)sets the list's expiry, `None` leaves it unchanged. A `cap` of 0 deletes.
    async fn list_push(
        &self,
        key: &str,
        value: Bytes,
        cap: usize,
        ttl: Option<Duration>,
    ) -> Result<usize, StoreError>;

    /// Up to `count` items starting at `start`, newest first.
    async fn list_range(&self, key: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError>;

    /// Replaces the newest item equal to `old` with `new` in place (a compare-and-swap: a writer that read
    /// the item changes it only if nobody changed it since) and returns whether one was replaced; the list's
    /// order, length and expiry are unchanged. False when the key is absent or holds no such item.
    async fn list_replace(&self, key: &str, old: &[u8], new: Bytes) -> Result<bool, StoreError>;

    /// Runs `ops` in order (a network store sends them in one round trip) and returns their replies in
    /// order. Not a transaction: every op is attempted and the first error, if any, is returned. The ops
    /// may share one reading of the clock (they run at once).
    async fn batch(&self, ops: Vec<Op>) -> Result<Vec<Reply>, StoreError> {
        let mut replies = Replies::with_capacity(ops.len());
        for op in ops {
            replies.push(run_op(self, op).await);
        }
        replies.finish()
    }

    /// The backend's name, as in the `store.kind` setting.
    fn kind(&self) -> &'static str;

    /// Keys held and approximate bytes used, where the backend knows them (for the metrics).
    fn usage(&self) -> Option<(usize, usize)> {
        None
    }
}

/// Behavioural tests that every backend must pass; each backend's tests call every function here.
#[cfg(test)]
pub(crate) mod conformance {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::{Op, Reply, Store, StoreError};
    use crate::clock::ManualClock;

    const SEC: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// Calls the macro `$m` with the name of every test below that takes a store and its clock: each
    /// backend's `$m` makes them `#[tokio::test]`s on its own store, so a test added here runs on all.
    macro_rules! each_test {
        ($m:ident) => {
            $m!(
                gcra_burst_then_interval,
                gcra_peek_does_not_take,
                gcra_cost,
                gcra_edge_limits,
                incr_fixed_window,
                sets,
                values_with_ttl,
                put_if_absent_take_delete,
                lists,
                list_replace_is_a_compare_and_swap,
                wrong_types_are_errors,
                batch_in_order,
            );
        };
    }
    pub(crate) use each_test;

    /// The same for the tests that take a shared store and race many tasks on it.
    macro_rules! each_concurrent_test {
        ($m:ident) => {
            $m!(
                concurrent_incr,
                concurrent_rate_take,
                concurrent_put_if_absent
            );
        };
    }
    pub(crate) use each_concurrent_test;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    pub(crate) async fn gcra_burst_then_interval(s: &dyn Store, c: &ManualClock) {
        // 10 per 10 s: T = 1 s.
        let period = 10 * SEC;
        for i in 0..10 {
            let d = s.rate_take("r", 10, period, 1).await.unwrap();
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 9 - i);
            assert_eq!(d.retry_after, Duration::ZERO);
            assert_eq!(d.reset_after, (i + 1) * SEC);
        }
        let d = s.rate_take("r", 10, period, 1).await.unwrap();
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.retry_after, d.reset_after), (0, SEC, period));
        c.advance(400 * MS);
        let d = s.rate_take("r", 10, period, 1).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 600 * MS);
        c.advance(600 * MS);
        let d = s.rate_take("r", 10, period, 1).await.unwrap();
        assert!(d.allowed, "one more after one interval");
        assert_eq!(d.remaining, 0);
        assert!(!s.rate_take("r", 10, period, 1).await.unwrap().allowed);
        c.advance(period);
        for i in 0..10 {
            assert!(
                s.rate_take("r", 10, period, 1).await.unwrap().allowed,
                "burst back, request {i}"
            );
        }
        assert!(!s.rate_take("r", 10, period, 1).await.unwrap().allowed);
        // Keys are independent.
        assert!(s.rate_take("r2", 10, period, 1).await.unwrap().allowed);
    }

    pub(crate) async fn gcra_peek_does_not_take(s: &dyn Store, c: &ManualClock) {
        let fresh = s.rate_peek("p", 3, 3 * SEC).await.unwrap();
        let expect = super::RateDecision {
            allowed: true,
            remaining: 3,
            retry_after: Duration::ZERO,
            reset_after: Duration::ZERO,
        };
        assert_eq!(fresh, expect);
        for _ in 0..5 {
            assert_eq!(s.rate_peek("p", 3, 3 * SEC).await.unwrap(), expect);
        }
        for _ in 0..3 {
            assert!(s.rate_take("p", 3, 3 * SEC, 1).await.unwrap().allowed);
        }
        let d = s.rate_peek("p", 3, 3 * SEC).await.unwrap();
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.retry_after, d.reset_after), (0, SEC, 3 * SEC));
        c.advance(SEC);
        let d = s.rate_peek("p", 3, 3 * SEC).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
        assert!(s.rate_take("p", 3, 3 * SEC, 1).await.unwrap().allowed);
    }

    pub(crate) async fn gcra_cost(s: &dyn Store, c: &ManualClock) {
        let d = s.rate_take("c", 10, 10 * SEC, 4).await.unwrap();
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset_after), (6, 4 * SEC));
        assert!(s.rate_take("c", 10, 10 * SEC, 6).await.unwrap().allowed);
        let d = s.rate_take("c", 10, 10 * SEC, 3).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 3 * SEC);
        c.advance(2 * SEC);
        let d = s.rate_take("c", 10, 10 * SEC, 3).await.unwrap();
        assert!(!d.allowed, "a denied take changes nothing");
        assert_eq!(d.retry_after, SEC);
        c.advance(SEC);
        assert!(s.rate_take("c", 10, 10 * SEC, 3).await.unwrap().allowed);
        // More than the burst can never pass; zero cost always passes.
        assert!(!s.rate_take("c2", 10, 10 * SEC, 11).await.unwrap().allowed);
        assert!(s.rate_take("c2", 10, 10 * SEC, 10).await.unwrap().allowed);
        assert!(s.rate_take("c2", 10, 10 * SEC, 0).await.unwrap().allowed);
    }

    pub(crate) async fn gcra_edge_limits(s: &dyn Store, _c: &ManualClock) {
        let d = s.rate_take("z", 0, SEC, 1).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!s.rate_peek("z", 0, SEC).await.unwrap().allowed);
        for _ in 0..100 {
            let d = s.rate_take("zp", 5, Duration::ZERO, 1).await.unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, 5);
        }
        // Sub-nanosecond intervals are unlimited too; huge values do not overflow.
        assert!(
            s.rate_take("tiny", u32::MAX, Duration::from_nanos(1), 1)
                .await
                .unwrap()
                .allowed
        );
        let d = s.rate_take("huge", 1, Duration::MAX, u32::MAX).await.unwrap();
        assert!(!d.allowed);
        assert!(s.rate_take("huge", 1, Duration::MAX, 1).await.unwrap().allowed);
        assert!(!s.rate_take("huge", 1, Duration::MAX, 1).await.unwrap().allowed);
    }

    pub(crate) async fn incr_fixed_window(s: &dyn Store, c: &ManualClock) {
        assert_eq!(s.counter("n").await.unwrap(), 0);
        assert_eq!(s.incr("n", 1, 10 * SEC).await.unwrap(), 1);
        c.advance(6 * SEC);
        assert_eq!(s.incr("n", 5, 10 * SEC).await.unwrap(), 6);
        assert_eq!(s.incr("n", -2, 10 * SEC).await.unwrap(), 4);
        assert_eq!(s.counter("n").await.unwrap(), 4);
        c.advance(4 * SEC);
        assert_eq!(
            s.counter("n").await.unwrap(),
            0,
            "later increments did not extend the window"
        );
        assert_eq!(s.incr("n", 1, 10 * SEC).await.unwrap(), 1, "a new window starts");
        assert_eq!(s.incr("big", i64::MAX, SEC).await.unwrap(), i64::MAX);
        assert_eq!(s.incr("big", 1, SEC).await.unwrap(), i64::MAX, "saturates");
    }

    pub(crate) async fn sets(s: &dyn Store, c: &ManualClock) {
        assert_eq!(s.set_len("s").await.unwrap(), 0);
        assert!(!s.set_contains("s", "a").await.unwrap());
        assert_eq!(s.set_add("s", "a", 10 * SEC).await.unwrap(), 1);
        assert_eq!(s.set_add("s", "b", 10 * SEC).await.unwrap(), 2);
        assert_eq!(
            s.set_add("s", "a", 10 * SEC).await.unwrap(),
            2,
            "duplicates count once"
        );
        assert_eq!(
            s.set_add("s", "", 10 * SEC).await.unwrap(),
            3,
            "the empty member is a member"
        );
        assert!(s.set_contains("s", "b").await.unwrap());
        assert!(!s.set_contains("s", "c").await.unwrap());
        c.advance(8 * SEC);
        assert_eq!(s.set_add("s", "c", 10 * SEC).await.unwrap(), 4);
        c.advance(8 * SEC);
        assert_eq!(s.set_len("s").await.unwrap(), 4, "the last add refreshed the TTL");
        c.advance(2 * SEC);
        assert_eq!(s.set_len("s").await.unwrap(), 0);
        assert!(!s.set_contains("s", "a").await.unwrap());
        assert_eq!(s.set_add("s", "z", 10 * SEC).await.unwrap(), 1);
    }

    pub(crate) async fn values_with_ttl(s: &dyn Store, c: &ManualClock) {
        assert_eq!(s.get("k").await.unwrap(), None);
        s.put("k", b("v1"), Some(10 * SEC)).await.unwrap();
        assert_eq!(s.get("k").await.unwrap(), Some(b("v1")));
        s.put("k", b("v2"), None).await.unwrap();
        c.advance(20 * SEC);
        assert_eq!(s.get("k").await.unwrap(), Some(b("v2")), "put replaced the TTL");
        s.put("k", b("v3"), Some(SEC)).await.unwrap();
        c.advance(SEC);
        assert_eq!(s.get("k").await.unwrap(), None, "expired exactly at the TTL");
        assert!(!s.delete("k").await.unwrap(), "expired keys are gone");

        s.put("e", Bytes::new(), None).await.unwrap();
        assert_eq!(
            s.get("e").await.unwrap(),
            Some(Bytes::new()),
            "empty values are values"
        );
        s.put("", b("empty key"), None).await.unwrap();
        assert_eq!(s.get("").await.unwrap(), Some(b("empty key")));
    }

    pub(crate) async fn put_if_absent_take_delete(s: &dyn Store, c: &ManualClock) {
        assert!(s.put_if_absent("n", b("1"), Some(5 * SEC)).await.unwrap());
        assert!(!s.put_if_absent("n", b("2"), Some(5 * SEC)).await.unwrap());
        assert_eq!(s.get("n").await.unwrap(), Some(b("1")));
        c.advance(5 * SEC);
        assert!(
            s.put_if_absent("n", b("3"), None).await.unwrap(),
            "expired counts as absent"
        );
        assert_eq!(s.take("n").await.unwrap(), Some(b("3")));
        assert_eq!(s.take("n").await.unwrap(), None, "take is one-shot");
        assert_eq!(s.get("n").await.unwrap(), None);

        s.put("d", b("x"), None).await.unwrap();
        assert!(s.delete("d").await.unwrap());
        assert!(!s.delete("d").await.unwrap());
        s.incr("dc", 1, SEC).await.unwrap();
        assert!(s.delete("dc").await.unwrap(), "delete removes any kind");
        assert_eq!(s.counter("dc").await.unwrap(), 0);
        s.put("t", b("x"), Some(SEC)).await.unwrap();
        c.advance(SEC);
        assert_eq!(s.take("t").await.unwrap(), None);
    }

    pub(crate) async fn list_replace_is_a_compare_and_swap(s: &dyn Store, c: &ManualClock) {
        assert!(!s.list_replace("r", b"a", b("x")).await.unwrap(), "absent key");
        for v in ["a", "b", "a", "c"] {
            s.list_push("r", b(v), 10, Some(10 * SEC)).await.unwrap();
        }
        // The newest equal item changes; order, length and the other items stay.
        assert!(s.list_replace("r", b"a", b("a2")).await.unwrap());
        assert_eq!(
            s.list_range("r", 0, 10).await.unwrap(),
            vec![b("c"), b("a2"), b("b"), b("a")]
        );
        assert!(s.list_replace("r", b"a", b("a3")).await.unwrap());
        assert!(
            !s.list_replace("r", b"a", b("a4")).await.unwrap(),
            "no item equals the old value"
        );
        assert!(
            s.list_replace("r", b"b", b("a much longer value than before"))
                .await
                .unwrap()
        );
        assert_eq!(
            s.list_range("r", 0, 10).await.unwrap(),
            vec![b("c"), b("a2"), b("a much longer value than before"), b("a3")]
        );
        // A replace does not renew the list's expiry.
        c.advance(6 * SEC);
        assert!(s.list_replace("r", b"c", b("c2")).await.unwrap());
        c.advance(4 * SEC);
        assert!(s.list_range("r", 0, 10).await.unwrap().is_empty());
        assert!(!s.list_replace("r", b"c2", b("c3")).await.unwrap(), "expired");
        s.put("v", b("value"), None).await.unwrap();
        assert!(matches!(
            s.list_replace("v", b"value", b("x")).await,
            Err(StoreError::WrongType { .. })
        ));
    }

    pub(crate) async fn lists(s: &dyn Store, c: &ManualClock) {
        assert!(s.list_range("l", 0, 10).await.unwrap().is_empty());
        for i in 0..5 {
            assert_eq!(
                s.list_push("l", b(&i.to_string()), 3, None).await.unwrap(),
                (i + 1).min(3)
            );
        }
        assert_eq!(
            s.list_range("l", 0, 10).await.unwrap(),
            vec![b("4"), b("3"), b("2")]
        );
        assert_eq!(s.list_range("l", 1, 1).await.unwrap(), vec![b("3")]);
        assert_eq!(s.list_range("l", 2, 5).await.unwrap(), vec![b("2")]);
        assert!(s.list_range("l", 3, 5).await.unwrap().is_empty());
        assert!(s.list_range("l", 0, 0).await.unwrap().is_empty());
        assert!(
            s.list_range("l", usize::MAX, usize::MAX)
                .await
                .unwrap()
                .is_empty()
        );

        // Paging through a longer list.
        for i in 0..25 {
            s.list_push("h", b(&i.to_string()), 100, Some(10 * SEC))
                .await
                .unwrap();
        }
        let mut all = Vec::new();
        let mut start = 0;
        loop {
            let page = s.list_range("h", start, 10).await.unwrap();
            if page.is_empty() {
                break;
            }
            start += page.len();
            all.extend(page);
        }
        let expect: Vec<Bytes> = (0..25).rev().map(|i| b(&i.to_string())).collect();
        assert_eq!(all, expect);

        // TTL: Some refreshes, None keeps it.
        c.advance(6 * SEC);
        s.list_push("h", b("x"), 100, None).await.unwrap();
        c.advance(4 * SEC);
        assert!(
            s.list_range("h", 0, 1).await.unwrap().is_empty(),
            "None did not refresh"
        );
        s.list_push("h", b("y"), 100, Some(10 * SEC)).await.unwrap();
        c.advance(6 * SEC);
        assert_eq!(s.list_push("h", b("z"), 100, Some(10 * SEC)).await.unwrap(), 2);
        c.advance(6 * SEC);
        assert_eq!(s.list_range("h", 0, 10).await.unwrap(), vec![b("z"), b("y")]);

        assert_eq!(
            s.list_push("l", b("x"), 0, None).await.unwrap(),
            0,
            "cap 0 deletes"
        );
        assert!(s.list_range("l", 0, 10).await.unwrap().is_empty());
    }

    pub(crate) async fn wrong_types_are_errors(s: &dyn Store, _c: &ManualClock) {
        s.put("v", b("x"), None).await.unwrap();
        assert!(matches!(
            s.incr("v", 1, SEC).await,
            Err(StoreError::WrongType { .. })
        ));
        assert!(matches!(
            s.set_add("v", "m", SEC).await,
            Err(StoreError::WrongType { .. })
        ));
        assert!(matches!(
            s.list_push("v", b("m"), 3, None).await,
            Err(StoreError::WrongType { .. })
        ));
        assert!(matches!(
            s.rate_take("v", 1, SEC, 1).await,
            Err(StoreError::WrongType { .. })
        ));
        s.incr("n", 1, SEC).await.unwrap();
        assert!(matches!(s.take("n").await, Err(StoreError::WrongType { .. })));
        assert_eq!(s.counter("n").await.unwrap(), 1, "a failed take changes nothing");
        s.put("n", b("replaced"), None).await.unwrap();
        assert_eq!(
            s.get("n").await.unwrap(),
            Some(b("replaced")),
            "put replaces any kind"
        );
    }

    pub(crate) async fn batch_in_order(s: &dyn Store, _c: &ManualClock) {
        let k = |s: &str| s.to_string();
        let ops = vec![
            Op::Incr {
                key: k("bn"),
                by: 2,
                ttl: SEC,
            },
            Op::Incr {
                key: k("bn"),
                by: 3,
                ttl: SEC,
            },
            Op::Counter { key: k("bn") },
            Op::Put {
                key: k("bv"),
                value: b("v"),
                ttl: None,
            },
            Op::PutIfAbsent {
                key: k("bv"),
                value: b("w"),
                ttl: None,
            },
            Op::Get { key: k("bv") },
            Op::SetAdd {
                key: k("bs"),
                member: k("m"),
                ttl: SEC,
            },
            Op::SetContains {
                key: k("bs"),
                member: k("m"),
            },
            Op::SetLen { key: k("bs") },
            Op::ListPush {
                key: k("bl"),
                value: b("1"),
                cap: 5,
                ttl: None,
            },
            Op::ListPush {
                key: k("bl"),
                value: b("2"),
                cap: 5,
                ttl: None,
            },
            Op::ListRange {
                key: k("bl"),
                start: 0,
                count: 5,
            },
            Op::RateTake {
                key: k("br"),
                limit: 2,
                period: SEC,
                cost: 1,
            },
            Op::RatePeek {
                key: k("br"),
                limit: 2,
                period: SEC,
            },
            Op::Take { key: k("bv") },
            Op::Delete { key: k("bn") },
        ];
        let replies = s.batch(ops).await.unwrap();
        let rate = |remaining, reset_ms| super::RateDecision {
            allowed: true,
            remaining,
            retry_after: Duration::ZERO,
            reset_after: reset_ms * MS,
        };
        assert_eq!(
            replies,
            vec![
                Reply::Int(2),
                Reply::Int(5),
                Reply::Int(5),
                Reply::Unit,
                Reply::Bool(false),
                Reply::Value(Some(b("v"))),
                Reply::Count(1),
                Reply::Bool(true),
                Reply::Count(1),
                Reply::Len(1),
                Reply::Len(2),
                Reply::Values(vec![b("2"), b("1")]),
                Reply::Rate(rate(1, 500)),
                Reply::Rate(rate(1, 500)),
                Reply::Value(Some(b("v"))),
                Reply::Bool(true),
            ]
        );
        assert!(s.batch(Vec::new()).await.unwrap().is_empty());
        // Every op is attempted; the first error is reported.
        let ops = vec![
            Op::Incr {
                key: k("bv2"),
                by: 1,
                ttl: SEC,
            },
            Op::Get { key: k("bv2") },
            Op::Put {
                key: k("after"),
                value: b("x"),
                ttl: None,
            },
        ];
        assert!(matches!(s.batch(ops).await, Err(StoreError::WrongType { .. })));
        assert_eq!(s.get("after").await.unwrap(), Some(b("x")));
    }

    pub(crate) async fn concurrent_incr(s: Arc<dyn Store>) {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    for _ in 0..1000 {
                        s.incr("ci", 1, Duration::from_secs(3600)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.counter("ci").await.unwrap(), 8000);
    }

    pub(crate) async fn concurrent_rate_take(s: Arc<dyn Store>) {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut allowed = 0;
                    for _ in 0..50 {
                        if s.rate_take("cr", 100, Duration::from_secs(3600), 1)
                            .await
                            .unwrap()
                            .allowed
                        {
                            allowed += 1;
                        }
                    }
                    allowed
                })
            })
            .collect();
        let mut allowed = 0;
        for t in tasks {
            allowed += t.await.unwrap();
        }
        assert_eq!(allowed, 100);
    }

    pub(crate) async fn concurrent_put_if_absent(s: Arc<dyn Store>) {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.put_if_absent(
                        "nonce",
                        Bytes::from(format!("{i}")),
                        Some(Duration::from_secs(60)),
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::{hex_key, record_key};

    #[test]
    fn hex_keys_are_the_prefix_and_the_hex_of_the_digest() {
        let mut all = [0u8; 256];
        for (i, b) in all.iter_mut().enumerate() {
            *b = i as u8;
        }
        let k = hex_key("risk:fu:", &all);
        assert_eq!(k, format!("risk:fu:{}", hex::encode(all)));
        assert_eq!(k.capacity(), k.len(), "one allocation of the right size");
        assert_eq!(hex_key("p:", &[]), "p:");
        assert_eq!(hex_key("fp:", &[0xff, 0x0a, 0xb0]), "fp:ff0ab0");
        assert_eq!(hex_key("", &[0x12, 0xef]), "12ef");
        assert_eq!(record_key("user", "alice"), "rec/user/alice");
    }
}
