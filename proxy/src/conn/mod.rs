//! The data path: one loop per client connection, on pingora's `Server`, listeners,
//! runtime and connectors (a custom `ServerApp`), with our own HTTP/1 codec.
//!
//! Life of a request ([`Conn::serve`]): read the head (bounded as a whole by
//! `timeouts.request_head`), check its framing, parse the target (`target`), refuse our
//! own `Via` (a loop), normalise the path (`tollgate_rules::path`), [`plan`] it; then
//! either tunnel a CONNECT (`tunnel`) or forward it (`forward`): resolve and guard the
//! address (`upstream`), take the credential, write the upstream head (`rewrite`), send it
//! with the body on the pinned upstream connection (or one from pingora's pool), read the
//! response, replay once after a 401, relay the response. Errors before the response
//! started are answered with our JSON (`errors`); after, the connection is closed.
//! Every request is counted and logged once, in [`Conn::finish`].
//!
//! The loop takes any byte stream (`pingora::protocols::Stream`), so a decrypted tunnel
//! can be fed to it unchanged.

mod forward;
mod intercept_step;
mod io;
mod pinned;

use crate::auth::TokenCache;
use crate::errors::{Code, ProxyError};
use crate::http1::{self, HeadError, RequestHead, Version};
use crate::metrics::{ActionLabel, Metrics, Source};
use crate::plan::{plan, Step};
use crate::route::CompiledRoute;
use crate::state::State;
use crate::upstream::{Dns, OwnListeners};
use crate::{rewrite, target};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::ServerApp;
use pingora::connectors::TransportConnector;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pinned::Pinned;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tollgate_rules::RequestFacts;

/// After this long without a request, a client's pinned upstream connection goes back to
/// pingora's shared pool, where other client connections can use it.
const POOL_AFTER: Duration = Duration::from_secs(2);

/// Buffer capacity an idle connection may keep.
const IDLE_KEEP: usize = 4096;

/// What every connection shares.
pub struct Shared {
    pub state: Arc<ArcSwap<State>>,
    pub dns: Arc<Dns>,
    pub tokens: Arc<TokenCache>,
    pub connector: TransportConnector,
    pub metrics: Arc<Metrics>,
    /// Client connections open (SIGTERM drains until none is left).
    pub open: Arc<AtomicUsize>,
    /// Our `Via` entry (`1.1 tollgate-3f9a2c`) and its pseudonym (`tollgate-3f9a2c`).
    pub via: String,
    pub pseudonym: String,
    pub own: OwnListeners,
    /// Leaf certificates and TLS for `connect: intercept` tunnels.
    pub interceptor: Arc<crate::intercept::Interceptor>,
}

impl Shared {
    /// A fresh pseudonym for this process, so that a loop through any replica is seen
    /// while a chain of distinct tollgates is not mistaken for one.
    pub fn pseudonym() -> String {
        let mut b = [0u8; 3];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        format!("tollgate-{:02x}{:02x}{:02x}", b[0], b[1], b[2])
    }
}

/// The proxy listener's application.
pub struct App(pub Arc<Shared>);

/// Counts an open client connection for as long as it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn enter(c: &Arc<AtomicUsize>) -> Open {
        c.fetch_add(1, Ordering::AcqRel);
        Open(c.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl ServerApp for App {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = Open::enter(&self.0.open);
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let mut conn = Conn::new(Box::new(stream), client);
        conn.run(&self.0, shutdown.clone()).await;
        conn.release_upstream(&self.0);
        None
    }
}

/// Whether the client connection carries on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// What happened to one request: what `finish` counts and logs.
struct Outcome<'s> {
    route: Option<&'s CompiledRoute>,
    action: ActionLabel,
    status: u16,
    source: Source,
    error: Option<ProxyError>,
    bytes_in: u64,
    bytes_out: u64,
    upstream: Option<Duration>,
    replayed: bool,
    /// Where it was going, kept only when the access log is on.
    dest: Option<(String, u16)>,
    /// The OpenTelemetry span of this request (only when traces are exported).
    span: Option<tracing::Span>,
    /// Who the request proved to be (`callers`), when it did.
    caller: Option<crate::callers::Identity>,
}

impl Outcome<'_> {
    fn new() -> Self {
        Outcome {
            route: None,
            action: ActionLabel::None,
            status: 0,
            source: Source::Tollgate,
            error: None,
            bytes_in: 0,
            bytes_out: 0,
            upstream: None,
            replayed: false,
            dest: None,
            span: None,
            caller: None,
        }
    }
}

/// One client connection.
pub struct Conn {
    /// The client's connection: a socket from pingora's listener, or a decrypted or plain
    /// stream inside a CONNECT tunnel.
    down: Box<dyn io::Io>,
    client: Option<SocketAddr>,
    /// Bytes read from the client and not yet used.
    dbuf: BytesMut,
    /// The upstream connection kept for this client's next request.
    up: Option<Pinned>,
    /// Bytes read from the upstream and not yet used.
    ubuf: BytesMut,
    /// The head being written.
    out: Vec<u8>,
    /// A copy of the request body, for a retry or a 401 replay.
    body: Vec<u8>,
    /// The last name resolved on this connection (most connections talk to one host).
    dns: Option<(String, IpAddr, tokio::time::Instant)>,
    /// The config this connection serves with (refreshed per request when it changed).
    state: Option<Arc<State>>,
    shutting_down: bool,
    shutdown: Option<ShutdownWatch>,
    /// Set on the connection that serves the requests inside an intercepted CONNECT.
    inside: Option<Box<Inside>>,
}

/// What a connection inside an intercepted CONNECT knows from the CONNECT.
struct Inside {
    tunnel: crate::target::Tunnel,
    /// The caller the CONNECT authenticated: the requests inside are theirs.
    caller: Option<crate::callers::Identity>,
}

/// What reading a request head gave.
enum Read {
    Head(RequestHead),
    /// The client closed (or idled out) between requests: nothing to answer.
    Closed,
    /// Answer this and close.
    Refuse(ProxyError),
}

impl Conn {
    pub fn new(down: Box<dyn io::Io>, client: Option<SocketAddr>) -> Conn {
        Conn {
            down,
            client,
            dbuf: BytesMut::new(),
            up: None,
            ubuf: BytesMut::new(),
            out: Vec::new(),
            body: Vec::new(),
            dns: None,
            state: None,
            shutting_down: false,
            shutdown: None,
            inside: None,
        }
    }

    /// Serves requests until the client or the proxy ends the connection.
    pub async fn run(&mut self, sh: &Shared, mut shutdown: ShutdownWatch) {
        self.shutdown = Some(shutdown.clone());
        loop {
            let state = self.current_state(sh);
            let read = self.read_head(sh, &state, &mut shutdown).await;
            let started = Instant::now();
            let head = match read {
                Read::Head(h) => h,
                Read::Closed => return,
                Read::Refuse(err) => {
                    let mut out = Outcome::new();
                    self.answer(err, false, &mut out).await;
                    self.finish(sh, &state, None, &out, started);
                    return;
                }
            };
            self.shutting_down |= *shutdown.borrow();
            match self.serve(sh, &state, &head, started).await {
                Next::KeepAlive if !self.shutting_down && !*shutdown.borrow() => {}
                _ => return,
            }
        }
    }

    fn current_state(&mut self, sh: &Shared) -> Arc<State> {
        let now = sh.state.load();
        match &self.state {
            Some(s) if Arc::ptr_eq(s, &now) => s.clone(),
            _ => {
                let s = arc_swap::Guard::into_inner(now);
                self.state = Some(s.clone());
                s
            }
        }
    }

    /// Reads the next request head: waits up to `timeouts.idle` for its first byte (while
    /// watching the pinned upstream connection and the shutdown signal), then up to
    /// `timeouts.request_head` for all of it.
    async fn read_head(
        &mut self,
        sh: &Shared,
        state: &State,
        shutdown: &mut ShutdownWatch,
    ) -> Read {
        let t = &state.config.timeouts;
        if self.dbuf.is_empty() {
            // An idle connection holds no read buffer, and gives back what a large
            // request or response made its other buffers grow to.
            self.dbuf = BytesMut::new();
            if self.ubuf.capacity() > IDLE_KEEP {
                self.ubuf = BytesMut::new();
            }
            if self.body.capacity() > IDLE_KEEP {
                self.body = Vec::new();
            }
            self.out.shrink_to(IDLE_KEEP);
            let idle_until = tokio::time::Instant::now() + t.idle;
            loop {
                if *shutdown.borrow() {
                    return Read::Closed;
                }
                self.dbuf.reserve(4096);
                let Conn { down, dbuf, up, .. } = self;
                let pool_at = up.as_ref().map(|p| p.since + POOL_AFTER);
                tokio::select! {
                    biased;
                    r = down.read_buf(dbuf) => match r {
                        Ok(0) | Err(_) => return Read::Closed,
                        Ok(_) => break,
                    },
                    _ = tokio::time::sleep_until(idle_until) => return Read::Closed,
                    _ = shutdown.changed() => continue,
                    _ = pinned::closed(up) => { *up = None; }
                    _ = sleep_until_opt(pool_at) => {
                        if let Some(p) = up.take() {
                            p.release(&sh.connector);
                        }
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + t.request_head;
        loop {
            match http1::parse_request(&mut self.dbuf) {
                Ok(Some(h)) => return Read::Head(h),
                Ok(None) => {}
                Err(e) => return Read::Refuse(head_error(e)),
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match io::read_more(&mut self.down, &mut self.dbuf, left).await {
                Ok(0) => {
                    sh.metrics.client_gone_mid_head.inc();
                    tracing::debug!(client = ?self.client, "client closed the connection part way through a request head");
                    return Read::Closed;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Read::Refuse(ProxyError::new(
                        Code::RequestTimeout,
                        format!(
                            "the request head did not arrive within {}",
                            humantime::format_duration(t.request_head)
                        ),
                        None,
                    ))
                }
                Err(_) => {
                    sh.metrics.client_gone_mid_head.inc();
                    return Read::Closed;
                }
            }
        }
    }

    /// Handles one request whose head was read; counts and logs it.
    async fn serve(
        &mut self,
        sh: &Shared,
        state: &State,
        head: &RequestHead,
        started: Instant,
    ) -> Next {
        let mut out = Outcome::new();
        let next = match self.handle(sh, state, head, &mut out).await {
            Ok(next) => next,
            Err(err) => {
                // Nothing of a response went out yet: answer it. The connection can stay
                // only when the request had no body left unread.
                let clean = http1::request_body(head).is_ok_and(|b| b == http1::ReqBody::None)
                    && head.wants_keep_alive()
                    && !matches!(err.code, Code::BadRequest | Code::RequestTimeout);
                if out.route.is_none() {
                    out.route = err.route.as_deref().and_then(|n| state.route_named(n));
                }
                let keep = clean && !self.shutting_down;
                self.answer(err, keep, &mut out).await;
                if keep && out.status != 0 {
                    Next::KeepAlive
                } else {
                    Next::Close
                }
            }
        };
        self.finish(sh, state, Some(head), &out, started);
        next
    }

    /// Routes the request and does what the plan says. `Err`: answer it ourselves.
    async fn handle<'s>(
        &mut self,
        sh: &Shared,
        state: &'s State,
        head: &RequestHead,
        out: &mut Outcome<'s>,
    ) -> Result<Next, ProxyError> {
        let framing = http1::request_body(head)
            .map_err(|why| ProxyError::new(Code::BadRequest, why, None))?;
        if crate::telemetry::tracing_enabled() {
            out.span = Some(crate::telemetry::request_span(head));
        }
        let mut parsed = target::parse(head)?;
        if let Some(inside) = &self.inside {
            parsed = inside.tunnel.retarget(parsed, head)?;
        }
        if out.span.is_some() || tracing::enabled!(target: "tollgate::access", tracing::Level::INFO)
        {
            out.dest = Some((parsed.target.host.clone(), parsed.target.port));
        }
        if rewrite::via_names(head, &sh.pseudonym) {
            return Err(ProxyError::new(
                Code::ForwardingLoop,
                format!(
                    "forwarding loop: this request already passed through this proxy ({})",
                    sh.pseudonym
                ),
                None,
            ));
        }
        let path = match parsed.path {
            "*" => std::borrow::Cow::Borrowed("*"),
            p => tollgate_rules::path::normalize(p, state.config.path_normalization).map_err(
                |e| ProxyError::new(Code::BadRequest, format!("bad request path: {e}"), None),
            )?,
        };
        // ---- callers (issue 14): who is asking, before routing; a CONNECT authenticates
        // its whole tunnel here. The logic is in `crate::callers`; this only calls it.
        if let Some(inside) = &self.inside {
            out.caller.clone_from(&inside.caller);
        } else if let Some(callers) = state.callers.as_ref() {
            let value = crate::callers::proxy_authorization(http1::Head::values(
                head,
                "proxy-authorization",
            ))
            .map_err(|e| callers.refusal(&e))?;
            out.caller = callers
                .authenticate(value)
                .await
                .map_err(|e| callers.refusal(&e))?;
        }
        // ---- end callers
        let facts = RequestFacts {
            host: &parsed.target.host,
            port: parsed.target.port,
            scheme: parsed.target.scheme,
            path: if parsed.target.form == target::Form::Connect {
                "/"
            } else {
                &path
            },
            method: head.method(),
            client: self.client.map(|c| c.ip()),
            caller: out.caller.as_ref().map(|c| c.name()),
        };
        let plan = plan(state, &parsed.target, &facts)?;
        out.route = Some(plan.route);
        match plan.step {
            Step::Tunnel => {
                out.action = ActionLabel::Tunnel;
                self.tunnel(sh, state, &plan, head, out).await
            }
            Step::Intercept => {
                out.action = ActionLabel::Tunnel;
                self.intercept(sh, state, &plan, &parsed.target, head, out)
                    .await
            }
            Step::Forward => {
                out.action = match plan.route.injection() {
                    Some(_) => ActionLabel::Inject,
                    None => ActionLabel::Pass,
                };
                self.forward(sh, state, &plan, head, &path, parsed.query, framing, out)
                    .await
            }
        }
    }

    /// Writes our JSON error for `err` (unless the client is gone) and records it.
    async fn answer(&mut self, err: ProxyError, keep_alive: bool, out: &mut Outcome<'_>) {
        let mut bytes = std::mem::take(&mut self.out);
        bytes.clear();
        // A 407 says which schemes it accepts (`callers`).
        let extra: Vec<String> = match (&err.code, self.state.as_ref()) {
            (Code::ProxyAuthRequired, Some(s)) => s
                .callers
                .as_ref()
                .map(|c| c.challenge_lines())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        err.write_response(keep_alive, &extra, &mut bytes);
        let wrote = io::write_all(&mut self.down, &bytes, Duration::from_secs(10)).await;
        self.out = bytes;
        if wrote.is_ok() {
            out.status = err.code.status();
            out.bytes_out = self.out.len() as u64;
        }
        out.source = Source::Tollgate;
        if err.code.is_refusal() {
            out.action = ActionLabel::Deny;
        }
        out.error = Some(err);
    }

    /// Counts the request and writes its access-log line.
    fn finish(
        &self,
        sh: &Shared,
        state: &State,
        head: Option<&RequestHead>,
        out: &Outcome<'_>,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        let series = out
            .route
            .map_or(&state.default_route.metrics, |r| &r.metrics);
        let series = if out.route.is_none() && out.error.is_some() {
            &sh.metrics.unrouted
        } else {
            series
        };
        series.requests(out.action, out.status, out.source).inc();
        series
            .last_status
            .store(out.status, std::sync::atomic::Ordering::Relaxed);
        series.request_duration.observe(elapsed.as_secs_f64());
        if let Some(u) = out.upstream {
            series.upstream_duration.observe(u.as_secs_f64());
        }
        if let Some(err) = &out.error {
            if err.code == Code::ConnectNotAllowed {
                sh.metrics
                    .tunnels
                    .with_label_values(&[series.route(), "refused"])
                    .inc();
            }
            if err.code.status() >= 500 || err.detail.is_some() {
                tracing::warn!(
                    route = series.route(),
                    code = err.code.as_str(),
                    detail = err.detail.as_deref().unwrap_or(""),
                    "{}",
                    err.message
                );
            }
        }
        if let Some(span) = &out.span {
            if let Some((host, port)) = &out.dest {
                span.record("server.address", host.as_str());
                span.record("server.port", i64::from(*port));
            }
            span.record("tollgate.route", series.route());
            if let Some(c) = &out.caller {
                span.record("tollgate.caller", c.name());
            }
            span.record("tollgate.action", out.action.as_str());
            if let Some(i) = &self.inside {
                span.record("tollgate.tunnel", i.tunnel.mode());
            }
            span.record("tollgate.replayed", out.replayed);
            span.record("http.response.status_code", i64::from(out.status));
            if out.source == Source::Upstream {
                span.record("upstream.status_code", i64::from(out.status));
            }
            if out.status >= 500 || out.status == 0 {
                span.record("otel.status_code", "ERROR");
            }
        }
        if tracing::enabled!(target: "tollgate::access", tracing::Level::INFO) {
            crate::access::log(&crate::access::Record {
                client: self.client,
                route: series.route(),
                action: out.action.as_str(),
                caller: out.caller.as_ref().map(|c| c.name()),
                tunnel: self.inside.as_ref().map(|i| i.tunnel.mode()),
                head,
                host: out.dest.as_ref().map_or("-", |d| d.0.as_str()),
                port: out.dest.as_ref().map_or(0, |d| d.1),
                status: out.status,
                upstream_status: if out.source == Source::Upstream {
                    out.status
                } else {
                    0
                },
                source: out.source.as_str(),
                bytes_in: out.bytes_in,
                bytes_out: out.bytes_out,
                duration: elapsed,
                upstream: out.upstream,
                replayed: out.replayed,
                error: out.error.as_ref().map(|e| e.code.as_str()),
            });
        }
    }

    /// Gives the pinned upstream connection, if any, to pingora's shared pool.
    pub fn release_upstream(&mut self, sh: &Shared) {
        if let Some(p) = self.up.take() {
            p.release(&sh.connector);
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn head_error(e: HeadError) -> ProxyError {
    ProxyError::new(
        Code::BadRequest,
        format!("bad request: {}", e.reason()),
        None,
    )
}

impl State {
    /// The compiled route named `name` (for errors that name their route).
    pub fn route_named(&self, name: &str) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// The status line for a client of `version` (HTTP/1.0 clients get an HTTP/1.0 line for
/// `200 Connection Established`, as they expect).
fn status_line(version: Version, rest: &str) -> String {
    match version {
        Version::Http10 => format!("HTTP/1.0 {rest}\r\n\r\n"),
        Version::Http11 => format!("HTTP/1.1 {rest}\r\n\r\n"),
    }
}

mod tunnel_step;
