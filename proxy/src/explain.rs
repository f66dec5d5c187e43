//! `tollgate route URL`: explain what the proxy would do with a request, without sending
//! it. The request is parsed, normalised and planned by the same functions the data path
//! calls (`target::parse`, `tollgate_rules::path::normalize`, `plan::plan`), so the
//! explanation cannot drift from what the proxy does.

use crate::cli::EX_CONFIG;
use crate::commands;
use crate::errors::ProxyError;
use crate::http1::parse_request;
use crate::metrics::Metrics;
use crate::plan::{plan, Plan, Step};
use crate::route::RouteAction;
use crate::state::State;
use crate::target::{self, join_host_port, Form};
use crate::upstream::{self, Dns, OwnListeners};
use std::net::IpAddr;
use std::path::Path;
use tollgate_rules::{RequestFacts, Scheme};

/// The request line tollgate would receive for `url`: absolute-form, or CONNECT's
/// authority-form.
fn request_line(url: &str, method: &str) -> Result<String, String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains whitespace"));
    }
    if method == "CONNECT" {
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = authority.trim_end_matches('/');
        return Ok(format!("CONNECT {authority} HTTP/1.1\r\n\r\n"));
    }
    if !url.contains("://") {
        return Err(format!(
            "{url:?} is not a URL: give http://host/path (or host:port with --method CONNECT)"
        ));
    }
    Ok(format!("{method} {url} HTTP/1.1\r\n\r\n"))
}

fn refused(e: &ProxyError) {
    println!(
        "route:    {}",
        e.route.as_deref().unwrap_or("(none matches)")
    );
    println!("decision: denied, {} {}", e.code.status(), e.code.as_str());
    println!("reason:   {}", e.message);
}

pub fn route(path: &Path, url: &str, method: &str, client: Option<IpAddr>) -> i32 {
    let Some(config) = commands::load(path) else {
        return EX_CONFIG;
    };
    let Ok(metrics) = Metrics::new() else {
        return 1;
    };
    let Some(state) = commands::prepare(path, config, &metrics) else {
        return EX_CONFIG;
    };
    let method = method.to_ascii_uppercase();
    let line = match request_line(url, &method) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tollgate route: {e}");
            return 2;
        }
    };
    let head = match parse_request(&mut bytes::BytesMut::from(line.as_str())) {
        Ok(Some(h)) => h,
        _ => {
            eprintln!("tollgate route: {url:?} is not a request target tollgate can read");
            return 2;
        }
    };
    println!(
        "request:  {method} {url}{}",
        client.map(|c| format!(" from {c}")).unwrap_or_default()
    );
    let parsed = match target::parse(&head) {
        Ok(p) => p,
        Err(e) => {
            refused(&e);
            return 0;
        }
    };
    let normalized = if parsed.target.form == Form::Connect {
        std::borrow::Cow::Borrowed("/")
    } else {
        match tollgate_rules::path::normalize(parsed.path, state.config.path_normalization) {
            Ok(p) => p,
            Err(e) => {
                println!("decision: refused, 400 bad_request");
                println!("reason:   bad request path: {e}");
                return 0;
            }
        }
    };
    if normalized != parsed.path && parsed.target.form != Form::Connect {
        println!("path:     {} (normalised from {})", normalized, parsed.path);
    }
    let facts = RequestFacts {
        host: &parsed.target.host,
        port: parsed.target.port,
        scheme: parsed.target.scheme,
        path: &normalized,
        method: &method,
        client,
    };
    let plan = match plan(&state, &parsed.target, &facts) {
        Ok(p) => p,
        Err(e) => {
            refused(&e);
            return 0;
        }
    };
    describe(&state, &plan);
    dial(&state, &plan)
}

fn describe(state: &State, plan: &Plan<'_, '_>) {
    let route = plan.route;
    match state.routes.iter().position(|r| std::ptr::eq(r, route)) {
        Some(i) => println!("route:    {} (routes[{i}])", route.name),
        None => println!("route:    (none matches; default_action: pass lets it through)"),
    }
    match (&route.action, plan.step) {
        (RouteAction::Inject(i), _) => {
            println!(
                "action:   inject credential {:?} as `{}: {}<token>`",
                i.credential, i.header, i.prefix
            );
            if let Some(c) = state.config.credentials.get(&i.credential) {
                println!(
                    "token:    client_credentials from {} as client {:?}{}",
                    c.token_url,
                    c.client_id,
                    if c.scopes.is_empty() {
                        String::new()
                    } else {
                        format!(", scope {:?}", c.scopes.join(" "))
                    }
                );
            }
            println!(
                "replay:   {}",
                if i.replay_on_401 {
                    "once after an upstream 401, with a fresh token"
                } else {
                    "off"
                }
            );
        }
        (_, Step::Tunnel) => println!("action:   pass (CONNECT tunnel, bytes untouched)"),
        _ => println!("action:   pass (forwarded without a credential)"),
    }
    let d = &plan.dial;
    let how = if plan.step == Step::Tunnel {
        "tunnel".to_owned()
    } else if d.scheme == Scheme::Https {
        format!(
            "TLS, SNI {}, trusting system roots{}",
            d.host,
            route
                .trust
                .as_ref()
                .map(|_| " + upstream_ca_file")
                .unwrap_or_default()
        )
    } else {
        "plain HTTP".to_owned()
    };
    let scheme = if plan.step == Step::Tunnel {
        "tcp"
    } else {
        d.scheme.as_str()
    };
    println!(
        "upstream: {scheme}://{} ({how})",
        join_host_port(d.host, d.port)
    );
}

/// Resolves as the proxy would, to show the address and the address guards.
fn dial(state: &State, plan: &Plan<'_, '_>) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate route: {e}");
            return 1;
        }
    };
    let own = OwnListeners::new(&[state.config.listen.proxy, state.config.listen.admin]);
    let allow = state.config.allow_private_networks;
    let shown = rt.block_on(async {
        let dns = Dns::system();
        match dns.resolve(plan.dial.host).await {
            Err(e) => format!("dial:     unknown ({e})"),
            Ok((addrs, _)) => {
                match upstream::choose_addr(
                    &addrs,
                    plan.dial.port,
                    allow,
                    &own,
                    plan.dial.host,
                    plan.route.label(),
                ) {
                    Ok(a) => format!("dial:     {a}"),
                    Err(e) => format!(
                        "dial:     refused, {} {}: {}{}",
                        e.code.status(),
                        e.code.as_str(),
                        e.message,
                        e.detail.map(|d| format!(" ({d})")).unwrap_or_default()
                    ),
                }
            }
        }
    });
    println!("{shown}");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_line("http://a.test/x", "GET").expect("line"),
            "GET http://a.test/x HTTP/1.1\r\n\r\n"
        );
        assert_eq!(
            request_line("api.test:443", "CONNECT").expect("line"),
            "CONNECT api.test:443 HTTP/1.1\r\n\r\n"
        );
        assert!(request_line("a.test/x", "GET").is_err());
        assert!(request_line("http://a.test/x y", "GET").is_err());
    }
}
