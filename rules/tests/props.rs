//! Property tests: the indexed router agrees with a brute-force reference; wildcards never
//! match their bare domain; `load_str` never panics and its problems are well-formed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use ipnet::IpNet;
use proptest::prelude::*;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::IpAddr;
use tollgate_rules::*;

// ---------------------------------------------------------------- generators

const LABELS: &[&str] = &["a", "b"];
const PORTS: &[u16] = &[80, 443, 8443];
/// Requests' ports with their schemes: half at the scheme's default port.
const PORTS_AND_SCHEMES: &[(u16, Scheme)] = &[
    (80, Scheme::Http),
    (443, Scheme::Https),
    (443, Scheme::Http),
    (8443, Scheme::Https),
    (80, Scheme::Https),
    (8443, Scheme::Http),
];
const PREFIXES: &[&str] = &["/", "/a", "/a/", "/a/b", "/ab", "/b/"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "CONNECT"];
const CLIENT_NETS: &[&str] = &["10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16", "fd00::/8"];
const CLIENTS: &[&str] = &[
    "10.1.2.3",
    "10.2.0.1",
    "192.168.5.5",
    "8.8.8.8",
    "fd00::5",
    "::ffff:10.1.0.9",
];
const PATHS: &[&str] = &["/", "/a", "/a/", "/ab", "/a/b", "/a/bc", "/b", "/b/c", ""];
/// Route `callers` entries: exact names, nested prefixes, and `*` (anyone authenticated).
const CALLER_PATTERNS: &[&str] = &["billing:api", "billing:*", "b*", "*", "ops"];
/// Callers a request may carry (or none).
const CALLERS: &[&str] = &["billing:api", "billing:batch", "ops", "bob", "zed"];

fn caller_pattern(s: &str) -> CallerPattern {
    match s.strip_suffix('*') {
        Some(prefix) => CallerPattern::Prefix(prefix.to_owned()),
        None => CallerPattern::Exact(s.to_owned()),
    }
}

/// A domain of 1..=3 labels from a tiny alphabet, so that collisions are frequent.
fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LABELS), 1..=3).prop_map(|ls| ls.join("."))
}

fn host_pattern() -> impl Strategy<Value = HostPattern> {
    (
        any::<bool>(),
        domain(),
        prop_oneof![
            2 => Just(PortMatch::Default),
            2 => Just(PortMatch::Any),
            1 => prop::sample::select(PORTS).prop_map(PortMatch::Exact),
        ],
        0..8u8,
    )
        .prop_map(|(wild, d, port, ip)| {
            let kind = if ip == 0 {
                HostKind::Exact("10.0.0.1".to_owned())
            } else if wild {
                HostKind::Wildcard(format!(".{d}"))
            } else {
                HostKind::Exact(d)
            };
            HostPattern { kind, port }
        })
}

fn subset(items: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(items, 0..=max)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn route(i: usize) -> impl Strategy<Value = Route> {
    (
        prop::collection::vec(host_pattern(), 1..=3),
        subset(PREFIXES, 2),
        subset(METHODS, 3),
        subset(CLIENT_NETS, 2),
        prop_oneof![Just(Vec::new()), subset(CALLER_PATTERNS, 2)],
    )
        .prop_map(
            move |(hosts, path_prefixes, methods, clients, callers)| Route {
                name: format!("r{i}"),
                matcher: RouteMatch {
                    hosts,
                    path_prefixes,
                    methods,
                },
                clients: clients
                    .iter()
                    .map(|c| c.parse::<IpNet>().unwrap_or_else(|e| panic!("{c}: {e}")))
                    .collect(),
                callers: callers.iter().map(|c| caller_pattern(c)).collect(),
                action: Action::Pass,
                upstream: None,
                upstream_ca_file: None,
                timeouts: RouteTimeouts::default(),
                connect: Connect::Tunnel,
                connect_at: None,
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    (0..16usize, any::<bool>(), 0..16u8)
        .prop_flat_map(|(n, pass, required)| {
            let routes: Vec<_> = (0..n).map(route).collect();
            // Copies of some routes that differ only in `callers`, appended.
            let twins = prop::collection::vec(
                (any::<prop::sample::Index>(), subset(CALLER_PATTERNS, 2)),
                0..=3,
            );
            (routes, twins, Just(pass), Just(required))
        })
        .prop_map(|(mut routes, twins, pass, required)| {
            let n = routes.len();
            if n > 0 {
                for (k, (at, callers)) in twins.into_iter().enumerate() {
                    let mut twin = routes[at.index(n)].clone();
                    twin.name = format!("twin{k}");
                    twin.callers = callers.iter().map(|c| caller_pattern(c)).collect();
                    routes.push(twin);
                }
            }
            (routes, pass, required)
        })
        .prop_map(|(routes, pass, required)| Config {
            listen: Listen {
                proxy: DEFAULT_PROXY_ADDR,
                admin: DEFAULT_ADMIN_ADDR,
            },
            threads: None,
            drain_timeout: std::time::Duration::from_secs(10),
            default_action: if pass {
                DefaultAction::Pass
            } else {
                DefaultAction::Deny
            },
            allow_private_networks: false,
            path_normalization: PathNormalization::Normalize,
            timeouts: Timeouts::default(),
            replay_buffer: DEFAULT_REPLAY_BUFFER,
            credentials: BTreeMap::new(),
            routes,
            // The matcher reads only `required`; the schemes are the proxy's business.
            callers: (required > 0).then(|| Callers {
                jwt: None,
                basic: Some(BasicCallers {
                    htpasswd_file: "callers.htpasswd".into(),
                }),
                required: required == 1,
            }),
            interception: None,
            token_store: None,
        })
}

#[derive(Debug, Clone)]
struct Facts {
    host: String,
    port: u16,
    scheme: Scheme,
    path: &'static str,
    method: &'static str,
    client: Option<IpAddr>,
    caller: Option<&'static str>,
}

impl Facts {
    fn request(&self) -> RequestFacts<'_> {
        RequestFacts {
            host: &self.host,
            port: self.port,
            scheme: self.scheme,
            path: self.path,
            method: self.method,
            client: self.client,
            caller: self.caller,
        }
    }
}

fn facts() -> impl Strategy<Value = Facts> {
    facts_with(Vec::new())
}

/// Hosts that `c`'s patterns match (a label before each wildcard suffix), so that
/// requests drawn from them reach the routes often.
fn hosts_of(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for r in &c.routes {
        for h in &r.matcher.hosts {
            out.push(match &h.kind {
                HostKind::Exact(name) => name.clone(),
                HostKind::Wildcard(suffix) => format!("a{suffix}"),
            });
        }
    }
    out
}

/// A config and requests, half of them to hosts its routes name.
fn config_and_facts(n: std::ops::Range<usize>) -> impl Strategy<Value = (Config, Vec<Facts>)> {
    config().prop_flat_map(move |c| {
        let fs = prop::collection::vec(facts_with(hosts_of(&c)), n.clone());
        (Just(c), fs)
    })
}

fn facts_with(near: Vec<String>) -> impl Strategy<Value = Facts> {
    let random = prop_oneof![
        4 => prop::collection::vec(prop::sample::select(LABELS), 1..=3).prop_map(|ls| ls.join(".")),
        1 => Just("10.0.0.1".to_owned()),
        1 => Just("10.0.0.2".to_owned()),
    ];
    let host = if near.is_empty() {
        random.boxed()
    } else {
        prop_oneof![random, prop::sample::select(near)].boxed()
    };
    (
        host,
        prop::sample::select(PORTS_AND_SCHEMES),
        prop::sample::select(PATHS),
        prop::sample::select(METHODS),
        prop::option::of(prop::sample::select(CLIENTS)),
        prop::option::of(prop::sample::select(CALLERS)),
    )
        .prop_map(
            |(host, (port, scheme), path, method, client, caller)| Facts {
                host,
                port,
                scheme,
                path,
                method,
                client: client.map(|c| c.parse().unwrap_or_else(|e| panic!("{c}: {e}"))),
                caller,
            },
        )
}

// ---------------------------------------------------------------- the reference

/// Written from the SPEC and the matcher's documented rules, sharing no code with the
/// router: (exact, wildcard suffix length, port rank (`:*` 0, no port 1, `:N` 2), prefix
/// length, methods rank, caller rank (anyone (0, 0), `prefix*` (1, prefix length), exact
/// name (2, 0)), earlier), greatest wins.
type Rank = (
    bool,
    usize,
    u8,
    usize,
    Option<Reverse<usize>>,
    (u8, usize),
    Reverse<usize>,
);

/// A decision, as the reference states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Route(usize),
    /// 407: `None` when `callers.required` refused before routing.
    AuthRequired(Option<usize>),
    CallerRefused(usize),
    ClientRefused(usize),
    NoRoute,
}

fn host_rank(p: &HostPattern, host: &str, port: u16, scheme: Scheme) -> Option<(bool, usize, u8)> {
    let default = if scheme == Scheme::Https { 443 } else { 80 };
    let port_rank = match p.port {
        PortMatch::Any => 0,
        PortMatch::Default if port == default => 1,
        PortMatch::Exact(pp) if pp == port => 2,
        _ => return None,
    };
    let is_ip = host.parse::<IpAddr>().is_ok();
    match &p.kind {
        HostKind::Exact(h) => (h == host).then_some((true, 0, port_rank)),
        HostKind::Wildcard(suffix) => {
            let ok = !is_ip && host.len() > suffix.len() && host.ends_with(suffix.as_str());
            ok.then_some((false, suffix.len(), port_rank))
        }
    }
}

fn prefix_len(prefixes: &[String], path: &str) -> Option<usize> {
    let path = if path.is_empty() { "/" } else { path };
    if prefixes.is_empty() {
        return Some(0);
    }
    prefixes
        .iter()
        .filter(|p| {
            if p.ends_with('/') {
                path.starts_with(p.as_str())
            } else {
                path == p.as_str() || path.starts_with(&format!("{p}/"))
            }
        })
        .map(|p| p.len())
        .max()
}

fn admits(r: &Route, client: Option<IpAddr>) -> bool {
    if r.clients.is_empty() {
        return true;
    }
    let Some(ip) = client else { return false };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    r.clients.iter().any(|n| n.contains(&ip))
}

/// Which refusal slot (0 admitted, 1 caller missing, 2 caller refused, 3 client refused)
/// and the caller rank.
fn admission(r: &Route, f: &Facts) -> (usize, (u8, usize)) {
    if !admits(r, f.client) {
        return (3, (0, 0));
    }
    if r.callers.is_empty() {
        return (0, (0, 0));
    }
    let Some(caller) = f.caller else {
        return (1, (0, 0));
    };
    let mut best = None;
    for p in &r.callers {
        let rank = match p {
            CallerPattern::Exact(n) if n == caller => (2, 0),
            CallerPattern::Prefix(pre) if caller.starts_with(pre.as_str()) => (1, pre.len()),
            _ => continue,
        };
        best = best.max(Some(rank));
    }
    match best {
        Some(rank) => (0, rank),
        None => (2, (0, 0)),
    }
}

fn reference(c: &Config, f: &Facts) -> Outcome {
    if f.caller.is_none() && c.callers.as_ref().is_some_and(|c| c.required) {
        return Outcome::AuthRequired(None);
    }
    let mut best: [Option<(Rank, usize)>; 4] = [None; 4];
    for (i, r) in c.routes.iter().enumerate() {
        let m = &r.matcher;
        if !m.methods.is_empty() && !m.methods.iter().any(|x| x == f.method) {
            continue;
        }
        let Some(plen) = prefix_len(&m.path_prefixes, f.path) else {
            continue;
        };
        let Some(h) = m
            .hosts
            .iter()
            .filter_map(|p| host_rank(p, &f.host, f.port, f.scheme))
            .max()
        else {
            continue;
        };
        let methods = (!m.methods.is_empty()).then_some(Reverse(m.methods.len()));
        let (slot, caller) = admission(r, f);
        let rank: Rank = (h.0, h.1, h.2, plen, methods, caller, Reverse(i));
        let slot = &mut best[slot];
        if slot.as_ref().is_none_or(|(b, _)| rank > *b) {
            *slot = Some((rank, i));
        }
    }
    match best.map(|b| b.map(|(_, i)| i)) {
        [Some(i), ..] => Outcome::Route(i),
        [None, Some(i), ..] => Outcome::AuthRequired(Some(i)),
        [None, None, Some(i), _] => Outcome::CallerRefused(i),
        [None, None, None, Some(i)] => Outcome::ClientRefused(i),
        [None, None, None, None] => Outcome::NoRoute,
    }
}

fn outcome(c: &Config, d: Decision<'_>) -> Outcome {
    let same = |i: usize, r: &Route| assert!(std::ptr::eq(r, &c.routes[i]));
    match d {
        Decision::Route(i, r) => {
            same(i, r);
            Outcome::Route(i)
        }
        Decision::ProxyAuthRequired(found) => {
            if let Some((i, r)) = found {
                same(i, r);
            }
            Outcome::AuthRequired(found.map(|(i, _)| i))
        }
        Decision::CallerNotAllowed(i, r) => {
            same(i, r);
            Outcome::CallerRefused(i)
        }
        Decision::ClientNotAllowed(i, r) => {
            same(i, r);
            Outcome::ClientRefused(i)
        }
        Decision::NoRoute(a) => {
            assert_eq!(a, c.default_action);
            Outcome::NoRoute
        }
    }
}

fn actual(c: &Config, router: &Router, f: &Facts) -> Outcome {
    outcome(c, router.decide(c, &f.request()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn router_agrees_with_brute_force((c, fs) in config_and_facts(1..16)) {
        let router = Router::new(&c);
        for f in &fs {
            prop_assert_eq!(actual(&c, &router, f), reference(&c, f), "facts {:?}", f);
        }
    }

    #[test]
    fn matches_is_consistent_with_decide((c, fs) in config_and_facts(1..2)) {
        let router = Router::new(&c);
        let f = &fs[0];
        let all = router.matches(&c, &f.request());
        for w in all.windows(2) {
            prop_assert!(w[0].specificity > w[1].specificity);
        }
        let first = |a: Admission| all.iter().find(|m| m.admission == a).map(|m| m.index);
        let expected = if f.caller.is_none() && c.callers.as_ref().is_some_and(|c| c.required) {
            Outcome::AuthRequired(None)
        } else if let Some(i) = first(Admission::Admitted) {
            Outcome::Route(i)
        } else if let Some(i) = first(Admission::CallerMissing) {
            Outcome::AuthRequired(Some(i))
        } else if let Some(i) = first(Admission::CallerRefused) {
            Outcome::CallerRefused(i)
        } else if let Some(i) = first(Admission::ClientRefused) {
            Outcome::ClientRefused(i)
        } else {
            Outcome::NoRoute
        };
        prop_assert_eq!(actual(&c, &router, f), expected);
    }

    #[test]
    fn wildcard_never_matches_its_bare_domain(d in domain(), port in prop::sample::select(PORTS)) {
        let text = format!("routes:\n  - name: w\n    match: {{ hosts: [\"*.{d}:*\"] }}\n    action: pass\n");
        let c = load_str("t", &text, &|_: &str| None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let router = Router::new(&c);
        let bare = RequestFacts { host: &d, port, scheme: Scheme::Http, path: "/", method: "GET", client: None, caller: None };
        prop_assert_eq!(router.decide(&c, &bare), Decision::NoRoute(DefaultAction::Deny));
        let sub = format!("q.{d}");
        let below = RequestFacts { host: &sub, ..bare };
        prop_assert!(matches!(router.decide(&c, &below), Decision::Route(0, _)));
    }

    #[test]
    fn load_str_never_panics_on_arbitrary_text(text in ".{0,300}") {
        check_load(&text);
    }

    #[test]
    fn load_str_never_panics_on_yamlish_text(
        parts in prop::collection::vec(prop::sample::select(YAMLISH), 0..60)
    ) {
        check_load(&parts.concat());
    }

    #[test]
    fn load_str_never_panics_on_mutated_configs(at in any::<prop::sample::Index>(), with in prop::sample::select(YAMLISH), cut in any::<bool>()) {
        let base = include_str!("fixtures/spec-example.yaml");
        let mut i = at.index(base.len());
        while !base.is_char_boundary(i) { i -= 1; }
        let end = if cut { (i + with.len()).min(base.len()) } else { i };
        let mut end = end;
        while !base.is_char_boundary(end) { end -= 1; }
        let text = format!("{}{}{}", &base[..i], with, &base[end.max(i)..]);
        check_load(&text);
    }
}

const YAMLISH: &[&str] = &[
    "\n",
    "\r",
    "\r\n",
    "\u{2028}",
    "  ",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "? ",
    "---\n",
    "|\n",
    ">\n",
    "\t",
    "listen:",
    "proxy:",
    "threads:",
    "routes:",
    "credentials:",
    "name:",
    "match:",
    "hosts:",
    "action:",
    "inject",
    "pass",
    "deny",
    "credential:",
    "token_url:",
    "client_id:",
    "client_secret:",
    "${X}",
    "${",
    "$${",
    "*.a.com",
    "a.com:80",
    "https://h/t",
    "http://h",
    "10.0.0.0/8",
    "0",
    "-1",
    "true",
    "~",
    "é",
    "\u{0}",
    "!!str ",
    "<<: ",
    "clients:",
    "path_prefixes:",
    "methods:",
    "upstream:",
    "params:",
    "x",
];

fn check_load(text: &str) {
    let env = |k: &str| (k == "X").then(|| "v".to_owned());
    match load_str("f", text, &env) {
        Ok(c) => {
            // A valid config always builds a router that answers.
            let router = Router::new(&c);
            let f = RequestFacts {
                host: "a.com",
                port: 80,
                scheme: Scheme::Http,
                path: "/",
                method: "GET",
                client: None,
                caller: None,
            };
            let _ = router.decide(&c, &f);
        }
        Err(ConfigErrors(ps)) => {
            assert!(!ps.is_empty());
            // YAML also breaks lines at a lone `\r` (and libyaml at U+0085, U+2028, U+2029).
            let lines = 1 + text
                .chars()
                .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
                .count();
            for p in &ps {
                assert!(p.line >= 1 && p.column >= 1, "{p}");
                assert!(p.line <= lines + 1, "{p} beyond {lines} lines");
            }
            assert!(
                ps.windows(2)
                    .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
                "problems out of order: {ps:?}"
            );
        }
    }
}

/// Guards the generators: the property above is only worth something if random configs
/// and requests produce every kind of outcome often.
#[test]
fn generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut routed, mut refused, mut none, mut wild, mut total) = (0, 0, 0, 0, 0);
    let (mut auth, mut required, mut caller_refused, mut by_caller) = (0, 0, 0, 0);
    for _ in 0..1000 {
        let Ok((c, fs)) = config_and_facts(1..2)
            .new_tree(&mut runner)
            .map(|t| t.current())
        else {
            panic!("generator failed")
        };
        let f = &fs[0];
        total += 1;
        let outcome = reference(&c, f);
        let chosen = match outcome {
            Outcome::Route(i)
            | Outcome::AuthRequired(Some(i))
            | Outcome::CallerRefused(i)
            | Outcome::ClientRefused(i) => Some(i),
            Outcome::AuthRequired(None) | Outcome::NoRoute => None,
        };
        // Chosen through a wildcard (admitted or not): none of its exact patterns match.
        if chosen.is_some_and(|i| {
            !c.routes[i].matcher.hosts.iter().any(|h| {
                matches!(h.kind, HostKind::Exact(_))
                    && host_rank(h, &f.host, f.port, f.scheme).is_some()
            })
        }) {
            wild += 1;
        }
        match outcome {
            Outcome::Route(i) => {
                routed += 1;
                if !c.routes[i].callers.is_empty() {
                    by_caller += 1;
                }
            }
            Outcome::ClientRefused(_) => refused += 1,
            Outcome::AuthRequired(Some(_)) => auth += 1,
            Outcome::AuthRequired(None) => required += 1,
            Outcome::CallerRefused(_) => caller_refused += 1,
            Outcome::NoRoute => none += 1,
        }
    }
    for (what, n) in [
        ("routed", routed),
        ("refused", refused),
        ("none", none),
        ("wildcard", wild),
    ] {
        assert!(n * 20 >= total, "only {n} of {total} {what}");
    }
    // Rarer, since each needs a route listing callers to be the best match (at least
    // 5 of 1000: the property tests above draw ~7,000 requests).
    for (what, n) in [
        ("auth required by a route", auth),
        ("auth required by `required`", required),
        ("caller refused", caller_refused),
        ("routed to a route listing callers", by_caller),
    ] {
        assert!(n * 200 >= total, "only {n} of {total} {what}");
    }
}

// ------------------------------------------------- paths: what is routed is what is sent

/// Path pieces that upstreams normalise: dot segments (plain and encoded), repeated
/// slashes, encoded unreserved characters, and ordinary names near the test prefixes.
const PATH_PIECES: &[&str] = &[
    "", ".", "..", "%2e", "%2E%2e", ".%2e", "a", "b", "ab", "%61", "%62", "v2", "%7e", "~",
    "x%20y", "%c3%a9", "..x", ".a",
];

fn raw_path() -> impl Strategy<Value = String> {
    (
        0..3usize,
        prop::collection::vec(prop::sample::select(PATH_PIECES), 0..7),
    )
        .prop_map(|(extra, pieces)| format!("{}/{}", "/".repeat(extra), pieces.join("/")))
}

/// An upstream's view of a path, written from RFC 3986 and nginx's documented behaviour,
/// sharing no code with `tollgate_rules::path`: decode percent-encoded unreserved
/// characters (§6.2.2.2) and upper-case the other escapes (§6.2.2.1), merge repeated
/// slashes (nginx `merge_slashes`), then `remove_dot_segments` (§5.2.4) step by step.
fn upstream_view(path: &str) -> String {
    let b = path.as_bytes();
    let mut decoded = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let v = u8::from_str_radix(&path[i + 1..i + 3], 16).unwrap();
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                decoded.push(v as char);
            } else {
                decoded.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else {
            decoded.push(b[i] as char);
            i += 1;
        }
    }
    let mut merged = String::new();
    for c in decoded.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    // RFC 3986 §5.2.4, with its rule letters.
    let mut input = merged;
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input
            .strip_prefix("../")
            .or_else(|| input.strip_prefix("./"))
        {
            input = rest.to_owned(); // A
        } else if input.starts_with("/./") {
            input = input[2..].to_owned(); // B
        } else if input == "/." {
            input = "/".to_owned(); // B
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." {
                "/".to_owned()
            } else {
                input[3..].to_owned()
            }; // C
            match output.rfind('/') {
                Some(j) => output.truncate(j),
                None => output.clear(),
            }
        } else if input == "." || input == ".." {
            input.clear(); // D
        } else {
            // E: the first segment, with its leading slash, moves to the output.
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |j| j + start);
            output.push_str(&input[..end]);
            input = input[end..].to_owned();
        }
    }
    if output.is_empty() {
        output.push('/');
    }
    output
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The path tollgate routes on is the path it forwards, and it is already what an
    /// RFC 3986 / nginx-style upstream would make of the client's raw path: so the route
    /// chosen for the request is the route chosen for the path the upstream serves.
    #[test]
    fn routed_path_is_the_path_the_upstream_serves(c in config(), p in raw_path(), f in facts()) {
        let ours = path::normalize(&p, PathNormalization::Normalize)
            .map_err(|e| TestCaseError::fail(format!("{p:?}: {e}")))?;
        let theirs = upstream_view(&p);
        prop_assert_eq!(ours.as_ref(), theirs.as_str(), "raw {:?}", p);
        // What we send is a fixed point: the upstream changes nothing more.
        prop_assert_eq!(upstream_view(&ours), ours.to_string());
        let again = path::normalize(&ours, PathNormalization::Normalize).unwrap();
        prop_assert_eq!(again.as_ref(), ours.as_ref());
        prop_assert!(path::normalize(&ours, PathNormalization::Reject).is_ok());
        let router = Router::new(&c);
        let at = |path: &str| {
            let facts = RequestFacts { path, ..f.request() };
            outcome(&c, router.decide(&c, &facts))
        };
        prop_assert_eq!(at(&ours), at(&upstream_view(&ours)));
    }

    /// `reject` refuses exactly the paths that `normalize` would change.
    #[test]
    fn reject_refuses_exactly_what_normalize_changes(p in raw_path()) {
        let normal = path::normalize(&p, PathNormalization::Normalize).unwrap();
        let strict = path::normalize(&p, PathNormalization::Reject);
        if normal.as_ref() == p {
            prop_assert!(strict.is_ok());
        } else {
            prop_assert_eq!(strict, Err(path::PathError::NotNormal));
        }
    }

    /// Arbitrary bytes never panic the normaliser, and whatever it accepts is a fixed point.
    #[test]
    fn normalize_never_panics(p in "/[ -~]{0,40}") {
        if let Ok(n) = path::normalize(&p, PathNormalization::Normalize) {
            let again = path::normalize(&n, PathNormalization::Normalize).unwrap();
            prop_assert_eq!(again.as_ref(), n.as_ref());
        }
    }
}
