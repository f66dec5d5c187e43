//! HTTPS through HTTP_PROXY: `connect: intercept` through the real binary, with a CA made
//! by `tollgate ca init`, the real IdP, and curl, Python `requests` and Node undici as an
//! unmodified service would use them (the CA in their trust store, the proxy in the
//! environment). Also plain HTTP inside a CONNECT without any CA (undici's `http://`
//! through a tunnel), and the hostile cases: another Host or SNI than the CONNECT's, a
//! client that does not trust the CA, garbage or silence after the 200.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tollgate_tests::process::{command, run_to_end};
use tollgate_tests::{
    curl, node_env, python_env, tempdir, try_curl, Idp, ProtectedUpstream, RawConn,
    RecordingUpstream, TestCa, Tollgate,
};

const API: &str = "api.billing.example.com";

/// `tollgate ca init --out DIR/ca`: the CA as a user makes it.
fn ca_init(dir: &Path) -> (PathBuf, PathBuf) {
    let out = dir.join("ca");
    let mut cmd = command();
    cmd.args(["ca", "init", "--out"]).arg(&out);
    run_to_end(cmd).assert_code(0);
    (out.join("ca.crt"), out.join("ca.key"))
}

struct Env {
    idp: Idp,
    /// TLS upstream of route `billing` (records what arrives).
    up: RecordingUpstream,
    /// Token-checking upstream of route `replay` (plain HTTP leg).
    checked: ProtectedUpstream,
    ca_cert: PathBuf,
    tg: Tollgate,
}

/// Route `billing` intercepts `api.billing.example.com` (443 and, as http, 80) and sends
/// to a TLS upstream; `admin` denies its `/admin/` inside the tunnel; `replay` intercepts
/// `replay.example.com` in front of a token-checking upstream.
async fn env(with_ca: bool) -> Env {
    let idp = Idp::start().await;
    let upstream_ca = TestCa::new("intercept tests upstream CA");
    let up = RecordingUpstream::start_tls(&upstream_ca, &["localhost"]).await;
    let checked = ProtectedUpstream::start(&idp).await;
    let dir = tempdir();
    let upstream_ca_file = upstream_ca.write_pem(dir.path(), "upstream-ca.pem");
    let (ca_cert, ca_key) = ca_init(dir.path());
    let interception = if with_ca {
        format!(
            "interception:\n  ca_cert_file: {}\n  ca_key_file: {}\n",
            ca_cert.display(),
            ca_key.display()
        )
    } else {
        String::new()
    };
    let config = format!(
        "allow_private_networks: true
{interception}timeouts:
  request_head: 2s
credentials:
  api:
    token_url: {token_url}
    client_id: basic-client
    client_secret: basic-secret
routes:
  - name: billing
    match: {{ hosts: [{API}] }}
    action: inject
    credential: api
    connect: intercept
    upstream: https://localhost:{tls}
    upstream_ca_file: {upstream_ca}
  - name: admin
    match: {{ hosts: [{API}], path_prefixes: [/admin/] }}
    action: deny
  - name: replay
    match: {{ hosts: [replay.example.com] }}
    action: inject
    credential: api
    connect: intercept
    upstream: {checked}
",
        token_url = idp.token_url,
        tls = up.port(),
        upstream_ca = upstream_ca_file.display(),
        checked = checked.url(),
    );
    let tg = Tollgate::start_in(dir, &config).await;
    Env {
        idp,
        up,
        checked,
        ca_cert,
        tg,
    }
}

impl Env {
    fn ca(&self) -> &str {
        self.ca_cert.to_str().expect("utf-8 path")
    }

    async fn tunnels(&self, mode: &str) -> f64 {
        self.tg
            .scrape()
            .await
            .sum("tollgate_tunnels_total", &[("mode", mode)])
    }

    async fn handshakes(&self, outcome: &str) -> f64 {
        self.tg.scrape().await.sum(
            "tollgate_interception_handshakes_total",
            &[("outcome", outcome)],
        )
    }
}

fn bearer(req: &tollgate_tests::upstream::RecordedRequest) -> String {
    req.header("authorization").unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_gets_its_token_inside_the_tunnel_and_keeps_the_tunnel_alive() {
    let e = env(true).await;
    let proxy = e.tg.proxy_url();
    // Two URLs in one curl: one CONNECT, one TLS session, two requests.
    let first = format!("https://{API}/v2/x?a=1");
    let second = format!("https://{API}/v2/y");
    let resp = curl(&[
        "-x",
        &proxy,
        "--cacert",
        e.ca(),
        "-H",
        "Authorization: Bearer client-own",
        &first,
        &second,
        "-o",
        "/dev/null",
    ])
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let reqs = e.up.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].target, "/v2/x?a=1");
    assert_eq!(reqs[1].target, "/v2/y");
    for r in &reqs {
        let auth = bearer(r);
        assert!(
            auth.starts_with("Bearer ey"),
            "injected token, not the client's: {auth:?}"
        );
        assert_eq!(r.header_all("authorization").len(), 1, "{r:?}");
        assert!(r.header("proxy-authorization").is_none());
        assert!(
            r.header("via").is_some_and(|v| v.contains("tollgate")),
            "{r:?}"
        );
    }
    assert_eq!(
        e.tunnels("intercept").await,
        1.0,
        "one tunnel for both requests"
    );
    assert_eq!(e.handshakes("ok").await, 1.0);
    assert_eq!(e.idp.stats().await.successful(), 1, "one token for both");
    // Each request inside is counted and logged like any other, marked as intercepted.
    let m = e.tg.scrape().await;
    assert_eq!(
        m.sum(
            "tollgate_requests_total",
            &[("route", "billing"), ("action", "inject")]
        ),
        2.0
    );
    let log = e.tg.output();
    assert!(
        log.lines()
            .filter(|l| l.contains("tunnel=\"intercept\"") || l.contains("\"tunnel\":\"intercept\""))
            .count()
            >= 2,
        "access log marks the requests inside the tunnel:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_and_node_undici_post_intact_bodies_through_the_tunnel() {
    let e = env(true).await;
    let proxy = e.tg.proxy_url();
    let url = format!("https://{API}/v2/orders");
    let body = r#"{"order":42,"items":["a","b"]}"#;
    let py = python_env(
        "py_requests.py",
        &[&url, "--method", "POST", "--data", body],
        &proxy,
        &[("REQUESTS_CA_BUNDLE", e.ca())],
    )
    .await;
    assert_eq!(py.status, 200, "{py:?}");
    let js = node_env(
        "node_undici.mjs",
        &[&url, "POST", body],
        &proxy,
        &[("NODE_EXTRA_CA_CERTS", e.ca())],
    )
    .await;
    assert_eq!(js.status, 200, "{js:?}");
    let reqs = e.up.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.body_text(), body, "body intact");
        assert!(bearer(r).starts_with("Bearer ey"), "{r:?}");
    }
    assert_eq!(e.tunnels("intercept").await, 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_401_is_replayed_inside_the_tunnel() {
    let e = env(true).await;
    let proxy = e.tg.proxy_url();
    let url = "https://replay.example.com/r";
    let resp = curl(&["-x", &proxy, "--cacert", e.ca(), url]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    e.checked.revoke_all().await;
    let resp = curl(&["-x", &proxy, "--cacert", e.ca(), url]).await;
    assert_eq!(resp.status, 200, "the caller never sees the 401: {resp:?}");
    let seen = e.checked.requests().await;
    let statuses: Vec<_> = seen.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(200), Some(401), Some(200)], "{seen:?}");
    assert_eq!(
        e.idp.stats().await.successful(),
        2,
        "a fresh token for the replay"
    );
    let m = e.tg.scrape().await;
    assert_eq!(m.sum("tollgate_replays_total", &[("route", "replay")]), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_inside_a_connect_needs_no_ca_and_tls_without_one_is_closed() {
    let e = env(false).await;
    let proxy = e.tg.proxy_url();
    // undici tunnels http:// through `CONNECT api.billing.example.com:80`.
    let js = node_env(
        "node_undici.mjs",
        &[&format!("http://{API}/v2/plain"), "--tunnel"],
        &proxy,
        &[],
    )
    .await;
    assert_eq!(js.status, 200, "{js:?}");
    let req = e.up.single_request();
    assert_eq!(req.target, "/v2/plain");
    assert!(bearer(&req).starts_with("Bearer ey"), "{req:?}");
    assert_eq!(e.tunnels("plain").await, 1.0);
    // TLS inside: no CA to terminate it with.
    let failed = try_curl(&[
        "-x",
        &proxy,
        "--cacert",
        e.ca(),
        &format!("https://{API}/v2/x"),
    ])
    .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(e.handshakes("no_ca").await, 1.0);
    assert_eq!(e.up.requests().len(), 1, "nothing more forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_host_inside_the_tunnel_is_misdirected_and_routes_still_apply() {
    let e = env(true).await;
    let proxy = e.tg.proxy_url();
    let url = format!("https://{API}/v2/x");
    let resp = curl(&[
        "-x",
        &proxy,
        "--cacert",
        e.ca(),
        "-H",
        "Host: admin.example.com",
        &url,
    ])
    .await;
    assert_eq!(resp.status, 421, "{resp:?}");
    assert_eq!(resp.json()["error"], "misdirected", "{resp:?}");
    // A deny route applies to the requests inside.
    let resp = curl(&[
        "-x",
        &proxy,
        "--cacert",
        e.ca(),
        &format!("https://{API}/admin/users"),
    ])
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(resp.json()["error"], "denied");
    assert!(e.up.requests().is_empty(), "nothing forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sni_for_another_host_gets_421_for_every_request() {
    let e = env(true).await;
    // openssl s_client opens the CONNECT itself and sends the SNI we ask for.
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-proxy"])
        .arg(e.tg.proxy.to_string())
        .args([
            "-connect",
            &format!("{API}:443"),
            "-servername",
            "admin.example.com",
            "-CAfile",
            e.ca(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            format!("GET /v2/x HTTP/1.1\r\nHost: {API}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write request");
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("s_client finishes")
        .expect("s_client output");
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 421"), "{text}");
    assert!(
        text.contains("misdirected") && text.contains("admin.example.com"),
        "{text}"
    );
    assert!(e.up.requests().is_empty(), "nothing forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_trust_the_ca_gets_nothing_forwarded() {
    let e = env(true).await;
    // curl's own bundle (the system roots) does not hold the interception CA.
    let failed = try_curl(&["-x", &e.tg.proxy_url(), &format!("https://{API}/v2/x")]).await;
    let err = failed.expect_err("curl must refuse the leaf");
    assert!(
        err.contains("exit Some(60)") || err.contains("certificate"),
        "{err}"
    );
    assert_eq!(e.handshakes("untrusted").await, 1.0);
    assert!(e.up.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_or_silence_after_the_200_closes_the_tunnel() {
    let e = env(true).await;
    let connect = format!("CONNECT {API}:443 HTTP/1.1\r\nHost: {API}:443\r\n\r\n");
    // Garbage: neither HTTP nor TLS.
    let mut c = RawConn::connect(e.tg.proxy).await;
    c.send(connect.as_bytes()).await;
    assert_eq!(c.read_response("CONNECT").await.status, 200);
    c.send(b"\x00\x01\x02 not a protocol").await;
    assert!(c.read_to_end().await.is_empty(), "closed with nothing said");
    assert_eq!(e.handshakes("failed").await, 1.0);
    // Silence: closed once `timeouts.request_head` (2 s) has passed.
    let mut c = RawConn::connect(e.tg.proxy).await;
    c.send(connect.as_bytes()).await;
    assert_eq!(c.read_response("CONNECT").await.status, 200);
    let started = Instant::now();
    assert!(c.read_to_end().await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(e.handshakes("timeout").await, 1.0);
    // A TLS record that is not a ClientHello the acceptor can use.
    let mut c = RawConn::connect(e.tg.proxy).await;
    c.send(connect.as_bytes()).await;
    assert_eq!(c.read_response("CONNECT").await.status, 200);
    c.send(b"\x16\x03\x01\x00\x05hello").await;
    let _ = c.read_to_end().await;
    assert_eq!(e.handshakes("failed").await, 2.0);
    assert!(e.up.requests().is_empty());
    // The proxy still serves.
    let ok = curl(&[
        "-x",
        &e.tg.proxy_url(),
        "--cacert",
        e.ca(),
        &format!("https://{API}/v2/ok"),
    ])
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connect_authenticates_its_tunnel_and_the_requests_inside_are_the_callers() {
    let idp = Idp::start().await;
    let upstream_ca = TestCa::new("intercept callers upstream CA");
    let up = RecordingUpstream::start_tls(&upstream_ca, &["localhost"]).await;
    let dir = tempdir();
    let upstream_ca_file = upstream_ca.write_pem(dir.path(), "upstream-ca.pem");
    let (ca_cert, ca_key) = ca_init(dir.path());
    let htpasswd = dir.path().join("callers.htpasswd");
    std::fs::write(
        &htpasswd,
        format!(
            "{}\n{}\n",
            tollgate_tests::callers::htpasswd_line("billing-batch", "s3cret-batch"),
            tollgate_tests::callers::htpasswd_line("other-team", "s3cret-other")
        ),
    )
    .expect("write htpasswd");
    let config = format!(
        "allow_private_networks: true
interception: {{ ca_cert_file: {cert}, ca_key_file: {key} }}
callers:
  basic: {{ htpasswd_file: {htpasswd} }}
credentials:
  api:
    token_url: {token_url}
    client_id: basic-client
    client_secret: basic-secret
routes:
  - name: billing
    match: {{ hosts: [{API}] }}
    callers: [billing-batch]
    action: inject
    credential: api
    connect: intercept
    upstream: https://localhost:{tls}
    upstream_ca_file: {upstream_ca}
",
        cert = ca_cert.display(),
        key = ca_key.display(),
        htpasswd = htpasswd.display(),
        token_url = idp.token_url,
        tls = up.port(),
        upstream_ca = upstream_ca_file.display(),
    );
    let tg = Tollgate::start_in(dir, &config).await;
    let ca = ca_cert.to_str().expect("utf-8");
    let url = format!("https://{API}/v2/x");
    let proxy = |user: &str| format!("http://{user}@{}", tg.proxy);
    // No credentials: the CONNECT itself gets 407 (curl reports it as a failure).
    let err = try_curl(&["-x", &tg.proxy_url(), "--cacert", ca, &url]).await;
    assert!(err.is_err(), "{err:?}");
    // Another caller: 403 on the CONNECT.
    let err = try_curl(&[
        "-x",
        &proxy("other-team:s3cret-other"),
        "--cacert",
        ca,
        &url,
    ])
    .await;
    assert!(err.is_err(), "{err:?}");
    assert!(up.requests().is_empty());
    // The listed caller: the CONNECT authenticates; the request inside carries no
    // Proxy-Authorization, yet is theirs.
    let ok = curl(&[
        "-x",
        &proxy("billing-batch:s3cret-batch"),
        "--cacert",
        ca,
        &url,
    ])
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let req = up.single_request();
    assert!(bearer(&req).starts_with("Bearer ey"), "{req:?}");
    assert!(req.header("proxy-authorization").is_none());
    let log = tg.output();
    let inside = log
        .lines()
        .find(|l| l.contains("tunnel=\"intercept\"") && l.contains("path=\"/v2/x\""))
        .unwrap_or_else(|| panic!("no access line for the request inside:\n{log}"));
    assert!(inside.contains("caller=\"billing-batch\""), "{inside}");
    assert!(!log.contains("s3cret"), "passwords never logged");
}

#[test]
fn route_explains_an_intercepted_connect() {
    let dir = tempdir();
    let (cert, key) = ca_init(dir.path());
    let file = tollgate_tests::ConfigFile::new_in(
        dir,
        &format!(
            "interception: {{ ca_cert_file: {}, ca_key_file: {} }}
credentials:
  api: {{ token_url: https://idp.example.com/token, client_id: a, client_secret: b }}
routes:
  - name: billing
    match: {{ hosts: [{API}] }}
    action: inject
    credential: api
    connect: intercept
  - name: plain
    match: {{ hosts: [other.example.com] }}
    action: inject
    credential: api
",
            cert.display(),
            key.display()
        ),
    );
    let out = tollgate_tests::route(
        &file,
        &[
            &format!("{API}:443"),
            "--method",
            "CONNECT",
            "--format",
            "json",
        ],
    );
    out.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["decision"], "intercept", "{v}");
    let connect = v["connect"].as_str().unwrap_or_default();
    assert!(
        connect.contains("TLS is terminated with a leaf certificate"),
        "{v}"
    );
    let out = tollgate_tests::route(&file, &["other.example.com:443", "--method", "CONNECT"]);
    out.assert_code(1);
    assert!(out.stdout.contains("connect_not_allowed"), "{}", out.stdout);
}
