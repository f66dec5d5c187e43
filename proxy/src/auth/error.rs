//! Errors: [`AuthError`] for building the cache (bad key, secret or CA file),
//! [`TokenError`] for getting a token. Both name the credential; neither ever carries a
//! secret, a token or a response body.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A credential that cannot be set up. Returned by [`TokenCache::new`] and
/// [`TokenCache::reconfigure`], which then change nothing.
///
/// [`TokenCache::new`]: super::TokenCache::new
/// [`TokenCache::reconfigure`]: super::TokenCache::reconfigure
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credential \"{credential}\": client_secret_file {}: {reason}", path.display())]
    SecretFile {
        credential: String,
        path: PathBuf,
        reason: String,
    },
    #[error("credential \"{credential}\": private_key_file {}: {reason}", path.display())]
    KeyFile {
        credential: String,
        path: PathBuf,
        reason: String,
    },
    #[error("credential \"{credential}\": ca_file {}: {reason}", path.display())]
    CaFile {
        credential: String,
        path: PathBuf,
        reason: String,
    },
    /// Another file the credential reads: `value_file`, `service_account_file`,
    /// `certificate_file`.
    #[error("credential \"{credential}\": {key} {}: {reason}", path.display())]
    File {
        credential: String,
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// OIDC discovery of its `issuer` failed or found something unusable.
    #[error("credential \"{credential}\": {reason}")]
    Discovery { credential: String, reason: String },
    #[error("credential \"{credential}\": cannot build the token endpoint client: {reason}")]
    Client { credential: String, reason: String },
    #[error("registering the token metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The token store cannot be set up (a key file, the password file).
    #[error("token_store: {0}")]
    Store(String),
}

/// Why no token could be had. Cheap to clone (shared by every request waiting on one
/// fetch, and remembered for the failure memo).
///
/// `Display` names the credential and what went wrong, for example
/// `credential "billing": token endpoint answered 401 invalid_client: bad secret` or
/// `credential "billing": token endpoint unreachable: connection refused`.
#[derive(Clone, Debug)]
pub struct TokenError {
    credential: Arc<str>,
    failure: Failure,
}

/// What went wrong, without the credential name. Strings from the endpoint are
/// sanitized (printable, bounded) before they get here.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Failure {
    /// No credential of that name is configured.
    UnknownCredential,
    /// Connecting, TLS, or the connection broke.
    Unreachable(Arc<str>),
    /// No answer within the request timeout.
    Timeout(Duration),
    /// The endpoint answered an error status.
    Rejected {
        status: u16,
        /// RFC 6749 §5.2 `error`, when the body had one.
        error: Option<Arc<str>>,
        /// `error_description`, when the body had one.
        description: Option<Arc<str>>,
        retry_after: Option<Duration>,
    },
    /// A success status whose body is not a usable token response.
    InvalidResponse { status: u16, reason: Arc<str> },
    /// A token of a type tollgate does not send (RFC 6749 §7.1), e.g. `mac`.
    UnsupportedTokenType {
        /// The `token_type` as sent, sanitized.
        sent: Arc<str>,
        /// The type the credential sends (`Bearer`).
        expected: &'static str,
    },
    /// Our side: reading the secret or key file, or signing the assertion.
    Local(Arc<str>),
    /// Not sent: the endpoint's rate limit (or another replica's failure, through the
    /// token store) says to wait this long.
    Deferred { wait: Duration, reason: Arc<str> },
}

/// Bounded `outcome` label values of `tollgate_token_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Error,
    PermanentError,
    NetworkError,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Error,
        Outcome::PermanentError,
        Outcome::NetworkError,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::PermanentError => "permanent_error",
            Outcome::NetworkError => "network_error",
        }
    }
}

impl Failure {
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            // 401 is what RFC 6749 §5.2 prescribes for invalid_client; an endpoint that
            // answers 401 without a JSON body is refusing our client authentication too.
            Failure::Rejected { status, error, .. } => {
                *status == 401
                    || matches!(
                        error.as_deref(),
                        Some("invalid_client") | Some("unauthorized_client")
                    )
            }
            _ => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Rejected { retry_after, .. } => *retry_after,
            Failure::Deferred { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// The metric outcome, or `None` when no request reached the endpoint.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        match self {
            Failure::UnknownCredential | Failure::Local(_) | Failure::Deferred { .. } => None,
            Failure::Unreachable(_) | Failure::Timeout(_) => Some(Outcome::NetworkError),
            Failure::Rejected { .. } if self.is_permanent() => Some(Outcome::PermanentError),
            Failure::Rejected { .. }
            | Failure::InvalidResponse { .. }
            | Failure::UnsupportedTokenType { .. } => Some(Outcome::Error),
        }
    }
}

impl TokenError {
    pub(crate) fn new(credential: Arc<str>, failure: Failure) -> Self {
        TokenError {
            credential,
            failure,
        }
    }

    /// The credential whose token could not be had.
    pub fn credential(&self) -> &str {
        &self.credential
    }

    /// True when the endpoint refused our client (`invalid_client`,
    /// `unauthorized_client`, or a 401): retrying soon will not help, fixing the
    /// secret or key will. Such failures are retried every 30 s.
    pub fn is_permanent(&self) -> bool {
        self.failure.is_permanent()
    }

    pub(crate) fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "credential \"{}\": ", self.credential)?;
        match &self.failure {
            Failure::UnknownCredential => f.write_str("no such credential is configured"),
            Failure::Unreachable(why) => write!(f, "token endpoint unreachable: {why}"),
            Failure::Timeout(after) => write!(
                f,
                "token endpoint did not answer within {}",
                fmt_duration(*after)
            ),
            Failure::Rejected {
                status,
                error,
                description,
                retry_after,
            } => {
                write!(f, "token endpoint answered {status}")?;
                match (error, description) {
                    (Some(e), Some(d)) => write!(f, " {e}: {d}")?,
                    (Some(e), None) => write!(f, " {e}")?,
                    (None, Some(d)) => write!(f, ": {d}")?,
                    (None, None) => {
                        if let Some(reason) = reqwest::StatusCode::from_u16(*status)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                        {
                            write!(f, " {reason}")?;
                        }
                    }
                }
                if let Some(ra) = retry_after {
                    write!(f, " (retry after {})", fmt_duration(*ra))?;
                }
                Ok(())
            }
            Failure::InvalidResponse { status, reason } => {
                write!(
                    f,
                    "token endpoint answered {status} with an unusable body: {reason}"
                )
            }
            Failure::UnsupportedTokenType { sent, expected } if *expected == "DPoP" => write!(
                f,
                "token endpoint answered a DPoP token request with a token of type \"{sent}\": \
                 it is not bound to the DPoP key, so tollgate does not use it (RFC 9449 §5)"
            ),
            Failure::UnsupportedTokenType { sent, expected } => write!(
                f,
                "token endpoint issued a token of type \"{sent}\", which tollgate does not use \
                 (it sends only {expected} tokens; RFC 6749 §7.1)"
            ),
            Failure::Local(why) => f.write_str(why),
            Failure::Deferred { wait, reason } => write!(
                f,
                "not asking the token endpoint again for {}: {reason}",
                fmt_duration(Duration::from_secs(
                    wait.as_secs_f64().ceil().max(1.0) as u64
                ))
            ),
        }
    }
}

impl std::error::Error for TokenError {}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Makes text from the endpoint fit for an error message: control characters become
/// spaces, and it is cut at `max` characters (marked with `…`).
pub(crate) fn sanitize(text: &str, max: usize) -> Arc<str> {
    let mut out = String::with_capacity(text.len().min(max + 3));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    Arc::from(out.trim())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn err(f: Failure) -> String {
        TokenError::new(Arc::from("billing"), f).to_string()
    }

    #[test]
    fn display_forms() {
        assert_eq!(
            err(Failure::Rejected {
                status: 401,
                error: Some(Arc::from("invalid_client")),
                description: Some(Arc::from("client authentication failed")),
                retry_after: None
            }),
            "credential \"billing\": token endpoint answered 401 invalid_client: client authentication failed"
        );
        assert_eq!(
            err(Failure::Rejected {
                status: 503,
                error: None,
                description: None,
                retry_after: Some(Duration::from_secs(5))
            }),
            "credential \"billing\": token endpoint answered 503 Service Unavailable (retry after 5s)"
        );
        assert_eq!(
            err(Failure::Unreachable(Arc::from("connection refused"))),
            "credential \"billing\": token endpoint unreachable: connection refused"
        );
        assert_eq!(
            err(Failure::Timeout(Duration::from_secs(10))),
            "credential \"billing\": token endpoint did not answer within 10s"
        );
        assert_eq!(
            err(Failure::UnsupportedTokenType {
                sent: Arc::from("mac"),
                expected: "Bearer"
            }),
            "credential \"billing\": token endpoint issued a token of type \"mac\", which tollgate \
             does not use (it sends only Bearer tokens; RFC 6749 §7.1)"
        );
        assert_eq!(
            err(Failure::UnknownCredential),
            "credential \"billing\": no such credential is configured"
        );
        assert_eq!(
            err(Failure::Deferred {
                wait: Duration::from_millis(41_700),
                reason: Arc::from("its rate limit is used up (X-Rate-Limit-Remaining: 0)")
            }),
            "credential \"billing\": not asking the token endpoint again for 42s: its rate limit is used up (X-Rate-Limit-Remaining: 0)"
        );
    }

    #[test]
    fn permanence() {
        let rejected = |status, error: Option<&str>| Failure::Rejected {
            status,
            error: error.map(Arc::from),
            description: None,
            retry_after: None,
        };
        assert!(rejected(400, Some("invalid_client")).is_permanent());
        assert!(rejected(400, Some("unauthorized_client")).is_permanent());
        assert!(rejected(401, None).is_permanent());
        assert!(!rejected(400, Some("invalid_scope")).is_permanent());
        assert!(!rejected(503, None).is_permanent());
        assert!(!rejected(429, None).is_permanent());
        assert_eq!(rejected(401, None).outcome(), Some(Outcome::PermanentError));
        assert_eq!(rejected(500, None).outcome(), Some(Outcome::Error));
        assert_eq!(
            Failure::Timeout(Duration::from_secs(1)).outcome(),
            Some(Outcome::NetworkError)
        );
        assert_eq!(Failure::Local(Arc::from("x")).outcome(), None);
    }

    #[test]
    fn sanitize_bounds_and_cleans() {
        assert_eq!(&*sanitize("a\r\nb", 10), "a  b");
        assert_eq!(&*sanitize("abcdef", 3), "abc…");
        assert_eq!(&*sanitize("  x  ", 10), "x");
    }

    #[test]
    fn auth_error_names_credential_and_path() {
        let e = AuthError::KeyFile {
            credential: "billing".into(),
            path: PathBuf::from("/k.pem"),
            reason: "not a PEM private key".into(),
        };
        assert_eq!(
            e.to_string(),
            "credential \"billing\": private_key_file /k.pem: not a PEM private key"
        );
    }
}
