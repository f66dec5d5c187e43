//! What the connection loop must get right (issue 12), through the real binary: upstream
//! connection reuse, response framing relayed verbatim (and de-chunked for HTTP/1.0),
//! interim responses and `Expect`, pipelining, HEAD, timeouts, and the client's keep-alive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_tests::{raw, RawConn, RecordingUpstream, Tollgate};

const LOCAL: &str = "allow_private_networks: true
routes:
  - name: local
    match: { hosts: [\"127.0.0.1:*\"] }
    action: pass
";

/// An upstream that answers every request (head read up to its blank line, a
/// Content-Length body skipped) with `response`, keeping the connection; counts
/// connections and requests. Stops when dropped.
struct Scripted {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start(response: &'static [u8]) -> Scripted {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + len {
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + len);
                        r.fetch_add(1, Ordering::SeqCst);
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            port,
            connections,
            requests,
            task,
        }
    }
}

fn get(port: u16, path: &str, version: &str, extra: &str) -> Vec<u8> {
    format!("GET http://127.0.0.1:{port}{path} {version}\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_connection_reuses_one_upstream_connection() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(LOCAL).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    for i in 0..5 {
        conn.send(&get(up.port(), &format!("/r{i}"), "HTTP/1.1", ""))
            .await;
        assert_eq!(conn.read_response("GET").await.status, 200);
    }
    assert_eq!(up.requests().len(), 5);
    assert_eq!(
        up.connections(),
        1,
        "the upstream connection is pinned to the client's"
    );
    // A second client, after the first one idled long enough, takes the pooled one.
    drop(conn);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = raw::request(
        tg.proxy,
        "GET",
        &get(up.port(), "/after", "HTTP/1.1", "Connection: close\r\n"),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.connections(),
        1,
        "the released connection went to the shared pool"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(LOCAL).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    let mut both = get(up.port(), "/p1", "HTTP/1.1", "");
    both.extend(get(up.port(), "/p2", "HTTP/1.1", ""));
    conn.send(&both).await;
    assert_eq!(conn.read_response("GET").await.json()["target"], "/p1");
    assert_eq!(conn.read_response("GET").await.json()["target"], "/p2");
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_response_is_relayed_verbatim() {
    let up = Scripted::start(CHUNKED).await;
    let tg = Tollgate::start(LOCAL).await;
    let mut s = tokio::net::TcpStream::connect(tg.proxy)
        .await
        .expect("connect");
    s.write_all(&get(up.port, "/c", "HTTP/1.1", "Connection: close\r\n"))
        .await
        .expect("write");
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.expect("read");
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert_eq!(
        body, "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
        "body bytes as sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http10_client_gets_a_chunked_response_decoded_and_the_connection_closed() {
    let up = Scripted::start(CHUNKED).await;
    let tg = Tollgate::start(LOCAL).await;
    let mut s = tokio::net::TcpStream::connect(tg.proxy)
        .await
        .expect("connect");
    s.write_all(&get(
        up.port,
        "/c",
        "HTTP/1.0",
        "Connection: keep-alive\r\n",
    ))
    .await
    .expect("write");
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .expect("closed after the body")
        .expect("read");
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(head.contains("Connection: close"), "{head}");
    assert_eq!(body, "hello world");
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_keep_alive_is_honoured() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(LOCAL).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    for path in ["/a", "/b"] {
        conn.send(&get(
            up.port(),
            path,
            "HTTP/1.0",
            "Connection: keep-alive\r\n",
        ))
        .await;
        let resp = conn.read_response("GET").await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{resp:?}");
    }
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_responses_reach_http11_clients_and_expect_is_answered_by_us() {
    static EARLY: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let up = Scripted::start(EARLY).await;
    let tg = Tollgate::start(LOCAL).await;
    let mut s = tokio::net::TcpStream::connect(tg.proxy)
        .await
        .expect("connect");
    let head = format!(
        "POST http://127.0.0.1:{p}/e HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
        p = up.port
    );
    s.write_all(head.as_bytes()).await.expect("head");
    // Our 100 Continue comes before the body is sent.
    let mut first = vec![0u8; 25];
    s.read_exact(&mut first).await.expect("100 Continue");
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"body").await.expect("body");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.expect("rest");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.starts_with("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"),
        "{text}"
    );
    assert!(
        !text.contains("100 Continue"),
        "the upstream's own 100 is not relayed: {text}"
    );
    assert!(
        text.contains("HTTP/1.1 200 OK") && text.ends_with("ok"),
        "{text}"
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn head_responses_have_no_body_and_keep_the_connection() {
    static HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    let up = Scripted::start(HEAD).await;
    let tg = Tollgate::start(LOCAL).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    for _ in 0..2 {
        conn.send(
            format!(
                "HEAD http://127.0.0.1:{p}/h HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n",
                p = up.port
            )
            .as_bytes(),
        )
        .await;
        let resp = conn.read_response("HEAD").await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some("1000"));
        assert!(resp.body.is_empty());
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_gets_504_after_the_read_timeout() {
    let slow = tollgate_tests::SlowUpstream::start(Duration::from_secs(5), Duration::ZERO).await;
    let tg = Tollgate::start(&format!("{LOCAL}timeouts: {{ read: 1s }}\n")).await;
    let resp = raw::request(
        tg.proxy,
        "GET",
        &get(slow.port(), "/slow", "HTTP/1.1", "Connection: close\r\n"),
    )
    .await;
    resp.assert_error(504, "upstream_timeout", Some("local"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_chunked_upload_with_empty_chunk_extensions_arrives_intact() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(LOCAL).await;
    let mut body = Vec::new();
    let mut expect = Vec::new();
    for i in 0..300u32 {
        let piece: Vec<u8> = (0..(i % 977 + 1)).map(|j| (i + j) as u8).collect();
        body.extend_from_slice(format!("{:x};n={i}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(&piece);
        body.extend_from_slice(b"\r\n");
        expect.extend_from_slice(&piece);
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut conn = RawConn::connect(tg.proxy).await;
    let head = format!(
        "POST http://127.0.0.1:{p}/up HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nTransfer-Encoding: chunked\r\n\r\n",
        p = up.port()
    );
    conn.send(head.as_bytes()).await;
    // In small writes, so chunk boundaries fall anywhere.
    for piece in body.chunks(1000) {
        conn.send(piece).await;
    }
    assert_eq!(conn.read_response("POST").await.status, 200);
    let req = up.single_request();
    assert_eq!(req.body.len(), expect.len());
    assert!(req.body == expect, "body corrupted in transit");
}
