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
        let c = cache.clone();
        let pool = Pool::new(
            threads,
            Arc::new(move || {
                black_box(c.cached(black_box("bench")));
            }),
        );
        group.bench_function(format!("cached/{threads}_threads_cpu_ns"), |b| {
            b.iter_custom(|iters| pool.round(iters))
        });
        drop(pool);
    }

    // The design proposed in BENCHMARKS.md, prototyped here (not tollgate's code).
    let slot = Arc::new(proposed::Slot::warm(
        "tok-0123456789abcdef0123456789abcdef0123",
    ));
    group.bench_function("proposed_hit/1_thread", |b| {
        b.iter(|| black_box(slot.hit()))
    });
    group.bench_function("proposed_hit_with_header/1_thread", |b| {
        b.iter(|| black_box(slot.hit_with_header()))
    });
    for threads in [2usize, 8] {
        let s = slot.clone();
        let pool = Pool::new(
            threads,
            Arc::new(move || {
                black_box(s.hit());
            }),
        );
        group.bench_function(format!("proposed_hit/{threads}_threads_cpu_ns"), |b| {
            b.iter_custom(|iters| pool.round(iters))
        });
        drop(pool);
        let s = slot.clone();
        let pool = Pool::new(
            threads,
            Arc::new(move || {
                black_box(s.hit_with_header());
            }),
        );
        group.bench_function(
            format!("proposed_hit_with_header/{threads}_threads_cpu_ns"),
            |b| b.iter_custom(|iters| pool.round(iters)),
        );
        drop(pool);
    }
    assert!(slot.hits.get() > 0, "the prototype counted its hits");
    group.finish();
}

/// A prototype of the hit path proposed for `auth/cache.rs` (see BENCHMARKS.md): the
/// route holds its credential's slot (no map lookup, no hashing of the name); the slot
/// is an `ArcSwapOption`, whose `load` takes no reference count in the common case;
/// the finished header value is built once per token; hits are counted on striped,
/// cache-line-padded counters summed at scrape time.
mod proposed {
    use arc_swap::ArcSwapOption;
    use http::HeaderValue;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    pub struct Entry {
        pub value: HeaderValue,
        pub id: u64,
        pub usable_until: Instant,
    }

    #[repr(align(128))]
    #[derive(Default)]
    struct Padded(AtomicU64);

    #[derive(Default)]
    pub struct Striped([Padded; 16]);

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % 16;
    }

    impl Striped {
        pub fn inc(&self) {
            let i = STRIPE.with(|s| *s);
            self.0[i].0.fetch_add(1, Ordering::Relaxed);
        }

        pub fn get(&self) -> u64 {
            self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
        }
    }

    pub struct Slot {
        current: ArcSwapOption<Entry>,
        pub hits: Striped,
    }

    impl Slot {
        pub fn warm(token: &str) -> Slot {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .unwrap_or_else(|e| panic!("header value: {e}"));
            Slot {
                current: ArcSwapOption::from_pointee(Entry {
                    value,
                    id: 1,
                    usable_until: Instant::now() + Duration::from_secs(3600),
                }),
                hits: Striped::default(),
            }
        }

        /// The id of a usable token (what compare-and-invalidate needs).
        pub fn hit(&self) -> Option<u64> {
            let guard = self.current.load();
            let e = guard.as_ref()?;
            if Instant::now() >= e.usable_until {
                return None;
            }
            self.hits.inc();
            Some(e.id)
        }

        /// The same, plus an owned copy of the finished header value for the request.
        pub fn hit_with_header(&self) -> Option<(u64, HeaderValue)> {
            let guard = self.current.load();
            let e = guard.as_ref()?;
            if Instant::now() >= e.usable_until {
                return None;
            }
            self.hits.inc();
            let v = HeaderValue::from_bytes(e.value.as_bytes()).ok()?;
            Some((e.id, v))
        }
    }
}
