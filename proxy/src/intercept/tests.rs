//! The interception module end to end, without the data path: loading and refusing CAs,
//! the leaves they issue (parsed with x509-parser, verified with rustls/webpki), name
//! constraints agreeing with webpki, the cache bound, and real TLS handshakes (rustls
//! client over a tokio duplex; curl against a loopback server using the same config).

use super::authority::Authority;
use super::check::prepare_at;
use super::constraints::LeafName;
use super::test_ca::{client_config, constraints, shown, Dir, Spec, TestCa};
use super::*;
use rcgen::{ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::extensions::GeneralName;

const DAY: Duration = Duration::from_secs(86400);
const H: Duration = Duration::from_secs(3600);

fn load(ca: &TestCa) -> Result<Authority, CaError> {
    Authority::load(&ca.cert, &ca.key, DAY, SystemTime::now())
}

#[track_caller]
fn cert_error(ca: &TestCa, needle: &str) {
    match load(ca) {
        Err(CaError::Cert(m)) => {
            assert!(m.contains(needle), "expected {needle:?} in {m:?}");
            assert!(
                m.contains(&shown(&ca.cert)),
                "the message names the file: {m}"
            );
        }
        other => panic!("expected a certificate problem with {needle:?}, got {other:?}"),
    }
}

#[track_caller]
fn key_error(ca: &TestCa, needle: &str) {
    match load(ca) {
        Err(CaError::Key(m)) => assert!(m.contains(needle), "expected {needle:?} in {m:?}"),
        other => panic!("expected a key problem with {needle:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- loading and refusing

#[test]
fn a_good_ca_loads_and_its_debug_hides_the_key() {
    let dir = Dir::new("ca-good");
    let ca = Spec::default().write(&dir, "");
    let a = load(&ca).expect("loads");
    assert_eq!(a.subject(), "CN=tollgate test CA");
    assert!(a.constraints().is_empty());
    let key_pem = std::fs::read_to_string(&ca.key).expect("key");
    let debug = format!("{a:?}");
    assert!(debug.contains("[redacted]"), "{debug}");
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for chunk in body.as_bytes().chunks(16) {
        assert!(
            !debug.contains(std::str::from_utf8(chunk).expect("ascii")),
            "{debug}"
        );
    }
}

#[test]
fn missing_files() {
    let dir = Dir::new("ca-missing");
    let ca = Spec::default().write(&dir, "");
    let gone = TestCa {
        cert: dir.0.join("nope.crt"),
        ..Spec::default().write(&dir, "x")
    };
    cert_error(&gone, "cannot read");
    let gone = TestCa {
        key: dir.0.join("nope.key"),
        ..ca
    };
    key_error(&gone, "cannot read");
}

#[test]
fn files_that_are_not_pem() {
    let dir = Dir::new("ca-not-pem");
    let ca = Spec::default().write(&dir, "");
    let garbage = dir.write("garbage", "not a certificate\n");
    cert_error(
        &TestCa {
            cert: garbage.clone(),
            ..Spec::default().write(&dir, "a")
        },
        "holds no PEM certificate",
    );
    key_error(
        &TestCa {
            key: garbage,
            ..Spec::default().write(&dir, "b")
        },
        "holds no PEM private key",
    );
    // The two files swapped.
    cert_error(
        &TestCa {
            cert: ca.key.clone(),
            key: ca.cert.clone(),
            ..Spec::default().write(&dir, "c")
        },
        "is it the key file",
    );
    // A PEM certificate section whose body is not a certificate.
    let bogus = dir.write(
        "bogus.crt",
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    );
    cert_error(
        &TestCa {
            cert: bogus,
            ..Spec::default().write(&dir, "d")
        },
        "cannot be parsed",
    );
}

#[test]
fn certificates_that_are_not_a_usable_ca() {
    let dir = Dir::new("ca-not-ca");
    cert_error(
        &Spec {
            is_ca: IsCa::ExplicitNoCa,
            ..Spec::default()
        }
        .write(&dir, "a"),
        "is not a CA certificate (basicConstraints says CA:FALSE)",
    );
    cert_error(
        &Spec {
            is_ca: IsCa::NoCa,
            ..Spec::default()
        }
        .write(&dir, "b"),
        "is not a CA certificate (it has no basicConstraints CA:TRUE)",
    );
    cert_error(
        &Spec {
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            ..Spec::default()
        }
        .write(&dir, "c"),
        "lacks keyCertSign",
    );
    cert_error(
        &Spec {
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            ..Spec::default()
        }
        .write(&dir, "d"),
        "does not include serverAuth",
    );
}

#[test]
fn a_key_that_is_not_the_certificates() {
    let dir = Dir::new("ca-mismatch");
    let ca = Spec::default().write(&dir, "a");
    let other = Spec::default().write(&dir, "b");
    key_error(
        &TestCa {
            key: other.key,
            ..ca
        },
        "is not the private key of",
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let dir = Dir::new("ca-validity");
    let now = SystemTime::now();
    cert_error(
        &Spec {
            not_before: now - 30 * DAY,
            not_after: now - DAY,
            ..Spec::default()
        }
        .write(&dir, "a"),
        "has expired: its notAfter was",
    );
    cert_error(
        &Spec {
            not_before: now + DAY,
            not_after: now + 30 * DAY,
            ..Spec::default()
        }
        .write(&dir, "b"),
        "is not valid yet: its notBefore is",
    );
}

#[test]
fn name_constraints_tollgate_cannot_honour() {
    let dir = Dir::new("ca-dirname");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "Example");
    cert_error(
        &Spec {
            constraints: Some(rcgen::NameConstraints {
                permitted_subtrees: vec![rcgen::GeneralSubtree::DirectoryName(dn)],
                excluded_subtrees: vec![],
            }),
            ..Spec::default()
        }
        .write(&dir, "a"),
        "directoryName name constraint",
    );
}

/// Runs openssl (as operators make CAs) in `dir`; panics with its stderr on failure.
fn openssl(dir: &Dir, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(&dir.0)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl_ca(dir: &Dir, key_args: &[&str], subject: &str) -> TestCa {
    openssl(dir, key_args);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-key",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "2",
            "-subj",
            subject,
            "-multivalue-rdn",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let pem = std::fs::read_to_string(dir.0.join("c.pem")).expect("cert");
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).expect("pem");
    TestCa {
        cert: dir.0.join("c.pem"),
        key: dir.0.join("k.pem"),
        der,
    }
}

#[test]
fn keys_in_every_encoding_openssl_writes() {
    for (name, key_args) in [
        (
            "sec1-p256",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "k.pem",
            ][..],
        ),
        (
            "sec1-p384",
            &[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "k.pem",
            ][..],
        ),
        (
            "pkcs8-p256",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "k.pem",
            ][..],
        ),
        (
            "pkcs1-rsa",
            &["genrsa", "-traditional", "-out", "k.pem", "2048"][..],
        ),
        (
            "ed25519",
            &["genpkey", "-algorithm", "ED25519", "-out", "k.pem"][..],
        ),
    ] {
        let dir = Dir::new(name);
        let ca = openssl_ca(&dir, key_args, "/O=Example/CN=openssl test CA");
        let a = load(&ca).unwrap_or_else(|e| panic!("{name}: {e}"));
        let issued = a
            .issue(&LeafName::Dns("api.example.com".into()), SystemTime::now())
            .expect("issued");
        verify(&ca, &issued.cert, "api.example.com").unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_subject_tollgate_cannot_reproduce_is_refused() {
    // rcgen keeps one value per attribute type, so a repeated OU would come out as another
    // issuer name, which no client could chain; a multi-valued RDN it cannot write at all.
    let dir = Dir::new("subject-repeated");
    let ca = openssl_ca(
        &dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k.pem",
        ],
        "/OU=a/OU=b/CN=repeated",
    );
    cert_error(&ca, "cannot reproduce its subject name exactly");
    let dir = Dir::new("subject-multi");
    let ca = openssl_ca(
        &dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k.pem",
        ],
        "/CN=multi+O=valued",
    );
    cert_error(&ca, "multi-valued attribute");
}

#[test]
fn problems_point_at_the_key_that_names_the_file() {
    let dir = Dir::new("ca-problems");
    let good = Spec::default().write(&dir, "good-");
    let expired = Spec {
        not_before: SystemTime::now() - 30 * DAY,
        not_after: SystemTime::now() - DAY,
        ..Spec::default()
    }
    .write(&dir, "old-");
    let other = Spec::default().write(&dir, "other-");
    let yaml = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "interception:\n  ca_cert_file: {}\n  ca_key_file: {}\ncredentials:\n  c:\n    token_url: https://idp.example.com/t\n    client_id: x\n    client_secret: y\nroutes:\n  - name: r\n    match: {{ hosts: [api.example.com] }}\n    action: inject\n    credential: c\n    connect: intercept\n",
            cert.display(),
            key.display()
        )
    };
    let problems = |text: String| {
        let config = tollgate_rules::load_str("t.yaml", &text, &|_: &str| None).expect("valid");
        assert!(check(&config).len() <= 1);
        prepare_at(&config, SystemTime::now())
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert!(problems(yaml(&good.cert, &good.key)).is_empty());
    let p = problems(yaml(&expired.cert, &expired.key));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("t.yaml:2:3: interception.ca_cert_file: "),
        "{p:?}"
    );
    assert!(p[0].contains("has expired"), "{p:?}");
    let p = problems(yaml(&good.cert, &other.key));
    assert!(
        p[0].starts_with("t.yaml:3:3: interception.ca_key_file: "),
        "{p:?}"
    );
    assert!(p[0].contains("is not the private key"), "{p:?}");
}

#[test]
fn routes_the_ca_may_not_sign_for_are_refused_at_load() {
    let dir = Dir::new("ca-routes");
    let ca = Spec {
        constraints: Some(constraints(
            &["billing.example.com"],
            &[],
            &[("0.0.0.0", 0)],
        )),
        ..Spec::default()
    }
    .write(&dir, "");
    let config = |hosts: &str, connect: &str| {
        let text = format!(
            "interception:\n  ca_cert_file: {}\n  ca_key_file: {}\ncredentials:\n  c:\n    token_url: https://idp.example.com/t\n    client_id: x\n    client_secret: y\nroutes:\n  - name: r\n    match: {{ hosts: [{hosts}] }}\n    action: inject\n    credential: c\n    connect: {connect}\n",
            ca.cert.display(),
            ca.key.display()
        );
        tollgate_rules::load_str("t.yaml", &text, &|_: &str| None).expect("valid")
    };
    let ok = config(
        "api.billing.example.com, \"*.billing.example.com\"",
        "intercept",
    );
    let prepared = prepare_at(&ok, SystemTime::now()).expect("inside the constraints");
    assert!(prepared.authority().is_some());
    // Hosts outside are fine on a route that does not intercept.
    assert!(prepare_at(&config("api.other.com", "refuse"), SystemTime::now()).is_ok());
    let bad = config(
        "api.billing.example.com, api.other.com, 10.0.0.1",
        "intercept",
    );
    let p: Vec<String> = prepare_at(&bad, SystemTime::now())
        .expect_err("outside")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("t.yaml:14:5: routes[0].connect: route \"r\" intercepts match.hosts[1]"),
        "{p:?}"
    );
    assert!(
        p[0].contains("api.other.com is outside the permitted DNS subtrees (billing.example.com)"),
        "{p:?}"
    );
    assert!(
        p[1].contains("match.hosts[2]")
            && p[1].contains("10.0.0.1 is inside the excluded IP range 0.0.0.0/0"),
        "{p:?}"
    );
}

// ---------------------------------------------------------------- leaves

fn verify(ca: &TestCa, leaf: &CertificateDer<'static>, host: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).expect("root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let name = ServerName::try_from(host.to_owned()).expect("server name");
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn a_leaf_for_a_dns_name() {
    let dir = Dir::new("leaf-dns");
    let ca = Spec::default().write(&dir, "");
    let a = load(&ca).expect("loads");
    let now = SystemTime::now();
    let issued = a
        .issue(&LeafName::Dns("api.example.com".into()), now)
        .expect("issued");
    assert!(!format!("{issued:?}").contains("PRIVATE"));
    let (_, leaf) = x509_parser::parse_x509_certificate(&issued.cert).expect("parses");
    let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca.der).expect("parses");
    // SAN: that host only.
    let san = leaf
        .subject_alternative_name()
        .expect("san")
        .expect("a SAN");
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::DNSName("api.example.com")]
    );
    assert_eq!(leaf.subject().to_string(), "CN=api.example.com");
    // Key usage, EKU, not a CA.
    let ku = leaf.key_usage().expect("ku").expect("a keyUsage").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let eku = leaf
        .extended_key_usage()
        .expect("eku")
        .expect("an EKU")
        .value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!leaf.is_ca());
    // Validity: backdated an hour, lifetime as configured.
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64
    };
    assert_eq!(leaf.validity().not_before.timestamp(), secs(now - H));
    assert_eq!(leaf.validity().not_after.timestamp(), secs(now + DAY));
    // Issuer: the CA, byte for byte; AKI = the CA's SKI.
    assert_eq!(leaf.issuer().as_raw(), ca_x509.subject().as_raw());
    // ECDSA P-256, a 16-byte random serial.
    assert_eq!(
        leaf.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    assert_eq!(
        leaf.public_key()
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok()),
        Some(x509_parser::oid_registry::OID_EC_P256)
    );
    assert_eq!(leaf.raw_serial().len(), 16);
    let again = a
        .issue(&LeafName::Dns("api.example.com".into()), now)
        .expect("issued");
    let (_, leaf2) = x509_parser::parse_x509_certificate(&again.cert).expect("parses");
    assert_ne!(leaf.raw_serial(), leaf2.raw_serial());
    // The chain verifies with rustls/webpki against the CA, for that host only.
    verify(&ca, &issued.cert, "api.example.com").expect("verifies");
    assert!(verify(&ca, &issued.cert, "other.example.com").is_err());
}

#[test]
fn a_leaf_for_an_ip_address() {
    let dir = Dir::new("leaf-ip");
    let ca = Spec::default().write(&dir, "");
    let a = load(&ca).expect("loads");
    for host in ["10.1.2.3", "[2001:db8::1]"] {
        let name = LeafName::parse(host).expect("a name");
        let issued = a.issue(&name, SystemTime::now()).expect("issued");
        let (_, leaf) = x509_parser::parse_x509_certificate(&issued.cert).expect("parses");
        let san = leaf
            .subject_alternative_name()
            .expect("san")
            .expect("a SAN");
        assert!(matches!(
            san.value.general_names.as_slice(),
            [GeneralName::IPAddress(_)]
        ));
        assert_eq!(leaf.subject().iter().count(), 0, "no CN for an address");
        verify(&ca, &issued.cert, &name.to_string()).expect("verifies");
    }
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let dir = Dir::new("leaf-capped");
    let now = SystemTime::now();
    let ca = Spec {
        not_after: now + 2 * H,
        ..Spec::default()
    }
    .write(&dir, "");
    let a = load(&ca).expect("loads");
    let issued = a
        .issue(&LeafName::Dns("api.example.com".into()), now)
        .expect("issued");
    assert_eq!(issued.validity.not_after, a.validity().not_after);
    // And none once the CA has expired.
    let err = a
        .issue(&LeafName::Dns("api.example.com".into()), now + 3 * H)
        .expect_err("expired CA");
    assert!(
        err.to_string().contains("the interception CA expired at"),
        "{err}"
    );
}

#[test]
fn name_constraints_refuse_outside_hosts_and_agree_with_webpki() {
    let dir = Dir::new("leaf-nc");
    let ca = Spec {
        constraints: Some(constraints(
            &["billing.example.com", ".partner.example"],
            &["secret.billing.example.com"],
            &[("10.0.0.0", 8)],
        )),
        ..Spec::default()
    }
    .write(&dir, "");
    let a = load(&ca).expect("loads");
    let now = SystemTime::now();
    let cases = [
        ("billing.example.com", true),
        ("api.billing.example.com", true),
        ("a.b.billing.example.com", true),
        ("secret.billing.example.com", false),
        ("x.secret.billing.example.com", false),
        ("notbilling.example.com", false),
        ("api.other.com", false),
        ("partner.example", false),
        ("api.partner.example", true),
        ("10.1.2.3", false),
        ("192.0.2.1", true),
        ("2001:db8::1", true),
    ];
    for (host, allowed) in cases {
        let name = LeafName::parse(host).expect("name");
        assert_eq!(a.may_sign(&name).is_ok(), allowed, "may_sign({host})");
        match a.issue(&name, now) {
            Ok(issued) => {
                assert!(allowed, "{host} was issued");
                verify(&ca, &issued.cert, host).unwrap_or_else(|e| panic!("{host}: {e}"));
            }
            Err(e) => {
                assert!(!allowed, "{host}: {e}");
                assert!(matches!(e, IssueError::NotPermitted(_)), "{host}: {e}");
                // What tollgate refuses, clients refuse too: force the leaf and see.
                let forced = a.sign(&name, now).expect("signed anyway");
                assert!(
                    verify(&ca, &forced.cert, host).is_err(),
                    "webpki accepted {host}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- the interceptor

fn metric(registry: &prometheus::Registry, series: &str) -> f64 {
    let mut out = String::new();
    let _ = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn interceptor_with(ca: &TestCa, capacity: usize) -> (Arc<Interceptor>, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let i = Interceptor::with_capacity(&registry, capacity).expect("interceptor");
    i.install(prepared(ca, DAY));
    (i, registry)
}

fn prepared(ca: &TestCa, lifetime: Duration) -> Prepared {
    let text = format!(
        "interception:\n  ca_cert_file: {}\n  ca_key_file: {}\n  leaf_lifetime: {}s\n",
        ca.cert.display(),
        ca.key.display(),
        lifetime.as_secs()
    );
    let config = tollgate_rules::load_str("t.yaml", &text, &|_: &str| None).expect("valid");
    prepare(&config).expect("prepared")
}

#[test]
fn the_cache_is_bounded_counts_and_renews() {
    let dir = Dir::new("cache");
    let ca = Spec::default().write(&dir, "");
    let (i, reg) = interceptor_with(&ca, 2);
    let now = SystemTime::now();
    let a1 = i.server_config_at("a.example.com", now).expect("a");
    let a2 = i.server_config_at("A.example.com.", now).expect("a again");
    assert!(Arc::ptr_eq(&a1, &a2), "same host, same config");
    i.server_config_at("b.example.com", now).expect("b");
    i.server_config_at("c.example.com", now).expect("c");
    let leaves = |o: &str| {
        metric(
            &reg,
            &format!("tollgate_interception_leaves_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(leaves("issued"), 3.0);
    assert_eq!(leaves("hit"), 1.0);
    assert_eq!(leaves("evicted"), 1.0);
    assert_eq!(metric(&reg, "tollgate_interception_leaf_cache_hosts"), 2.0);
    // a was least recently used and is gone: a new leaf.
    let a3 = i.server_config_at("a.example.com", now).expect("a");
    assert!(!Arc::ptr_eq(&a1, &a3));
    assert_eq!(leaves("issued"), 4.0);
    // Past 3/4 of its life a leaf is replaced.
    i.server_config_at("a.example.com", now + 19 * H)
        .expect("renewed");
    assert_eq!(leaves("renewed"), 1.0);
    assert!(metric(&reg, "tollgate_interception_ca_expiry_seconds") > 1.0e9);
}

#[test]
fn reinstalling_keeps_the_cache_only_for_the_same_ca() {
    let dir = Dir::new("reinstall");
    let ca = Spec::default().write(&dir, "a");
    let (i, reg) = interceptor_with(&ca, 8);
    let first = i.server_config("a.example.com").expect("a");
    i.install(prepared(&ca, DAY));
    assert!(Arc::ptr_eq(
        &first,
        &i.server_config("a.example.com").expect("a")
    ));
    i.install(prepared(&ca, 2 * DAY));
    assert!(!Arc::ptr_eq(
        &first,
        &i.server_config("a.example.com").expect("a")
    ));
    let other = Spec::default().write(&dir, "b");
    i.install(prepared(&other, 2 * DAY));
    assert_eq!(
        i.authority().map(|a| a.cert_file().to_path_buf()),
        Some(other.cert.clone())
    );
    i.install(Prepared::default());
    assert_eq!(
        i.server_config("a.example.com").err(),
        Some(LeafError::NoCa)
    );
    assert_eq!(metric(&reg, "tollgate_interception_ca_expiry_seconds"), 0.0);
}

#[test]
fn hosts_outside_the_constraints_get_no_leaf() {
    let dir = Dir::new("refused");
    let ca = Spec {
        constraints: Some(constraints(&["example.com"], &[], &[])),
        ..Spec::default()
    }
    .write(&dir, "");
    let (i, reg) = interceptor_with(&ca, 8);
    let err = i.server_config("api.other.com").expect_err("outside");
    assert!(err.to_string().contains("may not sign for it"), "{err}");
    assert_eq!(
        metric(
            &reg,
            "tollgate_interception_leaves_total{outcome=\"refused\"}"
        ),
        1.0
    );
}

/// A rustls client handshake on `io` for `host`, then one HTTP/1 exchange through the
/// server side that `serve` drives.
async fn client_exchange(
    io: tokio::io::DuplexStream,
    ca: &CertificateDer<'static>,
    sni: &str,
) -> Result<(String, Option<Vec<u8>>), std::io::Error> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca));
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut tls = connector.connect(name, io).await?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(b"GET /v2/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 256];
    let n = tls.read(&mut buf).await?;
    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), alpn))
}

async fn serve_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut accepted: Accepted<S>,
) {
    let mut buf = vec![0u8; 1024];
    let n = accepted.stream.read(&mut buf).await.expect("read request");
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let body = format!("saw {}", head.lines().next().unwrap_or(""));
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    accepted
        .stream
        .write_all(resp.as_bytes())
        .await
        .expect("write response");
    accepted.stream.shutdown().await.expect("close");
}

#[tokio::test]
async fn a_real_handshake_over_a_duplex_stream() {
    let dir = Dir::new("handshake");
    let ca = Spec::default().write(&dir, "");
    let (i, reg) = interceptor_with(&ca, 8);
    let (client, server) = tokio::io::duplex(64 * 1024);
    // What the CONNECT path does after the 200: read, classify, give the bytes back.
    let srv = {
        let i = Arc::clone(&i);
        tokio::spawn(async move {
            let mut server = server;
            let mut first = vec![0u8; 16];
            let n = server.read(&mut first).await.expect("first bytes");
            first.truncate(n);
            assert_eq!(classify(&first), FirstBytes::Tls);
            let stream = Prefixed::new(first, server);
            let accepted = i
                .accept("billing", "api.example.com", stream, HANDSHAKE_TIMEOUT)
                .await
                .expect("accepted");
            assert_eq!(accepted.sni, SniCheck::Matches);
            serve_one(accepted).await;
        })
    };
    let (resp, alpn) = client_exchange(client, &ca.der, "api.example.com")
        .await
        .expect("exchange");
    srv.await.expect("server");
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(resp.ends_with("saw GET /v2/x HTTP/1.1"), "{resp}");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        metric(
            &reg,
            "tollgate_interception_handshakes_total{outcome=\"ok\",route=\"billing\"}"
        ),
        1.0
    );
}

/// Accepts any certificate: a client that does not check names (the data path must
/// still answer its requests with 421 when its SNI names another host).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test]
async fn the_sni_is_reported_so_a_mismatch_gets_421() {
    let dir = Dir::new("sni");
    let ca = Spec::default().write(&dir, "");
    let (i, _reg) = interceptor_with(&ca, 8);
    // A client that checks names refuses the CONNECT host's leaf for another SNI.
    let (client, server) = tokio::io::duplex(64 * 1024);
    let srv = {
        let i = Arc::clone(&i);
        tokio::spawn(async move {
            i.accept("billing", "api.example.com", server, HANDSHAKE_TIMEOUT)
                .await
        })
    };
    let err = client_exchange(client, &ca.der, "evil.example.com")
        .await
        .expect_err("name mismatch");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    assert!(matches!(
        srv.await.expect("task"),
        Err(AcceptError::Handshake(HandshakeFailure::Untrusted(_)))
    ));
    // One that does not check completes the handshake; the server learns the SNI.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        .with_no_client_auth();
    let (client, server) = tokio::io::duplex(64 * 1024);
    let srv = {
        let i = Arc::clone(&i);
        tokio::spawn(async move {
            i.accept("billing", "api.example.com", server, HANDSHAKE_TIMEOUT)
                .await
        })
    };
    let name = ServerName::try_from("evil.example.com").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, client)
        .await
        .expect("handshake");
    let accepted = srv.await.expect("task").expect("accepted");
    assert_eq!(accepted.sni, SniCheck::Mismatch("evil.example.com".into()));
    drop(tls);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_counted() {
    let dir = Dir::new("untrusted");
    let ca = Spec::default().write(&dir, "a");
    let stranger = Spec {
        subject: vec![(rcgen::DnType::CommonName, "another CA")],
        ..Spec::default()
    }
    .write(&dir, "b");
    let (i, reg) = interceptor_with(&ca, 8);
    let (client, server) = tokio::io::duplex(64 * 1024);
    let srv = {
        let i = Arc::clone(&i);
        tokio::spawn(async move {
            i.accept("billing", "api.example.com", server, HANDSHAKE_TIMEOUT)
                .await
        })
    };
    let err = client_exchange(client, &stranger.der, "api.example.com")
        .await
        .expect_err("untrusted");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    match srv.await.expect("task") {
        Err(AcceptError::Handshake(HandshakeFailure::Untrusted(alert))) => {
            assert_eq!(alert, "UnknownCA")
        }
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(
        metric(
            &reg,
            "tollgate_interception_handshakes_total{outcome=\"untrusted\",route=\"billing\"}"
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_times_out() {
    let dir = Dir::new("silent");
    let ca = Spec::default().write(&dir, "");
    let (i, reg) = interceptor_with(&ca, 8);
    let (_client, server) = tokio::io::duplex(1024);
    let r = i
        .accept("billing", "api.example.com", server, HANDSHAKE_TIMEOUT)
        .await;
    assert!(matches!(
        r,
        Err(AcceptError::Handshake(HandshakeFailure::Timeout))
    ));
    assert_eq!(
        metric(
            &reg,
            "tollgate_interception_handshakes_total{outcome=\"timeout\",route=\"billing\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_fails_the_handshake() {
    let dir = Dir::new("garbage");
    let ca = Spec::default().write(&dir, "");
    let (i, reg) = interceptor_with(&ca, 8);
    let (mut client, server) = tokio::io::duplex(1024);
    client
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .expect("write");
    let r = i
        .accept("billing", "api.example.com", server, HANDSHAKE_TIMEOUT)
        .await;
    assert!(
        matches!(r, Err(AcceptError::Handshake(HandshakeFailure::Failed(_)))),
        "{:?}",
        r.err()
    );
    assert_eq!(
        metric(
            &reg,
            "tollgate_interception_handshakes_total{outcome=\"failed\",route=\"billing\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn without_a_ca_tls_is_closed_and_counted() {
    let registry = prometheus::Registry::new();
    let i = Interceptor::new(&registry).expect("interceptor");
    let (_client, server) = tokio::io::duplex(1024);
    let r = i
        .accept("billing", "api.example.com", server, HANDSHAKE_TIMEOUT)
        .await;
    assert!(matches!(r, Err(AcceptError::Leaf(LeafError::NoCa))));
    assert_eq!(
        metric(
            &registry,
            "tollgate_interception_handshakes_total{outcome=\"no_ca\",route=\"billing\"}"
        ),
        1.0
    );
}

/// curl, trusting only the test CA, against a loopback TLS server that terminates with
/// the interceptor's `ServerConfig`: the TLS half as a real OpenSSL client sees it.
#[tokio::test]
async fn curl_trusts_the_leaf_through_cacert() {
    let dir = Dir::new("curl");
    let ca = Spec::default().write(&dir, "");
    let (i, _reg) = interceptor_with(&ca, 8);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let srv = {
        let i = Arc::clone(&i);
        tokio::spawn(async move {
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.expect("accept");
                match i
                    .accept("billing", "api.example.test", tcp, HANDSHAKE_TIMEOUT)
                    .await
                {
                    Ok(a) => serve_one(a).await,
                    Err(e) => assert!(
                        matches!(e, AcceptError::Handshake(HandshakeFailure::Untrusted(_))),
                        "{e}"
                    ),
                }
            }
        })
    };
    let stranger = Spec {
        subject: vec![(rcgen::DnType::CommonName, "another CA")],
        ..Spec::default()
    }
    .write(&dir, "other-");
    let curl = |cacert: &std::path::Path| {
        let mut c = tokio::process::Command::new("curl");
        c.args(["-sS", "--http2", "--max-time", "10", "--resolve"])
            .arg(format!("api.example.test:{port}:127.0.0.1"))
            .arg(format!("https://api.example.test:{port}/v2/x"))
            .env_remove("SSL_CERT_FILE")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY");
        c.arg("--cacert").arg(cacert);
        c.output()
    };
    let out = curl(&ca.cert).await.expect("run curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // HTTP/1.1 even though curl offered h2: ALPN offers http/1.1 only.
    assert_eq!(body, "saw GET /v2/x HTTP/1.1");
    // Trusting another CA: curl refuses (exit 60, peer certificate cannot be verified).
    let out = curl(&stranger.cert).await.expect("run curl");
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.await.expect("server");
}

#[test]
fn plans_say_what_a_connect_does() {
    let dir = Dir::new("plan");
    let ca = Spec {
        constraints: Some(constraints(&["example.com"], &[], &[])),
        ..Spec::default()
    }
    .write(&dir, "");
    let a = load(&ca).expect("loads");
    let text = "credentials:\n  c:\n    token_url: https://idp.example.com/t\n    client_id: x\n    client_secret: y\nroutes:\n  - name: i\n    match: { hosts: [\"*.example.com\", api.other.com] }\n    action: inject\n    credential: c\n    connect: intercept\n  - name: r\n    match: { hosts: [r.example.com] }\n    action: inject\n    credential: c\n  - name: p\n    match: { hosts: [p.example.com] }\n    action: pass\n  - name: pr\n    match: { hosts: [pr.example.com] }\n    action: pass\n    connect: refuse\n  - name: d\n    match: { hosts: [d.example.com] }\n    action: deny\n";
    let config = tollgate_rules::load_str("t.yaml", text, &|_: &str| None).expect("valid");
    let r = |n: usize| &config.routes[n];
    assert_eq!(
        plan(r(0), "api.example.com", Some(&a)),
        ConnectPlan::Intercept(TlsPlan::Terminate("CN=tollgate test CA".into()))
    );
    assert!(matches!(
        plan(r(0), "api.other.com", Some(&a)),
        ConnectPlan::Intercept(TlsPlan::NotPermitted(_))
    ));
    assert_eq!(
        plan(r(0), "api.example.com", None),
        ConnectPlan::Intercept(TlsPlan::NoCa)
    );
    assert_eq!(
        plan(r(1), "r.example.com", Some(&a)),
        ConnectPlan::Refuse(Refusal::InjectRoute)
    );
    assert_eq!(plan(r(2), "p.example.com", Some(&a)), ConnectPlan::Tunnel);
    assert_eq!(
        plan(r(3), "pr.example.com", None),
        ConnectPlan::Refuse(Refusal::PassRoute)
    );
    assert_eq!(
        plan(r(4), "d.example.com", None),
        ConnectPlan::Refuse(Refusal::Denied)
    );
    assert_eq!(Refusal::Denied.code(), "denied");
    let shown = plan(r(0), "api.example.com", None).to_string();
    assert!(
        shown.contains("TLS is closed (no `interception` CA is configured)"),
        "{shown}"
    );
}
