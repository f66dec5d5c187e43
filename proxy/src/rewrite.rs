//! The one request rewrite and the one response rewrite. Pure: a parsed head and a
//! [`Plan`] in, the bytes to send out. Everything not listed here is forwarded as the
//! client (or upstream) sent it, in order.
//!
//! Request: origin-form target (the normalised path plus the query as sent), HTTP/1.1;
//! hop-by-hop fields and the ones `Connection` names are dropped (RFC 9110 §7.6.1), as are
//! `Proxy-Authorization` (never forwarded), `Expect` (we answer `100 Continue` ourselves),
//! the client's own value of an inject route's header (and its own `DPoP` proof), and
//! `Host` where we set it; then our `Via` (RFC 9110 §7.6.3), trace context and the
//! credential (with its DPoP proof, for a DPoP-bound token) are added.
//!
//! Response: hop-by-hop fields dropped, our `Via` and our own `Connection` added.

use crate::http1::{list_has, Head, RequestHead, ResponseHead, Version};
use crate::plan::Plan;

/// Request fields never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Response fields never passed back.
const HOP_BY_HOP_RESPONSE: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "upgrade",
];

/// Fields that `Connection` may name but that frame the message or route it: kept.
const KEEP_IF_NAMED: [&str; 3] = ["host", "content-length", "transfer-encoding"];

fn is_one_of(name: &[u8], list: &[&str]) -> bool {
    list.iter().any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Does `Connection` name any field beyond the fixed hop-by-hop set (and `close`)? Only
/// then must every field be checked against its tokens.
fn names_extension_fields<H: Head>(head: &H, fixed: &[&str]) -> bool {
    head.values("connection").any(|v| {
        v.split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !is_one_of(t, fixed))
    })
}

fn nominated<H: Head>(head: &H, name: &[u8]) -> bool {
    if is_one_of(name, &KEEP_IF_NAMED) {
        return false;
    }
    head.values("connection").any(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
    })
}

/// What the request rewrite adds besides the plan.
pub struct Added<'a> {
    /// Our `Via` entry, e.g. `1.1 tollgate-3f9a2c`.
    pub via: &'a str,
    /// `traceparent` (and `tracestate`) to send instead of the client's.
    pub trace: Option<(&'a str, Option<&'a str>)>,
    /// The inject route's header value (prefix and token), if any.
    pub credential: Option<&'a [u8]>,
    /// The DPoP proof that goes with a DPoP-bound token (RFC 9449 §7.1).
    pub dpop: Option<&'a [u8]>,
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `Host: <dial authority>`, without the scheme's default port (and without allocating).
fn host_field(out: &mut Vec<u8>, plan: &Plan<'_, '_>) {
    let d = &plan.dial;
    out.extend_from_slice(b"Host: ");
    let v6 = d.host.contains(':');
    if v6 {
        out.push(b'[');
    }
    out.extend_from_slice(d.host.as_bytes());
    if v6 {
        out.push(b']');
    }
    if d.port != d.scheme.default_port() {
        out.push(b':');
        out.extend_from_slice(d.port.to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the upstream request head for `head` on `plan`, with `path` (normalised) and
/// `query` (as sent, with its `?`), into `out` (cleared first).
pub fn request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    plan: &Plan<'_, '_>,
    path: &str,
    query: &str,
    added: &Added<'_>,
) {
    out.clear();
    out.extend_from_slice(head.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host_written = false;
    if plan.set_host {
        host_field(out, plan);
        host_written = true;
    }
    let injected_header = plan
        .route
        .injection()
        .filter(|_| added.credential.is_some())
        .map(|i| i.header_lower.as_bytes());
    let check_named = names_extension_fields(head, &HOP_BY_HOP);
    for (name, value) in head.fields() {
        if is_one_of(name, &HOP_BY_HOP)
            || name.eq_ignore_ascii_case(b"expect")
            || (host_written && name.eq_ignore_ascii_case(b"host"))
            || injected_header.is_some_and(|h| name.eq_ignore_ascii_case(h))
            // A proof of the client's own goes with a token of its own: never with ours.
            || (injected_header.is_some() && name.eq_ignore_ascii_case(b"dpop"))
            || (added.trace.is_some()
                && (name.eq_ignore_ascii_case(b"traceparent")
                    || name.eq_ignore_ascii_case(b"tracestate")))
            || (check_named && nominated(head, name))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            host_written = true;
        }
        field(out, name, value);
    }
    if !host_written {
        // HTTP/1.0 clients may send none; HTTP/1.1 requires one (RFC 9112 §3.2).
        host_field(out, plan);
    }
    field(out, b"Via", added.via.as_bytes());
    if let Some((parent, state)) = added.trace {
        field(out, b"traceparent", parent.as_bytes());
        if let Some(s) = state {
            field(out, b"tracestate", s.as_bytes());
        }
    }
    if let (Some(value), Some(i)) = (added.credential, plan.route.injection()) {
        field(out, i.header.as_bytes(), value);
        if let Some(proof) = added.dpop {
            field(out, b"DPoP", proof);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response goes back to the client.
pub struct Reply<'a> {
    /// Keep the client's connection open after this response.
    pub keep_alive: bool,
    /// The client speaks HTTP/1.0 (wants `Connection: keep-alive` spelled out).
    pub client: Version,
    /// Drop `Content-Length` (it came with `Transfer-Encoding`, RFC 9112 §6.3).
    pub drop_length: bool,
    /// The body is being de-chunked for an HTTP/1.0 client: drop `Transfer-Encoding`.
    /// (An HTTP/1.0 client never gets `Transfer-Encoding` or `Trailer`, RFC 9112 section
    /// 6.1, also where there is no body to de-chunk: a response to HEAD, a 304.)
    pub dechunk: bool,
    pub via: &'a str,
}

/// Writes the response head for the client into `out` (cleared first).
pub fn response_head(out: &mut Vec<u8>, resp: &ResponseHead, reply: &Reply<'_>) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let s = resp.status;
    out.extend_from_slice(&[
        b'0' + (s / 100 % 10) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(resp.reason());
    out.extend_from_slice(b"\r\n");
    let check_named = names_extension_fields(resp, &HOP_BY_HOP_RESPONSE);
    for (name, value) in resp.fields() {
        if is_one_of(name, &HOP_BY_HOP_RESPONSE)
            || (reply.drop_length && name.eq_ignore_ascii_case(b"content-length"))
            || ((reply.dechunk || reply.client == Version::Http10)
                && (name.eq_ignore_ascii_case(b"transfer-encoding")
                    || name.eq_ignore_ascii_case(b"trailer")))
            || (check_named && nominated(resp, name))
        {
            continue;
        }
        field(out, name, value);
    }
    field(out, b"Via", reply.via.as_bytes());
    if !reply.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if reply.client == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes an interim (1xx) response head, as received minus hop-by-hop fields.
pub fn interim_head(out: &mut Vec<u8>, resp: &ResponseHead) {
    out.clear();
    out.extend_from_slice(format!("HTTP/1.1 {} ", resp.status).as_bytes());
    out.extend_from_slice(resp.reason());
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.fields() {
        if !is_one_of(name, &HOP_BY_HOP_RESPONSE) {
            field(out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Does a `Via` field carry our own entry (`received-by` equal to `pseudonym`)?
pub fn via_names<H: Head>(head: &H, pseudonym: &str) -> bool {
    head.values("via").any(|v| {
        v.split(|b| *b == b',').any(|entry| {
            // `1.1 tollgate-abc (comment)`: protocol, then received-by.
            entry
                .trim_ascii()
                .split(|b| *b == b' ' || *b == b'\t')
                .filter(|p| !p.is_empty())
                .nth(1)
                .is_some_and(|by| by.eq_ignore_ascii_case(pseudonym.as_bytes()))
        })
    })
}

/// Does the client's `Expect` ask for `100 Continue`?
pub fn expects_continue(head: &RequestHead) -> bool {
    head.values("expect").any(|v| list_has(v, "100-continue"))
}

#[cfg(test)]
mod tests;
