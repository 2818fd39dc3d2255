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

/// What reading a body up to a cap gave.
pub enum Capped {
    /// The whole body, within the cap.
    Complete(Bytes),
    /// The body is larger than the cap: the part read, and the whole body (that part put back in front
    /// of the rest), unchanged.
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
                    let prefix = buf.freeze();
                    let rest = BodyStream::new(full(prefix.clone())).chain(BodyStream::new(body));
                    return Ok(Capped::TooLarge {
                        prefix,
                        body: BodyExt::boxed(StreamBody::new(rest)),
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
        // The cap counts every chunk, the first one kept aside included.
        let Capped::TooLarge { prefix, body } =
            read_capped(chunked(&[b"abcd", b"ef", b"g"]), 5).await.unwrap()
        else {
            panic!("too large")
        };
        assert_eq!(&prefix[..], b"abcdef");
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcdefg");
        let Capped::TooLarge { prefix, body } = read_capped(chunked(&[b"abcdef", b"g"]), 5).await.unwrap()
        else {
            panic!("too large")
        };
        assert_eq!(&prefix[..], b"abcdef");
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcdefg");
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
        assert_eq!(prefix.len(), 300, "whole chunks up to just past the cap");
        let all = rest.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 1000);
        assert_eq!(all[0], b'a');
        assert_eq!(all[999], b'j');
    }
}
