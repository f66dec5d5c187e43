//! Leaf certificates by host, bounded: an LRU map of at most [`CAPACITY`] hosts (the least
//! recently used host is dropped first, and counted). Hosts come from CONNECT requests
//! that matched an intercepting route, and a wildcard route matches unboundedly many, so
//! the bound is what keeps memory flat (about 3 KiB per host).
//!
//! Single flight per host: the map holds a slot per host; the first handshake for a host
//! makes its leaf while holding the slot's lock, and concurrent handshakes for the same
//! host wait for that leaf instead of making their own. The map's own lock is held only to
//! find or insert the slot. A failed issuance leaves the slot empty, so the next handshake
//! tries again. A leaf past its renewal time is replaced on the next use.

use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

/// Hosts kept. Each holds a leaf and its key, the rustls signing key and a `ServerConfig`.
pub const CAPACITY: usize = 1024;

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A cached, fresh leaf.
    Hit,
    /// A new leaf: first use of the host (or it had been evicted).
    Issued,
    /// A new leaf replacing one past its renewal time.
    Renewed,
}

/// What the cache keeps per host. `V` is the issued leaf with what serving it needs.
pub trait Entry {
    /// When the entry should be replaced.
    fn renew_at(&self) -> SystemTime;
}

struct Slot<V> {
    value: Mutex<Option<Arc<V>>>,
}

pub struct LeafCache<V> {
    map: Mutex<LruCache<String, Arc<Slot<V>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<V: Entry> LeafCache<V> {
    pub fn new(capacity: usize) -> LeafCache<V> {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        LeafCache {
            map: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Hosts held now.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// The entry for `host`, made with `make` when there is none or it is due for
    /// renewal at `now`. `evicted` is called once per host dropped for the bound.
    pub fn get_or_make<E>(
        &self,
        host: &str,
        now: SystemTime,
        make: impl FnOnce() -> Result<V, E>,
        evicted: impl FnOnce(),
    ) -> Result<(Arc<V>, Lookup), E> {
        let slot = {
            let mut map = lock(&self.map);
            match map.get(host) {
                Some(slot) => Arc::clone(slot),
                None => {
                    let slot = Arc::new(Slot {
                        value: Mutex::new(None),
                    });
                    if map.push(host.to_owned(), Arc::clone(&slot)).is_some() {
                        evicted();
                    }
                    slot
                }
            }
        };
        let mut value = lock(&slot.value);
        let lookup = match value.as_ref() {
            Some(v) if now < v.renew_at() => return Ok((Arc::clone(v), Lookup::Hit)),
            Some(_) => Lookup::Renewed,
            None => Lookup::Issued,
        };
        let v = Arc::new(make()?);
        *value = Some(Arc::clone(&v));
        Ok((v, lookup))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, UNIX_EPOCH};

    struct V {
        n: usize,
        renew_at: SystemTime,
    }

    impl Entry for V {
        fn renew_at(&self) -> SystemTime {
            self.renew_at
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn hits_renewals_and_failures() {
        let cache = LeafCache::<V>::new(4);
        let made = AtomicUsize::new(0);
        let make = || -> Result<V, ()> {
            Ok(V {
                n: made.fetch_add(1, Ordering::SeqCst),
                renew_at: at(100),
            })
        };
        let (v, l) = cache.get_or_make("a", at(0), make, || {}).expect("made");
        assert_eq!((v.n, l), (0, Lookup::Issued));
        let (v, l) = cache.get_or_make("a", at(99), make, || {}).expect("hit");
        assert_eq!((v.n, l), (0, Lookup::Hit));
        let (v, l) = cache
            .get_or_make("a", at(100), make, || {})
            .expect("renewed");
        assert_eq!((v.n, l), (1, Lookup::Renewed));
        // A failure is not cached: the next lookup tries again.
        assert_eq!(
            cache
                .get_or_make("b", at(0), || Err::<V, _>("no"), || {})
                .err(),
            Some("no")
        );
        let (v, l) = cache.get_or_make("b", at(0), make, || {}).expect("made");
        assert_eq!((v.n, l), (2, Lookup::Issued));
    }

    #[test]
    fn the_bound_holds_and_evictions_are_counted() {
        let cache = LeafCache::<V>::new(3);
        let evictions = AtomicUsize::new(0);
        let make = || -> Result<V, ()> {
            Ok(V {
                n: 0,
                renew_at: at(100),
            })
        };
        for i in 0..10 {
            let host = format!("h{i}.example.com");
            cache
                .get_or_make(&host, at(0), make, || {
                    evictions.fetch_add(1, Ordering::SeqCst);
                })
                .expect("made");
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(evictions.load(Ordering::SeqCst), 7);
        // Least recently used goes first: touching h7 keeps it over h8.
        cache
            .get_or_make("h7.example.com", at(1), make, || {})
            .expect("hit");
        cache
            .get_or_make("new.example.com", at(1), make, || {})
            .expect("made");
        let (_, l) = cache
            .get_or_make("h7.example.com", at(1), make, || {})
            .expect("hit");
        assert_eq!(l, Lookup::Hit);
        let (_, l) = cache
            .get_or_make("h8.example.com", at(1), make, || {})
            .expect("made");
        assert_eq!(l, Lookup::Issued);
    }

    #[test]
    fn concurrent_first_uses_make_one_leaf() {
        let cache = Arc::new(LeafCache::<V>::new(8));
        let made = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, made) = (Arc::clone(&cache), Arc::clone(&made));
                std::thread::spawn(move || {
                    cache
                        .get_or_make(
                            "one.example.com",
                            at(0),
                            || -> Result<V, ()> {
                                made.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(20));
                                Ok(V {
                                    n: 7,
                                    renew_at: at(100),
                                })
                            },
                            || {},
                        )
                        .expect("made")
                        .0
                        .n
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread"), 7);
        }
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }
}
