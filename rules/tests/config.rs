//! `load_str` / `load`: defaults, the SPEC example, `${VAR}`, and every kind of problem
//! with its `FILE:LINE:COL`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tollgate_rules::*;

const SECRET: &str = "s3cr3t-Value-42";

fn env(name: &str) -> Option<String> {
    match name {
        "BILLING_SECRET" => Some(SECRET.to_owned()),
        "IDP" => Some("idp.example.com".to_owned()),
        "EMPTY" => Some(String::new()),
        "PORT" => Some("8443".to_owned()),
        _ => None,
    }
}

/// The OAuth 2 settings of a credential (panics for a static one).
fn oauth(c: &Credential) -> &OAuth2 {
    c.oauth2().expect("an OAuth 2 credential")
}

/// The client of a client_credentials or token_exchange credential.
fn client(c: &Credential) -> &Client {
    oauth(c).grant.client().expect("a client")
}

/// The configured `token_url`.
fn token_url(c: &Credential) -> &str {
    match &oauth(c).endpoint {
        Endpoint::TokenUrl(u) => u.as_str(),
        other => panic!("{other:?}"),
    }
}

fn ok(text: &str) -> Config {
    match load_str("t.yaml", text, &env) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- text:\n{text}"),
    }
}

/// Every problem as `LINE:COL: message`.
fn problems(text: &str) -> Vec<String> {
    match load_str("t.yaml", text, &env) {
        Ok(_) => panic!("expected problems, config was valid:\n{text}"),
        Err(ConfigErrors(ps)) => {
            assert!(!ps.is_empty(), "ConfigErrors must never be empty");
            for p in &ps {
                assert_eq!(p.file, "t.yaml");
                assert!(p.line >= 1 && p.column >= 1, "{p}");
                assert!(
                    !p.message.contains(SECRET),
                    "a problem shows the secret: {p}"
                );
            }
            ps.iter()
                .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
                .collect()
        }
    }
}

/// Asserts exactly one problem, at `at` (`"LINE:COL"`), whose message contains `needle`.
#[track_caller]
fn one(text: &str, at: &str, needle: &str) {
    let ps = problems(text);
    assert_eq!(ps.len(), 1, "expected one problem, got {ps:#?}");
    let p = &ps[0];
    assert!(
        p.starts_with(&format!("{at}: ")),
        "expected the problem at {at}, got {p}"
    );
    assert!(p.contains(needle), "expected {needle:?} in {p}");
}

/// A valid credential block to build on (lines 1-5).
const CRED: &str = "\
credentials:
  billing:
    token_url: https://idp.example.com/token
    client_id: billing-egress
    client_secret: ${BILLING_SECRET}
";

// ---------------------------------------------------------------- valid configs

#[test]
fn empty_file_and_comments_are_the_all_defaults_config() {
    for text in ["", "\n", "# nothing here\n", "---\n", "~\n", "{}\n"] {
        let c = ok(text);
        assert!(c.routes.is_empty() && c.credentials.is_empty());
        assert_eq!(c.default_action, DefaultAction::Deny);
    }
}

#[test]
fn defaults() {
    let c = ok("routes:\n  - name: r\n    match: { hosts: [a.example.com] }\n    action: inject\n    credential: billing\n"
        .replace("routes:", &format!("{CRED}routes:"))
        .as_str());
    assert_eq!(
        c.listen.proxy,
        "127.0.0.1:3128".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.listen.admin,
        "127.0.0.1:9901".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.listen.proxy, DEFAULT_PROXY_ADDR);
    assert_eq!(c.listen.admin, DEFAULT_ADMIN_ADDR);
    assert_eq!(c.threads, None);
    assert_eq!(c.default_action, DefaultAction::Deny);
    assert!(!c.allow_private_networks);
    let cred = &c.credentials["billing"];
    assert!(matches!(
        client(cred).auth,
        AuthMethod::ClientSecretBasic {
            secret: SecretSource::Inline(_),
            encoding: BasicEncoding::FormUrlencoded
        }
    ));
    assert!(oauth(cred).scopes.is_empty() && oauth(cred).params.is_empty());
    assert_eq!(oauth(cred).audience, None);
    let r = &c.routes[0];
    let inject = r.inject().unwrap();
    assert_eq!(inject.header, "Authorization");
    assert_eq!(inject.prefix, "Bearer ");
    assert!(inject.replay_on_401);
    assert!(r.clients.is_empty());
    assert!(r.matcher.path_prefixes.is_empty() && r.matcher.methods.is_empty());
    assert_eq!(r.upstream, None);
    assert_eq!(
        c.credential_for(r).map(|c| c.name.as_str()),
        Some("billing")
    );
}

#[test]
fn empty_routes_and_missing_credentials_are_valid() {
    assert!(ok("routes: []\n").routes.is_empty());
    assert!(ok("routes:\n").routes.is_empty());
    assert!(ok("credentials:\nroutes:\n").credentials.is_empty());
    let c = ok("routes:\n  - name: p\n    match: { hosts: [a.example.com] }\n    action: pass\n");
    assert!(c.credentials.is_empty());
    assert_eq!(c.routes[0].action, Action::Pass);
}

#[test]
fn the_spec_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec-example.yaml");
    let c = load(&path, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.threads, Some(2));
    assert_eq!(c.default_action, DefaultAction::Deny);
    let cred = &c.credentials["billing"];
    assert_eq!(cred.name, "billing");
    assert_eq!(token_url(cred), "https://idp.example.com/oauth2/token");
    assert_eq!(client(cred).client_id, "billing-egress");
    assert_eq!(
        client(cred).auth,
        AuthMethod::ClientSecretBasic {
            secret: SecretSource::File(PathBuf::from("/var/run/secrets/billing/secret")),
            encoding: BasicEncoding::FormUrlencoded
        }
    );
    let o = oauth(cred);
    assert_eq!(o.scopes, ["invoices:read", "invoices:write"]);
    assert_eq!(o.audience.as_deref(), Some("https://billing.example.com"));
    assert_eq!(o.resource.as_deref(), Some("https://billing.example.com"));
    assert_eq!(o.params.get("tenant").map(String::as_str), Some("eu"));
    assert_eq!(o.ca_file, Some(PathBuf::from("/etc/ssl/idp-ca.pem")));

    let r = &c.routes[0];
    assert_eq!(r.name, "billing");
    assert_eq!(
        r.matcher.hosts,
        [
            HostPattern {
                kind: HostKind::Exact("api.billing.example.com".into()),
                port: PortMatch::Default
            },
            HostPattern {
                kind: HostKind::Wildcard(".billing.example.com".into()),
                port: PortMatch::Default
            },
        ]
    );
    assert_eq!(r.matcher.path_prefixes, ["/v2/"]);
    assert_eq!(r.matcher.methods, ["GET", "POST"]);
    assert_eq!(r.clients, ["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]);
    assert_eq!(
        r.upstream,
        Some(Upstream {
            scheme: Scheme::Https,
            host: "api.billing.example.com".into(),
            port: 443
        })
    );
    assert_eq!(
        r.upstream_ca_file,
        Some(PathBuf::from("/etc/ssl/billing-ca.pem"))
    );
    assert_eq!(
        r.action,
        Action::Inject(Inject {
            credential: "billing".into(),
            header: "Authorization".into(),
            prefix: "Bearer ".into(),
            replay_on_401: true,
            upstream_client_cert: false,
            dpop: false,
        })
    );
}

#[test]
fn everything_set() {
    let c = ok(r#"
listen:
  proxy: 0.0.0.0:8080
  admin: "[::1]:9000"
threads: 8
default_action: pass
allow_private_networks: true
credentials:
  post:
    token_url: http://localhost:9/token
    client_id: 12345
    client_secret: "${BILLING_SECRET}"
    auth_method: client_secret_post
  jwt:
    token_url: https://${IDP}/token
    client_id: jwt-client
    auth_method: private_key_jwt
    private_key_file: key.pem
    signing_alg: ES256
    key_id: k1
routes:
  - name: Mixed
    match:
      hosts: ["API.Example.com:${PORT}", "*.Example.com", "[::1]"]
      path_prefixes: [/a, /b/]
      methods: [get, Post, GET]
    clients: [10.1.2.3, "fd00::/8"]
    action: inject
    credential: jwt
    header: X-Api-Token
    prefix: ""
    replay_on_401: false
    upstream: http://10.0.0.1:8080/
  - name: tunnel
    match: { hosts: ["*.svc"] }
    action: pass
    upstream: https://proxy.internal
    upstream_ca_file: /ca.pem
  - name: blocked
    match: { hosts: [evil.example.com] }
    action: deny
"#);
    assert_eq!(
        c.listen.proxy,
        "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.listen.admin, "[::1]:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(c.threads, Some(8));
    assert_eq!(c.default_action, DefaultAction::Pass);
    assert!(c.allow_private_networks);
    let post = &c.credentials["post"];
    assert_eq!(client(post).client_id, "12345");
    match &client(post).auth {
        AuthMethod::ClientSecretPost(SecretSource::Inline(s)) => assert_eq!(s.expose(), SECRET),
        other => panic!("{other:?}"),
    }
    let jwt = &c.credentials["jwt"];
    assert_eq!(token_url(jwt), "https://idp.example.com/token");
    assert_eq!(
        client(jwt).auth,
        AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
            private_key_file: "key.pem".into(),
            signing_alg: Some(SigningAlg::Es256),
            key_id: Some("k1".into()),
            certificate: None,
            assertion_audience: None,
        })
    );
    let r = &c.routes[0];
    assert_eq!(r.name, "Mixed");
    let hosts: Vec<String> = r.matcher.hosts.iter().map(|h| h.to_string()).collect();
    assert_eq!(hosts, ["api.example.com:8443", "*.example.com", "[::1]"]);
    assert_eq!(r.matcher.methods, ["GET", "POST"]);
    assert_eq!(r.matcher.path_prefixes, ["/a", "/b/"]);
    let clients: Vec<String> = r.clients.iter().map(|n| n.to_string()).collect();
    assert_eq!(clients, ["10.1.2.3/32", "fd00::/8"]);
    let i = r.inject().unwrap();
    assert_eq!(
        (i.header.as_str(), i.prefix.as_str(), i.replay_on_401),
        ("X-Api-Token", "", false)
    );
    assert_eq!(
        r.upstream,
        Some(Upstream {
            scheme: Scheme::Http,
            host: "10.0.0.1".into(),
            port: 8080
        })
    );
    assert_eq!(c.routes[1].upstream.as_ref().map(|u| u.port), Some(443));
    assert_eq!(c.routes[2].action, Action::Deny);
    assert_eq!(c.routes[2].action.name(), "deny");
}

// ---------------------------------------------------------------- ${VAR}

#[test]
fn substitution_applies_to_every_string_value() {
    let c = ok(&format!(
        "{CRED}    scopes: [\"${{IDP}}\"]\n    params: {{ tenant: \"x-${{PORT}}\" }}\n"
    ));
    let cred = &c.credentials["billing"];
    assert_eq!(oauth(cred).scopes, ["idp.example.com"]);
    assert_eq!(oauth(cred).params["tenant"], "x-8443");
    // `$${` escapes; a lone `$` stays.
    let c = ok("credentials:\n  c:\n    token_url: https://h/t\n    client_id: a$b$${IDP}\n    client_secret: x\n");
    assert_eq!(client(&c.credentials["c"]).client_id, "a$b${IDP}");
}

#[test]
fn unset_variable_names_it() {
    let text = "\
credentials:
  billing:
    token_url: https://${NO_SUCH_HOST}/token
    client_id: billing-egress
    client_secret: ${MISSING_SECRET}
";
    assert_eq!(
        problems(text),
        [
            "3:16: credentials.billing.token_url: environment variable `NO_SUCH_HOST` is not set",
            "5:20: credentials.billing.client_secret: environment variable `MISSING_SECRET` is not set",
        ]
    );
}

#[test]
fn bad_variable_syntax() {
    one("listen:\n  proxy: ${PORT\n", "2:10", "without a closing");
    one("listen:\n  proxy: ${1X}\n", "2:10", "variable name");
}

#[test]
fn empty_secret_is_a_problem() {
    one(
        "credentials:\n  c:\n    token_url: https://h/t\n    client_id: a\n    client_secret: ${EMPTY}\n",
        "5:20",
        "empty secret",
    );
}

// ---------------------------------------------------------------- secrets

#[test]
fn secrets_never_show() {
    let c = ok(CRED);
    let debug = format!("{c:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("[redacted]"));
    let s = Secret::new(SECRET);
    assert_eq!(format!("{s:?}"), "[redacted]");
    assert_eq!(format!("{s}"), "[redacted]");
    // A literal secret in the file is never echoed by a problem about it ...
    let text = "credentials:\n  c:\n    token_url: https://h/t\n    client_id: a\n    client_secret: s3cr3t-Value-42\n    client_secret_file: /x\n";
    let ps = problems(text);
    assert!(ps.iter().all(|p| !p.contains(SECRET)), "{ps:?}");
    // ... nor by a problem about something else in the same credential.
    let text = "credentials:\n  c:\n    token_url: http://h/t\n    client_id: a\n    client_secret: s3cr3t-Value-42\n";
    assert!(problems(text).iter().all(|p| !p.contains(SECRET)));
    // The file layer's Debug redacts too.
    let f: tollgate_rules::file::CredentialFile =
        serde_yaml::from_str("client_secret: s3cr3t-Value-42\n").unwrap();
    assert!(!format!("{f:?}").contains(SECRET));
}

#[test]
fn userinfo_in_urls_is_not_echoed() {
    let ps = problems(
        "credentials:\n  c:\n    token_url: http://user:s3cr3t-Value-42@h/t\n    client_id: a\n    client_secret: x\n",
    );
    assert!(ps.iter().all(|p| !p.contains(SECRET)), "{ps:?}");
}

// ---------------------------------------------------------------- serde-level problems

#[test]
fn syntax_error() {
    let ps = problems("routes: [\n");
    assert_eq!(ps.len(), 1);
    assert!(ps[0].starts_with("2:1: "), "{ps:?}");
    one(
        "listen:\n\tproxy: x\n",
        "2:1",
        "found character that cannot start any token",
    );
    one(
        "routes:\n  - name: a\n   match: x\n",
        "3:4",
        "did not find expected '-' indicator, while parsing a block collection at line 2 column 3",
    );
    one(
        "threads: 2\nlisten:\n  proxy: \"x\n",
        "4:1",
        "found unexpected end of stream",
    );
}

#[test]
fn type_errors() {
    one(
        "threads: lots\n",
        "1:10",
        "threads: invalid type: string \"lots\", expected a whole number",
    );
    one("threads: -1\n", "1:10", "threads: invalid type");
    one(
        "allow_private_networks: yes please\n",
        "1:25",
        "expected a boolean",
    );
    one(
        "listen: 5\n",
        "1:9",
        "listen: invalid type: integer `5`, expected a mapping",
    );
    one("- 1\n", "1:1", "invalid type: sequence, expected a mapping");
    one(
        "routes:\n  - name: a\n    match: { hosts: a.com }\n",
        "3:21",
        "invalid type: string",
    );
}

#[test]
fn unknown_keys() {
    one("threads: 2\nthread: 3\n", "2:1", "unknown field `thread`");
    one(
        "listen:\n  proxy: 127.0.0.1:1\n  bogus: x\n",
        "3:3",
        "listen: unknown field `bogus`, expected `proxy` or `admin`",
    );
    one(
        &format!("{CRED}    scope: [a]\n"),
        "6:5",
        "credentials.billing: unknown field `scope`",
    );
    one(
        "routes:\n  - name: a\n    match: { hosts: [a.com], paths: [/] }\n    action: pass\n",
        "3:30",
        "routes[0].match: unknown field `paths`",
    );
}

#[test]
fn unknown_keys_do_not_hide_other_problems() {
    // Two unknown keys, a semantic problem in the same route and one in another: all four
    // are reported, in file order.
    let text = "\
routes:
  - name: a
    match: { hosts: [a.com] }
    acton: pass
    colour: red
  - name: b
    match: { hosts: [\"x.*.com\"] }
    action: pass
";
    let ps = problems(text);
    assert_eq!(ps.len(), 4, "{ps:#?}");
    assert!(
        ps[0].starts_with("2:5: routes[0]: missing `action`"),
        "{ps:#?}"
    );
    assert!(
        ps[1].starts_with("4:5: routes[0]: unknown field `acton`, expected one of `name`, `match`"),
        "{ps:#?}"
    );
    assert!(
        ps[2].starts_with("5:5: routes[0]: unknown field `colour`"),
        "{ps:#?}"
    );
    assert!(
        ps[3].starts_with("7:22: routes[1].match.hosts[0]: bad host pattern"),
        "{ps:#?}"
    );
}

#[test]
fn unknown_keys_at_every_level_are_all_reported() {
    let text = format!(
        "{CRED}    client_secrt: {SECRET}\nlisten: {{ proxi: 1.2.3.4:5 }}\ntreads: 2\nroutes:\n  - name: r\n    match: {{ hosts: [r.com], hots: [x] }}\n    action: pass\n"
    );
    let ps = problems(&text);
    let want = [
        "6:5: credentials.billing: unknown field `client_secrt`",
        "7:11: listen: unknown field `proxi`, expected `proxy` or `admin`",
        "8:1: unknown field `treads`, expected one of `listen`, `threads`",
        "11:30: routes[0].match: unknown field `hots`",
    ];
    assert_eq!(ps.len(), want.len(), "{ps:#?}");
    for (p, w) in ps.iter().zip(want) {
        assert!(p.starts_with(w), "expected {w:?}, got {p:?}");
    }
}

#[test]
fn unknown_timeouts_keys_are_reported_with_the_rest() {
    let ps = problems(
        "timeouts:\n  conect: 5s\nroutes:\n  - name: r\n    match: { hosts: [r.com] }\n    action: pass\n    timeouts: { raed: 1s }\n    colour: red\n",
    );
    let want = [
        "2:3: timeouts: unknown field `conect`, expected one of `connect`, `read`",
        "7:17: routes[0].timeouts: unknown field `raed`, expected one of `connect`",
        "8:5: routes[0]: unknown field `colour`",
    ];
    assert_eq!(ps.len(), want.len(), "{ps:#?}");
    for (p, w) in ps.iter().zip(want) {
        assert!(p.starts_with(w), "expected {w:?}, got {p:?}");
    }
}

#[test]
fn an_unknown_key_before_a_type_error_is_reported_with_it() {
    let ps = problems("thread: 2\nthreads: lots\n");
    assert_eq!(ps.len(), 2, "{ps:#?}");
    assert!(ps[0].starts_with("1:1: unknown field `thread`"), "{ps:#?}");
    assert!(ps[1].starts_with("2:10: threads: invalid type"), "{ps:#?}");
}

#[test]
fn valid_entries_and_their_files_come_back_with_the_problems() {
    let text = "\
credentials:
  good:
    token_url: https://idp.example.com/token
    client_id: g
    client_secret_file: /run/good
    ca_file: /run/ca.pem
  bad:
    token_url: ftp://idp.example.com/token
    client_id: b
    client_secret_file: /run/bad
routes:
  - name: r0
    match: { hosts: [a.com] }
    action: pass
    upstream: https://a.com
    upstream_ca_file: /run/up.pem
  - name: r1
    match: { hosts: [b.com] }
    action: nonsense_is_a_type_error_so_use_a_missing_key_instead
";
    // (An unknown enum value stops parsing; use a semantic problem instead.)
    let text = text.replace(
        "    action: nonsense_is_a_type_error_so_use_a_missing_key_instead\n",
        "",
    );
    let loaded = load_str_with_source("t.yaml", &text, &env);
    assert!(loaded.result.is_err());
    let names: Vec<&str> = loaded
        .partial
        .credentials
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["good"]);
    let routes: Vec<(usize, &str)> = loaded
        .partial
        .routes
        .iter()
        .map(|(i, r)| (*i, r.name.as_str()))
        .collect();
    assert_eq!(routes, [(0, "r0")]);
    let files: Vec<(String, &Path)> = loaded
        .partial
        .files()
        .into_iter()
        .map(|f| (f.setting.to_string(), f.path))
        .collect();
    assert_eq!(
        files,
        [
            (
                "credentials.good.client_secret_file".to_owned(),
                Path::new("/run/good")
            ),
            (
                "credentials.good.ca_file".to_owned(),
                Path::new("/run/ca.pem")
            ),
            (
                "routes[0].upstream_ca_file".to_owned(),
                Path::new("/run/up.pem")
            ),
        ]
    );
    // Each is located at its key.
    let at = |s: &Setting| loaded.source.locate(s);
    assert_eq!(
        at(&Setting::credential("good", "client_secret_file")),
        (5, 5)
    );
    assert_eq!(at(&Setting::credential("good", "ca_file")), (6, 5));
    assert_eq!(at(&Setting::route(0, "upstream_ca_file")), (16, 5));
}

#[test]
fn files_lists_every_file_the_spec_example_names() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/spec-example.yaml"
    ))
    .unwrap();
    let loaded = load_str_with_source("spec.yaml", &text, &env);
    let config = loaded.result.unwrap();
    let files: Vec<String> = config
        .files()
        .iter()
        .map(|f| {
            let (line, col) = loaded.source.locate(&f.setting);
            format!("{}:{line}:{col} {}", f.setting, f.path.display())
        })
        .collect();
    assert_eq!(
        files,
        [
            "credentials.billing.client_secret_file:12:5 /var/run/secrets/billing/secret",
            "credentials.billing.ca_file:20:5 /etc/ssl/idp-ca.pem",
            "routes[0].upstream_ca_file:34:5 /etc/ssl/billing-ca.pem",
        ]
    );
}

/// Every key of the file structs that names a file (`*_file`, `*_files`) must be listed
/// by `Config::files`, or `tollgate check` would not open it and the reload watcher
/// would not watch it. Add a new one to `source.rs` (and its check to the proxy's
/// `preflight`), then here.
#[test]
fn every_file_key_is_known_to_files() {
    let listed = [
        "client_secret_file",
        "client_secret_files",
        "private_key_file",
        "certificate_file",
        "client_assertion_file",
        "service_account_file",
        "subject_token_file",
        "value_file",
        "ca_file",
        "upstream_ca_file",
        "jwks_file",
        "htpasswd_file",
        "ca_cert_file",
        "ca_key_file",
        "password_file",
        "encryption_key_files",
        "client_cert_file",
        "client_key_file",
        "key_file",
    ];
    for fields in [
        file::fields::<file::ConfigFile>(),
        file::fields::<file::ListenFile>(),
        file::fields::<file::CredentialFile>(),
        file::fields::<file::DpopFile>(),
        file::fields::<file::RouteFile>(),
        file::fields::<file::MatchFile>(),
        file::fields::<file::TimeoutsFile>(),
        file::fields::<file::CallersFile>(),
        file::fields::<file::JwtCallersFile>(),
        file::fields::<file::BasicCallersFile>(),
        file::fields::<file::InterceptionFile>(),
        file::fields::<file::TokenStoreFile>(),
        file::fields::<file::RedisFile>(),
    ] {
        assert!(!fields.is_empty());
        for f in fields {
            if f.ends_with("_file") || f.ends_with("_files") {
                assert!(
                    listed.contains(f),
                    "`{f}` names a file but Config::files does not list it"
                );
            }
        }
    }
    // And each listed key really comes out of `files()` for a config that sets it, at
    // its key (a list item at the item).
    let text = "\
credentials:
  s: { token_url: https://i.example/t, client_id: a, client_secret_file: /s, ca_file: /c }
  two: { token_url: https://i.example/t, client_id: a, client_secret_files: [/s1, /s2] }
  k: { token_url: https://i.example/t, client_id: a, auth_method: private_key_jwt, private_key_file: /k, certificate_file: /crt }
  fed: { token_url: https://i.example/t, client_id: a, auth_method: client_assertion_file, client_assertion_file: /a }
  mt: { token_url: https://i.example/t, client_id: a, auth_method: tls_client_auth, client_cert_file: /cc, client_key_file: /ck, dpop: { key_file: /dk } }
  sa: { grant: jwt_bearer, service_account_file: /sa.json, scopes: [x] }
  sts: { token_url: https://i.example/t, grant: token_exchange, subject_token_file: /st, subject_token_type: urn:ietf:params:oauth:token-type:jwt }
  api: { kind: static, value_file: /v }
callers:
  jwt: { issuer: i, audiences: [a], jwks_file: /jwks.json }
  basic: { htpasswd_file: /htpasswd }
interception: { ca_cert_file: /ca.crt, ca_key_file: /ca.key }
routes:
  - { name: r, match: { hosts: [a.com] }, action: pass, upstream: https://a.com, upstream_ca_file: /u }
token_store:
  redis: { url: redis://r.example, password_file: /redis-pw }
  encryption_key_files: [/k1, /k2]
";
    let loaded = load_str_with_source("t.yaml", text, &env);
    let config = match loaded.result {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let files = config.files();
    let mut got: Vec<String> = files
        .iter()
        .map(|f| {
            let key = f.setting.to_string();
            let key = key.rsplit('.').next().unwrap();
            key.split('[').next().unwrap().to_owned()
        })
        .collect();
    got.sort();
    got.dedup();
    let mut want: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    let shown: Vec<String> = files
        .iter()
        .map(|f| {
            let (line, col) = loaded.source.locate(&f.setting);
            format!(
                "{line}:{col} {} {}{}",
                f.setting,
                f.path.display(),
                match (f.kind.per_request(), f.kind.watched()) {
                    (true, _) => " (per request)",
                    (false, false) => " (at start)",
                    (false, true) => "",
                }
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "9:24 credentials.api.value_file /v",
            "5:92 credentials.fed.client_assertion_file /a (per request)",
            "4:84 credentials.k.private_key_file /k",
            "4:106 credentials.k.certificate_file /crt",
            "6:85 credentials.mt.client_cert_file /cc",
            "6:108 credentials.mt.client_key_file /ck",
            "6:138 credentials.mt.dpop.key_file /dk",
            "2:54 credentials.s.client_secret_file /s",
            "2:78 credentials.s.ca_file /c",
            "7:28 credentials.sa.service_account_file /sa.json",
            "8:65 credentials.sts.subject_token_file /st (per request)",
            "3:78 credentials.two.client_secret_files[0] /s1",
            "3:83 credentials.two.client_secret_files[1] /s2",
            "15:82 routes[0].upstream_ca_file /u",
            "11:37 callers.jwt.jwks_file /jwks.json",
            "12:12 callers.basic.htpasswd_file /htpasswd",
            "13:17 interception.ca_cert_file /ca.crt",
            "13:40 interception.ca_key_file /ca.key",
            "17:36 token_store.redis.password_file /redis-pw (at start)",
            "18:26 token_store.encryption_key_files[0] /k1",
            "18:31 token_store.encryption_key_files[1] /k2",
        ]
    );
}

#[test]
fn unknown_enum_values() {
    one(
        "default_action: allow\n",
        "1:17",
        "unknown variant `allow`, expected `deny` or `pass`",
    );
    one(
        "routes:\n  - name: a\n    match: { hosts: [a.com] }\n    action: frob\n",
        "4:13",
        "routes[0].action: unknown variant `frob`, expected one of `inject`, `pass`, `deny`",
    );
    one(
        &format!("{CRED}    auth_method: mtls\n"),
        "6:18",
        "unknown variant `mtls`",
    );
    one(
        &format!("{CRED}    auth_method: private_key_jwt\n    signing_alg: HS256\n"),
        "7:18",
        "unknown variant `HS256`, expected one of `ES256`, `RS256`, `PS256`",
    );
}

// ---------------------------------------------------------------- top-level values

#[test]
fn bad_listen_addresses() {
    one(
        "listen:\n  proxy: localhost:3128\n",
        "2:10",
        "listen.proxy: `localhost:3128` is not an IP:PORT address",
    );
    one("listen:\n  admin: \"3128\"\n", "2:10", "listen.admin:");
    one(
        "listen:\n  proxy: 127.0.0.1:9000\n  admin: 127.0.0.1:9000\n",
        "3:10",
        "must not use the proxy listener's address",
    );
}

#[test]
fn threads_zero_and_too_many() {
    one("threads: 0\n", "1:10", "threads: must be at least 1");
    one("threads: 100000\n", "1:10", "threads: must be at most");
}

// ---------------------------------------------------------------- credentials

#[test]
fn missing_credential_keys() {
    assert_eq!(
        problems("credentials:\n  c:\n    auth_method: client_secret_post\n"),
        [
            "2:3: credentials.c: missing `token_url` (or `issuer`, to find it by OIDC discovery)",
            "2:3: credentials.c: missing `client_id`",
            "2:3: credentials.c: client_secret_post needs `client_secret`, `client_secret_file` or `client_secret_files`",
        ]
    );
}

#[test]
fn duplicate_credential_name() {
    let text = format!(
        "{CRED}  billing:\n    token_url: https://h/t\n    client_id: b\n    client_secret: c\n"
    );
    one(&text, "6:3", "duplicate credential name `billing`");
}

#[test]
fn token_url_checks() {
    one(
        "credentials:\n  c:\n    token_url: http://idp.example.com/token\n    client_id: a\n    client_secret: b\n",
        "3:16",
        "must use https",
    );
    one(
        "credentials:\n  c:\n    token_url: idp.example.com/token\n    client_id: a\n    client_secret: b\n",
        "3:16",
        "credentials.c.token_url: `idp.example.com/token` is not a URL",
    );
    one(
        "credentials:\n  c:\n    token_url: ftp://localhost/token\n    client_id: a\n    client_secret: b\n",
        "3:16",
        "scheme `ftp` is not supported",
    );
    for loopback in ["localhost", "127.0.0.1", "127.9.9.9", "[::1]"] {
        ok(&format!("credentials:\n  c:\n    token_url: http://{loopback}:9/t\n    client_id: a\n    client_secret: b\n"));
    }
}

#[test]
fn secret_source_checks() {
    one(
        "credentials:\n  c:\n    token_url: https://h/t\n    client_id: a\n    client_secret: b\n    client_secret_file: /f\n",
        "6:5",
        "give only one of `client_secret`, `client_secret_file` and `client_secret_files`",
    );
    one(
        "credentials:\n  c:\n    token_url: https://h/t\n    client_id: a\n",
        "2:3",
        "client_secret_basic needs `client_secret`, `client_secret_file` or `client_secret_files`",
    );
    one(
        "credentials:\n  c:\n    token_url: https://h/t\n    client_id: a\n    auth_method: private_key_jwt\n",
        "2:3",
        "`auth_method: private_key_jwt` needs `private_key_file`",
    );
    one(
        "credentials:\n  c:\n    token_url: https://h/t\n    client_id: a\n    auth_method: private_key_jwt\n    private_key_file: k.pem\n    client_secret: x\n",
        "7:5",
        "does not use `client_secret`",
    );
    one(
        "credentials:\n  c:\n    token_url: https://h/t\n    client_id: a\n    client_secret: x\n    key_id: k\n",
        "6:5",
        "only `auth_method: private_key_jwt` uses `key_id`",
    );
    one(
        "credentials:\n  c:\n    token_url: https://h/t\n    client_id: a\n    client_secret_file: \"\"\n",
        "5:25",
        "empty file path",
    );
}

#[test]
fn credential_value_checks() {
    one(
        &format!("{CRED}    scopes: [ok, \"two words\"]\n"),
        "6:18",
        "credentials.billing.scopes[1]: scope `two words` contains whitespace",
    );
    one(
        &format!("{CRED}    params: {{ tenant: eu, scope: x }}\n"),
        "6:27",
        "credentials.billing.params.scope: tollgate sets this form field itself; use `scopes`",
    );
    one(
        &format!("{CRED}    audience: \"\"\n"),
        "6:15",
        "empty value",
    );
    one(
        &format!("{CRED}    client_id: \"\"\n").replace("    client_id: billing-egress\n", ""),
        "5:16",
        "client_id: empty value",
    );
}

// ---------------------------------------------------------------- routes

const ROUTE_HEAD: &str = "routes:\n  - name: r\n";

#[test]
fn duplicate_route_name() {
    let text = "\
routes:
  - name: a
    match: { hosts: [a.com] }
    action: pass
  - name: b
    match: { hosts: [b.com] }
    action: pass
  - name: a
    match: { hosts: [c.com] }
    action: pass
";
    one(
        text,
        "8:11",
        "routes[2].name: duplicate route name `a` (first used by routes[0])",
    );
}

#[test]
fn route_credential_checks() {
    one(
        &format!("{CRED}routes:\n  - name: r\n    match: {{ hosts: [a.com] }}\n    action: inject\n    credential: billng\n"),
        "10:17",
        "routes[0].credential: `billng` is not defined under `credentials` (defined: billing)",
    );
    one(
        &format!(
            "{CRED}routes:\n  - name: r\n    match: {{ hosts: [a.com] }}\n    action: inject\n"
        ),
        "9:5",
        "routes[0].action: `action: inject` needs a `credential`",
    );
    one(
        &format!("{CRED}routes:\n  - name: r\n    match: {{ hosts: [a.com] }}\n    action: pass\n    credential: billing\n"),
        "10:5",
        "routes[0].credential: only `action: inject` routes use a credential (this route's action is pass)",
    );
    one(
        "routes:\n  - name: r\n    match: { hosts: [a.com] }\n    action: deny\n    header: X-Token\n",
        "5:5",
        "only `action: inject` routes use `header`",
    );
    one(
        "routes:\n  - name: r\n    match: { hosts: [a.com] }\n    action: deny\n    upstream: https://x\n",
        "5:5",
        "a deny route has no `upstream`",
    );
    // A credential that exists but is itself broken is not also "not defined".
    let ps = problems("credentials:\n  c:\n    client_id: a\n    client_secret: b\nroutes:\n  - name: r\n    match: { hosts: [a.com] }\n    action: inject\n    credential: c\n");
    assert_eq!(
        ps,
        ["2:3: credentials.c: missing `token_url` (or `issuer`, to find it by OIDC discovery)"]
    );
}

#[test]
fn missing_route_keys() {
    assert_eq!(
        problems("routes:\n  - clients: [10.0.0.0/8]\n"),
        [
            "2:5: routes[0]: missing `name`",
            "2:5: routes[0]: missing `match` (a route needs at least `match.hosts`)",
            "2:5: routes[0]: missing `action` (inject, pass or deny)",
        ]
    );
}

#[test]
fn route_without_hosts() {
    one(
        &format!("{ROUTE_HEAD}    match:\n      methods: [GET]\n    action: pass\n"),
        "3:5",
        "routes[0].match: missing `hosts`",
    );
    one(
        &format!("{ROUTE_HEAD}    match:\n      hosts: []\n    action: pass\n"),
        "4:14",
        "routes[0].match.hosts: a route needs at least one host",
    );
}

#[test]
fn bad_host_patterns() {
    let cases: &[(&str, &str)] = &[
        ("\"\"", "empty host pattern"),
        ("\"*\"", "a bare `*`"),
        (
            "\"a.*.com\"",
            "`*` is allowed only as the whole first label",
        ),
        ("\"*a.com\"", "`*` is allowed only"),
        ("\"**.a.com\"", "`*` is allowed only"),
        ("\"a .com\"", "whitespace"),
        ("https://a.com", "no scheme"),
        ("a.com/v2", "no path"),
        ("a.com:0", "port `0` is not in 1..=65535"),
        ("a.com:99999", "not in 1..=65535"),
        ("a.com:http", "bad port `http`"),
        ("a..com", "empty label"),
        ("\"fe80::1:zz\"", "IPv6 address with a port is written"),
    ];
    for (host, needle) in cases {
        let text =
            format!("{ROUTE_HEAD}    match:\n      hosts: [ok.com, {host}]\n    action: pass\n");
        one(&text, "4:23", needle);
        let p = &problems(&text)[0];
        assert!(
            p.contains("routes[0].match.hosts[1]: bad host pattern"),
            "{p}"
        );
    }
}

#[test]
fn bad_prefixes_methods_and_clients() {
    one(
        &format!("{ROUTE_HEAD}    match:\n      hosts: [a.com]\n      path_prefixes: [v2]\n    action: pass\n"),
        "5:23",
        "path prefix `v2` must start with `/`",
    );
    one(
        &format!("{ROUTE_HEAD}    match:\n      hosts: [a.com]\n      methods: [GET, \"P OST\"]\n    action: pass\n"),
        "5:22",
        "routes[0].match.methods[1]: `P OST` is not an HTTP method",
    );
    one(
        &format!(
            "{ROUTE_HEAD}    match:\n      hosts: [a.com]\n      methods: []\n    action: pass\n"
        ),
        "5:16",
        "empty list; omit the key to match all methods",
    );
    one(
        &format!("{ROUTE_HEAD}    match: {{ hosts: [a.com] }}\n    clients: [10.0.0.0/8, 10.0.0.0/33]\n    action: pass\n"),
        "4:27",
        "routes[0].clients[1]: `10.0.0.0/33` is not a CIDR",
    );
    one(
        &format!(
            "{ROUTE_HEAD}    match: {{ hosts: [a.com] }}\n    clients: []\n    action: pass\n"
        ),
        "4:14",
        "omit the key to match any client",
    );
}

#[test]
fn bad_upstreams() {
    for (u, needle) in [
        (
            "api.example.com:443",
            "is not supported: use `http://` or `https://`",
        ),
        ("ftp://a.com", "scheme `ftp`"),
        ("https://a.com/v2", "no path"),
        ("https://a.com/?q=1", "query"),
        ("https://user:pw@a.com", "user info"),
        ("https://", "not a URL"),
    ] {
        one(
            &format!("{ROUTE_HEAD}    match: {{ hosts: [a.com] }}\n    action: pass\n    upstream: \"{u}\"\n"),
            "5:15",
            needle,
        );
    }
    one(
        &format!("{ROUTE_HEAD}    match: {{ hosts: [a.com] }}\n    action: pass\n    upstream: http://a.com\n    upstream_ca_file: /ca.pem\n"),
        "6:5",
        "only an https `upstream` uses `upstream_ca_file`",
    );
}

#[test]
fn bad_header_and_prefix() {
    let base = format!("{CRED}routes:\n  - name: r\n    match: {{ hosts: [a.com] }}\n    action: inject\n    credential: billing\n");
    one(
        &format!("{base}    header: \"X Token\"\n"),
        "11:13",
        "routes[0].header: `X Token` is not a valid header name",
    );
    one(
        &format!("{base}    header: Host\n"),
        "11:13",
        "header `Host` cannot carry a token",
    );
    one(
        &format!("{base}    prefix: \"Bearer\\r\\n\"\n"),
        "11:13",
        "control characters",
    );
}

#[test]
fn bad_names() {
    one(
        "routes:\n  - name: \"two words\"\n    match: { hosts: [a.com] }\n    action: pass\n",
        "2:11",
        "cannot contain whitespace",
    );
}

// ---------------------------------------------------------------- many problems at once

#[test]
fn every_semantic_problem_is_collected_in_file_order() {
    let text = "\
listen:
  proxy: nowhere
threads: 0
credentials:
  billing:
    token_url: http://idp.example.com/token
    client_id: billing-egress
    client_secret: ${NOPE}
routes:
  - name: a
    match: { hosts: [\"a.*.com\"] }
    action: inject
  - name: a
    match: { hosts: [b.com] }
    clients: [nonsense]
    action: pass
    credential: billing
    upstream: https://b.com/x
";
    let ps = problems(text);
    let at: Vec<&str> = ps
        .iter()
        .map(|p| p.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        at,
        ["2:10", "3:10", "6:16", "8:20", "11:22", "12:5", "13:11", "15:15", "17:5", "18:15"],
        "{ps:#?}"
    );
}

// ---------------------------------------------------------------- load()

#[test]
fn unreadable_file_is_one_problem_naming_it() {
    let path = Path::new("/definitely/not/here/tollgate.yaml");
    let ConfigErrors(ps) = load(path, &env).unwrap_err();
    assert_eq!(ps.len(), 1);
    assert_eq!((ps[0].line, ps[0].column), (1, 1));
    assert_eq!(ps[0].file, "/definitely/not/here/tollgate.yaml");
    assert!(ps[0].message.contains("/definitely/not/here/tollgate.yaml"));
    let shown = ConfigErrors(ps).to_string();
    assert!(shown.starts_with("/definitely/not/here/tollgate.yaml:1:1: cannot read config file"));
}

#[test]
fn display_is_file_line_col_message() {
    let e = load_str("conf/t.yaml", "threads: 0\nlisten: { proxy: x }\n", &env).unwrap_err();
    let lines: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("conf/t.yaml:1:10: threads: "),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("conf/t.yaml:2:18: listen.proxy: "),
        "{lines:?}"
    );
}

#[test]
fn process_env_reads_the_environment() {
    // PATH is set in any test environment; a variable with this name is not.
    assert!(ProcessEnv.var("PATH").is_some());
    assert!(ProcessEnv.var("TOLLGATE_RULES_SURELY_UNSET_VAR").is_none());
}

/// STYLE habit 6: shipped example configs are validated in CI.
#[test]
fn shipped_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let env = |k: &str| Some(format!("example-{k}"));
            if let Err(e) = load(&path, &env) {
                panic!("{} is not a valid config:\n{e}", path.display());
            }
        }
    }
}

/// The example in the configuration reference stays valid.
#[test]
fn configuration_reference_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        return;
    };
    let start = doc.rfind("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = doc[start..].find("```").expect("closing fence");
    let env = |k: &str| (k == "IDP_HOST").then(|| "idp.example.com".to_owned());
    let c = load_str("configuration.md", &doc[start..start + len], &env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.routes.len(), 4);
    assert_eq!(c.credentials.len(), 2);
}

#[test]
fn drain_timeout_defaults_to_ten_seconds_and_is_validated() {
    assert_eq!(ok("").drain_timeout, std::time::Duration::from_secs(10));
    assert_eq!(
        ok("drain_timeout: 1m 30s\n").drain_timeout,
        std::time::Duration::from_secs(90)
    );
    assert_eq!(
        ok("drain_timeout: 0s\n").drain_timeout,
        std::time::Duration::ZERO
    );
    for bad in ["drain_timeout: soon\n", "drain_timeout: 2h\n"] {
        let errs = tollgate_rules::load_str("t.yaml", bad, &|_: &str| None)
            .expect_err("invalid drain_timeout");
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert_eq!((errs.0[0].line, errs.0[0].column), (1, 16), "{errs}");
        assert!(
            errs.0[0].message.contains("drain_timeout")
                || errs.0[0].message.contains("duration")
                || errs.0[0].message.contains("at most"),
            "{errs}"
        );
    }
}

#[test]
fn timeouts_and_replay_buffer() {
    let c = load_str(
        "t.yaml",
        "timeouts:\n  connect: 2s\n  request_head: 3s\n  tunnel_idle: 1h\nreplay_buffer: 1MiB\nroutes:\n  - name: r\n    match: { hosts: [a.test] }\n    action: pass\n    timeouts: { read: 5s, upstream_idle: 1s }\n",
        &|_: &str| None,
    )
    .unwrap();
    assert_eq!(c.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.timeouts.request_head, Duration::from_secs(3));
    assert_eq!(c.timeouts.tunnel_idle, Duration::from_secs(3600));
    assert_eq!(c.timeouts.read, Duration::from_secs(60), "default kept");
    assert_eq!(c.replay_buffer, 1 << 20);
    assert_eq!(c.routes[0].timeouts.read, Some(Duration::from_secs(5)));
    assert_eq!(c.routes[0].timeouts.connect, None);
    let d = load_str("t.yaml", "", &|_: &str| None).unwrap();
    assert_eq!(d.timeouts, Timeouts::default());
    assert_eq!(d.replay_buffer, 64 * 1024);

    let e = load_str(
        "t.yaml",
        "timeouts:\n  connect: 0s\n  read: forever\nreplay_buffer: 9MiB\nroutes:\n  - name: r\n    match: { hosts: [a.test] }\n    action: pass\n    timeouts: { idle: 5s }\n",
        &|_: &str| None,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "t.yaml:2:12: timeouts.connect: must be longer than 0s",
        "t.yaml:3:9: timeouts.read:",
        "t.yaml:4:16: replay_buffer: must be at most",
        "t.yaml:9:17: routes[0].timeouts.idle: `idle` is set only in the top-level",
    ] {
        assert!(e.contains(want), "want {want:?} in:\n{e}");
    }
}

// ------------------------------------------------------------------ callers

#[test]
fn callers_section_parses_with_defaults() {
    let c = ok("callers:
  jwt:
    issuer: https://kubernetes.default.svc.cluster.local
    audiences: [tollgate, tollgate]
    jwks_file: /etc/tollgate/jwks.json
  basic:
    htpasswd_file: /etc/tollgate/callers.htpasswd
routes:
  - name: r
    match: { hosts: [a.test] }
    callers: [\"system:serviceaccount:billing:*\", legacy-batch, legacy-batch, \"*\"]
    action: pass
");
    let callers = c.callers.expect("callers");
    assert!(!callers.required);
    let jwt = callers.jwt.expect("jwt");
    assert_eq!(jwt.issuer, "https://kubernetes.default.svc.cluster.local");
    assert_eq!(jwt.audiences, ["tollgate"]);
    assert_eq!(jwt.keys, JwksSource::File("/etc/tollgate/jwks.json".into()));
    assert_eq!(jwt.identity_claim, DEFAULT_IDENTITY_CLAIM);
    assert_eq!(
        callers.basic.expect("basic").htpasswd_file,
        PathBuf::from("/etc/tollgate/callers.htpasswd")
    );
    assert_eq!(
        c.routes[0].callers,
        [
            CallerPattern::Prefix("system:serviceaccount:billing:".into()),
            CallerPattern::Exact("legacy-batch".into()),
            CallerPattern::Prefix(String::new()),
        ]
    );
    let c = ok("callers:
  required: true
  jwt:
    issuer: i
    audiences: [a]
    jwks_url: http://127.0.0.1:8080/jwks
    identity_claim: email
");
    let callers = c.callers.expect("callers");
    assert!(callers.required);
    let jwt = callers.jwt.expect("jwt");
    assert_eq!(jwt.identity_claim, "email");
    assert!(matches!(jwt.keys, JwksSource::Url(u) if u.as_str() == "http://127.0.0.1:8080/jwks"));
    assert!(ok("").callers.is_none());
}

#[test]
fn callers_problems_are_located() {
    one(
        "callers:\n  required: true\n",
        "1:1",
        "needs `jwt` or `basic`",
    );
    one(
        "callers:\n  jwt:\n    audiences: [a]\n    jwks_file: f\n",
        "2:3",
        "missing `issuer`",
    );
    one(
        "callers:\n  jwt:\n    issuer: i\n    jwks_file: f\n",
        "2:3",
        "missing `audiences`",
    );
    one(
        "callers:\n  jwt:\n    issuer: i\n    audiences: []\n    jwks_file: f\n",
        "4:16",
        "at least one audience",
    );
    one(
        "callers:\n  jwt:\n    issuer: i\n    audiences: [a]\n",
        "2:3",
        "missing `jwks_file` or `jwks_url`",
    );
    one(
        "callers:\n  jwt:\n    issuer: i\n    audiences: [a]\n    jwks_file: f\n    jwks_url: https://x/j\n",
        "6:5",
        "not both",
    );
    one(
        "callers:\n  jwt:\n    issuer: i\n    audiences: [a]\n    jwks_url: http://idp.test/jwks\n",
        "5:15",
        "jwks_url",
    );
    one(
        "callers:\n  jwt:\n    issuer: i\n    audiences: [a]\n    jwks_url: http://idp.test/jwks\n",
        "5:15",
        "must use https",
    );
    one("callers:\n  basic: {}\n", "2:3", "missing `htpasswd_file`");
    // A misspelt key and the key it hides: both reported.
    assert_eq!(
        problems("callers:\n  basic:\n    htpasswd: f\n"),
        [
            "2:3: callers.basic: missing `htpasswd_file`",
            "3:5: callers.basic: unknown field `htpasswd`, expected `htpasswd_file`",
        ]
    );
}

#[test]
fn unknown_callers_keys_are_reported_with_the_rest() {
    let ps = problems(
        "callers:\n  jwt:\n    issuer: i\n    audiences: [a]\n    jwks_file: f\n    jwks_fiel: g\n  basic: { htpasswd_file: h }\n  requierd: true\nthreads: 0\n",
    );
    let want = [
        "6:5: callers.jwt: unknown field `jwks_fiel`, expected one of `issuer`, `audiences`",
        "8:3: callers: unknown field `requierd`, expected one of `jwt`, `basic`, `required`",
        "9:10: threads: must be at least 1",
    ];
    assert_eq!(ps.len(), want.len(), "{ps:#?}");
    for (p, w) in ps.iter().zip(want) {
        assert!(p.starts_with(w), "expected {w:?}, got {p:?}");
    }
}

#[test]
fn route_callers_problems_are_located() {
    let base = "callers:\n  basic: { htpasswd_file: f }\nroutes:\n  - name: r\n    match: { hosts: [a.test] }\n    action: pass\n";
    one(
        &format!("{base}    callers: []\n"),
        "7:14",
        "omit the key to match any caller",
    );
    one(
        &format!("{base}    callers: [\"a*b\"]\n"),
        "7:15",
        "`*` only at its end",
    );
    one(
        &format!("{base}    callers: [\"a b\"]\n"),
        "7:15",
        "whitespace",
    );
    one(
        "routes:\n  - name: r\n    match: { hosts: [a.test] }\n    action: pass\n    callers: [a]\n",
        "5:5",
        "no `callers:` section",
    );
}

// ------------------------------------------------------------------ token_store

#[test]
fn token_store_as_documented() {
    let c = ok("token_store:
  redis:
    url: redis://redis.platform.svc:6379/2
    username: tollgate
    password_file: /var/run/secrets/redis/password
    key_prefix: \"tg:prod:\"
    timeout: 250ms
  encryption_key_files: [/keys/new, /keys/old]
  lock_timeout: 3s
");
    let ts = c.token_store.expect("token_store");
    assert_eq!(
        ts.redis,
        RedisStore {
            tls: false,
            host: "redis.platform.svc".into(),
            port: 6379,
            db: 2,
            username: Some("tollgate".into()),
            password_file: Some(PathBuf::from("/var/run/secrets/redis/password")),
            key_prefix: "tg:prod:".into(),
            timeout: std::time::Duration::from_millis(250),
        }
    );
    assert_eq!(
        ts.encryption_key_files,
        vec![PathBuf::from("/keys/new"), PathBuf::from("/keys/old")]
    );
    assert_eq!(ts.lock_timeout, std::time::Duration::from_secs(3));
    assert_eq!(ts.redis.display_url(), "redis://redis.platform.svc:6379/2");
}

#[test]
fn token_store_defaults() {
    assert_eq!(ok("").token_store, None);
    let ts = ok("token_store:
  redis: { url: \"rediss://[::1]\" }
  encryption_key_files: [k]
")
    .token_store
    .expect("token_store");
    assert!(ts.redis.tls);
    assert_eq!(ts.redis.port, DEFAULT_REDIS_PORT);
    assert_eq!(ts.redis.db, 0);
    assert_eq!(ts.redis.username, None);
    assert_eq!(ts.redis.password_file, None);
    assert_eq!(ts.redis.key_prefix, DEFAULT_KEY_PREFIX);
    assert_eq!(ts.redis.timeout, DEFAULT_REDIS_TIMEOUT);
    assert_eq!(ts.lock_timeout, DEFAULT_LOCK_TIMEOUT);
    assert_eq!(ts.redis.display_url(), "rediss://[::1]:6379/0");
}

#[test]
fn token_store_problems_have_positions() {
    one(
        "token_store:\n  encryption_key_files: [k]\n",
        "1:1",
        "missing `redis`",
    );
    one(
        "token_store:\n  redis: { url: \"redis://h\" }\n",
        "1:1",
        "missing `encryption_key_files`",
    );
    one(
        "token_store:\n  redis: { url: \"redis://h\" }\n  encryption_key_files: []\n",
        "3:25",
        "empty list",
    );
    one(
        "token_store:\n  redis:\n    url: redis://:hunter2@h\n  encryption_key_files: [k]\n",
        "3:10",
        "password_file",
    );
    let ps = problems(
        "token_store:\n  redis:\n    url: redis://:hunter2@h\n  encryption_key_files: [k]\n",
    );
    assert!(!ps.iter().any(|p| p.contains("hunter2")), "{ps:?}");
    one(
        "token_store:\n  redis:\n    url: memcached://h\n  encryption_key_files: [k]\n",
        "3:10",
        "redis:// or rediss://",
    );
    one(
        "token_store:\n  redis: { url: \"redis://h\" }\n  encryption_key_files: [a, b, a]\n",
        "3:32",
        "already listed",
    );
    one(
        "token_store:\n  redis: { url: \"redis://h\" }\n  encryption_key_files: [k]\n  lock_timeout: 10ms\n",
        "4:17",
        "between 100ms and 5m",
    );
    one(
        "token_store:\n  redis: { url: \"redis://h\", timeout: soon }\n  encryption_key_files: [k]\n",
        "2:39",
        "not a duration",
    );
    one(
        "token_store:\n  redis: { url: \"redis://h\", key_prefix: \"a b\" }\n  encryption_key_files: [k]\n",
        "2:42",
        "whitespace",
    );
    one(
        "token_store:\n  redis: { url: \"redis://h\", pasword_file: x }\n  encryption_key_files: [k]\n",
        "2:30",
        "pasword_file",
    );
    // Several problems are all reported.
    let ps = problems(
        "token_store:\n  redis: { url: \"ftp://h\" }\n  encryption_key_files: []\n  lock_timeout: x\n",
    );
    assert_eq!(ps.len(), 3, "{ps:#?}");
}
