//! Everything a request needs from the configuration, built once per (re)load and shared
//! as one `Arc` (swapped whole on reload).

use crate::auth::{CredHandle, TokenCache};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::{load_trust, Trust};
use tollgate_rules::{Config, Router};

/// Per-route runtime state prepared at load time.
pub struct RouteRuntime {
    /// System roots plus `upstream_ca_file`, when that is set.
    pub trust: Option<Trust>,
    /// The header an inject route sets, parsed once here rather than per request.
    pub inject_header: Option<http::HeaderName>,
    /// An inject route's credential in the token cache, set by [`State::bind`].
    pub credential: Option<CredHandle>,
    /// The route's metric series, set by [`State::bind`].
    pub metrics: Option<RouteMetrics>,
}

pub struct State {
    pub config: Config,
    pub router: Router,
    pub routes: Vec<RouteRuntime>,
}

impl State {
    /// Prepare a validated config for serving. Fails when a referenced file (a CA) cannot
    /// be used; each problem names the route and the file.
    pub fn build(config: Config) -> Result<State, Vec<String>> {
        let router = Router::new(&config);
        let mut problems = Vec::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            let trust = match &r.upstream_ca_file {
                None => None,
                Some(path) => match load_trust(path) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        problems.push(format!("route {:?}: upstream_ca_file: {e}", r.name));
                        None
                    }
                },
            };
            let inject_header = match &r.action {
                tollgate_rules::Action::Inject(i) => {
                    match http::HeaderName::from_bytes(i.header.as_bytes()) {
                        Ok(h) => Some(h),
                        Err(_) => {
                            problems.push(format!(
                                "route {:?}: header {:?} is not a valid header name",
                                r.name, i.header
                            ));
                            None
                        }
                    }
                }
                _ => None,
            };
            routes.push(RouteRuntime {
                trust,
                inject_header,
                credential: None,
                metrics: None,
            });
        }
        if problems.is_empty() {
            Ok(State {
                config,
                router,
                routes,
            })
        } else {
            Err(problems)
        }
    }
}

impl State {
    /// Resolves each inject route's credential handle in `tokens` and each route's
    /// metric series, so a request needs no lookup for either. Call after `tokens` was
    /// (re)configured with this config's credentials and before serving with this state.
    pub fn bind(&mut self, tokens: &TokenCache, metrics: &Metrics) {
        for (rt, r) in self.routes.iter_mut().zip(&self.config.routes) {
            rt.metrics = Some(metrics.route(&r.name));
            rt.credential = match &r.action {
                tollgate_rules::Action::Inject(i) => tokens.handle(&i.credential),
                _ => None,
            };
        }
    }
}
