//! tollgate: an authenticating egress proxy on pingora.
//!
//! Start reading at `proxy.rs` (the `ProxyHttp` hooks, in the order a request meets them),
//! then the modules each hook calls: `forward` (request forms, Host, hop-by-hop headers),
//! `upstream` (DNS cache, private-address guard, TLS trust, peers), `connect` (CONNECT
//! tunnels), `inject` (credentials), `errors` (our error codes and responses). `server`
//! wires listeners; `commands`, `explain` and `demo` implement the CLI.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod connect;
pub mod ctx;
pub mod demo;
pub mod errors;
pub mod explain;
pub mod forward;
pub mod inject;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod replay;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod upstream;
