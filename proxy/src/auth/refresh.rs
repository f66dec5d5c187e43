//! The background refresher: started by a request that finds its token past 75 % of
//! its lifetime, at most one per credential. It joins or starts a fetch (the same
//! single flight requests use) and, on failure, retries with backoff and jitter
//! ([`retry_delay`]; every 30 s for permanent failures) for as long as the current
//! token is still usable. Then it stops: with no usable token, requests take over,
//! one quick attempt each, shielded by the failure memo.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use tokio::time::Instant;

use super::cache::{wait, CredState, Joined, Purpose, Shared};
use super::schedule::retry_delay;

/// Starts the refresher of `cred` unless one runs. Cheap when one does (an atomic
/// load). Outside a tokio runtime it does nothing.
pub(crate) fn kick(shared: &Arc<Shared>, cred: Arc<CredState>) {
    if cred.refreshing.load(Ordering::Relaxed)
        || cred
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(run(Arc::clone(shared), cred));
        }
        Err(_) => cred.refreshing.store(false, Ordering::Release),
    }
}

async fn run(shared: Arc<Shared>, cred: Arc<CredState>) {
    let _running = Running(&cred);
    let mut attempt = 0u32;
    loop {
        let result = match shared.join_or_start(&cred, Purpose::Refresh) {
            Joined::Ready(_) | Joined::Failed(_) => return,
            Joined::Waiting(rx) => wait(rx, &cred.name).await,
        };
        let Err(error) = result else {
            return;
        };
        let delay = retry_delay(
            error.is_permanent(),
            error.failure().retry_after(),
            attempt,
            jitter(),
        );
        attempt = attempt.saturating_add(1);
        let Some(current) = shared.current(&cred) else {
            return;
        };
        let now = Instant::now();
        if !current.usable_at(now) {
            return;
        }
        let next = now.checked_add(delay).unwrap_or(current.usable_until());
        tokio::time::sleep_until(next.min(current.usable_until())).await;
        match shared.current(&cred) {
            Some(token) if token.usable_at(Instant::now()) => {}
            _ => return,
        }
    }
}

/// Clears the "refresher running" flag however the task ends.
struct Running<'a>(&'a CredState);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
    }
}

/// A uniform sample from `[0, 1)` for backoff jitter.
fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_a_unit_sample() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
