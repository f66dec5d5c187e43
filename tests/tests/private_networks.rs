//! Without `allow_private_networks: true`, upstreams on loopback, private, link-local or
//! metadata addresses are refused with 403 `private_address` before any connection.

use tollgate_tests::{curl_via, EchoServer, RawConn, RecordingUpstream, Tollgate};

#[tokio::test(flavor = "multi_thread")]
async fn loopback_ip_is_refused_by_default() {
    let up = RecordingUpstream::start().await;
    // No allow_private_networks key at all: the default is false.
    let tg = Tollgate::start(
        "routes:
  - name: local
    match: { hosts: [\"127.0.0.1:*\"] }
    action: pass
",
    )
    .await;
    let resp = curl_via(
        &tg.proxy_url(),
        &format!("http://127.0.0.1:{}/x", up.port()),
        &[],
    )
    .await;
    resp.assert_error(403, "private_address", Some("local"));
    assert_eq!(
        up.connections(),
        0,
        "the proxy must not dial a refused address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn localhost_name_is_refused_after_resolution() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(
        "allow_private_networks: false
routes:
  - name: by-name
    match: { hosts: [\"localhost:*\"] }
    action: pass
",
    )
    .await;
    let resp = curl_via(
        &tg.proxy_url(),
        &format!("http://localhost:{}/x", up.port()),
        &[],
    )
    .await;
    resp.assert_error(403, "private_address", Some("by-name"));
    assert_eq!(up.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_override_to_loopback_or_metadata_is_refused() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: false
routes:
  - name: sneaky
    match: {{ hosts: [api.sneaky.test] }}
    action: pass
    upstream: http://127.0.0.1:{}
  - name: sneaky-v6
    match: {{ hosts: [v6.sneaky.test] }}
    action: pass
    upstream: http://[::1]:{}
  - name: metadata
    match: {{ hosts: [meta.test] }}
    action: pass
    upstream: http://169.254.169.254
",
        up.port(),
        up.port()
    ))
    .await;
    curl_via(&tg.proxy_url(), "http://api.sneaky.test/x", &[])
        .await
        .assert_error(403, "private_address", Some("sneaky"));
    curl_via(&tg.proxy_url(), "http://v6.sneaky.test/x", &[])
        .await
        .assert_error(403, "private_address", Some("sneaky-v6"));
    assert_eq!(up.connections(), 0);
    // Never actually dialled: the answer is the proxy's own 403, not a timeout or 502.
    curl_via(&tg.proxy_url(), "http://meta.test/latest/meta-data/", &[])
        .await
        .assert_error(403, "private_address", Some("metadata"));
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_to_loopback_is_refused() {
    let echo = EchoServer::start().await;
    let tg = Tollgate::start(&format!(
        "routes:
  - name: tunnel
    match: {{ hosts: [\"127.0.0.1:{}\"] }}
    action: pass
",
        echo.port()
    ))
    .await;
    let mut conn = RawConn::connect(tg.proxy).await;
    let target = format!("127.0.0.1:{}", echo.port());
    conn.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await;
    conn.read_response("CONNECT")
        .await
        .assert_error(403, "private_address", Some("tunnel"));
    assert_eq!(echo.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_private_networks_true_permits_loopback() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(
        "allow_private_networks: true
routes:
  - name: local
    match: { hosts: [\"127.0.0.1:*\", \"localhost:*\"] }
    action: pass
",
    )
    .await;
    for host in ["127.0.0.1", "localhost"] {
        let resp = curl_via(
            &tg.proxy_url(),
            &format!("http://{host}:{}/ok", up.port()),
            &[],
        )
        .await;
        assert_eq!(resp.status, 200, "{host}: {resp:?}");
    }
    assert_eq!(up.requests().len(), 2);
}
