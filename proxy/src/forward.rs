//! What the client asked for: absolute-form, origin-form + Host, or CONNECT authority;
//! and what we send on: origin-form, a correct Host, no hop-by-hop headers.

use crate::errors::{Code, ProxyError};
use pingora::http::RequestHeader;
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
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Remove hop-by-hop headers, including those named in `Connection`.
/// `Transfer-Encoding` is left to pingora, which owns body framing.
pub fn strip_hop_by_hop(req: &mut RequestHeader) {
    let named: Vec<String> = req
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "transfer-encoding" && t != "host")
        .collect();
    for name in HOP_BY_HOP {
        while req.remove_header(*name).is_some() {}
    }
    for name in named {
        while req.remove_header(name.as_str()).is_some() {}
    }
}

/// Response headers never passed back to the client.
pub fn strip_hop_by_hop_response(resp: &mut pingora::http::ResponseHeader) {
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
}
