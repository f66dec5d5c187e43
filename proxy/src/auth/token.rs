//! [`Token`]: an access token with its schedule, shared as an `Arc`; and
//! [`TokenInfo`], what `tollgate token NAME` prints about a freshly fetched one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::schedule::Schedule;

/// An access token. Cloning copies an `Arc`. `Debug` never shows the value.
#[derive(Clone)]
pub struct Token(Arc<Inner>);

struct Inner {
    value: Box<str>,
    id: u64,
    refresh_at: Instant,
    usable_until: Instant,
    expires_at: Instant,
}

impl Token {
    /// A token that arrived at `received`, with the given schedule. `id` is unique per
    /// cache (compare-and-invalidate uses it).
    pub(crate) fn new(value: String, id: u64, received: Instant, schedule: &Schedule) -> Self {
        let at = |d: Duration| received.checked_add(d).unwrap_or(received);
        Token(Arc::new(Inner {
            value: value.into_boxed_str(),
            id,
            refresh_at: at(schedule.refresh_after),
            usable_until: at(schedule.usable_for),
            expires_at: at(schedule.lifetime),
        }))
    }

    /// The access token, for the `Authorization` header. The one accessor: call it
    /// only where the value goes on the wire.
    pub fn secret(&self) -> &str {
        &self.0.value
    }

    /// Unique within one [`TokenCache`](super::TokenCache); used by
    /// [`TokenCache::invalidate`](super::TokenCache::invalidate).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// When the token expires (by its lifetime as we computed it).
    pub fn expires_at(&self) -> std::time::Instant {
        self.0.expires_at.into_std()
    }

    /// May the token be handed out at `now` (before the expiry cutoff)?
    pub(crate) fn usable_at(&self, now: Instant) -> bool {
        now < self.0.usable_until
    }

    /// Is it time to refresh it in the background?
    pub(crate) fn stale_at(&self, now: Instant) -> bool {
        now >= self.0.refresh_at
    }

    pub(crate) fn usable_until(&self) -> Instant {
        self.0.usable_until
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.0.id)
            .field("value", &format_args!("[redacted]"))
            .field(
                "expires_in",
                &self.0.expires_at.saturating_duration_since(Instant::now()),
            )
            .finish()
    }
}

/// A freshly fetched token and what the endpoint said about it (`tollgate token`).
#[derive(Clone, Debug)]
pub struct TokenInfo {
    /// As sent by the endpoint (`Bearer` normally; anything else is accepted and shown).
    pub token_type: String,
    /// The `expires_in` the endpoint sent, if any.
    pub expires_in: Option<Duration>,
    /// The lifetime the cache would use.
    pub lifetime: Duration,
    /// `expires_in`, `jwt_exp` or `default`.
    pub lifetime_source: &'static str,
    /// The `scope` the endpoint granted, if it said.
    pub scope: Option<String>,
    /// The claims, when the token is a JWT (decoded, not verified).
    pub claims: Option<serde_json::Value>,
    pub token: Token,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let t = Token::new(
            "eyJ-very-secret".into(),
            7,
            Instant::now(),
            &Schedule::new(Duration::from_secs(60)),
        );
        let s = format!("{t:?}");
        assert!(s.contains("[redacted]"), "{s}");
        assert!(!s.contains("very-secret"), "{s}");
        assert_eq!(t.secret(), "eyJ-very-secret");
        assert_eq!(t.id(), 7);
    }

    #[test]
    fn schedule_is_applied() {
        let now = Instant::now();
        let t = Token::new("x".into(), 1, now, &Schedule::new(Duration::from_secs(100)));
        assert!(!t.stale_at(now + Duration::from_secs(74)));
        assert!(t.stale_at(now + Duration::from_secs(75)));
        assert!(t.usable_at(now + Duration::from_millis(89_999)));
        assert!(!t.usable_at(now + Duration::from_secs(90)));
        assert_eq!(t.expires_at(), (now + Duration::from_secs(100)).into_std());
    }
}
