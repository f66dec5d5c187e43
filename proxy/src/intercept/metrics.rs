//! The `tollgate_interception_*` metrics. Labels are bounded: route names from the config
//! and fixed outcome words; never a host (a wildcard route matches unboundedly many).
//!
//! - `tollgate_interception_leaves_total{outcome}`: leaf certificate lookups and what
//!   happened: `hit` (cached), `issued` (made for a new host), `renewed` (replaced one
//!   past 3/4 of its life), `evicted` (dropped for the cache bound), `refused` (the CA's
//!   name constraints do not allow the host), `failed` (the CA is not valid now, or
//!   signing failed).
//! - `tollgate_interception_leaf_cache_hosts`: hosts in the leaf cache now.
//! - `tollgate_interception_handshakes_total{route,outcome}`: TLS handshakes inside
//!   intercepted tunnels: `ok`, `untrusted` (the client rejected the certificate: it does
//!   not trust the CA), `failed` (any other TLS failure), `timeout`, `no_ca` (no
//!   `interception` configured), `refused` (no leaf for the host: see the leaves counter).
//! - `tollgate_interception_ca_expiry_seconds`: Unix time at which the loaded CA expires
//!   (0: none loaded). Seconds left: `tollgate_interception_ca_expiry_seconds - time()`.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Outcomes of a leaf lookup (the `outcome` label of `tollgate_interception_leaves_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafOutcome {
    Hit,
    Issued,
    Renewed,
    Evicted,
    Refused,
    Failed,
}

impl LeafOutcome {
    pub const ALL: [LeafOutcome; 6] = [
        LeafOutcome::Hit,
        LeafOutcome::Issued,
        LeafOutcome::Renewed,
        LeafOutcome::Evicted,
        LeafOutcome::Refused,
        LeafOutcome::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LeafOutcome::Hit => "hit",
            LeafOutcome::Issued => "issued",
            LeafOutcome::Renewed => "renewed",
            LeafOutcome::Evicted => "evicted",
            LeafOutcome::Refused => "refused",
            LeafOutcome::Failed => "failed",
        }
    }
}

/// Outcomes of a handshake (the `outcome` label of `tollgate_interception_handshakes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeOutcome {
    Ok,
    Untrusted,
    Failed,
    Timeout,
    NoCa,
    Refused,
}

impl HandshakeOutcome {
    pub fn label(self) -> &'static str {
        match self {
            HandshakeOutcome::Ok => "ok",
            HandshakeOutcome::Untrusted => "untrusted",
            HandshakeOutcome::Failed => "failed",
            HandshakeOutcome::Timeout => "timeout",
            HandshakeOutcome::NoCa => "no_ca",
            HandshakeOutcome::Refused => "refused",
        }
    }
}

pub struct InterceptMetrics {
    leaves: [IntCounter; 6],
    pub cache_hosts: IntGauge,
    handshakes: IntCounterVec,
    pub ca_expiry: Gauge,
}

impl InterceptMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<InterceptMetrics> {
        let leaves_vec = IntCounterVec::new(
            Opts::new(
                "tollgate_interception_leaves_total",
                "Leaf certificate lookups for intercepted CONNECT hosts, by outcome: hit | issued | renewed | evicted | refused | failed",
            ),
            &["outcome"],
        )?;
        let cache_hosts = IntGauge::new(
            "tollgate_interception_leaf_cache_hosts",
            "Hosts whose leaf certificate is cached",
        )?;
        let handshakes = IntCounterVec::new(
            Opts::new(
                "tollgate_interception_handshakes_total",
                "TLS handshakes inside intercepted CONNECT tunnels, by route and outcome: ok | untrusted | failed | timeout | no_ca | refused",
            ),
            &["route", "outcome"],
        )?;
        let ca_expiry = Gauge::new(
            "tollgate_interception_ca_expiry_seconds",
            "Unix time at which the interception CA expires (0: none loaded)",
        )?;
        registry.register(Box::new(leaves_vec.clone()))?;
        registry.register(Box::new(cache_hosts.clone()))?;
        registry.register(Box::new(handshakes.clone()))?;
        registry.register(Box::new(ca_expiry.clone()))?;
        let leaves = LeafOutcome::ALL.map(|o| leaves_vec.with_label_values(&[o.label()]));
        Ok(InterceptMetrics {
            leaves,
            cache_hosts,
            handshakes,
            ca_expiry,
        })
    }

    pub fn leaf(&self, outcome: LeafOutcome) {
        let i = LeafOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.leaves[i].inc();
    }

    pub fn handshake(&self, route: &str, outcome: HandshakeOutcome) {
        self.handshakes
            .with_label_values(&[route, outcome.label()])
            .inc();
    }
}
