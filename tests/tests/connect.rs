//! `CONNECT host:port`: tunnelled untouched where a `pass` route matches host and port;
//! refused (403) for inject routes (`connect_not_allowed`), deny routes and no route.

use tollgate_tests::{
    curl_via, node, python, tempdir, EchoServer, RawConn, RecordingUpstream, TestCa, Tollgate,
};

struct Setup {
    echo: EchoServer,
    plain: RecordingUpstream,
    tls: RecordingUpstream,
    ca_file: std::path::PathBuf,
    tg: Tollgate,
}

async fn setup() -> Setup {
    let echo = EchoServer::start().await;
    let plain = RecordingUpstream::start().await;
    let ca = TestCa::new("connect tests CA");
    let tls = RecordingUpstream::start_tls(&ca, &["localhost", "127.0.0.1"]).await;
    let dir = tempdir();
    ca.write_pem(dir.path(), "ca.pem");
    let tg = Tollgate::start_in(
        dir,
        &format!(
            "allow_private_networks: true
credentials:
  idp:
    token_url: http://127.0.0.1:9/token
    client_id: tests
    client_secret: not-used-here
routes:
  - name: tunnel-echo
    match: {{ hosts: [\"127.0.0.1:{echo}\"] }}
    action: pass
  - name: tunnel-plain
    match: {{ hosts: [\"127.0.0.1:{plain}\"] }}
    action: pass
  - name: tunnel-tls
    match: {{ hosts: [\"localhost:{tls}\"] }}
    action: pass
  - name: needs-token
    match: {{ hosts: [inject.test] }}
    action: inject
    credential: idp
  - name: blocked
    match: {{ hosts: [blocked.test] }}
    action: deny
",
            echo = echo.port(),
            plain = plain.port(),
            tls = tls.port(),
        ),
    )
    .await;
    let ca_file = tg.dir().join("ca.pem");
    Setup {
        echo,
        plain,
        tls,
        ca_file,
        tg,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_carries_bytes_both_ways_including_bytes_sent_with_the_head() {
    let s = setup().await;
    let target = format!("127.0.0.1:{}", s.echo.port());
    let mut conn = RawConn::connect(s.tg.proxy).await;
    // Head and first payload in ONE write: the proxy may read them in one go.
    let mut first = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
    first.extend_from_slice(b"early-bytes-after-head");
    conn.send(&first).await;
    let resp = conn.read_response("CONNECT").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        conn.read_exact(22).await,
        b"early-bytes-after-head",
        "bytes sent right after the CONNECT head were lost or altered"
    );
    // A larger payload, both ways, byte for byte (in steps, so no buffer can fill up).
    let big = pattern(256 * 1024);
    for chunk in big.chunks(16 * 1024) {
        conn.send(chunk).await;
        assert!(
            conn.read_exact(chunk.len()).await == chunk,
            "payload altered"
        );
    }
    assert_eq!(s.echo.connections(), 1);
    assert_eq!(s.echo.bytes_received(), 22 + big.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_connect_without_headers_works() {
    // What Python's http.client sends: no Host, no other header.
    let s = setup().await;
    let mut conn = RawConn::connect(s.tg.proxy).await;
    conn.send(format!("CONNECT 127.0.0.1:{} HTTP/1.0\r\n\r\n", s.echo.port()).as_bytes())
        .await;
    let resp = conn.read_response("CONNECT").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    conn.send(b"ping over http/1.0 tunnel").await;
    assert_eq!(conn.read_exact(25).await, b"ping over http/1.0 tunnel");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_with_connection_close_still_tunnels() {
    // Node undici sends `connection: close` and `proxy-connection: keep-alive` on CONNECT.
    let s = setup().await;
    let target = format!("127.0.0.1:{}", s.echo.port());
    let mut conn = RawConn::connect(s.tg.proxy).await;
    conn.send(
        format!(
            "CONNECT {target} HTTP/1.1\r\nhost: {target}\r\nconnection: close\r\n\
             proxy-connection: keep-alive\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let resp = conn.read_response("CONNECT").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    conn.send(b"after close header").await;
    assert_eq!(conn.read_exact(18).await, b"after close header");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_urllib_https_through_the_proxy() {
    let s = setup().await;
    let url = format!("https://localhost:{}/py-tls?a=1", s.tls.port());
    let ca = s.ca_file.display().to_string();
    let resp = python("py_urllib.py", &[&url, "--cafile", &ca], &s.tg.proxy_url()).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let req = s.tls.single_request();
    assert_eq!(req.target, "/py-tls?a=1");
    assert_eq!(req.sni.as_deref(), Some("localhost"), "TLS is end to end");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_https_through_the_proxy() {
    let s = setup().await;
    let url = format!("https://localhost:{}/requests-tls", s.tls.port());
    let ca = s.ca_file.display().to_string();
    let resp = python(
        "py_requests.py",
        &[&url, "--cafile", &ca],
        &s.tg.proxy_url(),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(s.tls.single_request().target, "/requests-tls");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_proxytunnel_to_https_upstream_end_to_end() {
    let s = setup().await;
    let url = format!("https://localhost:{}/curl-tls", s.tls.port());
    let ca = s.ca_file.display().to_string();
    let resp = curl_via(&s.tg.proxy_url(), &url, &["-p", "--cacert", &ca]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["target"], "/curl-tls");
    let req = s.tls.single_request();
    assert_eq!(req.target, "/curl-tls");
    assert_eq!(
        req.header("host"),
        Some(format!("localhost:{}", s.tls.port()).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_proxytunnel_plain_http_inside_the_tunnel() {
    let s = setup().await;
    let url = format!("http://127.0.0.1:{}/inside?t=1", s.plain.port());
    let resp = curl_via(&s.tg.proxy_url(), &url, &["-p"]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(s.plain.single_request().target, "/inside?t=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_undici_default_agent_tunnels_plain_http() {
    let s = setup().await;
    let url = format!("http://127.0.0.1:{}/undici-tunnel", s.plain.port());
    let resp = node("node_undici.mjs", &[&url, "--tunnel"], &s.tg.proxy_url()).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(s.plain.single_request().target, "/undici-tunnel");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_to_an_inject_route_is_refused() {
    let s = setup().await;
    let mut conn = RawConn::connect(s.tg.proxy).await;
    conn.send(b"CONNECT inject.test:443 HTTP/1.1\r\nHost: inject.test:443\r\n\r\n")
        .await;
    let resp = conn.read_response("CONNECT").await;
    let body = resp.assert_error(403, "connect_not_allowed", Some("needs-token"));
    let message = body["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        message.contains("tls") || message.contains("http://"),
        "the reason should say the token cannot be added inside TLS: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_with_no_matching_route_is_no_route() {
    let s = setup().await;
    let stray = EchoServer::start().await;
    for target in [
        format!("127.0.0.1:{}", stray.port()),
        "nowhere.test:443".to_string(),
    ] {
        let mut conn = RawConn::connect(s.tg.proxy).await;
        conn.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await;
        conn.read_response("CONNECT")
            .await
            .assert_error(403, "no_route", None);
    }
    assert_eq!(stray.connections(), 0, "a refused CONNECT must not dial");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_to_a_deny_route_is_refused_with_its_name() {
    let s = setup().await;
    let mut conn = RawConn::connect(s.tg.proxy).await;
    conn.send(b"CONNECT blocked.test:443 HTTP/1.1\r\nHost: blocked.test:443\r\n\r\n")
        .await;
    let resp = conn.read_response("CONNECT").await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert!(resp.header("tollgate-error").is_some(), "{resp:?}");
    assert_eq!(resp.json()["route"], "blocked");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_https_to_an_inject_route_gets_the_403_at_connect() {
    let s = setup().await;
    let out =
        tollgate_tests::clients::try_curl(&["-x", &s.tg.proxy_url(), "https://inject.test/", "-v"])
            .await;
    // curl fails the transfer (the tunnel was refused) and reports the proxy's 403.
    let err = out.expect_err("curl must fail when the CONNECT is refused");
    assert!(err.contains("403"), "curl should report the 403: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnels_are_counted_by_mode() {
    let s = setup().await;
    let target = format!("127.0.0.1:{}", s.echo.port());
    let mut conn = RawConn::connect(s.tg.proxy).await;
    conn.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await;
    assert_eq!(conn.read_response("CONNECT").await.status, 200);
    drop(conn);
    let mut refused = RawConn::connect(s.tg.proxy).await;
    refused
        .send(b"CONNECT inject.test:443 HTTP/1.1\r\nHost: inject.test:443\r\n\r\n")
        .await;
    refused.read_response("CONNECT").await.assert_error(
        403,
        "connect_not_allowed",
        Some("needs-token"),
    );
    let scrape = s.tg.scrape().await;
    let count = |route: &str, mode: &str| {
        scrape.sum(
            "tollgate_tunnels_total",
            &[("route", route), ("mode", mode)],
        )
    };
    assert_eq!(count("tunnel-echo", "tunnel"), 1.0, "{}", scrape.text);
    assert_eq!(count("needs-token", "refused"), 1.0, "{}", scrape.text);
}
