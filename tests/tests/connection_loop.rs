//! The connection loop's checklist (issue 12) where the differential test does not reach:
//! retrying a failed reused upstream connection (once, idempotent methods only), errors
//! after the response started, the reuse rules, timeouts, and SIGTERM with both an idle
//! keep-alive client and a request in flight.

use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tollgate_tests::{RawConn, RecordingUpstream, Scripted, SlowUpstream, Tollgate, SLOW_BODY};

fn config(extra: &str) -> String {
    format!(
        "allow_private_networks: true
{extra}routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
"
    )
}

fn get(up: &RecordingUpstream, path: &str) -> String {
    let host = up.addr();
    format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

fn post(up: &RecordingUpstream, path: &str, body: &str) -> String {
    let host = up.addr();
    format!(
        "POST http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `HTTP/1.1 200` with a `Content-Length` body: a response that allows reuse.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn targets(up: &RecordingUpstream) -> Vec<String> {
    up.requests().into_iter().map(|r| r.target).collect()
}

/// An upstream that answers every request and then closes the connection without saying
/// so (no `Connection: close`): the proxy keeps it for the next request, which fails.
async fn closing_upstream() -> RecordingUpstream {
    let up = RecordingUpstream::start().await;
    up.set_responder(|r| {
        Some(Scripted {
            pieces: vec![ok(&format!("answer to {}", r.target))],
            close: true,
        })
    });
    up
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_on_a_reused_connection_the_upstream_closed_is_retried_on_a_fresh_one() {
    let up = closing_upstream().await;
    let tg = Tollgate::start(&config("")).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    // Pipelined, so that the second request is on hand before the proxy can notice the
    // close: it goes out on the kept connection, which the upstream has closed.
    conn.send(format!("{}{}", get(&up, "/first"), get(&up, "/second")).as_bytes())
        .await;
    let first = conn.read_response("GET").await;
    let second = conn.read_response("GET").await;
    assert_eq!(
        (first.status, first.body_text().as_str()),
        (200, "answer to /first")
    );
    assert_eq!(
        (second.status, second.body_text().as_str()),
        (200, "answer to /second"),
        "{second:?}"
    );
    assert_eq!(targets(&up), ["/first", "/second"]);
    assert_eq!(up.connections(), 2, "the retry goes on a new connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_on_a_reused_connection_the_upstream_closed_is_not_retried() {
    let up = closing_upstream().await;
    let tg = Tollgate::start(&config("")).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(format!("{}{}", get(&up, "/first"), post(&up, "/order", "pay once")).as_bytes())
        .await;
    assert_eq!(conn.read_response("GET").await.status, 200);
    let second = conn.read_response("POST").await;
    second.assert_error(502, "upstream_unreachable", Some("local"));
    assert_eq!(targets(&up), ["/first"], "the POST must not be sent twice");
    assert_eq!(up.connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_retry_is_not_retried_again() {
    // The first request on the first connection is answered; every later connection
    // closes without answering.
    let up = RecordingUpstream::start().await;
    let answered = Arc::new(AtomicUsize::new(0));
    let a = answered.clone();
    up.set_responder(move |_| {
        let pieces = if a.fetch_add(1, Ordering::SeqCst) == 0 {
            vec![ok("first")]
        } else {
            Vec::new()
        };
        Some(Scripted {
            pieces,
            close: true,
        })
    });
    let tg = Tollgate::start(&config("")).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(format!("{}{}", get(&up, "/first"), get(&up, "/second")).as_bytes())
        .await;
    assert_eq!(conn.read_response("GET").await.status, 200);
    let second = conn.read_response("GET").await;
    second.assert_error(502, "upstream_unreachable", Some("local"));
    assert_eq!(targets(&up), ["/first", "/second"]);
    assert_eq!(up.connections(), 2, "one retry, no more");
}

/// Everything the proxy sends on `conn` until it closes (bounded by the harness's read
/// timeout, far above what a correct proxy takes).
async fn all_until_closed(conn: &mut RawConn) -> String {
    let bytes = conn
        .try_read_to_end()
        .await
        .unwrap_or_else(|e| panic!("the proxy did not close the connection: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_dying_mid_body_closes_the_client_connection_without_a_second_answer() {
    let up = RecordingUpstream::start().await;
    up.set_responder(|r| {
        let head = if r.target == "/chunked" {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nten bytes.".to_vec()
        };
        Some(Scripted {
            pieces: vec![head],
            close: true,
        })
    });
    let mut tg = Tollgate::start(&config("")).await;
    for (path, body) in [("/length", "ten bytes."), ("/chunked", "5\r\nhello\r\n")] {
        let mut conn = RawConn::connect(tg.proxy).await;
        conn.send(get(&up, path).as_bytes()).await;
        let all = all_until_closed(&mut conn).await;
        assert_eq!(
            all.matches("HTTP/1.1 ").count(),
            1,
            "answered twice: {all:?}"
        );
        assert!(all.starts_with("HTTP/1.1 200 "), "{all:?}");
        assert!(
            all.ends_with(&format!("\r\n\r\n{body}")),
            "the client must get the head and the body as far as it came, then the close: {all:?}"
        );
    }
    assert!(tg.is_running(), "{}", tg.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_that_forbids_reuse_is_not_reused_and_one_that_allows_it_is() {
    // The upstream leaves every connection open, whatever its response said: only the
    // proxy's reuse rules decide whether the next request dials again.
    let up = RecordingUpstream::start().await;
    up.set_responder(|r| {
        let resp: &[u8] = match r.target.as_str() {
            "/close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            "/http10" => b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "/both" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "/http10-keep-alive" => {
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        Some(Scripted {
            pieces: vec![resp.to_vec()],
            close: false,
        })
    });
    let tg = Tollgate::start(&config("")).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    let mut expected = 0;
    for (path, reusable) in [
        ("/close", false),
        ("/http10", false),
        ("/both", false),
        ("/keep", true),
        ("/keep", true),
        ("/http10-keep-alive", true),
        ("/keep", true),
    ] {
        conn.send(get(&up, path).as_bytes()).await;
        let resp = conn.read_response("GET").await;
        assert_eq!(
            (resp.status, resp.body_text().as_str()),
            (200, "ok"),
            "{path}"
        );
        // Each request dials anew unless the previous response allowed reuse.
        expected += 1;
        assert_eq!(up.connections(), expected, "after {path}");
        if reusable {
            expected -= 1;
        }
    }
    // A client's connection going away hands its upstream connection to the pool: the
    // next client's request reuses it.
    drop(conn);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = up.connections();
    let mut other = RawConn::connect(tg.proxy).await;
    other.send(get(&up, "/keep").as_bytes()).await;
    assert_eq!(other.read_response("GET").await.status, 200);
    assert_eq!(
        up.connections(),
        before,
        "the pooled connection was not reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_request_head_gets_408_and_an_idle_client_is_closed() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&config("timeouts:\n  request_head: 1s\n  idle: 1s\n")).await;
    // Part of a head, then nothing.
    let mut stalled = RawConn::connect(tg.proxy).await;
    stalled
        .send(format!("GET http://{}/ HTTP/1.1\r\nHost: ", up.addr()).as_bytes())
        .await;
    let resp = stalled.read_response("GET").await;
    resp.assert_error(408, "request_timeout", None);
    assert_eq!(all_until_closed(&mut stalled).await, "");
    // A keep-alive client that says nothing more is closed without a word.
    let mut idle = RawConn::connect(tg.proxy).await;
    idle.send(get(&up, "/once").as_bytes()).await;
    assert_eq!(idle.read_response("GET").await.status, 200);
    assert_eq!(all_until_closed(&mut idle).await, "");
    assert!(
        up.requests().len() == 1,
        "only the complete request went upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_read_timeout_before_the_response_is_504_and_after_it_closes() {
    let slow_head = SlowUpstream::start(Duration::from_secs(3), Duration::ZERO).await;
    let slow_body = SlowUpstream::start(Duration::ZERO, Duration::from_secs(3)).await;
    let tg = Tollgate::start(&config("timeouts:\n  read: 1s\n")).await;
    let req = |port: u16| {
        format!("GET http://127.0.0.1:{port}/slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
    };
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(req(slow_head.port()).as_bytes()).await;
    conn.read_response("GET")
        .await
        .assert_error(504, "upstream_timeout", Some("local"));

    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(req(slow_body.port()).as_bytes()).await;
    let all = all_until_closed(&mut conn).await;
    assert_eq!(
        all.matches("HTTP/1.1 ").count(),
        1,
        "answered twice: {all:?}"
    );
    assert!(
        all.starts_with("HTTP/1.1 200 ") && all.ends_with(SLOW_BODY.0),
        "the first part of the body, then the close: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_an_idle_keep_alive_client_and_a_request_in_flight() {
    let up = RecordingUpstream::start().await;
    let slow = SlowUpstream::start(Duration::from_millis(1500), Duration::from_millis(500)).await;
    // A drain_timeout longer than the test waits: an idle connection holding the process
    // until it ran out would fail the test.
    let mut tg = Tollgate::start(&config("drain_timeout: 60s\n")).await;
    let mut idle = RawConn::connect(tg.proxy).await;
    idle.send(get(&up, "/before").as_bytes()).await;
    assert_eq!(idle.read_response("GET").await.status, 200);

    let proxy = tg.proxy;
    let port = slow.port();
    let in_flight = tokio::spawn(async move {
        let mut conn = RawConn::connect(proxy).await;
        conn.send(
            format!("GET http://127.0.0.1:{port}/slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let resp = conn.try_read_response("GET").await;
        let after = conn.try_read_to_end().await;
        (resp, after)
    });
    assert!(slow.wait_received(1, Duration::from_secs(10)).await);
    tg.signal(Signal::SIGTERM);

    // The idle client's connection is closed (it carried no request).
    assert_eq!(all_until_closed(&mut idle).await, "");
    let (resp, after) = in_flight.await.expect("request task");
    let resp = resp.unwrap_or_else(|e| panic!("the in-flight request was cut off: {e}"));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text(), format!("{}{}", SLOW_BODY.0, SLOW_BODY.1));
    assert_eq!(after.as_deref(), Ok(&b""[..]), "closed after its response");
    let status = tg
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the process did not exit after the in-flight request (held by the idle client?)");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(up.requests().len(), 1);
}
