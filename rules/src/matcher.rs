//! Route matching: the most specific route wins (STYLE habit 7).
//!
//! # Semantics
//!
//! A route *matches* a request when one of its host patterns matches the host and port,
//! its `methods` (if listed) include the method, and one of its `path_prefixes` (if
//! listed) matches the path. Of the matching routes, the one with the greatest
//! [`Specificity`] wins; the fields of `Specificity`, compared in order, are:
//!
//! 1. exact host over wildcard (`api.example.com` over `*.example.com`);
//! 2. among wildcards, the longer suffix (`*.eu.example.com` over `*.example.com`);
//! 3. a pattern naming the port over one without a port, and that over one with `:*`
//!    (`api:8443` over `api` over `api:*`);
//! 4. the longer matching path prefix (a route without `path_prefixes` counts as 0);
//! 5. methods listed over none listed, then fewer methods over more;
//! 6. who may use it ([`CallerRank`]): a route listing `callers` over one that admits
//!    anyone; an exact caller name over a `prefix*` pattern; a longer prefix over a
//!    shorter one (`system:serviceaccount:billing:*` over `system:serviceaccount:*`);
//! 7. the earlier route in the file.
//!
//! When a route matches through several of its patterns or prefixes, its most specific
//! pattern and its longest matching prefix count.
//!
//! Host patterns: `*.example.com` matches `a.example.com` and `a.b.example.com`, never
//! `example.com`, and never an IP literal. IP patterns match any spelling of the same
//! address (`[::1]` matches `0:0::1`).
//!
//! Path prefixes are compared with the raw path (no percent-decoding or dot-segment
//! removal). A prefix ending in `/` is a plain string prefix: `/v2/` matches `/v2/` and
//! `/v2/x` but not `/v2`. A prefix not ending in `/` matches at a segment boundary
//! (Envoy's `path_separated_prefix`): `/v2` matches `/v2`, `/v2/` and `/v2/x`, never
//! `/v2x`.
//!
//! Methods: CONNECT arrives as method `CONNECT` with path `/`; a route without `methods`
//! matches CONNECT too (and a route with `path_prefixes` other than `/` never does).
//!
//! Why callers come sixth: the first five fields describe the *request* (where it goes,
//! what it does); the caller says only *who asks*. Ranking the caller below them keeps
//! every rule about a destination in force whoever asks: a `deny` for `/admin/` or for
//! `DELETE` still wins over a broader route that lists callers. Routes that describe the
//! same requests and differ only in `callers` are chosen by caller, so two workloads get
//! two credentials for one host.
//!
//! Admission: a matching route *admits* a request when its `clients` (if listed) contain
//! the request's client and its `callers` (if listed) match the request's caller. A
//! route that lists clients while the client is unknown refuses; so does one that lists
//! callers while the request has no caller. `clients` are checked first: a route that
//! refuses the client address refuses whatever the caller. [`Router::decide`] returns
//! the best admitting route; if routes matched but none admitted, the refusal closest to
//! success, with the most specific route of that kind:
//!
//! 1. [`Decision::ProxyAuthRequired`]: the request has no caller and some route would
//!    admit its client once it authenticates (a 407 tells the client that credentials
//!    help; curl `--proxy-anyauth` needs it to send them);
//! 2. [`Decision::CallerNotAllowed`]: the request has a caller, some route admits its
//!    client, but none lists this caller;
//! 3. [`Decision::ClientNotAllowed`]: every matching route refuses the client address
//!    (no credential can change that).
//!
//! If nothing matched, [`Decision::NoRoute`] with `default_action`. With
//! `callers.required: true`, a request without a caller is
//! `Decision::ProxyAuthRequired(None)` before any route is considered.
//!
//! # Cost
//!
//! [`Router::new`] indexes exact host names and IPs in hash maps and wildcards by suffix.
//! [`Router::decide`] does one lookup for the exact host and one per dot in the host
//! (stopping once a wildcard match is found: shorter suffixes cannot beat it), then
//! checks only the routes those lookups return. It allocates nothing.

use crate::model::{CallerPattern, Config, DefaultAction, HostKind, PortMatch, Route, Scheme};
use ipnet::IpNet;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::IpAddr;

/// What the proxy knows about a request when it decides.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Lower-cased host name or IP literal, without brackets or port.
    /// (Upper case, brackets and one trailing dot are tolerated.)
    pub host: &'a str,
    /// Port requested (explicit, or the scheme's default).
    pub port: u16,
    /// The request's scheme (`https` for CONNECT): a host pattern without a port matches
    /// only this scheme's default port.
    pub scheme: Scheme,
    /// Path (no query), e.g. `/v2/invoices`. `"/"` for CONNECT.
    /// (A `?query` is ignored; an empty path counts as `/`.)
    pub path: &'a str,
    /// Upper-case method, e.g. `GET`, `CONNECT`. (Compared case-insensitively.)
    pub method: &'a str,
    /// The downstream peer address, when known.
    pub client: Option<IpAddr>,
    /// The authenticated caller's name, when the request proved one.
    pub caller: Option<&'a str>,
}

/// The outcome of matching one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision<'r> {
    /// The best route that matches and admits the client; `usize` is its index in config order.
    Route(usize, &'r Route),
    /// Some route matched host/path/method but none of the matching routes admits this client;
    /// carries the most specific such route (for its name in the error).
    ClientNotAllowed(usize, &'r Route),
    /// The request has no caller, and either `callers.required` is set (`None`) or the
    /// routes that would admit its client all list callers (the most specific of them).
    ProxyAuthRequired(Option<(usize, &'r Route)>),
    /// The request's caller is not listed by any matching route that admits its client;
    /// carries the most specific such route.
    CallerNotAllowed(usize, &'r Route),
    /// Nothing matched; the config's `default_action` applies.
    NoRoute(DefaultAction),
}

/// How specific a route's match of one request is; greater wins. Field order is the
/// comparison order (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Specificity {
    /// Matched by an exact host (or IP) pattern rather than a wildcard.
    pub exact_host: bool,
    /// For wildcards, the length of the suffix including its dot (`.example.com` = 12);
    /// 0 for exact hosts.
    pub wildcard_suffix_len: usize,
    /// How precisely the matching pattern names the port.
    pub port: PortRank,
    /// Length of the longest matching path prefix; 0 when the route lists none.
    pub path_prefix_len: usize,
    /// `None` when the route lists no methods (matches all: least specific), else
    /// `Reverse(count)` so that fewer methods rank higher.
    pub methods: Option<Reverse<usize>>,
    /// How precisely the route names the request's caller ([`CallerRank::Anyone`] for a
    /// route that does not admit the request).
    pub caller: CallerRank,
    /// `Reverse(route index)`: the earlier route wins a tie.
    pub earlier: Reverse<usize>,
}

/// How a host pattern names its port, least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRank {
    /// `:*`.
    Any,
    /// No port: the scheme's default.
    Default,
    /// `:N`.
    Exact,
}

impl From<PortMatch> for PortRank {
    fn from(p: PortMatch) -> PortRank {
        match p {
            PortMatch::Any => PortRank::Any,
            PortMatch::Default => PortRank::Default,
            PortMatch::Exact(_) => PortRank::Exact,
        }
    }
}

/// How a route's `callers` name the request's caller, least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallerRank {
    /// The route lists no callers: anyone.
    Anyone,
    /// A `prefix*` pattern; the prefix's length in bytes (`*` alone is 0).
    Pattern(usize),
    /// The caller's exact name.
    Exact,
}

/// Whether a matching route admits a request, and if not, why (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Admission {
    /// Its `clients` and `callers` admit the request.
    Admitted,
    /// Its `clients` do not contain the request's client (or the client is unknown).
    ClientRefused,
    /// It lists `callers` and the request has none.
    CallerMissing,
    /// It lists `callers` and none matches the request's caller.
    CallerRefused,
}

/// One route that matches a request, as reported by [`Router::matches`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match<'r> {
    /// Index in config order.
    pub index: usize,
    /// The route.
    pub route: &'r Route,
    /// How specific its match is.
    pub specificity: Specificity,
    /// Whether it admits the request.
    pub admission: Admission,
}

impl Match<'_> {
    /// Does this route admit the request?
    pub fn admitted(&self) -> bool {
        self.admission == Admission::Admitted
    }
}

/// A host pattern's entry in an index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    route: usize,
    port: PortMatch,
}

/// What the router needs of each route, copied so that a lookup never touches `Config`
/// until it has a winner.
#[derive(Debug, Clone)]
struct Compiled {
    /// Longest first, so the first that matches is the longest.
    prefixes: Vec<String>,
    methods: Vec<String>,
    clients: Vec<IpNet>,
    callers: Vec<CallerPattern>,
}

impl Compiled {
    fn admits_client(&self, client: Option<IpAddr>) -> bool {
        if self.clients.is_empty() {
            return true;
        }
        let Some(ip) = client else { return false };
        let ip = ip.to_canonical();
        self.clients.iter().any(|net| net.contains(&ip))
    }

    /// Clients first, then callers; the caller's rank when admitted.
    fn admits(&self, client: Option<IpAddr>, caller: Option<&str>) -> (Admission, CallerRank) {
        if !self.admits_client(client) {
            return (Admission::ClientRefused, CallerRank::Anyone);
        }
        if self.callers.is_empty() {
            return (Admission::Admitted, CallerRank::Anyone);
        }
        let Some(caller) = caller else {
            return (Admission::CallerMissing, CallerRank::Anyone);
        };
        let best = self
            .callers
            .iter()
            .filter(|p| p.matches(caller))
            .map(|p| match p {
                CallerPattern::Exact(_) => CallerRank::Exact,
                CallerPattern::Prefix(prefix) => CallerRank::Pattern(prefix.len()),
            })
            .max();
        match best {
            Some(rank) => (Admission::Admitted, rank),
            None => (Admission::CallerRefused, CallerRank::Anyone),
        }
    }

    /// Path-prefix length if method and path match.
    fn matches(&self, method: &str, path: &str) -> Option<usize> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
        {
            return None;
        }
        if self.prefixes.is_empty() {
            return Some(0);
        }
        self.prefixes
            .iter()
            .find(|p| prefix_matches(p, path))
            .map(|p| p.len())
    }
}

/// See the module docs: a prefix ending in `/` is a plain prefix, any other matches at a
/// segment boundary.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

/// Compiled, immutable matcher built once per config (indexes hosts for fast lookup).
/// Use it only with the `Config` it was built from.
#[derive(Debug, Clone, Default)]
pub struct Router {
    names: HashMap<String, Vec<Entry>>,
    ips: HashMap<IpAddr, Vec<Entry>>,
    /// Keyed by the suffix including its leading dot.
    wildcards: HashMap<String, Vec<Entry>>,
    routes: Vec<Compiled>,
}

/// The best admitted match so far, and the best refused one of each kind.
#[derive(Default)]
struct Best {
    allowed: Option<(Specificity, usize)>,
    client_refused: Option<(Specificity, usize)>,
    caller_missing: Option<(Specificity, usize)>,
    caller_refused: Option<(Specificity, usize)>,
}

impl Best {
    fn offer(slot: &mut Option<(Specificity, usize)>, spec: Specificity, index: usize) {
        if slot.is_none_or(|(s, _)| spec > s) {
            *slot = Some((spec, index));
        }
    }
}

impl Router {
    /// Indexes `config.routes`.
    pub fn new(config: &Config) -> Router {
        let mut router = Router::default();
        for (i, route) in config.routes.iter().enumerate() {
            let mut prefixes = route.matcher.path_prefixes.clone();
            prefixes.sort_by_key(|p| Reverse(p.len()));
            router.routes.push(Compiled {
                prefixes,
                methods: route.matcher.methods.clone(),
                clients: route.clients.iter().map(|n| n.trunc()).collect(),
                callers: route.callers.clone(),
            });
            for pattern in &route.matcher.hosts {
                let entry = Entry {
                    route: i,
                    port: pattern.port,
                };
                match &pattern.kind {
                    HostKind::Exact(h) => match h.parse::<IpAddr>() {
                        Ok(ip) => router.ips.entry(ip.to_canonical()).or_default().push(entry),
                        Err(_) => router.names.entry(h.clone()).or_default().push(entry),
                    },
                    HostKind::Wildcard(suffix) => router
                        .wildcards
                        .entry(suffix.clone())
                        .or_default()
                        .push(entry),
                }
            }
        }
        router
    }

    /// The best route for `req` (see the module docs). `config` must be the one this
    /// router was built from.
    pub fn decide<'r>(&'r self, config: &'r Config, req: &RequestFacts<'_>) -> Decision<'r> {
        if req.caller.is_none() && config.callers.as_ref().is_some_and(|c| c.required) {
            return Decision::ProxyAuthRequired(None);
        }
        let mut best = Best::default();
        self.walk(req, true, |spec, index, admission| {
            let slot = match admission {
                Admission::Admitted => &mut best.allowed,
                Admission::ClientRefused => &mut best.client_refused,
                Admission::CallerMissing => &mut best.caller_missing,
                Admission::CallerRefused => &mut best.caller_refused,
            };
            Best::offer(slot, spec, index);
            admission == Admission::Admitted
        });
        let route = |slot: Option<(Specificity, usize)>| {
            slot.and_then(|(_, i)| config.routes.get(i).map(|r| (i, r)))
        };
        if let Some((i, r)) = route(best.allowed) {
            return Decision::Route(i, r);
        }
        if let Some(found) = route(best.caller_missing) {
            return Decision::ProxyAuthRequired(Some(found));
        }
        if let Some((i, r)) = route(best.caller_refused) {
            return Decision::CallerNotAllowed(i, r);
        }
        if let Some((i, r)) = route(best.client_refused) {
            return Decision::ClientNotAllowed(i, r);
        }
        Decision::NoRoute(config.default_action)
    }

    /// Every route that matches `req`, most specific first, whether or not it admits the
    /// request (for `tollgate route` and tests; allocates). Ignores `callers.required`.
    pub fn matches<'r>(&'r self, config: &'r Config, req: &RequestFacts<'_>) -> Vec<Match<'r>> {
        let mut all: Vec<(Specificity, usize, Admission)> = Vec::new();
        self.walk(req, false, |spec, index, admission| {
            match all.iter_mut().find(|(_, i, _)| *i == index) {
                Some(found) => found.0 = found.0.max(spec),
                None => all.push((spec, index, admission)),
            }
            false
        });
        all.sort_by_key(|m| Reverse(m.0));
        all.into_iter()
            .filter_map(|(specificity, index, admission)| {
                config.routes.get(index).map(|route| Match {
                    index,
                    route,
                    specificity,
                    admission,
                })
            })
            .collect()
    }

    /// Calls `found(specificity, route index, admission)` for each candidate that
    /// matches. With `prune`, stops walking wildcard suffixes once `found` has returned
    /// true (an admitted match), since shorter suffixes rank lower.
    fn walk(
        &self,
        req: &RequestFacts<'_>,
        prune: bool,
        mut found: impl FnMut(Specificity, usize, Admission) -> bool,
    ) {
        let mut buf = [0u8; 256];
        let host = normalize_host(req.host, &mut buf);
        let path = match req.path.split_once('?') {
            Some((p, _)) => p,
            None => req.path,
        };
        let path = if path.is_empty() { "/" } else { path };
        let mut consider = |entries: &[Entry], exact: bool, suffix_len: usize| -> bool {
            let mut any_allowed = false;
            for e in entries {
                if !e.port.admits(req.port, req.scheme.default_port()) {
                    continue;
                }
                let Some(route) = self.routes.get(e.route) else {
                    continue;
                };
                let Some(prefix_len) = route.matches(req.method, path) else {
                    continue;
                };
                let (admission, caller) = route.admits(req.client, req.caller);
                let spec = Specificity {
                    exact_host: exact,
                    wildcard_suffix_len: suffix_len,
                    port: e.port.into(),
                    path_prefix_len: prefix_len,
                    methods: (!route.methods.is_empty()).then_some(Reverse(route.methods.len())),
                    caller,
                    earlier: Reverse(e.route),
                };
                any_allowed |= found(spec, e.route, admission);
            }
            any_allowed
        };

        if let Ok(ip) = host.parse::<IpAddr>() {
            if let Some(entries) = self.ips.get(&ip.to_canonical()) {
                consider(entries, true, 0);
            }
            return;
        }
        let mut done = false;
        if let Some(entries) = self.names.get(host) {
            done |= consider(entries, true, 0);
        }
        if self.wildcards.is_empty() {
            return;
        }
        // Longest suffix first: `a.b.example.com` tries `.b.example.com`, then `.example.com`, then `.com`.
        for (i, b) in host.bytes().enumerate() {
            if prune && done {
                return;
            }
            if b == b'.' && i > 0 {
                let suffix = &host[i..];
                if let Some(entries) = self.wildcards.get(suffix) {
                    done |= consider(entries, false, suffix.len());
                }
            }
        }
    }
}

/// Strips brackets and one trailing dot and lower-cases (into `buf`, only when needed).
fn normalize_host<'a>(host: &'a str, buf: &'a mut [u8; 256]) -> &'a str {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return host;
    }
    let n = host.len();
    if n > buf.len() {
        return host;
    }
    let out = &mut buf[..n];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    // Lower-casing ASCII keeps UTF-8 valid; the fallback is never taken.
    std::str::from_utf8(out).unwrap_or(host)
}
