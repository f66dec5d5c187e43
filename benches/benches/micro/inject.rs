//! The per-request work of the data path, with the functions the proxy calls (nothing
//! copied): parse the head (`http1::parse_request`), read the target (`target::parse`),
//! normalise the path and plan (`plan::plan`), take the token (a cache hit through the
//! route's handle) and write the upstream head (`rewrite::request_head`).
//! - `pipeline/parse`: the head alone;
//! - `pipeline/plan`: target, path, routing decision;
//! - `pipeline/rewrite/pass` and `pipeline/rewrite/inject`: the upstream head without and
//!   with the credential (their difference is what injection adds to the rewrite);
//! - `pipeline/all/inject`: everything above for one inject request.

use crate::common::warm_cache;
use bytes::BytesMut;
use criterion::{BatchSize, Criterion};
use std::hint::black_box;
use tollgate::http1::{parse_request, RequestHead};
use tollgate::metrics::Metrics;
use tollgate::plan::plan;
use tollgate::rewrite::{request_head, Added};
use tollgate::state::State;
use tollgate::target;
use tollgate_rules::{path, RequestFacts};

const REQUEST: &str = "GET http://inject.bench.test/v1/invoices?page=2 HTTP/1.1\r\nHost: inject.bench.test\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\nAuthorization: Bearer client-own-token\r\nConnection: keep-alive\r\n\r\n";

fn head() -> RequestHead {
    parse_request(&mut BytesMut::from(REQUEST))
        .unwrap_or_else(|e| panic!("head: {e:?}"))
        .unwrap_or_else(|| panic!("complete head"))
}

/// Plans `head` and writes its upstream head into `out`, with the token when `inject`.
fn one(
    state: &State,
    tokens: &tollgate::auth::TokenCache,
    head: &RequestHead,
    inject: bool,
    out: &mut Vec<u8>,
) {
    let parsed = target::parse(head).unwrap_or_else(|e| panic!("target: {e}"));
    let p = path::normalize(parsed.path, state.config.path_normalization)
        .unwrap_or_else(|e| panic!("path: {e}"));
    let facts = RequestFacts {
        host: &parsed.target.host,
        port: parsed.target.port,
        scheme: parsed.target.scheme,
        path: &p,
        method: head.method(),
        client: None,
        caller: None,
    };
    let plan = plan(state, &parsed.target, &facts).unwrap_or_else(|e| panic!("plan: {e}"));
    let write = |out: &mut Vec<u8>, credential: Option<&[u8]>| {
        request_head(
            out,
            head,
            &plan,
            &p,
            parsed.query,
            &Added {
                via: "1.1 tollgate-bench0",
                trace: None,
                credential,
                dpop: None,
            },
        )
    };
    match plan
        .route
        .injection()
        .and_then(|i| i.handle.as_ref().map(|h| (i, h)))
    {
        Some((i, h)) if inject => {
            let hit = tokens.hit_at(h, tokio::time::Instant::now(), |t| {
                t.value_bytes(&i.prefix).map(|v| write(out, Some(&v)))
            });
            assert!(matches!(hit, Some(Some(()))), "a warm hit");
        }
        _ => write(out, None),
    }
}

pub fn inject(c: &mut Criterion) {
    let (tokens, config) = warm_cache();
    let metrics = Metrics::new().unwrap_or_else(|e| panic!("metrics: {e}"));
    let mut state = State::build(config, &metrics, None).unwrap_or_else(|e| panic!("state: {e:?}"));
    state.bind(&tokens);
    let head = head();
    let mut out = Vec::with_capacity(1024);
    let mut group = c.benchmark_group("pipeline");
    group.bench_function("parse", |b| {
        b.iter_batched_ref(
            || BytesMut::from(REQUEST),
            |buf| black_box(parse_request(buf)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("plan", |b| {
        b.iter(|| {
            let parsed = target::parse(black_box(&head)).unwrap_or_else(|e| panic!("{e}"));
            let p = path::normalize(parsed.path, state.config.path_normalization)
                .unwrap_or_else(|e| panic!("{e}"));
            let facts = RequestFacts {
                host: &parsed.target.host,
                port: parsed.target.port,
                scheme: parsed.target.scheme,
                path: &p,
                method: head.method(),
                client: None,
                caller: None,
            };
            black_box(plan(&state, &parsed.target, &facts).is_ok())
        })
    });
    group.bench_function("rewrite/pass", |b| {
        b.iter(|| one(&state, &tokens, black_box(&head), false, &mut out))
    });
    group.bench_function("rewrite/inject", |b| {
        b.iter(|| one(&state, &tokens, black_box(&head), true, &mut out))
    });
    group.bench_function("all/inject", |b| {
        b.iter_batched_ref(
            || BytesMut::from(REQUEST),
            |buf| {
                let h = parse_request(buf)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| panic!("head"));
                one(&state, &tokens, &h, true, &mut out);
                black_box(out.len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}
