//! Never asking the token endpoint before it allows: a credential's [`RateLimit`] holds
//! the moment before which no token request is sent, and [`observe`] wraps its endpoint
//! so every answer updates it (Okta-style `X-Rate-Limit-Remaining: 0` with
//! `X-Rate-Limit-Reset`, judged by [`rate_limit_wait`]). `Retry-After` on 429/503 is
//! handled by the failure memo, which the cache's flight also feeds into this hold.
//! Through the token store the hold is shared with the whole fleet.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus::GaugeVec;
use tokio::time::Instant;

use super::client::{BoxFuture, HttpRequest, HttpResponse, TokenEndpoint, TransportError};
use super::schedule::rate_limit_wait;

/// One credential's hold on its token endpoint.
pub(crate) struct RateLimit {
    credential: Arc<str>,
    until: Mutex<Option<(Instant, Arc<str>)>>,
    /// `tollgate_token_rate_limit_remaining`; the series appears once the endpoint sends
    /// the header.
    remaining: GaugeVec,
}

impl RateLimit {
    pub(crate) fn new(credential: &str, remaining: GaugeVec) -> Self {
        RateLimit {
            credential: Arc::from(credential),
            until: Mutex::new(None),
            remaining,
        }
    }

    /// Time left and reason, while a hold lasts.
    pub(crate) fn held(&self, now: Instant) -> Option<(Duration, Arc<str>)> {
        let until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        until
            .as_ref()
            .filter(|(t, _)| *t > now)
            .map(|(t, why)| (*t - now, Arc::clone(why)))
    }

    /// Holds until `now + wait` unless a longer hold is on.
    pub(crate) fn hold(&self, now: Instant, wait: Duration, reason: Arc<str>) {
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        let end = now + wait;
        if until.as_ref().is_none_or(|(t, _)| *t < end) {
            *until = Some((end, reason));
        }
    }

    fn observe(&self, resp: &HttpResponse) {
        if let Some(n) = resp
            .rate_limit
            .remaining
            .as_deref()
            .and_then(|r| r.trim().parse::<f64>().ok())
        {
            self.remaining.with_label_values(&[&self.credential]).set(n);
        }
        let now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let wait = rate_limit_wait(
            resp.status,
            resp.rate_limit.remaining.as_deref(),
            resp.rate_limit.reset.as_deref(),
            now_unix,
        );
        if let Some(wait) = wait {
            let reason: Arc<str> = if resp.status == 429 {
                Arc::from("the token endpoint answered 429 and its X-Rate-Limit-Reset is later")
            } else {
                Arc::from("its rate limit is used up (X-Rate-Limit-Remaining: 0) until X-Rate-Limit-Reset")
            };
            tracing::warn!(
                credential = %self.credential,
                wait_secs = wait.as_secs(),
                "token endpoint rate limit reached: no token request before it resets"
            );
            self.hold(Instant::now(), wait, reason);
        }
    }
}

/// `inner`, with every answer judged by `limit`.
pub(crate) fn observe(
    inner: Arc<dyn TokenEndpoint>,
    limit: &Arc<RateLimit>,
) -> Arc<dyn TokenEndpoint> {
    Arc::new(Observed {
        inner,
        limit: Arc::clone(limit),
    })
}

struct Observed {
    inner: Arc<dyn TokenEndpoint>,
    limit: Arc<RateLimit>,
}

impl TokenEndpoint for Observed {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        Box::pin(async move {
            let result = self.inner.send(request).await;
            if let Ok(resp) = &result {
                self.limit.observe(resp);
            }
            result
        })
    }
}
