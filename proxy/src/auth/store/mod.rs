//! The token store: one token per credential for a whole fleet of replicas, in Redis.
//!
//! The cache (`cache.rs`) keeps its warm path: a local hit never comes here. On a local
//! miss or a due refresh its flight (`cache/fleet.rs`) asks a [`Fleet`]:
//!
//! 1. [`Fleet::read`]: is a good token stored (or is the token endpoint on hold)? One
//!    round trip; a hit is adopted and nobody asks the token endpoint.
//! 2. [`Fleet::lock`]: `SET NX PX lock_timeout` and a read, in one script. The holder
//!    asks the token endpoint and [`Fleet::put`]s the token (sealed, TTL = its remaining
//!    lifetime), which also releases the lock (compare-and-delete) and publishes a notice;
//!    the others wait for that notice (or poll), up to `lock_timeout`, then fetch alone.
//! 3. [`Fleet::invalidate`] (401 replay): compare-and-delete on the token id, then a
//!    publish, so every replica drops its copy of that token.
//!
//! Pieces: [`Backend`] is the small trait over Redis (`redis.rs` is the real one,
//! `memory.rs` an in-memory fake for unit tests on paused time); `envelope.rs` seals and
//! opens values (AES-256-GCM, key ring); `health.rs` is the fallback switch: any error or
//! timeout turns the store off for this replica at once (one log line, a metric), a probe
//! turns it back on when Redis answers again.
//!
//! Keys, under `key_prefix` (default `tollgate:`), per credential *definition* (its name
//! and a hash of everything that shapes its tokens, so two configs never share a token):
//! `token:NAME:HASH`, `lock:NAME:HASH`, `hold:NAME:HASH`; notices go to the channel
//! `events`.

mod envelope;
mod health;
#[cfg(test)]
pub(crate) mod memory;
mod metrics;
mod redis;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tollgate_rules::{Credential, TokenStore as StoreConfig};

pub(crate) use envelope::{Keyring, Opened, TokenId};

/// `token_store.redis.password_file`, read as the Redis client reads it at start. For
/// `preflight`; the error is the reason alone.
pub(crate) fn check_password_file(path: &std::path::Path) -> Result<(), String> {
    redis::read_password(path).map(drop)
}

/// The key id of one `encryption_key_files` entry (see [`envelope::key_file_id`]).
pub(crate) fn key_file_id(path: &std::path::Path) -> Result<Vec<u8>, String> {
    envelope::key_file_id(path).map(|id| id.to_vec())
}
pub use health::{StoreMode, StoreStatus};
pub(crate) use metrics::{Op, StoreMetrics};

use super::client::BoxFuture;
use super::error::AuthError;
use envelope::OpenError;
use health::Health;

/// A stored value and its time to live (`PTTL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub value: Vec<u8>,
    pub ttl: Duration,
}

/// What one read of a credential's keys returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Raw {
    pub token: Option<Stored>,
    /// The reason text and time left of a hold on the token endpoint.
    pub hold: Option<Stored>,
}

/// A failed Redis operation. Never carries a password or a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackendError(pub String);

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type BackendResult<T> = Result<T, BackendError>;

/// Receives the payloads published on the events channel.
pub(crate) type Listener = Arc<dyn Fn(&[u8]) + Send + Sync>;
/// Called when the connection drops (so the replica falls back before its next miss).
pub(crate) type Lost = Arc<dyn Fn() + Send + Sync>;

/// The Redis operations the store needs, each one round trip. Arguments are owned so the
/// futures can run on the backend's own runtime. The caller bounds each with a timeout.
pub(crate) trait Backend: Send + Sync {
    /// `GET`/`PTTL` of the token and hold keys.
    fn read(&self, keys: Arc<Keys>) -> BoxFuture<'static, BackendResult<Raw>>;
    /// `SET lock holder NX PX ttl`, then what [`read`](Self::read) returns.
    fn lock(
        &self,
        keys: Arc<Keys>,
        holder: String,
        ttl: Duration,
    ) -> BoxFuture<'static, BackendResult<(bool, Raw)>>;
    /// `SET token value PX ttl`; releases the lock if `holder` holds it; publishes `notice`.
    fn put(
        &self,
        keys: Arc<Keys>,
        value: Vec<u8>,
        ttl: Duration,
        holder: Option<String>,
        notice: Vec<u8>,
    ) -> BoxFuture<'static, BackendResult<()>>;
    /// `SET hold reason PX ttl`; releases the lock if `holder` holds it.
    fn hold(
        &self,
        keys: Arc<Keys>,
        reason: Vec<u8>,
        ttl: Duration,
        holder: Option<String>,
    ) -> BoxFuture<'static, BackendResult<()>>;
    /// Compare-and-delete of the lock.
    fn unlock(&self, keys: Arc<Keys>, holder: String) -> BoxFuture<'static, BackendResult<()>>;
    /// Deletes the token if its id is `id`; publishes `notice` either way. True: deleted.
    fn invalidate(
        &self,
        keys: Arc<Keys>,
        id: TokenId,
        notice: Vec<u8>,
    ) -> BoxFuture<'static, BackendResult<bool>>;
    /// Replaces the token value `old` by `new`, keeping its TTL. True: replaced.
    fn reseal(
        &self,
        keys: Arc<Keys>,
        old: Vec<u8>,
        new: Vec<u8>,
    ) -> BoxFuture<'static, BackendResult<bool>>;
    /// Checks the connection (and subscribes to the events channel if not yet).
    fn ping(&self) -> BoxFuture<'static, BackendResult<()>>;
    /// Runs a background task (the health probe) where the backend's I/O lives.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// Where published payloads go, and whom to tell when the connection drops. Set
    /// once, before the first `ping`.
    fn set_listener(&self, listener: Listener, lost: Lost);
    /// `redis://host:port/db`, for logs and the status (never credentials).
    fn describe(&self) -> String;
}

/// The Redis keys of one credential definition.
#[derive(Debug)]
pub(crate) struct Keys {
    pub name: Arc<str>,
    pub token: String,
    pub lock: String,
    pub hold: String,
    pub events: String,
}

impl Keys {
    fn new(prefix: &str, name: &Arc<str>, def: &Credential) -> Self {
        // Everything that shapes the tokens: the model's own Debug output, which lists
        // every field (a field added later is included without anyone remembering to)
        // and redacts inline secrets (a rotated secret keeps sharing its tokens).
        let digest = ring::digest::digest(&ring::digest::SHA256, format!("{def:?}").as_bytes());
        let hash = envelope::hex(&digest.as_ref()[..8]);
        Keys {
            name: Arc::clone(name),
            token: format!("{prefix}token:{name}:{hash}"),
            lock: format!("{prefix}lock:{name}:{hash}"),
            hold: format!("{prefix}hold:{name}:{hash}"),
            events: format!("{prefix}events"),
        }
    }
}

/// How many revoked token ids a credential remembers.
const REVOKED_KEPT: usize = 8;

/// A credential's part of the store's state, held by its `CredState`.
#[derive(Default)]
pub(crate) struct FleetSlot {
    keys: OnceLock<Arc<Keys>>,
    /// The local id and fleet id of the token in the local slot, when it came through
    /// the store.
    current: Mutex<Option<(u64, TokenId)>>,
    /// Ids invalidated recently (by us or a notice): never adopted again.
    revoked: Mutex<VecDeque<TokenId>>,
    /// Woken when another replica stores a token for this credential.
    pub(crate) stored: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FleetSlot {
    pub(crate) fn set_current(&self, local: u64, fleet: TokenId) {
        *lock(&self.current) = Some((local, fleet));
    }

    /// The fleet id of the local token `local`, if it has one.
    pub(crate) fn fleet_id(&self, local: u64) -> Option<TokenId> {
        lock(&self.current)
            .filter(|(l, _)| *l == local)
            .map(|(_, f)| f)
    }

    /// The local id of the token whose fleet id is `fleet`, if it is the current one.
    pub(crate) fn local_id(&self, fleet: TokenId) -> Option<u64> {
        lock(&self.current)
            .filter(|(_, f)| *f == fleet)
            .map(|(l, _)| l)
    }

    pub(crate) fn revoke(&self, id: TokenId) {
        let mut r = lock(&self.revoked);
        if !r.contains(&id) {
            if r.len() == REVOKED_KEPT {
                r.pop_front();
            }
            r.push_back(id);
        }
    }

    pub(crate) fn is_revoked(&self, id: TokenId) -> bool {
        lock(&self.revoked).contains(&id)
    }
}

/// A token found in the store, opened.
pub(crate) struct Found {
    pub opened: Opened,
    /// Time left, from the key's TTL.
    pub remaining: Duration,
    /// The value as stored (to reseal it with the first key).
    pub value: Vec<u8>,
}

/// What a read found.
#[derive(Default)]
pub(crate) struct Read {
    pub token: Option<Found>,
    /// The token endpoint is on hold: the reason and the time left.
    pub hold: Option<(String, Duration)>,
}

/// What the store could tell. `Down` means: act alone (the store is off or just failed).
pub(crate) enum Answer<T> {
    Up(T),
    Down,
}

/// The token store as the cache uses it.
pub(crate) struct Fleet {
    backend: Arc<dyn Backend>,
    keyring: ArcSwap<Keyring>,
    prefix: String,
    lock_timeout: Duration,
    op_timeout: Duration,
    health: Arc<Health>,
    pub(crate) metrics: StoreMetrics,
    /// (token key, problem) pairs already logged at warn: a value that does not open is
    /// logged once, not on every read.
    warned: Mutex<HashSet<(String, String)>>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("redis", &self.backend.describe())
            .field("keys", &self.keyring.load())
            .field("lock_timeout", &self.lock_timeout)
            .finish()
    }
}

/// Handles a published notice: what the cache does with one.
pub(crate) trait NoticeSink: Send + Sync {
    /// Another replica stored a token for the credential `name` under `token_key`.
    fn stored(&self, name: &str, token_key: &str);
    /// Some replica invalidated the token `id` of `name` under `token_key`.
    fn revoked(&self, name: &str, token_key: &str, id: TokenId);
}

impl Fleet {
    /// The store for `config` over the real Redis: reads the key files and the password
    /// file, starts the Redis client on its own thread and connects in the background.
    pub(crate) fn connect(
        config: &StoreConfig,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, AuthError> {
        let keyring = Keyring::load(&config.encryption_key_files).map_err(AuthError::Store)?;
        let backend = redis::RedisBackend::start(&config.redis).map_err(AuthError::Store)?;
        Self::with_backend(
            Arc::new(backend),
            keyring,
            &config.redis.key_prefix,
            config.lock_timeout,
            config.redis.timeout,
            registry,
        )
    }

    pub(crate) fn with_backend(
        backend: Arc<dyn Backend>,
        keyring: Keyring,
        prefix: &str,
        lock_timeout: Duration,
        op_timeout: Duration,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, AuthError> {
        let metrics = StoreMetrics::new(registry)?;
        let health = Arc::new(Health::new(
            backend.describe(),
            keyring.key_ids(),
            metrics.up.clone(),
        ));
        Ok(Arc::new(Fleet {
            backend,
            keyring: ArcSwap::from_pointee(keyring),
            prefix: prefix.to_owned(),
            lock_timeout,
            op_timeout,
            health,
            metrics,
            warned: Mutex::default(),
        }))
    }

    /// Subscribes `sink` to notices and connects (in the background).
    pub(crate) fn start(self: &Arc<Self>, sink: Weak<dyn NoticeSink>) {
        let token_prefix = format!("{}token:", self.prefix);
        let listener: Listener = Arc::new(move |payload: &[u8]| {
            if let Some(sink) = sink.upgrade() {
                dispatch(&*sink, &token_prefix, payload);
            }
        });
        let health = Arc::downgrade(&self.health);
        let backend = Arc::downgrade(&self.backend);
        let timeout = self.op_timeout;
        let lost: Lost = Arc::new(move || {
            if let (Some(health), Some(backend)) = (health.upgrade(), backend.upgrade()) {
                health.failed("the connection to Redis was lost", backend, timeout);
            }
        });
        self.backend.set_listener(listener, lost);
        health::start(
            Arc::clone(&self.health),
            Arc::clone(&self.backend),
            self.op_timeout,
        );
    }

    /// The Redis keys of a credential (computed once per definition).
    pub(crate) fn keys(&self, slot: &FleetSlot, name: &Arc<str>, def: &Credential) -> Arc<Keys> {
        Arc::clone(
            slot.keys
                .get_or_init(|| Arc::new(Keys::new(&self.prefix, name, def))),
        )
    }

    pub(crate) fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    pub(crate) fn status(&self) -> StoreStatus {
        self.health.status()
    }

    /// New key files (reload): the first seals from now on. On error nothing changes.
    pub(crate) fn set_keys(&self, files: &[std::path::PathBuf]) -> Result<bool, String> {
        let new = Keyring::load(files)?;
        let changed = new.key_ids() != self.keyring.load().key_ids();
        if changed {
            self.health.set_key_ids(new.key_ids());
            self.keyring.store(Arc::new(new));
        }
        Ok(changed)
    }

    /// Runs one backend operation within the operation timeout; a failure switches the
    /// store off for this replica (logged once) and is counted as `op`/`error`.
    async fn call<T>(
        &self,
        keys: &Keys,
        op: Op,
        fut: impl Future<Output = BackendResult<T>>,
    ) -> Answer<T> {
        if !self.health.is_up() {
            self.metrics.count(&keys.name, op, "fallback");
            return Answer::Down;
        }
        let result = match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(BackendError(format!(
                "no answer within {}",
                humantime::format_duration(self.op_timeout)
            ))),
        };
        match result {
            Ok(v) => Answer::Up(v),
            Err(e) => {
                self.metrics.count(&keys.name, op, "error");
                self.health
                    .failed(&e.0, Arc::clone(&self.backend), self.op_timeout);
                Answer::Down
            }
        }
    }

    /// Reads a credential's token and hold.
    pub(crate) async fn read(&self, keys: &Arc<Keys>) -> Answer<Read> {
        match self
            .call(keys, Op::Read, self.backend.read(Arc::clone(keys)))
            .await
        {
            Answer::Up(raw) => {
                let read = self.decode(keys, raw);
                let outcome = match (&read.token, &read.hold) {
                    (Some(_), _) => "hit",
                    (None, Some(_)) => "held",
                    (None, None) => "miss",
                };
                self.metrics.count(&keys.name, Op::Read, outcome);
                Answer::Up(read)
            }
            Answer::Down => Answer::Down,
        }
    }

    /// Tries to take the credential's lock (for `lock_timeout`), and reads.
    pub(crate) async fn lock(&self, keys: &Arc<Keys>, holder: &str) -> Answer<(bool, Read)> {
        let fut = self
            .backend
            .lock(Arc::clone(keys), holder.to_owned(), self.lock_timeout);
        match self.call(keys, Op::Lock, fut).await {
            Answer::Up((got, raw)) => {
                self.metrics
                    .count(&keys.name, Op::Lock, if got { "acquired" } else { "busy" });
                Answer::Up((got, self.decode(keys, raw)))
            }
            Answer::Down => Answer::Down,
        }
    }

    /// Stores a token fetched by this replica (its remaining lifetime as the TTL), releases
    /// `holder`'s lock and tells the other replicas.
    pub(crate) async fn put(
        &self,
        keys: &Arc<Keys>,
        id: TokenId,
        lifetime: Duration,
        remaining: Duration,
        token: &str,
        holder: Option<&str>,
    ) {
        if remaining.is_zero() {
            return;
        }
        let value = match self.keyring.load().seal(&keys.token, id, lifetime, token) {
            Ok(v) => v,
            Err(why) => {
                tracing::error!(credential = %keys.name, "token store: cannot encrypt the token: {why}");
                return;
            }
        };
        let notice = notice("stored", &keys.token, None);
        let fut = self.backend.put(
            Arc::clone(keys),
            value,
            remaining,
            holder.map(str::to_owned),
            notice,
        );
        if let Answer::Up(()) = self.call(keys, Op::Write, fut).await {
            self.metrics.count(&keys.name, Op::Write, "ok");
        }
    }

    /// Puts the token endpoint on hold for every replica (a rate limit, or a failure
    /// others should not repeat at once), releasing `holder`'s lock.
    pub(crate) async fn hold(
        &self,
        keys: &Arc<Keys>,
        reason: &str,
        ttl: Duration,
        holder: Option<&str>,
    ) {
        let fut = self.backend.hold(
            Arc::clone(keys),
            reason.as_bytes().to_vec(),
            ttl,
            holder.map(str::to_owned),
        );
        if let Answer::Up(()) = self.call(keys, Op::Hold, fut).await {
            self.metrics.count(&keys.name, Op::Hold, "ok");
        }
    }

    /// Releases `holder`'s lock (compare-and-delete).
    pub(crate) async fn unlock(&self, keys: &Arc<Keys>, holder: &str) {
        let fut = self.backend.unlock(Arc::clone(keys), holder.to_owned());
        let _ = self.call(keys, Op::Unlock, fut).await;
    }

    /// Fleet-wide invalidation of the token `id` (401 replay).
    pub(crate) async fn invalidate(&self, keys: &Arc<Keys>, id: TokenId) {
        let notice = notice("revoked", &keys.token, Some(id));
        let fut = self.backend.invalidate(Arc::clone(keys), id, notice);
        if let Answer::Up(deleted) = self.call(keys, Op::Invalidate, fut).await {
            self.metrics.count(
                &keys.name,
                Op::Invalidate,
                if deleted { "deleted" } else { "absent" },
            );
        }
    }

    /// Seals a token found under an older key with the first key, so the older key can
    /// be retired without anyone missing.
    pub(crate) async fn reseal(&self, keys: &Arc<Keys>, found: &Found) {
        let o = &found.opened;
        let Ok(new) = self
            .keyring
            .load()
            .seal(&keys.token, o.id, o.lifetime, &o.token)
        else {
            return;
        };
        let fut = self
            .backend
            .reseal(Arc::clone(keys), found.value.clone(), new);
        if let Answer::Up(replaced) = self.call(keys, Op::Reseal, fut).await {
            if replaced {
                self.metrics.count(&keys.name, Op::Reseal, "ok");
            }
        }
    }

    /// Opens what a read returned. A value that does not open is a miss, logged once per
    /// kind of problem.
    fn decode(&self, keys: &Keys, raw: Raw) -> Read {
        let token = raw.token.and_then(|stored| {
            match self.keyring.load().open(&keys.token, &stored.value) {
                Ok(opened) => Some(Found {
                    opened,
                    remaining: stored.ttl,
                    value: stored.value,
                }),
                Err(e) => {
                    self.metrics.count(&keys.name, Op::Read, "unreadable");
                    self.warn_unreadable(keys, &e);
                    None
                }
            }
        });
        let hold = raw
            .hold
            .filter(|h| !h.ttl.is_zero())
            .map(|h| (String::from_utf8_lossy(&h.value).into_owned(), h.ttl));
        Read { token, hold }
    }

    fn warn_unreadable(&self, keys: &Keys, e: &OpenError) {
        let what = e.to_string();
        let first = {
            let mut warned = lock(&self.warned);
            if warned.len() > 1024 {
                warned.clear();
            }
            warned.insert((keys.token.clone(), what.clone()))
        };
        if first {
            tracing::warn!(credential = %keys.name, "token store: {what}; treating it as a miss (it will be overwritten)");
        } else {
            tracing::debug!(credential = %keys.name, "token store: {what}; treating it as a miss");
        }
    }
}

/// A notice's payload: `KIND KEY [ID]`, space-separated (keys have no spaces: the config
/// refuses them in prefixes and credential names).
fn notice(kind: &str, key: &str, id: Option<TokenId>) -> Vec<u8> {
    match id {
        Some(id) => format!("{kind} {key} {}", id.hex()).into_bytes(),
        None => format!("{kind} {key}").into_bytes(),
    }
}

/// Parses a notice and hands it to the sink. Anything malformed is ignored (it is only a
/// hint: every decision re-reads Redis).
fn dispatch(sink: &dyn NoticeSink, token_prefix: &str, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    let mut parts = text.split(' ');
    let (Some(kind), Some(key)) = (parts.next(), parts.next()) else {
        return;
    };
    // token:NAME:HASH -> NAME (names may contain ':').
    let Some(name) = key
        .strip_prefix(token_prefix)
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(name, _)| name)
    else {
        return;
    };
    match (kind, parts.next()) {
        ("stored", None) => sink.stored(name, key),
        ("revoked", Some(id)) => {
            if let Some(id) = parse_id(id) {
                sink.revoked(name, key, id);
            }
        }
        _ => {}
    }
}

fn parse_id(hex: &str) -> Option<TokenId> {
    if hex.len() != envelope::TOKEN_ID_LEN * 2 {
        return None;
    }
    let mut id = [0u8; envelope::TOKEN_ID_LEN];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        id[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(TokenId(id))
}

/// A random lock holder id (hex).
pub(crate) fn holder_id() -> String {
    TokenId::random().hex()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sink(Mutex<Vec<String>>);

    impl NoticeSink for Sink {
        fn stored(&self, name: &str, key: &str) {
            lock(&self.0).push(format!("stored {name} {key}"));
        }
        fn revoked(&self, name: &str, key: &str, id: TokenId) {
            lock(&self.0).push(format!("revoked {name} {key} {}", id.hex()));
        }
    }

    #[test]
    fn notices_round_trip_and_junk_is_ignored() {
        let sink = Sink::default();
        let id = TokenId([0xab; 16]);
        dispatch(
            &sink,
            "tg:token:",
            &notice("stored", "tg:token:a:b:0011", None),
        );
        dispatch(
            &sink,
            "tg:token:",
            &notice("revoked", "tg:token:billing:0011", Some(id)),
        );
        for junk in [
            &b""[..],
            b"stored",
            b"stored other:token:a:1",
            b"revoked tg:token:a:1 zz",
            b"revoked tg:token:a:1",
            b"stored tg:token:nohash",
            b"\xff\xfe",
            b"deleted tg:token:a:1",
        ] {
            dispatch(&sink, "tg:token:", junk);
        }
        assert_eq!(
            *lock(&sink.0),
            vec![
                "stored a:b tg:token:a:b:0011".to_string(),
                format!("revoked billing tg:token:billing:0011 {}", id.hex()),
            ]
        );
    }

    #[test]
    fn keys_depend_on_the_definition_not_on_inline_secrets() {
        use crate::auth::test_support::{basic, credential, oauth, set_auth};
        let name: Arc<str> = Arc::from("billing");
        let a = Keys::new("tg:", &name, &credential("billing"));
        assert!(a.token.starts_with("tg:token:billing:"), "{}", a.token);
        assert_eq!(a.events, "tg:events");
        let mut scoped = credential("billing");
        oauth(&mut scoped).scopes = vec!["x".into()];
        assert_ne!(Keys::new("tg:", &name, &scoped).token, a.token);
        let mut rotated = credential("billing");
        set_auth(
            &mut rotated,
            basic(tollgate_rules::SecretSource::Inline(
                tollgate_rules::Secret::new("other"),
            )),
        );
        assert_eq!(Keys::new("tg:", &name, &rotated).token, a.token);
        assert!(!a.token.contains("secret"));
    }

    #[test]
    fn revoked_ids_are_bounded() {
        let slot = FleetSlot::default();
        for i in 0..20u8 {
            slot.revoke(TokenId([i; 16]));
        }
        assert!(!slot.is_revoked(TokenId([0; 16])));
        assert!(slot.is_revoked(TokenId([19; 16])));
        slot.set_current(5, TokenId([1; 16]));
        assert_eq!(slot.fleet_id(5), Some(TokenId([1; 16])));
        assert_eq!(slot.fleet_id(6), None);
        assert_eq!(slot.local_id(TokenId([1; 16])), Some(5));
    }
}
