//! The `ProxyHttp` implementation: each hook a few lines calling the modules that do the work.
//!
//! Life of a request: `request_filter` reads the target (`forward`), routes it
//! (`tollgate_rules::Router`), tunnels CONNECT (`connect`) or resolves the upstream
//! (`upstream`) and fetches the credential (`inject`); `upstream_peer` hands pingora the
//! prepared peer; `upstream_request_filter` rewrites the request for the upstream;
//! `fail_to_proxy` answers every error in our JSON shape (`errors`).

use crate::ctx::InFlight;
use crate::ctx::{Ctx, Routed, Upstream};
use crate::errors::{self, Code, ProxyError};
use crate::forward::{self, Form};
use crate::inject::Injector;
use crate::metrics::{self, Metrics, NO_ROUTE};
use crate::replay;
use crate::state::State;
use crate::upstream::{self, Dial, Dns};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::{Error, Result};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tollgate_rules::{Action, Decision, DefaultAction, RequestFacts};

pub struct Tollgate {
    pub state: Arc<ArcSwap<State>>,
    pub dns: Arc<Dns>,
    pub injector: Arc<Injector>,
    pub metrics: Arc<Metrics>,
    /// Requests in flight (for draining on SIGTERM).
    pub inflight: Arc<AtomicUsize>,
}

/// Record an error we answer ourselves and hand pingora an error that leads to `fail_to_proxy`.
fn fail<T>(ctx: &mut Ctx, err: ProxyError) -> Result<T> {
    let e = err.clone().into_pingora();
    ctx.failure = Some(err);
    Err(e)
}

impl Tollgate {
    /// Route the request; returns the route index (None = default pass) or the error to answer.
    fn route(&self, session: &Session, ctx: &mut Ctx, state: &State) -> Result<(), ProxyError> {
        let req = session.req_header();
        let target = forward::parse_target(req)?;
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let facts = RequestFacts {
            host: &target.host,
            port: target.port,
            scheme: target.scheme,
            path: if target.form == Form::Connect {
                "/"
            } else {
                forward::match_path(req)
            },
            method: req.method.as_str(),
            client,
        };
        let route = decide(state, &target, &facts)?;
        ctx.routed = Some(Routed { route, target });
        Ok(())
    }

    /// Resolve where to dial, enforcing the private-address rule.
    async fn resolve(&self, ctx: &mut Ctx, state: &State) -> Result<(), ProxyError> {
        let Some(routed) = ctx.routed.as_ref() else {
            return Err(ProxyError::new(
                Code::BadRequest,
                "request was not routed",
                None,
            ));
        };
        let route = routed.route.and_then(|i| state.config.routes.get(i));
        let route_name = route.map(|r| r.name.as_str());
        let (dial, host_header) = match route.and_then(|r| r.upstream.as_ref()) {
            Some(u) => {
                let dial = Dial {
                    scheme: u.scheme,
                    host: u.host.clone(),
                    port: u.port,
                };
                let hh = host_authority(&u.host, u.port, u.scheme.default_port());
                (dial, Some(hh))
            }
            None => {
                let t = &routed.target;
                let dial = Dial {
                    scheme: t.scheme,
                    host: t.host.clone(),
                    port: t.port,
                };
                let hh = match t.form {
                    Form::Absolute => {
                        Some(host_authority(&t.host, t.port, t.scheme.default_port()))
                    }
                    _ => None,
                };
                (dial, hh)
            }
        };
        let addrs = self
            .dns
            .resolve(&dial.host)
            .await
            .map_err(|e| ProxyError::new(Code::UpstreamUnreachable, e, route_name))?;
        let addr = upstream::choose_addr(
            &addrs,
            state.config.allow_private_networks,
            &dial,
            route_name,
        )?;
        ctx.upstream = Some(Upstream {
            dial,
            addr,
            host_header,
        });
        Ok(())
    }
}

impl Tollgate {
    /// The routed request's metric series, resolved at load: its route's, or the
    /// no-route series when `default_action: pass` let it through.
    fn series<'a>(&'a self, ctx: &'a Ctx) -> Option<&'a metrics::RouteMetrics> {
        match ctx.routed.as_ref()?.route {
            Some(_) => ctx.runtime()?.metrics.as_ref(),
            None => Some(&self.metrics.no_route),
        }
    }

    /// An inject route's upstream answered 401: decide, count, and ask for a replay.
    fn on_401(&self, session: &Session, resp: &ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        let Some(injected) = ctx.injected.as_ref() else {
            return Ok(());
        };
        let Some(Action::Inject(inject)) = ctx
            .state
            .as_ref()
            .zip(ctx.routed.as_ref().and_then(|r| r.route))
            .and_then(|(s, i)| s.config.routes.get(i))
            .map(|r| &r.action)
        else {
            return Ok(());
        };
        let outcome = replay::decide(replay::Facts {
            replay_on_401: inject.replay_on_401,
            already_replayed: ctx.replay.done,
            body_truncated: session.as_ref().retry_buffer_truncated(),
            insufficient_scope: replay::insufficient_scope(resp),
        });
        let route = ctx.route_name().unwrap_or(NO_ROUTE);
        self.metrics
            .replays
            .with_label_values(&[route, outcome.as_str()])
            .inc();
        if outcome != replay::Outcome::Replayed {
            tracing::info!(route, credential = %inject.credential, outcome = outcome.as_str(), "upstream answered 401; passed to the client");
            return Ok(());
        }
        let invalidated = self.injector.invalidate(inject, injected);
        tracing::info!(route, credential = %inject.credential, invalidated, outcome = outcome.as_str(), "upstream answered 401; replaying with a fresh token");
        ctx.replay.pending = true;
        let mut e = Error::explain(
            pingora::ErrorType::Custom("tollgate:replay_401"),
            "upstream answered 401; replaying once with a fresh token",
        );
        e.as_up();
        e.set_retry(true);
        Err(e)
    }

    /// Before the replay goes upstream: take a fresh token (single flight with other replays).
    async fn refresh_for_replay(&self, ctx: &mut Ctx) -> Result<()> {
        ctx.replay.pending = false;
        ctx.replay.done = true;
        let (Some(state), Some(idx)) =
            (ctx.state.clone(), ctx.routed.as_ref().and_then(|r| r.route))
        else {
            return Ok(());
        };
        let Some(route) = state.config.routes.get(idx) else {
            return Ok(());
        };
        let Action::Inject(inject) = &route.action else {
            return Ok(());
        };
        let handle = state.routes.get(idx).and_then(|r| r.credential.as_ref());
        match self
            .injector
            .header_for(inject, handle, Some(&route.name), std::time::Instant::now())
            .await
        {
            Ok(inj) => {
                ctx.injected = Some(inj);
                Ok(())
            }
            Err(e) => fail(ctx, e),
        }
    }
}

/// Apply the routing decision: the route index (`None` = let through by `default_action:
/// pass`) or the error to answer. Shared by the proxy and `tollgate route`.
pub fn decide(
    state: &State,
    target: &forward::Target,
    facts: &RequestFacts<'_>,
) -> Result<Option<usize>, ProxyError> {
    match state.router.decide(&state.config, facts) {
        Decision::Route(i, r) => {
            if r.action == Action::Deny {
                return Err(ProxyError::new(
                    Code::Denied,
                    format!("route {:?} denies {}", r.name, target.authority()),
                    Some(&r.name),
                ));
            }
            Ok(Some(i))
        }
        Decision::ClientNotAllowed(_, r) => Err(ProxyError::new(
            Code::ClientNotAllowed,
            format!(
                "client {} may not use route {:?}",
                facts.client.map(|c| c.to_string()).unwrap_or_default(),
                r.name
            ),
            Some(&r.name),
        )),
        Decision::NoRoute(DefaultAction::Deny) => Err(ProxyError::new(
            Code::NoRoute,
            format!("no route allows {} {}", facts.method, target.authority()),
            None,
        )),
        Decision::NoRoute(DefaultAction::Pass) => Ok(None),
    }
}

/// `host[:port]` as a Host header value, omitting the scheme's default port.
fn host_authority(host: &str, port: u16, default_port: u16) -> String {
    if port == default_port {
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        }
    } else {
        forward::join_host_port(host, port)
    }
}

#[async_trait]
impl ProxyHttp for Tollgate {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(InFlight::enter(&self.inflight))
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let state = self.state.load_full();
        ctx.state = Some(state.clone());
        if crate::telemetry::tracing_enabled() {
            let req = session.req_header();
            ctx.span = Some(crate::telemetry::request_span(
                &req.headers,
                req.method.as_str(),
            ));
        }
        if let Err(e) = forward::check_head(session) {
            return fail(ctx, e);
        }
        if let Err(e) = self.route(session, ctx, &state) {
            return fail(ctx, e);
        }
        let route = ctx
            .routed
            .as_ref()
            .and_then(|r| r.route)
            .and_then(|i| state.config.routes.get(i));
        let is_connect = ctx
            .routed
            .as_ref()
            .is_some_and(|r| r.target.form == Form::Connect);
        if is_connect && matches!(route.map(|r| &r.action), Some(Action::Inject(_))) {
            let name = route.map(|r| r.name.as_str());
            return fail(
                ctx,
                ProxyError::new(
                    Code::ConnectNotAllowed,
                    "route injects a credential, which cannot be added inside a CONNECT (TLS) tunnel; send plain http:// to the proxy and let the route's https upstream originate TLS",
                    name,
                ),
            );
        }
        if let Err(e) = self.resolve(ctx, &state).await {
            return fail(ctx, e);
        }
        match route.map(|r| &r.action) {
            Some(Action::Inject(inject)) => {
                let name = route.map(|r| r.name.as_str());
                let runtime = ctx
                    .routed
                    .as_ref()
                    .and_then(|r| r.route)
                    .and_then(|i| state.routes.get(i));
                if runtime.and_then(|r| r.inject_header.as_ref()).is_none() {
                    return fail(
                        ctx,
                        ProxyError::new(
                            Code::TokenUnavailable,
                            "route has no header to inject",
                            name,
                        ),
                    );
                }
                let handle = runtime.and_then(|r| r.credential.as_ref());
                match self
                    .injector
                    .header_for(inject, handle, name, ctx.started)
                    .await
                {
                    Ok(inj) => ctx.injected = Some(inj),
                    Err(e) => return fail(ctx, e),
                }
            }
            _ if is_connect => {
                let name = ctx.route_name().map(str::to_owned);
                let Some(addr) = ctx.upstream.as_ref().map(|u| u.addr) else {
                    return fail(ctx, ProxyError::new(Code::BadRequest, "no upstream", None));
                };
                let upstream = match crate::connect::dial(addr, name.as_deref()).await {
                    Ok(s) => s,
                    Err(e) => return fail(ctx, e),
                };
                match crate::connect::tunnel(session, upstream, name.as_deref()).await {
                    Ok(t) => {
                        tracing::debug!(
                            route = name.as_deref().unwrap_or("-"),
                            to_upstream = t.to_upstream,
                            to_client = t.to_client,
                            "tunnel closed"
                        );
                        return Ok(true);
                    }
                    Err(e) => return fail(ctx, e),
                }
            }
            _ => {}
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if ctx.replay.pending {
            self.refresh_for_replay(ctx).await?;
        }
        let (Some(up), Some(state)) = (ctx.upstream.as_ref(), ctx.state.as_ref()) else {
            return Error::e_explain(
                pingora::ErrorType::InternalError,
                "upstream_peer without a resolved upstream",
            );
        };
        let trust = ctx
            .routed
            .as_ref()
            .and_then(|r| r.route)
            .and_then(|i| state.routes.get(i))
            .and_then(|r| r.trust.as_ref());
        Ok(Box::new(upstream::build_peer(up.addr, &up.dial, trust)))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Send origin-form upstream, whatever form the client used (an origin-form
        // request already is: nothing to re-parse).
        if session.req_header().raw_path().first() != Some(&b'/') {
            match forward::origin_form(session.req_header()) {
                Ok(uri) => req.set_uri(uri),
                Err(e) => return fail(ctx, e),
            }
        }
        forward::strip_hop_by_hop(req);
        if let Some(up) = ctx.upstream.as_ref() {
            if let Some(h) = up.host_header.as_deref() {
                req.insert_header(http::header::HOST, h)?;
            }
        }
        ctx.upstream_sent = Some(std::time::Instant::now());
        if let Some(span) = ctx.span.as_ref() {
            // W3C trace context for the upstream: continue the client's trace through ours.
            while req.remove_header("traceparent").is_some() {}
            while req.remove_header("tracestate").is_some() {}
            for (k, v) in crate::telemetry::trace_headers(span) {
                req.insert_header(k, v)?;
            }
        }
        if let (Some(inj), Some(header)) = (
            ctx.injected.as_ref(),
            ctx.runtime().and_then(|r| r.inject_header.as_ref()),
        ) {
            // The client's own credential is replaced, never forwarded.
            while req.remove_header(header).is_some() {}
            req.insert_header(header.clone(), inj.value.clone())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        forward::strip_hop_by_hop_response(resp);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let err = ctx
            .failure
            .take()
            .or_else(|| errors::classify(e, ctx.route_name()));
        let code = match err {
            Some(err) => {
                if err.code.status() >= 500 {
                    tracing::warn!(
                        route = ctx.route_name().unwrap_or("-"),
                        code = err.code.as_str(),
                        "{}",
                        err.message
                    );
                }
                let status = if session.response_written().is_none() {
                    errors::respond(session, &err).await
                } else {
                    0
                };
                ctx.failure = Some(err);
                status
            }
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: code != 0 && code < 500 && code != 400,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, _e: &Error) -> bool {
        // Errors we answer ourselves are logged by `fail_to_proxy`, once, without noise.
        ctx.failure.is_some()
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            if let Some(m) = self.series(ctx) {
                m.upstream_duration.observe(sent.elapsed().as_secs_f64());
            }
        }
        ctx.upstream_status = Some(resp.status.as_u16());
        if resp.status == http::StatusCode::UNAUTHORIZED {
            return self.on_401(session, resp, ctx);
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.replay.pending {
            // Our 401 replay: retry whatever the method, the body is in the retry buffer.
            e.set_retry(true);
        } else if !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &Ctx,
        _e: &Error,
        _context: ProxyWarnLogContext,
    ) -> bool {
        // A replay is logged (info) and counted by `on_401`; it is not a failure.
        ctx.replay.pending
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        // Requests refused before routing finished still name their route in the error.
        let route = ctx
            .route_name()
            .or_else(|| ctx.failure.as_ref().and_then(|f| f.route.as_deref()))
            .unwrap_or(NO_ROUTE);
        let refused = ctx.failure.as_ref().is_some_and(|f| f.code.status() == 403);
        let action = match (ctx.state.as_ref(), ctx.routed.as_ref()) {
            _ if refused => "deny",
            (Some(state), Some(r)) => match r.route.and_then(|i| state.config.routes.get(i)) {
                Some(rt) if r.target.form == Form::Connect => match rt.action {
                    Action::Pass => "tunnel",
                    _ => rt.action.name(),
                },
                Some(rt) => rt.action.name(),
                None if r.target.form == Form::Connect => "tunnel",
                None => "pass",
            },
            _ => "-",
        };
        let elapsed = ctx.started.elapsed().as_secs_f64();
        let code = metrics::code_index(status);
        // A request refused before routing finished (its route named only by the error)
        // takes the labelled lookup.
        let series = self.series(ctx).filter(|m| m.route() == route);
        match (series, metrics::ACTIONS.iter().position(|a| *a == action)) {
            (Some(m), Some(a)) => {
                m.requests(a, code).inc();
                m.request_duration.observe(elapsed);
            }
            _ => {
                self.metrics
                    .requests
                    .with_label_values(&[route, action, metrics::CODES[code]])
                    .inc();
                self.metrics
                    .request_duration
                    .with_label_values(&[route])
                    .observe(elapsed);
            }
        }
        if let Some(span) = ctx.span.as_ref() {
            if let Some(r) = ctx.routed.as_ref() {
                span.record("server.address", r.target.host.as_str());
                span.record("server.port", i64::from(r.target.port));
            }
            span.record("tollgate.route", route);
            span.record("tollgate.action", action);
            span.record("tollgate.replayed", ctx.replay.done);
            span.record("http.response.status_code", i64::from(status));
            if let Some(u) = ctx.upstream_status {
                span.record("upstream.status_code", i64::from(u));
            }
            if status >= 500 || status == 0 {
                span.record("otel.status_code", "ERROR");
            }
        }
        let req = session.req_header();
        let reparsed;
        let (host, port) = match ctx.routed.as_ref() {
            Some(r) => (r.target.host.as_str(), r.target.port),
            None => {
                reparsed = forward::parse_target(req).ok();
                reparsed
                    .as_ref()
                    .map(|t| (t.host.as_str(), t.port))
                    .unwrap_or(("-", 0))
            }
        };
        tracing::info!(
            target: "tollgate::access",
            route,
            action,
            method = %req.method,
            host,
            port,
            path = req.uri.path(),
            status,
            upstream_status = ctx.upstream_status.unwrap_or(0),
            duration_ms = (ctx.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            replayed = ctx.replay.done,
            error = ctx.failure.as_ref().map(|f| f.code.as_str()).unwrap_or("-"),
            "access"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_omits_default_port() {
        assert_eq!(host_authority("a.test", 80, 80), "a.test");
        assert_eq!(host_authority("a.test", 8080, 80), "a.test:8080");
        assert_eq!(host_authority("::1", 443, 443), "[::1]");
        assert_eq!(host_authority("::1", 8443, 443), "[::1]:8443");
    }
}
