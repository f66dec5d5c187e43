//! What the client asked for: the request-target (absolute-form, origin-form + `Host`,
//! CONNECT's authority-form, `*`), read once per request from the raw head.

use crate::errors::{Code, ProxyError};
use crate::http1::{Head, RequestHead};
use tollgate_rules::Scheme;

/// The request's form on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `GET http://host/path` (what HTTP_PROXY clients send).
    Absolute,
    /// `GET /path` with `Host` (gateway use); also `OPTIONS *`.
    Origin,
    /// `CONNECT host:port`.
    Connect,
}

/// The destination the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub form: Form,
    /// `http` for origin-form; for CONNECT `https`, except `http` for a CONNECT to port 80
    /// (what clients send for `http://` URLs through a tunnel, as Node's undici does), so
    /// that a route's host without a port matches it as it matches `http://host/`.
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

/// A request's target with its path and query, borrowed from the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'h> {
    pub target: Target,
    /// The path as sent, without the query; `*` for `OPTIONS *`, `/` for CONNECT and for
    /// an absolute-form target without a path.
    pub path: &'h str,
    /// The query with its leading `?`, or empty.
    pub query: &'h str,
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

/// The single `Host` field, if there is one; two are an error (RFC 9112 §3.2).
fn host_field(head: &RequestHead) -> Result<Option<&str>, ProxyError> {
    let mut hosts = head.values("host");
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    first
        .map(|h| std::str::from_utf8(h).map_err(|_| bad("Host header is not visible ASCII")))
        .transpose()
}

/// Reads the destination, path and query of a request.
pub fn parse(head: &RequestHead) -> Result<Parsed<'_>, ProxyError> {
    let raw = head.target();
    if raw.contains('#') {
        return Err(bad("a request target cannot carry a fragment (#)"));
    }
    let host = host_field(head)?;
    if head.method() == "CONNECT" {
        let (h, port) = split_authority(raw)?;
        let port = port.ok_or_else(|| bad("CONNECT target needs host:port"))?;
        return Ok(Parsed {
            target: Target {
                form: Form::Connect,
                scheme: if port == Scheme::Http.default_port() {
                    Scheme::Http
                } else {
                    Scheme::Https
                },
                host: h,
                port,
            },
            path: "/",
            query: "",
        });
    }
    if raw.starts_with('/') || raw == "*" {
        if raw == "*" && head.method() != "OPTIONS" {
            return Err(bad("the target `*` is only for OPTIONS"));
        }
        let host = host.ok_or_else(|| bad("origin-form request without Host header"))?;
        let (h, port) = split_authority(host)?;
        let (path, query) = split_query(raw);
        return Ok(Parsed {
            target: Target {
                form: Form::Origin,
                scheme: Scheme::Http,
                host: h,
                port: port.unwrap_or(80),
            },
            path,
            query,
        });
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(bad("request target must be origin-form or absolute-form"));
    };
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else {
        return Err(bad(format!(
            "unsupported scheme {scheme:?} in request target"
        )));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    let (h, port) = split_authority(authority)?;
    let port = port.unwrap_or(scheme.default_port());
    if let Some(host) = host {
        // RFC 9112 §3.2.2 lets a proxy ignore a disagreeing Host; we refuse it, so that
        // nothing downstream of us can be steered by the one we did not route on.
        let (hh, hp) = split_authority(host)?;
        if hh != h || hp.unwrap_or(scheme.default_port()) != port {
            return Err(bad(
                "the Host header disagrees with the request target's authority",
            ));
        }
    }
    let (path, query) = split_query(path_and_query);
    Ok(Parsed {
        target: Target {
            form: Form::Absolute,
            scheme,
            host: h,
            port,
        },
        path: if path.is_empty() { "/" } else { path },
        query,
    })
}

/// The CONNECT tunnel (`connect: intercept`) a request was read from. Inside it the
/// destination is the CONNECT authority, whatever the request line or `Host` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The CONNECT host (lower-cased) and port.
    pub host: String,
    pub port: u16,
    /// `https` when tollgate terminated TLS inside the tunnel, `http` for plain HTTP.
    pub scheme: Scheme,
    /// The TLS server name, when it named another host than the CONNECT's.
    pub sni_mismatch: Option<String>,
}

impl Tunnel {
    /// `"intercept"` (TLS terminated) or `"plain"`: the tunnel's mode in metrics and logs.
    pub fn mode(&self) -> &'static str {
        match self.scheme {
            Scheme::Https => "intercept",
            Scheme::Http => "plain",
        }
    }

    /// Points a request read inside the tunnel at the CONNECT authority. A `Host`, an
    /// absolute-form authority or an SNI that names anything else gets 421 `misdirected`:
    /// what tollgate routes on must be what the client's TLS session was opened for.
    pub fn retarget<'h>(
        &self,
        mut parsed: Parsed<'h>,
        head: &RequestHead,
    ) -> Result<Parsed<'h>, ProxyError> {
        let misdirected = |what: String| {
            Err(ProxyError::new(
                Code::Misdirected,
                format!(
                    "{what}, not the tunnel's {}: open a tunnel to that host",
                    join_host_port(&self.host, self.port)
                ),
                None,
            ))
        };
        if let Some(sni) = &self.sni_mismatch {
            return misdirected(format!("the TLS server name is {sni:?}"));
        }
        match parsed.target.form {
            Form::Connect => return Err(bad("a CONNECT cannot be sent inside a tunnel")),
            Form::Absolute => {
                if parsed.target.host != self.host || parsed.target.port != self.port {
                    return misdirected(format!(
                        "the request is for {}",
                        parsed.target.authority()
                    ));
                }
            }
            Form::Origin => {
                let host = host_field(head)?.unwrap_or_default();
                if !crate::intercept::host_agrees(&self.host, self.port, host) {
                    return misdirected(format!("the Host header names {host:?}"));
                }
            }
        }
        parsed.target.scheme = self.scheme;
        parsed.target.host.clone_from(&self.host);
        parsed.target.port = self.port;
        Ok(parsed)
    }
}

fn split_query(pq: &str) -> (&str, &str) {
    match pq.find('?') {
        Some(i) => pq.split_at(i),
        None => (pq, ""),
    }
}

/// Split `host[:port]` (IPv6 in brackets), lower-casing the host and rejecting anything
/// that is not a plausible host name or IP literal.
pub fn split_authority(s: &str) -> Result<(String, Option<u16>), ProxyError> {
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
        let port = match &rest[end + 1..] {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("junk after IPv6 literal"))?,
            ),
        };
        (host.to_ascii_lowercase(), port)
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.contains(':') {
            return Err(bad(
                "an IPv6 address must be written in brackets: [2001:db8::1]:443",
            ));
        }
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !ok {
            return Err(bad("bad host name"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(bad("bad port")),
            }
        }
        Some(_) => return Err(bad("bad port")),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request;
    use bytes::BytesMut;

    fn head(s: &str) -> RequestHead {
        parse_request(&mut BytesMut::from(s))
            .expect("head")
            .expect("complete")
    }

    fn parsed(s: &str) -> Result<(Target, String, String), String> {
        let h = head(s);
        parse(&h)
            .map(|p| (p.target, p.path.to_owned(), p.query.to_owned()))
            .map_err(|e| e.message)
    }

    fn tunnel(scheme: Scheme) -> Tunnel {
        Tunnel {
            host: "api.test".into(),
            port: 443,
            scheme,
            sni_mismatch: None,
        }
    }

    fn inside(t: &Tunnel, s: &str) -> Result<Target, (Code, String)> {
        let h = head(s);
        let p = parse(&h).map_err(|e| (e.code, e.message))?;
        t.retarget(p, &h)
            .map(|p| p.target)
            .map_err(|e| (e.code, e.message))
    }

    #[test]
    fn connect_to_port_80_is_http() {
        let (t, _, _) = parsed("CONNECT api.test:80 HTTP/1.1\r\n\r\n").expect("ok");
        assert_eq!(
            (t.form, t.scheme, t.port),
            (Form::Connect, Scheme::Http, 80)
        );
        let (t, _, _) = parsed("CONNECT api.test:8443 HTTP/1.1\r\n\r\n").expect("ok");
        assert_eq!(t.scheme, Scheme::Https);
    }

    #[test]
    fn inside_a_tunnel_the_connect_authority_is_the_target() {
        let t = tunnel(Scheme::Https);
        for ok in [
            "GET /v2/x HTTP/1.1\r\nHost: api.test\r\n\r\n",
            "GET /v2/x HTTP/1.1\r\nHost: API.test:443\r\n\r\n",
            "GET https://api.test/v2/x HTTP/1.1\r\n\r\n",
        ] {
            let got = inside(&t, ok).unwrap_or_else(|e| panic!("{ok:?}: {e:?}"));
            assert_eq!(
                (got.scheme, got.host.as_str(), got.port),
                (Scheme::Https, "api.test", 443),
                "{ok:?}"
            );
        }
        let plain = inside(
            &tunnel(Scheme::Http),
            "GET /x HTTP/1.1\r\nHost: api.test:443\r\n\r\n",
        )
        .expect("plain");
        assert_eq!(plain.scheme, Scheme::Http);
    }

    #[test]
    fn inside_a_tunnel_another_host_is_misdirected() {
        let t = tunnel(Scheme::Https);
        for bad in [
            "GET /x HTTP/1.1\r\nHost: admin.test\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: api.test:8443\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: api.test.evil\r\n\r\n",
            "GET http://admin.test/x HTTP/1.1\r\n\r\n",
            "GET https://api.test:8443/x HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                inside(&t, bad).map_err(|e| e.0),
                Err(Code::Misdirected),
                "{bad:?}"
            );
        }
        let sni = Tunnel {
            sni_mismatch: Some("admin.test".into()),
            ..tunnel(Scheme::Https)
        };
        let (code, msg) =
            inside(&sni, "GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n").expect_err("sni");
        assert_eq!(code, Code::Misdirected);
        assert!(msg.contains("admin.test"), "{msg}");
        assert_eq!(
            inside(
                &t,
                "CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n"
            )
            .map_err(|e| e.0),
            Err(Code::BadRequest)
        );
        assert_eq!(
            inside(&t, "GET /x HTTP/1.1\r\n\r\n").map_err(|e| e.0),
            Err(Code::BadRequest),
            "origin-form without Host"
        );
    }

    #[test]
    fn absolute_form() {
        let (t, p, q) = parsed("GET http://API.Example.com:8080/x?y HTTP/1.1\r\n\r\n").expect("ok");
        assert_eq!(
            (t.form, t.host.as_str(), t.port),
            (Form::Absolute, "api.example.com", 8080)
        );
        assert_eq!((p.as_str(), q.as_str()), ("/x", "?y"));
        let (t, p, q) =
            parsed("GET https://a.test HTTP/1.1\r\nHost: a.test:443\r\n\r\n").expect("ok");
        assert_eq!(
            (t.scheme, t.port, p.as_str(), q.as_str()),
            (Scheme::Https, 443, "/", "")
        );
        let (_, p, q) = parsed("GET http://a.test?q=1 HTTP/1.1\r\n\r\n").expect("ok");
        assert_eq!((p.as_str(), q.as_str()), ("/", "?q=1"));
        assert!(parsed("GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n").is_err());
        assert!(parsed("GET http://a.test/ HTTP/1.1\r\nHost: a.test:81\r\n\r\n").is_err());
        assert!(parsed("GET ftp://a.test/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parsed("GET http://u:p@a.test/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parsed("GET http://a.test/#frag HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn origin_form_uses_host() {
        let (t, p, _) = parsed("GET /v2/x HTTP/1.1\r\nHost: API.test:81\r\n\r\n").expect("ok");
        assert_eq!(
            (t.form, t.host.as_str(), t.port, p.as_str()),
            (Form::Origin, "api.test", 81, "/v2/x")
        );
        assert!(parsed("GET /v2/x HTTP/1.1\r\n\r\n").is_err());
        assert!(parsed("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").is_err());
        let (_, p, _) = parsed("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").expect("ok");
        assert_eq!(p, "*");
        assert!(parsed("GET * HTTP/1.1\r\nHost: a\r\n\r\n").is_err());
    }

    #[test]
    fn connect_authority() {
        let (t, p, _) = parsed("CONNECT example.com:443 HTTP/1.1\r\n\r\n").expect("ok");
        assert_eq!((t.form, t.port, p.as_str()), (Form::Connect, 443, "/"));
        let (t, _, _) = parsed("CONNECT [::1]:8443 HTTP/1.0\r\n\r\n").expect("ok");
        assert_eq!(
            (t.host.as_str(), t.authority()),
            ("::1", "[::1]:8443".to_owned())
        );
        assert!(parsed("CONNECT example.com HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn bad_authorities() {
        for s in [
            "",
            ":80",
            "a b",
            "h:0",
            "h:99999",
            "u@h",
            "[::1",
            "h:+1",
            "[zz]:1",
            "::1",
            "::1:80",
            "fe80::1",
            "h:",
            "h:0080000",
            "a/b",
        ] {
            assert!(split_authority(s).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(
            split_authority("[::1]:80").expect("ok"),
            ("::1".to_owned(), Some(80))
        );
        assert_eq!(
            split_authority("A.b_c-d").expect("ok"),
            ("a.b_c-d".to_owned(), None)
        );
    }
}
