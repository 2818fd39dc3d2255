//! HTTP/1.1 on one kept-alive upstream connection: the request written (its body framed by its length or
//! chunked), the answer's head parsed with httparse and its body read by its framing (RFC 9112 §6), all
//! on the task that serves the client: no connection task, no channel between the two.

use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::{Body, BoxError};

/// The largest answer head read (status line and headers, each interim answer apart).
const MAX_HEAD: usize = 64 * 1024;
/// The most header lines an answer head may have.
const MAX_HEADERS: usize = 128;
/// The largest chunk-size line or trailer section of a chunked answer.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// Room made in the read buffer before each read, at first.
const READ_SIZE: usize = 8 * 1024;
/// The most room made for one read of a long body.
const MAX_READ: usize = 64 * 1024;
/// Request body frames up to this size are copied after the head (one write); larger ones go as they are.
const COALESCE: usize = 16 * 1024;
/// Buffers above this size are given up when a connection goes idle.
const KEEP_BUFFER: usize = 64 * 1024;
/// The most interim (1xx) answers passed over before the final one.
const MAX_INTERIM: usize = 16;

/// Why an exchange on a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The connection was closed or reset before the request was written or before any byte of an answer:
    /// the upstream had closed it, and may not have seen the request.
    #[error("the upstream connection closed before answering")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed upstream answer: {0}")]
    Malformed(String),
    /// The request body to send broke off (the client's side).
    #[error("the request body broke off: {0}")]
    Body(BoxError),
}

/// Where a connection goes once an answer has been read to its end and it can carry another request.
pub trait Recycle: Send + Sync {
    fn recycle(&self, conn: Conn);
}

/// One connection to the upstream with its buffers, reused from request to request.
pub struct Conn {
    io: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
    /// How long the upstream keeps the connection open while idle, as its last answer said.
    keep_alive: Option<std::time::Duration>,
}

impl Conn {
    pub fn new(io: TcpStream) -> Self {
        Conn {
            io,
            read: BytesMut::with_capacity(READ_SIZE),
            write: Vec::with_capacity(1024),
            keep_alive: None,
        }
    }

    /// Whether an idle connection can carry a request: nothing arrived on it since its last answer (a
    /// close, or bytes no request asked for). `try_read` answers from the runtime's cached readiness
    /// without a system call unless the socket was seen readable (and, unlike `poll_read_ready`, never
    /// says "not yet" because the task used up its scheduling budget).
    pub fn is_usable(&self) -> bool {
        self.read.is_empty()
            && matches!(self.io.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Whether the upstream asked for the connection to be closed after idling this long (`Keep-Alive:
    /// timeout=N`, as Node.js sends; one second is taken off so that a request never races its close).
    pub fn idle_limit(&self) -> Option<std::time::Duration> {
        self.keep_alive
    }

    /// Buffers a large request or answer left behind are not kept while the connection idles.
    pub fn shrink(&mut self) {
        if self.write.capacity() > KEEP_BUFFER {
            self.write = Vec::with_capacity(1024);
        }
        if self.read.capacity() > KEEP_BUFFER {
            self.read = BytesMut::with_capacity(READ_SIZE);
        }
    }

    /// Writes the request (`head`, then the body's framing worked out from the body itself, then the
    /// body) and reads the answer's head. The answer's body reads on from this connection and gives it to
    /// `back` when it ends on a connection that stays open.
    pub async fn exchange(
        mut self,
        head: &RequestHead,
        mut body: Body,
        back: Weak<dyn Recycle>,
    ) -> Result<Response<Answer>, ExchangeError> {
        let sent = self.send(head, &mut body).await;
        drop(body);
        let (answer_head, framing, mut reuse) = match sent {
            Ok(()) => self.read_head(&head.method).await?,
            // An upstream may answer (413, 401) and close before it has read the whole request: that
            // answer, if it came before the close, is the client's, on a connection that is not kept. The
            // connection is closed or reset, so reading it ends at once.
            Err(ExchangeError::Closed) => match self.read_head(&head.method).await {
                Ok((answer_head, framing, _)) => (answer_head, framing, false),
                Err(_) => return Err(ExchangeError::Closed),
            },
            Err(e) => return Err(e),
        };
        self.keep_alive = answer_head.keep_alive;
        reuse &= self.keep_alive != Some(std::time::Duration::ZERO);
        let mut answer = Answer {
            conn: Some(self),
            framing,
            reuse,
            back,
            read_size: READ_SIZE,
        };
        if answer.is_end_stream() {
            answer.finish();
        }
        let mut response = Response::new(answer);
        *response.status_mut() = answer_head.status;
        *response.version_mut() = answer_head.version;
        *response.headers_mut() = answer_head.headers;
        if let Some(reason) = answer_head.reason {
            response.extensions_mut().insert(reason);
        }
        Ok(response)
    }

    /// Writes the head, the framing worked out from the body and the body.
    async fn send(&mut self, head: &RequestHead, body: &mut Body) -> Result<(), ExchangeError> {
        let length = body.size_hint().exact();
        let chunked = length.is_none();
        self.write.clear();
        head.write_to(&mut self.write, length);
        let mut sent: u64 = 0;
        while !body.is_end_stream() {
            let Some(frame) = body.frame().await else { break };
            let Ok(data) = frame.map_err(ExchangeError::Body)?.into_data() else {
                continue; // trailers are not sent on
            };
            if data.is_empty() {
                continue;
            }
            // A body longer than the length announced would put bytes of its own on the connection.
            sent += data.len() as u64;
            if length.is_some_and(|n| sent > n) {
                return Err(ExchangeError::Body(
                    "the request body is longer than its length".into(),
                ));
            }
            if chunked {
                let _ = write!(self.write, "{:x}\r\n", data.len());
            }
            if data.len() <= COALESCE {
                self.write.extend_from_slice(&data);
            } else {
                self.flush().await?;
                self.io.write_all(&data).await.map_err(closed_or_io)?;
            }
            if chunked {
                self.write.extend_from_slice(b"\r\n");
            }
            // A streamed body goes on as it comes; the last frame leaves with the terminator.
            if !body.is_end_stream() {
                self.flush().await?;
            }
        }
        if length.is_some_and(|n| sent < n) {
            return Err(ExchangeError::Body(
                "the request body is shorter than its length".into(),
            ));
        }
        if chunked {
            self.write.extend_from_slice(b"0\r\n\r\n");
        }
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), ExchangeError> {
        if !self.write.is_empty() {
            self.io.write_all(&self.write).await.map_err(closed_or_io)?;
            self.write.clear();
        }
        Ok(())
    }

    /// Reads until a final answer's head is whole (interim 1xx answers are passed over) and works out how
    /// its body is framed and whether the connection can be kept.
    async fn read_head(&mut self, method: &Method) -> Result<(Head, Framing, bool), ExchangeError> {
        let mut interim = 0;
        loop {
            if let Some((len, head)) = parse_head(&self.read)? {
                if len > MAX_HEAD {
                    return Err(ExchangeError::Malformed(format!(
                        "answer head over {MAX_HEAD} bytes"
                    )));
                }
                let code = head.status.as_u16();
                if (100..200).contains(&code) {
                    if code == 101 {
                        return Err(ExchangeError::Malformed(
                            "101 to a request that asked for no upgrade".into(),
                        ));
                    }
                    interim += 1;
                    if interim > MAX_INTERIM {
                        return Err(ExchangeError::Malformed(format!(
                            "more than {MAX_INTERIM} interim answers"
                        )));
                    }
                    self.read.advance(len);
                    continue;
                }
                let bytes = self.read.split_to(len).freeze();
                let (head, framing, reuse) = head.into_answer(&bytes, method)?;
                return Ok((head, framing, reuse));
            }
            if self.read.len() >= MAX_HEAD {
                return Err(ExchangeError::Malformed(format!(
                    "answer head over {MAX_HEAD} bytes"
                )));
            }
            self.read.reserve(READ_SIZE);
            let read = self.io.read_buf(&mut self.read).await;
            let nothing_yet = interim == 0 && self.read.is_empty();
            match read {
                Ok(0) if nothing_yet => return Err(ExchangeError::Closed),
                Ok(0) => {
                    return Err(ExchangeError::Malformed(
                        "connection closed within the answer head".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if nothing_yet => return Err(closed_or_io(e)),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A reset or broken pipe means the upstream had closed the connection.
fn closed_or_io(e: io::Error) -> ExchangeError {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted => {
            ExchangeError::Closed
        }
        _ => ExchangeError::Io(e),
    }
}

/// A request's line and header lines as they go on the wire, less the body's framing, which
/// [`Conn::exchange`] writes from the body itself.
pub struct RequestHead {
    method: Method,
    bytes: Vec<u8>,
    /// The client announced a length: an empty body keeps its `Content-Length: 0` whatever the method.
    announced: bool,
}

impl RequestHead {
    /// The request line for `target` (origin form).
    pub fn new(method: &Method, target: &str) -> Self {
        let mut bytes = Vec::with_capacity(512);
        bytes.extend_from_slice(method.as_str().as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(target.as_bytes());
        bytes.extend_from_slice(b" HTTP/1.1\r\n");
        RequestHead {
            method: method.clone(),
            bytes,
            announced: false,
        }
    }

    /// One header line; `Content-Length` and `Transfer-Encoding` are left to the body's framing.
    pub fn header(&mut self, name: &HeaderName, value: &HeaderValue) {
        if *name == header::CONTENT_LENGTH || *name == header::TRANSFER_ENCODING {
            self.announced |= *name == header::CONTENT_LENGTH;
            return;
        }
        self.bytes.extend_from_slice(name.as_str().as_bytes());
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.extend_from_slice(b"\r\n");
    }

    /// The head with the framing of a body of `length` (chunked when unknown; no length for an empty body
    /// of a method that carries none, unless the client announced one).
    fn write_to(&self, out: &mut Vec<u8>, length: Option<u64>) {
        out.extend_from_slice(&self.bytes);
        match length {
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Some(0) if !self.announced && !carries_body(&self.method) => {}
            Some(n) => {
                // Without the formatting machinery, which took ~330 instructions a request here (callgrind).
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Methods whose requests carry a body as a rule: an empty one still says `Content-Length: 0`.
fn carries_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE | Method::CONNECT
    )
}

/// An answer's status line and headers.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    /// A reason phrase other than the status's own, passed on as the upstream wrote it.
    reason: Option<hyper::ext::ReasonPhrase>,
    /// How long the upstream keeps the connection while idle (`Keep-Alive: timeout=N`), less a second.
    keep_alive: Option<std::time::Duration>,
}

/// An answer head as parsed: positions into the read buffer, turned into a [`Head`] once that part of the
/// buffer is split off (header values then share its bytes, no copy).
struct Parsed {
    status: StatusCode,
    version: Version,
    reason: std::ops::Range<usize>,
    fields: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

fn parse_head(buf: &[u8]) -> Result<Option<(usize, Parsed)>, ExchangeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let len = match answer.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ExchangeError::Malformed(e.to_string())),
    };
    let code = answer.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| ExchangeError::Malformed(format!("status {code} is not a valid status")))?;
    let version = if answer.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let reason = answer.reason.map_or(0..0, |r| at(r.as_bytes()));
    let fields = answer
        .headers
        .iter()
        .map(|h| (at(h.name.as_bytes()), at(h.value)))
        .collect();
    Ok(Some((
        len,
        Parsed {
            status,
            version,
            reason,
            fields,
        },
    )))
}

impl Parsed {
    /// The head's header map (values sharing `bytes`), the body's framing and whether the connection
    /// stays open after it.
    fn into_answer(self, bytes: &Bytes, method: &Method) -> Result<(Head, Framing, bool), ExchangeError> {
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        let mut length: Option<u64> = None;
        let mut chunked = None;
        let mut close = false;
        let mut keep_alive = false;
        let mut idle_limit = None;
        for (name, value) in self.fields {
            let name = HeaderName::from_bytes(&bytes[name])
                .map_err(|_| ExchangeError::Malformed("a header name is not valid".into()))?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(value))
                .map_err(|_| ExchangeError::Malformed(format!("the {name} header is not valid")))?;
            if name == header::CONTENT_LENGTH {
                for part in value.as_bytes().split(|&b| b == b',') {
                    let n = std::str::from_utf8(part)
                        .ok()
                        .map(str::trim)
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| ExchangeError::Malformed("Content-Length is not a number".into()))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(ExchangeError::Malformed(
                            "conflicting Content-Length values".into(),
                        ));
                    }
                    length = Some(n);
                }
            } else if name == header::TRANSFER_ENCODING {
                // Only the last coding decides: chunked last frames the body, anything else runs to the close.
                let last = value.as_bytes().rsplit(|&b| b == b',').next().unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.as_str() == "keep-alive" {
                idle_limit = keep_alive_timeout(value.as_bytes()).or(idle_limit);
            } else if name == header::CONNECTION {
                for option in value.as_bytes().split(|&b| b == b',') {
                    let option = option.trim_ascii();
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            headers.append(name, value);
        }
        let code = self.status.as_u16();
        // Both framings at once may be an attempt at smuggling, and HTTP/1.0 has no chunked coding: the
        // body is read by Transfer-Encoding, and the connection is not used again (RFC 9112 §6.1, §6.3).
        let doubtful = chunked.is_some() && (length.is_some() || self.version == Version::HTTP_10);
        let framing = if *method == Method::HEAD || code == 204 || code == 304 {
            Framing::Length(0)
        } else if let Some(chunked) = chunked {
            // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3), which must not go on beside it.
            headers.remove(header::CONTENT_LENGTH);
            if chunked {
                Framing::Chunked(Chunk::Size)
            } else {
                Framing::Close
            }
        } else {
            length.map_or(Framing::Close, Framing::Length)
        };
        let persistent = match self.version {
            Version::HTTP_10 => keep_alive && !close,
            _ => !close,
        };
        let reuse = persistent && !doubtful && !matches!(framing, Framing::Close);
        let reason = &bytes[self.reason];
        let reason = (Some(reason) != self.status.canonical_reason().map(str::as_bytes))
            .then(|| hyper::ext::ReasonPhrase::try_from(bytes.slice_ref(reason)).ok())
            .flatten();
        let head = Head {
            status: self.status,
            version: self.version,
            headers,
            reason,
            keep_alive: idle_limit,
        };
        Ok((head, framing, reuse))
    }
}

/// The `timeout=N` of a `Keep-Alive` header value, less a second so that a request never races the close.
fn keep_alive_timeout(value: &[u8]) -> Option<std::time::Duration> {
    value.split(|&b| b == b',').find_map(|param| {
        let (key, n) = std::str::from_utf8(param).ok()?.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        let n: u64 = n.trim().parse().ok()?;
        Some(std::time::Duration::from_secs(n.saturating_sub(1)))
    })
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Within a chunk's data, this many bytes left.
    ChunkData(u64),
    /// Between chunks' data.
    Chunked(Chunk),
    /// Everything until the upstream closes the connection.
    Close,
    /// Read whole.
    Done,
}

/// Where a chunked body's reader stands between chunks' data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last (empty) chunk: the trailer section and its empty line.
    Trailers,
}

/// An answer's body, read from its connection as the client takes it; the connection goes back to the
/// pool when the body has ended and the connection can be kept.
pub struct Answer {
    conn: Option<Conn>,
    framing: Framing,
    reuse: bool,
    back: Weak<dyn Recycle>,
    /// Room made before the next read: doubled (up to [`MAX_READ`]) while reads fill it, for long bodies.
    read_size: usize,
}

impl Answer {
    /// The body has ended: its connection goes back if it may be kept and nothing else arrived on it.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            if self.reuse && conn.read.is_empty() {
                if let Some(pool) = self.back.upgrade() {
                    pool.recycle(conn);
                }
            }
        }
    }

    /// Reads more of the answer into the buffer: the number of bytes read (0 at the end of the stream).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if conn.read.capacity() - conn.read.len() < self.read_size / 2 {
            conn.read.reserve(self.read_size);
        }
        let room = conn.read.capacity() - conn.read.len();
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut conn.io),
            cx,
            &mut conn.read
        ));
        if read.as_ref().is_ok_and(|&n| n == room) {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Poll::Ready(read)
    }

    /// Up to `left` bytes already read, as one frame.
    fn take(&mut self, left: u64) -> Option<Bytes> {
        let read = &mut self.conn.as_mut()?.read;
        if read.is_empty() {
            return None;
        }
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(read.len());
        Some(read.split_to(n).freeze())
    }

    fn buffered(&self) -> &[u8] {
        self.conn.as_ref().map_or(&[], |c| &c.read[..])
    }

    fn advance(&mut self, n: usize) {
        if let Some(conn) = self.conn.as_mut() {
            conn.read.advance(n);
        }
    }

    /// Reads more, or fails with `what` if the upstream closed the connection first.
    fn poll_more(&mut self, cx: &mut Context<'_>, what: &str) -> Poll<Result<(), BoxError>> {
        match ready!(self.poll_fill(cx)) {
            Ok(0) => Poll::Ready(Err(malformed(what))),
            Ok(_) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

fn malformed(what: &str) -> BoxError {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("upstream answer body: {what}"),
    )
    .into()
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let step = match this.framing {
                Framing::Done | Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => match this.take(left) {
                    Some(data) => {
                        this.framing = Framing::Length(left - data.len() as u64);
                        if this.framing == Framing::Length(0) {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    None => ready!(this.poll_more(cx, "the connection closed before its length")),
                },
                Framing::Close => match this.take(u64::MAX) {
                    Some(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    None => match ready!(this.poll_fill(cx)) {
                        Ok(0) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(_) => Ok(()),
                        Err(e) => Err(e.into()),
                    },
                },
                Framing::ChunkData(left) => match this.take(left) {
                    Some(data) => {
                        let left = left - data.len() as u64;
                        this.framing = if left == 0 {
                            Framing::Chunked(Chunk::DataEnd)
                        } else {
                            Framing::ChunkData(left)
                        };
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    None => ready!(this.poll_more(cx, "the connection closed within a chunk")),
                },
                Framing::Chunked(state) => match chunk_step(this.buffered(), state) {
                    Ok(Some((used, next))) => {
                        this.advance(used);
                        this.framing = next;
                        Ok(())
                    }
                    Ok(None) => {
                        ready!(this.poll_more(cx, "the connection closed within the chunked framing"))
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = step {
                this.conn = None;
                this.framing = Framing::Done;
                return Poll::Ready(Some(Err(e)));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// One step of the chunked framing between data, on the bytes read so far: how many bytes it used and
/// where the body stands after it, or `None` if more bytes are needed.
fn chunk_step(buf: &[u8], state: Chunk) -> Result<Option<(usize, Framing)>, BoxError> {
    match state {
        Chunk::Size => {
            // The line whole first, strictly: hex digits (httparse reads none as 0), extensions, CRLF; a
            // bare LF within it is not a line end (as hyper holds), so no byte of data passes for framing.
            let line = match memchr::memchr(b'\n', buf) {
                Some(lf) if lf > 0 && buf[lf - 1] == b'\r' => &buf[..=lf],
                Some(_) => return Err(malformed("a chunk-size line does not end in CRLF")),
                None if buf.len() > MAX_CHUNK_LINE => return Err(malformed("a chunk-size line is too long")),
                None => return Ok(None),
            };
            if !line[0].is_ascii_hexdigit() {
                return Err(malformed("a chunk size has no digits"));
            }
            match httparse::parse_chunk_size(line) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    Ok(Some((used, Framing::Chunked(Chunk::Trailers))))
                }
                Ok(httparse::Status::Complete((used, size))) => Ok(Some((used, Framing::ChunkData(size)))),
                _ => Err(malformed("a chunk size is not valid")),
            }
        }
        Chunk::DataEnd => match buf {
            [b'\r', b'\n', ..] => Ok(Some((2, Framing::Chunked(Chunk::Size)))),
            [] | [b'\r'] => Ok(None),
            _ => Err(malformed("a chunk's data is longer than its size")),
        },
        // Trailer fields are read as header fields (and not passed on), up to the empty line.
        Chunk::Trailers => match httparse::parse_headers(buf, &mut [httparse::EMPTY_HEADER; 32]) {
            Ok(httparse::Status::Complete((used, _))) => Ok(Some((used, Framing::Done))),
            Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILERS => {
                Err(malformed("the trailer section is too long"))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(_) => Err(malformed("the trailer section is not valid")),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, StreamBody};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::proxy::body;

    /// Where finished connections go in these tests.
    #[derive(Default)]
    struct Bin(Mutex<Vec<Conn>>);

    impl Recycle for Bin {
        fn recycle(&self, conn: Conn) {
            self.0.lock().unwrap().push(conn);
        }
    }

    impl Bin {
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    /// A raw upstream for one connection: reads one request (head, then a body by its length or chunked),
    /// sends it back through the channel, writes `answer` (one byte a write when `dribble`) and, when
    /// `close`, closes the connection.
    async fn upstream(
        answer: &'static [u8],
        dribble: bool,
        close: bool,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                if let Some(end) = memchr::memmem::find(&got, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let whole = if head.contains("transfer-encoding: chunked") {
                        got.ends_with(b"0\r\n\r\n")
                    } else {
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.parse::<usize>().unwrap());
                        got.len() >= end + 4 + len
                    };
                    if whole {
                        break;
                    }
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(got);
            if dribble {
                for b in answer {
                    s.write_all(&[*b]).await.unwrap();
                    tokio::task::yield_now().await;
                }
            } else {
                s.write_all(answer).await.unwrap();
            }
            if close {
                drop(s);
            } else {
                // Held open until the client goes.
                let _ = s.read(&mut chunk).await;
            }
        });
        (addr, rx)
    }

    async fn conn(addr: std::net::SocketAddr) -> Conn {
        Conn::new(TcpStream::connect(addr).await.unwrap())
    }

    /// A request head with these headers.
    fn head(method: Method, target: &str, headers: &[(&'static str, &'static str)]) -> RequestHead {
        let mut head = RequestHead::new(&method, target);
        for (name, value) in headers {
            head.header(&HeaderName::from_static(name), &HeaderValue::from_static(value));
        }
        head
    }

    fn get(target: &str) -> RequestHead {
        head(Method::GET, target, &[("host", "up")])
    }

    /// A GET of `/` on a new connection to `addr`.
    async fn get_from(addr: std::net::SocketAddr, bin: &Arc<Bin>) -> Result<Response<Answer>, ExchangeError> {
        conn(addr)
            .await
            .exchange(&get("/"), body::empty(), back(bin))
            .await
    }

    fn back(bin: &Arc<Bin>) -> Weak<dyn Recycle> {
        Arc::downgrade(bin) as Weak<Bin>
    }

    async fn text(response: Response<Answer>) -> Result<String, BoxError> {
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn answers_framed_by_length_chunks_or_the_close_are_read_whole() {
        let cases: [(&'static [u8], &str, bool); 5] = [
            (b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world", "hello world", true),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                "hello world",
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\nB\r\nhello world\r\n0\r\nx-sum: 1\r\nx-more: 2\r\n\r\n",
                "hello world",
                true,
            ),
            // Neither length nor chunks: the body runs to the close, and the connection is not kept.
            (b"HTTP/1.1 200 OK\r\n\r\nhello world", "hello world", false),
            // A coding other than chunked last: also to the close.
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nhello world", "hello world", false),
        ];
        for dribble in [false, true] {
            for (answer, body, kept) in cases {
                let (addr, _) = upstream(answer, dribble, !kept).await;
                let bin = Arc::new(Bin::default());
                let response = get_from(addr, &bin).await.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(
                    text(response).await.unwrap(),
                    body,
                    "{}",
                    String::from_utf8_lossy(answer)
                );
                assert_eq!(
                    bin.count(),
                    usize::from(kept),
                    "{}",
                    String::from_utf8_lossy(answer)
                );
            }
        }
    }

    #[tokio::test]
    async fn answers_without_a_body_give_their_connection_back_at_once() {
        let cases: [(Method, &'static [u8]); 3] = [
            (Method::HEAD, b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"),
            (
                Method::GET,
                b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
            ),
            (
                Method::GET,
                b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
            ),
        ];
        for (method, answer) in cases {
            let (addr, _) = upstream(answer, false, false).await;
            let bin = Arc::new(Bin::default());
            let request = head(method, "/", &[("host", "up")]);
            let response = conn(addr)
                .await
                .exchange(&request, body::empty(), back(&bin))
                .await
                .unwrap();
            assert!(response.body().is_end_stream());
            assert_eq!(bin.count(), 1, "{}", String::from_utf8_lossy(answer));
            // HEAD keeps the length the GET would have had.
            if response.status() == 200 {
                assert_eq!(response.headers()["content-length"], "1234");
            }
        }
    }

    #[tokio::test]
    async fn interim_answers_are_passed_over_and_conflicting_framing_resolved() {
        let (addr, _) = upstream(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
            true,
            false,
        )
        .await;
        let bin = Arc::new(Bin::default());
        let response = get_from(addr, &bin).await.unwrap();
        assert_eq!(response.status(), 201);
        assert!(response.headers().get("link").is_none());
        assert_eq!(text(response).await.unwrap(), "ok");

        // Transfer-Encoding wins over Content-Length, which is not passed on beside it; a connection that
        // carried both is not used again.
        let (addr, _) = upstream(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            false,
            false,
        )
        .await;
        let response = get_from(addr, &bin).await.unwrap();
        assert!(response.headers().get("content-length").is_none());
        assert_eq!(text(response).await.unwrap(), "ok");
        assert_eq!(bin.count(), 1);
    }

    #[tokio::test]
    async fn connections_the_answer_closes_are_not_kept() {
        let cases: [(&'static [u8], bool); 7] = [
            (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                false,
            ),
            // HTTP/1.0 has no chunked coding: read by it, but never kept.
            (
                b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                false,
            ),
            // The upstream closes idle connections within a second: not worth keeping.
            (b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 2\r\n\r\nok", false),
            (b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=5, max=100\r\ncontent-length: 2\r\n\r\nok", true),
            (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
            (
                b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 2\r\n\r\nok",
                true,
            ),
            // Bytes past the answer that no request asked for.
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
                false,
            ),
        ];
        for (answer, kept) in cases {
            let (addr, _) = upstream(answer, false, false).await;
            let bin = Arc::new(Bin::default());
            let response = get_from(addr, &bin).await.unwrap();
            assert_eq!(text(response).await.unwrap(), "ok");
            assert_eq!(
                bin.count(),
                usize::from(kept),
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[tokio::test]
    async fn malformed_or_cut_answers_are_errors() {
        let heads: [&'static [u8]; 6] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-le",
        ];
        for answer in heads {
            let (addr, _) = upstream(answer, false, true).await;
            let bin = Arc::new(Bin::default());
            match get_from(addr, &bin).await {
                Err(ExchangeError::Malformed(_)) => {}
                other => panic!(
                    "{}: {:?}",
                    String::from_utf8_lossy(answer),
                    other.map(|r| r.status())
                ),
            }
        }
        // Same content-length twice is one length.
        let (addr, _) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok", false, false).await;
        let bin = Arc::new(Bin::default());
        let response = get_from(addr, &bin).await.unwrap();
        assert_eq!(text(response).await.unwrap(), "ok");

        let bodies: [&'static [u8]; 9] = [
            // A size line without digits is not a last chunk (httparse alone reads it as 0).
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n\r\n\r\n5\r\nworld\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n\r\n5\r\nworld\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n;x\r\nhello\r\n0\r\n\r\n",
            // A bare LF within a size line, and a trailer section that is no header fields.
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n<html>junk\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ];
        for answer in bodies {
            let (addr, _) = upstream(answer, false, true).await;
            let bin = Arc::new(Bin::default());
            let response = get_from(addr, &bin).await.unwrap();
            assert!(
                text(response).await.is_err(),
                "{}",
                String::from_utf8_lossy(answer)
            );
            assert_eq!(bin.count(), 0);
        }

        // Closed with nothing said: the caller learns the connection was closed under the request.
        let (addr, _) = upstream(b"", false, true).await;
        let bin = Arc::new(Bin::default());
        assert!(matches!(get_from(addr, &bin).await, Err(ExchangeError::Closed)));
    }

    #[tokio::test]
    async fn odd_reason_phrases_pass_on_and_endless_interim_answers_do_not() {
        let (addr, _) = upstream(
            b"HTTP/1.1 419 Page Expired\r\ncontent-length: 0\r\n\r\n",
            false,
            false,
        )
        .await;
        let bin = Arc::new(Bin::default());
        let response = get_from(addr, &bin).await.unwrap();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .expect("a reason");
        assert_eq!(reason.as_bytes(), b"Page Expired");
        // The status's own phrase needs no extension.
        let (addr, _) = upstream(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            false,
            false,
        )
        .await;
        let response = get_from(addr, &bin).await.unwrap();
        assert!(response.extensions().get::<hyper::ext::ReasonPhrase>().is_none());

        let mut answer = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        answer.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let (addr, _) = upstream(answer.leak(), false, false).await;
        assert!(matches!(
            get_from(addr, &bin).await,
            Err(ExchangeError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_request_was_whole_reaches_the_client() {
        // The upstream refuses an upload from its head alone and closes without reading the body.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while memchr::memmem::find(&got, b"\r\n\r\n").is_none() {
                let n = s.read(&mut chunk).await.unwrap();
                got.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!")
                .await
                .unwrap();
        });
        let bin = Arc::new(Bin::default());
        let upload = body::full(vec![b'x'; 64 << 20]);
        let response = conn(addr)
            .await
            .exchange(&head(Method::POST, "/upload", &[]), upload, back(&bin))
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(text(response).await.unwrap(), "big!");
        assert_eq!(
            bin.count(),
            0,
            "a connection whose request was cut short is not kept"
        );
    }

    #[test]
    fn an_idle_connection_keeps_no_large_buffers() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = conn(std.local_addr().unwrap()).await;
            c.write.reserve(1 << 20);
            c.read.reserve(1 << 20);
            c.shrink();
            assert!(c.write.capacity() <= KEEP_BUFFER && c.read.capacity() <= KEEP_BUFFER);
        });
    }

    #[tokio::test]
    async fn requests_are_framed_by_their_body() {
        let answer: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let bin = Arc::new(Bin::default());
        let send = |request: RequestHead, body: Body| {
            let bin = bin.clone();
            async move {
                let (addr, got) = upstream(answer, false, false).await;
                conn(addr)
                    .await
                    .exchange(&request, body, back(&bin))
                    .await
                    .unwrap();
                String::from_utf8(got.await.unwrap()).unwrap()
            }
        };
        // A known length replaces whatever the request said.
        let request = head(
            Method::POST,
            "/a?b=1",
            &[
                ("host", "up"),
                ("content-length", "999"),
                ("transfer-encoding", "chunked"),
            ],
        );
        let sent = send(request, body::full("{\"x\":1}")).await;
        assert_eq!(
            sent,
            "POST /a?b=1 HTTP/1.1\r\nhost: up\r\ncontent-length: 7\r\n\r\n{\"x\":1}"
        );
        // No body: no length for a GET, a zero length for a POST.
        assert_eq!(
            send(get("/"), body::empty()).await,
            "GET / HTTP/1.1\r\nhost: up\r\n\r\n"
        );
        let sent = send(head(Method::POST, "/", &[]), body::empty()).await;
        assert_eq!(sent, "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        // ... and for a GET whose client announced its empty body.
        let sent = send(head(Method::GET, "/", &[("content-length", "0")]), body::empty()).await;
        assert_eq!(sent, "GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        // A body of unknown length goes chunked, frame by frame; trailers are not sent on.
        let frames = futures_util::stream::iter(vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::data(Bytes::new())),
            Ok(Frame::data(Bytes::from(vec![b'z'; 20_000]))),
            Ok(Frame::trailers(HeaderMap::new())),
        ]);
        let sent = send(head(Method::PUT, "/u", &[]), StreamBody::new(frames).boxed()).await;
        let expected = format!(
            "PUT /u HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n4e20\r\n{}\r\n0\r\n\r\n",
            "z".repeat(20_000)
        );
        assert_eq!(sent, expected);
        assert_eq!(bin.count(), 5);
    }

    #[tokio::test]
    async fn a_request_body_that_breaks_off_is_the_clients_fault() {
        let (addr, _) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false, false).await;
        let frames = futures_util::stream::iter(vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"hel"))),
            Err("the client went away".into()),
        ]);
        let bin = Arc::new(Bin::default());
        let body = StreamBody::new(frames).boxed();
        assert!(matches!(
            conn(addr)
                .await
                .exchange(&head(Method::POST, "/", &[]), body, back(&bin))
                .await,
            Err(ExchangeError::Body(_))
        ));
    }

    /// A body that announces one length and yields another.
    struct Lying {
        says: u64,
        gives: &'static [u8],
        done: bool,
    }

    impl http_body::Body for Lying {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if std::mem::replace(&mut self.done, true) {
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(self.gives)))))
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.says)
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_its_announced_length_is_never_sent_whole() {
        for (says, gives) in [(3, &b"abcGET /smuggled HTTP/1.1\r\n\r\n"[..]), (10, &b"abc"[..])] {
            let (addr, got) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false, false).await;
            let body = Lying {
                says,
                gives,
                done: false,
            };
            let bin = Arc::new(Bin::default());
            assert!(matches!(
                conn(addr)
                    .await
                    .exchange(&head(Method::POST, "/", &[]), body.boxed(), back(&bin))
                    .await,
                Err(ExchangeError::Body(_))
            ));
            // The connection closed with the head alone (or nothing) on it.
            assert!(got.await.is_err());
        }
    }

    #[tokio::test]
    async fn a_long_body_is_read_in_growing_steps() {
        let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_vec();
        answer.extend(std::iter::repeat_n(b'x', 1_000_000));
        let (addr, _) = upstream(answer.leak(), false, false).await;
        let bin = Arc::new(Bin::default());
        let mut response = get_from(addr, &bin).await.unwrap();
        assert_eq!(response.body().size_hint().exact(), Some(1_000_000));
        let (mut total, mut largest) = (0, 0);
        while let Some(frame) = response.body_mut().frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.iter().all(|&b| b == b'x'));
            total += data.len();
            largest = largest.max(data.len());
        }
        assert_eq!(total, 1_000_000);
        assert!(largest > READ_SIZE && largest <= 2 * MAX_READ, "{largest}");
        assert_eq!(bin.count(), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_the_upstream_closed_is_not_usable() {
        let (addr, _) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false, true).await;
        let bin = Arc::new(Bin::default());
        let response = get_from(addr, &bin).await.unwrap();
        assert_eq!(text(response).await.unwrap(), "ok");
        let closed = bin.0.lock().unwrap().pop().unwrap();
        // The close arrives after the answer: once the runtime has seen it, the connection is refused.
        closed.io.readable().await.unwrap();
        assert!(!closed.is_usable());

        let (addr, _) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false, false).await;
        let response = get_from(addr, &bin).await.unwrap();
        assert_eq!(text(response).await.unwrap(), "ok");
        let open = bin.0.lock().unwrap().pop().unwrap();
        assert!(open.is_usable());
    }
}
