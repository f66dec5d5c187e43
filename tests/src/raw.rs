//! A raw-socket HTTP/1.x client: sends exactly the bytes a test writes (malformed requests,
//! CONNECT heads with payload in the same write, HTTP/1.0 without Host) and parses what
//! comes back without normalising it.

use crate::http1::{self, Wire};
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A response as received.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// e.g. `HTTP/1.1`
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Interim (1xx) responses received before this one, in order: `100`, `103`, ...
    pub interim: Vec<u16>,
}

impl RawResponse {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                self.body_text()
            )
        })
    }
}

/// One client connection with a read buffer (bytes after a response head are kept).
pub struct RawConn {
    wire: Wire<TcpStream>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        RawConn {
            wire: Wire::new(stream),
        }
    }

    /// Write all bytes in one `write_all` call.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.wire
            .stream
            .write_all(bytes)
            .await
            .expect("write to the proxy");
    }

    /// Write all bytes, or say why not (the proxy may close on a refused request while a
    /// test is still writing it).
    pub async fn try_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.wire
            .stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write to the proxy: {e}"))
    }

    /// Wait up to `t` for the proxy to send something (kept for the next read); `false`
    /// when nothing came (or the connection closed).
    pub async fn wait_for_bytes(&mut self, t: std::time::Duration) -> bool {
        use tokio::io::AsyncReadExt;
        if !self.wire.buf.is_empty() {
            return true;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(t, self.wire.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.wire.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// Half-close: no more bytes from us.
    pub async fn shutdown_write(&mut self) {
        self.wire.stream.shutdown().await.expect("shutdown(write)");
    }

    /// Read one final response to a request made with `method` (interim 1xx responses
    /// before it are listed in [`RawResponse::interim`]). `Err` describes a connection
    /// closed before a complete response, a timeout, or an unparsable response.
    pub async fn try_read_response(&mut self, method: &str) -> Result<RawResponse, String> {
        let mut interim = Vec::new();
        loop {
            let head = self
                .wire
                .read_head(1024 * 1024)
                .await?
                .ok_or_else(|| "connection closed without any response".to_string())?;
            let mut parts = head.start_line.splitn(3, ' ');
            let version = parts.next().unwrap_or_default().to_string();
            let status: u16 = parts
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|_| format!("bad status line {:?}", head.start_line))?;
            let reason = parts.next().unwrap_or_default().to_string();
            if status == 100 || (102..200).contains(&status) {
                interim.push(status);
                continue; // interim response; the real one follows
            }
            let kind = http1::response_body_kind(method, status, &head.headers)?;
            let (body, trailers) = self.wire.read_body_and_trailers(kind).await?;
            return Ok(RawResponse {
                version,
                status,
                reason,
                headers: head.headers,
                body,
                trailers,
                interim,
            });
        }
    }

    /// Like [`RawConn::try_read_response`], panicking with the reason.
    pub async fn read_response(&mut self, method: &str) -> RawResponse {
        self.try_read_response(method)
            .await
            .unwrap_or_else(|e| panic!("no complete response to {method}: {e}"))
    }

    /// Read exactly `n` tunnelled bytes (bytes already buffered after a head count).
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        self.wire
            .read_exact(n)
            .await
            .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"))
    }

    /// Read until the peer closes, or say why that failed (a reset, a timeout).
    pub async fn try_read_to_end(&mut self) -> Result<Vec<u8>, String> {
        self.wire.read_to_end().await
    }

    /// Read until the peer closes.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        self.wire
            .read_to_end()
            .await
            .unwrap_or_else(|e| panic!("reading to EOF: {e}"))
    }
}

/// Send `request` on a fresh connection and read one response to `method`.
pub async fn request(addr: SocketAddr, method: &str, request: &[u8]) -> RawResponse {
    let mut conn = RawConn::connect(addr).await;
    conn.send(request).await;
    conn.read_response(method).await
}

/// `GET path` with a Host header, on a fresh connection (used for the admin port).
pub async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    request(addr, "GET", req.as_bytes()).await
}

/// Like [`get`], but returns `Err` instead of panicking (used while polling readiness).
pub async fn try_get(addr: SocketAddr, path: &str) -> Result<RawResponse, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut conn = RawConn {
        wire: Wire::new(stream),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.wire
        .stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    conn.try_read_response("GET").await
}
