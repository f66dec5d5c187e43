//! A CONNECT to a `connect: intercept` route: `200 Connection Established`, then the
//! first bytes say what is inside. Plain HTTP is served on the tunnel as it is; TLS is
//! terminated with a leaf for the CONNECT host (`crate::intercept`). Either way a new
//! [`Conn`] serves the requests inside, each through the whole pipeline, with the
//! CONNECT authority as its destination ([`Tunnel::retarget`]) and the CONNECT's caller.

use super::{io, status_line, Conn, Inside, Next, Outcome, Shared};
use crate::errors::ProxyError;
use crate::http1::RequestHead;
use crate::intercept::{classify, FirstBytes, HandshakeOutcome, Prefixed, SniCheck};
use crate::metrics::Source;
use crate::plan::Plan;
use crate::state::State;
use crate::target::{Target, Tunnel};
use std::future::Future;
use std::pin::Pin;
use tollgate_rules::Scheme;

impl Conn {
    pub(super) async fn intercept<'s>(
        &mut self,
        sh: &Shared,
        state: &'s State,
        plan: &Plan<'s, '_>,
        target: &Target,
        head: &RequestHead,
        out: &mut Outcome<'s>,
    ) -> Result<Next, ProxyError> {
        let route = plan.route;
        let name = route.name.as_str();
        let (host, port) = (target.host.clone(), target.port);
        let established = status_line(head.version, "200 Connection Established");
        out.status = 200;
        out.source = Source::Tollgate;
        if io::write_all(&mut self.down, established.as_bytes(), route.timeouts.read)
            .await
            .is_err()
        {
            return Ok(Next::Close);
        }
        // The first byte: what the client sent right behind the CONNECT head, or what it
        // sends within `timeouts.request_head`.
        let wait = state.config.timeouts.request_head;
        while self.dbuf.is_empty() {
            match io::read_more(&mut self.down, &mut self.dbuf, wait).await {
                Ok(0) => return Ok(Next::Close),
                Ok(_) => {}
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        sh.interceptor.count(name, HandshakeOutcome::Timeout);
                        tracing::info!(
                            route = name,
                            host,
                            "intercepted tunnel closed: nothing arrived within {}",
                            humantime::format_duration(wait)
                        );
                    }
                    return Ok(Next::Close);
                }
            }
        }
        let first = classify(&self.dbuf);
        let prefix = std::mem::take(&mut self.dbuf).to_vec();
        out.bytes_in += prefix.len() as u64;
        let down = std::mem::replace(&mut self.down, Box::new(io::Gone));
        let stream = Prefixed::new(prefix, down);
        let (inner, tunnel): (Box<dyn io::Io>, Tunnel) = match first {
            FirstBytes::Http => (
                Box::new(stream),
                Tunnel {
                    host,
                    port,
                    scheme: Scheme::Http,
                    sni_mismatch: None,
                },
            ),
            FirstBytes::Tls => {
                let accepted = match sh
                    .interceptor
                    .accept(name, &host, stream, crate::intercept::HANDSHAKE_TIMEOUT)
                    .await
                {
                    Ok(a) => a,
                    // Logged and counted by `accept`.
                    Err(_) => return Ok(Next::Close),
                };
                let sni_mismatch = match accepted.sni {
                    SniCheck::Mismatch(sni) => Some(sni),
                    SniCheck::Absent | SniCheck::Matches => None,
                };
                (
                    Box::new(accepted.stream),
                    Tunnel {
                        host,
                        port,
                        scheme: Scheme::Https,
                        sni_mismatch,
                    },
                )
            }
            FirstBytes::Unknown | FirstBytes::NeedMore => {
                sh.interceptor.count(name, HandshakeOutcome::Failed);
                tracing::info!(
                    route = name,
                    host,
                    "intercepted tunnel closed: it carries neither HTTP nor TLS"
                );
                return Ok(Next::Close);
            }
        };
        sh.metrics
            .tunnels
            .with_label_values(&[name, tunnel.mode()])
            .inc();
        let mut conn = Conn::new(inner, self.client);
        conn.inside = Some(Box::new(Inside {
            tunnel,
            caller: out.caller.clone(),
        }));
        conn.run_boxed(sh, self.shutdown.clone()).await;
        conn.release_upstream(sh);
        Ok(Next::Close)
    }

    /// [`Conn::run`] behind a named future type: a tunnel's connection runs inside the
    /// CONNECT's, and a recursive `async fn` needs the indirection.
    fn run_boxed<'a>(
        &'a mut self,
        sh: &'a Shared,
        shutdown: Option<pingora::server::ShutdownWatch>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if let Some(shutdown) = shutdown {
                self.run(sh, shutdown).await;
            }
        })
    }
}
