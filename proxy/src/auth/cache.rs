//! The token cache: one slot per credential in a sharded map, single-flight fetches,
//! the failure memo, and hot reload.
//!
//! - **Hit** ([`TokenCache::hit`]): the caller holds the credential's [`CredHandle`]
//!   (resolved once per config load), so a hit is an `ArcSwapOption` load (no shared
//!   write in the common case), a time check and a striped counter; the token is lent
//!   to a closure, not cloned. [`TokenCache::cached`] does the same by name (a read
//!   lock on one `DashMap` shard and an `Arc` clone). Past 75 % of the token's
//!   lifetime either starts the background refresher (`refresh.rs`), at most one per
//!   credential.
//! - **Miss** ([`TokenCache::get`]): under the credential's own mutex (never held
//!   across an await), join the fetch in flight, or answer the remembered failure, or
//!   start a fetch in a spawned task. Waiters await a `watch` channel, so a request
//!   that gives up does not cancel the fetch others wait for.
//! - **Failure memo**: a failed fetch is remembered for [`memo_for`] (1 s, the
//!   endpoint's `Retry-After` if longer, 30 s for permanent failures); requests that
//!   find no valid token in that window fail at once. A rotated secret or key file
//!   ends the memo early.
//!
//! - **Token store** (optional, `cache/fleet.rs` and `store/`): with `token_store`
//!   configured, a flight first reads Redis and only the replica holding the lock asks
//!   the endpoint; a 401 invalidation is shared with every replica. The hit path is
//!   unchanged: a local hit never touches Redis. `kind: static` credentials never use
//!   the store (no read, no write, no lock): their value is read from a file on every
//!   replica, never fetched.
//! - **Rate limits** (`ratelimit.rs`): no token request is sent while the endpoint's
//!   rate-limit headers (or a hold shared through the store) say to wait.
//!
//! Lock order: a credential's flight mutex, then a map shard; never the reverse.
//!
//! The cache key is the credential name: a credential's scopes, audience and resource
//! are part of its definition, and [`TokenCache::reconfigure`] drops the tokens of
//! every credential whose definition changed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use tokio::sync::watch;
use tokio::time::Instant;
use tollgate_rules::{Credential, TokenStore as StoreConfig};

use super::client::{ReqwestEndpoint, TokenEndpoint};
use super::error::{AuthError, Failure, TokenError};
use super::fetch::{Attempt, Fetched};
use super::method::CredAuth;
use super::metrics::{CredMetrics, Metrics};
use super::ratelimit::{self, RateLimit};
use super::refresh;
use super::schedule::{memo_for, Schedule};
use super::store::{Fleet, FleetSlot, NoticeSink, Op, StoreStatus, TokenId};
use super::token::{Token, TokenData, TokenInfo};

/// Builds the endpoint of a credential. [`TokenCache::new`] uses
/// [`ReqwestEndpoint`]; tests and the demo can pass their own to
/// [`TokenCache::with_endpoint_factory`].
pub type EndpointFactory =
    dyn Fn(&Credential) -> Result<Arc<dyn TokenEndpoint>, AuthError> + Send + Sync;

/// One credential of a [`TokenCache`], resolved by [`TokenCache::handle`]: what the
/// request path holds so that a cache hit needs no map lookup.
#[derive(Clone)]
pub struct CredHandle(Arc<CredState>);

impl CredHandle {
    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Should an upstream 401 to a request sent with this credential be replayed with a
    /// fresh value? False for `kind: static` (the same value would come back): the data
    /// path passes such a 401 to the client and counts it as replay outcome `no_replay`,
    /// without invalidating anything.
    pub fn replays_after_401(&self) -> bool {
        !matches!(
            self.0.def.kind,
            tollgate_rules::CredentialKind::Static { .. }
        )
    }
}

impl fmt::Debug for CredHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CredHandle").field(&self.0.name).finish()
    }
}

/// The shared token cache. Create it once, hold it as `Arc<TokenCache>`.
pub struct TokenCache {
    shared: Arc<Shared>,
}

/// What the cache and its spawned tasks (fetches, refreshers) share.
pub(crate) struct Shared {
    slots: DashMap<String, Arc<CredState>>,
    next_id: AtomicU64,
    metrics: Metrics,
    factory: Box<EndpointFactory>,
    /// Serializes `reconfigure` calls.
    reconfiguring: Mutex<()>,
    /// The token store shared with the other replicas, when configured.
    pub(crate) fleet: Option<Arc<Fleet>>,
}

/// One credential's definition and live state. Replaced whole when its definition
/// changes, so results of fetches for the old definition are dropped.
pub(crate) struct CredState {
    pub(crate) name: Arc<str>,
    /// The cached token. Only meaningful while this is the configured definition
    /// (the one in `Shared::slots`).
    token: ArcSwapOption<TokenData>,
    def: Credential,
    auth: CredAuth,
    endpoint: RwLock<Arc<dyn TokenEndpoint>>,
    flight: Mutex<Flight>,
    /// A background refresher runs for this credential.
    pub(crate) refreshing: AtomicBool,
    pub(crate) m: CredMetrics,
    /// What the status page shows about the last token requests.
    last: Mutex<status::Last>,
    /// The endpoint's rate-limit hold.
    pub(crate) limit: Arc<RateLimit>,
    /// This credential's part of the token store's state.
    pub(crate) fleet: FleetSlot,
}

type FlightResult = Option<Result<Token, TokenError>>;

#[derive(Default)]
struct Flight {
    running: Option<watch::Receiver<FlightResult>>,
    memo: Option<Memo>,
}

struct Memo {
    error: TokenError,
    until: Instant,
    /// Version of the secret or key file when it failed; a newer one ends the memo.
    version: u64,
}

/// Who asks for a fetch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A request without a usable token: counts cache metrics, honours the memo.
    Request,
    /// The background refresher: wants a token that is not yet stale.
    Refresh,
}

pub(crate) enum Joined {
    /// A good enough token is there after all.
    Ready(Token),
    /// Await the fetch in flight.
    Waiting(watch::Receiver<FlightResult>),
    /// The remembered failure.
    Failed(TokenError),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TokenCache {
    /// Builds the cache and one endpoint client per credential (reqwest, system roots
    /// plus `ca_file`), reads every secret and key file, and registers the token
    /// metrics on `registry`. With `store` (the `token_store` config), also reads its
    /// key and password files and starts connecting to Redis in the background (a Redis
    /// that is down is not an error: the cache falls back to itself until it answers).
    /// Fetches nothing yet. Installs ring as rustls' crypto provider if none is installed.
    pub fn new(
        credentials: &BTreeMap<String, Credential>,
        store: Option<&StoreConfig>,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, AuthError> {
        Self::with_request_timeout(credentials, store, registry, super::client::REQUEST_TIMEOUT)
    }

    /// Like [`new`](Self::new), each token request bounded by `timeout`
    /// (`timeouts.token_request`: connect, send and the whole answer).
    pub fn with_request_timeout(
        credentials: &BTreeMap<String, Credential>,
        store: Option<&StoreConfig>,
        registry: &prometheus::Registry,
        timeout: std::time::Duration,
    ) -> Result<Arc<Self>, AuthError> {
        super::install_crypto_provider();
        let fleet = store
            .map(|config| Fleet::connect(config, registry))
            .transpose()?;
        Self::with_parts(
            credentials,
            registry,
            Box::new(move |def: &Credential| ReqwestEndpoint::for_credential(def, timeout)),
            fleet,
        )
    }

    /// Like [`new`](Self::new) with another way to reach token endpoints (tests, demo).
    /// The factory runs for every credential here and on every
    /// [`reconfigure`](Self::reconfigure).
    pub fn with_endpoint_factory(
        credentials: &BTreeMap<String, Credential>,
        registry: &prometheus::Registry,
        factory: Box<EndpointFactory>,
    ) -> Result<Arc<Self>, AuthError> {
        Self::with_parts(credentials, registry, factory, None)
    }

    /// [`with_endpoint_factory`](Self::with_endpoint_factory) with a token store.
    pub(crate) fn with_parts(
        credentials: &BTreeMap<String, Credential>,
        registry: &prometheus::Registry,
        factory: Box<EndpointFactory>,
        fleet: Option<Arc<Fleet>>,
    ) -> Result<Arc<Self>, AuthError> {
        let metrics = Metrics::new()?;
        let slots = DashMap::new();
        for (name, def) in credentials {
            let cred = CredState::new(name, def, &metrics, &*factory)?;
            if let Some(fleet) = fleet.as_ref().filter(|_| fleet::shares(def)) {
                fleet.metrics.credential(name);
            }
            slots.insert(name.clone(), Arc::new(cred));
        }
        metrics.register(registry)?;
        let shared = Arc::new(Shared {
            slots,
            next_id: AtomicU64::new(1),
            metrics,
            factory,
            reconfiguring: Mutex::new(()),
            fleet,
        });
        if let Some(fleet) = &shared.fleet {
            let sink: Weak<dyn NoticeSink> = Arc::downgrade(&shared) as Weak<dyn NoticeSink>;
            fleet.start(sink);
        }
        Ok(Arc::new(TokenCache { shared }))
    }

    /// The token store's state (`None` without `token_store`): connected or falling
    /// back, since when, the last error, the key ids. For a status page.
    pub fn store_status(&self) -> Option<StoreStatus> {
        self.shared.fleet.as_ref().map(|f| f.status())
    }

    /// Hot reload of `token_store`: new `encryption_key_files` take effect now (the
    /// first seals from now on; all open). Other changes (the Redis address, user,
    /// password, prefix, timeouts) need a restart: they are reported, not applied.
    /// Returns what to log.
    pub fn reconfigure_store(&self, store: Option<&StoreConfig>) -> Result<String, AuthError> {
        match (&self.shared.fleet, store) {
            (None, None) => Ok(String::new()),
            (Some(fleet), Some(config)) => {
                let changed = fleet
                    .set_keys(&config.encryption_key_files)
                    .map_err(AuthError::Store)?;
                Ok(if changed {
                    "token store: encryption keys reloaded".into()
                } else {
                    String::new()
                })
            }
            _ => Ok("token_store was added or removed: that takes a restart".into()),
        }
    }

    /// The handle of a configured credential, for [`hit`](Self::hit). Resolve it once
    /// per config load (after [`reconfigure`](Self::reconfigure)), not per request: a
    /// handle taken before a reconfigure that changed or removed its credential no
    /// longer sees new tokens (its hits fail, and [`get_for`](Self::get_for) goes on
    /// by name).
    pub fn handle(&self, credential: &str) -> Option<CredHandle> {
        self.shared
            .slots
            .get(credential)
            .map(|c| CredHandle(Arc::clone(&c)))
    }

    /// The fast path: lends a token usable now (not within the expiry cutoff) to `f`,
    /// or returns `None` without calling it. Synchronous, allocates nothing, and in the
    /// common case writes no memory shared with other threads. Counts a `hit` only (a
    /// `None` is counted by the following [`get`](Self::get)). Past 75 % of the token's
    /// lifetime, starts a background refresh (single flight; needs to run inside a
    /// tokio runtime, else it is left to [`get`](Self::get)).
    pub fn hit<R>(&self, handle: &CredHandle, f: impl FnOnce(&TokenData) -> R) -> Option<R> {
        self.hit_at(handle, Instant::now(), f)
    }

    /// [`hit`](Self::hit) judged at `now` instead of reading the clock: the proxy passes
    /// the time its request started (read once per request anyway, microseconds
    /// earlier; the expiry cutoff is at least seconds wide).
    pub fn hit_at<R>(
        &self,
        handle: &CredHandle,
        now: Instant,
        f: impl FnOnce(&TokenData) -> R,
    ) -> Option<R> {
        let cred = &handle.0;
        let guard = cred.token.load();
        let token = guard.as_deref()?;
        if !token.usable_at(now) {
            return None;
        }
        cred.m.cache.hit.inc();
        if token.stale_at(now) {
            refresh::kick(&self.shared, Arc::clone(cred));
        }
        Some(f(token))
    }

    /// The same by credential name, returning a clone of the token: a read lock on
    /// one map shard and an `Arc` clone.
    pub fn cached(&self, credential: &str) -> Option<Token> {
        let handle = self.handle(credential)?;
        self.hit(&handle, |_| ())?;
        handle.0.token.load_full().map(Token::from_arc)
    }

    /// A usable token, fetched if needed. Concurrent misses for one credential make one
    /// token request; the others wait for it. A request makes at most one attempt (no
    /// backoff sleeps here; bounded by [`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT)). After a failure, and while
    /// no valid token exists, returns the remembered failure without contacting the
    /// endpoint for about a second (30 s for permanent failures; longer if the endpoint
    /// sent `Retry-After`).
    pub async fn get(&self, credential: &str) -> Result<Token, TokenError> {
        let (cred, token) = self.shared.lookup(credential)?;
        self.get_cred(cred, token).await
    }

    /// [`get`](Self::get) for a handle's credential: the credential configured now
    /// under the handle's name (normally the handle's own).
    pub async fn get_for(&self, handle: &CredHandle) -> Result<Token, TokenError> {
        self.get(&handle.0.name).await
    }

    async fn get_cred(
        &self,
        cred: Arc<CredState>,
        token: Option<Token>,
    ) -> Result<Token, TokenError> {
        let now = Instant::now();
        if let Some(token) = token.filter(|t| t.usable_at(now)) {
            cred.m.cache.hit.inc();
            if token.stale_at(now) {
                refresh::kick(&self.shared, cred);
            }
            return Ok(token);
        }
        match self.shared.join_or_start(&cred, Purpose::Request) {
            Joined::Ready(token) => Ok(token),
            Joined::Failed(error) => Err(error),
            Joined::Waiting(rx) => wait(rx, &cred.name).await,
        }
    }

    /// Compare-and-invalidate, for 401 replay: drops the cached token only if it is
    /// still `sent` (same id). Returns true when it did; a burst of 401s for one token
    /// invalidates once. The next [`get`](Self::get) fetches a fresh token.
    pub fn invalidate(&self, credential: &str, sent: &Token) -> bool {
        self.invalidate_id(credential, sent.id())
    }

    /// [`invalidate`](Self::invalidate) by token id (what a request keeps of the token
    /// it sent).
    pub fn invalidate_id(&self, credential: &str, sent: u64) -> bool {
        let Some(cred) = self.shared.slots.get(credential).map(|c| Arc::clone(&c)) else {
            return false;
        };
        let current = cred.token.load();
        let Some(token) = current.as_ref().filter(|t| t.id() == sent) else {
            return false;
        };
        // Compare-and-swap: a fresh token stored meanwhile is kept.
        let previous = cred.token.compare_and_swap(token, None);
        let swapped = previous.as_ref().is_some_and(|p| p.id() == sent);
        if swapped {
            cred.m.expiry.clear();
            tracing::debug!(credential, token_id = sent, "token invalidated");
            fleet::invalidate(&self.shared, &cred, sent);
        }
        swapped
    }

    /// Hot reload: adopts new credential definitions. Credentials whose definition is
    /// unchanged (token URL, client id, auth method and its secret source or key,
    /// scopes, audience, resource, params, ca_file) keep their cached token, fetch in
    /// flight and memo; their endpoint client is rebuilt (re-reading `ca_file`).
    /// Changed ones start empty; removed ones are dropped with their metric series.
    /// On error nothing changes.
    pub fn reconfigure(&self, credentials: &BTreeMap<String, Credential>) -> Result<(), AuthError> {
        let _serial = lock(&self.shared.reconfiguring);
        enum Plan {
            Keep(Arc<CredState>, Arc<dyn TokenEndpoint>),
            Replace(Arc<CredState>),
        }
        let mut plans = Vec::with_capacity(credentials.len());
        for (name, def) in credentials {
            let existing = self.shared.slots.get(name).map(|c| Arc::clone(&c));
            // An unchanged credential with an `issuer` is discovered again: kept when its
            // token endpoint is where it was, set up afresh when it moved.
            let keep = match &existing {
                Some(cred) if cred.def == *def => cred.auth.rediscover(def)?,
                _ => false,
            };
            let plan = match existing {
                Some(cred) if keep => {
                    let endpoint = ratelimit::observe((self.shared.factory)(def)?, &cred.limit);
                    Plan::Keep(cred, endpoint)
                }
                _ => Plan::Replace(Arc::new(CredState::new(
                    name,
                    def,
                    &self.shared.metrics,
                    &*self.shared.factory,
                )?)),
            };
            plans.push((name, plan));
        }
        // From here on nothing fails.
        let (mut kept, mut replaced) = (0usize, 0usize);
        for (name, plan) in plans {
            match plan {
                Plan::Keep(cred, endpoint) => {
                    *cred
                        .endpoint
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = endpoint;
                    kept += 1;
                }
                Plan::Replace(cred) => {
                    cred.m.expiry.clear();
                    if let Some(fleet) = self.shared.fleet_for(&cred) {
                        fleet.metrics.credential(name);
                    }
                    if let Some(old) = self.shared.slots.insert(name.clone(), cred) {
                        // Handles still pointing at the old definition stop hitting.
                        old.token.store(None);
                    }
                    replaced += 1;
                }
            }
        }
        let removed: Vec<String> = self
            .shared
            .slots
            .iter()
            .filter(|e| !credentials.contains_key(e.key()))
            .map(|e| e.key().clone())
            .collect();
        for name in &removed {
            if let Some((_, old)) = self.shared.slots.remove(name) {
                old.token.store(None);
            }
            self.shared.metrics.remove(name);
            if let Some(fleet) = &self.shared.fleet {
                fleet.metrics.remove(name);
            }
        }
        tracing::info!(
            kept,
            replaced,
            removed = removed.len(),
            "token credentials reconfigured"
        );
        Ok(())
    }

    /// For `tollgate token NAME`: one request to the endpoint now, bypassing the cache
    /// (neither reading nor storing). Counted in the request metrics.
    pub async fn fetch_now(&self, credential: &str) -> Result<TokenInfo, TokenError> {
        let (cred, _) = self.shared.lookup(credential)?;
        let (result, _) = self.shared.attempt(&cred).await;
        let f = result?;
        Ok(TokenInfo {
            used: f.used,
            token_type: f.token_type,
            expires_in: f.expires_in,
            lifetime: f.lifetime,
            lifetime_source: f.source.as_str(),
            scope: f.scope,
            claims: f.claims,
            token: f.token,
        })
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<(String, bool)> = self
            .shared
            .slots
            .iter()
            .map(|e| (e.key().clone(), e.token.load().is_some()))
            .collect();
        names.sort();
        f.debug_struct("TokenCache")
            .field("credentials (name, cached)", &names)
            .finish()
    }
}

impl CredState {
    fn new(
        name: &str,
        def: &Credential,
        metrics: &Metrics,
        factory: &EndpointFactory,
    ) -> Result<Self, AuthError> {
        let auth = CredAuth::new(def)?;
        let limit = Arc::new(RateLimit::new(name, metrics.rate_limit_remaining.clone()));
        let endpoint = ratelimit::observe(factory(def)?, &limit);
        let m = metrics.credential(name);
        m.expiry.clear();
        Ok(CredState {
            name: Arc::from(name),
            token: ArcSwapOption::empty(),
            def: def.clone(),
            auth,
            endpoint: RwLock::new(endpoint),
            flight: Mutex::new(Flight::default()),
            refreshing: AtomicBool::new(false),
            m,
            last: Mutex::new(status::Last::default()),
            limit,
            fleet: FleetSlot::default(),
        })
    }
}

impl Shared {
    fn lookup(&self, name: &str) -> Result<(Arc<CredState>, Option<Token>), TokenError> {
        match self.slots.get(name) {
            Some(cred) => {
                let token = cred.token.load_full().map(Token::from_arc);
                Ok((Arc::clone(&cred), token))
            }
            None => Err(TokenError::new(Arc::from(name), Failure::UnknownCredential)),
        }
    }

    /// The cached token of `cred`, if `cred` is still the configured definition.
    pub(crate) fn current(&self, cred: &Arc<CredState>) -> Option<Token> {
        let configured = self.slots.get(&*cred.name)?;
        if Arc::ptr_eq(&configured, cred) {
            cred.token.load_full().map(Token::from_arc)
        } else {
            None
        }
    }

    /// Joins the fetch in flight or starts one (in a spawned task), unless a good
    /// enough token arrived meanwhile or (for requests) a failure is remembered.
    pub(crate) fn join_or_start(
        self: &Arc<Self>,
        cred: &Arc<CredState>,
        purpose: Purpose,
    ) -> Joined {
        let request = purpose == Purpose::Request;
        let mut flight = lock(&cred.flight);
        let now = Instant::now();
        if let Some(token) = self.current(cred) {
            let good = match purpose {
                Purpose::Request => token.usable_at(now),
                Purpose::Refresh => !token.stale_at(now),
            };
            if good {
                if request {
                    cred.m.cache.hit.inc();
                }
                return Joined::Ready(token);
            }
        }
        if let Some(rx) = &flight.running {
            if request {
                cred.m.cache.wait.inc();
            }
            return Joined::Waiting(rx.clone());
        }
        if request {
            cred.m.cache.miss.inc();
            if let Some(memo) = &flight.memo {
                if now < memo.until && cred.auth.version() == memo.version {
                    return Joined::Failed(memo.error.clone());
                }
            }
        }
        let (tx, rx) = watch::channel(None);
        flight.running = Some(rx.clone());
        drop(flight);
        tokio::spawn(run_flight(Arc::clone(self), Arc::clone(cred), tx, purpose));
        Joined::Waiting(rx)
    }

    /// [`attempt`](Self::attempt), unless the endpoint's rate limit says to wait: then
    /// nothing is sent and the result is a [`Failure::Deferred`] (which the memo and the
    /// refresher honour).
    pub(crate) async fn ask(&self, cred: &CredState) -> (Result<Fetched, TokenError>, u64) {
        if let Some((wait, reason)) = cred.limit.held(Instant::now()) {
            cred.m.deferred.inc();
            let error = TokenError::new(Arc::clone(&cred.name), Failure::Deferred { wait, reason });
            tracing::debug!(credential = %cred.name, %error, "token request deferred");
            return (Err(error), cred.auth.version());
        }
        self.attempt(cred).await
    }

    /// One attempt (`fetch.rs`): metrics and logs, nothing cached. Also returns the
    /// version of the secret or key files used.
    async fn attempt(&self, cred: &CredState) -> (Result<Fetched, TokenError>, u64) {
        let endpoint = Arc::clone(&cred.endpoint.read().unwrap_or_else(PoisonError::into_inner));
        Attempt {
            name: &cred.name,
            def: &cred.def,
            auth: &cred.auth,
            endpoint,
            m: &cred.m,
            next_id: &self.next_id,
        }
        .run()
        .await
    }

    /// Puts a fresh token in the slot, unless the credential was reconfigured meanwhile.
    /// `lifetime`: the time it has left.
    pub(crate) fn store(&self, cred: &Arc<CredState>, token: &Token, lifetime: Duration) {
        let Some(configured) = self.slots.get(&*cred.name) else {
            return;
        };
        if Arc::ptr_eq(&configured, cred) {
            cred.token.store(Some(Arc::clone(token.arc())));
            let expiry = SystemTime::now()
                .checked_add(lifetime)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            cred.m.expiry.set(expiry);
        }
    }
}

/// The spawned task behind a single flight: one attempt (through the token store when
/// there is one), then store the token or remember the failure, then tell the waiters.
async fn run_flight(
    shared: Arc<Shared>,
    cred: Arc<CredState>,
    tx: watch::Sender<FlightResult>,
    purpose: Purpose,
) {
    let mut guard = FlightGuard {
        cred: &cred,
        armed: true,
    };
    let (result, version) = match shared.fleet_for(&cred).cloned() {
        Some(fleet) => fleet::flight(&shared, &cred, &fleet, purpose).await,
        None => {
            let (result, version) = shared.ask(&cred).await;
            let result = result.map(|f| {
                shared.store(&cred, &f.token, f.lifetime);
                f.token
            });
            (result, version)
        }
    };
    status::record(&cred, &result);
    {
        let mut flight = lock(&cred.flight);
        flight.running = None;
        flight.memo = result.as_ref().err().map(|error| Memo {
            until: Instant::now() + memo_for(error.is_permanent(), error.failure().retry_after()),
            version,
            error: error.clone(),
        });
    }
    guard.armed = false;
    // Nobody waiting is fine.
    let _ = tx.send(Some(result));
}

/// Clears the flight if its task ends without finishing (a panic, runtime shutdown),
/// so the next request starts a new one instead of waiting forever.
struct FlightGuard<'a> {
    cred: &'a CredState,
    armed: bool,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.cred.flight).running = None;
        }
    }
}

/// Awaits a flight's result.
pub(crate) async fn wait(
    mut rx: watch::Receiver<FlightResult>,
    credential: &Arc<str>,
) -> Result<Token, TokenError> {
    let cancelled = || {
        TokenError::new(
            Arc::clone(credential),
            Failure::Local(Arc::from("the token request was cancelled")),
        )
    };
    match rx.wait_for(Option::is_some).await {
        Ok(result) => result.clone().unwrap_or_else(|| Err(cancelled())),
        Err(_) => Err(cancelled()),
    }
}

mod fleet;

mod status;
pub use status::CredentialStatus;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod answer_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod fleet_tests;
