//! CONNECT tunnels for `pass` routes.
//!
//! pingora has no tunnel mode, so the downstream connection is taken out of the pingora
//! session (a parsed stand-in is left behind for pingora's bookkeeping), answered with
//! `200 Connection Established`, and spliced to the upstream with `copy_bidirectional`.
//! Bytes the client sent right after the CONNECT head are already in pingora's buffer;
//! they come back through `reuse()` with pipelining enabled and are written upstream first.

use crate::errors::{Code, ProxyError};
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;

/// How long to wait for the upstream's TCP handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Outcome of a tunnel, for logging.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tunnelled {
    pub to_upstream: u64,
    pub to_client: u64,
}

/// Dial the upstream first: a failure is still answered as an ordinary error response.
pub async fn dial(addr: SocketAddr, route: Option<&str>) -> Result<TcpStream, ProxyError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(ProxyError::new(
            Code::UpstreamUnreachable,
            format!("cannot connect to {addr}: {e}"),
            route,
        )),
        Err(_) => Err(ProxyError::new(
            Code::UpstreamTimeout,
            format!("connecting to {addr} timed out"),
            route,
        )),
    }
}

/// A parsed stand-in session so pingora can finish its bookkeeping after we take the socket.
async fn stand_in(head: &[u8]) -> Option<ServerSession> {
    let (a, mut b): (DuplexStream, DuplexStream) = tokio::io::duplex(head.len() + 64);
    b.write_all(head).await.ok()?;
    drop(b);
    let mut s = ServerSession::new_http1(Box::new(a));
    s.read_request().await.ok()?;
    s.set_keepalive(None);
    Some(s)
}

/// Take over the downstream connection and splice it to `upstream` until both sides close.
pub async fn tunnel(
    session: &mut Session,
    mut upstream: TcpStream,
    route: Option<&str>,
) -> Result<Tunnelled, ProxyError> {
    let req = session.req_header();
    let v10 = req.version == http::Version::HTTP_10;
    let head = format!(
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        String::from_utf8_lossy(req.raw_path()),
        String::from_utf8_lossy(req.raw_path())
    );
    let Some(dummy) = stand_in(head.as_bytes()).await else {
        return Err(ProxyError::new(
            Code::BadRequest,
            "cannot take over the CONNECT request",
            route,
        ));
    };
    let real = std::mem::replace(&mut session.downstream_session, Box::new(dummy));
    let mut h1 = match *real {
        ServerSession::H1(h1) => h1,
        other => {
            // HTTP/2 extended CONNECT is not supported: put the session back and refuse.
            *session.downstream_session = other;
            return Err(ProxyError::new(
                Code::BadRequest,
                "CONNECT is supported over HTTP/1.x only",
                route,
            ));
        }
    };
    // pingora hands the socket back only from a keep-alive session; clients such as undici
    // send `Connection: close` on CONNECT, which would make it close the socket instead.
    while h1.req_header_mut().remove_header("connection").is_some() {}
    h1.set_server_keepalive(Some(0));
    h1.set_keepalive_reuses_remaining(None);
    h1.set_pipelining_enabled(true);
    let reusable = match h1.reuse().await {
        Ok(Some(r)) => r,
        // The client went away before the tunnel was up: nothing to answer.
        _ => return Ok(Tunnelled::default()),
    };
    let (mut client, early) = reusable.into_parts();
    let status = if v10 {
        &b"HTTP/1.0 200 Connection Established\r\n\r\n"[..]
    } else {
        &b"HTTP/1.1 200 Connection Established\r\n\r\n"[..]
    };
    if client.write_all(status).await.is_err() || client.flush().await.is_err() {
        return Ok(Tunnelled::default());
    }
    let mut sent_early = 0u64;
    if let Some(early) = early {
        if upstream.write_all(&early).await.is_err() {
            return Ok(Tunnelled::default());
        }
        sent_early = early.len() as u64;
    }
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => Ok(Tunnelled {
            to_upstream: up + sent_early,
            to_client: down,
        }),
        Err(e) => {
            tracing::debug!(error = %e, "tunnel closed with an error");
            Ok(Tunnelled::default())
        }
    }
}
