//! Every provider our users name, through the real binary (issue 16): Auth0, Okta,
//! Entra ID (secret, certificate, workload identity federation), Cognito, Google
//! (service account access and ID tokens, STS token exchange) and Keycloak, against the
//! local stand-ins of `tests/idp/providers.mjs`, each of which checks the request shape
//! its provider documents and answers as it does. A route sends each credential's token
//! to a recording upstream; the test checks the upstream got the token the fake issued
//! and the fake saw the documented request, field by field.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;
use tollgate_tests::process::{command, run_to_end, CmdOutput, ConfigFile};
use tollgate_tests::providers::{
    client_cert, client_key, Providers, ENTRA_APP, ENTRA_SECRET, ENTRA_TENANT, SA_EMAIL, SA_KID,
    STS_AUDIENCE, STS_SUBJECT_AUD,
};
use tollgate_tests::{raw, RawResponse, RecordingUpstream, Tollgate};

/// `allow_private_networks`, the credentials (YAML indented under `credentials:`) and one
/// inject route per credential, `/NAME/` on `up`.
fn config(up: &RecordingUpstream, credentials: &str, names: &[&str]) -> String {
    let mut yaml = format!("allow_private_networks: true\ncredentials:\n{credentials}routes:\n");
    for name in names {
        yaml.push_str(&format!(
            "  - name: {name}\n    match:\n      hosts: [\"127.0.0.1:{port}\"]\n      path_prefixes: [\"/{name}/\"]\n    action: inject\n    credential: {name}\n",
            port = up.port()
        ));
    }
    yaml
}

async fn get(tg: &Tollgate, up: &RecordingUpstream, path: &str) -> RawResponse {
    let host = format!("127.0.0.1:{}", up.port());
    let req =
        format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw::request(tg.proxy, "GET", req.as_bytes()).await
}

/// GETs `/NAME/x`, expects 200, and returns the Authorization header the upstream got.
async fn injected(tg: &Tollgate, up: &RecordingUpstream, name: &str) -> String {
    let before = up.requests().len();
    let resp = get(tg, up, &format!("/{name}/x")).await;
    assert_eq!(
        resp.status,
        200,
        "{name}: {resp:?} {}\n{}",
        resp.body_text(),
        tg.output()
    );
    let reqs = up.requests();
    assert_eq!(reqs.len(), before + 1, "{name}");
    reqs[before]
        .header("authorization")
        .unwrap_or_default()
        .to_string()
}

/// GETs `/NAME/x` and expects 502 `token_unavailable`; returns the message.
async fn unavailable(tg: &Tollgate, up: &RecordingUpstream, name: &str) -> String {
    let resp = get(tg, up, &format!("/{name}/x")).await;
    let body = resp.assert_error(502, "token_unavailable", Some(name));
    let message = body["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains(&format!("credential \"{name}\"")),
        "{message}"
    );
    message
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `tollgate run` on a config that must not start; returns its output.
async fn run_fails(yaml: &str) -> CmdOutput {
    let file = ConfigFile::new(&format!(
        "listen:\n  proxy: 127.0.0.1:0\n  admin: 127.0.0.1:0\n{yaml}"
    ));
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = command();
        cmd.arg("run").arg("-c").arg(&file.path);
        run_to_end(cmd)
    })
    .await
    .expect("tollgate run");
    assert_ne!(out.code, Some(0), "it started: {}", out.combined());
    out
}

async fn token_cli(yaml: &str, name: &str) -> CmdOutput {
    let file = ConfigFile::new(yaml);
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut cmd = command();
        cmd.arg("token").arg("-c").arg(&file.path).arg(&name);
        run_to_end(cmd)
    })
    .await
    .expect("tollgate token")
}

// ------------------------------------------------------------------ Auth0

#[tokio::test(flavor = "multi_thread")]
async fn auth0_needs_audience_and_takes_a_secret_or_a_signed_assertion() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let url = p.url("/auth0/oauth/token");
    let creds = format!(
        "  secret:
    token_url: {url}
    client_id: auth0-m2m
    client_secret: auth0-secret
    auth_method: client_secret_post
    audience: https://billing.example.com
  signed:
    token_url: {url}
    client_id: auth0-jwt
    auth_method: private_key_jwt
    private_key_file: {key}
    signing_alg: PS256
    assertion_audience: {base}/auth0/
    audience: https://billing.example.com
    scopes: [read:invoices]
  noaudience:
    token_url: {url}
    client_id: auth0-m2m
    client_secret: auth0-secret
    auth_method: client_secret_post
",
        key = path(&client_key()),
        base = p.base,
    );
    let tg = Tollgate::start(&config(&up, &creds, &["secret", "signed", "noaudience"])).await;

    let header = injected(&tg, &up, "secret").await;
    let reqs = p.requests_to("auth0").await;
    let r = &reqs[0];
    r.assert_shape();
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert_eq!(r.path, "/auth0/oauth/token");
    assert_eq!(
        r.field_names,
        ["grant_type", "audience", "client_id", "client_secret"]
    );
    assert_eq!(r.field("audience"), Some("https://billing.example.com"));
    assert!(r.authorization.is_none(), "post, not Basic: {r:#?}");

    let header = injected(&tg, &up, "signed").await;
    let r = &p.requests_to("auth0").await[1];
    r.assert_shape();
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert_eq!(
        r.field_names,
        [
            "grant_type",
            "scope",
            "audience",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    let a = r.assertion.as_ref().expect("a verified assertion");
    assert_eq!(a["header"]["alg"], "PS256", "{a}");
    // Auth0 wants the tenant, with its trailing slash, as the assertion's audience.
    assert_eq!(a["claims"]["aud"], format!("{}/auth0/", p.base), "{a}");
    assert_eq!(a["claims"]["iss"], "auth0-jwt");

    // Without an audience Auth0 refuses (403 access_denied), and says why.
    let message = unavailable(&tg, &up, "noaudience").await;
    assert!(
        message.contains("403 access_denied: No audience parameter was provided"),
        "{message}"
    );
    assert_eq!(up.requests().len(), 2);
}

// ------------------------------------------------------------------ Okta

#[tokio::test(flavor = "multi_thread")]
async fn okta_is_found_by_discovery_and_needs_a_scope() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let issuer = p.url("/okta/oauth2/default");
    let creds = format!(
        "  okta:
    issuer: {issuer}
    client_id: okta-svc
    client_secret: okta-secret
    scopes: [billing.read]
  signed:
    issuer: {issuer}
    client_id: okta-jwt
    auth_method: private_key_jwt
    private_key_file: {key}
    key_id: okta-key
    scopes: [billing.read, billing.write]
  noscope:
    issuer: {issuer}
    client_id: okta-svc
    client_secret: okta-secret
",
        key = path(&client_key())
    );
    let tg = Tollgate::start(&config(&up, &creds, &["okta", "signed", "noscope"])).await;
    let header = injected(&tg, &up, "okta").await;
    let r = &p.requests_to("okta").await[0];
    r.assert_shape();
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    // The token endpoint came from discovery.
    assert_eq!(r.path, "/okta/oauth2/default/v1/token");
    assert_eq!(r.field_names, ["grant_type", "scope"]);
    assert_eq!(r.authorization.as_ref().unwrap()["client_id"], "okta-svc");

    injected(&tg, &up, "signed").await;
    let r = &p.requests_to("okta").await[1];
    r.assert_shape();
    let a = r.assertion.as_ref().unwrap();
    assert_eq!(
        a["claims"]["aud"],
        format!("{issuer}/v1/token"),
        "aud = the discovered token URL"
    );
    assert_eq!(a["header"]["kid"], "okta-key");

    let message = unavailable(&tg, &up, "noscope").await;
    assert!(message.contains("400 invalid_scope"), "{message}");

    // `tollgate token` discovers too, and says what it authenticated with.
    let out = token_cli(&format!("credentials:\n{creds}routes: []\n"), "okta").await;
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("used:       client_secret_basic with the inline client_secret"),
        "{}",
        out.stdout
    );
    assert!(!out.combined().contains("okta-secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_refuses_another_issuer_at_start_and_keeps_the_old_config_at_reload() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let issuer = p.url("/okta/oauth2/default");
    let creds = |scope: &str| {
        format!("  okta:\n    issuer: {issuer}\n    client_id: okta-svc\n    client_secret: okta-secret\n    scopes: [{scope}]\n")
    };

    // A document for another issuer: refused, as OpenID Connect requires.
    p.config(serde_json::json!({"discovery": {"okta": "wrong_issuer"}}))
        .await;
    let out = run_fails(&config(&up, &creds("billing.read"), &["okta"])).await;
    let text = out.combined();
    assert!(
        text.contains("credential \"okta\": discovery at "),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "/okta/oauth2/other\", not the configured \"{issuer}\""
        )),
        "{text}"
    );
    // Discovery down at start: a clear error too.
    p.config(serde_json::json!({"discovery": {"okta": "down"}}))
        .await;
    let text = run_fails(&config(&up, &creds("billing.read"), &["okta"]))
        .await
        .combined();
    assert!(text.contains("answered 503"), "{text}");

    // Up: it starts and serves.
    p.config(serde_json::json!({"discovery": {"okta": "ok"}}))
        .await;
    let tg = Tollgate::start(&config(&up, &creds("billing.read"), &["okta"])).await;
    injected(&tg, &up, "okta").await;
    // Discovery fails at a reload: the reload is rejected, the old config keeps serving.
    p.config(serde_json::json!({"discovery": {"okta": "down"}}))
        .await;
    tg.replace_config(&config(&up, &creds("billing.write"), &["okta"]));
    assert!(
        tg.wait_for_output("config reload rejected", 1, Duration::from_secs(15))
            .await,
        "{}",
        tg.output()
    );
    assert!(tg.output().contains("discovery at "), "{}", tg.output());
    let header = injected(&tg, &up, "okta").await;
    assert!(header.starts_with("Bearer okta-"), "{header}");
    let reqs = p.requests_to("okta").await;
    assert!(
        reqs.iter()
            .all(|r| r.field("scope") == Some("billing.read")),
        "{reqs:#?}"
    );
}

// ------------------------------------------------------------------ Entra ID

#[tokio::test(flavor = "multi_thread")]
async fn entra_takes_a_secret_a_certificate_or_raw_basic_and_says_aadsts() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let url = p.url(&format!("/entra/{ENTRA_TENANT}/oauth2/v2.0/token"));
    let creds = format!(
        "  secret:
    token_url: {url}
    client_id: {ENTRA_APP}
    client_secret: \"{ENTRA_SECRET}\"
    auth_method: client_secret_post
    scopes: [api://billing/.default]
  cert:
    token_url: {url}
    client_id: {ENTRA_APP}
    auth_method: private_key_jwt
    private_key_file: {key}
    certificate_file: {cert}
    signing_alg: PS256
    scopes: [api://billing/.default]
  oldtenant:
    token_url: {url}
    client_id: {ENTRA_APP}
    auth_method: private_key_jwt
    private_key_file: {key}
    certificate_file: {cert}
    x5t: true
    scopes: [api://billing/.default]
  encoded:
    token_url: {url}
    client_id: {ENTRA_APP}
    client_secret: \"{ENTRA_SECRET}\"
    scopes: [api://billing/.default]
  raw:
    token_url: {url}
    client_id: {ENTRA_APP}
    client_secret: \"{ENTRA_SECRET}\"
    basic_encoding: raw
    scopes: [api://billing/.default]
  resource:
    token_url: {url}
    client_id: {ENTRA_APP}
    client_secret: \"{ENTRA_SECRET}\"
    auth_method: client_secret_post
    resource: api://billing
    scopes: [api://billing/.default]
  scope:
    token_url: {url}
    client_id: {ENTRA_APP}
    client_secret: \"{ENTRA_SECRET}\"
    auth_method: client_secret_post
    scopes: [api://billing/invoices.read]
",
        key = path(&client_key()),
        cert = path(&client_cert()),
    );
    let names = [
        "secret",
        "cert",
        "oldtenant",
        "encoded",
        "raw",
        "resource",
        "scope",
    ];
    let tg = Tollgate::start(&config(&up, &creds, &names)).await;

    let header = injected(&tg, &up, "secret").await;
    let r = &p.requests_to("entra").await[0];
    r.assert_shape();
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert_eq!(
        r.field_names,
        ["grant_type", "scope", "client_id", "client_secret"]
    );
    assert_eq!(r.field("scope"), Some("api://billing/.default"));

    injected(&tg, &up, "cert").await;
    let r = &p.requests_to("entra").await[1];
    r.assert_shape();
    assert_eq!(
        r.field_names,
        [
            "grant_type",
            "scope",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    let a = r.assertion.as_ref().unwrap();
    assert_eq!(a["header"]["alg"], "PS256", "{a}");
    assert!(
        a["header"]["x5t#S256"].is_string() && a["header"]["x5t"].is_null(),
        "{a}"
    );
    assert_eq!(a["claims"]["aud"], url.as_str());
    assert_eq!(a["claims"]["sub"], ENTRA_APP);

    injected(&tg, &up, "oldtenant").await;
    let a = p.requests_to("entra").await[2].assertion.clone().unwrap();
    assert!(
        a["header"]["x5t"].is_string() && a["header"]["x5t#S256"].is_string(),
        "{a}"
    );
    assert_eq!(a["header"]["alg"], "RS256");

    // A `~` form-urlencoded (RFC 6749 §2.3.1) reaches Entra as %7E: refused, AADSTS named.
    let message = unavailable(&tg, &up, "encoded").await;
    assert!(
        message.contains("401 invalid_client: AADSTS7000215: Invalid client secret"),
        "{message}"
    );
    assert!(!message.contains(ENTRA_SECRET), "{message}");
    // Sent raw, it works.
    injected(&tg, &up, "raw").await;
    let r = p.requests_to("entra").await.pop().unwrap();
    assert_eq!(r.raw["basic_raw_secret_matches"], true, "{r:#?}");
    r.assert_shape();

    // v2.0 refuses `resource`, and a client credentials scope without /.default.
    let message = unavailable(&tg, &up, "resource").await;
    assert!(
        message.contains("AADSTS901002: The 'resource' request parameter is not supported"),
        "{message}"
    );
    let message = unavailable(&tg, &up, "scope").await;
    assert!(
        message.contains("400 invalid_scope: AADSTS1002012"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_workload_identity_sends_the_projected_token_of_the_moment() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let dir = tollgate_tests::tempdir();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(
        &token_file,
        p.mint("api://AzureADTokenExchange", None, None).await,
    )
    .unwrap();
    let empty = dir.path().join("empty-token");
    let missing = dir.path().join("not-mounted");
    let url = p.url(&format!("/entra/{ENTRA_TENANT}/oauth2/v2.0/token"));
    let cred = |name: &str, file: &Path| {
        format!(
            "  {name}:\n    token_url: {url}\n    client_id: {ENTRA_APP}\n    auth_method: client_assertion_file\n    client_assertion_file: {}\n    scopes: [api://billing/.default]\n",
            file.display()
        )
    };
    let creds = format!(
        "{}{}{}",
        cred("wif", &token_file),
        cred("empty", &empty),
        cred("missing", &missing)
    );
    let yaml = config(&up, &creds, &["wif", "empty", "missing"]);

    // Empty or missing at start: the first token request would fail, so `run` (like
    // `check`) refuses the config, each at its key.
    std::fs::write(&empty, "").unwrap();
    let out = run_fails(&yaml).await;
    let text = out.combined();
    assert_eq!(out.code, Some(78), "{text}");
    assert!(
        text.contains(&format!(
            "credentials.empty.client_assertion_file: {}: is empty",
            empty.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "credentials.missing.client_assertion_file: {}: ",
            missing.display()
        )),
        "{text}"
    );

    std::fs::write(&empty, "eyJ.placeholder.sig").unwrap();
    std::fs::write(&missing, "eyJ.placeholder.sig").unwrap();
    let tg = Tollgate::start(&yaml).await;

    let header = injected(&tg, &up, "wif").await;
    let r = &p.requests_to("entra").await[0];
    r.assert_shape();
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert_eq!(
        r.field_names,
        [
            "grant_type",
            "scope",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    let a = r.assertion.as_ref().unwrap();
    assert_eq!(a["federated"], true, "{a}");
    assert_eq!(a["claims"]["sub"], "system:serviceaccount:billing:egress");

    // Emptied or gone at fetch time (the file is read for every token request, never
    // watched): 502 naming the file, and nothing is sent.
    std::fs::write(&empty, "").unwrap();
    std::fs::remove_file(&missing).unwrap();
    let message = unavailable(&tg, &up, "empty").await;
    assert!(
        message.contains(&format!(
            "client_assertion_file {}: is empty",
            empty.display()
        )),
        "{message}"
    );
    let message = unavailable(&tg, &up, "missing").await;
    assert!(
        message.contains(&format!("client_assertion_file {}", missing.display())),
        "{message}"
    );
    assert_eq!(
        p.requests_to("entra").await.len(),
        1,
        "nothing sent for them"
    );

    // The kubelet renews the file: the next token request sends the new token. One from
    // another subject shows Entra's answer.
    std::fs::write(
        &token_file,
        p.mint(
            "api://AzureADTokenExchange",
            None,
            Some("system:serviceaccount:other:sa"),
        )
        .await,
    )
    .unwrap();
    let out = token_cli(&format!("credentials:\n{creds}routes: []\n"), "wif").await;
    out.assert_code(1);
    assert!(out.stderr.contains("AADSTS700213"), "{}", out.stderr);
}

// ------------------------------------------------------------------ Cognito

#[tokio::test(flavor = "multi_thread")]
async fn cognito_takes_basic_and_resource_server_scopes() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let url = p.url("/cognito/oauth2/token");
    let creds = format!(
        "  cognito:
    token_url: {url}
    client_id: cognito-app-client
    client_secret: cognito-secret
    scopes: [billing/read, billing/write]
  dotted:
    token_url: {url}
    client_id: cognito-app-client
    client_secret: cognito-secret
    scopes: [billing.read]
"
    );
    let tg = Tollgate::start(&config(&up, &creds, &["cognito", "dotted"])).await;
    let header = injected(&tg, &up, "cognito").await;
    let r = &p.requests_to("cognito").await[0];
    r.assert_shape();
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert_eq!(r.field_names, ["grant_type", "scope"]);
    assert_eq!(r.field("scope"), Some("billing/read billing/write"));
    assert_eq!(
        r.authorization.as_ref().unwrap()["raw_client_id"],
        "cognito-app-client"
    );
    let message = unavailable(&tg, &up, "dotted").await;
    assert!(message.contains("400 invalid_scope"), "{message}");
}

// ------------------------------------------------------------------ Google

#[tokio::test(flavor = "multi_thread")]
async fn google_service_accounts_get_access_and_id_tokens() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let dir = tollgate_tests::tempdir();
    let sa = p.service_account_file(dir.path());
    let creds = format!(
        "  gcp:
    grant: jwt_bearer
    service_account_file: {sa}
    scopes: [https://www.googleapis.com/auth/cloud-platform]
  run:
    grant: jwt_bearer
    service_account_file: {sa}
    target_audience: https://billing-xyz.a.run.app
",
        sa = path(&sa)
    );
    let tg = Tollgate::start(&config(&up, &creds, &["gcp", "run"])).await;
    let header = injected(&tg, &up, "gcp").await;
    let r = &p.requests_to("google").await[0];
    r.assert_shape();
    assert!(header.starts_with("Bearer ya29.c."), "{header}");
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert_eq!(r.path, "/google/token", "the key file's token_uri");
    assert_eq!(r.field_names, ["grant_type", "assertion"]);
    let a = r.assertion.as_ref().unwrap();
    assert_eq!(a["header"]["kid"], SA_KID);
    assert_eq!(a["claims"]["iss"], SA_EMAIL);
    assert_eq!(a["claims"]["aud"], p.url("/google/token"));
    assert_eq!(
        a["claims"]["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    let lifetime = a["claims"]["exp"].as_u64().unwrap() - a["claims"]["iat"].as_u64().unwrap();
    assert!(lifetime <= 3600, "{a}");

    // An ID token for Cloud Run: the id_token is what the upstream gets.
    let header = injected(&tg, &up, "run").await;
    let r = &p.requests_to("google").await[1];
    r.assert_shape();
    assert_eq!(
        r.raw["issued_id_token_aud"],
        "https://billing-xyz.a.run.app"
    );
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert!(header.starts_with("Bearer eyJ"), "{header}");
    assert_eq!(
        r.assertion.as_ref().unwrap()["claims"]["target_audience"],
        "https://billing-xyz.a.run.app"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_service_account_file_stops_the_start_naming_the_field() {
    let dir = tollgate_tests::tempdir();
    let key = std::fs::read_to_string(client_key()).unwrap();
    let cases = [
        ("not-json.json", "{ \"type\": \"service_account\", ".to_string(), "is not JSON"),
        (
            "no-email.json",
            serde_json::json!({"type": "service_account", "private_key": key, "token_uri": "https://oauth2.googleapis.com/token"}).to_string(),
            "lacks `client_email`",
        ),
    ];
    for (name, content, want) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, &content).unwrap();
        let out = run_fails(&format!(
            "credentials:\n  gcp:\n    grant: jwt_bearer\n    service_account_file: {}\n    scopes: [x]\nroutes: []\n",
            file.display()
        ))
        .await;
        let text = out.combined();
        // A config problem like any other: exit 78, at the key naming the file.
        assert_eq!(out.code, Some(78), "{text}");
        assert!(
            text.contains(&format!(
                // Line 7: `run_fails` writes three lines of `listen` first.
                ":7:5: credentials.gcp.service_account_file: {}: {want}",
                file.display()
            )),
            "{text}"
        );
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("MII"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn google_sts_exchanges_the_kubernetes_token() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let dir = tollgate_tests::tempdir();
    let ksa = dir.path().join("gcp-ksa");
    std::fs::write(
        &ksa,
        p.mint(
            STS_SUBJECT_AUD,
            Some("https://container.googleapis.com/v1/projects/p/locations/l/clusters/c"),
            Some("system:serviceaccount:billing:egress"),
        )
        .await,
    )
    .unwrap();
    let creds = format!(
        "  sts:
    grant: token_exchange
    token_url: {url}
    subject_token_file: {ksa}
    subject_token_type: urn:ietf:params:oauth:token-type:jwt
    requested_token_type: urn:ietf:params:oauth:token-type:access_token
    audience: {STS_AUDIENCE}
    scopes: [https://www.googleapis.com/auth/cloud-platform]
",
        url = p.url("/sts/v1/token"),
        ksa = path(&ksa)
    );
    let tg = Tollgate::start(&config(&up, &creds, &["sts"])).await;
    let header = injected(&tg, &up, "sts").await;
    let r = &p.requests_to("sts").await[0];
    r.assert_shape();
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert_eq!(
        r.field_names,
        [
            "grant_type",
            "subject_token",
            "subject_token_type",
            "requested_token_type",
            "scope",
            "audience"
        ]
    );
    assert!(
        r.authorization.is_none(),
        "STS takes no client authentication"
    );
    assert_eq!(r.field("audience"), Some(STS_AUDIENCE));
}

// ------------------------------------------------------------------ Keycloak

#[tokio::test(flavor = "multi_thread")]
async fn keycloak_by_discovery_with_client_credentials_and_token_exchange() {
    let p = Providers::start().await;
    let up = RecordingUpstream::start().await;
    let dir = tollgate_tests::tempdir();
    let subject = dir.path().join("subject");
    std::fs::write(&subject, p.keycloak_token().await).unwrap();
    let issuer = p.url("/keycloak/realms/tollgate");
    let creds = format!(
        "  kc:
    issuer: {issuer}
    client_id: kc-egress
    client_secret: kc-secret
  exchange:
    grant: token_exchange
    issuer: {issuer}
    subject_token_file: {subject}
    subject_token_type: urn:ietf:params:oauth:token-type:access_token
    requested_token_type: urn:ietf:params:oauth:token-type:access_token
    audience: billing-api
    client_id: kc-egress
    client_secret: kc-secret
    auth_method: client_secret_post
  wrong:
    issuer: {issuer}
    client_id: kc-egress
    client_secret: not-it
",
        subject = path(&subject)
    );
    let tg = Tollgate::start(&config(&up, &creds, &["kc", "exchange", "wrong"])).await;
    let header = injected(&tg, &up, "kc").await;
    let r = &p.requests_to("keycloak").await[0];
    r.assert_shape();
    assert_eq!(header, format!("Bearer {}", r.issued.as_deref().unwrap()));
    assert_eq!(
        r.path,
        "/keycloak/realms/tollgate/protocol/openid-connect/token"
    );
    assert_eq!(r.field_names, ["grant_type"]);

    let header = injected(&tg, &up, "exchange").await;
    let r = &p.requests_to("keycloak").await[1];
    r.assert_shape();
    assert!(header.starts_with("Bearer kc-exchanged-"), "{header}");
    assert_eq!(
        r.field_names,
        [
            "grant_type",
            "subject_token",
            "subject_token_type",
            "requested_token_type",
            "audience",
            "client_id",
            "client_secret"
        ]
    );
    let message = unavailable(&tg, &up, "wrong").await;
    assert!(
        message.contains("401 unauthorized_client: Invalid client or Invalid client credentials"),
        "{message}"
    );
}
