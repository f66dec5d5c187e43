//! Where the JWK Set comes from (`jwks_file` or `jwks_url`), and refreshing it.
//!
//! - `jwks_file`: read at load (a bad file is a config problem, so a reload with a bad
//!   file is rejected and the old keys keep serving); the reload watcher re-reads it when
//!   it changes; an unknown `kid` also re-reads it (below).
//! - `jwks_url`: fetched when first needed, then again in the background once the keys
//!   are older than [`MAX_AGE`]; https only (http on a loopback host), no redirects, at
//!   most [`MAX_JWKS_BYTES`], within [`FETCH_TIMEOUT`]. A failed fetch keeps the keys we
//!   have.
//! - A token whose `kid` no key carries triggers one refresh, single-flight and at most
//!   one per [`MIN_REFRESH_INTERVAL`], so forged `kid`s cannot turn into a storm of
//!   fetches; other requests in that window are refused at once.

use super::jwks::{KeySet, MAX_JWKS_BYTES};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
// tokio's clock, so that tests can pause and advance it.
use tokio::time::Instant;
use tollgate_rules::JwksSource;

/// At most one refresh per this interval.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// `jwks_url` keys older than this are refreshed in the background.
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// One JWKS fetch, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

enum Origin {
    File(PathBuf),
    Url {
        url: url::Url,
        client: OnceLock<Result<reqwest::Client, String>>,
    },
}

/// The current keys and how to refresh them.
pub struct Keys {
    from: Origin,
    set: ArcSwap<KeySet>,
    /// Bumped whenever `set` changes (the verification cache is dropped then).
    generation: AtomicU64,
    /// When the last refresh was attempted and when keys last arrived.
    times: Mutex<Times>,
    /// Single flight.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone, Copy)]
struct Times {
    attempted: Option<Instant>,
    fetched: Option<Instant>,
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// New keys are in place (maybe the same as before).
    Done,
    /// Too soon after the last attempt; nothing was fetched.
    TooSoon,
    /// The fetch or read failed; the old keys stay.
    Failed(String),
}

impl Keys {
    /// Reads `jwks_file` now (its problems are the config's), or prepares `jwks_url`.
    pub fn load(source: &JwksSource) -> Result<Keys, String> {
        let (from, set) = match source {
            JwksSource::File(path) => (Origin::File(path.clone()), read_file(path)?),
            JwksSource::Url(url) => (
                Origin::Url {
                    url: url.clone(),
                    client: OnceLock::new(),
                },
                KeySet::default(),
            ),
        };
        let fetched = matches!(from, Origin::File(_)).then(Instant::now);
        Ok(Keys {
            from,
            set: ArcSwap::from_pointee(set),
            generation: AtomicU64::new(0),
            times: Mutex::new(Times {
                attempted: None,
                fetched,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.set.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where the keys come from, for messages.
    pub fn origin(&self) -> String {
        match &self.from {
            Origin::File(p) => p.display().to_string(),
            Origin::Url { url, .. } => url.to_string(),
        }
    }

    /// `jwks_url` keys that should be refreshed in the background.
    pub fn stale(&self, now: Instant) -> bool {
        if !matches!(self.from, Origin::Url { .. }) {
            return false;
        }
        let t = self.times();
        t.fetched.is_some_and(|f| now.duration_since(f) >= MAX_AGE)
            && t.attempted
                .is_none_or(|a| now.duration_since(a) >= MIN_REFRESH_INTERVAL)
    }

    fn times(&self) -> Times {
        self.times.lock().map(|t| *t).unwrap_or_default()
    }

    /// One refresh, unless one ran within [`MIN_REFRESH_INTERVAL`]; concurrent callers
    /// wait for the one in flight and then see [`Refresh::TooSoon`] with its keys in
    /// place.
    pub async fn refresh(&self) -> Refresh {
        let _flight = self.refreshing.lock().await;
        let now = Instant::now();
        {
            let Ok(mut t) = self.times.lock() else {
                return Refresh::Failed("internal: lock poisoned".into());
            };
            if t.attempted
                .is_some_and(|a| now.duration_since(a) < MIN_REFRESH_INTERVAL)
            {
                return Refresh::TooSoon;
            }
            t.attempted = Some(now);
        }
        let result = match &self.from {
            Origin::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_file(&path))
                    .await
                    .unwrap_or_else(|e| Err(format!("internal: {e}")))
            }
            Origin::Url { url, client } => fetch(url, client).await,
        };
        match result {
            Ok(set) => {
                if *self.set.load_full() != set {
                    self.set.store(Arc::new(set));
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                if let Ok(mut t) = self.times.lock() {
                    t.fetched = Some(Instant::now());
                }
                tracing::info!(jwks = %self.origin(), "caller keys refreshed");
                Refresh::Done
            }
            Err(e) => {
                tracing::warn!(jwks = %self.origin(), "caller keys not refreshed; keeping the current ones: {e}");
                Refresh::Failed(e)
            }
        }
    }
}

#[cfg(test)]
impl Keys {
    /// Keys that verify nothing, without counting as a change.
    pub fn poison_for_test(&self) {
        self.set.store(Arc::new(KeySet::default()));
    }

    pub fn replace_for_test(&self, set: KeySet) {
        self.set.store(Arc::new(set));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

pub(super) fn read_file(path: &std::path::Path) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    KeySet::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

async fn fetch(
    url: &url::Url,
    client: &OnceLock<Result<reqwest::Client, String>>,
) -> Result<KeySet, String> {
    let client = client
        .get_or_init(|| {
            crate::auth::install_crypto_provider();
            reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .connect_timeout(FETCH_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let mut resp = client
        .get(url.clone())
        .header("accept", "application/json, application/jwk-set+json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", root_cause(&e)))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", root_cause(&e)))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "GET {url}: larger than {} KiB",
                MAX_JWKS_BYTES / 1024
            ));
        }
        body.extend_from_slice(&chunk);
    }
    KeySet::parse(&body).map_err(|e| format!("GET {url}: {e}"))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
