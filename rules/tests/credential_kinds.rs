//! The credential keys of "More ways to get a token": `issuer`, `grant` (`jwt_bearer`,
//! `token_exchange`), certificates and assertion files, `client_secret_files`,
//! `basic_encoding`, `kind: static`. What each builds, and each misuse reported at its
//! key.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use tollgate_rules::*;

fn env(name: &str) -> Option<String> {
    (name == "TENANT").then(|| "contoso".to_owned())
}

fn cred(yaml: &str) -> Credential {
    let text = format!("credentials:\n  c:\n{yaml}");
    match load_str("t.yaml", &text, &env) {
        Ok(mut c) => c.credentials.remove("c").unwrap(),
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- text:\n{text}"),
    }
}

/// Exactly one problem at `at` ("LINE:COL", lines counted from `credentials:` = 1)
/// containing `needle`.
#[track_caller]
fn one(yaml: &str, at: &str, needle: &str) {
    let text = format!("credentials:\n  c:\n{yaml}");
    let ps = match load_str("t.yaml", &text, &env) {
        Ok(_) => panic!("expected a problem, config was valid:\n{text}"),
        Err(ConfigErrors(ps)) => ps,
    };
    let shown: Vec<String> = ps
        .iter()
        .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
        .collect();
    assert_eq!(shown.len(), 1, "expected one problem, got {shown:#?}");
    assert!(
        shown[0].starts_with(&format!("{at}: ")) && shown[0].contains(needle),
        "expected {needle:?} at {at}, got {}",
        shown[0]
    );
}

fn oauth(c: &Credential) -> &OAuth2 {
    c.oauth2().unwrap()
}

fn client(c: &Credential) -> &Client {
    oauth(c).grant.client().unwrap()
}

#[test]
fn issuer_instead_of_token_url() {
    let c = cred("    issuer: https://dev-123.okta.com/oauth2/default\n    client_id: a\n    client_secret: b\n");
    assert_eq!(
        oauth(&c).endpoint,
        Endpoint::Issuer(url::Url::parse("https://dev-123.okta.com/oauth2/default").unwrap())
    );
    assert_eq!(
        c.describe(),
        "client_credentials from issuer https://dev-123.okta.com/oauth2/default (discovery) \
         as client \"a\" (client_secret_basic)"
    );
    let c = cred("    issuer: http://127.0.0.1:8080\n    client_id: a\n    client_secret: b\n");
    assert!(matches!(oauth(&c).endpoint, Endpoint::Issuer(_)));
    one(
        "    issuer: http://idp.example.com\n    client_id: a\n    client_secret: b\n",
        "3:13",
        "credentials.c.issuer: `http://idp.example.com` must use https",
    );
    one(
        "    issuer: https://idp.example.com/?tenant=x\n    client_id: a\n    client_secret: b\n",
        "3:13",
        "an issuer has no query",
    );
    one(
        "    token_url: https://h/t\n    issuer: https://h\n    client_id: a\n    client_secret: b\n",
        "4:5",
        "give either `token_url` or `issuer`",
    );
}

#[test]
fn google_service_accounts() {
    let c = cred(
        "    grant: jwt_bearer\n    service_account_file: /k.json\n    scopes: [https://www.googleapis.com/auth/cloud-platform]\n",
    );
    let o = oauth(&c);
    assert_eq!(o.endpoint, Endpoint::ServiceAccount);
    assert_eq!(
        o.grant,
        Grant::JwtBearer(JwtBearer {
            service_account_file: "/k.json".into(),
            target_audience: None,
            assertion_audience: None,
        })
    );
    assert_eq!(
        o.grant.grant_type(),
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert!(o.grant.client().is_none());
    assert_eq!(c.files(), [Path::new("/k.json")]);
    let c = cred(
        "    grant: jwt_bearer\n    service_account_file: /k.json\n    target_audience: https://svc-xyz.run.app\n    token_url: https://oauth2.googleapis.com/token\n",
    );
    let Grant::JwtBearer(j) = &oauth(&c).grant else {
        panic!()
    };
    assert_eq!(
        j.target_audience.as_deref(),
        Some("https://svc-xyz.run.app")
    );
    assert!(matches!(oauth(&c).endpoint, Endpoint::TokenUrl(_)));
    assert!(
        c.describe()
            .contains("ID token for \"https://svc-xyz.run.app\""),
        "{}",
        c.describe()
    );

    one(
        "    grant: jwt_bearer\n    scopes: [s]\n",
        "2:3",
        "`grant: jwt_bearer` needs `service_account_file`",
    );
    one(
        "    grant: jwt_bearer\n    service_account_file: /k.json\n",
        "2:3",
        "needs `scopes` (or `target_audience`, for an ID token)",
    );
    one(
        "    grant: jwt_bearer\n    service_account_file: /k.json\n    target_audience: x\n    scopes: [s]\n",
        "6:5",
        "an ID token (`target_audience`) has no scopes",
    );
    one(
        "    grant: jwt_bearer\n    service_account_file: /k.json\n    scopes: [s]\n    client_id: a\n",
        "6:5",
        "`grant: jwt_bearer` signs with the service account's key; it does not use `client_id`",
    );
    one(
        "    grant: jwt_bearer\n    service_account_file: /k.json\n    scopes: [s]\n    issuer: https://accounts.google.com\n",
        "6:5",
        "it does not use `issuer`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    target_audience: x\n",
        "6:5",
        "only `grant: jwt_bearer` uses `target_audience`",
    );
    one(
        "    grant: jwt_bearer\n    service_account_file: /k.json\n    scopes: [s]\n    subject_token_type: x\n",
        "6:5",
        "only `grant: token_exchange` uses `subject_token_type`",
    );
    one("    grant: saml2\n", "3:12", "unknown variant `saml2`");
}

#[test]
fn certificates_pss_and_assertion_audience() {
    let c = cred(
        "    token_url: https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/token\n    client_id: app\n    auth_method: private_key_jwt\n    private_key_file: key.pem\n    certificate_file: cert.pem\n    signing_alg: PS256\n    scopes: [api://billing/.default]\n",
    );
    assert_eq!(
        client(&c).auth,
        AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
            private_key_file: "key.pem".into(),
            signing_alg: Some(SigningAlg::Ps256),
            key_id: None,
            certificate: Some(CertificateRef {
                file: "cert.pem".into(),
                thumbprints: Thumbprints::Sha256
            }),
            assertion_audience: None,
        })
    );
    assert_eq!(c.files(), [Path::new("key.pem"), Path::new("cert.pem")]);
    let c = cred(
        "    token_url: https://t.auth0.com/oauth/token\n    client_id: app\n    auth_method: private_key_jwt\n    private_key_file: key.pem\n    certificate_file: cert.pem\n    x5t: true\n    assertion_audience: https://t.auth0.com/\n",
    );
    let AuthMethod::PrivateKeyJwt(k) = &client(&c).auth else {
        panic!()
    };
    assert_eq!(
        k.certificate.as_ref().unwrap().thumbprints,
        Thumbprints::Sha256AndSha1
    );
    assert_eq!(
        k.assertion_audience.as_deref(),
        Some("https://t.auth0.com/")
    );

    one(
        "    token_url: https://h/t\n    client_id: a\n    auth_method: private_key_jwt\n    private_key_file: k.pem\n    x5t: true\n",
        "7:5",
        "`x5t` is the certificate's SHA-1 thumbprint: it needs `certificate_file`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    certificate_file: c.pem\n",
        "6:5",
        "only `auth_method: private_key_jwt` uses `certificate_file` (this credential uses client_secret_basic)",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    assertion_audience: x\n",
        "6:5",
        "only `auth_method: private_key_jwt` uses `assertion_audience`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    auth_method: private_key_jwt\n    private_key_file: k.pem\n    certificate_file: \"\"\n",
        "7:23",
        "empty file path",
    );
}

#[test]
fn client_assertion_files() {
    let c = cred(
        "    token_url: https://login.microsoftonline.com/t/oauth2/v2.0/token\n    client_id: app\n    auth_method: client_assertion_file\n    client_assertion_file: /var/run/secrets/azure/tokens/azure-identity-token\n    scopes: [api://billing/.default]\n",
    );
    assert_eq!(
        client(&c).auth,
        AuthMethod::ClientAssertionFile(PathBuf::from(
            "/var/run/secrets/azure/tokens/azure-identity-token"
        ))
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    auth_method: client_assertion_file\n",
        "2:3",
        "`auth_method: client_assertion_file` needs `client_assertion_file`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    auth_method: client_assertion_file\n    client_assertion_file: /t\n    client_secret: x\n",
        "7:5",
        "sends the assertion read from `client_assertion_file` and does not use `client_secret`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    client_assertion_file: /t\n",
        "6:5",
        "only `auth_method: client_assertion_file` uses `client_assertion_file`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    auth_method: client_assertion_file\n    client_assertion_file: /t\n    private_key_file: k.pem\n",
        "7:5",
        "only `auth_method: private_key_jwt` uses `private_key_file` (this credential uses client_assertion_file)",
    );
}

#[test]
fn raw_basic_encoding() {
    let c = cred("    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    basic_encoding: raw\n");
    assert!(matches!(
        client(&c).auth,
        AuthMethod::ClientSecretBasic {
            encoding: BasicEncoding::Raw,
            ..
        }
    ));
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    auth_method: client_secret_post\n    basic_encoding: raw\n",
        "7:5",
        "only `auth_method: client_secret_basic` uses `basic_encoding`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    basic_encoding: base64\n",
        "6:21",
        "unknown variant `base64`, expected `form_urlencoded` or `raw`",
    );
}

#[test]
fn token_exchange() {
    let c = cred(
        "    grant: token_exchange\n    token_url: https://sts.googleapis.com/v1/token\n    subject_token_file: /var/run/secrets/tokens/gcp-ksa\n    subject_token_type: urn:ietf:params:oauth:token-type:jwt\n    requested_token_type: urn:ietf:params:oauth:token-type:access_token\n    audience: //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/K\n    scopes: [https://www.googleapis.com/auth/cloud-platform]\n",
    );
    assert_eq!(
        oauth(&c).grant,
        Grant::TokenExchange(TokenExchange {
            subject_token_file: "/var/run/secrets/tokens/gcp-ksa".into(),
            subject_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
            requested_token_type: Some("urn:ietf:params:oauth:token-type:access_token".into()),
            client: None,
        })
    );
    assert_eq!(c.files(), [Path::new("/var/run/secrets/tokens/gcp-ksa")]);
    // With a client (Keycloak).
    let c = cred(
        "    grant: token_exchange\n    issuer: https://kc.example/realms/r\n    subject_token_file: /t\n    subject_token_type: urn:ietf:params:oauth:token-type:access_token\n    client_id: egress\n    client_secret_file: /s\n",
    );
    assert_eq!(client(&c).client_id, "egress");
    assert_eq!(c.files(), [Path::new("/t"), Path::new("/s")]);

    one(
        "    grant: token_exchange\n    token_url: https://h/t\n    subject_token_type: x\n",
        "2:3",
        "`grant: token_exchange` needs `subject_token_file`",
    );
    one(
        "    grant: token_exchange\n    token_url: https://h/t\n    subject_token_file: /t\n",
        "2:3",
        "`grant: token_exchange` needs `subject_token_type`",
    );
    one(
        "    grant: token_exchange\n    token_url: https://h/t\n    subject_token_file: /t\n    subject_token_type: x\n    client_secret: s\n",
        "7:5",
        "`client_secret` needs `client_id`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    subject_token_file: /t\n",
        "6:5",
        "only `grant: token_exchange` uses `subject_token_file`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    params: { subject_token: x }\n",
        "6:15",
        "tollgate sets this form field itself; use `subject_token_file`",
    );
}

#[test]
fn two_secret_files() {
    let c = cred(
        "    token_url: https://h/t\n    client_id: a\n    client_secret_files: [/s/new, /s/old]\n",
    );
    let AuthMethod::ClientSecretBasic { secret, .. } = &client(&c).auth else {
        panic!()
    };
    assert_eq!(
        secret,
        &SecretSource::Files(vec!["/s/new".into(), "/s/old".into()])
    );
    assert_eq!(c.files(), [Path::new("/s/new"), Path::new("/s/old")]);
    let c = cred("    token_url: https://h/t\n    client_id: a\n    auth_method: client_secret_post\n    client_secret_files: [/s/only]\n");
    assert!(
        matches!(&client(&c).auth, AuthMethod::ClientSecretPost(SecretSource::Files(f)) if f.len() == 1)
    );

    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret_files: []\n",
        "5:26",
        "empty list",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret_files: [/a, /b, /c]\n",
        "5:26",
        "at most 2 files: the current secret's and the previous one's",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret_files: [/a, /a]\n",
        "5:31",
        "credentials.c.client_secret_files[1]: the same file twice",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret_file: /a\n    client_secret_files: [/b]\n",
        "6:5",
        "give only one of `client_secret`, `client_secret_file` and `client_secret_files`",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    auth_method: private_key_jwt\n    private_key_file: k\n    client_secret_files: [/b]\n",
        "7:5",
        "does not use `client_secret_files`",
    );
}

#[test]
fn static_values() {
    let c = cred("    kind: static\n    value_file: /var/run/secrets/stripe/key\n");
    assert_eq!(
        c.kind,
        CredentialKind::Static {
            value_file: "/var/run/secrets/stripe/key".into()
        }
    );
    assert_eq!(c.kind_name(), "static");
    assert!(c.oauth2().is_none());
    assert_eq!(c.files(), [Path::new("/var/run/secrets/stripe/key")]);
    assert_eq!(
        c.describe(),
        "static value from /var/run/secrets/stripe/key"
    );
    one(
        "    kind: static\n",
        "2:3",
        "`kind: static` needs `value_file`",
    );
    one(
        "    kind: static\n    value_file: /k\n    token_url: https://h/t\n",
        "5:5",
        "`kind: static` uses only `value_file`; `token_url` is for OAuth 2 credentials",
    );
    one(
        "    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    value_file: /k\n",
        "6:5",
        "only `kind: static` uses `value_file`",
    );
    one(
        "    kind: apikey\n",
        "3:11",
        "unknown variant `apikey`, expected `oauth2` or `static`",
    );
    // An inject route may use it like any credential.
    let text = "credentials:\n  stripe:\n    kind: static\n    value_file: /k\nroutes:\n  - name: s\n    match: { hosts: [api.stripe.com] }\n    action: inject\n    credential: stripe\n    header: X-Api-Key\n    prefix: \"\"\n";
    let config = load_str("t.yaml", text, &env).unwrap();
    assert_eq!(
        config
            .credential_for(&config.routes[0])
            .unwrap()
            .kind_name(),
        "static"
    );
}

#[test]
fn every_grant_and_method_describes_itself_without_secrets() {
    let c = cred("    token_url: https://h/t\n    client_id: a\n    client_secret: hunter2-secret\n    scopes: [x, y]\n");
    let d = c.describe();
    assert_eq!(
        d,
        "client_credentials from https://h/t as client \"a\" (client_secret_basic), scope \"x y\""
    );
    assert!(!format!("{c:?}").contains("hunter2"));
    let c = cred(
        "    grant: token_exchange\n    token_url: https://h/t\n    subject_token_file: /t\n    subject_token_type: x\n",
    );
    assert_eq!(
        c.describe(),
        "token_exchange from https://h/t for the subject token in /t"
    );
}
