//! Failures the proxy reports for an upstream it cannot use: `upstream_unreachable` (502)
//! with the route's name; a caller's secret or the credential's secret never shows up in
//! the proxy's output or errors.

use tollgate_tests::{curl_via, raw, Launch, RecordingUpstream, Tollgate};

#[tokio::test(flavor = "multi_thread")]
async fn closed_upstream_port_is_502_upstream_unreachable() {
    // Port 9 (discard) on loopback: privileged, and nothing here listens on it, so no
    // parallel test can be given it by the kernel either.
    let closed = 9;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: gone
    match: {{ hosts: [gone.test] }}
    action: pass
    upstream: http://127.0.0.1:{closed}
"
    ))
    .await;
    curl_via(&tg.proxy_url(), "http://gone.test/x", &[])
        .await
        .assert_error(502, "upstream_unreachable", Some("gone"));
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_secret_never_appears_in_output_or_error_bodies() {
    const SECRET: &str = "run-time-s3cret-value-5521";
    let up = RecordingUpstream::start().await;
    // The token endpoint is a closed loopback port, so no token can be had: the inject
    // route must fail with token_unavailable (now and once tokens are implemented).
    let tg = Tollgate::launch(
        Launch::new().env("RUST_LOG", "debug"),
        &format!(
            "allow_private_networks: true
credentials:
  idp:
    token_url: http://127.0.0.1:9/token
    client_id: tests-client
    client_secret: {SECRET}
routes:
  - name: needs-token
    match: {{ hosts: [inject.test] }}
    action: inject
    credential: idp
    upstream: http://127.0.0.1:{}
",
            up.port()
        ),
    )
    .await;
    let resp = raw::request(
        tg.proxy,
        "GET",
        b"GET http://inject.test/x HTTP/1.1\r\nHost: inject.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    resp.assert_error(502, "token_unavailable", Some("needs-token"));
    assert!(!resp.body_text().contains(SECRET), "{}", resp.body_text());
    assert!(
        up.requests().is_empty(),
        "nothing may reach an inject upstream without a token"
    );
    let mut tg = tg;
    tg.stop();
    let output = tg.output();
    assert!(
        !output.contains(SECRET),
        "the secret appeared in the proxy's output:\n{output}"
    );
}
