//! OAuth2 token injection (issue 3) through the real binary, against a real IdP (panva's
//! oidc-provider, `tests/idp/idp.mjs`) and an upstream that validates every token for real
//! (JWT signature against the IdP's `/jwks`, issuer, expiry). Every assertion is on what
//! the IdP and the upstream observed (their `/_test/` endpoints), the proxy's metrics, or
//! what the client received.

use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tollgate_tests::idp::{jwt_client_key, jwt_rs_client_key};
use tollgate_tests::process::{command, run_to_end, ConfigFile, PROXY_VARS};
use tollgate_tests::{
    curl_via, raw, Fault, Idp, IdpOptions, Launch, ProtectedUpstream, RawResponse, Tollgate,
};

// ------------------------------------------------------------------ helpers

/// `allow_private_networks`, the credentials (YAML lines indented under `credentials:`)
/// and one inject route per `(name, credential, path prefix)` to `up`.
fn config(up: &ProtectedUpstream, credentials: &str, routes: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!("allow_private_networks: true\ncredentials:\n{credentials}routes:\n");
    for (name, cred, prefix) in routes {
        yaml.push_str(&format!(
            "  - name: {name}\n    match:\n      hosts: [\"{host}\"]\n      path_prefixes: [\"{prefix}\"]\n    action: inject\n    credential: {cred}\n",
            host = up.host()
        ));
    }
    yaml
}

/// One `client_secret_basic` credential `api` for `basic-client`, route `api` for all paths.
fn basic_config(idp: &Idp, up: &ProtectedUpstream) -> String {
    config(
        up,
        &format!(
            "  api:\n    token_url: {}\n    client_id: basic-client\n    client_secret: basic-secret\n",
            idp.token_url
        ),
        &[("api", "api", "/")],
    )
}

/// GET `path` on `up` through the proxy (absolute-form, what HTTP_PROXY clients send).
async fn get(tg: &Tollgate, up: &ProtectedUpstream, path: &str) -> RawResponse {
    let host = up.host();
    let req =
        format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw::request(tg.proxy, "GET", req.as_bytes()).await
}

/// Fetch every URL through the proxy with one curl process (`-Z --parallel-immediate
/// --parallel-max N` when `parallel`, else one after the other); returns the status codes
/// (sorted, since parallel transfers finish in any order).
async fn curl_many(proxy_url: &str, urls: &[String], parallel: bool) -> Vec<u16> {
    let mut cmd = tokio::process::Command::new("curl");
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .args([
            "-sS",
            "--max-time",
            "30",
            "-x",
            proxy_url,
            "-w",
            "%{http_code}\\n",
        ]);
    if parallel {
        cmd.args(["-Z", "--parallel-immediate", "--parallel-max"])
            .arg(urls.len().to_string());
    }
    for url in urls {
        cmd.arg(url).args(["-o", "/dev/null"]);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("curl finished within 60 s")
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut statuses: Vec<u16> = stdout
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect();
    statuses.sort_unstable();
    statuses
}

#[track_caller]
fn assert_ok(resp: &RawResponse) -> Value {
    assert_eq!(resp.status, 200, "{resp:?} {}", resp.body_text());
    resp.json()
}

/// Sum of a metric's samples whose labels include all of `labels`.
async fn metric(tg: &Tollgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    let resp = raw::get(tg.admin, "/metrics").await;
    assert_eq!(resp.status, 200, "/metrics: {resp:?}");
    sum_samples(&resp.body_text(), name, labels)
}

fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
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

/// Fail if `text` contains something that looks like a JWT (`eyJ...`) or any of `secrets`.
#[track_caller]
fn assert_no_secrets(what: &str, text: &str, secrets: &[&str]) {
    let offending = |needle: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(needle))
            .take(5)
            .map(|l| l.chars().take(400).collect())
            .collect()
    };
    for s in secrets {
        let lines = offending(s);
        assert!(
            lines.is_empty(),
            "{what} contains the secret {s:?}: {lines:#?}"
        );
    }
    let lines = offending("eyJ");
    assert!(
        lines.is_empty(),
        "{what} contains something that looks like a JWT (first lines, cut): {lines:#?}"
    );
}

// ------------------------------------------------------------------ auth methods

#[tokio::test(flavor = "multi_thread")]
async fn each_auth_method_gets_a_token_the_upstream_accepts() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let creds = format!(
        "  basic:
    token_url: {url}
    client_id: basic-client
    client_secret: basic-secret
    auth_method: client_secret_basic
  post:
    token_url: {url}
    client_id: post-client
    client_secret: post-secret
    auth_method: client_secret_post
  jwt:
    token_url: {url}
    client_id: jwt-client
    auth_method: private_key_jwt
    private_key_file: {es}
  jwtrs:
    token_url: {url}
    client_id: jwt-rs-client
    auth_method: private_key_jwt
    private_key_file: {rs}
    signing_alg: RS256
    key_id: jwt-client-rs256
",
        url = idp.token_url,
        es = jwt_client_key().display(),
        rs = jwt_rs_client_key().display(),
    );
    let tg = Tollgate::start(&config(
        &up,
        &creds,
        &[
            ("basic", "basic", "/basic/"),
            ("post", "post", "/post/"),
            ("jwt", "jwt", "/jwt/"),
            ("jwtrs", "jwtrs", "/jwtrs/"),
        ],
    ))
    .await;

    let cases = [
        ("/basic/x", "basic-client", "client_secret_basic"),
        ("/post/x", "post-client", "client_secret_post"),
        ("/jwt/x", "jwt-client", "private_key_jwt"),
        ("/jwtrs/x", "jwt-rs-client", "private_key_jwt"),
    ];
    for (i, (path, client, method)) in cases.iter().enumerate() {
        // A real client: curl through HTTP_PROXY-style absolute-form.
        let url = format!("http://{}{path}", up.host());
        let resp = curl_via(&tg.proxy_url(), &url, &[]).await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        // The upstream verified the token's signature and saw the right client.
        let echo = resp.json();
        assert_eq!(echo["token"]["client_id"], *client, "{path}: {echo}");
        assert_eq!(echo["token"]["format"], "jwt", "{path}: {echo}");

        let stats = idp.stats().await;
        assert_eq!(stats.token_requests, i + 1, "{path}: {stats:#?}");
        let tr = &stats.requests[i];
        assert_eq!(tr.client_id.as_deref(), Some(*client), "{tr:#?}");
        assert_eq!(tr.auth_method, *method, "{tr:#?}");
        assert_eq!(
            tr.grant_type.as_deref(),
            Some("client_credentials"),
            "{tr:#?}"
        );
        assert_eq!(tr.status, Some(200), "{tr:#?}");
        assert!(!tr.strict_auth_rejected, "{tr:#?}");
        assert_eq!(
            tr.issued_jti().as_deref(),
            echo["token"]["jti"].as_str(),
            "the upstream got the token the IdP issued: {tr:#?} {echo}"
        );
        match *method {
            "client_secret_basic" => {
                assert_eq!(tr.raw["authorization_scheme"], "Basic", "{tr:#?}");
                assert_eq!(tr.raw["basic_client_id"], *client, "{tr:#?}");
                assert_eq!(tr.raw["client_secret_present"], false, "{tr:#?}");
            }
            "client_secret_post" => {
                assert_eq!(tr.raw["authorization_header_present"], false, "{tr:#?}");
                assert_eq!(tr.raw["client_secret_present"], true, "{tr:#?}");
                assert_eq!(tr.field("client_id"), Some(*client), "{tr:#?}");
            }
            _ => {
                let a = tr.client_assertion.as_ref().expect("a client assertion");
                assert_eq!(tr.raw["authorization_header_present"], false, "{tr:#?}");
                assert_eq!(
                    tr.field("client_assertion_type"),
                    Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    "{tr:#?}"
                );
                assert_eq!(a["iss"], *client, "{a}");
                assert_eq!(a["sub"], *client, "{a}");
                assert_eq!(a["aud"], idp.token_url.as_str(), "{a}");
                assert!(a["jti"].as_str().is_some_and(|j| !j.is_empty()), "{a}");
                assert!(a["exp"].as_u64().is_some(), "{a}");
                let alg = if *client == "jwt-client" {
                    "ES256"
                } else {
                    "RS256"
                };
                assert_eq!(a["alg"], alg, "{a}");
                if *client == "jwt-rs-client" {
                    assert_eq!(a["kid"], "jwt-client-rs256", "{a}");
                }
            }
        }
    }
    assert_eq!(
        idp.stats().await.by_auth_method.get("private_key_jwt"),
        Some(&2)
    );
    // The upstream saw exactly the four requests, each with a valid token.
    let reqs = up.requests().await;
    assert_eq!(reqs.len(), 4, "{reqs:#?}");
    assert!(reqs.iter().all(|r| r.status == Some(200)), "{reqs:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_audience_resource_and_params_are_sent_as_configured() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let creds = format!(
        "  res:
    token_url: {url}
    client_id: basic-client
    client_secret: basic-secret
    scopes: [invoices:read, invoices:write]
    resource: https://billing.test/
    params: {{ tenant: eu, extra_flag: \"on\" }}
  aud:
    token_url: {url}
    client_id: post-client
    client_secret: post-secret
    auth_method: client_secret_post
    scopes: [other:read]
    audience: https://aud.test
",
        url = idp.token_url
    );
    let tg = Tollgate::start(&config(
        &up,
        &creds,
        &[("res", "res", "/res/"), ("aud", "aud", "/aud/")],
    ))
    .await;

    let echo = assert_ok(&get(&tg, &up, "/res/1").await);
    assert_eq!(
        echo["token"]["scope"], "invoices:read invoices:write",
        "{echo}"
    );
    assert_eq!(echo["token"]["aud"], "https://billing.test/", "{echo}");
    let echo = assert_ok(&get(&tg, &up, "/aud/1").await);
    assert_eq!(echo["token"]["scope"], "other:read", "{echo}");
    assert_eq!(echo["token"]["aud"], "https://aud.test", "{echo}");

    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");
    let res = &stats.requests[0];
    assert_eq!(res.client_id.as_deref(), Some("basic-client"));
    assert_eq!(
        res.scope.as_deref(),
        Some("invoices:read invoices:write"),
        "{res:#?}"
    );
    assert_eq!(
        res.resource.as_deref(),
        Some("https://billing.test/"),
        "{res:#?}"
    );
    assert_eq!(res.audience, None, "{res:#?}");
    assert_eq!(res.field("tenant"), Some("eu"), "{res:#?}");
    assert_eq!(res.field("extra_flag"), Some("on"), "{res:#?}");
    assert_eq!(
        res.field("grant_type"),
        Some("client_credentials"),
        "{res:#?}"
    );
    let aud = &stats.requests[1];
    assert_eq!(aud.client_id.as_deref(), Some("post-client"));
    assert_eq!(aud.scope.as_deref(), Some("other:read"), "{aud:#?}");
    assert_eq!(
        aud.audience.as_deref(),
        Some("https://aud.test"),
        "{aud:#?}"
    );
    assert_eq!(aud.resource, None, "{aud:#?}");
    assert_eq!(
        aud.fields.keys().cloned().collect::<BTreeSet<_>>(),
        ["audience", "client_id", "grant_type", "scope"]
            .into_iter()
            .map(String::from)
            .collect(),
        "no other form fields: {aud:#?}"
    );
}

// ------------------------------------------------------------------ caching

#[tokio::test(flavor = "multi_thread")]
async fn hundred_sequential_requests_make_one_token_request() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&basic_config(&idp, &up)).await;
    // One curl process, one URL after the other (on a kept-alive connection).
    let urls: Vec<String> = (0..100)
        .map(|i| format!("http://{}/seq/{i}", up.host()))
        .collect();
    let statuses = curl_many(&tg.proxy_url(), &urls, false).await;
    assert_eq!(statuses, vec![200; 100]);
    let reqs = up.requests().await;
    assert!(reqs.iter().all(|r| r.status == Some(200)), "{reqs:#?}");
    let jtis: BTreeSet<_> = reqs.iter().filter_map(|r| r.token_jti()).collect();
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 1, "{stats:#?}");
    assert_eq!(jtis.len(), 1, "one token for all: {jtis:?}");
    assert_eq!(reqs.len(), 100);
    assert_eq!(
        metric(
            &tg,
            "tollgate_token_requests_total",
            &[("credential", "api"), ("outcome", "success")]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &tg,
            "tollgate_token_cache_total",
            &[("credential", "api"), ("result", "hit")]
        )
        .await,
        99.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_requests_on_a_cold_cache_make_one_token_request() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&format!("threads: 2\n{}", basic_config(&idp, &up))).await;
    // Slow token answers: every request arrives while the first fetch is in flight.
    idp.delay(500).await;
    // One curl process with 200 transfers in parallel, all started at once.
    let urls: Vec<String> = (0..200)
        .map(|i| format!("http://{}/c/{i}", up.host()))
        .collect();
    let statuses = curl_many(&tg.proxy_url(), &urls, true).await;
    assert_eq!(statuses, vec![200; 200]);
    let reqs = up.requests().await;
    let jtis: BTreeSet<_> = reqs.iter().filter_map(|r| r.token_jti()).collect();
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 1, "{stats:#?}");
    assert_eq!(jtis.len(), 1, "{jtis:?}");
    assert_eq!(reqs.len(), 200);
    assert!(reqs.iter().all(|r| r.status == Some(200)));
    // The others waited for the one fetch instead of starting their own.
    let waits = metric(
        &tg,
        "tollgate_token_cache_total",
        &[("credential", "api"), ("result", "wait")],
    )
    .await;
    let misses = metric(
        &tg,
        "tollgate_token_cache_total",
        &[("credential", "api"), ("result", "miss")],
    )
    .await;
    assert_eq!(misses, 1.0, "one request started the fetch");
    // (200 concurrent in practice; a few late ones may find the token already cached.)
    assert!(waits >= 100.0, "the others joined it: wait={waits}");
}

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_tokens_are_refreshed_in_the_background_and_never_sent_expired() {
    let idp = Idp::start_with(IdpOptions {
        ttl: Some(3),
        ..Default::default()
    })
    .await;
    let up = ProtectedUpstream::start(&idp).await;
    // Thousands of requests: keep the access log out of the captured output.
    let tg = Tollgate::launch(
        Launch::new().env("RUST_LOG", "info,tollgate::access=warn"),
        &basic_config(&idp, &up),
    )
    .await;
    // The first request waits for the first token; no other request may.
    assert_ok(&get(&tg, &up, "/first").await);
    // From now on every token answer is slow: a request that waited for one would be
    // seen inside a refresh's window with the new token.
    idp.delay(150).await;

    // Two clients, each sending a request every few milliseconds for 10 s (a few thousand
    // requests: the upstream keeps the last 10000 records).
    let stop = Instant::now() + Duration::from_secs(10);
    let mut workers = Vec::new();
    for w in 0..2 {
        let proxy = tg.proxy;
        let host = up.host();
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut i = 0;
            while Instant::now() < stop {
                let req = format!(
                    "GET http://{host}/steady/{w}/{i} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                );
                let resp = raw::request(proxy, "GET", req.as_bytes()).await;
                statuses.push((resp.status, resp.body_text()));
                i += 1;
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            statuses
        }));
    }
    let mut total = 0;
    for w in workers {
        for (status, body) in w.await.expect("worker") {
            assert_eq!(status, 200, "{body}");
            total += 1;
        }
    }
    assert!(total > 30, "steady traffic: only {total} requests in 10 s");

    let reqs = up.requests().await;
    let stats = idp.stats().await;
    let refused: Vec<_> = reqs
        .iter()
        .filter(|r| r.status != Some(200))
        .map(|r| (r.seq, r.received_at_ms, r.token_error.clone()))
        .collect();
    // For each token: when it arrived and how long it really lived (JWT exp, whole
    // seconds) against the `expires_in` the IdP sent.
    let lifetimes: Vec<_> = stats
        .requests
        .iter()
        .filter_map(|t| {
            let issued = t.issued.as_ref()?;
            let exp_ms = issued["exp"].as_u64()? * 1000;
            let arrived = t.received_at_ms + t.duration_ms.unwrap_or(0);
            Some(format!(
                "token #{}: arrived at {arrived}, expires_in {}, exp {exp_ms} ({} ms after arrival)",
                t.seq,
                issued["expires_in"],
                exp_ms.saturating_sub(arrived)
            ))
        })
        .collect();
    assert!(
        refused.is_empty(),
        "the upstream refused {} of {} requests' tokens (seq, received_at_ms, reason): {:#?}\n\
         tokens: {lifetimes:#?}",
        refused.len(),
        reqs.len(),
        refused.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        (4..=12).contains(&stats.token_requests),
        "about one refresh per 2.25 s: {} token requests",
        stats.token_requests
    );
    assert_eq!(stats.successful(), stats.token_requests, "{stats:#?}");
    let jtis: BTreeSet<_> = reqs.iter().filter_map(|r| r.token_jti()).collect();
    assert!(jtis.len() >= 4, "tokens were rotated: {jtis:?}");

    // Requests never waited on the IdP: while each refresh was in flight at the IdP,
    // requests kept arriving at the upstream, all with the previous token.
    let mut during_refresh = 0;
    for (prev, tr) in stats.requests.iter().zip(stats.requests.iter().skip(1)) {
        let (start, end) = (
            tr.received_at_ms,
            tr.received_at_ms + tr.duration_ms.unwrap_or(0),
        );
        let old = prev.issued_jti();
        for r in reqs
            .iter()
            .filter(|r| r.status == Some(200))
            .filter(|r| r.received_at_ms > start && r.received_at_ms < end)
        {
            // Issued before the refresh finished, so not the token being fetched.
            assert_ne!(r.token_jti(), tr.issued_jti(), "{r:#?} {tr:#?}");
            assert_eq!(r.token_jti(), old, "{r:#?}");
            during_refresh += 1;
        }
    }
    assert!(
        during_refresh > 0,
        "no request was served while a refresh was in flight: {stats:#?}"
    );
    assert_eq!(
        metric(
            &tg,
            "tollgate_token_cache_total",
            &[("credential", "api"), ("result", "wait")]
        )
        .await,
        0.0,
        "no request waited for a token fetch"
    );
    assert_eq!(
        metric(
            &tg,
            "tollgate_token_cache_total",
            &[("credential", "api"), ("result", "miss")]
        )
        .await,
        1.0,
        "only the first request found no token"
    );
}

// ------------------------------------------------------------------ IdP failures

#[tokio::test(flavor = "multi_thread")]
async fn idp_503_while_a_token_is_cached_keeps_requests_succeeding() {
    // TTL 8 s: background refresh at 6 s, token usable until 7.2 s.
    let idp = Idp::start_with(IdpOptions {
        ttl: Some(8),
        ..Default::default()
    })
    .await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&basic_config(&idp, &up)).await;
    let first = assert_ok(&get(&tg, &up, "/warm").await);
    let jti = first["token"]["jti"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    idp.fault(Fault::status(503).count(-1)).await;

    // Keep sending until the background refresh has hit the 503 at least once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    loop {
        let echo = assert_ok(&get(&tg, &up, &format!("/during/{sent}")).await);
        assert_eq!(echo["token"]["jti"], jti.as_str(), "still the cached token");
        sent += 1;
        if idp.stats().await.faulted() >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no refresh attempt within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And right after the failed refresh, requests still succeed with the cached token.
    for i in 0..5 {
        let echo = assert_ok(&get(&tg, &up, &format!("/after/{i}")).await);
        assert_eq!(echo["token"]["jti"], jti.as_str());
    }
    let stats = idp.stats().await;
    assert!(
        stats.requests[1..]
            .iter()
            .all(|r| r.fault && r.status == Some(503)),
        "{stats:#?}"
    );
    assert!(sent > 1);
    assert!(
        metric(
            &tg,
            "tollgate_token_requests_total",
            &[("credential", "api"), ("outcome", "error")]
        )
        .await
            >= 1.0
    );

    // The IdP recovers: a new token is used (refreshed, or fetched after expiry).
    idp.clear_fault().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = get(&tg, &up, "/recovered").await;
        if resp.status == 200 && resp.json()["token"]["jti"] != jti.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new token after the IdP recovered: {resp:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reqs = up.requests().await;
    // Every token the upstream received was still valid.
    assert!(
        reqs.iter()
            .all(|r| r.token_error.as_deref() != Some("token expired")),
        "{reqs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_client_on_a_cold_cache_is_a_fast_502_token_unavailable() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let secret = "wrong-secret-5f1c9e";
    let creds = format!(
        "  billing:\n    token_url: {}\n    client_id: basic-client\n    client_secret: {secret}\n",
        idp.token_url
    );
    let tg = Tollgate::start(&config(&up, &creds, &[("api", "billing", "/")])).await;

    let started = Instant::now();
    let resp = get(&tg, &up, "/x").await;
    let elapsed = started.elapsed();
    let body = resp.assert_error(502, "token_unavailable", Some("api"));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("billing"),
        "names the credential: {message}"
    );
    assert!(
        message.contains("invalid_client"),
        "names the IdP's error: {message}"
    );
    assert!(!message.contains(secret), "{message}");
    // Generous sanity bound (the IdP answers in milliseconds; no retries on this path).
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");

    // The IdP really refused the secret (not an injected fault).
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 1, "{stats:#?}");
    assert_eq!(stats.requests[0].status, Some(401));
    assert_eq!(stats.requests[0].error.as_deref(), Some("invalid_client"));
    assert!(!stats.requests[0].fault);

    // Right after: the remembered failure answers; the IdP is not asked again.
    for i in 0..20 {
        let resp = get(&tg, &up, &format!("/again/{i}")).await;
        resp.assert_error(502, "token_unavailable", Some("api"));
    }
    assert_eq!(idp.stats().await.token_requests, 1);
    assert_eq!(up.count().await, 0, "nothing reached the upstream");
    assert_eq!(
        metric(
            &tg,
            "tollgate_token_requests_total",
            &[("credential", "billing"), ("outcome", "permanent_error")]
        )
        .await,
        1.0
    );
    assert_no_secrets("proxy output", &tg.output(), &[secret]);
}

/// Lines of the proxy's output without those where pingora logs the upstream's response
/// body: the test upstream echoes the request headers (the injected token among them) in
/// its body, which is the upstream's data, not something the proxy chose to log.
fn own_output(output: &str) -> String {
    output
        .lines()
        .filter(|l| !l.contains("upstream event now: Some(Body") && !l.contains("Response body:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Start a proxy with `RUST_LOG=level`, three credentials (a secret file, an inline secret
/// the IdP refuses, a private key), make them fetch, fail and replay; then check the
/// output, `/metrics` and `tollgate check` for secrets and tokens.
async fn secrets_stay_out_of_output_at(level: &str) {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let dir = tollgate_tests::tempdir();
    std::fs::write(dir.path().join("secret.txt"), "rotating-secret").expect("write secret");
    let bad = "bad-inline-secret-83ab";
    let creds = format!(
        "  good:
    token_url: {url}
    client_id: rotating-client
    client_secret_file: secret.txt
  bad:
    token_url: {url}
    client_id: post-client
    client_secret: {bad}
    auth_method: client_secret_post
  jwt:
    token_url: {url}
    client_id: jwt-client
    auth_method: private_key_jwt
    private_key_file: {key}
",
        url = idp.token_url,
        key = jwt_client_key().display()
    );
    let yaml = config(
        &up,
        &creds,
        &[
            ("good", "good", "/good/"),
            ("bad", "bad", "/bad/"),
            ("jwt", "jwt", "/jwt/"),
        ],
    );
    let tg = Tollgate::launch(Launch::new().dir(dir).env("RUST_LOG", level), &yaml).await;
    assert_ok(&get(&tg, &up, "/good/1").await);
    assert_ok(&get(&tg, &up, "/jwt/1").await);
    get(&tg, &up, "/bad/1")
        .await
        .assert_error(502, "token_unavailable", Some("bad"));
    // A replay too (revoked token → 401 → fresh token).
    up.revoke_all().await;
    assert_ok(&get(&tg, &up, "/good/2").await);
    assert_eq!(idp.stats().await.token_requests, 4);

    let metrics = raw::get(tg.admin, "/metrics").await.body_text();
    assert_no_secrets(
        "/metrics",
        &metrics,
        &[
            "rotating-secret",
            bad,
            "rotating-client",
            "post-client",
            "jwt-client",
        ],
    );
    let out = run_to_end({
        let mut cmd = command();
        cmd.arg("check").arg("-c").arg(tg.config_path());
        cmd
    });
    assert_no_secrets("tollgate check", &out.combined(), &["rotating-secret", bad]);

    let key_pem = std::fs::read_to_string(jwt_client_key()).expect("read key");
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let key_start = &key_body[..24.min(key_body.len())];
    let output = own_output(&tg.output());
    assert!(
        output.contains("invalid_client"),
        "the failure is reported: {output}"
    );
    assert_no_secrets(
        &format!("proxy output at RUST_LOG={level}"),
        &output,
        &["rotating-secret", bad, key_start],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_tokens_never_appear_in_output_or_metrics() {
    secrets_stay_out_of_output_at("debug").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_tokens_never_appear_in_trace_output() {
    secrets_stay_out_of_output_at("trace").await;
}

// ------------------------------------------------------------------ rotation

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_client_secret_file_is_used_for_the_next_token_request() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let dir = tollgate_tests::tempdir();
    let secret_path = dir.path().join("client-secret");
    std::fs::write(&secret_path, "rotating-secret\n").expect("write secret");
    let creds = format!(
        "  rot:\n    token_url: {}\n    client_id: rotating-client\n    client_secret_file: {}\n",
        idp.token_url,
        secret_path.display()
    );
    let tg = Tollgate::start_in(dir, &config(&up, &creds, &[("api", "rot", "/")])).await;
    let echo = assert_ok(&get(&tg, &up, "/1").await);
    assert_eq!(echo["token"]["client_id"], "rotating-client");

    // The IdP now accepts only the new secret; the file still has the old one.
    idp.rotate("rotated-secret-2").await;
    // Invalidate the cached token: the upstream refuses it, the proxy fetches a new one
    // with the old secret and the IdP refuses that.
    up.revoke_all().await;
    get(&tg, &up, "/2")
        .await
        .assert_error(502, "token_unavailable", Some("api"));
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");
    assert_eq!(stats.requests[1].error.as_deref(), Some("invalid_client"));
    assert!(!stats.requests[1].fault);

    // Rotate the file (atomically, as Kubernetes does): the next token request uses it.
    let tmp = secret_path.with_extension("new");
    std::fs::write(&tmp, "rotated-secret-2\n").expect("write new secret");
    std::fs::rename(&tmp, &secret_path).expect("rename secret");
    let deadline = Instant::now() + Duration::from_secs(15);
    let echo = loop {
        let resp = get(&tg, &up, "/3").await;
        if resp.status == 200 {
            break resp.json();
        }
        resp.assert_error(502, "token_unavailable", Some("api"));
        assert!(Instant::now() < deadline, "the new secret was never used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(echo["token"]["client_id"], "rotating-client");
    let stats = idp.stats().await;
    // Exactly one more token request: the remembered failure kept the others away.
    assert_eq!(stats.token_requests, 3, "{stats:#?}");
    let last = &stats.requests[2];
    assert_eq!(last.status, Some(200), "{last:#?}");
    assert_eq!(last.auth_method, "client_secret_basic");
    assert_eq!(last.issued_jti().as_deref(), echo["token"]["jti"].as_str());
    assert_no_secrets(
        "proxy output",
        &tg.output(),
        &["rotating-secret", "rotated-secret-2"],
    );
}

// ------------------------------------------------------------------ CLI

#[tokio::test(flavor = "multi_thread")]
async fn tollgate_token_prints_type_lifetime_scope_and_claims_and_the_token_only_with_show() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let file = ConfigFile::new(&format!(
        "credentials:
  billing:
    token_url: {}
    client_id: basic-client
    client_secret: basic-secret
    scopes: [invoices:read]
routes: []
",
        idp.token_url
    ));
    let token_cmd = |show: bool| {
        let mut cmd = command();
        cmd.arg("token").arg("-c").arg(&file.path).arg("billing");
        if show {
            cmd.arg("--show");
        }
        tokio::task::spawn_blocking(move || run_to_end(cmd))
    };

    let out = token_cmd(false).await.expect("token");
    out.assert_code(0);
    let text = out.stdout.clone();
    assert!(text.contains("token_type: Bearer"), "{text}");
    assert!(text.contains("lifetime:") && text.contains("5m"), "{text}");
    assert!(text.contains("scope:      invoices:read"), "{text}");
    assert!(text.contains("claims:"), "{text}");
    assert!(text.contains("\"client_id\": \"basic-client\""), "{text}");
    assert!(
        text.contains(&format!("\"iss\": \"{}\"", idp.issuer)),
        "{text}"
    );
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 1);
    let jti = stats.requests[0].issued_jti().expect("issued");
    assert!(text.contains(&jti), "the claims include the jti: {text}");
    assert_no_secrets("tollgate token", &out.combined(), &["basic-secret"]);

    let out = token_cmd(true).await.expect("token --show");
    out.assert_code(0);
    let token = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(str::trim)
        .expect("a token line")
        .to_string();
    assert!(token.starts_with("eyJ"), "{}", out.stdout);
    assert!(!out.combined().contains("basic-secret"));
    // The printed token is the one the IdP issued, and the upstream accepts it.
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 2);
    let req = format!(
        "GET /direct HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        up.host()
    );
    let resp = raw::request(up.addr, "GET", req.as_bytes()).await;
    let echo = assert_ok(&resp);
    assert_eq!(
        echo["token"]["jti"].as_str(),
        stats.requests[1].issued_jti().as_deref()
    );

    // A refused secret: exit 1, the IdP's error named, no secret printed.
    let bad = ConfigFile::new(&format!(
        "credentials:\n  billing:\n    token_url: {}\n    client_id: basic-client\n    client_secret: not-the-secret-77\nroutes: []\n",
        idp.token_url
    ));
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = command();
        cmd.arg("token").arg("-c").arg(&bad.path).arg("billing");
        run_to_end(cmd)
    })
    .await
    .expect("token");
    out.assert_code(1);
    assert!(out.stderr.contains("invalid_client"), "{}", out.stderr);
    assert_no_secrets("tollgate token", &out.combined(), &["not-the-secret-77"]);
}

// ------------------------------------------------------------------ the client's header

#[tokio::test(flavor = "multi_thread")]
async fn the_clients_own_authorization_is_replaced_never_forwarded() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&basic_config(&idp, &up)).await;
    let url = format!("http://{}/mine", up.host());
    let resp = curl_via(
        &tg.proxy_url(),
        &url,
        &[
            "-H",
            "Authorization: Bearer client-own-token-123",
            "-H",
            "X-Other: kept",
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    // Two Authorization headers from a raw client: both are dropped.
    let host = up.host();
    let req = format!(
        "GET http://{host}/two HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic Zm9vOmJhcg==\r\nauthorization: Bearer second-one\r\nConnection: close\r\n\r\n"
    );
    assert_ok(&raw::request(tg.proxy, "GET", req.as_bytes()).await);

    let reqs = up.requests().await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for r in &reqs {
        let auth = r.header_all("authorization");
        assert_eq!(auth.len(), 1, "exactly one Authorization: {r:#?}");
        assert!(auth[0].starts_with("Bearer eyJ"), "{auth:?}");
        assert!(!auth[0].contains("client-own-token-123") && !auth[0].contains("second-one"));
        assert_eq!(r.status, Some(200));
        assert_eq!(r.token_client_id().as_deref(), Some("basic-client"));
    }
    assert_eq!(reqs[0].header("x-other"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_token_request_bounds_a_slow_token_endpoint() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&format!(
        "timeouts:\n  token_request: 1s\n{}",
        basic_config(&idp, &up)
    ))
    .await;
    idp.delay(6000).await;
    let started = Instant::now();
    let resp = get(&tg, &up, "/slow").await;
    let took = started.elapsed();
    let v = resp.assert_error(502, "token_unavailable", Some("api"));
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("api")),
        "names the credential: {v}"
    );
    // With the default (10 s) the answer would wait for the IdP's 6 s.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(up.count().await, 0, "nothing reached the upstream");
}
