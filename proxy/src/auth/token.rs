//! [`Token`]: an access token with its schedule, shared as an `Arc`; and
//! [`TokenInfo`], what `tollgate token NAME` prints about a freshly fetched one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use tokio::time::Instant;

use super::dpop::{self, DpopKey};
use super::schedule::Schedule;

/// The prefix of a DPoP-bound token (RFC 9449 §7.1).
pub const DPOP_PREFIX: &str = "DPoP ";

/// An access token. Cloning copies an `Arc`. `Debug` never shows the value. Derefs to
/// [`TokenData`], which the cache's hit path lends out without cloning the `Arc`.
#[derive(Clone)]
pub struct Token(Arc<TokenData>);

/// What a [`Token`] holds: the value, its id and schedule, and the finished
/// `Authorization: Bearer …` header value, built once per token rather than per request.
pub struct TokenData {
    value: Box<str>,
    /// `Bearer <value>` (`DPoP <value>` for a DPoP-bound token), marked sensitive; `None`
    /// if the value cannot be a header value.
    bearer: Option<HeaderValue>,
    /// The key a DPoP-bound token is bound to (the one its token request's proof was
    /// signed with), and its `ath`.
    dpop: Option<DpopBinding>,
    id: u64,
    refresh_at: Instant,
    usable_until: Instant,
    expires_at: Instant,
}

/// The prefix [`TokenData::header_value`] has ready-made.
pub const BEARER_PREFIX: &str = "Bearer ";

/// What a DPoP-bound token needs for each request's proof.
pub struct DpopBinding {
    pub key: Arc<DpopKey>,
    /// base64url(SHA-256(token)), the proofs' `ath`.
    pub ath: Box<str>,
}

impl Token {
    /// A token whose lifetime started at `start` (when its token request was sent, not
    /// when the answer arrived), with the given schedule. `id` is unique per cache
    /// (compare-and-invalidate uses it).
    pub(crate) fn new(value: String, id: u64, start: Instant, schedule: &Schedule) -> Self {
        Self::bound(value, id, start, schedule, None)
    }

    /// [`new`](Self::new) for a token bound to a DPoP key (`None`: a bearer token).
    pub(crate) fn bound(
        value: String,
        id: u64,
        start: Instant,
        schedule: &Schedule,
        dpop: Option<Arc<DpopKey>>,
    ) -> Self {
        let at = |d: Duration| start.checked_add(d).unwrap_or(start);
        let prefix = if dpop.is_some() {
            DPOP_PREFIX
        } else {
            BEARER_PREFIX
        };
        let bearer = prefixed(prefix, &value);
        let dpop = dpop.map(|key| DpopBinding {
            key,
            ath: dpop::ath(&value).into_boxed_str(),
        });
        Token(Arc::new(TokenData {
            value: value.into_boxed_str(),
            bearer,
            dpop,
            id,
            refresh_at: at(schedule.refresh_after),
            usable_until: at(schedule.usable_for),
            expires_at: at(schedule.lifetime),
        }))
    }

    pub(crate) fn from_arc(data: Arc<TokenData>) -> Self {
        Token(data)
    }

    pub(crate) fn arc(&self) -> &Arc<TokenData> {
        &self.0
    }
}

impl std::ops::Deref for Token {
    type Target = TokenData;
    fn deref(&self) -> &TokenData {
        &self.0
    }
}

/// `prefix` + `token` as a sensitive header value, or `None` when it cannot be one.
fn prefixed(prefix: &str, token: &str) -> Option<HeaderValue> {
    let mut v = Vec::with_capacity(prefix.len() + token.len());
    v.extend_from_slice(prefix.as_bytes());
    v.extend_from_slice(token.as_bytes());
    let mut v = HeaderValue::from_maybe_shared(bytes::Bytes::from(v)).ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl TokenData {
    /// The access token, for the `Authorization` header. The one accessor: call it
    /// only where the value goes on the wire.
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// `prefix` followed by the token, as a sensitive header value: for the usual
    /// `"Bearer "` (`"DPoP "` for a DPoP-bound token) a copy of the bytes joined when the
    /// token arrived, for any other prefix
    /// joined now. `None` if the token cannot be sent in a header (the endpoint returned
    /// control characters).
    ///
    /// A copy, not a clone: cloning the shared value would write its reference count,
    /// one cache line that every worker thread would then fight over (micro bench
    /// `token_cache_hit/hit_with_header/8_threads_cpu_ns`: ~210 ns with clones).
    pub fn header_value(&self, prefix: &str) -> Option<HeaderValue> {
        if prefix == self.joined_prefix() {
            let mut v = HeaderValue::from_bytes(self.bearer.as_ref()?.as_bytes()).ok()?;
            v.set_sensitive(true);
            Some(v)
        } else {
            prefixed(prefix, &self.value)
        }
    }

    /// `prefix` followed by the token, as header-value bytes: for the usual `"Bearer "`
    /// (`"DPoP "` for a DPoP-bound token) the bytes joined when the token arrived (lent, not copied), for any other prefix
    /// joined now. `None` if the token cannot be sent in a header.
    pub fn value_bytes(&self, prefix: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
        if prefix == self.joined_prefix() {
            return self
                .bearer
                .as_ref()
                .map(|b| std::borrow::Cow::Borrowed(b.as_bytes()));
        }
        prefixed(prefix, &self.value).map(|v| std::borrow::Cow::Owned(v.as_bytes().to_vec()))
    }

    /// The prefix joined to the value when the token arrived.
    fn joined_prefix(&self) -> &'static str {
        if self.dpop.is_some() {
            DPOP_PREFIX
        } else {
            BEARER_PREFIX
        }
    }

    /// The DPoP key and `ath` of a DPoP-bound token.
    pub fn dpop(&self) -> Option<&DpopBinding> {
        self.dpop.as_ref()
    }

    /// Unique within one [`TokenCache`](super::TokenCache); used by
    /// [`TokenCache::invalidate`](super::TokenCache::invalidate).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When the token expires (by its lifetime as we computed it).
    pub fn expires_at(&self) -> std::time::Instant {
        self.expires_at.into_std()
    }

    /// May the token be handed out at `now` (before the expiry cutoff)?
    pub(crate) fn usable_at(&self, now: Instant) -> bool {
        now < self.usable_until
    }

    /// Is it time to refresh it in the background?
    pub(crate) fn stale_at(&self, now: Instant) -> bool {
        now >= self.refresh_at
    }

    pub(crate) fn usable_until(&self) -> Instant {
        self.usable_until
    }

    /// Time left until it expires, at `now`.
    pub(crate) fn remaining_at(&self, now: Instant) -> Duration {
        self.expires_at.saturating_duration_since(now)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Debug for TokenData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("value", &format_args!("[redacted]"))
            .field(
                "expires_in",
                &self.expires_at.saturating_duration_since(Instant::now()),
            )
            .finish()
    }
}

/// A freshly fetched token and what the endpoint said about it (`tollgate token`).
#[derive(Clone, Debug)]
pub struct TokenInfo {
    /// What authenticated the token request (the secret file, key, assertion file,
    /// service account) or, for a static credential, its file. Never a secret.
    pub used: String,
    /// As sent by the endpoint (`Bearer`, or empty when it sent none); `static` for a
    /// static credential.
    pub token_type: String,
    /// The `expires_in` the endpoint sent, if any.
    pub expires_in: Option<Duration>,
    /// The lifetime the cache would use.
    pub lifetime: Duration,
    /// `expires_in`, `jwt_exp`, `default` or `static`.
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
        let v = t.header_value(BEARER_PREFIX).unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("very-secret"));
    }

    #[test]
    fn header_value_for_any_prefix() {
        let t = Token::new(
            "abc".into(),
            1,
            Instant::now(),
            &Schedule::new(Duration::from_secs(60)),
        );
        assert_eq!(t.header_value("Bearer ").unwrap(), "Bearer abc");
        assert_eq!(t.header_value("").unwrap(), "abc");
        assert_eq!(t.header_value("Token token=").unwrap(), "Token token=abc");
        assert!(t.header_value("Bearer ").unwrap().is_sensitive());
        assert!(t.header_value("x ").unwrap().is_sensitive());
        let bad = Token::new(
            "a\nb".into(),
            2,
            Instant::now(),
            &Schedule::new(Duration::from_secs(60)),
        );
        assert!(bad.header_value("Bearer ").is_none());
        assert!(bad.header_value("x ").is_none());
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
