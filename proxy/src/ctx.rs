//! Per-request state, grouped by the stage that fills it.

use crate::errors::ProxyError;
use crate::forward::Target;
use crate::inject::Injected;
use crate::state::State;
use crate::upstream::Dial;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Replay state of one request (at most one replay).
#[derive(Default)]
pub struct Replay {
    /// A 401 was seen and the retry loop will run the request again.
    pub pending: bool,
    /// The request was already replayed once.
    pub done: bool,
}

/// Counts a request as in flight for as long as its context lives.
pub struct InFlight(Option<Arc<AtomicUsize>>);

impl InFlight {
    pub fn enter(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(Some(counter.clone()))
    }
    pub fn none() -> InFlight {
        InFlight(None)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

pub struct Ctx {
    pub started: Instant,
    _inflight: InFlight,
    /// The config snapshot this request was routed with.
    pub state: Option<Arc<State>>,
    pub routed: Option<Routed>,
    pub upstream: Option<Upstream>,
    pub injected: Option<Injected>,
    pub replay: Replay,
    /// An error we answer ourselves (see `errors`).
    pub failure: Option<ProxyError>,
    /// When the request went upstream (for the upstream latency histogram).
    pub upstream_sent: Option<Instant>,
    /// The upstream's last response status.
    pub upstream_status: Option<u16>,
    /// The OpenTelemetry span of this request (only when traces are exported).
    pub span: Option<tracing::Span>,
}

impl Ctx {
    pub fn new(inflight: InFlight) -> Ctx {
        Ctx {
            started: Instant::now(),
            _inflight: inflight,
            state: None,
            routed: None,
            upstream: None,
            injected: None,
            replay: Replay::default(),
            failure: None,
            upstream_sent: None,
            upstream_status: None,
            span: None,
        }
    }

    /// The matched route's runtime state (`None` when no route matched).
    pub fn runtime(&self) -> Option<&crate::state::RouteRuntime> {
        let state = self.state.as_ref()?;
        let idx = self.routed.as_ref()?.route?;
        state.routes.get(idx)
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
        Ctx::new(InFlight::none())
    }
}
