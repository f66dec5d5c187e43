//! Token-cache hits: single-threaded, and with 2 and 8 threads hitting the same
//! credential at once (the proxy's workers all read one slot). `hit/*` is the request
//! path (`TokenCache::hit` through the route's handle); `cached/*` the lookup by name.
//!
//! Contended figures are CPU-nanoseconds per hit: wall time × busy cores ÷ hits, with
//! busy cores = min(threads, cores). On a 2-core machine 8 threads time-share 2 cores;
//! what they contend on (for `cached`: the shard's read lock, the token's `Arc` count;
//! for `hit` nothing in the common case) bounces between the 2 cores exactly as with 2
//! threads, plus preemption.

use crate::common::{poll_ready, warm_cache};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Worker threads parked on a barrier; each round every worker does `iters` hits.
struct Pool {
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    iters: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
    busy_cores: usize,
    threads: usize,
}

impl Pool {
    fn new(threads: usize, op: Arc<dyn Fn() + Send + Sync>) -> Pool {
        let start = Arc::new(Barrier::new(threads + 1));
        let done = Arc::new(Barrier::new(threads + 1));
        let iters = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let (start, done, iters, stop, op) = (
                    start.clone(),
                    done.clone(),
                    iters.clone(),
                    stop.clone(),
                    op.clone(),
                );
                std::thread::spawn(move || loop {
                    start.wait();
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let n = iters.load(Ordering::Acquire);
                    for _ in 0..n {
                        op();
                    }
                    done.wait();
                })
            })
            .collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Pool {
            start,
            done,
            iters,
            stop,
            handles,
            busy_cores: threads.min(cores),
            threads,
        }
    }

    /// CPU time per hit, scaled so criterion's "per iteration" is CPU-ns per hit.
    fn round(&self, iters: u64) -> Duration {
        self.iters.store(iters, Ordering::Release);
        let t = Instant::now();
        self.start.wait();
        self.done.wait();
        let wall = t.elapsed();
        wall.mul_f64(self.busy_cores as f64 / self.threads as f64)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.start.wait();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// `op` alone (`NAME/1_thread`) and on 2 and 8 threads at once (`NAME/{2,8}_threads_cpu_ns`).
fn alone_and_contended(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    op: Arc<dyn Fn() + Send + Sync>,
) {
    group.bench_function(format!("{name}/1_thread"), |b| b.iter(|| op()));
    for threads in [2usize, 8] {
        let pool = Pool::new(threads, op.clone());
        group.bench_function(format!("{name}/{threads}_threads_cpu_ns"), |b| {
            b.iter_custom(|iters| pool.round(iters))
        });
        drop(pool);
    }
}

pub fn token_cache(c: &mut Criterion) {
    let (cache, _config) = warm_cache();
    let mut group = c.benchmark_group("token_cache_hit");
    group.bench_function("get_async/1_thread", |b| {
        b.iter(|| black_box(poll_ready(cache.get(black_box("bench")))))
    });
    // By credential name (a map read and an `Arc` clone): not the request path.
    let c = cache.clone();
    alone_and_contended(
        &mut group,
        "cached",
        Arc::new(move || {
            black_box(c.cached(black_box("bench")));
        }),
    );

    // The request path: the route's handle (resolved at load), the token lent to a
    // closure that takes what a request keeps (the id and the finished header value).
    let handle = cache
        .handle("bench")
        .unwrap_or_else(|| panic!("the bench credential has a handle"));
    let (c, h) = (cache.clone(), handle.clone());
    alone_and_contended(
        &mut group,
        "hit",
        Arc::new(move || {
            black_box(c.hit(black_box(&h), |t| t.id()));
        }),
    );
    // As the proxy calls it: judged at the request's start time, which the proxy has
    // read already (for its latency metrics), so the hit itself reads no clock.
    let started = tokio::time::Instant::now();
    let (c, h) = (cache.clone(), handle.clone());
    alone_and_contended(
        &mut group,
        "hit_at",
        Arc::new(move || {
            black_box(c.hit_at(black_box(&h), started, |t| t.id()));
        }),
    );
    let (c, h) = (cache.clone(), handle.clone());
    alone_and_contended(
        &mut group,
        "hit_with_header",
        Arc::new(move || {
            black_box(c.hit(black_box(&h), |t| {
                (t.id(), t.header_value(tollgate::auth::BEARER_PREFIX))
            }));
        }),
    );
    assert!(
        cache.hit(&handle, |t| t.id()).is_some(),
        "the cache stayed warm"
    );
    group.finish();
}
