//! 401 replay (issue 4) through the real binary, a real IdP (`tests/idp/idp.mjs`) and an
//! upstream that validates tokens for real and can be told to reject the token it has
//! been accepting (`/_test/revoke`), to answer 401 always, `insufficient_scope`, or 403.
//! Assertions are on what the upstream and the IdP observed, the client's response, the
//! proxy's metrics and its log.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use tollgate_tests::idp::UpstreamRequest;
use tollgate_tests::{
    curl, curl_via, python, raw, ClientResponse, Idp, ProtectedUpstream, RawResponse, Tollgate,
};

// ------------------------------------------------------------------ helpers

/// Credential `api` (basic-client) with route `api` (all paths of `up`, replay on), route
/// `noreplay` (`/noreplay/`, `replay_on_401: false`) and gateway route `gw` (Host
/// `api.gw.test`, upstream `up`).
fn config(idp: &Idp, up: &ProtectedUpstream) -> String {
    format!(
        "allow_private_networks: true
credentials:
  api:
    token_url: {token_url}
    client_id: basic-client
    client_secret: basic-secret
routes:
  - name: api
    match:
      hosts: [\"{host}\"]
    action: inject
    credential: api
  - name: noreplay
    match:
      hosts: [\"{host}\"]
      path_prefixes: [/noreplay/]
    action: inject
    credential: api
    replay_on_401: false
  - name: gw
    match:
      hosts: [api.gw.test]
    action: inject
    credential: api
    upstream: {url}
",
        token_url = idp.token_url,
        host = up.host(),
        url = up.url(),
    )
}

struct Env {
    idp: Idp,
    up: ProtectedUpstream,
    tg: Tollgate,
}

async fn env() -> Env {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&config(&idp, &up)).await;
    Env { idp, up, tg }
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.up.host())
    }

    /// GET through the proxy with curl; returns the response.
    async fn curl_get(&self, path: &str) -> ClientResponse {
        curl_via(&self.tg.proxy_url(), &self.url(path), &[]).await
    }

    /// Warm the token cache with one GET; returns the upstream's last seq.
    async fn warm(&self) -> u64 {
        let resp = self.curl_get("/warm").await;
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(self.idp.stats().await.token_requests, 1);
        self.up.count().await
    }

    /// Requests the upstream received after `since`.
    async fn since(&self, since: u64) -> Vec<UpstreamRequest> {
        self.up.requests_since(since).await
    }

    async fn replays(&self, route: &str, outcome: &str) -> f64 {
        metric(
            &self.tg,
            "tollgate_replays_total",
            &[("route", route), ("outcome", outcome)],
        )
        .await
    }
}

/// Sum of a metric's samples whose labels include all of `labels`.
async fn metric(tg: &Tollgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    let resp = raw::get(tg.admin, "/metrics").await;
    assert_eq!(resp.status, 200, "/metrics: {resp:?}");
    let text = resp.body_text();
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            Some(lv) => lv,
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            total += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

/// Deterministic pseudo-random bytes (not compressible, not text).
fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Lower-case hex SHA-256, by `sha256sum`.
fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// Write `data` to a temp file for `curl --data-binary @FILE`.
fn body_file(data: &[u8]) -> (tempfile::TempDir, String) {
    let dir = tollgate_tests::tempdir();
    let path = dir.path().join("body.bin");
    std::fs::write(&path, data).expect("write body");
    let arg = format!("@{}", path.display());
    (dir, arg)
}

#[track_caller]
fn assert_status(resp: &ClientResponse, status: u16) {
    assert_eq!(resp.status, status, "{resp:?}");
}

// ------------------------------------------------------------------ replayed

#[tokio::test(flavor = "multi_thread")]
async fn post_with_a_10_kib_body_is_replayed_with_the_identical_body_after_revocation() {
    let e = env().await;
    let seq = e.warm().await;
    e.up.revoke_all().await;

    let data = body(10 * 1024, 1);
    let digest = sha256(&data);
    let (_dir, arg) = body_file(&data);
    let resp = curl_via(
        &e.tg.proxy_url(),
        &e.url("/items?x=1"),
        &[
            "--data-binary",
            &arg,
            "-H",
            "Content-Type: application/octet-stream",
            "-H",
            "X-Request-Id: r-42",
        ],
    )
    .await;
    assert_status(&resp, 200);
    let echo = resp.json();
    assert_eq!(echo["body_sha256"], digest.as_str());

    let reqs = e.since(seq).await;
    assert_eq!(reqs.len(), 2, "one 401, one replay: {reqs:#?}");
    let (first, second) = (&reqs[0], &reqs[1]);
    assert_eq!(first.status, Some(401), "{first:#?}");
    assert_eq!(first.token_error.as_deref(), Some("token revoked"));
    assert_eq!(second.status, Some(200), "{second:#?}");
    for r in [first, second] {
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "/items?x=1");
        assert_eq!(r.body_length, 10 * 1024);
        assert_eq!(r.body_sha256, digest, "identical body");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("x-request-id"), Some("r-42"));
        assert_eq!(r.header_all("authorization").len(), 1);
    }
    assert_ne!(
        first.header("authorization"),
        second.header("authorization"),
        "the replay carries a fresh token"
    );

    let stats = e.idp.stats().await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");
    assert_eq!(
        second.token_jti(),
        stats.requests[1].issued_jti(),
        "the replay used the token fetched after the 401"
    );
    assert_eq!(e.replays("api", "replayed").await, 1.0);
    assert_eq!(e.replays("api", "second_401").await, 0.0);

    // One info line for the replay, naming the route; never the token.
    let out = e.tg.output();
    let line = out
        .lines()
        .find(|l| l.contains("replaying with a fresh token"))
        .unwrap_or_else(|| panic!("no replay log line:\n{out}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("api"), "{line}");
    assert!(!out.contains("eyJ"), "a token in the log:\n{out}");
    assert!(
        !out.contains("basic-secret"),
        "the secret in the log:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_request_body_is_replayed() {
    let e = env().await;
    let seq = e.warm().await;
    e.up.revoke_all().await;
    let data = body(20 * 1024 + 7, 2);
    let digest = sha256(&data);
    let (_dir, arg) = body_file(&data);
    let resp = curl_via(
        &e.tg.proxy_url(),
        &e.url("/chunked"),
        &["--data-binary", &arg, "-H", "Transfer-Encoding: chunked"],
    )
    .await;
    assert_status(&resp, 200);
    let reqs = e.since(seq).await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[0].status, Some(401));
    assert_eq!(reqs[1].status, Some(200));
    for r in &reqs {
        assert_eq!(r.body_length, data.len() as u64, "{r:#?}");
        assert_eq!(r.body_sha256, digest);
    }
    assert_eq!(e.idp.stats().await.token_requests, 2);
    assert_eq!(e.replays("api", "replayed").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_requests_after_revocation_make_one_new_token_request() {
    let e = env().await;
    let seq = e.warm().await;
    let old_jti = e.up.requests().await[0].token_jti().expect("a jti");
    e.up.revoke_all().await;

    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let host = e.up.host();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let barrier = Arc::clone(&barrier);
        let (proxy, host) = (e.tg.proxy, host.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = raw::RawConn::connect(proxy).await;
            barrier.wait().await;
            conn.send(
                format!(
                    "GET http://{host}/burst/{i} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
            conn.read_response("GET").await
        }));
    }
    let responses: Vec<RawResponse> = futures_join(tasks).await;
    for r in &responses {
        assert_eq!(r.status, 200, "{r:?} {}", r.body_text());
    }

    let stats = e.idp.stats().await;
    assert_eq!(stats.token_requests, 2, "exactly one new token: {stats:#?}");
    let new_jti = stats.requests[1].issued_jti().expect("issued");
    let reqs = e.since(seq).await;
    let ok: Vec<_> = reqs.iter().filter(|r| r.status == Some(200)).collect();
    let refused: Vec<_> = reqs.iter().filter(|r| r.status == Some(401)).collect();
    assert_eq!(ok.len(), 50, "{reqs:#?}");
    assert_eq!(ok.len() + refused.len(), reqs.len(), "{reqs:#?}");
    assert!(ok
        .iter()
        .all(|r| r.token_jti().as_deref() == Some(new_jti.as_str())));
    assert!(refused
        .iter()
        .all(|r| r.token_error.as_deref() == Some("token revoked")));
    assert!(
        !refused.is_empty(),
        "the revoked token was sent at least once"
    );
    assert_ne!(old_jti, new_jti);
    // Every refused request was replayed once, and none twice.
    assert_eq!(e.replays("api", "replayed").await, refused.len() as f64);
    assert_eq!(e.replays("api", "second_401").await, 0.0);
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

// ------------------------------------------------------------------ passed through

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_always_answers_401_gets_exactly_two_attempts() {
    let e = env().await;
    e.up.always401(true, None).await;
    let resp = e.curl_get("/always").await;
    assert_status(&resp, 401);
    let www = resp.header("www-authenticate").unwrap_or_default();
    assert_eq!(
        www,
        "Bearer realm=\"tollgate-test-upstream\", error=\"invalid_token\", error_description=\"always401 is on\"",
        "the upstream's challenge reaches the client: {resp:?}"
    );
    assert_eq!(resp.json()["error"], "invalid_token", "the upstream's body");
    assert!(resp.header("tollgate-error").is_none(), "{resp:?}");

    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 2, "exactly two attempts: {reqs:#?}");
    assert!(reqs
        .iter()
        .all(|r| r.status == Some(401) && r.path == "/always"));
    assert_ne!(
        reqs[0].header("authorization"),
        reqs[1].header("authorization"),
        "the second attempt carried a fresh token"
    );
    assert_eq!(e.idp.stats().await.token_requests, 2);
    assert_eq!(e.replays("api", "replayed").await, 1.0);
    assert_eq!(e.replays("api", "second_401").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_kib_body_is_sent_once_and_its_401_passes_through() {
    let e = env().await;
    let seq = e.warm().await;
    e.up.revoke_all().await;
    let data = body(100 * 1024, 3);
    let digest = sha256(&data);
    let (_dir, arg) = body_file(&data);
    let resp = curl_via(&e.tg.proxy_url(), &e.url("/big"), &["--data-binary", &arg]).await;
    assert_status(&resp, 401);
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|w| w.contains("token revoked")),
        "{resp:?}"
    );
    let reqs = e.since(seq).await;
    assert_eq!(reqs.len(), 1, "one attempt: {reqs:#?}");
    assert_eq!(reqs[0].status, Some(401));
    assert_eq!(
        reqs[0].body_length,
        100 * 1024,
        "the whole body was streamed"
    );
    assert_eq!(reqs[0].body_sha256, digest);
    assert_eq!(e.idp.stats().await.token_requests, 1);
    assert_eq!(e.replays("api", "body_too_large").await, 1.0);
    assert_eq!(e.replays("api", "replayed").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_scope_is_not_replayed() {
    let e = env().await;
    e.up.insufficient_scope(true, Some(1), None).await;
    let resp = e.curl_get("/scope").await;
    assert_status(&resp, 401);
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|w| w.contains("error=\"insufficient_scope\"")),
        "{resp:?}"
    );
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 1, "one attempt: {reqs:#?}");
    assert_eq!(reqs[0].injected.as_deref(), Some("insufficient_scope"));
    assert_eq!(e.replays("api", "no_replay").await, 1.0);
    assert_eq!(e.replays("api", "replayed").await, 0.0);
    // The token was fine: it is kept, and the next request uses it.
    let resp = e.curl_get("/scope2").await;
    assert_status(&resp, 200);
    assert_eq!(
        resp.json()["token"]["jti"].as_str(),
        reqs[0].token_jti().as_deref()
    );
    assert_eq!(e.idp.stats().await.token_requests, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_403_is_not_replayed() {
    let e = env().await;
    e.up.fail_json(serde_json::json!({
        "status": 403,
        "count": 1,
        "headers": { "www-authenticate": "Bearer error=\"invalid_token\"" },
        "body": { "error": "forbidden" },
    }))
    .await;
    let resp = e.curl_get("/forbidden").await;
    assert_status(&resp, 403);
    assert_eq!(resp.json()["error"], "forbidden");
    assert_eq!(e.up.requests().await.len(), 1, "one attempt");
    assert_eq!(e.idp.stats().await.token_requests, 1, "no new token");
    assert_eq!(
        metric(&e.tg, "tollgate_replays_total", &[("route", "api")]).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_on_401_false_passes_the_401_to_the_client() {
    let e = env().await;
    let seq = e.warm().await;
    e.up.revoke_all().await;
    let resp = e.curl_get("/noreplay/x").await;
    assert_status(&resp, 401);
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|w| w.contains("token revoked")),
        "{resp:?}"
    );
    let reqs = e.since(seq).await;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(e.idp.stats().await.token_requests, 1);
    assert_eq!(e.replays("noreplay", "no_replay").await, 1.0);
    assert_eq!(e.replays("noreplay", "replayed").await, 0.0);
    // The same revoked token on a replaying route: replayed.
    let resp = e.curl_get("/other").await;
    assert_status(&resp, 200);
    assert_eq!(e.replays("api", "replayed").await, 1.0);
    assert_eq!(e.idp.stats().await.token_requests, 2);
}

// ------------------------------------------------------------------ other clients and modes

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_through_http_proxy_gets_200_after_revocation() {
    let e = env().await;
    let url = e.url("/py?q=1");
    let resp = python("py_requests.py", &[&url], &e.tg.proxy_url()).await;
    assert_status(&resp, 200);
    let seq = e.up.count().await;
    e.up.revoke_all().await;
    let resp = python("py_requests.py", &[&url], &e.tg.proxy_url()).await;
    assert_status(&resp, 200);
    assert_eq!(resp.json()["url"], "/py?q=1");
    let reqs = e.since(seq).await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[0].status, Some(401));
    assert_eq!(reqs[1].status, Some(200));
    assert_eq!(e.idp.stats().await.token_requests, 2);
    assert_eq!(e.replays("api", "replayed").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_mode_requests_are_replayed() {
    let e = env().await;
    // Origin-form with Host: the route is chosen from Host, the upstream from the route.
    let url = format!("http://{}/gw/get", e.tg.proxy);
    let resp = curl(&[&url, "-H", "Host: api.gw.test"]).await;
    assert_status(&resp, 200);
    let seq = e.up.count().await;
    e.up.revoke_all().await;
    let (_dir, arg) = body_file(b"{\"hello\":\"gateway\"}");
    let url = format!("http://{}/gw/post", e.tg.proxy);
    let resp = curl(&[
        &url,
        "-H",
        "Host: api.gw.test",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &arg,
    ])
    .await;
    assert_status(&resp, 200);
    let reqs = e.since(seq).await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[0].status, Some(401));
    assert_eq!(reqs[1].status, Some(200));
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "/gw/post");
        assert_eq!(r.body_length, 19);
    }
    assert_eq!(e.idp.stats().await.token_requests, 2);
    assert_eq!(e.replays("gw", "replayed").await, 1.0);
}
