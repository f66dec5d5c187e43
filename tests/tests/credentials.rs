//! Credential sources through the real binary against the real IdP (oidc-provider):
//! `issuer:` discovery, two-secret rotation with `client_secret_files`, and `kind:
//! static` values.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};
use tollgate_tests::process::{command, run_to_end, ConfigFile};
use tollgate_tests::{
    raw, Idp, ProtectedUpstream, RawResponse, RecordingUpstream, Reply, Tollgate,
};

async fn get(tg: &Tollgate, host: &str, path: &str) -> RawResponse {
    let req =
        format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw::request(tg.proxy, "GET", req.as_bytes()).await
}

fn route(name: &str, host: &str, credential: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{ hosts: [\"{host}\"] }}\n    action: inject\n    credential: {credential}\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_discovery_against_the_real_idp() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let creds = format!(
        "credentials:\n  api:\n    issuer: {}\n    client_id: basic-client\n    client_secret: basic-secret\n    scopes: [invoices:read]\n",
        idp.issuer
    );
    let yaml = format!(
        "allow_private_networks: true\n{creds}routes:\n{}",
        route("api", &up.host(), "api", "")
    );
    let tg = Tollgate::start(&yaml).await;
    let resp = get(&tg, &up.host(), "/x").await;
    assert_eq!(resp.status, 200, "{resp:?} {}", tg.output());
    let echo = resp.json();
    assert_eq!(echo["token"]["client_id"], "basic-client", "{echo}");
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.requests[0].auth_method, "client_secret_basic");

    // An issuer that is not the IdP's: refused at start.
    let wrong = ConfigFile::new(&format!(
        "credentials:\n  api:\n    issuer: {}/other\n    client_id: basic-client\n    client_secret: basic-secret\nroutes: []\n",
        idp.issuer
    ));
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = command();
        cmd.arg("token").arg("-c").arg(&wrong.path).arg("api");
        run_to_end(cmd)
    })
    .await
    .unwrap();
    out.assert_code(1);
    assert!(
        out.stderr.contains("credential \"api\": discovery at "),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_files_carry_a_rotation_through() {
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let tg_dir = tollgate_tests::tempdir();
    let new = tg_dir.path().join("new");
    let old = tg_dir.path().join("old");
    std::fs::write(&new, "rotating-secret-2\n").unwrap();
    std::fs::write(&old, "rotating-secret\n").unwrap();
    let creds = format!(
        "credentials:\n  rot:\n    token_url: {}\n    client_id: rotating-client\n    client_secret_files: [{}, {}]\n",
        idp.token_url,
        new.display(),
        old.display()
    );
    let yaml = format!(
        "allow_private_networks: true\n{creds}routes:\n{}",
        route("api", &up.host(), "rot", "")
    );
    let tg = Tollgate::start_in(tg_dir, &yaml).await;

    // The IdP does not know the new secret yet: the old one gets the token.
    let resp = get(&tg, &up.host(), "/1").await;
    assert_eq!(resp.status, 200, "{resp:?} {}", tg.output());
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");
    assert_eq!(stats.requests[0].status, Some(401));
    assert_eq!(stats.requests[1].status, Some(200));
    let in_use = |s: &tollgate_tests::Scrape| {
        s.sum(
            "tollgate_token_client_secret_in_use",
            &[("credential", "rot")],
        )
    };
    assert_eq!(
        in_use(&tg.scrape().await),
        2.0,
        "still on the previous secret"
    );

    // The IdP switches to the new secret; the next token is fetched with it.
    idp.rotate("rotating-secret-2").await;
    up.revoke_all().await;
    let resp = get(&tg, &up.host(), "/2").await;
    assert_eq!(
        resp.status,
        200,
        "replayed with a fresh token: {resp:?} {}",
        tg.output()
    );
    let stats = idp.stats().await;
    assert_eq!(stats.requests.last().unwrap().status, Some(200));
    assert_eq!(
        stats.token_requests, 3,
        "the current secret works at once: {stats:#?}"
    );
    assert_eq!(
        in_use(&tg.scrape().await),
        1.0,
        "the old secret can be revoked"
    );

    // `tollgate token` says which file it used.
    let file = ConfigFile::new(&format!("{creds}routes: []\n"));
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = command();
        cmd.arg("token").arg("-c").arg(&file.path).arg("rot");
        run_to_end(cmd)
    })
    .await
    .unwrap();
    out.assert_code(0);
    assert!(
        out.stdout.contains(&format!(
            "used:       client_secret_basic with client_secret_files[0] {}",
            new.display()
        )),
        "{}",
        out.stdout
    );
    assert!(
        !out.combined().contains("rotating-secret"),
        "{}",
        out.combined()
    );
}

fn static_config(up: &RecordingUpstream, value_file: &std::path::Path) -> String {
    format!(
        "allow_private_networks: true\ncredentials:\n  stripe:\n    kind: static\n    value_file: {}\nroutes:\n{}",
        value_file.display(),
        route(
            "stripe",
            &format!("127.0.0.1:{}", up.port()),
            "stripe",
            "    header: X-Api-Key\n    prefix: \"\"\n"
        )
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_value_is_injected_and_follows_its_file() {
    let up = RecordingUpstream::start().await;
    let dir = tollgate_tests::tempdir();
    let key = dir.path().join("stripe-key");
    std::fs::write(&key, "sk_test_first\n").unwrap();
    let tg = Tollgate::start(&static_config(&up, &key)).await;
    let host = format!("127.0.0.1:{}", up.port());
    let resp = get(&tg, &host, "/v1/charges").await;
    assert_eq!(resp.status, 200, "{resp:?} {}", tg.output());
    let seen = up.single_request();
    assert_eq!(seen.header("x-api-key"), Some("sk_test_first"));
    assert_eq!(seen.header("authorization"), None);

    // Rotated (a new file swapped in, as a Secret mount does): picked up within seconds.
    let tmp = dir.path().join(".stripe-key.new");
    std::fs::write(&tmp, "sk_test_second\n").unwrap();
    std::fs::rename(&tmp, &key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = get(&tg, &host, "/v1/charges").await;
        assert_eq!(resp.status, 200);
        let last = up.requests().pop().unwrap();
        if last.header("x-api-key") == Some("sk_test_second") {
            break;
        }
        assert_eq!(last.header("x-api-key"), Some("sk_test_first"));
        assert!(
            Instant::now() < deadline,
            "the new value never came: {}",
            tg.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !tg.output().contains("sk_test_"),
        "values never reach the logs"
    );

    // `tollgate token` shows a static credential without its value.
    let file = ConfigFile::new(&format!(
        "credentials:\n  stripe:\n    kind: static\n    value_file: {}\nroutes: []\n",
        key.display()
    ));
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = command();
        cmd.arg("token").arg("-c").arg(&file.path).arg("stripe");
        run_to_end(cmd)
    })
    .await
    .unwrap();
    out.assert_code(0);
    assert!(out.stdout.contains("kind:       static"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("used:       static value_file {}", key.display())),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("sk_test"), "{}", out.stdout);
}

/// Passes once the data path consults `CredHandle::replays_after_401` (SPEC: a static
/// credential's 401 is passed through and counted, never replayed).
#[tokio::test(flavor = "multi_thread")]
async fn a_static_value_is_never_replayed_after_a_401() {
    let up = RecordingUpstream::start().await;
    up.set_reply(Reply {
        status: 401,
        headers: vec![(
            "WWW-Authenticate".into(),
            "Bearer error=\"invalid_token\"".into(),
        )],
    });
    let dir = tollgate_tests::tempdir();
    let key = dir.path().join("stripe-key");
    std::fs::write(&key, "sk_test_first\n").unwrap();
    let tg = Tollgate::start(&static_config(&up, &key)).await;
    let resp = get(&tg, &format!("127.0.0.1:{}", up.port()), "/v1/charges").await;
    assert_eq!(resp.status, 401, "the upstream's 401 passes through");
    assert_eq!(up.requests().len(), 1, "not replayed");
    let scrape = tg.scrape().await;
    assert_eq!(
        scrape.sum("tollgate_replays_total", &[("outcome", "no_replay")]),
        1.0,
        "{}",
        scrape.text
    );
}
