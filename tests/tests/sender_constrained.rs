//! Sender-constrained tokens through the real binary: RFC 8705 mutual TLS client
//! authentication with certificate-bound tokens, and RFC 9449 DPoP, against the real IdP
//! (oidc-provider, `tests/idp/idp.mjs`) and an upstream that checks the binding for real
//! (`tests/idp/upstream.mjs`: the certificate's thumbprint against `cnf.x5t#S256`; the
//! DPoP proof's signature, `jkt`, `htm`, `htu`, `iat`, `jti`, `ath`, and nonces).
//! Certificates and keys are made per test ([`SenderPki`]).
//!
//! Config contract (SPEC "Sender-constrained tokens"): a credential's `auth_method:
//! tls_client_auth | self_signed_tls_client_auth` with `client_cert_file` /
//! `client_key_file`; `dpop: { key_file }` (P-256 only); a route's `upstream_client_cert:
//! credential` presents the credential's certificate to the upstream.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::json;
use std::collections::HashSet;
use std::net::TcpListener;
use std::time::Duration;
use tollgate_tests::clients::{curl_via, python};
use tollgate_tests::idp::{UpstreamRequest, WAIT_TIMEOUT};
use tollgate_tests::pki::{self, SenderPki};
use tollgate_tests::process::{check, diagnostics, line_of, run_to_end, Diagnostic};
use tollgate_tests::upstream::Reply;
use tollgate_tests::{
    curl, raw, Idp, IdpOptions, ProtectedUpstream, RawConn, RawResponse, RecordingUpstream,
    Tollgate, UpstreamOptions,
};

const EX_CONFIG: i32 = 78;
const DPOP_SECRET: &str = "dpop-secret";

// ------------------------------------------------------------------ helpers

/// `METHOD http://HOST/PATH` through the proxy (absolute-form), one connection.
async fn send(
    tg: &Tollgate,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut req = format!("{method} http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw::request(tg.proxy, method, &bytes).await
}

async fn get(tg: &Tollgate, host: &str, path: &str) -> RawResponse {
    send(tg, "GET", host, path, &[], b"").await
}

#[track_caller]
fn assert_status(resp: &RawResponse, status: u16) {
    assert_eq!(resp.status, status, "{resp:?}");
}

/// Neither an access token the upstream received nor any private key's PEM body, nor the
/// DPoP client's secret, appears in the proxy's output.
fn assert_no_secrets(tg: &Tollgate, pki: &SenderPki, reqs: &[UpstreamRequest]) {
    let out = tg.output();
    let tokens: HashSet<String> = reqs.iter().filter_map(|r| r.access_token()).collect();
    for t in &tokens {
        assert!(
            !out.contains(t.as_str()),
            "an access token in the log:\n{out}"
        );
    }
    assert!(!out.contains("eyJ"), "a JWT in the log:\n{out}");
    for line in pki.private_key_lines() {
        assert!(
            !out.contains(&line),
            "private key material in the log:\n{out}"
        );
    }
    assert!(!out.contains("PRIVATE KEY"), "a PEM key in the log:\n{out}");
    assert!(
        !out.contains(DPOP_SECRET),
        "the client secret in the log:\n{out}"
    );
}

/// Two free loopback ports (for `listen:` in configs given to `tollgate run` directly).
fn listen_block() -> String {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    format!(
        "listen:\n  proxy: {}\n  admin: {}\n",
        a.local_addr().unwrap(),
        b.local_addr().unwrap()
    )
}

// ------------------------------------------------------------------ the doubles alone

/// The harness's view of the doubles over TLS, without tollgate: curl gets a
/// certificate-bound token with the client certificate, the upstream takes it only with
/// that certificate, and the Rust records say so.
#[tokio::test(flavor = "multi_thread")]
async fn the_doubles_bind_tokens_to_certificates_without_tollgate() {
    let pki = SenderPki::generate();
    let idp = Idp::start_with(IdpOptions {
        tls: Some(pki.tls_server()),
        self_signed_client_certs: vec![pki.self_signed.cert.clone()],
        ..Default::default()
    })
    .await;
    assert!(
        idp.token_url.starts_with("https://127.0.0.1:"),
        "{}",
        idp.token_url
    );
    let up = ProtectedUpstream::start_with(
        &idp,
        UpstreamOptions {
            tls: Some(pki.tls_server()),
            ..Default::default()
        },
    )
    .await;
    let ca = pki.ca_file.display().to_string();
    let cert = pki.client.cert.display().to_string();
    let key = pki.client.key.display().to_string();
    let resp = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-d",
        "grant_type=client_credentials&client_id=mtls-client",
        &idp.token_url,
    ])
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let token = resp.json()["access_token"].as_str().unwrap().to_string();
    let stats = idp.stats().await;
    assert_eq!(stats.raw["tls"], true);
    let r = &stats.requests[0];
    assert_eq!(r.auth_method, "tls_client_auth");
    assert_eq!(r.client_cert_x5t(), Some(pki.client.x5t_s256.clone()));
    assert_eq!(
        r.issued_cnf(),
        Some(json!({ "x5t#S256": pki.client.x5t_s256 }))
    );
    assert_eq!(stats.client_detail("mtls-client")["with_client_cert"], 1);
    // The IdP itself refuses an expired certificate of its CA.
    let expired = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &pki.expired.cert.display().to_string(),
        "--key",
        &pki.expired.key.display().to_string(),
        "-d",
        "grant_type=client_credentials&client_id=mtls-client",
        &idp.token_url,
    ])
    .await;
    assert_eq!(expired.status, 401, "{expired:?}");
    let r = idp.stats().await.requests.pop().unwrap();
    assert_eq!(
        r.error_detail.as_deref(),
        Some("client certificate was not verified"),
        "{r:#?}"
    );
    assert_eq!(r.client_cert.as_ref().unwrap()["authorized"], false);

    let url = format!("{}/x", up.url());
    let authz = format!("Authorization: Bearer {token}");
    let with = curl(&[
        "--cacert", &ca, "--cert", &cert, "--key", &key, "-H", &authz, &url,
    ])
    .await;
    assert_eq!(with.status, 200, "{with:?}");
    let without = curl(&["--cacert", &ca, "-H", &authz, &url]).await;
    assert_eq!(without.status, 401, "{without:?}");
    let reqs = up.requests().await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].client_cert_x5t, Some(pki.client.x5t_s256.clone()));
    assert_eq!(
        reqs[0].token_cnf(),
        Some(json!({ "x5t#S256": pki.client.x5t_s256 }))
    );
    assert_eq!(
        reqs[1].cnf_error.as_deref(),
        Some("no TLS client certificate for a certificate-bound token")
    );
    // Switches and nonce state reach the upstream over TLS too.
    up.config(json!({ "dpop_nonce": true })).await;
    assert_eq!(up.dpop_nonce_state().await["on"], true);
    idp.set_dpop_require_nonce(true).await;
    assert_eq!(idp.stats().await.raw["dpop_require_nonce"], true);
}

// ------------------------------------------------------------------ mutual TLS

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mtls {
    /// `tls_client_auth` with the CA-issued `client` certificate (`mtls-client`).
    CaIssued,
    /// `self_signed_tls_client_auth` with the `self_signed` certificate.
    SelfSigned,
}

impl Mtls {
    fn client_id(self) -> &'static str {
        match self {
            Mtls::CaIssued => "mtls-client",
            Mtls::SelfSigned => "self-signed-client",
        }
    }

    fn auth_method(self) -> &'static str {
        match self {
            Mtls::CaIssued => "tls_client_auth",
            Mtls::SelfSigned => "self_signed_tls_client_auth",
        }
    }

    fn files(self, pki: &SenderPki) -> &pki::CertFiles {
        match self {
            Mtls::CaIssued => &pki.client,
            Mtls::SelfSigned => &pki.self_signed,
        }
    }
}

struct MtlsEnv {
    pki: SenderPki,
    idp: Idp,
    up: ProtectedUpstream,
    tg: Tollgate,
}

/// The credential `bank` (mutual TLS), as the contract writes it.
fn mtls_credential(kind: Mtls, pki: &SenderPki, token_url: &str) -> String {
    let f = kind.files(pki);
    format!(
        "  bank:
    token_url: {token_url}
    ca_file: {ca}
    client_id: {id}
    auth_method: {method}
    client_cert_file: {cert}
    client_key_file: {key}
    scopes: [invoices:read]
",
        ca = pki.ca_file.display(),
        id = kind.client_id(),
        method = kind.auth_method(),
        cert = f.cert.display(),
        key = f.key.display(),
    )
}

/// IdP and upstream over TLS; the upstream refuses tokens that are not bound to the
/// client certificate (`--require-cnf`). Routes: `bank` (`127.0.0.1:UP`, presents the
/// credential's certificate), `bank-nocert` (`bank-nocert.test`, does not), and
/// `bank-nocert-noreplay` (`bank-noreplay.test`, does not, `replay_on_401: false`).
async fn mtls_env(kind: Mtls) -> MtlsEnv {
    let pki = SenderPki::generate();
    let idp = Idp::start_with(IdpOptions {
        tls: Some(pki.tls_server()),
        self_signed_client_certs: vec![pki.self_signed.cert.clone()],
        verbose: true,
        ..Default::default()
    })
    .await;
    let up = ProtectedUpstream::start_with(
        &idp,
        UpstreamOptions {
            tls: Some(pki.tls_server()),
            require_cnf: true,
            verbose: true,
            ..Default::default()
        },
    )
    .await;
    let ca = pki.ca_file.display().to_string();
    let yaml = format!(
        "allow_private_networks: true
credentials:
{cred}routes:
  - name: bank
    match: {{ hosts: [\"{host}\"] }}
    action: inject
    credential: bank
    upstream: https://{host}
    upstream_ca_file: {ca}
    upstream_client_cert: credential
  - name: bank-nocert
    match: {{ hosts: [bank-nocert.test] }}
    action: inject
    credential: bank
    upstream: https://{host}
    upstream_ca_file: {ca}
  - name: bank-nocert-noreplay
    match: {{ hosts: [bank-noreplay.test] }}
    action: inject
    credential: bank
    upstream: https://{host}
    upstream_ca_file: {ca}
    replay_on_401: false
",
        cred = mtls_credential(kind, &pki, &idp.token_url),
        host = up.host(),
    );
    let tg = Tollgate::start(&yaml).await;
    MtlsEnv { pki, idp, up, tg }
}

/// The token request authenticates with the certificate only (client_id in the form, no
/// secret, no assertion, no Authorization); the token is bound to the certificate and the
/// upstream gets it over a connection that presents the same certificate.
async fn certificate_bound_token_reaches_the_upstream(kind: Mtls) {
    let e = mtls_env(kind).await;
    let x5t = kind.files(&e.pki).x5t_s256.clone();
    let host = e.up.host();

    let resp = get(&e.tg, &host, "/accounts?x=1").await;
    assert_status(&resp, 200);
    let echo = resp.json();
    assert_eq!(echo["token"]["client_id"], kind.client_id(), "{echo}");
    assert_eq!(echo["token"]["cnf"]["x5t#S256"], x5t.as_str(), "{echo}");
    assert_eq!(echo["client_cert"]["x5t_s256"], x5t.as_str(), "{echo}");
    assert_eq!(echo["url"], "/accounts?x=1");
    assert_eq!(
        echo["headers"]["authorization"]
            .as_str()
            .map(|a| a.starts_with("Bearer ")),
        Some(true),
        "{echo}"
    );

    let stats = e.idp.stats().await;
    assert_eq!(stats.token_requests, 1, "{stats:#?}");
    let r = &stats.requests[0];
    assert_eq!(r.status, Some(200), "{r:#?}");
    assert_eq!(r.client_id.as_deref(), Some(kind.client_id()));
    assert_eq!(r.auth_method, kind.auth_method(), "{r:#?}");
    assert_eq!(
        r.field("client_id"),
        Some(kind.client_id()),
        "client_id in the form"
    );
    assert_eq!(r.field("grant_type"), Some("client_credentials"));
    assert_eq!(r.scope.as_deref(), Some("invoices:read"));
    assert!(!r.fields.contains_key("client_secret"));
    assert_eq!(r.raw["client_secret_present"], false, "{r:#?}");
    assert_eq!(r.raw["client_assertion_present"], false, "{r:#?}");
    assert_eq!(r.raw["authorization_header_present"], false, "{r:#?}");
    assert_eq!(r.client_cert_x5t(), Some(x5t.clone()), "{r:#?}");
    assert_eq!(r.issued_cnf(), Some(json!({ "x5t#S256": x5t })));
    assert!(!r.dpop_proof_present);

    // The cached token serves the next requests, each over a certificate-presenting
    // connection.
    for i in 0..3 {
        let resp = get(&e.tg, &host, &format!("/again/{i}")).await;
        assert_status(&resp, 200);
    }
    assert_eq!(e.idp.stats().await.token_requests, 1);
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 4, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r.status, Some(200), "{r:#?}");
        assert_eq!(r.client_cert_x5t.as_deref(), Some(x5t.as_str()), "{r:#?}");
        assert_eq!(r.header_all("authorization").len(), 1);
    }
    assert_no_secrets(&e.tg, &e.pki, &reqs);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_client_auth_token_is_bound_to_the_certificate_tollgate_presents_upstream() {
    certificate_bound_token_reaches_the_upstream(Mtls::CaIssued).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn self_signed_tls_client_auth_token_is_bound_to_the_certificate_tollgate_presents_upstream()
{
    certificate_bound_token_reaches_the_upstream(Mtls::SelfSigned).await;
}

/// Without `upstream_client_cert: credential` the upstream refuses the bound token: with
/// `replay_on_401: false` the client gets that 401 at once (one token, one upstream
/// request); with replay, tollgate takes a fresh token, replays once, and passes the
/// second 401 on (two token requests, two upstream requests).
async fn without_upstream_client_cert_the_upstream_refuses(kind: Mtls) {
    let e = mtls_env(kind).await;
    let why = "no TLS client certificate for a certificate-bound token";

    let resp = get(&e.tg, "bank-noreplay.test", "/nocert").await;
    assert_status(&resp, 401);
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|w| w.contains(why)),
        "the upstream's challenge is passed on: {resp:?}"
    );
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].cnf_error.as_deref(), Some(why));
    assert_eq!(reqs[0].client_cert_x5t, None);
    assert_eq!(e.idp.stats().await.token_requests, 1);

    let seq = e.up.count().await;
    let resp = get(&e.tg, "bank-nocert.test", "/nocert").await;
    assert_status(&resp, 401);
    let reqs = e.up.requests_since(seq).await;
    assert_eq!(
        reqs.len(),
        2,
        "one 401, one replay, then the 401 is passed on: {reqs:#?}"
    );
    for r in &reqs {
        assert_eq!(r.status, Some(401), "{r:#?}");
        assert_eq!(r.cnf_error.as_deref(), Some(why), "{r:#?}");
        assert_eq!(r.client_cert_x5t, None, "{r:#?}");
    }
    assert_ne!(
        reqs[0].token_jti(),
        reqs[1].token_jti(),
        "the replay had a fresh token"
    );
    let stats = e.idp.stats().await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");
    assert!(stats.requests.iter().all(|r| r.succeeded()), "{stats:#?}");

    // The route that presents the certificate still works with the same credential.
    assert_status(&get(&e.tg, &e.up.host(), "/with-cert").await, 200);
    assert_no_secrets(&e.tg, &e.pki, &e.up.requests().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_client_auth_without_upstream_client_cert_is_refused_and_replayed_once() {
    without_upstream_client_cert_the_upstream_refuses(Mtls::CaIssued).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn self_signed_tls_client_auth_without_upstream_client_cert_is_refused_and_replayed_once() {
    without_upstream_client_cert_the_upstream_refuses(Mtls::SelfSigned).await;
}

/// An IdP that does not accept the certificate (self-signed but unregistered) refuses
/// the client: 502 `token_unavailable` naming the credential; the certificate was
/// presented (the IdP saw it) and no secret was sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_self_signed_certificate_is_a_502_naming_the_credential() {
    let pki = SenderPki::generate();
    let idp = Idp::start_with(IdpOptions {
        tls: Some(pki.tls_server()),
        self_signed_client_certs: vec![pki.self_signed.cert.clone()],
        ..Default::default()
    })
    .await;
    let up = ProtectedUpstream::start_with(
        &idp,
        UpstreamOptions {
            tls: Some(pki.tls_server()),
            ..Default::default()
        },
    )
    .await;
    let cred = mtls_credential(Mtls::SelfSigned, &pki, &idp.token_url)
        .replace(
            &pki.self_signed.cert.display().to_string(),
            &pki.self_signed_2.cert.display().to_string(),
        )
        .replace(
            &pki.self_signed.key.display().to_string(),
            &pki.self_signed_2.key.display().to_string(),
        );
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
credentials:
{cred}routes:
  - name: bank
    match: {{ hosts: [\"{host}\"] }}
    action: inject
    credential: bank
    upstream: https://{host}
    upstream_ca_file: {ca}
    upstream_client_cert: credential
",
        host = up.host(),
        ca = pki.ca_file.display(),
    ))
    .await;
    let resp = get(&tg, &up.host(), "/x").await;
    let body = resp.assert_error(502, "token_unavailable", Some("bank"));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("credential \"bank\""), "{message}");
    assert!(message.contains("invalid_client"), "{message}");
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 1, "{stats:#?}");
    let r = &stats.requests[0];
    assert_eq!(
        r.client_cert_x5t(),
        Some(pki.self_signed_2.x5t_s256.clone())
    );
    assert_eq!(
        r.error_detail.as_deref(),
        Some("unregistered client certificate provided")
    );
    assert_eq!(up.count().await, 0);
    assert_no_secrets(&tg, &pki, &[]);
}

// ------------------------------------------------------------------ DPoP

struct DpopEnv {
    pki: SenderPki,
    idp: Idp,
    /// Plain HTTP, route `dpop` (`127.0.0.1:UP`).
    up: ProtectedUpstream,
    /// HTTPS, route `dpop-gw` (`dpop-gw.test` → `upstream: https://127.0.0.1:UPTLS`).
    up_tls: ProtectedUpstream,
    tg: Tollgate,
}

/// The credential `dpop-cred` (`dpop-client`, `client_secret_file`, `dpop.key_file`
/// = `key_file`).
fn dpop_credential(idp: &Idp, secret_file: &std::path::Path, key_file: &std::path::Path) -> String {
    format!(
        "  dpop-cred:
    token_url: {url}
    client_id: dpop-client
    client_secret_file: {secret}
    scopes: [invoices:read]
    dpop:
      key_file: {key}
",
        url = idp.token_url,
        secret = secret_file.display(),
        key = key_file.display(),
    )
}

async fn dpop_env(idp_opts: IdpOptions, up_opts: UpstreamOptions) -> DpopEnv {
    let pki = SenderPki::generate();
    let idp = Idp::start_with(IdpOptions {
        verbose: true,
        ..idp_opts
    })
    .await;
    let up = ProtectedUpstream::start_with(
        &idp,
        UpstreamOptions {
            verbose: true,
            ..up_opts.clone()
        },
    )
    .await;
    let up_tls = ProtectedUpstream::start_with(
        &idp,
        UpstreamOptions {
            tls: Some(pki.tls_server()),
            verbose: true,
            ..up_opts
        },
    )
    .await;
    let secret = pki.write("dpop-secret", &format!("{DPOP_SECRET}\n"));
    let yaml = format!(
        "allow_private_networks: true
credentials:
{cred}routes:
  - name: dpop
    match: {{ hosts: [\"{host}\"] }}
    action: inject
    credential: dpop-cred
  - name: dpop-gw
    match: {{ hosts: [dpop-gw.test] }}
    action: inject
    credential: dpop-cred
    upstream: {tls_url}
    upstream_ca_file: {ca}
",
        cred = dpop_credential(&idp, &secret, &pki.dpop_key),
        host = up.host(),
        tls_url = up_tls.url(),
        ca = pki.ca_file.display(),
    );
    let tg = Tollgate::start(&yaml).await;
    DpopEnv {
        pki,
        idp,
        up,
        up_tls,
        tg,
    }
}

/// What every request tollgate sends with a DPoP-bound token must look like: the DPoP
/// scheme with the token, exactly one proof, valid at the upstream, bound to tollgate's
/// key, for this method and URL and token.
#[track_caller]
fn assert_dpop_request(r: &UpstreamRequest, pki: &SenderPki, method: &str, htu: &str) {
    assert_eq!(r.status, Some(200), "{r:#?}");
    assert_eq!(r.authorization_scheme.as_deref(), Some("DPoP"), "{r:#?}");
    assert_eq!(r.header_all("authorization").len(), 1, "{r:#?}");
    assert_eq!(r.dpop_count, 1, "exactly one DPoP header: {r:#?}");
    assert!(r.dpop_valid, "{r:#?}");
    assert_eq!(r.dpop_claim("typ").as_deref(), Some("dpop+jwt"), "{r:#?}");
    assert_eq!(r.dpop_claim("alg").as_deref(), Some("ES256"), "{r:#?}");
    assert_eq!(r.dpop_claim("htm").as_deref(), Some(method), "{r:#?}");
    assert_eq!(r.dpop_claim("htu").as_deref(), Some(htu), "{r:#?}");
    assert_eq!(
        r.dpop_claim("jkt").as_deref(),
        Some(pki.dpop_jkt.as_str()),
        "{r:#?}"
    );
    let token = r.access_token().expect("a token");
    assert_eq!(r.dpop_claim("ath"), Some(pki::ath(&token)), "{r:#?}");
    assert_eq!(
        r.token_cnf(),
        Some(json!({ "jkt": pki.dpop_jkt })),
        "the token is bound to tollgate's key: {r:#?}"
    );
    assert_eq!(r.dpop.as_ref().unwrap()["jwk_has_private"], false, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dpop_token_and_proof_are_valid_at_the_idp_and_the_upstream() {
    let e = dpop_env(IdpOptions::default(), UpstreamOptions::default()).await;
    let host = e.up.host();
    let resp = get(&e.tg, &host, "/v1/things?x=1&y=2").await;
    assert_status(&resp, 200);
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_dpop_request(&reqs[0], &e.pki, "GET", &format!("http://{host}/v1/things"));
    assert_eq!(reqs[0].url, "/v1/things?x=1&y=2");
    assert_eq!(reqs[0].token_client_id().as_deref(), Some("dpop-client"));

    let stats = e.idp.stats().await;
    assert_eq!(stats.token_requests, 1, "{stats:#?}");
    let t = &stats.requests[0];
    assert_eq!(t.status, Some(200), "{t:#?}");
    assert_eq!(
        t.auth_method, "client_secret_basic",
        "the existing auth method"
    );
    assert!(t.dpop_proof_present, "{t:#?}");
    assert_eq!(t.raw["dpop_proof_count"], 1);
    assert_eq!(t.dpop_claim("htm").as_deref(), Some("POST"));
    assert_eq!(
        t.dpop_claim("htu").as_deref(),
        Some(e.idp.token_url.as_str())
    );
    assert_eq!(t.dpop_claim("typ").as_deref(), Some("dpop+jwt"));
    assert_eq!(t.dpop_claim("alg").as_deref(), Some("ES256"));
    assert_eq!(
        t.dpop_claim("jwk_thumbprint").as_deref(),
        Some(e.pki.dpop_jkt.as_str())
    );
    assert_eq!(t.dpop_claim("ath"), None, "no ath at the token endpoint");
    assert_eq!(t.issued_token_type().as_deref(), Some("DPoP"));
    assert_eq!(t.issued_cnf(), Some(json!({ "jkt": e.pki.dpop_jkt })));
    assert_ne!(
        t.dpop_claim("jti"),
        reqs[0].dpop_claim("jti"),
        "a proof for each request"
    );
    assert_no_secrets(&e.tg, &e.pki, &reqs);
}

/// What a legacy service does: plain `HTTP_PROXY` clients (curl `-x`, Python `requests`)
/// that know nothing of DPoP or certificates get their calls bound, verified for real by
/// the upstream, on a DPoP route and on a certificate-bound route.
#[tokio::test(flavor = "multi_thread")]
async fn http_proxy_clients_get_sender_constrained_calls() {
    let e = dpop_env(IdpOptions::default(), UpstreamOptions::default()).await;
    let host = e.up.host();
    let proxy = e.tg.proxy_url();
    let resp = curl_via(&proxy, &format!("http://{host}/curl/x?q=1"), &[]).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = python(
        "py_requests.py",
        &[
            &format!("http://{host}/py/y"),
            "--method",
            "POST",
            "--data",
            "hello",
        ],
        &proxy,
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_dpop_request(&reqs[0], &e.pki, "GET", &format!("http://{host}/curl/x"));
    assert_dpop_request(&reqs[1], &e.pki, "POST", &format!("http://{host}/py/y"));
    assert_eq!(e.idp.stats().await.token_requests, 1);
    assert_no_secrets(&e.tg, &e.pki, &reqs);

    let m = mtls_env(Mtls::CaIssued).await;
    let x5t = Mtls::CaIssued.files(&m.pki).x5t_s256.clone();
    let resp = curl_via(
        &m.tg.proxy_url(),
        &format!("http://{}/curl", m.up.host()),
        &[],
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.json()["token"]["cnf"]["x5t#S256"],
        x5t.as_str(),
        "{resp:?}"
    );
    assert_eq!(
        resp.json()["client_cert"]["x5t_s256"],
        x5t.as_str(),
        "{resp:?}"
    );
}

/// A hostile upstream's nonce challenges: a forged `DPoP-Nonce` (a quote and a space,
/// which would break out of the proof's JSON), an oversized one, a backslash, a byte
/// beyond ASCII. (A control byte makes the head itself malformed: 502, tested in
/// hardening.) None is sent back in a proof, none costs a token request; the 401 goes to the
/// client (`no_replay`). A well-formed challenge repeated forever is answered once.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_nonce_challenges_are_not_answered() {
    let pki = SenderPki::generate();
    let idp = Idp::start_with(IdpOptions::default()).await;
    let up = RecordingUpstream::start().await;
    let secret = pki.write("dpop-secret", &format!("{DPOP_SECRET}\n"));
    let yaml = format!(
        "allow_private_networks: true
credentials:
{cred}routes:
  - name: hostile
    match: {{ hosts: [\"127.0.0.1:{port}\"] }}
    action: inject
    credential: dpop-cred
",
        cred = dpop_credential(&idp, &secret, &pki.dpop_key),
        port = up.port(),
    );
    let tg = Tollgate::start(&yaml).await;
    let host = format!("127.0.0.1:{}", up.port());
    let long = "n".repeat(2000);
    let mut seen = 0;
    for (i, nonce) in ["a\" b", long.as_str(), "a\\b", "caf\u{e9}"]
        .into_iter()
        .enumerate()
    {
        up.set_reply(Reply {
            status: 401,
            headers: vec![
                (
                    "WWW-Authenticate".into(),
                    r#"DPoP error="use_dpop_nonce", error_description="nonce""#.into(),
                ),
                ("DPoP-Nonce".into(), nonce.into()),
            ],
        });
        let resp = get(&tg, &host, &format!("/h/{i}")).await;
        assert_eq!(resp.status, 401, "nonce {i}: {resp:?}");
        let reqs = up.requests();
        assert_eq!(reqs.len(), seen + 1, "sent once, not replayed: {nonce:?}");
        seen = reqs.len();
        let proof = reqs[seen - 1].header("dpop").expect("a proof").to_owned();
        let claims = proof.split('.').nth(1).expect("claims");
        assert!(!claims.is_empty());
        assert!(!tg.output().contains(&long), "the nonce is not logged");
    }
    let s = tg.scrape().await;
    assert_eq!(
        s.sum("tollgate_replays_total", &[("outcome", "no_replay")]),
        4.0
    );
    assert_eq!(
        idp.stats().await.token_requests,
        1,
        "no token spent on them"
    );

    // A valid nonce, demanded again and again: answered once, the second 401 passed on.
    up.set_reply(Reply {
        status: 401,
        headers: vec![
            (
                "WWW-Authenticate".into(),
                r#"DPoP error="use_dpop_nonce""#.into(),
            ),
            ("DPoP-Nonce".into(), "good-nonce".into()),
        ],
    });
    let resp = get(&tg, &host, "/again").await;
    assert_status(&resp, 401);
    let reqs = up.requests();
    assert_eq!(
        reqs.len(),
        seen + 2,
        "once more with the nonce, then given up"
    );
    assert_eq!(
        reqs[seen + 1].header("dpop").map(|p| !p.is_empty()),
        Some(true)
    );
    let s = tg.scrape().await;
    assert_eq!(
        s.sum("tollgate_replays_total", &[("outcome", "dpop_nonce")]),
        1.0
    );
    assert_eq!(
        s.sum("tollgate_replays_total", &[("outcome", "second_401")]),
        1.0
    );
    assert_eq!(idp.stats().await.token_requests, 1);
}

/// Many requests on one keep-alive client connection, GETs and POSTs with bodies: each
/// carries its own proof (a fresh jti; the upstream refuses a reused one), one token.
#[tokio::test(flavor = "multi_thread")]
async fn dpop_proofs_are_fresh_for_every_request_on_a_keep_alive_connection() {
    let e = dpop_env(IdpOptions::default(), UpstreamOptions::default()).await;
    let host = e.up.host();
    let mut conn = RawConn::connect(e.tg.proxy).await;
    let n = 20;
    for i in 0..n {
        let (method, body) = if i % 4 == 3 {
            ("POST", format!("body number {i}"))
        } else {
            ("GET", String::new())
        };
        let mut req = format!("{method} http://{host}/k/{i} HTTP/1.1\r\nHost: {host}\r\n");
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: text/plain\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        conn.send(req.as_bytes()).await;
        let resp = conn.read_response(method).await;
        assert_eq!(resp.status, 200, "request {i}: {resp:?}");
        if method == "POST" {
            assert_eq!(resp.json()["body_length"], body.len());
        }
    }
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), n, "{reqs:#?}");
    let mut jtis = HashSet::new();
    for (i, r) in reqs.iter().enumerate() {
        let method = if i % 4 == 3 { "POST" } else { "GET" };
        assert_eq!(r.method, method);
        assert_dpop_request(r, &e.pki, method, &format!("http://{host}/k/{i}"));
        assert!(
            jtis.insert(r.dpop_claim("jti").unwrap()),
            "jti reused: {r:#?}"
        );
    }
    assert_eq!(e.idp.stats().await.token_requests, 1);
    assert_no_secrets(&e.tg, &e.pki, &reqs);
}

/// The client's own `Authorization` and `DPoP` headers never reach the upstream: it
/// sees tollgate's token and tollgate's proof, once each.
#[tokio::test(flavor = "multi_thread")]
async fn the_clients_own_authorization_and_dpop_headers_are_not_forwarded() {
    let e = dpop_env(IdpOptions::default(), UpstreamOptions::default()).await;
    let host = e.up.host();
    let own_proof = "eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJodG0iOiJHRVQifQ.c2ln";
    let resp = send(
        &e.tg,
        "POST",
        &host,
        "/own",
        &[
            ("Authorization", "Bearer the-clients-own-token"),
            ("DPoP", own_proof),
            ("Content-Type", "application/json"),
        ],
        b"{\"a\":1}",
    )
    .await;
    assert_status(&resp, 200);
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    assert_dpop_request(r, &e.pki, "POST", &format!("http://{host}/own"));
    assert_eq!(r.header_all("dpop").len(), 1, "{r:#?}");
    assert_ne!(r.header("dpop"), Some(own_proof));
    assert!(!r
        .header("authorization")
        .unwrap()
        .contains("the-clients-own-token"));
    assert_eq!(r.body_length, 7);
    assert_no_secrets(&e.tg, &e.pki, &reqs);
}

/// A route with `upstream:` sends the request elsewhere: the proof's `htu` is the URL
/// the upstream sees (its https scheme and authority, the request's path, no query), not
/// the one the client asked for.
#[tokio::test(flavor = "multi_thread")]
async fn dpop_htu_is_the_rewritten_upstream_url() {
    let e = dpop_env(IdpOptions::default(), UpstreamOptions::default()).await;
    let resp = get(&e.tg, "dpop-gw.test", "/some/path?q=1").await;
    assert_status(&resp, 200);
    let reqs = e.up_tls.requests().await;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    let htu = format!("https://{}/some/path", e.up_tls.host());
    assert_dpop_request(r, &e.pki, "GET", &htu);
    assert_eq!(r.dpop_expected_htu.as_deref(), Some(htu.as_str()));
    assert_eq!(
        r.url, "/some/path?q=1",
        "the query still reaches the upstream"
    );
    assert_eq!(e.up.count().await, 0);

    // The plain route to the other upstream, same token, its own htu.
    let resp = get(&e.tg, &e.up.host(), "/plain").await;
    assert_status(&resp, 200);
    let plain = e.up.requests().await;
    assert_dpop_request(
        &plain[0],
        &e.pki,
        "GET",
        &format!("http://{}/plain", e.up.host()),
    );
    assert_eq!(e.idp.stats().await.token_requests, 1);
    let mut all = reqs.clone();
    all.extend(plain);
    assert_no_secrets(&e.tg, &e.pki, &all);
}

/// `--dpop-require-nonce`: the first token request is answered 400 `use_dpop_nonce` with
/// a `DPoP-Nonce`; tollgate answers the challenge once (2 token requests for the first
/// token) and remembers the nonce: the next token (after the upstream revoked the first)
/// takes one request, with the nonce.
#[tokio::test(flavor = "multi_thread")]
async fn dpop_nonce_at_the_token_endpoint_is_answered_once_and_remembered() {
    let e = dpop_env(
        IdpOptions {
            dpop_require_nonce: true,
            ..Default::default()
        },
        UpstreamOptions::default(),
    )
    .await;
    let host = e.up.host();
    let resp = get(&e.tg, &host, "/first").await;
    assert_status(&resp, 200);
    let stats = e.idp.stats().await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");
    let (a, b) = (&stats.requests[0], &stats.requests[1]);
    assert_eq!(a.status, Some(400), "{a:#?}");
    assert_eq!(a.error.as_deref(), Some("use_dpop_nonce"));
    assert!(a.dpop_proof_present && !a.dpop_nonce_present, "{a:#?}");
    let nonce = a.dpop_nonce_answered.clone().expect("a DPoP-Nonce answer");
    assert_eq!(b.status, Some(200), "{b:#?}");
    assert_eq!(b.dpop_nonce().as_deref(), Some(nonce.as_str()), "{b:#?}");
    assert_ne!(
        a.dpop_claim("jti"),
        b.dpop_claim("jti"),
        "a new proof for the retry"
    );
    assert_eq!(stats.client_detail("dpop-client")["use_dpop_nonce"], 1);

    // Invalidate: the upstream revokes the token; the replay needs a new one.
    let seq = e.up.count().await;
    e.up.revoke_all().await;
    let resp = get(&e.tg, &host, "/second").await;
    assert_status(&resp, 200);
    let stats = e.idp.stats().await;
    assert_eq!(
        stats.token_requests, 3,
        "one request for the next token: {stats:#?}"
    );
    let c = &stats.requests[2];
    assert_eq!(c.status, Some(200), "{c:#?}");
    // The newest nonce the IdP offered (it offers a new one each minute).
    let latest = b.dpop_nonce_answered.clone().unwrap_or(nonce);
    assert_eq!(c.dpop_nonce(), Some(latest), "{c:#?}");
    let reqs = e.up.requests_since(seq).await;
    assert_eq!(
        reqs.len(),
        2,
        "the revoked token's 401, then the replay: {reqs:#?}"
    );
    assert_eq!(reqs[0].token_error.as_deref(), Some("token revoked"));
    assert_dpop_request(&reqs[1], &e.pki, "GET", &format!("http://{host}/second"));
    assert_no_secrets(&e.tg, &e.pki, &e.up.requests().await);
}

/// `--dpop-nonce` at the upstream: the first request gets 401 `use_dpop_nonce`; tollgate
/// replays it (same token, a new proof with the nonce) and the client sees 200; the token
/// was not thrown away (1 token request). The next request carries the remembered nonce
/// at once; after the upstream rotates its nonce, one challenge again.
#[tokio::test(flavor = "multi_thread")]
async fn dpop_nonce_at_the_upstream_is_answered_by_replay_with_the_same_token() {
    let e = dpop_env(
        IdpOptions::default(),
        UpstreamOptions {
            dpop_nonce: true,
            ..Default::default()
        },
    )
    .await;
    let host = e.up.host();
    let resp = send(&e.tg, "POST", &host, "/n/1", &[], b"payload").await;
    assert_status(&resp, 200);
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 2, "a challenge and the replay: {reqs:#?}");
    let (a, b) = (&reqs[0], &reqs[1]);
    assert_eq!(a.status, Some(401), "{a:#?}");
    assert_eq!(
        a.dpop_error_code.as_deref(),
        Some("use_dpop_nonce"),
        "{a:#?}"
    );
    assert_eq!(a.dpop_claim("nonce"), None, "{a:#?}");
    let nonce = a.dpop_nonce_sent.clone().expect("the challenge's nonce");
    assert_dpop_request(b, &e.pki, "POST", &format!("http://{host}/n/1"));
    assert_eq!(b.dpop_claim("nonce"), Some(nonce.clone()), "{b:#?}");
    assert_eq!(a.token_jti(), b.token_jti(), "the same token");
    assert_ne!(a.dpop_claim("jti"), b.dpop_claim("jti"), "a new proof");
    assert_eq!(b.body_length, 7, "the body was replayed");
    assert_eq!(
        e.idp.stats().await.token_requests,
        1,
        "the token was not invalidated"
    );

    // Remembered: no challenge now.
    let resp = get(&e.tg, &host, "/n/2").await;
    assert_status(&resp, 200);
    let reqs = e.up.requests().await;
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_eq!(reqs[2].dpop_claim("nonce"), Some(nonce.clone()));
    assert_eq!(e.up.dpop_nonce_state().await["challenges"], 1);

    // Rotated at the upstream: one challenge, answered with the new nonce.
    let rotated = e.up.rotate_dpop_nonce().await;
    let resp = get(&e.tg, &host, "/n/3").await;
    assert_status(&resp, 200);
    let reqs = e.up.requests_since(3).await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[0].dpop_claim("nonce"), Some(nonce));
    assert_eq!(reqs[0].dpop_error_code.as_deref(), Some("use_dpop_nonce"));
    assert_eq!(reqs[1].dpop_claim("nonce"), Some(rotated));
    assert_eq!(reqs[1].status, Some(200));
    assert_eq!(e.idp.stats().await.token_requests, 1);
    assert_no_secrets(&e.tg, &e.pki, &e.up.requests().await);
}

/// An upstream that demands a new nonce every time: tollgate answers the challenge once
/// and passes the second 401 (with its challenge) to the client; no loop, and the token
/// is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_nonce_loop_is_answered_once_then_the_401_is_passed_on() {
    let e = dpop_env(
        IdpOptions::default(),
        UpstreamOptions {
            dpop_nonce: true,
            dpop_nonce_always_new: true,
            ..Default::default()
        },
    )
    .await;
    let host = e.up.host();
    for round in 0..2u64 {
        let resp = get(&e.tg, &host, &format!("/loop/{round}")).await;
        assert_status(&resp, 401);
        assert!(
            resp.header("www-authenticate")
                .is_some_and(|w| w.starts_with("DPoP ") && w.contains("use_dpop_nonce")),
            "the upstream's challenge reaches the client: {resp:?}"
        );
        let reqs = e.up.requests_since(round * 2).await;
        assert_eq!(reqs.len(), 2, "exactly one replay: {reqs:#?}");
        assert!(reqs.iter().all(
            |r| r.status == Some(401) && r.dpop_error_code.as_deref() == Some("use_dpop_nonce")
        ));
        assert_eq!(
            reqs[1].dpop_claim("nonce"),
            reqs[0].dpop_nonce_sent,
            "the replay answered the challenge: {reqs:#?}"
        );
        assert_eq!(
            resp.header("dpop-nonce"),
            reqs[1].dpop_nonce_sent.as_deref(),
            "the second challenge's nonce reaches the client"
        );
    }
    assert_eq!(e.idp.stats().await.token_requests, 1, "the token is kept");
    assert_no_secrets(&e.tg, &e.pki, &e.up.requests().await);
}

/// A token endpoint that answers a DPoP token request with `token_type: Bearer` did not
/// bind the token: tollgate refuses it (502 naming the credential), never sends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_bearer_answer_to_a_dpop_token_request_is_a_502_naming_the_credential() {
    let e = dpop_env(IdpOptions::default(), UpstreamOptions::default()).await;
    e.idp.rewrite(json!({ "token_type": "Bearer" })).await;
    let resp = get(&e.tg, &e.up.host(), "/x").await;
    let body = resp.assert_error(502, "token_unavailable", Some("dpop"));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("credential \"dpop-cred\""), "{message}");
    assert!(
        message.contains("Bearer"),
        "names what the IdP answered: {message}"
    );
    assert_eq!(e.up.count().await, 0, "nothing reached the upstream");
    let stats = e.idp.stats().await;
    assert_eq!(stats.token_requests, 1, "{stats:#?}");
    assert_eq!(
        stats.requests[0].issued_token_type().as_deref(),
        Some("DPoP")
    );
    assert_eq!(stats.requests[0].raw["rewritten"]["token_type"], "Bearer");
    let found =
        e.tg.wait_for_output("dpop-cred", 1, Duration::from_secs(5))
            .await;
    let out = e.tg.output();
    assert!(
        found
            && out
                .lines()
                .any(|l| l.contains("dpop-cred") && l.contains("Bearer")),
        "the log says why:\n{out}"
    );
    assert_no_secrets(&e.tg, &e.pki, &[]);

    // Once the IdP binds tokens again, the route works.
    e.idp.clear_fault().await;
    let deadline = std::time::Instant::now() + WAIT_TIMEOUT;
    loop {
        let resp = get(&e.tg, &e.up.host(), "/again").await;
        if resp.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{resp:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ------------------------------------------------------------------ bad input

/// `tollgate check` and `tollgate run` both refuse `yaml` with exit 78 and the same
/// `FILE:LINE:COL` problems; returns them.
fn check_and_run_refuse(yaml: &str) -> Vec<Diagnostic> {
    let (file, out) = check(yaml);
    let text = out.combined();
    out.assert_code(EX_CONFIG);
    let checked = diagnostics(&text, "tollgate.yaml");
    assert!(!checked.is_empty(), "no FILE:LINE:COL problem:\n{text}");
    let mut cmd = tollgate_tests::process::command();
    cmd.arg("run").arg("-c").arg(&file.path);
    let out = run_to_end(cmd);
    let text = out.combined();
    assert_eq!(out.code, Some(EX_CONFIG), "run must exit 78:\n{text}");
    assert_eq!(
        diagnostics(&text, "tollgate.yaml"),
        checked,
        "run and check must report the same problems"
    );
    checked
}

/// Exactly one problem, on the first line containing `key_line`, whose message contains
/// every one of `needles`.
#[track_caller]
fn one_at(diags: &[Diagnostic], yaml: &str, key_line: &str, needles: &[&str]) {
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d.line, line_of(yaml, key_line), "{d:?}\n{yaml}");
    for n in needles {
        assert!(d.message.contains(n), "expected {n:?}: {d:?}");
    }
}

/// A config with a DPoP credential whose key is `key_file` (no IdP needed: nothing is
/// fetched at check or start).
fn dpop_yaml(pki: &SenderPki, key_file: &std::path::Path) -> String {
    let secret = pki.write("dpop-secret", &format!("{DPOP_SECRET}\n"));
    format!(
        "{listen}allow_private_networks: true
credentials:
  dpop-cred:
    token_url: http://127.0.0.1:9/token
    client_id: dpop-client
    client_secret_file: {secret}
    dpop:
      key_file: {key}
routes:
  - name: dpop
    match: {{ hosts: [api.test] }}
    action: inject
    credential: dpop-cred
",
        listen = listen_block(),
        secret = secret.display(),
        key = key_file.display(),
    )
}

fn mtls_yaml(
    pki: &SenderPki,
    method: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> String {
    format!(
        "{listen}allow_private_networks: true
credentials:
  bank:
    token_url: https://127.0.0.1:9/token
    ca_file: {ca}
    client_id: mtls-client
    auth_method: {method}
    client_cert_file: {cert}
    client_key_file: {key}
routes:
  - name: bank
    match: {{ hosts: [bank.test] }}
    action: inject
    credential: bank
    upstream: https://127.0.0.1:9
    upstream_ca_file: {ca}
    upstream_client_cert: credential
",
        listen = listen_block(),
        ca = pki.ca_file.display(),
        cert = cert.display(),
        key = key.display(),
    )
}

#[test]
fn good_sender_constrained_configs_pass_check() {
    let pki = SenderPki::generate();
    let (_f, out) = check(&dpop_yaml(&pki, &pki.dpop_key));
    out.assert_code(0);
    if let Some(sec1) = &pki.dpop_key_sec1 {
        let (_f, out) = check(&dpop_yaml(&pki, sec1));
        out.assert_code(0);
    }
    let (_f, out) = check(&mtls_yaml(
        &pki,
        "tls_client_auth",
        &pki.client.cert,
        &pki.client.key,
    ));
    out.assert_code(0);
    let (_f, out) = check(&mtls_yaml(
        &pki,
        "self_signed_tls_client_auth",
        &pki.self_signed.cert,
        &pki.self_signed.key,
    ));
    out.assert_code(0);
    // A chain file (leaf first, then the CA) is a PEM chain too.
    let chain = pki.write(
        "client-chain.pem",
        &format!(
            "{}{}",
            std::fs::read_to_string(&pki.client.cert).unwrap(),
            pki.ca.pem()
        ),
    );
    let (_f, out) = check(&mtls_yaml(&pki, "tls_client_auth", &chain, &pki.client.key));
    out.assert_code(0);
}

/// A DPoP key that is not P-256 (P-384, RSA): refused by check and run at `key_file`,
/// naming the file and the reason, never echoing the key.
#[test]
fn dpop_keys_that_are_not_p256_are_refused_naming_the_file() {
    let pki = SenderPki::generate();
    for key in [&pki.dpop_p384_key, &pki.dpop_rsa_key] {
        let yaml = dpop_yaml(&pki, key);
        let d = check_and_run_refuse(&yaml);
        one_at(&d, &yaml, "key_file:", &[&key.display().to_string()]);
        assert!(
            d[0].message.contains("P-256") || d[0].message.contains("ES256"),
            "{d:?}"
        );
        let text = format!("{d:?}");
        for line in pki.private_key_lines() {
            assert!(!text.contains(&line), "the key was echoed: {text}");
        }
    }
}

#[test]
fn a_client_certificate_with_another_key_is_refused_naming_the_file() {
    let pki = SenderPki::generate();
    // The CA-issued certificate with the self-signed certificate's key.
    let yaml = mtls_yaml(
        &pki,
        "tls_client_auth",
        &pki.client.cert,
        &pki.self_signed.key,
    );
    let d = check_and_run_refuse(&yaml);
    assert_eq!(d.len(), 1, "{d:#?}");
    let cert = pki.client.cert.display().to_string();
    let key = pki.self_signed.key.display().to_string();
    let at_cert = d[0].line == line_of(&yaml, "client_cert_file:");
    let at_key = d[0].line == line_of(&yaml, "client_key_file:");
    assert!(at_cert || at_key, "at the certificate or the key: {d:?}");
    assert!(
        d[0].message.contains(&cert) || d[0].message.contains(&key),
        "names the file: {d:?}"
    );
}

#[test]
fn an_expired_client_certificate_is_refused_at_check_naming_the_file() {
    let pki = SenderPki::generate();
    let yaml = mtls_yaml(&pki, "tls_client_auth", &pki.expired.cert, &pki.expired.key);
    let (_f, out) = check(&yaml);
    let text = out.combined();
    out.assert_code(EX_CONFIG);
    let d = diagnostics(&text, "tollgate.yaml");
    one_at(
        &d,
        &yaml,
        "client_cert_file:",
        &[&pki.expired.cert.display().to_string(), "expired"],
    );
}

#[test]
fn upstream_client_cert_needs_a_credential_with_a_client_certificate() {
    let pki = SenderPki::generate();
    let secret = pki.write("dpop-secret", &format!("{DPOP_SECRET}\n"));
    let yaml = format!(
        "{listen}allow_private_networks: true
credentials:
  plain:
    token_url: http://127.0.0.1:9/token
    client_id: basic-client
    client_secret_file: {secret}
routes:
  - name: bank
    match: {{ hosts: [bank.test] }}
    action: inject
    credential: plain
    upstream: https://127.0.0.1:9
    upstream_ca_file: {ca}
    upstream_client_cert: credential
",
        listen = listen_block(),
        secret = secret.display(),
        ca = pki.ca_file.display(),
    );
    let d = check_and_run_refuse(&yaml);
    one_at(
        &d,
        &yaml,
        "upstream_client_cert:",
        &["upstream_client_cert"],
    );
}

#[test]
fn a_mutual_tls_method_without_a_client_certificate_is_refused() {
    let pki = SenderPki::generate();
    let yaml = mtls_yaml(&pki, "tls_client_auth", &pki.client.cert, &pki.client.key)
        .lines()
        .filter(|l| !l.contains("client_cert_file:"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let d = check_and_run_refuse(&yaml);
    assert!(
        d.iter().any(|d| d.message.contains("client_cert_file")),
        "{d:#?}"
    );
}
