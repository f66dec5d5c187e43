//! The cache with a token store, several replicas on one in-memory Redis, on paused
//! tokio time. The same behaviour is checked against the real `redis-server` by the
//! integration tests (`tests/tests/token_store.rs`).

use super::*;
use crate::auth::store::memory::{Fault, MemoryRedis};
use crate::auth::store::StoreMode;
use crate::auth::test_support::{
    credential, metric, replica, static_credential, FakeEndpoint, Replica, Reply, TempDir, KEY_A,
    KEY_B,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn store_count(r: &Replica, op: &str, outcome: &str) -> f64 {
    metric(
        &r.registry,
        "tollgate_token_store_total",
        &[("credential", "billing"), ("op", op), ("outcome", outcome)],
    )
}

fn fleet(n: usize, fake: &Arc<FakeEndpoint>, redis: &Arc<MemoryRedis>) -> Vec<Replica> {
    (0..n)
        .map(|_| replica(fake, &[credential("billing")], redis, &[KEY_A]))
        .collect()
}

fn token_key(redis: &MemoryRedis) -> String {
    let keys = redis.keys("tg:token:billing:");
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].clone()
}

#[tokio::test(start_paused = true)]
async fn a_cold_fleet_makes_one_token_request() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    fake.set_delay(Duration::from_millis(50));
    let redis = MemoryRedis::new();
    let replicas = fleet(3, &fake, &redis);
    settle().await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let cache = Arc::clone(&replicas[i % 3].cache);
        tasks.push(tokio::spawn(async move {
            cache.get("billing").await.map(|t| t.secret().to_owned())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "tok-1");
    }
    assert_eq!(fake.calls(), 1, "one token request for the whole fleet");
    let writes: f64 = replicas.iter().map(|r| store_count(r, "write", "ok")).sum();
    assert_eq!(writes, 1.0, "one replica stored the token");
    // Stored encrypted, with its remaining lifetime as TTL.
    let key = token_key(&redis);
    let value = redis.get(&key).unwrap();
    assert!(!value.windows(5).any(|w| w == b"tok-1"), "plaintext stored");
    let ttl = redis.ttl(&key).unwrap();
    assert!(ttl <= secs(3600) && ttl > secs(3590), "{ttl:?}");
    // The lock is gone.
    assert!(redis.keys("tg:lock:").is_empty());
    for r in &replicas {
        assert_eq!(r.cache.store_status().unwrap().mode, StoreMode::Connected);
    }
    // The warm path never touches Redis.
    let served: Vec<usize> = ["read", "lock", "put"]
        .iter()
        .map(|op| redis.calls(op))
        .collect();
    for r in &replicas {
        let h = r.cache.handle("billing").unwrap();
        for _ in 0..1000 {
            r.cache.hit(&h, |_| ()).unwrap();
            r.cache.get("billing").await.unwrap();
        }
    }
    let after: Vec<usize> = ["read", "lock", "put"]
        .iter()
        .map(|op| redis.calls(op))
        .collect();
    assert_eq!(served, after);
}

#[tokio::test(start_paused = true)]
async fn a_late_replica_adopts_the_stored_token_on_its_schedule() {
    let fake = FakeEndpoint::new(Reply::token(100));
    let redis = MemoryRedis::new();
    let first = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let t1 = first.cache.get("billing").await.unwrap();
    tokio::time::advance(secs(50)).await;
    let late = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let t = late.cache.get("billing").await.unwrap();
    assert_eq!(t.secret(), t1.secret());
    assert_eq!(fake.calls(), 1);
    assert_eq!(store_count(&late, "read", "hit"), 1.0);
    // Its schedule follows the token's lifetime: stale at 75 s, not at 50 + 75.
    let handle = late.cache.handle("billing").unwrap();
    tokio::time::advance(secs(24)).await;
    late.cache.hit(&handle, |_| ()).unwrap();
    settle().await;
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(secs(2)).await;
    late.cache.hit(&handle, |_| ()).unwrap();
    settle().await;
    assert_eq!(
        fake.calls(),
        2,
        "refreshed at 75 % of the original lifetime"
    );
    // Unusable at 90 s of the token's life.
    let t2 = late.cache.cached("billing").unwrap();
    assert_eq!(t2.secret(), "tok-2");
    assert!(t1.usable_at(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn background_refresh_is_done_by_one_replica() {
    let fake = FakeEndpoint::new(Reply::token(100));
    fake.set_delay(Duration::from_millis(20));
    let redis = MemoryRedis::new();
    let replicas = fleet(3, &fake, &redis);
    for r in &replicas {
        r.cache.get("billing").await.unwrap();
    }
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(secs(76)).await;
    for r in &replicas {
        let h = r.cache.handle("billing").unwrap();
        r.cache.hit(&h, |_| ()).unwrap();
    }
    tokio::time::sleep(secs(1)).await;
    assert_eq!(fake.calls(), 2, "one refresh for the fleet");
    for r in &replicas {
        assert_eq!(r.cache.cached("billing").unwrap().secret(), "tok-2");
    }
}

#[tokio::test(start_paused = true)]
async fn a_401_on_one_replica_is_one_token_request_for_the_fleet() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    let replicas = fleet(3, &fake, &redis);
    let mut old = Vec::new();
    for r in &replicas {
        old.push(r.cache.get("billing").await.unwrap());
    }
    assert_eq!(fake.calls(), 1);
    // Replica 0's upstream rejects the token.
    assert!(replicas[0].cache.invalidate("billing", &old[0]));
    settle().await;
    // The others dropped their copy: none hands out the revoked token.
    for r in &replicas {
        assert!(r.cache.cached("billing").is_none());
    }
    assert!(redis.keys("tg:token:").is_empty(), "deleted from Redis");
    assert_eq!(store_count(&replicas[0], "invalidate", "deleted"), 1.0);
    assert_eq!(store_count(&replicas[1], "notice", "dropped"), 1.0);
    // Everyone asks again at once: one token request.
    let mut tasks = Vec::new();
    for i in 0..90 {
        let cache = Arc::clone(&replicas[i % 3].cache);
        tasks.push(tokio::spawn(async move {
            cache.get("billing").await.map(|t| t.secret().to_owned())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "tok-2");
    }
    assert_eq!(fake.calls(), 2);
    // A late 401 for the old token on another replica changes nothing.
    assert!(!replicas[2].cache.invalidate("billing", &old[2]));
    settle().await;
    assert_eq!(
        replicas[2].cache.cached("billing").unwrap().secret(),
        "tok-2"
    );
}

#[tokio::test(start_paused = true)]
async fn the_replaying_replica_never_adopts_the_token_it_revoked() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    let a = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let old = a.cache.get("billing").await.unwrap();
    // The invalidation and the replay's get race: the get must not read the old token
    // back from Redis even if it runs before the delete.
    a.backend.delay_op("invalidate", Duration::from_millis(100));
    assert!(a.cache.invalidate("billing", &old));
    let fresh = a.cache.get("billing").await.unwrap();
    assert_ne!(fresh.secret(), old.secret());
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn redis_down_falls_back_at_once_and_rejoins() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    let replicas = fleet(2, &fake, &redis);
    settle().await;
    for r in &replicas {
        r.backend.set_fault(Fault::Down);
    }
    // The dropped connection switches each replica to fallback at once, before any miss.
    for r in &replicas {
        let s = r.cache.store_status().unwrap();
        assert_eq!(s.mode, StoreMode::Fallback);
        assert_eq!(
            s.last_error.as_deref(),
            Some("the connection to Redis was lost")
        );
    }
    // Each replica fetches its own token: requests never fail.
    for r in &replicas {
        assert!(r.cache.get("billing").await.is_ok());
    }
    assert_eq!(fake.calls(), 2);
    for r in &replicas {
        assert_eq!(metric(&r.registry, "tollgate_token_store_up", &[]), 0.0);
    }
    // Falling back means not waiting for Redis at all: a 401 is local only.
    let t = replicas[0].cache.cached("billing").unwrap();
    assert!(replicas[0].cache.invalidate("billing", &t));
    assert!(replicas[0].cache.get("billing").await.is_ok());
    assert_eq!(store_count(&replicas[0], "read", "fallback"), 2.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        replicas[0]
            .cache
            .store_status()
            .unwrap()
            .last_error
            .as_deref(),
        Some("connection refused"),
        "the probe's error"
    );
    // Redis is back: the probe notices within a second, no restart.
    for r in &replicas {
        r.backend.set_fault(Fault::None);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for r in &replicas {
        assert_eq!(r.cache.store_status().unwrap().mode, StoreMode::Connected);
        assert_eq!(metric(&r.registry, "tollgate_token_store_up", &[]), 1.0);
    }
    // And shares again: a 401 on one is one request for both.
    let t = replicas[1].cache.cached("billing").unwrap();
    assert!(replicas[1].cache.invalidate("billing", &t));
    let before = fake.calls();
    assert!(replicas[1].cache.get("billing").await.is_ok());
    let t = replicas[0].cache.cached("billing").unwrap();
    assert!(replicas[0].cache.invalidate("billing", &t));
    assert!(replicas[0].cache.get("billing").await.is_ok());
    assert_eq!(fake.calls(), before + 1);
}

#[tokio::test(start_paused = true)]
async fn slow_or_erroring_redis_costs_one_timeout_then_nothing() {
    for fault in [Fault::Slow(secs(30)), Fault::Errors] {
        let fake = FakeEndpoint::new(Reply::token(3600));
        let redis = MemoryRedis::new();
        let r = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
        settle().await;
        r.backend.set_fault(fault.clone());
        let started = Instant::now();
        r.cache.get("billing").await.unwrap();
        let took = started.elapsed();
        assert!(took <= Duration::from_millis(510), "{fault:?}: {took:?}");
        assert_eq!(r.cache.store_status().unwrap().mode, StoreMode::Fallback);
        let t = r.cache.cached("billing").unwrap();
        assert!(r.cache.invalidate("billing", &t));
        let started = Instant::now();
        r.cache.get("billing").await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(5), "{fault:?}");
        assert_eq!(store_count(&r, "read", "error"), 1.0, "{fault:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lock_held_past_lock_timeout_is_ignored() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    let stuck = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    // Learn the key names, then leave a lock held by a replica that hangs.
    stuck.cache.get("billing").await.unwrap();
    let token = token_key(&redis);
    let lock = token.replace("tg:token:", "tg:lock:");
    redis.put_raw(&token, b"x".to_vec(), Duration::from_millis(1));
    redis.put_raw(&lock, b"someone".to_vec(), secs(60));
    tokio::time::advance(Duration::from_millis(2)).await;
    let r = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let started = Instant::now();
    let t = r.cache.get("billing").await.unwrap();
    let took = started.elapsed();
    assert!(took >= secs(5) && took < secs(6), "{took:?}");
    assert_eq!(t.secret(), "tok-2");
    assert_eq!(store_count(&r, "wait", "timeout"), 1.0);
    // What it fetched alone is still shared.
    let late = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    assert_eq!(late.cache.get("billing").await.unwrap().secret(), "tok-2");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dead_holders_lock_expires_and_the_next_replica_fetches() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    let first = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    first.cache.get("billing").await.unwrap();
    let token = token_key(&redis);
    let lock = token.replace("tg:token:", "tg:lock:");
    redis.put_raw(&token, b"x".to_vec(), Duration::from_millis(1));
    // A holder that died 4 s into its 5 s lock.
    redis.put_raw(&lock, b"dead".to_vec(), secs(1));
    tokio::time::advance(Duration::from_millis(2)).await;
    let r = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let started = Instant::now();
    r.cache.get("billing").await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= secs(1) && took < Duration::from_millis(1200),
        "{took:?}"
    );
    assert_eq!(store_count(&r, "lock", "acquired"), 1.0);
    assert_eq!(store_count(&r, "wait", "timeout"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn values_that_are_not_ours_are_misses_and_get_overwritten() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    let first = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    first.cache.get("billing").await.unwrap();
    let key = token_key(&redis);
    let other = replica(&fake, &[credential("billing")], &redis, &[KEY_B]);
    // Sealed with a key this replica does not have.
    let t = other.cache.get("billing").await.unwrap();
    assert_eq!(t.secret(), "tok-2");
    assert_eq!(
        store_count(&other, "read", "unreadable"),
        2.0,
        "read, then lock"
    );
    // Garbage, and a value from another credential's key.
    for junk in [b"not a token".to_vec(), b"TG1".repeat(40)] {
        redis.put_raw(&key, junk, secs(60));
        let r = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
        let before = fake.calls();
        r.cache.get("billing").await.unwrap();
        assert_eq!(fake.calls(), before + 1);
        assert!(store_count(&r, "read", "unreadable") >= 1.0);
    }
    // Overwritten with a good one.
    let r = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let before = fake.calls();
    r.cache.get("billing").await.unwrap();
    assert_eq!(fake.calls(), before);
}

#[tokio::test(start_paused = true)]
async fn key_rotation_without_a_miss() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    // Step 0: everyone seals with A.
    let old = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    old.cache.get("billing").await.unwrap();
    // Step 1 (B known, A still seals) and step 2 (B seals, A still opens).
    let knows_b = replica(&fake, &[credential("billing")], &redis, &[KEY_A, KEY_B]);
    knows_b.cache.get("billing").await.unwrap();
    let seals_b = replica(&fake, &[credential("billing")], &redis, &[KEY_B, KEY_A]);
    seals_b.cache.get("billing").await.unwrap();
    settle().await;
    assert_eq!(store_count(&seals_b, "reseal", "ok"), 1.0);
    // Step 3: A retired. The stored token was resealed with B: still no miss.
    let only_b = replica(&fake, &[credential("billing")], &redis, &[KEY_B]);
    only_b.cache.get("billing").await.unwrap();
    assert_eq!(
        fake.calls(),
        1,
        "no token request through the whole rotation"
    );
    // Reload: a replica's key files change on disk and take effect.
    let dir = &old.dir;
    let a = dir.write("key0", KEY_B);
    let b = dir.write("key1", KEY_A);
    let mut ts = tollgate_rules::TokenStore {
        redis: tollgate_rules::RedisStore {
            tls: false,
            host: "memory".into(),
            port: 6379,
            db: 0,
            username: None,
            password_file: None,
            key_prefix: "tg:".into(),
            timeout: Duration::from_millis(500),
        },
        encryption_key_files: vec![a, b],
        lock_timeout: secs(5),
    };
    let msg = old.cache.reconfigure_store(Some(&ts)).unwrap();
    assert!(msg.contains("reloaded"), "{msg}");
    assert_eq!(
        old.cache.store_status().unwrap().key_ids,
        seals_b.cache.store_status().unwrap().key_ids
    );
    ts.encryption_key_files = vec![dir.path().join("missing")];
    assert!(old.cache.reconfigure_store(Some(&ts)).is_err());
}

#[tokio::test(start_paused = true)]
async fn rate_limit_headers_hold_the_fleet() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let reset = (SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30)
        .to_string();
    // The answer used the last request of the window.
    fake.set_rate_limit(Some("0"), Some(&reset));
    let redis = MemoryRedis::new();
    let a = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let b = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let t = a.cache.get("billing").await.unwrap();
    assert_eq!(
        metric(
            &a.registry,
            "tollgate_token_rate_limit_remaining",
            &[("credential", "billing")]
        ),
        0.0
    );
    // A 401 now: the replay may not ask before the reset.
    assert!(a.cache.invalidate("billing", &t));
    let e = a.cache.get("billing").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("not asking the token endpoint again for")
            && e.to_string().contains("X-Rate-Limit-Remaining: 0"),
        "{e}"
    );
    assert_eq!(fake.calls(), 1);
    assert_eq!(
        metric(
            &a.registry,
            "tollgate_token_requests_deferred_total",
            &[("credential", "billing")]
        ),
        1.0
    );
    // The other replica honours the same hold (its token was dropped by the notice).
    let e = b.cache.get("billing").await.unwrap_err();
    assert!(e.to_string().contains("not asking"), "{e}");
    assert_eq!(fake.calls(), 1);
    // After the reset, one request.
    fake.set_rate_limit(None, None);
    tokio::time::advance(secs(31)).await;
    assert!(a.cache.get("billing").await.is_ok());
    assert!(b.cache.get("billing").await.is_ok());
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_not_repeated_by_every_replica() {
    let fake = FakeEndpoint::new(Reply::Status(503, "{}", Some("3")));
    let redis = MemoryRedis::new();
    let replicas = fleet(3, &fake, &redis);
    for r in &replicas {
        assert!(r.cache.get("billing").await.is_err());
    }
    assert_eq!(fake.calls(), 1, "the others honour the shared hold");
    fake.set_default(Reply::token(60));
    tokio::time::advance(secs(3)).await;
    for r in &replicas {
        assert!(r.cache.get("billing").await.is_ok());
    }
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn debug_and_status_never_show_keys_or_tokens() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    let r = replica(&fake, &[credential("billing")], &redis, &[KEY_A]);
    let t = r.cache.get("billing").await.unwrap();
    let status = format!("{:?}", r.cache.store_status().unwrap());
    let fleet = format!("{:?}", r.cache.shared.fleet.as_ref().unwrap());
    for s in [&status, &fleet] {
        assert!(!s.contains(KEY_A) && !s.contains(t.secret()), "{s}");
    }
    assert!(status.contains("redis://memory:6379/0"), "{status}");
}

#[tokio::test(start_paused = true)]
async fn a_static_credential_never_touches_the_store() {
    let fake = FakeEndpoint::new(Reply::token(3600));
    let redis = MemoryRedis::new();
    let dir = TempDir::new();
    let path = dir.write("stripe", "sk_test_one\n");
    let defs = [static_credential("stripe", &path), credential("billing")];
    let replicas: Vec<Replica> = (0..2)
        .map(|_| replica(&fake, &defs, &redis, &[KEY_A]))
        .collect();
    settle().await;
    let ops = [
        "read",
        "lock",
        "put",
        "hold",
        "unlock",
        "invalidate",
        "reseal",
    ];
    let calls = || ops.iter().map(|op| redis.calls(op)).sum::<usize>();
    for r in &replicas {
        // Cold, then past its re-check interval (the background refresher runs), then a
        // 401 invalidation (the data path does not replay static values; nothing is
        // shared if something asks anyway).
        let t = r.cache.get("stripe").await.unwrap();
        assert_eq!(t.secret(), "sk_test_one");
        tokio::time::advance(Duration::from_millis(1100)).await;
        let h = r.cache.handle("stripe").unwrap();
        let _ = r.cache.hit(&h, |_| ());
        settle().await;
        let t = r.cache.get("stripe").await.unwrap();
        r.cache.invalidate("stripe", &t);
        settle().await;
        r.cache.get("stripe").await.unwrap();
    }
    assert_eq!(calls(), 0, "no Redis operation for a static credential");
    assert!(redis.keys("tg:").iter().all(|k| !k.contains("stripe")));
    assert_eq!(fake.calls(), 0);
    for r in &replicas {
        let series = r
            .registry
            .gather()
            .into_iter()
            .filter(|f| f.name() == "tollgate_token_store_total")
            .flat_map(|f| f.get_metric().to_vec())
            .filter(|m| m.get_label().iter().any(|l| l.value() == "stripe"))
            .count();
        assert_eq!(series, 0, "no token store series for a static credential");
    }
    // The OAuth credential next to it still goes through the store.
    replicas[0].cache.get("billing").await.unwrap();
    replicas[1].cache.get("billing").await.unwrap();
    assert_eq!(fake.calls(), 1);
    assert!(redis.calls("put") >= 1);
}
