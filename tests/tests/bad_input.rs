//! Malformed or ambiguous requests are answered with our JSON `bad_request` (400),
//! nothing reaches the upstream, and the proxy keeps serving.

use tollgate_tests::{raw, RawConn, RecordingUpstream, Tollgate};

const CONFIG: &str = "allow_private_networks: true
routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
";

/// Send `bad` (with `{host}` replaced by the upstream's authority) on its own connection;
/// expect a 4xx; then a good request on a new connection must be served, and the upstream
/// must have seen only that good request.
async fn assert_rejected_then_serves(bad: &str, method: &str) -> raw::RawResponse {
    assert_rejected_bytes_then_serves(|host| bad.replace("{host}", host).into_bytes(), method).await
}

async fn assert_rejected_bytes_then_serves(
    make: impl Fn(&str) -> Vec<u8>,
    method: &str,
) -> raw::RawResponse {
    let up = RecordingUpstream::start().await;
    let mut tg = Tollgate::start(CONFIG).await;
    let host = format!("127.0.0.1:{}", up.port());
    let bad = make(&host);
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(&bad).await;
    let resp = conn.try_read_response(method).await.unwrap_or_else(|e| {
        panic!(
            "expected a 4xx, got no response ({e}) to {:?}",
            String::from_utf8_lossy(&bad[..bad.len().min(300)])
        )
    });
    assert!(
        (400..500).contains(&resp.status),
        "expected a 4xx, got {} {:?} {}",
        resp.status,
        resp.headers,
        resp.body_text()
    );
    resp.assert_error(400, "bad_request", None);
    assert!(tg.is_running(), "the proxy died:\n{}", tg.output());

    let good = raw::request(
        tg.proxy,
        "GET",
        format!("GET http://{host}/good HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(
        good.status, 200,
        "the next request was not served: {good:?}"
    );
    let seen: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        seen,
        vec!["/good"],
        "the upstream must see only the good request"
    );
    resp
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_request_line() {
    assert_rejected_then_serves("THIS IS NOT HTTP AT ALL\r\n\r\n", "GET").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_line_with_a_bad_version() {
    assert_rejected_then_serves(
        "GET http://{host}/v HTTP/7.5\r\nHost: {host}\r\n\r\n",
        "GET",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers() {
    let resp = assert_rejected_bytes_then_serves(
        |host| {
            let big = "a".repeat(100 * 1024);
            format!("GET http://{host}/big HTTP/1.1\r\nHost: {host}\r\nX-Big: {big}\r\n\r\n")
                .into_bytes()
        },
        "GET",
    )
    .await;
    assert_eq!(resp.status, 400, "oversized headers");
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_and_transfer_encoding_together() {
    // A classic smuggling shape: CL says 4 bytes, chunked says the body ends at "0".
    assert_rejected_then_serves(
        "POST http://{host}/cl-te HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_different_content_lengths() {
    assert_rejected_then_serves(
        "POST http://{host}/cl-cl HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\n\
         Content-Length: 5\r\n\r\nabcde",
        "POST",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_authority_disagrees_with_host() {
    assert_rejected_then_serves(
        "GET http://{host}/mismatch HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n",
        "GET",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_form_without_host() {
    assert_rejected_then_serves("GET /no-host HTTP/1.1\r\n\r\n", "GET").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_without_a_port() {
    assert_rejected_then_serves(
        "CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "CONNECT",
    )
    .await;
}
