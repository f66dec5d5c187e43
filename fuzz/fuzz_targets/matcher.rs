//! `Router::decide` on arbitrary request facts against a small fixed config: it must
//! never panic, and must agree with `Router::matches` (the best admitted candidate, else
//! the best refusal in the documented precedence: caller missing, caller not listed,
//! client refused; else the default action).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use tollgate_rules::{load_str, Admission, Config, Decision, RequestFacts, Router};

const CONFIG: &str = r#"
callers:
  basic: { htpasswd_file: callers.htpasswd }
credentials:
  c:
    token_url: https://idp.example.com/token
    client_id: id
    client_secret: secret
routes:
  - name: exact
    match: { hosts: [api.example.com, "api.example.com:8443"], path_prefixes: [/v2/, /v3] }
    action: inject
    credential: c
  - name: wild
    match: { hosts: ["*.example.com"], methods: [GET, POST] }
    clients: [10.0.0.0/8, "fd00::/8"]
    action: pass
  - name: deeper
    match: { hosts: ["*.eu.example.com:443"] }
    action: deny
  - name: ip
    match: { hosts: [10.0.0.1, "[::1]:80"], methods: [CONNECT] }
    action: pass
  - name: same-as-exact
    match: { hosts: [API.example.com], path_prefixes: [/v2/] }
    action: pass
  - name: exact-billing
    match: { hosts: [api.example.com, "api.example.com:8443"], path_prefixes: [/v2/, /v3] }
    callers: ["billing:*", ops]
    action: pass
  - name: wild-anyone-authenticated
    match: { hosts: ["*.example.com"], methods: [GET, POST] }
    callers: ["*"]
    action: pass
"#;

/// Host, port, path, method, an IPv4 or (if no IPv4) IPv6 client, and a caller.
type Input<'a> = (
    &'a str,
    u16,
    &'a str,
    &'a str,
    Option<[u8; 4]>,
    Option<[u8; 16]>,
    Option<&'a str>,
);

fn fixture() -> &'static (Config, Router) {
    static FIXTURE: OnceLock<(Config, Router)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = match load_str("fixture.yaml", CONFIG, &|_: &str| None) {
            Ok(c) => c,
            Err(e) => panic!("the fixture config is invalid:\n{e}"),
        };
        let router = Router::new(&config);
        (config, router)
    })
}

fuzz_target!(|input: Input<'_>| {
    let (host, port, path, method, v4, v6, caller) = input;
    let client = match (v4, v6) {
        (Some(a), _) => Some(IpAddr::V4(Ipv4Addr::from(a))),
        (None, Some(a)) => Some(IpAddr::V6(Ipv6Addr::from(a))),
        (None, None) => None,
    };
    let (config, router) = fixture();
    let facts = RequestFacts {
        host,
        port,
        scheme: if port % 2 == 0 {
            tollgate_rules::Scheme::Http
        } else {
            tollgate_rules::Scheme::Https
        },
        path,
        method,
        client,
        caller,
    };
    let decision = router.decide(config, &facts);
    let all = router.matches(config, &facts);
    let first = |a: Admission| all.iter().find(|m| m.admission == a);
    let expected = if let Some(m) = first(Admission::Admitted) {
        Decision::Route(m.index, m.route)
    } else if let Some(m) = first(Admission::CallerMissing) {
        Decision::ProxyAuthRequired(Some((m.index, m.route)))
    } else if let Some(m) = first(Admission::CallerRefused) {
        Decision::CallerNotAllowed(m.index, m.route)
    } else if let Some(m) = first(Admission::ClientRefused) {
        Decision::ClientNotAllowed(m.index, m.route)
    } else {
        Decision::NoRoute(config.default_action)
    };
    assert_eq!(decision, expected);
});
