//! The body type that flows through the proxy, and capped buffering that never loses bytes.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody, combinators::BoxBody};

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body: streamed, buffered or generated.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body with these bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Wraps any hyper body.
pub fn boxed<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed()
}

/// An answer body that sent nothing for `idle`: cut off.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's answer sent nothing for {0:?}")]
pub struct IdleTimeout(std::time::Duration);

/// `body`, failing with [`IdleTimeout`] (logged, and counted in `cut`) once it has been waited on for `idle`
/// without a frame. A body that is ready whenever it is polled (a small answer read with its head) never
/// sets a timer.
pub fn idle_limited(body: Body, idle: std::time::Duration, cut: prometheus::IntCounter) -> Body {
    IdleLimited {
        inner: body,
        idle,
        timer: None,
        waiting: false,
        cut,
    }
    .boxed()
}

struct IdleLimited {
    inner: Body,
    idle: std::time::Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The timer runs for the current wait (armed at its start, not at every poll).
    waiting: bool,
    cut: prometheus::IntCounter,
}

impl http_body::Body for IdleLimited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame);
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = tokio::time::Instant::now() + this.idle;
            if let Some(timer) = this.timer.as_mut() {
                timer.as_mut().reset(deadline);
            } else {
                this.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
            }
        }
        match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                this.cut.inc();
                let idle = this.idle;
                tracing::warn!(
                    ?idle,
                    "the upstream's answer stalled: cut off (upstream.read_timeout)"
                );
                Poll::Ready(Some(Err(Box::new(IdleTimeout(this.idle)))))
            }
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body put back together after part of it was read ([`read_capped`]) that still tells the length the
/// client announced: the upstream then gets the client's `Content-Length`, not chunked framing, which some
/// application servers (WSGI's `wsgiref` among them) read as an empty body.
struct Announced {
    inner: Body,
    /// Bytes still to come.
    left: u64,
}

impl http_body::Body for Announced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.left = self.left.saturating_sub(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// The request's `Content-Length`, when it has one that is a number.
pub fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether the request announces a body: chunked, or a `Content-Length` above 0.
pub fn has_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING) || content_length(headers).is_some_and(|n| n > 0)
}

/// Why a compressed request body could not be read for inspection.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("Content-Encoding {0:?} is not one authward reads (gzip, deflate)")]
    Unsupported(String),
    #[error("the body is larger than {0} bytes once decoded")]
    TooLarge(u64),
    #[error("the {0} body does not decode: {1}")]
    Corrupt(&'static str, std::io::Error),
}

/// The body decoded as its `Content-Encoding` says (one of gzip, x-gzip, deflate; at most `limit` bytes
/// once decoded, so that a small body cannot inflate without bound), or `None` when it is not encoded.
/// `deflate` is the zlib format (RFC 9110), or raw deflate as some clients send it.
pub fn decode(headers: &http::HeaderMap, bytes: &[u8], limit: u64) -> Result<Option<Bytes>, DecodeError> {
    use std::io::Read;
    // Every coding listed, in every header, but `identity` (which changes nothing: `gzip, identity`).
    let mut codings = Vec::new();
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        for coding in String::from_utf8_lossy(value.as_bytes()).split(',') {
            let coding = coding.trim().to_ascii_lowercase();
            if !coding.is_empty() && coding != "identity" {
                codings.push(coding);
            }
        }
    }
    let encoding = match codings.len() {
        0 => return Ok(None),
        1 => codings.swap_remove(0),
        _ => return Err(DecodeError::Unsupported(codings.join(", "))),
    };
    let read = |mut decoder: Box<dyn Read + '_>, name: &'static str| {
        let mut out = Vec::new();
        match decoder
            .as_mut()
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
        {
            Ok(_) if out.len() as u64 > limit => Err(DecodeError::TooLarge(limit)),
            Ok(_) => Ok(Some(Bytes::from(out))),
            Err(e) => Err(DecodeError::Corrupt(name, e)),
        }
    };
    match encoding.as_str() {
        "gzip" | "x-gzip" => read(Box::new(flate2::read::MultiGzDecoder::new(bytes)), "gzip"),
        "deflate" if is_zlib(bytes) => read(Box::new(flate2::read::ZlibDecoder::new(bytes)), "deflate"),
        "deflate" => read(Box::new(flate2::read::DeflateDecoder::new(bytes)), "deflate"),
        _ => Err(DecodeError::Unsupported(encoding)),
    }
}

/// Whether `bytes` start with a zlib header: the deflate method, and a check that makes the first two bytes
/// a multiple of 31 (RFC 1950).
fn is_zlib(bytes: &[u8]) -> bool {
    match bytes {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// What reading a body up to a cap gave.
pub enum Capped {
    /// The whole body, within the cap.
    Complete(Bytes),
    /// The body is larger than the cap: its first `limit` bytes, exactly (however the body arrived in
    /// chunks), and the whole body (what was read put back in front of the rest), unchanged.
    TooLarge { prefix: Bytes, body: Body },
}

/// Why [`read_capped_within`] gave no body.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the request body did not arrive within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the request body could not be read: {0}")]
    Body(BoxError),
}

/// [`read_capped`] within `timeout` (a client that trickles its body must not hold its connection for
/// ever). A body that is already there (most: it came with the head) is read without starting a timer.
pub async fn read_capped_within(
    body: Body,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Capped, ReadError> {
    use futures_util::FutureExt;
    let mut read = std::pin::pin!(read_capped(body, limit));
    let read = match (&mut read).now_or_never() {
        Some(r) => r,
        None => tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| ReadError::Timeout(timeout))?,
    };
    read.map_err(ReadError::Body)
}

/// The answer to a body that did not arrive within `listen.body_read_timeout`: 408, and the connection
/// closed (the rest of the body may still come: it cannot carry another request).
pub fn too_slow(request_id: &str) -> http::Response<Body> {
    let mut r = super::json_error(
        http::StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body did not arrive in time",
        request_id,
    );
    r.headers_mut()
        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    r
}

/// Reads `body` whole if it fits in `limit` bytes; otherwise hands back an equivalent body.
/// A body that arrives in one chunk (the common case) is handed back as that chunk, without a copy.
pub async fn read_capped(mut body: Body, limit: u64) -> Result<Capped, BoxError> {
    let announced = http_body::Body::size_hint(&body).exact();
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => {
                if buf.is_empty() && first.is_none() {
                    if data.len() as u64 <= limit {
                        first = Some(data);
                        continue;
                    }
                } else if let Some(f) = first.take() {
                    buf.extend_from_slice(&f);
                }
                buf.extend_from_slice(&data);
                if buf.len() as u64 > limit {
                    let read = buf.freeze();
                    // `limit` is below `read.len()`, so it fits in a usize.
                    let prefix = read.slice(..limit as usize);
                    let rest = BodyStream::new(full(read)).chain(BodyStream::new(body));
                    let rest = BodyExt::boxed(StreamBody::new(rest));
                    return Ok(Capped::TooLarge {
                        prefix,
                        body: match announced {
                            Some(length) => Announced {
                                inner: rest,
                                left: length,
                            }
                            .boxed(),
                            None => rest,
                        },
                    });
                }
            }
            // Trailers end the data; a buffered body drops them (profiled login routes do not use them).
            Err(_trailers) => break,
        }
    }
    Ok(Capped::Complete(first.unwrap_or_else(|| buf.freeze())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;

    fn encoded(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(http::header::CONTENT_ENCODING, v.parse().unwrap());
        }
        h
    }

    fn compress(format: &str, plain: &[u8]) -> Vec<u8> {
        use flate2::{Compression, read};
        use std::io::Read;
        let level = Compression::default();
        let mut encoder: Box<dyn Read + '_> = match format {
            "gzip" => Box::new(read::GzEncoder::new(plain, level)),
            "zlib" => Box::new(read::ZlibEncoder::new(plain, level)),
            _ => Box::new(read::DeflateEncoder::new(plain, level)),
        };
        let mut out = Vec::new();
        encoder.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn compressed_bodies_decode_within_the_limit() {
        let plain = br#"{"username":"alice@example.com","password":"secret"}"#;
        for (header, format) in [
            ("gzip", "gzip"),
            ("x-gzip", "gzip"),
            (" GZIP ", "gzip"),
            ("deflate", "zlib"),
            ("deflate", "raw"),
        ] {
            let got = decode(&encoded(&[header]), &compress(format, plain), 1024).unwrap();
            assert_eq!(got.as_deref(), Some(&plain[..]), "{header} as {format}");
        }
        for plain_header in [&[][..], &["identity"][..]] {
            assert!(decode(&encoded(plain_header), plain, 1024).unwrap().is_none());
        }
        // Two gzip members, as a client may concatenate them.
        let two = [compress("gzip", b"ab"), compress("gzip", b"cd")].concat();
        assert_eq!(
            decode(&encoded(&["gzip"]), &two, 8).unwrap().as_deref(),
            Some(&b"abcd"[..])
        );
    }

    #[test]
    fn a_body_that_inflates_past_the_limit_or_does_not_decode_is_refused() {
        // 1 MiB of zeros compresses to about a kilobyte: decoding stops at the limit.
        let bomb = compress("gzip", &vec![0u8; 1 << 20]);
        assert!(bomb.len() < 4096);
        assert!(matches!(
            decode(&encoded(&["gzip"]), &bomb, 64 * 1024),
            Err(DecodeError::TooLarge(65536))
        ));
        assert_eq!(
            decode(&encoded(&["gzip"]), &bomb, 1 << 20)
                .unwrap()
                .map(|b| b.len()),
            Some(1 << 20)
        );
        assert!(matches!(
            decode(&encoded(&["gzip"]), b"not gzip at all", 1024),
            Err(DecodeError::Corrupt("gzip", _))
        ));
        for unsupported in [
            &["br"][..],
            &["zstd"][..],
            &["gzip, br"][..],
            &["gzip", "gzip"][..],
        ] {
            assert!(
                matches!(
                    decode(&encoded(unsupported), b"x", 1024),
                    Err(DecodeError::Unsupported(_))
                ),
                "{unsupported:?}"
            );
        }
    }

    #[test]
    fn identity_beside_one_coding_changes_nothing() {
        let gz = compress("gzip", b"{\"username\":\"u\"}");
        for listed in [
            &["gzip, identity"][..],
            &["identity", "gzip"][..],
            &["Identity , GZIP"][..],
        ] {
            assert_eq!(
                decode(&encoded(listed), &gz, 1024).unwrap().as_deref(),
                Some(&b"{\"username\":\"u\"}"[..]),
                "{listed:?}"
            );
        }
        assert!(decode(&encoded(&["identity"]), b"x", 1024).unwrap().is_none());
        assert!(
            decode(&encoded(&["identity, identity"]), b"x", 1024)
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn small_bodies_are_buffered() {
        match read_capped(full("hello"), 5).await.unwrap() {
            Capped::Complete(b) => assert_eq!(&b[..], b"hello"),
            Capped::TooLarge { .. } => panic!("fits"),
        }
    }

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)))
    }

    #[tokio::test]
    async fn chunks_within_the_cap_are_joined_in_order() {
        for (parts, want) in [
            (&[b"ab".as_slice(), b"cd", b"e"][..], "abcde"),
            (&[b"".as_slice(), b"abc"][..], "abc"),
            (&[b"abc".as_slice(), b""][..], "abc"),
            (&[][..], ""),
        ] {
            match read_capped(chunked(parts), 5).await.unwrap() {
                Capped::Complete(b) => assert_eq!(&b[..], want.as_bytes(), "{parts:?}"),
                Capped::TooLarge { .. } => panic!("fits: {parts:?}"),
            }
        }
        // The cap counts every chunk, the first one kept aside included; the prefix is the first `limit`
        // bytes however the chunks fell.
        for parts in [
            &[b"abcd".as_slice(), b"ef", b"g"][..],
            &[b"abcdef".as_slice(), b"g"][..],
            &[b"abcdefg".as_slice()][..],
            &[b"a".as_slice(), b"b", b"c", b"d", b"e", b"f", b"g"][..],
            &[b"abcde".as_slice(), b"fg"][..],
        ] {
            let Capped::TooLarge { prefix, body } = read_capped(chunked(parts), 5).await.unwrap() else {
                panic!("too large: {parts:?}")
            };
            assert_eq!(&prefix[..], b"abcde", "{parts:?}");
            assert_eq!(
                &body.collect().await.unwrap().to_bytes()[..],
                b"abcdefg",
                "{parts:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_that_does_not_come_times_out_and_one_that_is_there_needs_no_timer() {
        let never = BodyExt::boxed(StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >()));
        let err = read_capped_within(never, 10, std::time::Duration::from_millis(20))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ReadError::Timeout(d) if d.as_millis() == 20),
            "{err}"
        );
        // Already there: read at once, even with a zero timeout.
        match read_capped_within(full("hello"), 10, std::time::Duration::ZERO).await {
            Ok(Capped::Complete(b)) => assert_eq!(&b[..], b"hello"),
            _ => panic!("read"),
        }
    }

    #[tokio::test]
    async fn large_bodies_come_back_whole() {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..10)
            .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + i; 100]))))
            .collect();
        let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)));
        let Capped::TooLarge { prefix, body: rest } = read_capped(body, 250).await.unwrap() else {
            panic!("too large")
        };
        assert_eq!(prefix.len(), 250, "exactly the cap");
        let all = rest.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 1000);
        assert_eq!(all[0], b'a');
        assert_eq!(all[999], b'j');
    }
}
