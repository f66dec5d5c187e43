//! Per-request state, grouped by the stage that fills it.

use crate::errors::ProxyError;
use crate::forward::Target;
use crate::state::State;
use crate::upstream::Dial;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What routing decided.
pub struct Routed {
    /// Index into `state.config.routes`; `None` when `default_action: pass` let it through.
    pub route: Option<usize>,
    pub target: Target,
}

/// Where the request goes.
pub struct Upstream {
    pub dial: Dial,
    pub addr: SocketAddr,
    /// `Host` to send: set when the request was absolute-form or the route overrides the upstream.
    pub host_header: Option<String>,
}

/// The credential injected on an inject route.
pub struct Injected {
    pub credential: String,
    pub header: http::HeaderName,
    pub value: http::HeaderValue,
}

pub struct Ctx {
    pub started: Instant,
    /// The config snapshot this request was routed with.
    pub state: Option<Arc<State>>,
    pub routed: Option<Routed>,
    pub upstream: Option<Upstream>,
    pub injected: Option<Injected>,
    /// An error we answer ourselves (see `errors`).
    pub failure: Option<ProxyError>,
}

impl Ctx {
    pub fn new() -> Ctx {
        Ctx {
            started: Instant::now(),
            state: None,
            routed: None,
            upstream: None,
            injected: None,
            failure: None,
        }
    }

    /// The route's name, for errors, logs and metrics.
    pub fn route_name(&self) -> Option<&str> {
        let state = self.state.as_ref()?;
        let idx = self.routed.as_ref()?.route?;
        state.config.routes.get(idx).map(|r| r.name.as_str())
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx::new()
    }
}
