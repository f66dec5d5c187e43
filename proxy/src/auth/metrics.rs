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
//! - `tollgate_token_expiry_timestamp_seconds{credential}`: the Unix time, in seconds, at
//!   which the cached token expires; absent while no token is held (before the first,
//!   after an invalidation or a reconfiguration). Seconds left:
//!   `tollgate_token_expiry_timestamp_seconds - time()` in PromQL. A credential without
//!   a valid token: `tollgate_token_requests_total unless on (credential)
//!   (tollgate_token_expiry_timestamp_seconds > time())`.
//! - `tollgate_token_client_secret_in_use{credential}`: for credentials with
//!   `client_secret_files`, which one got the last token: 1 (the current secret) or 2
//!   (the previous one: it cannot be revoked yet). Absent for other credentials.
//! - `tollgate_token_requests_deferred_total{credential}`: token requests not sent
//!   because the endpoint's rate limit (or, through the token store, another replica)
//!   said to wait.
//! - `tollgate_token_rate_limit_remaining{credential}`: the last `X-Rate-Limit-Remaining`
//!   the endpoint sent (present once it sent one).
//!
//! Tokens minted (what an IdP bills) are `tollgate_token_requests_total{outcome="success"}`;
//! per hour, fleet-wide: `sum by (credential) (increase(tollgate_token_requests_total{outcome="success"}[1h]))`.
//!
//! Per-credential handles are resolved once ([`CredMetrics`]), so the hot path
//! increments an atomic without hashing labels. The cache counters are striped over
//! cache-line-padded atomics ([`Striped`]) and summed when scraped, so worker threads
//! counting hits on one credential do not write the same cache line.
//!
//! [`TokenCache::cached`]: super::TokenCache::cached
//! [`TokenCache::get`]: super::TokenCache::get

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

use super::error::Outcome;

const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "wait"];

const STRIPES: usize = 16;

/// One counter padded to its own cache line (128 bytes: adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A counter spread over [`STRIPES`] cache lines; each thread increments its own.
#[derive(Default)]
pub(crate) struct Striped([Padded; STRIPES]);

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    /// This thread's stripe; `usize::MAX` until first used (a `const` thread-local has
    /// no lazy-initialisation check on access).
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe() -> usize {
    STRIPE.with(|s| {
        let i = s.get();
        if i < STRIPES {
            i
        } else {
            let i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(i);
            i
        }
    })
}

impl Striped {
    pub(crate) fn inc(&self) {
        self.0[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// One credential's `tollgate_token_cache_total` series.
#[derive(Default)]
pub(crate) struct CacheCounters {
    pub hit: Striped,
    pub miss: Striped,
    pub wait: Striped,
}

/// `tollgate_token_cache_total` as a Prometheus collector over the striped counters.
struct CacheFamily {
    desc: Desc,
    series: RwLock<BTreeMap<String, Arc<CacheCounters>>>,
}

impl CacheFamily {
    fn new() -> Result<Self, prometheus::Error> {
        Ok(CacheFamily {
            desc: Desc::new(
                "tollgate_token_cache_total".into(),
                "Token lookups by requests: hit (cached), wait (joined a fetch), miss.".into(),
                vec!["credential".into(), "result".into()],
                Default::default(),
            )?,
            series: RwLock::default(),
        })
    }

    /// The counters of `name`, created at zero the first time; the same ones after a
    /// reconfigure, so counts carry over like a labelled Prometheus vector's.
    fn counters(&self, name: &str) -> Arc<CacheCounters> {
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(series.entry(name.to_owned()).or_default())
    }

    fn remove(&self, name: &str) {
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_owned());
    l.set_value(value.to_owned());
    l
}

impl Collector for CacheFamily {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let mut metrics = Vec::with_capacity(series.len() * CACHE_RESULTS.len());
        for (name, c) in series.iter() {
            for (result, counter) in CACHE_RESULTS.into_iter().zip([&c.hit, &c.miss, &c.wait]) {
                let mut value = Counter::default();
                value.set_value(counter.get() as f64);
                let mut m =
                    Metric::from_label(vec![label("credential", name), label("result", result)]);
                m.set_counter(value);
                metrics.push(m);
            }
        }
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        vec![family]
    }
}

/// A registrable handle on the shared [`CacheFamily`].
struct CacheCollector(Arc<CacheFamily>);

impl Collector for CacheCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// The metric families, registered once per cache.
pub(crate) struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    cache: Arc<CacheFamily>,
    expiry: GaugeVec,
    secret_in_use: IntGaugeVec,
    deferred: IntCounterVec,
    pub(crate) rate_limit_remaining: GaugeVec,
}

/// One credential's handles.
pub(crate) struct CredMetrics {
    pub cache: Arc<CacheCounters>,
    outcomes: [IntCounter; 4],
    pub duration: Histogram,
    pub expiry: ExpiryGauge,
    /// The family, and this credential's label: its series exists only once set.
    secret_in_use: (IntGaugeVec, String),
    pub deferred: IntCounter,
}

/// One credential's `tollgate_token_expiry_timestamp_seconds`: a series while a token is
/// held, none otherwise (no 0 sentinel, which would read as "expired in 1970").
pub(crate) struct ExpiryGauge {
    vec: GaugeVec,
    name: String,
}

impl ExpiryGauge {
    /// A token expiring at `unix_seconds` is held.
    pub(crate) fn set(&self, unix_seconds: f64) {
        self.vec.with_label_values(&[&self.name]).set(unix_seconds);
    }

    /// No token is held.
    pub(crate) fn clear(&self) {
        let _ = self.vec.remove_label_values(&[&self.name]);
    }
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

    /// Which of `client_secret_files` got the last token (1-based).
    pub(crate) fn secret_in_use(&self, position: usize) {
        let (family, name) = &self.secret_in_use;
        family
            .with_label_values(&[name.as_str()])
            .set(i64::try_from(position).unwrap_or(0));
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
        let cache = Arc::new(CacheFamily::new()?);
        let expiry = GaugeVec::new(
            Opts::new(
                "tollgate_token_expiry_timestamp_seconds",
                "Unix time at which the cached token expires; absent while no token is held.",
            ),
            &["credential"],
        )?;
        let secret_in_use = IntGaugeVec::new(
            Opts::new(
                "tollgate_token_client_secret_in_use",
                "Which of client_secret_files got the last token: 1 (current) or 2 (previous).",
            ),
            &["credential"],
        )?;
        let deferred = IntCounterVec::new(
            Opts::new(
                "tollgate_token_requests_deferred_total",
                "Token requests not sent because the endpoint's rate limit said to wait.",
            ),
            &["credential"],
        )?;
        let rate_limit_remaining = GaugeVec::new(
            Opts::new(
                "tollgate_token_rate_limit_remaining",
                "The last X-Rate-Limit-Remaining the token endpoint sent.",
            ),
            &["credential"],
        )?;
        Ok(Metrics {
            requests,
            duration,
            cache,
            expiry,
            secret_in_use,
            deferred,
            rate_limit_remaining,
        })
    }

    /// Registers the families on `registry` (fails if they already are).
    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(CacheCollector(Arc::clone(&self.cache))))?;
        registry.register(Box::new(self.expiry.clone()))?;
        registry.register(Box::new(self.secret_in_use.clone()))?;
        registry.register(Box::new(self.deferred.clone()))?;
        registry.register(Box::new(self.rate_limit_remaining.clone()))?;
        Ok(())
    }

    /// Resolves (and so creates, at zero) every series of one credential.
    pub(crate) fn credential(&self, name: &str) -> CredMetrics {
        let outcome = |o: Outcome| self.requests.with_label_values(&[name, o.as_str()]);
        CredMetrics {
            cache: self.cache.counters(name),
            outcomes: Outcome::ALL.map(outcome),
            duration: self.duration.with_label_values(&[name]),
            expiry: ExpiryGauge {
                vec: self.expiry.clone(),
                name: name.to_owned(),
            },
            secret_in_use: (self.secret_in_use.clone(), name.to_owned()),
            deferred: self.deferred.with_label_values(&[name]),
        }
    }

    /// Drops every series of a credential that is no longer configured.
    pub(crate) fn remove(&self, name: &str) {
        self.cache.remove(name);
        for o in Outcome::ALL {
            let _ = self.requests.remove_label_values(&[name, o.as_str()]);
        }
        let _ = self.duration.remove_label_values(&[name]);
        let _ = self.expiry.remove_label_values(&[name]);
        let _ = self.secret_in_use.remove_label_values(&[name]);
        let _ = self.deferred.remove_label_values(&[name]);
        let _ = self.rate_limit_remaining.remove_label_values(&[name]);
    }
}
