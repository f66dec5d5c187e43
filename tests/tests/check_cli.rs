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

// ------------------------------------------------------------ files the config names
//
// `check` opens every file `run` opens, the way `run` uses it, and reports each problem at
// the line of the key naming the file; `run` refuses the same files with exit 78.

/// A config whose files are all usable, plus one broken `replace` applied to it.
struct Files {
    dir: tempfile::TempDir,
    secret: std::path::PathBuf,
    key: std::path::PathBuf,
    ca: std::path::PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempdir();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, format!("{SECRET}\n")).expect("write secret");
        let key = dir.path().join("key.pem");
        std::fs::write(&key, rcgen_key_pem()).expect("write key");
        let ca = TestCa::new("files CA").write_pem(dir.path(), "ca.pem");
        Files {
            dir,
            secret,
            key,
            ca,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn yaml(&self) -> String {
        format!(
            "allow_private_networks: true
credentials:
  secret:
    token_url: http://127.0.0.1:9/token
    client_id: s
    client_secret_file: {secret}
    ca_file: {ca}
  signer:
    token_url: http://127.0.0.1:9/token
    client_id: k
    auth_method: private_key_jwt
    private_key_file: {key}
routes:
  - name: tls
    match: {{ hosts: [tls.test] }}
    action: inject
    credential: secret
    upstream: https://tls.test
    upstream_ca_file: {ca}
",
            secret = self.secret.display(),
            ca = self.ca.display(),
            key = self.key.display(),
        )
    }
}

/// `check` and `run` on `yaml`: both exit 78 and print the same problems; returns them.
#[track_caller]
fn check_and_run_refuse(yaml: &str) -> Vec<Diagnostic> {
    let (file, out) = check(yaml);
    let text = out.combined();
    out.assert_code(EX_CONFIG);
    assert!(!text.contains(SECRET), "check printed the secret:\n{text}");
    let checked = diagnostics(&text, "tollgate.yaml");
    assert!(!checked.is_empty(), "no FILE:LINE:COL problem:\n{text}");

    let mut cmd = tollgate_tests::process::command();
    cmd.arg("run").arg("-c").arg(&file.path);
    let out = tollgate_tests::process::run_to_end(cmd);
    let text = out.combined();
    assert_eq!(out.code, Some(EX_CONFIG), "run must exit 78:\n{text}");
    assert!(!text.contains(SECRET), "run printed the secret:\n{text}");
    assert_eq!(
        diagnostics(&text, "tollgate.yaml"),
        checked,
        "run and check must report the same problems"
    );
    checked
}

/// Exactly one problem, on the line of `key_line`, at the key's column, naming `key` and
/// containing `needle`.
#[track_caller]
fn one_at_key(diags: &[Diagnostic], yaml: &str, key_line: &str, key: &str, needle: &str) {
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    let line = line_of(yaml, key_line);
    let col = yaml
        .lines()
        .nth(line - 1)
        .expect("line")
        .find(key)
        .expect("key")
        + 1;
    assert_eq!((d.line, d.column), (line, col), "{d:?}");
    assert!(d.message.contains(key), "{d:?}");
    assert!(d.message.contains(needle), "expected {needle:?}: {d:?}");
}

#[test]
fn usable_files_pass_check() {
    let f = Files::new();
    let (_file, out) = check(&f.yaml());
    out.assert_code(0);
}

#[test]
fn a_missing_client_secret_file_is_refused_at_its_key() {
    let f = Files::new();
    let gone = f.path("no-such-secret");
    let yaml = f.yaml().replace(&f.secret.display().to_string(), &gone);
    let d = check_and_run_refuse(&yaml);
    one_at_key(
        &d,
        &yaml,
        "client_secret_file:",
        "client_secret_file",
        &gone,
    );
}

#[test]
fn an_empty_client_secret_file_is_refused() {
    let f = Files::new();
    std::fs::write(&f.secret, "\n").expect("write");
    let yaml = f.yaml();
    let d = check_and_run_refuse(&yaml);
    one_at_key(
        &d,
        &yaml,
        "client_secret_file:",
        "client_secret_file",
        "is empty",
    );
}

#[test]
fn a_private_key_file_that_is_not_pem_is_refused_without_echoing_it() {
    let f = Files::new();
    // The file holds a secret-looking string: the problem must not quote it.
    std::fs::write(&f.key, format!("{SECRET}\n")).expect("write");
    let yaml = f.yaml();
    let d = check_and_run_refuse(&yaml);
    one_at_key(&d, &yaml, "private_key_file:", "private_key_file", "PEM");
}

#[test]
fn a_missing_credential_ca_file_is_refused_at_its_key() {
    let f = Files::new();
    let gone = f.path("no-such-ca.pem");
    // Only the credential's ca_file (the route keeps the good one).
    let yaml = f.yaml().replacen(
        &format!("ca_file: {}", f.ca.display()),
        &format!("ca_file: {gone}"),
        1,
    );
    let d = check_and_run_refuse(&yaml);
    one_at_key(&d, &yaml, "    ca_file:", "ca_file", &gone);
}

#[test]
fn a_bad_upstream_ca_file_is_refused_with_its_position() {
    let f = Files::new();
    let not_pem = f.path("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let yaml = f.yaml().replace(
        &format!("upstream_ca_file: {}", f.ca.display()),
        &format!("upstream_ca_file: {not_pem}"),
    );
    let d = check_and_run_refuse(&yaml);
    one_at_key(
        &d,
        &yaml,
        "upstream_ca_file:",
        "upstream_ca_file",
        "no certificate",
    );
}

#[test]
fn file_problems_unknown_keys_and_semantic_problems_come_in_one_pass() {
    let f = Files::new();
    let gone = f.path("no-such-secret");
    let yaml = format!(
        "{}  - name: typo
    match: {{ hosts: [typo.test] }}
    acton: pass
  - name: ghost
    match: {{ hosts: [ghost.test] }}
    action: inject
    credential: nosuch
",
        f.yaml().replace(&f.secret.display().to_string(), &gone)
    );
    let d = check_and_run_refuse(&yaml);
    let lines: Vec<usize> = d.iter().map(|d| d.line).collect();
    assert_eq!(
        lines,
        [
            line_of(&yaml, "client_secret_file:"),
            line_of(&yaml, "- name: typo"),
            line_of(&yaml, "acton:"),
            line_of(&yaml, "credential: nosuch"),
        ],
        "{d:#?}"
    );
    assert!(d[0].message.contains(&gone), "{d:#?}");
    assert!(d[1].message.contains("missing `action`"), "{d:#?}");
    assert!(d[2].message.contains("unknown field `acton`"), "{d:#?}");
    assert!(d[3].message.contains("nosuch"), "{d:#?}");
}

// ------------------------------------------------------------ check --format json

fn check_json(yaml: &str) -> (i32, serde_json::Value) {
    let file = tollgate_tests::ConfigFile::new(yaml);
    let mut cmd = tollgate_tests::process::command();
    cmd.arg("check")
        .arg("-c")
        .arg(&file.path)
        .arg("--format")
        .arg("json");
    let out = tollgate_tests::process::run_to_end(cmd);
    assert!(!out.combined().contains(SECRET), "{}", out.combined());
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", out.stdout));
    (out.code.expect("exit code"), v)
}

#[test]
fn check_json_reports_ok_with_a_summary() {
    let (code, v) = check_json(&base(""));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v:#}");
    assert_eq!(
        v["summary"],
        serde_json::json!({"problems": 0, "files": "checked", "routes": 1, "credentials": 1}),
        "{v:#}"
    );
    assert!(v["file"].as_str().expect("file").ends_with("tollgate.yaml"));
}

#[test]
fn check_json_lists_every_problem_with_its_position() {
    let yaml = base(
        "  - name: typo
    match: { hosts: [typo.test] }
    acton: pass
",
    );
    let (code, v) = check_json(&yaml);
    assert_eq!(code, EX_CONFIG, "{v:#}");
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 2, "{v:#}");
    assert_eq!(v["summary"]["problems"], 2);
    assert_eq!(v["summary"]["routes"], serde_json::Value::Null);
    let p = &problems[1];
    assert!(p["file"].as_str().expect("file").ends_with("tollgate.yaml"));
    assert_eq!(p["line"], line_of(&yaml, "acton:"));
    assert_eq!(p["column"], 5);
    assert!(p["message"].as_str().expect("message").contains("acton"));
    let keys: Vec<&str> = p
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["column", "file", "line", "message"]);
}

#[test]
fn skip_files_validates_the_config_alone() {
    // For a CI machine without the secrets: the same file passes with --skip-files, and
    // still fails without it (and `run` always opens the files).
    let f = Files::new();
    let gone = f.path("no-such-secret");
    let yaml = f.yaml().replace(&f.secret.display().to_string(), &gone);
    let file = tollgate_tests::ConfigFile::new(&yaml);
    let mut cmd = tollgate_tests::process::command();
    cmd.arg("check")
        .arg("-c")
        .arg(&file.path)
        .arg("--skip-files");
    let out = tollgate_tests::process::run_to_end(cmd);
    out.assert_code(0);
    assert!(out.stdout.contains("were not opened"), "{}", out.stdout);
    let mut cmd = tollgate_tests::process::command();
    cmd.args(["check", "--skip-files", "--format", "json", "-c"])
        .arg(&file.path);
    let out = tollgate_tests::process::run_to_end(cmd);
    out.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["summary"]["files"], "skipped", "{v:#}");
    check_file(&file.path, &[]).assert_code(EX_CONFIG);
    // A problem in the config itself is still one.
    let yaml = format!("{yaml}  - name: tls\n    match: {{ hosts: [x.test] }}\n    action: pass\n");
    let file = tollgate_tests::ConfigFile::new(&yaml);
    let mut cmd = tollgate_tests::process::command();
    cmd.arg("check")
        .arg("-c")
        .arg(&file.path)
        .arg("--skip-files");
    let out = tollgate_tests::process::run_to_end(cmd);
    out.assert_code(EX_CONFIG);
    assert!(
        out.stdout.contains("duplicate route name"),
        "{}",
        out.stdout
    );
}

// ------------------------------------------- the files of callers, interception, providers

/// A config naming the files of the newer keys: a service account key, a static value,
/// two client secrets, the callers' JWKS and htpasswd files, an interception CA made by
/// `tollgate ca init` and the token store's Redis password and encryption keys. All
/// usable; a test breaks some.
struct KindFiles {
    dir: tempfile::TempDir,
}

impl KindFiles {
    fn new() -> KindFiles {
        use tollgate_tests::callers::{htpasswd_line, jwks, Alg, SigningKey};
        let dir = tempdir();
        let f = KindFiles { dir };
        f.write("sa.json", &Self::service_account(|_| {}));
        f.write("value", &format!("{SECRET}\n"));
        f.write("secret", &format!("{SECRET}\n"));
        f.write("previous", &format!("{SECRET}-old\n"));
        f.write("jwks.json", &jwks(&[&SigningKey::new(Alg::Es256, "k1")]));
        f.write("htpasswd", &format!("{}\n", htpasswd_line("batch", "pw")));
        f.write("redis-password", &format!("{SECRET}\n"));
        f.write("key1", &"ab".repeat(32));
        f.write("key2", &"cd".repeat(32));
        let mut cmd = tollgate_tests::process::command();
        cmd.args(["ca", "init", "--out"])
            .arg(f.dir.path().join("ca"));
        tollgate_tests::process::run_to_end(cmd).assert_code(0);
        f
    }

    /// A Google service account key file, changed by `mutate`.
    fn service_account(
        mutate: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> String {
        let key = std::fs::read_to_string(tollgate_tests::providers::client_key()).expect("key");
        let mut v = serde_json::json!({
            "type": "service_account",
            "private_key_id": "k1",
            "private_key": key,
            "client_email": "egress@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        mutate(v.as_object_mut().expect("object"));
        v.to_string()
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write");
    }

    fn yaml(&self) -> String {
        let p = |n| self.path(n);
        format!(
            "allow_private_networks: true
credentials:
  gcp:
    grant: jwt_bearer
    service_account_file: {sa}
    scopes: [https://www.googleapis.com/auth/cloud-platform]
  api:
    kind: static
    value_file: {value}
  rotating:
    token_url: http://127.0.0.1:9/token
    client_id: r
    client_secret_files: [{secret}, {previous}]
callers:
  jwt:
    issuer: https://issuer.test
    audiences: [tollgate]
    jwks_file: {jwks}
  basic:
    htpasswd_file: {htpasswd}
interception:
  ca_cert_file: {ca_crt}
  ca_key_file: {ca_key}
routes:
  - name: api
    match: {{ hosts: [api.test] }}
    action: inject
    credential: api
    connect: intercept
token_store:
  redis:
    url: redis://127.0.0.1:9
    password_file: {redis_password}
  encryption_key_files: [{key1}, {key2}]
",
            redis_password = p("redis-password"),
            key1 = p("key1"),
            key2 = p("key2"),
            sa = p("sa.json"),
            value = p("value"),
            secret = p("secret"),
            previous = p("previous"),
            jwks = p("jwks.json"),
            htpasswd = p("htpasswd"),
            ca_crt = p("ca/ca.crt"),
            ca_key = p("ca/ca.key"),
        )
    }
}

/// `(line, column)` of `key:` on the first line holding it.
fn key_at(yaml: &str, key: &str) -> (usize, usize) {
    let needle = format!("{key}:");
    let line = line_of(yaml, &needle);
    let col = yaml
        .lines()
        .nth(line - 1)
        .and_then(|l| l.find(&needle))
        .expect("key")
        + 1;
    (line, col)
}

#[test]
fn the_files_of_callers_interception_and_service_accounts_pass_when_usable() {
    let f = KindFiles::new();
    let (_file, out) = check(&f.yaml());
    out.assert_code(0);
    assert!(
        out.stdout.contains("ok (1 route, 3 credentials)"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_missing_jwks_file_a_bad_htpasswd_a_missing_ca_key_a_bad_service_account_and_a_repeated_store_key_come_in_one_pass(
) {
    let f = KindFiles::new();
    std::fs::remove_file(f.dir.path().join("jwks.json")).expect("rm");
    f.write("htpasswd", "legacy:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    std::fs::remove_file(f.dir.path().join("ca/ca.key")).expect("rm");
    f.write(
        "sa.json",
        &KindFiles::service_account(|m| drop(m.remove("client_email"))),
    );
    f.write("value", "two\nlines\n");
    std::fs::remove_file(f.dir.path().join("previous")).expect("rm");
    std::fs::remove_file(f.dir.path().join("redis-password")).expect("rm");
    f.write("key2", &"ab".repeat(32));
    // And an unknown key and a semantic problem in the same file.
    let yaml = f.yaml().replace(
        "token_store:\n",
        "    colour: red\n  - name: api\n    match: { hosts: [b.test] }\n    action: pass\ntoken_store:\n",
    );
    let d = check_and_run_refuse(&yaml);
    let got: Vec<(usize, usize, &str)> = d
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    let previous_col = yaml
        .lines()
        .nth(line_of(&yaml, "client_secret_files:") - 1)
        .and_then(|l| l.find(&f.path("previous")))
        .expect("previous")
        + 1;
    let want: Vec<((usize, usize), String)> = vec![
        (
            key_at(&yaml, "service_account_file"),
            format!(
                "credentials.gcp.service_account_file: {}: lacks `client_email`",
                f.path("sa.json")
            ),
        ),
        (
            key_at(&yaml, "value_file"),
            format!(
                "credentials.api.value_file: {}: holds characters not allowed",
                f.path("value")
            ),
        ),
        (
            (line_of(&yaml, "client_secret_files:"), previous_col),
            format!(
                "credentials.rotating.client_secret_files[1]: {}: ",
                f.path("previous")
            ),
        ),
        (
            key_at(&yaml, "jwks_file"),
            format!("callers.jwt.jwks_file: {}: ", f.path("jwks.json")),
        ),
        (
            key_at(&yaml, "htpasswd_file"),
            format!(
                "callers.basic.htpasswd_file: {}: line 1: user \"legacy\": SHA-1",
                f.path("htpasswd")
            ),
        ),
        (
            key_at(&yaml, "ca_key_file"),
            format!(
                "interception.ca_key_file: cannot read {}",
                f.path("ca/ca.key")
            ),
        ),
        (
            key_at(&yaml, "colour"),
            "routes[0]: unknown field `colour`".to_owned(),
        ),
    ];
    // After the duplicate route name (in file order): the token store's files.
    let key2_line = line_of(&yaml, "encryption_key_files:");
    let key2_col = yaml
        .lines()
        .nth(key2_line - 1)
        .and_then(|l| l.find(&f.path("key2")))
        .expect("key2")
        + 1;
    let store: Vec<((usize, usize), String)> = vec![
        (
            key_at(&yaml, "password_file"),
            format!("token_store.redis.password_file: {}: ", f.path("redis-password")),
        ),
        (
            (key2_line, key2_col),
            format!(
                "token_store.encryption_key_files[1]: {}: holds the same key as encryption_key_files[0] {}",
                f.path("key2"),
                f.path("key1")
            ),
        ),
    ];
    // The second route's name: the last `- name: api` line.
    let dup_line = yaml
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "  - name: api")
        .map(|(i, _)| i + 1)
        .last()
        .expect("dup");
    assert_eq!(got.len(), want.len() + 1 + store.len(), "{d:#?}");
    for (g, (at, msg)) in got.iter().zip(&want) {
        assert_eq!((g.0, g.1), *at, "{msg}: {d:#?}");
        assert!(
            g.2.starts_with(msg.as_str()),
            "expected {msg:?}, got {:?}",
            g.2
        );
    }
    let dup = &got[want.len()];
    assert_eq!(dup.0, dup_line, "{d:#?}");
    assert!(dup.2.contains("duplicate route name"), "{d:#?}");
    for (g, (at, msg)) in got[want.len() + 1..].iter().zip(&store) {
        assert_eq!((g.0, g.1), *at, "{msg}: {d:#?}");
        assert!(
            g.2.starts_with(msg.as_str()),
            "expected {msg:?}, got {:?}",
            g.2
        );
    }
    // Nothing quoted from the files (the value file held the secret).
    for d in &d {
        assert!(!d.message.contains("lines"), "{d:?}");
    }
}
