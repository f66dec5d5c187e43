//! Route matching through the running proxy: the most specific route wins (exact host over
//! wildcard, then longer path prefix, then fewer methods), ties go to the earlier route;
//! `clients` CIDRs; ports in host patterns; `deny`; `default_action`; `upstream` override.
//!
//! Named hosts (`api.example.test`) do not resolve: every route that should forward sets
//! `upstream:` to the local recording upstream, and clients use the proxy (`curl -x`), so
//! only the proxy ever looks at the name.

use tollgate_tests::{curl_via, raw, ClientResponse, RecordingUpstream, Tollgate};

async fn get(tg: &Tollgate, url: &str) -> ClientResponse {
    curl_via(&tg.proxy_url(), url, &[]).await
}

async fn with_method(tg: &Tollgate, method: &str, url: &str) -> ClientResponse {
    curl_via(&tg.proxy_url(), url, &["-X", method]).await
}

/// Forwarded to the recording upstream (not a proxy error).
#[track_caller]
fn assert_passed(resp: &ClientResponse, target: &str) {
    assert_eq!(resp.status, 200, "expected the upstream's 200: {resp:?}");
    assert_eq!(
        resp.header("x-recorded-by"),
        Some("tollgate-tests"),
        "{resp:?}"
    );
    assert_eq!(resp.json()["target"], target);
}

/// Refused by the proxy because of `route` (a `deny` route): 403, a `tollgate-error`
/// header that matches the JSON `error`, and `route` naming it.
#[track_caller]
fn assert_denied_by(resp: &ClientResponse, route: &str) {
    assert_eq!(resp.status, 403, "{resp:?}");
    let code = resp
        .header("tollgate-error")
        .unwrap_or_else(|| panic!("no tollgate-error header: {resp:?}"))
        .to_string();
    let body = resp.json();
    assert_eq!(body["error"], code.as_str(), "{resp:?}");
    assert_eq!(body["route"], route, "{resp:?}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{resp:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unmatched_destination_is_403_no_route_with_json_body() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: only
    match: {{ hosts: [only.test] }}
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    ))
    .await;
    let resp = get(&tg, "http://unmatched.test/anything").await;
    resp.assert_error(403, "no_route", None);
    // Also an IP literal that no route names.
    let resp = get(&tg, &format!("http://127.0.0.1:{}/x", up.port())).await;
    resp.assert_error(403, "no_route", None);
    assert_eq!(up.connections(), 0, "nothing may be forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn default_action_pass_forwards_unmatched_requests() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(
        "default_action: pass
allow_private_networks: true
routes:
  - name: blocked
    match: { hosts: [blocked.test] }
    action: deny
",
    )
    .await;
    let resp = get(&tg, &format!("http://127.0.0.1:{}/free?x=1", up.port())).await;
    assert_passed(&resp, "/free?x=1");
    assert_eq!(up.single_request().target, "/free?x=1");
    // A deny route still denies.
    let resp = get(&tg, "http://blocked.test/").await;
    assert_denied_by(&resp, "blocked");
}

#[tokio::test(flavor = "multi_thread")]
async fn exact_host_beats_wildcard_regardless_of_order() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: wild-deny
    match: {{ hosts: [\"*.example.test\"] }}
    action: deny
  - name: exact-pass
    match: {{ hosts: [api.example.test] }}
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    ))
    .await;
    assert_passed(&get(&tg, "http://api.example.test/v1").await, "/v1");
    assert_denied_by(&get(&tg, "http://other.example.test/v1").await, "wild-deny");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_matches_any_depth_of_subdomain_but_not_the_apex() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: wild
    match: {{ hosts: [\"*.wild.test\"] }}
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    ))
    .await;
    assert_passed(&get(&tg, "http://a.wild.test/1").await, "/1");
    assert_passed(&get(&tg, "http://a.b.wild.test/2").await, "/2");
    get(&tg, "http://wild.test/3")
        .await
        .assert_error(403, "no_route", None);
    get(&tg, "http://notwild.test/4")
        .await
        .assert_error(403, "no_route", None);
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_matching_ignores_case() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: mixed
    match: {{ hosts: [mixed.case.test] }}
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    ))
    .await;
    let resp = raw::request(
        tg.proxy,
        "GET",
        b"GET http://Mixed.CASE.test/c HTTP/1.1\r\nHost: Mixed.CASE.test\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?} {}", resp.body_text());
    assert_eq!(up.single_request().target, "/c");
}

#[tokio::test(flavor = "multi_thread")]
async fn longer_path_prefix_wins_and_other_paths_do_not_match() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: v2
    match:
      hosts: [paths.test]
      path_prefixes: [/v2/]
    action: pass
    upstream: http://127.0.0.1:{}
  - name: v2-admin
    match:
      hosts: [paths.test]
      path_prefixes: [/v2/admin/]
    action: deny
",
        up.port()
    ))
    .await;
    assert_passed(
        &get(&tg, "http://paths.test/v2/items?page=2").await,
        "/v2/items?page=2",
    );
    assert_denied_by(
        &get(&tg, "http://paths.test/v2/admin/users").await,
        "v2-admin",
    );
    get(&tg, "http://paths.test/v1/items")
        .await
        .assert_error(403, "no_route", None);
    get(&tg, "http://paths.test/")
        .await
        .assert_error(403, "no_route", None);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn path_prefix_is_matched_on_the_path_not_the_query() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: api
    match:
      hosts: [q.test]
      path_prefixes: [/api/]
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    ))
    .await;
    get(&tg, "http://q.test/other?next=/api/")
        .await
        .assert_error(403, "no_route", None);
    assert_passed(&get(&tg, "http://q.test/api/x?y=/z").await, "/api/x?y=/z");
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_restrict_a_route() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: read-only
    match:
      hosts: [m.test]
      methods: [GET, HEAD]
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    ))
    .await;
    assert_passed(&get(&tg, "http://m.test/r").await, "/r");
    with_method(&tg, "POST", "http://m.test/w")
        .await
        .assert_error(403, "no_route", None);
    with_method(&tg, "DELETE", "http://m.test/w")
        .await
        .assert_error(403, "no_route", None);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_listing_methods_beats_one_listing_none() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: all-deny
    match:
      hosts: [m2.test]
    action: deny
  - name: get-pass
    match:
      hosts: [m2.test]
      methods: [GET]
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    ))
    .await;
    assert_passed(&get(&tg, "http://m2.test/g").await, "/g");
    assert_denied_by(
        &with_method(&tg, "POST", "http://m2.test/p").await,
        "all-deny",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ties_go_to_the_earlier_route() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: first
    match: {{ hosts: [tie.test] }}
    action: deny
  - name: second
    match: {{ hosts: [tie.test] }}
    action: pass
    upstream: http://127.0.0.1:{0}
  - name: third-pass
    match: {{ hosts: [tie2.test] }}
    action: pass
    upstream: http://127.0.0.1:{0}
  - name: fourth-deny
    match: {{ hosts: [tie2.test] }}
    action: deny
",
        up.port()
    ))
    .await;
    assert_denied_by(&get(&tg, "http://tie.test/").await, "first");
    assert_passed(&get(&tg, "http://tie2.test/t").await, "/t");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_cidr_admits_or_refuses_the_caller() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: local-only
    match: {{ hosts: [c1.test] }}
    clients: [127.0.0.1/32]
    action: pass
    upstream: http://127.0.0.1:{0}
  - name: tenners
    match: {{ hosts: [c2.test] }}
    clients: [10.0.0.0/8, 192.168.0.0/16]
    action: pass
    upstream: http://127.0.0.1:{0}
",
        up.port()
    ))
    .await;
    assert_passed(&get(&tg, "http://c1.test/ok").await, "/ok");
    get(&tg, "http://c2.test/no")
        .await
        .assert_error(403, "client_not_allowed", Some("tenners"));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn port_in_a_host_pattern_restricts_the_port() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: port-8080
    match: {{ hosts: [\"ports.test:8080\"] }}
    action: pass
    upstream: http://127.0.0.1:{0}
  - name: default-port
    match: {{ hosts: [\"p80.test:80\"] }}
    action: pass
    upstream: http://127.0.0.1:{0}
",
        up.port()
    ))
    .await;
    assert_passed(&get(&tg, "http://ports.test:8080/a").await, "/a");
    get(&tg, "http://ports.test:8081/b")
        .await
        .assert_error(403, "no_route", None);
    get(&tg, "http://ports.test/c")
        .await
        .assert_error(403, "no_route", None);
    // The scheme's default port counts as the requested port.
    assert_passed(&get(&tg, "http://p80.test/d").await, "/d");
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_action_refuses_with_the_route_name() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
default_action: pass
routes:
  - name: no-exfil
    match: {{ hosts: [\"*.evil.test\", \"127.0.0.1:{}\"] }}
    action: deny
",
        up.port()
    ))
    .await;
    assert_denied_by(&get(&tg, "http://x.evil.test/steal").await, "no-exfil");
    assert_denied_by(
        &get(&tg, &format!("http://127.0.0.1:{}/y", up.port())).await,
        "no-exfil",
    );
    assert_eq!(up.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_override_sends_origin_form_with_the_upstream_authority_as_host() {
    // Assumed contract (nginx `proxy_pass` default): with `upstream:` set, Host sent
    // upstream is the upstream's authority, not the requested name.
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
routes:
  - name: x
    match: {{ hosts: [api.x.test] }}
    action: pass
    upstream: http://127.0.0.1:{}
",
        up.port()
    ))
    .await;
    let resp = get(&tg, "http://api.x.test/path?q=1").await;
    assert_passed(&resp, "/path?q=1");
    let req = up.single_request();
    assert_eq!(req.target, "/path?q=1");
    let authority = format!("127.0.0.1:{}", up.port());
    assert_eq!(req.header_all("host"), vec![authority.as_str()]);
}
