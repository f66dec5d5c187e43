//! The token metrics (STYLE habit 9), registered on the registry given to
//! [`TokenCache::new`](super::TokenCache::new). Labels are bounded: the credential
//! name (from the config) and fixed value sets; never a client id, token or secret.
//!
//! - `tollgate_token_requests_total{credential,outcome}`: requests sent to the token
//!   endpoint; `outcome` is `success`, `error` (an error status other than the
//!   permanent ones, or an unusable body), `permanent_error` (`invalid_client`,
//!   `unauthorized_client`, 401) or `network_error` (unreachable, timeout).
//! - `tollgate_token_request_duration_seconds{credential}`: their duration.
//! - `tollgate_token_cache_total{credential,result}`: how requests got their token:
//!   `hit` (a cached token), `wait` (joined a fetch in flight), `miss` (started a fetch,
//!   or got the remembered failure). Counted by [`TokenCache::cached`] on a hit and by
//!   [`TokenCache::get`] otherwise, so a request that tries `cached` then `get` counts once.
//! - `tollgate_token_expiry_seconds{credential}`: the Unix time, in seconds, at which
//!   the cached token expires; 0 when none is cached. Seconds left:
//!   `tollgate_token_expiry_seconds - time()` in PromQL.
//!
//! Per-credential handles are resolved once ([`CredMetrics`]), so the hot path
//! increments an atomic without hashing labels.
//!
//! [`TokenCache::cached`]: super::TokenCache::cached
//! [`TokenCache::get`]: super::TokenCache::get

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};

use super::error::Outcome;

const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "wait"];

/// The metric families, registered once per cache.
pub(crate) struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    cache: IntCounterVec,
    expiry: GaugeVec,
}

/// One credential's handles.
pub(crate) struct CredMetrics {
    pub hit: IntCounter,
    pub miss: IntCounter,
    pub wait: IntCounter,
    outcomes: [IntCounter; 4],
    pub duration: Histogram,
    pub expiry: Gauge,
}

impl CredMetrics {
    pub(crate) fn outcome(&self, outcome: Outcome) -> &IntCounter {
        let i = match outcome {
            Outcome::Success => 0,
            Outcome::Error => 1,
            Outcome::PermanentError => 2,
            Outcome::NetworkError => 3,
        };
        &self.outcomes[i]
    }
}

impl Metrics {
    /// Creates the families (registered later, once every credential was built).
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_token_requests_total",
                "Requests sent to token endpoints, by credential and outcome.",
            ),
            &["credential", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_token_request_duration_seconds",
                "Duration of token endpoint requests.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["credential"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "tollgate_token_cache_total",
                "Token lookups by requests: hit (cached), wait (joined a fetch), miss.",
            ),
            &["credential", "result"],
        )?;
        let expiry = GaugeVec::new(
            Opts::new(
                "tollgate_token_expiry_seconds",
                "Unix time at which the cached token expires (0: none cached).",
            ),
            &["credential"],
        )?;
        Ok(Metrics {
            requests,
            duration,
            cache,
            expiry,
        })
    }

    /// Registers the families on `registry` (fails if they already are).
    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.cache.clone()))?;
        registry.register(Box::new(self.expiry.clone()))?;
        Ok(())
    }

    /// Resolves (and so creates, at zero) every series of one credential.
    pub(crate) fn credential(&self, name: &str) -> CredMetrics {
        let cache = |result: &str| self.cache.with_label_values(&[name, result]);
        let outcome = |o: Outcome| self.requests.with_label_values(&[name, o.as_str()]);
        CredMetrics {
            hit: cache("hit"),
            miss: cache("miss"),
            wait: cache("wait"),
            outcomes: Outcome::ALL.map(outcome),
            duration: self.duration.with_label_values(&[name]),
            expiry: self.expiry.with_label_values(&[name]),
        }
    }

    /// Drops every series of a credential that is no longer configured.
    pub(crate) fn remove(&self, name: &str) {
        for result in CACHE_RESULTS {
            let _ = self.cache.remove_label_values(&[name, result]);
        }
        for o in Outcome::ALL {
            let _ = self.requests.remove_label_values(&[name, o.as_str()]);
        }
        let _ = self.duration.remove_label_values(&[name]);
        let _ = self.expiry.remove_label_values(&[name]);
    }
}
