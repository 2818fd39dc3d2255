//! `Store` backend for `serve`: counters in memory, durable records (`rec/` keys) in a redb file.
//!
//! Keys that do not start with [`RECORD_PREFIX`] go to an inner [`MemoryStore`] and are lost on restart.
//! Record keys hold values (`put`, `put_if_absent`, `get`, `take`, `delete`) and capped lists
//! (`list_push`, `list_range`) in the file; rate limits, counters and sets on a record key fail with
//! [`StoreError::WrongType`], since a record key never holds one. Every record write is acknowledged only
//! once its transaction is committed with an fsync: writes queue to one writer thread, which applies
//! whatever is queued in one transaction and commits once for all of them (group commit). Reads use
//! their own read transactions on the blocking pool, concurrently with the writer.
//!
//! Commits use redb's two-phase commit: one more fsync, and a crash cannot leave a half-written commit
//! that passes for valid (redb's note on attacker-influenced contents). Not its quick repair, which saves
//! the allocator state with every commit: 8 ms instead of 0.9 ms per commit on a file of 1 000 000
//! records; without it, reopening after a crash walks the file instead (2.4 s for that file).
//!
//! Each record keeps its expiry and a write sequence number beside its value, and two index tables order
//! the records by expiry (for the sweep) and by write (for eviction beyond `max_records`). Index entries
//! are hints, checked against the record they name, so a stale one is dropped rather than trusted.

use std::ops::RangeInclusive;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use redb::{Database, ReadableTable, ReadableTableMetadata, StorageError, Table, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::memory::{self, MemoryLimits, MemoryStore};
use super::{Keep, Op, RECORD_PREFIX, RateDecision, Replies, Reply, Store, StoreError, run_op};
use crate::clock::SharedClock;

/// Record key → header and value (see [`Head`]).
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// (list key, `!item number`) → item: ascending order is newest first.
const ITEMS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("list_items");
/// Write sequence number → record key, oldest write first (eviction order).
const BY_WRITE: TableDefinition<u64, &str> = TableDefinition::new("by_write");
/// (expiry, record key) for records that expire, soonest first (sweep order).
const BY_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("by_expiry");
/// Bookkeeping: the layout version, the next write sequence number and the records' bytes.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The layout of the tables above; a file with another one is refused.
const LAYOUT: u64 = 1;
const BACKEND: &str = "embedded";
const NEVER: u64 = u64::MAX;
/// Writes waiting for the writer; callers wait for room beyond it.
const QUEUE: usize = 1024;
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;
/// redb's page cache (its default is 1 GiB).
const CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Approximate bookkeeping cost of one record (header, index entries), for the byte count.
const RECORD_OVERHEAD: usize = 64;
/// Approximate bookkeeping cost of one list item (its key), for the byte count.
const ITEM_OVERHEAD: usize = 32;
/// Expired records are swept at most this often, by the next write transaction.
const SWEEP_EVERY_MS: u64 = 60_000;
/// Most expired records removed by one sweep; a sweep that removes this many runs again with the next write.
const SWEEP_BUDGET: usize = 1_000;

/// Header: kind (1 byte), expiry and write sequence number (8 bytes each, little-endian).
const HEAD_LEN: usize = 17;
/// A list's header adds its length, next item number and item bytes (8 bytes each).
const LIST_HEAD_LEN: usize = HEAD_LEN + 24;
const KIND_VALUE: u8 = 1;
const KIND_LIST: u8 = 2;

/// Most bytes of one record value or list item, key included; larger writes fail with `TooLarge`.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Settings of an [`EmbeddedStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// The database file; created (with an empty database) if missing.
    pub path: PathBuf,
    /// Most records kept in the file, a list's items counting one each; beyond it the least recently
    /// written go first (0 is raised to 1).
    pub max_records: usize,
    /// Caps of the in-memory part: counters, sets and short-lived values.
    pub memory: MemoryLimits,
}

/// Why the database file could not be opened; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (or another store in this one) has the file open.
    #[error(
        "store file {}: already in use by another process (give each authward its own `store.path`)",
        .path.display()
    )]
    Locked { path: PathBuf },
    /// The file is not an authward store, is damaged, or has an unsupported format.
    #[error("store file {}: not a usable authward store: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
    /// The file cannot be read or written (the reason is in the message, not repeated as a source).
    #[error("store file {}: {error}", .path.display())]
    Io { path: PathBuf, error: std::io::Error },
}

/// A [`Store`] whose records survive restarts and crashes: see the module documentation.
#[derive(Debug)]
pub struct EmbeddedStore {
    memory: MemoryStore,
    db: Arc<Database>,
    queue: mpsc::Sender<Box<dyn Job>>,
    writer: Option<JoinHandle<()>>,
    usage: Arc<RecordUsage>,
    clock: SharedClock,
    path: PathBuf,
}

/// The records' count and bytes as of the last commit, for [`Store::usage`].
#[derive(Debug, Default)]
struct RecordUsage {
    records: AtomicUsize,
    bytes: AtomicUsize,
}

impl RecordUsage {
    fn set(&self, saved: &Saved) {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        self.records.store(n(saved.records), Ordering::Relaxed);
        self.bytes.store(n(saved.bytes), Ordering::Relaxed);
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the file and starts the writer thread. Blocking: after an unclean shutdown redb
    /// checks the file first, so call it off the async threads.
    pub fn open(opts: EmbeddedOptions, clock: SharedClock) -> Result<Self, OpenError> {
        let path = opts.path;
        let db = open_database(&path)?;
        let saved = init(&db, &path)?;
        let usage = Arc::new(RecordUsage::default());
        usage.set(&saved);
        let db = Arc::new(db);
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            db: db.clone(),
            rx,
            clock: clock.clone(),
            max_records: opts.max_records.max(1),
            saved,
            next_sweep: 0,
            usage: usage.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("authward-store".into())
            .spawn(move || writer.run())
            .map_err(|error| OpenError::Io {
                path: path.clone(),
                error,
            })?;
        Ok(Self {
            memory: MemoryStore::new(opts.memory, clock.clone()),
            db,
            queue,
            writer: Some(writer),
            usage,
            clock,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a write for the writer thread and waits until its transaction has committed.
    async fn write<T: Send + 'static>(
        &self,
        run: impl FnOnce(&mut Tables<'_>) -> Outcome<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            run: Some(run),
            out: None,
            reply,
        });
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs a read in its own read transaction on the blocking pool. The hop costs more than a cached read
    /// itself (`benches/store.rs`: 10 to 16 µs against 1 µs inline; a small reader pool fed by a channel
    /// was no cheaper), but a read that misses redb's cache waits for the disk, and that wait must not stall
    /// the async threads that serve every connection.
    async fn read<T: Send + 'static>(
        &self,
        run: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || run(&db.begin_read().map_err(fail)?))
            .await
            .map_err(|e| unavailable(format!("read task failed: {e}")))?
    }
}

impl Drop for EmbeddedStore {
    /// Closes the queue (by replacing the only sender) and waits for the writer to finish its last batch,
    /// so that the file is closed cleanly when the store goes.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.queue, mpsc::channel(1).0));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn is_record(key: &str) -> bool {
    key.starts_with(RECORD_PREFIX)
}

fn expiry(now: u64, ttl: Option<Duration>) -> u64 {
    ttl.map_or(NEVER, |ttl| memory::expiry(now, ttl))
}

fn check_size(key: &str, value: &[u8]) -> Result<(), StoreError> {
    if key.len().saturating_add(value.len()) > MAX_RECORD_BYTES {
        return Err(StoreError::TooLarge {
            limit: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

// === Errors ===

fn wrong(key: &str, expected: &'static str) -> StoreError {
    StoreError::WrongType {
        key: key.to_owned(),
        expected,
    }
}

fn unavailable(reason: String) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        reason,
    }
}

fn stopped() -> StoreError {
    unavailable("the store's writer has stopped".to_owned())
}

fn corrupt(key: &str, reason: &str) -> StoreError {
    StoreError::Corrupt(format!("record {key:?}: {reason}"))
}

/// A redb failure as a store error: damage is `Corrupt`, anything else `Unavailable`.
fn fail(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(reason) => StoreError::Corrupt(reason),
        e => unavailable(e.to_string()),
    }
}

fn open_error(path: &Path, e: impl Into<redb::Error>) -> OpenError {
    let path = path.to_path_buf();
    match e.into() {
        redb::Error::DatabaseAlreadyOpen => OpenError::Locked { path },
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => OpenError::Invalid {
            path,
            reason: "not a redb database file".to_owned(),
        },
        redb::Error::Io(error) => OpenError::Io { path, error },
        e => OpenError::Invalid {
            path,
            reason: e.to_string(),
        },
    }
}

// === Opening ===

/// Opens the file with redb, turning a panic inside redb (a damaged file it did not expect) into an error;
/// redb also "repairs" a file it has just created, so only an existing one is reported.
fn open_database(path: &Path) -> Result<Database, OpenError> {
    let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    let repairing = Arc::new(AtomicBool::new(false));
    let seen = repairing.clone();
    let opened = catch_unwind(AssertUnwindSafe(|| {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_file_format_v3(true)
            .set_repair_callback(move |_| {
                if existed && !seen.swap(true, Ordering::Relaxed) {
                    tracing::warn!("the store file was not closed cleanly: checking it");
                }
            })
            .create(path)
    }));
    match opened {
        Ok(Ok(db)) => {
            if repairing.load(Ordering::Relaxed) {
                tracing::info!(path = %path.display(), "store file checked");
            }
            Ok(db)
        }
        Ok(Err(e)) => Err(open_error(path, e)),
        Err(_) => Err(OpenError::Invalid {
            path: path.to_path_buf(),
            reason: "the database library failed on this file".to_owned(),
        }),
    }
}

/// Creates the tables if missing, checks the layout version and reads the bookkeeping.
fn init(db: &Database, path: &Path) -> Result<Saved, OpenError> {
    let err = |e: StorageError| open_error(path, e);
    let mut txn = db.begin_write().map_err(|e| open_error(path, e))?;
    txn.set_two_phase_commit(true);
    let saved = {
        let mut t = Tables::open(&txn, Saved::default()).map_err(|e| open_error(path, e))?;
        let get = |t: &Tables<'_>, name: &str| -> Result<Option<u64>, OpenError> {
            Ok(t.meta.get(name).map_err(err)?.map(|v| v.value()))
        };
        match get(&t, "layout")? {
            Some(LAYOUT) => {}
            None if t.records.is_empty().map_err(err)? => {
                t.meta.insert("layout", LAYOUT).map_err(err)?;
            }
            found => {
                let found = found.map_or("none".to_owned(), |v| v.to_string());
                return Err(OpenError::Invalid {
                    path: path.to_path_buf(),
                    reason: format!("record layout {found}, this version reads layout {LAYOUT}"),
                });
            }
        }
        if get(&t, "banded")?.is_none() {
            t.band_records().map_err(err)?;
            t.meta.insert("banded", 1).map_err(err)?;
        }
        t.saved.next_seq = get(&t, "next_seq")?.unwrap_or(0) & !Keep::BAND_MASK;
        t.saved.bytes = get(&t, "bytes")?.unwrap_or(0);
        t.save().map_err(err)?
    };
    txn.commit().map_err(|e| open_error(path, e))?;
    Ok(saved)
}

// === Record encoding ===

/// What a record's stored value starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Expiry in clock milliseconds ([`NEVER`] for none); the record is invisible from then on.
    expires: u64,
    /// The write sequence number of the record's last write (its key in [`BY_WRITE`]).
    written: u64,
    shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A value of this many bytes follows the header.
    Value(usize),
    List(ListHead),
}

/// A list's bookkeeping; its items live in [`ITEMS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ListHead {
    len: u64,
    /// The number of the next item pushed (items are numbered from 0 and never reused).
    next: u64,
    /// The items' accounted bytes.
    bytes: u64,
}

impl Head {
    /// The record's accounted bytes.
    fn size(&self, key: &str) -> u64 {
        let payload = match self.shape {
            Shape::Value(len) => len as u64,
            Shape::List(l) => l.bytes,
        };
        ((key.len() + RECORD_OVERHEAD) as u64).saturating_add(payload)
    }

    fn encode(&self, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(LIST_HEAD_LEN + value.len());
        let kind = match self.shape {
            Shape::Value(_) => KIND_VALUE,
            Shape::List(_) => KIND_LIST,
        };
        out.push(kind);
        out.extend_from_slice(&self.expires.to_le_bytes());
        out.extend_from_slice(&self.written.to_le_bytes());
        match self.shape {
            Shape::Value(_) => out.extend_from_slice(value),
            Shape::List(l) => {
                for n in [l.len, l.next, l.bytes] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
        out
    }

    /// The header and, for a value, its bytes.
    fn decode(raw: &[u8]) -> Result<(Head, &[u8]), &'static str> {
        let word = |at: usize| -> Result<u64, &'static str> {
            raw.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .ok_or("truncated header")
        };
        let (expires, written) = (word(1)?, word(9)?);
        let (shape, value) = match raw.first() {
            Some(&KIND_VALUE) => {
                let value = raw.get(HEAD_LEN..).unwrap_or_default();
                (Shape::Value(value.len()), value)
            }
            Some(&KIND_LIST) if raw.len() == LIST_HEAD_LEN => {
                let l = ListHead {
                    len: word(HEAD_LEN)?,
                    next: word(HEAD_LEN + 8)?,
                    bytes: word(HEAD_LEN + 16)?,
                };
                (Shape::List(l), &[][..])
            }
            _ => return Err("unknown record kind"),
        };
        let head = Head {
            expires,
            written,
            shape,
        };
        Ok((head, value))
    }
}

fn item_size(item_len: usize) -> u64 {
    (item_len + ITEM_OVERHEAD) as u64
}

/// Every item key of one list.
fn items_of(key: &str) -> RangeInclusive<(&str, u64)> {
    (key, 0)..=(key, u64::MAX)
}

// === Reads ===

fn read_value(txn: &redb::ReadTransaction, key: &str, now: u64) -> Result<Option<Bytes>, StoreError> {
    let records = txn.open_table(RECORDS).map_err(fail)?;
    let Some(raw) = records.get(key).map_err(fail)? else {
        return Ok(None);
    };
    let (head, value) = Head::decode(raw.value()).map_err(|r| corrupt(key, r))?;
    match head.shape {
        _ if head.expires <= now => Ok(None),
        Shape::Value(_) => Ok(Some(Bytes::copy_from_slice(value))),
        Shape::List(_) => Err(wrong(key, "value")),
    }
}

fn read_list(
    txn: &redb::ReadTransaction,
    key: &str,
    start: usize,
    count: usize,
    now: u64,
) -> Result<Vec<Bytes>, StoreError> {
    let records = txn.open_table(RECORDS).map_err(fail)?;
    let Some(raw) = records.get(key).map_err(fail)? else {
        return Ok(Vec::new());
    };
    let (head, _) = Head::decode(raw.value()).map_err(|r| corrupt(key, r))?;
    let list = match head.shape {
        _ if head.expires <= now => return Ok(Vec::new()),
        Shape::Value(_) => return Err(wrong(key, "list")),
        Shape::List(l) => l,
    };
    if start as u64 >= list.len || count == 0 {
        return Ok(Vec::new());
    }
    let items = txn.open_table(ITEMS).map_err(fail)?;
    let mut out = Vec::new();
    for item in items.range(items_of(key)).map_err(fail)?.skip(start).take(count) {
        let (_, value) = item.map_err(fail)?;
        out.push(Bytes::copy_from_slice(value.value()));
    }
    Ok(out)
}

// === Writes ===

/// The bookkeeping as of the last commit.
#[derive(Debug, Clone, Copy, Default)]
struct Saved {
    next_seq: u64,
    bytes: u64,
    records: u64,
}

/// What a key holds in the records table.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Absent,
    Live(Head),
    Expired(Head),
    /// A stored value whose header does not decode, with its length.
    Unreadable(usize),
}

/// The tables of one write transaction, with the bookkeeping as it changes.
struct Tables<'t> {
    records: Table<'t, &'static str, &'static [u8]>,
    items: Table<'t, (&'static str, u64), &'static [u8]>,
    by_write: Table<'t, u64, &'static str>,
    by_expiry: Table<'t, (u64, &'static str), ()>,
    meta: Table<'t, &'static str, u64>,
    saved: Saved,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction, saved: Saved) -> Result<Self, redb::TableError> {
        Ok(Tables {
            records: txn.open_table(RECORDS)?,
            items: txn.open_table(ITEMS)?,
            by_write: txn.open_table(BY_WRITE)?,
            by_expiry: txn.open_table(BY_EXPIRY)?,
            meta: txn.open_table(META)?,
            saved,
        })
    }

    fn slot(&self, key: &str, now: u64) -> Result<Slot, StorageError> {
        let Some(raw) = self.records.get(key)? else {
            return Ok(Slot::Absent);
        };
        Ok(match Head::decode(raw.value()) {
            Ok((head, _)) if head.expires <= now => Slot::Expired(head),
            Ok((head, _)) => Slot::Live(head),
            Err(_) => Slot::Unreadable(raw.value().len()),
        })
    }

    /// Removes the key's record with its index entries and list items.
    fn discard(&mut self, key: &str, slot: Slot) -> Result<(), StorageError> {
        let (size, list) = match slot {
            Slot::Absent => return Ok(()),
            Slot::Live(head) | Slot::Expired(head) => {
                self.unindex(key, &head)?;
                (head.size(key), matches!(head.shape, Shape::List(_)))
            }
            Slot::Unreadable(len) => ((key.len() + RECORD_OVERHEAD + len) as u64, true),
        };
        self.records.remove(key)?;
        if list {
            self.items.retain_in(items_of(key), |_, _| false)?;
        }
        self.saved.bytes = self.saved.bytes.saturating_sub(size);
        Ok(())
    }

    fn unindex(&mut self, key: &str, head: &Head) -> Result<(), StorageError> {
        self.by_write.remove(head.written)?;
        if head.expires != NEVER {
            self.by_expiry.remove((head.expires, key))?;
        }
        Ok(())
    }

    /// Writes the record under a new write sequence number, replacing `old` (the key's current header).
    fn store(
        &mut self,
        key: &str,
        old: Option<Head>,
        mut head: Head,
        value: &[u8],
    ) -> Result<(), StorageError> {
        if let Some(old) = &old {
            self.unindex(key, old)?;
        }
        // The key's class in the top bits: eviction (oldest write first) takes a whole class before the next.
        head.written = Keep::of(key).band() | self.saved.next_seq;
        self.saved.next_seq = self.saved.next_seq.wrapping_add(1) & !Keep::BAND_MASK;
        self.records.insert(key, head.encode(value).as_slice())?;
        self.by_write.insert(head.written, key)?;
        if head.expires != NEVER {
            self.by_expiry.insert((head.expires, key), ())?;
        }
        let old_size = old.map_or(0, |h| h.size(key));
        self.saved.bytes = self
            .saved
            .bytes
            .saturating_sub(old_size)
            .saturating_add(head.size(key));
        Ok(())
    }

    fn put_value(&mut self, key: &str, value: &[u8], expires: u64) -> Result<(), StorageError> {
        let head = Head {
            expires,
            written: 0,
            shape: Shape::Value(value.len()),
        };
        self.store(key, None, head, value)
    }

    fn put(&mut self, key: &str, value: &[u8], expires: u64, now: u64) -> Result<(), StorageError> {
        let slot = self.slot(key, now)?;
        self.discard(key, slot)?;
        self.put_value(key, value, expires)
    }

    fn put_if_absent(&mut self, key: &str, value: &[u8], expires: u64, now: u64) -> Outcome<bool> {
        match self.slot(key, now)? {
            Slot::Live(_) => Ok(Ok(false)),
            Slot::Unreadable(_) => Ok(Err(corrupt(key, "undecodable header"))),
            slot => {
                self.discard(key, slot)?;
                self.put_value(key, value, expires)?;
                Ok(Ok(true))
            }
        }
    }

    fn take(&mut self, key: &str, now: u64) -> Outcome<Option<Bytes>> {
        let slot = self.slot(key, now)?;
        match slot {
            Slot::Absent => return Ok(Ok(None)),
            Slot::Unreadable(_) => return Ok(Err(corrupt(key, "undecodable header"))),
            Slot::Live(Head {
                shape: Shape::List(_),
                ..
            }) => return Ok(Err(wrong(key, "value"))),
            Slot::Live(_) | Slot::Expired(_) => {}
        }
        let value = match (&slot, self.records.get(key)?) {
            (Slot::Live(_), Some(raw)) => Head::decode(raw.value())
                .ok()
                .map(|(_, value)| Bytes::copy_from_slice(value)),
            _ => None,
        };
        self.discard(key, slot)?;
        Ok(Ok(value))
    }

    fn delete(&mut self, key: &str, now: u64) -> Outcome<bool> {
        let slot = self.slot(key, now)?;
        self.discard(key, slot)?;
        Ok(Ok(matches!(slot, Slot::Live(_) | Slot::Unreadable(_))))
    }

    fn list_push(
        &mut self,
        key: &str,
        value: &[u8],
        cap: usize,
        ttl: Option<Duration>,
        now: u64,
    ) -> Outcome<usize> {
        let slot = self.slot(key, now)?;
        let old = match slot {
            Slot::Live(
                head @ Head {
                    shape: Shape::List(list),
                    ..
                },
            ) => Some((head, list)),
            Slot::Live(_) => return Ok(Err(wrong(key, "list"))),
            Slot::Unreadable(_) => return Ok(Err(corrupt(key, "undecodable header"))),
            Slot::Expired(_) | Slot::Absent => {
                self.discard(key, slot)?;
                None
            }
        };
        if cap == 0 {
            if old.is_some() {
                self.discard(key, slot)?;
            }
            return Ok(Ok(0));
        }
        let (mut list, expires) = match old {
            Some((head, list)) => (list, ttl.map_or(head.expires, |t| memory::expiry(now, t))),
            None => (ListHead::default(), expiry(now, ttl)),
        };
        // Header fields come from the file: no arithmetic on them may panic.
        let newest = !list.next;
        self.items.insert((key, newest), value)?;
        list.next = list.next.wrapping_add(1);
        list.len = list.len.saturating_add(1);
        list.bytes = list.bytes.saturating_add(item_size(value.len()));
        let excess = usize::try_from(list.len.saturating_sub(cap as u64)).unwrap_or(usize::MAX);
        if excess > 0 {
            let mut gone = Vec::new();
            for item in self.items.range(items_of(key))?.rev().take(excess) {
                let (k, v) = item?;
                gone.push((k.value().1, v.value().len()));
            }
            if gone.iter().any(|&(n, _)| n == newest) {
                // The header counts more items than there are: keep the newest `cap` and count them anew.
                (list.len, list.bytes, gone) = (0, 0, Vec::new());
                for (i, item) in self.items.range(items_of(key))?.enumerate() {
                    let (k, v) = item?;
                    if i < cap {
                        list.len += 1;
                        list.bytes += item_size(v.value().len());
                    } else {
                        gone.push((k.value().1, v.value().len()));
                    }
                }
            } else {
                for &(_, len) in &gone {
                    list.len = list.len.saturating_sub(1);
                    list.bytes = list.bytes.saturating_sub(item_size(len));
                }
            }
            for (n, _) in gone {
                self.items.remove((key, n))?;
            }
        }
        let head = Head {
            expires,
            written: 0,
            shape: Shape::List(list),
        };
        self.store(key, old.map(|(h, _)| h), head, &[])?;
        Ok(Ok(usize::try_from(list.len).unwrap_or(usize::MAX)))
    }

    fn list_replace(&mut self, key: &str, old: &[u8], new: &[u8], now: u64) -> Outcome<bool> {
        let slot = self.slot(key, now)?;
        let (head, mut list) = match slot {
            Slot::Live(
                head @ Head {
                    shape: Shape::List(list),
                    ..
                },
            ) => (head, list),
            Slot::Live(_) => return Ok(Err(wrong(key, "list"))),
            Slot::Unreadable(_) => return Ok(Err(corrupt(key, "undecodable header"))),
            Slot::Expired(_) | Slot::Absent => return Ok(Ok(false)),
        };
        // Items are numbered newest first.
        let mut found = None;
        for item in self.items.range(items_of(key))? {
            let (k, v) = item?;
            if v.value() == old {
                found = Some(k.value().1);
                break;
            }
        }
        let Some(n) = found else {
            return Ok(Ok(false));
        };
        self.items.insert((key, n), new)?;
        list.bytes = list
            .bytes
            .saturating_sub(item_size(old.len()))
            .saturating_add(item_size(new.len()));
        let updated = Head {
            shape: Shape::List(list),
            ..head
        };
        self.store(key, Some(head), updated, &[])?;
        Ok(Ok(true))
    }

    /// Removes up to `budget` expired records, soonest expiry first; returns how many index entries it used.
    fn sweep(&mut self, now: u64, budget: usize) -> Result<usize, StorageError> {
        let mut due = Vec::new();
        for entry in self.by_expiry.range(..(now.saturating_add(1), ""))?.take(budget) {
            let (k, _) = entry?;
            let (expires, key) = k.value();
            due.push((expires, key.to_owned()));
        }
        for (expires, key) in &due {
            self.by_expiry.remove((*expires, key.as_str()))?;
            let slot = self.slot(key, now)?;
            if matches!(slot, Slot::Expired(h) if h.expires == *expires) {
                self.discard(key, slot)?;
            }
        }
        Ok(due.len())
    }

    /// Moves the records of a file written before eviction classes into their [`Keep`] band, once, at
    /// open: until then every record ranked as expendable.
    fn band_records(&mut self) -> Result<(), StorageError> {
        let mut moves = Vec::new();
        for entry in self.by_write.iter()? {
            let (seq, key) = entry?;
            let (seq, key) = (seq.value(), key.value());
            let band = Keep::of(key).band();
            if band != 0 && seq & Keep::BAND_MASK == 0 {
                moves.push((seq, key.to_owned(), band | seq));
            }
        }
        for (old, key, new) in moves {
            let raw = self.records.get(key.as_str())?.map(|r| r.value().to_vec());
            self.by_write.remove(old)?;
            // The header's write sequence number (bytes 9 to 16, see `Head::encode`); a record rewritten
            // since is indexed under its newer number already.
            if let Some(mut raw) = raw.filter(|r| r.get(9..17) == Some(&old.to_le_bytes()[..])) {
                raw[9..17].copy_from_slice(&new.to_le_bytes());
                self.records.insert(key.as_str(), raw.as_slice())?;
                self.by_write.insert(new, key.as_str())?;
            }
        }
        Ok(())
    }

    /// Brings the record count down to `max`: expired records first, then the least recently written of
    /// the lowest [`Keep`] class.
    fn evict(&mut self, max: usize, now: u64) -> Result<(), StorageError> {
        // A list's items count one each, as records do: a user's event history of 100 weighs 101.
        let over = |t: &Self| -> Result<usize, StorageError> {
            let held = t.records.len()?.saturating_add(t.items.len()?);
            Ok(usize::try_from(held.saturating_sub(max as u64)).unwrap_or(usize::MAX))
        };
        let excess = over(self)?;
        if excess > 0 {
            self.sweep(now, excess)?;
        }
        while over(self)? > 0 {
            let Some((seq, key)) = self
                .by_write
                .pop_first()?
                .map(|(s, k)| (s.value(), k.value().to_owned()))
            else {
                break;
            };
            let slot = self.slot(&key, now)?;
            if matches!(slot, Slot::Live(h) | Slot::Expired(h) if h.written == seq) {
                self.discard(&key, slot)?;
            }
        }
        Ok(())
    }

    /// Writes the bookkeeping into the transaction and returns it.
    fn save(&mut self) -> Result<Saved, StorageError> {
        self.meta.insert("next_seq", self.saved.next_seq)?;
        self.meta.insert("bytes", self.saved.bytes)?;
        self.saved.records = self.records.len()?;
        Ok(self.saved)
    }
}

/// A write's own result (`WrongType`, `Corrupt`...) inside a failure of the whole transaction.
type Outcome<T> = Result<Result<T, StoreError>, StorageError>;

/// One queued write: applied inside its batch's transaction, answered once the batch has committed.
trait Job: Send {
    /// Applies the write; an `Err` aborts the whole batch.
    fn apply(&mut self, t: &mut Tables<'_>) -> Result<(), StorageError>;
    /// Answers the caller: the write's result, or `failed` when the batch did not commit.
    fn answer(self: Box<Self>, failed: Option<&StoreError>);
}

struct Pending<T, F> {
    run: Option<F>,
    out: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut Tables<'_>) -> Outcome<T> + Send,
{
    fn apply(&mut self, t: &mut Tables<'_>) -> Result<(), StorageError> {
        if let Some(run) = self.run.take() {
            self.out = Some(run(t)?);
        }
        Ok(())
    }

    fn answer(self: Box<Self>, failed: Option<&StoreError>) {
        let out = match (failed, self.out) {
            (None, Some(out)) => out,
            (Some(e), _) => Err(e.clone()),
            (None, None) => Err(unavailable("write not applied".to_owned())),
        };
        let _ = self.reply.send(out);
    }
}

/// The writer thread: applies queued writes in batches, one durable commit per batch.
struct Writer {
    db: Arc<Database>,
    rx: mpsc::Receiver<Box<dyn Job>>,
    clock: SharedClock,
    max_records: usize,
    saved: Saved,
    /// When the next sweep is due (clock milliseconds).
    next_sweep: u64,
    usage: Arc<RecordUsage>,
}

impl Writer {
    fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let failed = self.commit(&mut batch).err();
            if let Some(e) = &failed {
                tracing::error!(error = %e, writes = batch.len(), "store commit failed");
            }
            for job in batch {
                job.answer(failed.as_ref());
            }
        }
    }

    /// Applies the batch in one transaction, with a sweep when one is due and eviction beyond the cap, and
    /// commits it durably.
    fn commit(&mut self, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut txn = self.db.begin_write().map_err(fail)?;
        txn.set_two_phase_commit(true);
        let saved = {
            let mut t = Tables::open(&txn, self.saved).map_err(fail)?;
            for job in batch.iter_mut() {
                job.apply(&mut t).map_err(fail)?;
            }
            if now >= self.next_sweep && t.sweep(now, SWEEP_BUDGET).map_err(fail)? < SWEEP_BUDGET {
                self.next_sweep = now.saturating_add(SWEEP_EVERY_MS);
            }
            t.evict(self.max_records, now).map_err(fail)?;
            t.save().map_err(fail)?
        };
        txn.commit().map_err(fail)?;
        self.saved = saved;
        self.usage.set(&saved);
        Ok(())
    }
}

// === Store ===

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn rate_take(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        cost: u32,
    ) -> Result<RateDecision, StoreError> {
        if is_record(key) {
            return Err(wrong(key, "rate limit"));
        }
        self.memory.rate_take(key, limit, period, cost).await
    }

    async fn rate_peek(&self, key: &str, limit: u32, period: Duration) -> Result<RateDecision, StoreError> {
        if is_record(key) {
            return Err(wrong(key, "rate limit"));
        }
        self.memory.rate_peek(key, limit, period).await
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, StoreError> {
        if is_record(key) {
            return Err(wrong(key, "counter"));
        }
        self.memory.incr(key, by, ttl).await
    }

    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        if is_record(key) {
            return Err(wrong(key, "counter"));
        }
        self.memory.counter(key).await
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<u64, StoreError> {
        if is_record(key) {
            return Err(wrong(key, "set"));
        }
        self.memory.set_add(key, member, ttl).await
    }

    async fn set_len(&self, key: &str) -> Result<u64, StoreError> {
        if is_record(key) {
            return Err(wrong(key, "set"));
        }
        self.memory.set_len(key).await
    }

    async fn set_contains(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        if is_record(key) {
            return Err(wrong(key, "set"));
        }
        self.memory.set_contains(key, member).await
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), StoreError> {
        if !is_record(key) {
            return self.memory.put(key, value, ttl).await;
        }
        check_size(key, &value)?;
        let (key, now) = (key.to_owned(), self.clock.now_ms());
        self.write(move |t| {
            t.put(&key, &value, expiry(now, ttl), now)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        if !is_record(key) {
            return self.memory.put_if_absent(key, value, ttl).await;
        }
        check_size(key, &value)?;
        let (key, now) = (key.to_owned(), self.clock.now_ms());
        self.write(move |t| t.put_if_absent(&key, &value, expiry(now, ttl), now))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        if !is_record(key) {
            return self.memory.get(key).await;
        }
        let (key, now) = (key.to_owned(), self.clock.now_ms());
        self.read(move |txn| read_value(txn, &key, now)).await
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        if !is_record(key) {
            return self.memory.take(key).await;
        }
        let (key, now) = (key.to_owned(), self.clock.now_ms());
        self.write(move |t| t.take(&key, now)).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        if !is_record(key) {
            return self.memory.delete(key).await;
        }
        let (key, now) = (key.to_owned(), self.clock.now_ms());
        self.write(move |t| t.delete(&key, now)).await
    }

    async fn list_push(
        &self,
        key: &str,
        value: Bytes,
        cap: usize,
        ttl: Option<Duration>,
    ) -> Result<usize, StoreError> {
        if !is_record(key) {
            return self.memory.list_push(key, value, cap, ttl).await;
        }
        check_size(key, &value)?;
        let (key, now) = (key.to_owned(), self.clock.now_ms());
        self.write(move |t| t.list_push(&key, &value, cap, ttl, now))
            .await
    }

    async fn list_range(&self, key: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError> {
        if !is_record(key) {
            return self.memory.list_range(key, start, count).await;
        }
        let (key, now) = (key.to_owned(), self.clock.now_ms());
        self.read(move |txn| read_list(txn, &key, start, count, now))
            .await
    }

    async fn list_replace(&self, key: &str, old: &[u8], new: Bytes) -> Result<bool, StoreError> {
        if !is_record(key) {
            return self.memory.list_replace(key, old, new).await;
        }
        check_size(key, &new)?;
        let (key, old, now) = (key.to_owned(), old.to_vec(), self.clock.now_ms());
        self.write(move |t| t.list_replace(&key, &old, &new, now)).await
    }

    /// Ops on in-memory keys run synchronously in the memory store; ops on record keys go through this
    /// store's methods, in order with the others. The in-memory ops between two record ops share one
    /// clock reading (a record op may wait on the database, so the clock is read again after one).
    async fn batch(&self, ops: Vec<Op>) -> Result<Vec<Reply>, StoreError> {
        let mut replies = Replies::with_capacity(ops.len());
        let mut now = None;
        for op in ops {
            let reply = if is_record(op.key()) {
                now = None;
                run_op(self, op).await
            } else {
                let now = *now.get_or_insert_with(|| self.clock.now_ms());
                self.memory.apply(op, now)
            };
            replies.push(reply);
        }
        replies.finish()
    }

    fn kind(&self) -> &'static str {
        BACKEND
    }

    /// The memory part's keys and bytes plus the records' count and accounted bytes as of the last commit.
    fn usage(&self) -> Option<(usize, usize)> {
        let records = self.usage.records.load(Ordering::Relaxed);
        let bytes = self.usage.bytes.load(Ordering::Relaxed);
        Some((
            self.memory.len().saturating_add(records),
            self.memory.bytes().saturating_add(bytes),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use redb::ReadableTable;

    use super::{BY_WRITE, EmbeddedOptions, EmbeddedStore, MAX_RECORD_BYTES, META, OpenError, RECORDS};
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryLimits;
    use crate::store::{Keep, Op, RateDecision, Reply, Store, StoreError, conformance, record_key};

    const START_MS: u64 = 1_700_000_000_000;
    const SEC: Duration = Duration::from_secs(1);
    const HOUR: Duration = Duration::from_secs(3600);

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn rec(id: &str) -> String {
        record_key("test", id)
    }

    struct Fixture {
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
                clock: Arc::new(ManualClock::new(START_MS)),
            }
        }

        fn open_with(&self, max_records: usize) -> EmbeddedStore {
            let opts = EmbeddedOptions {
                path: self.dir.path().join("state.redb"),
                max_records,
                memory: MemoryLimits::default(),
            };
            EmbeddedStore::open(opts, self.clock.clone()).unwrap()
        }

        fn open(&self) -> EmbeddedStore {
            self.open_with(1_000_000)
        }

        /// The keys in the file's records table, read with redb directly.
        fn keys_in_file(&self) -> Vec<String> {
            let db = redb::Database::open(self.dir.path().join("state.redb")).unwrap();
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(RECORDS).unwrap();
            t.iter()
                .unwrap()
                .map(|e| e.unwrap().0.value().to_owned())
                .collect()
        }
    }

    /// The store seen through record keys: value and list operations get `rec/` in front of their key, so
    /// the conformance tests for values and lists run against the file. Counters keep their key (a record
    /// key cannot hold one), and `delete` removes either.
    #[derive(Debug)]
    struct Records(EmbeddedStore);

    fn r(key: &str) -> String {
        format!("{}{key}", super::RECORD_PREFIX)
    }

    #[async_trait::async_trait]
    impl Store for Records {
        async fn rate_take(&self, k: &str, l: u32, p: Duration, c: u32) -> Result<RateDecision, StoreError> {
            self.0.rate_take(k, l, p, c).await
        }
        async fn rate_peek(&self, k: &str, l: u32, p: Duration) -> Result<RateDecision, StoreError> {
            self.0.rate_peek(k, l, p).await
        }
        async fn incr(&self, k: &str, by: i64, ttl: Duration) -> Result<i64, StoreError> {
            self.0.incr(k, by, ttl).await
        }
        async fn counter(&self, k: &str) -> Result<i64, StoreError> {
            self.0.counter(k).await
        }
        async fn set_add(&self, k: &str, m: &str, ttl: Duration) -> Result<u64, StoreError> {
            self.0.set_add(k, m, ttl).await
        }
        async fn set_len(&self, k: &str) -> Result<u64, StoreError> {
            self.0.set_len(k).await
        }
        async fn set_contains(&self, k: &str, m: &str) -> Result<bool, StoreError> {
            self.0.set_contains(k, m).await
        }
        async fn put(&self, k: &str, v: Bytes, ttl: Option<Duration>) -> Result<(), StoreError> {
            self.0.put(&r(k), v, ttl).await
        }
        async fn put_if_absent(&self, k: &str, v: Bytes, ttl: Option<Duration>) -> Result<bool, StoreError> {
            self.0.put_if_absent(&r(k), v, ttl).await
        }
        async fn get(&self, k: &str) -> Result<Option<Bytes>, StoreError> {
            self.0.get(&r(k)).await
        }
        async fn take(&self, k: &str) -> Result<Option<Bytes>, StoreError> {
            self.0.take(&r(k)).await
        }
        async fn delete(&self, k: &str) -> Result<bool, StoreError> {
            Ok(self.0.delete(&r(k)).await? | self.0.delete(k).await?)
        }
        async fn list_push(
            &self,
            k: &str,
            v: Bytes,
            cap: usize,
            ttl: Option<Duration>,
        ) -> Result<usize, StoreError> {
            self.0.list_push(&r(k), v, cap, ttl).await
        }
        async fn list_range(&self, k: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError> {
            self.0.list_range(&r(k), start, count).await
        }
        async fn list_replace(&self, k: &str, old: &[u8], new: Bytes) -> Result<bool, StoreError> {
            self.0.list_replace(&r(k), old, new).await
        }
        fn kind(&self) -> &'static str {
            self.0.kind()
        }
    }

    /// Every conformance test on plain keys: everything goes to the memory part.
    macro_rules! conformance_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $name() {
                let f = Fixture::new();
                let s = f.open();
                conformance::$name(&s, &f.clock).await;
                drop(s);
                assert!(f.keys_in_file().is_empty(), "nothing but records goes to the file");
            }
        )*};
    }

    crate::store::conformance::each_test!(conformance_tests);

    /// The value and list conformance tests on record keys: every value and list lives in the file.
    mod records {
        use super::*;

        macro_rules! record_tests {
            ($($name:ident),* $(,)?) => {$(
                #[tokio::test]
                async fn $name() {
                    let f = Fixture::new();
                    let s = Records(f.open());
                    conformance::$name(&s, &f.clock).await;
                }
            )*};
        }

        record_tests!(
            values_with_ttl,
            put_if_absent_take_delete,
            lists,
            list_replace_is_a_compare_and_swap
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
        async fn concurrent_put_if_absent() {
            let f = Fixture::new();
            conformance::concurrent_put_if_absent(Arc::new(Records(f.open()))).await;
        }
    }

    macro_rules! concurrent_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
            async fn $name() {
                let f = Fixture::new();
                conformance::$name(Arc::new(f.open())).await;
            }
        )*};
    }

    crate::store::conformance::each_concurrent_test!(concurrent_tests);

    #[tokio::test]
    async fn kind_is_embedded() {
        assert_eq!(Fixture::new().open().kind(), "embedded");
    }

    #[tokio::test]
    async fn records_survive_close_and_reopen() {
        let f = Fixture::new();
        let s = f.open();
        s.put(&rec("alice"), b("profile-a"), None).await.unwrap();
        s.put(&rec("short"), b("x"), Some(HOUR)).await.unwrap();
        for i in 0..5 {
            s.list_push(&rec("history"), b(&format!("e{i}")), 3, None)
                .await
                .unwrap();
        }
        s.put(&rec("gone"), b("x"), None).await.unwrap();
        assert!(s.delete(&rec("gone")).await.unwrap());
        let usage = s.usage().unwrap();
        drop(s);

        let s = f.open();
        assert_eq!(
            s.usage().unwrap(),
            usage,
            "the counts are read back from the file"
        );
        assert_eq!(s.get(&rec("alice")).await.unwrap(), Some(b("profile-a")));
        assert_eq!(s.get(&rec("short")).await.unwrap(), Some(b("x")));
        assert_eq!(s.get(&rec("gone")).await.unwrap(), None);
        assert_eq!(
            s.list_range(&rec("history"), 0, 10).await.unwrap(),
            vec![b("e4"), b("e3"), b("e2")]
        );
        assert_eq!(s.list_push(&rec("history"), b("e5"), 3, None).await.unwrap(), 3);
        assert_eq!(
            s.list_range(&rec("history"), 0, 10).await.unwrap(),
            vec![b("e5"), b("e4"), b("e3")],
            "item numbering carries on after a reopen"
        );
        f.clock.advance(HOUR);
        assert_eq!(s.get(&rec("short")).await.unwrap(), None, "the expiry was kept");
    }

    #[tokio::test]
    async fn counters_and_plain_keys_are_not_written_to_the_file() {
        let f = Fixture::new();
        let s = f.open();
        s.incr("n", 5, HOUR).await.unwrap();
        s.set_add("s", "m", HOUR).await.unwrap();
        assert!(s.rate_take("r", 10, HOUR, 1).await.unwrap().allowed);
        s.put("nonce", b("v"), None).await.unwrap();
        s.list_push("l", b("v"), 5, None).await.unwrap();
        s.put(&rec("kept"), b("v"), None).await.unwrap();
        drop(s);
        assert_eq!(f.keys_in_file(), vec![rec("kept")]);

        let s = f.open();
        assert_eq!(s.counter("n").await.unwrap(), 0);
        assert_eq!(s.set_len("s").await.unwrap(), 0);
        assert_eq!(s.get("nonce").await.unwrap(), None);
        assert!(s.list_range("l", 0, 5).await.unwrap().is_empty());
        assert_eq!(s.rate_peek("r", 10, HOUR).await.unwrap().remaining, 10);
        assert_eq!(s.get(&rec("kept")).await.unwrap(), Some(b("v")));
    }

    #[tokio::test]
    async fn a_batch_mixes_records_and_memory_keys_in_order() {
        let f = Fixture::new();
        let s = f.open();
        let (r, n) = (rec("r"), "n".to_string());
        let ops = vec![
            Op::Put {
                key: r.clone(),
                value: b("v1"),
                ttl: None,
            },
            Op::Incr {
                key: n.clone(),
                by: 2,
                ttl: SEC,
            },
            Op::Get { key: r.clone() },
            Op::Counter { key: n.clone() },
            Op::ListPush {
                key: rec("l"),
                value: b("i"),
                cap: 3,
                ttl: None,
            },
        ];
        let replies = s.batch(ops).await.unwrap();
        assert_eq!(
            replies,
            vec![
                Reply::Unit,
                Reply::Int(2),
                Reply::Value(Some(b("v1"))),
                Reply::Int(2),
                Reply::Len(1)
            ]
        );
        // Every op is attempted; the first error is the batch's.
        let ops = vec![
            Op::Counter { key: r.clone() },
            Op::Incr {
                key: n.clone(),
                by: 1,
                ttl: SEC,
            },
            Op::Put {
                key: r.clone(),
                value: b("v2"),
                ttl: None,
            },
        ];
        assert!(matches!(s.batch(ops).await, Err(StoreError::WrongType { .. })));
        assert_eq!(s.counter(&n).await.unwrap(), 3);
        assert_eq!(s.get(&r).await.unwrap(), Some(b("v2")));
        drop(s);
        let mut keys = f.keys_in_file();
        keys.sort();
        assert_eq!(
            keys,
            vec![rec("l"), rec("r")],
            "records in the file, counters not"
        );
    }

    #[tokio::test]
    async fn record_keys_hold_only_values_and_lists() {
        let s = Fixture::new().open();
        let k = rec("k");
        let wrong = |r: Result<(), StoreError>| matches!(r, Err(StoreError::WrongType { .. }));
        assert!(wrong(s.incr(&k, 1, SEC).await.map(drop)));
        assert!(wrong(s.counter(&k).await.map(drop)));
        assert!(wrong(s.set_add(&k, "m", SEC).await.map(drop)));
        assert!(wrong(s.set_len(&k).await.map(drop)));
        assert!(wrong(s.set_contains(&k, "m").await.map(drop)));
        assert!(wrong(s.rate_take(&k, 1, SEC, 1).await.map(drop)));
        assert!(wrong(s.rate_peek(&k, 1, SEC).await.map(drop)));

        s.put(&k, b("v"), None).await.unwrap();
        assert!(wrong(s.list_push(&k, b("i"), 3, None).await.map(drop)));
        assert!(wrong(s.list_push(&k, b("i"), 0, None).await.map(drop)));
        assert!(wrong(s.list_range(&k, 0, 3).await.map(drop)));
        let l = rec("l");
        s.list_push(&l, b("i"), 3, None).await.unwrap();
        assert!(wrong(s.get(&l).await.map(drop)));
        assert!(wrong(s.take(&l).await.map(drop)));
        assert!(
            !s.put_if_absent(&l, b("v"), None).await.unwrap(),
            "a list is present"
        );
        s.put(&l, b("replaced"), None).await.unwrap();
        assert_eq!(
            s.get(&l).await.unwrap(),
            Some(b("replaced")),
            "put replaces a list"
        );
        assert!(
            s.list_range(&k, 0, 1).await.is_err(),
            "and the list's items are gone with it"
        );
        assert!(matches!(
            s.put(&k, Bytes::from(vec![0; MAX_RECORD_BYTES]), None).await,
            Err(StoreError::TooLarge { .. })
        ));
        assert_eq!(s.get(&k).await.unwrap(), Some(b("v")));
    }

    #[tokio::test]
    async fn ttls_expire_with_the_clock_and_the_sweep_removes_them() {
        let f = Fixture::new();
        let s = f.open();
        for i in 0..10 {
            s.put(&rec(&format!("t{i}")), b("v"), Some(10 * SEC))
                .await
                .unwrap();
        }
        s.list_push(&rec("list"), b("i"), 5, Some(10 * SEC))
            .await
            .unwrap();
        s.put(&rec("forever"), b("v"), None).await.unwrap();
        f.clock.advance(10 * SEC - Duration::from_millis(1));
        assert_eq!(s.get(&rec("t0")).await.unwrap(), Some(b("v")));
        f.clock.advance(Duration::from_millis(1));
        assert_eq!(
            s.get(&rec("t0")).await.unwrap(),
            None,
            "expired exactly at the TTL"
        );
        assert!(s.list_range(&rec("list"), 0, 5).await.unwrap().is_empty());
        assert_eq!(s.usage().unwrap().0, 12, "expired records wait for the sweep");

        // The sweep runs with the first write once it is due (the first batch after opening made it due
        // a minute later).
        f.clock.advance(Duration::from_secs(60));
        s.put(&rec("trigger"), b("v"), None).await.unwrap();
        assert_eq!(s.usage().unwrap().0, 2);
        drop(s);
        let mut keys = f.keys_in_file();
        keys.sort();
        assert_eq!(keys, vec![rec("forever"), rec("trigger")]);
    }

    #[tokio::test]
    async fn writes_on_an_expired_record_replace_it() {
        let f = Fixture::new();
        let s = f.open();
        s.put(&rec("v"), b("old"), Some(SEC)).await.unwrap();
        s.list_push(&rec("l"), b("old"), 5, Some(SEC)).await.unwrap();
        f.clock.advance(SEC);
        assert_eq!(s.take(&rec("v")).await.unwrap(), None);
        assert_eq!(s.list_push(&rec("l"), b("new"), 5, None).await.unwrap(), 1);
        assert_eq!(s.list_range(&rec("l"), 0, 5).await.unwrap(), vec![b("new")]);
        f.clock.advance(HOUR);
        assert_eq!(
            s.list_range(&rec("l"), 0, 5).await.unwrap(),
            vec![b("new")],
            "the new list has no expiry"
        );
        assert_eq!(s.usage().unwrap().0, 1);
    }

    #[tokio::test]
    async fn list_cap_keeps_the_newest_and_can_shrink() {
        let s = Fixture::new().open();
        let k = rec("h");
        for i in 0..10 {
            let len = s.list_push(&k, b(&i.to_string()), 4, None).await.unwrap();
            assert_eq!(len, (i + 1).min(4));
        }
        assert_eq!(
            s.list_range(&k, 0, 10).await.unwrap(),
            vec![b("9"), b("8"), b("7"), b("6")]
        );
        assert_eq!(
            s.list_push(&k, b("10"), 2, None).await.unwrap(),
            2,
            "a smaller cap trims"
        );
        assert_eq!(s.list_range(&k, 0, 10).await.unwrap(), vec![b("10"), b("9")]);
        let (_, bytes) = s.usage().unwrap();
        assert_eq!(s.list_push(&k, b("x"), 0, None).await.unwrap(), 0);
        assert!(s.usage().unwrap().1 < bytes);
        assert_eq!(s.usage().unwrap(), (0, 0), "cap 0 deleted the list and its items");
    }

    #[tokio::test]
    async fn max_records_evicts_the_least_recently_written() {
        let f = Fixture::new();
        let s = f.open_with(3);
        for k in ["a", "b", "c"] {
            s.put(&rec(k), b(k), None).await.unwrap();
        }
        s.put(&rec("a"), b("a2"), None).await.unwrap();
        assert_eq!(
            s.get(&rec("b")).await.unwrap(),
            Some(b("b")),
            "reads do not count"
        );
        s.put(&rec("d"), b("d"), None).await.unwrap();
        assert_eq!(
            s.get(&rec("b")).await.unwrap(),
            None,
            "b was written least recently"
        );
        s.put(&rec("d"), b("d2"), None).await.unwrap();
        s.put(&rec("e"), b("e"), None).await.unwrap();
        assert_eq!(s.get(&rec("c")).await.unwrap(), None);
        assert_eq!(s.get(&rec("a")).await.unwrap(), Some(b("a2")));
        assert_eq!(s.get(&rec("d")).await.unwrap(), Some(b("d2")));
        assert_eq!(s.usage().unwrap().0, 3);
        drop(s);

        // The cap holds across a reopen with a smaller one, and expired records go before live ones.
        let s = f.open_with(2);
        s.put(&rec("f"), b("f"), Some(SEC)).await.unwrap();
        f.clock.advance(SEC);
        s.put(&rec("g"), b("g"), None).await.unwrap();
        assert_eq!(s.usage().unwrap().0, 2);
        assert_eq!(s.get(&rec("e")).await.unwrap(), Some(b("e")));
        assert_eq!(s.get(&rec("g")).await.unwrap(), Some(b("g")));
    }

    #[tokio::test]
    async fn a_flood_of_event_histories_never_evicts_users_or_mfa_factors() {
        let f = Fixture::new();
        let s = f.open_with(10);
        s.put("rec/mfa/alice", b("factor"), None).await.unwrap();
        s.put("rec/meta/device-key", b("key"), None).await.unwrap();
        s.put("rec/user/alice", b("history"), None).await.unwrap();
        // Failed sign-ins with made-up usernames: one event history each.
        for i in 0..200 {
            s.list_push(&format!("rec/events/{i:016x}"), b("event"), 100, None)
                .await
                .unwrap();
        }
        assert_eq!(s.get("rec/mfa/alice").await.unwrap(), Some(b("factor")));
        assert_eq!(s.get("rec/meta/device-key").await.unwrap(), Some(b("key")));
        assert_eq!(s.get("rec/user/alice").await.unwrap(), Some(b("history")));
        assert!(s.usage().unwrap().0 <= 10);
        // Past them, users' histories go (least recently written first) before MFA factors.
        for i in 0..20 {
            s.put(&format!("rec/user/u{i}"), b("history"), None)
                .await
                .unwrap();
        }
        assert_eq!(s.get("rec/user/alice").await.unwrap(), None);
        assert_eq!(s.get("rec/mfa/alice").await.unwrap(), Some(b("factor")));
    }

    #[tokio::test]
    async fn a_file_written_before_eviction_classes_is_banded_at_open() {
        let f = Fixture::new();
        let s = f.open();
        s.put("rec/mfa/alice", b("factor"), None).await.unwrap();
        s.put("rec/events/0001", b("event"), None).await.unwrap();
        drop(s);
        // As an older version left it: every write sequence number in the lowest band, no "banded" mark.
        {
            let db = redb::Database::open(f.dir.path().join("state.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut records = txn.open_table(RECORDS).unwrap();
                let mut by_write = txn.open_table(BY_WRITE).unwrap();
                let mut raw = records.get("rec/mfa/alice").unwrap().unwrap().value().to_vec();
                let banded = u64::from_le_bytes(raw[9..17].try_into().unwrap());
                let old = banded & !Keep::BAND_MASK;
                assert_ne!(banded, old, "written in its band");
                raw[9..17].copy_from_slice(&old.to_le_bytes());
                records.insert("rec/mfa/alice", raw.as_slice()).unwrap();
                by_write.remove(banded).unwrap();
                by_write.insert(old, "rec/mfa/alice").unwrap();
                txn.open_table(META).unwrap().remove("banded").unwrap();
            }
            txn.commit().unwrap();
        }
        // The factor, the oldest write, survives a flood once the file is reopened.
        let s = f.open_with(5);
        for i in 0..50 {
            s.put(&format!("rec/events/{i:04}"), b("event"), None)
                .await
                .unwrap();
        }
        assert_eq!(s.get("rec/mfa/alice").await.unwrap(), Some(b("factor")));
    }

    #[tokio::test]
    async fn list_items_count_toward_max_records() {
        // A user's history is one list record: its items must not escape the file's cap.
        let f = Fixture::new();
        let s = f.open_with(6);
        s.put(&rec("a"), b("a"), None).await.unwrap();
        s.put(&rec("b"), b("b"), None).await.unwrap();
        for i in 0..3 {
            s.list_push(&rec("l"), b(&i.to_string()), 100, None)
                .await
                .unwrap();
        }
        // 3 records and 3 items: within the cap.
        assert_eq!(s.get(&rec("a")).await.unwrap(), Some(b("a")));
        s.list_push(&rec("l"), b("3"), 100, None).await.unwrap();
        assert_eq!(s.get(&rec("a")).await.unwrap(), None, "7 over 6: a went first");
        assert_eq!(s.get(&rec("b")).await.unwrap(), Some(b("b")));
        // b, l (4 items) and m (1): 8 over 6. b goes, then the list l, least recently written, whole.
        s.list_push(&rec("m"), b("x"), 100, None).await.unwrap();
        assert_eq!(s.get(&rec("b")).await.unwrap(), None);
        assert!(s.list_range(&rec("l"), 0, 10).await.unwrap().is_empty());
        assert_eq!(s.list_range(&rec("m"), 0, 10).await.unwrap(), vec![b("x")]);
        assert_eq!(s.usage().unwrap().0, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_all_land() {
        let f = Fixture::new();
        let s = Arc::new(f.open());
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 0..20 {
                        s.put(&rec(&format!("{t}-{i}")), b("v"), None).await.unwrap();
                        s.list_push(&rec(&format!("l{}", t % 4)), b(&format!("{t}-{i}")), 1000, None)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.usage().unwrap().0, 32 * 20 + 4);
        for l in 0..4 {
            assert_eq!(
                s.list_range(&rec(&format!("l{l}")), 0, 1000).await.unwrap().len(),
                8 * 20
            );
        }
    }

    #[tokio::test]
    async fn damaged_records_are_errors_not_panics() {
        let f = Fixture::new();
        let s = f.open();
        s.put(&rec("ok"), b("v"), None).await.unwrap();
        drop(s);
        {
            let db = redb::Database::open(f.dir.path().join("state.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(RECORDS).unwrap();
                t.insert(rec("short").as_str(), &[1u8, 2, 3][..]).unwrap();
                t.insert(rec("kind").as_str(), &[9u8; 40][..]).unwrap();
                // A list header claiming u64::MAX items and bytes.
                let mut huge = vec![super::KIND_LIST];
                for n in [u64::MAX, 7, u64::MAX, 5, u64::MAX] {
                    huge.extend_from_slice(&n.to_le_bytes());
                }
                t.insert(rec("huge").as_str(), huge.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let s = f.open();
        let corrupt = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Corrupt(_)));
        for k in ["short", "kind"] {
            let k = rec(k);
            assert!(corrupt(s.get(&k).await.map(drop)));
            assert!(corrupt(s.list_range(&k, 0, 5).await.map(drop)));
            assert!(corrupt(s.take(&k).await.map(drop)));
            assert!(corrupt(s.list_push(&k, b("x"), 5, None).await.map(drop)));
            assert!(corrupt(s.put_if_absent(&k, b("x"), None).await.map(drop)));
        }
        assert!(s.delete(&rec("short")).await.unwrap());
        assert_eq!(s.get(&rec("short")).await.unwrap(), None);
        s.put(&rec("kind"), b("fixed"), None).await.unwrap();
        assert_eq!(s.get(&rec("kind")).await.unwrap(), Some(b("fixed")));

        let huge = rec("huge");
        assert!(s.list_range(&huge, 0, usize::MAX).await.unwrap().is_empty());
        assert_eq!(
            s.list_push(&huge, b("x"), 3, None).await.unwrap(),
            1,
            "counted what is there"
        );
        assert_eq!(s.list_push(&huge, b("y"), 3, None).await.unwrap(), 2);
        assert_eq!(
            s.list_range(&huge, 0, usize::MAX).await.unwrap(),
            vec![b("y"), b("x")]
        );
        s.put(&rec("after"), b("v"), None).await.unwrap();
        assert_eq!(s.get(&rec("ok")).await.unwrap(), Some(b("v")));
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_file_is_refused() {
        let f = Fixture::new();
        let s = f.open();
        let opts = EmbeddedOptions {
            path: f.dir.path().join("state.redb"),
            max_records: 10,
            memory: MemoryLimits::default(),
        };
        let err = EmbeddedStore::open(opts.clone(), f.clock.clone()).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains("state.redb"), "{err}");
        drop(s);
        EmbeddedStore::open(opts, f.clock.clone()).unwrap();
    }

    #[test]
    fn unusable_files_are_clear_errors() {
        let f = Fixture::new();
        let path = f.dir.path().join("state.redb");
        let open = || {
            let opts = EmbeddedOptions {
                path: path.clone(),
                max_records: 10,
                memory: MemoryLimits::default(),
            };
            EmbeddedStore::open(opts, f.clock.clone())
        };
        std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
        let err = open().unwrap_err();
        assert!(matches!(err, OpenError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("state.redb"), "{err}");

        // A redb file of another program: its tables have other types.
        std::fs::remove_file(&path).unwrap();
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("records");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
            txn.commit().unwrap();
        }
        let err = open().unwrap_err();
        assert!(matches!(err, OpenError::Invalid { .. }), "{err:?}");

        let missing = f.dir.path().join("no-such-dir").join("state.redb");
        let opts = EmbeddedOptions {
            path: missing,
            max_records: 10,
            memory: MemoryLimits::default(),
        };
        let err = EmbeddedStore::open(opts, f.clock.clone()).unwrap_err();
        assert!(matches!(err, OpenError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }
}
