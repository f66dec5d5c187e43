//! What the client asked for: absolute-form, origin-form + Host, or CONNECT authority;
//! and what we send on: origin-form, a correct Host, no hop-by-hop headers.

use crate::errors::{Code, ProxyError};
use http::{HeaderMap, HeaderName};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::authority::{raw_target_authority, RawTargetAuthority};
use tollgate_rules::Scheme;

/// The request's form on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `GET http://host/path` (what HTTP_PROXY clients send).
    Absolute,
    /// `GET /path` with `Host` (gateway use).
    Origin,
    /// `CONNECT host:port`.
    Connect,
}

/// The destination the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub form: Form,
    pub scheme: Scheme,
    /// Lower-cased host name or IP literal, IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host:port` with IPv6 bracketed.
    pub fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn bad(msg: impl Into<String>) -> ProxyError {
    ProxyError::new(Code::BadRequest, msg, None)
}

/// Read the destination from a request header.
pub fn parse_target(req: &RequestHeader) -> Result<Target, ProxyError> {
    let raw = req.raw_path();
    if req.method == http::Method::CONNECT {
        let text = std::str::from_utf8(raw).map_err(|_| bad("CONNECT target is not UTF-8"))?;
        let (host, port) = split_authority(text, None)?;
        let port = port.ok_or_else(|| bad("CONNECT target needs host:port"))?;
        return Ok(Target {
            form: Form::Connect,
            scheme: Scheme::Https,
            host,
            port,
        });
    }
    match raw_target_authority(raw) {
        RawTargetAuthority::Absolute {
            scheme, authority, ..
        } => {
            let scheme = if scheme.eq_ignore_ascii_case(b"http") {
                Scheme::Http
            } else if scheme.eq_ignore_ascii_case(b"https") {
                Scheme::Https
            } else {
                return Err(bad(format!(
                    "unsupported scheme {:?} in request target",
                    String::from_utf8_lossy(scheme)
                )));
            };
            let text = std::str::from_utf8(authority)
                .map_err(|_| bad("request authority is not UTF-8"))?;
            let (host, port) = split_authority(text, Some(scheme))?;
            Ok(Target {
                form: Form::Absolute,
                scheme,
                host,
                port: port.unwrap_or(scheme.default_port()),
            })
        }
        RawTargetAuthority::AmbiguousAuthority => Err(bad("ambiguous request target")),
        RawTargetAuthority::None => {
            if raw.first() != Some(&b'/') && raw != b"*" {
                return Err(bad("request target must be origin-form or absolute-form"));
            }
            let host = req
                .headers
                .get(http::header::HOST)
                .ok_or_else(|| bad("origin-form request without Host header"))?;
            let text = host
                .to_str()
                .map_err(|_| bad("Host header is not visible ASCII"))?;
            let (host, port) = split_authority(text, Some(Scheme::Http))?;
            Ok(Target {
                form: Form::Origin,
                scheme: Scheme::Http,
                host,
                port: port.unwrap_or(80),
            })
        }
    }
}

/// Split `host[:port]` (IPv6 in brackets), lower-casing the host and rejecting anything
/// that is not a plausible host name or IP literal.
pub fn split_authority(
    s: &str,
    _scheme: Option<Scheme>,
) -> Result<(String, Option<u16>), ProxyError> {
    if s.is_empty() {
        return Err(bad("empty host"));
    }
    if s.contains('@') {
        return Err(bad("userinfo is not allowed in the request authority"));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| bad("unterminated IPv6 literal"))?;
        let host = &rest[..end];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("bad IPv6 literal"));
        }
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("junk after IPv6 literal"))?,
            ),
        };
        (host.to_ascii_lowercase(), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (s.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    if !host.contains(':') {
        let host_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !host_ok {
            return Err(bad("bad host name"));
        }
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && !p.starts_with('+') => Some(n),
            _ => return Err(bad("bad port")),
        },
    };
    Ok((host, port))
}

/// Largest request head we accept (pingora's own limit is 1 MiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refuse request heads that are too large, or that carry both `Content-Length` and
/// `Transfer-Encoding` (RFC 9112 §6.3: a smuggling vector; pingora silently drops the
/// Content-Length, we refuse the request instead).
pub fn check_head(session: &pingora::proxy::Session) -> Result<(), ProxyError> {
    let Some(h1) = session.downstream_session.as_http1() else {
        return Ok(());
    };
    let raw = h1.get_headers_raw_bytes();
    if raw.len() > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "request head is {} bytes; the limit is {MAX_HEADER_BYTES}",
            raw.len()
        )));
    }
    if session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
        && has_header_line(&raw, b"content-length")
    {
        return Err(bad(
            "both Content-Length and Transfer-Encoding are present (RFC 9112 section 6.3)",
        ));
    }
    Ok(())
}

/// Is there a header line `name:` (case-insensitive) in a raw request head?
fn has_header_line(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && matches!(line[name.len()], b':' | b' ' | b'\t')
    })
}

/// Request headers never forwarded (RFC 9110 §7.6.1 hop-by-hop, plus proxy credentials).
static HOP_BY_HOP: [HeaderName; 8] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHORIZATION,
    http::header::PROXY_AUTHENTICATE,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// Request headers kept even when `Connection` names them.
static KEEP_IF_NAMED: [HeaderName; 2] = [http::header::TRANSFER_ENCODING, http::header::HOST];

/// Response headers never passed back to the client. Unlike on requests, `Connection`
/// and `Upgrade` are not in the list (nor `TE`, `Proxy-Authorization`, unless named in
/// `Connection`).
static HOP_BY_HOP_RESPONSE: [HeaderName; 4] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::TRAILER,
];

/// Response headers kept even when `Connection` names them.
static KEEP_IF_NAMED_RESPONSE: [HeaderName; 3] = [
    http::header::TRANSFER_ENCODING,
    http::header::CONTENT_LENGTH,
    http::header::UPGRADE,
];

/// The hop-by-hop headers present in a header map.
struct HopByHop {
    /// Bit `i` set: `fixed[i]` is present.
    fixed: u32,
    /// Other present headers named in `Connection`. Empty, so not allocated, unless the
    /// sender listed an extension header there (`Connection: close` or `keep-alive` alone
    /// never allocates).
    named: Vec<HeaderName>,
}

/// Find the headers to strip: those in `fixed`, and those named in `Connection` (tokens
/// trimmed and matched case-insensitively; values that are not visible ASCII ignored)
/// unless they are in `keep`. One walk over the header names finds the fixed ones; the
/// names are walked again only for a `Connection` token in neither list (`close`, or an
/// extension header), which requests and responses rarely have.
fn find_hop_by_hop(headers: &HeaderMap, fixed: &[HeaderName], keep: &[HeaderName]) -> HopByHop {
    debug_assert!(fixed.len() <= 32);
    let mut found = 0u32;
    let mut connection = false;
    for name in headers.keys() {
        if let Some(i) = fixed.iter().position(|h| h == name) {
            found |= 1 << i;
        }
        connection |= name == http::header::CONNECTION;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    if connection {
        let tokens = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        for t in tokens {
            if t.is_empty()
                || fixed
                    .iter()
                    .chain(keep)
                    .any(|h| h.as_str().eq_ignore_ascii_case(t))
            {
                continue;
            }
            // In token order, as the removals reorder the map (`HeaderMap` swap-removes).
            if let Some(name) = headers.keys().find(|k| k.as_str().eq_ignore_ascii_case(t)) {
                if !named.contains(name) {
                    named.push(name.clone());
                }
            }
        }
    }
    HopByHop {
        fixed: found,
        named,
    }
}

/// Remove hop-by-hop headers, including those named in `Connection`.
/// `Transfer-Encoding` is left to pingora, which owns body framing.
pub fn strip_hop_by_hop(req: &mut RequestHeader) {
    let found = find_hop_by_hop(&req.headers, &HOP_BY_HOP, &KEEP_IF_NAMED);
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if found.fixed & (1 << i) != 0 {
            // Removes every value under the name, and its case-preserved spelling.
            req.remove_header(name);
        }
    }
    for name in &found.named {
        req.remove_header(name);
    }
}

/// Response headers never passed back to the client.
pub fn strip_hop_by_hop_response(resp: &mut ResponseHeader) {
    let found = find_hop_by_hop(&resp.headers, &HOP_BY_HOP_RESPONSE, &KEEP_IF_NAMED_RESPONSE);
    for (i, name) in HOP_BY_HOP_RESPONSE.iter().enumerate() {
        if found.fixed & (1 << i) != 0 {
            resp.remove_header(name);
        }
    }
    for name in &found.named {
        resp.remove_header(name);
    }
}

/// The path and query to send upstream in origin-form.
pub fn origin_form(req: &RequestHeader) -> Result<http::Uri, ProxyError> {
    let raw = req.raw_path();
    let pq: &[u8] = match raw_target_authority(raw) {
        RawTargetAuthority::Absolute { path_and_query, .. } => {
            if path_and_query.is_empty() {
                b"/"
            } else {
                path_and_query
            }
        }
        _ => raw,
    };
    let pq = if pq.first() == Some(&b'?') {
        let mut v = Vec::with_capacity(pq.len() + 1);
        v.push(b'/');
        v.extend_from_slice(pq);
        return http::Uri::try_from(v).map_err(|_| bad("bad request path"));
    } else {
        pq
    };
    http::Uri::try_from(pq).map_err(|_| bad("bad request path"))
}

/// The request path without the query, for route matching.
pub fn match_path(req: &RequestHeader) -> &str {
    let p = req.uri.path();
    if p.is_empty() {
        "/"
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build(method, target.as_bytes(), None).expect("build");
        if let Some(h) = host {
            r.insert_header("host", h).expect("host");
        }
        r
    }

    #[test]
    fn absolute_form() {
        let t = parse_target(&req("GET", "http://API.Example.com:8080/x?y", None)).expect("ok");
        assert_eq!(t.form, Form::Absolute);
        assert_eq!(t.host, "api.example.com");
        assert_eq!(t.port, 8080);
        let t = parse_target(&req("GET", "https://api.example.com/x", None)).expect("ok");
        assert_eq!((t.scheme, t.port), (Scheme::Https, 443));
        let u = origin_form(&req("GET", "http://a.b/x/y?q=1", None)).expect("uri");
        assert_eq!(u.to_string(), "/x/y?q=1");
        let u = origin_form(&req("GET", "http://a.b", None)).expect("uri");
        assert_eq!(u.to_string(), "/");
    }

    #[test]
    fn origin_form_uses_host() {
        let t = parse_target(&req("GET", "/v2/x", Some("api.test:81"))).expect("ok");
        assert_eq!(
            (t.form, t.host.as_str(), t.port),
            (Form::Origin, "api.test", 81)
        );
        assert!(parse_target(&req("GET", "/v2/x", None)).is_err());
    }

    #[test]
    fn connect_authority() {
        let t = parse_target(&req("CONNECT", "example.com:443", None)).expect("ok");
        assert_eq!((t.form, t.port), (Form::Connect, 443));
        let t = parse_target(&req("CONNECT", "[::1]:8443", None)).expect("ok");
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert_eq!(t.authority(), "[::1]:8443");
    }

    #[test]
    fn bad_authorities() {
        for s in [
            "", ":80", "a b", "h:0", "h:99999", "u@h", "[::1", "h:+1", "[zz]:1",
        ] {
            assert!(
                split_authority(s, None).is_err(),
                "{s:?} should be rejected"
            );
        }
    }

    #[test]
    fn finds_raw_header_lines() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(has_header_line(raw, b"content-length"));
        assert!(has_header_line(raw, b"transfer-encoding"));
        assert!(!has_header_line(
            b"GET /content-length: HTTP/1.1\r\nHost: a\r\n\r\n",
            b"content-length"
        ));
        assert!(!has_header_line(raw, b"content-type"));
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut r = req("GET", "/", Some("h"));
        for (k, v) in [
            ("connection", "close, X-Foo"),
            ("x-foo", "1"),
            ("keep-alive", "5"),
            ("proxy-authorization", "Basic x"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("x-keep", "yes"),
        ] {
            r.append_header(k, v).expect("hdr");
        }
        strip_hop_by_hop(&mut r);
        let names: Vec<_> = r.headers.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, vec!["host", "x-keep"]);
    }

    /// The strip as it was before the one-pass rewrite, kept to check the two agree.
    fn strip_reference(req: &mut RequestHeader) {
        let named: Vec<String> = req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty() && t != "transfer-encoding" && t != "host")
            .collect();
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "proxy-authenticate",
            "te",
            "trailer",
            "upgrade",
        ] {
            while req.remove_header(name).is_some() {}
        }
        for name in named {
            while req.remove_header(name.as_str()).is_some() {}
        }
    }

    /// The response strip as it was before the one-pass rewrite.
    fn strip_response_reference(resp: &mut ResponseHeader) {
        let named: Vec<String> = resp
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| {
                !t.is_empty() && t != "transfer-encoding" && t != "content-length" && t != "upgrade"
            })
            .collect();
        for name in [
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "trailer",
        ] {
            while resp.remove_header(name).is_some() {}
        }
        for name in named {
            while resp.remove_header(name.as_str()).is_some() {}
        }
    }

    /// A case-preserving request with these headers, in this order.
    fn req_with(headers: &[(&'static str, &'static [u8])]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("build");
        for (k, v) in headers {
            r.append_header(*k, *v).expect("hdr");
        }
        r
    }

    fn resp_with(headers: &[(&'static str, &'static [u8])]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).expect("build");
        for (k, v) in headers {
            r.append_header(*k, *v).expect("hdr");
        }
        r
    }

    /// The head as written on the wire: names in their original case, all values, in
    /// order; so it also checks pingora's case map agrees with the header map.
    fn wire(r: &RequestHeader) -> String {
        let mut buf = Vec::new();
        r.header_to_h1_wire(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn wire_resp(r: &ResponseHeader) -> String {
        let mut buf = Vec::new();
        r.header_to_h1_wire(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Strip `headers` from a request and return the wire form; also check the reference
    /// strip gives the same head.
    fn stripped(headers: &[(&'static str, &'static [u8])]) -> String {
        let mut r = req_with(headers);
        let mut expected = r.clone();
        strip_hop_by_hop(&mut r);
        strip_reference(&mut expected);
        assert_eq!(wire(&r), wire(&expected), "request {headers:?}");
        assert_eq!(r.headers, expected.headers, "request {headers:?}");
        wire(&r)
    }

    fn stripped_resp(headers: &[(&'static str, &'static [u8])]) -> String {
        let mut r = resp_with(headers);
        let mut expected = r.clone();
        strip_hop_by_hop_response(&mut r);
        strip_response_reference(&mut expected);
        assert_eq!(wire_resp(&r), wire_resp(&expected), "response {headers:?}");
        assert_eq!(r.headers, expected.headers, "response {headers:?}");
        wire_resp(&r)
    }

    /// The header lines, sorted: removals reorder the map (`HeaderMap` swap-removes), and
    /// `stripped` already checks the order is the one the reference strip gives.
    fn sorted(wire: &str) -> Vec<&str> {
        let mut lines: Vec<_> = wire.split_inclusive("\r\n").collect();
        lines.sort_unstable();
        lines
    }

    const END_TO_END: &[(&str, &[u8])] = &[
        ("Host", b"api.test"),
        ("User-Agent", b"t/1"),
        ("Accept", b"*/*"),
        ("Authorization", b"Bearer x"),
        ("X-Trace", b"1"),
        ("X-Trace", b"2"),
    ];

    #[test]
    fn hop_by_hop_nothing_to_strip() {
        let before = wire(&req_with(END_TO_END));
        assert_eq!(stripped(END_TO_END), before);
        let found = find_hop_by_hop(&req_with(END_TO_END).headers, &HOP_BY_HOP, &KEEP_IF_NAMED);
        assert_eq!((found.fixed, found.named.capacity()), (0, 0));
        assert_eq!(stripped(&[]), "");

        let resp: &[(&str, &[u8])] = &[
            ("Content-Type", b"text/plain"),
            ("Content-Length", b"2"),
            ("Set-Cookie", b"a=1"),
            ("Set-Cookie", b"b=2"),
        ];
        let before = wire_resp(&resp_with(resp));
        assert_eq!(stripped_resp(resp), before);
    }

    #[test]
    fn hop_by_hop_keep_alive_only() {
        let mut headers = END_TO_END.to_vec();
        headers.push(("Connection", b"keep-alive"));
        assert_eq!(stripped(&headers), wire(&req_with(END_TO_END)));
        // One fixed header found, nothing else looked for, nothing allocated.
        let found = find_hop_by_hop(&req_with(&headers).headers, &HOP_BY_HOP, &KEEP_IF_NAMED);
        assert_eq!((found.fixed, found.named.capacity()), (1, 0));
        // `close` names no present header: a second walk, still no allocation.
        headers.pop();
        headers.push(("Connection", b"close"));
        let found = find_hop_by_hop(&req_with(&headers).headers, &HOP_BY_HOP, &KEEP_IF_NAMED);
        assert_eq!((found.fixed, found.named.capacity()), (1, 0));
        assert_eq!(stripped(&headers), wire(&req_with(END_TO_END)));

        // Responses keep their `Connection` header.
        let resp: &[(&str, &[u8])] = &[("Content-Length", b"0"), ("Connection", b"keep-alive")];
        assert_eq!(stripped_resp(resp), wire_resp(&resp_with(resp)));
    }

    #[test]
    fn hop_by_hop_every_fixed_header() {
        let mut headers = END_TO_END.to_vec();
        for (k, v) in [
            ("Connection", &b"keep-alive"[..]),
            ("Keep-Alive", b"timeout=5"),
            ("Proxy-Connection", b"keep-alive"),
            ("Proxy-Authorization", b"Basic eDp5"),
            ("Proxy-Authenticate", b"Basic"),
            ("TE", b"trailers"),
            ("Trailer", b"X-Checksum"),
            ("Upgrade", b"websocket"),
            ("Keep-Alive", b"max=10"),
        ] {
            headers.insert(2, (k, v));
        }
        assert_eq!(
            sorted(&stripped(&headers)),
            sorted(&wire(&req_with(END_TO_END)))
        );
        let found = find_hop_by_hop(&req_with(&headers).headers, &HOP_BY_HOP, &KEEP_IF_NAMED);
        assert_eq!((found.fixed, found.named.len()), (0xff, 0));

        // On responses: `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `Trailer`.
        let resp: &[(&str, &[u8])] = &[
            ("Connection", b"upgrade"),
            ("Keep-Alive", b"timeout=5"),
            ("Proxy-Connection", b"keep-alive"),
            ("Proxy-Authenticate", b"Basic"),
            ("Trailer", b"X-Checksum"),
            ("Upgrade", b"websocket"),
            ("TE", b"trailers"),
            ("Content-Length", b"0"),
        ];
        assert_eq!(
            sorted(&stripped_resp(resp)),
            sorted("Connection: upgrade\r\nUpgrade: websocket\r\nTE: trailers\r\nContent-Length: 0\r\n")
        );
    }

    #[test]
    fn hop_by_hop_tokens_named_in_connection() {
        let headers: &[(&str, &[u8])] = &[
            ("Host", b"h"),
            ("Connection", b"Close, X-Foo"),
            ("X-Foo", b"1"),
            ("X-Bar", b"2"),
            ("x-baz", b"3"),
            ("X-Foo", b"4"),
            // Several `Connection` headers, tokens in any case and padded with spaces
            // and tabs, empty list elements.
            ("connection", b" x-BAR ,\t,, KEEP-ALIVE"),
            ("Keep-Alive", b"5"),
            // Named, but kept: the request's own framing and Host.
            ("CONNECTION", b"host, Transfer-Encoding"),
            ("Transfer-Encoding", b"chunked"),
            ("X-Keep", b"yes"),
        ];
        assert_eq!(
            sorted(&stripped(headers)),
            sorted("Host: h\r\nx-baz: 3\r\nTransfer-Encoding: chunked\r\nX-Keep: yes\r\n")
        );
        let found = find_hop_by_hop(&req_with(headers).headers, &HOP_BY_HOP, &KEEP_IF_NAMED);
        let named: Vec<_> = found.named.iter().map(|h| h.as_str()).collect();
        assert_eq!(named, ["x-foo", "x-bar"]);

        // A token with a space inside names no header; a value that is not visible ASCII
        // is ignored whole.
        let headers: &[(&str, &[u8])] = &[
            ("Connection", b"x baz"),
            ("Connection", b"x-qux, \xff"),
            ("x-baz", b"1"),
            ("X-Qux", b"2"),
        ];
        assert_eq!(
            sorted(&stripped(headers)),
            sorted("x-baz: 1\r\nX-Qux: 2\r\n")
        );

        // Responses keep framing and `Upgrade` even when named; other names go, `TE` and
        // `Connection` included.
        let resp: &[(&str, &[u8])] = &[
            (
                "Connection",
                b"Content-Length, transfer-encoding, Upgrade, x-a",
            ),
            ("connection", b"TE , connection"),
            ("Content-Length", b"0"),
            ("Upgrade", b"h2c"),
            ("X-A", b"1"),
            ("TE", b"trailers"),
            ("X-B", b"2"),
        ];
        assert_eq!(
            sorted(&stripped_resp(resp)),
            sorted("Content-Length: 0\r\nUpgrade: h2c\r\nX-B: 2\r\n")
        );
    }

    /// The one-pass strip agrees with the old one on every mix of a pool of headers.
    #[test]
    fn hop_by_hop_matches_reference() {
        const POOL: &[(&str, &[u8])] = &[
            ("Host", b"h"),
            ("Accept", b"*/*"),
            ("Connection", b"keep-alive"),
            ("Connection", b"close"),
            ("connection", b"Close, X-Foo"),
            ("Connection", b" x-FOO ,\tX-Bar "),
            (
                "Connection",
                b"host, transfer-encoding, content-length, upgrade",
            ),
            ("Connection", b"te, proxy-authorization, connection, close"),
            ("Connection", b",,"),
            ("Connection", b""),
            ("Connection", b"x baz, keep-alive"),
            ("Connection", b"x-foo, \xff"),
            ("Keep-Alive", b"5"),
            ("Proxy-Connection", b"keep-alive"),
            ("Proxy-Authorization", b"Basic x"),
            ("Proxy-Authenticate", b"Basic"),
            ("TE", b"trailers"),
            ("Trailer", b"X-Sum"),
            ("Upgrade", b"websocket"),
            ("Transfer-Encoding", b"chunked"),
            ("Content-Length", b"3"),
            ("X-Foo", b"1"),
            ("x-bar", b"2"),
            ("X-Baz", b"3"),
            ("close", b"4"),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..5000 {
            let len = next(10);
            let headers: Vec<_> = (0..len).map(|_| POOL[next(POOL.len())]).collect();
            stripped(&headers);
            stripped_resp(&headers);
        }
    }
}
