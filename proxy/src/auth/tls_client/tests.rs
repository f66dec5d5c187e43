use super::*;
use crate::auth::test_support::TempDir as Dir;
use rcgen::{CertificateParams, KeyPair};
use std::time::Duration;

struct Made {
    dir: Dir,
    t: TlsClient,
    der: Vec<u8>,
}

fn make(not_before: SystemTime, not_after: SystemTime) -> Made {
    let dir = Dir::new();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    p.not_before = not_before.into();
    p.not_after = not_after.into();
    let cert = p.self_signed(&key).unwrap();
    let t = TlsClient {
        cert_file: dir.write("client.pem", cert.pem()),
        key_file: dir.write("client.key", key.serialize_pem()),
    };
    Made {
        der: cert.der().to_vec(),
        dir,
        t,
    }
}

fn valid() -> Made {
    let now = SystemTime::now();
    make(
        now - Duration::from_secs(60),
        now + Duration::from_secs(86400),
    )
}

#[test]
fn a_good_pair_loads_for_both_tls_stacks() {
    let m = valid();
    let c = ClientCert::load(&m.t).unwrap();
    let want = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &m.der));
    assert_eq!(c.x5t_s256, want);
    c.identity().unwrap();
    let _ = c.cert_key();
    assert!(!format!("{c:?}").contains("PRIVATE"));
}

#[test]
fn an_expired_or_future_certificate_is_refused() {
    let now = SystemTime::now();
    let m = make(
        now - Duration::from_secs(86400 * 2),
        now - Duration::from_secs(86400),
    );
    let (which, why) = ClientCert::load(&m.t).unwrap_err();
    assert_eq!(which, Which::Cert);
    assert!(why.contains("expired"), "{why}");
    let m = make(
        now + Duration::from_secs(86400),
        now + Duration::from_secs(86400 * 2),
    );
    let (which, why) = ClientCert::load(&m.t).unwrap_err();
    assert_eq!(which, Which::Cert);
    assert!(why.contains("not valid before"), "{why}");
}

#[test]
fn a_key_of_another_certificate_is_refused_at_the_certificate() {
    let a = valid();
    let b = valid();
    let t = TlsClient {
        cert_file: a.t.cert_file.clone(),
        key_file: b.t.key_file.clone(),
    };
    let (which, why) = ClientCert::load(&t).unwrap_err();
    assert_eq!(which, Which::Cert);
    assert!(
        why.contains("is not a certificate of the key in client_key_file"),
        "{why}"
    );
}

#[test]
fn unreadable_files_say_which_and_why() {
    let m = valid();
    let junk = m.dir.write("junk", "hello\n");
    let t = TlsClient {
        cert_file: junk.clone(),
        key_file: m.t.key_file.clone(),
    };
    let (which, why) = ClientCert::load(&t).unwrap_err();
    assert_eq!(which, Which::Cert);
    assert!(why.contains("no PEM certificate"), "{why}");
    let t = TlsClient {
        cert_file: m.t.cert_file.clone(),
        key_file: junk,
    };
    let (which, why) = ClientCert::load(&t).unwrap_err();
    assert_eq!(which, Which::Key);
    assert!(why.contains("no PEM private key"), "{why}");
    let enc = m.dir.write(
        "enc",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let t = TlsClient {
        cert_file: m.t.cert_file.clone(),
        key_file: enc,
    };
    assert!(ClientCert::load(&t).unwrap_err().1.contains("encrypted"));
    // A certificate block that is not X.509 (pingora would panic on it).
    let bad = m.dir.write(
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let t = TlsClient {
        cert_file: bad,
        key_file: m.t.key_file.clone(),
    };
    assert!(ClientCert::load(&t).unwrap_err().1.contains("not X.509"));
}
