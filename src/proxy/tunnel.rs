//! WebSocket tunnels: a client connection and the upstream's joined after a protocol switch, closed when
//! either side closes or no byte has crossed either way for `listen.tunnel_idle_timeout`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How a tunnel ended.
#[derive(Debug)]
pub enum Closed {
    /// One side closed; the bytes copied up (client to upstream) and down.
    Done { up: u64, down: u64 },
    /// Nothing crossed for the idle timeout.
    Idle,
    /// A side failed.
    Broken(std::io::Error),
}

/// Copies bytes both ways between `a` and `b` until one side closes, one fails, or nothing has crossed
/// for `idle`.
pub async fn join<A, B>(a: A, b: B, idle: Duration) -> Closed
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Active::new(a, start, last.clone());
    let mut b = Active::new(b, start, last.clone());
    let quiet = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let deadline = start + since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut a, &mut b) => match copied {
            Ok((up, down)) => Closed::Done { up, down },
            Err(e) => Closed::Broken(e),
        },
        () = quiet => Closed::Idle,
    }
}

/// An IO that notes when bytes last crossed it, in milliseconds since the tunnel opened.
struct Active<T> {
    io: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Active<T> {
    fn new(io: T, start: Instant, last: Arc<AtomicU64>) -> Self {
        Active { io, start, last }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_a_tunnel_open_and_silence_closes_it() {
        let (mut client, client_end) = duplex(1024);
        let (mut upstream, upstream_end) = duplex(1024);
        let tunnel = tokio::spawn(join(client_end, upstream_end, IDLE));
        // A message each way every 50 s: never 60 s of silence.
        for i in 0..5u8 {
            tokio::time::sleep(Duration::from_secs(50)).await;
            client.write_all(&[i]).await.unwrap();
            let mut b = [0];
            upstream.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [i]);
            upstream.write_all(&[i + 100]).await.unwrap();
            client.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [i + 100]);
        }
        assert!(!tunnel.is_finished(), "closed after 250 s of traffic");
        tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert!(!tunnel.is_finished(), "closed before the idle timeout");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(tunnel.await.unwrap(), Closed::Idle));
        // Both ends see the tunnel close.
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(upstream.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_that_closes_ends_the_tunnel_with_its_byte_counts() {
        let (mut client, client_end) = duplex(1024);
        let (mut upstream, upstream_end) = duplex(1024);
        let tunnel = tokio::spawn(join(client_end, upstream_end, IDLE));
        client.write_all(b"hello").await.unwrap();
        let mut b = [0; 5];
        upstream.read_exact(&mut b).await.unwrap();
        upstream.write_all(b"hi").await.unwrap();
        client.read_exact(&mut b[..2]).await.unwrap();
        drop(client);
        drop(upstream);
        assert!(matches!(tunnel.await.unwrap(), Closed::Done { up: 5, down: 2 }));
    }
}
