//! Gateway use: origin-form requests with a Host header on the same listener as the
//! forward-proxy traffic; the route is chosen from Host.

use tollgate_tests::{curl, raw, RawConn, RecordingUpstream, Tollgate};

fn config(up: &RecordingUpstream) -> String {
    format!(
        "allow_private_networks: true
routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
  - name: gw
    match:
      hosts: [gw.test]
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_form_with_host_is_routed_by_host() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&config(&up)).await;
    let host = format!("127.0.0.1:{}", up.port());
    let resp = raw::request(
        tg.proxy,
        "GET",
        format!("GET /gw/path?x=1 HTTP/1.1\r\nHost: {host}\r\nX-Trace: t1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?} {}", resp.body_text());
    let req = up.single_request();
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/gw/path?x=1");
    assert_eq!(req.header_all("host"), vec![host.as_str()]);
    assert_eq!(req.header("x-trace"), Some("t1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_form_post_body_is_forwarded() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&config(&up)).await;
    let host = format!("127.0.0.1:{}", up.port());
    let resp = raw::request(
        tg.proxy,
        "POST",
        format!(
            "POST /gw/items HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let req = up.single_request();
    assert_eq!(req.target, "/gw/items");
    assert_eq!(req.body_text(), "hello world");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_without_proxy_and_a_named_host_reaches_the_route_upstream() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&config(&up)).await;
    let url = format!("http://{}/named/thing?k=v", tg.proxy);
    let resp = curl(&[&url, "-H", "Host: gw.test"]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let req = up.single_request();
    assert_eq!(req.target, "/named/thing?k=v");
    assert_eq!(resp.json()["target"], "/named/thing?k=v");
}

#[tokio::test(flavor = "multi_thread")]
async fn both_forms_share_one_listener_and_one_connection() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&config(&up)).await;
    let host = format!("127.0.0.1:{}", up.port());
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(format!("GET http://{host}/abs HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await;
    assert_eq!(conn.read_response("GET").await.status, 200);
    conn.send(format!("GET /origin HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await;
    assert_eq!(conn.read_response("GET").await.status, 200);
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, vec!["/abs", "/origin"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_host_in_gateway_mode_is_no_route() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&config(&up)).await;
    let resp = raw::request(
        tg.proxy,
        "GET",
        b"GET /x HTTP/1.1\r\nHost: nowhere.test\r\n\r\n",
    )
    .await;
    resp.assert_error(403, "no_route", None);
    assert_eq!(up.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_health_and_readiness() {
    let tg = Tollgate::start("routes: []\n").await;
    assert_eq!(raw::get(tg.admin, "/healthz").await.status, 200);
    assert_eq!(raw::get(tg.admin, "/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_the_process_promptly() {
    use std::os::unix::process::ExitStatusExt;
    let mut tg = Tollgate::start("routes: []\n").await;
    let status = tg.stop().expect("the process had not exited by itself");
    assert_ne!(
        status.signal(),
        Some(9),
        "tollgate ignored SIGINT for {:?} and was killed:\n{}",
        tollgate_tests::process::STOP_GRACE,
        tg.output()
    );
    assert!(raw::try_get(tg.admin, "/healthz").await.is_err());
}
