//! tollgate-rules: the configuration model, its validation and route matching.
//!
//! Start reading at [`load_str`] (text -> validated [`Config`], or every problem as
//! `FILE:LINE:COL: message`) and [`Router::decide`] (request facts -> [`Decision`]).
//! This crate is pure: no pingora, no tokio, no I/O beyond [`load()`] reading the file
//! and `${VAR}` substitution reading the environment (injected via [`Env`]).
//!
//! Two layers (STYLE habit 6): [`mod@file`] holds serde structs that mirror the YAML
//! (unknown keys collected as problems); [`model`] holds validated types that never derive
//! `Deserialize`; [`mod@load`] converts one into the other (the work is in the private
//! `convert` module, value parsers in `values`, positions of YAML nodes in `pos`) and
//! collects every problem with its location. [`matcher`] picks the most specific route,
//! with specificity as an `Ord` value ([`matcher::Specificity`]); its module docs state
//! the matching rules. `docs/configuration.md` in the repository is the reference for
//! every key.
//!
//! ```
//! use tollgate_rules::{load_str, Decision, RequestFacts, Router};
//!
//! let yaml = "routes:\n  - name: github\n    match: { hosts: [api.github.com] }\n    action: pass\n";
//! let config = load_str("tollgate.yaml", yaml, &|_: &str| None)?;
//! let router = Router::new(&config);
//! let facts = RequestFacts {
//!     host: "api.github.com",
//!     port: 443,
//!     scheme: tollgate_rules::Scheme::Https,
//!     path: "/",
//!     method: "CONNECT",
//!     client: None,
//!     caller: None,
//! };
//! assert!(matches!(router.decide(&config, &facts), Decision::Route(0, r) if r.name == "github"));
//! # Ok::<(), tollgate_rules::ConfigErrors>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
pub mod file;
pub mod load;
pub mod matcher;
pub mod model;
pub mod path;
mod pos;
pub mod source;
pub mod units;
mod values;

pub use convert::{
    DEFAULT_ADMIN_ADDR, DEFAULT_DRAIN_TIMEOUT, DEFAULT_HEADER, DEFAULT_IDENTITY_CLAIM,
    DEFAULT_KEY_PREFIX, DEFAULT_LEAF_LIFETIME, DEFAULT_LOCK_TIMEOUT, DEFAULT_PREFIX,
    DEFAULT_PROXY_ADDR, DEFAULT_REDIS_PORT, DEFAULT_REDIS_TIMEOUT, MAX_LEAF_LIFETIME,
    MIN_LEAF_LIFETIME,
};
pub use load::{
    load, load_str, load_str_with_source, load_with_source, ConfigErrors, Env, Loaded, Location,
    Problem, ProcessEnv,
};
pub use matcher::{Admission, CallerRank, Decision, RequestFacts, Router};

/// Checks a token endpoint URL the way `token_url:` is checked (https, or http on a
/// loopback host; no user info or fragment), for URLs found at run time: a discovered
/// `token_endpoint`, a service account's `token_uri`. The error may quote the URL (with
/// any user info redacted).
pub fn parse_endpoint_url(s: &str) -> Result<url::Url, String> {
    values::parse_token_url(s)
}
pub use model::*;
pub use source::{FileKind, FileRef, Partial, Setting, Source};
