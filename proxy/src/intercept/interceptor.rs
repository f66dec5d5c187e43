//! [`Interceptor`]: what the CONNECT path holds. One per process (an `Arc`), given the
//! loaded CA by [`Interceptor::install`] at start-up and on every reload; it keeps the
//! leaf cache as long as the CA and `leaf_lifetime` stay the same.

use super::authority::{Authority, IssueError};
use super::cache::{LeafCache, Lookup, CAPACITY};
use super::check::Prepared;
use super::constraints::LeafName;
use super::metrics::{HandshakeOutcome, InterceptMetrics, LeafOutcome};
use super::plan::{self, ConnectPlan};
use super::tls::{self, HandshakeFailure, ServedLeaf, SniCheck};
use arc_swap::ArcSwapOption;
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tollgate_rules::Route;

/// Why no `ServerConfig` can be had for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafError {
    /// No `interception` block: TLS inside intercepted tunnels is closed.
    NoCa,
    /// The CONNECT host is empty.
    BadHost,
    /// The CA may not or cannot sign for the host now.
    Issue(IssueError),
}

impl fmt::Display for LeafError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeafError::NoCa => f.write_str(
                "TLS inside the tunnel cannot be terminated: no `interception` CA is configured",
            ),
            LeafError::BadHost => f.write_str("the CONNECT host is empty"),
            LeafError::Issue(e) => e.fmt(f),
        }
    }
}

/// Why [`Interceptor::accept`] gave up on a tunnel. Already logged and counted.
#[derive(Debug)]
pub enum AcceptError {
    /// No leaf for the host.
    Leaf(LeafError),
    /// The handshake failed.
    Handshake(HandshakeFailure),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::Leaf(e) => e.fmt(f),
            AcceptError::Handshake(e) => e.fmt(f),
        }
    }
}

/// A terminated tunnel: serve HTTP/1 on `stream`.
pub struct Accepted<S> {
    /// The decrypted stream.
    pub stream: TlsStream<S>,
    /// The SNI against the CONNECT host: on [`SniCheck::Mismatch`] answer every request
    /// with 421 `misdirected` and forward nothing.
    pub sni: SniCheck,
}

struct Installed {
    authority: Arc<Authority>,
    cache: LeafCache<ServedLeaf>,
}

pub struct Interceptor {
    current: ArcSwapOption<Installed>,
    metrics: InterceptMetrics,
    provider: Arc<rustls::crypto::CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    capacity: usize,
}

impl fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interceptor")
            .field(
                "authority",
                &self
                    .current
                    .load()
                    .as_ref()
                    .map(|i| Arc::clone(&i.authority)),
            )
            .finish_non_exhaustive()
    }
}

impl Interceptor {
    /// An interceptor with no CA yet, its metrics registered on `registry`.
    pub fn new(registry: &prometheus::Registry) -> Result<Arc<Interceptor>, String> {
        Interceptor::with_capacity(registry, CAPACITY)
    }

    /// The same with another leaf cache bound (tests, benches).
    pub fn with_capacity(
        registry: &prometheus::Registry,
        capacity: usize,
    ) -> Result<Arc<Interceptor>, String> {
        Ok(Arc::new(Interceptor {
            current: ArcSwapOption::empty(),
            metrics: InterceptMetrics::new(registry).map_err(|e| format!("metrics: {e}"))?,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            sessions: ServerSessionMemoryCache::new(tls::SESSION_CACHE_ENTRIES),
            capacity,
        }))
    }

    /// Serve with a newly loaded config's CA (or none). Leaves cached for the same CA
    /// and `leaf_lifetime` are kept; for any other CA they are dropped.
    pub fn install(&self, prepared: Prepared) {
        let Some(authority) = prepared.into_authority() else {
            if self.current.swap(None).is_some() {
                tracing::info!(
                    "interception CA removed: TLS inside intercepted tunnels is now closed"
                );
            }
            self.metrics.ca_expiry.set(0.0);
            self.metrics.cache_hosts.set(0);
            return;
        };
        if let Some(old) = self.current.load().as_ref() {
            if old.authority.same_as(&authority) {
                return;
            }
        }
        let expiry = authority
            .validity()
            .not_after
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        tracing::info!(
            ca = authority.subject(),
            file = %authority.cert_file().display(),
            expires = %humantime::format_rfc3339_seconds(authority.validity().not_after),
            "interception CA loaded"
        );
        self.metrics.ca_expiry.set(expiry.as_secs_f64());
        self.metrics.cache_hosts.set(0);
        self.current.store(Some(Arc::new(Installed {
            authority,
            cache: LeafCache::new(self.capacity),
        })));
    }

    /// The CA in use, if any.
    pub fn authority(&self) -> Option<Arc<Authority>> {
        self.current
            .load()
            .as_ref()
            .map(|i| Arc::clone(&i.authority))
    }

    /// What a CONNECT for `host` to `route` would do now, and why.
    pub fn plan(&self, route: &Route, host: &str) -> ConnectPlan {
        plan::plan(route, host, self.authority().as_deref())
    }

    /// The `ServerConfig` for an intercepted tunnel to `host` (the CONNECT host, not the
    /// SNI), from the cache or made now. Counted in `tollgate_interception_leaves_total`.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, LeafError> {
        self.server_config_at(host, SystemTime::now())
    }

    pub(super) fn server_config_at(
        &self,
        host: &str,
        now: SystemTime,
    ) -> Result<Arc<ServerConfig>, LeafError> {
        let guard = self.current.load();
        let Some(installed) = guard.as_ref() else {
            return Err(LeafError::NoCa);
        };
        let name = LeafName::parse(host).ok_or(LeafError::BadHost)?;
        let key = name.to_string();
        let authority = &installed.authority;
        if let Err(why) = authority.may_sign(&name) {
            self.metrics.leaf(LeafOutcome::Refused);
            return Err(LeafError::Issue(IssueError::NotPermitted(why)));
        }
        let made = installed.cache.get_or_make(
            &key,
            now,
            || {
                let issued = authority.issue(&name, now).map_err(LeafError::Issue)?;
                ServedLeaf::new(
                    issued,
                    authority.chain(),
                    &self.provider,
                    &self.sessions,
                    now,
                )
                .map_err(|e| LeafError::Issue(IssueError::Sign(e)))
            },
            || self.metrics.leaf(LeafOutcome::Evicted),
        );
        self.metrics
            .cache_hosts
            .set(i64::try_from(installed.cache.len()).unwrap_or(i64::MAX));
        match made {
            Ok((leaf, lookup)) => {
                self.metrics.leaf(match lookup {
                    Lookup::Hit => LeafOutcome::Hit,
                    Lookup::Issued => LeafOutcome::Issued,
                    Lookup::Renewed => LeafOutcome::Renewed,
                });
                if lookup != Lookup::Hit {
                    tracing::debug!(host = key, not_after = %humantime::format_rfc3339_seconds(leaf.validity.not_after), "leaf certificate issued");
                }
                Ok(Arc::clone(&leaf.config))
            }
            Err(e) => {
                self.metrics.leaf(match e {
                    LeafError::Issue(IssueError::NotPermitted(_)) => LeafOutcome::Refused,
                    _ => LeafOutcome::Failed,
                });
                Err(e)
            }
        }
    }

    /// Counts a tunnel that never reached a handshake: nothing arrived after the 200
    /// (`timeout`), or bytes that are neither HTTP nor TLS (`failed`).
    pub fn count(&self, route: &str, outcome: HandshakeOutcome) {
        self.metrics.handshake(route, outcome);
    }

    /// Terminates TLS on an intercepted tunnel: `stream` is the client connection after
    /// the 200, its first byte peeked (a ClientHello, [`tls::classify`]) but not consumed.
    /// Bounded by `timeout` ([`tls::HANDSHAKE_TIMEOUT`]). Every outcome is counted in
    /// `tollgate_interception_handshakes_total{route,outcome}`; failures are logged here.
    pub async fn accept<S>(
        &self,
        route: &str,
        host: &str,
        stream: S,
        timeout: Duration,
    ) -> Result<Accepted<S>, AcceptError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = match self.server_config(host) {
            Ok(c) => c,
            Err(e) => {
                let outcome = match e {
                    LeafError::NoCa => HandshakeOutcome::NoCa,
                    _ => HandshakeOutcome::Refused,
                };
                self.metrics.handshake(route, outcome);
                tracing::warn!(route, host, "TLS inside an intercepted tunnel closed: {e}");
                return Err(AcceptError::Leaf(e));
            }
        };
        match tls::handshake(config, stream, timeout).await {
            Ok(stream) => {
                self.metrics.handshake(route, HandshakeOutcome::Ok);
                let sni = tls::check_sni(host, stream.get_ref().1.server_name());
                Ok(Accepted { stream, sni })
            }
            Err(failure) => {
                let outcome = match failure {
                    HandshakeFailure::Timeout => HandshakeOutcome::Timeout,
                    HandshakeFailure::Untrusted(_) => HandshakeOutcome::Untrusted,
                    HandshakeFailure::Failed(_) => HandshakeOutcome::Failed,
                };
                self.metrics.handshake(route, outcome);
                tracing::info!(route, host, "intercepted tunnel closed: {failure}");
                Err(AcceptError::Handshake(failure))
            }
        }
    }
}
