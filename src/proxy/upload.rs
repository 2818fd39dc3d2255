//! A request body on its way to the upstream: how far it got, and the upstream timeout that counts from
//! its end rather than from the request's start.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::body::{Body, BoxError};

/// What the forwarded body has done so far, shared between the body and the timer that watches it.
pub struct Upload {
    start: Instant,
    /// Nanoseconds after `start` of the body's last frame (or of its end).
    last: AtomicU64,
    /// The body has not ended yet.
    sending: AtomicBool,
    /// The body's last poll found nothing from the client yet (rather than the upstream not taking more).
    waiting_on_client: AtomicBool,
    /// The client's side broke the body off.
    failed: AtomicBool,
}

/// Why [`Upload::timed`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No answer head within the upstream timeout after the body was sent (or while the upstream took no
    /// more of it).
    Upstream,
    /// The client sent no more of its body for the client timeout.
    Client,
}

impl Upload {
    /// A body being sent from now on.
    pub fn new() -> Arc<Upload> {
        Arc::new(Upload {
            start: Instant::now(),
            last: AtomicU64::new(0),
            sending: AtomicBool::new(true),
            waiting_on_client: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        })
    }

    /// `body`, reporting here how it goes; an empty or whole body in memory is sent at once.
    pub fn track(self: &Arc<Self>, body: Body, streamed: bool) -> Body {
        if !streamed {
            self.sending.store(false, Ordering::Relaxed);
            return body;
        }
        Tracked {
            inner: body,
            upload: self.clone(),
        }
        .boxed()
    }

    /// Whether the client's side broke the body off.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Notes the body's progress now; `last` is written before the flags the timer reads it with.
    fn mark(&self) {
        let at = self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.last.store(at, Ordering::Release);
    }

    /// Notes that the body now waits for the client. The wait counts from now: the body may have waited
    /// on the upstream (to take what it had) since its last frame.
    fn mark_waiting(&self) {
        if !self.waiting_on_client.load(Ordering::Acquire) {
            self.mark();
            self.waiting_on_client.store(true, Ordering::Release);
        }
    }

    /// Runs `exchange` (sending the request and reading the answer's head) with `timeout` counted from the
    /// end of the request body, not from the start: a large upload that keeps coming is no slow upstream.
    /// While the body is still on its way, a client that sends none of it for `client_idle` is too slow,
    /// and an upstream that takes none of it for `timeout` is.
    pub async fn timed<T>(
        &self,
        exchange: impl Future<Output = T>,
        timeout: Duration,
        client_idle: Duration,
    ) -> Result<T, Expired> {
        let mut exchange = std::pin::pin!(exchange);
        // While the body is on its way, look again as often as the shorter limit needs.
        let mut deadline = after(self.start, timeout.min(client_idle));
        loop {
            tokio::select! {
                biased;
                r = &mut exchange => return Ok(r),
                () = tokio::time::sleep_until(deadline) => {}
            }
            let sending = self.sending.load(Ordering::Acquire);
            let waiting_on_client = self.waiting_on_client.load(Ordering::Acquire);
            let last = after(
                self.start,
                Duration::from_nanos(self.last.load(Ordering::Acquire)),
            );
            let (limit, expired) = match (sending, waiting_on_client) {
                (false, _) => (timeout, Expired::Upstream),
                (true, true) => (client_idle, Expired::Client),
                (true, false) => (timeout, Expired::Upstream),
            };
            let now = Instant::now();
            if now >= after(last, limit) {
                return Err(expired);
            }
            // Not yet. While the body is on its way, what it waits on may change: look again when either
            // limit could run out next (the one that has not is ahead of now).
            deadline = if sending {
                [after(last, timeout), after(last, client_idle)]
                    .into_iter()
                    .filter(|t| *t > now)
                    .min()
                    .unwrap_or_else(|| after(last, limit))
            } else {
                after(last, limit)
            };
        }
    }
}

/// `base` plus `d`, or as far ahead as can be for a `d` too large to add (a timeout set to centuries).
fn after(base: Instant, d: Duration) -> Instant {
    base.checked_add(d)
        .or_else(|| base.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(base)
}

/// A streamed request body that reports its progress to an [`Upload`].
struct Tracked {
    inner: Body,
    upload: Arc<Upload>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let upload = &self.upload;
        match &polled {
            Poll::Pending => upload.mark_waiting(),
            Poll::Ready(ready) => {
                upload.mark();
                upload.waiting_on_client.store(false, Ordering::Release);
                match ready {
                    None => upload.sending.store(false, Ordering::Release),
                    Some(Err(_)) => upload.failed.store(true, Ordering::Relaxed),
                    Some(Ok(_)) if self.inner.is_end_stream() => {
                        upload.sending.store(false, Ordering::Release)
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    /// A streamed body whose chunks the test sends.
    fn streamed() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
        });
        (tx, StreamBody::new(stream).boxed())
    }

    /// Reads the body whole, then waits for `answer` (standing in for the upstream's head).
    async fn exchange(mut body: Body, answer: Duration) -> usize {
        let mut n = 0;
        while let Some(f) = body.frame().await {
            n += f.unwrap().into_data().map_or(0, |d| d.len());
        }
        tokio::time::sleep(answer).await;
        n
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_counts_from_the_end_of_a_body_that_keeps_coming() {
        let s = Duration::from_secs(1);
        let upload = Upload::new();
        let (tx, body) = streamed();
        let body = upload.track(body, true);
        // 20 s of upload, a chunk a second, then the answer 9 s after the end: within a 10 s timeout.
        tokio::spawn(async move {
            for _ in 0..20 {
                tokio::time::sleep(s).await;
                tx.send(Bytes::from_static(b"chunk")).await.unwrap();
            }
        });
        let r = upload.timed(exchange(body, 9 * s), 10 * s, 30 * s).await;
        assert_eq!(r, Ok(100));
        // An answer 11 s after the end is too late.
        let upload = Upload::new();
        let (tx, body) = streamed();
        let body = upload.track(body, true);
        tokio::spawn(async move {
            tokio::time::sleep(5 * s).await;
            tx.send(Bytes::from_static(b"chunk")).await.unwrap();
        });
        let r = upload.timed(exchange(body, 11 * s), 10 * s, 30 * s).await;
        assert_eq!(r, Err(Expired::Upstream));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_sending_its_body_is_too_slow() {
        let s = Duration::from_secs(1);
        let upload = Upload::new();
        let (tx, body) = streamed();
        let body = upload.track(body, true);
        tx.send(Bytes::from_static(b"first")).await.unwrap();
        let started = Instant::now();
        let r = upload.timed(exchange(body, s), 10 * s, 30 * s).await;
        assert_eq!(r, Err(Expired::Client));
        assert_eq!(started.elapsed(), 30 * s);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_pause_is_caught_on_time_when_its_limit_is_the_shorter_and_huge_limits_do_not_panic() {
        let s = Duration::from_secs(1);
        let upload = Upload::new();
        let (tx, body) = streamed();
        let body = upload.track(body, true);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(s / 10).await;
            tx.send(Bytes::from_static(b"first")).await.unwrap();
            std::future::pending::<()>().await
        });
        let started = Instant::now();
        // The client stops 0.1 s in: 408 ten seconds later, not at the 60 s upstream timeout.
        assert_eq!(
            upload.timed(exchange(body, s), 60 * s, 10 * s).await,
            Err(Expired::Client)
        );
        assert_eq!(started.elapsed(), s / 10 + 10 * s);
        sender.abort();
        // A timeout too large to add to an instant waits, and does not panic.
        let upload = Upload::new();
        let _ = upload.track(super::super::body::full("x"), false);
        let quick = tokio::time::sleep(s);
        assert_eq!(upload.timed(quick, Duration::MAX, Duration::MAX).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_takes_none_of_the_body_times_out() {
        let s = Duration::from_secs(1);
        let upload = Upload::new();
        let (tx, body) = streamed();
        let body = upload.track(body, true);
        tx.send(Bytes::from_static(b"ready")).await.unwrap();
        // The upstream never reads the body (nor answers): its timeout, not the client's.
        let stuck = async move {
            let _held = body;
            std::future::pending::<()>().await
        };
        let started = Instant::now();
        assert_eq!(upload.timed(stuck, 10 * s, 30 * s).await, Err(Expired::Upstream));
        assert_eq!(started.elapsed(), 10 * s);
        // A body in memory is sent at once: the timeout counts from the start.
        let upload = Upload::new();
        let _ = upload.track(super::super::body::full("x"), false);
        let started = Instant::now();
        let late = tokio::time::sleep(11 * s);
        assert_eq!(upload.timed(late, 10 * s, 30 * s).await, Err(Expired::Upstream));
        assert_eq!(started.elapsed(), 10 * s);
    }
}
