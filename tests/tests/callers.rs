//! Callers: workloads authenticate to the proxy (`Proxy-Authorization`: Bearer JWT, Basic
//! against an htpasswd file, or Basic with user `token` carrying a JWT) and routes list
//! who may use them. Real clients (curl, Python requests, Node undici), tokens signed at
//! test time by throwaway keys (RS256, PS256, ES256), htpasswd entries by `htpasswd -B`.
//!
//! Two routes for one host differ only in `callers`: the billing namespace's requests go
//! to one upstream, the ops namespace's to another, as two credentials would.

use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use tollgate_tests::callers::{
    alg_none, basic, claims, hs256, htpasswd_line, jwks, Alg, JwksServer, SigningKey, AUDIENCE,
    ISSUER,
};
use tollgate_tests::process::{check_file, replace_file};
use tollgate_tests::{
    curl, curl_via, node, python, raw, route, ConfigFile, EchoServer, RawConn, RawResponse,
    RecordingUpstream, Tollgate,
};

const BILLING_SA: &str = "system:serviceaccount:billing:api";
const OPS_SA: &str = "system:serviceaccount:ops:deploy";
const HOST: &str = "api.shared.test";
const PASSWORD: &str = "correct horse battery";

struct Setup {
    billing: RecordingUpstream,
    ops: RecordingUpstream,
    keys: Vec<SigningKey>,
    jwks_file: PathBuf,
    tg: Tollgate,
}

impl Setup {
    fn key(&self, alg: Alg) -> &SigningKey {
        self.keys
            .iter()
            .find(|k| k.alg == alg)
            .expect("a key of each alg")
    }

    /// A raw absolute-form GET to `HOST` with `proxy_authorization` (if any).
    async fn get(&self, proxy_authorization: Option<&str>) -> RawResponse {
        let auth = proxy_authorization
            .map(|v| format!("Proxy-Authorization: {v}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET http://{HOST}/p HTTP/1.1\r\nHost: {HOST}\r\n{auth}Connection: close\r\n\r\n"
        );
        raw::request(self.tg.proxy, "GET", req.as_bytes()).await
    }

    fn seen(&self) -> (usize, usize) {
        (self.billing.requests().len(), self.ops.requests().len())
    }
}

fn config(jwt_keys: &str, htpasswd: &str, billing: u16, ops: u16, extra_callers: &str) -> String {
    format!(
        "allow_private_networks: true
callers:
  jwt:
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    {jwt_keys}
  basic:
    htpasswd_file: {htpasswd}
{extra_callers}routes:
  - name: billing
    match: {{ hosts: [{HOST}] }}
    callers: [\"system:serviceaccount:billing:*\", legacy-batch]
    action: pass
    upstream: http://127.0.0.1:{billing}
  - name: ops
    match: {{ hosts: [{HOST}] }}
    callers: [\"system:serviceaccount:ops:*\"]
    action: pass
    upstream: http://127.0.0.1:{ops}
  - name: open
    match: {{ hosts: [open.test] }}
    action: pass
    upstream: http://127.0.0.1:{ops}
"
    )
}

async fn setup_with(extra_callers: &str) -> Setup {
    let billing = RecordingUpstream::start().await;
    let ops = RecordingUpstream::start().await;
    let keys = vec![
        SigningKey::new(Alg::Rs256, "rsa-1"),
        SigningKey::new(Alg::Ps256, "rsa-pss-1"),
        SigningKey::new(Alg::Es256, "ec-1"),
    ];
    let dir = tollgate_tests::tempdir();
    let jwks_file = dir.path().join("cluster-jwks.json");
    let htpasswd = dir.path().join("callers.htpasswd");
    std::fs::write(&jwks_file, jwks(&keys.iter().collect::<Vec<_>>())).expect("jwks");
    std::fs::write(
        &htpasswd,
        format!("# callers\n{}\n", htpasswd_line("legacy-batch", PASSWORD)),
    )
    .expect("htpasswd");
    let tg = Tollgate::start_in(
        dir,
        &config(
            &format!("jwks_file: {}", jwks_file.display()),
            &htpasswd.display().to_string(),
            billing.port(),
            ops.port(),
            extra_callers,
        ),
    )
    .await;
    Setup {
        billing,
        ops,
        keys,
        jwks_file,
        tg,
    }
}

async fn setup() -> Setup {
    setup_with("").await
}

/// The upstream saw the request, without any Proxy-Authorization.
#[track_caller]
fn assert_reached(up: &RecordingUpstream, what: &str) {
    let req = up
        .requests()
        .pop()
        .unwrap_or_else(|| panic!("{what}: no request"));
    assert!(
        !req.has_header("proxy-authorization"),
        "{what}: Proxy-Authorization reached the upstream: {req:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_of_each_algorithm_choose_the_route_by_caller() {
    let s = setup().await;
    let url = format!("http://{HOST}/v1/x");
    for (alg, sub) in [
        (Alg::Rs256, BILLING_SA),
        (Alg::Ps256, OPS_SA),
        (Alg::Es256, "system:serviceaccount:billing:batch"),
    ] {
        let before = s.seen();
        let token = s.key(alg).token(&claims(sub));
        let header = format!("Proxy-Authorization: Bearer {token}");
        let resp = curl_via(&s.tg.proxy_url(), &url, &["--proxy-header", &header]).await;
        assert_eq!(resp.status, 200, "{alg:?} {sub}: {resp:?}");
        let after = s.seen();
        if sub.contains(":billing:") {
            assert_eq!(after, (before.0 + 1, before.1), "{alg:?} {sub} → billing");
            assert_reached(&s.billing, sub);
        } else {
            assert_eq!(after, (before.0, before.1 + 1), "{alg:?} {sub} → ops");
            assert_reached(&s.ops, sub);
        }
        assert!(!s.tg.output().contains(&token), "the token reached a log");
    }
    // The access log and nothing else names the caller; no metric label does.
    assert!(
        s.tg.wait_for_output(&format!("caller=\"{OPS_SA}\""), 1, Duration::from_secs(5))
            .await,
        "access log with the caller:\n{}",
        s.tg.output()
    );
    let scrape = s.tg.scrape().await;
    assert!(scrape.samples().all(|x| !x.labels.contains_key("caller")
        && x.labels.values().all(|v| !v.contains("serviceaccount"))));
    assert!(!scrape.text.contains("serviceaccount"), "{}", scrape.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_and_token_in_basic_with_curl_python_and_node() {
    let s = setup().await;
    let port = s.tg.proxy.port();
    let url = format!("http://{HOST}/v1/x");
    let legacy = format!(
        "http://legacy-batch:{}@127.0.0.1:{port}",
        PASSWORD.replace(' ', "%20")
    );
    // curl -x http://user:pass@proxy
    let resp = curl_via(&legacy, &url, &[]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_reached(&s.billing, "curl Basic");
    // curl --proxy-anyauth: asks without credentials, reads the 407's challenges, retries.
    let resp = curl(&[
        "--proxy-anyauth",
        "-x",
        &s.tg.proxy_url(),
        "--proxy-user",
        &format!("legacy-batch:{PASSWORD}"),
        &url,
    ])
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_reached(&s.billing, "curl --proxy-anyauth");
    assert!(
        s.tg.wait_for_output("status=407", 1, Duration::from_secs(5))
            .await,
        "--proxy-anyauth should have met a 407 first:\n{}",
        s.tg.output()
    );
    // A JWT in Basic (user `token`), as clients that only do Basic send it.
    let token = s.key(Alg::Es256).token(&claims(OPS_SA));
    let via_basic = format!("http://token:{token}@127.0.0.1:{port}");
    let before = s.seen();
    let resp = curl_via(&via_basic, &url, &[]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(s.seen(), (before.0, before.1 + 1), "token in Basic → ops");
    // Python requests: proxies with user info.
    let resp = python("py_requests.py", &[&url], &legacy).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_reached(&s.billing, "python Basic");
    let before = s.seen();
    let resp = python("py_requests.py", &[&url], &via_basic).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        s.seen(),
        (before.0, before.1 + 1),
        "python token in Basic → ops"
    );
    // Node undici ProxyAgent with `token`.
    let bearer = format!("Bearer {}", s.key(Alg::Rs256).token(&claims(BILLING_SA)));
    let before = s.seen();
    let resp = node(
        "node_undici.mjs",
        &[&url, "--token", &bearer],
        &s.tg.proxy_url(),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(s.seen(), (before.0 + 1, before.1), "node Bearer → billing");
    assert_reached(&s.billing, "node");
    let out = s.tg.output();
    assert!(
        !out.contains(PASSWORD) && !out.contains(&token) && !out.contains("Proxy-Authorization")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_are_407_with_challenges_and_unlisted_callers_403() {
    let s = setup().await;
    let r = s.get(None).await;
    r.assert_error(407, "proxy_auth_required", Some("billing"));
    let challenges = tollgate_tests::http1::header_all(&r.headers, "proxy-authenticate");
    assert_eq!(
        challenges,
        [
            "Bearer realm=\"tollgate\"",
            "Basic realm=\"tollgate\", charset=\"UTF-8\""
        ],
        "{r:?}"
    );
    let token = s
        .key(Alg::Es256)
        .token(&claims("system:serviceaccount:dev:tool"));
    let r = s.get(Some(&format!("Bearer {token}"))).await;
    r.assert_error(403, "caller_not_allowed", Some("billing"));
    assert!(r.body_text().contains("system:serviceaccount:dev:tool"));
    // A route that lists no callers serves anyone.
    let req = "GET http://open.test/ HTTP/1.1\r\nHost: open.test\r\nConnection: close\r\n\r\n";
    let r = raw::request(s.tg.proxy, "GET", req.as_bytes()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s.seen(), (0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_credential_is_refused_with_407() {
    let s = setup().await;
    let rs = s.key(Alg::Rs256);
    let good = claims(BILLING_SA);
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let now = tollgate_tests::callers::now();
    let token = rs.token(&good);
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = base64_url(&with("sub", json!("system:serviceaccount:billing:admin")));
    let stranger = SigningKey::new(Alg::Es256, "not-in-the-jwks");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            format!("Bearer {}", rs.token(&with("exp", json!(now - 120)))),
            "expired",
        ),
        (
            "not yet valid",
            format!("Bearer {}", rs.token(&with("nbf", json!(now + 600)))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            format!(
                "Bearer {}",
                rs.token(&with("iss", json!("https://evil.test")))
            ),
            "issuer",
        ),
        (
            "wrong audience",
            format!("Bearer {}", rs.token(&with("aud", json!(["other"])))),
            "audience",
        ),
        (
            "tampered",
            format!("Bearer {}.{forged_claims}.{}", parts[0], parts[2]),
            "signature",
        ),
        (
            "alg none",
            format!("Bearer {}", alg_none("rsa-1", &good)),
            "\"none\"",
        ),
        (
            "HS256 keyed with the public key",
            format!("Bearer {}", hs256(&rs.public_bytes(), "rsa-1", &good)),
            "HS256",
        ),
        (
            "unknown kid",
            format!("Bearer {}", stranger.token(&good)),
            "kid",
        ),
        (
            "Basic not base64",
            "Basic %%%not-base64%%%".to_owned(),
            "not base64",
        ),
        (
            "unknown user",
            basic("mallory", PASSWORD),
            "wrong user or password",
        ),
        (
            "wrong password",
            basic("legacy-batch", "Tr0ub4dor&3"),
            "wrong user or password",
        ),
        (
            "20 KiB",
            format!("Bearer {}", "a".repeat(20 * 1024)),
            "longer than 16 KiB",
        ),
        (
            "unknown scheme",
            "Digest username=\"x\"".to_owned(),
            "scheme",
        ),
    ];
    for (what, value, needle) in &cases {
        let r = s.get(Some(value)).await;
        let body = r.assert_error(407, "proxy_auth_required", None);
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{what}: message should say {needle:?}: {body}"
        );
        assert_eq!(
            tollgate_tests::http1::header_all(&r.headers, "proxy-authenticate").len(),
            2,
            "{what}: {r:?}"
        );
    }
    // A 100 KiB header is refused before anyone reads it: the request head is too large.
    let r = s
        .get(Some(&format!("Bearer {}", "a".repeat(100 * 1024))))
        .await;
    r.assert_error(400, "bad_request", None);
    assert_eq!(s.seen(), (0, 0), "nothing reached an upstream");
    let out = s.tg.output();
    for (what, value, _) in &cases {
        let credential = value.split_once(' ').map_or(value.as_str(), |(_, c)| c);
        assert!(
            !out.contains(credential),
            "{what}: the credential reached a log"
        );
    }
    assert!(!out.contains(PASSWORD));
}

fn base64_url(v: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_authenticates_its_tunnel() {
    let echo = EchoServer::start().await;
    let dir = tollgate_tests::tempdir();
    let htpasswd = dir.path().join("callers.htpasswd");
    std::fs::write(&htpasswd, htpasswd_line("legacy-batch", PASSWORD)).expect("htpasswd");
    let tg = Tollgate::start_in(
        dir,
        &format!(
            "allow_private_networks: true
callers:
  basic: {{ htpasswd_file: {} }}
routes:
  - name: tunnel
    match: {{ hosts: [\"127.0.0.1:{}\"] }}
    callers: [legacy-batch]
    action: pass
",
            htpasswd.display(),
            echo.port()
        ),
    )
    .await;
    let target = format!("127.0.0.1:{}", echo.port());
    let r = raw::request(
        tg.proxy,
        "CONNECT",
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
    )
    .await;
    r.assert_error(407, "proxy_auth_required", Some("tunnel"));
    assert_eq!(echo.connections(), 0);
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n",
            basic("legacy-batch", PASSWORD)
        )
        .as_bytes(),
    )
    .await;
    let r = conn.read_response("CONNECT").await;
    assert_eq!(r.status, 200, "{r:?}");
    conn.send(b"through the tunnel").await;
    assert_eq!(conn.read_exact(18).await, b"through the tunnel");
}

#[tokio::test(flavor = "multi_thread")]
async fn required_refuses_every_request_without_credentials() {
    let s = setup_with("  required: true\n").await;
    let req = "GET http://open.test/ HTTP/1.1\r\nHost: open.test\r\nConnection: close\r\n\r\n";
    let r = raw::request(s.tg.proxy, "GET", req.as_bytes()).await;
    r.assert_error(407, "proxy_auth_required", None);
    let req = format!(
        "GET http://open.test/ HTTP/1.1\r\nHost: open.test\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
        basic("legacy-batch", PASSWORD)
    );
    let r = raw::request(s.tg.proxy, "GET", req.as_bytes()).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_file_that_is_not_json_fails_check_and_on_reload_the_old_keys_serve() {
    let dir = tollgate_tests::tempdir();
    let (jwks_path, htpasswd) = (
        dir.path().join("jwks.json"),
        dir.path().join("callers.htpasswd"),
    );
    let file = ConfigFile::new_in(
        dir,
        &config(
            &format!("jwks_file: {}", jwks_path.display()),
            &htpasswd.display().to_string(),
            1,
            2,
            "",
        ),
    );
    // Missing files: both named.
    let out = check_file(&file.path, &[]);
    out.assert_code(78);
    let text = out.combined();
    assert!(
        text.contains("callers.jwt.jwks_file") && text.contains("callers.basic.htpasswd_file"),
        "{text}"
    );
    std::fs::write(&jwks_path, "{\"keys\": [").expect("write");
    std::fs::write(&htpasswd, "").expect("write");
    let out = check_file(&file.path, &[]);
    out.assert_code(78);
    assert!(
        out.combined().contains("not a JSON JWK Set"),
        "{}",
        out.combined()
    );
    let k = SigningKey::new(Alg::Es256, "k");
    std::fs::write(&jwks_path, jwks(&[&k])).expect("write");
    check_file(&file.path, &[]).assert_code(0);

    let s = setup().await;
    let ok = s
        .get(Some(&format!(
            "Bearer {}",
            s.key(Alg::Es256).token(&claims(BILLING_SA))
        )))
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    replace_file(&s.jwks_file, b"this is not json");
    assert!(
        s.tg.wait_for_output("config reload rejected", 1, Duration::from_secs(10))
            .await,
        "{}",
        s.tg.output()
    );
    assert!(s.tg.output().contains("not a JSON JWK Set"));
    // A token never seen before (not cached) still verifies with the old keys.
    let mut fresh = claims(BILLING_SA);
    fresh["jti"] = json!("after-the-bad-reload");
    let r = s
        .get(Some(&format!("Bearer {}", s.key(Alg::Rs256).token(&fresh))))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_is_fetched_when_needed_and_an_unknown_kid_refreshes_once() {
    let k1 = SigningKey::new(Alg::Es256, "k1");
    let k2 = SigningKey::new(Alg::Es256, "k2");
    let server = JwksServer::start(jwks(&[&k1])).await;
    let billing = RecordingUpstream::start().await;
    let dir = tollgate_tests::tempdir();
    let htpasswd = dir.path().join("callers.htpasswd");
    std::fs::write(&htpasswd, "").expect("htpasswd");
    let tg = Tollgate::start_in(
        dir,
        &config(
            &format!("jwks_url: {}", server.url()),
            &htpasswd.display().to_string(),
            billing.port(),
            billing.port(),
            "",
        ),
    )
    .await;
    let get = |token: String| {
        let proxy = tg.proxy;
        async move {
            let req = format!(
                "GET http://{HOST}/ HTTP/1.1\r\nHost: {HOST}\r\nProxy-Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            );
            raw::request(proxy, "GET", req.as_bytes()).await
        }
    };
    assert_eq!(server.hits(), 0, "nothing is fetched before it is needed");
    assert_eq!(get(k1.token(&claims(BILLING_SA))).await.status, 200);
    assert_eq!(server.hits(), 1);
    let mut again = claims(BILLING_SA);
    again["jti"] = json!("2");
    assert_eq!(get(k1.token(&again)).await.status, 200);
    assert_eq!(server.hits(), 1, "known kid: no fetch");
    // Rotation: k2 is published. Past the rate limit, its first token refreshes once.
    server.set_body(jwks(&[&k1, &k2]));
    tokio::time::sleep(Duration::from_millis(5100)).await;
    for i in 0..3 {
        let mut c = claims(BILLING_SA);
        c["jti"] = json!(format!("k2-{i}"));
        let r = get(k2.token(&c)).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(server.hits(), 2, "one refresh for the new kid");
    // A forged kid right after: refused without another fetch.
    let forged = SigningKey::new(Alg::Es256, "forged");
    get(forged.token(&claims(BILLING_SA)))
        .await
        .assert_error(407, "proxy_auth_required", None);
    assert_eq!(server.hits(), 2, "rate-limited: no fetch for a forged kid");
}

#[tokio::test(flavor = "multi_thread")]
async fn route_explains_with_a_caller() {
    let dir = tollgate_tests::tempdir();
    let k = SigningKey::new(Alg::Es256, "k");
    let (jwks_path, htpasswd) = (
        dir.path().join("jwks.json"),
        dir.path().join("callers.htpasswd"),
    );
    std::fs::write(&jwks_path, jwks(&[&k])).expect("jwks");
    std::fs::write(&htpasswd, "").expect("htpasswd");
    let file = ConfigFile::new_in(
        dir,
        &config(
            &format!("jwks_file: {}", jwks_path.display()),
            &htpasswd.display().to_string(),
            1,
            2,
            "",
        ),
    );
    let url = format!("http://{HOST}/");
    let out = route(&file, &[&url, "--caller", OPS_SA]);
    assert!(out.stdout.contains("route:    ops"), "{}", out.combined());
    let out = route(&file, &[&url, "--caller", BILLING_SA]);
    assert!(
        out.stdout.contains("route:    billing"),
        "{}",
        out.combined()
    );
    let out = route(&file, &[&url]);
    assert!(
        out.stdout.contains("407 proxy_auth_required"),
        "{}",
        out.combined()
    );
    let out = route(&file, &[&url, "--caller", "someone-else"]);
    assert!(
        out.stdout.contains("403 caller_not_allowed"),
        "{}",
        out.combined()
    );
}
