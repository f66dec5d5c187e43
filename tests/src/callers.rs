//! Caller credentials made at test time: JWTs signed by throwaway keys (RS256 and PS256
//! with an RSA key `openssl genpkey` makes per run, ES256 with a P-256 key ring makes),
//! their JWK Sets, and htpasswd entries written by `htpasswd -B` (apache2-utils).
//! Nothing here is a fixture file: every key lives only as long as the test run.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The issuer and audience the tests configure.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const AUDIENCE: &str = "tollgate";

/// A signing algorithm of caller tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Ps256,
    Es256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
        }
    }
}

enum Pair {
    Rsa(Arc<RsaKeyPair>),
    Ec(Box<EcdsaKeyPair>),
}

/// A throwaway signing key with a `kid`.
pub struct SigningKey {
    pub alg: Alg,
    pub kid: String,
    pair: Pair,
}

/// One RSA key per test process (keygen takes a while), shared by RS256 and PS256 keys.
fn rsa_pair() -> Arc<RsaKeyPair> {
    static RSA: OnceLock<Arc<RsaKeyPair>> = OnceLock::new();
    RSA.get_or_init(|| {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .output()
            .expect("run openssl genpkey");
        assert!(out.status.success(), "openssl genpkey failed: {out:?}");
        // OpenSSL 3.0 writes DER private keys as PKCS#1 ("traditional"); later ones may
        // write PKCS#8.
        let pair = RsaKeyPair::from_der(&out.stdout)
            .or_else(|_| RsaKeyPair::from_pkcs8(&out.stdout))
            .expect("openssl wrote an RSA private key (PKCS#1 or PKCS#8 DER)");
        Arc::new(pair)
    })
    .clone()
}

impl SigningKey {
    pub fn new(alg: Alg, kid: &str) -> SigningKey {
        let pair = match alg {
            Alg::Rs256 | Alg::Ps256 => Pair::Rsa(rsa_pair()),
            Alg::Es256 => {
                let rng = SystemRandom::new();
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .expect("generate P-256");
                Pair::Ec(Box::new(
                    EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        pkcs8.as_ref(),
                        &rng,
                    )
                    .expect("parse P-256"),
                ))
            }
        };
        SigningKey {
            alg,
            kid: kid.into(),
            pair,
        }
    }

    /// The public key as a JWK (`kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(k) => {
                let c: ring::rsa::PublicKeyComponents<Vec<u8>> = k.public().into();
                json!({"kty": "RSA", "kid": self.kid, "alg": self.alg.name(), "use": "sig",
                       "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)})
            }
            Pair::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
                       "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])})
            }
        }
    }

    /// The public key's bytes (what a confused verifier might use as an HMAC secret).
    pub fn public_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(k) => k.public().as_ref().to_vec(),
            Pair::Ec(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// `header.claims.signature`, signed with this key whatever `header` says.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Rsa(k) => {
                let pad: &'static dyn signature::RsaEncoding = match self.alg {
                    Alg::Ps256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(pad, &rng, signing.as_bytes(), &mut sig)
                    .expect("RSA sign");
                sig
            }
            Pair::Ec(k) => k
                .sign(&rng, signing.as_bytes())
                .expect("ECDSA sign")
                .as_ref()
                .to_vec(),
        };
        format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// A token with this key's `alg` and `kid`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": self.alg.name(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

/// A JWK Set of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The claims of a projected service-account token for `sub`, valid for 10 minutes.
pub fn claims(sub: &str) -> Value {
    let now = now();
    json!({"iss": ISSUER, "aud": [AUDIENCE], "sub": sub, "iat": now, "nbf": now, "exp": now + 600,
           "kubernetes.io": {"namespace": "billing"}})
}

/// An HS256 token whose HMAC secret is `secret` (to prove such tokens are refused).
pub fn hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let signing = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, signing.as_bytes());
    format!("{signing}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// An unsigned `alg: none` token.
pub fn alg_none(kid: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// One htpasswd line for `user`, as `htpasswd -nbB` writes it (bcrypt, `$2y$`).
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let out = std::process::Command::new("htpasswd")
        .args(["-nbB", user, password])
        .output()
        .expect("run htpasswd (apache2-utils; scripts/setup installs it)");
    assert!(out.status.success(), "htpasswd failed: {out:?}");
    let line = String::from_utf8(out.stdout).expect("utf-8");
    let line = line.trim().to_owned();
    assert!(line.starts_with(&format!("{user}:$2y$")), "{line}");
    line
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A JWKS endpoint on 127.0.0.1 (plain http: tollgate allows that on loopback) that
/// serves a body the test can change and counts the GETs it answered. Stops when dropped.
pub struct JwksServer {
    addr: std::net::SocketAddr,
    body: Arc<std::sync::Mutex<String>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    pub async fn start(body: String) -> JwksServer {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind jwks server");
        let addr = listener.local_addr().expect("jwks addr");
        let body = Arc::new(std::sync::Mutex::new(body));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (b, h) = (b.clone(), h.clone());
                tokio::spawn(async move {
                    let mut wire = crate::http1::Wire::new(stream);
                    while let Ok(Some(_head)) = wire.read_head(64 * 1024).await {
                        h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let text = b.lock().map(|s| s.clone()).unwrap_or_default();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if wire.stream.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        JwksServer {
            addr,
            body,
            hits,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/openid/v1/jwks", self.addr)
    }

    pub fn set_body(&self, body: String) {
        if let Ok(mut b) = self.body.lock() {
            *b = body;
        }
    }

    /// GETs answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}
