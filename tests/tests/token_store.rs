//! The token store (issue 15) through real processes: several `tollgate` replicas on one
//! real `redis-server` (password, ACL user), the real IdP (`tests/idp/idp.mjs`, which
//! counts token requests) and the token-validating upstream (which can revoke tokens).
//! Assertions are on what the IdP, the upstream and Redis saw, on each replica's
//! `/metrics` and its log.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_tests::redis::{ADMIN_PASSWORD, USER_PASSWORD};
use tollgate_tests::{
    raw, tempdir, Idp, ProtectedUpstream, RawResponse, RecordingUpstream, RedisServer, Tollgate,
};

const KEY_1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY_2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

struct World {
    redis: RedisServer,
    idp: Idp,
    up: ProtectedUpstream,
}

async fn world() -> World {
    let redis = RedisServer::start().await;
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    World { redis, idp, up }
}

impl World {
    /// The config of one replica (key files and the password file written into `dir`).
    fn config(&self, dir: &Path, keys: &[&str], lock_timeout: &str) -> String {
        let files: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let path = dir.join(format!("store-key-{i}"));
                std::fs::write(&path, format!("{k}\n")).expect("write key file");
                path.display().to_string()
            })
            .collect();
        let password = RedisServer::password_file(dir);
        format!(
            "allow_private_networks: true
credentials:
  api:
    token_url: {token_url}
    client_id: basic-client
    client_secret: basic-secret
routes:
  - name: api
    match:
      hosts: [\"{host}\"]
    action: inject
    credential: api
token_store:
  redis:
    url: {url}
    username: tollgate
    password_file: {password}
  encryption_key_files: [{files}]
  lock_timeout: {lock_timeout}
",
            token_url = self.idp.token_url,
            host = self.up.host(),
            url = self.redis.url(),
            password = password.display(),
            files = files.join(", "),
        )
    }

    async fn replica(&self, keys: &[&str], lock_timeout: &str) -> Tollgate {
        let dir = tempdir();
        let body = self.config(dir.path(), keys, lock_timeout);
        let tg = Tollgate::start_in(dir, &body).await;
        assert!(
            tg.wait_for_output("token store connected", 1, Duration::from_secs(10))
                .await,
            "{}",
            tg.output()
        );
        tg
    }

    async fn replicas(&self, n: usize) -> Vec<Tollgate> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.replica(&[KEY_1], "5s").await);
        }
        out
    }

    async fn token_requests(&self) -> usize {
        self.idp.stats().await.token_requests
    }

    /// The one token key in Redis.
    fn token_key(&self) -> String {
        let keys = self.redis.scan("tollgate:token:*");
        assert_eq!(keys.len(), 1, "{keys:?}");
        keys[0].clone()
    }
}

/// GET `path` of the upstream through `tg` on a fresh connection.
async fn get(tg: &Tollgate, host: &str, path: &str) -> RawResponse {
    let mut conn = raw::RawConn::connect(tg.proxy).await;
    conn.send(
        format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    conn.read_response("GET").await
}

/// Sum of a metric's samples whose labels include all of `labels`.
async fn metric(tg: &Tollgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = raw::get(tg.admin, "/metrics").await.body_text();
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            Some(lv) => lv,
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            total += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

async fn store(tg: &Tollgate, op: &str, outcome: &str) -> f64 {
    metric(
        tg,
        "tollgate_token_store_total",
        &[("credential", "api"), ("op", op), ("outcome", outcome)],
    )
    .await
}

/// Waits until `f` holds (up to 10 s).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Neither the Redis passwords nor `secret` appear in the output or the metrics.
async fn assert_clean(tg: &Tollgate, secret: &str) {
    let out = tg.output();
    let metrics = raw::get(tg.admin, "/metrics").await.body_text();
    for text in [&out, &metrics] {
        for s in [USER_PASSWORD, ADMIN_PASSWORD, secret] {
            assert!(!text.contains(s), "{s:?} appears in:\n{text}");
        }
    }
}

fn bearer(r: &tollgate_tests::UpstreamRequest) -> String {
    r.header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("a bearer token")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_one_token_and_one_401() {
    let w = world().await;
    // A slow token endpoint, so the storm overlaps the one request.
    w.idp.delay(300).await;
    let fleet = Arc::new(w.replicas(3).await);
    let host = w.up.host();

    // Cold start: 300 concurrent requests across the three replicas.
    let barrier = Arc::new(tokio::sync::Barrier::new(300));
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (fleet, barrier, host) = (Arc::clone(&fleet), Arc::clone(&barrier), host.clone());
        tasks.push(tokio::spawn(async move {
            let tg = &fleet[i % 3];
            let mut conn = raw::RawConn::connect(tg.proxy).await;
            barrier.wait().await;
            conn.send(
                format!(
                    "GET http://{host}/cold/{i} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
            conn.read_response("GET").await
        }));
    }
    for t in tasks {
        let r = t.await.expect("request task");
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(
        w.token_requests().await,
        1,
        "one token request for the fleet"
    );
    w.idp.delay(0).await;
    let reqs = w.up.requests().await;
    assert_eq!(reqs.len(), 300);
    let token = bearer(&reqs[0]);
    assert!(reqs.iter().all(|r| bearer(r) == token));
    let mut writes = 0.0;
    for tg in fleet.iter() {
        writes += store(tg, "write", "ok").await;
        assert_eq!(metric(tg, "tollgate_token_store_up", &[]).await, 1.0);
    }
    assert_eq!(writes, 1.0, "one replica stored the token");

    // In Redis: one key, ciphertext only, TTL = the token's remaining lifetime.
    assert_eq!(w.redis.scan("tollgate:*").len(), 1, "the lock is gone");
    let key = w.token_key();
    assert!(key.starts_with("tollgate:token:api:"), "{key}");
    let value = w.redis.get_raw(&key);
    assert!(value.starts_with(b"TG1"), "{value:?}");
    let shown = w.redis.cli(&["GET", &key]);
    for text in [String::from_utf8_lossy(&value).into_owned(), shown] {
        assert!(!text.contains(&token) && !text.contains("eyJ"), "{text}");
    }
    let ttl: u64 = w.redis.cli(&["PTTL", &key]).trim().parse().expect("a TTL");
    assert!((280_000..=300_000).contains(&ttl), "{ttl}");

    // A 401 on replica 0: exactly one new token request for the whole fleet...
    w.up.revoke_all().await;
    let seq = w.up.count().await;
    let r = get(&fleet[0], &host, "/after-revoke").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(w.token_requests().await, 2);
    // ...and the other replicas drop the revoked token without sending it.
    for tg in &fleet[1..] {
        eventually("the revoke notice", || async {
            store(tg, "notice", "dropped").await == 1.0
        })
        .await;
    }
    for i in 0..20 {
        let r = get(&fleet[1 + i % 2], &host, "/others").await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(w.token_requests().await, 2);
    let after = w.up.requests_since(seq).await;
    let refused: Vec<_> = after.iter().filter(|r| r.status == Some(401)).collect();
    assert_eq!(
        refused.len(),
        1,
        "only replica 0 sent the revoked token: {after:#?}"
    );
    assert_eq!(after.len(), 22);
    let fresh = bearer(after.last().expect("requests"));
    assert_ne!(fresh, token);
    assert_eq!(store(&fleet[0], "invalidate", "deleted").await, 1.0);

    for tg in fleet.iter() {
        assert_clean(tg, &token).await;
        assert_clean(tg, &fresh).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn background_refresh_is_done_by_one_replica() {
    let w = world().await;
    w.idp.set_ttl(4).await;
    let fleet = w.replicas(3).await;
    let host = w.up.host();
    // Steady traffic through all three for 5 s: the token (4 s) is refreshed once, at 3 s.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let r = get(&fleet[n % 3], &host, "/steady").await;
        assert_eq!(r.status, 200, "{r:?}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let stats = w.idp.stats().await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");
    let reqs = w.up.requests().await;
    assert!(reqs.iter().all(|r| r.status == Some(200)), "{reqs:#?}");
    let mut writes = 0.0;
    for tg in &fleet {
        writes += store(tg, "write", "ok").await;
    }
    assert_eq!(writes, 2.0, "the first token and one refresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_redis_mid_traffic_fails_nothing_and_the_fleet_rejoins() {
    let mut w = world().await;
    let fleet = Arc::new(w.replicas(2).await);
    let host = w.up.host();
    for tg in fleet.iter() {
        assert_eq!(get(tg, &host, "/warm").await.status, 200);
    }
    assert_eq!(w.token_requests().await, 1);

    // Steady traffic on both replicas until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for i in 0..2 {
        let (fleet, stop, host) = (Arc::clone(&fleet), Arc::clone(&stop), host.clone());
        loops.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = get(&fleet[i], &host, "/steady").await;
                if r.status == 200 {
                    ok += 1;
                } else {
                    failed.push(r);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.redis.kill();
    // Each replica notices at once (the connection dropped) and says so once.
    for tg in fleet.iter() {
        assert!(
            tg.wait_for_output("token store unavailable", 1, Duration::from_secs(5))
                .await,
            "{}",
            tg.output()
        );
        eventually("store_up 0", || async {
            metric(tg, "tollgate_token_store_up", &[]).await == 0.0
        })
        .await;
    }
    // A 401 while Redis is down: each replica fetches its own token; nothing fails.
    w.up.revoke_all().await;
    eventually("both replicas refetched", || async {
        w.token_requests().await == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    w.redis.restart().await;
    for tg in fleet.iter() {
        assert!(
            tg.wait_for_output("token store reachable again", 1, Duration::from_secs(10))
                .await,
            "{}",
            tg.output()
        );
        assert_eq!(metric(tg, "tollgate_token_store_up", &[]).await, 1.0);
        assert_eq!(
            tg.output().matches("token store unavailable").count(),
            1,
            "said once"
        );
    }
    // Shared again: a 401 on both is one token request.
    w.up.revoke_all().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for l in loops {
        let (ok, failed) = l.await.expect("traffic loop");
        assert!(failed.is_empty(), "failed requests: {failed:#?}");
        total += ok;
    }
    assert!(total > 50, "steady traffic: {total}");
    assert_eq!(
        w.token_requests().await,
        4,
        "one for the fleet after rejoining"
    );
    assert_eq!(w.redis.scan("tollgate:token:*").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_redis_values_locks_errors_and_stalls() {
    let w = world().await;
    let tg = w.replica(&[KEY_1], "1s").await;
    let host = w.up.host();
    assert_eq!(get(&tg, &host, "/warm").await.status, 200);
    let key = w.token_key();
    let lock = key.replace("tollgate:token:", "tollgate:lock:");
    let mut expected = 1;

    // Forces a miss: the upstream rejects the token, the replay needs a new one.
    async fn miss(w: &World, tg: &Tollgate, host: &str) -> (RawResponse, Duration) {
        w.up.revoke_all().await;
        let started = Instant::now();
        let r = get(tg, host, "/hostile").await;
        (r, started.elapsed())
    }

    // A wrong password: the replica serves alone, says why, never shows a password.
    let dir = tempdir();
    let body = w.config(dir.path(), &[KEY_1], "1s");
    std::fs::write(dir.path().join("redis-password"), "not-the-password-4411\n")
        .expect("write the wrong password");
    let locked_out = Tollgate::start_in(dir, &body).await;
    assert!(
        locked_out
            .wait_for_output("token store unavailable", 1, Duration::from_secs(10))
            .await,
        "{}",
        locked_out.output()
    );
    assert_eq!(get(&locked_out, &host, "/alone").await.status, 200);
    expected += 1;
    assert_eq!(w.token_requests().await, expected);
    let out = locked_out.output();
    assert!(
        out.contains("WRONGPASS") || out.contains("invalid username-password"),
        "{out}"
    );
    assert_clean(&locked_out, "not-the-password-4411").await;
    drop(locked_out);

    // A value that is not ours: a miss, logged, then overwritten with ours.
    w.redis
        .cli(&["SET", &key, "eyJhbGciOiJub25lIn0.e30.", "PX", "60000"]);
    let (r, _) = miss(&w, &tg, &host).await;
    assert_eq!(r.status, 200, "{r:?}");
    expected += 1;
    assert_eq!(w.token_requests().await, expected);
    assert!(store(&tg, "read", "unreadable").await >= 1.0);
    assert!(
        tg.output().contains("not one tollgate wrote"),
        "{}",
        tg.output()
    );
    assert!(w.redis.get_raw(&key).starts_with(b"TG1"));

    // Encrypted with a key this replica does not have: a miss, logged.
    let stranger = w.replica(&[KEY_2], "1s").await;
    assert_eq!(get(&stranger, &host, "/stranger").await.status, 200);
    expected += 1;
    assert_eq!(w.token_requests().await, expected);
    assert!(
        stranger
            .output()
            .contains("encrypted with a key that is not in encryption_key_files"),
        "{}",
        stranger.output()
    );
    drop(stranger);

    // A lock whose holder died (500 ms left of it): it expires, this replica fetches.
    w.redis.cli(&["DEL", &key]);
    w.redis.cli(&["SET", &lock, "dead-holder", "PX", "500"]);
    let acquired = store(&tg, "lock", "acquired").await;
    let (r, took) = miss(&w, &tg, &host).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    expected += 1;
    assert_eq!(w.token_requests().await, expected);
    assert_eq!(store(&tg, "lock", "acquired").await, acquired + 1.0);
    assert_eq!(store(&tg, "wait", "timeout").await, 0.0);

    // A lock held past lock_timeout (1 s): wait that long, then fetch alone.
    w.redis.cli(&["DEL", &key]);
    w.redis.cli(&["SET", &lock, "stuck-holder", "PX", "60000"]);
    let (r, took) = miss(&w, &tg, &host).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    expected += 1;
    assert_eq!(w.token_requests().await, expected);
    assert_eq!(store(&tg, "wait", "timeout").await, 1.0);
    assert!(tg.output().contains("past lock_timeout"), "{}", tg.output());
    w.redis.cli(&["DEL", &lock]);

    // Redis answering errors (the ACL user lost its rights): fall back at once.
    w.redis.cli(&["ACL", "SETUSER", "tollgate", "-@all"]);
    let (r, _) = miss(&w, &tg, &host).await;
    assert_eq!(r.status, 200, "{r:?}");
    expected += 1;
    assert_eq!(w.token_requests().await, expected);
    assert!(
        tg.wait_for_output("token store unavailable", 1, Duration::from_secs(5))
            .await
    );
    assert!(tg.output().contains("no permissions"), "{}", tg.output());
    w.redis.cli(&["ACL", "SETUSER", "tollgate", "+@all"]);
    assert!(
        tg.wait_for_output("token store reachable again", 1, Duration::from_secs(10))
            .await
    );

    // Redis stalled (CLIENT PAUSE): one operation timeout, then fall back.
    w.redis.cli(&["CLIENT", "PAUSE", "3000", "ALL"]);
    let (r, took) = miss(&w, &tg, &host).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    expected += 1;
    assert_eq!(w.token_requests().await, expected);
    assert!(
        tg.wait_for_output("token store reachable again", 2, Duration::from_secs(10))
            .await,
        "{}",
        tg.output()
    );
    assert_clean(&tg, "basic-secret").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_encryption_key_makes_no_token_request() {
    let w = world().await;
    let host = w.up.host();
    // Before: every replica seals with key 1.
    let old = w.replica(&[KEY_1], "5s").await;
    assert_eq!(get(&old, &host, "/before").await.status, 200);
    // During: a replica that seals with key 2 and still opens key 1...
    let rolling = w.replica(&[KEY_2, KEY_1], "5s").await;
    assert_eq!(get(&rolling, &host, "/during").await.status, 200);
    eventually("the reseal", || async {
        store(&rolling, "reseal", "ok").await == 1.0
    })
    .await;
    // ...after: key 1 retired.
    let new = w.replica(&[KEY_2], "5s").await;
    assert_eq!(get(&new, &host, "/after").await.status, 200);
    assert_eq!(w.token_requests().await, 1, "no miss through the rotation");

    // The old replica takes key 2 on reload, without a restart.
    let body = w.config(old.dir(), &[KEY_2], "5s");
    old.replace_config(&body);
    assert!(
        old.wait_for_output("encryption keys reloaded", 1, Duration::from_secs(10))
            .await,
        "{}",
        old.output()
    );
    // A 401 on the new replica: the fresh token is sealed with key 2, and the old
    // replica (told to drop its copy) opens it.
    w.up.revoke_all().await;
    assert_eq!(get(&new, &host, "/revoked").await.status, 200);
    assert_eq!(w.token_requests().await, 2);
    eventually("the notice", || async {
        store(&old, "notice", "dropped").await == 1.0
    })
    .await;
    assert_eq!(get(&old, &host, "/reloaded").await.status, 200);
    assert_eq!(w.token_requests().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_idps_rate_limit_holds_every_replica_until_it_resets() {
    let w = world().await;
    let host = w.up.host();
    let a = w.replica(&[KEY_1], "5s").await;
    let b = w.replica(&[KEY_1], "5s").await;
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 4;
    // Okta says: that was the last token request of this window.
    w.idp
        .config(json!({"headers": {
            "X-Rate-Limit-Limit": "100",
            "X-Rate-Limit-Remaining": "0",
            "X-Rate-Limit-Reset": reset.to_string(),
        }}))
        .await;
    assert_eq!(get(&a, &host, "/first").await.status, 200);
    assert_eq!(
        metric(
            &a,
            "tollgate_token_rate_limit_remaining",
            &[("credential", "api")]
        )
        .await,
        0.0
    );
    w.idp.config(json!({"headers": null})).await;
    // A 401 before the reset: neither replica asks again; the replay fails, naming why.
    w.up.revoke_all().await;
    let r = get(&a, &host, "/held").await;
    assert_eq!(r.status, 502, "{r:?}");
    let body = r.body_text();
    assert!(
        body.contains("not asking the token endpoint again"),
        "{body}"
    );
    let r = get(&b, &host, "/held").await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(w.token_requests().await, 1);
    assert!(
        metric(
            &b,
            "tollgate_token_requests_deferred_total",
            &[("credential", "api")]
        )
        .await
            >= 1.0
    );
    // After the reset: one request, for both.
    let wait = Duration::from_secs(reset)
        .checked_sub(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock"),
        )
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1200)).await;
    assert_eq!(get(&a, &host, "/later").await.status, 200);
    assert_eq!(get(&b, &host, "/later").await.status, 200);
    assert_eq!(w.token_requests().await, 2);
}

/// Calls of the commands the token store sends (all its operations are scripts).
fn store_commands(redis: &RedisServer) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| {
            ["cmdstat_evalsha:", "cmdstat_eval:", "cmdstat_script"]
                .iter()
                .any(|c| l.starts_with(c))
        })
        .filter_map(|l| {
            let calls = l.split_once("calls=")?.1;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_credential_never_reaches_redis() {
    let w = world().await;
    let up = RecordingUpstream::start().await;
    let static_host = format!("127.0.0.1:{}", up.port());
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let dir = tempdir();
        let value = dir.path().join("stripe-key");
        std::fs::write(&value, "sk_test_static\n").expect("write the static value");
        let body = w
            .config(dir.path(), &[KEY_1], "5s")
            .replacen(
                "credentials:\n",
                &format!(
                    "credentials:\n  stripe:\n    kind: static\n    value_file: {}\n",
                    value.display()
                ),
                1,
            )
            .replacen(
                "routes:\n",
                &format!(
                    "routes:\n  - name: stripe\n    match: {{ hosts: [\"{static_host}\"] }}\n    action: inject\n    credential: stripe\n    header: X-Api-Key\n    prefix: \"\"\n"
                ),
                1,
            );
        let tg = Tollgate::start_in(dir, &body).await;
        assert!(
            tg.wait_for_output("token store connected", 1, Duration::from_secs(10))
                .await,
            "{}",
            tg.output()
        );
        replicas.push(tg);
    }
    // The OAuth credential next to it goes through the store.
    for tg in &replicas {
        let resp = get(tg, &w.up.host(), "/x").await;
        assert_eq!(resp.status, 200, "{resp:?} {}", tg.output());
    }
    assert_eq!(w.token_requests().await, 1, "one token for both replicas");
    let before = store_commands(&w.redis);
    assert!(before > 0, "the OAuth credential used the store");

    // Cold, then past its one-second re-check of the file: no store operation at all.
    for round in 0..2 {
        for tg in &replicas {
            let resp = get(tg, &static_host, "/v1/charges").await;
            assert_eq!(resp.status, 200, "{resp:?} {}", tg.output());
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(1300)).await;
        }
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    assert!(seen
        .iter()
        .all(|r| r.header("x-api-key") == Some("sk_test_static")));
    assert_eq!(
        store_commands(&w.redis),
        before,
        "a static credential sent Redis commands"
    );
    assert!(w.redis.scan("*stripe*").is_empty());
    for tg in &replicas {
        let metrics = raw::get(tg.admin, "/metrics").await.body_text();
        assert!(
            !metrics
                .lines()
                .any(|l| l.starts_with("tollgate_token_store_total") && l.contains("stripe")),
            "{metrics}"
        );
        assert_clean(tg, "sk_test_static").await;
    }
}
