//! Everything a request needs from the configuration, built once per (re)load and shared
//! as one `Arc` (swapped whole on reload): the validated config, its router, and each
//! route compiled ([`CompiledRoute`]) in config order.

use crate::auth::TokenCache;
use crate::metrics::Metrics;
use crate::route::CompiledRoute;
use tollgate_rules::{Config, Router};

pub struct State {
    pub config: Config,
    pub router: Router,
    /// `routes[i]` is `config.routes[i]` compiled.
    pub routes: Vec<CompiledRoute>,
    /// What requests that `default_action: pass` lets through use.
    pub default_route: CompiledRoute,
    /// `callers:` (JWKS, htpasswd, verification cache); `None` without that section.
    pub callers: Option<crate::callers::Callers>,
}

impl State {
    /// Prepares a validated config for serving. `tokens`: the token cache, already
    /// reconfigured with this config's credentials (`None` for `check` and `route`,
    /// which fetch nothing, and for a reload, which binds after reconfiguring: see
    /// [`State::bind`]). Fails when a file the config names cannot be used; each problem
    /// names the route and the file.
    pub fn build(
        config: Config,
        metrics: &Metrics,
        tokens: Option<&TokenCache>,
    ) -> Result<State, Vec<String>> {
        let router = Router::new(&config);
        // The series this config's alerts need, at zero before anything happens.
        metrics.prepare(&config);
        let mut problems = Vec::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            match CompiledRoute::compile(r, &config, metrics, tokens) {
                Ok(c) => routes.push(c),
                Err(e) => problems.push(e),
            }
        }
        let callers = match crate::callers::Callers::load(&config) {
            Ok(c) => c,
            Err(ps) => {
                problems.extend(ps);
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let default_route = CompiledRoute::default_pass(&config, metrics);
        Ok(State {
            config,
            router,
            routes,
            default_route,
            callers,
        })
    }
}

impl State {
    /// Gives each inject route its credential's handle in `tokens`, so a request needs
    /// no lookup. Call after `tokens` was (re)configured with this config's credentials
    /// and before serving with this state.
    pub fn bind(&mut self, tokens: &TokenCache) {
        for r in &mut self.routes {
            if let crate::route::RouteAction::Inject(i) = &mut r.action {
                i.handle = tokens.handle(&i.credential);
                // A static credential would come back the same: never replay its 401.
                i.replay_on_401 &= i.handle.as_ref().is_none_or(|h| h.replays_after_401());
            }
        }
    }
}
