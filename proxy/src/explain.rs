//! `tollgate route URL`: explain what the proxy would do with a request, without sending it.

use crate::cli::EX_CONFIG;
use crate::commands;
use crate::forward::{self, Form, Target};
use crate::proxy::decide;
use crate::upstream::{self, Dial, Dns};
use std::net::IpAddr;
use std::path::Path;
use tollgate_rules::{Action, RequestFacts, Scheme};

/// Parse `http(s)://host[:port]/path` or, for CONNECT, `host:port`.
fn parse(url: &str, method: &str) -> Result<(Target, String), String> {
    if method.eq_ignore_ascii_case("CONNECT") && !url.contains("://") {
        let (host, port) = forward::split_authority(url, None).map_err(|e| e.message)?;
        let port = port.ok_or("CONNECT needs host:port")?;
        let t = Target {
            form: Form::Connect,
            scheme: Scheme::Https,
            host,
            port,
        };
        return Ok((t, "/".to_owned()));
    }
    let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = match u.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        s => return Err(format!("unsupported scheme {s:?}: use http or https")),
    };
    let host = match u.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string().to_ascii_lowercase(),
        None => return Err(format!("{url:?} has no host")),
    };
    let port = u.port().unwrap_or(scheme.default_port());
    let form = if method.eq_ignore_ascii_case("CONNECT") {
        Form::Connect
    } else {
        Form::Absolute
    };
    Ok((
        Target {
            form,
            scheme,
            host,
            port,
        },
        u.path().to_owned(),
    ))
}

pub fn route(path: &Path, url: &str, method: &str, client: Option<IpAddr>) -> i32 {
    let Some(config) = commands::load(path) else {
        return EX_CONFIG;
    };
    let Some(state) = commands::prepare(path, config) else {
        return EX_CONFIG;
    };
    let method = method.to_ascii_uppercase();
    let (target, req_path) = match parse(url, &method) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tollgate route: {e}");
            return 2;
        }
    };
    let facts = RequestFacts {
        host: &target.host,
        port: target.port,
        scheme: target.scheme,
        path: if target.form == Form::Connect {
            "/"
        } else {
            &req_path
        },
        method: &method,
        client,
    };
    println!(
        "request:  {method} {url}{}",
        client.map(|c| format!(" from {c}")).unwrap_or_default()
    );
    let idx = match decide(&state, &target, &facts) {
        Ok(i) => i,
        Err(e) => {
            println!(
                "route:    {}",
                e.route.as_deref().unwrap_or("(none matches)")
            );
            println!("decision: denied, {} {}", e.code.status(), e.code.as_str());
            println!("reason:   {}", e.message);
            return 0;
        }
    };
    let route = idx.and_then(|i| state.config.routes.get(i));
    match route {
        Some(r) => println!("route:    {} (routes[{}])", r.name, idx.unwrap_or_default()),
        None => println!("route:    (none matches; default_action: pass lets it through)"),
    }
    let action = route.map(|r| &r.action).unwrap_or(&Action::Pass);
    match (action, target.form) {
        (Action::Inject(_), Form::Connect) => {
            println!("action:   inject");
            println!("decision: denied, 403 connect_not_allowed: a token cannot be added inside a CONNECT (TLS) tunnel; send http:// to the proxy and let an https upstream originate TLS");
            return 0;
        }
        (Action::Inject(i), _) => {
            let cred = state.config.credentials.get(&i.credential);
            println!(
                "action:   inject credential {:?} as `{}: {}<token>`",
                i.credential, i.header, i.prefix
            );
            if let Some(c) = cred {
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
        (Action::Pass, Form::Connect) => {
            println!("action:   pass (CONNECT tunnel, bytes untouched)")
        }
        (Action::Pass, _) => println!("action:   pass (forwarded without a credential)"),
        (Action::Deny, _) => println!("action:   deny"),
    }
    let dial = match route.and_then(|r| r.upstream.as_ref()) {
        Some(u) => Dial {
            scheme: u.scheme,
            host: u.host.clone(),
            port: u.port,
        },
        None => Dial {
            scheme: if target.form == Form::Connect {
                Scheme::Http
            } else {
                target.scheme
            },
            host: target.host.clone(),
            port: target.port,
        },
    };
    let tls = if target.form == Form::Connect {
        "tunnel".to_owned()
    } else if dial.scheme == Scheme::Https {
        format!(
            "TLS, SNI {}, trusting system roots{}",
            dial.host,
            route
                .and_then(|r| r.upstream_ca_file.as_ref())
                .map(|p| format!(" + {}", p.display()))
                .unwrap_or_default()
        )
    } else {
        "plain HTTP".to_owned()
    };
    let shown_scheme = if target.form == Form::Connect {
        "tcp"
    } else {
        dial.scheme.as_str()
    };
    println!(
        "upstream: {shown_scheme}://{} ({tls})",
        forward::join_host_port(&dial.host, dial.port)
    );
    // Resolve as the proxy would, to show the address and the private-address rule.
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
    let name = route.map(|r| r.name.as_str());
    let allow = state.config.allow_private_networks;
    let shown = rt.block_on(async {
        let dns = Dns::system();
        match dns.resolve(&dial.host).await {
            Err(e) => format!("dial:     unknown ({e})"),
            Ok(addrs) => match upstream::choose_addr(&addrs, allow, &dial, name) {
                Ok(a) => format!("dial:     {a}"),
                Err(e) => format!(
                    "dial:     refused, {} {}: {}",
                    e.code.status(),
                    e.code.as_str(),
                    e.message
                ),
            },
        }
    });
    println!("{shown}");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_connect_targets() {
        let (t, p) = parse("http://API.test:8080/v2/x?q", "GET").expect("url");
        assert_eq!(
            (t.host.as_str(), t.port, p.as_str()),
            ("api.test", 8080, "/v2/x")
        );
        let (t, _) = parse("api.test:443", "CONNECT").expect("authority");
        assert_eq!((t.form, t.port), (Form::Connect, 443));
        assert!(parse("ftp://x/", "GET").is_err());
    }
}
