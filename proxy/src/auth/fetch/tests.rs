//! Every way to get a value, through the cache and a scripted endpoint: the exact
//! requests each grant and method sends, what each answer becomes, and each file
//! problem at fetch time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256};
use serde_json::{json, Value};
use tollgate_rules::{
    AuthMethod, BasicEncoding, CertificateRef, Credential, Endpoint, Grant, JwtBearer,
    PrivateKeyJwt, SecretSource, SigningAlg, Thumbprints, TokenExchange,
};
use url::Url;

use crate::auth::client::HttpRequest;
use crate::auth::test_support::{
    cache_with, credential, metric, oauth, set_auth, static_credential, FakeEndpoint, Reply,
    TempDir,
};

const RSA_PKCS8: &str = include_str!("../fixtures/rsa-2048-pkcs8.pem");
const RSA_PUB_DER: &[u8] = include_bytes!("../fixtures/rsa-2048-public-pkcs1.der");
const RSA_CERT: &str = include_str!("../fixtures/rsa-2048-cert.pem");
const RSA_CERT_X5T_S256: &str = include_str!("../fixtures/rsa-2048-cert.x5t-s256");
const RSA_CERT_X5T: &str = include_str!("../fixtures/rsa-2048-cert.x5t");
const EC_CERT: &str = include_str!("../fixtures/ca.pem");

fn token_body(token: &str) -> String {
    json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}).to_string()
}

fn field(req: &HttpRequest, name: &str) -> Option<String> {
    req.form()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn names(req: &HttpRequest) -> Vec<String> {
    req.form().into_iter().map(|(k, _)| k).collect()
}

/// Verifies a JWT with the RSA fixture's public key (RS256 or PS256); (header, claims).
fn verify_rsa(jwt: &str) -> (Value, Value) {
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let (h, c) = signed.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    let alg: &'static dyn ring::signature::VerificationAlgorithm = match header["alg"].as_str() {
        Some("PS256") => &RSA_PSS_2048_8192_SHA256,
        _ => &RSA_PKCS1_2048_8192_SHA256,
    };
    UnparsedPublicKey::new(alg, RSA_PUB_DER)
        .verify(signed.as_bytes(), &sig)
        .expect("signature verifies");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap();
    (header, claims)
}

fn jwt_with(claims: &Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{c}.c2ln")
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ------------------------------------------------------------ client_secret_files

/// Basic secret of a request.
fn basic_secret(req: &HttpRequest) -> String {
    let b64 = req
        .header("authorization")
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    let pair = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
    pair.split_once(':').unwrap().1.to_string()
}

/// An endpoint that accepts only `accepted` as the secret (Entra's answer otherwise).
fn accepts(accepted: &'static str) -> Reply {
    Reply::with(move |req, n| {
        if basic_secret(req) == accepted {
            (200, token_body(&format!("tok-{n}")))
        } else {
            (
                401,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}).to_string(),
            )
        }
    })
}

#[tokio::test(start_paused = true)]
async fn the_previous_secret_is_tried_when_the_current_one_is_refused() {
    let dir = TempDir::new();
    let new = dir.write("new", "new-secret\n");
    let old = dir.write("old", "old-secret\n");
    let mut def = credential("rot");
    set_auth(
        &mut def,
        AuthMethod::ClientSecretBasic {
            secret: SecretSource::Files(vec![new.clone(), old.clone()]),
            encoding: BasicEncoding::FormUrlencoded,
        },
    );
    // The IdP knows only the old secret yet.
    let fake = FakeEndpoint::new(accepts("old-secret"));
    let (cache, reg) = cache_with(&fake, &[def]);
    let in_use = |reg: &prometheus::Registry| {
        metric(
            reg,
            "tollgate_token_client_secret_in_use",
            &[("credential", "rot")],
        )
    };
    assert_eq!(in_use(&reg), 0.0, "no series before a token");
    let t = cache.get("rot").await.unwrap();
    assert_eq!(t.secret(), "tok-2");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(basic_secret(&reqs[0]), "new-secret");
    assert_eq!(basic_secret(&reqs[1]), "old-secret");
    assert_eq!(in_use(&reg), 2.0);
    let requests = |outcome| {
        metric(
            &reg,
            "tollgate_token_requests_total",
            &[("credential", "rot"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (requests("permanent_error"), requests("success")),
        (1.0, 1.0)
    );
    let info = cache.fetch_now("rot").await.unwrap();
    assert!(
        info.used
            .contains(&format!("client_secret_files[1] {}", old.display()))
            && info.used.contains(&format!(
                "refused: client_secret_basic with client_secret_files[0] {}",
                new.display()
            )),
        "{}",
        info.used
    );

    // The IdP now has the new secret: every attempt starts with the current one.
    fake.set_default(accepts("new-secret"));
    let info = cache.fetch_now("rot").await.unwrap();
    assert_eq!(in_use(&reg), 1.0, "the old secret can be revoked");
    assert!(
        info.used
            .ends_with(&format!("client_secret_files[0] {}", new.display())),
        "{}",
        info.used
    );
    assert!(!info.used.contains("refused"));
    assert_eq!(fake.calls(), 5);

    // Neither works: one attempt, two requests, the last refusal is the error.
    fake.set_default(accepts("something-else"));
    let err = cache.fetch_now("rot").await.unwrap_err();
    assert!(err.is_permanent());
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    assert_eq!(fake.calls(), 7);
    assert!(
        !format!("{err} {info:?}").contains("-secret"),
        "no secret shown"
    );
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_does_not_try_the_previous_secret() {
    let dir = TempDir::new();
    let mut def = credential("rot");
    set_auth(
        &mut def,
        AuthMethod::ClientSecretPost(SecretSource::Files(vec![
            dir.write("new", "n"),
            dir.write("old", "o"),
        ])),
    );
    let fake = FakeEndpoint::new(Reply::Status(503, "", None));
    let (cache, _) = cache_with(&fake, &[def]);
    cache.get("rot").await.unwrap_err();
    assert_eq!(fake.calls(), 1, "a 503 says nothing about the secret");
}

// ------------------------------------------------------------ Basic encoding

#[tokio::test(start_paused = true)]
async fn raw_basic_credentials_reach_the_wire_undecoded() {
    let mut def = credential("entra");
    set_auth(
        &mut def,
        AuthMethod::ClientSecretBasic {
            secret: SecretSource::Inline(tollgate_rules::Secret::new("Ab~cD.eF")),
            encoding: BasicEncoding::Raw,
        },
    );
    let fake = FakeEndpoint::new(Reply::token(60));
    let (cache, _) = cache_with(&fake, &[def]);
    cache.get("entra").await.unwrap();
    assert_eq!(basic_secret(&fake.last_request()), "Ab~cD.eF");
}

// ------------------------------------------------------------ private_key_jwt extras

fn jwt_credential(
    dir: &TempDir,
    cert: Option<&str>,
    alg: Option<SigningAlg>,
    x5t: bool,
) -> Credential {
    let mut def = credential("entra");
    oauth(&mut def).endpoint = Endpoint::TokenUrl(
        Url::parse("https://login.microsoftonline.com/contoso/oauth2/v2.0/token").unwrap(),
    );
    oauth(&mut def).scopes = vec!["api://billing/.default".into()];
    set_auth(
        &mut def,
        AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
            private_key_file: dir.write("key.pem", RSA_PKCS8),
            signing_alg: alg,
            key_id: None,
            certificate: cert.map(|c| CertificateRef {
                file: dir.write("cert.pem", c),
                thumbprints: if x5t {
                    Thumbprints::Sha256AndSha1
                } else {
                    Thumbprints::Sha256
                },
            }),
            assertion_audience: None,
        }),
    );
    def
}

#[tokio::test(start_paused = true)]
async fn a_certificate_adds_its_thumbprints_and_ps256_signs() {
    let dir = TempDir::new();
    let def = jwt_credential(&dir, Some(RSA_CERT), Some(SigningAlg::Ps256), false);
    let fake = FakeEndpoint::new(Reply::token(3599));
    let (cache, _) = cache_with(&fake, &[def]);
    let info = cache.fetch_now("entra").await.unwrap();
    let req = fake.last_request();
    assert_eq!(
        names(&req),
        [
            "grant_type",
            "scope",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    let (header, claims) = verify_rsa(&field(&req, "client_assertion").unwrap());
    assert_eq!(
        header,
        json!({"alg": "PS256", "typ": "JWT", "x5t#S256": RSA_CERT_X5T_S256.trim()})
    );
    assert_eq!(
        claims["aud"],
        "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
    );
    assert_eq!(claims["iss"], "entra-client");
    assert!(
        info.used.contains("PS256") && info.used.contains("x5t#S256"),
        "{}",
        info.used
    );

    // With `x5t: true`, the SHA-1 thumbprint too.
    let def = jwt_credential(&dir, Some(RSA_CERT), None, true);
    let (cache, _) = cache_with(&fake, &[def]);
    cache.fetch_now("entra").await.unwrap();
    let (header, _) = verify_rsa(&field(&fake.last_request(), "client_assertion").unwrap());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["x5t"], RSA_CERT_X5T.trim());
    assert_eq!(header["x5t#S256"], RSA_CERT_X5T_S256.trim());
}

#[tokio::test(start_paused = true)]
async fn a_certificate_of_another_key_is_refused() {
    let dir = TempDir::new();
    let def = jwt_credential(&dir, Some(EC_CERT), None, false);
    let fake = FakeEndpoint::new(Reply::token(60));
    let registry = prometheus::Registry::new();
    let err = crate::auth::TokenCache::with_endpoint_factory(
        &crate::auth::test_support::credentials(std::slice::from_ref(&def)),
        &registry,
        Box::new(move |_| Ok(Arc::clone(&fake) as Arc<dyn crate::auth::TokenEndpoint>)),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("credential \"entra\": certificate_file ")
            && err.ends_with(&format!(
                "is not a certificate of the key in private_key_file {}",
                dir.path().join("key.pem").display()
            )),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn assertion_audience_replaces_the_token_url() {
    let dir = TempDir::new();
    let mut def = jwt_credential(&dir, None, None, false);
    if let Grant::ClientCredentials(c) = &mut oauth(&mut def).grant {
        if let AuthMethod::PrivateKeyJwt(k) = &mut c.auth {
            k.assertion_audience = Some("https://tenant.auth0.com/".into());
        }
    }
    let fake = FakeEndpoint::new(Reply::token(60));
    let (cache, _) = cache_with(&fake, &[def]);
    cache.get("entra").await.unwrap();
    let (_, claims) = verify_rsa(&field(&fake.last_request(), "client_assertion").unwrap());
    assert_eq!(claims["aud"], "https://tenant.auth0.com/");
}

// ------------------------------------------------------------ client_assertion_file

#[tokio::test(start_paused = true)]
async fn the_assertion_file_is_read_for_every_request() {
    let dir = TempDir::new();
    let path = dir.write("azure-identity-token", "eyJ.first.sig");
    let mut def = credential("wif");
    set_auth(&mut def, AuthMethod::ClientAssertionFile(path.clone()));
    let fake = FakeEndpoint::new(Reply::token(60));
    let (cache, _) = cache_with(&fake, &[def]);
    cache.fetch_now("wif").await.unwrap();
    let req = fake.last_request();
    assert_eq!(
        req.form(),
        vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), "wif-client".into()),
            (
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()
            ),
            ("client_assertion".into(), "eyJ.first.sig".into()),
        ]
    );
    // Renewed in place, same length, same instant: the next request sends the new one.
    std::fs::write(&path, "eyJ.secnd.sig").unwrap();
    cache.fetch_now("wif").await.unwrap();
    assert_eq!(
        field(&fake.last_request(), "client_assertion").as_deref(),
        Some("eyJ.secnd.sig")
    );

    // Empty, then missing: a clear failure naming the file, nothing sent.
    std::fs::write(&path, "").unwrap();
    let err = cache.fetch_now("wif").await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "credential \"wif\": cannot authenticate: client_assertion_file {}: is empty",
            path.display()
        )
    );
    std::fs::remove_file(&path).unwrap();
    let err = cache.get("wif").await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("client_assertion_file {}: ", path.display())),
        "{err}"
    );
    assert_eq!(fake.calls(), 2);
}

// ------------------------------------------------------------ jwt_bearer

fn service_account(dir: &TempDir, token_uri: &str) -> std::path::PathBuf {
    dir.write(
        "sa.json",
        json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "kid-123",
            "private_key": RSA_PKCS8,
            "client_email": "egress@p.iam.gserviceaccount.com",
            "token_uri": token_uri,
        })
        .to_string(),
    )
}

fn google(dir: &TempDir, target_audience: Option<&str>) -> Credential {
    let mut def = credential("google");
    let o = oauth(&mut def);
    o.endpoint = Endpoint::ServiceAccount;
    o.grant = Grant::JwtBearer(JwtBearer {
        service_account_file: service_account(dir, "https://oauth2.googleapis.com/token"),
        target_audience: target_audience.map(str::to_owned),
        assertion_audience: None,
    });
    if target_audience.is_none() {
        o.scopes = vec!["https://www.googleapis.com/auth/cloud-platform".into()];
    }
    def
}

#[tokio::test(start_paused = true)]
async fn a_service_account_signs_a_jwt_bearer_grant() {
    let dir = TempDir::new();
    let fake = FakeEndpoint::new(Reply::Status(
        200,
        r#"{"access_token":"ya29.c.token","expires_in":3599,"token_type":"Bearer"}"#,
        None,
    ));
    let (cache, _) = cache_with(&fake, &[google(&dir, None)]);
    let before = now_unix();
    let info = cache.fetch_now("google").await.unwrap();
    assert_eq!(info.token.secret(), "ya29.c.token");
    let req = fake.last_request();
    assert_eq!(req.url.as_str(), "https://oauth2.googleapis.com/token");
    assert_eq!(
        names(&req),
        ["grant_type", "assertion"],
        "scopes go in the assertion"
    );
    assert_eq!(
        field(&req, "grant_type").unwrap(),
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(req.header("authorization"), None);
    let (header, claims) = verify_rsa(&field(&req, "assertion").unwrap());
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "kid-123"})
    );
    assert_eq!(claims["iss"], "egress@p.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat >= before && iat <= now_unix());
    assert_eq!(claims["exp"].as_u64().unwrap() - iat, 3600);
    assert!(
        info.used.contains("egress@p.iam.gserviceaccount.com"),
        "{}",
        info.used
    );
}

#[tokio::test(start_paused = true)]
async fn target_audience_gets_an_id_token_that_lives_until_its_exp() {
    let dir = TempDir::new();
    let exp = now_unix() + 1200;
    let id_token =
        jwt_with(&json!({"aud": "https://svc-xyz.run.app", "exp": exp, "iat": exp - 3600}));
    let body: &'static str =
        Box::leak(json!({ "id_token": id_token }).to_string().into_boxed_str());
    let fake = FakeEndpoint::new(Reply::Status(200, body, None));
    let (cache, _) = cache_with(&fake, &[google(&dir, Some("https://svc-xyz.run.app"))]);
    let info = cache.fetch_now("google").await.unwrap();
    assert_eq!(info.token.secret(), id_token);
    assert_eq!(info.lifetime_source, "jwt_exp");
    assert!(
        (1198..=1200).contains(&info.lifetime.as_secs()),
        "{:?}",
        info.lifetime
    );
    let req = fake.last_request();
    assert_eq!(names(&req), ["grant_type", "assertion"]);
    let (_, claims) = verify_rsa(&field(&req, "assertion").unwrap());
    assert_eq!(claims["target_audience"], "https://svc-xyz.run.app");
    assert!(claims.get("scope").is_none());
    // Injected as the route says.
    let t = cache.get("google").await.unwrap();
    assert_eq!(
        t.header_value("Bearer ").unwrap(),
        format!("Bearer {id_token}").as_str()
    );

    // An ID token without exp is an unusable answer.
    let no_exp: &'static str = Box::leak(
        json!({ "id_token": jwt_with(&json!({"aud": "x"})) })
            .to_string()
            .into_boxed_str(),
    );
    fake.set_default(Reply::Status(200, no_exp, None));
    let err = cache.fetch_now("google").await.unwrap_err().to_string();
    assert_eq!(
        err,
        "credential \"google\": token endpoint answered 200 with an unusable body: the id_token has no exp claim"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_service_account_file_fails_the_setup_naming_the_field() {
    let dir = TempDir::new();
    let mut def = google(&dir, None);
    let path = dir.write(
        "sa.json",
        json!({"type": "service_account", "private_key": RSA_PKCS8}).to_string(),
    );
    if let Grant::JwtBearer(j) = &mut oauth(&mut def).grant {
        j.service_account_file = path.clone();
    }
    let registry = prometheus::Registry::new();
    let err = crate::auth::TokenCache::new(
        &crate::auth::test_support::credentials(&[def]),
        None,
        &registry,
    )
    .err()
    .unwrap()
    .to_string();
    assert_eq!(
        err,
        format!(
            "credential \"google\": service_account_file {}: lacks `client_email`",
            path.display()
        )
    );
}

// ------------------------------------------------------------ token_exchange

fn sts(dir: &TempDir, requested: Option<&str>) -> (Credential, std::path::PathBuf) {
    let path = dir.write("gcp-ksa", "eyJ.k8s.one\n");
    let mut def = credential("sts");
    let o = oauth(&mut def);
    o.endpoint = Endpoint::TokenUrl(Url::parse("https://sts.googleapis.com/v1/token").unwrap());
    o.audience = Some(
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
            .into(),
    );
    o.scopes = vec!["https://www.googleapis.com/auth/cloud-platform".into()];
    o.grant = Grant::TokenExchange(TokenExchange {
        subject_token_file: path.clone(),
        subject_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
        requested_token_type: requested.map(str::to_owned),
        client: None,
    });
    (def, path)
}

const STS_ANSWER: &str = r#"{"access_token":"ya29.sts","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3599}"#;

#[tokio::test(start_paused = true)]
async fn token_exchange_sends_the_subject_token_of_the_moment() {
    let dir = TempDir::new();
    let (def, path) = sts(&dir, Some("urn:ietf:params:oauth:token-type:access_token"));
    let fake = FakeEndpoint::new(Reply::Status(200, STS_ANSWER, None));
    let (cache, _) = cache_with(&fake, &[def]);
    let t = cache.get("sts").await.unwrap();
    assert_eq!(t.secret(), "ya29.sts");
    let req = fake.last_request();
    assert_eq!(
        names(&req),
        [
            "grant_type",
            "subject_token",
            "subject_token_type",
            "requested_token_type",
            "scope",
            "audience"
        ]
    );
    assert_eq!(field(&req, "subject_token").as_deref(), Some("eyJ.k8s.one"));
    assert_eq!(
        req.header("authorization"),
        None,
        "no client authentication"
    );
    std::fs::write(&path, "eyJ.k8s.two").unwrap();
    cache.fetch_now("sts").await.unwrap();
    assert_eq!(
        field(&fake.last_request(), "subject_token").as_deref(),
        Some("eyJ.k8s.two")
    );

    // The issued type is checked.
    fake.set_default(Reply::Status(
        200,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#,
        None,
    ));
    let err = cache.fetch_now("sts").await.unwrap_err().to_string();
    assert!(
        err.ends_with("it has no issued_token_type (RFC 8693 §2.2.1)"),
        "{err}"
    );
    // A missing subject token file: named, nothing sent.
    std::fs::remove_file(&path).unwrap();
    let calls = fake.calls();
    let err = cache.fetch_now("sts").await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "cannot authenticate: subject_token_file {}",
            path.display()
        )),
        "{err}"
    );
    assert_eq!(fake.calls(), calls);
}

// ------------------------------------------------------------ kind: static

#[tokio::test(start_paused = true)]
async fn a_static_value_is_served_and_follows_its_file() {
    let dir = TempDir::new();
    let path = dir.write("stripe", "sk_test_one\n");
    let def = static_credential("stripe", &path);
    let fake = FakeEndpoint::new(Reply::token(60));
    let (cache, reg) = cache_with(&fake, &[def]);
    let handle = cache.handle("stripe").unwrap();
    assert!(!handle.replays_after_401());
    assert!(cache.handle("stripe").is_some());
    let t = cache.get("stripe").await.unwrap();
    assert_eq!(t.secret(), "sk_test_one");
    assert_eq!(t.header_value("").unwrap(), "sk_test_one");
    assert_eq!(t.header_value("Bearer ").unwrap(), "Bearer sk_test_one");
    assert_eq!(
        cache
            .hit(&handle, |t| t.header_value("Token ").unwrap())
            .unwrap(),
        "Token sk_test_one"
    );
    let info = cache.fetch_now("stripe").await.unwrap();
    assert_eq!(info.token_type, "static");
    assert_eq!(info.lifetime_source, "static");
    assert_eq!(info.used, format!("static value_file {}", path.display()));
    assert_eq!(fake.calls(), 0, "no token endpoint is involved");
    assert_eq!(
        metric(
            &reg,
            "tollgate_token_requests_total",
            &[("credential", "stripe")]
        ),
        0.0
    );

    // Rotated: served within about a second.
    dir.replace("stripe", "sk_test_two\n");
    tokio::time::advance(Duration::from_millis(1100)).await;
    let _ = cache.hit(&handle, |_| ());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        cache.hit(&handle, |t| t.secret().to_owned()).unwrap(),
        "sk_test_two"
    );

    // Gone for a moment (a Secret being swapped): the last value keeps serving.
    std::fs::remove_file(&path).unwrap();
    tokio::time::advance(Duration::from_millis(1100)).await;
    let _ = cache.hit(&handle, |_| ());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        cache.hit(&handle, |t| t.secret().to_owned()).unwrap(),
        "sk_test_two"
    );

    // OAuth credentials do replay.
    let (cache, _) = cache_with(&fake, &[credential("api")]);
    assert!(cache.handle("api").unwrap().replays_after_401());
}

#[tokio::test(start_paused = true)]
async fn a_bad_static_file_is_explained_without_its_content() {
    let dir = TempDir::new();
    let path = dir.write("key", "line one\nline two\n");
    let registry = prometheus::Registry::new();
    let err = crate::auth::TokenCache::new(
        &crate::auth::test_support::credentials(&[static_credential("k", &path)]),
        None,
        &registry,
    )
    .err()
    .unwrap()
    .to_string();
    assert_eq!(
        err,
        format!(
            "credential \"k\": value_file {}: holds characters not allowed in an HTTP header (a line break?)",
            path.display()
        )
    );
}
