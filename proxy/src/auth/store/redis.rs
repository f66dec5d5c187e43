//! The real [`Backend`]: the `redis` crate's `ConnectionManager` (one multiplexed
//! connection that reconnects by itself) speaking RESP3, so the events subscription
//! rides on the same connection and is renewed after a reconnect.
//!
//! The client runs on a thread of its own with a current-thread tokio runtime: it is
//! created before pingora starts its runtimes, outlives any of them, and its tasks never
//! compete with request handling. Callers on other runtimes await a spawned task.
//!
//! Every compound operation is one Lua script (one round trip, atomic): see [`SCRIPTS`].
//! The ACL user needs `+ping +hello +subscribe +evalsha +script|load` on its keys
//! (`~PREFIX*`) and channel (`&PREFIX*`); the scripts call GET, SET, DEL, PTTL, PUBLISH.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    ConnectionAddr, IntoConnectionInfo, ProtocolVersion, PushKind, RedisConnectionInfo, Script,
    Value,
};
use tollgate_rules::{RedisStore, Secret};

use super::envelope::TOKEN_ID_AT;
use super::{Backend, BackendError, BackendResult, Keys, Listener, Lost, Raw, Stored, TokenId};
use crate::auth::client::BoxFuture;

/// Password files are a line at most.
const MAX_PASSWORD_FILE: u64 = 4096;

/// The scripts, in Lua. Keys and arguments are documented per script.
struct Scripts {
    /// KEYS: token, hold. Returns {token, token PTTL, hold, hold PTTL}.
    read: Script,
    /// KEYS: token, hold, lock. ARGV: holder, ttl ms. `SET lock NX PX`, then a read.
    lock: Script,
    /// KEYS: token, lock. ARGV: value, ttl ms, holder or "", channel, notice.
    put: Script,
    /// KEYS: hold, lock. ARGV: reason, ttl ms, holder or "".
    hold: Script,
    /// KEYS: lock. ARGV: holder. Compare-and-delete.
    unlock: Script,
    /// KEYS: token. ARGV: id, its 1-based offset, channel, notice. Compare-and-delete on
    /// the token id; publishes either way.
    invalidate: Script,
    /// KEYS: token. ARGV: old value, new value. Compare-and-set keeping the TTL.
    reseal: Script,
}

const READ: &str = r"
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]),
        redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2])}";

const LOCK: &str = r"
local got = redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2])
return {got and 1 or 0, redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]),
        redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2])}";

const PUT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1";

const HOLD: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1";

const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

const INVALIDATE: &str = r"
local v = redis.call('GET', KEYS[1])
local at = tonumber(ARGV[2])
local deleted = 0
if v and string.sub(v, at, at + string.len(ARGV[1]) - 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  deleted = 1
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return deleted";

const RESEAL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local t = redis.call('PTTL', KEYS[1])
  if t > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', t)
    return 1
  end
end
return 0";

impl Scripts {
    fn new() -> Self {
        Scripts {
            read: Script::new(READ),
            lock: Script::new(LOCK),
            put: Script::new(PUT),
            hold: Script::new(HOLD),
            unlock: Script::new(UNLOCK),
            invalidate: Script::new(INVALIDATE),
            reseal: Script::new(RESEAL),
        }
    }
}

pub(crate) struct RedisBackend {
    rt: tokio::runtime::Handle,
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    listener: Arc<OnceLock<(Listener, Lost)>>,
    subscribed: Arc<AtomicBool>,
    events: String,
    describe: String,
}

impl RedisBackend {
    /// Reads the password file and starts the client thread. Connects lazily (the first
    /// ping, in the background).
    pub(crate) fn start(config: &RedisStore) -> Result<Self, String> {
        let password = match &config.password_file {
            Some(path) => Some(
                read_password(path)
                    .map_err(|why| format!("password_file {}: {why}", path.display()))?,
            ),
            None => None,
        };
        let addr = if config.tls {
            ConnectionAddr::TcpTls {
                host: config.host.clone(),
                port: config.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(config.host.clone(), config.port)
        };
        let mut settings = RedisConnectionInfo::default()
            .set_db(i64::from(config.db))
            .set_protocol(ProtocolVersion::RESP3)
            .set_skip_set_lib_name();
        if let Some(user) = &config.username {
            settings = settings.set_username(user);
        }
        if let Some(pw) = &password {
            settings = settings.set_password(pw.expose());
        }
        drop(password);
        let info = addr
            .into_connection_info()
            .map_err(|e| format!("redis url: {}", error_text(&e)))?
            .set_redis_settings(settings);
        let client =
            redis::Client::open(info).map_err(|e| format!("redis client: {}", error_text(&e)))?;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the token store's runtime: {e}"))?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("tollgate-store".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start the token store's thread: {e}"))?;

        let listener: Arc<OnceLock<(Listener, Lost)>> = Arc::default();
        let events = format!("{}events", config.key_prefix);
        let l = Arc::clone(&listener);
        let channel = events.clone();
        let push = move |info: redis::PushInfo| -> Result<(), std::convert::Infallible> {
            let Some((listener, lost)) = l.get() else {
                return Ok(());
            };
            match info.kind {
                PushKind::Message => {
                    if let [Value::BulkString(ch), Value::BulkString(payload)] =
                        info.data.as_slice()
                    {
                        if ch.as_slice() == channel.as_bytes() {
                            listener(payload);
                        }
                    }
                }
                PushKind::Disconnection => lost(),
                _ => {}
            }
            Ok(())
        };
        let cm_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // One quick retry per reconnect: the store's own probe keeps trying once a
            // second while it falls back, so commands never queue behind a long backoff.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
            .set_push_sender(push)
            .set_automatic_resubscription();
        let conn = {
            let _entered = handle.enter();
            ConnectionManager::new_lazy_with_config(client, cm_config)
                .map_err(|e| format!("redis client: {}", error_text(&e)))?
        };
        Ok(RedisBackend {
            rt: handle,
            conn,
            scripts: Arc::new(Scripts::new()),
            listener,
            subscribed: Arc::default(),
            events,
            describe: config.display_url(),
        })
    }

    /// Runs `f` with a connection on the store's runtime.
    fn run<T, F, Fut>(&self, f: F) -> BoxFuture<'static, BackendResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager, Arc<Scripts>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>> + Send + 'static,
    {
        let conn = self.conn.clone();
        let scripts = Arc::clone(&self.scripts);
        let task = self.rt.spawn(async move { f(conn, scripts).await });
        Box::pin(async move {
            match task.await {
                Ok(r) => r.map_err(|e| BackendError(error_text(&e))),
                Err(_) => Err(BackendError("the token store's task stopped".into())),
            }
        })
    }
}

/// A short, password-free description of a Redis error (`connection refused`,
/// `NOPERM ...`, `WRONGPASS ...`).
fn error_text(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connection_refusal() {
        return "connection refused".into();
    }
    let text = e.to_string();
    crate::auth::error::sanitize(&text, 200).to_string()
}

/// `password_file`, as the client reads it at start. The error is the reason alone.
pub(super) fn read_password(path: &std::path::Path) -> Result<Secret, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE {
        return Err("too large for a password file".into());
    }
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let pw = text.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        return Err("empty".into());
    }
    Ok(Secret::new(pw))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn stored(value: Option<&Value>, ttl: Option<&Value>) -> Option<Stored> {
    let value = bytes(value?)?;
    let ttl = int(ttl?)?;
    // -1: no TTL (not ours: we always set one), -2: gone meanwhile.
    let ttl = u64::try_from(ttl).ok().filter(|t| *t > 0)?;
    Some(Stored {
        value,
        ttl: Duration::from_millis(ttl),
    })
}

fn raw(values: &[Value]) -> Raw {
    Raw {
        token: stored(values.first(), values.get(1)),
        hold: stored(values.get(2), values.get(3)),
    }
}

impl Backend for RedisBackend {
    fn read(&self, keys: Arc<Keys>) -> BoxFuture<'static, BackendResult<Raw>> {
        self.run(move |mut conn, scripts| async move {
            let v: Vec<Value> = scripts
                .read
                .key(&keys.token)
                .key(&keys.hold)
                .invoke_async(&mut conn)
                .await?;
            Ok(raw(&v))
        })
    }

    fn lock(
        &self,
        keys: Arc<Keys>,
        holder: String,
        ttl: Duration,
    ) -> BoxFuture<'static, BackendResult<(bool, Raw)>> {
        self.run(move |mut conn, scripts| async move {
            let v: Vec<Value> = scripts
                .lock
                .key(&keys.token)
                .key(&keys.hold)
                .key(&keys.lock)
                .arg(holder)
                .arg(ms(ttl))
                .invoke_async(&mut conn)
                .await?;
            let got = v.first().and_then(int) == Some(1);
            Ok((got, raw(v.get(1..).unwrap_or_default())))
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
        self.run(move |mut conn, scripts| async move {
            let _: i64 = scripts
                .put
                .key(&keys.token)
                .key(&keys.lock)
                .arg(value)
                .arg(ms(ttl))
                .arg(holder.unwrap_or_default())
                .arg(&keys.events)
                .arg(notice)
                .invoke_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn hold(
        &self,
        keys: Arc<Keys>,
        reason: Vec<u8>,
        ttl: Duration,
        holder: Option<String>,
    ) -> BoxFuture<'static, BackendResult<()>> {
        self.run(move |mut conn, scripts| async move {
            let _: i64 = scripts
                .hold
                .key(&keys.hold)
                .key(&keys.lock)
                .arg(reason)
                .arg(ms(ttl))
                .arg(holder.unwrap_or_default())
                .invoke_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn unlock(&self, keys: Arc<Keys>, holder: String) -> BoxFuture<'static, BackendResult<()>> {
        self.run(move |mut conn, scripts| async move {
            let _: i64 = scripts
                .unlock
                .key(&keys.lock)
                .arg(holder)
                .invoke_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn invalidate(
        &self,
        keys: Arc<Keys>,
        id: TokenId,
        notice: Vec<u8>,
    ) -> BoxFuture<'static, BackendResult<bool>> {
        self.run(move |mut conn, scripts| async move {
            let deleted: i64 = scripts
                .invalidate
                .key(&keys.token)
                .arg(id.0.as_slice())
                .arg(TOKEN_ID_AT + 1)
                .arg(&keys.events)
                .arg(notice)
                .invoke_async(&mut conn)
                .await?;
            Ok(deleted == 1)
        })
    }

    fn reseal(
        &self,
        keys: Arc<Keys>,
        old: Vec<u8>,
        new: Vec<u8>,
    ) -> BoxFuture<'static, BackendResult<bool>> {
        self.run(move |mut conn, scripts| async move {
            let replaced: i64 = scripts
                .reseal
                .key(&keys.token)
                .arg(old)
                .arg(new)
                .invoke_async(&mut conn)
                .await?;
            Ok(replaced == 1)
        })
    }

    fn ping(&self) -> BoxFuture<'static, BackendResult<()>> {
        let subscribed = Arc::clone(&self.subscribed);
        let events = self.events.clone();
        self.run(move |mut conn, _| async move {
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            if !subscribed.load(Ordering::Acquire) {
                conn.subscribe(&events).await?;
                subscribed.store(true, Ordering::Release);
            }
            Ok(())
        })
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.rt.spawn(task);
    }

    fn set_listener(&self, listener: Listener, lost: Lost) {
        let _ = self.listener.set((listener, lost));
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
