//! JWK Sets (RFC 7517): the public keys that sign caller tokens, parsed once per load
//! into keys ring can verify with.
//!
//! Kept: RSA keys of 2048–8192 bits (for RS256 and PS256) and EC P-256 keys (ES256).
//! Skipped, and counted in [`KeySet::skipped`]: symmetric (`oct`) keys, other curves and
//! key types, keys whose `use` is not `sig`, keys whose `alg` is not one we verify. A set
//! with no usable key is an error: it could verify nothing.

use super::jwt::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// A public key ring can verify with.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `04 || x || y`.
    P256(Vec<u8>),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicKey::Rsa { n, .. } => write!(f, "Rsa({} bits)", n.len() * 8),
            PublicKey::P256(_) => f.write_str("P256"),
        }
    }
}

impl PublicKey {
    /// Can this key verify `alg`?
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (PublicKey::Rsa { .. }, Alg::Rs256 | Alg::Ps256) | (PublicKey::P256(_), Alg::Es256)
        )
    }
}

/// One usable key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one: the key verifies only that.
    pub alg: Option<Alg>,
    pub key: PublicKey,
}

/// The usable keys of one JWK Set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    /// Keys present but not usable (see the module docs).
    pub skipped: usize,
}

/// The largest JWK Set accepted (file or URL).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

impl KeySet {
    /// Parses a JWK Set document. Errors are short sentences naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, String> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(format!("larger than {} KiB", MAX_JWKS_BYTES / 1024));
        }
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JSON JWK Set: {e}"))?;
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return Err("not a JWK Set: no `keys` array".to_owned());
        };
        let mut set = KeySet::default();
        for (i, k) in keys.iter().enumerate() {
            match jwk(k) {
                Ok(Some(j)) => set.keys.push(j),
                Ok(None) => set.skipped += 1,
                Err(e) => return Err(format!("keys[{i}]: {e}")),
            }
        }
        if set.keys.is_empty() {
            return Err(format!(
                "no usable key: {} key(s), none an RSA (RS256, PS256) or EC P-256 (ES256) signing key",
                keys.len()
            ));
        }
        Ok(set)
    }

    /// The keys that may verify a token with this header's `kid` and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Alg,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |k| {
            k.key.fits(alg)
                && k.alg.is_none_or(|a| a == alg)
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    /// Does any key carry this `kid`?
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn field<'a>(k: &'a Value, name: &str) -> Option<&'a str> {
    k.get(name).and_then(Value::as_str)
}

fn b64(k: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = field(k, name).ok_or_else(|| format!("missing `{name}`"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("`{name}` is not base64url"))
}

/// `Ok(None)`: a key of a kind we do not use. `Err`: a key of our kind that is broken.
fn jwk(k: &Value) -> Result<Option<Jwk>, String> {
    if field(k, "use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match field(k, "alg") {
        None => None,
        Some(a) => match Alg::from_name(a) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
    };
    let kid = field(k, "kid").map(str::to_owned);
    let key = match field(k, "kty") {
        Some("RSA") => {
            let n = strip_zeros(b64(k, "n")?);
            let e = strip_zeros(b64(k, "e")?);
            let bits = n.len() * 8;
            if !(2048..=8192).contains(&bits) {
                return Err(format!(
                    "RSA key of {bits} bits; 2048 to 8192 bits are accepted"
                ));
            }
            if e.is_empty() || e.len() > 4 {
                return Err("RSA exponent out of range".to_owned());
            }
            PublicKey::Rsa { n, e }
        }
        Some("EC") => {
            if field(k, "crv") != Some("P-256") {
                return Ok(None);
            }
            let (x, y) = (b64(k, "x")?, b64(k, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes each".to_owned());
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::P256(point)
        }
        _ => return Ok(None),
    };
    if alg.is_some_and(|a| !key.fits(a)) {
        return Err("its `alg` does not fit its key type".to_owned());
    }
    Ok(Some(Jwk { kid, alg, key }))
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|b| **b == 0).count();
    v.drain(..lead);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_n(bits: usize) -> String {
        let mut n = vec![0xc5u8; bits / 8];
        n[0] = 0xc5;
        URL_SAFE_NO_PAD.encode(n)
    }

    #[test]
    fn keeps_rsa_and_p256_signing_keys_and_skips_the_rest() {
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "alg": "ES256",
             "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "enc", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "alg": "HS256", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AA"}
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).expect("parses");
        assert_eq!(set.keys.len(), 2);
        assert_eq!(set.skipped, 5);
        assert_eq!(set.candidates(Some("r"), Alg::Rs256).count(), 1);
        assert_eq!(set.candidates(Some("r"), Alg::Ps256).count(), 1);
        assert_eq!(set.candidates(Some("r"), Alg::Es256).count(), 0);
        assert_eq!(set.candidates(Some("e"), Alg::Es256).count(), 1);
        assert_eq!(set.candidates(None, Alg::Es256).count(), 1);
        assert_eq!(set.candidates(Some("zzz"), Alg::Rs256).count(), 0);
        assert!(set.has_kid("e") && !set.has_kid("h"));
    }

    #[test]
    fn refuses_what_cannot_be_a_key_set() {
        for (doc, needle) in [
            ("not json", "not a JSON JWK Set"),
            ("{}", "no `keys` array"),
            (r#"{"keys": []}"#, "no usable key"),
            (r#"{"keys": [{"kty": "oct", "k": "AA"}]}"#, "no usable key"),
            (r#"{"keys": [{"kty": "RSA", "e": "AQAB"}]}"#, "missing `n`"),
            (
                r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#,
                "24 bits",
            ),
            (
                r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#,
                "32 bytes",
            ),
        ] {
            let e = KeySet::parse(doc.as_bytes()).expect_err(doc);
            assert!(e.contains(needle), "{doc}: {e}");
        }
    }
}
