//! Logs: `tracing` on stderr, text by default and JSON with `TOLLGATE_LOG_FORMAT=json`
//! (pingora's own `log` records included); one access-log line per request at info
//! (target `tollgate::access`: route, action, status, upstream status, duration, replayed);
//! never a secret or a token, at any level.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tollgate_tests::idp::{Fault, Idp, ProtectedUpstream};
use tollgate_tests::{raw, Launch, RawConn, RecordingUpstream, Tollgate};

const CONFIG: &str = "allow_private_networks: true
routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
  - name: blocked
    match:
      hosts: [\"blocked.test:*\"]
    action: deny
";

/// The `key=value` fields of a text-format log line, after its message (`"quoted"` values
/// unquoted).
fn text_fields(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut end = 0;
            let bytes = q.as_bytes();
            while end < bytes.len()
                && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
            {
                end += 1;
            }
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = next;
    }
    out
}

/// Text-format access lines (target `tollgate::access`).
fn text_access_lines(stderr: &str) -> Vec<(String, BTreeMap<String, String>)> {
    stderr
        .lines()
        .filter(|l| l.contains(" tollgate::access: "))
        .map(|l| (l.to_string(), text_fields(l)))
        .collect()
}

/// JSON access entries.
fn json_access_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "tollgate::access")
        .collect()
}

async fn get(conn: &mut RawConn, host: &str, path: &str) -> raw::RawResponse {
    conn.send(format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await;
    conn.read_response("GET").await
}

/// The access log is written after the response; wait until `n` lines are there.
async fn wait_access_lines(tg: &Tollgate, n: usize) {
    tg.wait_for_output("tollgate::access", n, Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_access_log_has_one_line_per_request_with_its_fields() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let host = format!("127.0.0.1:{}", up.port());
    let mut conn = RawConn::connect(tg.proxy).await;
    for i in 0..3 {
        assert_eq!(
            get(&mut conn, &host, &format!("/text/{i}")).await.status,
            200
        );
    }
    up.set_status(503);
    assert_eq!(get(&mut conn, &host, "/text/503").await.status, 503);
    let mut other = RawConn::connect(tg.proxy).await;
    get(&mut other, "nowhere.test", "/text/denied")
        .await
        .assert_error(403, "no_route", None);
    wait_access_lines(&tg, 5).await;
    // Give a stray duplicate a moment to show up.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stderr = tg.stderr_text();
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI colours in a non-terminal log"
    );
    let lines = text_access_lines(&stderr);
    assert_eq!(lines.len(), 5, "one access line per request:\n{stderr}");
    for (line, f) in &lines {
        assert!(line.contains(" INFO "), "access lines are at info: {line}");
        for key in [
            "route",
            "action",
            "status",
            "upstream_status",
            "duration_ms",
            "replayed",
        ] {
            assert!(f.contains_key(key), "no {key} in {line}");
        }
        let ms: f64 = f["duration_ms"].parse().unwrap_or(-1.0);
        assert!((0.0..60_000.0).contains(&ms), "duration_ms in {line}");
        assert_eq!(f["replayed"], "false", "{line}");
    }
    let by_path = |p: &str| {
        let found: Vec<_> = lines
            .iter()
            .filter(|(_, f)| f.get("path").map(String::as_str) == Some(p))
            .collect();
        assert_eq!(found.len(), 1, "exactly one access line for {p}:\n{stderr}");
        found[0].1.clone()
    };
    for i in 0..3 {
        let f = by_path(&format!("/text/{i}"));
        assert_eq!(
            (
                f["route"].as_str(),
                f["action"].as_str(),
                f["status"].as_str(),
                f["upstream_status"].as_str()
            ),
            ("local", "pass", "200", "200"),
            "{f:?}"
        );
        assert_eq!(f.get("method").map(String::as_str), Some("GET"));
    }
    let f = by_path("/text/503");
    assert_eq!(
        (f["status"].as_str(), f["upstream_status"].as_str()),
        ("503", "503"),
        "{f:?}"
    );
    let f = by_path("/text/denied");
    assert_eq!(
        (
            f["route"].as_str(),
            f["action"].as_str(),
            f["status"].as_str(),
            f["upstream_status"].as_str()
        ),
        ("-", "deny", "403", "0"),
        "{f:?}"
    );
    assert_eq!(
        f.get("error").map(String::as_str),
        Some("no_route"),
        "{f:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_json_lines_with_typed_access_fields_and_pingora_records() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::launch(Launch::new().env("TOLLGATE_LOG_FORMAT", "json"), CONFIG).await;
    let host = format!("127.0.0.1:{}", up.port());
    let mut conn = RawConn::connect(tg.proxy).await;
    assert_eq!(get(&mut conn, &host, "/json/ok").await.status, 200);
    let mut other = RawConn::connect(tg.proxy).await;
    get(&mut other, "nowhere.test", "/json/denied")
        .await
        .assert_error(403, "no_route", None);
    wait_access_lines(&tg, 2).await;

    let stderr = tg.stderr_text();
    let mut targets = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(v[key].is_string(), "no {key} in {line}");
        }
        targets.push(v["target"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        targets.iter().any(|t| t.starts_with("pingora")),
        "pingora's log records go through the same (JSON) subscriber: {targets:?}"
    );
    let access = json_access_lines(&stderr);
    assert_eq!(access.len(), 2, "{stderr}");
    let ok = access
        .iter()
        .find(|v| v["path"] == "/json/ok")
        .unwrap_or_else(|| panic!("no access entry for /json/ok: {access:?}"));
    let f = ok;
    assert_eq!(ok["level"], "INFO");
    assert_eq!(f["route"], "local", "{ok}");
    assert_eq!(f["action"], "pass", "{ok}");
    assert_eq!(f["method"], "GET", "{ok}");
    assert_eq!(f["status"], 200, "{ok}");
    assert_eq!(f["upstream_status"], 200, "{ok}");
    assert_eq!(f["replayed"], false, "{ok}");
    assert!(
        f["duration_ms"]
            .as_f64()
            .is_some_and(|d| (0.0..60_000.0).contains(&d)),
        "{ok}"
    );
    let denied = access
        .iter()
        .find(|v| v["path"] == "/json/denied")
        .unwrap_or_else(|| panic!("no access entry for /json/denied: {access:?}"));
    assert_eq!(denied["status"], 403, "{denied}");
    assert_eq!(denied["route"], "-", "{denied}");
    assert_eq!(denied["error"], "no_route", "{denied}");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_follows_rust_log() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::launch(
        Launch::new().env("RUST_LOG", "info,tollgate::access=off"),
        CONFIG,
    )
    .await;
    let host = format!("127.0.0.1:{}", up.port());
    let mut conn = RawConn::connect(tg.proxy).await;
    assert_eq!(get(&mut conn, &host, "/quiet").await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stderr = tg.stderr_text();
    assert!(
        stderr.contains("tollgate serving"),
        "other info logs stay: {stderr}"
    );
    assert!(!stderr.contains("tollgate::access"), "{stderr}");
}

/// A refused request's access line says which route refused it and where it was going.
#[tokio::test(flavor = "multi_thread")]
async fn access_log_of_a_refused_request_names_route_and_destination() {
    let tg = Tollgate::launch(Launch::new().env("TOLLGATE_LOG_FORMAT", "json"), CONFIG).await;
    let mut conn = RawConn::connect(tg.proxy).await;
    get(&mut conn, "blocked.test:8080", "/by-route")
        .await
        .assert_error(403, "denied", Some("blocked"));
    let mut conn = RawConn::connect(tg.proxy).await;
    get(&mut conn, "nowhere.test:8081", "/no-route")
        .await
        .assert_error(403, "no_route", None);
    wait_access_lines(&tg, 2).await;
    let access = json_access_lines(&tg.stderr_text());
    let entry = |path: &str| {
        access
            .iter()
            .find(|v| v["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no access entry for {path}: {access:?}"))
    };
    let f = entry("/no-route");
    assert_eq!(
        (f["route"].as_str(), f["error"].as_str()),
        (Some("-"), Some("no_route")),
        "{f}"
    );
    assert_eq!(
        (f["host"].as_str(), f["port"].as_u64()),
        (Some("nowhere.test"), Some(8081)),
        "the access line of a request no route allows names its destination: {f}"
    );
    let f = entry("/by-route");
    assert_eq!(f["error"], "denied", "{f}");
    assert_eq!(
        (f["host"].as_str(), f["port"].as_u64()),
        (Some("blocked.test"), Some(8080)),
        "the access line of a denied request names its destination: {f}"
    );
    assert_eq!(f["route"], "blocked", "the route that denied it: {f}");
}

/// Traffic that makes the proxy handle every kind of secret (client secret from a file,
/// tokens, a replay, a refused token request, the client's own credential), logging with
/// `rust_log`; then nothing secret may be in its output or in `/metrics`. `expect` is a line
/// the log must contain (proof that the level took effect).
async fn assert_nothing_secret_logged(rust_log: &str, expect: &str) {
    let secret = format!("log-secret-{}", std::process::id());
    let client_token = "client-own-credential-9d2e";
    let idp = Idp::start().await;
    idp.rotate(&secret).await;
    let up = ProtectedUpstream::start(&idp).await;
    let dir = tollgate_tests::tempdir();
    std::fs::write(dir.path().join("secret.txt"), format!("{secret}\n")).expect("write secret");
    let config = format!(
        "allow_private_networks: true
credentials:
  cred:
    token_url: {token_url}
    client_id: rotating-client
    client_secret_file: secret.txt
    scopes: [invoices:read]
routes:
  - name: api
    match:
      hosts: [\"api.test\"]
    action: inject
    credential: cred
    upstream: {upstream}
",
        token_url = idp.token_url,
        upstream = up.url(),
    );
    let tg = Tollgate::launch(Launch::new().dir(dir).env("RUST_LOG", rust_log), &config).await;
    let send = |path: &'static str| {
        let proxy = tg.proxy;
        async move {
            let req = format!(
                "GET http://api.test{path} HTTP/1.1\r\nHost: api.test\r\n\
                 Authorization: Bearer {client_token}\r\nConnection: close\r\n\r\n"
            );
            raw::request(proxy, "GET", req.as_bytes()).await
        }
    };
    assert_eq!(send("/one").await.status, 200);
    // A 401 and a replay with a fresh token.
    up.always401(true, Some(1)).await;
    assert_eq!(send("/two").await.status, 200);
    // A token request refused by the IdP (its error is logged), then one that works.
    idp.fault(Fault::invalid_client().count(1)).await;
    up.revoke_all().await;
    let _ = send("/three").await;
    idp.clear_fault().await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the remembered failure
    up.revoke_all().await;
    let _ = send("/four").await;
    wait_access_lines(&tg, 4).await;
    // The replayed request's access line says so.
    let access = text_access_lines(&tg.stderr_text());
    let two: Vec<_> = access
        .iter()
        .filter(|(_, f)| f.get("path").map(String::as_str) == Some("/two"))
        .collect();
    assert_eq!(
        two.len(),
        1,
        "one access line for the replayed request: {access:?}"
    );
    let f = &two[0].1;
    assert_eq!(
        (
            f["route"].as_str(),
            f["action"].as_str(),
            f["status"].as_str(),
            f["upstream_status"].as_str(),
            f["replayed"].as_str()
        ),
        ("api", "inject", "200", "200", "true"),
        "{f:?}"
    );

    let mut tokens: Vec<String> = up
        .requests()
        .await
        .iter()
        .flat_map(|r| {
            r.header_all("authorization")
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|v| v.strip_prefix("Bearer ").map(str::to_owned))
        .collect();
    tokens.sort();
    tokens.dedup();
    assert!(tokens.len() >= 2, "tokens seen upstream: {tokens:?}");
    assert!(
        !tokens.iter().any(|t| t == client_token),
        "the client's own credential was forwarded"
    );
    let basic = base64_encode(format!("rotating-client:{secret}").as_bytes());
    let mut forbidden: Vec<(&str, String)> = vec![
        ("the client secret", secret.clone()),
        ("the Basic credentials", basic),
        ("the client's own credential", client_token.to_string()),
    ];
    for t in &tokens {
        forbidden.push(("an access token", t.clone()));
        // A JWT's signature alone is enough to be a leak of it.
        if let Some(sig) = t.rsplit('.').next().filter(|s| s.len() > 20) {
            forbidden.push(("an access token's signature", sig.to_string()));
        }
    }
    let out = tg.output();
    assert!(
        out.contains(expect),
        "RUST_LOG={rust_log} did not log {expect:?}:\n{out}"
    );
    let metrics = raw::get(tg.admin, "/metrics").await.body_text();
    let mut leaks = Vec::new();
    for (what, value) in &forbidden {
        let lines: Vec<&str> = out.lines().filter(|l| l.contains(value.as_str())).collect();
        if let Some(first) = lines.first() {
            let cut: String = first.chars().take(300).collect();
            leaks.push(format!("{what}: {} lines, e.g. {cut}", lines.len()));
        }
        if metrics.contains(value.as_str()) {
            leaks.push(format!("{what} in /metrics"));
        }
    }
    assert!(
        leaks.is_empty(),
        "RUST_LOG={rust_log}: secrets in the output:\n{}",
        leaks.join("\n")
    );
}

/// Everything tollgate itself logs, at every level (pingora at info).
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_or_token_in_tollgate_logs_at_any_level() {
    assert_nothing_secret_logged("info,tollgate=trace", "fetched a token").await;
}

/// `RUST_LOG=trace` turns on every library's logging, pingora's included (it logs raw
/// request bytes at trace and bodies at debug). SPEC: secrets and tokens never appear in
/// logs, so the proxy must keep those records out.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_or_token_in_logs_even_with_rust_log_trace() {
    assert_nothing_secret_logged("trace", "TRACE").await;
}

/// Standard base64 (for the expected `Authorization: Basic` value).
fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
