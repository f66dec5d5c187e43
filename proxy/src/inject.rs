//! Attaching the route's credential: a token from the cache (`auth`) turned into the
//! route's header value, and token failures mapped to `token_unavailable`.
//!
//! The warm path does no allocation and no map lookup: the route's [`CredHandle`] is
//! resolved when the config is loaded (`state::RouteRuntime`), the cache lends the token,
//! and the header value (`Bearer <token>`) was built when the token arrived.

use crate::auth::{CredHandle, TokenCache, TokenData, TokenError};
use crate::errors::{Code, ProxyError};
use http::HeaderValue;
use std::sync::Arc;
use std::time::Instant;
use tollgate_rules::Inject;

/// The credential attached to one request.
pub struct Injected {
    pub value: HeaderValue,
    /// Id of the token sent, for compare-and-invalidate on a 401.
    pub token_id: u64,
}

pub struct Injector {
    pub tokens: Arc<TokenCache>,
}

fn unavailable(e: &TokenError, route: Option<&str>) -> ProxyError {
    ProxyError::new(Code::TokenUnavailable, e.to_string(), route)
}

fn build(inject: &Inject, token: &TokenData) -> Option<Injected> {
    Some(Injected {
        value: token.header_value(&inject.prefix)?,
        token_id: token.id(),
    })
}

fn not_a_header_value(inject: &Inject, route: Option<&str>) -> ProxyError {
    ProxyError::new(
        Code::TokenUnavailable,
        format!(
            "credential {:?}: the token endpoint returned a token that is not a valid header value",
            inject.credential
        ),
        route,
    )
}

impl Injector {
    pub fn new(tokens: Arc<TokenCache>) -> Injector {
        Injector { tokens }
    }

    /// The route's handle on its credential (resolve once per config load).
    pub fn handle(&self, inject: &Inject) -> Option<CredHandle> {
        self.tokens.handle(&inject.credential)
    }

    /// The credential for a request: a cache hit without awaiting, else the
    /// single-flight fetch. `handle` is the route's, from `state::RouteRuntime`; without
    /// one the credential is looked up by name. `now` is when the request started (for
    /// the token's expiry check; saves a clock read).
    pub async fn header_for(
        &self,
        inject: &Inject,
        handle: Option<&CredHandle>,
        route: Option<&str>,
        now: Instant,
    ) -> Result<Injected, ProxyError> {
        if let Some(h) = handle {
            let now = tokio::time::Instant::from_std(now);
            if let Some(hit) = self.tokens.hit_at(h, now, |t| build(inject, t)) {
                return hit.ok_or_else(|| not_a_header_value(inject, route));
            }
        }
        let token = self
            .tokens
            .get(&inject.credential)
            .await
            .map_err(|e| unavailable(&e, route))?;
        build(inject, &token).ok_or_else(|| not_a_header_value(inject, route))
    }

    /// After a 401: drop the token that was sent, unless the cache already moved on.
    /// Returns whether this call invalidated it.
    pub fn invalidate(&self, inject: &Inject, sent: &Injected) -> bool {
        self.tokens.invalidate_id(&inject.credential, sent.token_id)
    }
}
