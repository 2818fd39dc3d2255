//! Keep-alive HTTP/1.1 connections to a plain-http upstream: reused newest first, given back when the
//! answer's body has been read to its end. A reused connection that turns out closed before any answer
//! is reported as [`PoolError::Stale`]: only the caller knows whether the request may be sent again.
//!
//! The exchange itself runs on the task that serves the client (`super::h1`). hyper-util's pooled
//! client serves https upstreams; for the common case of a sidecar or a proxy on a private network
//! (plain HTTP/1.1) this costs less per request (no connection task, no channels, no pool key hashing,
//! no expiry bookkeeping on the hot path): see BENCHMARKS.md. Upgrades go through hyper, on a connection
//! of their own.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use super::body::{Body, BoxError};
use super::h1::{Conn, ExchangeError, Recycle, RequestHead};

/// Why a request got no answer from the pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// hyper's error on an upgrade's connection.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Exchange(ExchangeError),
    /// A reused connection closed (or was reset) after the request was written and before any answer:
    /// the upstream had closed it while idle. The request may not have been processed; only the caller
    /// knows whether it is safe to send again.
    #[error("a kept-alive upstream connection closed before answering")]
    Stale,
    /// The request body broke off on the client's side.
    #[error("the request body broke off: {0}")]
    Body(BoxError),
}

/// The idle connections to one upstream.
pub struct H1Pool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl H1Pool {
    /// A pool for `authority` (port 80 when it names none).
    pub fn new(
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Self> {
        Arc::new(H1Pool {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: authority.port_u16().unwrap_or(80),
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends a request (`head` and `body`) and returns the answer; its body gives the connection back to
    /// the pool once read to its end.
    pub async fn send(self: &Arc<Self>, head: &RequestHead, body: Body) -> Result<Response<Body>, PoolError> {
        match self.checkout() {
            Some(conn) => self.exchange(conn, head, body, true).await,
            None => self.send_fresh(head, body).await,
        }
    }

    /// Sends a request on a new connection, never a pooled one (the retry after [`PoolError::Stale`]).
    pub async fn send_fresh(
        self: &Arc<Self>,
        head: &RequestHead,
        body: Body,
    ) -> Result<Response<Body>, PoolError> {
        let conn = Conn::new(self.connect().await?);
        self.exchange(conn, head, body, false).await
    }

    async fn exchange(
        self: &Arc<Self>,
        conn: Conn,
        head: &RequestHead,
        body: Body,
        reused: bool,
    ) -> Result<Response<Body>, PoolError> {
        let back: Weak<dyn Recycle> = Arc::downgrade(self) as Weak<H1Pool>;
        match conn.exchange(head, body, back).await {
            Ok(response) => Ok(response.map(BodyExt::boxed)),
            Err(ExchangeError::Closed) if reused => Err(PoolError::Stale),
            Err(ExchangeError::Body(e)) => Err(PoolError::Body(e)),
            Err(e) => Err(PoolError::Exchange(e)),
        }
    }

    /// The newest idle connection that is still open and has not idled too long; others are dropped.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock();
        while let Some(i) = idle.pop() {
            if self.fresh(&i) {
                return Some(i.conn);
            }
        }
        None
    }

    /// Whether an idle connection may still carry a request: open, nothing unasked-for on it, and idle for
    /// less than both our limit and the upstream's own.
    fn fresh(&self, i: &Idle) -> bool {
        let limit = i
            .conn
            .idle_limit()
            .map_or(self.idle_timeout, |l| l.min(self.idle_timeout));
        i.since.elapsed() < limit && i.conn.is_usable()
    }

    /// Sends a request that asks to switch protocols (`Upgrade`) on a connection of its own, which is never
    /// pooled: after a 101 it carries the tunnel ([`hyper::upgrade::on`] on the answer).
    pub async fn send_upgrade(&self, request: Request<Body>) -> Result<Response<Body>, PoolError> {
        let tcp = self.connect().await?;
        let (mut sender, connection) = http1::Builder::new().handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        let response = sender.send_request(request).await?;
        Ok(response.map(super::body::boxed))
    }

    /// Opens a new connection.
    async fn connect(&self) -> Result<tokio::net::TcpStream, PoolError> {
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| PoolError::ConnectTimeout(self.connect_timeout))?
        .map_err(PoolError::Connect)?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

impl Recycle for H1Pool {
    /// Keeps a connection whose last answer was read whole, if there is room. The oldest idle connection
    /// is looked at too, and dropped once expired or closed: connections below the ones in use are never
    /// checked out, and would otherwise hold their sockets (closed by the upstream) for good.
    fn recycle(&self, mut conn: Conn) {
        conn.shrink();
        let mut idle = self.idle.lock();
        if idle.first().is_some_and(|oldest| !self.fresh(oldest)) {
            idle.remove(0);
        }
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::proxy::body;

    /// A raw upstream that answers every request on every connection with `answer` and keeps it open.
    async fn upstream(answer: &'static [u8]) -> http::uri::Authority {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = memchr::memmem::find(&got, b"\r\n\r\n") {
                            got.drain(..end + 4);
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        addr.to_string().parse().unwrap()
    }

    async fn answered(pool: &Arc<H1Pool>) {
        let head = RequestHead::new(&http::Method::GET, "/");
        let response = pool.send(&head, body::empty()).await.unwrap();
        response.into_body().collect().await.unwrap();
    }

    fn idled_for(pool: &H1Pool, at: usize, secs: u64) {
        pool.idle.lock()[at].since = Instant::now() - Duration::from_secs(secs);
    }

    #[tokio::test]
    async fn a_connection_idles_no_longer_than_the_upstream_keeps_it() {
        let authority =
            upstream(b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=5\r\ncontent-length: 2\r\n\r\nok").await;
        let pool = H1Pool::new(&authority, Duration::from_secs(1), Duration::from_secs(90), 8);
        answered(&pool).await;
        // The upstream closes at 5 s: at 3 s idle the connection is taken, at 4.5 s it is not.
        idled_for(&pool, 0, 3);
        assert!(pool.checkout().is_some());
        answered(&pool).await;
        pool.idle.lock()[0].since = Instant::now() - Duration::from_millis(4500);
        assert!(pool.checkout().is_none());
        assert!(pool.idle.lock().is_empty());
    }

    #[tokio::test]
    async fn the_oldest_idle_connection_is_dropped_once_expired() {
        let authority = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let pool = H1Pool::new(&authority, Duration::from_secs(1), Duration::from_secs(60), 8);
        // Two connections at once, so two idle ones.
        let head = RequestHead::new(&http::Method::GET, "/");
        let (a, b) = tokio::join!(pool.send(&head, body::empty()), pool.send(&head, body::empty()));
        a.unwrap().into_body().collect().await.unwrap();
        b.unwrap().into_body().collect().await.unwrap();
        assert_eq!(pool.idle.lock().len(), 2);
        // The bottom one is never checked out while the top one serves; past its time it goes on the next
        // give-back.
        idled_for(&pool, 0, 61);
        answered(&pool).await;
        assert_eq!(pool.idle.lock().len(), 1);
    }
}
