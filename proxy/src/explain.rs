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

/// What `tollgate route` found, printed as text or JSON (`--format json`).
#[derive(Debug, Default, serde::Serialize)]
pub struct Explanation {
    pub request: String,
    /// `forward`, `tunnel`, `intercept` or `refused`.
    pub decision: &'static str,
    /// The route's name; `null` when none matched (or `default_action: pass` let it through).
    pub route: Option<String>,
    /// Its index in `routes`.
    pub route_index: Option<usize>,
    /// `inject`, `pass` or `deny`.
    pub action: Option<&'static str>,
    /// The path as routed and sent, when normalisation changed it.
    pub normalized_path: Option<String>,
    pub credential: Option<String>,
    /// e.g. `Authorization: Bearer <token>`.
    pub header: Option<String>,
    pub token_url: Option<String>,
    /// How the credential gets its token (grant, endpoint, auth method), or its static file.
    pub token: Option<String>,
    pub replay_on_401: Option<bool>,
    /// `https://host:port`, `http://...`, or `tcp://host:port` for a tunnel.
    pub upstream: Option<String>,
    /// How the upstream is reached (`TLS, SNI ...`, `plain HTTP`, `tunnel`).
    pub transport: Option<String>,
    /// The address it would dial now, when it resolves.
    pub dial: Option<String>,
    /// For a CONNECT to a `connect: intercept` route: what happens inside the tunnel.
    pub connect: Option<String>,
    /// Why it would be refused.
    pub error: Option<Refusal>,
}

#[derive(Debug, serde::Serialize)]
pub struct Refusal {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
}

impl From<&ProxyError> for Refusal {
    fn from(e: &ProxyError) -> Self {
        Refusal {
            code: e.code.as_str(),
            status: e.code.status(),
            message: e.message.clone(),
        }
    }
}

/// Output formats of `tollgate route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Explains a request; exits 0 when it would be forwarded or tunnelled, 1 when refused,
/// 2 for a bad URL, 78 for a bad config.
pub fn route(
    path: &Path,
    url: &str,
    method: &str,
    client: Option<IpAddr>,
    caller: Option<&str>,
    format: Format,
) -> i32 {
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
    let e = match explain(&state, url, &method, client, caller) {
        Ok(e) => e,
        Err(why) => {
            eprintln!("tollgate route: {why}");
            return 2;
        }
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default()),
        Format::Text => print_text(&e),
    }
    if e.decision == "refused" {
        1
    } else {
        0
    }
}

/// The explanation of one request (resolving its upstream as the proxy would).
pub fn explain(
    state: &State,
    url: &str,
    method: &str,
    client: Option<IpAddr>,
    caller: Option<&str>,
) -> Result<Explanation, String> {
    let line = request_line(url, method)?;
    let head = match parse_request(&mut bytes::BytesMut::from(line.as_str())) {
        Ok(Some(h)) => h,
        _ => return Err(format!("{url:?} is not a request target tollgate can read")),
    };
    let mut e = Explanation {
        request: format!(
            "{method} {url}{}{}",
            client.map(|c| format!(" from {c}")).unwrap_or_default(),
            caller
                .map(|c| format!(" as caller {c:?}"))
                .unwrap_or_default()
        ),
        ..Explanation::default()
    };
    let refuse = |mut e: Explanation, err: &ProxyError| {
        e.decision = "refused";
        if e.route.is_none() {
            e.route = err.route.clone();
        }
        e.error = Some(err.into());
        e
    };
    let parsed = match target::parse(&head) {
        Ok(p) => p,
        Err(err) => return Ok(refuse(e, &err)),
    };
    let normalized = if parsed.target.form == Form::Connect {
        std::borrow::Cow::Borrowed("/")
    } else {
        match tollgate_rules::path::normalize(parsed.path, state.config.path_normalization) {
            Ok(p) => p,
            Err(why) => {
                let err = ProxyError::new(
                    crate::errors::Code::BadRequest,
                    format!("bad request path: {why}"),
                    None,
                );
                return Ok(refuse(e, &err));
            }
        }
    };
    if normalized != parsed.path && parsed.target.form != Form::Connect {
        e.normalized_path = Some(normalized.to_string());
    }
    let facts = RequestFacts {
        host: &parsed.target.host,
        port: parsed.target.port,
        scheme: parsed.target.scheme,
        path: &normalized,
        method,
        client,
        caller,
    };
    let plan = match plan(state, &parsed.target, &facts) {
        Ok(p) => p,
        Err(err) => return Ok(refuse(e, &err)),
    };
    describe(state, &plan, &mut e);
    if plan.step == Step::Intercept {
        // The CA as `run` would load it (none when its files are unusable: `check` says why).
        let ca = crate::intercept::prepare(&state.config).ok();
        let ca = ca.as_ref().and_then(|p| p.authority());
        let route = state
            .config
            .routes
            .iter()
            .find(|r| r.name == plan.route.name);
        e.connect = route.map(|r| crate::intercept::plan(r, &parsed.target.host, ca).to_string());
    }
    match resolve(state, &plan) {
        Ok(addr) => e.dial = Some(addr),
        Err(Some(err)) => return Ok(refuse(e, &err)),
        Err(None) => {}
    }
    Ok(e)
}

fn describe(state: &State, plan: &Plan<'_, '_>, e: &mut Explanation) {
    let route = plan.route;
    e.route = route.label().map(str::to_owned);
    e.route_index = state.routes.iter().position(|r| std::ptr::eq(r, route));
    e.action = Some(route.action_name());
    e.decision = match plan.step {
        Step::Tunnel => "tunnel",
        Step::Intercept => "intercept",
        Step::Forward => "forward",
    };

    if let RouteAction::Inject(i) = &route.action {
        e.credential = Some(i.credential.clone());
        e.header = Some(if i.dpop {
            format!(
                "{}: {}<token>, DPoP: <a fresh proof for this request>",
                i.header, i.prefix
            )
        } else {
            format!("{}: {}<token>", i.header, i.prefix)
        });
        e.token = state
            .config
            .credentials
            .get(&i.credential)
            .map(|c| c.describe());
        e.token_url = state
            .config
            .credentials
            .get(&i.credential)
            .and_then(|c| c.oauth2())
            .and_then(|o| match &o.endpoint {
                // An issuer's token URL is known only after discovery; see
                // `Credential::describe` for a line that covers every kind.
                tollgate_rules::Endpoint::TokenUrl(u) => Some(u.to_string()),
                _ => None,
            });
        e.replay_on_401 = Some(i.replay_on_401);
    }
    let d = &plan.dial;
    e.transport = Some(if plan.step == Step::Tunnel {
        "tunnel (bytes untouched)".to_owned()
    } else if d.scheme == Scheme::Https {
        format!(
            "TLS, SNI {}, trusting system roots{}{}",
            d.host,
            route
                .trust
                .as_ref()
                .map(|_| " + upstream_ca_file")
                .unwrap_or_default(),
            route
                .injection()
                .filter(|i| i.client_cert.is_some())
                .map(|_| ", presenting the credential's client certificate")
                .unwrap_or_default()
        )
    } else {
        "plain HTTP".to_owned()
    });
    let scheme = if plan.step == Step::Tunnel {
        "tcp"
    } else {
        d.scheme.as_str()
    };
    e.upstream = Some(format!("{scheme}://{}", join_host_port(d.host, d.port)));
}

/// Resolves as the proxy would. `Err(Some)`: the address guards refuse it; `Err(None)`:
/// it does not resolve here (which says nothing about the proxy's network).
fn resolve(state: &State, plan: &Plan<'_, '_>) -> Result<String, Option<ProxyError>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|_| None)?;
    let own = OwnListeners::new(&[state.config.listen.proxy, state.config.listen.admin]);
    let allow = state.config.allow_private_networks;
    rt.block_on(async {
        let dns = Dns::system();
        let (addrs, _) = dns.resolve(plan.dial.host).await.map_err(|_| None)?;
        upstream::choose_addr(
            &addrs,
            plan.dial.port,
            allow,
            &own,
            plan.dial.host,
            plan.route.label(),
        )
        .map(|a| a.to_string())
        .map_err(Some)
    })
}

fn print_text(e: &Explanation) {
    println!("request:  {}", e.request);
    if let Some(p) = &e.normalized_path {
        println!("path:     {p} (normalised)");
    }
    match (&e.route, e.route_index) {
        (Some(r), Some(i)) => println!("route:    {r} (routes[{i}])"),
        (Some(r), None) => println!("route:    {r}"),
        (None, _) if e.action.is_some() => {
            println!("route:    (none matches; default_action: pass lets it through)")
        }
        (None, _) => println!("route:    (none matches)"),
    }
    if e.action.is_some() {
        match (e.action, &e.credential) {
            (Some("inject"), Some(c)) => {
                println!(
                    "action:   inject credential {c:?} as `{}`",
                    e.header.as_deref().unwrap_or_default()
                );
                if let Some(t) = &e.token {
                    println!("token:    {t}");
                }
                println!(
                    "replay:   {}",
                    if e.replay_on_401 == Some(true) {
                        "once after an upstream 401, with a fresh token"
                    } else {
                        "off"
                    }
                );
            }
            _ if e.decision == "intercept" => {}
            _ if e.upstream.as_deref().is_some_and(|u| u.starts_with("tcp:")) => {
                println!("action:   pass (CONNECT tunnel, bytes untouched)")
            }
            _ => println!("action:   pass (forwarded without a credential)"),
        }
        if let Some(c) = &e.connect {
            println!("connect:  {c}");
        }
        if let (Some(u), Some(t)) = (&e.upstream, &e.transport) {
            println!("upstream: {u} ({t})");
        }
    }
    if let Some(err) = &e.error {
        println!("decision: denied, {} {}", err.status, err.code);
        println!("reason:   {}", err.message);
        return;
    }
    match &e.dial {
        Some(a) => println!("dial:     {a}"),
        None => println!("dial:     unknown (does not resolve here)"),
    }
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
