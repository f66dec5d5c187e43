//! Verifying a caller's JWT (JWS compact serialization, RFC 7515/7519) with ring.
//!
//! The rules, in the order they are checked:
//! 1. three base64url parts; a header `alg` of RS256, ES256 or PS256 (`none`, HS* and
//!    anything else are refused: an HMAC "signed" with our public key proves nothing);
//!    no `crit` extensions;
//! 2. a key from the JWK Set: the one whose `kid` matches, or, for a token without `kid`,
//!    any key of the right type; its type (and `alg`, if it names one) must fit the
//!    header's `alg`. A `kid` no key carries is [`JwtError::UnknownKid`], which the caller
//!    may answer with one JWKS refresh;
//! 3. the signature over `header.payload`;
//! 4. the claims: `iss` equals the issuer, `aud` (a string or a list) holds one of the
//!    audiences, `exp` is present and `now < exp + LEEWAY`, `nbf` (if present)
//!    `now + LEEWAY >= nbf`, and the identity claim is a non-empty string.

use super::jwks::{KeySet, PublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The signature algorithms we verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Rs256,
    Es256,
    Ps256,
}

impl Alg {
    pub fn from_name(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "PS256" => Some(Alg::Ps256),
            _ => None,
        }
    }
}

/// What a token must say about itself (from `callers.jwt`).
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub identity_claim: String,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The identity claim's value.
    pub caller: String,
    /// `exp`, seconds since the epoch.
    pub exp: u64,
}

/// Why a token was refused. Messages name the rule, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Malformed(&'static str),
    /// `alg` is `none`, HS*, or another we do not verify (the name, as sent, cut short).
    Algorithm(String),
    /// No key in the set carries this `kid`.
    UnknownKid(String),
    /// No key of the right type for a token without `kid`.
    NoKey,
    Signature,
    Issuer,
    Audience,
    Expired,
    NotYetValid,
    MissingExp,
    Identity,
}

impl JwtError {
    pub fn message(&self) -> String {
        match self {
            JwtError::Malformed(what) => format!("the token is not a JWT: {what}"),
            JwtError::Algorithm(a) => {
                format!("token algorithm {a:?} is not accepted (RS256, ES256 or PS256 only)")
            }
            JwtError::UnknownKid(kid) => format!("no key with kid {kid:?} signs caller tokens"),
            JwtError::NoKey => "no key fits the token's algorithm".to_owned(),
            JwtError::Signature => "the token's signature does not verify".to_owned(),
            JwtError::Issuer => "the token's issuer (iss) is not the configured issuer".to_owned(),
            JwtError::Audience => {
                "the token's audience (aud) holds none of the configured audiences".to_owned()
            }
            JwtError::Expired => "the token has expired (exp)".to_owned(),
            JwtError::NotYetValid => "the token is not valid yet (nbf)".to_owned(),
            JwtError::MissingExp => "the token has no expiry (exp)".to_owned(),
            JwtError::Identity => "the token has no caller identity claim".to_owned(),
        }
    }
}

/// The header fields we read.
#[derive(Debug)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
}

/// Splits and reads the header (rule 1), without touching keys.
pub fn header(token: &str) -> Result<(Header, &str, &str, &str), JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("it needs three dot-separated parts"));
    };
    let header: Value = decode_json(h).ok_or(JwtError::Malformed("its header is not JSON"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed("its header has no alg"))?;
    let Some(alg) = Alg::from_name(alg) else {
        return Err(JwtError::Algorithm(alg.chars().take(16).collect()));
    };
    if header.get("crit").is_some() {
        return Err(JwtError::Malformed("its header has crit extensions"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed("its kid is not a string")),
    };
    Ok((Header { alg, kid }, h, p, s))
}

/// Rules 1–4. `now`: seconds since the epoch.
pub fn verify(token: &str, keys: &KeySet, policy: &Policy, now: u64) -> Result<Verified, JwtError> {
    let (head, h, p, s) = header(token)?;
    if let Some(kid) = &head.kid {
        if !keys.has_kid(kid) {
            return Err(JwtError::UnknownKid(kid.chars().take(64).collect()));
        }
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed("its signature is not base64url"))?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let mut any = false;
    let mut ok = false;
    for k in keys.candidates(head.kid.as_deref(), head.alg) {
        any = true;
        if check_signature(head.alg, &k.key, signed, &sig) {
            ok = true;
            break;
        }
    }
    if !any {
        return Err(JwtError::NoKey);
    }
    if !ok {
        return Err(JwtError::Signature);
    }
    let claims: Value = decode_json(p).ok_or(JwtError::Malformed("its claims are not JSON"))?;
    check_claims(&claims, policy, now)
}

fn check_signature(alg: Alg, key: &PublicKey, signed: &[u8], sig: &[u8]) -> bool {
    match (alg, key) {
        (Alg::Rs256, PublicKey::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, sig)
            .is_ok(),
        (Alg::Ps256, PublicKey::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PSS_2048_8192_SHA256, signed, sig)
            .is_ok(),
        (Alg::Es256, PublicKey::P256(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
        _ => false,
    }
}

fn check_claims(claims: &Value, policy: &Policy, now: u64) -> Result<Verified, JwtError> {
    if claims.get("iss").and_then(Value::as_str) != Some(policy.issuer.as_str()) {
        return Err(JwtError::Issuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => policy.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| policy.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::Audience);
    }
    let exp = match claims.get("exp") {
        Some(v) => seconds(v).ok_or(JwtError::Malformed("its exp is not a number"))?,
        None => return Err(JwtError::MissingExp),
    };
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(JwtError::Expired);
    }
    if let Some(v) = claims.get("nbf") {
        let nbf = seconds(v).ok_or(JwtError::Malformed("its nbf is not a number"))?;
        if now.saturating_add(LEEWAY_SECS) < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    match claims.get(&policy.identity_claim).and_then(Value::as_str) {
        Some(c) if !c.is_empty() && c.len() <= 1024 && !c.chars().any(char::is_control) => {
            Ok(Verified {
                caller: c.to_owned(),
                exp,
            })
        }
        _ => Err(JwtError::Identity),
    }
}

/// A NumericDate: integer or fractional seconds, never negative.
fn seconds(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    //! Tokens signed here with throwaway ring keys (generated per run).
    use super::super::jwks::KeySet;
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    pub(crate) const NOW: u64 = 1_900_000_000;

    pub(crate) fn policy() -> Policy {
        Policy {
            issuer: "https://issuer.test".into(),
            audiences: vec!["tollgate".into()],
            identity_claim: "sub".into(),
        }
    }

    pub(crate) fn claims() -> Value {
        json!({"iss": "https://issuer.test", "aud": ["other", "tollgate"], "sub": "system:serviceaccount:billing:api", "exp": NOW + 600, "nbf": NOW - 10})
    }

    pub(crate) struct EcKey {
        pair: EcdsaKeyPair,
        pub kid: String,
    }

    impl EcKey {
        pub(crate) fn new(kid: &str) -> EcKey {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("generate");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("parse");
            EcKey {
                pair,
                kid: kid.into(),
            }
        }

        pub(crate) fn jwk(&self) -> Value {
            let pt = self.pair.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                   "x": URL_SAFE_NO_PAD.encode(&pt[1..33]), "y": URL_SAFE_NO_PAD.encode(&pt[33..])})
        }

        pub(crate) fn set(&self) -> KeySet {
            KeySet::parse(json!({"keys": [self.jwk()]}).to_string().as_bytes()).expect("set")
        }

        pub(crate) fn sign(&self, header: Value, claims: &Value) -> String {
            let signing = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self
                .pair
                .sign(&SystemRandom::new(), signing.as_bytes())
                .expect("sign");
            format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }

        pub(crate) fn token(&self, claims: &Value) -> String {
            self.sign(
                json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"}),
                claims,
            )
        }
    }

    #[test]
    fn a_good_token_verifies_and_names_its_caller() {
        let k = EcKey::new("k1");
        let v = verify(&k.token(&claims()), &k.set(), &policy(), NOW).expect("verifies");
        assert_eq!(v.caller, "system:serviceaccount:billing:api");
        assert_eq!(v.exp, NOW + 600);
        // A string aud, no nbf, and another identity claim.
        let mut c = claims();
        c["aud"] = json!("tollgate");
        c.as_object_mut().expect("object").remove("nbf");
        c["email"] = json!("a@b.test");
        let p = Policy {
            identity_claim: "email".into(),
            ..policy()
        };
        assert_eq!(
            verify(&k.token(&c), &k.set(), &p, NOW).expect("ok").caller,
            "a@b.test"
        );
        // No kid: any key of the right type.
        let t = k.sign(json!({"alg": "ES256"}), &claims());
        assert!(verify(&t, &k.set(), &policy(), NOW).is_ok());
    }

    #[test]
    fn each_rule_refuses() {
        let k = EcKey::new("k1");
        let set = k.set();
        let bad = |c: Value| verify(&k.token(&c), &set, &policy(), NOW);
        let with = |key: &str, v: Value| {
            let mut c = claims();
            c[key] = v;
            c
        };
        assert_eq!(
            bad(with("iss", json!("https://evil.test"))),
            Err(JwtError::Issuer)
        );
        assert_eq!(bad(with("aud", json!(["x"]))), Err(JwtError::Audience));
        assert_eq!(bad(with("aud", json!(7))), Err(JwtError::Audience));
        assert_eq!(
            bad(with("exp", json!(NOW - LEEWAY_SECS))),
            Err(JwtError::Expired)
        );
        assert!(
            bad(with("exp", json!(NOW - LEEWAY_SECS + 1))).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            bad(with("nbf", json!(NOW + LEEWAY_SECS + 1))),
            Err(JwtError::NotYetValid)
        );
        assert!(
            bad(with("nbf", json!(NOW + LEEWAY_SECS))).is_ok(),
            "within the leeway"
        );
        assert_eq!(bad(with("sub", json!(""))), Err(JwtError::Identity));
        assert_eq!(bad(with("sub", json!(5))), Err(JwtError::Identity));
        let mut c = claims();
        c.as_object_mut().expect("object").remove("exp");
        assert_eq!(bad(c), Err(JwtError::MissingExp));

        // Tampered claims keep the old signature.
        let t = k.token(&claims());
        let parts: Vec<&str> = t.split('.').collect();
        let forged =
            URL_SAFE_NO_PAD.encode(with("sub", json!("system:serviceaccount:ops:x")).to_string());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&tampered, &set, &policy(), NOW),
            Err(JwtError::Signature)
        );
        // Signed by another key with the same kid.
        let other = EcKey::new("k1");
        assert_eq!(
            verify(&other.token(&claims()), &set, &policy(), NOW),
            Err(JwtError::Signature)
        );
        // Unknown kid.
        let stranger = EcKey::new("k2");
        assert_eq!(
            verify(&stranger.token(&claims()), &set, &policy(), NOW),
            Err(JwtError::UnknownKid("k2".into()))
        );
        // alg none, with and without a signature; HS256; an alg that does not fit the key.
        for (alg, sig) in [("none", ""), ("none", "AAAA"), ("HS256", "AAAA")] {
            let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "k1"}).to_string());
            let c = URL_SAFE_NO_PAD.encode(claims().to_string());
            assert_eq!(
                verify(&format!("{h}.{c}.{sig}"), &set, &policy(), NOW),
                Err(JwtError::Algorithm(alg.into()))
            );
        }
        let rs = k.sign(json!({"alg": "RS256", "kid": "k1"}), &claims());
        assert_eq!(verify(&rs, &set, &policy(), NOW), Err(JwtError::NoKey));
        let crit = k.sign(
            json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}),
            &claims(),
        );
        assert!(matches!(
            verify(&crit, &set, &policy(), NOW),
            Err(JwtError::Malformed(_))
        ));
        for junk in ["", "a.b", "a.b.c.d", "!!.b.c", "e30.e30.e30"] {
            assert!(
                matches!(
                    verify(junk, &set, &policy(), NOW),
                    Err(JwtError::Malformed(_))
                ),
                "{junk}"
            );
        }
    }
}
