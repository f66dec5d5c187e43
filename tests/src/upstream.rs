//! A recording HTTP/1.1 upstream, plain or TLS, on `127.0.0.1:0`.
//!
//! It records every request exactly as it arrived on the wire (method, request-target,
//! headers in order with their original case, decoded body and trailers, TLS SNI) and
//! answers with a JSON echo of it: 200 by default, or whatever status/headers a test sets,
//! or the exact bytes a test's [`Scripted`] responder writes.

use crate::http1::{self, BodyKind, Wire};
use crate::tls::{self, TestCa};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The request-target exactly as received (`/p?q` for origin-form).
    pub target: String,
    /// e.g. `HTTP/1.1`
    pub version: String,
    /// In wire order, original case.
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, in order.
    pub trailers: Vec<(String, String)>,
    /// SNI the client sent (TLS upstream only).
    pub sni: Option<String>,
    pub peer: SocketAddr,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        http1::header_all(&self.headers, name)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Extra response headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            status: 200,
            headers: Vec::new(),
        }
    }
}

/// A response a test writes byte for byte instead of the JSON echo: odd framing, 1xx
/// responses, trailers, a connection closed part way through.
#[derive(Debug, Clone, Default)]
pub struct Scripted {
    /// Written in order, each flushed on its own with [`Scripted::PAUSE`] between them, so
    /// that the proxy reads them apart.
    pub pieces: Vec<Vec<u8>>,
    /// Close the connection after the last piece (a close-delimited body, an upstream
    /// that gives up on a keep-alive connection, one that dies mid-body).
    pub close: bool,
}

impl Scripted {
    pub const PAUSE: std::time::Duration = std::time::Duration::from_millis(3);
}

/// Chooses the answer to a request: `None` for the usual JSON echo.
type Responder = Arc<dyn Fn(&RecordedRequest) -> Option<Scripted> + Send + Sync>;

#[derive(Default)]
struct State {
    requests: Mutex<Vec<RecordedRequest>>,
    reply: Mutex<Reply>,
    responder: Mutex<Option<Responder>>,
    connections: AtomicUsize,
}

/// The recording upstream. Stops when dropped.
pub struct RecordingUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingUpstream {
    /// Plain HTTP on 127.0.0.1, a free port.
    pub async fn start() -> RecordingUpstream {
        Self::start_inner(None).await
    }

    /// HTTPS on 127.0.0.1 with a certificate signed by `ca` for `names` (SAN).
    pub async fn start_tls(ca: &TestCa, names: &[&str]) -> RecordingUpstream {
        let config = tls::server_config(ca.leaf(names));
        Self::start_inner(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>) -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recording upstream");
        let addr = listener.local_addr().expect("upstream local addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    match tls {
                        None => serve(stream, peer, None, st).await,
                        Some(acceptor) => {
                            // A failed handshake (the proxy rejected our certificate) is
                            // simply a connection that carried no request.
                            if let Ok(tls_stream) = acceptor.accept(stream).await {
                                let sni = tls_stream.get_ref().1.server_name().map(String::from);
                                serve(tls_stream, peer, sni, st).await;
                            }
                        }
                    }
                });
            }
        });
        RecordingUpstream { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// The only request received; panics (listing them) if there were not exactly one.
    pub fn single_request(&self) -> RecordedRequest {
        let reqs = self.requests();
        assert_eq!(
            reqs.len(),
            1,
            "expected exactly one request at the upstream, got {}: {reqs:#?}",
            reqs.len()
        );
        reqs.into_iter().next().expect("one request")
    }

    /// TCP connections accepted so far (0 proves nothing was even dialled).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Answer later requests with `status` (and the JSON echo body).
    pub fn set_status(&self, status: u16) {
        self.state.reply.lock().expect("reply lock").status = status;
    }

    /// Answer later requests with `reply`.
    pub fn set_reply(&self, reply: Reply) {
        *self.state.reply.lock().expect("reply lock") = reply;
    }

    /// Answer later requests with what `f` scripts for them (the JSON echo where it
    /// returns `None`). Requests are recorded before `f` sees them.
    pub fn set_responder(
        &self,
        f: impl Fn(&RecordedRequest) -> Option<Scripted> + Send + Sync + 'static,
    ) {
        *self.state.responder.lock().expect("responder lock") = Some(Arc::new(f));
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    sni: Option<String>,
    state: Arc<State>,
) {
    let mut wire = Wire::new(stream);
    loop {
        let head = match wire.read_head(1024 * 1024).await {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return,
        };
        let mut parts = head.start_line.splitn(3, ' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or_default().to_string();
        let Ok(kind) = http1::request_body_kind(&head.headers) else {
            let _ = wire
                .stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        if kind != BodyKind::None
            && head
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && wire
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let Ok((body, trailers)) = wire.read_body_and_trailers(kind).await else {
            return;
        };
        let close = head
            .header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
            || version == "HTTP/1.0";
        let record = RecordedRequest {
            method,
            target,
            version,
            headers: head.headers,
            body,
            trailers,
            sni: sni.clone(),
            peer,
        };
        let echo = serde_json::json!({
            "method": record.method,
            "target": record.target,
            "version": record.version,
            "headers": record.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
            "body": record.body_text(),
            "sni": record.sni,
        })
        .to_string();
        let responder = state.responder.lock().expect("responder lock").clone();
        let scripted = responder.and_then(|f| f(&record));
        state.requests.lock().expect("requests lock").push(record);
        if let Some(script) = scripted {
            for (i, piece) in script.pieces.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Scripted::PAUSE).await;
                }
                if wire.stream.write_all(piece).await.is_err() || wire.stream.flush().await.is_err()
                {
                    return;
                }
            }
            if script.close || close {
                let _ = wire.stream.shutdown().await;
                return;
            }
            continue;
        }
        let reply = state.reply.lock().expect("reply lock").clone();
        let mut response = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Recorded-By: tollgate-tests\r\n",
            reply.status,
            reason(reply.status),
            echo.len()
        );
        for (n, v) in &reply.headers {
            response.push_str(&format!("{n}: {v}\r\n"));
        }
        if close {
            response.push_str("Connection: close\r\n");
        }
        response.push_str("\r\n");
        response.push_str(&echo);
        if wire.stream.write_all(response.as_bytes()).await.is_err()
            || wire.stream.flush().await.is_err()
            || close
        {
            let _ = wire.stream.shutdown().await;
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::raw;

    #[tokio::test(flavor = "multi_thread")]
    async fn records_target_headers_and_body_verbatim() {
        let up = RecordingUpstream::start().await;
        let mut conn = raw::RawConn::connect(up.addr()).await;
        conn.send(
            b"POST /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h.test:81\r\nX-One: 1\r\nx-one: 2\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        let resp = conn.read_response("POST").await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["target"], "/a/b?x=1&y=%20");
        // Keep-alive: a second, chunked request on the same connection.
        conn.send(b"PUT http://abs.test/z HTTP/1.1\r\nHost: abs.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").await;
        let resp2 = conn.read_response("PUT").await;
        assert_eq!(resp2.status, 200);
        let reqs = up.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].target, "/a/b?x=1&y=%20");
        assert_eq!(reqs[0].header("host"), Some("h.test:81"));
        assert_eq!(reqs[0].header_all("X-ONE"), vec!["1", "2"]);
        assert_eq!(reqs[0].headers[1].0, "X-One");
        assert_eq!(reqs[0].body, b"hello");
        assert_eq!(reqs[1].target, "http://abs.test/z");
        assert_eq!(reqs[1].body, b"abc");
        assert_eq!(up.connections(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn answers_with_the_status_a_test_sets() {
        let up = RecordingUpstream::start().await;
        up.set_reply(Reply {
            status: 503,
            headers: vec![("X-Extra".into(), "yes".into())],
        });
        let resp = raw::request(
            up.addr(),
            "GET",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(resp.status, 503);
        assert_eq!(resp.header("x-extra"), Some("yes"));
        assert_eq!(up.requests().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tls_upstream_verifies_against_the_test_ca_and_records_sni() {
        let ca = TestCa::new("harness test CA");
        let up = RecordingUpstream::start_tls(&ca, &["localhost", "127.0.0.1"]).await;
        for name in ["localhost", "127.0.0.1"] {
            let connector = tokio_rustls::TlsConnector::from(ca.client_config());
            let tcp = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
            let tls = connector
                .connect(tls::server_name(name), tcp)
                .await
                .unwrap();
            let mut wire = Wire::new(tls);
            wire.stream
                .write_all(b"GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let head = wire.read_head(65536).await.unwrap().unwrap();
            assert!(head.start_line.starts_with("HTTP/1.1 200"), "{head:?}");
        }
        let reqs = up.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].target, "/tls");
        assert_eq!(reqs[0].sni.as_deref(), Some("localhost"));
        assert_eq!(reqs[1].sni, None, "no SNI is sent for an IP literal");

        // A client that trusts a different CA must fail the handshake.
        let other = TestCa::new("another CA");
        let connector = tokio_rustls::TlsConnector::from(other.client_config());
        let tcp = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
        assert!(connector
            .connect(tls::server_name("localhost"), tcp)
            .await
            .is_err());
        assert_eq!(up.requests().len(), 2);
    }
}
