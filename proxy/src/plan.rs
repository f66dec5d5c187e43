//! The one routing decision: [`plan`] turns a request's target and facts into what the
//! proxy will do with it, or the error to answer. Pure: no DNS, no token, no I/O. The
//! data path, `tollgate route` and the benches all call it.

use crate::errors::{Code, ProxyError};
use crate::route::{CompiledRoute, ConnectMode, RouteAction};
use crate::state::State;
use crate::target::{Form, Target};
use tollgate_rules::{Decision, DefaultAction, RequestFacts, Scheme};

/// What happens to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Forward it (with a credential on inject routes).
    Forward,
    /// A CONNECT tunnelled byte for byte.
    Tunnel,
    /// A CONNECT whose requests inside are served (`connect: intercept`).
    Intercept,
}

/// Where to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial<'a> {
    pub scheme: Scheme,
    pub host: &'a str,
    pub port: u16,
}

/// The decision for one request: a route of the state (`'s`) and a destination that may
/// borrow from the request (`'t`).
pub struct Plan<'s, 't> {
    pub route: &'s CompiledRoute,
    pub step: Step,
    pub dial: Dial<'t>,
    /// Send `Host: <dial authority>` (absolute-form requests, and routes with `upstream:`);
    /// otherwise the client's `Host` goes on unchanged.
    pub set_host: bool,
}

/// Decides what to do with a request for `target` (whose path, already normalised, is
/// in `facts`).
pub fn plan<'s: 't, 't>(
    state: &'s State,
    target: &'t Target,
    facts: &RequestFacts<'_>,
) -> Result<Plan<'s, 't>, ProxyError> {
    let route = match state.router.decide(&state.config, facts) {
        Decision::Route(i, _) => match state.routes.get(i) {
            Some(r) => r,
            None => {
                return Err(ProxyError::new(
                    Code::NoRoute,
                    "no route (stale router)",
                    None,
                ))
            }
        },
        Decision::ClientNotAllowed(_, r) => {
            return Err(ProxyError::new(
                Code::ClientNotAllowed,
                format!(
                    "client {} may not use route {:?}",
                    facts
                        .client
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "(unknown)".into()),
                    r.name
                ),
                Some(&r.name),
            ))
        }
        Decision::ProxyAuthRequired(found) => {
            let route = found.map(|(_, r)| r.name.as_str());
            let message = match route {
                Some(name) => format!("route {name:?} needs a caller: authenticate to the proxy"),
                None => "this proxy needs every caller to authenticate".to_owned(),
            };
            return Err(ProxyError::new(Code::ProxyAuthRequired, message, route));
        }
        Decision::CallerNotAllowed(_, r) => {
            return Err(ProxyError::new(
                Code::CallerNotAllowed,
                format!(
                    "caller {:?} may not use route {:?}",
                    facts.caller.unwrap_or_default(),
                    r.name
                ),
                Some(&r.name),
            ))
        }
        Decision::NoRoute(DefaultAction::Deny) => {
            return Err(ProxyError::new(
                Code::NoRoute,
                format!("no route allows {} {}", facts.method, target.authority()),
                None,
            ))
        }
        Decision::NoRoute(DefaultAction::Pass) => &state.default_route,
    };
    if let RouteAction::Deny = route.action {
        return Err(ProxyError::new(
            Code::Denied,
            format!("route {:?} denies {}", route.name, target.authority()),
            Some(&route.name),
        ));
    }
    let step = if target.form == Form::Connect {
        match route.connect {
            ConnectMode::Tunnel => Step::Tunnel,
            ConnectMode::Intercept => Step::Intercept,
            ConnectMode::Refuse if route.injection().is_some() => {
                return Err(ProxyError::new(
                    Code::ConnectNotAllowed,
                    "route injects a credential, which cannot be added inside a CONNECT (TLS) tunnel tollgate does not read; set `connect: intercept` on the route, or send plain http:// to the proxy and let the route's https upstream originate TLS",
                    Some(&route.name),
                ))
            }
            ConnectMode::Refuse => {
                return Err(ProxyError::new(
                    Code::ConnectNotAllowed,
                    format!("route {:?} refuses CONNECT (connect: refuse)", route.name),
                    Some(&route.name),
                ))
            }
        }
    } else {
        Step::Forward
    };
    let (dial, set_host) = match &route.upstream {
        Some(u) => (
            Dial {
                scheme: u.scheme,
                host: &u.host,
                port: u.port,
            },
            true,
        ),
        None => (
            Dial {
                scheme: target.scheme,
                host: &target.host,
                port: target.port,
            },
            target.form == Form::Absolute,
        ),
    };
    Ok(Plan {
        route,
        step,
        dial,
        set_host,
    })
}
