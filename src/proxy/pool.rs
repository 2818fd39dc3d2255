//! Keep-alive HTTP/1.1 connections to a plain-http upstream: reused newest first, given back when the
//! answer's body has been read to its end, and a request that met a connection the upstream had just
//! closed is sent again on another one if it was not written yet (once written, the caller decides
//! whether it may be sent again: [`PoolError::Stale`]).
//!
//! hyper-util's pooled client does the same for every scheme and protocol; for the common case of a
//! sidecar or a proxy on a private network (plain HTTP/1.1) this pool costs less per request (no pool key
//! hashing, no per-checkout futures, no expiry bookkeeping on the hot path): see BENCHMARKS.md.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use super::body::{Body, BoxError};

/// How many stale connections one request may meet before it is sent on a new one.
const STALE_RETRIES: usize = 2;

/// Why a request got no answer from the pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// A reused connection closed (or was reset) after the request was written and before any answer:
    /// the upstream had closed it while idle. The request may not have been processed; only the caller
    /// knows whether it is safe to send again.
    #[error("a kept-alive upstream connection closed before answering: {0}")]
    Stale(hyper::Error),
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
    sender: SendRequest<Body>,
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

    /// Sends `request` (origin-form URI, `Host` set) and returns the answer; its body gives the connection
    /// back to the pool once read to its end.
    pub async fn send(self: &Arc<Self>, mut request: Request<Body>) -> Result<Response<Body>, PoolError> {
        let mut stale = 0;
        loop {
            let (mut sender, reused) = match self.checkout().filter(|_| stale < STALE_RETRIES) {
                Some(s) => (s, true),
                None => (self.connect(false).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let pool = Arc::downgrade(self);
                    return Ok(response.map(|inner| {
                        http_body_util::BodyExt::boxed(Returning {
                            inner,
                            back: Some((sender, pool)),
                        })
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request was written: nothing reached the upstream.
                    Some(r) if reused => {
                        request = r;
                        stale += 1;
                    }
                    _ if reused && closed_unanswered(e.error()) => {
                        return Err(PoolError::Stale(e.into_error()));
                    }
                    _ => return Err(PoolError::Http(e.into_error())),
                },
            }
        }
    }

    /// Sends `request` on a new connection, never a pooled one (the retry after [`PoolError::Stale`]).
    pub async fn send_fresh(self: &Arc<Self>, request: Request<Body>) -> Result<Response<Body>, PoolError> {
        let mut sender = self.connect(false).await?;
        let response = sender
            .try_send_request(request)
            .await
            .map_err(|e| PoolError::Http(e.into_error()))?;
        let pool = Arc::downgrade(self);
        Ok(response.map(|inner| {
            http_body_util::BodyExt::boxed(Returning {
                inner,
                back: Some((sender, pool)),
            })
        }))
    }

    /// The newest idle connection that is still open and ready; expired or closed ones are dropped.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock();
        while let Some(i) = idle.pop() {
            if i.sender.is_ready() && i.since.elapsed() < self.idle_timeout {
                return Some(i.sender);
            }
        }
        None
    }

    /// Keeps a connection whose last answer was read whole, if there is room.
    fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Sends a request that asks to switch protocols (`Upgrade`) on a connection of its own, which is never
    /// pooled: after a 101 it carries the tunnel ([`hyper::upgrade::on`] on the answer).
    pub async fn send_upgrade(&self, request: Request<Body>) -> Result<Response<Body>, PoolError> {
        let mut sender = self.connect(true).await?;
        let response = sender.send_request(request).await?;
        Ok(response.map(|inner| http_body_util::BodyExt::boxed(Returning { inner, back: None })))
    }

    /// Opens a new connection and runs it on its own task (which hands it over after a 101 if `upgrades`).
    async fn connect(&self, upgrades: bool) -> Result<SendRequest<Body>, PoolError> {
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| PoolError::ConnectTimeout(self.connect_timeout))?
        .map_err(PoolError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(tcp))
            .await?;
        tokio::spawn(async move {
            let ended = if upgrades {
                connection.with_upgrades().await
            } else {
                connection.await
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Whether a send failed because the connection ended before any answer: closed (hyper's incomplete
/// message) or reset by the upstream.
fn closed_unanswered(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        source = err.source();
    }
    false
}

/// An answer's body that hands its connection back to the pool when it ends.
struct Returning {
    inner: Incoming,
    back: Option<(SendRequest<Body>, Weak<H1Pool>)>,
}

impl Returning {
    fn release(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            if let Some(pool) = pool.upgrade() {
                pool.give_back(sender);
            }
        }
    }
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // An empty answer (204, 304, HEAD, Content-Length: 0) is never polled: it has ended all the same.
        // A body dropped half-read leaves its connection mid-message: that connection is not reused.
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }
}
