//! Sender-constrained token requests through the cache and a scripted endpoint: the DPoP
//! proof on each token request (checked as a server would), the nonce answered once, a
//! Bearer answer to a DPoP request refused, and the mutual TLS methods' form.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Value};
use tollgate_rules::{AuthMethod, Dpop, TlsClient};

use crate::auth::client::{
    BoxFuture, HttpRequest, HttpResponse, RateLimitHeaders, TokenEndpoint, TransportError,
};
use crate::auth::test_support::{credential, credentials, oauth, set_auth, TempDir};
use crate::auth::TokenCache;

const EC_PKCS8: &str = include_str!("../fixtures/ec-p256-pkcs8.pem");
const EC_JKT: &str = include_str!("../fixtures/ec-p256-pkcs8.jkt");
const TOKEN_URL: &str = "https://idp.example.com/oauth2/token";

/// Answers from a script, recording each request.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<(u16, Value, Option<&'static str>)>>,
    seen: Mutex<Vec<HttpRequest>>,
}

impl Script {
    fn new(answers: Vec<(u16, Value, Option<&'static str>)>) -> Arc<Script> {
        Arc::new(Script {
            answers: Mutex::new(answers.into()),
            seen: Mutex::default(),
        })
    }
    fn seen(&self) -> Vec<HttpRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl TokenEndpoint for Script {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(request);
            let (status, body, nonce) = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .expect("no more scripted answers");
            Ok(HttpResponse {
                status,
                retry_after: None,
                rate_limit: RateLimitHeaders::default(),
                dpop_nonce: nonce.map(|n| n.as_bytes().to_vec()),
                body: body.to_string().into_bytes(),
            })
        })
    }
}

fn cache(script: &Arc<Script>, def: tollgate_rules::Credential) -> Arc<TokenCache> {
    let registry = prometheus::Registry::new();
    let s = Arc::clone(script);
    TokenCache::with_endpoint_factory(
        &credentials(&[def]),
        &registry,
        Box::new(move |_| Ok(Arc::clone(&s) as Arc<dyn TokenEndpoint>)),
    )
    .unwrap()
}

fn dpop_credential(dir: &TempDir) -> tollgate_rules::Credential {
    let mut def = credential("api");
    oauth(&mut def).dpop = Some(Dpop {
        key_file: dir.write("dpop.pem", EC_PKCS8),
    });
    def
}

fn dpop_token(token: &str) -> Value {
    json!({"access_token": token, "token_type": "DPoP", "expires_in": 3600})
}

/// The proof of a request, verified with its own `jwk` as a server does; its claims.
fn proof_claims(req: &HttpRequest) -> Value {
    let proof = req.header("DPoP").expect("a DPoP header");
    let parts: Vec<&str> = proof.split('.').collect();
    let d = |p: &str| URL_SAFE_NO_PAD.decode(p).unwrap();
    let header: Value = serde_json::from_slice(&d(parts[0])).unwrap();
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    let mut point = vec![4u8];
    point.extend(d(header["jwk"]["x"].as_str().unwrap()));
    point.extend(d(header["jwk"]["y"].as_str().unwrap()));
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &d(parts[2]),
        )
        .expect("the proof verifies");
    serde_json::from_slice(&d(parts[1])).unwrap()
}

#[tokio::test]
async fn a_dpop_token_request_carries_a_proof_and_the_token_is_bound() {
    let dir = TempDir::new();
    let script = Script::new(vec![(200, dpop_token("tok-1"), None)]);
    let cache = cache(&script, dpop_credential(&dir));
    let token = cache.get("api").await.unwrap();
    let seen = script.seen();
    assert_eq!(seen.len(), 1);
    let c = proof_claims(&seen[0]);
    assert_eq!(c["htm"], "POST");
    assert_eq!(c["htu"], TOKEN_URL);
    assert!(c.get("ath").is_none(), "no token yet: no ath");
    assert!(c.get("nonce").is_none());
    // The secret still authenticates the client, as without DPoP.
    assert!(seen[0]
        .header("Authorization")
        .unwrap()
        .starts_with("Basic "));
    let b = token.dpop().expect("bound to the key");
    assert_eq!(b.key.jkt(), EC_JKT);
    assert_eq!(&*token.value_bytes("DPoP ").unwrap(), b"DPoP tok-1");
}

#[tokio::test]
async fn the_token_endpoint_nonce_is_answered_once_and_remembered() {
    let dir = TempDir::new();
    let ask = json!({"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"});
    let script = Script::new(vec![
        (400, ask, Some("n-1")),
        (200, dpop_token("tok-1"), Some("n-2")),
        // After an invalidation: the remembered n-2 goes at once.
        (200, dpop_token("tok-2"), None),
    ]);
    let cache = cache(&script, dpop_credential(&dir));
    let t1 = cache.get("api").await.unwrap();
    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    assert!(proof_claims(&seen[0]).get("nonce").is_none());
    assert_eq!(proof_claims(&seen[1])["nonce"], "n-1");
    assert_ne!(proof_claims(&seen[0])["jti"], proof_claims(&seen[1])["jti"]);

    assert!(cache.invalidate("api", &t1));
    cache.get("api").await.unwrap();
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(proof_claims(&seen[2])["nonce"], "n-2");
}

#[tokio::test]
async fn a_second_nonce_demand_is_a_failure_not_a_loop() {
    let dir = TempDir::new();
    let ask = json!({"error": "use_dpop_nonce"});
    let script = Script::new(vec![
        (400, ask.clone(), Some("n-1")),
        (400, ask, Some("n-2")),
    ]);
    let cache = cache(&script, dpop_credential(&dir));
    let e = cache.get("api").await.unwrap_err().to_string();
    assert_eq!(script.seen().len(), 2, "answered once, then given up");
    assert!(e.contains("use_dpop_nonce"), "{e}");
}

#[tokio::test]
async fn a_bearer_answer_to_a_dpop_request_is_refused() {
    let dir = TempDir::new();
    for body in [
        json!({"access_token": "t", "token_type": "Bearer", "expires_in": 3600}),
        json!({"access_token": "t", "expires_in": 3600}),
    ] {
        let script = Script::new(vec![(200, body, None)]);
        let cache = cache(&script, dpop_credential(&dir));
        let e = cache.get("api").await.unwrap_err().to_string();
        assert!(
            e.contains("credential \"api\"") && e.contains("not bound to the DPoP key"),
            "{e}"
        );
        assert!(!e.contains("\"t\""), "no token in the error: {e}");
    }
}

#[tokio::test]
async fn without_dpop_nothing_changes() {
    let script = Script::new(vec![(
        200,
        json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}),
        Some("ignored"),
    )]);
    let cache = cache(&script, credential("api"));
    let t = cache.get("api").await.unwrap();
    assert!(script.seen()[0].header("DPoP").is_none());
    assert!(t.dpop().is_none());
    assert_eq!(&*t.value_bytes("Bearer ").unwrap(), b"Bearer tok-1");
}

#[tokio::test]
async fn tls_client_auth_sends_the_client_id_and_no_secret() {
    for auth in [
        AuthMethod::TlsClientAuth as fn(TlsClient) -> AuthMethod,
        AuthMethod::SelfSignedTlsClientAuth,
    ] {
        let script = Script::new(vec![(
            200,
            json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}),
            None,
        )]);
        let mut def = credential("bank");
        set_auth(
            &mut def,
            auth(TlsClient {
                cert_file: "/unused/by/the/fake.pem".into(),
                key_file: "/unused/by/the/fake.key".into(),
            }),
        );
        let cache = cache(&script, def);
        cache.get("bank").await.unwrap();
        let req = &script.seen()[0];
        assert_eq!(
            req.form(),
            vec![
                ("grant_type".to_string(), "client_credentials".to_string()),
                ("client_id".to_string(), "bank-client".to_string()),
            ]
        );
        assert!(req.header("Authorization").is_none());
    }
}
