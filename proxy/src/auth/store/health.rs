//! The fallback switch. The store starts `connecting` (used: a cold start should share
//! its first token), becomes `connected` when Redis first answers, and goes to `fallback`
//! at the first failed or slow operation: from then on this replica does not wait for
//! Redis at all (never worse than no store) until a probe, once a second, gets an answer.
//! Each change is logged once and shows in `tollgate_token_store_up`; the status (mode,
//! since when, last error) is what [`StoreStatus`] reports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus::IntGauge;

use super::Backend;

/// How often a replica in fallback asks Redis whether it is back.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the store is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// Not answered yet; used.
    Connecting,
    /// Answering; used.
    Connected,
    /// Failed or slow; not used until it answers a probe.
    Fallback,
}

impl StoreMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreMode::Connecting => "connecting",
            StoreMode::Connected => "connected",
            StoreMode::Fallback => "fallback",
        }
    }
}

/// The token store as a status page shows it. Never holds a password or a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// `redis://host:port/db` (or `rediss://`).
    pub redis: String,
    pub mode: StoreMode,
    /// When `mode` last changed.
    pub since: SystemTime,
    /// The last failure (kept after recovery), e.g. `connection refused`.
    pub last_error: Option<String>,
    /// Ids of the encryption keys, the sealing one first (8 bytes of a SHA-256 of each
    /// key, in hex: they identify a key without revealing it).
    pub key_ids: Vec<String>,
}

pub(crate) struct Health {
    up: AtomicBool,
    /// `tollgate_token_store_up`.
    gauge: IntGauge,
    state: Mutex<State>,
}

struct State {
    status: StoreStatus,
    probing: bool,
}

impl Health {
    pub(crate) fn new(redis: String, key_ids: Vec<String>, gauge: IntGauge) -> Self {
        gauge.set(1);
        Health {
            up: AtomicBool::new(true),
            gauge,
            state: Mutex::new(State {
                status: StoreStatus {
                    redis,
                    mode: StoreMode::Connecting,
                    since: SystemTime::now(),
                    last_error: None,
                    key_ids,
                },
                probing: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn status(&self) -> StoreStatus {
        self.state().status.clone()
    }

    pub(crate) fn set_key_ids(&self, ids: Vec<String>) {
        self.state().status.key_ids = ids;
    }

    /// Redis answered (the probe, or the first ping).
    fn answered(&self) {
        let mut s = self.state();
        let was = s.status.mode;
        if was != StoreMode::Connected {
            s.status.mode = StoreMode::Connected;
            s.status.since = SystemTime::now();
            self.up.store(true, Ordering::Release);
            self.gauge.set(1);
            match was {
                StoreMode::Fallback => tracing::info!(
                    redis = %s.status.redis,
                    "token store reachable again: sharing tokens with the fleet"
                ),
                _ => tracing::info!(redis = %s.status.redis, "token store connected"),
            }
        }
    }

    /// An operation failed: fall back now (logged once), and start the probe.
    pub(crate) fn failed(
        self: &Arc<Self>,
        error: &str,
        backend: Arc<dyn Backend>,
        timeout: Duration,
    ) {
        let mut s = self.state();
        s.status.last_error = Some(error.to_owned());
        if s.status.mode != StoreMode::Fallback {
            s.status.mode = StoreMode::Fallback;
            s.status.since = SystemTime::now();
            self.up.store(false, Ordering::Release);
            self.gauge.set(0);
            tracing::warn!(
                redis = %s.status.redis,
                error,
                "token store unavailable: each replica uses its own token cache until it is back"
            );
        }
        if !s.probing {
            s.probing = true;
            drop(s);
            let health = Arc::clone(self);
            let task = probe(health, Arc::clone(&backend), timeout);
            backend.spawn(Box::pin(task));
        }
    }
}

/// The first connection, in the background: `connecting` until it answers or fails.
pub(crate) fn start(health: Arc<Health>, backend: Arc<dyn Backend>, timeout: Duration) {
    let b = Arc::clone(&backend);
    backend.spawn(Box::pin(async move {
        match ping(&*b, timeout).await {
            Ok(()) => health.answered(),
            Err(e) => health.failed(&e, b, timeout),
        }
    }));
}

async fn ping(backend: &dyn Backend, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, backend.ping()).await {
        Ok(r) => r.map_err(|e| e.0),
        Err(_) => Err(timeout_text(timeout)),
    }
}

fn timeout_text(timeout: Duration) -> String {
    format!("no answer within {}", humantime::format_duration(timeout))
}

/// Pings once a second until Redis answers.
async fn probe(health: Arc<Health>, backend: Arc<dyn Backend>, timeout: Duration) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        match ping(&*backend, timeout).await {
            Ok(()) => {
                health.state().probing = false;
                health.answered();
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "token store still unavailable");
                health.state().status.last_error = Some(e);
            }
        }
    }
}
