//! Keys and certificates for sender-constrained tokens (RFC 8705 mutual TLS, RFC 9449
//! DPoP), made at run time into a temp dir (nothing is committed): see [`SenderPki`].
//!
//! ```ignore
//! let pki = SenderPki::generate();
//! let idp = Idp::start_with(IdpOptions { tls: Some(pki.tls_server()),
//!     self_signed_client_certs: vec![pki.self_signed.cert.clone()], ..Default::default() }).await;
//! // config: ca_file: {pki.ca_file}, client_cert_file: {pki.client.cert}, ...
//! assert_eq!(upstream_record.client_cert_x5t(), Some(pki.client.x5t_s256.clone()));
//! ```

use crate::tls::TestCa;
use base64::Engine as _;
use rcgen::{
    date_time_ymd, CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tempfile::TempDir;

/// The subject `idp.mjs` registers for `mtls-client` (`tls_client_auth_subject_dn`).
pub const MTLS_CLIENT_CN: &str = "mtls-client";
pub const MTLS_CLIENT_O: &str = "tollgate-tests";

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM certificate (leaf only).
    pub cert: PathBuf,
    /// PEM private key, PKCS#8.
    pub key: PathBuf,
    /// `x5t#S256`: base64url (no padding) of SHA-256 of the certificate's DER.
    pub x5t_s256: String,
}

/// An HTTPS server identity for `idp.mjs` / `upstream.mjs` (`--tls-cert`, `--tls-key`,
/// `--tls-ca`) and how the harness reaches its `/_test/` endpoints.
#[derive(Debug, Clone)]
pub struct TlsServer {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed `cert`: what clients (tollgate's `ca_file`, the upstream's
    /// `--idp-ca`) trust.
    pub ca_file: PathBuf,
    /// `--tls-ca`: client certificate chains verified against this CA count as
    /// authorized (tls_client_auth).
    pub client_ca: Option<PathBuf>,
    /// Trusts only `ca_file`: the harness's own TLS connections to the server.
    pub trust: Arc<rustls::ClientConfig>,
}

/// Everything a sender-constrained test needs, in one temp dir (removed on drop):
///
/// | field | file | what |
/// |---|---|---|
/// | `ca_file` | `ca.pem` | the test CA (trust for the IdP and the upstream; `--tls-ca`) |
/// | `server` | `server.pem`/`.key` | `127.0.0.1` (IP SAN) and `localhost`, signed by the CA |
/// | `client` | `client.pem`/`.key` | `O=tollgate-tests, CN=mtls-client`, signed by the CA, clientAuth: `mtls-client` |
/// | `self_signed` | `self-signed.pem`/`.key` | `CN=self-signed-client`, self-signed: `self-signed-client` |
/// | `self_signed_2` | `self-signed-2.pem`/`.key` | another self-signed certificate (not registered unless a test does) |
/// | `expired` | `expired.pem`/`.key` | like `client`, valid 2020-01-01 to 2021-01-01 |
/// | `other_ca_client` | `other-client.pem`/`.key` | `CN=mtls-client` from another CA |
/// | `dpop_key` | `dpop.pem` | P-256 private key, PKCS#8 (ES256) |
/// | `dpop_key_sec1` | `dpop-sec1.pem` | the same key as SEC1 (`EC PRIVATE KEY`), when `openssl` is there |
/// | `dpop_p384_key` | `dpop-p384.pem` | P-384 private key, PKCS#8 (must be refused) |
/// | `dpop_rsa_key` | `dpop-rsa.pem` | RSA-2048 private key, PKCS#8 (must be refused; a copy of the committed fixture `jwt-client-rs256.pem`) |
pub struct SenderPki {
    dir: TempDir,
    pub ca: TestCa,
    pub ca_file: PathBuf,
    pub server: CertFiles,
    pub client: CertFiles,
    pub self_signed: CertFiles,
    pub self_signed_2: CertFiles,
    pub expired: CertFiles,
    pub other_ca_client: CertFiles,
    pub dpop_key: PathBuf,
    pub dpop_key_sec1: Option<PathBuf>,
    /// RFC 7638 thumbprint of `dpop_key`'s public key: the `cnf.jkt` of its tokens.
    pub dpop_jkt: String,
    pub dpop_p384_key: PathBuf,
    pub dpop_rsa_key: PathBuf,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url SHA-256 of `der`: a certificate's `x5t#S256`.
pub fn x5t_s256(der: &[u8]) -> String {
    b64url(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// base64url SHA-256 of `token`: the `ath` of a DPoP proof for it.
pub fn ath(token: &str) -> String {
    b64url(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// RFC 7638 thumbprint of a P-256 public key given as the uncompressed point (`04 x y`).
pub fn p256_jkt(uncompressed_point: &[u8]) -> String {
    assert_eq!(uncompressed_point.len(), 65, "an uncompressed P-256 point");
    let (x, y) = (&uncompressed_point[1..33], &uncompressed_point[33..]);
    let members = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        b64url(x),
        b64url(y)
    );
    b64url(ring::digest::digest(&ring::digest::SHA256, members.as_bytes()).as_ref())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn files(dir: &Path, name: &str, cert: &rcgen::Certificate, key: &KeyPair) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        x5t_s256: x5t_s256(cert.der()),
    };
    write(&files.cert, &cert.pem());
    write(&files.key, &key.serialize_pem());
    files
}

fn client_params(cn: &str, org: Option<&str>) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    if let Some(o) = org {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.distinguished_name.push(DnType::CommonName, cn);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

impl SenderPki {
    /// Make the CA, certificates and keys in a new temp dir.
    pub fn generate() -> SenderPki {
        let dir = crate::process::tempdir();
        let d = dir.path().to_path_buf();
        let ca = TestCa::new("tollgate sender-constrained test CA");
        let ca_file = ca.write_pem(&d, "ca.pem");

        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server_params.use_authority_key_identifier_extension = true;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("server key");
        let server = files(
            &d,
            "server",
            &ca.sign(&server_params, &server_key),
            &server_key,
        );

        let client_key = KeyPair::generate().expect("client key");
        let client = files(
            &d,
            "client",
            &ca.sign(
                &client_params(MTLS_CLIENT_CN, Some(MTLS_CLIENT_O)),
                &client_key,
            ),
            &client_key,
        );

        let mut expired_params = client_params(MTLS_CLIENT_CN, Some(MTLS_CLIENT_O));
        expired_params.not_before = date_time_ymd(2020, 1, 1);
        expired_params.not_after = date_time_ymd(2021, 1, 1);
        let expired_key = KeyPair::generate().expect("expired key");
        let expired = files(
            &d,
            "expired",
            &ca.sign(&expired_params, &expired_key),
            &expired_key,
        );

        let self_signed = Self::self_signed_files(&d, "self-signed", "self-signed-client");
        let self_signed_2 = Self::self_signed_files(&d, "self-signed-2", "self-signed-client");

        let other = TestCa::new("some other CA");
        let other_key = KeyPair::generate().expect("other key");
        let other_ca_client = files(
            &d,
            "other-client",
            &other.sign(
                &client_params(MTLS_CLIENT_CN, Some(MTLS_CLIENT_O)),
                &other_key,
            ),
            &other_key,
        );

        let dpop = KeyPair::generate().expect("P-256 DPoP key");
        let dpop_key = d.join("dpop.pem");
        write(&dpop_key, &dpop.serialize_pem());
        let dpop_jkt = p256_jkt(dpop.public_key_raw());
        let dpop_key_sec1 = {
            let out = d.join("dpop-sec1.pem");
            let ok = Command::new("openssl")
                .arg("ec")
                .arg("-in")
                .arg(&dpop_key)
                .arg("-out")
                .arg(&out)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(out)
        };
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384 key");
        let dpop_p384_key = d.join("dpop-p384.pem");
        write(&dpop_p384_key, &p384.serialize_pem());
        // ring cannot generate RSA keys: a copy of the committed test fixture.
        let dpop_rsa_key = d.join("dpop-rsa.pem");
        std::fs::copy(crate::idp::jwt_rs_client_key(), &dpop_rsa_key)
            .expect("copy the RSA fixture");

        SenderPki {
            dir,
            ca,
            ca_file,
            server,
            client,
            self_signed,
            self_signed_2,
            expired,
            other_ca_client,
            dpop_key,
            dpop_key_sec1,
            dpop_jkt,
            dpop_p384_key,
            dpop_rsa_key,
        }
    }

    fn self_signed_files(dir: &Path, name: &str, cn: &str) -> CertFiles {
        let key = KeyPair::generate().expect("self-signed key");
        let cert = client_params(cn, None)
            .self_signed(&key)
            .expect("self-sign");
        files(dir, name, &cert, &key)
    }

    /// The temp dir holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Write `text` to `dir/name` (a PEM made by a test: a key/cert mismatch, a chain).
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        write(&path, text);
        path
    }

    /// `server` as an HTTPS identity whose client certificates are checked against the CA.
    pub fn tls_server(&self) -> TlsServer {
        TlsServer {
            cert: self.server.cert.clone(),
            key: self.server.key.clone(),
            ca_file: self.ca_file.clone(),
            client_ca: Some(self.ca_file.clone()),
            trust: self.ca.client_config(),
        }
    }

    /// Every private key's PEM body lines (base64, 40+ characters): none may appear in a log.
    pub fn private_key_lines(&self) -> Vec<String> {
        let mut keys = vec![
            self.server.key.clone(),
            self.client.key.clone(),
            self.self_signed.key.clone(),
            self.self_signed_2.key.clone(),
            self.expired.key.clone(),
            self.other_ca_client.key.clone(),
            self.dpop_key.clone(),
            self.dpop_p384_key.clone(),
            self.dpop_rsa_key.clone(),
        ];
        keys.extend(self.dpop_key_sec1.clone());
        keys.iter()
            .flat_map(|k| {
                std::fs::read_to_string(k)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 40)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn thumbprints_match_openssl_and_rfc7638() {
        let pki = SenderPki::generate();
        // openssl x509 -outform der | sha256 | base64url, when openssl is there.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl x509 -in {} -outform der | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '='",
                pki.client.cert.display()
            ))
            .output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !text.is_empty() {
                assert_eq!(text, pki.client.x5t_s256);
            }
        }
        // RFC 7638 §3.1's example is RSA; check the EC member order and encoding instead.
        let mut point = vec![4u8];
        point.extend([0u8; 32]);
        point.extend([1u8; 32]);
        let members = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64url(&[0u8; 32]),
            b64url(&[1u8; 32])
        );
        assert_eq!(
            p256_jkt(&point),
            b64url(ring::digest::digest(&ring::digest::SHA256, members.as_bytes()).as_ref())
        );
        assert_eq!(ath("x").len(), 43);
        assert!(pki.dpop_jkt.len() == 43);
        let key = std::fs::read_to_string(&pki.dpop_key).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        assert!(!pki.private_key_lines().is_empty());
    }
}
