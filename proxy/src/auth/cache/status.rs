//! What the status page shows about each credential: its state, the token's age and
//! time to expiry, the last token request's outcome. Never the token, never a secret:
//! errors are [`TokenError`]s, whose text is built to be shown (sanitized, bounded).

use super::{lock, CredState, TokenCache};
use crate::auth::{Token, TokenError};
use std::time::{Instant, SystemTime};

/// The outcome of a credential's token requests, kept for the status page.
#[derive(Default)]
pub(crate) struct Last {
    /// When the token in the slot was fetched (wall clock and monotonic).
    fetched: Option<(SystemTime, Instant)>,
    /// The last failure, and when.
    error: Option<(SystemTime, String)>,
    /// The last outcome was a failure.
    failing: bool,
    ok: u64,
    failed: u64,
}

/// Records one token request's outcome.
pub(super) fn record(cred: &CredState, result: &Result<Token, TokenError>) {
    let mut last = lock(&cred.last);
    match result {
        Ok(_) => {
            last.fetched = Some((SystemTime::now(), Instant::now()));
            last.failing = false;
            last.ok += 1;
        }
        Err(e) => {
            last.error = Some((SystemTime::now(), e.to_string()));
            last.failing = true;
            last.failed += 1;
        }
    }
}

/// One credential on the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredentialStatus {
    pub name: String,
    /// How it gets its token (`Credential::describe`): grant, endpoint, auth method.
    pub kind: String,
    /// `valid` (a token is held and usable), `expired` (held but past use),
    /// `failing` (no usable token and the last request failed), `none` (never fetched).
    pub state: &'static str,
    /// Seconds since the token held was fetched.
    pub token_age_seconds: Option<u64>,
    /// Seconds until the token held expires (negative once expired).
    pub expires_in_seconds: Option<i64>,
    /// When the token held expires (RFC 3339).
    pub expires_at: Option<String>,
    /// A background refresher keeps the token fresh.
    pub refreshing: bool,
    /// The last failed token request's error, and when (RFC 3339).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Token requests of this process, by outcome.
    pub token_requests_ok: u64,
    pub token_requests_failed: u64,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl TokenCache {
    /// Every configured credential's state, by name.
    pub fn status(&self) -> Vec<CredentialStatus> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut out: Vec<CredentialStatus> = self
            .shared
            .slots
            .iter()
            .map(|entry| {
                let cred = entry.value();
                let token = cred.token.load_full().map(Token::from_arc);
                let last = lock(&cred.last);
                let expires_in = token.as_ref().map(|t| {
                    let at = t.expires_at();
                    match at.checked_duration_since(now) {
                        Some(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                        None => -i64::try_from((now - at).as_secs()).unwrap_or(i64::MAX),
                    }
                });
                let usable = token
                    .as_ref()
                    .is_some_and(|t| t.usable_at(tokio::time::Instant::from_std(now)));
                let state = if usable {
                    "valid"
                } else if last.failing {
                    "failing"
                } else if token.is_some() {
                    "expired"
                } else {
                    "none"
                };
                CredentialStatus {
                    name: cred.name.to_string(),
                    kind: cred.def.describe(),
                    state,
                    token_age_seconds: token
                        .as_ref()
                        .and(last.fetched)
                        .map(|(_, at)| now.saturating_duration_since(at).as_secs()),
                    expires_in_seconds: expires_in,
                    expires_at: expires_in.map(|s| {
                        let d = std::time::Duration::from_secs(s.unsigned_abs());
                        rfc3339(if s >= 0 {
                            wall + d
                        } else {
                            wall.checked_sub(d).unwrap_or(wall)
                        })
                    }),
                    refreshing: cred.refreshing.load(std::sync::atomic::Ordering::Relaxed),
                    last_error: last.error.as_ref().map(|(_, e)| e.clone()),
                    last_error_at: last.error.as_ref().map(|(t, _)| rfc3339(*t)),
                    token_requests_ok: last.ok,
                    token_requests_failed: last.failed,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}
