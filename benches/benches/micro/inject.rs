//! Header injection, as the proxy does it per request on an inject route:
//! - `header_for/warm`: a clock read, the cache hit through the route's credential
//!   handle, and a copy of the header value joined when the token arrived (`inject.rs`);
//! - `rewrite/pass` and `rewrite/inject`: the request-head rewrite of
//!   `upstream_request_filter` (origin-form, hop-by-hop headers, Host) without and with
//!   replacing the client's `Authorization` by the injected one; their difference is
//!   what injection adds to the rewrite. The hop-by-hop strip is tollgate's one-pass
//!   `forward::strip_hop_by_hop` (it replaced the `rewrite/pass_one_pass_strip` prototype).

use crate::common::{poll_ready, warm_cache};
use criterion::{BatchSize, Criterion};
use pingora::http::RequestHeader;
use std::hint::black_box;
use tollgate::forward;
use tollgate::inject::{Injected, Injector};
use tollgate_rules::Action;

fn request() -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/v1/invoices?page=2", None)
        .unwrap_or_else(|e| panic!("request: {e}"));
    for (k, v) in [
        ("Host", "inject.bench.test"),
        ("User-Agent", "bench/1.0"),
        ("Accept", "application/json"),
        ("Authorization", "Bearer client-own-token"),
        ("Connection", "keep-alive"),
    ] {
        req.insert_header(k, v)
            .unwrap_or_else(|e| panic!("header: {e}"));
    }
    req
}

fn rewrite(req: &mut RequestHeader, inj: Option<(&http::HeaderName, &Injected)>) {
    let uri = forward::origin_form(req).unwrap_or_else(|e| panic!("origin form: {e:?}"));
    req.set_uri(uri);
    forward::strip_hop_by_hop(req);
    let _ = req.insert_header(http::header::HOST, "127.0.0.1:8080");
    if let Some((header, inj)) = inj {
        while req.remove_header(header).is_some() {}
        let _ = req.insert_header(header.clone(), inj.value.clone());
    }
}

pub fn inject(c: &mut Criterion) {
    let (cache, config) = warm_cache();
    let injector = Injector::new(cache);
    let Some(Action::Inject(route)) = config.routes.first().map(|r| r.action.clone()) else {
        panic!("the bench config's first route injects");
    };
    // The route's header name, parsed once at load as the proxy does (state::RouteRuntime).
    let header = http::HeaderName::from_bytes(route.header.as_bytes())
        .unwrap_or_else(|e| panic!("header name: {e}"));
    // And its credential handle, resolved once at load (`State::bind`).
    let handle = injector.handle(&route);
    assert!(handle.is_some(), "the bench credential has a handle");
    let mut group = c.benchmark_group("inject");
    group.bench_function("header_for/warm", |b| {
        b.iter(|| {
            black_box(
                poll_ready(injector.header_for(
                    black_box(&route),
                    handle.as_ref(),
                    Some("inject"),
                    std::time::Instant::now(),
                ))
                .unwrap_or_else(|e| panic!("header_for: {e:?}")),
            )
        })
    });
    let injected = poll_ready(injector.header_for(
        &route,
        handle.as_ref(),
        Some("inject"),
        std::time::Instant::now(),
    ))
    .unwrap_or_else(|e| panic!("header_for: {e:?}"));
    let template = request();
    group.bench_function("rewrite/pass", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |req| rewrite(req, None),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("rewrite/inject", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |req| rewrite(req, Some((&header, &injected))),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}
