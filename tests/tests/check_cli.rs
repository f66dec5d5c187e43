//! `tollgate check -c FILE`: exit 0 for a valid config; otherwise every problem as
//! `FILE:LINE:COL: message` and exit 78 (EX_CONFIG). Never prints a secret.

use std::ops::RangeInclusive;
use tollgate_tests::process::{
    check, check_file, check_with_env, diagnostics, line_of, Diagnostic,
};
use tollgate_tests::{tempdir, TestCa};

const EX_CONFIG: i32 = 78;
const SECRET: &str = "sup3r-s3cret-literal-4711";

/// A valid base: one credential, one pass route. Problems are added around it.
fn base(extra_routes: &str) -> String {
    format!(
        "allow_private_networks: true
credentials:
  idp:
    token_url: http://127.0.0.1:9/token
    client_id: tests
    client_secret: {SECRET}
routes:
  - name: ok
    match:
      hosts: [ok.test]
    action: pass
{extra_routes}"
    )
}

/// Run check on `yaml`; assert exit 78, that no output line leaks [`SECRET`], and that some
/// diagnostic has a line in `lines` and a message containing one of `keywords`
/// (case-insensitive). Returns all diagnostics.
#[track_caller]
fn assert_problem(yaml: &str, lines: RangeInclusive<usize>, keywords: &[&str]) -> Vec<Diagnostic> {
    let (file, out) = check(yaml);
    let text = out.combined();
    out.assert_code(EX_CONFIG);
    assert!(!text.contains(SECRET), "check printed the secret:\n{text}");
    let diags = diagnostics(&text, "tollgate.yaml");
    assert!(
        !diags.is_empty(),
        "no FILE:LINE:COL: message line in the output:\n{text}"
    );
    for d in &diags {
        assert_eq!(
            d.file,
            file.path.display().to_string(),
            "FILE should be the path given with -c:\n{text}"
        );
        assert!(d.column >= 1, "columns are 1-based: {d:?}");
    }
    let hit = diags.iter().any(|d| {
        lines.contains(&d.line)
            && keywords
                .iter()
                .any(|k| d.message.to_lowercase().contains(&k.to_lowercase()))
    });
    assert!(
        hit,
        "expected a problem on lines {lines:?} mentioning one of {keywords:?}; got:\n{text}\nconfig:\n{yaml}"
    );
    diags
}

#[test]
fn a_valid_spec_like_config_passes() {
    let dir = tempdir();
    let secret_file = dir.path().join("billing-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write secret file");
    let ca = TestCa::new("check CA");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let key_file = dir.path().join("client-key.pem");
    let key = rcgen_key_pem();
    std::fs::write(&key_file, key).expect("write key");
    let yaml = format!(
        r#"listen:
  proxy: 127.0.0.1:3128        # forward-proxy and gateway traffic
  admin: 127.0.0.1:9901
threads: 2
default_action: deny
allow_private_networks: false

credentials:
  billing:
    token_url: https://idp.example.com/oauth2/token
    client_id: billing-egress
    client_secret_file: {secret_file}
    auth_method: client_secret_basic
    scopes: [invoices:read, invoices:write]
    audience: https://billing.example.com
    resource: https://billing.example.com
    params: {{ tenant: eu }}
    ca_file: {ca_file}
  reports:
    token_url: http://127.0.0.1:8089/token
    client_id: reports
    client_secret: ${{TG_TEST_REPORTS_SECRET}}
    auth_method: client_secret_post
  signer:
    token_url: https://idp.example.com/oauth2/token
    client_id: signer
    auth_method: private_key_jwt
    private_key_file: {key_file}
    signing_alg: ES256
    key_id: k1

routes:
  - name: billing
    match:
      hosts: [api.billing.example.com, "*.billing.example.com"]
      path_prefixes: [/v2/]
      methods: [GET, POST]
    clients: [10.0.0.0/8]
    action: inject
    credential: billing
    header: Authorization
    prefix: "Bearer "
    upstream: https://api.billing.example.com:443
    upstream_ca_file: {ca_file}
    replay_on_401: true
  - name: reports
    match: {{ hosts: ["reports.example.com:8443"] }}
    action: inject
    credential: reports
    header: X-Api-Token
    prefix: ""
  - name: signed
    match: {{ hosts: [signed.example.com] }}
    action: inject
    credential: signer
  - name: public
    match: {{ hosts: [cdn.example.com] }}
    action: pass
  - name: blocked
    match: {{ hosts: ["*.evil.example"] }}
    action: deny
"#,
        secret_file = secret_file.display(),
        ca_file = ca_file.display(),
        key_file = key_file.display(),
    );
    let (_file, out) = check_with_env(&yaml, &[("TG_TEST_REPORTS_SECRET", SECRET)]);
    let text = out.combined();
    out.assert_code(0);
    assert!(
        text.to_lowercase().contains("ok"),
        "a valid config should say ok:\n{text}"
    );
    assert!(
        diagnostics(&text, "tollgate.yaml").is_empty(),
        "valid config reported problems:\n{text}"
    );
    assert!(!text.contains(SECRET), "check printed the secret:\n{text}");
}

/// An ES256 private key (PKCS#8 PEM), made now.
fn rcgen_key_pem() -> String {
    rcgen::KeyPair::generate()
        .expect("generate key")
        .serialize_pem()
}

#[test]
fn minimal_base_config_is_valid() {
    // Guards the other tests: each adds one problem to this base.
    let (_f, out) = check(&base(""));
    out.assert_code(0);
    assert!(!out.combined().contains(SECRET));
}

#[test]
fn unknown_key_in_a_route_is_reported_at_its_line() {
    let yaml = base(
        "  - name: typo
    match:
      hosts: [typo.test]
    acton: pass
",
    );
    let line = line_of(&yaml, "acton:");
    assert_problem(&yaml, line..=line, &["acton"]);
}

#[test]
fn unknown_top_level_key_is_reported() {
    let yaml = format!("{}listne:\n  proxy: 127.0.0.1:1\n", base(""));
    let line = line_of(&yaml, "listne:");
    assert_problem(&yaml, line..=line, &["listne"]);
}

#[test]
fn duplicate_route_name_is_reported() {
    let yaml = base(
        "  - name: ok
    match:
      hosts: [other.test]
    action: deny
",
    );
    // The second `- name: ok` block.
    let second = yaml.rfind("  - name: ok").expect("second route");
    let start = yaml[..second].lines().count() + 1;
    let end = yaml.lines().count();
    let diags = assert_problem(&yaml, start..=end, &["ok"]);
    assert!(
        diags
            .iter()
            .any(|d| d.message.to_lowercase().contains("duplicate")
                || d.message.to_lowercase().contains("unique")
                || d.message.to_lowercase().contains("already")),
        "the message should say the name is duplicated: {diags:#?}"
    );
}

#[test]
fn unknown_credential_is_reported() {
    let yaml = base(
        "  - name: inj
    match:
      hosts: [inj.test]
    action: inject
    credential: nosuchcred
",
    );
    let line = line_of(&yaml, "credential: nosuchcred");
    let start = line_of(&yaml, "- name: inj");
    assert_problem(&yaml, start..=line, &["nosuchcred"]);
}

#[test]
fn inject_without_credential_is_reported() {
    let yaml = base(
        "  - name: nocred
    match:
      hosts: [nocred.test]
    action: inject
",
    );
    let start = line_of(&yaml, "- name: nocred");
    let end = yaml.lines().count();
    assert_problem(&yaml, start..=end, &["credential"]);
}

#[test]
fn bad_cidr_is_reported() {
    let yaml = base(
        "  - name: cidr
    match:
      hosts: [cidr.test]
    clients: [10.0.0.0/33]
    action: pass
",
    );
    let line = line_of(&yaml, "clients:");
    assert_problem(&yaml, line..=line, &["10.0.0.0/33", "cidr"]);
}

#[test]
fn bad_host_pattern_is_reported() {
    for pattern in ["api.*.example.test", "*foo.example.test", "bad host.test"] {
        let yaml = base(&format!(
            "  - name: pat
    match:
      hosts: [\"{pattern}\"]
    action: pass
"
        ));
        let line = line_of(&yaml, pattern);
        assert_problem(&yaml, line..=line, &[pattern]);
    }
}

#[test]
fn http_token_url_on_a_non_loopback_host_is_reported() {
    let yaml = format!(
        "credentials:
  remote:
    token_url: http://idp.example.com/oauth2/token
    client_id: c
    client_secret: {SECRET}
routes:
  - name: r
    match: {{ hosts: [r.test] }}
    action: inject
    credential: remote
"
    );
    let line = line_of(&yaml, "token_url:");
    assert_problem(&yaml, line..=line, &["https"]);
}

#[test]
fn http_token_url_on_loopback_is_allowed() {
    for host in ["127.0.0.1:9", "localhost:9", "[::1]:9"] {
        let yaml = format!(
            "credentials:
  local:
    token_url: http://{host}/token
    client_id: c
    client_secret: {SECRET}
routes:
  - name: r
    match: {{ hosts: [r.test] }}
    action: inject
    credential: local
"
        );
        let (_f, out) = check(&yaml);
        out.assert_code(0);
    }
}

#[test]
fn unset_env_var_is_reported_by_name() {
    let yaml = base(
        "  - name: env
    match:
      hosts: [\"${TG_TEST_DEFINITELY_UNSET_VAR}\"]
    action: pass
",
    );
    let line = line_of(&yaml, "TG_TEST_DEFINITELY_UNSET_VAR");
    assert_problem(&yaml, line..=line, &["TG_TEST_DEFINITELY_UNSET_VAR"]);
}

#[test]
fn set_env_var_is_substituted() {
    let yaml = base(
        "  - name: env
    match:
      hosts: [\"${TG_TEST_ROUTE_HOST}\"]
    action: pass
",
    );
    let (file, out) = check_with_env(&yaml, &[("TG_TEST_ROUTE_HOST", "env.test")]);
    out.assert_code(0);
    // And a substituted value is validated like a literal one.
    let out = check_file(&file.path, &[("TG_TEST_ROUTE_HOST", "api.*.bad")]);
    out.assert_code(EX_CONFIG);
    assert!(out.combined().contains("api.*.bad"), "{}", out.combined());
}

#[test]
fn several_problems_in_one_file_are_all_reported() {
    let yaml = format!(
        "credentials:
  remote:
    token_url: http://idp.example.com/oauth2/token
    client_id: c
    client_secret: {SECRET}
routes:
  - name: twice
    match: {{ hosts: [a.test] }}
    action: pass
  - name: twice
    match: {{ hosts: [b.test] }}
    action: pass
  - name: ghost
    match: {{ hosts: [c.test] }}
    action: inject
    credential: ghostcred
  - name: cidr
    match: {{ hosts: [d.test] }}
    clients: [300.1.2.3/8]
    action: pass
  - name: pattern
    match: {{ hosts: [\"x.*.test\"] }}
    action: pass
"
    );
    let (_f, out) = check(&yaml);
    let text = out.combined();
    out.assert_code(EX_CONFIG);
    assert!(!text.contains(SECRET), "check printed the secret:\n{text}");
    let diags = diagnostics(&text, "tollgate.yaml");
    let expect = [
        ("token_url:", "https"),
        ("ghostcred", "ghostcred"),
        ("300.1.2.3/8", "300.1.2.3"),
        ("x.*.test", "x.*.test"),
    ];
    for (needle, word) in expect {
        let line = line_of(&yaml, needle);
        assert!(
            diags
                .iter()
                .any(|d| d.line == line && d.message.to_lowercase().contains(word)),
            "missing a problem on line {line} mentioning {word:?}; got:\n{text}"
        );
    }
    let second_twice = yaml.rfind("- name: twice").expect("second");
    let dup_line = yaml[..second_twice].lines().count();
    assert!(
        diags
            .iter()
            .any(|d| d.line >= dup_line && d.line <= dup_line + 3 && d.message.contains("twice")),
        "missing the duplicate-name problem near line {dup_line}; got:\n{text}"
    );
    assert!(diags.len() >= 5, "expected at least 5 problems:\n{text}");
}

#[test]
fn secret_never_printed_even_when_its_credential_is_broken() {
    // The literal secret sits in a credential with problems of its own.
    let yaml = format!(
        "credentials:
  broken:
    token_url: ftp://idp.example.com/token
    client_id: c
    client_secret: \"{SECRET}\"
    auth_method: client_secret_basic
    bogus_key: 1
"
    );
    let (_f, out) = check(&yaml);
    out.assert_code(EX_CONFIG);
    let text = out.combined();
    assert!(!text.contains(SECRET), "check printed the secret:\n{text}");
    assert!(
        !diagnostics(&text, "tollgate.yaml").is_empty(),
        "expected a FILE:LINE:COL problem:\n{text}"
    );
}

#[test]
fn missing_config_file_is_a_problem() {
    let dir = tempdir();
    let path = dir.path().join("tollgate.yaml");
    let out = check_file(&path, &[]);
    out.assert_code(EX_CONFIG);
    let text = out.combined();
    assert!(
        text.contains(&path.display().to_string()),
        "the problem should name the file:\n{text}"
    );
}

#[test]
fn run_refuses_an_invalid_config_with_the_same_problems() {
    let yaml = base(
        "  - name: ok
    match:
      hosts: [dup.test]
    action: pass
",
    );
    let file = tollgate_tests::ConfigFile::new(&yaml);
    let mut cmd = tollgate_tests::process::command();
    cmd.arg("run").arg("-c").arg(&file.path);
    let out = tollgate_tests::process::run_to_end(cmd);
    let text = out.combined();
    assert_ne!(
        out.code,
        Some(0),
        "run must not start with an invalid config:\n{text}"
    );
    assert!(
        out.code.is_some(),
        "run should exit, not be killed:\n{text}"
    );
    assert!(
        diagnostics(&text, "tollgate.yaml")
            .iter()
            .any(|d| d.message.contains("ok")),
        "run should print the problem as FILE:LINE:COL: message:\n{text}"
    );
    assert!(!text.contains(SECRET), "run printed the secret:\n{text}");
}
