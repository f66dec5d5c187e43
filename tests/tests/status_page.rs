//! The admin status page, `/status` rendered by a real browser (headless Chromium, the
//! DOM after parsing) and `/status.json`, against the real IdP: a credential holding a
//! token, one whose token endpoint is down, routes with their counts. Neither ever
//! carries a token or a secret. Odd paths and methods get 404 / 405.

use std::process::Command;
use tollgate_tests::{curl_via, raw, Idp, ProtectedUpstream, Tollgate};

const SECRET: &str = "basic-secret";

async fn env() -> (Idp, ProtectedUpstream, Tollgate) {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg = Tollgate::start(&format!(
        "allow_private_networks: true
credentials:
  api:
    token_url: {token_url}
    client_id: basic-client
    client_secret: {SECRET}
  broken:
    token_url: http://127.0.0.1:9/token
    client_id: nobody
    client_secret: never-shown-secret
routes:
  - name: api
    match: {{ hosts: [\"{host}\"], path_prefixes: [/v1/] }}
    action: inject
    credential: api
  - name: down
    match: {{ hosts: [\"{host}\"], path_prefixes: [/down/] }}
    action: inject
    credential: broken
    replay_on_401: false
",
        token_url = idp.token_url,
        host = up.host(),
    ))
    .await;
    (idp, up, tg)
}

/// The page as Chromium renders it (`--dump-dom`: the DOM after parsing).
fn chromium_dom(url: &str) -> String {
    let profile = tollgate_tests::tempdir();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium (scripts/setup installs it)");
    assert!(out.status.success(), "chromium: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the table row whose `data-ATTR` is `key`, tags removed.
fn row(dom: &str, attr: &str, key: &str) -> String {
    let start = dom
        .find(&format!("data-{attr}=\"{key}\""))
        .unwrap_or_else(|| panic!("no row for {key}:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    let mut text = String::new();
    let mut in_tag = true; // `start` is inside the row's `<tr ...>`
    for c in dom[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_each_credential_and_route_and_never_a_token() {
    let (idp, up, tg) = env().await;
    let ok = curl_via(&tg.proxy_url(), &format!("http://{}/v1/x", up.host()), &[]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let down = curl_via(
        &tg.proxy_url(),
        &format!("http://{}/down/x", up.host()),
        &[],
    )
    .await;
    assert_eq!(down.status, 502, "{down:?}");
    let token = up.requests().await[0]
        .header("authorization")
        .expect("the token the upstream saw")
        .trim_start_matches("Bearer ")
        .to_owned();
    assert!(token.len() > 20);

    let dom = chromium_dom(&format!("http://{}/status", tg.admin));
    assert!(dom.contains("<h1>tollgate "), "{dom}");
    let api = row(&dom, "credential", "api");
    assert!(api.starts_with("api valid"), "{api}");
    assert!(api.contains("1 / 0"), "one token request, ok: {api}");
    assert!(
        api.contains(" 4m ") || api.contains(" 5m "),
        "time to expiry of the IdP's 5-minute token: {api}"
    );
    let broken = row(&dom, "credential", "broken");
    assert!(broken.starts_with("broken failing"), "{broken}");
    assert!(broken.contains("0 / 1"), "{broken}");
    assert!(
        broken.contains("127.0.0.1:9"),
        "the last error says where: {broken}"
    );
    let route = row(&dom, "route", "api");
    assert!(route.contains("inject api yes"), "{route}");
    assert!(
        route.ends_with("1 0 200"),
        "requests, replays, last status: {route}"
    );
    assert!(row(&dom, "route", "down").ends_with("1 0 502"));

    let json = raw::get(tg.admin, "/status.json").await;
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let v = json.json();
    assert_eq!(v["credentials"][0]["name"], "api");
    assert_eq!(v["credentials"][0]["state"], "valid");
    let left = v["credentials"][0]["expires_in_seconds"]
        .as_i64()
        .expect("expiry");
    assert!((200..=300).contains(&left), "{v}");
    assert_eq!(v["credentials"][1]["state"], "failing");
    assert_eq!(v["routes"][0]["requests"], 1);
    assert!(v["config_file"]
        .as_str()
        .is_some_and(|f| f.ends_with(".yaml")));

    for (what, text) in [("page", &dom), ("json", &json.body_text())] {
        assert!(!text.contains(&token), "{what} shows the token");
        assert!(
            !text.contains(SECRET) && !text.contains("never-shown-secret"),
            "{what} shows a secret"
        );
    }
    drop(idp);
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_paths_and_methods_get_404_and_405() {
    let (_idp, _up, tg) = env().await;
    for path in [
        "/status/",
        "/status.json/x",
        "/STATUS",
        "/status%2ejson",
        "/../status",
    ] {
        let r = raw::get(tg.admin, path).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    for method in ["POST", "DELETE", "PUT"] {
        let r = raw::request(
            tg.admin,
            method,
            format!("{method} /status HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    let r = raw::get(tg.admin, "/status").await;
    assert_eq!(r.status, 200, "still serving");
}
