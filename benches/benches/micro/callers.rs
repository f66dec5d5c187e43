//! Caller authentication (`tollgate::callers`), what one request costs:
//! - `callers_cold/jwt_{es256,rs256,ps256}`: a token never seen before: parse, signature
//!   check with ring, claims, cache insert (a fresh `Callers` per iteration, built
//!   outside the timing);
//! - `callers_cold/bcrypt`: a Basic password checked against an `htpasswd -B` entry
//!   (cost 5, htpasswd's default), bcrypt on a blocking thread as in the proxy;
//! - `callers_warm/cached`: the sync fast path of a warm request (SHA-256 of the
//!   header value and a sharded map read); `callers_warm/authenticate` the same through
//!   the async call the data path makes.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use criterion::{BatchSize, Criterion};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::json;
use std::hint::black_box;
use std::path::Path;
use tollgate::callers::Callers;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn claims() -> serde_json::Value {
    let now = now();
    json!({"iss": "https://kubernetes.default.svc.cluster.local", "aud": ["tollgate"],
           "sub": "system:serviceaccount:billing:api", "iat": now, "nbf": now, "exp": now + 3600,
           "kubernetes.io": {"namespace": "billing", "serviceaccount": {"name": "api"}}})
}

fn signing_input(alg: &str, kid: &str) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    )
}

struct Keys {
    ec: EcdsaKeyPair,
    rsa: RsaKeyPair,
}

impl Keys {
    fn new() -> Keys {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
        let ec = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("P-256 key");
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
            .expect("openssl genpkey");
        let rsa = RsaKeyPair::from_der(&out.stdout)
            .or_else(|_| RsaKeyPair::from_pkcs8(&out.stdout))
            .expect("RSA key");
        Keys { ec, rsa }
    }

    fn jwks(&self) -> String {
        let p = self.ec.public_key().as_ref();
        let c: ring::rsa::PublicKeyComponents<Vec<u8>> = self.rsa.public().into();
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])},
            {"kty": "RSA", "kid": "rsa", "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)}
        ]})
        .to_string()
    }

    fn token(&self, alg: &str) -> String {
        let rng = SystemRandom::new();
        let kid = if alg == "ES256" { "ec" } else { "rsa" };
        let input = signing_input(alg, kid);
        let sig = match alg {
            "ES256" => self
                .ec
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            _ => {
                let pad: &'static dyn signature::RsaEncoding = if alg == "PS256" {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut sig = vec![0u8; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(pad, &rng, input.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
        };
        format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn load(dir: &Path) -> Callers {
    let yaml = format!(
        "callers:\n  jwt:\n    issuer: https://kubernetes.default.svc.cluster.local\n    audiences: [tollgate]\n    jwks_file: {}\n  basic:\n    htpasswd_file: {}\n",
        dir.join("jwks.json").display(),
        dir.join("htpasswd").display()
    );
    let config = tollgate_rules::load_str("bench.yaml", &yaml, &|_: &str| None).expect("config");
    Callers::load(&config)
        .expect("callers")
        .expect("configured")
}

pub fn callers(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-callers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let keys = Keys::new();
    std::fs::write(dir.join("jwks.json"), keys.jwks()).expect("jwks");
    let line = std::process::Command::new("htpasswd")
        .args(["-nbB", "legacy-batch", "correct horse battery"])
        .output()
        .expect("htpasswd -B (apache2-utils)");
    std::fs::write(dir.join("htpasswd"), &line.stdout).expect("htpasswd");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut g = c.benchmark_group("callers_cold");
    for alg in ["ES256", "RS256", "PS256"] {
        let token = keys.token(alg);
        g.bench_function(format!("jwt_{}", alg.to_ascii_lowercase()), |b| {
            b.iter_batched(
                || load(&dir),
                |callers| {
                    let id = rt.block_on(callers.authenticate(Some(token.as_bytes())));
                    assert!(matches!(id, Ok(Some(_))), "{id:?}");
                    callers
                },
                BatchSize::PerIteration,
            )
        });
    }
    let basic = format!(
        "Basic {}",
        STANDARD.encode("legacy-batch:correct horse battery")
    );
    g.bench_function("bcrypt", |b| {
        b.iter_batched(
            || load(&dir),
            |callers| {
                let id = rt.block_on(callers.authenticate(Some(basic.as_bytes())));
                assert!(matches!(id, Ok(Some(_))), "{id:?}");
                callers
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("callers_warm");
    let callers = load(&dir);
    let token = keys.token("RS256");
    let warm = rt
        .block_on(callers.authenticate(Some(token.as_bytes())))
        .expect("warm-up");
    assert!(warm.is_some());
    g.bench_function("cached", |b| {
        b.iter(|| black_box(callers.cached(black_box(token.as_bytes()))))
    });
    g.bench_function("authenticate", |b| {
        b.iter(|| rt.block_on(callers.authenticate(Some(black_box(token.as_bytes())))))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
