//! Compiled routes: each configured route turned, once per (re)load, into one value that
//! holds everything a request on it needs: its name, a typed action (with the credential
//! handle an inject route spends), its dial target, trust, timeouts and metric series.
//! A request carries a reference to its route; nothing is looked up again by index.

use crate::auth::{CredHandle, TokenCache};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::{load_trust, Trust};
use pingora::utils::tls::CertKey;
use std::sync::Arc;
use std::time::Duration;
use tollgate_rules::{Action, Config, Connect, Route, Upstream};

/// What a route does with a request.
pub enum RouteAction {
    /// Forward untouched (and tunnel CONNECT).
    Pass,
    /// Refuse with 403 `denied`.
    Deny,
    /// Forward with a credential.
    Inject(Injection),
}

/// The settings of an inject route, ready for the request path.
pub struct Injection {
    /// The credential's name (for logs and errors).
    pub credential: String,
    /// The header's name, lower-case, to drop the client's own value.
    pub header_lower: String,
    /// The header's name as configured, to write.
    pub header: String,
    /// Written before the token.
    pub prefix: String,
    /// The credential in the token cache (absent in `check`/`route`, which fetch nothing).
    pub handle: Option<CredHandle>,
    /// `replay_on_401`.
    pub replay_on_401: bool,
    /// The credential is DPoP-bound: each request carries a fresh proof.
    pub dpop: bool,
    /// `upstream_client_cert: credential`: the certificate presented to the upstream.
    pub client_cert: Option<Arc<CertKey>>,
}

/// The credential's client certificate, for `upstream_client_cert: credential` (read
/// at each (re)load: a renewed certificate is presented from the reload on).
fn upstream_client_cert(route: &Route, config: &Config) -> Result<Arc<CertKey>, String> {
    let t = config
        .credential_for(route)
        .and_then(|c| c.oauth2())
        .and_then(|o| o.tls_client())
        .ok_or_else(|| {
            format!(
                "route {:?}: upstream_client_cert: its credential has no client certificate",
                route.name
            )
        })?;
    crate::auth::ClientCert::load(t)
        .map(|c| c.cert_key())
        .map_err(|(which, why)| {
            format!(
                "route {:?}: upstream_client_cert: {} {}: {why}",
                route.name,
                which.key(),
                match which {
                    crate::auth::tls_client::Which::Cert => t.cert_file.display(),
                    crate::auth::tls_client::Which::Key => t.key_file.display(),
                }
            )
        })
}

/// What a CONNECT to this route gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// A byte-for-byte tunnel (pass routes).
    Tunnel,
    /// 403 `connect_not_allowed` (inject routes, by default; `connect: refuse`).
    Refuse,
    /// 200, then the requests inside are served like any other (`connect: intercept`).
    Intercept,
}

/// Timeouts of one route: the top-level ones with the route's overrides applied.
#[derive(Debug, Clone, Copy)]
pub struct RouteTimeouts {
    pub connect: Duration,
    pub read: Duration,
    pub upstream_idle: Duration,
    pub tunnel_idle: Duration,
}

/// One route, compiled.
pub struct CompiledRoute {
    /// The configured name; `-` for requests that `default_action: pass` lets through.
    pub name: String,
    pub action: RouteAction,
    /// `upstream:`; `None` dials what the client asked for.
    pub upstream: Option<Upstream>,
    /// System roots plus `upstream_ca_file`, when that is set.
    pub trust: Option<Trust>,
    pub connect: ConnectMode,
    pub timeouts: RouteTimeouts,
    pub metrics: RouteMetrics,
}

impl CompiledRoute {
    pub fn injection(&self) -> Option<&Injection> {
        match &self.action {
            RouteAction::Inject(i) => Some(i),
            _ => None,
        }
    }

    /// The route's name for error bodies: `None` for the stand-in of `default_action: pass`
    /// (no configured route took the request).
    pub fn label(&self) -> Option<&str> {
        (self.name != crate::metrics::NO_ROUTE).then_some(self.name.as_str())
    }

    /// The `action` label of requests on this route.
    pub fn action_name(&self) -> &'static str {
        match self.action {
            RouteAction::Pass => "pass",
            RouteAction::Deny => "deny",
            RouteAction::Inject(_) => "inject",
        }
    }

    /// Compiles `route` of `config`. Fails when a file it names (a CA, the credential's
    /// client certificate) cannot be used.
    pub fn compile(
        route: &Route,
        config: &Config,
        metrics: &Metrics,
        tokens: Option<&TokenCache>,
    ) -> Result<CompiledRoute, String> {
        let top = &config.timeouts;
        let trust = match &route.upstream_ca_file {
            None => None,
            Some(path) => Some(
                load_trust(path)
                    .map_err(|e| format!("route {:?}: upstream_ca_file: {e}", route.name))?,
            ),
        };
        let action = match &route.action {
            Action::Pass => RouteAction::Pass,
            Action::Deny => RouteAction::Deny,
            Action::Inject(i) => RouteAction::Inject(Injection {
                credential: i.credential.clone(),
                header_lower: i.header.to_ascii_lowercase(),
                header: i.header.clone(),
                prefix: i.prefix.clone(),
                handle: tokens.and_then(|t| t.handle(&i.credential)),
                replay_on_401: i.replay_on_401,
                dpop: i.dpop,
                client_cert: if i.upstream_client_cert {
                    Some(upstream_client_cert(route, config)?)
                } else {
                    None
                },
            }),
        };
        // Validation allows `intercept` on inject routes and `tunnel` on pass routes only;
        // a deny route refuses whatever it says.
        let connect = match (&action, route.connect) {
            (RouteAction::Deny, _) | (_, Connect::Refuse) => ConnectMode::Refuse,
            (_, Connect::Tunnel) => ConnectMode::Tunnel,
            (_, Connect::Intercept) => ConnectMode::Intercept,
        };
        let t = &route.timeouts;
        Ok(CompiledRoute {
            name: route.name.clone(),
            action,
            upstream: route.upstream.clone(),
            trust,
            connect,
            timeouts: RouteTimeouts {
                connect: t.connect.unwrap_or(top.connect),
                read: t.read.unwrap_or(top.read),
                upstream_idle: t.upstream_idle.unwrap_or(top.upstream_idle),
                tunnel_idle: t.tunnel_idle.unwrap_or(top.tunnel_idle),
            },
            metrics: metrics.route(&route.name),
        })
    }

    /// The stand-in route of requests no route matched while `default_action: pass`.
    pub fn default_pass(config: &Config, metrics: &Metrics) -> CompiledRoute {
        let top = &config.timeouts;
        CompiledRoute {
            name: crate::metrics::NO_ROUTE.to_owned(),
            action: RouteAction::Pass,
            upstream: None,
            trust: None,
            connect: ConnectMode::Tunnel,
            timeouts: RouteTimeouts {
                connect: top.connect,
                read: top.read,
                upstream_idle: top.upstream_idle,
                tunnel_idle: top.tunnel_idle,
            },
            metrics: metrics.route(crate::metrics::NO_ROUTE),
        }
    }
}
