//! One file a credential names, read and checked the way the token cache reads it, for
//! `preflight` (`tollgate check`, start-up, reload): the same bounded reader
//! (`secret::read`) and the same parser [`CredAuth::new`] gives each file
//! (`parse_secret`, `SigningKey::from_pem`, `Certificate::from_pem`,
//! `ServiceAccount::parse`, `parse_header_value`, `ca_roots_at`; the token store's
//! password and key readers). No network: an `issuer` is discovered, and Redis reached,
//! when the cache is built, not here.
//!
//! Each check looks at one file, so that every bad file of a credential is reported, each
//! at its own key. The error is `PATH: reason`; the caller puts the key in front.
//!
//! [`CredAuth::new`]: super::method::CredAuth::new

use std::path::Path;

use tollgate_rules::{PrivateKeyJwt, TlsClient};

use super::client::{ca_roots_at, ReqwestEndpoint, REQUEST_TIMEOUT};
use super::dpop::DpopKey;
use super::jwt::{Certificate, SigningKey};
use super::secret::{parse_header_value, parse_secret, read};
use super::service_account::ServiceAccount;
use super::tls_client::{ClientCert, Which};

fn at(path: &Path) -> impl Fn(String) -> String + '_ {
    move |reason| format!("{}: {reason}", path.display())
}

/// `client_secret_file`, an entry of `client_secret_files`, and the per-request
/// `client_assertion_file` and `subject_token_file` (read with the same rules).
pub fn secret(path: &Path) -> Result<(), String> {
    read(path, &parse_secret).map(drop).map_err(at(path))
}

/// `private_key_file`: a PEM key usable with the credential's `signing_alg`.
pub fn private_key(path: &Path, k: &PrivateKeyJwt) -> Result<(), String> {
    let alg = k.signing_alg;
    read(path, &|bytes: &[u8]| SigningKey::from_pem(bytes, alg))
        .map(drop)
        .map_err(at(path))
}

/// `certificate_file`: a PEM certificate, of the key in `private_key_file` (when that
/// key can be read; when it cannot, that is reported at `private_key_file`).
pub fn certificate(path: &Path, k: &PrivateKeyJwt) -> Result<(), String> {
    let (_, cert) = read(path, &Certificate::from_pem).map_err(at(path))?;
    let alg = k.signing_alg;
    if let Ok((_, key)) = read(&k.private_key_file, &|b: &[u8]| {
        SigningKey::from_pem(b, alg)
    }) {
        if !cert.certifies(&key) {
            return Err(at(path)(format!(
                "is not a certificate of the key in private_key_file {}",
                k.private_key_file.display()
            )));
        }
    }
    Ok(())
}

/// `client_cert_file`: a PEM chain whose leaf is valid now and certifies the key in
/// `client_key_file` (a problem with the key alone is reported at `client_key_file`).
pub fn client_certificate(path: &Path, t: &TlsClient) -> Result<(), String> {
    match ClientCert::load(t) {
        Ok(_) | Err((Which::Key, _)) => Ok(()),
        Err((Which::Cert, why)) => Err(at(path)(why)),
    }
}

/// `client_key_file`: an unencrypted PEM private key TLS can use.
pub fn client_key(path: &Path) -> Result<(), String> {
    super::tls_client::check_key_file(path).map_err(at(path))
}

/// `dpop.key_file`: a PEM P-256 private key (DPoP proofs are ES256).
pub fn dpop_key(path: &Path) -> Result<(), String> {
    read(path, &DpopKey::from_pem).map(drop).map_err(at(path))
}

/// `service_account_file`: a Google service account JSON key with the fields a
/// `jwt_bearer` grant needs (`client_email`, an RSA `private_key`, a `token_uri` that is
/// https).
pub fn service_account(path: &Path) -> Result<(), String> {
    read(path, &ServiceAccount::parse)
        .map(drop)
        .map_err(at(path))
}

/// `value_file` of a static credential: a secret that fits in a header.
pub fn static_value(path: &Path) -> Result<(), String> {
    read(path, &parse_header_value).map(drop).map_err(at(path))
}

/// A credential's `ca_file`: PEM certificates, and a token endpoint client built with
/// them as the cache builds it.
pub fn ca_file(path: &Path) -> Result<(), String> {
    let roots = ca_roots_at(path).map_err(at(path))?;
    ReqwestEndpoint::new(Some(&roots), REQUEST_TIMEOUT)
        .map(drop)
        .map_err(at(path))
}

/// `token_store.redis.password_file`: non-empty text, as the Redis client reads it at
/// start.
pub fn redis_password(path: &Path) -> Result<(), String> {
    super::store::check_password_file(path).map_err(at(path))
}

/// `token_store.encryption_key_files[index]`: a 32-byte key (raw, hex or base64) that no
/// entry before it holds too (the store's key ring refuses the same key twice; the later
/// entry is the one reported).
pub fn encryption_key(index: usize, files: &[std::path::PathBuf]) -> Result<(), String> {
    let Some(path) = files.get(index) else {
        return Ok(());
    };
    let id = super::store::key_file_id(path).map_err(at(path))?;
    for (j, other) in files.iter().enumerate().take(index) {
        if super::store::key_file_id(other).is_ok_and(|o| o == id) {
            return Err(at(path)(format!(
                "holds the same key as encryption_key_files[{j}] {}",
                other.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::test_support::TempDir;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/fixtures");

    fn key(path: &Path) -> PrivateKeyJwt {
        PrivateKeyJwt {
            private_key_file: path.to_path_buf(),
            signing_alg: None,
            key_id: None,
            certificate: None,
            assertion_audience: None,
        }
    }

    #[test]
    fn each_check_names_the_file_and_says_why() {
        let dir = TempDir::new();
        let empty = dir.write("empty", "\n");
        let missing = dir.path().join("missing");
        let e = secret(&empty).unwrap_err();
        assert_eq!(e, format!("{}: is empty", empty.display()));
        assert!(secret(&missing)
            .unwrap_err()
            .starts_with(&format!("{}: ", missing.display())));
        assert!(private_key(&empty, &key(&empty))
            .unwrap_err()
            .contains("no PEM private key found"));
        assert!(service_account(&empty).unwrap_err().contains("is not JSON"));
        assert!(static_value(&dir.write("v", "a\nb"))
            .unwrap_err()
            .contains("not allowed in an HTTP header"));
        assert!(ca_file(&empty).unwrap_err().contains("no PEM certificate"));
        assert!(redis_password(&empty).unwrap_err().ends_with(": empty"));
        assert!(encryption_key(0, std::slice::from_ref(&empty)).is_err());
    }

    #[test]
    fn an_encryption_key_listed_twice_is_reported_at_the_later_entry() {
        let dir = TempDir::new();
        let k1 = dir.write("k1", "ab".repeat(32));
        let k2 = dir.write("k2", "cd".repeat(32));
        let again = dir.write("again", format!("{}\n", "ab".repeat(32)));
        let files = [k1.clone(), k2, again.clone()];
        encryption_key(0, &files).unwrap();
        encryption_key(1, &files).unwrap();
        let e = encryption_key(2, &files).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}: holds the same key as encryption_key_files[0] {}",
                again.display(),
                k1.display()
            )
        );
        assert!(!e.contains(&"ab".repeat(32)), "{e}");
    }

    #[test]
    fn a_certificate_must_certify_the_private_key() {
        let rsa = Path::new(FIXTURES).join("rsa-2048-pkcs8.pem");
        let ec = Path::new(FIXTURES).join("ec-p256-pkcs8.pem");
        let cert = Path::new(FIXTURES).join("rsa-2048-cert.pem");
        certificate(&cert, &key(&rsa)).unwrap();
        let e = certificate(&cert, &key(&ec)).unwrap_err();
        assert!(e.contains("is not a certificate of the key"), "{e}");
        // An unreadable key is the key's problem, not the certificate's.
        certificate(&cert, &key(Path::new("/nonexistent/key.pem"))).unwrap();
    }
}
