//! The values inject routes send: OAuth 2 tokens (client credentials, RFC 6749 §4.4; JWT
//! bearer, RFC 7523 §2.1; token exchange, RFC 8693; Google ID tokens) and static values.
//!
//! Start reading at [`TokenCache`] (`cache.rs`): the proxy holds one `Arc<TokenCache>`
//! and, per inject route, a [`CredHandle`] resolved at config load; it calls
//! [`TokenCache::hit`] on every request (synchronous; an `ArcSwapOption` load, a time
//! check and a striped counter: no allocation, no shared write in the common case), falls
//! back to [`TokenCache::get`] on a miss, and calls [`TokenCache::invalidate_id`] when an
//! upstream answers 401 with the token it sent.
//!
//! The pieces, one concern each:
//! - `schedule.rs`: pure timing rules: lifetime, refresh at 75 %, the
//!   `min(30 s, 10 %)` cutoff, backoff with jitter, `Retry-After`, failure memo.
//! - `client.rs`: the token request (form body and headers, built by a pure function),
//!   the [`TokenEndpoint`] trait that sends it, the reqwest implementation, and the
//!   parsing of the answer (RFC 6749 §5.1 / §5.2, RFC 8693 §2.2, ID tokens).
//! - `method.rs`: a credential's live material (its grant, client authentication and
//!   token endpoint) and the token request made from it; `fetch.rs`: one attempt
//!   (trying the previous client secret when the current one is refused, or reading a
//!   static credential's file).
//! - `secret.rs`: client secrets (inline or files re-read when they change) and the
//!   other files a credential reads, through one cheap file watcher.
//! - `jwt.rs`: assertions signed with ring (ES256, RS256, PS256; certificate
//!   thumbprints; Google service account grants), and reading a JWT's claims without
//!   verification (for `exp` and `tollgate token`). `service_account.rs`: Google's key
//!   file. `discovery.rs`: OIDC discovery of an `issuer`'s token endpoint.
//! - `cache.rs`: the cache (a map of credentials, each holding its token), single-flight fetches, background refresh, the
//!   failure memo and hot reload. `refresh.rs`: the background refresher's loop.
//! - `check.rs`: each file a credential names, read and checked the way the cache
//!   reads it, without network (for `tollgate check`, start-up and reload).
//! - `token.rs`: [`Token`] and [`TokenInfo`]; `error.rs`: [`TokenError`] and [`AuthError`].
//! - `metrics.rs`: the `tollgate_token_*` metrics, registered on the given registry.
//! - `ratelimit.rs`: the hold on a token endpoint whose rate limit says to wait.
//! - `store/`: the optional token store (Redis) that gives a fleet of replicas one token
//!   per credential; `cache/fleet.rs` is the cache's side of it.
//!
//! Secrets and tokens are newtypes whose `Debug` prints `[redacted]`; they reach the
//! wire through one accessor each and never a log line, error or metric label.

mod cache;
pub mod check;
mod client;
mod discovery;
pub mod dpop;
mod error;
mod fetch;
mod jwt;
mod method;
mod metrics;
mod ratelimit;
mod refresh;
mod schedule;
mod secret;
mod service_account;
mod store;
pub(crate) mod tls_client;
mod token;

#[cfg(test)]
mod test_support;

pub use cache::{CredHandle, CredentialStatus, EndpointFactory, TokenCache};
pub use client::{
    BoxFuture, HttpRequest, HttpResponse, RateLimitHeaders, ReqwestEndpoint, TokenEndpoint,
    TransportError, REQUEST_TIMEOUT,
};
pub use error::{AuthError, TokenError};
pub use jwt::decode_claims;
pub use store::{StoreMode, StoreStatus};
pub use tls_client::ClientCert;
pub use token::{Token, TokenData, TokenInfo, BEARER_PREFIX};

/// Entry points for the fuzz targets in `fuzz/` (`fuzz/fuzz_targets/token_response.rs`).
/// Not an API: nothing else calls them, and they may change with the internals.
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::Arc;
    use std::time::SystemTime;

    pub use super::client::TokenResponse;
    use super::{HttpResponse, TokenError};

    /// Judges a token endpoint's answer exactly as the cache does; a failure comes back
    /// as the cache reports it (for the credential `fuzz`).
    pub fn parse_response(
        resp: &HttpResponse,
        now: SystemTime,
    ) -> Result<TokenResponse, TokenError> {
        super::client::parse_response(resp, now).map_err(|f| TokenError::new(Arc::from("fuzz"), f))
    }
}

/// Installs ring as rustls' process-wide crypto provider, unless one already is.
///
/// reqwest is built with `rustls-no-provider`; building a client without a provider
/// panics. Calling this more than once is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed (ours or the proxy's).
    let _ = rustls::crypto::ring::default_provider().install_default();
}
