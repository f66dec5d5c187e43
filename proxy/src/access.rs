//! The access log: one line per request on target `tollgate::access` (info), with the
//! fields an egress audit asks for. Flat fields, so JSON logs (`TOLLGATE_LOG_FORMAT=json`)
//! carry them at the top level. Never a credential: no header values but `User-Agent`,
//! and the path without its query.

use crate::http1::{Head, RequestHead};
use std::net::SocketAddr;
use std::time::Duration;

/// What is logged about one request.
pub struct Record<'a> {
    pub client: Option<SocketAddr>,
    pub route: &'a str,
    pub action: &'a str,
    /// The authenticated caller (`callers`), when the request proved one.
    pub caller: Option<&'a str>,
    /// For a request inside an intercepted CONNECT: `intercept` (TLS) or `plain`.
    pub tunnel: Option<&'a str>,
    /// `None` when the head could not be read.
    pub head: Option<&'a RequestHead>,
    /// Where the request was going (`-`, 0 when unknown).
    pub host: &'a str,
    pub port: u16,
    pub status: u16,
    /// The status the upstream answered (0 when it did not).
    pub upstream_status: u16,
    /// Who made the response: `tollgate` or `upstream`.
    pub source: &'a str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub replayed: bool,
    pub error: Option<&'a str>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), if valid.
pub fn trace_id(head: &RequestHead) -> Option<&str> {
    let v = std::str::from_utf8(head.value("traceparent")?).ok()?;
    let id = v.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
        .then_some(id)
}

pub fn log(r: &Record<'_>) {
    let (method, path, ua) = match r.head {
        Some(h) => (
            h.method(),
            h.target(),
            h.value("user-agent")
                .and_then(|v| std::str::from_utf8(v).ok())
                .unwrap_or("-"),
        ),
        None => ("-", "-", "-"),
    };
    // The path without the query (it may carry credentials the client put in a URL).
    let path = path.split('?').next().unwrap_or(path);
    let path = match path.find("://") {
        // absolute-form: the path after the authority
        Some(i) => path[i + 3..].find('/').map_or("/", |j| &path[i + 3 + j..]),
        None => path,
    };
    let ua: String = ua.chars().take(200).collect();
    let (client_addr, client_port) = match r.client {
        Some(a) => (a.ip().to_string(), a.port()),
        None => ("-".to_owned(), 0),
    };
    tracing::info!(
        target: "tollgate::access",
        client_address = client_addr.as_str(),
        client_port,
        route = r.route,
        action = r.action,
        caller = r.caller.unwrap_or("-"),
        tunnel = r.tunnel.unwrap_or("-"),
        method,
        host = r.host,
        port = r.port,
        path,
        status = r.status,
        upstream_status = r.upstream_status,
        source = r.source,
        bytes_in = r.bytes_in,
        bytes_out = r.bytes_out,
        duration_ms = ms(r.duration),
        upstream_ms = r.upstream.map_or(-1.0, ms),
        replayed = r.replayed,
        user_agent = ua.as_str(),
        trace_id = r.head.and_then(trace_id).unwrap_or("-"),
        error = r.error.unwrap_or("-"),
        "access"
    );
}
