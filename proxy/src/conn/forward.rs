//! Forwarding one request: resolve, credential, upstream connection, send, response
//! head (1xx handled), the 401 replay, the relay back, and keeping the connection.

use super::io::{self, Broke, HeadFail, SendError};
use super::pinned::{Key, Pinned};
use super::{Conn, Next, Outcome, Shared};
use crate::auth::{dpop, TokenData};
use crate::errors::{dial_failed, Code, ProxyError};
use crate::http1::{self, Head, ReqBody, RequestHead, RespBody, ResponseHead, Version};
use crate::metrics::Source;
use crate::plan::Plan;
use crate::replay;
use crate::rewrite::{self, Added, Reply};
use crate::route::Injection;
use crate::state::State;
use crate::upstream::{self, build_peer};
use pingora::protocols::Stream;
use pingora::upstreams::peer::Peer;
use std::net::SocketAddr;
use std::time::Instant;
use tollgate_rules::Scheme;

/// The largest 401 body read and dropped to keep its connection for the replay.
const DISCARD_401: u64 = 64 * 1024;

/// Methods a failed reused connection may be retried for (RFC 9110 §9.2.2).
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

/// How a response head was awaited.
enum Awaited {
    Head(ResponseHead),
    /// The upstream failed before answering.
    Failed(HeadFail),
    /// The upstream switched protocols though we never asked (RFC 9110 §15.2.2).
    Unsolicited101,
    /// The client went away while we relayed an interim response.
    ClientGone,
}

/// What the request head needs besides the plan.
struct HeadParts<'a> {
    head: &'a RequestHead,
    plan: &'a Plan<'a, 'a>,
    path: &'a str,
    query: &'a str,
    via: &'a str,
    trace: Option<(&'a str, Option<&'a str>)>,
}

impl HeadParts<'_> {
    fn write(&self, out: &mut Vec<u8>, credential: Option<&[u8]>, dpop: Option<&[u8]>) {
        rewrite::request_head(
            out,
            self.head,
            self.plan,
            self.path,
            self.query,
            &Added {
                via: self.via,
                trace: self.trace,
                credential,
                dpop,
            },
        );
    }

    /// Where the request goes, for a DPoP proof's `htu` and the nonce's origin.
    fn target(&self) -> dpop::Target<'_> {
        let d = &self.plan.dial;
        dpop::Target {
            https: d.scheme == Scheme::Https,
            host: d.host,
            port: d.port,
            path: self.path,
        }
    }

    /// The DPoP proof for `token` on a DPoP-bound route (`None` on other routes).
    fn proof(&self, inj: &Injection, token: &TokenData) -> Result<Option<String>, ProxyError> {
        if !inj.dpop {
            return Ok(None);
        }
        let route = self.plan.route.label();
        let Some(b) = token.dpop() else {
            return Err(unavailable(
                format!(
                    "credential {:?}: the token is not bound to a DPoP key",
                    inj.credential
                ),
                route,
            ));
        };
        b.key
            .request_proof(self.head.method(), &self.target(), &b.ath)
            .map(Some)
            .map_err(|why| unavailable(format!("credential {:?}: {why}", inj.credential), route))
    }
}

/// Identities of the route's custom trust and client certificate (0: none): a pinned
/// connection made with others never serves this route.
fn peer_ids(plan: &Plan<'_, '_>) -> (usize, usize) {
    let trust = plan
        .route
        .trust
        .as_ref()
        .map_or(0, |t| std::sync::Arc::as_ptr(t).cast::<u8>() as usize);
    let client_cert = plan
        .route
        .injection()
        .and_then(|i| i.client_cert.as_ref())
        .map_or(0, |c| std::sync::Arc::as_ptr(c) as usize);
    (trust, client_cert)
}

fn unavailable(msg: impl Into<String>, route: Option<&str>) -> ProxyError {
    ProxyError::new(Code::TokenUnavailable, msg, route)
}

fn not_a_header_value(inj: &Injection, route: Option<&str>) -> ProxyError {
    unavailable(
        format!(
            "credential {:?}: the token endpoint returned a token that is not a valid header value",
            inj.credential
        ),
        route,
    )
}

impl Conn {
    /// Forwards a request on `plan`; `Err` before any response byte went to the client.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward<'s>(
        &mut self,
        sh: &Shared,
        state: &'s State,
        plan: &Plan<'s, '_>,
        head: &RequestHead,
        path: &str,
        query: &str,
        framing: ReqBody,
        out: &mut Outcome<'s>,
    ) -> Result<Next, ProxyError> {
        let route = plan.route;
        let name = route.name.as_str();
        let label = route.label();
        let t = route.timeouts;
        let addr = self.resolve(sh, state, plan).await?;
        let trace_headers = out.span.as_ref().map(crate::telemetry::trace_headers);
        let parts = HeadParts {
            head,
            plan,
            path,
            query,
            via: &sh.via,
            trace: trace_headers
                .as_ref()
                .map(|(p, s)| (p.as_str(), s.as_deref())),
        };
        let mut token_id = self.write_head(sh, &parts, false).await?;
        let head_len = self.out.len();

        if framing != ReqBody::None
            && head.version == Version::Http11
            && rewrite::expects_continue(head)
            && io::write_all(&mut self.down, b"HTTP/1.1 100 Continue\r\n\r\n", t.read)
                .await
                .is_err()
        {
            return Ok(Next::Close);
        }

        let replays = route.injection().is_some_and(|i| i.replay_on_401);
        let (mut up, mut reused, mut hash) = self.connect(sh, plan, addr).await?;
        let limit = if replays || reused {
            state.config.replay_buffer
        } else {
            0
        };
        let sent_at = Instant::now();
        let sent = io::send_request(
            &mut self.down,
            &mut self.dbuf,
            &mut up,
            &mut self.out,
            framing,
            &mut self.body,
            limit,
            t.read,
        )
        .await;
        self.out.truncate(head_len);
        let (sent_bytes, kept_all, mut awaited) = match sent {
            Ok(s) => {
                out.bytes_in = s.bytes;
                (
                    s.bytes,
                    s.kept_all,
                    self.await_head(&mut up, t.read, head.version).await,
                )
            }
            Err(SendError::ClientGone) => {
                sh.metrics.client_gone_mid_body.inc();
                return Ok(Next::Close);
            }
            Err(SendError::BadBody(why)) => {
                return Err(ProxyError::new(
                    Code::BadRequest,
                    format!("bad request body: {why}"),
                    Some(name),
                ))
            }
            Err(SendError::Upstream) => (
                0,
                framing == ReqBody::None,
                Awaited::Failed(HeadFail::ClosedEarly),
            ),
        };
        let resendable = kept_all || framing == ReqBody::None;
        let _ = sent_bytes;

        // A reused connection the upstream had closed: once more on a fresh one.
        if reused
            && resendable
            && idempotent(head.method())
            && matches!(awaited, Awaited::Failed(HeadFail::ClosedEarly))
        {
            let (fresh, h) = self.dial(sh, plan, addr, false).await?;
            up = fresh;
            hash = h;
            reused = false;
            awaited = self.resend(&mut up, head_len, t.read, head.version).await;
        }
        let _ = reused;
        let mut resp = self.head_or_error(awaited, label)?;

        // 401 on an inject route: replay once with a fresh token.
        let mut replayed = false;
        if resp.status == 401 {
            if let Some(inj) = route.injection() {
                // A DPoP nonce challenge: the token is fine, the proof lacked the nonce.
                let challenge = inj
                    .dpop
                    .then(|| replay::dpop_nonce_challenge(&resp))
                    .flatten();
                let usable = challenge.is_some_and(|n| self.remember_nonce(sh, inj, &parts, n));
                let outcome = replay::decide(replay::Facts {
                    replay_on_401: inj.replay_on_401,
                    already_replayed: false,
                    body_truncated: !resendable,
                    insufficient_scope: replay::insufficient_scope(&resp),
                    dpop_nonce: challenge.is_some(),
                    bad_nonce: challenge.is_some() && !usable,
                });
                sh.metrics
                    .replays
                    .with_label_values(&[name, outcome.as_str()])
                    .inc();
                if matches!(
                    outcome,
                    replay::Outcome::Replayed | replay::Outcome::DpopNonce
                ) {
                    let (framing401, _) = http1::response_body(&resp, head.method())
                        .unwrap_or((RespBody::Close, true));
                    let reusable = resp.allows_reuse()
                        && io::discard_body(
                            &mut up,
                            &mut self.ubuf,
                            framing401,
                            DISCARD_401,
                            t.read,
                        )
                        .await
                        && self.ubuf.is_empty();
                    let fresh = outcome == replay::Outcome::Replayed;
                    if fresh {
                        let invalidated =
                            token_id.is_some_and(|id| sh.tokens.invalidate_id(&inj.credential, id));
                        tracing::info!(route = name, credential = %inj.credential, invalidated, outcome = outcome.as_str(), "upstream answered 401; replaying with a fresh token");
                    } else {
                        tracing::info!(route = name, credential = %inj.credential, outcome = outcome.as_str(), "upstream asked for a DPoP nonce; sending again with it");
                    }
                    token_id = self.write_head(sh, &parts, fresh).await?;
                    let head_len = self.out.len();
                    if !reusable {
                        self.ubuf.clear();
                        let (fresh, h) = self.dial(sh, plan, addr, false).await?;
                        up = fresh;
                        hash = h;
                    }
                    let awaited = self.resend(&mut up, head_len, t.read, head.version).await;
                    resp = self.head_or_error(awaited, label)?;
                    replayed = true;
                    if resp.status == 401 {
                        sh.metrics
                            .replays
                            .with_label_values(&[name, replay::Outcome::Second401.as_str()])
                            .inc();
                        tracing::info!(route = name, credential = %inj.credential, outcome = "second_401", "upstream answered 401 to the replay too; passed to the client");
                    }
                } else {
                    tracing::info!(route = name, credential = %inj.credential, outcome = outcome.as_str(), "upstream answered 401; passed to the client");
                }
            }
        }
        let _ = token_id;
        // A server may send the next nonce with any response (RFC 9449 §8.2).
        if let Some(inj) = route.injection().filter(|i| i.dpop) {
            if let Some(n) = resp.values("dpop-nonce").next() {
                self.remember_nonce(sh, inj, &parts, n);
            }
        }
        out.replayed = replayed;
        out.upstream = Some(sent_at.elapsed());

        // The response, back to the client.
        let (body, both_lengths) = http1::response_body(&resp, head.method()).map_err(|why| {
            ProxyError::new(
                Code::UpstreamProtocol,
                "the upstream's response is malformed",
                Some(name),
            )
            .with_detail(why)
        })?;
        let dechunk = body == RespBody::Chunked && head.version == Version::Http10;
        let keep_alive =
            head.wants_keep_alive() && body != RespBody::Close && !dechunk && !self.shutting_down;
        rewrite::response_head(
            &mut self.out,
            &resp,
            &Reply {
                keep_alive,
                client: head.version,
                drop_length: both_lengths && body == RespBody::Chunked,
                dechunk,
                via: &sh.via,
            },
        );
        out.status = resp.status;
        out.source = Source::Upstream;
        let relayed = io::relay_response(
            &mut up,
            &mut self.ubuf,
            &mut self.down,
            &mut self.out,
            body,
            dechunk,
            t.read,
        )
        .await;
        match relayed {
            Ok(n) => out.bytes_out = n,
            Err(Broke::Client) => {
                sh.metrics.client_gone_mid_response.inc();
                return Ok(Next::Close);
            }
            Err(Broke::Upstream) => {
                tracing::debug!(route = name, "the upstream broke off its response body");
                return Ok(Next::Close);
            }
        }
        // Keep the upstream connection for this client's next request when it can carry one.
        if resp.allows_reuse() && !both_lengths && body != RespBody::Close && self.ubuf.is_empty() {
            self.up = Some(Pinned {
                stream: up,
                key: self.key(plan, addr),
                hash,
                idle_timeout: t.upstream_idle,
                since: tokio::time::Instant::now(),
            });
        } else {
            self.ubuf.clear();
        }
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// Remembers the nonce the upstream sent, on the cached token's DPoP key. `false` when
    /// it is not a nonce (or there is no such key).
    fn remember_nonce(
        &self,
        sh: &Shared,
        inj: &Injection,
        parts: &HeadParts<'_>,
        nonce: &[u8],
    ) -> bool {
        let origin = parts.target().origin();
        let remember = |t: &TokenData| {
            t.dpop()
                .is_some_and(|b| b.key.remember_nonce(&origin, nonce))
        };
        match &inj.handle {
            Some(h) => sh.tokens.hit(h, remember).unwrap_or(false),
            None => false,
        }
    }

    /// Writes the upstream head into `self.out`, with the route's credential: a cache hit
    /// without awaiting, else (or when `fresh`, after a 401) the single-flight fetch.
    /// Returns the id of the token sent.
    async fn write_head(
        &mut self,
        sh: &Shared,
        parts: &HeadParts<'_>,
        fresh: bool,
    ) -> Result<Option<u64>, ProxyError> {
        let name = parts.plan.route.label();
        let Some(inj) = parts.plan.route.injection() else {
            parts.write(&mut self.out, None, None);
            return Ok(None);
        };
        if !fresh {
            if let Some(handle) = &inj.handle {
                let out = &mut self.out;
                let hit = sh.tokens.hit_at(handle, tokio::time::Instant::now(), |t| {
                    let v = t
                        .value_bytes(&inj.prefix)
                        .ok_or_else(|| not_a_header_value(inj, name))?;
                    let proof = parts.proof(inj, t)?;
                    parts.write(out, Some(&v), proof.as_ref().map(|p| p.as_bytes()));
                    Ok(t.id())
                });
                if let Some(id) = hit {
                    return id.map(Some);
                }
            }
        }
        let token = sh
            .tokens
            .get(&inj.credential)
            .await
            .map_err(|e| unavailable(e.to_string(), name))?;
        let value = token
            .value_bytes(&inj.prefix)
            .ok_or_else(|| not_a_header_value(inj, name))?;
        let proof = parts.proof(inj, &token)?;
        parts.write(
            &mut self.out,
            Some(&value),
            proof.as_ref().map(|p| p.as_bytes()),
        );
        Ok(Some(token.id()))
    }

    /// The address to dial for `plan`, checked against the private-address rule and our
    /// own listeners. The last answer is remembered per connection.
    pub(super) async fn resolve(
        &mut self,
        sh: &Shared,
        state: &State,
        plan: &Plan<'_, '_>,
    ) -> Result<SocketAddr, ProxyError> {
        let host = plan.dial.host;
        let name = plan.route.label();
        let allow = state.config.allow_private_networks;
        if let Some((h, ip, until)) = &self.dns {
            if h == host
                && tokio::time::Instant::now() < *until
                && (allow || !upstream::is_private(*ip))
            {
                let addr = SocketAddr::new(*ip, plan.dial.port);
                if !sh.own.contains(addr) {
                    return Ok(addr);
                }
            }
        }
        let (addrs, until) = sh.dns.resolve(host).await.map_err(|e| {
            ProxyError::new(
                Code::UpstreamUnreachable,
                format!("cannot resolve {host}"),
                name,
            )
            .with_detail(e)
        })?;
        let addr = upstream::choose_addr(&addrs, plan.dial.port, allow, &sh.own, host, name)?;
        self.dns = Some((host.to_owned(), addr.ip(), until));
        Ok(addr)
    }

    fn key(&self, plan: &Plan<'_, '_>, addr: SocketAddr) -> Key {
        let (trust, client_cert) = peer_ids(plan);
        Key {
            addr,
            tls: plan.dial.scheme == Scheme::Https,
            sni: plan.dial.host.to_owned(),
            trust,
            client_cert,
        }
    }

    /// The pinned connection when it goes where `plan` goes; else one from pingora's pool
    /// or a new one (the pinned one, if any, goes to the pool).
    async fn connect(
        &mut self,
        sh: &Shared,
        plan: &Plan<'_, '_>,
        addr: SocketAddr,
    ) -> Result<(Stream, bool, u64), ProxyError> {
        if let Some(p) = self.up.take() {
            let (trust, client_cert) = peer_ids(plan);
            if p.key.addr == addr
                && p.key.tls == (plan.dial.scheme == Scheme::Https)
                && p.key.sni == plan.dial.host
                && p.key.trust == trust
                && p.key.client_cert == client_cert
            {
                return Ok((p.stream, true, p.hash));
            }
            p.release(&sh.connector);
        }
        let (stream, hash, reused) = self.dial_peer(sh, plan, addr, true).await?;
        Ok((stream, reused, hash))
    }

    /// A new connection (never one from the pool when `pool` is false).
    async fn dial(
        &mut self,
        sh: &Shared,
        plan: &Plan<'_, '_>,
        addr: SocketAddr,
        pool: bool,
    ) -> Result<(Stream, u64), ProxyError> {
        let (s, h, _) = self.dial_peer(sh, plan, addr, pool).await?;
        Ok((s, h))
    }

    async fn dial_peer(
        &mut self,
        sh: &Shared,
        plan: &Plan<'_, '_>,
        addr: SocketAddr,
        pool: bool,
    ) -> Result<(Stream, u64, bool), ProxyError> {
        let route = plan.route;
        let t = route.timeouts;
        let mut peer = build_peer(
            addr,
            plan.dial.scheme == Scheme::Https,
            plan.dial.host,
            route.trust.as_ref(),
            t.connect,
            t.read,
            t.upstream_idle,
        );
        // Part of pingora's reuse hash: pooled connections keep to their certificate.
        peer.client_cert_key = route.injection().and_then(|i| i.client_cert.clone());
        let hash = peer.reuse_hash();
        let r = if pool {
            sh.connector.get_stream(&peer).await
        } else {
            sh.connector.new_stream(&peer).await.map(|s| (s, false))
        };
        match r {
            Ok((s, reused)) => Ok((s, hash, reused)),
            Err(e) => Err(dial_failed(&e, route.label())),
        }
    }

    /// Sends the head in `self.out[..head_len]` and the kept body again, then awaits the
    /// response head.
    async fn resend(
        &mut self,
        up: &mut Stream,
        head_len: usize,
        t: std::time::Duration,
        client: Version,
    ) -> Awaited {
        self.out.truncate(head_len);
        self.out.extend_from_slice(&self.body);
        let wrote = io::write_all(up, &self.out, t).await;
        self.out.truncate(head_len);
        if wrote.is_err() {
            return Awaited::Failed(HeadFail::ClosedEarly);
        }
        self.await_head(up, t, client).await
    }

    /// The final response head: `100 Continue` dropped (we answered `Expect` ourselves),
    /// other 1xx passed to HTTP/1.1 clients, an unsolicited 101 refused.
    async fn await_head(
        &mut self,
        up: &mut Stream,
        t: std::time::Duration,
        client: Version,
    ) -> Awaited {
        loop {
            let resp = match io::read_response_head(up, &mut self.ubuf, t).await {
                Ok(r) => r,
                Err(f) => return Awaited::Failed(f),
            };
            match resp.status {
                101 => return Awaited::Unsolicited101,
                100 => continue,
                102..=199 => {
                    if client == Version::Http11 {
                        let mut bytes = Vec::new();
                        rewrite::interim_head(&mut bytes, &resp);
                        if io::write_all(&mut self.down, &bytes, t).await.is_err() {
                            return Awaited::ClientGone;
                        }
                    }
                    continue;
                }
                _ => return Awaited::Head(resp),
            }
        }
    }

    fn head_or_error(&self, a: Awaited, route: Option<&str>) -> Result<ResponseHead, ProxyError> {
        match a {
            Awaited::Head(h) => Ok(h),
            Awaited::Unsolicited101 => Err(ProxyError::new(
                Code::UpstreamProtocol,
                "the upstream answered 101 Switching Protocols to a request that asked for no upgrade",
                route,
            )),
            Awaited::ClientGone => Err(ProxyError::new(Code::BadRequest, "the client went away", route)),
            Awaited::Failed(HeadFail::TimedOut) => Err(ProxyError::new(
                Code::UpstreamTimeout,
                "the upstream did not answer in time",
                route,
            )),
            Awaited::Failed(HeadFail::Malformed(e)) => Err(ProxyError::new(
                Code::UpstreamProtocol,
                "the upstream's response head is malformed",
                route,
            )
            .with_detail(e.reason())),
            Awaited::Failed(HeadFail::ClosedEarly | HeadFail::Broken) => Err(ProxyError::new(
                Code::UpstreamUnreachable,
                "the upstream closed the connection without answering",
                route,
            )),
        }
    }
}
