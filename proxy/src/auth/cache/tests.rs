//! Cache behaviour against a scripted fake endpoint, mostly on paused tokio time.

use super::*;
use crate::auth::client::{HttpRequest, TransportError, REQUEST_TIMEOUT};
use crate::auth::test_support::{
    basic, cache_with, client, credential, credentials, metric, oauth, set_auth, FakeEndpoint,
    Reply, TempDir,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tollgate_rules::{AuthMethod, PrivateKeyJwt, SecretSource, SigningAlg};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Lets spawned tasks run (paused time: also moves the clock by 1 ms).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn cache_count(registry: &prometheus::Registry, cred: &str, result: &str) -> f64 {
    metric(
        registry,
        "tollgate_token_cache_total",
        &[("credential", cred), ("result", result)],
    )
}

fn requests(registry: &prometheus::Registry, cred: &str, outcome: &str) -> f64 {
    metric(
        registry,
        "tollgate_token_requests_total",
        &[("credential", cred), ("outcome", outcome)],
    )
}

const INVALID_CLIENT: Reply = Reply::Status(
    401,
    r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    None,
);
const UNAVAILABLE: Reply = Reply::Status(503, "<html>down</html>", None);

#[tokio::test(start_paused = true)]
async fn miss_then_hit() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    assert!(cache.cached("billing").is_none());
    let t = cache.get("billing").await.unwrap();
    assert_eq!(t.secret(), "tok-1");
    assert_eq!(cache.cached("billing").unwrap().id(), t.id());
    assert_eq!(cache.get("billing").await.unwrap().id(), t.id());
    assert_eq!(fake.calls(), 1);
    assert_eq!(cache_count(&reg, "billing", "miss"), 1.0);
    assert_eq!(cache_count(&reg, "billing", "hit"), 2.0);
    assert_eq!(requests(&reg, "billing", "success"), 1.0);
    assert_eq!(
        metric(
            &reg,
            "tollgate_token_request_duration_seconds",
            &[("credential", "billing")]
        ),
        1.0
    );
    let expiry = metric(
        &reg,
        "tollgate_token_expiry_timestamp_seconds",
        &[("credential", "billing")],
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((expiry - (now + 3600.0)).abs() < 5.0, "{expiry} vs {now}");
}

#[tokio::test(start_paused = true)]
async fn unknown_credential() {
    let fake = FakeEndpoint::new(Reply::token(60));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    assert!(cache.cached("nope").is_none());
    let e = cache.get("nope").await.unwrap_err();
    assert_eq!(e.credential(), "nope");
    assert_eq!(
        e.to_string(),
        "credential \"nope\": no such credential is configured"
    );
    assert!(cache.fetch_now("nope").await.is_err());
    assert!(!cache.invalidate("nope", &cache.get("billing").await.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_200_concurrent_misses_make_one_request() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    fake.set_delay(Duration::from_millis(200));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                cache.get("billing").await.map(|t| t.id())
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    assert_eq!(fake.calls(), 1);
    assert!(ids.iter().all(|id| *id == ids[0]));
    assert_eq!(cache_count(&reg, "billing", "miss"), 1.0);
    assert_eq!(
        cache_count(&reg, "billing", "wait") + cache_count(&reg, "billing", "hit"),
        199.0
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_share_the_failure() {
    let fake = FakeEndpoint::new(UNAVAILABLE);
    fake.set_delay(Duration::from_millis(100));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let results = futures_join(&cache, 20).await;
    assert_eq!(fake.calls(), 1);
    for r in results {
        let e = r.unwrap_err();
        assert_eq!(
            e.to_string(),
            "credential \"billing\": token endpoint answered 503 Service Unavailable"
        );
    }
    assert_eq!(requests(&reg, "billing", "error"), 1.0);
}

async fn futures_join(cache: &Arc<TokenCache>, n: usize) -> Vec<Result<Token, TokenError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let cache = Arc::clone(cache);
            tokio::spawn(async move { cache.get("billing").await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_does_not_cancel_the_fetch() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    fake.set_delay(secs(1));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let gave_up = tokio::time::timeout(Duration::from_millis(100), cache.get("billing")).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(secs(2)).await;
    assert_eq!(cache.cached("billing").unwrap().secret(), "tok-1");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn compare_and_invalidate() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let t1 = cache.get("billing").await.unwrap();
    // A burst of 401s for the same token invalidates once.
    let invalidated = (0..50).filter(|_| cache.invalidate("billing", &t1)).count();
    assert_eq!(invalidated, 1);
    // No token held: no expiry series (no 0 sentinel).
    assert!(
        !reg.gather().iter().any(|f| {
            f.name() == "tollgate_token_expiry_timestamp_seconds" && !f.get_metric().is_empty()
        }),
        "an expiry series without a token"
    );
    assert!(cache.cached("billing").is_none());
    let t2 = cache.get("billing").await.unwrap();
    assert_ne!(t2.id(), t1.id());
    assert_eq!(fake.calls(), 2);
    // A late 401 for the old token leaves the new one alone.
    assert!(!cache.invalidate("billing", &t1));
    assert_eq!(cache.cached("billing").unwrap().id(), t2.id());
}

#[tokio::test(start_paused = true)]
async fn hits_through_a_handle() {
    let fake = FakeEndpoint::new(Reply::token(100));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let h = cache.handle("billing").unwrap();
    assert_eq!(h.name(), "billing");
    assert!(cache.handle("nope").is_none());
    // Cold: no hit, and the closure is not called.
    assert!(cache.hit(&h, |_| panic!("called on a miss")).is_none());
    let t1 = cache.get_for(&h).await.unwrap();
    let (id, value) = cache
        .hit(&h, |t| (t.id(), t.header_value("Bearer ")))
        .unwrap();
    assert_eq!(id, t1.id());
    assert_eq!(value.unwrap(), "Bearer tok-1");
    assert_eq!(cache_count(&reg, "billing", "hit"), 1.0);
    assert_eq!(cache_count(&reg, "billing", "miss"), 1.0);
    // Hits from many threads are all counted (striped counters summed at scrape).
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..1000 {
                    assert!(cache.hit(&h, |t| t.id()).is_some());
                }
            });
        }
    });
    assert_eq!(cache_count(&reg, "billing", "hit"), 8001.0);
    // hit_at judges at the time given, not the clock's.
    let now = Instant::now();
    assert_eq!(cache.hit_at(&h, now, |t| t.id()), Some(t1.id()));
    assert!(cache.hit_at(&h, now + secs(91), |t| t.id()).is_none());
    assert_eq!(cache_count(&reg, "billing", "hit"), 8002.0);
    // Within the cutoff (min(30 s, 10 %) = 10 s before expiry) the handle misses too.
    tokio::time::advance(secs(91)).await;
    assert!(cache.hit(&h, |t| t.id()).is_none());
    // Compare-and-invalidate by id.
    let t2 = cache.get_for(&h).await.unwrap();
    assert_ne!(t2.id(), t1.id());
    assert!(!cache.invalidate_id("billing", t1.id()));
    assert!(cache.invalidate_id("billing", t2.id()));
    assert!(!cache.invalidate_id("billing", t2.id()));
    assert!(cache.hit(&h, |t| t.id()).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_handle_follows_reconfigure() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, _) = cache_with(&fake, &[credential("a"), credential("b")]);
    let (ha, hb) = (cache.handle("a").unwrap(), cache.handle("b").unwrap());
    let a = cache.get_for(&ha).await.unwrap();
    cache.get_for(&hb).await.unwrap();
    let mut b2 = credential("b");
    oauth(&mut b2).scopes = vec!["more".into()];
    cache
        .reconfigure(&credentials(&[credential("a"), b2]))
        .unwrap();
    // Unchanged: the old handle still hits the same token.
    assert_eq!(cache.hit(&ha, |t| t.id()), Some(a.id()));
    // Replaced: the old handle misses; get_for fetches for the new definition, which a
    // freshly resolved handle then hits.
    assert!(cache.hit(&hb, |t| t.id()).is_none());
    let b_new = cache.get_for(&hb).await.unwrap();
    assert!(fake.last_request().body.contains("scope=more"));
    let hb2 = cache.handle("b").unwrap();
    assert_eq!(cache.hit(&hb2, |t| t.id()), Some(b_new.id()));
}

#[tokio::test(start_paused = true)]
async fn never_handed_out_within_the_cutoff() {
    // 100 s lifetime: cutoff min(30 s, 10 s) = 10 s.
    let fake = FakeEndpoint::new(Reply::token(100));
    fake.set_delay(Duration::ZERO);
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let t1 = cache.get("billing").await.unwrap();
    // Keep the refresher from replacing it: the endpoint now fails.
    fake.set_default(UNAVAILABLE);
    tokio::time::advance(Duration::from_millis(89_999)).await;
    assert_eq!(cache.cached("billing").map(|t| t.id()), Some(t1.id()));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(cache.cached("billing").is_none());
}

#[tokio::test(start_paused = true)]
async fn long_tokens_stop_30s_before_expiry() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let t1 = cache.get("billing").await.unwrap();
    fake.set_default(UNAVAILABLE);
    tokio::time::advance(secs(3569)).await;
    assert_eq!(cache.cached("billing").map(|t| t.id()), Some(t1.id()));
    tokio::time::advance(secs(1)).await;
    assert!(cache.cached("billing").is_none());
}

#[tokio::test(start_paused = true)]
async fn refreshes_in_the_background_at_75_percent() {
    let fake = FakeEndpoint::new(Reply::token(100));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let t1 = cache.get("billing").await.unwrap();
    tokio::time::advance(secs(74)).await;
    assert_eq!(cache.cached("billing").unwrap().id(), t1.id());
    settle().await;
    assert_eq!(fake.calls(), 1, "no refresh before 75 %");
    tokio::time::advance(secs(1)).await;
    // Past 75 %: the request still gets the current token at once...
    assert_eq!(cache.cached("billing").unwrap().id(), t1.id());
    // ...and one refresh runs in the background, however many requests come.
    for _ in 0..100 {
        let _ = cache.cached("billing");
    }
    settle().await;
    assert_eq!(fake.calls(), 2);
    let t2 = cache.cached("billing").unwrap();
    assert_ne!(t2.id(), t1.id());
    assert_eq!(t2.secret(), "tok-2");
    // Requests never waited: all hits, one miss (the first).
    assert_eq!(cache_count(&reg, "billing", "miss"), 1.0);
    assert_eq!(cache_count(&reg, "billing", "wait"), 0.0);
    // And the new token is refreshed at 75 % of its own lifetime.
    tokio::time::advance(secs(74)).await;
    let _ = cache.cached("billing");
    settle().await;
    assert_eq!(fake.calls(), 2);
    tokio::time::advance(secs(1)).await;
    let _ = cache.cached("billing");
    settle().await;
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn get_also_kicks_the_refresh() {
    let fake = FakeEndpoint::new(Reply::token(100));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let t1 = cache.get("billing").await.unwrap();
    tokio::time::advance(secs(80)).await;
    assert_eq!(cache.get("billing").await.unwrap().id(), t1.id());
    settle().await;
    assert_eq!(fake.calls(), 2);
    assert_ne!(cache.cached("billing").unwrap().id(), t1.id());
}

#[tokio::test(start_paused = true)]
async fn outage_keeps_serving_the_valid_token_then_fails_fast() {
    let fake = FakeEndpoint::new(Reply::token(100));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let t1 = cache.get("billing").await.unwrap();
    fake.set_default(UNAVAILABLE);

    // 76 s: the refresh fails; requests keep the valid token.
    tokio::time::advance(secs(76)).await;
    assert_eq!(cache.cached("billing").unwrap().id(), t1.id());
    settle().await;
    assert_eq!(fake.calls(), 2);
    // The refresher retries with backoff while the token is usable (until 90 s).
    for _ in 0..13 {
        tokio::time::advance(secs(1)).await;
        assert_eq!(cache.cached("billing").unwrap().id(), t1.id());
        assert_eq!(cache.get("billing").await.unwrap().id(), t1.id());
    }
    let during = fake.calls();
    assert!((4..=12).contains(&during), "backoff retries: {during}");

    // 90 s: the cutoff. No token: the request fails fast, naming credential and cause.
    tokio::time::advance(secs(1)).await;
    assert!(cache.cached("billing").is_none());
    let e = cache.get("billing").await.unwrap_err();
    assert_eq!(e.credential(), "billing");
    assert!(!e.is_permanent());
    assert!(e.to_string().contains("token endpoint answered 503"), "{e}");
    // The refresher has stopped.
    let after = fake.calls();
    tokio::time::advance(secs(60)).await;
    settle().await;
    assert_eq!(
        fake.calls(),
        after,
        "no background retries once the token is gone"
    );
    assert!(requests(&reg, "billing", "error") >= 5.0);
}

#[tokio::test(start_paused = true)]
async fn failure_is_remembered_for_about_a_second() {
    let fake = FakeEndpoint::new(Reply::Fail(TransportError::Unreachable(
        "connection refused".into(),
    )));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let e = cache.get("billing").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "credential \"billing\": token endpoint unreachable: connection refused"
    );
    assert_eq!(fake.calls(), 1);
    // A storm within the second: no request reaches the endpoint.
    for _ in 0..1000 {
        let again = cache.get("billing").await.unwrap_err();
        assert_eq!(again.to_string(), e.to_string());
    }
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(cache.get("billing").await.is_err());
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    fake.set_default(Reply::token(60));
    assert_eq!(cache.get("billing").await.unwrap().secret(), "tok-2");
    assert_eq!(fake.calls(), 2);
    assert_eq!(requests(&reg, "billing", "network_error"), 1.0);
    assert_eq!(cache_count(&reg, "billing", "miss"), 1003.0);
}

#[tokio::test(start_paused = true)]
async fn retry_after_extends_the_memo() {
    let fake = FakeEndpoint::new(Reply::Status(429, r#"{"error":"slow_down"}"#, Some("5")));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let e = cache.get("billing").await.unwrap_err();
    assert!(
        e.to_string()
            .ends_with("answered 429 slow_down (retry after 5s)"),
        "{e}"
    );
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert!(cache.get("billing").await.is_err());
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(cache.get("billing").await.is_err());
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn timeout_is_bounded() {
    let fake = FakeEndpoint::new(Reply::token(60));
    fake.set_delay(secs(3600));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let started = Instant::now();
    let e = cache.get("billing").await.unwrap_err();
    assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
    assert_eq!(
        e.to_string(),
        "credential \"billing\": token endpoint did not answer within 10s"
    );
    assert_eq!(requests(&reg, "billing", "network_error"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_is_retried_slowly() {
    let fake = FakeEndpoint::new(INVALID_CLIENT);
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let e = cache.get("billing").await.unwrap_err();
    assert!(e.is_permanent());
    assert_eq!(
        e.to_string(),
        "credential \"billing\": token endpoint answered 401 invalid_client: client authentication failed"
    );
    assert!(!e.to_string().contains("billing-secret"));
    tokio::time::advance(secs(29)).await;
    assert!(cache.get("billing").await.unwrap_err().is_permanent());
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(secs(1)).await;
    assert!(cache.get("billing").await.is_err());
    assert_eq!(fake.calls(), 2);
    assert_eq!(requests(&reg, "billing", "permanent_error"), 2.0);
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_in_the_background_retries_every_30s() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let t1 = cache.get("billing").await.unwrap();
    fake.set_default(INVALID_CLIENT);
    tokio::time::advance(secs(2700)).await;
    assert_eq!(cache.cached("billing").unwrap().id(), t1.id());
    settle().await;
    assert_eq!(fake.calls(), 2);
    // 300 s more: about one attempt per 30-33 s, and the valid token keeps serving.
    for _ in 0..300 {
        tokio::time::advance(secs(1)).await;
        assert_eq!(cache.cached("billing").unwrap().id(), t1.id());
    }
    let retries = fake.calls() - 2;
    // 30 s plus up to 10 % jitter between attempts, each timed from the previous
    // failure: 8 to 10 attempts in 300 s (seen 8 under load, 10 at best).
    assert!((8..=10).contains(&retries), "retries in 300 s: {retries}");
    // The secret is fixed: the next slow retry succeeds.
    fake.set_default(Reply::token(3600));
    tokio::time::advance(secs(34)).await;
    settle().await;
    assert_ne!(cache.cached("billing").unwrap().id(), t1.id());
}

#[tokio::test(start_paused = true)]
async fn a_rotated_secret_file_ends_the_permanent_memo() {
    let dir = TempDir::new();
    let path = dir.write("secret", "old\n");
    let mut def = credential("billing");
    set_auth(
        &mut def,
        AuthMethod::ClientSecretPost(SecretSource::File(path)),
    );
    let fake = FakeEndpoint::new(INVALID_CLIENT);
    let (cache, _) = cache_with(&fake, &[def]);
    assert!(cache.get("billing").await.unwrap_err().is_permanent());
    assert!(fake.last_request().body.ends_with("client_secret=old"));
    dir.replace("secret", "rotated\n");
    fake.set_default(Reply::token(60));
    // Files are looked at no more than once a second outside token requests.
    tokio::time::advance(secs(1)).await;
    let t = cache.get("billing").await.unwrap();
    assert_eq!(t.secret(), "tok-2");
    assert!(fake.last_request().body.ends_with("client_secret=rotated"));
}

#[tokio::test(start_paused = true)]
async fn sends_basic_auth_exactly() {
    let mut def = credential("billing");
    client(&mut def).client_id = "a:b c%".into();
    set_auth(
        &mut def,
        basic(SecretSource::Inline(tollgate_rules::Secret::new("s:e c%"))),
    );
    oauth(&mut def).scopes = vec!["invoices:read".into(), "invoices:write".into()];
    oauth(&mut def).audience = Some("https://billing.example.com".into());
    oauth(&mut def).params = BTreeMap::from([("tenant".into(), "eu".into())]);
    let fake = FakeEndpoint::new(Reply::token(60));
    let (cache, _) = cache_with(&fake, &[def]);
    cache.get("billing").await.unwrap();
    let req = fake.last_request();
    assert_eq!(req.url.as_str(), "https://idp.example.com/oauth2/token");
    assert_eq!(
        req.body,
        "grant_type=client_credentials&scope=invoices%3Aread+invoices%3Awrite\
         &audience=https%3A%2F%2Fbilling.example.com&tenant=eu"
    );
    assert_eq!(
        req.header("Authorization"),
        Some("Basic YSUzQWIrYyUyNTpzJTNBZStjJTI1")
    );
    assert_eq!(req.header("Accept"), Some("application/json"));
}

#[tokio::test(start_paused = true)]
async fn sends_post_auth_exactly() {
    let mut def = credential("billing");
    client(&mut def).client_id = "a:b c%".into();
    set_auth(
        &mut def,
        AuthMethod::ClientSecretPost(SecretSource::Inline(tollgate_rules::Secret::new("s:e c%"))),
    );
    oauth(&mut def).resource = Some("https://billing.example.com".into());
    let fake = FakeEndpoint::new(Reply::token(60));
    let (cache, _) = cache_with(&fake, &[def]);
    cache.get("billing").await.unwrap();
    let req = fake.last_request();
    assert_eq!(
        req.body,
        "grant_type=client_credentials&resource=https%3A%2F%2Fbilling.example.com\
         &client_id=a%3Ab+c%25&client_secret=s%3Ae+c%25"
    );
    assert_eq!(req.header("Authorization"), None);
}

fn assertion_claims(req: &HttpRequest) -> (serde_json::Value, serde_json::Value, String) {
    let form = req.form();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(
        get("client_assertion_type"),
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let jwt = get("client_assertion");
    let mut parts = jwt.split('.');
    let header =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (header, claims, jwt)
}

#[tokio::test(start_paused = true)]
async fn sends_private_key_jwt_exactly() {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    let dir = TempDir::new();
    let key = dir.write("key.pem", include_str!("../fixtures/ec-p256-sec1.pem"));
    let mut def = credential("billing");
    oauth(&mut def).endpoint =
        tollgate_rules::Endpoint::TokenUrl(url::Url::parse("http://127.0.0.1:8080/token").unwrap());
    oauth(&mut def).scopes = vec!["invoices:read".into()];
    set_auth(
        &mut def,
        AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
            private_key_file: key,
            signing_alg: Some(SigningAlg::Es256),
            key_id: Some("key-1".into()),
            certificate: None,
            assertion_audience: None,
        }),
    );
    let fake = FakeEndpoint::new(Reply::token(60));
    let (cache, _) = cache_with(&fake, &[def]);
    cache.get("billing").await.unwrap();
    cache.fetch_now("billing").await.unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    let form: Vec<String> = reqs[0].form().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        form,
        [
            "grant_type",
            "scope",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    assert_eq!(reqs[0].header("Authorization"), None);
    let (header, claims, jwt) = assertion_claims(&reqs[0]);
    assert_eq!(
        header,
        serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "key-1"})
    );
    assert_eq!(claims["iss"], "billing-client");
    assert_eq!(claims["sub"], "billing-client");
    assert_eq!(claims["aud"], "http://127.0.0.1:8080/token");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 60);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat.abs_diff(now) <= 5);
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_FIXED,
        include_bytes!("../fixtures/ec-p256-public.bin"),
    )
    .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
    .unwrap();
    // A fresh assertion (new jti) for every request.
    let (_, claims2, _) = assertion_claims(&reqs[1]);
    assert_ne!(claims["jti"], claims2["jti"]);
}

#[tokio::test(start_paused = true)]
async fn lifetime_from_jwt_exp_when_no_expires_in() {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"at+jwt"}"#);
    let c = URL_SAFE_NO_PAD.encode(
        format!(
            r#"{{"sub":"billing-client","scope":"invoices:read","iat":{now},"exp":{}}}"#,
            now + 600
        )
        .as_bytes(),
    );
    let body: &'static str = Box::leak(
        format!(r#"{{"access_token":"{h}.{c}.c2ln","token_type":"bearer"}}"#).into_boxed_str(),
    );
    let fake = FakeEndpoint::new(Reply::Status(200, body, None));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let info = cache.fetch_now("billing").await.unwrap();
    assert_eq!(info.lifetime_source, "jwt_exp");
    assert!(
        (599..=600).contains(&info.lifetime.as_secs()),
        "{:?}",
        info.lifetime
    );
    assert_eq!(info.expires_in, None);
    assert_eq!(info.token_type, "bearer");
    assert_eq!(info.claims.as_ref().unwrap()["sub"], "billing-client");
    // fetch_now bypasses the cache.
    assert!(cache.cached("billing").is_none());
    // And the cache uses the same lifetime: refresh at 75 % of 600 s.
    let t = cache.get("billing").await.unwrap();
    tokio::time::advance(secs(449)).await;
    assert_eq!(cache.cached("billing").unwrap().id(), t.id());
    settle().await;
    assert_eq!(fake.calls(), 2);
    tokio::time::advance(secs(2)).await;
    let _ = cache.cached("billing");
    settle().await;
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn default_lifetime_is_five_minutes() {
    let fake = FakeEndpoint::new(Reply::Token { expires_in: None });
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let info = cache.fetch_now("billing").await.unwrap();
    assert_eq!(info.lifetime, secs(300));
    assert_eq!(info.lifetime_source, "default");
    let info = {
        fake.set_default(Reply::token(42));
        cache.fetch_now("billing").await.unwrap()
    };
    assert_eq!(
        (info.lifetime, info.lifetime_source),
        (secs(42), "expires_in")
    );
    assert_eq!(info.expires_in, Some(secs(42)));
}

#[tokio::test(start_paused = true)]
async fn fetch_now_bypasses_the_cache() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let t1 = cache.get("billing").await.unwrap();
    let info = cache.fetch_now("billing").await.unwrap();
    assert_ne!(info.token.id(), t1.id());
    assert_eq!(cache.cached("billing").unwrap().id(), t1.id());
    assert_eq!(requests(&reg, "billing", "success"), 2.0);
    assert!(!format!("{info:?}").contains("tok-2"));
}

#[tokio::test(start_paused = true)]
async fn reconfigure_keeps_tokens_of_unchanged_credentials() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, reg) = cache_with(
        &fake,
        &[credential("a"), credential("b"), credential("gone")],
    );
    let a = cache.get("a").await.unwrap();
    let b = cache.get("b").await.unwrap();
    cache.get("gone").await.unwrap();
    let mut b2 = credential("b");
    oauth(&mut b2).scopes = vec!["more".into()];
    cache
        .reconfigure(&credentials(&[credential("a"), b2, credential("new")]))
        .unwrap();
    assert_eq!(cache.cached("a").unwrap().id(), a.id());
    assert!(cache.cached("b").is_none());
    assert!(cache.get("gone").await.is_err());
    let b_new = cache.get("b").await.unwrap();
    assert_ne!(b_new.id(), b.id());
    assert!(fake.last_request().body.contains("scope=more"));
    cache.get("new").await.unwrap();
    // Metric series of removed credentials are gone; others stay.
    let gathered = format!("{:?}", reg.gather());
    assert!(!gathered.contains("\"gone\""));
    assert_eq!(cache_count(&reg, "a", "miss"), 1.0);
    // An inline secret change is a definition change too.
    let mut a2 = credential("a");
    set_auth(
        &mut a2,
        basic(SecretSource::Inline(tollgate_rules::Secret::new("x"))),
    );
    cache.reconfigure(&credentials(&[a2])).unwrap();
    assert!(cache.cached("a").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_bad_reconfigure_changes_nothing() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, _) = cache_with(&fake, &[credential("a")]);
    let a = cache.get("a").await.unwrap();
    let mut bad = credential("bad");
    set_auth(
        &mut bad,
        AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
            private_key_file: "/nonexistent/key.pem".into(),
            signing_alg: None,
            key_id: None,
            certificate: None,
            assertion_audience: None,
        }),
    );
    let err = cache
        .reconfigure(&credentials(&[credential("b"), bad]))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("credential \"bad\": private_key_file /nonexistent/key.pem"),
        "{err}"
    );
    assert_eq!(cache.cached("a").unwrap().id(), a.id());
    assert!(cache.get("b").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_fetch_for_a_replaced_definition_is_dropped() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    fake.set_delay(secs(1));
    let (cache, _) = cache_with(&fake, &[credential("a")]);
    let old = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.get("a").await })
    };
    settle().await;
    let mut a2 = credential("a");
    client(&mut a2).client_id = "other".into();
    cache.reconfigure(&credentials(&[a2])).unwrap();
    // The waiter still gets the token it asked for...
    assert!(old.await.unwrap().is_ok());
    // ...but it is not cached for the new definition.
    assert!(cache.cached("a").is_none());
}

#[tokio::test(start_paused = true)]
async fn debug_and_display_never_show_secrets_or_tokens() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let t = cache.get("billing").await.unwrap();
    for text in [format!("{cache:?}"), format!("{t:?}")] {
        assert!(!text.contains("tok-1"), "{text}");
        assert!(!text.contains("billing-secret"), "{text}");
    }
    fake.set_default(Reply::Status(
        400,
        r#"{"error":"invalid_request","access_token":"tok-leak"}"#,
        None,
    ));
    let e = cache.fetch_now("billing").await.unwrap_err();
    for text in [format!("{e:?}"), e.to_string()] {
        assert!(!text.contains("tok-leak"), "{text}");
        assert!(!text.contains("billing-secret"), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_register_once_per_registry() {
    let fake = FakeEndpoint::new(Reply::token(60));
    let (_cache, registry) = cache_with(&fake, &[credential("a")]);
    let fake2 = Arc::clone(&fake);
    let again = TokenCache::with_endpoint_factory(
        &credentials(&[credential("a")]),
        &registry,
        Box::new(move |_| Ok(Arc::clone(&fake2) as Arc<dyn TokenEndpoint>)),
    );
    assert!(matches!(again, Err(AuthError::Metrics(_))));
}
