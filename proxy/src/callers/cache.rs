//! The verification cache: SHA-256 of the presented `Proxy-Authorization` value →
//! the identity it proved, until an expiry.
//!
//! - Key: a digest, never the credential; a lookup compares digests, so its timing says
//!   nothing about any stored credential.
//! - Expiry: a JWT's entry never outlives its `exp` (without the verification leeway);
//!   a password's lives [`BASIC_TTL`]. Reloading the config (which a change to the
//!   htpasswd or JWKS file does) starts a fresh cache; so does a JWKS refresh that
//!   changes the keys.
//! - Bound: [`MAX_ENTRIES`]. Inserting into a full cache first drops expired entries,
//!   then, if it is still full, an arbitrary eighth of the entries (the map's shard
//!   order): cheap, and a caller evicted this way pays one more verification.
//! - Only successes are cached: a wrong password is checked (bcrypt) every time.
//!
//! A hit takes one digest and one sharded read lock (dashmap): no signature check, no
//! bcrypt, no lock shared by all requests.

use super::Identity;
use dashmap::DashMap;
use std::time::{Duration, Instant};

/// Most entries kept.
pub const MAX_ENTRIES: usize = 16 * 1024;

/// How long a Basic password check is trusted.
pub const BASIC_TTL: Duration = Duration::from_secs(300);

/// How long any entry lives at most (a JWT with a far `exp` is re-verified hourly).
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The digest of a presented credential.
pub type Key = [u8; 32];

pub fn key(presented: &[u8]) -> Key {
    let d = ring::digest::digest(&ring::digest::SHA256, presented);
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

struct Entry {
    identity: Identity,
    until: Instant,
}

pub struct Cache {
    map: DashMap<Key, Entry>,
    max: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Cache::with_capacity(MAX_ENTRIES)
    }
}

impl Cache {
    pub fn with_capacity(max: usize) -> Cache {
        Cache {
            map: DashMap::new(),
            max: max.max(8),
        }
    }

    /// The identity `key` proved, if that is still valid at `now`.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Identity> {
        let e = self.map.get(key)?;
        (now < e.until).then(|| e.identity.clone())
    }

    /// Remember `identity` for `key` until `until` (capped at [`MAX_TTL`] from `now`).
    pub fn insert(&self, key: Key, identity: Identity, until: Instant, now: Instant) {
        let until = until.min(now + MAX_TTL);
        if until <= now {
            return;
        }
        if self.map.len() >= self.max && !self.map.contains_key(&key) {
            self.map.retain(|_, e| e.until > now);
            if self.map.len() >= self.max {
                let drop: Vec<Key> = self
                    .map
                    .iter()
                    .take(self.max / 8)
                    .map(|e| *e.key())
                    .collect();
                for k in drop {
                    self.map.remove(&k);
                }
            }
        }
        self.map.insert(key, Entry { identity, until });
    }

    pub fn clear(&self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Via;
    use super::*;

    fn id(name: &str) -> Identity {
        Identity::new(name, Via::Basic)
    }

    #[test]
    fn hits_until_expiry_and_never_after() {
        let c = Cache::default();
        let now = Instant::now();
        let k = key(b"Basic YTpi");
        c.insert(k, id("a"), now + Duration::from_secs(10), now);
        assert_eq!(
            c.get(&k, now).map(|i| i.name().to_owned()),
            Some("a".into())
        );
        assert!(c.get(&k, now + Duration::from_secs(9)).is_some());
        assert!(c.get(&k, now + Duration::from_secs(10)).is_none());
        assert!(c.get(&key(b"Basic YTpj"), now).is_none());
        // Already expired: not stored. Far expiry: capped.
        let k2 = key(b"x");
        c.insert(k2, id("b"), now, now);
        assert!(c.get(&k2, now).is_none());
        c.insert(k2, id("b"), now + Duration::from_secs(99_999), now);
        assert!(c.get(&k2, now + MAX_TTL).is_none());
    }

    #[test]
    fn stays_bounded_dropping_expired_entries_first() {
        let c = Cache::with_capacity(64);
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let later = now + Duration::from_secs(100);
        for i in 0..32u32 {
            c.insert(key(&i.to_be_bytes()), id("old"), soon, now);
        }
        for i in 32..64u32 {
            c.insert(key(&i.to_be_bytes()), id("new"), later, now);
        }
        assert_eq!(c.len(), 64);
        // Past `soon`, a new entry evicts the 32 expired ones and nothing else.
        let t = now + Duration::from_secs(2);
        c.insert(key(b"fresh"), id("fresh"), later, t);
        assert_eq!(c.len(), 33);
        assert!((32..64u32).all(|i| c.get(&key(&i.to_be_bytes()), t).is_some()));
        // Full of live entries: an eighth goes, the bound holds.
        for i in 100..1000u32 {
            c.insert(key(&i.to_be_bytes()), id("n"), later, t);
            assert!(c.len() <= 64);
        }
        assert!(c.get(&key(&999u32.to_be_bytes()), t).is_some());
    }
}
