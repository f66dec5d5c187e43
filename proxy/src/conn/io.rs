//! Reading and writing messages on the two sockets of a connection, every operation
//! bounded by a timeout. Bodies are relayed verbatim; a chunked body is only scanned
//! (and de-chunked for HTTP/1.0 clients).

use crate::http1::{parse_response, Chunked, HeadError, ReqBody, RespBody, ResponseHead};
use bytes::{Buf, BytesMut};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Either side of a connection: a socket, a pingora stream, a TLS stream inside a tunnel.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> Io for T {}

/// A connection already handed on (to the connection serving an intercepted tunnel):
/// reads end, writes fail.
pub(super) struct Gone;

impl AsyncRead for Gone {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Gone {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// How much more to make room for before a read.
const READ_CHUNK: usize = 16 * 1024;

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// Reads more bytes into `buf` within `t`. `Ok(0)`: the peer closed.
pub(super) async fn read_more(
    s: &mut (impl Io + ?Sized),
    buf: &mut BytesMut,
    t: Duration,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
    pingora::prelude::timeout(t, s.read_buf(buf))
        .await
        .map_err(|_| timed_out())?
}

/// Writes all of `bytes` and flushes, within `t`.
pub(super) async fn write_all(
    s: &mut (impl Io + ?Sized),
    bytes: &[u8],
    t: Duration,
) -> io::Result<()> {
    pingora::prelude::timeout(t, async {
        s.write_all(bytes).await?;
        s.flush().await
    })
    .await
    .map_err(|_| timed_out())?
}

/// Why sending a request failed.
#[derive(Debug)]
pub(super) enum SendError {
    /// The client went away or stalled while sending its body.
    ClientGone,
    /// The client's chunked body is malformed.
    BadBody(&'static str),
    /// Writing to the upstream failed.
    Upstream,
}

/// A request sent.
pub(super) struct Sent {
    /// Body bytes forwarded (framing included).
    pub bytes: u64,
    /// Every body byte is also in `keep` (the body fit within the limit).
    pub kept_all: bool,
}

/// Sends `head` and the request body framed as `framing` from the client (`down`, bytes
/// already read in `dbuf`) to `up`; the first body bytes go in the same write as the head.
/// Keeps a copy of the body in `keep` while it stays within `limit`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send_request(
    down: &mut (impl Io + ?Sized),
    dbuf: &mut BytesMut,
    up: &mut (impl Io + ?Sized),
    head: &mut Vec<u8>,
    framing: ReqBody,
    keep: &mut Vec<u8>,
    limit: usize,
    t: Duration,
) -> Result<Sent, SendError> {
    keep.clear();
    let mut kept_all = true;
    let mut bytes = 0u64;
    let mut head_sent = false;
    let mut left = match framing {
        ReqBody::Length(n) => n,
        _ => 0,
    };
    let mut chunked = Chunked::default();
    loop {
        let (n, done) = match framing {
            ReqBody::None => (0, true),
            ReqBody::Length(_) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(dbuf.len());
                left -= n as u64;
                (n, left == 0)
            }
            ReqBody::Chunked => {
                let n = chunked.advance(dbuf, |_| ()).map_err(SendError::BadBody)?;
                (n, chunked.done())
            }
        };
        let piece = &dbuf[..n];
        if kept_all && keep.len() + n <= limit {
            keep.extend_from_slice(piece);
        } else {
            kept_all = false;
        }
        bytes += n as u64;
        if !head_sent {
            head.extend_from_slice(piece);
            write_all(up, head, t)
                .await
                .map_err(|_| SendError::Upstream)?;
            head_sent = true;
        } else if n > 0 {
            write_all(up, piece, t)
                .await
                .map_err(|_| SendError::Upstream)?;
        }
        dbuf.advance(n);
        if done {
            return Ok(Sent { bytes, kept_all });
        }
        match read_more(down, dbuf, t).await {
            Ok(0) | Err(_) => return Err(SendError::ClientGone),
            Ok(_) => {}
        }
    }
}

/// Why no usable response head came.
#[derive(Debug)]
pub(super) enum HeadFail {
    /// The upstream closed (or reset) before sending anything: a reused connection the
    /// upstream had already given up on, typically.
    ClosedEarly,
    /// Closed or failed part way through the head.
    Broken,
    TimedOut,
    Malformed(HeadError),
}

/// Reads a response head from `up` into `ubuf` within `t` per read.
pub(super) async fn read_response_head(
    up: &mut (impl Io + ?Sized),
    ubuf: &mut BytesMut,
    t: Duration,
) -> Result<ResponseHead, HeadFail> {
    loop {
        if !ubuf.is_empty() {
            match parse_response(ubuf) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(e) => return Err(HeadFail::Malformed(e)),
            }
        }
        let empty = ubuf.is_empty();
        match read_more(up, ubuf, t).await {
            Ok(0) if empty => return Err(HeadFail::ClosedEarly),
            Ok(0) => return Err(HeadFail::Broken),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(HeadFail::TimedOut),
            Err(_) if empty => return Err(HeadFail::ClosedEarly),
            Err(_) => return Err(HeadFail::Broken),
        }
    }
}

/// Which side broke a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Broke {
    Client,
    Upstream,
}

/// Relays a response body framed as `framing` from `up` (bytes already read in `ubuf`)
/// to the client, `head` first (in the same write as the first body bytes). With
/// `dechunk`, a chunked body is decoded (for HTTP/1.0 clients, which then see the end by
/// the connection closing). Returns the bytes written to the client.
pub(super) async fn relay_response(
    up: &mut (impl Io + ?Sized),
    ubuf: &mut BytesMut,
    down: &mut (impl Io + ?Sized),
    head: &mut Vec<u8>,
    framing: RespBody,
    dechunk: bool,
    t: Duration,
) -> Result<u64, Broke> {
    let mut written = 0u64;
    let mut head_sent = false;
    let mut left = match framing {
        RespBody::Length(n) => n,
        _ => 0,
    };
    let mut chunked = Chunked::default();
    let mut decoded: Vec<u8> = Vec::new();
    loop {
        decoded.clear();
        let (n, done) = match framing {
            RespBody::None => (0, true),
            RespBody::Length(_) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(ubuf.len());
                left -= n as u64;
                (n, left == 0)
            }
            RespBody::Chunked => {
                let n = if dechunk {
                    chunked.advance(ubuf, |d| decoded.extend_from_slice(d))
                } else {
                    chunked.advance(ubuf, |_| ())
                }
                .map_err(|_| Broke::Upstream)?;
                (n, chunked.done())
            }
            RespBody::Close => (ubuf.len(), false),
        };
        let piece: &[u8] = if dechunk { &decoded } else { &ubuf[..n] };
        if !head_sent {
            head.extend_from_slice(piece);
            write_all(down, head, t).await.map_err(|_| Broke::Client)?;
            written += head.len() as u64;
            head_sent = true;
        } else if !piece.is_empty() {
            write_all(down, piece, t).await.map_err(|_| Broke::Client)?;
            written += piece.len() as u64;
        }
        ubuf.advance(n);
        if done {
            return Ok(written);
        }
        match read_more(up, ubuf, t).await {
            Ok(0) if framing == RespBody::Close => return Ok(written),
            Ok(0) | Err(_) => return Err(Broke::Upstream),
            Ok(_) => {}
        }
    }
}

/// Reads and discards a response body of at most `max` bytes (a 401 about to be
/// replayed), so its connection can carry the replay. `false`: too large, unframed or
/// broken: do not reuse the connection.
pub(super) async fn discard_body(
    up: &mut (impl Io + ?Sized),
    ubuf: &mut BytesMut,
    framing: RespBody,
    max: u64,
    t: Duration,
) -> bool {
    let mut left = match framing {
        RespBody::None => return true,
        RespBody::Close => return false,
        RespBody::Length(n) if n > max => return false,
        RespBody::Length(n) => n,
        RespBody::Chunked => max,
    };
    let mut chunked = Chunked::default();
    loop {
        let (n, done) = match framing {
            RespBody::Length(_) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(ubuf.len());
                (n, n as u64 == left)
            }
            _ => match chunked.advance(ubuf, |_| ()) {
                Ok(n) => (n, chunked.done()),
                Err(_) => return false,
            },
        };
        ubuf.advance(n);
        if n as u64 > left {
            return false;
        }
        left -= n as u64;
        if done {
            return true;
        }
        if left == 0 {
            return false;
        }
        match read_more(up, ubuf, t).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}
