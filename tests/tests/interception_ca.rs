//! The interception CA through the real binary: `tollgate ca init` (files, modes, and the
//! certificate as `openssl x509 -text` shows it, with and without `--for-config` name
//! constraints), `tollgate check` and `tollgate run` refusing each kind of bad CA with
//! FILE:LINE:COL at the key naming the file, and a running proxy re-reading a rotated CA.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};
use tollgate_tests::process::{check_file, command, diagnostics, run_to_end, CmdOutput};
use tollgate_tests::{tempdir, Launch, Tollgate};

const EX_CONFIG: i32 = 78;

/// The config of these tests: an intercepting route for the billing hosts (lines 1-2 are
/// the `interception` keys when `ca` is given).
fn config(ca: Option<(&Path, &Path)>, hosts: &str) -> String {
    let interception = ca.map_or(String::new(), |(c, k)| {
        format!(
            "interception:\n  ca_cert_file: {}\n  ca_key_file: {}\n",
            c.display(),
            k.display()
        )
    });
    format!(
        "{interception}credentials:
  billing:
    token_url: https://idp.example.com/token
    client_id: billing
    client_secret: not-used-here
routes:
  - name: billing
    match: {{ hosts: [{hosts}] }}
    action: inject
    credential: billing
    connect: intercept
  - name: github
    match: {{ hosts: [github.com] }}
    action: pass
"
    )
}

const BILLING: &str = "api.billing.example.com, \"*.billing.example.com\"";

fn ca_init(args: &[&str]) -> CmdOutput {
    let mut cmd = command();
    cmd.args(["ca", "init"]).args(args);
    run_to_end(cmd)
}

fn openssl_text(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each line trimmed, so expectations need not copy openssl's indentation.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn ca_init_writes_a_p256_ca_with_safe_modes_and_never_overwrites() {
    let dir = tempdir();
    let out = dir.path().join("ca");
    let o = ca_init(&["--out", out.to_str().expect("utf-8")]);
    o.assert_code(0);
    let (cert, key) = (out.join("ca.crt"), out.join("ca.key"));
    assert_eq!(mode(&cert), 0o644);
    assert_eq!(mode(&key), 0o600);
    assert!(o.stdout.contains("no name constraints"), "{}", o.stdout);
    assert!(
        o.stdout
            .contains(&format!("ca_cert_file: {}", cert.display())),
        "{}",
        o.stdout
    );
    let key_pem = std::fs::read_to_string(&key).expect("key");
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!o
        .combined()
        .contains(key_pem.lines().nth(1).expect("a key line")));
    let text = openssl_text(&cert);
    for want in [
        "Public Key Algorithm: id-ecPublicKey",
        "NIST CURVE: P-256",
        "X509v3 Basic Constraints: critical\nCA:TRUE, pathlen:0",
        "X509v3 Key Usage: critical\nCertificate Sign, CRL Sign",
        "Subject: O = tollgate, CN = tollgate interception CA",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("Name Constraints"), "{text}");
    // The key is the certificate's, in openssl's eyes too.
    let pubkey = |args: &[&str], file: &Path| {
        let o = Command::new("openssl")
            .args(args)
            .arg(file)
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(
        pubkey(&["x509", "-noout", "-pubkey", "-in"], &cert),
        pubkey(&["pkey", "-pubout", "-in"], &key)
    );

    // A second run refuses and leaves both files alone; --force replaces them.
    let again = ca_init(&["--out", out.to_str().expect("utf-8")]);
    assert_eq!(again.code, Some(1), "{}", again.combined());
    assert!(
        again.stderr.contains("exists; pass --force"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read_to_string(&key).expect("key"), key_pem);
    ca_init(&["--out", out.to_str().expect("utf-8"), "--force"]).assert_code(0);
    assert_ne!(std::fs::read_to_string(&key).expect("key"), key_pem);
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn ca_init_for_config_constrains_the_ca_to_the_intercepted_hosts() {
    let dir = tempdir();
    let cfg = dir.path().join("tollgate.yaml");
    std::fs::write(&cfg, config(None, &format!("{BILLING}, 10.1.2.3"))).expect("write");
    let out = dir.path().join("ca");
    let o = ca_init(&[
        "--out",
        out.to_str().expect("utf-8"),
        "--for-config",
        cfg.to_str().expect("utf-8"),
    ]);
    o.assert_code(0);
    assert!(
        o.stdout.contains("permitted DNS billing.example.com"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("permitted IP 10.1.2.3/32"),
        "{}",
        o.stdout
    );
    let text = openssl_text(&out.join("ca.crt"));
    assert!(
        text.contains("X509v3 Name Constraints: critical\nPermitted:\nDNS:billing.example.com\nIP:10.1.2.3/255.255.255.255"),
        "{text}"
    );
    // github.com (a pass route) is not in it.
    assert!(!text.contains("github"), "{text}");

    // No IP host: every address is excluded, or IPs would be unconstrained.
    std::fs::write(&cfg, config(None, BILLING)).expect("write");
    let out2 = dir.path().join("ca2");
    ca_init(&[
        "--out",
        out2.to_str().expect("utf-8"),
        "--for-config",
        cfg.to_str().expect("utf-8"),
    ])
    .assert_code(0);
    let text = openssl_text(&out2.join("ca.crt"));
    assert!(
        text.contains("Excluded:\nIP:0.0.0.0/0.0.0.0\nIP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0"),
        "{text}"
    );

    // The constrained CA serves this config, and is refused for a host outside it.
    std::fs::write(
        &cfg,
        config(Some((&out2.join("ca.crt"), &out2.join("ca.key"))), BILLING),
    )
    .expect("write");
    check_file(&cfg, &[]).assert_code(0);
    std::fs::write(
        &cfg,
        config(
            Some((&out2.join("ca.crt"), &out2.join("ca.key"))),
            &format!("{BILLING}, api.partner.example"),
        ),
    )
    .expect("write");
    let o = check_file(&cfg, &[]);
    o.assert_code(EX_CONFIG);
    let d = diagnostics(&o.stdout, "tollgate.yaml");
    assert_eq!(d.len(), 1, "{}", o.combined());
    assert_eq!(
        (d[0].line, d[0].column),
        (14, 5),
        "at routes[0].connect: {}",
        o.stdout
    );
    assert!(
        d[0].message.contains("match.hosts[2]")
            && d[0]
                .message
                .contains("api.partner.example is outside the permitted DNS subtrees"),
        "{}",
        o.stdout
    );

    // A config with nothing to intercept makes no CA.
    std::fs::write(
        &cfg,
        "routes:\n  - name: g\n    match: { hosts: [github.com] }\n    action: pass\n",
    )
    .expect("write");
    let o = ca_init(&[
        "--out",
        dir.path().join("ca3").to_str().expect("utf-8"),
        "--for-config",
        cfg.to_str().expect("utf-8"),
    ]);
    o.assert_code(EX_CONFIG);
    assert!(
        o.stderr.contains("no route has `connect: intercept`"),
        "{}",
        o.stderr
    );
    assert!(!dir.path().join("ca3").exists());
}

// ---------------------------------------------------------------- bad CAs

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    /// Another key, not the certificate's.
    other_key: PathBuf,
    cfg: PathBuf,
}

fn make(params: impl FnOnce(&mut CertificateParams)) -> Files {
    let dir = tempdir();
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "bad CA test");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let now = SystemTime::now();
    p.not_before = (now - Duration::from_secs(3600)).into();
    p.not_after = (now + Duration::from_secs(86400)).into();
    params(&mut p);
    let key = KeyPair::generate().expect("key");
    let cert = p.self_signed(&key).expect("sign");
    let files = Files {
        cert: dir.path().join("ca.crt"),
        key: dir.path().join("ca.key"),
        other_key: dir.path().join("other.key"),
        cfg: dir.path().join("tollgate.yaml"),
        _dir: dir,
    };
    std::fs::write(&files.cert, cert.pem()).expect("write");
    std::fs::write(&files.key, key.serialize_pem()).expect("write");
    std::fs::write(
        &files.other_key,
        KeyPair::generate().expect("key").serialize_pem(),
    )
    .expect("write");
    files
}

/// `tollgate check` on the config naming `cert` and `key`: exit 78 and one problem at
/// `line` (1: ca_cert_file, 2: ca_key_file), column 3, mentioning `needle`. The key
/// file's content never shows.
#[track_caller]
fn refused(f: &Files, cert: &Path, key: &Path, line: usize, needle: &str) {
    std::fs::write(&f.cfg, config(Some((cert, key)), BILLING)).expect("write");
    let o = check_file(&f.cfg, &[]);
    o.assert_code(EX_CONFIG);
    let d = diagnostics(&o.stdout, "tollgate.yaml");
    assert_eq!(d.len(), 1, "{}", o.combined());
    assert_eq!((d[0].line, d[0].column), (line + 1, 3), "{}", o.combined());
    let key_name = if line == 1 {
        "ca_cert_file"
    } else {
        "ca_key_file"
    };
    assert!(
        d[0].message
            .starts_with(&format!("interception.{key_name}: ")),
        "{}",
        o.stdout
    );
    assert!(
        d[0].message.contains(needle),
        "expected {needle:?} in {}",
        o.stdout
    );
    for k in [&f.key, &f.other_key] {
        let pem = std::fs::read_to_string(k).expect("key");
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!o.combined().contains(line), "check printed key material");
        }
    }
}

#[test]
fn check_names_what_is_wrong_with_each_bad_ca() {
    let good = make(|_| {});
    std::fs::write(&good.cfg, config(Some((&good.cert, &good.key)), BILLING)).expect("write");
    check_file(&good.cfg, &[]).assert_code(0);

    refused(
        &good,
        &good.cert.with_extension("missing"),
        &good.key,
        1,
        "cannot read",
    );
    refused(
        &good,
        &good.cert,
        &good.key.with_extension("missing"),
        2,
        "cannot read",
    );
    let garbage = good.cfg.with_file_name("garbage.pem");
    std::fs::write(&garbage, "hello\n").expect("write");
    refused(&good, &garbage, &good.key, 1, "holds no PEM certificate");
    refused(&good, &good.cert, &garbage, 2, "holds no PEM private key");
    // Swapped: each file is wrong at its own key, and both are reported in one pass.
    std::fs::write(&good.cfg, config(Some((&good.key, &good.cert)), BILLING)).expect("write");
    let o = check_file(&good.cfg, &[]);
    o.assert_code(EX_CONFIG);
    let d = diagnostics(&o.stdout, "tollgate.yaml");
    assert_eq!(d.len(), 2, "{}", o.combined());
    assert_eq!((d[0].line, d[0].column), (2, 3), "{}", o.combined());
    assert!(
        d[0].message.starts_with("interception.ca_cert_file: "),
        "{}",
        o.stdout
    );
    assert!(d[0].message.contains("is it the key file"), "{}", o.stdout);
    assert_eq!((d[1].line, d[1].column), (3, 3), "{}", o.combined());
    assert!(
        d[1].message.starts_with("interception.ca_key_file: "),
        "{}",
        o.stdout
    );
    assert!(
        d[1].message.contains("is it the certificate file"),
        "{}",
        o.stdout
    );
    let pem = std::fs::read_to_string(&good.key).expect("key");
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!o.combined().contains(line), "check printed key material");
    }
    refused(
        &good,
        &good.cert,
        &good.other_key,
        2,
        "is not the private key of",
    );

    let leaf = make(|p| p.is_ca = IsCa::ExplicitNoCa);
    refused(&leaf, &leaf.cert, &leaf.key, 1, "is not a CA certificate");
    let no_sign = make(|p| p.key_usages = vec![KeyUsagePurpose::DigitalSignature]);
    refused(
        &no_sign,
        &no_sign.cert,
        &no_sign.key,
        1,
        "lacks keyCertSign",
    );
    let expired = make(|p| {
        let now = SystemTime::now();
        p.not_before = (now - Duration::from_secs(10 * 86400)).into();
        p.not_after = (now - Duration::from_secs(86400)).into();
    });
    refused(&expired, &expired.cert, &expired.key, 1, "has expired");
    let future = make(|p| {
        let now = SystemTime::now();
        p.not_before = (now + Duration::from_secs(86400)).into();
        p.not_after = (now + Duration::from_secs(10 * 86400)).into();
    });
    refused(&future, &future.cert, &future.key, 1, "is not valid yet");
}

#[test]
fn check_accepts_an_openssl_made_ca_with_a_sec1_key() {
    // What `openssl ecparam` and cert-manager write: `BEGIN EC PRIVATE KEY`.
    let dir = tempdir();
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "tls.key",
    ]);
    run(&[
        "req",
        "-x509",
        "-key",
        "tls.key",
        "-out",
        "tls.crt",
        "-days",
        "30",
        "-subj",
        "/O=Example/CN=Example egress CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    assert!(std::fs::read_to_string(dir.path().join("tls.key"))
        .expect("key")
        .starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let cfg = dir.path().join("tollgate.yaml");
    std::fs::write(
        &cfg,
        config(
            Some((&dir.path().join("tls.crt"), &dir.path().join("tls.key"))),
            BILLING,
        ),
    )
    .expect("write");
    check_file(&cfg, &[]).assert_code(0);
}

#[test]
fn intercept_without_an_interception_block_is_valid() {
    let dir = tempdir();
    let cfg = dir.path().join("tollgate.yaml");
    std::fs::write(&cfg, config(None, BILLING)).expect("write");
    check_file(&cfg, &[]).assert_code(0);
}

#[test]
fn run_refuses_a_bad_ca_at_start() {
    let bad = make(|p| p.is_ca = IsCa::ExplicitNoCa);
    std::fs::write(&bad.cfg, config(Some((&bad.cert, &bad.key)), BILLING)).expect("write");
    let mut cmd = command();
    cmd.arg("run").arg("-c").arg(&bad.cfg);
    let o = run_to_end(cmd);
    o.assert_code(EX_CONFIG);
    assert!(
        o.stdout.contains("interception.ca_cert_file: ")
            && o.stdout.contains("is not a CA certificate"),
        "{}",
        o.combined()
    );
}

// ---------------------------------------------------------------- reload

/// `tollgate_interception_ca_expiry_seconds` once it differs from `not`, within 10 s.
async fn expiry_other_than(tg: &Tollgate, not: f64) -> f64 {
    for _ in 0..100 {
        let v = tg
            .scrape_once()
            .await
            .sum("tollgate_interception_ca_expiry_seconds", &[]);
        if v != not {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    not
}

#[tokio::test]
async fn a_rotated_ca_is_reloaded_and_a_bad_one_rejected() {
    let dir = tempdir();
    let (cert, key) = (dir.path().join("ca/ca.crt"), dir.path().join("ca/ca.key"));
    ca_init(&[
        "--out",
        dir.path().join("ca").to_str().expect("utf-8"),
        "--lifetime",
        "30d",
    ])
    .assert_code(0);
    let body = config(Some((&cert, &key)), BILLING);
    let tg = Tollgate::launch(Launch::new().dir(dir), &body).await;
    let first = expiry_other_than(&tg, 0.0).await;
    let in_30d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs_f64()
        + 30.0 * 86400.0;
    assert!(
        (first - in_30d).abs() < 120.0,
        "expiry {first}, expected about {in_30d}"
    );

    // A new CA (another lifetime) written over the files: picked up without a restart.
    let staging = tempdir();
    ca_init(&[
        "--out",
        staging.path().to_str().expect("utf-8"),
        "--lifetime",
        "60d",
    ])
    .assert_code(0);
    std::fs::copy(staging.path().join("ca.key"), &key).expect("copy key");
    std::fs::copy(staging.path().join("ca.crt"), &cert).expect("copy cert");
    let second = expiry_other_than(&tg, first).await;
    assert!(
        (second - first - 30.0 * 86400.0).abs() < 120.0,
        "expiry {second} after {first}"
    );

    // A certificate that no longer matches the key: rejected, the CA in use stays.
    let other = tempdir();
    ca_init(&["--out", other.path().to_str().expect("utf-8")]).assert_code(0);
    std::fs::copy(other.path().join("ca.crt"), &cert).expect("copy cert");
    let mut rejected = 0.0;
    for _ in 0..100 {
        rejected = tg
            .scrape_once()
            .await
            .sum("tollgate_config_reloads_total", &[("outcome", "rejected")]);
        if rejected > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rejected >= 1.0,
        "the bad CA was not rejected:\n{}",
        tg.output()
    );
    let now = tg
        .scrape_once()
        .await
        .sum("tollgate_interception_ca_expiry_seconds", &[]);
    assert_eq!(now, second);
    assert!(
        tg.output().contains("is not the private key of"),
        "{}",
        tg.output()
    );
}
