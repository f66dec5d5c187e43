//! Odd token responses through the real binary (issue 11, item 7), from the real IdP
//! (oidc-provider) told to answer oddly through its `/_test/fault` endpoint:
//! a `token_type` tollgate cannot send, an `expires_in` that says the token is already
//! dead, and an answer that arrives late (the lifetime counts from the request).

use serde_json::json;
use std::time::{Duration, Instant};
use tollgate_tests::idp::TokenFormat;
use tollgate_tests::{raw, Idp, IdpOptions, ProtectedUpstream, RawResponse, Tollgate};

/// One `client_secret_basic` credential `api` and an inject route `api` to `up`.
fn config(idp: &Idp, up: &ProtectedUpstream) -> String {
    format!(
        "allow_private_networks: true
credentials:
  api:
    token_url: {url}
    client_id: basic-client
    client_secret: basic-secret
routes:
  - name: api
    match: {{ hosts: [\"{host}\"] }}
    action: inject
    credential: api
",
        url = idp.token_url,
        host = up.host()
    )
}

async fn get(tg: &Tollgate, up: &ProtectedUpstream, path: &str) -> RawResponse {
    let host = up.host();
    let req =
        format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw::request(tg.proxy, "GET", req.as_bytes()).await
}

/// GETs until the answer is 200 (the failure memo lasts about a second).
async fn get_until_ok(tg: &Tollgate, up: &ProtectedUpstream) -> RawResponse {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = get(tg, up, "/again").await;
        if resp.status == 200 || Instant::now() > deadline {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mac_token_is_never_injected_as_bearer() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    idp.rewrite(json!({ "token_type": "mac" })).await;
    let tg = Tollgate::start(&config(&idp, &up)).await;

    let resp = get(&tg, &up, "/x").await;
    let body = resp.assert_error(502, "token_unavailable", Some("api"));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("credential \"api\""), "{message}");
    assert!(message.contains("\"mac\""), "names the type: {message}");
    assert_eq!(up.count().await, 0, "nothing reached the upstream");
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 1, "{stats:#?}");
    assert_eq!(stats.requests[0].status, Some(200), "the IdP did issue it");
    assert_eq!(stats.requests[0].raw["rewritten"]["token_type"], "mac");

    // Once the IdP answers Bearer again, the same route works.
    idp.clear_fault().await;
    let resp = get_until_ok(&tg, &up).await;
    assert_eq!(resp.status, 200, "{resp:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expires_in_zero_or_negative_is_a_failed_fetch() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&config(&idp, &up)).await;
    for (i, (value, reason)) in [
        (json!(0), "expires_in is 0"),
        (json!(-30), "expires_in is negative"),
    ]
    .into_iter()
    .enumerate()
    {
        idp.rewrite(json!({ "expires_in": value })).await;
        // Past the previous failure's memo.
        let deadline = Instant::now() + Duration::from_secs(15);
        while idp.stats().await.token_requests <= i {
            let resp = get(&tg, &up, &format!("/{i}")).await;
            let body = resp.assert_error(502, "token_unavailable", Some("api"));
            let message = body["message"].as_str().unwrap_or_default().to_string();
            if idp.stats().await.token_requests > i {
                assert!(message.contains("credential \"api\""), "{message}");
                assert!(message.contains(reason), "{value}: {message}");
            }
            assert!(Instant::now() < deadline, "no token request for {value}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    assert_eq!(up.count().await, 0, "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_answer_does_not_stretch_the_lifetime() {
    // Opaque tokens (no `exp` for the proxy to read): only `expires_in` says how long the
    // token lives, counted by the IdP from when it issued the token. The answer leaves
    // the IdP 3 s after that. A 6 s token may then be handed out until 6 - 0.6 = 5.4 s
    // after the request was sent; counted from its arrival it would still be handed out
    // at 8.4 s, long after the upstream (which asks the IdP) refuses it at 6 s.
    let idp = Idp::start_with(IdpOptions {
        ttl: Some(6),
        format: Some(TokenFormat::Opaque),
        ..Default::default()
    })
    .await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&config(&idp, &up)).await;

    idp.delay_after(3000).await;
    let resp = get(&tg, &up, "/first").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    idp.delay_after(0).await;
    // 3.6 s after the answer arrived: ~6.6 s after the token was issued.
    tokio::time::sleep(Duration::from_millis(3600)).await;
    let resp = get(&tg, &up, "/second").await;
    assert_eq!(resp.status, 200, "{resp:?}");

    let reqs = up.requests().await;
    assert_eq!(reqs.len(), 2, "no replay was needed: {reqs:#?}");
    assert!(
        reqs.iter().all(|r| r.status == Some(200)),
        "the upstream never saw an expired token: {reqs:#?}"
    );
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 2, "a fresh token for /second");
    assert_ne!(reqs[0].token_jti(), reqs[1].token_jti());
}
