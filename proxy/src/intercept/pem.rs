//! Reading the CA files: PEM certificates, and a PEM private key in any of the encodings
//! tools write (PKCS#8 `PRIVATE KEY`; SEC1 `EC PRIVATE KEY`, which openssl's `ecparam`
//! and cert-manager write; PKCS#1 `RSA PRIVATE KEY`), normalised to PKCS#8 for ring.
//!
//! Messages about the key file never quote its content, not even a line of it: a
//! malformed key file may still hold most of a key.

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use std::io::Read;
use std::path::Path;

/// CA files larger than this are refused (a certificate chain is a few KiB).
const MAX_FILE_LEN: u64 = 1 << 20;

/// Reads a whole file, bounded. The error is the reason alone (the caller names the key).
pub(super) fn read(path: &Path) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(format!(
            "{} is larger than {MAX_FILE_LEN} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Every `CERTIFICATE` section, in file order; at least one.
pub(super) fn certificates(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(bytes) {
        match item {
            Ok(c) => certs.push(c),
            Err(e) => {
                return Err(format!(
                    "{} is not a valid PEM certificate file: {}",
                    path.display(),
                    pem_error(&e)
                ))
            }
        }
    }
    if certs.is_empty() {
        let hint = if has_private_key(bytes) {
            " (it holds a private key: is it the key file?)"
        } else {
            ""
        };
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----){hint}",
            path.display()
        ));
    }
    Ok(certs)
}

fn has_private_key(bytes: &[u8]) -> bool {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes).any(|s| {
        matches!(
            s,
            Ok((
                SectionKind::PrivateKey | SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey,
                _
            ))
        )
    })
}

/// A PEM error without any text from the file.
fn pem_error(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a section has no END line",
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        Error::Base64Decode(_) => "a section is not valid base64",
        Error::SectionTooLarge => "a section is too large",
        Error::NoItemsFound => "no PEM section found",
        _ => "it cannot be parsed",
    }
}

/// The private key, as PKCS#8. `Err` is a message safe to print.
pub(super) fn private_key(
    path: &Path,
    bytes: &[u8],
) -> Result<PrivatePkcs8KeyDer<'static>, String> {
    let shown = path.display();
    if contains(bytes, b"ENCRYPTED PRIVATE KEY") || contains(bytes, b"Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "{shown} holds an encrypted private key; tollgate needs it unencrypted (protect the file instead: mode 0600, a Kubernetes Secret)"
        ));
    }
    let mut found: Option<(SectionKind, Vec<u8>)> = None;
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        match item {
            Ok((
                kind @ (SectionKind::PrivateKey
                | SectionKind::EcPrivateKey
                | SectionKind::RsaPrivateKey),
                der,
            )) => {
                if found.is_some() {
                    return Err(format!("{shown} holds more than one private key"));
                }
                found = Some((kind, der));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "{shown} is not a valid PEM private key file: {}",
                    pem_error(&e)
                ))
            }
        }
    }
    match found {
        None => {
            let hint = if CertificateDer::pem_slice_iter(bytes).next().is_some() {
                " (it holds a certificate: is it the certificate file?)"
            } else {
                ""
            };
            Err(format!(
                "{shown} holds no PEM private key (-----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY){hint}"
            ))
        }
        Some((SectionKind::PrivateKey, der)) => Ok(PrivatePkcs8KeyDer::from(der)),
        Some((SectionKind::RsaPrivateKey, der)) => {
            Ok(PrivatePkcs8KeyDer::from(pkcs8(RSA_ALG, &der)))
        }
        Some((_, der)) => {
            // SEC1 names its curve inside; ring checks that it agrees with the one named
            // in the PKCS#8 wrapper, so the wrapper names the curve SEC1 does.
            let curve = [P256, P384]
                .into_iter()
                .find(|c| contains(&der, &der_tlv(0xa0, &der_tlv(0x06, c))))
                .ok_or_else(|| {
                    format!("{shown}: the EC key does not name its curve as P-256 or P-384")
                })?;
            let mut alg = der_tlv(0x06, EC_PUBLIC_KEY_OID);
            alg.extend_from_slice(&der_tlv(0x06, curve));
            Ok(PrivatePkcs8KeyDer::from(pkcs8(&der_tlv(0x30, &alg), &der)))
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// id-ecPublicKey (1.2.840.10045.2.1), the OID's content octets.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7) and secp384r1 (1.3.132.0.34), content octets.
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// AlgorithmIdentifier { rsaEncryption, NULL }.
const RSA_ALG: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// PrivateKeyInfo ::= SEQUENCE { version 0, algorithm, privateKey OCTET STRING } (RFC 5208).
fn pkcs8(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(algorithm);
    body.extend_from_slice(&der_tlv(0x04, key));
    der_tlv(0x30, &body)
}

/// One DER tag-length-value with a definite length.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der_tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = vec![0u8; 200];
        assert_eq!(&der_tlv(0x04, &long)[..3], &[0x04, 0x81, 200]);
        let longer = vec![0u8; 300];
        assert_eq!(&der_tlv(0x04, &longer)[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    fn p(s: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(s)
    }

    #[test]
    fn key_file_problems_never_quote_the_file() {
        let secret_line = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSECRETSECRET";
        for text in [
            format!("-----BEGIN PRIVATE KEY-----\n{secret_line}\n"),
            format!("-----BEGIN PRIVATE KEY-----\n{secret_line}!!\n-----END PRIVATE KEY-----\n"),
            format!("-----BEGIN PRIVATE KEY\n{secret_line}\n-----END PRIVATE KEY-----\n"),
            format!("{secret_line}\n"),
        ] {
            let err = private_key(&p("k.pem"), text.as_bytes()).expect_err("not a key");
            assert!(!err.contains("SECRET"), "{err}");
            assert!(err.contains("k.pem"), "{err}");
        }
    }

    #[test]
    fn encrypted_and_swapped_files_get_a_hint() {
        let err = private_key(
            &p("k.pem"),
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .expect_err("encrypted");
        assert!(err.contains("encrypted"), "{err}");
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = private_key(&p("k.pem"), cert.as_bytes()).expect_err("a cert");
        assert!(err.contains("is it the certificate file"), "{err}");
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = certificates(&p("c.pem"), key.as_bytes()).expect_err("a key");
        assert!(err.contains("is it the key file"), "{err}");
        let err = certificates(&p("c.pem"), b"hello").expect_err("nothing");
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn unreadable_and_oversized_files() {
        let err = read(&p("/nonexistent/ca.crt")).expect_err("missing");
        assert!(
            err.starts_with("cannot read /nonexistent/ca.crt: "),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("tollgate-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let big = dir.join("big.pem");
        std::fs::write(&big, vec![b'a'; (MAX_FILE_LEN + 1) as usize]).expect("write");
        let err = read(&big).expect_err("too large");
        assert!(err.contains("larger than"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
