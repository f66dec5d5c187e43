//! Our error codes and the one place that turns them into responses.
//!
//! Every error the proxy itself makes is a [`ProxyError`]: a code from SPEC, a message
//! meant for the caller, and the route it concerns. Hooks store it in the request
//! context and return [`ProxyError::into_pingora`]; `fail_to_proxy` then calls
//! [`respond`]. Errors that come from pingora (timeouts, refused connections, bad
//! requests) are mapped to a code by [`classify`].

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};
use std::fmt;

/// The error codes of SPEC "Data path".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NoRoute,
    Denied,
    ClientNotAllowed,
    ConnectNotAllowed,
    PrivateAddress,
    TokenUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    BadRequest,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NoRoute => "no_route",
            Code::Denied => "denied",
            Code::ClientNotAllowed => "client_not_allowed",
            Code::ConnectNotAllowed => "connect_not_allowed",
            Code::PrivateAddress => "private_address",
            Code::TokenUnavailable => "token_unavailable",
            Code::UpstreamUnreachable => "upstream_unreachable",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::BadRequest => "bad_request",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Code::NoRoute
            | Code::Denied
            | Code::ClientNotAllowed
            | Code::ConnectNotAllowed
            | Code::PrivateAddress => 403,
            Code::TokenUnavailable | Code::UpstreamUnreachable => 502,
            Code::UpstreamTimeout => 504,
            Code::BadRequest => 400,
        }
    }

    /// The pingora error type that carries this code through pingora's error path.
    fn etype(self) -> ErrorType {
        ErrorType::Custom(match self {
            Code::NoRoute => "tollgate:no_route",
            Code::Denied => "tollgate:denied",
            Code::ClientNotAllowed => "tollgate:client_not_allowed",
            Code::ConnectNotAllowed => "tollgate:connect_not_allowed",
            Code::PrivateAddress => "tollgate:private_address",
            Code::TokenUnavailable => "tollgate:token_unavailable",
            Code::UpstreamUnreachable => "tollgate:upstream_unreachable",
            Code::UpstreamTimeout => "tollgate:upstream_timeout",
            Code::BadRequest => "tollgate:bad_request",
        })
    }
}

/// An error the proxy answers itself. The message must never hold a secret or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub code: Code,
    pub message: String,
    pub route: Option<String>,
}

impl ProxyError {
    pub fn new(code: Code, message: impl Into<String>, route: Option<&str>) -> Self {
        ProxyError {
            code,
            message: message.into(),
            route: route.map(str::to_owned),
        }
    }

    /// A pingora error carrying this code (the details stay in the request context).
    pub fn into_pingora(self) -> Box<Error> {
        let mut e = Error::explain(self.code.etype(), self.message);
        e.set_retry(false);
        e
    }

    /// The JSON body of SPEC: `{"error", "message", "route"}`.
    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({
            "error": self.code.as_str(),
            "message": self.message,
            "route": self.route,
        });
        let mut s = v.to_string();
        s.push('\n');
        Bytes::from(s)
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// Map an error pingora reported (when no [`ProxyError`] was recorded) to one of ours.
/// `None` means the downstream connection is gone and nothing can be written.
pub fn classify(e: &Error, route: Option<&str>) -> Option<ProxyError> {
    use ErrorType::*;
    let detail = e.to_string();
    let code = match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
            if matches!(e.esource(), ErrorSource::Downstream) {
                return None;
            }
            Code::UpstreamTimeout
        }
        InvalidHTTPHeader | H1Error | InvalidH2 | H2Error => {
            if matches!(e.esource(), ErrorSource::Upstream) {
                Code::UpstreamUnreachable
            } else {
                Code::BadRequest
            }
        }
        HTTPStatus(status) if *status == 400 => Code::BadRequest,
        ReadError | WriteError | ConnectionClosed
            if matches!(e.esource(), ErrorSource::Downstream) =>
        {
            return None;
        }
        _ => match e.esource() {
            ErrorSource::Downstream => Code::BadRequest,
            _ => Code::UpstreamUnreachable,
        },
    };
    let message = match code {
        Code::UpstreamTimeout => format!("upstream timed out: {}", short(&detail)),
        Code::BadRequest => format!("bad request: {}", short(&detail)),
        _ => format!("upstream unreachable: {}", short(&detail)),
    };
    Some(ProxyError::new(code, message, route))
}

/// pingora's error strings can carry context chains; keep them to one readable line.
fn short(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(300).collect();
    if line.len() > out.len() {
        out.push('…');
    }
    out
}

/// Write our JSON error response. Returns the status written.
pub async fn respond(session: &mut Session, err: &ProxyError) -> u16 {
    let status = err.code.status();
    let body = err.body();
    let mut resp = match ResponseHeader::build(status, Some(4)) {
        Ok(r) => r,
        Err(_) => return 0,
    };
    let _ = resp.insert_header("content-type", "application/json");
    let _ = resp.insert_header("content-length", body.len().to_string());
    let _ = resp.insert_header("tollgate-error", err.code.as_str());
    let _ = resp.insert_header("cache-control", "no-store");
    if session
        .write_response_header(Box::new(resp), false)
        .await
        .is_err()
    {
        return 0;
    }
    let _ = session.write_response_body(Some(body), true).await;
    status
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
    }

    #[test]
    fn classify_maps_upstream_and_downstream() {
        let mut e = Error::new(ErrorType::ConnectRefused);
        e.as_up();
        let p = classify(&e, Some("r")).expect("mapped");
        assert_eq!(p.code, Code::UpstreamUnreachable);
        assert_eq!(p.route.as_deref(), Some("r"));

        let mut e = Error::new(ErrorType::ConnectTimedout);
        e.as_up();
        assert_eq!(
            classify(&e, None).expect("mapped").code,
            Code::UpstreamTimeout
        );

        let mut e = Error::new(ErrorType::InvalidHTTPHeader);
        e.as_down();
        assert_eq!(classify(&e, None).expect("mapped").code, Code::BadRequest);

        let mut e = Error::new(ErrorType::ConnectionClosed);
        e.as_down();
        assert!(classify(&e, None).is_none());
    }
}
