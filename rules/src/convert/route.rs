//! One entry of `routes:` -> [`Route`].

use super::{child, Checker, DEFAULT_HEADER, DEFAULT_PREFIX, DPOP_PREFIX};
use crate::file::{ActionFile, ConnectFile, RouteFile, UpstreamClientCertFile};
use crate::model::{Action, Connect, Credential, Inject, Route, RouteMatch};
use crate::pos::Seg;
use crate::values::{self, shown, shown_url};
use std::collections::{BTreeMap, HashMap, HashSet};

pub(super) fn route(
    c: &mut Checker<'_>,
    base: &[Seg],
    f: RouteFile,
    credentials: &HashSet<String>,
    defs: &BTreeMap<String, Credential>,
    names: &mut HashMap<String, usize>,
    index: usize,
) -> Option<Route> {
    let mut ok = true;
    let p = |k: &str| child(base, k);

    let name = match &f.name {
        Some(raw) => c.parse(&p("name"), raw, |s| {
            values::check_name(s).map(|()| s.to_owned())
        }),
        None => {
            c.node_err(base, "missing `name`");
            None
        }
    };
    if let Some(n) = &name {
        if let Some(first) = names.get(n) {
            c.value_err(
                &p("name"),
                format!(
                    "duplicate route name {} (first used by routes[{first}])",
                    shown(n)
                ),
            );
            ok = false;
        } else {
            names.insert(n.clone(), index);
        }
    }

    let matcher = match &f.matcher {
        None => {
            c.node_err(
                base,
                "missing `match` (a route needs at least `match.hosts`)",
            );
            None
        }
        Some(m) => {
            let mp = p("match");
            let mut mok = true;
            let mut hosts = Vec::new();
            let hp = child(&mp, "hosts");
            match &m.hosts {
                None => {
                    c.node_err(&mp, "missing `hosts` (a route needs at least one host)");
                    mok = false;
                }
                Some(list) if list.is_empty() => {
                    c.value_err(&hp, "a route needs at least one host");
                    mok = false;
                }
                Some(list) => {
                    for (i, raw) in list.iter().enumerate() {
                        let ip = child(&hp, i);
                        match c.parse(&ip, raw, |s| {
                            crate::model::HostPattern::parse(s)
                                .map_err(|e| format!("bad host pattern {}: {e}", shown(s)))
                        }) {
                            Some(h) => {
                                if !hosts.contains(&h) {
                                    hosts.push(h);
                                }
                            }
                            None => mok = false,
                        }
                    }
                }
            }
            let mut path_prefixes: Vec<String> = Vec::new();
            let pp = child(&mp, "path_prefixes");
            if let Some(list) = c.non_empty_list(&pp, &m.path_prefixes, "all paths") {
                for (i, raw) in list.iter().enumerate() {
                    match c.parse(&child(&pp, i), raw, |s| {
                        values::check_path_prefix(s).map(|()| s.to_owned())
                    }) {
                        Some(s) => {
                            if !path_prefixes.contains(&s) {
                                path_prefixes.push(s);
                            }
                        }
                        None => mok = false,
                    }
                }
            } else if m.path_prefixes.is_some() {
                mok = false;
            }
            let mut methods: Vec<String> = Vec::new();
            let mep = child(&mp, "methods");
            if let Some(list) = c.non_empty_list(&mep, &m.methods, "all methods") {
                for (i, raw) in list.iter().enumerate() {
                    match c.parse(&child(&mep, i), raw, values::parse_method) {
                        Some(s) => {
                            if !methods.contains(&s) {
                                methods.push(s);
                            }
                        }
                        None => mok = false,
                    }
                }
            } else if m.methods.is_some() {
                mok = false;
            }
            mok.then_some(RouteMatch {
                hosts,
                path_prefixes,
                methods,
            })
        }
    };

    let mut clients = Vec::new();
    let cp = p("clients");
    if let Some(list) = c.non_empty_list(&cp, &f.clients, "any client") {
        for (i, raw) in list.iter().enumerate() {
            match c.parse(&child(&cp, i), raw, values::parse_client) {
                Some(n) => {
                    if !clients.contains(&n) {
                        clients.push(n);
                    }
                }
                None => ok = false,
            }
        }
    } else if f.clients.is_some() {
        ok = false;
    }

    let callers = super::callers::route_callers(c, base, &f.callers);
    if callers.is_none() {
        ok = false;
    }

    let action = match f.action {
        None => {
            c.node_err(base, "missing `action` (inject, pass or deny)");
            None
        }
        Some(ActionFile::Inject) => inject(c, base, &f, credentials, defs),
        Some(other) => {
            let action_name = if other == ActionFile::Pass {
                "pass"
            } else {
                "deny"
            };
            for (present, key, what) in [
                (f.credential.is_some(), "credential", "a credential"),
                (f.header.is_some(), "header", "`header`"),
                (f.prefix.is_some(), "prefix", "`prefix`"),
                (
                    f.replay_on_401.is_some(),
                    "replay_on_401",
                    "`replay_on_401`",
                ),
                (
                    f.upstream_client_cert.is_some(),
                    "upstream_client_cert",
                    "`upstream_client_cert`",
                ),
            ] {
                if present {
                    c.node_err(
                        &p(key),
                        format!("only `action: inject` routes use {what} (this route's action is {action_name})"),
                    );
                    ok = false;
                }
            }
            if other == ActionFile::Deny {
                for (present, key) in [
                    (f.upstream.is_some(), "upstream"),
                    (f.upstream_ca_file.is_some(), "upstream_ca_file"),
                ] {
                    if present {
                        c.node_err(&p(key), format!("a deny route has no `{key}`"));
                        ok = false;
                    }
                }
            }
            Some(if other == ActionFile::Pass {
                Action::Pass
            } else {
                Action::Deny
            })
        }
    };

    let upstream = match &f.upstream {
        Some(raw) => match c.parse(&p("upstream"), raw, |s| {
            values::parse_upstream(s).map_err(|e| format!("bad upstream {}: {e}", shown_url(s)))
        }) {
            Some(u) => Some(u),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    if f.upstream_client_cert.is_some()
        && upstream
            .as_ref()
            .is_some_and(|u| u.scheme == crate::model::Scheme::Http)
    {
        c.node_err(
            &p("upstream_client_cert"),
            "only an https `upstream` is sent a client certificate",
        );
        ok = false;
    }
    let upstream_ca_file = match &f.upstream_ca_file {
        Some(raw) => match c.file_path(&p("upstream_ca_file"), raw) {
            Some(path) => {
                if upstream
                    .as_ref()
                    .is_some_and(|u| u.scheme == crate::model::Scheme::Http)
                {
                    c.node_err(
                        &p("upstream_ca_file"),
                        "only an https `upstream` uses `upstream_ca_file`",
                    );
                    ok = false;
                }
                Some(path)
            }
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };

    let timeouts = super::timeouts::route(c, base, f.timeouts.as_ref());
    if timeouts.is_none() {
        ok = false;
    }
    let connect = match (f.action, f.connect) {
        (_, None) => Some(default_connect(f.action)),
        (Some(action), Some(written)) => match connect_problem(action, written) {
            None => Some(match written {
                ConnectFile::Tunnel => Connect::Tunnel,
                ConnectFile::Refuse => Connect::Refuse,
                ConnectFile::Intercept => Connect::Intercept,
            }),
            Some(msg) => {
                c.value_err(&p("connect"), msg);
                ok = false;
                None
            }
        },
        // A missing `action` is reported already.
        (None, Some(_)) => None,
    };
    let connect_at = f.connect.map(|_| c.location(&p("connect")));

    let r = Route {
        timeouts: timeouts.unwrap_or_default(),
        name: name?,
        matcher: matcher?,
        clients,
        callers: callers.unwrap_or_default(),
        action: action?,
        upstream,
        upstream_ca_file,
        connect: connect?,
        connect_at,
    };
    ok.then_some(r)
}

/// `connect:` when the route does not say: pass routes tunnel, the others refuse.
fn default_connect(action: Option<ActionFile>) -> Connect {
    match action {
        Some(ActionFile::Pass) => Connect::Tunnel,
        _ => Connect::Refuse,
    }
}

/// Why `connect: written` does not fit a route with `action`, if it does not.
fn connect_problem(action: ActionFile, written: ConnectFile) -> Option<&'static str> {
    match (action, written) {
        (ActionFile::Pass, ConnectFile::Tunnel | ConnectFile::Refuse)
        | (ActionFile::Inject, ConnectFile::Refuse | ConnectFile::Intercept) => None,
        (ActionFile::Pass, ConnectFile::Intercept) => Some(
            "`intercept` needs `action: inject`: pass routes are never intercepted, their tunnels stay byte-for-byte (use `tunnel` or `refuse`)",
        ),
        (ActionFile::Inject, ConnectFile::Tunnel) => Some(
            "an inject route cannot `tunnel`: a token cannot be added to bytes tollgate does not read (use `intercept`, or `refuse`, the default)",
        ),
        (ActionFile::Deny, _) => {
            Some("a deny route has no `connect`: it refuses CONNECT like every other request")
        }
    }
}

/// `action: inject`: the credential (defined under `credentials`), its header and prefix
/// (fixed for a DPoP-bound credential), `replay_on_401` and `upstream_client_cert`.
fn inject(
    c: &mut Checker<'_>,
    base: &[Seg],
    f: &RouteFile,
    credentials: &HashSet<String>,
    defs: &BTreeMap<String, Credential>,
) -> Option<Action> {
    let p = |k: &str| child(base, k);
    let credential = match &f.credential {
        None => {
            c.node_err(&p("action"), "`action: inject` needs a `credential`");
            None
        }
        Some(raw) => {
            let cpath = p("credential");
            match c.expand(&cpath, raw) {
                Some(n) if credentials.contains(&n) => Some(n),
                Some(n) => {
                    let known = if credentials.is_empty() {
                        "no credentials are defined".to_owned()
                    } else {
                        let mut k: Vec<&str> = credentials.iter().map(String::as_str).collect();
                        k.sort_unstable();
                        format!("defined: {}", k.join(", "))
                    };
                    c.value_err(
                        &cpath,
                        format!("{} is not defined under `credentials` ({known})", shown(&n)),
                    );
                    None
                }
                None => None,
            }
        }
    };
    let def = credential.as_ref().and_then(|n| defs.get(n));
    let oauth = def.and_then(Credential::oauth2);
    let dpop = oauth.is_some_and(|o| o.dpop.is_some());
    let header = match &f.header {
        Some(raw) => c.parse(&p("header"), raw, |s| {
            values::check_header_name(s)?;
            if dpop && !s.eq_ignore_ascii_case(DEFAULT_HEADER) {
                return Err(format!(
                    "credential {} is DPoP-bound: its token goes in `Authorization` \
                     (RFC 9449 §7.1); remove `header`",
                    shown(def.map_or("", |d| d.name.as_str()))
                ));
            }
            Ok(s.to_owned())
        }),
        None => Some(DEFAULT_HEADER.to_owned()),
    };
    let prefix = match &f.prefix {
        Some(raw) => c.parse(&p("prefix"), raw, |s| {
            values::check_header_value_part(s)?;
            if dpop && s != DPOP_PREFIX {
                return Err(format!(
                    "credential {} is DPoP-bound: the token is sent as `DPoP <token>` \
                     (RFC 9449 §7.1); remove `prefix`",
                    shown(def.map_or("", |d| d.name.as_str()))
                ));
            }
            Ok(s.to_owned())
        }),
        None if dpop => Some(DPOP_PREFIX.to_owned()),
        None => Some(DEFAULT_PREFIX.to_owned()),
    };
    let upstream_client_cert = match f.upstream_client_cert {
        None => Some(false),
        Some(UpstreamClientCertFile::Credential) => match (def, oauth) {
            // An undefined or invalid credential is reported at `credential`.
            (None, _) => Some(true),
            (Some(_), Some(o)) if o.tls_client().is_some() => Some(true),
            (Some(d), _) => {
                c.value_err(
                    &p("upstream_client_cert"),
                    format!(
                        "credential {} has no client certificate: \
                         `upstream_client_cert: credential` needs its `auth_method` to \
                         be tls_client_auth or self_signed_tls_client_auth",
                        shown(&d.name)
                    ),
                );
                None
            }
        },
    };
    match (credential, header, prefix, upstream_client_cert) {
        (Some(credential), Some(header), Some(prefix), Some(upstream_client_cert)) => {
            Some(Action::Inject(Inject {
                credential,
                header,
                prefix,
                replay_on_401: f.replay_on_401.unwrap_or(true),
                upstream_client_cert,
                dpop,
            }))
        }
        _ => None,
    }
}
