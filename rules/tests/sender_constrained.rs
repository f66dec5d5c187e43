//! The keys of "Sender-constrained tokens": `auth_method: tls_client_auth` and
//! `self_signed_tls_client_auth` with `client_cert_file`/`client_key_file`, `dpop.key_file`,
//! and a route's `upstream_client_cert: credential`. What each builds, and each misuse
//! reported at its key.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use tollgate_rules::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, Vec<String>> {
    load_str("t.yaml", text, &no_env).map_err(|ConfigErrors(ps)| {
        ps.iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    })
}

/// Exactly one problem, at `at` ("LINE:COL"), containing `needle`.
#[track_caller]
fn one(text: &str, at: &str, needle: &str) {
    let ps = match load(text) {
        Ok(_) => panic!("expected a problem, config was valid:\n{text}"),
        Err(ps) => ps,
    };
    assert_eq!(ps.len(), 1, "expected one problem, got {ps:#?}");
    assert!(
        ps[0].starts_with(&format!("{at}: ")) && ps[0].contains(needle),
        "expected {needle:?} at {at}, got {}",
        ps[0]
    );
}

const MTLS: &str = "credentials:
  bank:
    token_url: https://idp.bank.example/token
    client_id: bank-client
    auth_method: tls_client_auth
    client_cert_file: /etc/tollgate/client.pem
    client_key_file: /etc/tollgate/client.key
";

fn route(cred: &str, extra: &str) -> String {
    format!(
        "routes:
  - name: r
    match: {{ hosts: [api.bank.example] }}
    action: inject
    credential: {cred}
    upstream: https://api.bank.example
{extra}"
    )
}

#[test]
fn tls_client_auth_builds_its_certificate() {
    for (method, want) in [
        ("tls_client_auth", "tls_client_auth"),
        ("self_signed_tls_client_auth", "self_signed_tls_client_auth"),
    ] {
        let text = MTLS.replace("tls_client_auth", method)
            + &route("bank", "    upstream_client_cert: credential\n");
        let c = load(&text).unwrap();
        let cred = &c.credentials["bank"];
        let o = cred.oauth2().unwrap();
        let auth = &o.grant.client().unwrap().auth;
        assert_eq!(auth.name(), want);
        assert_eq!(
            o.tls_client(),
            Some(&TlsClient {
                cert_file: PathBuf::from("/etc/tollgate/client.pem"),
                key_file: PathBuf::from("/etc/tollgate/client.key"),
            })
        );
        assert!(cred.describe().contains(want), "{}", cred.describe());
        let i = c.routes[0].inject().unwrap();
        assert!(i.upstream_client_cert);
        assert!(!i.dpop);
        assert_eq!(i.prefix, "Bearer ");
        // Both files are checked (and watched) like every other file.
        let files: Vec<&std::path::Path> = cred.files();
        assert!(files.contains(&std::path::Path::new("/etc/tollgate/client.pem")));
        assert!(files.contains(&std::path::Path::new("/etc/tollgate/client.key")));
    }
}

#[test]
fn tls_client_auth_needs_both_files_and_no_secret() {
    one(
        &MTLS.replace("    client_key_file: /etc/tollgate/client.key\n", ""),
        "2:3",
        "`auth_method: tls_client_auth` needs `client_key_file`",
    );
    one(
        &MTLS.replace("    client_cert_file: /etc/tollgate/client.pem\n", ""),
        "2:3",
        "needs `client_cert_file`",
    );
    one(
        &(MTLS.to_owned() + "    client_secret: s\n"),
        "8:5",
        "authenticates with the client certificate and does not use `client_secret`",
    );
    // The certificate keys with another method.
    one(
        &MTLS
            .replace("auth_method: tls_client_auth", "auth_method: client_secret_post\n    client_secret: s")
            .replace("    client_key_file: /etc/tollgate/client.key\n", ""),
        "7:5",
        "only `auth_method: tls_client_auth` and `self_signed_tls_client_auth` use `client_cert_file`",
    );
}

const DPOP: &str = "credentials:
  api:
    token_url: https://idp.example/token
    client_id: a
    client_secret: b
    dpop:
      key_file: /etc/tollgate/dpop.pem
";

#[test]
fn dpop_binds_the_credential_and_its_routes() {
    let c = load(&(DPOP.to_owned() + &route("api", ""))).unwrap();
    let o = c.credentials["api"].oauth2().unwrap();
    assert_eq!(
        o.dpop,
        Some(Dpop {
            key_file: PathBuf::from("/etc/tollgate/dpop.pem")
        })
    );
    assert!(c.credentials["api"].describe().ends_with(", DPoP-bound"));
    let i = c.routes[0].inject().unwrap();
    assert!(i.dpop);
    assert_eq!(
        (i.header.as_str(), i.prefix.as_str()),
        ("Authorization", "DPoP ")
    );
    assert!(c.credentials["api"]
        .files()
        .contains(&std::path::Path::new("/etc/tollgate/dpop.pem")));
    // Spelled out as it is, that is fine too.
    load(&(DPOP.to_owned() + &route("api", "    header: authorization\n    prefix: \"DPoP \"\n")))
        .unwrap();
}

#[test]
fn dpop_misuse_is_reported_at_its_key() {
    one(
        &DPOP.replace("      key_file: /etc/tollgate/dpop.pem\n", "      {}\n"),
        "6:5",
        "`dpop` needs `key_file`",
    );
    let ps = load(&DPOP.replace("key_file:", "keyfile:")).unwrap_err();
    assert!(
        ps.iter()
            .any(|p| p.starts_with("7:7: ") && p.contains("keyfile")),
        "{ps:#?}"
    );
    one(
        &(DPOP.to_owned() + &route("api", "    header: X-Token\n")),
        "14:13",
        "is DPoP-bound: its token goes in `Authorization`",
    );
    one(
        &(DPOP.to_owned() + &route("api", "    prefix: \"Bearer \"\n")),
        "14:13",
        "the token is sent as `DPoP <token>`",
    );
    // Google's jwt_bearer grant issues no DPoP-bound tokens.
    one(
        "credentials:
  g:
    grant: jwt_bearer
    service_account_file: /sa.json
    scopes: [x]
    dpop: { key_file: /k.pem }
",
        "6:5",
        "does not use `dpop`",
    );
    // A static credential has no token requests to bind.
    one(
        "credentials:
  s:
    kind: static
    value_file: /v
    dpop: { key_file: /k.pem }
",
        "5:5",
        "`kind: static` uses only `value_file`",
    );
}

#[test]
fn upstream_client_cert_needs_a_certificate_an_inject_route_and_https() {
    one(
        &(DPOP.to_owned() + &route("api", "    upstream_client_cert: credential\n")),
        "14:27",
        "credential `api` has no client certificate",
    );
    one(
        &(MTLS.to_owned()
            + &route("bank", "    upstream_client_cert: credential\n")
                .replace("upstream: https://", "upstream: http://")),
        "14:5",
        "only an https `upstream` is sent a client certificate",
    );
    one(
        &(MTLS.to_owned()
            + "routes:
  - name: r
    match: { hosts: [api.bank.example] }
    action: pass
    upstream_client_cert: credential
"),
        "12:5",
        "only `action: inject` routes use `upstream_client_cert`",
    );
    let ps =
        load(&(MTLS.to_owned() + &route("bank", "    upstream_client_cert: yes\n"))).unwrap_err();
    assert!(
        ps[0].contains("upstream_client_cert") || ps[0].contains("credential"),
        "{ps:#?}"
    );
}
