//! The micro benches (criterion), one binary so the release profile's fat LTO links once:
//! - `route_match/*`: route matching over 10, 1,000 and 10,000 rules (`routing.rs`);
//! - `token_cache_hit/*`: token-cache hits, one thread and 2 or 8 contending (`token_cache.rs`);
//! - `inject/*`: building the injected header and rewriting a request head (`inject.rs`);
//! - `callers_cold/*`, `callers_warm/*`: caller authentication, cold and cached (`callers.rs`).
//! - `intercept/*`: issuing a leaf certificate, the first CONNECT to a new host, a leaf
//!   cache hit, and a whole TLS handshake with an intercepted host (`intercept.rs`).
//! - `dpop/*`: a DPoP proof per request, and the token hash per token (`dpop.rs`).
//!
//! `cargo bench -p tollgate-benches --bench micro` runs them all; a filter runs some,
//! e.g. `cargo bench -p tollgate-benches --bench micro -- token_cache_hit`.

use criterion::{criterion_group, criterion_main};

mod callers;
mod common;
mod dpop;
mod inject;
mod intercept;
mod routing;
mod token_cache;

criterion_group!(
    benches,
    routing::routing,
    token_cache::token_cache,
    inject::inject,
    callers::callers,
    intercept::intercept,
    dpop::dpop
);
criterion_main!(benches);
