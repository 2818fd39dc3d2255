//! `Store` backend shared by many replicas: every operation is one atomic Lua script run on one Redis key.
//!
//! Works with Redis 6.2 or later and with Valkey. Each operation touches one key, so keys may live on any
//! node of a cluster-aware proxy; a batch goes out as one pipeline (one round trip). Expiry is kept with the
//! data in authward's clock (see `redis.lua`), so replicas agree on it and tests inject the clock; Redis
//! TTLs mirror it so that Redis frees expired keys on its own. Set members are stored as 128-bit SHA-256
//! fingerprints, never as the text an attacker sent. The connection is made lazily and remade after a
//! failure: authward starts while Redis is down, and after a failed exchange Redis is left alone for a
//! second before it is tried again. An operation Redis does not answer within `store.timeout` goes to
//! this replica's own memory store (`store.fallback: local`, the default: limits and counters then hold
//! per replica) or fails with [`StoreError::Unavailable`] (`none`), which the web ACL and the SMS guard
//! turn into their configured fail-open or fail-closed answer.

use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, Pipeline, Value};
use bytes::Bytes;
use parking_lot::Mutex;
use prometheus::IntCounter;
use sha2::{Digest, Sha256};

use super::memory::{MemoryLimits, MemoryStore, denied, unlimited};
use super::{Op, RateDecision, Replies, Reply, Store, StoreError};
use crate::clock::SharedClock;

const BACKEND: &str = "redis";
/// The operations, one script: loaded once per Redis server (`EVALSHA`, reloaded after a flush).
const SCRIPT: &str = include_str!("redis.lua");
/// Longest TTL and rate period sent (100 years): the script's doubles stay exact integers below 2^53.
const MAX_MS: u128 = 100 * 365 * 24 * 3600 * 1000;
const MAX_US: u128 = MAX_MS * 1000;
/// After a failed exchange, how long operations skip Redis instead of each waiting up to `timeout` for a
/// server that does not answer; the first operation after it tries again.
const PAUSE: Duration = Duration::from_secs(1);

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// Put in front of every key, so that several deployments can share one Redis.
    pub prefix: String,
    /// Longest wait for one operation (or batch), connecting included.
    pub timeout: Duration,
    /// Most members of one set; a new member evicts the least recently added one.
    pub max_set_members: usize,
    /// For `rediss://`: the PEM CA certificate to trust instead of the system's roots.
    pub ca: Option<Vec<u8>>,
    /// While Redis cannot answer, serve from this replica's own memory (limits and counters per replica)
    /// instead of failing with [`StoreError::Unavailable`].
    pub fallback: Option<MemoryLimits>,
    /// Counts the batches Redis did not answer (failed, refused, or not sent during the pause).
    pub unavailable: IntCounter,
}

/// The Redis backend.
pub struct RedisStore {
    conn: ConnectionManager,
    script: ::redis::Script,
    prefix: String,
    timeout: Duration,
    max_set_members: usize,
    /// The URL without its password, for messages.
    shown: String,
    clock: SharedClock,
    /// Where operations go while Redis cannot answer, when so configured.
    fallback: Option<MemoryStore>,
    unavailable: IntCounter,
    /// Set when an exchange with Redis fails: until then operations do not wait for Redis (they fail, or
    /// go to the fallback, at once). Also how each change of state is logged once, not every request.
    paused_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What one op becomes: answered here (limits that need no state), or a script run and how to read it.
enum Plan {
    Local(Reply),
    Remote(Cmd, Decode),
}

/// How to read a script's reply.
#[derive(Clone, Copy)]
enum Decode {
    Rate { period: Duration },
    Int,
    Count,
    Bool,
    Unit,
    Value,
    Len,
    Values,
}

impl RedisStore {
    /// A store for `opts.url`; connects on first use. Fails only on a URL that cannot be used.
    pub fn open(opts: RedisOptions, clock: SharedClock) -> Result<Self, StoreError> {
        let shown = without_password(&opts.url);
        let client = match opts.ca {
            None => ::redis::Client::open(opts.url.as_str()),
            Some(ca) => {
                let certs = ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca),
                };
                ::redis::Client::build_with_tls(opts.url.as_str(), certs)
            }
        }
        .map_err(|e| StoreError::Unavailable {
            backend: BACKEND,
            reason: format!("bad store.url {shown} (or store.ca): {e}"),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = client
            .get_connection_manager_lazy(config)
            .map_err(|e| unavailable(&e))?;
        Ok(RedisStore {
            conn,
            script: ::redis::Script::new(SCRIPT),
            prefix: opts.prefix,
            timeout: opts.timeout,
            max_set_members: opts.max_set_members.max(1),
            shown,
            fallback: opts
                .fallback
                .map(|limits| MemoryStore::new(limits, clock.clone())),
            unavailable: opts.unavailable,
            clock,
            paused_until: Mutex::new(None),
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// One script run: `EVALSHA <script> 1 <prefixed key> <op> <now> <args...>`.
    fn script(&self, key: &str, op: &str, now: u64) -> Cmd {
        let mut cmd = ::redis::cmd("EVALSHA");
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        cmd.arg(self.script.get_hash()).arg(1).arg(k).arg(op).arg(now);
        cmd
    }

    fn plan(&self, op: &Op, now: u64) -> Plan {
        let remote = |cmd, decode| Plan::Remote(cmd, decode);
        match op {
            Op::RateTake {
                key,
                limit,
                period,
                cost,
            } => self.gcra(key, "rate_take", *limit, *period, *cost, now),
            Op::RatePeek { key, limit, period } => self.gcra(key, "rate_peek", *limit, *period, 1, now),
            Op::Incr { key, by, ttl } => {
                let mut cmd = self.script(key, "incr", now);
                cmd.arg(*by).arg(ms(*ttl));
                remote(cmd, Decode::Int)
            }
            Op::Counter { key } => remote(self.script(key, "counter", now), Decode::Int),
            Op::SetAdd { key, member, ttl } => {
                let mut cmd = self.script(key, "set_add", now);
                cmd.arg(&fingerprint(member)[..])
                    .arg(ms(*ttl))
                    .arg(self.max_set_members);
                remote(cmd, Decode::Count)
            }
            Op::SetLen { key } => remote(self.script(key, "set_len", now), Decode::Count),
            Op::SetContains { key, member } => {
                let mut cmd = self.script(key, "set_contains", now);
                cmd.arg(&fingerprint(member)[..]);
                remote(cmd, Decode::Bool)
            }
            Op::Put { key, value, ttl } | Op::PutIfAbsent { key, value, ttl } => {
                let (name, decode) = match op {
                    Op::Put { .. } => ("put", Decode::Unit),
                    _ => ("put_if_absent", Decode::Bool),
                };
                let mut cmd = self.script(key, name, now);
                cmd.arg(&value[..])
                    .arg(ttl.map(ms).map(|t| t.to_string()).unwrap_or_default());
                remote(cmd, decode)
            }
            Op::Get { key } => remote(self.script(key, "get", now), Decode::Value),
            Op::Take { key } => remote(self.script(key, "take", now), Decode::Value),
            Op::Delete { key } => remote(self.script(key, "delete", now), Decode::Bool),
            Op::ListPush { key, value, cap, ttl } => {
                let mut cmd = self.script(key, "list_push", now);
                cmd.arg(&value[..])
                    .arg(clamp(*cap))
                    .arg(ttl.map(ms).map(|t| t.to_string()).unwrap_or_default());
                remote(cmd, Decode::Len)
            }
            Op::ListRange { key, start, count } => {
                let mut cmd = self.script(key, "list_range", now);
                cmd.arg(clamp(*start)).arg(clamp(*count));
                remote(cmd, Decode::Values)
            }
        }
    }

    /// A rate limit: limits that need no state are answered here, as the other backends answer them.
    fn gcra(&self, key: &str, op: &str, limit: u32, period: Duration, cost: u32, now: u64) -> Plan {
        if limit == 0 {
            return Plan::Local(Reply::Rate(denied(period)));
        }
        // Emission interval in µs; an interval under 1 µs (over a million a second) is unlimited.
        let t = period.as_micros().min(MAX_US) / u128::from(limit);
        if t == 0 {
            return Plan::Local(Reply::Rate(unlimited(limit)));
        }
        let mut cmd = self.script(key, op, now);
        cmd.arg(t.to_string())
            .arg((t * u128::from(limit)).to_string())
            .arg(limit)
            .arg(cost);
        Plan::Remote(cmd, Decode::Rate { period })
    }

    /// Sends the commands in one pipeline and returns their replies (server errors among them). Scripts
    /// missing on the server (a restart or `SCRIPT FLUSH`) are loaded and the pipeline sent once more: a
    /// missing script runs nothing, so nothing runs twice.
    async fn send(&self, pipe: &Pipeline) -> Result<Vec<Value>, StoreError> {
        let paused = *self.paused_until.lock();
        if paused.is_some_and(|until| Instant::now() < until) {
            self.unavailable.inc();
            return Err(StoreError::Unavailable {
                backend: BACKEND,
                reason: format!("not asked: {} failed less than {PAUSE:?} ago", self.shown),
            });
        }
        let sent = self.exchange(pipe).await;
        let was_down = std::mem::replace(
            &mut *self.paused_until.lock(),
            sent.is_err().then(|| Instant::now() + PAUSE),
        )
        .is_some();
        if sent.is_err() {
            self.unavailable.inc();
        }
        match &sent {
            Err(e) if !was_down && self.fallback.is_some() => {
                tracing::warn!(error = %e, "redis store unavailable: this replica serves from its own memory")
            }
            Err(e) if !was_down => tracing::warn!(error = %e, "redis store unavailable"),
            Ok(_) if was_down => tracing::info!(url = %self.shown, "redis store answering again"),
            _ => {}
        }
        sent
    }

    async fn exchange(&self, pipe: &Pipeline) -> Result<Vec<Value>, StoreError> {
        let mut conn = self.conn.clone();
        let work = async {
            let mut replies: Vec<Value> = pipe.query_async(&mut conn).await?;
            // Only the commands that found no script go again: the others ran.
            let missing: Vec<usize> = (0..replies.len()).filter(|&i| is_noscript(&replies[i])).collect();
            if !missing.is_empty() {
                self.script.load_async(&mut conn).await?;
                let mut again = Pipeline::with_capacity(missing.len());
                again.ignore_errors();
                for cmd in pipe.cmd_iter().enumerate().filter(|(i, _)| missing.contains(i)) {
                    again.add_command(cmd.1.clone());
                }
                let redone: Vec<Value> = again.query_async(&mut conn).await?;
                for (i, value) in missing.into_iter().zip(redone) {
                    replies[i] = value;
                }
            }
            Ok::<_, ::redis::RedisError>(replies)
        };
        let failed = |reason: String| StoreError::Unavailable {
            backend: BACKEND,
            reason,
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(replies)) if replies.len() != pipe.len() => Err(failed(format!(
                "{} replies to {} commands",
                replies.len(),
                pipe.len()
            ))),
            // A server that refuses work (LOADING, READONLY after a failover, MASTERDOWN, OOM, BUSY) is
            // one that cannot answer: the batch fails whole, so that the pause and the fallback apply.
            Ok(Ok(replies)) => match replies.iter().find_map(refusal) {
                Some(reason) => Err(failed(reason)),
                None => Ok(replies),
            },
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(failed(format!(
                "no answer from {} within {:?}",
                self.shown, self.timeout
            ))),
        }
    }

    /// One op, alone.
    async fn one(&self, op: Op) -> Result<Reply, StoreError> {
        let mut replies = self.batch(vec![op]).await?;
        replies
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no reply".into()))
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn rate_take(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        cost: u32,
    ) -> Result<RateDecision, StoreError> {
        let op = Op::RateTake {
            key: key.to_owned(),
            limit,
            period,
            cost,
        };
        match self.one(op).await? {
            Reply::Rate(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    async fn rate_peek(&self, key: &str, limit: u32, period: Duration) -> Result<RateDecision, StoreError> {
        let op = Op::RatePeek {
            key: key.to_owned(),
            limit,
            period,
        };
        match self.one(op).await? {
            Reply::Rate(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, StoreError> {
        let op = Op::Incr {
            key: key.to_owned(),
            by,
            ttl,
        };
        match self.one(op).await? {
            Reply::Int(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        match self.one(Op::Counter { key: key.to_owned() }).await? {
            Reply::Int(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<u64, StoreError> {
        let op = Op::SetAdd {
            key: key.to_owned(),
            member: member.to_owned(),
            ttl,
        };
        match self.one(op).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn set_len(&self, key: &str) -> Result<u64, StoreError> {
        match self.one(Op::SetLen { key: key.to_owned() }).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn set_contains(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        let op = Op::SetContains {
            key: key.to_owned(),
            member: member.to_owned(),
        };
        match self.one(op).await? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), StoreError> {
        let op = Op::Put {
            key: key.to_owned(),
            value,
            ttl,
        };
        match self.one(op).await? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let op = Op::PutIfAbsent {
            key: key.to_owned(),
            value,
            ttl,
        };
        match self.one(op).await? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.one(Op::Get { key: key.to_owned() }).await? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.one(Op::Take { key: key.to_owned() }).await? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        match self.one(Op::Delete { key: key.to_owned() }).await? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_push(
        &self,
        key: &str,
        value: Bytes,
        cap: usize,
        ttl: Option<Duration>,
    ) -> Result<usize, StoreError> {
        let op = Op::ListPush {
            key: key.to_owned(),
            value,
            cap,
            ttl,
        };
        match self.one(op).await? {
            Reply::Len(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_range(&self, key: &str, start: usize, count: usize) -> Result<Vec<Bytes>, StoreError> {
        let op = Op::ListRange {
            key: key.to_owned(),
            start,
            count,
        };
        match self.one(op).await? {
            Reply::Values(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_replace(&self, key: &str, old: &[u8], new: Bytes) -> Result<bool, StoreError> {
        let mut cmd = self.script(key, "list_replace", self.clock.now_ms());
        cmd.arg(old).arg(&new[..]);
        let mut pipe = Pipeline::with_capacity(1);
        pipe.ignore_errors().add_command(cmd);
        let reply = match (self.send(&pipe).await, &self.fallback) {
            (Ok(mut values), _) => values.pop().unwrap_or(Value::Nil),
            (Err(StoreError::Unavailable { .. }), Some(local)) => {
                return local.list_replace(key, old, new).await;
            }
            (Err(e), _) => return Err(e),
        };
        match decode(key, reply, Decode::Bool)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn batch(&self, ops: Vec<Op>) -> Result<Vec<Reply>, StoreError> {
        let now = self.clock.now_ms();
        let mut pipe = Pipeline::with_capacity(ops.len());
        pipe.ignore_errors();
        // Each op's answer: here already, or how to read its command's reply (the command goes in the pipe).
        let answers: Vec<Result<Reply, Decode>> = ops
            .iter()
            .map(|op| match self.plan(op, now) {
                Plan::Local(reply) => Ok(reply),
                Plan::Remote(cmd, how) => {
                    pipe.add_command(cmd);
                    Err(how)
                }
            })
            .collect();
        let mut values = if pipe.is_empty() {
            Vec::new().into_iter()
        } else {
            match (self.send(&pipe).await, &self.fallback) {
                (Ok(values), _) => values.into_iter(),
                (Err(StoreError::Unavailable { .. }), Some(local)) => return local.batch(ops).await,
                (Err(e), _) => return Err(e),
            }
        };
        let mut replies = Replies::with_capacity(ops.len());
        for (op, answer) in ops.iter().zip(answers) {
            replies.push(match answer {
                Ok(reply) => Ok(reply),
                Err(how) => decode(op.key(), values.next().unwrap_or(Value::Nil), how),
            });
        }
        replies.finish()
    }

    fn kind(&self) -> &'static str {
        BACKEND
    }
}

/// Reads one script reply.
fn decode(key: &str, value: Value, how: Decode) -> Result<Reply, StoreError> {
    if let Value::ServerError(e) = &value {
        return Err(match (e.code(), e.details()) {
            ("AWTYPE", Some(expected)) => StoreError::WrongType {
                key: key.to_owned(),
                expected: kind_name(expected),
            },
            _ => StoreError::Unavailable {
                backend: BACKEND,
                reason: format!("{} {}", e.code(), e.details().unwrap_or_default()),
            },
        });
    }
    let bad = || StoreError::Corrupt(format!("unexpected reply from Redis for key {key:?}"));
    let int = |v: &Value| match v {
        Value::Int(n) => Ok(*n),
        _ => Err(bad()),
    };
    Ok(match how {
        Decode::Rate { period } => {
            let Value::Array(items) = &value else {
                return Err(bad());
            };
            let [allowed, remaining, retry, reset] = items.as_slice() else {
                return Err(bad());
            };
            let (retry, reset) = (int(retry)?, int(reset)?);
            Reply::Rate(RateDecision {
                allowed: int(allowed)? == 1,
                remaining: u32::try_from(int(remaining)?.max(0)).unwrap_or(u32::MAX),
                retry_after: if retry < 0 { period } else { micros(retry) },
                reset_after: micros(reset),
            })
        }
        Decode::Int => match &value {
            Value::BulkString(text) => Reply::Int(
                std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(bad)?,
            ),
            _ => return Err(bad()),
        },
        Decode::Count => Reply::Count(u64::try_from(int(&value)?).map_err(|_| bad())?),
        Decode::Bool => Reply::Bool(int(&value)? == 1),
        Decode::Unit => Reply::Unit,
        Decode::Value => match value {
            Value::Nil => Reply::Value(None),
            Value::BulkString(v) => Reply::Value(Some(Bytes::from(v))),
            _ => return Err(bad()),
        },
        Decode::Len => Reply::Len(usize::try_from(int(&value)?).map_err(|_| bad())?),
        Decode::Values => match value {
            Value::Array(items) => Reply::Values(
                items
                    .into_iter()
                    .map(|v| match v {
                        Value::BulkString(v) => Ok(Bytes::from(v)),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(bad()),
        },
    })
}

/// The kinds the script names in its type errors, as the other backends name them.
fn kind_name(expected: &str) -> &'static str {
    match expected {
        "rate limit" => "rate limit",
        "counter" => "counter",
        "set" => "set",
        "list" => "list",
        _ => "value",
    }
}

/// A server error other than the script's own type errors, as text.
fn refusal(v: &Value) -> Option<String> {
    match v {
        Value::ServerError(e) if e.code() != "AWTYPE" => {
            Some(format!("{} {}", e.code(), e.details().unwrap_or_default()))
        }
        _ => None,
    }
}

fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

fn unavailable(e: &::redis::RedisError) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        reason: e.to_string(),
    }
}

fn unexpected(reply: &Reply) -> StoreError {
    StoreError::Corrupt(format!("unexpected reply {reply:?}"))
}

/// A set member's fingerprint: the first 128 bits of its SHA-256, the same on every replica.
fn fingerprint(member: &str) -> [u8; 16] {
    let digest = Sha256::digest(member.as_bytes());
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&digest[..16]);
    fp
}

/// Whole milliseconds, rounded up as the memory store rounds expiries: a TTL under 1 ms still lives 1 ms.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000).min(MAX_MS)).unwrap_or(u64::MAX)
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// A count or position as the script's doubles hold it exactly.
fn clamp(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX).min(1 << 53)
}

/// `redis://user:secret@host` → `redis://user:***@host`: a password never reaches a log line.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::{RedisOptions, RedisStore, without_password};
    use crate::clock::ManualClock;
    use crate::store::{Store, StoreError, conformance};

    const START_MS: u64 = 1_700_000_000_000;

    /// A `redis-server` of the test's own on a free loopback port, without persistence; killed on drop.
    struct Server {
        child: Child,
        port: u16,
        /// The TLS server's certificate and key files.
        _tls: Option<tempfile::TempDir>,
    }

    impl Server {
        fn start() -> Self {
            Self::on(free_port())
        }

        fn on(port: u16) -> Self {
            Self::spawn(port, &["--port", &port.to_string()], None)
        }

        /// A server that speaks only TLS, with a self-signed certificate for 127.0.0.1: returns it and
        /// the certificate (PEM) to trust.
        fn start_tls() -> (Self, Vec<u8>) {
            let port = free_port();
            let dir = tempfile::tempdir().unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let (crt, pem) = (dir.path().join("r.crt"), dir.path().join("r.key"));
            std::fs::write(&crt, cert.pem()).unwrap();
            std::fs::write(&pem, key.serialize_pem()).unwrap();
            let (crt_s, pem_s) = (crt.display().to_string(), pem.display().to_string());
            let args = [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &crt_s,
                "--tls-key-file",
                &pem_s,
                "--tls-ca-cert-file",
                &crt_s,
                "--tls-auth-clients",
                "no",
            ];
            (Self::spawn(port, &args, Some(dir)), cert.pem().into_bytes())
        }

        fn spawn(port: u16, listen: &[&str], tls: Option<tempfile::TempDir>) -> Self {
            let child = Command::new("redis-server")
                .args(listen)
                .args(["--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "no", "--protected-mode", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server (scripts/test.sh installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not come up on port {port}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Server {
                child,
                port,
                _tls: tls,
            }
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        async fn raw(&self) -> ::redis::aio::MultiplexedConnection {
            ::redis::Client::open(self.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn options(url: String, prefix: &str) -> RedisOptions {
        RedisOptions {
            url,
            prefix: prefix.to_owned(),
            timeout: Duration::from_secs(2),
            max_set_members: 10_000,
            ca: None,
            fallback: None,
            unavailable: prometheus::IntCounter::new("unavailable", "test").unwrap(),
        }
    }

    fn store(server: &Server) -> (RedisStore, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(START_MS));
        let s = RedisStore::open(options(server.url(), "t:"), clock.clone()).unwrap();
        (s, clock)
    }

    macro_rules! conformance_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $name() {
                let server = Server::start();
                let (s, c) = store(&server);
                conformance::$name(&s, &c).await;
            }
        )*};
    }

    crate::store::conformance::each_test!(conformance_tests);

    macro_rules! concurrent_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
            async fn $name() {
                let server = Server::start();
                conformance::$name(Arc::new(store(&server).0)).await;
            }
        )*};
    }

    crate::store::conformance::each_concurrent_test!(concurrent_tests);

    #[tokio::test]
    async fn two_replicas_share_one_limit_and_one_history() {
        let server = Server::start();
        let clock = Arc::new(ManualClock::new(START_MS));
        let a = RedisStore::open(options(server.url(), "aw:"), clock.clone()).unwrap();
        let b = RedisStore::open(options(server.url(), "aw:"), clock.clone()).unwrap();
        let period = Duration::from_secs(60);
        for i in 0..5 {
            let replica: &dyn Store = if i % 2 == 0 { &a } else { &b };
            assert!(
                replica.rate_take("ip:1", 5, period, 1).await.unwrap().allowed,
                "take {i}"
            );
        }
        assert!(!a.rate_take("ip:1", 5, period, 1).await.unwrap().allowed);
        assert!(!b.rate_take("ip:1", 5, period, 1).await.unwrap().allowed);
        a.list_push("rec/events/u", Bytes::from_static(b"e1"), 10, None)
            .await
            .unwrap();
        b.list_push("rec/events/u", Bytes::from_static(b"e2"), 10, None)
            .await
            .unwrap();
        assert_eq!(
            a.list_range("rec/events/u", 0, 10).await.unwrap(),
            vec!["e2", "e1"]
        );
        // Another prefix is another deployment.
        let other = RedisStore::open(options(server.url(), "other:"), clock).unwrap();
        assert!(other.rate_take("ip:1", 5, period, 1).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn keys_are_prefixed_members_are_fingerprints_and_redis_expires_what_expired() {
        let server = Server::start();
        let (s, _c) = store(&server);
        s.set_add("users", "alice@example.com", Duration::from_secs(10))
            .await
            .unwrap();
        s.put("v", Bytes::from_static(b"x"), Some(Duration::from_secs(10)))
            .await
            .unwrap();
        s.put("forever", Bytes::from_static(b"x"), None).await.unwrap();
        let mut raw = server.raw().await;
        let mut keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query_async(&mut raw).await.unwrap();
        keys.sort();
        assert_eq!(keys, ["t:forever", "t:users", "t:v"]);
        let members: Vec<Vec<u8>> = ::redis::cmd("ZRANGE")
            .arg("t:users")
            .arg(0)
            .arg(-1)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(members.len(), 3, "one member, the add count and the expiry");
        assert!(
            members
                .iter()
                .all(|m| !String::from_utf8_lossy(m).contains("alice"))
        );
        for key in ["t:users", "t:v"] {
            let ttl: i64 = ::redis::cmd("PTTL").arg(key).query_async(&mut raw).await.unwrap();
            assert!((9_000..=11_000).contains(&ttl), "{key}: Redis TTL {ttl} ms");
        }
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg("t:forever")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(ttl, -1, "no expiry");
    }

    #[tokio::test]
    async fn a_full_set_lets_the_least_recently_added_member_go() {
        let server = Server::start();
        let clock = Arc::new(ManualClock::new(START_MS));
        let opts = RedisOptions {
            max_set_members: 3,
            ..options(server.url(), "t:")
        };
        let s = RedisStore::open(opts, clock.clone()).unwrap();
        let ttl = Duration::from_secs(60);
        // All in the same millisecond: the order of adds decides, not the clock.
        for m in ["a", "b", "c", "a"] {
            s.set_add("s", m, ttl).await.unwrap();
        }
        assert_eq!(s.set_add("s", "d", ttl).await.unwrap(), 3);
        assert!(
            !s.set_contains("s", "b").await.unwrap(),
            "b was added least recently"
        );
        for m in ["a", "c", "d"] {
            assert!(s.set_contains("s", m).await.unwrap(), "{m}");
        }
    }

    #[tokio::test]
    async fn scripts_flushed_from_the_server_are_loaded_again() {
        let server = Server::start();
        let (s, _c) = store(&server);
        assert_eq!(s.incr("n", 1, Duration::from_secs(10)).await.unwrap(), 1);
        let mut raw = server.raw().await;
        let () = ::redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(
            s.incr("n", 1, Duration::from_secs(10)).await.unwrap(),
            2,
            "ran once, not twice"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_unavailable_and_a_restarted_one_is_used_again() {
        let server = Server::start();
        let port = server.port;
        let clock = Arc::new(ManualClock::new(START_MS));
        let opts = RedisOptions {
            timeout: Duration::from_millis(500),
            ..options(server.url(), "t:")
        };
        let s = RedisStore::open(opts, clock).unwrap();
        s.put("k", Bytes::from_static(b"v"), None).await.unwrap();
        drop(server);
        let e = s.get("k").await.unwrap_err();
        assert!(
            matches!(e, StoreError::Unavailable { backend: "redis", .. }),
            "{e:?}"
        );
        // Right after a failure Redis is not even asked (no wait for a server that may not answer).
        match s.rate_take("r", 5, Duration::from_secs(1), 1).await.unwrap_err() {
            StoreError::Unavailable { reason, .. } => assert!(reason.starts_with("not asked"), "{reason}"),
            e => panic!("{e:?}"),
        }
        assert_eq!(s.unavailable.get(), 2, "both counted");
        // The same port again (an empty server: nothing persisted): the store reconnects by itself.
        let _server = Server::on(port);
        let mut answered = None;
        for _ in 0..50 {
            if let Ok(v) = s.get("k").await {
                answered = Some(v);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(answered, Some(None), "reconnected to the new, empty server");
    }

    #[tokio::test]
    async fn without_redis_a_local_fallback_keeps_limiting_on_this_replica() {
        let server = Server::start();
        let clock = Arc::new(ManualClock::new(START_MS));
        let opts = RedisOptions {
            timeout: Duration::from_millis(500),
            fallback: Some(crate::store::memory::MemoryLimits::default()),
            ..options(server.url(), "t:")
        };
        let s = RedisStore::open(opts, clock).unwrap();
        let period = Duration::from_secs(60);
        assert!(s.rate_take("ip", 3, period, 1).await.unwrap().allowed, "in Redis");
        drop(server);
        for i in 0..3 {
            assert!(
                s.rate_take("ip", 3, period, 1).await.unwrap().allowed,
                "local take {i}"
            );
        }
        let d = s.rate_take("ip", 3, period, 1).await.unwrap();
        assert!(!d.allowed, "the local limit holds");
        s.list_push("l", Bytes::from_static(b"a"), 5, None).await.unwrap();
        assert!(s.list_replace("l", b"a", Bytes::from_static(b"b")).await.unwrap());
        assert_eq!(s.list_range("l", 0, 5).await.unwrap(), vec!["b"]);
    }

    #[tokio::test]
    async fn only_the_commands_that_found_no_script_run_again() {
        let server = Server::start();
        let (s, _c) = store(&server);
        s.incr("n", 1, Duration::from_secs(10)).await.unwrap();
        // A flush between two commands of one pipeline (another client's): the first ran, the second not.
        let mut pipe = super::Pipeline::new();
        pipe.ignore_errors();
        let mut incr = s.script("n", "incr", START_MS);
        incr.arg(1).arg(10_000);
        pipe.add_command(incr.clone());
        pipe.add_command(::redis::cmd("SCRIPT").arg("FLUSH").clone());
        pipe.add_command(incr);
        let replies = s.exchange(&pipe).await.unwrap();
        assert_eq!(replies.len(), 3);
        assert_eq!(s.counter("n").await.unwrap(), 3, "each increment once");
    }

    #[tokio::test]
    async fn ttls_round_up_to_the_millisecond_as_in_memory() {
        let server = Server::start();
        let (s, c) = store(&server);
        let v = Bytes::from_static(b"1");
        assert!(
            s.put_if_absent("nonce", v.clone(), Some(Duration::from_micros(500)))
                .await
                .unwrap()
        );
        assert!(
            !s.put_if_absent("nonce", v.clone(), Some(Duration::from_micros(500)))
                .await
                .unwrap()
        );
        c.advance(Duration::from_millis(1));
        assert!(
            s.put_if_absent("nonce", v, None).await.unwrap(),
            "expired after 1 ms"
        );
    }

    #[tokio::test]
    async fn a_read_only_redis_counts_as_unavailable_and_the_fallback_serves() {
        let server = Server::start();
        let mut raw = server.raw().await;
        let clock = Arc::new(ManualClock::new(START_MS));
        let strict = RedisStore::open(options(server.url(), "t:"), clock.clone()).unwrap();
        let opts = RedisOptions {
            fallback: Some(crate::store::memory::MemoryLimits::default()),
            ..options(server.url(), "t:")
        };
        let local = RedisStore::open(opts, clock).unwrap();
        // A replica of a primary that is not there (a failover the client has not followed): read-only.
        let () = ::redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(free_port())
            .query_async(&mut raw)
            .await
            .unwrap();
        match strict.put("k", Bytes::from_static(b"v"), None).await.unwrap_err() {
            StoreError::Unavailable { reason, .. } => assert!(reason.starts_with("READONLY"), "{reason}"),
            e => panic!("{e:?}"),
        }
        local.put("k", Bytes::from_static(b"v"), None).await.unwrap();
        assert_eq!(
            local.get("k").await.unwrap(),
            Some(Bytes::from_static(b"v")),
            "from memory"
        );
    }

    #[tokio::test]
    async fn tls_with_the_configured_ca_and_only_with_it() {
        let (server, ca) = Server::start_tls();
        let url = format!("rediss://127.0.0.1:{}", server.port);
        let clock = Arc::new(ManualClock::new(START_MS));
        let opts = RedisOptions {
            ca: Some(ca),
            ..options(url.clone(), "t:")
        };
        let s = RedisStore::open(opts, clock.clone()).unwrap();
        s.put("k", Bytes::from_static(b"over tls"), None).await.unwrap();
        assert_eq!(s.get("k").await.unwrap(), Some(Bytes::from_static(b"over tls")));
        // The system's roots do not know the self-signed certificate: no connection, no data.
        let untrusting = RedisStore::open(options(url, "t:"), clock).unwrap();
        let e = untrusting.get("k").await.unwrap_err();
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_and_passwords_are_never_shown() {
        let clock = Arc::new(ManualClock::new(START_MS));
        assert!(RedisStore::open(options("http://nope".into(), ""), clock.clone()).is_err());
        let s = RedisStore::open(options("redis://app:s3cret@127.0.0.1:1/2".into(), ""), clock).unwrap();
        assert_eq!(s.url(), "redis://app:***@127.0.0.1:1/2");
        assert!(!format!("{s:?}").contains("s3cret"));
        assert_eq!(without_password("redis://:pw@h:6379"), "redis://:***@h:6379");
        assert_eq!(without_password("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(without_password("rediss://pw@h"), "rediss://***@h");
    }
}
