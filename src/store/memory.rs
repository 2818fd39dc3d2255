//! In-process `Store` backend: sharded maps with lazy expiry, key and memory caps, and sampled-LRU eviction.
//!
//! Every operation hashes its key once, with a randomly keyed SipHash (so attacker-chosen keys cannot
//! force collisions), and uses that hash both to pick the shard and as the hash in the shard's index.
//! A shard keeps its entries densely in a vector, so the expiry sweep and eviction sampling read them
//! without hashing.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::Rng;

use crate::clock::SharedClock;
use crate::store::{RateDecision, Store, StoreError};

const SHARDS: usize = 32;
/// Approximate bookkeeping cost of one key: the entry in its slab with the slab's growth slack, the index
/// slot at the map's load factor, and the key's own allocation. Calibrated against resident memory with
/// `cargo run --bin store-rss -- 100000` (a mix of rates, counters and one-member sets): with 96 and 64
/// the store counted 1/2.55 of what it held, with 192 and 128 1/1.46 (a small set's containers are still
/// not counted).
const ENTRY_OVERHEAD: usize = 192;
/// Approximate bookkeeping cost of one set member (hash-map and order-tree slots, the shared string).
const MEMBER_OVERHEAD: usize = 128;
/// Approximate bookkeeping cost of one list item.
const ITEM_OVERHEAD: usize = 32;
/// Entries sampled per eviction, as in Redis' approximated LRU.
const EVICTION_SAMPLES: usize = 5;
/// Entries examined for expiry by every write.
const SWEEP_PER_WRITE: usize = 4;
/// Times a write retries eviction in other shards before giving up.
const EVICTION_ROUNDS: usize = 8;
const NEVER: u64 = u64::MAX;
const NS_PER_MS: u128 = 1_000_000;

/// Caps of a [`MemoryStore`]; zero key and member caps are raised to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Most keys held at once.
    pub max_keys: usize,
    /// Most bytes held at once (approximate accounting, including overheads).
    pub max_bytes: usize,
    /// Most members of one set; a new member evicts the least recently added one.
    pub max_set_members: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self {
            max_keys: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            max_set_members: 10_000,
        }
    }
}

/// A [`Store`] held in process memory, for tests and throw-away runs.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Padded]>,
    hasher: RandomState,
    limits: MemoryLimits,
    usage: Usage,
    clock: SharedClock,
}

/// A shard's lock on its own cache lines, so threads working on different shards do not share them.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

impl std::ops::Deref for Padded {
    type Target = Mutex<Shard>;

    fn deref(&self) -> &Mutex<Shard> {
        &self.0
    }
}

/// Global accounting, shared by the shards; reservations are made before an entry grows.
#[derive(Debug, Default)]
struct Usage {
    keys: AtomicUsize,
    bytes: AtomicUsize,
}

impl Usage {
    /// Reserves `keys` and `bytes` if both fit under the caps. Zero amounts always fit (the totals never
    /// exceed the caps), so they skip the shared counters.
    fn try_reserve(&self, keys: usize, bytes: usize, limits: &MemoryLimits) -> bool {
        let add = |cur: usize, n: usize, max: usize| cur.checked_add(n).filter(|&t| t <= max);
        let upd = |a: &AtomicUsize, n, max| {
            n == 0
                || a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| add(c, n, max))
                    .is_ok()
        };
        if !upd(&self.keys, keys, limits.max_keys) {
            return false;
        }
        if !upd(&self.bytes, bytes, limits.max_bytes) {
            if keys != 0 {
                self.keys.fetch_sub(keys, Ordering::Relaxed);
            }
            return false;
        }
        true
    }

    fn has_room(&self, keys: usize, bytes: usize, limits: &MemoryLimits) -> bool {
        self.keys.load(Ordering::Relaxed).saturating_add(keys) <= limits.max_keys
            && self.bytes.load(Ordering::Relaxed).saturating_add(bytes) <= limits.max_bytes
    }

    /// Moves the accounting from `from` (keys, bytes) to `to`; unchanged totals are not touched.
    fn settle(&self, from: (usize, usize), to: (usize, usize)) {
        for (a, from, to) in [(&self.keys, from.0, to.0), (&self.bytes, from.1, to.1)] {
            debug_assert!(to <= from, "growth exceeded its reservation");
            if from > to {
                a.fetch_sub(from - to, Ordering::Relaxed);
            } else if to > from {
                a.fetch_add(to - from, Ordering::Relaxed);
            }
        }
    }
}

/// A stored key with its (keyed) hash, which the shard index uses as is.
#[derive(Debug, Clone)]
struct Key {
    hash: u64,
    name: Arc<str>,
}

/// A borrowed key with its hash, for lookups without allocating.
#[derive(Debug, Clone, Copy)]
struct Probe<'a> {
    hash: u64,
    name: &'a str,
}

/// What the shard index hashes and compares: implemented by [`Key`] and [`Probe`], so a `Probe` can look
/// up a `Key` through `Borrow<dyn Lookup>`.
trait Lookup {
    fn key_hash(&self) -> u64;
    fn name(&self) -> &str;
}

impl Lookup for Key {
    fn key_hash(&self) -> u64 {
        self.hash
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Lookup for Probe<'_> {
    fn key_hash(&self) -> u64 {
        self.hash
    }

    fn name(&self) -> &str {
        self.name
    }
}

impl<'a> Borrow<dyn Lookup + 'a> for Key {
    fn borrow(&self) -> &(dyn Lookup + 'a) {
        self
    }
}

impl Hash for dyn Lookup + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.key_hash());
    }
}

impl PartialEq for dyn Lookup + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key_hash() == other.key_hash() && self.name() == other.name()
    }
}

impl Eq for dyn Lookup + '_ {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.name == other.name
    }
}

impl Eq for Key {}

/// Passes on an already keyed hash (written with `write_u64`) unchanged.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by the index (which writes one u64); mixes anyway rather than ignoring input.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(29) ^ n;
    }
}

type Index = HashMap<Key, usize, BuildHasherDefault<PassThrough>>;

#[derive(Debug)]
struct Entry {
    key: Key,
    val: Val,
    /// Expiry in clock milliseconds; the entry is invisible from then on.
    expires: u64,
    /// Shard-local access tick, for LRU.
    used: u64,
    /// Accounted size in bytes.
    size: usize,
}

#[derive(Debug)]
enum Val {
    Bytes(Bytes),
    Counter(i64),
    /// Theoretical arrival time in nanoseconds since the epoch.
    Rate(u128),
    /// Boxed, as are lists, so that entries stay small for the sweep and eviction sampling.
    Set(Box<MemberSet>),
    List(Box<List>),
}

impl Val {
    fn payload(&self) -> usize {
        match self {
            Val::Bytes(b) => b.len(),
            Val::Counter(_) | Val::Rate(_) => 0,
            Val::Set(s) => s.bytes,
            Val::List(l) => l.bytes,
        }
    }
}

fn entry_size(key: &str, val: &Val) -> usize {
    key.len() + ENTRY_OVERHEAD + val.payload()
}

fn base_size(key: &str) -> usize {
    key.len() + ENTRY_OVERHEAD
}

/// The expiry of a key written at `now` with `ttl`: whole milliseconds, rounded up (saturating).
pub(super) fn expiry(now: u64, ttl: Duration) -> u64 {
    let ms = u64::try_from(ttl.as_nanos().div_ceil(NS_PER_MS)).unwrap_or(u64::MAX);
    now.saturating_add(ms)
}

fn wrong(key: &str, expected: &'static str) -> StoreError {
    StoreError::WrongType {
        key: key.to_owned(),
        expected,
    }
}
/// A set that remembers insertion order so the least recently added member can be evicted.
#[derive(Debug, Default)]
struct MemberSet {
    seq: HashMap<Arc<str>, u64>,
    order: BTreeMap<u64, Arc<str>>,
    next: u64,
    bytes: usize,
}

impl MemberSet {
    fn add(&mut self, member: &str, cap: usize) {
        let n = self.next;
        self.next += 1;
        if let Some(old) = self.seq.get_mut(member) {
            let prev = std::mem::replace(old, n);
            if let Some(m) = self.order.remove(&prev) {
                self.order.insert(n, m);
            }
            return;
        }
        if self.seq.len() >= cap {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.seq.remove(&oldest);
                self.bytes -= oldest.len() + MEMBER_OVERHEAD;
            }
        }
        let m: Arc<str> = member.into();
        self.bytes += member.len() + MEMBER_OVERHEAD;
        self.seq.insert(m.clone(), n);
        self.order.insert(n, m);
    }
}

#[derive(Debug, Default)]
struct List {
    items: VecDeque<Bytes>,
    bytes: usize,
}

impl List {
    fn push(&mut self, value: Bytes, cap: usize) {
        self.bytes += value.len() + ITEM_OVERHEAD;
        self.items.push_front(value);
        while self.items.len() > cap {
            if let Some(old) = self.items.pop_back() {
                self.bytes -= old.len() + ITEM_OVERHEAD;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    /// Each key's position in `entries`.
    index: Index,
    /// The entries, densely, so the sweep and eviction sampling reach them without hashing.
    entries: Vec<Entry>,
    /// `entries[i].expires`, kept apart for the sweep: a few entries' expiries share one cache line, which
    /// accesses to those entries (that update their LRU tick) do not write.
    expiries: Vec<u64>,
    tick: u64,
    sweep_cursor: usize,
}

impl Shard {
    /// The position of the key's entry if it is live (and marks it used); an expired entry is removed.
    fn live(&mut self, key: Probe<'_>, now: u64, usage: &Usage) -> Option<usize> {
        let i = *self.index.get(&key as &dyn Lookup)?;
        if self.entries[i].expires <= now {
            self.remove_at(i, usage);
            return None;
        }
        self.tick += 1;
        self.entries[i].used = self.tick;
        Some(i)
    }

    /// The key's entry if it is live, as [`Shard::live`].
    fn live_entry(&mut self, key: Probe<'_>, now: u64, usage: &Usage) -> Option<&mut Entry> {
        let i = self.live(key, now, usage)?;
        Some(&mut self.entries[i])
    }

    /// Adds an entry for a key the shard does not hold and returns its position.
    fn insert(&mut self, key: Key, val: Val, expires: u64) -> usize {
        self.tick += 1;
        let i = self.entries.len();
        let size = entry_size(&key.name, &val);
        let old = self.index.insert(key.clone(), i);
        debug_assert!(old.is_none(), "inserted a key that was present");
        self.expiries.push(expires);
        self.entries.push(Entry {
            key,
            val,
            expires,
            used: self.tick,
            size,
        });
        i
    }

    /// Removes the entry at `i`; the last entry moves into its place.
    fn remove_at(&mut self, i: usize, usage: &Usage) -> Entry {
        let e = self.entries.swap_remove(i);
        self.expiries.swap_remove(i);
        self.index.remove(&e.key);
        if let Some(moved) = self.entries.get(i) {
            if let Some(pos) = self.index.get_mut(&moved.key) {
                *pos = i;
            }
        }
        usage.settle((1, e.size), (0, 0));
        e
    }

    /// Examines the next few entries in turn and removes the expired ones.
    fn sweep(&mut self, now: u64, usage: &Usage) {
        for _ in 0..SWEEP_PER_WRITE {
            if self.expiries.is_empty() {
                return;
            }
            if self.sweep_cursor >= self.expiries.len() {
                self.sweep_cursor = 0;
            }
            if self.expiries[self.sweep_cursor] <= now {
                self.remove_at(self.sweep_cursor, usage);
            } else {
                self.sweep_cursor += 1;
            }
        }
    }

    /// Evicts one entry other than the one at `keep` (which is updated if that entry moves): an expired
    /// one if sampled, else the least recently used sample.
    fn evict_one(&mut self, now: u64, keep: &mut Option<usize>, usage: &Usage) -> bool {
        let candidates = self.entries.len() - usize::from(keep.is_some());
        if candidates == 0 {
            return false;
        }
        let mut rng = rand::rng();
        let mut best: Option<(u64, usize)> = None;
        let mut sampled = 0;
        while sampled < EVICTION_SAMPLES || best.is_none() {
            sampled += 1;
            let i = rng.random_range(0..self.entries.len());
            if *keep == Some(i) {
                continue;
            }
            let e = &self.entries[i];
            if e.expires <= now {
                best = Some((0, i));
                break;
            }
            if best.is_none_or(|(used, _)| e.used < used) {
                best = Some((e.used, i));
            }
        }
        let Some((_, i)) = best else { return false };
        let last = self.entries.len() - 1;
        self.remove_at(i, usage);
        if *keep == Some(last) {
            *keep = Some(i);
        }
        true
    }
}

/// What a write does when the key is absent: the value to insert and its expiry.
type Insert = Option<(Val, u64)>;

/// How a rate limit applies.
enum Rule {
    Deny,
    Allow,
    Gcra(Gcra),
}

/// GCRA parameters in nanoseconds: emission interval `t` and burst tolerance `tol = t * limit`.
struct Gcra {
    t: u128,
    tol: u128,
    limit: u32,
    period: Duration,
}

impl Rule {
    fn new(limit: u32, period: Duration) -> Self {
        if limit == 0 {
            return Rule::Deny;
        }
        match div(period.as_nanos(), u128::from(limit)) {
            0 => Rule::Allow,
            t => Rule::Gcra(Gcra {
                t,
                tol: t * u128::from(limit),
                limit,
                period,
            }),
        }
    }
}

/// `a / b` (`b > 0`), by 64-bit division when both fit: u128 division is a much slower library call.
fn div(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from(a / b),
        _ => a / b,
    }
}

fn nanos(ns: u128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

impl Gcra {
    /// The decision for state `tat` at `now` (both in nanoseconds), and the new TAT when it takes.
    fn decide(&self, tat: u128, now: u128, cost: u32, take: bool) -> (RateDecision, Option<u128>) {
        let base = tat.max(now);
        let remaining =
            |tat: u128| u32::try_from(div((now + self.tol).saturating_sub(tat), self.t)).unwrap_or(0);
        let new_tat = base + self.t * u128::from(cost);
        let allow_at = new_tat.saturating_sub(self.tol);
        let fits = cost <= self.limit;
        let allowed = fits && now >= allow_at;
        if allowed && take {
            let reset_after = nanos(new_tat - now);
            let d = RateDecision {
                allowed,
                remaining: remaining(new_tat),
                retry_after: Duration::ZERO,
                reset_after,
            };
            return (d, Some(new_tat));
        }
        let retry_after = match (allowed, fits) {
            (true, _) => Duration::ZERO,
            (false, true) => nanos(allow_at - now),
            (false, false) => self.period,
        };
        (
            RateDecision {
                allowed,
                remaining: remaining(base),
                retry_after,
                reset_after: nanos(base - now),
            },
            None,
        )
    }
}

impl MemoryStore {
    /// An empty store with the given caps, reading time from `clock`.
    pub fn new(limits: MemoryLimits, clock: SharedClock) -> Self {
        let limits = MemoryLimits {
            max_keys: limits.max_keys.max(1),
            max_set_members: limits.max_set_members.max(1),
            ..limits
        };
        let shards = (0..SHARDS).map(|_| Padded::default()).collect();
        Self {
            shards,
            hasher: RandomState::new(),
            limits,
            usage: Usage::default(),
            clock,
        }
    }

    /// Number of keys held (expired ones count until reclaimed).
    pub fn len(&self) -> usize {
        self.usage.keys.load(Ordering::Relaxed)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.usage.bytes.load(Ordering::Relaxed)
    }

    /// The key with its keyed hash: SipHash of exactly the key's bytes (one `write`, without the
    /// terminator `str` hashing adds, which a lone key does not need).
    fn probe<'a>(&self, key: &'a str) -> Probe<'a> {
        let mut h = self.hasher.build_hasher();
        h.write(key.as_bytes());
        Probe {
            hash: h.finish(),
            name: key,
        }
    }

    /// The shard of a key: from hash bits that the shard's index uses neither for the bucket (low bits)
    /// nor for the control tag (top 7 bits).
    fn shard_of(key: Probe<'_>) -> usize {
        (key.hash >> 32) as usize % SHARDS
    }

    /// Runs `f` on the key's shard with the current time.
    fn with_shard<R>(&self, key: &str, f: impl FnOnce(&mut Shard, Probe<'_>, u64, &Usage) -> R) -> R {
        let key = self.probe(key);
        let now = self.clock.now_ms();
        f(
            &mut self.shards[Self::shard_of(key)].lock(),
            key,
            now,
            &self.usage,
        )
    }

    /// Runs `f` on the key's live entry, if any.
    fn read<R>(&self, key: &str, f: impl FnOnce(Option<&mut Entry>) -> R) -> R {
        self.with_shard(key, |shard, key, now, usage| f(shard.live_entry(key, now, usage)))
    }

    /// Runs a write that may grow the key. `need` checks the live entry's type and bounds the growth in
    /// bytes; that space (and a key slot if the key is new) is reserved, evicting other keys if needed,
    /// before `apply` mutates the entry or (only when there is none) returns one to insert; unused space
    /// is released afterwards.
    fn write<R>(
        &self,
        key: &str,
        need: impl Fn(Option<&Entry>) -> Result<usize, StoreError>,
        apply: impl FnOnce(Option<&mut Entry>, u64) -> (R, Insert),
    ) -> Result<R, StoreError> {
        let probe = self.probe(key);
        let own = Self::shard_of(probe);
        let mut failed_rounds = 0;
        loop {
            let now = self.clock.now_ms();
            let mut guard = self.shards[own].lock();
            let shard = &mut *guard;
            let mut at = shard.live(probe, now, &self.usage);
            let old_size = at.map_or(0, |i| shard.entries[i].size);
            let need = need(at.map(|i| &shard.entries[i]))?;
            if old_size.saturating_add(need) > self.limits.max_bytes {
                return Err(StoreError::TooLarge {
                    limit: self.limits.max_bytes,
                });
            }
            let want = (usize::from(at.is_none()), need);
            let mut reserved = self.usage.try_reserve(want.0, want.1, &self.limits);
            while !reserved && shard.evict_one(now, &mut at, &self.usage) {
                reserved = self.usage.try_reserve(want.0, want.1, &self.limits);
            }
            if reserved {
                let entries = &mut shard.entries;
                let (out, insert) = apply(at.map(|i| &mut entries[i]), now);
                if let Some((val, expires)) = insert {
                    debug_assert!(at.is_none(), "an insert for a present key");
                    let key = Key {
                        hash: probe.hash,
                        name: key.into(),
                    };
                    at = Some(shard.insert(key, val, expires));
                }
                let new = match at {
                    Some(i) => {
                        let e = &mut shard.entries[i];
                        e.size = entry_size(&e.key.name, &e.val);
                        shard.expiries[i] = e.expires;
                        (1, e.size)
                    }
                    None => (0, 0),
                };
                self.usage.settle((1, old_size + need), new);
                shard.sweep(now, &self.usage);
                return Ok(out);
            }
            drop(guard);
            if !self.evict_elsewhere(own, want, now) {
                failed_rounds += 1;
                if failed_rounds >= EVICTION_ROUNDS {
                    let reason = "memory cap reached and nothing can be evicted".to_owned();
                    return Err(StoreError::Unavailable {
                        backend: "memory",
                        reason,
                    });
                }
                std::thread::yield_now();
            }
        }
    }

    /// Evicts from the other shards (one lock at a time) until `want` fits; false if it still does not.
    fn evict_elsewhere(&self, own: usize, want: (usize, usize), now: u64) -> bool {
        let start = rand::rng().random_range(0..SHARDS);
        for i in 0..SHARDS {
            let j = (start + i) % SHARDS;
            if j == own {
                continue;
            }
            let mut shard = self.shards[j].lock();
            while !self.usage.has_room(want.0, want.1, &self.limits) {
                if !shard.evict_one(now, &mut None, &self.usage) {
                    break;
                }
            }
            if self.usage.has_room(want.0, want.1, &self.limits) {
                return true;
            }
        }
        false
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn rate_take(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        cost: u32,
    ) -> Result<RateDecision, StoreError> {
        let g = match Rule::new(limit, period) {
            Rule::Deny => return Ok(denied(period)),
            Rule::Allow => return Ok(unlimited(limit)),
            Rule::Gcra(g) => g,
        };
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(base_size(key)),
            Some(Val::Rate(_)) => Ok(0),
            Some(_) => Err(wrong(key, "rate limit")),
        };
        self.write(key, need, |e, now| {
            let tat = match e.as_deref() {
                Some(Entry {
                    val: Val::Rate(tat), ..
                }) => *tat,
                _ => 0,
            };
            let now_ns = u128::from(now) * NS_PER_MS;
            let (d, new_tat) = g.decide(tat, now_ns, cost, true);
            let Some(new_tat) = new_tat else { return (d, None) };
            let expires = u64::try_from(new_tat.div_ceil(NS_PER_MS)).unwrap_or(NEVER);
            match e {
                Some(e) => {
                    if let Val::Rate(tat) = &mut e.val {
                        *tat = new_tat;
                    }
                    e.expires = expires;
                    (d, None)
                }
                None => (d, Some((Val::Rate(new_tat), expires))),
            }
        })
    }

    async fn rate_peek(&self, key: &str, limit: u32, period: Duration) -> Result<RateDecision, StoreError> {
        let g = match Rule::new(limit, period) {
            Rule::Deny => return Ok(denied(period)),
            Rule::Allow => return Ok(unlimited(limit)),
            Rule::Gcra(g) => g,
        };
        self.with_shard(key, |shard, k, now, usage| {
            let tat = match shard.live_entry(k, now, usage).map(|e| &e.val) {
                None => 0,
                Some(Val::Rate(tat)) => *tat,
                Some(_) => return Err(wrong(key, "rate limit")),
            };
            Ok(g.decide(tat, u128::from(now) * NS_PER_MS, 1, false).0)
        })
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, StoreError> {
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(base_size(key)),
            Some(Val::Counter(_)) => Ok(0),
            Some(_) => Err(wrong(key, "counter")),
        };
        self.write(key, need, |e, now| match e {
            Some(Entry {
                val: Val::Counter(n), ..
            }) => {
                *n = n.saturating_add(by);
                (*n, None)
            }
            _ => (by, Some((Val::Counter(by), expiry(now, ttl)))),
        })
    }

    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        self.read(key, |e| match e.map(|e| &e.val) {
            None => Ok(0),
            Some(Val::Counter(n)) => Ok(*n),
            Some(_) => Err(wrong(key, "counter")),
        })
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<u64, StoreError> {
        let cost = member.len() + MEMBER_OVERHEAD;
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(base_size(key) + cost),
            Some(Val::Set(s)) => Ok(if s.seq.contains_key(member) { 0 } else { cost }),
            Some(_) => Err(wrong(key, "set")),
        };
        let cap = self.limits.max_set_members;
        self.write(key, need, |e, now| match e {
            Some(Entry {
                val: Val::Set(s),
                expires,
                ..
            }) => {
                s.add(member, cap);
                *expires = expiry(now, ttl);
                (s.seq.len() as u64, None)
            }
            _ => {
                let mut s = MemberSet::default();
                s.add(member, cap);
                (1, Some((Val::Set(Box::new(s)), expiry(now, ttl))))
            }
        })
    }

    async fn set_len(&self, key: &str) -> Result<u64, StoreError> {
        self.read(key, |e| match e.map(|e| &e.val) {
            None => Ok(0),
            Some(Val::Set(s)) => Ok(s.seq.len() as u64),
            Some(_) => Err(wrong(key, "set")),
        })
    }

    async fn set_contains(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        self.read(key, |e| match e.map(|e| &e.val) {
            None => Ok(false),
            Some(Val::Set(s)) => Ok(s.seq.contains_key(member)),
            Some(_) => Err(wrong(key, "set")),
        })
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), StoreError> {
        // Copied so that a slice of a bigger buffer does not pin (unaccounted) memory.
        let value = Bytes::copy_from_slice(&value);
        let size = base_size(key) + value.len();
        let need = |e: Option<&Entry>| Ok(size.saturating_sub(e.map_or(0, |e| e.size)));
        self.write(key, need, |e, now| {
            let expires = ttl.map_or(NEVER, |ttl| expiry(now, ttl));
            match e {
                Some(e) => {
                    (e.val, e.expires) = (Val::Bytes(value), expires);
                    ((), None)
                }
                None => ((), Some((Val::Bytes(value), expires))),
            }
        })
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let value = Bytes::copy_from_slice(&value);
        let size = base_size(key) + value.len();
        let need = |e: Option<&Entry>| Ok(if e.is_some() { 0 } else { size });
        self.write(key, need, |e, now| match e {
            Some(_) => (false, None),
            None => (
                true,
                Some((Val::Bytes(value), ttl.map_or(NEVER, |ttl| expiry(now, ttl)))),
            ),
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.read(key, |e| match e.map(|e| &e.val) {
            None => Ok(None),
            Some(Val::Bytes(b)) => Ok(Some(b.clone())),
            Some(_) => Err(wrong(key, "value")),
        })
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.with_shard(key, |shard, k, now, usage| {
            let Some(i) = shard.live(k, now, usage) else {
                return Ok(None);
            };
            if !matches!(shard.entries[i].val, Val::Bytes(_)) {
                return Err(wrong(key, "value"));
            }
            match shard.remove_at(i, usage).val {
                Val::Bytes(b) => Ok(Some(b)),
                _ => Ok(None),
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.with_shard(key, |shard, k, now, usage| {
            shard
                .live(k, now, usage)
                .map(|i| shard.remove_at(i, usage))
                .is_some()
        }))
    }

    async fn list_push(
        &self,
        key: &str,
        value: Bytes,
        cap: usize,
        ttl: Option<Duration>,
    ) -> Result<usize, StoreError> {
        if cap == 0 {
            return self.with_shard(key, |shard, k, now, usage| {
                let Some(i) = shard.live(k, now, usage) else {
                    return Ok(0);
                };
                if !matches!(shard.entries[i].val, Val::List(_)) {
                    return Err(wrong(key, "list"));
                }
                shard.remove_at(i, usage);
                Ok(0)
            });
        }
        let value = Bytes::copy_from_slice(&value);
        let cost = value.len() + ITEM_OVERHEAD;
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(base_size(key) + cost),
            Some(Val::List(_)) => Ok(cost),
            Some(_) => Err(wrong(key, "list")),
        };
        self.write(key, need, |e, now| match e {
            Some(Entry {
                val: Val::List(l),
                expires,
                ..
            }) => {
                l.push(value, cap);
                if let Some(ttl) = ttl {
                    *expires = expiry(now, ttl);
                }
                (l.items.len(), None)
            }
            _ => {
                let mut l = List::default();
                l.push(value, cap);
                (
                    1,
                    Some((Val::List(Box::new(l)), ttl.map_or(NEVER, |ttl| expiry(now, ttl)))),
                )
            }
        })
    }

    async fn list_range(&self, key: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError> {
        self.read(key, |e| match e.map(|e| &e.val) {
            None => Ok(Vec::new()),
            Some(Val::List(l)) => Ok(l.items.iter().skip(start).take(count).cloned().collect()),
            Some(_) => Err(wrong(key, "list")),
        })
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn usage(&self) -> Option<(usize, usize)> {
        Some((self.len(), self.bytes()))
    }
}

fn denied(period: Duration) -> RateDecision {
    RateDecision {
        allowed: false,
        remaining: 0,
        retry_after: period,
        reset_after: Duration::ZERO,
    }
}

fn unlimited(limit: u32) -> RateDecision {
    RateDecision {
        allowed: true,
        remaining: limit,
        retry_after: Duration::ZERO,
        reset_after: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use rand::{Rng, SeedableRng};

    use super::{MemoryLimits, MemoryStore};
    use crate::clock::ManualClock;
    use crate::store::{Store, StoreError, conformance};

    const START_MS: u64 = 1_700_000_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn store(limits: MemoryLimits) -> (MemoryStore, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(START_MS));
        (MemoryStore::new(limits, clock.clone()), clock)
    }

    fn limits(max_keys: usize, max_bytes: usize) -> MemoryLimits {
        MemoryLimits {
            max_keys,
            max_bytes,
            ..MemoryLimits::default()
        }
    }

    /// Recounts keys and bytes from the shards and checks them against the running totals and the caps.
    fn audit(s: &MemoryStore) {
        let (mut keys, mut bytes) = (0, 0);
        for shard in s.shards.iter() {
            let shard = shard.lock();
            assert_eq!(shard.index.len(), shard.entries.len());
            assert_eq!(shard.expiries.len(), shard.entries.len());
            for (i, e) in shard.entries.iter().enumerate() {
                assert_eq!(shard.index[&e.key], i);
                assert_eq!(shard.expiries[i], e.expires);
                assert_eq!(e.key.hash, s.probe(&e.key.name).hash);
                assert_eq!(e.size, super::entry_size(&e.key.name, &e.val));
                keys += 1;
                bytes += e.size;
            }
        }
        assert_eq!(
            (s.len(), s.bytes()),
            (keys, bytes),
            "running totals match the contents"
        );
        assert!(
            keys <= s.limits.max_keys && bytes <= s.limits.max_bytes,
            "caps hold"
        );
    }

    macro_rules! conformance_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $name() {
                let (s, c) = store(MemoryLimits::default());
                conformance::$name(&s, &c).await;
                audit(&s);
            }
        )*};
    }

    conformance_tests!(
        gcra_burst_then_interval,
        gcra_peek_does_not_take,
        gcra_cost,
        gcra_edge_limits,
        incr_fixed_window,
        sets,
        values_with_ttl,
        put_if_absent_take_delete,
        lists,
        wrong_types_are_errors,
        batch_in_order,
    );

    macro_rules! concurrent_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
            async fn $name() {
                let (s, _c) = store(MemoryLimits::default());
                let s = Arc::new(s);
                conformance::$name(s.clone()).await;
                audit(&s);
            }
        )*};
    }

    concurrent_tests!(concurrent_incr, concurrent_rate_take, concurrent_put_if_absent);

    #[tokio::test]
    async fn kind_is_memory() {
        assert_eq!(store(MemoryLimits::default()).0.kind(), "memory");
    }

    #[tokio::test]
    async fn key_cap_holds_under_a_flood_of_every_kind() {
        let (s, _c) = store(limits(100, usize::MAX));
        for i in 0..1000 {
            let k = format!("k{i}");
            match i % 5 {
                0 => s.put(&k, Bytes::from_static(b"v"), None).await.unwrap(),
                1 => assert_eq!(s.incr(&k, 1, HOUR).await.unwrap(), 1),
                2 => assert_eq!(s.set_add(&k, "m", HOUR).await.unwrap(), 1),
                3 => assert_eq!(
                    s.list_push(&k, Bytes::from_static(b"v"), 5, None).await.unwrap(),
                    1
                ),
                _ => assert!(s.rate_take(&k, 5, HOUR, 1).await.unwrap().allowed),
            }
            assert!(s.len() <= 100);
        }
        assert_eq!(s.len(), 100, "the store stays full, not emptied");
        audit(&s);
    }

    #[tokio::test]
    async fn byte_cap_holds_under_a_flood() {
        let max_bytes = 64 * 1024;
        let (s, _c) = store(limits(usize::MAX, max_bytes));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut written = 0;
        let mut i = 0;
        while written < 10 * max_bytes {
            let value = Bytes::from(vec![b'x'; rng.random_range(0..4000)]);
            written += value.len();
            s.put(&format!("k{i}"), value, None).await.unwrap();
            i += 1;
            assert!(s.bytes() <= max_bytes);
        }
        assert!(s.bytes() > max_bytes / 2, "the store stays mostly full");
        audit(&s);
    }

    #[tokio::test]
    async fn growing_sets_and_lists_respect_the_byte_cap() {
        let max_bytes = 16 * 1024;
        let (s, _c) = store(limits(usize::MAX, max_bytes));
        for i in 0..200 {
            s.put(&format!("filler{i}"), Bytes::from(vec![0; 100]), None)
                .await
                .unwrap();
        }
        for i in 0..2000 {
            // Each grows until the cap forces eviction of the fillers, then of each other.
            let set = s.set_add("set", &format!("member-{i}"), HOUR).await;
            let list = s.list_push("list", Bytes::from(vec![1; 50]), 10_000, None).await;
            for r in [set.map(drop), list.map(drop)] {
                assert!(matches!(r, Ok(()) | Err(StoreError::TooLarge { .. })), "{r:?}");
            }
            assert!(s.bytes() <= max_bytes);
        }
        audit(&s);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn cap_holds_under_a_concurrent_flood() {
        let (s, _c) = store(limits(1000, 512 * 1024));
        let s = Arc::new(s);
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 0..5000 {
                        s.put(&format!("t{t}-{i}"), Bytes::from(vec![0; i % 300]), None)
                            .await
                            .unwrap();
                        s.incr(&format!("n{}", i % 50), 1, HOUR).await.unwrap();
                        assert!(s.len() <= 1000 && s.bytes() <= 512 * 1024);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        audit(&s);
    }

    #[tokio::test]
    async fn lru_keeps_recently_read_keys() {
        let (s, _c) = store(limits(2000, usize::MAX));
        let v = || Bytes::from_static(b"v");
        for i in 0..100 {
            s.put(&format!("hot{i}"), v(), None).await.unwrap();
            s.put(&format!("cold{i}"), v(), None).await.unwrap();
        }
        for i in 0..20_000 {
            if i % 200 == 0 {
                for h in 0..100 {
                    let _ = s.get(&format!("hot{h}")).await.unwrap();
                }
            }
            s.put(&format!("flood{i}"), v(), None).await.unwrap();
        }
        let mut hot = 0;
        let mut cold = 0;
        for i in 0..100 {
            hot += usize::from(s.get(&format!("hot{i}")).await.unwrap().is_some());
            cold += usize::from(s.get(&format!("cold{i}")).await.unwrap().is_some());
        }
        assert!(hot >= 90, "{hot} of 100 hot keys survived");
        assert!(cold <= 10, "{cold} of 100 untouched keys survived");
        audit(&s);
    }

    #[tokio::test]
    async fn too_large_values_are_refused_and_change_nothing() {
        let (s, _c) = store(limits(10, 4096));
        s.put("k", Bytes::from_static(b"small"), None).await.unwrap();
        let big = Bytes::from(vec![0; 4096]);
        assert!(matches!(
            s.put("k", big.clone(), None).await,
            Err(StoreError::TooLarge { limit: 4096 })
        ));
        assert!(matches!(
            s.put_if_absent("n", big.clone(), None).await,
            Err(StoreError::TooLarge { .. })
        ));
        assert!(matches!(
            s.list_push("l", big, 3, None).await,
            Err(StoreError::TooLarge { .. })
        ));
        let huge_key = "k".repeat(5000);
        assert!(matches!(
            s.incr(&huge_key, 1, HOUR).await,
            Err(StoreError::TooLarge { .. })
        ));
        assert!(matches!(
            s.set_add("s", &huge_key, HOUR).await,
            Err(StoreError::TooLarge { .. })
        ));
        assert_eq!(s.get("k").await.unwrap(), Some(Bytes::from_static(b"small")));
        assert_eq!(s.len(), 1);
        audit(&s);
    }

    #[tokio::test]
    async fn zero_limits_do_not_panic() {
        let zero = MemoryLimits {
            max_keys: 0,
            max_bytes: 0,
            max_set_members: 0,
        };
        let (s, _c) = store(zero);
        assert!(matches!(
            s.put("", Bytes::new(), None).await,
            Err(StoreError::TooLarge { limit: 0 })
        ));
        assert!(matches!(
            s.incr("n", 1, HOUR).await,
            Err(StoreError::TooLarge { .. })
        ));
        assert!(!s.rate_take("r", 0, HOUR, 1).await.unwrap().allowed);
        assert_eq!(s.get("").await.unwrap(), None);
        assert!(s.is_empty());

        let (s, _c) = store(MemoryLimits {
            max_keys: 0,
            max_bytes: 1 << 20,
            max_set_members: 0,
        });
        s.put("a", Bytes::new(), None).await.unwrap();
        s.put("b", Bytes::new(), None).await.unwrap();
        assert_eq!(s.len(), 1, "a zero key cap is raised to one");
        assert_eq!(s.get("b").await.unwrap(), Some(Bytes::new()));
        assert_eq!(s.set_add("s", "x", HOUR).await.unwrap(), 1);
        assert_eq!(
            s.set_add("s", "y", HOUR).await.unwrap(),
            1,
            "a zero member cap is raised to one"
        );
        audit(&s);
    }

    #[tokio::test]
    async fn set_member_cap_evicts_the_least_recently_added() {
        let (s, _c) = store(MemoryLimits {
            max_set_members: 3,
            ..MemoryLimits::default()
        });
        for m in ["a", "b", "c"] {
            s.set_add("s", m, HOUR).await.unwrap();
        }
        assert_eq!(s.set_add("s", "d", HOUR).await.unwrap(), 3);
        assert!(
            !s.set_contains("s", "a").await.unwrap(),
            "the oldest member made room"
        );
        assert_eq!(
            s.set_add("s", "b", HOUR).await.unwrap(),
            3,
            "re-adding refreshes b"
        );
        assert_eq!(s.set_add("s", "e", HOUR).await.unwrap(), 3);
        assert!(!s.set_contains("s", "c").await.unwrap());
        for m in ["b", "d", "e"] {
            assert!(s.set_contains("s", m).await.unwrap(), "{m} kept");
        }
        audit(&s);
    }

    #[tokio::test]
    async fn expired_entries_are_reclaimed_lazily_and_by_the_sweep() {
        let (s, c) = store(MemoryLimits::default());
        for i in 0..200 {
            s.put(
                &format!("e{i}"),
                Bytes::from_static(b"v"),
                Some(Duration::from_secs(1)),
            )
            .await
            .unwrap();
        }
        s.incr("n", 1, Duration::from_secs(1)).await.unwrap();
        c.advance(Duration::from_secs(1));
        assert_eq!(
            s.len(),
            201,
            "expired entries are invisible but not yet reclaimed"
        );
        assert_eq!(s.counter("n").await.unwrap(), 0);
        assert_eq!(s.len(), 200, "reading an expired key reclaims it");
        for i in 0..1000 {
            s.incr(&format!("live{i}"), 1, HOUR).await.unwrap();
        }
        assert_eq!(s.len(), 1000, "writes swept every expired entry");
        audit(&s);
    }

    #[tokio::test]
    async fn eviction_prefers_expired_entries() {
        let (s, c) = store(limits(1000, usize::MAX));
        for i in 0..500 {
            s.put(
                &format!("short{i}"),
                Bytes::from_static(b"v"),
                Some(Duration::from_secs(1)),
            )
            .await
            .unwrap();
        }
        for i in 0..500 {
            s.put(&format!("long{i}"), Bytes::from_static(b"v"), None)
                .await
                .unwrap();
        }
        c.advance(Duration::from_secs(2));
        for i in 0..300 {
            s.put(&format!("new{i}"), Bytes::from_static(b"v"), None)
                .await
                .unwrap();
        }
        let mut long = 0;
        for i in 0..500 {
            long += usize::from(s.get(&format!("long{i}")).await.unwrap().is_some());
        }
        assert!(long >= 450, "{long} of 500 unexpired keys survived");
        audit(&s);
    }

    #[tokio::test]
    async fn random_operations_keep_accounting_exact() {
        let (s, c) = store(MemoryLimits {
            max_keys: 300,
            max_bytes: 64 * 1024,
            max_set_members: 20,
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..20_000 {
            let k = format!("k{}", rng.random_range(0..500));
            let ttl = Duration::from_millis(rng.random_range(0..5000));
            let v = Bytes::from(vec![0; rng.random_range(0..600)]);
            let _ = match rng.random_range(0..10) {
                0 => s.put(&k, v, Some(ttl)).await.map(drop),
                1 => s.put_if_absent(&k, v, None).await.map(drop),
                2 => s.incr(&k, 1, ttl).await.map(drop),
                3 => s
                    .set_add(&k, &format!("m{}", rng.random_range(0..40)), ttl)
                    .await
                    .map(drop),
                4 => s
                    .list_push(&k, v, rng.random_range(0..8), Some(ttl))
                    .await
                    .map(drop),
                5 => s.rate_take(&k, 3, ttl, 1).await.map(drop),
                6 => s.take(&k).await.map(drop),
                7 => s.delete(&k).await.map(drop),
                8 => s.get(&k).await.map(drop),
                _ => {
                    c.advance(Duration::from_millis(rng.random_range(0..300)));
                    Ok(())
                }
            };
        }
        audit(&s);
    }
}
