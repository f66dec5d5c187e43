//! What a DPoP-bound route adds to each request (RFC 9449): one proof per request, made
//! by the function the proxy calls (`DpopKey::request_proof`: a pre-encoded header, the
//! claims written into a per-thread buffer, one ES256 signature). Beside it, for scale:
//! - `dpop/proof`: one upstream proof (`htm`, `htu`, `iat`, `jti`, `ath`);
//! - `dpop/proof_with_nonce`: the same with a remembered server nonce;
//! - `dpop/ath`: the token hash, computed once per token (not per request);
//! - `dpop/token_proof`: a token request's proof (no `ath`).
//!
//! `cargo bench -p tollgate-benches --bench micro -- dpop`.

use criterion::Criterion;
use std::hint::black_box;
use tollgate::auth::dpop::{ath, DpopKey, ProofFor, Target};

const KEY: &str = include_str!("../../../proxy/src/auth/fixtures/ec-p256-pkcs8.pem");

pub fn dpop(c: &mut Criterion) {
    let key = DpopKey::from_pem(KEY.as_bytes()).unwrap_or_else(|e| panic!("key: {e}"));
    let token = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl";
    let hash = ath(token);
    let target = Target {
        https: true,
        host: "api.bench.test",
        port: 443,
        path: "/v1/invoices",
    };
    let mut g = c.benchmark_group("dpop");
    g.bench_function("proof", |b| {
        b.iter(|| black_box(key.request_proof("GET", black_box(&target), &hash)))
    });
    key.remember_nonce(&target.origin(), b"eyJ7S_zG.eyJH0-Z.HX4w-7v");
    g.bench_function("proof_with_nonce", |b| {
        b.iter(|| black_box(key.request_proof("GET", black_box(&target), &hash)))
    });
    g.bench_function("ath", |b| b.iter(|| black_box(ath(black_box(token)))));
    g.bench_function("token_proof", |b| {
        b.iter(|| {
            black_box(key.proof(
                &ProofFor {
                    htm: "POST",
                    htu: "https://idp.bench.test/oauth2/token",
                    ath: None,
                    iat: 1_700_000_000,
                },
                "https://idp.bench.test",
            ))
        })
    });
    g.finish();
}
