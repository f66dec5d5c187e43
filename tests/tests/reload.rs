//! Hot reload: a changed config file (or SIGHUP, or a changed secret file) is loaded again
//! without dropping listeners or in-flight requests; an invalid one is rejected, counted
//! and logged, and the old config keeps serving; tokens of unchanged credentials survive.

use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_tests::idp::{Idp, ProtectedUpstream};
use tollgate_tests::process::replace_file;
use tollgate_tests::{
    raw, Launch, RawConn, RecordingUpstream, Reply, SlowUpstream, Tollgate, SLOW_BODY,
};

/// How long a reload may take to be noticed (the watcher polls every second).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

fn upstream_named(name: &str) -> Reply {
    Reply {
        status: 200,
        headers: vec![("X-Upstream".into(), name.into())],
    }
}

/// A gateway route `svc` (host `svc.test`) to `upstream`, plus whatever `extra` adds.
fn svc_config(upstream: u16, extra: &str) -> String {
    format!(
        "allow_private_networks: true
routes:
  - name: svc
    match:
      hosts: [\"svc.test\"]
    action: pass
    upstream: http://127.0.0.1:{upstream}
{extra}"
    )
}

/// `GET http://HOST/path` through the proxy on a fresh connection.
async fn get_host(tg: &Tollgate, host: &str, path: &str) -> raw::RawResponse {
    let req =
        format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw::request(tg.proxy, "GET", req.as_bytes()).await
}

/// One request of the load: when it started and what came back.
struct Outcome {
    started: Instant,
    result: Result<(u16, Option<String>), String>,
}

/// Keep-alive GETs to `svc.test` on one connection until `stop`; a failure is recorded and
/// the client reconnects.
async fn load(proxy: std::net::SocketAddr, id: usize, stop: Arc<AtomicBool>) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut conn = RawConn::connect(proxy).await;
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let started = Instant::now();
        let req = format!("GET http://svc.test/load/{id}/{i} HTTP/1.1\r\nHost: svc.test\r\n\r\n");
        conn.send(req.as_bytes()).await;
        let result = conn
            .try_read_response("GET")
            .await
            .map(|r| (r.status, r.header("x-upstream").map(str::to_owned)));
        let failed = result.is_err();
        out.push(Outcome { started, result });
        if failed {
            conn = RawConn::connect(proxy).await;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_route_applies_under_load_with_zero_failed_requests() {
    let a = RecordingUpstream::start().await;
    a.set_reply(upstream_named("a"));
    let b = RecordingUpstream::start().await;
    b.set_reply(upstream_named("b"));
    let slow = SlowUpstream::start(Duration::from_millis(1500), Duration::from_millis(300)).await;
    let slow_route = format!(
        "  - name: slow
    match:
      hosts: [\"slow.test\"]
    action: pass
    upstream: http://127.0.0.1:{}
",
        slow.port()
    );
    let tg = Tollgate::start(&svc_config(a.port(), &slow_route)).await;
    assert_eq!(
        get_host(&tg, "svc.test", "/").await.header("x-upstream"),
        Some("a")
    );
    get_host(&tg, "added.test", "/")
        .await
        .assert_error(403, "no_route", None);

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|id| tokio::spawn(load(tg.proxy, id, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;

    // A slow request in flight across the reload.
    let proxy = tg.proxy;
    let slow_req = tokio::spawn(async move {
        let mut conn = RawConn::connect(proxy).await;
        conn.send(b"GET http://slow.test/in-flight HTTP/1.1\r\nHost: slow.test\r\n\r\n")
            .await;
        conn.try_read_response("GET").await
    });
    assert!(
        slow.wait_received(1, Duration::from_secs(10)).await,
        "the slow request did not reach its upstream"
    );

    // New config: `svc` goes to b, and a route is added.
    let added = format!(
        "{slow_route}  - name: added
    match:
      hosts: [\"added.test\"]
    action: pass
    upstream: http://127.0.0.1:{}
",
        b.port()
    );
    tg.replace_config(&svc_config(b.port(), &added));
    let seen = tg
        .wait_for_output("config reloaded", 1, RELOAD_TIMEOUT)
        .await;
    let applied_at = Instant::now();
    assert!(seen, "the changed config was not reloaded");
    // Keep the load on for a while after the swap (and at least ~3 s in all).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    let mut last_per_task = Vec::new();
    for t in tasks {
        let o = t.await.expect("load task");
        last_per_task.push(o.last().and_then(|o| o.result.as_ref().ok().cloned()));
        outcomes.extend(o);
    }

    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            Err(e) => Some(e.clone()),
            Ok((200, Some(_))) => None,
            Ok(other) => Some(format!("{other:?}")),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across the reload: {failures:?}",
        failures.len(),
        outcomes.len()
    );
    assert!(outcomes.len() >= 40, "only {} requests ran", outcomes.len());
    let from = |name: &str| {
        outcomes
            .iter()
            .filter(|o| matches!(&o.result, Ok((_, Some(u))) if u == name))
            .count()
    };
    assert!(from("a") > 0, "no request reached the old upstream");
    assert!(from("b") > 0, "the changed route never took effect");
    let late_to_a = outcomes
        .iter()
        .filter(|o| o.started > applied_at)
        .filter(|o| matches!(&o.result, Ok((_, Some(u))) if u == "a"))
        .count();
    assert_eq!(
        late_to_a, 0,
        "requests sent after the reload was logged still went to the old upstream"
    );
    for last in last_per_task {
        assert_eq!(last.and_then(|l| l.1).as_deref(), Some("b"));
    }

    // The slow request, in flight during the swap, completed.
    let slow_resp = slow_req
        .await
        .expect("slow request task")
        .unwrap_or_else(|e| panic!("the in-flight request failed across the reload: {e}"));
    assert_eq!(slow_resp.status, 200);
    assert_eq!(
        slow_resp.body_text(),
        format!("{}{}", SLOW_BODY.0, SLOW_BODY.1)
    );

    // The added route serves now.
    assert_eq!(
        get_host(&tg, "added.test", "/").await.header("x-upstream"),
        Some("b")
    );
    let scrape = tg.scrape().await;
    assert_eq!(
        scrape.sum("tollgate_config_reloads_total", &[("outcome", "applied")]),
        1.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.sum("tollgate_config_reloads_total", &[("outcome", "rejected")]),
        0.0,
        "{}",
        scrape.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_config() {
    let a = RecordingUpstream::start().await;
    a.set_reply(upstream_named("a"));
    let b = RecordingUpstream::start().await;
    b.set_reply(upstream_named("b"));
    let tg = Tollgate::launch(
        Launch::new().env("TOLLGATE_LOG_FORMAT", "json"),
        &svc_config(a.port(), ""),
    )
    .await;
    assert_eq!(
        get_host(&tg, "svc.test", "/").await.header("x-upstream"),
        Some("a")
    );

    // Rewrite the file so that its size and modification time stay the same: only SIGHUP
    // can tell the proxy to look.
    let path = tg.config_path().to_path_buf();
    let old = std::fs::read_to_string(&path).expect("read config");
    let meta = std::fs::metadata(&path).expect("stat config");
    let mut new = old.replace(
        &format!("http://127.0.0.1:{}", a.port()),
        &format!("http://127.0.0.1:{}", b.port()),
    );
    assert_ne!(new, old);
    while new.len() < old.len() {
        new.push('#');
    }
    assert_eq!(
        new.len(),
        old.len(),
        "ports of different length; pad the other way"
    );
    let tmp = path.with_extension("next");
    std::fs::write(&tmp, &new).expect("write new config");
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .and_then(|f| f.set_modified(meta.modified().expect("mtime")))
        .expect("set mtime");
    std::fs::rename(&tmp, &path).expect("rename config");

    tg.signal(Signal::SIGHUP);
    assert!(
        tg.wait_for_output("config reloaded", 1, RELOAD_TIMEOUT)
            .await,
        "SIGHUP did not reload the config"
    );
    let line = tg
        .output()
        .lines()
        .find(|l| l.contains("config reloaded"))
        .map(str::to_owned)
        .unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    assert_eq!(v["why"], "SIGHUP", "{line}");
    assert_eq!(
        get_host(&tg, "svc.test", "/").await.header("x-upstream"),
        Some("b")
    );
    let scrape = tg.scrape().await;
    assert_eq!(
        scrape.sum("tollgate_config_reloads_total", &[("outcome", "applied")]),
        1.0,
        "{}",
        scrape.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_config_is_rejected_and_the_old_routes_keep_serving() {
    let up = RecordingUpstream::start().await;
    up.set_reply(upstream_named("a"));
    let tg = Tollgate::start(&svc_config(up.port(), "")).await;
    let serving = || async {
        let r = get_host(&tg, "svc.test", "/still").await;
        assert_eq!(r.status, 200, "the old route stopped serving: {r:?}");
        assert_eq!(r.header("x-upstream"), Some("a"));
    };
    serving().await;

    // Each invalid version would turn `svc` into a deny route if it were applied.
    let invalid = [
        // Unknown key.
        (
            "routes:\n  - name: svc\n    match:\n      hosts: [\"svc.test\"]\n    action: deny\n    bogus_key: 1\n",
            "bogus_key",
        ),
        // Not YAML at all.
        ("routes: [\n  - name: svc\n    action: deny\n", ""),
        // Valid YAML, but the route names a credential that does not exist.
        (
            "routes:\n  - name: svc\n    match:\n      hosts: [\"svc.test\"]\n    action: inject\n    credential: missing-cred\n",
            "missing-cred",
        ),
        // Passes validation but cannot be served: the secret file does not exist. Like
        // `tollgate check`, the rejection names the key's position.
        (
            "credentials:\n  c:\n    token_url: http://127.0.0.1:9/token\n    client_id: x\n    client_secret_file: /nonexistent/tollgate-test/secret\n\
             routes:\n  - name: svc\n    match:\n      hosts: [\"svc.test\"]\n    action: deny\n",
            "/nonexistent/tollgate-test/secret",
        ),
    ];
    for (i, (body, mentions)) in invalid.iter().enumerate() {
        tg.replace_config(body);
        assert!(
            tg.wait_for_output(
                "config reload rejected; the previous config keeps serving",
                i + 1,
                RELOAD_TIMEOUT
            )
            .await,
            "invalid config #{i} was not rejected:\n{body}"
        );
        let scrape = tg.scrape().await;
        assert_eq!(
            scrape.sum("tollgate_config_reloads_total", &[("outcome", "rejected")]),
            (i + 1) as f64,
            "after invalid config #{i}: {}",
            scrape.text
        );
        assert_eq!(
            scrape.sum("tollgate_config_reloads_total", &[("outcome", "applied")]),
            0.0,
            "{}",
            scrape.text
        );
        assert_eq!(
            scrape.sum("tollgate_config_last_reload_successful", &[]),
            0.0,
            "the last reload was rejected: {}",
            scrape.text
        );
        if !mentions.is_empty() {
            assert!(
                tg.output()
                    .lines()
                    .any(|l| l.contains("config reload rejected:") && l.contains(mentions)),
                "the rejection log does not name {mentions:?}:\n{}",
                tg.output()
            );
        }
        if body.contains("client_secret_file") {
            // A file problem carries the position of the key naming the file.
            let written = std::fs::read_to_string(tg.config_path()).expect("read config");
            let line = tollgate_tests::process::line_of(&written, "client_secret_file:");
            let at = format!(
                "{}:{line}:5: credentials.c.client_secret_file:",
                tg.config_path().display()
            );
            assert!(
                tg.output().lines().any(|l| l.contains(&at)),
                "the rejection log does not say {at:?}:\n{}",
                tg.output()
            );
        }
        serving().await;
        assert_eq!(raw::get(tg.admin, "/readyz").await.status, 200);
    }
    assert!(!tg.output().contains("config reloaded"), "{}", tg.output());

    // A valid change is still picked up afterwards (and the invalid files were not retried).
    tg.replace_config(
        "routes:\n  - name: svc\n    match:\n      hosts: [\"svc.test\"]\n    action: deny\n",
    );
    assert!(
        tg.wait_for_output("config reloaded", 1, RELOAD_TIMEOUT)
            .await
    );
    get_host(&tg, "svc.test", "/now-denied")
        .await
        .assert_error(403, "denied", Some("svc"));
    let scrape = tg.scrape().await;
    assert_eq!(
        scrape.sum("tollgate_config_reloads_total", &[("outcome", "applied")]),
        1.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.sum("tollgate_config_last_reload_successful", &[]),
        1.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.sum("tollgate_config_reloads_total", &[("outcome", "rejected")]),
        invalid.len() as f64,
        "an invalid file is rejected once, not at every poll: {}",
        scrape.text
    );
}

/// An inject route to the protected upstream with credential `cred` (`rotating-client`,
/// secret from `secret.txt` in the config dir, scopes `scopes`).
fn inject_config(idp: &Idp, up: &ProtectedUpstream, scopes: &str, extra: &str) -> String {
    format!(
        "allow_private_networks: true
credentials:
  cred:
    token_url: {token_url}
    client_id: rotating-client
    client_secret_file: secret.txt
    scopes: [{scopes}]
routes:
  - name: api
    match:
      hosts: [\"api.test\"]
    action: inject
    credential: cred
    upstream: {upstream}
{extra}",
        token_url = idp.token_url,
        upstream = up.url(),
    )
}

async fn get_api(tg: &Tollgate, path: &str) -> raw::RawResponse {
    get_host(tg, "api.test", path).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_secret_file_is_used_by_the_next_token_request() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let dir = tollgate_tests::tempdir();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "rotating-secret\n").expect("write secret");
    let tg = Tollgate::start_in(dir, &inject_config(&idp, &up, "invoices:read", "")).await;

    let r = get_api(&tg, "/before").await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let stats = idp
        .wait_for_token_requests(1, Duration::from_secs(10))
        .await;
    assert!(stats.requests[0].succeeded(), "{stats:#?}");

    // The IdP now accepts only the new secret; the file is rotated (atomically, as a
    // Kubernetes Secret volume does).
    idp.rotate("rotated-secret-2").await;
    replace_file(&tg.dir().join("secret.txt"), b"rotated-secret-2\n");
    assert!(
        tg.wait_for_output("config reloaded", 1, RELOAD_TIMEOUT)
            .await,
        "a change of the secret file did not trigger a reload"
    );
    // The cached token is still valid: the upstream revokes it, so the next request needs a
    // new token; that token request must carry the new secret.
    up.revoke_all().await;
    let r = get_api(&tg, "/after").await;
    assert_eq!(
        r.status,
        200,
        "the request after rotation failed: {} {}",
        r.status,
        r.body_text()
    );
    let stats = idp
        .wait_for_token_requests(2, Duration::from_secs(10))
        .await;
    let last = stats.requests.last().expect("a token request");
    assert_eq!(last.client_id.as_deref(), Some("rotating-client"));
    assert!(
        last.succeeded(),
        "the token request after rotation was refused (old secret?): {last:#?}"
    );
    assert!(
        stats.requests.iter().all(|r| r.succeeded()),
        "no token request used the old secret after rotation: {stats:#?}"
    );
    let reqs = up.requests().await;
    let after = reqs
        .iter()
        .rev()
        .find(|r| r.path == "/after" && r.status == Some(200));
    assert_eq!(
        after.and_then(|r| r.token_jti()),
        last.issued_jti(),
        "the request went out with the token fetched with the new secret"
    );
    let out = tg.output();
    assert!(
        !out.contains("rotated-secret-2") && !out.contains("rotating-secret"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_tokens_of_unchanged_credentials() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let dir = tollgate_tests::tempdir();
    std::fs::write(dir.path().join("secret.txt"), "rotating-secret\n").expect("write secret");
    let tg = Tollgate::start_in(dir, &inject_config(&idp, &up, "invoices:read", "")).await;
    assert_eq!(get_api(&tg, "/1").await.status, 200);
    idp.wait_for_token_requests(1, Duration::from_secs(10))
        .await;

    // A route is added; the credential is unchanged: its token is kept.
    let other = RecordingUpstream::start().await;
    let extra = format!(
        "  - name: other
    match:
      hosts: [\"other.test\"]
    action: pass
    upstream: http://127.0.0.1:{}
",
        other.port()
    );
    tg.replace_config(&inject_config(&idp, &up, "invoices:read", &extra));
    assert!(
        tg.wait_for_output("config reloaded", 1, RELOAD_TIMEOUT)
            .await
    );
    assert_eq!(
        get_host(&tg, "other.test", "/").await.status,
        200,
        "new route serves"
    );
    assert_eq!(get_api(&tg, "/2").await.status, 200);
    let stats = idp.stats().await;
    assert_eq!(
        stats.token_requests, 1,
        "the reload dropped the token of an unchanged credential: {stats:#?}"
    );
    let reqs = up.requests().await;
    let jtis: Vec<_> = reqs.iter().map(|r| r.token_jti()).collect();
    assert_eq!(jtis.len(), 2);
    assert_eq!(
        jtis[0], jtis[1],
        "the same token before and after the reload"
    );
    let scrape = tg.scrape().await;
    assert_eq!(
        scrape.sum(
            "tollgate_token_cache_total",
            &[("credential", "cred"), ("result", "hit")]
        ),
        1.0,
        "{}",
        scrape.text
    );

    // The credential changes (another scope): its token is replaced.
    tg.replace_config(&inject_config(
        &idp,
        &up,
        "invoices:read, invoices:write",
        &extra,
    ));
    assert!(
        tg.wait_for_output("config reloaded", 2, RELOAD_TIMEOUT)
            .await
    );
    assert_eq!(get_api(&tg, "/3").await.status, 200);
    let stats = idp
        .wait_for_token_requests(2, Duration::from_secs(10))
        .await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");
    assert_eq!(
        stats.requests[1].scope.as_deref(),
        Some("invoices:read invoices:write"),
        "{stats:#?}"
    );
    let reqs = up.requests().await;
    assert_eq!(reqs.len(), 3);
    assert_ne!(reqs[2].token_jti(), reqs[1].token_jti());
    assert_eq!(reqs[2].token_jti(), stats.requests[1].issued_jti());
}
