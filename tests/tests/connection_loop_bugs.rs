//! Regressions found by the differential test: each failed on the data path as first
//! written, and passes since the fix in `proxy/src/conn/`.

use tollgate_tests::{RawConn, RecordingUpstream, Scripted, Tollgate};

const CONFIG: &str = "allow_private_networks: true
routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
";

/// Bug 1: after a failed upstream response (a malformed head, an unsolicited 101 with
/// bytes after it, a head cut off by the read timeout), what the upstream sent stays in
/// the connection's upstream buffer, and the next request on the same client connection,
/// sent on a fresh upstream connection, is answered from those leftovers: 502 again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upstream_response_does_not_poison_the_next_request() {
    let up = RecordingUpstream::start().await;
    up.set_responder(|r| {
        let bytes: &[u8] = match r.target.as_str() {
            "/garbage" => b"HTTP/1.1 2x0 Nonsense\r\n\r\n",
            "/switch" => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nraw bytes",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        Some(Scripted {
            pieces: vec![bytes.to_vec()],
            close: r.target != "/good",
        })
    });
    let tg = Tollgate::start(CONFIG).await;
    let host = up.addr();
    for bad in ["/garbage", "/switch"] {
        let mut conn = RawConn::connect(tg.proxy).await;
        conn.send(
            format!(
                "POST http://{host}{bad} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let resp = conn.read_response("POST").await;
        resp.assert_error(502, "upstream_protocol_error", Some("local"));
        // The 502 kept the connection: the next request on it must be served.
        conn.send(format!("GET http://{host}/good HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await;
        let next = conn.read_response("GET").await;
        assert_eq!(
            (next.status, next.body_text().as_str()),
            (200, "ok"),
            "after {bad}: {next:?} {}",
            next.body_text()
        );
    }
}
