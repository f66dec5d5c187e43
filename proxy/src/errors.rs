//! Our error codes and the one place that turns them into responses.
//!
//! Every answer the proxy makes itself is a [`ProxyError`]: a [`Code`], a short message
//! meant for the caller, the route it concerns, and optionally a detail for the log only
//! (addresses, pingora's context: never sent to the client). [`ProxyError::write_response`]
//! renders the JSON body `{"error", "message", "route"}` with `tollgate-error: CODE`.

use std::fmt;
use std::io::Write as _;

/// The error codes of SPEC "Data path", and the ones hardening added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NoRoute,
    Denied,
    ClientNotAllowed,
    ConnectNotAllowed,
    PrivateAddress,
    /// A request that loops back to this proxy (its own `Via`, or one of its listeners).
    ForwardingLoop,
    ProxyAuthRequired,
    CallerNotAllowed,
    /// The CONNECT authority, SNI and `Host` disagree inside an intercepted tunnel.
    Misdirected,
    TokenUnavailable,
    UpstreamUnreachable,
    /// The upstream's answer broke HTTP/1.1 (a malformed head, an unsolicited 101).
    UpstreamProtocol,
    UpstreamTimeout,
    BadRequest,
    /// The request head did not arrive within `timeouts.request_head`.
    RequestTimeout,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NoRoute => "no_route",
            Code::Denied => "denied",
            Code::ClientNotAllowed => "client_not_allowed",
            Code::ConnectNotAllowed => "connect_not_allowed",
            Code::PrivateAddress => "private_address",
            Code::ForwardingLoop => "forwarding_loop",
            Code::ProxyAuthRequired => "proxy_auth_required",
            Code::CallerNotAllowed => "caller_not_allowed",
            Code::Misdirected => "misdirected",
            Code::TokenUnavailable => "token_unavailable",
            Code::UpstreamUnreachable => "upstream_unreachable",
            Code::UpstreamProtocol => "upstream_protocol_error",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::BadRequest => "bad_request",
            Code::RequestTimeout => "request_timeout",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Code::NoRoute
            | Code::Denied
            | Code::ClientNotAllowed
            | Code::ConnectNotAllowed
            | Code::PrivateAddress
            | Code::ForwardingLoop
            | Code::CallerNotAllowed => 403,
            Code::ProxyAuthRequired => 407,
            Code::Misdirected => 421,
            Code::TokenUnavailable | Code::UpstreamUnreachable | Code::UpstreamProtocol => 502,
            Code::UpstreamTimeout => 504,
            Code::BadRequest => 400,
            Code::RequestTimeout => 408,
        }
    }

    fn reason(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            403 => "Forbidden",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            421 => "Misdirected Request",
            502 => "Bad Gateway",
            504 => "Gateway Timeout",
            _ => "Error",
        }
    }

    /// Refusals by policy (the `deny` action label), as opposed to failures.
    pub fn is_refusal(self) -> bool {
        self.status() == 403 || self.status() == 407
    }
}

/// An error the proxy answers itself. Neither the message nor the detail may hold a
/// secret or token; only the message reaches the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub code: Code,
    pub message: String,
    pub route: Option<String>,
    /// For the log: what the client is not told (addresses, low-level causes).
    pub detail: Option<String>,
}

impl ProxyError {
    pub fn new(code: Code, message: impl Into<String>, route: Option<&str>) -> Self {
        ProxyError {
            code,
            message: message.into(),
            route: route.map(str::to_owned),
            detail: None,
        }
    }

    /// Adds a detail for the log.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Names the route, unless one is named already.
    pub fn on_route(mut self, route: &str) -> Self {
        if self.route.is_none() {
            self.route = Some(route.to_owned());
        }
        self
    }

    /// The JSON body of SPEC: `{"error", "message", "route"}`, newline-terminated.
    pub fn body(&self) -> Vec<u8> {
        let v = serde_json::json!({
            "error": self.code.as_str(),
            "message": self.message,
            "route": self.route,
        });
        let mut s = v.to_string().into_bytes();
        s.push(b'\n');
        s
    }

    /// Appends the whole response to `out`. `keep_alive` decides the `Connection`
    /// header; `extra` are more header lines (`Proxy-Authenticate: ...`), each without CRLF.
    pub fn write_response(&self, keep_alive: bool, extra: &[String], out: &mut Vec<u8>) {
        let body = self.body();
        let code = self.code;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             tollgate-error: {}\r\ncache-control: no-store\r\n",
            code.status(),
            code.reason(),
            body.len(),
            code.as_str()
        );
        for h in extra {
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(if keep_alive {
            b"connection: keep-alive\r\n\r\n"
        } else {
            b"connection: close\r\n\r\n"
        });
        out.extend_from_slice(&body);
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// Maps a failure to dial the upstream (pingora's connector) to our error. The client
/// learns what kind of failure it was; addresses and pingora's context go to the detail.
pub fn dial_failed(e: &pingora::Error, route: Option<&str>) -> ProxyError {
    use pingora::ErrorType::*;
    let (code, what) = match e.etype() {
        ConnectTimedout | TLSHandshakeTimedout => (Code::UpstreamTimeout, "connecting to the upstream timed out"),
        ConnectRefused => (Code::UpstreamUnreachable, "the upstream refused the connection"),
        TLSHandshakeFailure | InvalidCert | HandshakeError => {
            (Code::UpstreamUnreachable, "the TLS handshake with the upstream failed (certificate not trusted or not for this host)")
        }
        ConnectNoRoute => (Code::UpstreamUnreachable, "no route to the upstream"),
        _ => (Code::UpstreamUnreachable, "cannot connect to the upstream"),
    };
    ProxyError::new(code, what, route).with_detail(one_line(&e.to_string()))
}

/// pingora's error strings can carry context chains; keep them to one bounded line.
pub fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(300).collect();
    if line.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_spec_json() {
        let e = ProxyError::new(Code::NoRoute, "no route for example.com:80", None);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("body is JSON");
        assert_eq!(v["error"], "no_route");
        assert_eq!(v["route"], serde_json::Value::Null);
        assert_eq!(v["message"], "no route for example.com:80");
        assert_eq!(Code::NoRoute.status(), 403);
        assert_eq!(Code::TokenUnavailable.status(), 502);
        assert_eq!(Code::UpstreamTimeout.status(), 504);
        assert_eq!(Code::RequestTimeout.status(), 408);
    }

    #[test]
    fn response_is_framed_and_keeps_details_out() {
        let e = ProxyError::new(
            Code::UpstreamUnreachable,
            "the upstream refused the connection",
            Some("r"),
        )
        .with_detail("Peer: addr: 10.0.0.7:8080");
        let mut out = Vec::new();
        e.write_response(
            false,
            &["proxy-authenticate: Basic realm=\"tollgate\"".into()],
            &mut out,
        );
        let text = String::from_utf8(out).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
        assert!(head.contains("tollgate-error: upstream_unreachable"));
        assert!(head.contains("connection: close"));
        assert!(head.contains("proxy-authenticate: Basic"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(!text.contains("10.0.0.7"), "{text}");
    }
}
