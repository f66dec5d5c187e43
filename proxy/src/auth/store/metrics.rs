//! The token store's metrics, registered only when a store is configured:
//!
//! - `tollgate_token_store_total{credential,op,outcome}`: store operations by outcome.
//!   Every series of [`SERIES`] exists from the start (at zero) for each credential:
//!   - `read`: `hit` (a good token, adopted), `miss`, `held` (the token endpoint is on
//!     hold for the fleet), `unreadable` (a value that is not ours or does not decrypt
//!     with our keys: a miss), `error`, `fallback` (not tried: the store is off);
//!   - `lock`: `acquired` (this replica asks the token endpoint), `busy`, `error`;
//!   - `wait`: `token` (another replica's token arrived), `timeout` (none within
//!     `lock_timeout`: fetched alone);
//!   - `write`: `ok`, `error`; `hold`: `ok`, `error`; `unlock`: `error`;
//!   - `invalidate`: `deleted`, `absent` (already replaced or expired), `error`,
//!     `fallback`;
//!   - `notice`: `dropped` (another replica's 401 made this one drop its copy);
//!   - `reseal`: `ok` (a token sealed with an older key was sealed again with the first).
//! - `tollgate_token_store_up`: 1 while the store is used, 0 while this replica falls back
//!   to its own cache.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::auth::error::AuthError;

/// A store operation (the `op` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Lock,
    Wait,
    Write,
    Hold,
    Unlock,
    Invalidate,
    Notice,
    Reseal,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Lock => "lock",
            Op::Wait => "wait",
            Op::Write => "write",
            Op::Hold => "hold",
            Op::Unlock => "unlock",
            Op::Invalidate => "invalidate",
            Op::Notice => "notice",
            Op::Reseal => "reseal",
        }
    }
}

/// Every (op, outcome) pair counted.
pub(crate) const SERIES: &[(Op, &str)] = &[
    (Op::Read, "hit"),
    (Op::Read, "miss"),
    (Op::Read, "held"),
    (Op::Read, "unreadable"),
    (Op::Read, "error"),
    (Op::Read, "fallback"),
    (Op::Lock, "acquired"),
    (Op::Lock, "busy"),
    (Op::Lock, "error"),
    (Op::Wait, "token"),
    (Op::Wait, "timeout"),
    (Op::Write, "ok"),
    (Op::Write, "error"),
    (Op::Hold, "ok"),
    (Op::Hold, "error"),
    (Op::Unlock, "error"),
    (Op::Invalidate, "deleted"),
    (Op::Invalidate, "absent"),
    (Op::Invalidate, "error"),
    (Op::Invalidate, "fallback"),
    (Op::Notice, "dropped"),
    (Op::Reseal, "ok"),
];

pub(crate) struct StoreMetrics {
    ops: IntCounterVec,
    pub(crate) up: IntGauge,
}

impl StoreMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, AuthError> {
        let ops = IntCounterVec::new(
            Opts::new(
                "tollgate_token_store_total",
                "Token store (Redis) operations, by credential, operation and outcome.",
            ),
            &["credential", "op", "outcome"],
        )?;
        let up = IntGauge::new(
            "tollgate_token_store_up",
            "1 while the token store is used; 0 while this replica falls back to its own cache.",
        )?;
        registry.register(Box::new(ops.clone()))?;
        registry.register(Box::new(up.clone()))?;
        Ok(StoreMetrics { ops, up })
    }

    /// Creates every series of a credential at zero.
    pub(crate) fn credential(&self, name: &str) {
        for (op, outcome) in SERIES {
            let _ = self.ops.with_label_values(&[name, op.as_str(), outcome]);
        }
    }

    pub(crate) fn remove(&self, name: &str) {
        for (op, outcome) in SERIES {
            let _ = self.ops.remove_label_values(&[name, op.as_str(), outcome]);
        }
    }

    /// Counts one `op` with `outcome`; pairs not in [`SERIES`] are not counted (a
    /// failed unlock's fallback, say), so the label set stays the documented one.
    pub(crate) fn count(&self, name: &str, op: Op, outcome: &str) {
        if SERIES.contains(&(op, outcome)) {
            self.counter(name, op, outcome).inc();
        }
    }

    fn counter(&self, name: &str, op: Op, outcome: &str) -> IntCounter {
        self.ops.with_label_values(&[name, op.as_str(), outcome])
    }
}
