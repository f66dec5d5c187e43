//! Route matching over 10, 1,000 and 10,000 rules: exact hosts, wildcards, path
//! prefixes (with and without methods), and a miss. Reports ns per decision.

use crate::common::{facts, probes, table};
use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;

pub fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let t = table(n);
        let p = probes(n);
        for (kind, (host, path)) in [
            ("exact", &p.exact),
            ("wildcard", &p.wildcard),
            ("path_prefix", &p.path_prefix),
            ("wildcard_path_method", &p.wildcard_path_method),
            ("miss", &p.miss),
        ] {
            let f = facts(host, path);
            // Check the probe hits what it claims before timing it.
            let d = t.router.decide(&t.config, &f);
            let hit = matches!(d, tollgate_rules::Decision::Route(..));
            assert_eq!(hit, kind != "miss", "{kind} probe on {n} routes: {d:?}");
            group.bench_with_input(BenchmarkId::new(kind, n), &f, |b, f| {
                b.iter(|| black_box(t.router.decide(&t.config, black_box(f))))
            });
        }
    }
    group.finish();
}
