//! JWTs, both ways:
//! - [`SigningKey`] and [`client_assertion`]: the RFC 7523 §2.2 assertion that
//!   authenticates a `private_key_jwt` client, signed with ring: ES256 from a P-256 key
//!   (PKCS#8 or SEC1 PEM), RS256 or PS256 from an RSA key of 2048–4096 bits (PKCS#8 or
//!   PKCS#1 PEM); with a [`Certificate`], its `x5t#S256` (and `x5t`) thumbprints in the
//!   header (Entra ID certificate credentials).
//! - [`service_account_assertion`]: the RFC 7523 §2.1 grant assertion of a Google
//!   service account (RS256, `kid` = `private_key_id`, one hour at most).
//! - [`decode_claims`]: a JWT access token's claims, decoded **without verification**
//!   (the upstream verifies tokens; we only read `exp` and show claims to operators).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256,
};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Map, Value};
use tollgate_rules::SigningAlg;

use super::schedule::JwtTimes;

/// Lifetime of a client assertion (`exp - iat`).
pub const ASSERTION_LIFETIME_SECS: u64 = 60;

/// Lifetime of a service account's grant assertion: Google accepts at most one hour.
pub const SERVICE_ACCOUNT_ASSERTION_SECS: u64 = 3600;

/// The `client_assertion_type` of RFC 7523 §2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A private key that signs assertions. No `Debug` output beyond the algorithm.
pub(crate) enum SigningKey {
    Es256(EcdsaKeyPair),
    Rsa {
        pair: RsaKeyPair,
        /// PS256 (RSASSA-PSS) instead of RS256 (PKCS#1 v1.5).
        pss: bool,
    },
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, [redacted])", self.alg())
    }
}

impl SigningKey {
    /// Parses a PEM private key. `alg`: the configured `signing_alg`; `None` derives it
    /// from the key (ES256 or RS256). Errors are short sentences fit for an
    /// [`AuthError`], never key bytes.
    ///
    /// [`AuthError`]: super::AuthError
    pub(crate) fn from_pem(pem_text: &[u8], alg: Option<SigningAlg>) -> Result<Self, String> {
        if contains(pem_text, b"ENCRYPTED PRIVATE KEY") {
            return Err("encrypted private keys are not supported; store the key \
                        unencrypted (PKCS#8, SEC1 or PKCS#1 PEM) in a protected file"
                .into());
        }
        let der = PrivateKeyDer::from_pem_slice(pem_text).map_err(|e| match e {
            pem::Error::NoItemsFound => "no PEM private key found (expected a PRIVATE KEY, \
                                         EC PRIVATE KEY or RSA PRIVATE KEY block)"
                .to_string(),
            other => format!("not a readable PEM file: {other}"),
        })?;
        let rng = SystemRandom::new();
        let pss = alg == Some(SigningAlg::Ps256);
        let rsa = |pair| SigningKey::Rsa { pair, pss };
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(rsa)
                .map_err(|e| format!("RSA private key rejected: {e}"))?,
            PrivateKeyDer::Sec1(k) => {
                let pkcs8 = sec1_p256_to_pkcs8(k.secret_sec1_der());
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                    .map(SigningKey::Es256)
                    .map_err(|e| {
                        format!("EC private key rejected (only P-256 is supported): {e}")
                    })?
            }
            PrivateKeyDer::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                match EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
                    Ok(k) => SigningKey::Es256(k),
                    Err(ec) => match RsaKeyPair::from_pkcs8(der) {
                        Ok(k) => rsa(k),
                        Err(rsa) => {
                            return Err(format!(
                                "unsupported private key: expected a P-256 EC key (ES256) or \
                                 an RSA key of 2048-4096 bits (RS256, PS256) (as EC: {ec}; as RSA: {rsa})"
                            ))
                        }
                    },
                }
            }
            _ => return Err("unsupported private key format".into()),
        };
        match (alg, &key) {
            (None, _)
            | (Some(SigningAlg::Es256), SigningKey::Es256(_))
            | (Some(SigningAlg::Rs256 | SigningAlg::Ps256), SigningKey::Rsa { .. }) => Ok(key),
            (Some(SigningAlg::Es256), SigningKey::Rsa { .. }) => {
                Err("signing_alg ES256 needs a P-256 EC key, but this is an RSA key".into())
            }
            (Some(a @ (SigningAlg::Rs256 | SigningAlg::Ps256)), SigningKey::Es256(_)) => {
                Err(format!(
                    "signing_alg {} needs an RSA key, but this is an EC key",
                    if a == SigningAlg::Ps256 {
                        "PS256"
                    } else {
                        "RS256"
                    }
                ))
            }
        }
    }

    /// The JWS `alg`.
    pub(crate) fn alg(&self) -> &'static str {
        match self {
            SigningKey::Es256(_) => "ES256",
            SigningKey::Rsa { pss: false, .. } => "RS256",
            SigningKey::Rsa { pss: true, .. } => "PS256",
        }
    }

    /// The public key as an X.509 certificate carries it in its SubjectPublicKeyInfo:
    /// the uncompressed EC point, or the DER `RSAPublicKey`.
    pub(crate) fn public_key(&self) -> &[u8] {
        match self {
            SigningKey::Es256(k) => k.public_key().as_ref(),
            SigningKey::Rsa { pair, .. } => pair.public().as_ref(),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        let signed = match self {
            SigningKey::Es256(k) => k.sign(&rng, message).map(|s| s.as_ref().to_vec()),
            SigningKey::Rsa { pair, pss } => {
                let mut sig = vec![0; pair.public().modulus_len()];
                let padding: &'static dyn ring::signature::RsaEncoding = if *pss {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                pair.sign(padding, &rng, message, &mut sig).map(|()| sig)
            }
        };
        signed.map_err(|_| "signing the assertion failed".to_string())
    }
}

/// An X.509 certificate of a signing key (`certificate_file:`): its thumbprints and the
/// public key it certifies.
#[derive(Debug)]
pub(crate) struct Certificate {
    /// `x5t#S256`: base64url SHA-256 of the DER certificate (RFC 7515 §4.1.8).
    pub x5t_s256: String,
    /// `x5t`: base64url SHA-1 of the DER certificate (RFC 7515 §4.1.7).
    pub x5t: String,
    /// The SubjectPublicKeyInfo's key bits.
    public_key: Vec<u8>,
}

impl Certificate {
    /// The first certificate of a PEM file.
    pub(crate) fn from_pem(pem_text: &[u8]) -> Result<Self, String> {
        let der = CertificateDer::from_pem_slice(pem_text).map_err(|e| match e {
            pem::Error::NoItemsFound => {
                "no PEM certificate found (expected a CERTIFICATE block)".to_string()
            }
            other => format!("not a readable PEM file: {other}"),
        })?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let public_key = cert.public_key().subject_public_key.data.to_vec();
        let b64 = |alg| URL_SAFE_NO_PAD.encode(digest::digest(alg, der.as_ref()));
        Ok(Certificate {
            x5t_s256: b64(&digest::SHA256),
            x5t: b64(&digest::SHA1_FOR_LEGACY_USE_ONLY),
            public_key,
        })
    }

    /// Does this certificate certify `key`?
    pub(crate) fn certifies(&self, key: &SigningKey) -> bool {
        self.public_key == key.public_key()
    }
}

/// Header members beyond `alg` and `typ`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HeaderExtras<'a> {
    pub kid: Option<&'a str>,
    pub x5t_s256: Option<&'a str>,
    pub x5t: Option<&'a str>,
}

/// Signs a JWS compact token: header `{alg, typ: JWT, ...extras}`, the given claims.
fn sign_jwt(key: &SigningKey, extras: &HeaderExtras<'_>, claims: &Value) -> Result<String, String> {
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(key.alg()));
    header.insert("typ".into(), Value::from("JWT"));
    for (name, value) in [
        ("kid", extras.kid),
        ("x5t#S256", extras.x5t_s256),
        ("x5t", extras.x5t),
    ] {
        if let Some(v) = value {
            header.insert(name.into(), Value::from(v));
        }
    }
    let mut out = String::with_capacity(512);
    URL_SAFE_NO_PAD.encode_string(Value::Object(header).to_string(), &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut out);
    let signature = key.sign(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut out);
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Wraps a SEC1 `ECPrivateKey` (RFC 5915) in a PKCS#8 `PrivateKeyInfo` for P-256, the
/// only form ring reads. A key on another curve still fails: ring checks the curve
/// named inside the SEC1 structure against the one named here.
pub(crate) fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    const ALG_ID: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    const VERSION_0: &[u8] = &[0x02, 0x01, 0x00];
    let octets = der_tlv(0x04, sec1);
    let mut body = Vec::with_capacity(VERSION_0.len() + ALG_ID.len() + octets.len());
    body.extend_from_slice(VERSION_0);
    body.extend_from_slice(ALG_ID);
    body.extend_from_slice(&octets);
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// A fresh `jti`: 128 random bits, base64url.
pub(crate) fn new_jti() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness for the assertion jti".to_string())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Signs an RFC 7523 client assertion: `iss` = `sub` = `client_id`, `aud` = `audience`
/// (the token URL unless `assertion_audience` says otherwise), a unique `jti`, `iat` =
/// `now_unix`, `exp` = `iat + 60`, and `kid`, `x5t#S256`, `x5t` in the header when given.
pub(crate) fn client_assertion(
    key: &SigningKey,
    client_id: &str,
    audience: &str,
    extras: &HeaderExtras<'_>,
    now_unix: u64,
    jti: &str,
) -> Result<String, String> {
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti,
        "iat": now_unix,
        "exp": now_unix.saturating_add(ASSERTION_LIFETIME_SECS),
    });
    sign_jwt(key, extras, &claims)
}

/// What a service account asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ask<'a> {
    /// An access token with these scopes (space-separated).
    Scope(&'a str),
    /// An ID token for this audience.
    IdToken(&'a str),
}

/// Signs a Google service account's grant assertion (RFC 7523 §2.1): header `kid` =
/// `private_key_id`; claims `iss` = `client_email`, `aud`, `iat`, `exp` = `iat + 3600`,
/// and `scope` or `target_audience`.
pub(crate) fn service_account_assertion(
    key: &SigningKey,
    client_email: &str,
    private_key_id: Option<&str>,
    audience: &str,
    ask: Ask<'_>,
    now_unix: u64,
) -> Result<String, String> {
    let mut claims = json!({
        "iss": client_email,
        "aud": audience,
        "iat": now_unix,
        "exp": now_unix.saturating_add(SERVICE_ACCOUNT_ASSERTION_SECS),
    });
    if let Some(obj) = claims.as_object_mut() {
        match ask {
            Ask::Scope(s) => obj.insert("scope".into(), Value::from(s)),
            Ask::IdToken(aud) => obj.insert("target_audience".into(), Value::from(aud)),
        };
    }
    let extras = HeaderExtras {
        kid: private_key_id,
        ..HeaderExtras::default()
    };
    sign_jwt(key, &extras, &claims)
}

/// The claims of a JWS compact token (`header.payload.signature`), decoded **without
/// verifying** the signature. `None` for anything else (opaque tokens, JWE, garbage).
pub fn decode_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&b64url(header)?).ok()?;
    header.get("alg")?;
    let claims: Value = serde_json::from_slice(&b64url(payload)?).ok()?;
    claims.is_object().then_some(claims)
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

/// `exp` and `iat` from decoded claims (integers, or finite numbers floored).
pub(crate) fn jwt_times(claims: &Value) -> JwtTimes {
    let num = |name: &str| -> Option<i64> {
        let v = claims.get(name)?;
        v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9.0e15)
                .map(|f| f.floor() as i64)
        })
    };
    JwtTimes {
        exp: num("exp"),
        iat: num("iat"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ring::signature::{
        UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
        RSA_PSS_2048_8192_SHA256,
    };

    // Test-only keys; see fixtures/README.md for the commands that made them.
    const EC_SEC1: &str = include_str!("fixtures/ec-p256-sec1.pem");
    const EC_PKCS8: &str = include_str!("fixtures/ec-p256-pkcs8.pem");
    const EC_PUB_POINT: &[u8] = include_bytes!("fixtures/ec-p256-public.bin");
    const EC_P384: &str = include_str!("fixtures/ec-p384-pkcs8.pem");
    const RSA_PKCS1: &str = include_str!("fixtures/rsa-2048-pkcs1.pem");
    const RSA_PKCS8: &str = include_str!("fixtures/rsa-2048-pkcs8.pem");
    const RSA_PUB_DER: &[u8] = include_bytes!("fixtures/rsa-2048-public-pkcs1.der");
    const RSA_CERT: &str = include_str!("fixtures/rsa-2048-cert.pem");
    const RSA_CERT_X5T_S256: &str = include_str!("fixtures/rsa-2048-cert.x5t-s256");
    const RSA_CERT_X5T: &str = include_str!("fixtures/rsa-2048-cert.x5t");
    const EC_CERT: &str = include_str!("fixtures/ca.pem");

    /// Splits and checks an assertion against an independently made public key;
    /// returns (header, claims).
    fn verify(
        jwt: &str,
        alg: &'static dyn ring::signature::VerificationAlgorithm,
        public: &[u8],
    ) -> (Value, Value) {
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        UnparsedPublicKey::new(alg, public)
            .verify(signed.as_bytes(), &sig)
            .expect("signature verifies");
        let (h, c) = signed.split_once('.').unwrap();
        (
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap(),
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap(),
        )
    }

    fn assertion(key: &SigningKey, kid: Option<&str>) -> String {
        client_assertion(
            key,
            "billing-egress",
            "https://idp.example.com/oauth2/token",
            &HeaderExtras {
                kid,
                ..HeaderExtras::default()
            },
            1_700_000_000,
            "jti-1",
        )
        .unwrap()
    }

    fn check_claims(claims: &Value) {
        assert_eq!(
            claims,
            &json!({
                "iss": "billing-egress",
                "sub": "billing-egress",
                "aud": "https://idp.example.com/oauth2/token",
                "jti": "jti-1",
                "iat": 1_700_000_000u64,
                "exp": 1_700_000_060u64,
            })
        );
    }

    #[test]
    fn es256_from_sec1_verifies_with_openssl_public_key() {
        let key = SigningKey::from_pem(EC_SEC1.as_bytes(), None).unwrap();
        assert_eq!(key.alg(), "ES256");
        let jwt = assertion(&key, Some("k1"));
        let (header, claims) = verify(&jwt, &ECDSA_P256_SHA256_FIXED, EC_PUB_POINT);
        assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}));
        check_claims(&claims);
    }

    #[test]
    fn es256_from_pkcs8_is_the_same_key() {
        let key = SigningKey::from_pem(EC_PKCS8.as_bytes(), Some(SigningAlg::Es256)).unwrap();
        let jwt = assertion(&key, None);
        let (header, claims) = verify(&jwt, &ECDSA_P256_SHA256_FIXED, EC_PUB_POINT);
        assert_eq!(header, json!({"alg": "ES256", "typ": "JWT"}));
        check_claims(&claims);
    }

    /// A PEM block built at test time (no key material is committed in this file).
    fn pem_block(label: &str, base64_body: &str) -> String {
        let dashes = "-----";
        format!("{dashes}BEGIN {label}{dashes}\n{base64_body}\n{dashes}END {label}{dashes}\n")
    }

    #[test]
    fn es256_from_a_key_generated_now() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pem_text = pem_block(
            "PRIVATE KEY",
            &base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref()),
        );
        let key = SigningKey::from_pem(pem_text.as_bytes(), None).unwrap();
        let jwt = assertion(&key, None);
        let (_, claims) = verify(&jwt, &ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        check_claims(&claims);
    }

    #[test]
    fn rs256_from_pkcs1_and_pkcs8_verify_with_openssl_public_key() {
        for (pem_text, alg) in [(RSA_PKCS1, None), (RSA_PKCS8, Some(SigningAlg::Rs256))] {
            let key = SigningKey::from_pem(pem_text.as_bytes(), alg).unwrap();
            assert_eq!(key.alg(), "RS256");
            let jwt = assertion(&key, Some("rsa-1"));
            let (header, claims) = verify(&jwt, &RSA_PKCS1_2048_8192_SHA256, RSA_PUB_DER);
            assert_eq!(
                header,
                json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"})
            );
            check_claims(&claims);
        }
    }

    #[test]
    fn ps256_verifies_with_openssl_public_key_and_differs_each_time() {
        let key = SigningKey::from_pem(RSA_PKCS8.as_bytes(), Some(SigningAlg::Ps256)).unwrap();
        assert_eq!(key.alg(), "PS256");
        let jwt = assertion(&key, None);
        let (header, claims) = verify(&jwt, &RSA_PSS_2048_8192_SHA256, RSA_PUB_DER);
        assert_eq!(header, json!({"alg": "PS256", "typ": "JWT"}));
        check_claims(&claims);
        // PSS is randomised (a salt per signature); PKCS#1 v1.5 is not.
        assert_ne!(jwt, assertion(&key, None));
        // Not verifiable as RS256: the padding really is PSS.
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, RSA_PUB_DER)
                .verify(signed.as_bytes(), &sig)
                .is_err()
        );
    }

    #[test]
    fn certificate_thumbprints_match_openssl() {
        let cert = Certificate::from_pem(RSA_CERT.as_bytes()).unwrap();
        assert_eq!(cert.x5t_s256, RSA_CERT_X5T_S256.trim());
        assert_eq!(cert.x5t, RSA_CERT_X5T.trim());
        let rsa = SigningKey::from_pem(RSA_PKCS1.as_bytes(), None).unwrap();
        assert!(cert.certifies(&rsa));
        let ec = SigningKey::from_pem(EC_SEC1.as_bytes(), None).unwrap();
        assert!(!cert.certifies(&ec));
        // The CA fixture certifies another (discarded) EC key.
        let other = Certificate::from_pem(EC_CERT.as_bytes()).unwrap();
        assert!(!other.certifies(&ec) && !other.certifies(&rsa));
        // With thumbprints in the header.
        let jwt = client_assertion(
            &rsa,
            "app",
            "https://login.example/token",
            &HeaderExtras {
                kid: None,
                x5t_s256: Some(&cert.x5t_s256),
                x5t: Some(&cert.x5t),
            },
            1,
            "j",
        )
        .unwrap();
        let (header, _) = verify(&jwt, &RSA_PKCS1_2048_8192_SHA256, RSA_PUB_DER);
        assert_eq!(
            header,
            json!({"alg": "RS256", "typ": "JWT", "x5t#S256": RSA_CERT_X5T_S256.trim(), "x5t": RSA_CERT_X5T.trim()})
        );
        for (bad, why) in [
            ("hello", "no PEM certificate"),
            (RSA_PKCS1, "no PEM certificate"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not an X.509",
            ),
        ] {
            let e = Certificate::from_pem(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn service_account_assertions() {
        let key = SigningKey::from_pem(RSA_PKCS8.as_bytes(), None).unwrap();
        let jwt = service_account_assertion(
            &key,
            "sa@p.iam.gserviceaccount.com",
            Some("kid-1"),
            "https://oauth2.googleapis.com/token",
            Ask::Scope("a b"),
            1_700_000_000,
        )
        .unwrap();
        let (header, claims) = verify(&jwt, &RSA_PKCS1_2048_8192_SHA256, RSA_PUB_DER);
        assert_eq!(
            header,
            json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
        );
        assert_eq!(
            claims,
            json!({
                "iss": "sa@p.iam.gserviceaccount.com",
                "aud": "https://oauth2.googleapis.com/token",
                "scope": "a b",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
        let jwt = service_account_assertion(
            &key,
            "sa@p",
            None,
            "https://oauth2.googleapis.com/token",
            Ask::IdToken("https://svc.run.app"),
            10,
        )
        .unwrap();
        let (header, claims) = verify(&jwt, &RSA_PKCS1_2048_8192_SHA256, RSA_PUB_DER);
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT"}));
        assert_eq!(claims["target_audience"], "https://svc.run.app");
        assert!(claims.get("scope").is_none());
        assert_eq!(claims["exp"], 3610);
    }

    #[test]
    fn key_problems_are_explained() {
        let err = |pem_text: &str, alg| SigningKey::from_pem(pem_text.as_bytes(), alg).unwrap_err();
        assert!(
            err(EC_P384, None).contains("P-256 EC key"),
            "{}",
            err(EC_P384, None)
        );
        assert!(err(RSA_PKCS1, Some(SigningAlg::Es256)).contains("RSA key"));
        assert!(err(EC_SEC1, Some(SigningAlg::Rs256)).contains("EC key"));
        assert!(err(EC_SEC1, Some(SigningAlg::Ps256)).contains("PS256 needs an RSA key"));
        assert!(err("hello", None).contains("no PEM private key"));
        assert!(err(&pem_block("ENCRYPTED PRIVATE KEY", "AAAA"), None).contains("encrypted"));
        let bad_der = pem_block("PRIVATE KEY", "AAAA");
        assert!(err(&bad_der, None).contains("unsupported private key"));
        // Never echoes key material.
        let e = err(RSA_PKCS1, Some(SigningAlg::Es256));
        assert!(!e.contains("MII"), "{e}");
    }

    #[test]
    fn jti_is_unique() {
        let a = new_jti().unwrap();
        let b = new_jti().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = vec![0u8; 300];
        assert_eq!(&der_tlv(0x04, &long)[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn decode_claims_of_jwts_only() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"at+jwt"}"#);
        let c = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":1700000300,"iat":1700000000.5}"#);
        let token = format!("{h}.{c}.c2ln");
        let claims = decode_claims(&token).unwrap();
        assert_eq!(claims["sub"], "x");
        assert_eq!(
            jwt_times(&claims),
            JwtTimes {
                exp: Some(1_700_000_300),
                iat: Some(1_700_000_000)
            }
        );
        // Padding tolerated.
        assert!(decode_claims(&format!("{h}==.{c}=.x")).is_some());
        for opaque in [
            "2YotnFZFEjr1zCsicMWpAA",
            "a.b.c",
            "a.b.c.d.e",
            "",
            "..",
            &format!("{h}.bm90IGpzb24.x"),
            &format!("{h}.WzFd.x"), // "[1]": not an object
        ] {
            assert_eq!(decode_claims(opaque), None, "{opaque}");
        }
        assert_eq!(
            jwt_times(&json!({"exp": "soon", "iat": 1e300})),
            JwtTimes::default()
        );
    }
}
