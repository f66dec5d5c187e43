//! Hardening (issue 11), each case through the real binary as an attacker would send it:
//! path confusion, forwarding loops, slow heads, protocol violations by an upstream,
//! malformed requests, disclosure in error bodies, tunnel idleness, port scoping.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_tests::{raw, EchoServer, Launch, RawConn, RecordingUpstream, Tollgate};

/// An inject route on `/v2/`, a deny route on `/admin`, and a catch-all pass route, all for
/// host `api.example` (port 80) and sent to `up`; a static-ish credential from a token
/// endpoint that is never reached for denied requests.
fn confusion_config(up: &RecordingUpstream, idp: &str, extra: &str) -> String {
    format!(
        "allow_private_networks: true
{extra}credentials:
  c:
    token_url: {idp}
    client_id: basic-client
    client_secret: basic-secret
routes:
  - name: v2
    match: {{ hosts: [api.example], path_prefixes: [/v2/] }}
    action: inject
    credential: c
    upstream: http://127.0.0.1:{port}
  - name: admin
    match: {{ hosts: [api.example], path_prefixes: [/admin] }}
    action: deny
  - name: rest
    match: {{ hosts: [api.example] }}
    action: pass
    upstream: http://127.0.0.1:{port}
",
        port = up.port()
    )
}

async fn get_path(tg: &Tollgate, path: &str) -> raw::RawResponse {
    raw::request(
        tg.proxy,
        "GET",
        format!("GET http://api.example{path} HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn path_confusion_reaches_the_route_the_upstream_would_serve() {
    let idp = tollgate_tests::Idp::start().await;
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&confusion_config(&up, &idp.token_url, "")).await;
    for path in [
        "/v2/../admin/x",
        "/v2/%2e%2e/admin/x",
        "/v2/.%2e/admin/x",
        "/v2/./../admin/x",
        "//admin/x",
        "/%61dmin/x",
        "/v2/%2E%2E/%61dmin",
    ] {
        get_path(&tg, path)
            .await
            .assert_error(403, "denied", Some("admin"));
    }
    // An encoded slash means different things to different upstreams: refused.
    for path in ["/v2/..%2fadmin", "/v2/%2F..%2Fadmin", "/v2\\..\\admin"] {
        get_path(&tg, path)
            .await
            .assert_error(400, "bad_request", None);
    }
    assert!(
        up.requests().is_empty(),
        "nothing may reach the upstream: {:?}",
        up.requests()
    );
    // A dot segment that stays inside /v2/ is forwarded normalised, with the token: what
    // was routed is what the upstream receives.
    let resp = get_path(&tg, "/v2/a/./b/../c?q=/../x").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let req = up.single_request();
    assert_eq!(
        req.target, "/v2/a/c?q=/../x",
        "the query is not the path's business"
    );
    assert!(
        req.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer ")),
        "{req:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn path_normalization_reject_refuses_instead_of_rewriting() {
    let idp = tollgate_tests::Idp::start().await;
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&confusion_config(
        &up,
        &idp.token_url,
        "path_normalization: reject\n",
    ))
    .await;
    for path in ["/v2/a/../b", "//admin", "/%61dmin", "/v2/./x"] {
        get_path(&tg, path)
            .await
            .assert_error(400, "bad_request", None);
    }
    assert!(up.requests().is_empty());
    assert_eq!(get_path(&tg, "/v2/b").await.status, 200);
}

const LOOP: &str = "allow_private_networks: true
default_action: pass
";

#[tokio::test(flavor = "multi_thread")]
async fn a_request_to_our_own_listener_is_refused_not_looped() {
    let tg = Tollgate::start(LOOP).await;
    let started = Instant::now();
    for port in [tg.proxy.port(), tg.admin.port()] {
        let host = format!("localhost:{port}");
        let resp = raw::request(
            tg.proxy,
            "GET",
            format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let body = resp.assert_error(403, "forwarding_loop", None);
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "no resolved address in the body: {body}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Still serving.
    let up = RecordingUpstream::start().await;
    let host = format!("127.0.0.1:{}", up.port());
    let ok = raw::request(
        tg.proxy,
        "GET",
        format!("GET http://{host}/after HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn via_is_sent_and_our_own_via_is_a_loop() {
    let up = RecordingUpstream::start().await;
    // b forwards to the upstream; a forwards to b: a chain of two tollgates works.
    let b = Tollgate::start(&format!(
        "allow_private_networks: true\nroutes:\n  - name: to-up\n    match: {{ hosts: [\"127.0.0.1:*\"] }}\n    action: pass\n    upstream: http://127.0.0.1:{}\n",
        up.port()
    ))
    .await;
    let a = Tollgate::start(&format!(
        "allow_private_networks: true\nroutes:\n  - name: to-b\n    match: {{ hosts: [chain.test] }}\n    action: pass\n    upstream: http://{}\n",
        b.proxy
    ))
    .await;
    let req = b"GET http://chain.test/x HTTP/1.1\r\nHost: chain.test\r\nConnection: close\r\n\r\n";
    let resp = raw::request(a.proxy, "GET", req).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = up.single_request();
    let via = seen.header_all("via");
    assert_eq!(via.len(), 2, "one Via entry per tollgate: {via:?}");
    assert!(
        via.iter().all(|v| v.starts_with("1.1 tollgate-")),
        "{via:?}"
    );
    assert_ne!(via[0], via[1], "each process has its own pseudonym");
    // The response carries the Via of both, and the pseudonym a loop would show.
    let resp_via: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("via"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(resp_via.len(), 2, "{resp_via:?}");
    // A request that already passed through `a` (its Via) comes back to `a`: refused.
    let own = resp_via.last().expect("a's Via");
    let looped = format!(
        "GET http://chain.test/again HTTP/1.1\r\nHost: chain.test\r\nVia: 1.0 other, {own}\r\nConnection: close\r\n\r\n"
    );
    raw::request(a.proxy, "GET", looped.as_bytes())
        .await
        .assert_error(403, "forwarding_loop", None);
    assert_eq!(up.requests().len(), 1, "the looped request went nowhere");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_open_files_limit_is_raised() {
    // Start it with a low soft limit (the usual 1024 is often raised already by the
    // environment the tests run in), through a shell that lowers it first.
    let dir = tollgate_tests::tempdir();
    let wrapper = dir.path().join("low-nofile.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -Sn 256\nexec '{}' \"$@\"\n",
            tollgate_tests::process::binary().display()
        ),
    )
    .expect("wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tg = Tollgate::launch(Launch::new().binary(wrapper), LOOP).await;
    let pid = tg.pid().expect("running");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let nums: Vec<&str> = line
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(nums.len(), 2, "{line}");
    assert_ne!(
        nums[0], "256",
        "still the soft limit it was started with: {line}"
    );
    assert_eq!(
        nums[0], nums[1],
        "soft limit raised to the hard limit: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_head_gets_408_when_the_whole_head_is_late() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(
        "allow_private_networks: true\ntimeouts: { request_head: 1s }\nroutes:\n  - name: local\n    match: { hosts: [\"127.0.0.1:*\"] }\n    action: pass\n",
    )
    .await;
    let host = format!("127.0.0.1:{}", up.port());
    let head = format!("GET http://{host}/slow HTTP/1.1\r\nHost: {host}\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    let mut s = tokio::net::TcpStream::connect(tg.proxy)
        .await
        .expect("connect");
    let started = Instant::now();
    let mut sent = 0;
    // One byte every 150 ms: each read is quick, the head as a whole is not.
    for b in head.bytes() {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    assert!(sent < head.len(), "the proxy waited for all {sent} bytes");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("tollgate-error: request_timeout"), "{text}");
    assert!(up.requests().is_empty());
}

/// An upstream that answers every request with `101 Switching Protocols` and raw bytes.
async fn switching_upstream() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: upgrade\r\n\r\nRAW-PROTOCOL-BYTES")
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsolicited_101_is_a_502() {
    let (port, _task) = switching_upstream().await;
    let tg = Tollgate::start("allow_private_networks: true\nroutes:\n  - name: local\n    match: { hosts: [\"127.0.0.1:*\"] }\n    action: pass\n").await;
    let host = format!("127.0.0.1:{port}");
    let resp = raw::request(
        tg.proxy,
        "GET",
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    resp.assert_error(502, "upstream_protocol_error", Some("local"));
    assert!(!resp.body_text().contains("RAW-PROTOCOL"), "{resp:?}");
}

const LOCAL: &str = "allow_private_networks: true
routes:
  - name: local
    match: { hosts: [\"127.0.0.1:*\"] }
    action: pass
";

/// `bad` gets our JSON 400 and nothing reaches the upstream.
async fn assert_json_400(tg: &Tollgate, up: &RecordingUpstream, bad: Vec<u8>) {
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(&bad).await;
    let resp = conn.try_read_response("GET").await.unwrap_or_else(|e| {
        panic!(
            "no answer ({e}) to {:?}",
            String::from_utf8_lossy(&bad[..bad.len().min(200)])
        )
    });
    resp.assert_error(400, "bad_request", None);
    assert!(
        up.requests().is_empty(),
        "{:?}",
        String::from_utf8_lossy(&bad[..bad.len().min(200)])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_our_json_400() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(LOCAL).await;
    let host = format!("127.0.0.1:{}", up.port());
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    for bad in [
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nX-A: one\r\n two\r\n\r\n"),
        format!("POST http://{host}/ HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        format!("POST http://{host}/ HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
        format!("POST http://{host}/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nX-A: a\0b\r\n\r\n"),
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n{many}\r\n"),
        "GET /\r\n\r\n".to_owned(),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(),
        format!("GET http://{host}/ HTTP/1.1\r\nHost: ::1\r\n\r\n"),
        "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n".to_owned(),
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nHost: {host}\r\n\r\n"),
        format!("POST http://{host}/ HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ] {
        assert_json_400(&tg, &up, bad.into_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn error_bodies_do_not_disclose_addresses_and_slowloris_is_quiet() {
    let tg = Tollgate::start(LOCAL).await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let host = format!("127.0.0.1:{port}");
    let resp = raw::request(
        tg.proxy,
        "GET",
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    resp.assert_error(502, "upstream_unreachable", Some("local"));
    let body = resp.body_text();
    for leak in ["Peer", "addr:", "127.0.0.1", "scheme", "pingora"] {
        assert!(!body.contains(leak), "{leak:?} in {body}");
    }
    // Clients that give up part way through a head: counted, logged at debug only.
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(tg.proxy)
            .await
            .expect("connect");
        s.write_all(b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127")
            .await
            .expect("write");
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = tg.scrape_once().await;
        let n = scrape.sum("tollgate_client_disconnects_total", &[("stage", "head")]);
        if n >= 20.0 {
            assert_eq!(n, 20.0);
            break;
        }
        assert!(Instant::now() < deadline, "counted {n} of 20");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = tg.output();
    assert!(
        !out.contains("ERROR"),
        "no ERROR lines for clients that went away:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_tunnel_is_closed() {
    let echo = EchoServer::start().await;
    let tg = Tollgate::launch(
        Launch::new(),
        &format!(
            "allow_private_networks: true\ntimeouts: {{ tunnel_idle: 1s }}\nroutes:\n  - name: t\n    match: {{ hosts: [\"127.0.0.1:{}\"] }}\n    action: pass\n",
            echo.port()
        ),
    )
    .await;
    let mut conn = RawConn::connect(tg.proxy).await;
    conn.send(format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", echo.port()).as_bytes())
        .await;
    let resp = conn.read_response("CONNECT").await;
    assert_eq!(resp.status, 200);
    conn.send(b"ping").await;
    assert_eq!(conn.read_exact(4).await, b"ping");
    let started = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end())
        .await
        .expect("the proxy closed the idle tunnel");
    assert!(rest.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed early"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pattern_without_a_port_does_not_open_other_ports() {
    let echo = EchoServer::start().await;
    async fn connect(proxy: std::net::SocketAddr, port: u16) -> raw::RawResponse {
        let mut conn = RawConn::connect(proxy).await;
        conn.send(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
            .await;
        conn.read_response("CONNECT").await
    }
    let route = |hosts: &str| {
        format!("allow_private_networks: true\nroutes:\n  - name: web\n    match: {{ hosts: [{hosts}] }}\n    action: pass\n")
    };
    let strict = Tollgate::start(&route("\"127.0.0.1\"")).await;
    connect(strict.proxy, echo.port())
        .await
        .assert_error(403, "no_route", None);
    assert_eq!(echo.connections(), 0);
    let any = Tollgate::start(&route("\"127.0.0.1:*\"")).await;
    assert_eq!(connect(any.proxy, echo.port()).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo.connections() < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        echo.connections(),
        1,
        "only the `:*` route reached the echo server"
    );
}
