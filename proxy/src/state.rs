//! Everything a request needs from the configuration, built once per (re)load and shared
//! as one `Arc` (swapped whole on reload).

use crate::upstream::{load_trust, Trust};
use tollgate_rules::{Config, Router};

/// Per-route runtime state prepared at load time.
pub struct RouteRuntime {
    /// System roots plus `upstream_ca_file`, when that is set.
    pub trust: Option<Trust>,
    /// The header an inject route sets, parsed once here rather than per request.
    pub inject_header: Option<http::HeaderName>,
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
