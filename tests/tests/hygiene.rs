//! Header hygiene: `Proxy-Authorization` and hop-by-hop headers (RFC 9110 §7.6.1: the
//! fixed set plus every header named in `Connection`) never reach the upstream; ordinary
//! headers do, in order, duplicates included.

use tollgate_tests::{raw, RecordingUpstream, Reply, Tollgate};

const CONFIG: &str = "allow_private_networks: true
routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
";

const DROPPED: &[&str] = &[
    "proxy-authorization",
    "x-foo",
    "keep-alive",
    "te",
    "trailer",
    "proxy-connection",
];

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_and_proxy_headers_are_not_forwarded() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let host = format!("127.0.0.1:{}", up.port());
    let request = format!(
        "GET http://{host}/hygiene HTTP/1.1\r\n\
         Host: {host}\r\n\
         Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
         Connection: close, X-Foo\r\n\
         X-Foo: must-not-pass\r\n\
         Keep-Alive: timeout=5, max=100\r\n\
         TE: trailers\r\n\
         Trailer: X-Checksum\r\n\
         Proxy-Connection: keep-alive\r\n\
         X-Ordinary: kept\r\n\
         Authorization: Bearer callers-own-token\r\n\
         X-Multi: first\r\n\
         X-Multi: second\r\n\
         User-Agent: hygiene-test/1\r\n\
         Accept: application/json\r\n\
         \r\n"
    );
    let resp = raw::request(tg.proxy, "GET", request.as_bytes()).await;
    assert_eq!(resp.status, 200, "{resp:?} {}", resp.body_text());
    let req = up.single_request();
    for name in DROPPED {
        assert!(
            !req.has_header(name),
            "{name} was forwarded upstream: {:#?}",
            req.headers
        );
    }
    // The caller's `Connection: close, X-Foo` is hop-by-hop too: whatever the proxy sends
    // upstream about its own connection, it must not name X-Foo.
    for v in req.header_all("connection") {
        assert!(
            !v.to_ascii_lowercase().contains("x-foo"),
            "Connection upstream still names X-Foo: {v}"
        );
    }
    assert_eq!(req.header("x-ordinary"), Some("kept"));
    assert_eq!(
        req.header("authorization"),
        Some("Bearer callers-own-token"),
        "a pass route forwards the caller's own Authorization"
    );
    assert_eq!(req.header_all("x-multi"), vec!["first", "second"]);
    assert_eq!(req.header("user-agent"), Some("hygiene-test/1"));
    assert_eq!(req.header("accept"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_header_is_not_forwarded() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let host = format!("127.0.0.1:{}", up.port());
    let request = format!(
        "GET http://{host}/upgrade HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: h2c\r\n\
         X-Kept: yes\r\n\
         Connection: close\r\n\
         \r\n"
    );
    let resp = raw::request(tg.proxy, "GET", request.as_bytes()).await;
    assert_eq!(resp.status, 200, "{resp:?} {}", resp.body_text());
    let req = up.single_request();
    assert!(
        !req.has_header("upgrade"),
        "Upgrade was forwarded: {:#?}",
        req.headers
    );
    assert_eq!(req.header("x-kept"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_requests_get_the_same_hygiene() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let host = format!("127.0.0.1:{}", up.port());
    let request = format!(
        "GET /gw-hygiene HTTP/1.1\r\n\
         Host: {host}\r\n\
         Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
         Connection: keep-alive, X-Private\r\n\
         X-Private: secret-hop\r\n\
         Proxy-Connection: keep-alive\r\n\
         X-Ordinary: kept\r\n\
         \r\n"
    );
    let resp = raw::request(tg.proxy, "GET", request.as_bytes()).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let req = up.single_request();
    for name in ["proxy-authorization", "x-private", "proxy-connection"] {
        assert!(
            !req.has_header(name),
            "{name} forwarded: {:#?}",
            req.headers
        );
    }
    assert_eq!(req.header("x-ordinary"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_in_the_response_are_not_passed_back() {
    let up = RecordingUpstream::start().await;
    up.set_reply(Reply {
        status: 200,
        headers: vec![
            ("Connection".into(), "X-Up-Private".into()),
            ("X-Up-Private".into(), "hop".into()),
            ("X-Up-Public".into(), "end-to-end".into()),
        ],
    });
    let tg = Tollgate::start(CONFIG).await;
    let host = format!("127.0.0.1:{}", up.port());
    let resp = raw::request(
        tg.proxy,
        "GET",
        format!("GET http://{host}/r HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("x-up-public"), Some("end-to-end"));
    assert!(
        resp.header("x-up-private").is_none(),
        "a header the upstream named in Connection reached the client: {:?}",
        resp.headers
    );
}
