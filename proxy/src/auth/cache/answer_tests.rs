//! What the cache makes of odd answers (issue 11): a token type it cannot send, an
//! `expires_in` that says the token is already dead, and a slow answer (the lifetime
//! counts from when the request was sent).

use super::*;
use crate::auth::test_support::{cache_with, credential, metric, FakeEndpoint, Reply};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn a_mac_token_is_a_failed_fetch_naming_credential_and_type() {
    let fake = FakeEndpoint::new(Reply::Status(
        200,
        r#"{"access_token":"abc","token_type":"mac","expires_in":3600}"#,
        None,
    ));
    let (cache, reg) = cache_with(&fake, &[credential("billing")]);
    let err = cache.get("billing").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "credential \"billing\": token endpoint issued a token of type \"mac\", which tollgate \
         does not use (it sends only Bearer tokens; RFC 6749 §7.1)"
    );
    assert!(!err.is_permanent());
    assert!(cache.cached("billing").is_none(), "nothing cached");
    assert_eq!(
        metric(
            &reg,
            "tollgate_token_requests_total",
            &[("credential", "billing"), ("outcome", "error")]
        ),
        1.0
    );
    // `tollgate token` reports the same failure.
    let err = cache.fetch_now("billing").await.unwrap_err();
    assert!(err.to_string().contains("\"mac\""), "{err}");
    // Any spelling of Bearer is fine (RFC 6749 §5.1: case-insensitive).
    fake.set_default(Reply::Status(
        200,
        r#"{"access_token":"abc","token_type":"bEaReR","expires_in":3600}"#,
        None,
    ));
    assert_eq!(
        cache.fetch_now("billing").await.unwrap().token.secret(),
        "abc"
    );
}

#[tokio::test(start_paused = true)]
async fn expires_in_zero_or_negative_is_a_failed_fetch() {
    for (body, reason) in [
        (
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":0}"#,
            "expires_in is 0: the token is already expired",
        ),
        (
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":-30}"#,
            "expires_in is negative",
        ),
    ] {
        let fake = FakeEndpoint::new(Reply::Status(200, body, None));
        let (cache, _) = cache_with(&fake, &[credential("billing")]);
        let err = cache.get("billing").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "credential \"billing\": token endpoint answered 200 with an unusable body: {reason}"
            )
        );
        assert!(cache.cached("billing").is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn lifetime_counts_from_when_the_request_was_sent() {
    // The answer takes 4 s; the token lives 20 s from when the endpoint issued it, so
    // it may be handed out until 20 - min(30, 2) = 18 s after the request was sent,
    // that is 14 s after it arrived (not 18 s after it arrived).
    let fake = FakeEndpoint::new(Reply::token(20));
    fake.set_delay(secs(4));
    let (cache, _) = cache_with(&fake, &[credential("billing")]);
    let sent = Instant::now();
    let t = cache.get("billing").await.unwrap();
    assert_eq!(Instant::now().duration_since(sent), secs(4));
    assert_eq!(t.expires_at(), (sent + secs(20)).into_std());
    // Keep the background refresher from replacing it.
    fake.set_default(Reply::Status(503, "", None));
    tokio::time::advance(Duration::from_millis(13_999)).await;
    assert_eq!(cache.cached("billing").map(|c| c.id()), Some(t.id()));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        cache.cached("billing").is_none(),
        "18 s after the request was sent the token is past its cutoff"
    );
}
