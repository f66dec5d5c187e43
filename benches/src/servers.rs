//! Small HTTP/1.1 servers built into the harness: the fast upstream (when nginx is not
//! installed; like the nginx one it echoes the authorization headers it received on
//! [`crate::peers::SEEN_PATHS`]), the local token endpoint for tollgate's and Envoy's inject routes, and an
//! upstream that can be told to reject the current token (the 401 storm).
//!
//! Tokens are `bench-tok-N`, N counting up from 1 with each token issued. The
//! revocable upstream accepts `Bearer bench-tok-N` while N is at least `min_valid`;
//! [`Tokens::revoke`] makes every token issued so far invalid. The token endpoint can be
//! told to fail a share of its requests (`fail_permille`, the soak's injected fault): it
//! then answers `503` with the error `soak_injected_failure`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Token endpoint and revocation state, shared by the token endpoint and the
/// revocable upstream.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Token requests answered so far (the last token issued is `bench-tok-{issued}`).
    pub issued: AtomicU64,
    /// Tokens numbered below this are rejected with 401.
    pub min_valid: AtomicU64,
    /// Delay before answering a token request, in microseconds (an IdP's latency).
    pub delay_us: AtomicU64,
    /// Delay before the revocable upstream answers, in microseconds (keeps requests in
    /// flight, so a revocation catches many of them).
    pub upstream_delay_us: AtomicU64,
    /// Requests the revocable upstream accepted and rejected.
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Token requests to fail, per thousand (0: none).
    pub fail_permille: AtomicU64,
    /// Token requests received, and those failed on purpose.
    pub attempts: AtomicU64,
    pub failed: AtomicU64,
    /// `expires_in` of the tokens issued, in seconds (0 means the default, 3600).
    pub expires_in: AtomicU64,
}

/// The error a failed-on-purpose token request answers with.
pub const INJECTED_FAILURE: &str = "soak_injected_failure";

/// Spreads the attempt counter over 0..1000 (splitmix64), so failures are scattered but
/// the same on every run.
fn permille(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 1000
}

impl Tokens {
    pub fn new(delay: Duration) -> Arc<Tokens> {
        let t = Tokens::default();
        t.delay_us.store(
            u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Arc::new(t)
    }

    /// Reject every token issued so far.
    pub fn revoke(&self) {
        self.min_valid
            .store(self.issued.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    }
}

/// What a server answers.
#[derive(Clone)]
pub enum Behaviour {
    /// `200 ok` to everything.
    Fast,
    /// `POST` anything: a new token (`expires_in: 3600`).
    TokenEndpoint(Arc<Tokens>),
    /// `200` for a valid `Authorization: Bearer bench-tok-N`, else `401`.
    Revocable(Arc<Tokens>),
    /// `200 ok`, but a 1 MiB body for a path starting with `/big` (the soak's clients
    /// that leave in the middle of a response).
    Sized,
}

/// Body of `/big` on [`Behaviour::Sized`].
pub const BIG_BODY: usize = 1 << 20;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
const UNAUTHORIZED: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\nContent-Length: 0\r\n\r\n";

/// A server running on its own thread (single-threaded runtime) until dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start a server on `addr` (port 0 picks one) on a thread of its own.
pub fn start(addr: SocketAddr, behaviour: Behaviour) -> io::Result<Server> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("server-{}", addr.port()))
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                tokio::select! {
                    _ = serve(listener, behaviour) => {}
                    _ = rx => {}
                }
            });
        })?;
    Ok(Server {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// Serve forever on this thread (the `upstream` subcommand: the fast upstream as a
/// process of its own, so its CPU is not the harness's).
pub fn serve_blocking(addr: SocketAddr, behaviour: Behaviour) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        serve(listener, behaviour).await;
        Ok(())
    })
}

async fn serve(listener: TcpListener, behaviour: Behaviour) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let b = behaviour.clone();
        tokio::spawn(async move {
            let _ = connection(stream, b).await;
        });
    }
}

/// One parsed request head: what the servers need of it.
struct Head {
    len: usize,
    body: usize,
    close: bool,
    /// The number N of an `Authorization: Bearer bench-tok-N`, if any.
    token: Option<u64>,
    /// The path starts with `/big`.
    big: bool,
    /// On a [`crate::peers::SEEN_PATHS`] path: `AUTHORIZATION|PROXY_AUTHORIZATION|DPOP`.
    seen: Option<String>,
    /// The request carries a `DPoP` proof (a token request for a DPoP-bound credential
    /// is answered with `token_type: DPoP`).
    dpop: bool,
}

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let mut body = 0usize;
            let mut close = req.version == Some(0);
            let mut token = None;
            let mut dpop = false;
            for h in req.headers.iter() {
                dpop |= h.name.eq_ignore_ascii_case("dpop");
                if h.name.eq_ignore_ascii_case("content-length") {
                    body = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                } else if h.name.eq_ignore_ascii_case("connection") {
                    if h.value.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                } else if h.name.eq_ignore_ascii_case("authorization") {
                    token = h
                        .value
                        .strip_prefix(b"Bearer bench-tok-")
                        .and_then(|n| std::str::from_utf8(n).ok())
                        .and_then(|n| n.parse().ok());
                }
            }
            let big = req.path.is_some_and(|p| p.starts_with("/big"));
            let seen = req
                .path
                .filter(|p| crate::peers::SEEN_PATHS.contains(p))
                .map(|_| {
                    let value = |name: &str| {
                        req.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).into_owned())
                            .unwrap_or_default()
                    };
                    format!(
                        "{}|{}|{}",
                        value("authorization"),
                        value("proxy-authorization"),
                        value("dpop")
                    )
                });
            Ok(Some(Head {
                len,
                body,
                close,
                token,
                big,
                seen,
                dpop,
            }))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
}

async fn connection(mut s: TcpStream, behaviour: Behaviour) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    loop {
        // Answer every complete request in the buffer (pipelining), then write once.
        let mut close = false;
        while let Some(head) = parse_head(&buf)? {
            if buf.len() < head.len + head.body {
                break;
            }
            buf.drain(..head.len + head.body);
            close = head.close;
            match &behaviour {
                Behaviour::Fast => match &head.seen {
                    None => out.extend_from_slice(OK),
                    Some(text) => out.extend_from_slice(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        )
                        .as_bytes(),
                    ),
                },
                Behaviour::Sized if head.big => {
                    out.extend_from_slice(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY}\r\n\r\n").as_bytes(),
                    );
                    out.resize(out.len() + BIG_BODY, b'x');
                }
                Behaviour::Sized => out.extend_from_slice(OK),
                Behaviour::Revocable(t) => {
                    let delay = t.upstream_delay_us.load(Ordering::Relaxed);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_micros(delay)).await;
                    }
                    let ok = head
                        .token
                        .is_some_and(|n| n >= t.min_valid.load(Ordering::SeqCst));
                    if ok {
                        t.accepted.fetch_add(1, Ordering::Relaxed);
                        out.extend_from_slice(OK);
                    } else {
                        t.rejected.fetch_add(1, Ordering::Relaxed);
                        out.extend_from_slice(UNAUTHORIZED);
                    }
                }
                Behaviour::TokenEndpoint(t) => {
                    let delay = t.delay_us.load(Ordering::Relaxed);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_micros(delay)).await;
                    }
                    let attempt = t.attempts.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = if permille(attempt)
                        < t.fail_permille.load(Ordering::Relaxed)
                    {
                        t.failed.fetch_add(1, Ordering::SeqCst);
                        (
                            "503 Service Unavailable",
                            format!("{{\"error\":\"{INJECTED_FAILURE}\"}}"),
                        )
                    } else {
                        let n = t.issued.fetch_add(1, Ordering::SeqCst) + 1;
                        let expires_in = match t.expires_in.load(Ordering::Relaxed) {
                            0 => 3600,
                            s => s,
                        };
                        let kind = if head.dpop { "DPoP" } else { "Bearer" };
                        (
                            "200 OK",
                            format!(
                                "{{\"access_token\":\"bench-tok-{n}\",\"token_type\":\"{kind}\",\"expires_in\":{expires_in}}}"
                            ),
                        )
                    };
                    out.extend_from_slice(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                }
            }
            if close {
                break;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_authorization_only_on_seen_paths() {
        let h = parse_head(
            b"GET /inject/_seen HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer bench-tok-3\r\n\r\n",
        )
        .expect("parses")
        .expect("complete");
        assert_eq!(h.seen.as_deref(), Some("Bearer bench-tok-3||"));
        assert_eq!(h.token, Some(3));
        let h = parse_head(
            b"GET /inject/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer bench-tok-3\r\n\r\n",
        )
        .expect("parses")
        .expect("complete");
        assert_eq!(h.seen, None);
        let h = parse_head(b"GET /_seen HTTP/1.1\r\nProxy-Authorization: Basic x\r\n\r\n")
            .expect("parses")
            .expect("complete");
        assert_eq!(h.seen.as_deref(), Some("|Basic x|"));
    }
}
