//! `Router::decide` on arbitrary request facts against a small fixed config: it must
//! never panic, and must agree with `Router::matches` (the best admitted candidate, else
//! the best refused one, else the default action).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use tollgate_rules::{load_str, Config, Decision, RequestFacts, Router};

const CONFIG: &str = r#"
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
"#;

/// Host, port, path, method, and an IPv4 or (if no IPv4) IPv6 client.
type Input<'a> = (
    &'a str,
    u16,
    &'a str,
    &'a str,
    Option<[u8; 4]>,
    Option<[u8; 16]>,
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
    let (host, port, path, method, v4, v6) = input;
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
    };
    let decision = router.decide(config, &facts);
    let all = router.matches(config, &facts);
    let expected = match all.iter().find(|m| m.client_allowed) {
        Some(m) => Decision::Route(m.index, m.route),
        None => match all.first() {
            Some(m) => Decision::ClientNotAllowed(m.index, m.route),
            None => Decision::NoRoute(config.default_action),
        },
    };
    assert_eq!(decision, expected);
});
