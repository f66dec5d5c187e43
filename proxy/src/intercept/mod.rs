//! TLS interception of CONNECT tunnels to `connect: intercept` routes: the interception
//! CA, the leaf certificates it signs, and the TLS server side. The request path wires it
//! in; everything here works on any byte stream.
//!
//! What the CONNECT path does with it, for a CONNECT to route `R` whose
//! [`plan`](Interceptor::plan) is [`ConnectPlan::Intercept`] (callers and `clients` are
//! checked before the 200, like any request):
//!
//! 1. answer `200`, then read the first bytes (bounded by a timeout) and [`classify`]
//!    them; wrap the connection as [`Prefixed`]`::new(bytes_read, conn)` so nothing read
//!    is lost (bytes the client sent right after the CONNECT head belong there too);
//! 2. [`FirstBytes::Http`]: serve HTTP/1 on that stream; [`FirstBytes::Tls`]:
//!    [`Interceptor::accept`]`(R.name, connect_host, stream, HANDSHAKE_TIMEOUT)` and serve
//!    HTTP/1 on [`Accepted::stream`]; on error close (it is logged and counted);
//!    [`FirstBytes::Unknown`]: close;
//! 3. inside, every request goes through the normal pipeline with the CONNECT authority as
//!    its target; a `Host` that does not agree with it ([`host_agrees`]), or
//!    [`Accepted::sni`] being [`SniCheck::Mismatch`], gets 421 `misdirected` and nothing
//!    is forwarded.
//!
//! At start-up and on every reload: [`prepare`] the config (its problems are FILE:LINE:COL
//! and reject the config), then [`Interceptor::install`] the result. `tollgate check`,
//! start-up and reload check it first through `preflight`, which calls [`check_parts`]
//! (the same work) with the config's other files.
//!
//! The pieces, one concern each:
//! - `pem.rs`: reading the CA files (any PEM key encoding, messages that never quote the key);
//! - `authority.rs`: [`Authority`], the loaded and checked CA, and issuing one leaf;
//! - `constraints.rs`: X.509 name constraints as rustls/webpki clients read them;
//! - `leaf.rs`: leaf validity and renewal (pure); `cache.rs`: the bounded LRU leaf cache
//!   with single flight per host;
//! - `tls.rs`: the rustls `ServerConfig` per host, the handshake, [`classify`] and
//!   [`check_sni`]; `interceptor.rs`: [`Interceptor`], what the CONNECT path holds;
//! - `check.rs`: [`prepare`] and [`check`]; `plan.rs`: [`ConnectPlan`], what a CONNECT to
//!   a route does and why (also for `tollgate route`);
//! - `prefixed.rs`: [`Prefixed`], a stream that gives back the bytes read to classify it;
//! - `init.rs`: `tollgate ca init`; `metrics.rs`: the `tollgate_interception_*` metrics.

mod authority;
mod cache;
mod check;
mod constraints;
pub mod init;
mod interceptor;
mod leaf;
mod metrics;
mod pem;
mod plan;
mod prefixed;
mod tls;

#[cfg(test)]
mod test_ca;
#[cfg(test)]
mod tests;

pub use authority::{Authority, CaError, IssueError, Issued};
pub use cache::CAPACITY as LEAF_CACHE_CAPACITY;
pub use check::{check, check_parts, prepare, Prepared};
pub use constraints::{LeafName, NameConstraints, NotPermitted, Subtrees};
pub use interceptor::{AcceptError, Accepted, Interceptor, LeafError};
pub use leaf::Validity;
pub use metrics::{HandshakeOutcome, LeafOutcome};
pub use plan::{plan, ConnectPlan, Refusal, TlsPlan};
pub use prefixed::Prefixed;
pub use tls::{
    check_sni, classify, host_agrees, FirstBytes, HandshakeFailure, SniCheck, ALPN,
    HANDSHAKE_TIMEOUT,
};
