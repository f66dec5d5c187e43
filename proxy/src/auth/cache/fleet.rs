//! A flight through the token store (`store/mod.rs` has the protocol): read Redis
//! first, then take the lock or wait for the replica that holds it; the holder asks the
//! token endpoint and stores the token for everyone. Also the fleet side of 401
//! invalidation and the notices other replicas publish.
//!
//! Whenever the store fails (an error or a timeout, which also switches it off for this
//! replica), the flight goes on alone, exactly as without a store.

use super::*;
use crate::auth::error::sanitize;
use crate::auth::schedule::{MAX_LIFETIME, MIN_LIFETIME};
use crate::auth::store::{holder_id, Answer, Found, Keys};
use tollgate_rules::CredentialKind;

/// First and largest pause between looks at a lock held by another replica (a notice
/// usually ends the pause first).
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(100);

type Outcome = (Result<Token, TokenError>, u64);

/// Does this credential go through the token store? Not `kind: static`: its value is read
/// from a file on every replica and never fetched, so there is nothing to share, no lock
/// to take and nothing to invalidate (it is never replayed either).
pub(super) fn shares(def: &Credential) -> bool {
    match def.kind {
        CredentialKind::OAuth2(_) => true,
        CredentialKind::Static { .. } => false,
    }
}

pub(super) async fn flight(
    shared: &Arc<Shared>,
    cred: &Arc<CredState>,
    fleet: &Arc<Fleet>,
    purpose: Purpose,
) -> Outcome {
    let keys = fleet.keys(&cred.fleet, &cred.name, &cred.def);
    match fleet.read(&keys).await {
        Answer::Down => return fetch(shared, cred, None).await,
        Answer::Up(read) => {
            if let Some(token) = adopt(shared, cred, fleet, &keys, read.token, purpose) {
                return (Ok(token), cred.auth.version());
            }
            if let Some((reason, wait)) = read.hold {
                return held(cred, reason, wait);
            }
        }
    }

    let holder = holder_id();
    let deadline = Instant::now() + fleet.lock_timeout();
    let mut poll = FIRST_POLL;
    let mut waited = false;
    loop {
        let notified = cred.fleet.stored.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match fleet.lock(&keys, &holder).await {
            Answer::Down => return fetch(shared, cred, None).await,
            Answer::Up((got, read)) => {
                if let Some(token) = adopt(shared, cred, fleet, &keys, read.token, purpose) {
                    if got {
                        fleet.unlock(&keys, &holder).await;
                    }
                    if waited {
                        fleet.metrics.count(&cred.name, Op::Wait, "token");
                    }
                    return (Ok(token), cred.auth.version());
                }
                if let Some((reason, wait)) = read.hold {
                    if got {
                        fleet.unlock(&keys, &holder).await;
                    }
                    return held(cred, reason, wait);
                }
                if got {
                    return fetch(shared, cred, Some((fleet, &keys, Some(holder.as_str())))).await;
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        waited = true;
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(poll.min(deadline - now)) => {}
        }
        poll = (poll * 2).min(MAX_POLL);
    }
    fleet.metrics.count(&cred.name, Op::Wait, "timeout");
    tracing::warn!(
        credential = %cred.name,
        lock_timeout_ms = u64::try_from(fleet.lock_timeout().as_millis()).unwrap_or(u64::MAX),
        "token store: another replica has held the token lock past lock_timeout; asking the token endpoint alone"
    );
    fetch(shared, cred, Some((fleet, &keys, None))).await
}

/// Asks the endpoint (unless on hold) and keeps the token locally; with `to` also stores
/// it in Redis (releasing the lock of the holder given), or on failure shares a hold so
/// the other replicas do not repeat the request at once.
async fn fetch(
    shared: &Arc<Shared>,
    cred: &Arc<CredState>,
    to: Option<(&Arc<Fleet>, &Arc<Keys>, Option<&str>)>,
) -> Outcome {
    let (result, version) = shared.ask(cred).await;
    let result = match result {
        Ok(f) => {
            shared.store(cred, &f.token, f.lifetime);
            if let Some((fleet, keys, holder)) = to {
                let id = TokenId::random();
                cred.fleet.set_current(f.token.id(), id);
                let remaining = f.token.remaining_at(Instant::now());
                fleet
                    .put(keys, id, f.lifetime, remaining, f.token.secret(), holder)
                    .await;
            }
            Ok(f.token)
        }
        Err(error) => {
            if let Some((fleet, keys, holder)) = to {
                match shared_hold(cred, &error) {
                    Some((wait, reason)) => fleet.hold(keys, &reason, wait, holder).await,
                    None => {
                        if let Some(h) = holder {
                            fleet.unlock(keys, h).await;
                        }
                    }
                }
            }
            Err(error)
        }
    };
    (result, version)
}

/// What hold the other replicas should honour after `error`: the endpoint's rate limit,
/// or (for a transient failure of a request that was sent) the failure memo. Permanent
/// failures are not shared: a replica with a fixed secret file should not wait for one
/// without.
fn shared_hold(cred: &CredState, error: &TokenError) -> Option<(Duration, String)> {
    if let Some((wait, reason)) = cred.limit.held(Instant::now()) {
        return Some((wait, reason.to_string()));
    }
    let failure = error.failure();
    if error.is_permanent() || failure.outcome().is_none() {
        return None;
    }
    let wait = memo_for(false, failure.retry_after());
    let text = error.to_string();
    let prefix = format!("credential \"{}\": ", cred.name);
    let reason = text.strip_prefix(&prefix).unwrap_or(&text);
    Some((
        wait,
        format!("another replica's token request failed: {reason}"),
    ))
}

/// The fleet is on hold: honour it here too, and fail without asking.
fn held(cred: &CredState, reason: String, wait: Duration) -> Outcome {
    let reason: Arc<str> = sanitize(&reason, 300);
    cred.limit.hold(Instant::now(), wait, Arc::clone(&reason));
    cred.m.deferred.inc();
    let error = TokenError::new(Arc::clone(&cred.name), Failure::Deferred { wait, reason });
    (Err(error), cred.auth.version())
}

/// Adopts a stored token if it is good enough for `purpose` and not revoked: it becomes
/// the local token, with a schedule computed from its lifetime and the time it has left
/// (the key's TTL; no clock of another replica is involved). A token sealed with an older
/// key is sealed again with the first one, in the background.
fn adopt(
    shared: &Arc<Shared>,
    cred: &Arc<CredState>,
    fleet: &Arc<Fleet>,
    keys: &Arc<Keys>,
    found: Option<Found>,
    purpose: Purpose,
) -> Option<Token> {
    let found = found?;
    let fleet_id = found.opened.id;
    if cred.fleet.is_revoked(fleet_id) {
        return None;
    }
    let now = Instant::now();
    let good = |t: &Token| match purpose {
        Purpose::Request => t.usable_at(now),
        Purpose::Refresh => !t.stale_at(now),
    };
    // The token we already hold: keep it (and its local id, which requests in flight
    // carry for invalidation).
    if let Some(local) = cred.fleet.local_id(fleet_id) {
        if let Some(current) = shared.current(cred).filter(|t| t.id() == local) {
            return good(&current).then_some(current);
        }
    }
    let lifetime = found.opened.lifetime.clamp(MIN_LIFETIME, MAX_LIFETIME);
    let remaining = found.remaining.min(lifetime);
    let (received, schedule) = match now.checked_sub(lifetime - remaining) {
        Some(at) => (at, Schedule::new(lifetime)),
        None => (now, Schedule::new(remaining)),
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    // Every replica reads the same `dpop.key_file`: the token is bound to that key.
    let token = Token::bound(
        found.opened.token.clone(),
        id,
        received,
        &schedule,
        cred.auth.dpop_key(),
    );
    if !good(&token) {
        return None;
    }
    shared.store(cred, &token, remaining);
    cred.fleet.set_current(id, fleet_id);
    tracing::debug!(
        credential = %cred.name,
        remaining_secs = remaining.as_secs(),
        "token taken from the token store"
    );
    if found.opened.stale_key {
        let (fleet, keys) = (Arc::clone(fleet), Arc::clone(keys));
        tokio::spawn(async move { fleet.reseal(&keys, &found).await });
    }
    Some(token)
}

/// The fleet side of [`TokenCache::invalidate_id`]: the token `sent` was just dropped
/// locally after a 401; drop it from Redis (compare-and-delete on its fleet id) and tell
/// every replica. Never adopted again here.
pub(super) fn invalidate(shared: &Arc<Shared>, cred: &Arc<CredState>, sent: u64) {
    let Some(fleet) = shared.fleet_for(cred) else {
        return;
    };
    let Some(fleet_id) = cred.fleet.fleet_id(sent) else {
        return;
    };
    cred.fleet.revoke(fleet_id);
    let keys = fleet.keys(&cred.fleet, &cred.name, &cred.def);
    let fleet = Arc::clone(fleet);
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move { fleet.invalidate(&keys, fleet_id).await });
    }
}

impl Shared {
    /// The token store, for a credential that uses it (see [`shares`]).
    pub(crate) fn fleet_for(&self, cred: &CredState) -> Option<&Arc<Fleet>> {
        self.fleet.as_ref().filter(|_| shares(&cred.def))
    }

    /// The configured credential `name`, if `token_key` is its key here (a replica with
    /// another definition of it uses another key and ignores the notice). Never a
    /// static credential: no notice concerns one.
    fn by_key(&self, name: &str, token_key: &str) -> Option<(Arc<CredState>, Arc<Fleet>)> {
        let cred = self.slots.get(name).map(|c| Arc::clone(&c))?;
        let fleet = self.fleet_for(&cred)?;
        let keys = fleet.keys(&cred.fleet, &cred.name, &cred.def);
        (keys.token == token_key).then(|| (cred, Arc::clone(fleet)))
    }
}

impl NoticeSink for Shared {
    fn stored(&self, name: &str, token_key: &str) {
        if let Some((cred, _)) = self.by_key(name, token_key) {
            cred.fleet.stored.notify_waiters();
        }
    }

    fn revoked(&self, name: &str, token_key: &str, id: TokenId) {
        let Some((cred, fleet)) = self.by_key(name, token_key) else {
            return;
        };
        cred.fleet.revoke(id);
        let Some(local) = cred.fleet.local_id(id) else {
            return;
        };
        let current = cred.token.load();
        if let Some(token) = current.as_ref().filter(|t| t.id() == local) {
            let previous = cred.token.compare_and_swap(token, None);
            if previous.as_ref().is_some_and(|p| p.id() == local) {
                cred.m.expiry.clear();
                fleet.metrics.count(&cred.name, Op::Notice, "dropped");
                tracing::info!(
                    credential = %cred.name,
                    "another replica's upstream rejected the shared token: dropped it here too"
                );
            }
        }
    }
}
