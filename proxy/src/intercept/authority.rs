//! The interception CA, loaded and checked: [`Authority::load`] reads `ca_cert_file` and
//! `ca_key_file` and refuses a CA that could not issue leaves clients accept (not a CA,
//! no keyCertSign, a key that is not the certificate's, outside its validity, name
//! constraints tollgate cannot honour, a subject it cannot reproduce); [`Authority::issue`]
//! makes one leaf certificate (ECDSA P-256, SAN = the host only, serial random).
//!
//! The CA key lives in an [`rcgen::Issuer`] inside [`Authority`]; neither `Debug` nor any
//! error shows it.

use super::constraints::{LeafName, NameConstraints, NotPermitted};
use super::leaf::{self, Validity, ValidityError};
use super::pem;
use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::x509::X509Name;

/// Which of the two files a problem is with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaError {
    /// `ca_cert_file` (unreadable, not PEM, not a CA, not valid now, ...).
    Cert(String),
    /// `ca_key_file` (unreadable, not a key, not the certificate's key).
    Key(String),
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Cert(m) | CaError::Key(m) => f.write_str(m),
        }
    }
}

/// Why one leaf could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueError {
    /// The CA's name constraints do not allow this host.
    NotPermitted(NotPermitted),
    /// The CA is not valid now.
    Validity(ValidityError),
    /// Key generation or signing failed (not expected).
    Sign(String),
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueError::NotPermitted(n) => {
                write!(f, "the interception CA may not sign for it: {n}")
            }
            IssueError::Validity(v) => v.fmt(f),
            IssueError::Sign(e) => write!(f, "making the leaf certificate failed: {e}"),
        }
    }
}

/// A leaf certificate and its private key (PKCS#8; `Debug` hides it).
pub struct Issued {
    /// The leaf, DER.
    pub cert: CertificateDer<'static>,
    /// Its key.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// Its validity.
    pub validity: Validity,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("validity", &self.validity)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// The loaded interception CA.
pub struct Authority {
    cert_file: PathBuf,
    subject: String,
    /// The CA certificate, then whatever followed it in `ca_cert_file` (its chain).
    chain: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
    /// Whether the CA has a subjectKeyIdentifier (leaves then name it as their AKI).
    has_ski: bool,
    validity: Validity,
    constraints: NameConstraints,
    leaf_lifetime: Duration,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("cert_file", &self.cert_file)
            .field("subject", &self.subject)
            .field("validity", &self.validity)
            .field("constraints", &self.constraints)
            .field("leaf_lifetime", &self.leaf_lifetime)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn time_of(t: &x509_parser::time::ASN1Time) -> SystemTime {
    match u64::try_from(t.timestamp()) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}

impl Authority {
    /// Reads and checks the CA files at time `now`.
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        leaf_lifetime: Duration,
        now: SystemTime,
    ) -> Result<Authority, CaError> {
        let cert_bytes = pem::read(cert_file).map_err(CaError::Cert)?;
        let chain = pem::certificates(cert_file, &cert_bytes).map_err(CaError::Cert)?;
        let shown = cert_file.display();
        let (_, x509) = x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| {
            CaError::Cert(format!("{shown}: its certificate cannot be parsed: {e}"))
        })?;
        let subject = x509.subject().to_string();
        let named = |m: String| CaError::Cert(format!("{shown} ({subject}): {m}"));
        check_is_ca(&x509).map_err(named)?;
        let validity = Validity {
            not_before: time_of(&x509.validity().not_before),
            not_after: time_of(&x509.validity().not_after),
        };
        check_validity(&validity, now).map_err(named)?;
        let constraints = NameConstraints::from_x509(&x509).map_err(named)?;
        let dn = distinguished_name(x509.subject()).map_err(named)?;
        let ski = x509
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            });

        let key = Self::load_key(key_file).map_err(CaError::Key)?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(CaError::Key(format!(
                "{} is not the private key of {shown} ({subject}): its public key differs from the certificate's",
                key_file.display()
            )));
        }

        let subject_raw = x509.subject().as_raw().to_vec();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        if let Some(ski) = &ski {
            params.key_identifier_method = KeyIdMethod::PreSpecified(ski.clone());
        }
        let authority = Authority {
            cert_file: cert_file.to_path_buf(),
            subject: subject.clone(),
            has_ski: ski.is_some(),
            issuer: Issuer::new(params, key),
            validity,
            constraints,
            leaf_lifetime,
            chain,
        };
        authority
            .check_reproduces_subject(&subject_raw, now)
            .map_err(named)?;
        Ok(authority)
    }

    /// Reads `ca_key_file` alone, as [`Authority::load`] does before comparing it with
    /// the certificate (so that a bad key is reported even when the certificate is bad
    /// too). The error names the file.
    pub fn load_key(key_file: &Path) -> Result<KeyPair, String> {
        let key_bytes = pem::read(key_file)?;
        let key_der = pem::private_key(key_file, &key_bytes)?;
        KeyPair::try_from(&PrivateKeyDer::Pkcs8(key_der)).map_err(|_| {
            format!(
                "{}: the private key is not one tollgate can sign with (ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits)",
                key_file.display()
            )
        })
    }

    /// A leaf must name the CA's subject byte for byte, or clients cannot chain it.
    /// rcgen re-encodes the name; prove on a throw-away leaf that it came out the same.
    fn check_reproduces_subject(&self, ca_subject: &[u8], now: SystemTime) -> Result<(), String> {
        let probe = self
            .sign(&LeafName::Dns("probe.invalid".to_owned()), now)
            .map_err(|e| format!("cannot sign a test certificate: {e}"))?;
        let (_, leaf) = x509_parser::parse_x509_certificate(&probe.cert)
            .map_err(|e| format!("its test certificate cannot be parsed: {e}"))?;
        if leaf.issuer().as_raw() != ca_subject {
            return Err(
                "tollgate cannot reproduce its subject name exactly (a multi-valued or repeated attribute?), so clients could not chain leaves to it; use a CA with a plain subject, e.g. one from `tollgate ca init`"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The CA certificate's subject, for messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `ca_cert_file`, for messages.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The CA's validity.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// The CA's name constraints.
    pub fn constraints(&self) -> &NameConstraints {
        &self.constraints
    }

    /// `leaf_lifetime` as configured.
    pub fn leaf_lifetime(&self) -> Duration {
        self.leaf_lifetime
    }

    /// The certificates sent after the leaf: the CA, then the rest of `ca_cert_file`.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Whether another load holds the same CA with the same settings (so leaves made by
    /// one are as good as the other's).
    pub fn same_as(&self, other: &Authority) -> bool {
        self.chain == other.chain && self.leaf_lifetime == other.leaf_lifetime
    }

    /// May this CA sign for `name`, by its name constraints?
    pub fn may_sign(&self, name: &LeafName) -> Result<(), NotPermitted> {
        self.constraints.permits(name)
    }

    /// Makes a leaf for `name` at `now`.
    pub fn issue(&self, name: &LeafName, now: SystemTime) -> Result<Issued, IssueError> {
        self.may_sign(name).map_err(IssueError::NotPermitted)?;
        self.sign(name, now)
    }

    /// Makes a leaf without asking the name constraints (the probe, and tests that show
    /// clients refuse what [`Self::may_sign`] refuses).
    pub(super) fn sign(&self, name: &LeafName, now: SystemTime) -> Result<Issued, IssueError> {
        let validity = leaf::leaf_validity(now, self.leaf_lifetime, &self.validity)
            .map_err(IssueError::Validity)?;
        let sign_err = |e: rcgen::Error| IssueError::Sign(e.to_string());
        let mut params = CertificateParams::default();
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        params.serial_number = Some(random_serial().map_err(IssueError::Sign)?);
        let mut dn = DistinguishedName::new();
        match name {
            LeafName::Dns(host) => {
                params.subject_alt_names = vec![SanType::DnsName(
                    Ia5String::try_from(host.as_str()).map_err(sign_err)?,
                )];
                // The CN is for old clients and logs; RFC 5280 caps it at 64 characters.
                if host.len() <= 64 {
                    dn.push(DnType::CommonName, host.as_str());
                }
            }
            // No CN for an address: OpenSSL checks a CN that looks like a host name
            // against DNS name constraints when the certificate has no DNS SAN.
            LeafName::Ip(ip) => params.subject_alt_names = vec![SanType::IpAddress(*ip)],
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = self.has_ski;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(sign_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(sign_err)?;
        Ok(Issued {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            validity,
        })
    }
}

/// 16 random bytes, positive and with no leading zero byte (so its DER form is 16 bytes).
fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness for a serial number".to_owned())?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// A CA must say it is one and be allowed to sign certificates.
fn check_is_ca(x509: &X509Certificate<'_>) -> Result<(), String> {
    let bc = x509
        .basic_constraints()
        .map_err(|e| format!("its basicConstraints cannot be read: {e}"))?;
    match bc {
        Some(bc) if bc.value.ca => {}
        Some(_) => {
            return Err("is not a CA certificate (basicConstraints says CA:FALSE)".to_owned())
        }
        None => {
            return Err("is not a CA certificate (it has no basicConstraints CA:TRUE)".to_owned())
        }
    }
    if let Some(ku) = x509
        .key_usage()
        .map_err(|e| format!("its keyUsage cannot be read: {e}"))?
    {
        if !ku.value.key_cert_sign() {
            return Err(format!(
                "its keyUsage ({}) lacks keyCertSign, so it may not sign certificates",
                ku.value
            ));
        }
    }
    if let Some(eku) = x509
        .extended_key_usage()
        .map_err(|e| format!("its extendedKeyUsage cannot be read: {e}"))?
    {
        if !(eku.value.any || eku.value.server_auth) {
            return Err(
                "its extendedKeyUsage does not include serverAuth, so clients refuse the TLS server certificates it signs"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

fn check_validity(v: &Validity, now: SystemTime) -> Result<(), String> {
    if now < v.not_before {
        return Err(format!(
            "is not valid yet: its notBefore is {}",
            humantime::format_rfc3339_seconds(v.not_before)
        ));
    }
    if now > v.not_after {
        return Err(format!(
            "has expired: its notAfter was {}",
            humantime::format_rfc3339_seconds(v.not_after)
        ));
    }
    Ok(())
}

/// The CA's subject as rcgen writes issuer names.
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, String> {
    let unusual = |what: &str| {
        format!(
            "its subject name has {what}, which tollgate cannot reproduce in the leaves it signs"
        )
    };
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(unusual("a multi-valued attribute"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| unusual("an attribute type with a huge OID"))?
            .collect();
        let value = attr.attr_value();
        let text = || std::str::from_utf8(value.data).map_err(|_| unusual("a non-UTF-8 string"));
        let bad = |_| unusual("a string its type does not allow");
        let v = match value.header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            Tag::PrintableString => {
                DnValue::PrintableString(PrintableString::try_from(text()?).map_err(bad)?)
            }
            Tag::Ia5String => DnValue::Ia5String(Ia5String::try_from(text()?).map_err(bad)?),
            Tag::T61String => {
                DnValue::TeletexString(TeletexString::try_from(text()?).map_err(bad)?)
            }
            Tag::BmpString => {
                DnValue::BmpString(BmpString::from_utf16be(value.data.to_vec()).map_err(bad)?)
            }
            Tag::UniversalString => DnValue::UniversalString(
                UniversalString::from_utf32be(value.data.to_vec()).map_err(bad)?,
            ),
            _ => return Err(unusual("an attribute that is not a string")),
        };
        dn.push(DnType::from_oid(&oid), v);
    }
    Ok(dn)
}
