//! Caller credentials for the `tollgate-callers` rows, made fresh in the run's work
//! directory: an htpasswd file with one bcrypt entry (the `bcrypt` crate, `$2y$` at cost
//! 5, what `htpasswd -nbB` writes), and a P-256 key (ring) whose JWK Set the config
//! names and which signs one ES256 JWT. Each request then carries the same
//! `Proxy-Authorization`, so after the first one the proxy answers from its verification
//! cache: the rows measure a warm caller, not bcrypt or a signature check (those are the
//! micro benches `callers_cold/*`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The htpasswd user of `tollgate-callers`.
pub const BASIC_USER: &str = "bench-basic";
/// The `sub` of `tollgate-callers-jwt`'s token.
pub const JWT_SUBJECT: &str = "bench-jwt";
const ISSUER: &str = "https://issuer.bench.test";
const AUDIENCE: &str = "tollgate";
/// htpasswd's own default for `-B`.
const BCRYPT_COST: u32 = 5;
/// Longer than any run; the proxy caches a verified JWT for at most an hour anyway.
const JWT_LIFETIME_S: u64 = 24 * 3600;

/// The files the config names and the header values requests carry.
pub struct Callers {
    pub htpasswd: PathBuf,
    pub jwks: PathBuf,
    /// `Basic base64(bench-basic:password)`.
    pub basic: String,
    /// `Bearer <ES256 JWT>`.
    pub bearer: String,
}

impl Callers {
    pub fn make(dir: &Path) -> Result<Callers, String> {
        let password = random_text(18)?;
        let hash = bcrypt::hash_with_result(&password, BCRYPT_COST)
            .map_err(|e| format!("bcrypt: {e}"))?
            .format_for_version(bcrypt::Version::TwoY);
        let htpasswd = dir.join("callers.htpasswd");
        write(&htpasswd, &format!("{BASIC_USER}:{hash}\n"))?;

        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot generate a P-256 key")?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| "cannot read the P-256 key just made")?;
        let point = key.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256", "use": "sig",
                         "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                         "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        let jwks = dir.join("callers-jwks.json");
        write(&jwks, &json!({ "keys": [jwk] }).to_string())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| format!("clock: {e}"))?
            .as_secs();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD
                .encode(json!({"alg": "ES256", "kid": "bench", "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(
                json!({"iss": ISSUER, "aud": [AUDIENCE], "sub": JWT_SUBJECT,
                       "iat": now, "nbf": now, "exp": now + JWT_LIFETIME_S})
                .to_string()
            )
        );
        let sig = key
            .sign(&rng, signing_input.as_bytes())
            .map_err(|_| "cannot sign the caller JWT")?;
        Ok(Callers {
            htpasswd,
            jwks,
            basic: format!(
                "Basic {}",
                STANDARD.encode(format!("{BASIC_USER}:{password}"))
            ),
            bearer: format!(
                "Bearer {signing_input}.{}",
                URL_SAFE_NO_PAD.encode(sig.as_ref())
            ),
        })
    }

    /// The config's `callers:` section.
    pub fn yaml(&self) -> String {
        format!(
            "callers:\n  basic:\n    htpasswd_file: {}\n  jwt:\n    issuer: {ISSUER}\n    audiences: [{AUDIENCE}]\n    jwks_file: {}\n",
            self.htpasswd.display(),
            self.jwks.display()
        )
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `n` random bytes as URL-safe base64 (a password nobody else knows).
fn random_text(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes)
        .map_err(|_| "no random bytes")?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_bcrypt_entry_and_a_verifiable_jwt() {
        let dir =
            std::env::temp_dir().join(format!("tollgate-bench-callers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let c = Callers::make(&dir).expect("make");
        let line = std::fs::read_to_string(&c.htpasswd).expect("htpasswd");
        let (user, hash) = line.trim().split_once(':').expect("user:hash");
        assert_eq!(user, BASIC_USER);
        assert!(hash.starts_with("$2y$05$"), "{hash}");
        let basic = STANDARD
            .decode(c.basic.strip_prefix("Basic ").expect("Basic"))
            .expect("base64");
        let (u, password) = std::str::from_utf8(&basic)
            .expect("utf-8")
            .split_once(':')
            .expect("user:password");
        assert_eq!(u, BASIC_USER);
        assert!(bcrypt::verify(password, hash).expect("verify"));

        let jwks: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&c.jwks).expect("jwks")).expect("json");
        let k = &jwks["keys"][0];
        let mut point = vec![4u8];
        for coord in ["x", "y"] {
            point.extend(
                URL_SAFE_NO_PAD
                    .decode(k[coord].as_str().expect("coordinate"))
                    .expect("base64"),
            );
        }
        let token = c.bearer.strip_prefix("Bearer ").expect("Bearer");
        let (input, sig) = token.rsplit_once('.').expect("three parts");
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(sig).expect("base64"),
            )
            .expect("the JWT verifies with the JWK");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
