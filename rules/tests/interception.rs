//! `interception:` and `routes[].connect:`: defaults by action, what each action allows,
//! and the positions kept for problems the proxy finds later (in the CA files).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::time::Duration;
use tollgate_rules::*;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    let env = |name: &str| (name == "CA_DIR").then(|| "/etc/tollgate/ca".to_owned());
    load_str("t.yaml", text, &env)
}

fn ok(text: &str) -> Config {
    load(text).unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}\n--- text:\n{text}"))
}

/// Asserts exactly one problem, at `at` (`"LINE:COL"`), whose message contains `needle`.
#[track_caller]
fn one(text: &str, at: &str, needle: &str) {
    let errs = match load(text) {
        Ok(_) => panic!("expected a problem, the config was valid:\n{text}"),
        Err(e) => e,
    };
    assert_eq!(errs.0.len(), 1, "expected one problem, got:\n{errs}");
    let p = &errs.0[0];
    let got = format!("{}:{}: {}", p.line, p.column, p.message);
    assert!(
        got.starts_with(&format!("{at}: ")),
        "expected it at {at}: {got}"
    );
    assert!(got.contains(needle), "expected {needle:?} in {got}");
}

const CRED: &str = "\
credentials:
  billing:
    token_url: https://idp.example.com/token
    client_id: billing-egress
    client_secret: x
";

/// A route with `action` and, when given, `connect` (lines 6.. after [`CRED`]).
fn route(action: &str, connect: Option<&str>) -> String {
    let credential = if action == "inject" {
        "    credential: billing\n"
    } else {
        ""
    };
    let connect = connect.map_or(String::new(), |c| format!("    connect: {c}\n"));
    format!(
        "{CRED}routes:\n  - name: r\n    match: {{ hosts: [api.example.com] }}\n    action: {action}\n{credential}{connect}"
    )
}

#[test]
fn connect_defaults_follow_the_action() {
    for (action, want) in [
        ("pass", Connect::Tunnel),
        ("inject", Connect::Refuse),
        ("deny", Connect::Refuse),
    ] {
        let c = ok(&route(action, None));
        assert_eq!(c.routes[0].connect, want, "{action}");
        assert_eq!(c.routes[0].connect_at, None);
        assert_eq!(c.intercepting_routes().count(), 0);
    }
}

#[test]
fn connect_values_each_action_allows() {
    for (action, connect, want) in [
        ("pass", "tunnel", Connect::Tunnel),
        ("pass", "refuse", Connect::Refuse),
        ("inject", "refuse", Connect::Refuse),
        ("inject", "intercept", Connect::Intercept),
    ] {
        let c = ok(&route(action, Some(connect)));
        assert_eq!(c.routes[0].connect, want, "{action} {connect}");
        assert_eq!(want.name(), connect);
        let at = c.routes[0].connect_at.clone().unwrap();
        let line = if action == "inject" { 11 } else { 10 };
        assert_eq!((at.file.as_str(), at.line, at.column), ("t.yaml", line, 5));
        assert_eq!(at.key, "routes[0].connect");
    }
    let c = ok(&route("inject", Some("intercept")));
    let names: Vec<_> = c.intercepting_routes().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["r"]);
}

#[test]
fn connect_values_an_action_does_not_allow() {
    one(
        &route("pass", Some("intercept")),
        "10:14",
        "routes[0].connect: `intercept` needs `action: inject`: pass routes are never intercepted",
    );
    one(
        &route("inject", Some("tunnel")),
        "11:14",
        "routes[0].connect: an inject route cannot `tunnel`",
    );
    for connect in ["tunnel", "refuse", "intercept"] {
        one(
            &route("deny", Some(connect)),
            "10:14",
            "routes[0].connect: a deny route has no `connect`",
        );
    }
    one(
        &route("inject", Some("mitm")),
        "11:14",
        "routes[0].connect: unknown variant `mitm`, expected one of `tunnel`, `refuse`, `intercept`",
    );
}

#[test]
fn intercept_is_valid_without_an_interception_block() {
    // Plain HTTP inside the tunnel needs no CA; TLS inside it is closed by the proxy.
    let c = ok(&route("inject", Some("intercept")));
    assert_eq!(c.interception, None);
}

#[test]
fn interception_block_with_defaults() {
    let c = ok(&format!(
        "interception:\n  ca_cert_file: ${{CA_DIR}}/tls.crt\n  ca_key_file: /etc/tollgate/ca/tls.key\n{}",
        route("inject", Some("intercept"))
    ));
    let i = c.interception.unwrap();
    assert_eq!(i.ca_cert_file, PathBuf::from("/etc/tollgate/ca/tls.crt"));
    assert_eq!(i.ca_key_file, PathBuf::from("/etc/tollgate/ca/tls.key"));
    assert_eq!(i.leaf_lifetime, Duration::from_secs(24 * 3600));
    assert_eq!(i.leaf_lifetime, DEFAULT_LEAF_LIFETIME);
    // The keys naming the files, for problems with the files themselves.
    let cert = i.sites.ca_cert_file.problem("cannot read it");
    assert_eq!(
        cert.to_string(),
        "t.yaml:2:3: interception.ca_cert_file: cannot read it"
    );
    let key = i.sites.ca_key_file.problem("does not match");
    assert_eq!(
        key.to_string(),
        "t.yaml:3:3: interception.ca_key_file: does not match"
    );
}

#[test]
fn leaf_lifetime_is_a_bounded_duration() {
    let with = |l: &str| {
        format!(
            "interception:\n  ca_cert_file: a.crt\n  ca_key_file: a.key\n  leaf_lifetime: {l}\n"
        )
    };
    assert_eq!(
        ok(&with("7d")).interception.unwrap().leaf_lifetime,
        Duration::from_secs(7 * 86400)
    );
    assert_eq!(
        ok(&with("10m")).interception.unwrap().leaf_lifetime,
        MIN_LEAF_LIFETIME
    );
    assert_eq!(
        ok(&with("397d")).interception.unwrap().leaf_lifetime,
        MAX_LEAF_LIFETIME
    );
    one(
        &with("soon"),
        "4:18",
        "interception.leaf_lifetime: \"soon\" is not a duration",
    );
    one(&with("1m"), "4:18", "must be between 10m and 397d");
    one(&with("398d"), "4:18", "must be between 10m and 397d");
    one(&with("\"\""), "4:18", "empty value");
}

#[test]
fn interception_needs_both_files() {
    one(
        "interception:\n  ca_cert_file: a.crt\n",
        "1:1",
        "interception: missing `ca_key_file`",
    );
    one(
        "interception:\n  ca_key_file: a.key\n",
        "1:1",
        "interception: missing `ca_cert_file`",
    );
    one(
        "interception:\n  ca_cert_file: a.pem\n  ca_key_file: a.pem\n",
        "3:16",
        "interception.ca_key_file: must not be the certificate file",
    );
    one(
        "interception:\n  ca_cert_file: a.crt\n  ca_key_file: a.key\n  ca_file: b\n",
        "4:3",
        "interception: unknown field `ca_file`, expected one of `ca_cert_file`, `ca_key_file`, `leaf_lifetime`",
    );
    one(
        "interception:\n  ca_cert_file: ${NOPE}/a.crt\n  ca_key_file: a.key\n",
        "2:17",
        "NOPE",
    );
    one(
        "interception: /etc/ca.pem\n",
        "1:15",
        "interception: invalid type: string \"/etc/ca.pem\", expected a mapping",
    );
}
