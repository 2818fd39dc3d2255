//! In-process `Store` backend: sharded maps with lazy expiry, key and memory caps, and sampled-LRU eviction.
//!
//! Every operation hashes its key once, with a randomly keyed SipHash (so attacker-chosen keys cannot
//! force collisions), and uses that hash both to pick the shard and as the hash in the shard's index.
//! A shard keeps its entries densely in a vector, so the expiry sweep and eviction sampling read them
//! without hashing; its index holds their positions, each with 32 bits of its key's hash so that the
//! index grows or cleans up its tombstones without reading an entry.
//!
//! Keys and set members are kept as 128-bit `Fingerprint`s, not as strings: nothing reads a name back,
//! and a counter or rate entry then needs no allocation of its own.
//!
//! The memory cap bounds what the store holds from the allocator: each allocation (values, sets' and
//! lists' tables, and every shard's tables at their capacities) is counted at the size the allocator
//! takes for it (`heap`). Growth is reserved before it happens, evicting if need be, so the count never
//! exceeds the cap, and tables shrink again when they empty.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::SharedClock;
use crate::store::{Keep, Op, RateDecision, Replies, Reply, Store, StoreError};

const SHARDS: usize = 32;
/// Allocations up to this size are counted at their allocator size class, bigger ones in whole pages.
const SIZE_CLASSES_MAX: usize = 128 * 1024;
const PAGE: usize = 4096;
/// Entries per block of a shard's table.
const BLOCK: usize = 32;
/// A shard's index shrinks only from above room for this many entries.
const MIN_INDEX: usize = 16;
/// Set members found by a linear scan; a bigger set indexes its members.
const SCAN_MEMBERS: usize = 8;
/// Consecutive entries sampled per eviction, from where the last one stopped.
const EVICTION_RUN: usize = 8;
/// Entries sampled per eviction at random positions besides, as in Redis' approximated LRU.
const EVICTION_RANDOM: usize = 2;
/// Random entries examined further when an eviction's samples were all of a [`Keep`] class above
/// `Expendable`: the first expendable (or expired) one found goes instead.
const EVICTION_FURTHER: usize = 32;
/// Entries examined for expiry by every write.
const SWEEP_PER_WRITE: usize = 4;
/// Times a write retries eviction in other shards before giving up.
const EVICTION_ROUNDS: usize = 8;
const NEVER: u64 = u64::MAX;
const NS_PER_MS: u128 = 1_000_000;
/// No member: the end of a set's order.
const NONE: u32 = u32::MAX;

/// Caps of a [`MemoryStore`]; zero key and member caps are raised to 1, caps above `u32::MAX` lowered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Most keys held at once.
    pub max_keys: usize,
    /// Most bytes held at once: every allocation of the store, tables included, at its allocator size.
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
    fingerprints: Fingerprinter,
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

/// The bytes the allocator takes for an `n`-byte allocation, under whichever of the two allocators the
/// binary may use takes more: glibc's malloc (an 8-byte header, 16-byte steps, 32 bytes at least) or
/// mimalloc (8-byte size classes up to 64 bytes, then four per doubling). Beyond [`SIZE_CLASSES_MAX`],
/// whole pages (glibc maps them with a header; mimalloc's pages are resident only once touched).
fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else if n + 32 > SIZE_CLASSES_MAX {
        (n + 32).next_multiple_of(PAGE)
    } else {
        let glibc = (n + 8).next_multiple_of(16).max(32);
        let mimalloc = if n <= 64 {
            n.next_multiple_of(8)
        } else {
            n.next_multiple_of((1 << (n - 1).ilog2()) / 4)
        };
        glibc.max(mimalloc)
    }
}

/// Accounted bytes of a vector's buffer with room for `cap` elements.
fn vec_size<T>(cap: usize) -> usize {
    heap(cap * size_of::<T>())
}

/// The capacity a full set or list of `n` grows to, with at most `cap`: half more.
fn grown_within(n: usize, cap: usize) -> usize {
    (n + (n / 2).max(1)).min(cap)
}

/// An upper bound of the bytes a position index grows by with one more insert: nothing while it has
/// room; else its buckets double, and a table of `b` buckets of `s`-byte slots takes `(s + 1)b + 16`
/// bytes (a control byte per bucket and a group of 16 more), so the new allocation is at most twice the
/// old one (or, for the first, under 64 bytes).
fn index_growth<T>(index: &HashTable<T>) -> usize {
    if index.len() < index.capacity() {
        return 0;
    }
    let now = index.allocation_size();
    heap(2 * now + 64) - heap(now)
}

/// An upper bound of the allocation of a position index made for `n` positions, as [`index_growth`]:
/// buckets for `n` at a 7/8 load, a power of two, 16 at least.
fn index_size(n: usize) -> usize {
    let buckets = (n * 8 / 7 + 1).next_power_of_two().max(16);
    heap(5 * buckets + 16)
}

/// What the store keeps of a key or a set member: a randomly keyed SipHash of its bytes (for a key, it
/// picks the shard and is the hash in the shard's index) and a second, independent 64-bit hash. Two
/// strings share a fingerprint only if both collide: the keyed hash makes that impossible to arrange, and
/// by chance it takes about 2^64 strings held at once to expect one such pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    hash: u64,
    check: u64,
}

/// The two hash functions of a [`Fingerprint`], randomly keyed per store.
#[derive(Debug)]
struct Fingerprinter {
    keyed: RandomState,
    seed: u64,
}

impl Fingerprinter {
    fn new() -> Self {
        Self {
            keyed: RandomState::new(),
            seed: rand::random(),
        }
    }

    /// The string's fingerprint: SipHash of exactly its bytes (one `write`, without the terminator `str`
    /// hashing adds, which a lone string does not need), and a folded 64×64→128-bit multiply per 8 bytes
    /// (as in foldhash and wyhash), which is fast and mixes well but resists no adversary on its own.
    fn of(&self, s: &str) -> Fingerprint {
        const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
        let fold = |a: u64, b: u64| {
            let p = u128::from(a) * u128::from(b);
            (p as u64) ^ ((p >> 64) as u64)
        };
        let mut h = self.keyed.build_hasher();
        h.write(s.as_bytes());
        let mut check = self.seed ^ s.len() as u64;
        let mut words = s.as_bytes().chunks_exact(8);
        let mut word = [0; 8];
        for w in &mut words {
            word.copy_from_slice(w);
            check = fold(check ^ u64::from_le_bytes(word), MUL);
        }
        let rest = words.remainder();
        word = [0; 8];
        word[..rest.len()].copy_from_slice(rest);
        Fingerprint {
            hash: h.finish(),
            check: fold(check ^ u64::from_le_bytes(word), MUL ^ self.seed),
        }
    }
}

#[derive(Debug)]
struct Entry {
    key: Fingerprint,
    val: Val,
    /// Accounted bytes of the entry's own allocations (its slots in the shard's tables are the shard's).
    size: usize,
}

#[derive(Debug)]
enum Val {
    Bytes(Bytes),
    Counter(i64),
    Rate(Tat),
    /// Boxed, as are lists, so that entries stay small for the sweep and eviction sampling.
    Set(Box<MemberSet>),
    List(Box<List>),
}

impl Val {
    /// Accounted bytes of the value's allocations.
    fn size(&self) -> usize {
        match self {
            Val::Bytes(b) => value_size(b.len()),
            Val::Counter(_) | Val::Rate(_) => 0,
            Val::Set(s) => heap(size_of::<MemberSet>()) + s.size(),
            Val::List(l) => heap(size_of::<List>()) + l.size(),
        }
    }
}

/// A GCRA theoretical arrival time in nanoseconds since the epoch, in two halves (high, low): a `u128`
/// field would align every entry to 16 bytes and make it 8 bytes bigger.
#[derive(Debug, Clone, Copy)]
struct Tat([u64; 2]);

impl From<u128> for Tat {
    fn from(t: u128) -> Self {
        Tat([(t >> 64) as u64, t as u64])
    }
}

impl From<Tat> for u128 {
    fn from(Tat([high, low]): Tat) -> Self {
        (u128::from(high) << 64) | u128::from(low)
    }
}

/// Accounted bytes of a stored `len`-byte value: its buffer, and the reference count `bytes` allocates
/// the first time the value is shared (read).
fn value_size(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        heap(len) + heap(size_of::<[usize; 3]>())
    }
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

/// A set that remembers the order its members were last added in, so that a full set replaces the least
/// recently added: members in a vector, linked from oldest to newest, found by a scan while there are
/// few and through an index of their positions beyond that. Members are only replaced, never removed, so
/// the vector has no holes.
#[derive(Debug)]
struct MemberSet {
    members: Vec<Member>,
    /// Positions in `members`; empty while there are at most [`SCAN_MEMBERS`].
    index: HashTable<u32>,
    oldest: u32,
    newest: u32,
}

#[derive(Debug)]
struct Member {
    fp: Fingerprint,
    /// The member added just before this one, or [`NONE`].
    older: u32,
    /// The member added just after this one, or [`NONE`].
    newer: u32,
}

impl MemberSet {
    fn new() -> Self {
        Self {
            members: Vec::new(),
            index: HashTable::new(),
            oldest: NONE,
            newest: NONE,
        }
    }

    fn len(&self) -> usize {
        self.members.len()
    }

    /// Accounted bytes of the set's allocations, but for its own box.
    fn size(&self) -> usize {
        vec_size::<Member>(self.members.capacity()) + heap(self.index.allocation_size())
    }

    fn find(&self, member: Fingerprint) -> Option<u32> {
        if self.index.is_empty() {
            let p = self.members.iter().position(|m| m.fp == member)?;
            return Some(p as u32);
        }
        let members = &self.members;
        let found = self
            .index
            .find(member.hash, |&p| members[p as usize].fp == member);
        found.copied()
    }

    /// An upper bound of the bytes [`MemberSet::add`] grows the set by.
    fn growth(&self, member: Fingerprint, cap: usize) -> usize {
        if self.find(member).is_some() {
            return 0;
        }
        let n = self.len();
        if n >= cap {
            // The oldest member's place is reused, but its index slot may be left as a tombstone.
            return if self.index.is_empty() {
                0
            } else {
                index_growth(&self.index)
            };
        }
        let mut more = 0;
        if n == self.members.capacity() {
            more += vec_size::<Member>(grown_within(n, cap)) - vec_size::<Member>(n);
        }
        match n.cmp(&SCAN_MEMBERS) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => more += index_size(n + 1),
            std::cmp::Ordering::Greater => more += index_growth(&self.index),
        }
        more
    }

    /// Adds `member` as the newest, in place of the oldest if the set already has `cap` members.
    fn add(&mut self, member: Fingerprint, cap: usize) {
        if let Some(p) = self.find(member) {
            self.unlink(p);
            self.link_newest(p);
            return;
        }
        let n = self.len();
        let p = if n >= cap {
            let p = self.oldest;
            self.unlink(p);
            let old = std::mem::replace(&mut self.members[p as usize].fp, member);
            if !self.index.is_empty() {
                if let Ok(slot) = self.index.find_entry(old.hash, |&q| q == p) {
                    slot.remove();
                }
            }
            p
        } else {
            if n == self.members.capacity() {
                self.members.reserve_exact(grown_within(n, cap) - n);
            }
            self.members.push(Member {
                fp: member,
                older: NONE,
                newer: NONE,
            });
            n as u32
        };
        self.link_newest(p);
        let members = &self.members;
        let rehash = |&q: &u32| members[q as usize].fp.hash;
        if !self.index.is_empty() {
            self.index.insert_unique(member.hash, p, rehash);
        } else if members.len() > SCAN_MEMBERS {
            let mut index = HashTable::with_capacity(members.len());
            for q in 0..members.len() as u32 {
                index.insert_unique(rehash(&q), q, rehash);
            }
            self.index = index;
        }
    }

    fn unlink(&mut self, p: u32) {
        let m = &self.members[p as usize];
        let (older, newer) = (m.older, m.newer);
        match older {
            NONE => self.oldest = newer,
            o => self.members[o as usize].newer = newer,
        }
        match newer {
            NONE => self.newest = older,
            n => self.members[n as usize].older = older,
        }
    }

    fn link_newest(&mut self, p: u32) {
        let m = &mut self.members[p as usize];
        m.older = self.newest;
        m.newer = NONE;
        match self.newest {
            NONE => self.oldest = p,
            n => self.members[n as usize].newer = p,
        }
        self.newest = p;
    }
}

#[derive(Debug, Default)]
struct List {
    items: VecDeque<Bytes>,
    /// Accounted bytes of the items' values.
    values: usize,
}

impl List {
    /// Accounted bytes of the list's allocations, but for its own box.
    fn size(&self) -> usize {
        vec_size::<Bytes>(self.items.capacity()) + self.values
    }

    /// An upper bound of the bytes [`List::push`] of a `len`-byte value grows the list by.
    fn growth(&self, len: usize, cap: usize) -> usize {
        let n = self.items.len();
        let slots = if n < cap && n == self.items.capacity() {
            vec_size::<Bytes>(grown_within(n, cap)) - vec_size::<Bytes>(n)
        } else {
            0
        };
        value_size(len) + slots
    }

    /// Pushes `value` at the front, dropping the oldest items beyond `cap` (at least 1).
    fn push(&mut self, value: Bytes, cap: usize) {
        while self.items.len() >= cap {
            if let Some(old) = self.items.pop_back() {
                self.values -= value_size(old.len());
            }
        }
        let n = self.items.len();
        if n == self.items.capacity() {
            self.items.reserve_exact(grown_within(n, cap) - n);
        }
        self.values += value_size(value.len());
        self.items.push_front(value);
    }

    /// Replaces the newest item equal to `old` with `new`; whether there was one.
    fn replace(&mut self, old: &[u8], new: Bytes) -> bool {
        let Some(item) = self.items.iter_mut().find(|item| item.as_ref() == old) else {
            return false;
        };
        self.values = self.values - value_size(item.len()) + value_size(new.len());
        *item = new;
        true
    }
}

/// A shard's entries by position, densely, with their expiries, in blocks of [`BLOCK`]. The table grows
/// and shrinks a block at a time: it never moves its entries, its slack stays under two blocks, and it
/// leaves no freed buffers behind that only a bigger allocation could reuse (a vector growing by
/// reallocation does, and they stay resident).
#[derive(Debug, Default)]
struct Table {
    blocks: Vec<Block>,
    len: usize,
}

/// [`BLOCK`] entries, with their expiries and LRU ticks apart ([`Meta`]): four entries' share one cache
/// line, so that the sweep and eviction sampling, which read a run of consecutive ones, touch few lines
/// and none of the entries.
#[derive(Debug)]
struct Block {
    entries: Vec<Entry>,
    meta: Vec<Meta>,
}

/// The parts of an entry that a write changes in place.
struct Slot<'a> {
    val: &'a mut Val,
    expires: &'a mut u64,
}

/// What the sweep and eviction read of an entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Expiry in clock milliseconds; the entry is invisible from then on.
    expires: u64,
    /// Shard-local access tick, for LRU, under the key's [`Keep`] band: eviction takes the least
    /// recently used of the lowest class it samples.
    used: u64,
}

/// The room a full vector of `n` blocks grows by: as much again, 4 at least.
fn more_blocks(n: usize) -> usize {
    n.max(4)
}

/// Accounted bytes of a [`Block`].
fn block_size() -> usize {
    vec_size::<Entry>(BLOCK) + vec_size::<Meta>(BLOCK)
}

impl std::ops::Index<usize> for Table {
    type Output = Entry;

    fn index(&self, i: usize) -> &Entry {
        &self.blocks[i / BLOCK].entries[i % BLOCK]
    }
}

impl std::ops::IndexMut<usize> for Table {
    fn index_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.blocks[i / BLOCK].entries[i % BLOCK]
    }
}

impl Table {
    fn len(&self) -> usize {
        self.len
    }

    fn meta(&self, i: usize) -> Meta {
        self.blocks[i / BLOCK].meta[i % BLOCK]
    }

    fn meta_mut(&mut self, i: usize) -> &mut Meta {
        &mut self.blocks[i / BLOCK].meta[i % BLOCK]
    }

    /// What a write may change of the entry at `i`.
    fn slot(&mut self, i: usize) -> Slot<'_> {
        let block = &mut self.blocks[i / BLOCK];
        Slot {
            val: &mut block.entries[i % BLOCK].val,
            expires: &mut block.meta[i % BLOCK].expires,
        }
    }

    /// The metadata of the entries from `i` to the end of its block.
    fn meta_run(&self, i: usize) -> &[Meta] {
        &self.blocks[i / BLOCK].meta[i % BLOCK..]
    }

    /// Accounted bytes of the blocks and of the vector of them.
    fn size(&self) -> usize {
        vec_size::<Block>(self.blocks.capacity()) + self.blocks.len() * block_size()
    }

    /// An upper bound of the bytes [`Table::push`] grows the table by.
    fn growth(&self) -> usize {
        let n = self.blocks.len();
        if self.len < n * BLOCK {
            return 0;
        }
        let list = if n == self.blocks.capacity() {
            vec_size::<Block>(n + more_blocks(n)) - vec_size::<Block>(n)
        } else {
            0
        };
        block_size() + list
    }

    fn push(&mut self, e: Entry, meta: Meta) {
        let n = self.blocks.len();
        if self.len == n * BLOCK {
            if n == self.blocks.capacity() {
                self.blocks.reserve_exact(more_blocks(n));
            }
            self.blocks.push(Block {
                entries: Vec::with_capacity(BLOCK),
                meta: Vec::with_capacity(BLOCK),
            });
        }
        let block = &mut self.blocks[self.len / BLOCK];
        block.entries.push(e);
        block.meta.push(meta);
        self.len += 1;
    }

    /// Removes the entry at `i` (the last entry moves into its place), then frees what the table no
    /// longer needs: every block once it is empty, else a second empty block (one is kept, so that a
    /// table at a block's edge does not free and allocate it over and over), and most of the vector of
    /// blocks once it is less than a quarter full.
    fn swap_remove(&mut self, i: usize) -> Entry {
        self.len -= 1;
        let (b, o) = (i / BLOCK, i % BLOCK);
        let (lb, lo) = (self.len / BLOCK, self.len % BLOCK);
        let last = &mut self.blocks[lb];
        let (moved, moved_meta) = (last.entries.swap_remove(lo), last.meta.swap_remove(lo));
        let removed = if i == self.len {
            moved
        } else {
            self.blocks[b].meta[o] = moved_meta;
            std::mem::replace(&mut self.blocks[b].entries[o], moved)
        };
        if self.len == 0 {
            self.blocks = Vec::new();
        } else if self.len + 2 * BLOCK <= self.blocks.len() * BLOCK {
            self.blocks.pop();
            if self.blocks.len() < self.blocks.capacity() / 4 {
                self.blocks.shrink_to(2 * self.blocks.len());
            }
        }
        removed
    }
}

/// A shard index slot: where the entry is, and the low 32 bits of its key's hash.
#[derive(Debug, Clone, Copy)]
struct Position {
    at: u32,
    low: u32,
}

impl Position {
    /// The slot's hash in the index.
    fn hash(self) -> u64 {
        index_hash(self.low)
    }
}

/// The hash a shard's index files a key under: the low 32 bits of its [`Fingerprint`] hash, in both
/// halves, so that hashbrown's bucket (low bits) and control tag (top 7 bits) both come from bits the
/// slot keeps, and none from the bits that pick the shard. A slot that keeps its hash lets the index
/// rehash without reading the entries: in a store at its cap, whose index fills with tombstones as
/// evictions remove keys, each such rehash otherwise read every entry of the shard, one cache miss
/// apiece.
fn index_hash(low: u32) -> u64 {
    (u64::from(low) << 32) | u64::from(low)
}

impl Fingerprint {
    fn low(self) -> u32 {
        self.hash as u32
    }
}

#[derive(Debug)]
struct Shard {
    /// Picks the entries an eviction samples: a fast generator (a shard evicts on every insert once the
    /// store is full), seeded from the thread's secure one, whose output no client sees.
    sampler: SmallRng,
    /// Each entry's position in `entries`, by the entry's hash.
    index: HashTable<Position>,
    /// The entries, densely, so the sweep and eviction sampling reach them without hashing.
    entries: Table,
    tick: u64,
    sweep_cursor: usize,
    /// Where the next eviction starts sampling.
    evict_cursor: usize,
    /// Accounted bytes of the table and the index.
    tables: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            sampler: SmallRng::from_rng(&mut rand::rng()),
            index: HashTable::default(),
            entries: Table::default(),
            tick: 0,
            sweep_cursor: 0,
            evict_cursor: 0,
            tables: 0,
        }
    }
}

impl Shard {
    /// The index bucket of the key's slot: its hash bits compared first, the entry's key only on a match.
    fn bucket(&self, key: Fingerprint) -> Option<usize> {
        let entries = &self.entries;
        let same = |p: &Position| p.low == key.low() && entries[p.at as usize].key == key;
        self.index.find_bucket_index(index_hash(key.low()), same)
    }

    fn find(&self, key: Fingerprint) -> Option<usize> {
        let bucket = self.bucket(key)?;
        Some(self.index.get_bucket(bucket)?.at as usize)
    }

    /// The position of the key's entry if it is live (and marks it used); an expired entry is removed.
    fn live(&mut self, key: Fingerprint, now: u64, usage: &Usage) -> Option<usize> {
        let bucket = self.bucket(key)?;
        let i = self.index.get_bucket(bucket)?.at as usize;
        let meta = self.entries.meta_mut(i);
        if meta.expires <= now {
            self.remove_at_bucket(i, Some(bucket), usage);
            return None;
        }
        self.tick += 1;
        meta.used = (meta.used & Keep::BAND_MASK) | self.tick;
        Some(i)
    }

    /// The key's entry if it is live, as [`Shard::live`].
    fn live_entry(&mut self, key: Fingerprint, now: u64, usage: &Usage) -> Option<&mut Entry> {
        let i = self.live(key, now, usage)?;
        Some(&mut self.entries[i])
    }

    /// Accounted bytes of the table and the index.
    fn tables_size(&self) -> usize {
        self.entries.size() + heap(self.index.allocation_size())
    }

    /// What [`Shard::tables_size`] depends on: the table's blocks and room for them, and the index's
    /// buckets; cheaper to compare than the size is to work out.
    fn tables_shape(&self) -> (usize, usize, usize) {
        let blocks = &self.entries.blocks;
        (blocks.len(), blocks.capacity(), self.index.num_buckets())
    }

    /// Brings `tables` up to date if the tables' shape is no longer `shape`.
    fn resized(&mut self, shape: (usize, usize, usize)) {
        if self.tables_shape() != shape {
            self.tables = self.tables_size();
        }
    }

    /// An upper bound of the bytes the table and the index grow by to take one more entry.
    fn growth(&self) -> usize {
        self.entries.growth() + index_growth(&self.index)
    }

    /// Adds an entry for a key the shard does not hold and returns its position. The table and the
    /// index grow (and `tables` with them) by at most [`Shard::growth`].
    fn insert(&mut self, key: Fingerprint, val: Val, expires: u64, keep: Keep) -> usize {
        debug_assert!(self.find(key).is_none(), "inserted a key that was present");
        #[cfg(debug_assertions)]
        let bounds = (
            self.entries.size() + self.entries.growth(),
            heap(self.index.allocation_size()) + index_growth(&self.index),
        );
        let shape = self.tables_shape();
        let i = self.entries.len();
        let slot = Position {
            at: i as u32,
            low: key.low(),
        };
        self.index.insert_unique(slot.hash(), slot, |p| p.hash());
        self.tick += 1;
        let size = val.size();
        let e = Entry { key, val, size };
        let used = keep.band() | self.tick;
        self.entries.push(e, Meta { expires, used });
        #[cfg(debug_assertions)]
        {
            let grown = (self.entries.size(), heap(self.index.allocation_size()));
            assert!(
                grown.0 <= bounds.0 && grown.1 <= bounds.1,
                "{grown:?} over {bounds:?}"
            );
        }
        self.resized(shape);
        i
    }

    /// Removes the entry at `i`; the last entry moves into its place. The table and the index shrink
    /// once they hold much less than they have room for.
    fn remove_at(&mut self, i: usize, usage: &Usage) -> Entry {
        self.remove_at_bucket(i, None, usage)
    }

    /// [`Shard::remove_at`], given the index bucket of the entry if known.
    fn remove_at_bucket(&mut self, i: usize, bucket: Option<usize>, usage: &Usage) -> Entry {
        let (shape, tables) = (self.tables_shape(), self.tables);
        let e = self.entries.swap_remove(i);
        let slot = match bucket {
            Some(b) => self.index.get_bucket_entry(b).ok(),
            None => self
                .index
                .find_entry(index_hash(e.key.low()), |p| p.at as usize == i)
                .ok(),
        };
        debug_assert!(slot.as_ref().is_some_and(|s| s.get().at as usize == i));
        if let Some(slot) = slot {
            slot.remove();
        }
        let n = self.entries.len();
        if i < n {
            let moved = index_hash(self.entries[i].key.low());
            if let Some(p) = self.index.find_mut(moved, |p| p.at as usize == n) {
                p.at = i as u32;
            }
        }
        if n == 0 || (n < self.index.capacity() / 4 && self.index.capacity() > MIN_INDEX) {
            self.index.shrink_to(2 * n, |p| p.hash());
        }
        self.resized(shape);
        usage.settle((1, e.size + tables), (0, self.tables));
        e
    }

    /// Examines the next few entries in turn and removes the expired ones.
    fn sweep(&mut self, now: u64, usage: &Usage) {
        for _ in 0..SWEEP_PER_WRITE {
            if self.entries.len() == 0 {
                return;
            }
            if self.sweep_cursor >= self.entries.len() {
                self.sweep_cursor = 0;
            }
            if self.entries.meta(self.sweep_cursor).expires <= now {
                self.remove_at(self.sweep_cursor, usage);
            } else {
                self.sweep_cursor += 1;
            }
        }
    }

    /// Evicts one entry other than the one at `keep` (which is updated if that entry moves): an expired
    /// one if sampled, else the least recently used sample. The samples are read from the blocks'
    /// [`Meta`] only: a run of [`EVICTION_RUN`] consecutive positions from where the last eviction's run
    /// stopped (two or three cache lines, where as many random positions would take a cache miss each),
    /// and [`EVICTION_RANDOM`] random positions. Removals leave holes that the newest entry fills, so
    /// once the table has turned over, neighbours are of unrelated ages and the run alone samples as well
    /// as random positions; and the run's cursor comes back to a position only after a pass over the
    /// table, like a clock hand. Right after the table fills, though, positions follow age and a run's
    /// entries are of about one age: the random samples then find the older ones.
    fn evict_one(&mut self, now: u64, keep: &mut Option<usize>, usage: &Usage) -> bool {
        let len = self.entries.len();
        let candidates = len - usize::from(keep.is_some());
        if candidates == 0 {
            return false;
        }
        if self.evict_cursor >= len {
            self.evict_cursor = 0;
        }
        let mut best: Option<(u64, usize)> = None;
        let (mut i, mut sampled) = (self.evict_cursor, 0);
        let run = EVICTION_RUN.min(candidates);
        'runs: while sampled < run {
            for (o, m) in self.entries.meta_run(i).iter().enumerate() {
                let p = i + o;
                if *keep == Some(p) {
                    continue;
                }
                if m.expires <= now {
                    best = Some((0, p));
                    break 'runs;
                }
                if best.is_none_or(|(used, _)| m.used < used) {
                    best = Some((m.used, p));
                }
                sampled += 1;
                if sampled == run {
                    i = p + 1;
                    continue 'runs;
                }
            }
            i = (i / BLOCK + 1) * BLOCK;
            if i >= len {
                i = 0;
            }
        }
        self.evict_cursor = i;
        // (Ticks start at 1: 0 marks an expired sample, which needs no more sampling.)
        if best.is_none_or(|(used, _)| used > 0) {
            for _ in 0..EVICTION_RANDOM {
                let p = self.sampler.random_range(0..len);
                if *keep == Some(p) {
                    continue;
                }
                let m = self.entries.meta(p);
                if m.expires <= now {
                    best = Some((0, p));
                    break;
                }
                if best.is_none_or(|(used, _)| m.used < used) {
                    best = Some((m.used, p));
                }
            }
        }
        // Only keys that no client can make were sampled: look further for one that any client can.
        if best.is_some_and(|(used, _)| used & Keep::BAND_MASK != 0) {
            for _ in 0..EVICTION_FURTHER {
                let p = self.sampler.random_range(0..len);
                if *keep == Some(p) {
                    continue;
                }
                let m = self.entries.meta(p);
                if m.expires <= now || m.used & Keep::BAND_MASK == 0 {
                    best = Some((0, p));
                    break;
                }
                if best.is_none_or(|(used, _)| m.used < used) {
                    best = Some((m.used, p));
                }
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
        // Positions in a shard's table (at most the keys) and in a set are `u32`s, and `NONE` is no member.
        let limits = MemoryLimits {
            max_keys: limits.max_keys.clamp(1, u32::MAX as usize),
            max_set_members: limits.max_set_members.clamp(1, NONE as usize),
            ..limits
        };
        let shards = (0..SHARDS).map(|_| Padded::default()).collect();
        Self {
            shards,
            fingerprints: Fingerprinter::new(),
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

    /// Bytes held, as the allocator counts them.
    pub fn bytes(&self) -> usize {
        self.usage.bytes.load(Ordering::Relaxed)
    }

    /// The shard of a key: from hash bits that the shard's index uses neither for the bucket (low bits)
    /// nor for the control tag (top 7 bits).
    fn shard_of(key: Fingerprint) -> usize {
        (key.hash >> 32) as usize % SHARDS
    }

    /// Runs `f` on the key's shard at time `now`.
    fn with_shard<R>(
        &self,
        key: &str,
        now: u64,
        f: impl FnOnce(&mut Shard, Fingerprint, u64, &Usage) -> R,
    ) -> R {
        let key = self.fingerprints.of(key);
        f(
            &mut self.shards[Self::shard_of(key)].lock(),
            key,
            now,
            &self.usage,
        )
    }

    /// Runs `f` on the key's live entry, if any.
    fn read<R>(&self, key: &str, now: u64, f: impl FnOnce(Option<&mut Entry>) -> R) -> R {
        self.with_shard(key, now, |shard, key, now, usage| {
            f(shard.live_entry(key, now, usage))
        })
    }

    /// Runs a write that may grow the key. `need` checks the live entry's type and bounds the growth in
    /// bytes; that space (and, if the key is new, a key slot and the growth of the shard's tables) is
    /// reserved, evicting other keys if needed, before `apply` mutates the entry or (only when there is
    /// none) returns one to insert; unused space is released afterwards.
    fn write<R>(
        &self,
        key: &str,
        now: u64,
        need: impl Fn(Option<&Entry>) -> Result<usize, StoreError>,
        apply: impl FnOnce(Option<Slot<'_>>, u64) -> (R, Insert),
    ) -> Result<R, StoreError> {
        let fp = self.fingerprints.of(key);
        let own = Self::shard_of(fp);
        let mut failed_rounds = 0;
        loop {
            let mut guard = self.shards[own].lock();
            let shard = &mut *guard;
            let mut at = shard.live(fp, now, &self.usage);
            let old_size = at.map_or(0, |i| shard.entries[i].size);
            let need = need(at.map(|i| &shard.entries[i]))?;
            // A new key may also grow the shard's tables; evicting from the shard may make that needless.
            let wanted = |shard: &Shard, at: Option<usize>| match at {
                Some(_) => (0, need),
                None => (1, need + shard.growth()),
            };
            let mut want = wanted(shard, at);
            if old_size.saturating_add(want.1) > self.limits.max_bytes {
                return Err(StoreError::TooLarge {
                    limit: self.limits.max_bytes,
                });
            }
            let mut reserved = self.usage.try_reserve(want.0, want.1, &self.limits);
            while !reserved && shard.evict_one(now, &mut at, &self.usage) {
                want = wanted(shard, at);
                reserved = self.usage.try_reserve(want.0, want.1, &self.limits);
            }
            if reserved {
                let tables = shard.tables;
                let entries = &mut shard.entries;
                let (out, insert) = apply(at.map(|i| entries.slot(i)), now);
                if let Some((val, expires)) = insert {
                    debug_assert!(at.is_none(), "an insert for a present key");
                    at = Some(shard.insert(fp, val, expires, Keep::of(key)));
                }
                let grown = shard.tables - tables;
                let new = match at {
                    Some(i) => {
                        let e = &mut shard.entries[i];
                        e.size = e.val.size();
                        (1, e.size + grown)
                    }
                    None => (0, 0),
                };
                self.usage.settle((1, old_size + want.1), new);
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

/// The operations, run synchronously: each takes its shard's lock once. The [`Store`] methods are thin
/// wrappers, and [`Store::batch`] runs its ops through [`MemoryStore::apply`] without making a future for
/// each.
impl MemoryStore {
    /// Runs one batched op at time `now`.
    pub(super) fn apply(&self, op: Op, now: u64) -> Result<Reply, StoreError> {
        match op {
            Op::RateTake {
                key,
                limit,
                period,
                cost,
            } => self
                .rate_take_sync(&key, limit, period, cost, now)
                .map(Reply::Rate),
            Op::RatePeek { key, limit, period } => {
                self.rate_peek_sync(&key, limit, period, now).map(Reply::Rate)
            }
            Op::Incr { key, by, ttl } => self.incr_sync(&key, by, ttl, now).map(Reply::Int),
            Op::Counter { key } => self.counter_sync(&key, now).map(Reply::Int),
            Op::SetAdd { key, member, ttl } => self.set_add_sync(&key, &member, ttl, now).map(Reply::Count),
            Op::SetLen { key } => self.set_len_sync(&key, now).map(Reply::Count),
            Op::SetContains { key, member } => self.set_contains_sync(&key, &member, now).map(Reply::Bool),
            Op::Put { key, value, ttl } => self.put_sync(&key, value, ttl, now).map(|()| Reply::Unit),
            Op::PutIfAbsent { key, value, ttl } => {
                self.put_if_absent_sync(&key, value, ttl, now).map(Reply::Bool)
            }
            Op::Get { key } => self.get_sync(&key, now).map(Reply::Value),
            Op::Take { key } => self.take_sync(&key, now).map(Reply::Value),
            Op::Delete { key } => self.delete_sync(&key, now).map(Reply::Bool),
            Op::ListPush { key, value, cap, ttl } => {
                self.list_push_sync(&key, value, cap, ttl, now).map(Reply::Len)
            }
            Op::ListRange { key, start, count } => {
                self.list_range_sync(&key, start, count, now).map(Reply::Values)
            }
        }
    }

    fn rate_take_sync(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        cost: u32,
        now: u64,
    ) -> Result<RateDecision, StoreError> {
        let g = match Rule::new(limit, period) {
            Rule::Deny => return Ok(denied(period)),
            Rule::Allow => return Ok(unlimited(limit)),
            Rule::Gcra(g) => g,
        };
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(0),
            Some(Val::Rate(_)) => Ok(0),
            Some(_) => Err(wrong(key, "rate limit")),
        };
        self.write(key, now, need, |e, now| {
            let tat = match e.as_ref().map(|e| &*e.val) {
                Some(Val::Rate(tat)) => u128::from(*tat),
                _ => 0,
            };
            let now_ns = u128::from(now) * NS_PER_MS;
            let (d, new_tat) = g.decide(tat, now_ns, cost, true);
            let Some(new_tat) = new_tat else { return (d, None) };
            let expires = u64::try_from(new_tat.div_ceil(NS_PER_MS)).unwrap_or(NEVER);
            match e {
                Some(e) => {
                    if let Val::Rate(tat) = e.val {
                        *tat = Tat::from(new_tat);
                    }
                    *e.expires = expires;
                    (d, None)
                }
                None => (d, Some((Val::Rate(Tat::from(new_tat)), expires))),
            }
        })
    }

    fn rate_peek_sync(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        now: u64,
    ) -> Result<RateDecision, StoreError> {
        let g = match Rule::new(limit, period) {
            Rule::Deny => return Ok(denied(period)),
            Rule::Allow => return Ok(unlimited(limit)),
            Rule::Gcra(g) => g,
        };
        self.with_shard(key, now, |shard, k, now, usage| {
            let tat = match shard.live_entry(k, now, usage).map(|e| &e.val) {
                None => 0,
                Some(Val::Rate(tat)) => u128::from(*tat),
                Some(_) => return Err(wrong(key, "rate limit")),
            };
            Ok(g.decide(tat, u128::from(now) * NS_PER_MS, 1, false).0)
        })
    }

    fn incr_sync(&self, key: &str, by: i64, ttl: Duration, now: u64) -> Result<i64, StoreError> {
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(0),
            Some(Val::Counter(_)) => Ok(0),
            Some(_) => Err(wrong(key, "counter")),
        };
        self.write(key, now, need, |e, now| match e {
            Some(Slot {
                val: Val::Counter(n), ..
            }) => {
                *n = n.saturating_add(by);
                (*n, None)
            }
            _ => (by, Some((Val::Counter(by), expiry(now, ttl)))),
        })
    }

    fn counter_sync(&self, key: &str, now: u64) -> Result<i64, StoreError> {
        self.read(key, now, |e| match e.map(|e| &e.val) {
            None => Ok(0),
            Some(Val::Counter(n)) => Ok(*n),
            Some(_) => Err(wrong(key, "counter")),
        })
    }

    fn set_add_sync(&self, key: &str, member: &str, ttl: Duration, now: u64) -> Result<u64, StoreError> {
        let (cap, member) = (self.limits.max_set_members, self.fingerprints.of(member));
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(heap(size_of::<MemberSet>()) + MemberSet::new().growth(member, cap)),
            Some(Val::Set(s)) => Ok(s.growth(member, cap)),
            Some(_) => Err(wrong(key, "set")),
        };
        self.write(key, now, need, |e, now| match e {
            Some(Slot {
                val: Val::Set(s),
                expires,
            }) => {
                s.add(member, cap);
                *expires = expiry(now, ttl);
                (s.len() as u64, None)
            }
            _ => {
                let mut s = MemberSet::new();
                s.add(member, cap);
                (1, Some((Val::Set(Box::new(s)), expiry(now, ttl))))
            }
        })
    }

    fn set_len_sync(&self, key: &str, now: u64) -> Result<u64, StoreError> {
        self.read(key, now, |e| match e.map(|e| &e.val) {
            None => Ok(0),
            Some(Val::Set(s)) => Ok(s.len() as u64),
            Some(_) => Err(wrong(key, "set")),
        })
    }

    fn set_contains_sync(&self, key: &str, member: &str, now: u64) -> Result<bool, StoreError> {
        self.read(key, now, |e| match e.map(|e| &e.val) {
            None => Ok(false),
            Some(Val::Set(s)) => Ok(s.find(self.fingerprints.of(member)).is_some()),
            Some(_) => Err(wrong(key, "set")),
        })
    }

    fn put_sync(&self, key: &str, value: Bytes, ttl: Option<Duration>, now: u64) -> Result<(), StoreError> {
        // Copied so that a slice of a bigger buffer does not pin (unaccounted) memory.
        let value = Bytes::copy_from_slice(&value);
        let size = value_size(value.len());
        let need = |e: Option<&Entry>| Ok(size.saturating_sub(e.map_or(0, |e| e.size)));
        self.write(key, now, need, |e, now| {
            let expires = ttl.map_or(NEVER, |ttl| expiry(now, ttl));
            match e {
                Some(e) => {
                    (*e.val, *e.expires) = (Val::Bytes(value), expires);
                    ((), None)
                }
                None => ((), Some((Val::Bytes(value), expires))),
            }
        })
    }

    fn put_if_absent_sync(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let value = Bytes::copy_from_slice(&value);
        let size = value_size(value.len());
        let need = |e: Option<&Entry>| Ok(if e.is_some() { 0 } else { size });
        self.write(key, now, need, |e, now| match e {
            Some(_) => (false, None),
            None => (
                true,
                Some((Val::Bytes(value), ttl.map_or(NEVER, |ttl| expiry(now, ttl)))),
            ),
        })
    }

    fn get_sync(&self, key: &str, now: u64) -> Result<Option<Bytes>, StoreError> {
        self.read(key, now, |e| match e.map(|e| &e.val) {
            None => Ok(None),
            Some(Val::Bytes(b)) => Ok(Some(b.clone())),
            Some(_) => Err(wrong(key, "value")),
        })
    }

    fn take_sync(&self, key: &str, now: u64) -> Result<Option<Bytes>, StoreError> {
        self.with_shard(key, now, |shard, k, now, usage| {
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

    fn delete_sync(&self, key: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self.with_shard(key, now, |shard, k, now, usage| {
            shard
                .live(k, now, usage)
                .map(|i| shard.remove_at(i, usage))
                .is_some()
        }))
    }

    fn list_push_sync(
        &self,
        key: &str,
        value: Bytes,
        cap: usize,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<usize, StoreError> {
        if cap == 0 {
            return self.with_shard(key, now, |shard, k, now, usage| {
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
        let len = value.len();
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(heap(size_of::<List>()) + List::default().growth(len, cap)),
            Some(Val::List(l)) => Ok(l.growth(len, cap)),
            Some(_) => Err(wrong(key, "list")),
        };
        self.write(key, now, need, |e, now| match e {
            Some(Slot {
                val: Val::List(l),
                expires,
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

    fn list_replace_sync(&self, key: &str, old: &[u8], new: Bytes, now: u64) -> Result<bool, StoreError> {
        // Looked at first without reserving room: a write would count a slot for an absent key.
        let present = self.read(key, now, |e| match e.map(|e| &e.val) {
            None => Ok(false),
            Some(Val::List(l)) => Ok(l.items.iter().any(|item| item.as_ref() == old)),
            Some(_) => Err(wrong(key, "list")),
        })?;
        if !present {
            return Ok(false);
        }
        let new = Bytes::copy_from_slice(&new);
        let len = new.len();
        let need = |e: Option<&Entry>| match e.map(|e| &e.val) {
            None => Ok(0),
            Some(Val::List(_)) => Ok(value_size(len)),
            Some(_) => Err(wrong(key, "list")),
        };
        self.write(key, now, need, |e, _| match e {
            Some(Slot {
                val: Val::List(l), ..
            }) => (l.replace(old, new), None),
            _ => (false, None),
        })
    }

    fn list_range_sync(
        &self,
        key: &str,
        start: usize,
        count: usize,
        now: u64,
    ) -> Result<Vec<Bytes>, StoreError> {
        self.read(key, now, |e| match e.map(|e| &e.val) {
            None => Ok(Vec::new()),
            Some(Val::List(l)) => Ok(l.items.iter().skip(start).take(count).cloned().collect()),
            Some(_) => Err(wrong(key, "list")),
        })
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
        self.rate_take_sync(key, limit, period, cost, self.clock.now_ms())
    }

    async fn rate_peek(&self, key: &str, limit: u32, period: Duration) -> Result<RateDecision, StoreError> {
        self.rate_peek_sync(key, limit, period, self.clock.now_ms())
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, StoreError> {
        self.incr_sync(key, by, ttl, self.clock.now_ms())
    }

    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        self.counter_sync(key, self.clock.now_ms())
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<u64, StoreError> {
        self.set_add_sync(key, member, ttl, self.clock.now_ms())
    }

    async fn set_len(&self, key: &str) -> Result<u64, StoreError> {
        self.set_len_sync(key, self.clock.now_ms())
    }

    async fn set_contains(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        self.set_contains_sync(key, member, self.clock.now_ms())
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), StoreError> {
        self.put_sync(key, value, ttl, self.clock.now_ms())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.put_if_absent_sync(key, value, ttl, self.clock.now_ms())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.get_sync(key, self.clock.now_ms())
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.take_sync(key, self.clock.now_ms())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.delete_sync(key, self.clock.now_ms())
    }

    async fn list_push(
        &self,
        key: &str,
        value: Bytes,
        cap: usize,
        ttl: Option<Duration>,
    ) -> Result<usize, StoreError> {
        self.list_push_sync(key, value, cap, ttl, self.clock.now_ms())
    }

    async fn list_range(&self, key: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError> {
        self.list_range_sync(key, start, count, self.clock.now_ms())
    }

    async fn list_replace(&self, key: &str, old: &[u8], new: Bytes) -> Result<bool, StoreError> {
        self.list_replace_sync(key, old, new, self.clock.now_ms())
    }

    async fn batch(&self, ops: Vec<Op>) -> Result<Vec<Reply>, StoreError> {
        // One clock reading serves the whole batch: its ops run at once, as they would in one round trip.
        let now = self.clock.now_ms();
        let mut replies = Replies::with_capacity(ops.len());
        for op in ops {
            replies.push(self.apply(op, now));
        }
        replies.finish()
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn usage(&self) -> Option<(usize, usize)> {
        Some((self.len(), self.bytes()))
    }
}

pub(super) fn denied(period: Duration) -> RateDecision {
    RateDecision {
        allowed: false,
        remaining: 0,
        retry_after: period,
        reset_after: Duration::ZERO,
    }
}

pub(super) fn unlimited(limit: u32) -> RateDecision {
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

    use std::mem::size_of;

    use bytes::Bytes;
    use rand::{Rng, SeedableRng};

    use super::{BLOCK, Block, Entry, List, Member, MemberSet, MemoryLimits, MemoryStore, Val};
    use crate::clock::ManualClock;
    use crate::store::{Op, Reply, Store, StoreError, conformance};

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

    /// What glibc's malloc, the allocator of the tests, takes for an `n`-byte allocation: a chunk of an
    /// 8-byte header and the request in 16-byte steps, 32 bytes at least; from 128 KiB, mapped whole pages.
    fn chunk(n: usize) -> usize {
        let chunk = (n + 8).next_multiple_of(16).max(32);
        match n {
            0 => 0,
            _ if chunk >= 128 * 1024 => (chunk + 8).next_multiple_of(4096),
            _ => chunk,
        }
    }

    /// The heap a value takes, found from its containers' capacities: each allocation at its chunk size.
    fn real_value(val: &Val) -> usize {
        let bytes = |b: &Bytes| match b.len() {
            0 => 0,
            // The buffer, and the reference count `bytes` adds when the value is first shared.
            n => chunk(n) + chunk(size_of::<[usize; 3]>()),
        };
        match val {
            Val::Bytes(b) => bytes(b),
            Val::Counter(_) | Val::Rate(_) => 0,
            Val::Set(set) => {
                chunk(size_of::<MemberSet>())
                    + chunk(set.members.capacity() * size_of::<Member>())
                    + chunk(set.index.allocation_size())
            }
            Val::List(l) => {
                chunk(size_of::<List>())
                    + chunk(l.items.capacity() * size_of::<Bytes>())
                    + l.items.iter().map(bytes).sum::<usize>()
            }
        }
    }

    /// Recounts keys and bytes from the shards and checks them against the running totals and the caps,
    /// and the bytes against the heap the store's allocations really take, which it returns.
    fn audit(s: &MemoryStore) -> usize {
        let (mut keys, mut bytes, mut real) = (0, 0, 0);
        for shard in s.shards.iter() {
            let shard = shard.lock();
            let table = &shard.entries;
            assert_eq!(shard.index.len(), table.len());
            for p in shard.index.iter() {
                assert_eq!(p.low, table[p.at as usize].key.low(), "an index slot's hash bits");
            }
            let blocks = table.len().div_ceil(BLOCK);
            assert!(
                (blocks..=blocks + 1).contains(&table.blocks.len())
                    && (blocks > 0 || table.blocks.is_empty()),
                "{} blocks for {} entries",
                table.blocks.len(),
                table.len()
            );
            assert_eq!(shard.tables, shard.tables_size());
            bytes += shard.tables;
            real +=
                chunk(table.blocks.capacity() * size_of::<Block>()) + chunk(shard.index.allocation_size());
            for (b, block) in table.blocks.iter().enumerate() {
                assert_eq!(block.entries.len(), block.meta.len());
                assert_eq!(
                    block.entries.len(),
                    table.len().saturating_sub(b * BLOCK).min(BLOCK)
                );
                real += chunk(block.entries.capacity() * size_of::<Entry>())
                    + chunk(block.meta.capacity() * size_of::<super::Meta>());
            }
            for i in 0..table.len() {
                let e = &table[i];
                assert_eq!(shard.find(e.key), Some(i));
                assert_eq!(e.size, e.val.size());
                if let Val::Set(set) = &e.val {
                    audit_set(set);
                }
                if let Val::List(l) = &e.val {
                    let values: usize = l.items.iter().map(|v| super::value_size(v.len())).sum();
                    assert_eq!(l.values, values);
                }
                keys += 1;
                bytes += e.size;
                real += real_value(&e.val);
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
        assert!(bytes >= real, "{bytes} bytes counted for {real} on the heap");
        real
    }

    /// Checks a set's order links and index.
    fn audit_set(set: &MemberSet) {
        let mut order = Vec::new();
        let mut p = set.oldest;
        while p != super::NONE {
            order.push(p);
            assert!(order.len() <= set.len(), "the order has a cycle");
            p = set.members[p as usize].newer;
        }
        assert_eq!(order.len(), set.len(), "every member is in the order");
        assert_eq!(order.last().copied().unwrap_or(super::NONE), set.newest);
        let indexed = set.len() > super::SCAN_MEMBERS;
        assert_eq!(set.index.len(), if indexed { set.len() } else { 0 });
        for (p, m) in set.members.iter().enumerate() {
            assert_eq!(set.find(m.fp), Some(p as u32));
        }
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

    crate::store::conformance::each_test!(conformance_tests);

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

    crate::store::conformance::each_concurrent_test!(concurrent_tests);

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

    #[test]
    fn allocations_are_counted_at_the_larger_size_class() {
        // (request, glibc's chunk, mimalloc's class)
        for (n, glibc, mimalloc) in [
            (1, 32, 8),
            (24, 32, 24),
            (40, 48, 40),
            (64, 80, 64),
            (100, 112, 112),
            (600, 608, 640),
            (2560, 2576, 2560),
        ] {
            assert_eq!(super::heap(n), glibc.max(mimalloc), "{n} bytes");
        }
        assert_eq!(super::heap(0), 0);
        assert_eq!(
            super::heap(200_000),
            200_704,
            "whole pages beyond the size classes"
        );
    }

    /// Fills a store capped at 4 MiB with many times what fits of the keys a sign-in leaves (rate
    /// limits, one-member distinct-count sets, fixed-window counters), and a few big sets and records.
    #[tokio::test]
    async fn the_byte_cap_covers_the_heap_of_every_key_shape() {
        let max_bytes = 4 << 20;
        let (s, _c) = store(MemoryLimits {
            max_keys: usize::MAX,
            max_bytes,
            max_set_members: 100,
        });
        for i in 0..200_000 {
            match i % 3 {
                0 => {
                    let key = format!("waf:rate:sign-in-rate-per-ip:{i:032x}");
                    s.rate_take(&key, 30, HOUR, 1).await.unwrap();
                }
                1 => {
                    let key = format!("waf:distinct:ip:{i:032x}");
                    s.set_add(&key, "user-name@example.com", HOUR).await.unwrap();
                }
                _ => {
                    let key = format!("risk:fail:user:{i:032x}");
                    s.incr(&key, 1, HOUR).await.unwrap();
                }
            }
            if i % 1000 == 0 {
                for m in 0..150 {
                    s.set_add(&format!("big{}", i % 7), &format!("m{m}"), HOUR)
                        .await
                        .unwrap();
                }
                let record = Bytes::from(vec![b'r'; i % 3000]);
                s.put(&format!("rec{}", i % 11), record, None).await.unwrap();
            }
            assert!(s.bytes() <= max_bytes);
        }
        let real = audit(&s);
        assert!(s.bytes() >= max_bytes - max_bytes / 50, "the store stays full");
        assert!(
            s.bytes() - real <= real / 20,
            "{} bytes counted for {real} on glibc's heap",
            s.bytes()
        );
        // Some 90 bytes a rate or counter, 200 a one-member set.
        assert!(s.len() > max_bytes / 160, "{} keys held", s.len());
    }

    #[tokio::test]
    async fn tables_grow_and_shrink_with_their_keys() {
        let (s, _c) = store(MemoryLimits::default());
        for round in 0..3 {
            for i in 0..5000 {
                s.incr(&format!("k{i}"), 1, HOUR).await.unwrap();
            }
            let full = audit(&s);
            for i in 100..5000 {
                assert!(s.delete(&format!("k{i}")).await.unwrap());
            }
            let few = audit(&s);
            // At most two blocks a shard (one spare), and a small index and vector of blocks.
            let most = super::SHARDS * (2 * super::block_size() + 1024);
            assert!(
                few <= most,
                "round {round}: {few} bytes held for 100 keys ({full} for 5000)"
            );
        }
        for i in 0..100 {
            assert!(s.delete(&format!("k{i}")).await.unwrap());
        }
        assert_eq!(
            (s.len(), s.bytes(), audit(&s)),
            (0, 0, 0),
            "empty shards free everything"
        );
    }

    #[tokio::test]
    async fn a_full_indexed_set_replaces_its_least_recently_added_member() {
        let (s, _c) = store(MemoryLimits {
            max_set_members: 100,
            ..MemoryLimits::default()
        });
        for m in 0..100 {
            s.set_add("s", &format!("m{m}"), HOUR).await.unwrap();
        }
        assert_eq!(
            s.set_add("s", "m0", HOUR).await.unwrap(),
            100,
            "re-adding refreshes m0"
        );
        for m in 100..150 {
            assert_eq!(s.set_add("s", &format!("m{m}"), HOUR).await.unwrap(), 100);
        }
        assert!(s.set_contains("s", "m0").await.unwrap(), "m0 was refreshed");
        for m in 1..=50 {
            assert!(
                !s.set_contains("s", &format!("m{m}")).await.unwrap(),
                "m{m} replaced"
            );
        }
        for m in 51..150 {
            assert!(s.set_contains("s", &format!("m{m}")).await.unwrap(), "m{m} kept");
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
        assert_eq!(s.get("k").await.unwrap(), Some(Bytes::from_static(b"small")));
        assert_eq!(s.len(), 1);
        audit(&s);
    }

    #[tokio::test]
    async fn long_keys_and_members_cost_no_more_than_short_ones() {
        let (short, _c) = store(MemoryLimits::default());
        let (long, _c) = store(MemoryLimits::default());
        let huge = "k".repeat(5000);
        for (s, name) in [(&short, "k"), (&long, huge.as_str())] {
            s.incr(name, 1, HOUR).await.unwrap();
            s.set_add("s", name, HOUR).await.unwrap();
            assert_eq!(s.counter(name).await.unwrap(), 1);
            assert!(s.set_contains("s", name).await.unwrap());
            audit(s);
        }
        // The shards' tables, holding the fingerprints, are left out: which shards the keys land in varies.
        let entries = |s: &MemoryStore| {
            let tables: usize = s.shards.iter().map(|shard| shard.lock().tables).sum();
            s.bytes() - tables
        };
        assert_eq!(entries(&long), entries(&short), "only fingerprints are kept");
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

    /// How well eviction approximates LRU when every write is a new key (as under a sign-in flood, where
    /// LRU is FIFO): of a store capped at `CAP` keys, the share of the survivors that an exact LRU would
    /// keep, right after the store fills (when positions in the tables follow age) and once it has turned
    /// over many times (when they are mixed). Evicting at random would keep about 63 % in steady state and
    /// half of the oldest keys after filling by half again.
    #[tokio::test]
    async fn eviction_prefers_the_least_recently_used() {
        const CAP: usize = 4000;
        let (s, _c) = store(limits(CAP, usize::MAX));
        let key = |i: usize| format!("k{i}");
        for i in 0..CAP + CAP / 2 {
            s.incr(&key(i), 1, HOUR).await.unwrap();
        }
        let mut oldest_kept = 0;
        for i in 0..CAP / 2 {
            oldest_kept += usize::from(s.counter(&key(i)).await.unwrap() == 1);
        }
        // Reading them refreshed them: a fresh store for the steady state.
        let (s, _c) = store(limits(CAP, usize::MAX));
        let n = 20 * CAP;
        for i in 0..n {
            s.incr(&key(i), 1, HOUR).await.unwrap();
        }
        let mut newest_kept = 0;
        for i in n - CAP..n {
            newest_kept += usize::from(s.counter(&key(i)).await.unwrap() == 1);
        }
        assert!(
            oldest_kept <= CAP / 2 / 3,
            "{oldest_kept} of the oldest {} keys kept after filling",
            CAP / 2
        );
        assert!(
            newest_kept >= CAP * 85 / 100,
            "{newest_kept} of the newest {CAP} keys kept"
        );
        audit(&s);
    }

    #[tokio::test]
    async fn a_flood_of_keys_any_client_makes_never_evicts_the_kept_and_pinned_ones() {
        // Failed sign-ins with made-up usernames and addresses make counters without end: they must not
        // push out users' histories, MFA factors, the device-cookie key or SMS spend and range blocks.
        const CAP: usize = 1000;
        let (s, _c) = store(limits(CAP, usize::MAX));
        let kept = [
            "rec/mfa/alice",
            "rec/meta/device-key",
            "sms:spend:hour:123",
            "sms:cv:prefix:44740:block",
            "rec/user/alice",
            "sms:cv:prefix:44740:s:7",
        ];
        for k in kept {
            s.put(k, Bytes::from_static(b"v"), None).await.unwrap();
        }
        for i in 0..50 * CAP {
            s.incr(&format!("risk:fu:{i}"), 1, HOUR).await.unwrap();
        }
        for k in kept {
            assert_eq!(s.get(k).await.unwrap().as_deref(), Some(&b"v"[..]), "{k}");
        }
        // When only kept keys are left to take, the least recently used of them go, pinned ones last.
        for i in 0..2 * CAP {
            s.put(&format!("rec/user/u{i}"), Bytes::from_static(b"v"), None)
                .await
                .unwrap();
        }
        assert!(s.get("rec/mfa/alice").await.unwrap().is_some());
        assert!(s.get("rec/meta/device-key").await.unwrap().is_some());
        assert!(s.get("rec/user/alice").await.unwrap().is_none());
        audit(&s);
    }

    /// A manual clock that counts its readings.
    #[derive(Debug)]
    struct CountingClock(ManualClock, std::sync::atomic::AtomicUsize);

    impl crate::clock::Clock for CountingClock {
        fn now_ms(&self) -> u64 {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.now_ms()
        }
    }

    #[tokio::test]
    async fn a_batch_reads_the_clock_once() {
        let clock = Arc::new(CountingClock(ManualClock::new(START_MS), Default::default()));
        let s = MemoryStore::new(MemoryLimits::default(), clock.clone());
        let reads = || clock.1.load(std::sync::atomic::Ordering::Relaxed);
        let k = |s: &str| s.to_owned();
        let ops = vec![
            Op::Incr {
                key: k("n"),
                by: 1,
                ttl: HOUR,
            },
            Op::SetAdd {
                key: k("s"),
                member: k("m"),
                ttl: HOUR,
            },
            Op::RateTake {
                key: k("r"),
                limit: 5,
                period: HOUR,
                cost: 1,
            },
            Op::Counter { key: k("n") },
            Op::SetLen { key: k("s") },
            Op::Get { key: k("v") },
        ];
        let before = reads();
        let replies = s.batch(ops).await.unwrap();
        assert_eq!(reads() - before, 1, "one reading for {} ops", replies.len());
        assert_eq!((&replies[3], &replies[4]), (&Reply::Int(1), &Reply::Count(1)));
        // Single ops read it each.
        s.incr("n", 1, HOUR).await.unwrap();
        assert_eq!(reads() - before, 2);
        audit(&s);
    }
}
