//! An in-memory stand-in for Redis, for the cache's unit tests on paused tokio time: one
//! [`MemoryRedis`] shared by several replicas, each with its own [`MemoryBackend`]
//! (which can be made to fail or to answer slowly). It keeps the semantics the store
//! relies on: TTLs, `SET NX`, compare-and-delete, publish to every subscriber. The
//! integration tests run the same paths against the real `redis-server`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::envelope::{TOKEN_ID_AT, TOKEN_ID_LEN};
use super::{Backend, BackendError, BackendResult, Keys, Listener, Lost, Raw, Stored, TokenId};
use crate::auth::client::BoxFuture;

#[derive(Default)]
pub(crate) struct MemoryRedis {
    data: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    /// Subscribers, each with its connection's fault (a broken connection hears nothing).
    listeners: Mutex<Vec<(Arc<Mutex<Fault>>, Listener)>>,
    /// Commands served, by name.
    calls: Mutex<HashMap<&'static str, usize>>,
}

/// How one replica's connection misbehaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    /// Every command fails at once (`connection refused`).
    Down,
    /// Every command answers an error (`NOPERM`).
    Errors,
    /// Every command answers after this long.
    Slow(Duration),
}

pub(crate) struct MemoryBackend {
    redis: Arc<MemoryRedis>,
    fault: Arc<Mutex<Fault>>,
    lost: Mutex<Option<Lost>>,
    /// Extra delay for one operation (by name), to order races.
    delays: Mutex<HashMap<&'static str, Duration>>,
}

impl MemoryRedis {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(MemoryRedis::default())
    }

    /// A replica's connection.
    pub(crate) fn connect(self: &Arc<Self>) -> Arc<MemoryBackend> {
        Arc::new(MemoryBackend {
            redis: Arc::clone(self),
            fault: Arc::new(Mutex::new(Fault::None)),
            lost: Mutex::new(None),
            delays: Mutex::default(),
        })
    }

    fn live(&self, key: &str) -> Option<(Vec<u8>, Duration)> {
        let now = Instant::now();
        let mut data = self.data.lock().unwrap();
        match data.get(key) {
            Some((v, until)) if *until > now => Some((v.clone(), *until - now)),
            Some(_) => {
                data.remove(key);
                None
            }
            None => None,
        }
    }

    fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        self.data
            .lock()
            .unwrap()
            .insert(key.to_owned(), (value, Instant::now() + ttl));
    }

    fn del(&self, key: &str) {
        self.data.lock().unwrap().remove(key);
    }

    fn publish(&self, payload: &[u8]) {
        let listeners = self.listeners.lock().unwrap().clone();
        for (fault, l) in listeners {
            if *fault.lock().unwrap() == Fault::None {
                l(payload);
            }
        }
    }

    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
    }

    /// How many times `op` was served.
    pub(crate) fn calls(&self, op: &'static str) -> usize {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    /// The raw value under `key`, if live.
    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.live(key).map(|(v, _)| v)
    }

    /// Its time to live.
    pub(crate) fn ttl(&self, key: &str) -> Option<Duration> {
        self.live(key).map(|(_, t)| t)
    }

    /// Writes anything under `key` (hostile values).
    pub(crate) fn put_raw(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        self.set(key, value, ttl);
    }

    /// Every live key starting with `prefix`.
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .data
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.retain(|k| self.live(k).is_some());
        keys.sort();
        keys
    }

    fn raw(&self, keys: &Keys) -> Raw {
        let stored = |k: &str| self.live(k).map(|(value, ttl)| Stored { value, ttl });
        Raw {
            token: stored(&keys.token),
            hold: stored(&keys.hold),
        }
    }

    fn release(&self, keys: &Keys, holder: Option<&str>) {
        if let Some(h) = holder {
            if self.get(&keys.lock).as_deref() == Some(h.as_bytes()) {
                self.del(&keys.lock);
            }
        }
    }
}

impl MemoryBackend {
    /// `Down` also drops the connection (as a killed server would).
    pub(crate) fn set_fault(&self, fault: Fault) {
        let down = fault == Fault::Down;
        *self.fault.lock().unwrap() = fault;
        if down {
            let lost = self.lost.lock().unwrap().clone();
            if let Some(lost) = lost {
                lost();
            }
        }
    }

    /// Makes `op` (`read`, `lock`, `put`, `invalidate`, ...) answer after `delay`.
    pub(crate) fn delay_op(&self, op: &'static str, delay: Duration) {
        self.delays.lock().unwrap().insert(op, delay);
    }

    /// Runs `f` against the shared state unless the fault says otherwise.
    fn serve<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&MemoryRedis) -> T + Send + 'static,
    ) -> BoxFuture<'static, BackendResult<T>> {
        let fault = self.fault.lock().unwrap().clone();
        let delay = self.delays.lock().unwrap().get(op).copied();
        let redis = Arc::clone(&self.redis);
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            match fault {
                Fault::Down => return Err(BackendError("connection refused".into())),
                Fault::Errors => {
                    return Err(BackendError(
                        "NOPERM this user has no permissions to run this command".into(),
                    ))
                }
                Fault::Slow(d) => tokio::time::sleep(d).await,
                Fault::None => {}
            }
            redis.count(op);
            Ok(f(&redis))
        })
    }
}

impl Backend for MemoryBackend {
    fn read(&self, keys: Arc<Keys>) -> BoxFuture<'static, BackendResult<Raw>> {
        self.serve("read", move |r| r.raw(&keys))
    }

    fn lock(
        &self,
        keys: Arc<Keys>,
        holder: String,
        ttl: Duration,
    ) -> BoxFuture<'static, BackendResult<(bool, Raw)>> {
        self.serve("lock", move |r| {
            let got = r.live(&keys.lock).is_none();
            if got {
                r.set(&keys.lock, holder.into_bytes(), ttl);
            }
            (got, r.raw(&keys))
        })
    }

    fn put(
        &self,
        keys: Arc<Keys>,
        value: Vec<u8>,
        ttl: Duration,
        holder: Option<String>,
        notice: Vec<u8>,
    ) -> BoxFuture<'static, BackendResult<()>> {
        self.serve("put", move |r| {
            r.set(&keys.token, value, ttl);
            r.release(&keys, holder.as_deref());
            r.publish(&notice);
        })
    }

    fn hold(
        &self,
        keys: Arc<Keys>,
        reason: Vec<u8>,
        ttl: Duration,
        holder: Option<String>,
    ) -> BoxFuture<'static, BackendResult<()>> {
        self.serve("hold", move |r| {
            r.set(&keys.hold, reason, ttl);
            r.release(&keys, holder.as_deref());
        })
    }

    fn unlock(&self, keys: Arc<Keys>, holder: String) -> BoxFuture<'static, BackendResult<()>> {
        self.serve("unlock", move |r| r.release(&keys, Some(&holder)))
    }

    fn invalidate(
        &self,
        keys: Arc<Keys>,
        id: TokenId,
        notice: Vec<u8>,
    ) -> BoxFuture<'static, BackendResult<bool>> {
        self.serve("invalidate", move |r| {
            let matches = r.get(&keys.token).is_some_and(|v| {
                v.len() >= TOKEN_ID_AT + TOKEN_ID_LEN
                    && v[TOKEN_ID_AT..TOKEN_ID_AT + TOKEN_ID_LEN] == id.0
            });
            if matches {
                r.del(&keys.token);
            }
            r.publish(&notice);
            matches
        })
    }

    fn reseal(
        &self,
        keys: Arc<Keys>,
        old: Vec<u8>,
        new: Vec<u8>,
    ) -> BoxFuture<'static, BackendResult<bool>> {
        self.serve("reseal", move |r| match r.live(&keys.token) {
            Some((v, ttl)) if v == old => {
                r.set(&keys.token, new, ttl);
                true
            }
            _ => false,
        })
    }

    fn ping(&self) -> BoxFuture<'static, BackendResult<()>> {
        self.serve("ping", |_| ())
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }

    fn set_listener(&self, listener: Listener, lost: Lost) {
        *self.lost.lock().unwrap() = Some(lost);
        self.redis
            .listeners
            .lock()
            .unwrap()
            .push((Arc::clone(&self.fault), listener));
    }

    fn describe(&self) -> String {
        "redis://memory:6379/0".into()
    }
}
