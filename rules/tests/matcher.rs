//! `Router::decide`: the specificity order, wildcards, path prefixes, methods, clients,
//! callers.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::IpAddr;
use tollgate_rules::*;

fn config(routes_yaml: &str) -> Config {
    config_with("", routes_yaml)
}

/// `top` is extra top-level YAML (e.g. `callers.required`).
fn config_with(top: &str, routes_yaml: &str) -> Config {
    let text = format!(
        "callers:\n  basic: {{ htpasswd_file: c.htpasswd }}\n{top}credentials:\n  c:\n    token_url: https://idp/t\n    client_id: a\n    client_secret: b\nroutes:\n{routes_yaml}"
    );
    load_str("t.yaml", &text, &|_: &str| None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One route per line: `name | hosts | extra yaml keys for match | route keys`.
fn routes(spec: &[(&str, &str, &str, &str)]) -> Config {
    let mut y = String::new();
    for (name, hosts, matches, rest) in spec {
        y.push_str(&format!(
            "  - name: {name}\n    match: {{ hosts: [{hosts}] {matches} }}\n    action: pass\n{rest}"
        ));
    }
    config(&y)
}

struct Req<'a> {
    host: &'a str,
    port: u16,
    path: &'a str,
    method: &'a str,
    client: Option<&'a str>,
    scheme: Scheme,
    caller: Option<&'a str>,
}

fn get(host: &str) -> Req<'_> {
    Req {
        host,
        port: 443,
        path: "/",
        method: "GET",
        client: None,
        scheme: Scheme::Https,
        caller: None,
    }
}

impl<'a> Req<'a> {
    fn port(mut self, p: u16) -> Self {
        self.port = p;
        self
    }
    fn scheme(mut self, s: Scheme) -> Self {
        self.scheme = s;
        self
    }
    fn path(mut self, p: &'a str) -> Self {
        self.path = p;
        self
    }
    fn method(mut self, m: &'a str) -> Self {
        self.method = m;
        self
    }
    fn client(mut self, c: &'a str) -> Self {
        self.client = Some(c);
        self
    }
    fn caller(mut self, c: &'a str) -> Self {
        self.caller = Some(c);
        self
    }
}

/// The decision as a string: the route's name, `!name` for ClientNotAllowed, `407 name`
/// (`407` alone for `callers.required`) for ProxyAuthRequired, `403 name` for
/// CallerNotAllowed, or `default:deny` / `default:pass`.
fn decide(c: &Config, r: Req<'_>) -> String {
    let router = Router::new(c);
    let client: Option<IpAddr> = r.client.map(|s| s.parse().unwrap());
    let facts = RequestFacts {
        host: r.host,
        port: r.port,
        scheme: r.scheme,
        path: r.path,
        method: r.method,
        client,
        caller: r.caller,
    };
    match router.decide(c, &facts) {
        Decision::Route(i, route) => {
            assert_eq!(&c.routes[i], route);
            route.name.clone()
        }
        Decision::ClientNotAllowed(i, route) => {
            assert_eq!(&c.routes[i], route);
            format!("!{}", route.name)
        }
        Decision::ProxyAuthRequired(None) => "407".into(),
        Decision::ProxyAuthRequired(Some((i, route))) => {
            assert_eq!(&c.routes[i], route);
            format!("407 {}", route.name)
        }
        Decision::CallerNotAllowed(i, route) => {
            assert_eq!(&c.routes[i], route);
            format!("403 {}", route.name)
        }
        Decision::NoRoute(DefaultAction::Deny) => "default:deny".into(),
        Decision::NoRoute(DefaultAction::Pass) => "default:pass".into(),
    }
}

#[test]
fn exact_host_beats_wildcard_regardless_of_order_and_path() {
    let c = routes(&[
        (
            "wild",
            "\"*.example.com\"",
            ", path_prefixes: [/v2/deep/]",
            "",
        ),
        ("exact", "api.example.com", "", ""),
    ]);
    assert_eq!(
        decide(&c, get("api.example.com").path("/v2/deep/x")),
        "exact"
    );
    assert_eq!(
        decide(&c, get("www.example.com").path("/v2/deep/x")),
        "wild"
    );
    assert_eq!(
        decide(&c, get("www.example.com").path("/v3")),
        "default:deny"
    );
}

#[test]
fn longer_wildcard_suffix_wins() {
    let c = routes(&[
        ("short", "\"*.example.com\"", "", ""),
        ("long", "\"*.eu.example.com\"", "", ""),
    ]);
    assert_eq!(decide(&c, get("a.eu.example.com")), "long");
    assert_eq!(decide(&c, get("a.b.eu.example.com")), "long");
    assert_eq!(decide(&c, get("eu.example.com")), "short");
    assert_eq!(decide(&c, get("a.us.example.com")), "short");
}

#[test]
fn wildcard_matches_any_depth_but_never_the_bare_domain() {
    let c = routes(&[("w", "\"*.example.com\"", "", "")]);
    assert_eq!(decide(&c, get("a.example.com")), "w");
    assert_eq!(decide(&c, get("a.b.c.example.com")), "w");
    assert_eq!(decide(&c, get("example.com")), "default:deny");
    assert_eq!(decide(&c, get("badexample.com")), "default:deny");
    assert_eq!(decide(&c, get(".example.com")), "default:deny");
    assert_eq!(decide(&c, get("example.com.evil")), "default:deny");
}

#[test]
fn port_specific_pattern_beats_portless_and_must_match() {
    let c = routes(&[
        ("any", "\"api.example.com:*\"", "", ""),
        ("default", "api.example.com", "", ""),
        ("tls", "\"api.example.com:443\"", "", ""),
        ("alt", "\"api.example.com:8443\"", "", ""),
    ]);
    assert_eq!(decide(&c, get("api.example.com").port(443)), "tls");
    assert_eq!(decide(&c, get("api.example.com").port(8443)), "alt");
    let http = |h| get(h).scheme(Scheme::Http);
    assert_eq!(decide(&c, http("api.example.com").port(80)), "default");
    assert_eq!(decide(&c, get("api.example.com").port(80)), "any");
    assert_eq!(decide(&c, get("api.example.com").port(22)), "any");
    // Host name specificity ranks before the port.
    let c = routes(&[
        ("wport", "\"*.example.com:443\"", "", ""),
        ("exact", "api.example.com", "", ""),
    ]);
    assert_eq!(decide(&c, get("api.example.com").port(443)), "exact");
    let c = routes(&[("only8443", "\"api.example.com:8443\"", "", "")]);
    assert_eq!(decide(&c, get("api.example.com").port(443)), "default:deny");
}

#[test]
fn a_pattern_without_a_port_takes_only_the_schemes_default_port() {
    let c = routes(&[("api", "api.example.com", "", "")]);
    assert_eq!(decide(&c, get("api.example.com").port(443)), "api");
    let http = |h| get(h).scheme(Scheme::Http);
    assert_eq!(decide(&c, http("api.example.com").port(80)), "api");
    // An https request (or CONNECT) to port 80, an http one to 443, and any other port
    // need the port written out (or `:*`).
    assert_eq!(decide(&c, get("api.example.com").port(80)), "default:deny");
    assert_eq!(
        decide(&c, http("api.example.com").port(443)),
        "default:deny"
    );
    assert_eq!(
        decide(&c, get("api.example.com").port(22).method("CONNECT")),
        "default:deny"
    );
    let c = routes(&[
        ("w", "\"*.example.com\"", "", ""),
        ("any", "\"*.example.com:*\"", "", ""),
    ]);
    assert_eq!(decide(&c, get("a.example.com").port(443)), "w");
    assert_eq!(decide(&c, get("a.example.com").port(6379)), "any");
}

#[test]
fn longer_path_prefix_wins() {
    let c = routes(&[
        ("all", "h", "", ""),
        ("v2", "h", ", path_prefixes: [/v2]", ""),
        ("v2inv", "h", ", path_prefixes: [/x, /v2/invoices]", ""),
    ]);
    assert_eq!(decide(&c, get("h").path("/v2/invoices/7")), "v2inv");
    assert_eq!(decide(&c, get("h").path("/v2/other")), "v2");
    assert_eq!(decide(&c, get("h").path("/v3")), "all");
    assert_eq!(decide(&c, get("h").path("/x")), "v2inv");
}

#[test]
fn prefix_boundaries() {
    let c = routes(&[
        ("seg", "h", ", path_prefixes: [/v2]", ""),
        ("slash", "h", ", path_prefixes: [/api/]", ""),
    ]);
    assert_eq!(decide(&c, get("h").path("/v2")), "seg");
    assert_eq!(decide(&c, get("h").path("/v2/")), "seg");
    assert_eq!(decide(&c, get("h").path("/v2/a")), "seg");
    assert_eq!(decide(&c, get("h").path("/v2x")), "default:deny");
    assert_eq!(decide(&c, get("h").path("/v2?x=1")), "seg");
    assert_eq!(decide(&c, get("h").path("/api/")), "slash");
    assert_eq!(decide(&c, get("h").path("/api/x")), "slash");
    assert_eq!(decide(&c, get("h").path("/api")), "default:deny");
    assert!(tollgate_rules::matcher::prefix_matches("/", "/anything"));
}

#[test]
fn fewer_methods_win_and_none_listed_is_least_specific() {
    let c = routes(&[
        ("all", "h", "", ""),
        ("three", "h", ", methods: [GET, POST, PUT]", ""),
        ("get", "h", ", methods: [GET]", ""),
    ]);
    assert_eq!(decide(&c, get("h")), "get");
    assert_eq!(decide(&c, get("h").method("POST")), "three");
    assert_eq!(decide(&c, get("h").method("DELETE")), "all");
    assert_eq!(decide(&c, get("h").method("post")), "three");
}

#[test]
fn path_outranks_methods() {
    let c = routes(&[
        ("get", "h", ", methods: [GET]", ""),
        ("path", "h", ", path_prefixes: [/a]", ""),
    ]);
    assert_eq!(decide(&c, get("h").path("/a/b")), "path");
}

#[test]
fn ties_go_to_the_earlier_route() {
    let c = routes(&[("first", "h, other", "", ""), ("second", "h", "", "")]);
    assert_eq!(decide(&c, get("h")), "first");
    let c = routes(&[
        ("first", "\"*.x.com\"", ", methods: [GET, PUT]", ""),
        ("second", "\"*.x.com\"", ", methods: [PUT, GET]", ""),
    ]);
    assert_eq!(decide(&c, get("a.x.com")), "first");
}

#[test]
fn connect_requests() {
    let c = routes(&[
        ("tunnel", "\"db.example.com:5432\"", "", ""),
        ("api", "\"*.example.com\"", ", path_prefixes: [/v1]", ""),
        ("getonly", "\"get.example.com\"", ", methods: [GET]", ""),
        ("connect", "\"c.example.com\"", ", methods: [CONNECT]", ""),
    ]);
    let connect = |h| get(h).method("CONNECT").path("/");
    assert_eq!(decide(&c, connect("db.example.com").port(5432)), "tunnel");
    assert_eq!(decide(&c, connect("db.example.com")), "default:deny");
    assert_eq!(decide(&c, connect("x.example.com")), "default:deny");
    assert_eq!(decide(&c, connect("get.example.com")), "default:deny");
    assert_eq!(decide(&c, connect("c.example.com")), "connect");
}

#[test]
fn clients_filter_and_client_not_allowed() {
    let c = routes(&[
        ("open", "h", "", ""),
        (
            "inner",
            "h",
            ", path_prefixes: [/admin]",
            "    clients: [10.0.0.0/8]\n",
        ),
        (
            "vpn",
            "h",
            ", path_prefixes: [/admin/x]",
            "    clients: [192.168.0.0/16, \"fd00::/8\"]\n",
        ),
    ]);
    // The most specific route that admits the client wins.
    assert_eq!(
        decide(&c, get("h").path("/admin/x").client("192.168.1.1")),
        "vpn"
    );
    assert_eq!(
        decide(&c, get("h").path("/admin/x").client("fd00::1")),
        "vpn"
    );
    assert_eq!(
        decide(&c, get("h").path("/admin/x").client("10.1.1.1")),
        "inner"
    );
    // ... skipping those that do not, down to a less specific one that does.
    assert_eq!(
        decide(&c, get("h").path("/admin/x").client("8.8.8.8")),
        "open"
    );
    // IPv4-mapped IPv6 clients count as IPv4.
    assert_eq!(
        decide(&c, get("h").path("/admin").client("::ffff:10.9.9.9")),
        "inner"
    );

    let c = routes(&[
        (
            "inner",
            "h",
            ", path_prefixes: [/admin]",
            "    clients: [10.0.0.0/8]\n",
        ),
        (
            "vpn",
            "h",
            ", path_prefixes: [/admin/x]",
            "    clients: [192.168.0.0/16]\n",
        ),
        ("other", "g", "", "    clients: [172.16.0.0/12]\n"),
    ]);
    // Matched, but nobody admits: the most specific matching route is named.
    assert_eq!(
        decide(&c, get("h").path("/admin/x").client("8.8.8.8")),
        "!vpn"
    );
    assert_eq!(
        decide(&c, get("h").path("/admin").client("8.8.8.8")),
        "!inner"
    );
    // An unknown client is admitted only by routes without `clients`.
    assert_eq!(decide(&c, get("h").path("/admin")), "!inner");
    // Nothing matched at all.
    assert_eq!(
        decide(&c, get("h").path("/public").client("10.0.0.1")),
        "default:deny"
    );
}

#[test]
fn no_route_uses_default_action() {
    let c = load_str("t", "default_action: pass\n", &|_: &str| None).unwrap();
    assert_eq!(decide(&c, get("anything")), "default:pass");
    let c = load_str("t", "", &|_: &str| None).unwrap();
    assert_eq!(decide(&c, get("anything")), "default:deny");
}

#[test]
fn host_normalisation() {
    let c = routes(&[
        ("v6", "\"[2001:db8::1]\"", "", ""),
        ("v4", "10.0.0.1", "", ""),
        ("name", "api.example.com", "", ""),
        ("wild", "\"*.0.0.1\"", "", ""),
    ]);
    assert_eq!(decide(&c, get("2001:db8:0:0::1")), "v6");
    assert_eq!(decide(&c, get("[2001:db8::1]")), "v6");
    assert_eq!(decide(&c, get("10.0.0.1")), "v4");
    assert_eq!(decide(&c, get("API.Example.COM")), "name");
    assert_eq!(decide(&c, get("api.example.com.")), "name");
    // Wildcards never match IP literals.
    assert_eq!(decide(&c, get("10.0.0.2")), "default:deny");
}

#[test]
fn matches_lists_candidates_best_first() {
    let c = routes(&[
        ("wild", "\"*.example.com\"", "", ""),
        (
            "exact",
            "api.example.com",
            "",
            "    clients: [10.0.0.0/8]\n",
        ),
        ("nope", "other.example.com", "", ""),
    ]);
    let router = Router::new(&c);
    let facts = RequestFacts {
        host: "api.example.com",
        port: 443,
        scheme: Scheme::Https,
        path: "/",
        method: "GET",
        client: Some("8.8.8.8".parse().unwrap()),
        caller: None,
    };
    let m = router.matches(&c, &facts);
    let names: Vec<(&str, bool)> = m
        .iter()
        .map(|m| (m.route.name.as_str(), m.admitted()))
        .collect();
    assert_eq!(names, [("exact", false), ("wild", true)]);
    assert!(m[0].specificity > m[1].specificity);
    assert_eq!(decide(&c, get("api.example.com").client("8.8.8.8")), "wild");
}

#[test]
fn empty_router_and_mismatched_config_do_not_panic() {
    let empty = load_str("t", "", &|_: &str| None).unwrap();
    let c = routes(&[("a", "h", "", "")]);
    let router = Router::new(&c);
    let facts = RequestFacts {
        host: "h",
        port: 80,
        scheme: Scheme::Http,
        path: "",
        method: "GET",
        client: None,
        caller: None,
    };
    // Built from `c`, asked with `empty`: no route index is valid there.
    assert_eq!(
        router.decide(&empty, &facts),
        Decision::NoRoute(DefaultAction::Deny)
    );
    assert!(matches!(router.decide(&c, &facts), Decision::Route(0, _)));
}

// ------------------------------------------------------------------ callers

/// Four routes for one host that differ only in `callers`.
fn by_caller() -> Config {
    routes(&[
        ("anyone", "api.test", "", ""),
        (
            "all-sa",
            "api.test",
            "",
            "    callers: [\"system:serviceaccount:*\"]\n",
        ),
        (
            "billing",
            "api.test",
            "",
            "    callers: [\"system:serviceaccount:billing:*\"]\n",
        ),
        (
            "billing-api",
            "api.test",
            "",
            "    callers: [system:serviceaccount:billing:api]\n",
        ),
    ])
}

#[test]
fn routes_that_differ_only_in_callers_are_chosen_by_caller() {
    let c = by_caller();
    let at = |caller| decide(&c, get("api.test").caller(caller));
    // Exact name over any pattern; a longer pattern over a shorter; any pattern over anyone.
    assert_eq!(at("system:serviceaccount:billing:api"), "billing-api");
    assert_eq!(at("system:serviceaccount:billing:batch"), "billing");
    assert_eq!(at("system:serviceaccount:ops:deploy"), "all-sa");
    assert_eq!(at("legacy-batch"), "anyone");
    assert_eq!(decide(&c, get("api.test")), "anyone");
    // File order does not matter: the same routes reversed choose the same.
    let mut rev = c.clone();
    rev.routes.reverse();
    let at = |caller| decide(&rev, get("api.test").caller(caller));
    assert_eq!(at("system:serviceaccount:billing:api"), "billing-api");
    assert_eq!(at("system:serviceaccount:billing:batch"), "billing");
}

#[test]
fn star_alone_admits_any_authenticated_caller_and_ranks_above_anyone() {
    let c = routes(&[
        ("anyone", "api.test", "", ""),
        ("authenticated", "api.test", "", "    callers: [\"*\"]\n"),
    ]);
    assert_eq!(decide(&c, get("api.test").caller("x")), "authenticated");
    assert_eq!(decide(&c, get("api.test")), "anyone");
}

#[test]
fn the_request_shape_ranks_above_the_caller() {
    // A deny for a path or a method holds whoever asks.
    let c = routes(&[
        ("admin-deny", "api.test", ", path_prefixes: [/admin/]", ""),
        ("delete-deny", "api.test", ", methods: [DELETE]", ""),
        ("ops", "api.test", "", "    callers: [ops]\n"),
    ]);
    let ops = |r: Req<'_>| decide(&c, r.caller("ops"));
    assert_eq!(ops(get("api.test").path("/admin/x")), "admin-deny");
    assert_eq!(ops(get("api.test").method("DELETE")), "delete-deny");
    assert_eq!(ops(get("api.test")), "ops");
    // And a more specific host wins over a caller match on a wildcard.
    let c = routes(&[
        ("wild-ops", "\"*.test\"", "", "    callers: [ops]\n"),
        ("exact", "api.test", "", ""),
    ]);
    assert_eq!(decide(&c, get("api.test").caller("ops")), "exact");
}

#[test]
fn no_caller_where_one_is_needed_is_407_and_an_unlisted_caller_403() {
    let c = routes(&[("billing", "api.test", "", "    callers: [\"billing:*\"]\n")]);
    assert_eq!(decide(&c, get("api.test")), "407 billing");
    assert_eq!(decide(&c, get("api.test").caller("ops")), "403 billing");
    assert_eq!(decide(&c, get("api.test").caller("billing:api")), "billing");
    // Other hosts are not affected.
    assert_eq!(decide(&c, get("other.test")), "default:deny");
}

#[test]
fn refusal_precedence_407_then_caller_then_client() {
    // `clients` are checked first: a route that refuses the address refuses any caller.
    let c = routes(&[(
        "inside",
        "api.test",
        "",
        "    clients: [10.0.0.0/8]\n    callers: [ops]\n",
    )]);
    assert_eq!(decide(&c, get("api.test").client("8.8.8.8")), "!inside");
    assert_eq!(
        decide(&c, get("api.test").client("8.8.8.8").caller("ops")),
        "!inside"
    );
    assert_eq!(decide(&c, get("api.test").client("10.1.1.1")), "407 inside");
    // A route that would admit the caller once authenticated beats a client refusal,
    // even a more specific one; an unlisted caller's refusal beats it too.
    let c = routes(&[
        (
            "exact-inside",
            "api.test",
            "",
            "    clients: [10.0.0.0/8]\n",
        ),
        ("wild-ops", "\"*.test\"", "", "    callers: [ops]\n"),
    ]);
    let outside = || get("api.test").client("8.8.8.8");
    assert_eq!(decide(&c, outside()), "407 wild-ops");
    assert_eq!(decide(&c, outside().caller("bob")), "403 wild-ops");
    assert_eq!(decide(&c, outside().caller("ops")), "wild-ops");
    // Of several routes needing a caller, the most specific is named.
    let c = routes(&[
        ("wild", "\"*.test\"", "", "    callers: [a]\n"),
        ("exact", "api.test", "", "    callers: [b]\n"),
    ]);
    assert_eq!(decide(&c, get("api.test")), "407 exact");
    assert_eq!(decide(&c, get("api.test").caller("c")), "403 exact");
}

#[test]
fn required_refuses_every_request_without_a_caller_first() {
    let c = config_with(
        "  required: true\n",
        "  - name: open\n    match: { hosts: [api.test] }\n    action: pass\n",
    );
    assert_eq!(decide(&c, get("api.test")), "407");
    assert_eq!(decide(&c, get("nothing.test")), "407");
    assert_eq!(decide(&c, get("api.test").caller("anyone")), "open");
    assert_eq!(
        decide(&c, get("nothing.test").caller("anyone")),
        "default:deny"
    );
}

#[test]
fn matches_reports_each_routes_admission() {
    let c = by_caller();
    let router = Router::new(&c);
    let facts = RequestFacts {
        host: "api.test",
        port: 443,
        scheme: Scheme::Https,
        path: "/",
        method: "GET",
        client: None,
        caller: Some("system:serviceaccount:billing:batch"),
    };
    let m: Vec<(&str, Admission, CallerRank)> = router
        .matches(&c, &facts)
        .iter()
        .map(|m| (m.route.name.as_str(), m.admission, m.specificity.caller))
        .collect();
    assert_eq!(
        m,
        [
            ("billing", Admission::Admitted, CallerRank::Pattern(30)),
            ("all-sa", Admission::Admitted, CallerRank::Pattern(22)),
            ("anyone", Admission::Admitted, CallerRank::Anyone),
            ("billing-api", Admission::CallerRefused, CallerRank::Anyone),
        ]
    );
}
