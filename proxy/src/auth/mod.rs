//! OAuth2 client-credentials tokens (RFC 6749 §4.4) for inject routes.
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
//!   parsing of the answer (RFC 6749 §5.1 / §5.2).
//! - `secret.rs`: client secrets (inline or a file re-read when it changes) and the
//!   private key of `private_key_jwt`, both through one cheap file watcher.
//! - `jwt.rs`: RFC 7523 client assertions signed with ring (ES256, RS256), and reading
//!   a JWT's claims without verification (for `exp` and `tollgate token`).
//! - `cache.rs`: the cache (a map of credentials, each holding its token), single-flight fetches, background refresh, the
//!   failure memo and hot reload. `refresh.rs`: the background refresher's loop.
//! - `token.rs`: [`Token`] and [`TokenInfo`]; `error.rs`: [`TokenError`] and [`AuthError`].
//! - `metrics.rs`: the `tollgate_token_*` metrics, registered on the given registry.
//!
//! Secrets and tokens are newtypes whose `Debug` prints `[redacted]`; they reach the
//! wire through one accessor each and never a log line, error or metric label.

mod cache;
mod client;
mod error;
mod jwt;
mod metrics;
mod refresh;
mod schedule;
mod secret;
mod token;

#[cfg(test)]
mod test_support;

pub use cache::{CredHandle, EndpointFactory, TokenCache};
pub use client::{
    BoxFuture, HttpRequest, HttpResponse, ReqwestEndpoint, TokenEndpoint, TransportError,
    REQUEST_TIMEOUT,
};
pub use error::{AuthError, TokenError};
pub use jwt::decode_claims;
pub use token::{Token, TokenData, TokenInfo, BEARER_PREFIX};

/// Reads and checks a credential's client secret file or private key file the way the
/// cache reads it ([`TokenCache::new`] builds the same thing); no network. For
/// `tollgate check` and the start-up and reload checks (`preflight`).
pub fn check_client_auth(def: &tollgate_rules::Credential) -> Result<(), AuthError> {
    secret::ClientAuth::new(def).map(drop)
}

/// Reads a credential's `ca_file` and builds its token endpoint client the way the cache
/// does; no network. For `preflight`, like [`check_client_auth`].
pub fn check_token_endpoint(def: &tollgate_rules::Credential) -> Result<(), AuthError> {
    ReqwestEndpoint::for_credential(def).map(drop)
}

/// Installs ring as rustls' process-wide crypto provider, unless one already is.
///
/// reqwest is built with `rustls-no-provider`; building a client without a provider
/// panics. Calling this more than once is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed (ours or the proxy's).
    let _ = rustls::crypto::ring::default_provider().install_default();
}
