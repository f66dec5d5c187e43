//! A credential's client certificate (`client_cert_file`, `client_key_file`): mutual TLS
//! to the token endpoint (RFC 8705 `tls_client_auth`, `self_signed_tls_client_auth`) and,
//! with `upstream_client_cert: credential`, to the upstream.
//!
//! [`ClientCert::load`] reads both files and checks them the way the TLS stacks will use
//! them: every certificate parses (pingora panics on one that does not), the leaf is
//! valid now, the key is one rustls can sign with and is the leaf's (rustls'
//! `keys_match`). The token endpoint gets it as a reqwest [`Identity`](reqwest::Identity),
//! the upstream as a pingora `CertKey`.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use pingora::utils::tls::CertKey;
use ring::digest;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tollgate_rules::TlsClient;

use super::secret::read;

/// Which of the two files a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Cert,
    Key,
}

impl Which {
    pub fn key(self) -> &'static str {
        match self {
            Which::Cert => "client_cert_file",
            Which::Key => "client_key_file",
        }
    }
}

/// A checked client certificate chain and its key.
pub struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// base64url SHA-256 of the leaf (the `cnf.x5t#S256` of a bound token).
    pub x5t_s256: String,
    /// The leaf's `notAfter`, seconds since the epoch.
    pub not_after: i64,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientCert(x5t#S256 {}, [key redacted])", self.x5t_s256)
    }
}

impl ClientCert {
    /// Reads and checks `t`'s files. The error names the file (as [`Which`]) and says why.
    pub fn load(t: &TlsClient) -> Result<ClientCert, (Which, String)> {
        let (_, chain) = read(&t.cert_file, &parse_chain).map_err(|e| (Which::Cert, e))?;
        let (_, key) = read(&t.key_file, &parse_key).map_err(|e| (Which::Key, e))?;
        Self::from_parts(chain, key, &t.key_file)
    }

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        key_file: &Path,
    ) -> Result<ClientCert, (Which, String)> {
        let leaf = chain
            .first()
            .ok_or((Which::Cert, "no certificate".into()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| (Which::Cert, format!("not an X.509 certificate: {e}")))?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let validity = parsed.validity();
        let not_after = validity.not_after.timestamp();
        if not_after < now {
            return Err((
                Which::Cert,
                format!(
                    "the certificate expired on {} (renew it)",
                    validity.not_after
                ),
            ));
        }
        if validity.not_before.timestamp() > now {
            return Err((
                Which::Cert,
                format!(
                    "the certificate is not valid before {}",
                    validity.not_before
                ),
            ));
        }
        super::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        // What the TLS stacks will do with them: load the key and match it to the leaf.
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(
            |e| match e {
                rustls::Error::InconsistentKeys(_) => (
                    Which::Cert,
                    format!(
                        "is not a certificate of the key in client_key_file {}",
                        key_file.display()
                    ),
                ),
                other => (Which::Key, format!("the key cannot sign for TLS: {other}")),
            },
        )?;
        let x5t_s256 = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, leaf.as_ref()));
        Ok(ClientCert {
            chain,
            key,
            x5t_s256,
            not_after,
        })
    }

    /// For the token endpoint's reqwest client.
    pub fn identity(&self) -> Result<reqwest::Identity, String> {
        let mut text = String::new();
        let label = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem_block(&mut text, label, self.key.secret_der());
        for c in &self.chain {
            pem_block(&mut text, "CERTIFICATE", c.as_ref());
        }
        reqwest::Identity::from_pem(text.as_bytes()).map_err(|e| super::client::root_cause(&e))
    }

    /// For the upstream's pingora peer.
    pub fn cert_key(&self) -> Arc<CertKey> {
        Arc::new(CertKey::new(
            self.chain.iter().map(|c| c.as_ref().to_vec()).collect(),
            self.key.secret_der().to_vec(),
        ))
    }
}

/// Reads a `client_key_file` on its own (for `tollgate check`).
pub fn check_key_file(path: &Path) -> Result<(), String> {
    read(path, &parse_key).map(drop)
}

fn pem_block(out: &mut String, label: &str, der: &[u8]) {
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let b64 = STANDARD.encode(der);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

fn parse_chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(bytes) {
        let c = c.map_err(|e| format!("not a readable PEM file: {e}"))?;
        x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| format!("certificate {} is not X.509: {e}", chain.len() + 1))?;
        chain.push(c);
    }
    if chain.is_empty() {
        return Err("no PEM certificate found (expected CERTIFICATE blocks, leaf first)".into());
    }
    Ok(chain)
}

fn parse_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if bytes
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
    {
        return Err(
            "encrypted private keys are not supported; store the key unencrypted \
                    (PKCS#8, SEC1 or PKCS#1 PEM) in a protected file"
                .into(),
        );
    }
    let key = PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => "no PEM private key found (expected a PRIVATE KEY, EC \
                                     PRIVATE KEY or RSA PRIVATE KEY block)"
            .to_string(),
        other => format!("not a readable PEM file: {other}"),
    })?;
    // pingora re-reads the DER by its shape (and panics if it cannot): check it here.
    PrivateKeyDer::try_from(key.secret_der())
        .map_err(|e| format!("not a private key TLS can use: {e}"))?;
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
