//! `tollgate route -c FILE URL [--method M] [--client IP]` explains the decision: the
//! route, the action, the credential, the upstream it would dial, or why it is denied.
//! The wording is the binary's; these tests look for the names and words that matter.
//! Nothing here opens a connection.

use tollgate_tests::process::CmdOutput;
use tollgate_tests::{route, ConfigFile};

const CONFIG: &str = "credentials:
  billing-cred:
    token_url: http://127.0.0.1:9/token
    client_id: billing-egress
    client_secret: route-cli-secret-9931
routes:
  - name: billing-api
    match:
      hosts: [api.billing.test, \"*.billing.test\"]
      path_prefixes: [/v2/]
      methods: [GET, POST]
    action: inject
    credential: billing-cred
    upstream: https://127.0.0.1:18443
  - name: public-cdn
    match: { hosts: [cdn.test] }
    action: pass
    upstream: http://127.0.0.1:18080
  - name: tenants
    match: { hosts: [\"tenants.test:*\"] }
    clients: [10.0.0.0/8]
    action: pass
  - name: evil
    match: { hosts: [\"*.evil.test\"] }
    action: deny
";

/// `tollgate route` with `args`; it must exit 0 (forwarded or tunnelled) or 1 (refused).
fn explain(args: &[&str]) -> (String, CmdOutput) {
    let file = ConfigFile::new(CONFIG);
    let out = route(&file, args);
    let text = out.combined();
    assert!(
        matches!(out.code, Some(0) | Some(1)),
        "exit code {:?}:\n{text}",
        out.code
    );
    assert!(
        !text.contains("route-cli-secret-9931"),
        "route printed a secret:\n{text}"
    );
    (text.to_lowercase(), out)
}

#[track_caller]
fn assert_mentions(text: &str, words: &[&str]) {
    for w in words {
        assert!(
            text.contains(&w.to_lowercase()),
            "expected {w:?} in the explanation:\n{text}"
        );
    }
}

#[track_caller]
fn assert_mentions_any(text: &str, words: &[&str]) {
    assert!(
        words.iter().any(|w| text.contains(&w.to_lowercase())),
        "expected one of {words:?} in the explanation:\n{text}"
    );
}

#[test]
fn inject_route_names_route_action_credential_and_upstream() {
    let (text, out) = explain(&["http://api.billing.test/v2/invoices?x=1"]);
    // Its upstream is on loopback and allow_private_networks is off: refused at the dial.
    out.assert_code(1);
    assert_mentions(&text, &["private_address"]);
    assert_mentions(
        &text,
        &["billing-api", "inject", "billing-cred", "127.0.0.1:18443"],
    );
    assert_mentions(&text, &["https"]);
}

#[test]
fn wildcard_host_matches_the_same_route() {
    let (text, _) = explain(&["http://eu.billing.test/v2/x", "--method", "POST"]);
    assert_mentions(&text, &["billing-api", "inject"]);
}

#[test]
fn pass_route_names_its_upstream() {
    let (text, _) = explain(&["http://cdn.test/img.png"]);
    assert_mentions(&text, &["public-cdn", "pass", "127.0.0.1:18080"]);
}

#[test]
fn pass_route_without_upstream_dials_the_requested_authority() {
    let (text, _) = explain(&["http://tenants.test:8081/x", "--client", "10.1.2.3"]);
    assert_mentions(&text, &["tenants", "pass", "tenants.test:8081"]);
}

#[test]
fn unmatched_destination_is_denied() {
    let (text, out) = explain(&["http://unknown.test/"]);
    out.assert_code(1);
    assert_mentions_any(&text, &["no_route", "no route", "denied", "deny"]);
    assert!(!text.contains("billing-api"), "{text}");
}

#[test]
fn method_not_listed_is_not_matched() {
    let (text, _) = explain(&["http://api.billing.test/v2/x", "--method", "DELETE"]);
    assert_mentions_any(&text, &["no_route", "no route", "denied"]);
    let (text, _) = explain(&["http://api.billing.test/v2/x", "--method", "GET"]);
    assert_mentions(&text, &["billing-api", "inject"]);
}

#[test]
fn path_outside_the_prefixes_is_not_matched() {
    let (text, _) = explain(&["http://api.billing.test/v1/x"]);
    assert_mentions_any(&text, &["no_route", "no route", "denied"]);
}

#[test]
fn client_outside_the_cidrs_is_refused() {
    let (text, _) = explain(&["http://tenants.test/x", "--client", "192.168.1.1"]);
    assert_mentions(&text, &["tenants"]);
    assert_mentions_any(
        &text,
        &["client_not_allowed", "client not allowed", "not allowed"],
    );
}

#[test]
fn deny_route_is_named() {
    let (text, _) = explain(&["http://x.evil.test/"]);
    assert_mentions(&text, &["evil"]);
    assert_mentions_any(&text, &["deny", "denied", "denies"]);
}

#[test]
fn default_action_pass_is_explained() {
    let file = ConfigFile::new("default_action: pass\nroutes: []\n");
    let out = route(&file, &["http://anything.test/"]);
    out.assert_code(0);
    assert_mentions(&out.combined().to_lowercase(), &["pass"]);
}

#[test]
fn json_format_says_the_same_and_refusals_exit_1() {
    let file = ConfigFile::new(&format!("allow_private_networks: true\n{CONFIG}"));
    let out = route(
        &file,
        &[
            "--format",
            "json",
            "http://api.billing.test/v2/a/../invoices",
        ],
    );
    let text = out.combined();
    out.assert_code(0);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["decision"], "forward", "{v}");
    assert_eq!(v["route"], "billing-api");
    assert_eq!(v["action"], "inject");
    assert_eq!(v["credential"], "billing-cred");
    assert_eq!(v["upstream"], "https://127.0.0.1:18443");
    assert_eq!(
        v["normalized_path"], "/v2/invoices",
        "what is routed is what is sent"
    );
    assert!(v["error"].is_null());
    let (_, out) = explain(&["--format", "json", "http://x.evil.test/"]);
    out.assert_code(1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["decision"], "refused");
    assert_eq!(v["route"], "evil");
    assert_eq!(v["error"]["code"], "denied");
    assert_eq!(v["error"]["status"], 403);
    let (_, out) = explain(&[
        "--format",
        "json",
        "--method",
        "CONNECT",
        "tenants.test:443",
        "--client",
        "10.1.2.3",
    ]);
    out.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["decision"], "tunnel", "{v}");
    assert_eq!(v["upstream"], "tcp://tenants.test:443", "{v}");
}
