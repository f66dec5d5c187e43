//! Token-cache hits: single-threaded, and with 2 and 8 threads hitting the same
//! credential at once (the proxy's workers all read one slot).
//!
//! Contended figures are CPU-nanoseconds per hit: wall time × busy cores ÷ hits, with
//! busy cores = min(threads, cores). On a 2-core machine 8 threads time-share 2 cores;
//! what they contend on (the shard's read lock, the token's `Arc` count, the hit
//! counter) bounces between the 2 cores exactly as with 2 threads, plus preemption.

use crate::common::{poll_ready, warm_cache};
use criterion::Criterion;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tollgate::auth::TokenCache;

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
    fn new(threads: usize, cache: Arc<TokenCache>) -> Pool {
        let start = Arc::new(Barrier::new(threads + 1));
        let done = Arc::new(Barrier::new(threads + 1));
        let iters = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let (start, done, iters, stop, cache) = (
                    start.clone(),
                    done.clone(),
                    iters.clone(),
                    stop.clone(),
                    cache.clone(),
                );
                std::thread::spawn(move || loop {
                    start.wait();
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let n = iters.load(Ordering::Acquire);
                    for _ in 0..n {
                        black_box(cache.cached(black_box("bench")));
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

pub fn token_cache(c: &mut Criterion) {
    let (cache, _config) = warm_cache();
    let mut group = c.benchmark_group("token_cache_hit");
    group.bench_function("cached/1_thread", |b| {
        b.iter(|| black_box(cache.cached(black_box("bench"))))
    });
    group.bench_function("get_async/1_thread", |b| {
        b.iter(|| black_box(poll_ready(cache.get(black_box("bench")))))
    });
    for threads in [2usize, 8] {
        let pool = Pool::new(threads, cache.clone());
        group.bench_function(format!("cached/{threads}_threads_cpu_ns"), |b| {
            b.iter_custom(|iters| pool.round(iters))
        });
        drop(pool);
    }
    group.finish();
}
