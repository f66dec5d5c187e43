//! tollgate: an authenticating egress proxy on pingora.
//!
//! Start reading at `conn` (the connection loop: the life of a request, in the order it
//! meets the modules), then what it calls: `http1` (our HTTP/1 codec: heads, framing),
//! `target` (what the client asked for), `plan` (the one routing decision, over `route`'s
//! compiled routes and `state`), `rewrite` (the one request and response rewrite),
//! `upstream` (DNS cache, address guards, TLS trust, peers), `tunnel` (CONNECT splicing),
//! `auth` (tokens), `replay` (the 401 decision), `errors` (our error codes and responses),
//! `access` (the access log). `server` wires listeners; `commands`, `explain` and `demo`
//! implement the CLI, `preflight`
//! checks every file a config names before `check` says ok and before `run` serves,
//! `version`, `docs` (completions, man page) and `probe` are the operator's helpers.

pub mod access;
pub mod admin;
pub mod auth;
pub mod callers;
pub mod cli;
pub mod commands;
pub mod conn;
pub mod demo;
pub mod docs;
pub mod errors;
pub mod explain;
pub mod http1;
pub mod intercept;
pub mod metrics;
pub mod plan;
pub mod preflight;
pub mod probe;
pub mod reload;
pub mod replay;
pub mod rewrite;
pub mod route;
pub mod server;
pub mod state;
pub mod status;
pub mod target;
pub mod telemetry;
pub mod tunnel;
pub mod upstream;
pub mod version;
