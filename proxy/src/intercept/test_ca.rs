//! Test CAs made at run time with rcgen (nothing committed), each with one defect or
//! none, written as PEM files into a fresh directory.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A scratch directory removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("tollgate-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create test dir");
        Dir(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write test file");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to build a test CA.
pub struct Spec {
    pub is_ca: IsCa,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub constraints: Option<rcgen::NameConstraints>,
    pub subject: Vec<(DnType, &'static str)>,
}

impl Default for Spec {
    fn default() -> Spec {
        let now = SystemTime::now();
        Spec {
            is_ca: IsCa::Ca(BasicConstraints::Constrained(0)),
            key_usages: vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            eku: Vec::new(),
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(30 * 86400),
            constraints: None,
            subject: vec![(DnType::CommonName, "tollgate test CA")],
        }
    }
}

/// A CA's files and its certificate (DER), for trusting it in clients.
pub struct TestCa {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: rustls_pki_types::CertificateDer<'static>,
}

impl Spec {
    /// Writes `ca.crt` and `ca.key` under `dir` (with `prefix`).
    pub fn write(self, dir: &Dir, prefix: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        self.write_with_key(dir, prefix, &key)
    }

    pub fn write_with_key(self, dir: &Dir, prefix: &str, key: &KeyPair) -> TestCa {
        let mut p = CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        for (t, v) in self.subject {
            dn.push(t, v);
        }
        p.distinguished_name = dn;
        p.is_ca = self.is_ca;
        p.key_usages = self.key_usages;
        p.extended_key_usages = self.eku;
        p.not_before = self.not_before.into();
        p.not_after = self.not_after.into();
        p.name_constraints = self.constraints;
        let cert = p.self_signed(key).expect("self-sign CA");
        TestCa {
            cert: dir.write(&format!("{prefix}ca.crt"), &cert.pem()),
            key: dir.write(&format!("{prefix}ca.key"), &key.serialize_pem()),
            der: cert.der().clone(),
        }
    }
}

/// DNS and IP constraints for [`Spec::constraints`].
pub fn constraints(
    permitted_dns: &[&str],
    excluded_dns: &[&str],
    excluded_ip: &[(&str, u8)],
) -> rcgen::NameConstraints {
    let ip = |(a, p): &(&str, u8)| {
        rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::from_addr_prefix(
            a.parse().expect("ip"),
            *p,
        ))
    };
    rcgen::NameConstraints {
        permitted_subtrees: permitted_dns
            .iter()
            .map(|d| rcgen::GeneralSubtree::DnsName((*d).to_owned()))
            .collect(),
        excluded_subtrees: excluded_dns
            .iter()
            .map(|d| rcgen::GeneralSubtree::DnsName((*d).to_owned()))
            .chain(excluded_ip.iter().map(ip))
            .collect(),
    }
}

/// A rustls client config trusting only `ca` (ring), offering `http/1.1`.
pub fn client_config(
    ca: &rustls_pki_types::CertificateDer<'static>,
) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("trust the test CA");
    let mut c = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(c)
}

/// Path helper for messages.
pub fn shown(p: &Path) -> String {
    p.display().to_string()
}
