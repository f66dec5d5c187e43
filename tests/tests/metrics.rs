//! The admin listener (`/healthz`, `/readyz`, `/metrics`) and the Prometheus metrics: every
//! scrape is parsed by Python's `prometheus_client` (a real parser), and the tests check
//! that counters move as traffic flows and that label values stay bounded.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate_tests::idp::{Fault, Idp, ProtectedUpstream};
use tollgate_tests::{raw, RawConn, RecordingUpstream, Scrape, Tollgate};

const CONFIG: &str = "allow_private_networks: true
routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
";

/// A string that must never become a label value (it is in paths, queries and headers).
const SENTINEL: &str = "unbounded-7f3a9c";

/// `GET http://127.0.0.1:PORT/path` through the proxy on `conn` (keep-alive).
async fn get(conn: &mut RawConn, port: u16, path: &str) -> raw::RawResponse {
    conn.send(
        format!(
            "GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Authorization: Bearer {SENTINEL}-client-token\r\nX-Request-Id: {SENTINEL}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    conn.read_response("GET").await
}

/// The label names each family may carry (histogram buckets add `le`).
fn expected_labels(sample: &str) -> Option<BTreeSet<&'static str>> {
    let base = sample
        .strip_suffix("_bucket")
        .or_else(|| sample.strip_suffix("_count"))
        .or_else(|| sample.strip_suffix("_sum"))
        .unwrap_or(sample);
    let mut set: BTreeSet<&'static str> =
        match base {
            "tollgate_requests_total" => ["route", "action", "code", "source"].into(),
            "tollgate_tunnels_total" => ["route", "mode"].into(),
            "tollgate_client_disconnects_total" => ["stage"].into(),
            "tollgate_request_duration_seconds" | "tollgate_upstream_duration_seconds" => {
                ["route"].into()
            }
            "tollgate_token_requests_total" => ["credential", "outcome"].into(),
            "tollgate_token_request_duration_seconds"
            | "tollgate_token_expiry_timestamp_seconds" => ["credential"].into(),
            "tollgate_token_cache_total" => ["credential", "result"].into(),
            // Issue 15: rate-limit holds, and the token store (only with `token_store`).
            "tollgate_token_requests_deferred_total" | "tollgate_token_rate_limit_remaining" => {
                ["credential"].into()
            }
            "tollgate_token_store_total" => ["credential", "op", "outcome"].into(),
            "tollgate_token_store_up" => [].into(),
            "tollgate_replays_total" => ["route", "outcome"].into(),
            "tollgate_config_reloads_total" => ["outcome"].into(),
            "tollgate_config_last_reload_successful"
            | "tollgate_config_last_reload_success_timestamp_seconds" => BTreeSet::new(),
            "tollgate_build_info" => ["version", "commit", "rustc", "pingora"].into(),
            "tollgate_interception_leaves_total" => ["outcome"].into(),
            "tollgate_interception_handshakes_total" => ["route", "outcome"].into(),
            "tollgate_interception_leaf_cache_hosts"
            | "tollgate_interception_ca_expiry_seconds" => BTreeSet::new(),
            _ => return None,
        };
    if sample.ends_with("_bucket") {
        set.insert("le");
    }
    Some(set)
}

/// Every `tollgate_*` sample has exactly the SPEC's label names, and no label value is
/// anything but a bounded word (route/credential names, fixed outcomes, status codes).
#[track_caller]
fn assert_bounded(scrape: &Scrape, routes: &[&str]) {
    for s in scrape.samples() {
        if !s.name.starts_with("tollgate_") {
            continue;
        }
        let want = expected_labels(&s.name)
            .unwrap_or_else(|| panic!("metric {} is not in SPEC:\n{}", s.name, scrape.text));
        let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
        assert_eq!(got, want, "label names of {} ({:?})", s.name, s.labels);
        for (k, v) in &s.labels {
            assert!(
                !v.contains(SENTINEL),
                "request data leaked into label {k}={v:?} of {}",
                s.name
            );
            let ok = match k.as_str() {
                "route" => v == "-" || routes.contains(&v.as_str()),
                "action" => ["pass", "inject", "deny", "tunnel", "-"].contains(&v.as_str()),
                "code" => {
                    ["0", "1xx", "2xx", "3xx", "4xx", "5xx", "other"].contains(&v.as_str())
                        || (v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit()))
                }
                "outcome" if s.name.starts_with("tollgate_config_reloads") => {
                    ["applied", "rejected"].contains(&v.as_str())
                }
                "outcome" if s.name.starts_with("tollgate_interception_leaves") => {
                    ["hit", "issued", "renewed", "evicted", "refused", "failed"]
                        .contains(&v.as_str())
                }
                "outcome" if s.name.starts_with("tollgate_interception_handshakes") => {
                    ["ok", "untrusted", "failed", "timeout", "no_ca", "refused"]
                        .contains(&v.as_str())
                }
                "outcome" if s.name.starts_with("tollgate_replays") => [
                    "replayed",
                    "second_401",
                    "body_too_large",
                    "no_replay",
                    "dpop_nonce",
                ]
                .contains(&v.as_str()),
                "outcome" => {
                    ["success", "error", "permanent_error", "network_error"].contains(&v.as_str())
                }
                "result" => ["hit", "miss", "wait"].contains(&v.as_str()),
                "source" => ["tollgate", "upstream"].contains(&v.as_str()),
                "mode" => ["tunnel", "plain", "intercept", "refused"].contains(&v.as_str()),
                "stage" => ["head", "body", "response"].contains(&v.as_str()),
                "le" => v == "+Inf" || v.parse::<f64>().is_ok(),
                // Credential names come from the config; the token tests check them.
                "credential" => true,
                // The build's own facts (tollgate_build_info).
                "version" | "commit" | "rustc" | "pingora" => {
                    s.name == "tollgate_build_info" && !v.is_empty()
                }
                _ => false,
            };
            assert!(ok, "unexpected value {k}={v:?} in {}", s.name);
        }
    }
    assert!(
        !scrape.text.contains(SENTINEL),
        "request data in /metrics:\n{}",
        scrape.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_listener_answers_healthz_readyz_and_metrics() {
    let tg = Tollgate::start(CONFIG).await;
    let health = raw::get(tg.admin, "/healthz").await;
    assert_eq!(health.status, 200, "{health:?}");
    let ready = raw::get(tg.admin, "/readyz").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let metrics = raw::get(tg.admin, "/metrics").await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let other = raw::get(tg.admin, "/nope").await;
    assert_eq!(other.status, 404, "{other:?}");
    // The admin port is not a proxy: an absolute-form request is not forwarded.
    let up = RecordingUpstream::start().await;
    let mut conn = RawConn::connect(tg.admin).await;
    let resp = get(&mut conn, up.port(), "/via-admin").await;
    assert_ne!(resp.status, 200, "{resp:?}");
    assert_eq!(up.connections(), 0, "the admin port forwarded a request");
    // A fresh process, before any traffic, already exposes a parsable scrape.
    let scrape = tg.scrape().await;
    assert_bounded(&scrape, &["local"]);
    let t = &scrape.text;
    // What alerts and dashboards need exists from the start.
    for outcome in ["applied", "rejected"] {
        assert_eq!(
            scrape
                .family_of("tollgate_config_reloads_total")
                .map(|_| ()),
            Some(()),
            "{t}"
        );
        assert!(
            scrape
                .samples()
                .any(|x| x.name == "tollgate_config_reloads_total"
                    && x.labels.get("outcome").map(String::as_str) == Some(outcome)
                    && x.value == 0.0),
            "no tollgate_config_reloads_total{{outcome={outcome}}} 0 at start: {t}"
        );
    }
    assert_eq!(
        scrape.sum("tollgate_config_last_reload_successful", &[]),
        1.0,
        "{t}"
    );
    let loaded = scrape.sum("tollgate_config_last_reload_success_timestamp_seconds", &[]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        loaded > now - 120.0 && loaded <= now,
        "{loaded} vs {now}: {t}"
    );
    let build = scrape
        .samples()
        .find(|x| x.name == "tollgate_build_info")
        .unwrap_or_else(|| panic!("no tollgate_build_info: {t}"));
    assert_eq!(build.value, 1.0);
    let version = tollgate_tests::process::run_to_end({
        let mut c = tollgate_tests::process::command();
        c.args(["version", "--format", "json"]);
        c
    });
    let v: serde_json::Value = serde_json::from_str(&version.stdout).expect("version json");
    for k in ["version", "commit", "rustc", "pingora"] {
        assert_eq!(
            build.labels.get(k).map(String::as_str),
            v[k].as_str(),
            "tollgate_build_info{{{k}}} vs `tollgate version`: {t}"
        );
    }
    // The standard process families (CPU is counted in whole seconds: 0 this early).
    assert!(
        scrape.family_of("process_cpu_seconds_total").is_some(),
        "{t}"
    );
    for family in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            scrape.samples().any(|x| x.name == family && x.value > 0.0),
            "no {family} > 0: {t}"
        );
    }
    assert_eq!(scrape.sum("tollgate_requests_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_counters_and_histograms_move_with_traffic() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let port = up.port();
    let before = tg.scrape().await;
    assert_eq!(
        before.sum("tollgate_requests_total", &[]),
        0.0,
        "{}",
        before.text
    );

    let mut conn = RawConn::connect(tg.proxy).await;
    for i in 0..3 {
        let path = format!("/m/{SENTINEL}/{i}?q={SENTINEL}");
        assert_eq!(get(&mut conn, port, &path).await.status, 200);
    }
    up.set_status(503);
    assert_eq!(get(&mut conn, port, "/m/503").await.status, 503);
    up.set_status(418);
    assert_eq!(get(&mut conn, port, "/m/418").await.status, 418);
    up.set_status(200);
    // No route matches (default_action deny): 403 no_route.
    let mut other = RawConn::connect(tg.proxy).await;
    other
        .send(b"GET http://nowhere.test/x HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
        .await;
    other
        .read_response("GET")
        .await
        .assert_error(403, "no_route", None);

    let after = tg.scrape().await;
    let t = &after.text;
    let req = |route: &str, action: &str, code: &str| {
        after.sum(
            "tollgate_requests_total",
            &[("route", route), ("action", action), ("code", code)],
        )
    };
    assert_eq!(req("local", "pass", "200"), 3.0, "{t}");
    assert_eq!(req("local", "pass", "503"), 1.0, "{t}");
    assert_eq!(
        req("local", "pass", "4xx"),
        1.0,
        "an unlisted status is bucketed as 4xx: {t}"
    );
    assert_eq!(req("-", "deny", "403"), 1.0, "{t}");
    assert_eq!(after.sum("tollgate_requests_total", &[]), 6.0, "{t}");

    for hist in [
        "tollgate_request_duration_seconds",
        "tollgate_upstream_duration_seconds",
    ] {
        let count = after.sum(&format!("{hist}_count"), &[("route", "local")]);
        assert_eq!(count, 5.0, "{hist}_count{{route=local}}: {t}");
        let inf = after.sum(
            &format!("{hist}_bucket"),
            &[("route", "local"), ("le", "+Inf")],
        );
        assert_eq!(inf, count, "{hist} +Inf bucket equals the count: {t}");
        let sum = after.sum(&format!("{hist}_sum"), &[("route", "local")]);
        assert!(sum > 0.0 && sum < 60.0, "{hist}_sum {sum}: {t}");
        // Buckets are cumulative.
        let mut buckets: Vec<(f64, f64)> = after
            .samples()
            .filter(|s| {
                s.name == format!("{hist}_bucket")
                    && s.labels.get("route").map(String::as_str) == Some("local")
            })
            .map(|s| (s.labels["le"].parse().unwrap_or(f64::INFINITY), s.value))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() > 3, "{hist} has buckets: {t}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{hist} buckets are cumulative: {buckets:?}"
        );
    }
    // The denied request never went upstream.
    assert_eq!(
        after.sum(
            "tollgate_upstream_duration_seconds_count",
            &[("route", "-")]
        ),
        0.0,
        "{t}"
    );
    for (name, kind) in [
        ("tollgate_requests_total", "counter"),
        ("tollgate_request_duration_seconds_count", "histogram"),
        ("tollgate_upstream_duration_seconds_count", "histogram"),
    ] {
        let family = after
            .family_of(name)
            .unwrap_or_else(|| panic!("no {name} in {t}"));
        assert_eq!(family.kind, kind, "type of {name}");
        assert!(!family.help.is_empty(), "{name} has HELP");
    }
    assert_bounded(&after, &["local"]);
}

/// A request refused by a route that matched (a `deny` route, or a route whose `clients`
/// exclude the caller) is counted under that route's name, not under "-" (which SPEC
/// reserves for "no route matched").
/// Requests let through by `default_action: pass` count under route `-`, action `pass`,
/// in the counter and both histograms.
#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_route_count_under_dash() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(
        "allow_private_networks: true
default_action: pass
routes:
  - name: elsewhere
    match:
      hosts: [\"elsewhere.test\"]
    action: deny
",
    )
    .await;
    let port = up.port();
    let mut conn = RawConn::connect(tg.proxy).await;
    for i in 0..2 {
        assert_eq!(get(&mut conn, port, &format!("/d/{i}")).await.status, 200);
    }
    let after = tg.scrape().await;
    let t = &after.text;
    assert_eq!(
        after.sum(
            "tollgate_requests_total",
            &[("route", "-"), ("action", "pass"), ("code", "200")]
        ),
        2.0,
        "{t}"
    );
    for hist in [
        "tollgate_request_duration_seconds",
        "tollgate_upstream_duration_seconds",
    ] {
        assert_eq!(
            after.sum(&format!("{hist}_count"), &[("route", "-")]),
            2.0,
            "{hist}: {t}"
        );
        assert_eq!(
            after.sum(&format!("{hist}_count"), &[("route", "elsewhere")]),
            0.0,
            "{hist}: {t}"
        );
    }
    assert_bounded(&after, &["elsewhere"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_refused_by_a_matching_route_carry_its_name() {
    let tg = Tollgate::start(
        "routes:
  - name: blocked
    match:
      hosts: [\"blocked.test\"]
    action: deny
  - name: internal-only
    match:
      hosts: [\"internal.test\"]
    clients: [10.0.0.0/8]
    action: pass
",
    )
    .await;
    let resp = raw::request(
        tg.proxy,
        "GET",
        b"GET http://blocked.test/x HTTP/1.1\r\nHost: blocked.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    resp.assert_error(403, "denied", Some("blocked"));
    let resp = raw::request(
        tg.proxy,
        "GET",
        b"GET http://internal.test/x HTTP/1.1\r\nHost: internal.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    resp.assert_error(403, "client_not_allowed", Some("internal-only"));

    let scrape = tg.scrape().await;
    let t = &scrape.text;
    assert_eq!(scrape.sum("tollgate_requests_total", &[]), 2.0, "{t}");
    assert_eq!(
        scrape.sum(
            "tollgate_requests_total",
            &[("route", "blocked"), ("action", "deny"), ("code", "403")]
        ),
        1.0,
        "a request denied by route \"blocked\" is counted under it: {t}"
    );
    assert_eq!(
        scrape.sum(
            "tollgate_requests_total",
            &[("route", "internal-only"), ("code", "403")]
        ),
        1.0,
        "a client refused by route \"internal-only\" is counted under it: {t}"
    );
    assert_bounded(&scrape, &["blocked", "internal-only"]);
}

/// `METHOD http://api.test/path` (with `body`) through the proxy, on a fresh connection.
async fn api(tg: &Tollgate, method: &str, path: &str, body: &[u8]) -> raw::RawResponse {
    let mut req = format!(
        "{method} http://api.test{path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw::request(tg.proxy, method, &req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn token_and_replay_counters_move_with_traffic() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
credentials:
  billing:
    token_url: {token_url}
    client_id: basic-client
    client_secret: basic-secret
    scopes: [invoices:read]
routes:
  - name: api
    match:
      hosts: [\"api.test\"]
    action: inject
    credential: billing
    upstream: {upstream}
",
        token_url = idp.token_url,
        upstream = up.url(),
    ))
    .await;
    let cred = [("credential", "billing")];
    let with = |extra: (&'static str, &'static str)| [("credential", "billing"), extra];

    // Before any traffic the credential's series exist, at zero.
    let s = tg.scrape().await;
    assert_eq!(
        s.family_of("tollgate_token_requests_total")
            .map(|f| f.kind.as_str()),
        Some("counter"),
        "{}",
        s.text
    );
    assert_eq!(
        s.sum("tollgate_token_requests_total", &cred),
        0.0,
        "{}",
        s.text
    );
    // No token yet: no expiry series at all (no 0 sentinel).
    assert!(
        s.family_of("tollgate_token_expiry_timestamp_seconds")
            .is_none(),
        "an expiry before any token: {}",
        s.text
    );
    // The replay outcomes an alert watches exist too, at zero.
    for outcome in [
        "replayed",
        "second_401",
        "body_too_large",
        "no_replay",
        "dpop_nonce",
    ] {
        assert!(
            s.samples().any(|x| x.name == "tollgate_replays_total"
                && x.labels.get("route").map(String::as_str) == Some("api")
                && x.labels.get("outcome").map(String::as_str) == Some(outcome)
                && x.value == 0.0),
            "no tollgate_replays_total{{route=api,outcome={outcome}}} 0 at start: {}",
            s.text
        );
    }

    // 1: a cache miss and one token request.
    assert_eq!(api(&tg, "GET", "/1", b"").await.status, 200);
    let s = tg.scrape().await;
    let t = &s.text;
    assert_eq!(
        s.sum(
            "tollgate_token_requests_total",
            &with(("outcome", "success"))
        ),
        1.0,
        "{t}"
    );
    assert_eq!(
        s.sum("tollgate_token_cache_total", &with(("result", "miss"))),
        1.0,
        "{t}"
    );
    assert_eq!(
        s.sum("tollgate_token_cache_total", &with(("result", "hit"))),
        0.0,
        "{t}"
    );
    assert_eq!(
        s.sum("tollgate_token_request_duration_seconds_count", &cred),
        1.0,
        "{t}"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let expiry = s.sum("tollgate_token_expiry_timestamp_seconds", &cred);
    assert!(
        expiry > now && expiry < now + 300.0 + 5.0,
        "token_expiry_timestamp_seconds {expiry} for a 300 s token fetched at {now}: {t}"
    );
    assert_eq!(
        s.family_of("tollgate_token_expiry_timestamp_seconds")
            .map(|f| f.kind.as_str()),
        Some("gauge")
    );

    // 2: a cache hit, no token request.
    assert_eq!(api(&tg, "GET", "/2", b"").await.status, 200);
    let s = tg.scrape().await;
    let t = &s.text;
    assert_eq!(
        s.sum("tollgate_token_cache_total", &with(("result", "hit"))),
        1.0,
        "{t}"
    );
    assert_eq!(s.sum("tollgate_token_requests_total", &cred), 1.0, "{t}");

    // 3: a 401, a fresh token, a replay that succeeds.
    up.always401(true, Some(1)).await;
    assert_eq!(api(&tg, "GET", "/3", b"").await.status, 200);
    // 4: 401 twice: the replay's 401 goes to the client.
    up.always401(true, Some(2)).await;
    assert_eq!(api(&tg, "GET", "/4", b"").await.status, 401);
    // 5: insufficient_scope: not replayed.
    up.insufficient_scope(true, Some(1), None).await;
    assert_eq!(api(&tg, "GET", "/5", b"").await.status, 401);
    // 6: a body larger than the replay buffer: not replayed.
    up.always401(true, Some(1)).await;
    let big = vec![b'x'; 70 * 1024];
    assert_eq!(api(&tg, "POST", "/6", &big).await.status, 401);
    // 7: the token endpoint refuses the client: 502 token_unavailable.
    idp.fault(Fault::invalid_client().count(-1)).await;
    up.revoke_all().await;
    api(&tg, "GET", "/7", b"")
        .await
        .assert_error(502, "token_unavailable", Some("api"));
    idp.clear_fault().await;

    let s = tg.scrape().await;
    let t = &s.text;
    let replays = |outcome: &str| {
        s.sum(
            "tollgate_replays_total",
            &[("route", "api"), ("outcome", outcome)],
        )
    };
    // /3 and /4 and /7 were replayed once each.
    assert_eq!(replays("replayed"), 3.0, "{t}");
    assert_eq!(replays("second_401"), 1.0, "{t}");
    assert_eq!(replays("no_replay"), 1.0, "{t}");
    assert_eq!(replays("body_too_large"), 1.0, "{t}");
    let reqs = |code: &str| {
        s.sum(
            "tollgate_requests_total",
            &[("route", "api"), ("action", "inject"), ("code", code)],
        )
    };
    assert_eq!(reqs("200"), 3.0, "{t}");
    assert_eq!(reqs("401"), 3.0, "{t}");
    assert_eq!(reqs("502"), 1.0, "{t}");

    // The token counters agree with what the IdP saw.
    let stats = idp.stats().await;
    let refused = stats
        .requests
        .iter()
        .filter(|r| r.error.as_deref() == Some("invalid_client"))
        .count();
    assert!(refused >= 1, "{stats:#?}");
    assert_eq!(
        s.sum(
            "tollgate_token_requests_total",
            &with(("outcome", "success"))
        ),
        stats.successful() as f64,
        "{t}"
    );
    assert_eq!(
        s.sum(
            "tollgate_token_requests_total",
            &with(("outcome", "permanent_error"))
        ),
        refused as f64,
        "{t}\n{stats:#?}"
    );
    assert_eq!(
        s.sum("tollgate_token_request_duration_seconds_count", &cred),
        stats.token_requests as f64,
        "{t}"
    );
    assert_eq!(
        stats.successful(),
        3,
        "tokens for /1 and for the replays of /3 and /4: {stats:#?}"
    );

    assert_bounded(&s, &["api"]);
    let credentials: BTreeSet<&str> = s
        .samples()
        .filter_map(|x| x.labels.get("credential").map(String::as_str))
        .collect();
    assert_eq!(credentials, ["billing"].into(), "{t}");
    for secret in ["basic-secret", "basic-client"] {
        assert!(!t.contains(secret), "{secret} in /metrics");
    }
}
