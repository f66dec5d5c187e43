//! Forward-proxy use (`HTTP_PROXY`): real clients send absolute-form requests; the upstream
//! must receive origin-form (`/path?q`), a correct `Host: host:port`, and the body.

use tollgate_tests::{
    curl_via, node, python, ClientResponse, RawConn, RecordingUpstream, Tollgate,
};

const CONFIG: &str = "allow_private_networks: true
routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
";

/// The upstream saw exactly one more request: origin-form target, Host = authority.
#[track_caller]
fn assert_forwarded(
    up: &RecordingUpstream,
    resp: &ClientResponse,
    method: &str,
    target: &str,
    body: &str,
    client: &str,
) {
    assert_eq!(
        resp.status, 200,
        "{client}: expected the upstream's 200, got {resp:?}"
    );
    assert_eq!(
        resp.header("x-recorded-by"),
        Some("tollgate-tests"),
        "{client}: response should come from the upstream: {resp:?}"
    );
    assert_eq!(resp.json()["target"], target, "{client}: echo body");
    let req = up.requests().pop().expect("the upstream saw a request");
    assert_eq!(req.method, method, "{client}");
    assert_eq!(
        req.target, target,
        "{client}: upstream must get origin-form, not the absolute URL"
    );
    let host = format!("127.0.0.1:{}", up.port());
    assert_eq!(
        req.header_all("host"),
        vec![host.as_str()],
        "{client}: exactly one Host, the requested authority"
    );
    assert_eq!(req.body_text(), body, "{client}: body");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_get_and_post() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let url = format!("http://127.0.0.1:{}/path/sub?q=1&r=two", up.port());
    let resp = curl_via(&tg.proxy_url(), &url, &[]).await;
    assert_forwarded(&up, &resp, "GET", "/path/sub?q=1&r=two", "", "curl GET");

    let url = format!("http://127.0.0.1:{}/submit", up.port());
    let resp = curl_via(
        &tg.proxy_url(),
        &url,
        &[
            "-d",
            r#"{"amount":42}"#,
            "-H",
            "Content-Type: application/json",
        ],
    )
    .await;
    assert_forwarded(
        &up,
        &resp,
        "POST",
        "/submit",
        r#"{"amount":42}"#,
        "curl POST",
    );
    let req = up.requests().pop().expect("request");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("content-length"), Some("13"));
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_large_body_is_forwarded_intact() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    // 200 KiB: larger than any retry buffer, and curl sends `Expect: 100-continue`.
    let body: String = (0..200 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let body_file = tg.dir().join("body.txt");
    std::fs::write(&body_file, &body).expect("write body");
    let url = format!("http://127.0.0.1:{}/upload", up.port());
    let data = format!("@{}", body_file.display());
    let resp = curl_via(
        &tg.proxy_url(),
        &url,
        &["--data-binary", &data, "-X", "PUT"],
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let req = up.single_request();
    assert_eq!(req.method, "PUT");
    assert_eq!(req.target, "/upload");
    assert_eq!(req.body.len(), body.len());
    assert!(req.body == body.as_bytes(), "body corrupted in transit");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_urllib_get_and_post() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let url = format!("http://127.0.0.1:{}/py/urllib?x=%2F", up.port());
    let resp = python("py_urllib.py", &[&url], &tg.proxy_url()).await;
    assert_forwarded(&up, &resp, "GET", "/py/urllib?x=%2F", "", "urllib GET");
    let resp = python(
        "py_urllib.py",
        &[&url, "--method", "POST", "--data", "a=1&b=2"],
        &tg.proxy_url(),
    )
    .await;
    assert_forwarded(
        &up,
        &resp,
        "POST",
        "/py/urllib?x=%2F",
        "a=1&b=2",
        "urllib POST",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_get_and_post() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let url = format!("http://127.0.0.1:{}/py/requests?y=2", up.port());
    let resp = python("py_requests.py", &[&url], &tg.proxy_url()).await;
    assert_forwarded(&up, &resp, "GET", "/py/requests?y=2", "", "requests GET");
    let resp = python(
        "py_requests.py",
        &[&url, "--method", "POST", "--data", r#"{"k":"v"}"#],
        &tg.proxy_url(),
    )
    .await;
    assert_forwarded(
        &up,
        &resp,
        "POST",
        "/py/requests?y=2",
        r#"{"k":"v"}"#,
        "requests POST",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_global_agent_get_and_post() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let url = format!("http://127.0.0.1:{}/node/ga?z=3", up.port());
    let resp = node("node_global_agent.mjs", &[&url], &tg.proxy_url()).await;
    assert_forwarded(&up, &resp, "GET", "/node/ga?z=3", "", "global-agent GET");
    let resp = node(
        "node_global_agent.mjs",
        &[&url, "POST", r#"{"n":1}"#],
        &tg.proxy_url(),
    )
    .await;
    assert_forwarded(
        &up,
        &resp,
        "POST",
        "/node/ga?z=3",
        r#"{"n":1}"#,
        "global-agent POST",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_undici_proxy_agent_without_tunnel_get_and_post() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let url = format!("http://127.0.0.1:{}/node/undici", up.port());
    let resp = node("node_undici.mjs", &[&url], &tg.proxy_url()).await;
    assert_forwarded(&up, &resp, "GET", "/node/undici", "", "undici GET");
    let resp = node(
        "node_undici.mjs",
        &[&url, "POST", r#"{"n":2}"#],
        &tg.proxy_url(),
    )
    .await;
    assert_forwarded(
        &up,
        &resp,
        "POST",
        "/node/undici",
        r#"{"n":2}"#,
        "undici POST",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_absolute_form_without_host_gets_a_host_upstream() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(
        format!(
            "GET http://127.0.0.1:{}/old?v=1 HTTP/1.0\r\n\r\n",
            up.port()
        )
        .as_bytes(),
    )
    .await;
    let resp = conn.read_response("GET").await;
    assert_eq!(resp.status, 200, "{resp:?} {}", resp.body_text());
    let req = up.single_request();
    assert_eq!(req.target, "/old?v=1");
    assert_eq!(
        req.header("host"),
        Some(format!("127.0.0.1:{}", up.port()).as_str()),
        "the proxy must supply Host for a Host-less request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connection_carries_several_absolute_form_requests() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    for i in 0..3 {
        let req = format!(
            "GET http://127.0.0.1:{port}/ka/{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
            port = up.port()
        );
        conn.send(req.as_bytes()).await;
        let resp = conn.read_response("GET").await;
        assert_eq!(resp.status, 200, "request {i}: {resp:?}");
        assert_eq!(resp.json()["target"], format!("/ka/{i}"));
    }
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, vec!["/ka/0", "/ka/1", "/ka/2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_status_and_headers_reach_the_client() {
    let up = RecordingUpstream::start().await;
    up.set_reply(tollgate_tests::Reply {
        status: 404,
        headers: vec![("X-Upstream-Says".into(), "hello".into())],
    });
    let tg = Tollgate::start(CONFIG).await;
    let url = format!("http://127.0.0.1:{}/missing", up.port());
    let resp = curl_via(&tg.proxy_url(), &url, &[]).await;
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(resp.header("x-upstream-says"), Some("hello"));
    assert!(
        resp.header("tollgate-error").is_none(),
        "an upstream status is not a proxy error: {resp:?}"
    );
    assert_eq!(resp.json()["target"], "/missing");
}
