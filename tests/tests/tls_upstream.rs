//! TLS origination: a route whose `upstream` is https makes the proxy speak TLS to it
//! (SNI = the upstream host), trusting the system roots plus `upstream_ca_file`.
//!
//! The upstream's certificate comes from a CA made by the test, so it verifies only when
//! that CA is configured. `localhost` resolves to 127.0.0.1 here, so the upstream is named
//! `localhost` and its certificate carries `localhost` (and 127.0.0.1) in the SAN.

use tollgate_tests::{curl_via, tempdir, RecordingUpstream, TestCa, Tollgate};

struct Setup {
    up: RecordingUpstream,
    tg: Tollgate,
}

async fn setup() -> Setup {
    let ca = TestCa::new("tollgate tests upstream CA");
    let other = TestCa::new("some other CA");
    let up = RecordingUpstream::start_tls(&ca, &["localhost", "upstream.test", "127.0.0.1"]).await;
    let dir = tempdir();
    let ca_file = ca.write_pem(dir.path(), "upstream-ca.pem");
    let other_file = other.write_pem(dir.path(), "other-ca.pem");
    let port = up.port();
    let tg = Tollgate::start_in(
        dir,
        &format!(
            "allow_private_networks: true
routes:
  - name: tls-ok
    match: {{ hosts: [secure.test] }}
    action: pass
    upstream: https://localhost:{port}
    upstream_ca_file: {ca}
  - name: tls-untrusted
    match: {{ hosts: [untrusted.test] }}
    action: pass
    upstream: https://localhost:{port}
  - name: tls-wrong-ca
    match: {{ hosts: [wrongca.test] }}
    action: pass
    upstream: https://localhost:{port}
    upstream_ca_file: {other}
",
            ca = ca_file.display(),
            other = other_file.display(),
        ),
    )
    .await;
    Setup { up, tg }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_with_its_ca_configured_works() {
    let Setup { up, tg } = setup().await;
    let resp = curl_via(&tg.proxy_url(), "http://secure.test/hello?x=1", &[]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["target"], "/hello?x=1");
    let req = up.single_request();
    assert_eq!(req.target, "/hello?x=1", "origin-form inside TLS");
    assert_eq!(
        req.sni.as_deref(),
        Some("localhost"),
        "SNI must be the upstream's host"
    );
    assert_eq!(
        req.header("host"),
        Some(format!("localhost:{}", up.port()).as_str()),
        "Host is the upstream authority when `upstream:` is set"
    );

    let resp = curl_via(
        &tg.proxy_url(),
        "http://secure.test/post",
        &["--data-binary", "over tls"],
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let req = up.requests().pop().expect("second request");
    assert_eq!(req.method, "POST");
    assert_eq!(req.body_text(), "over tls");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_without_its_ca_fails_verification_with_502() {
    let Setup { up, tg } = setup().await;
    let resp = curl_via(&tg.proxy_url(), "http://untrusted.test/nope", &[]).await;
    resp.assert_error(502, "upstream_unreachable", Some("tls-untrusted"));
    assert!(
        up.requests().is_empty(),
        "no request may be sent over an unverified TLS connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_with_the_wrong_ca_fails_verification_with_502() {
    let Setup { up, tg } = setup().await;
    let resp = curl_via(&tg.proxy_url(), "http://wrongca.test/nope", &[]).await;
    resp.assert_error(502, "upstream_unreachable", Some("tls-wrong-ca"));
    assert!(up.requests().is_empty());
    // The trusted route still works on the same proxy afterwards.
    let resp = curl_via(&tg.proxy_url(), "http://secure.test/after", &[]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
}
