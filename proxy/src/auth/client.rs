//! The token request (RFC 6749 §4.4) and its answer (§5.1, §5.2).
//!
//! [`build_request`] turns a credential, its grant and its authentication [`Material`] into an
//! [`HttpRequest`] (pure, so tests assert the exact form body and headers);
//! a [`TokenEndpoint`] sends it; [`parse_response`] judges the answer (pure too).
//! [`ReqwestEndpoint`] is the real endpoint: reqwest over rustls (ring), system roots
//! plus the credential's `ca_file`, no proxy, no redirects, bounded time and body.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use tollgate_rules::{BasicEncoding, Credential, OAuth2, Secret};
use url::form_urlencoded;
use url::Url;

use super::error::{sanitize, AuthError, Failure};
use super::jwt::{self, ASSERTION_TYPE};
use super::schedule::parse_retry_after;
use super::tls_client::{ClientCert, Which};

/// How long one token request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Token responses are a few hundred bytes; refuse to buffer more than this.
const MAX_RESPONSE_BODY: usize = 1 << 20;

const USER_AGENT: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

/// Form fields set by tollgate; `params` never overrides them (the config loader
/// already rejects such params; this is the second lock).
use tollgate_rules::file::RESERVED_PARAMS;

/// A token request: always `POST` with a form body. `Debug` redacts the
/// `Authorization` header and the body (they carry the secret or the assertion).
#[derive(Clone)]
pub struct HttpRequest {
    pub url: Url,
    /// Header names as sent (`Authorization`, `Accept`, `Content-Type`).
    pub headers: Vec<(&'static str, String)>,
    /// `application/x-www-form-urlencoded`.
    pub body: String,
}

impl HttpRequest {
    /// The value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The form body, decoded into pairs in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                if n.eq_ignore_ascii_case("authorization") {
                    (*n, "[redacted]")
                } else {
                    (*n, v.as_str())
                }
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("url", &self.url.as_str())
            .field("headers", &headers)
            .field(
                "body",
                &format_args!("[redacted, {} bytes]", self.body.len()),
            )
            .finish()
    }
}

/// What the endpoint answered. `Debug` does not show the body (it carries the token).
#[derive(Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// Okta-style rate-limit headers, if any.
    pub rate_limit: RateLimitHeaders,
    /// `DPoP-Nonce` (RFC 9449 §8), as sent.
    pub dpop_nonce: Option<Vec<u8>>,
    pub body: Vec<u8>,
}

/// `X-Rate-Limit-Remaining` and `X-Rate-Limit-Reset` as sent (Okta; others use the same
/// names). Judged by `schedule::rate_limit_wait`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub remaining: Option<String>,
    pub reset: Option<String>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("retry_after", &self.retry_after)
            .field("rate_limit", &self.rate_limit)
            .field("body", &format_args!("[{} bytes]", self.body.len()))
            .finish()
    }
}

/// Why no answer came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// No answer within the timeout.
    Timeout,
    /// Connection, TLS or protocol failure; a short reason (`connection refused`).
    Unreachable(String),
    /// The answer's body was larger than we buffer.
    BodyTooLarge { status: u16 },
    /// Our side failed before sending (signing the DPoP proof).
    Local(String),
}

/// A boxed, sendable future (what [`TokenEndpoint::send`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends a token request. The real one is [`ReqwestEndpoint`]; tests use fakes that
/// record the request and answer from a script.
pub trait TokenEndpoint: Send + Sync {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>>;
}

/// How the client authenticates one token request. Every variant's `Debug` is redacted.
#[derive(Debug)]
pub(crate) enum Material {
    /// `client_secret_basic`: id and secret in the `Authorization` header.
    Basic(Arc<Secret>, BasicEncoding),
    /// `client_secret_post`: id and secret in the form body.
    Post(Arc<Secret>),
    /// `private_key_jwt` / `client_assertion_file`: an assertion in the form body.
    Assertion(Secret),
    /// `tls_client_auth` / `self_signed_tls_client_auth`: `client_id` in the form; the
    /// TLS client certificate authenticates (RFC 8705 §2).
    ClientId,
}

/// The grant's own form fields.
pub(crate) enum GrantForm<'a> {
    /// `grant_type=client_credentials`.
    ClientCredentials,
    /// RFC 7523 §2.1: `grant_type=urn:...:jwt-bearer` and `assertion`.
    JwtBearer { assertion: &'a Secret },
    /// RFC 8693 §2.1.
    TokenExchange {
        subject_token: &'a Secret,
        subject_token_type: &'a str,
        requested_token_type: Option<&'a str>,
    },
}

/// The `grant_type` of RFC 7523 §2.1.
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `grant_type` of RFC 8693 §2.1.
pub(crate) const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Builds the token request to `url` for `def`, with the grant's fields and, when the
/// grant authenticates a client, `client` = (client id, material).
///
/// Form fields, in this order: `grant_type`; the grant's own (`assertion`, or
/// `subject_token`, `subject_token_type`, `requested_token_type`); `scope` (scopes joined
/// by spaces, omitted when none, and for `jwt_bearer`, whose assertion carries them);
/// `audience`; `resource`; the extra `params`; then the
/// client authentication: for `client_secret_post` `client_id` and `client_secret`, for
/// assertions `client_id`, `client_assertion_type` and `client_assertion`.
/// `client_secret_basic` sends `Authorization: Basic base64(id ":" secret)` with id and
/// secret each form-urlencoded first (RFC 6749 §2.3.1), or as they are with
/// `basic_encoding: raw`.
pub(crate) fn build_request(
    url: &Url,
    def: &OAuth2,
    grant: &GrantForm<'_>,
    client: Option<(&str, &Material)>,
) -> HttpRequest {
    let mut form = form_urlencoded::Serializer::new(String::new());
    match grant {
        GrantForm::ClientCredentials => {
            form.append_pair("grant_type", "client_credentials");
        }
        GrantForm::JwtBearer { assertion } => {
            form.append_pair("grant_type", JWT_BEARER_GRANT);
            form.append_pair("assertion", assertion.expose());
        }
        GrantForm::TokenExchange {
            subject_token,
            subject_token_type,
            requested_token_type,
        } => {
            form.append_pair("grant_type", TOKEN_EXCHANGE_GRANT);
            form.append_pair("subject_token", subject_token.expose());
            form.append_pair("subject_token_type", subject_token_type);
            if let Some(t) = requested_token_type {
                form.append_pair("requested_token_type", t);
            }
        }
    }
    // A JWT bearer grant carries its scopes in the assertion (Google: only `grant_type`
    // and `assertion` in the form).
    let scopes_in_form = !matches!(grant, GrantForm::JwtBearer { .. });
    if scopes_in_form && !def.scopes.is_empty() {
        form.append_pair("scope", &def.scopes.join(" "));
    }
    if let Some(audience) = &def.audience {
        form.append_pair("audience", audience);
    }
    if let Some(resource) = &def.resource {
        form.append_pair("resource", resource);
    }
    for (name, value) in &def.params {
        if !RESERVED_PARAMS.contains(&name.as_str()) {
            form.append_pair(name, value);
        }
    }
    let mut headers = vec![
        ("Accept", "application/json".to_string()),
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    match client {
        None => {}
        Some((client_id, Material::Basic(secret, encoding))) => {
            headers.push((
                "Authorization",
                basic_auth(client_id, secret.expose(), *encoding),
            ));
        }
        Some((client_id, Material::Post(secret))) => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", secret.expose());
        }
        Some((client_id, Material::Assertion(assertion))) => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_assertion_type", ASSERTION_TYPE);
            form.append_pair("client_assertion", assertion.expose());
        }
        Some((client_id, Material::ClientId)) => {
            form.append_pair("client_id", client_id);
        }
    }
    HttpRequest {
        url: url.clone(),
        headers,
        body: form.finish(),
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1), or without the
/// urlencoding for [`BasicEncoding::Raw`].
fn basic_auth(client_id: &str, secret: &str, encoding: BasicEncoding) -> String {
    let pair = match encoding {
        BasicEncoding::FormUrlencoded => {
            let mut pair: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
            pair.push(':');
            pair.extend(form_urlencoded::byte_serialize(secret.as_bytes()));
            pair
        }
        BasicEncoding::Raw => format!("{client_id}:{secret}"),
    };
    format!("Basic {}", STANDARD.encode(pair))
}

/// A successful token response (RFC 6749 §5.1; RFC 8693 §2.2.1; or Google's ID token
/// answer, whose token is in `access_token` here).
#[derive(Clone)]
pub struct TokenResponse {
    pub access_token: String,
    /// As sent (sanitized); empty when absent. Judged by [`check_token_type`], not here.
    pub token_type: String,
    pub expires_in: Option<Duration>,
    pub scope: Option<String>,
    /// RFC 8693's `issued_token_type` (sanitized), when sent.
    pub issued_token_type: Option<String>,
    /// When the token is a JWT: its claims, not verified.
    pub claims: Option<Value>,
}

/// The JSON object of a successful answer, or why there is none. Never copies the body
/// (which may hold a token) into an error: errors carry only the RFC 6749 §5.2 `error`
/// and `error_description`, sanitized and bounded.
fn success_object(
    resp: &HttpResponse,
    now: SystemTime,
) -> Result<serde_json::Map<String, Value>, Failure> {
    let status = resp.status;
    let invalid = |reason: &str| Failure::InvalidResponse {
        status,
        reason: Arc::from(reason),
    };
    if !(200..300).contains(&status) {
        let retry_after = match status {
            429 | 503 => resp
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, now)),
            _ => None,
        };
        let (error, description) = error_fields(&resp.body);
        return Err(Failure::Rejected {
            status,
            error,
            description,
            retry_after,
        });
    }
    let json: Value =
        serde_json::from_slice(&resp.body).map_err(|_| invalid("the body is not JSON"))?;
    match json {
        Value::Object(obj) => Ok(obj),
        _ => Err(invalid("the body is not a JSON object")),
    }
}

/// The token in `field`, checked to be a non-empty string fit for a header.
fn token_field(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    resp: &HttpResponse,
) -> Result<String, Failure> {
    let status = resp.status;
    let invalid = |reason: String| Failure::InvalidResponse {
        status,
        reason: Arc::from(reason),
    };
    let token = match obj.get(field) {
        Some(Value::String(t)) => t,
        Some(_) => return Err(invalid(format!("{field} is not a string"))),
        None => {
            // Some servers answer errors with 200.
            let (error, description) = error_fields(&resp.body);
            if error.is_some() {
                return Err(Failure::Rejected {
                    status,
                    error,
                    description,
                    retry_after: None,
                });
            }
            return Err(invalid(format!("it has no {field}")));
        }
    };
    if token.is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(invalid(format!(
            "{field} has characters not allowed in an HTTP header"
        )));
    }
    Ok(token.clone())
}

/// Judges an access token answer (RFC 6749 §5.1, §5.2; RFC 8693 §2.2). Never panics.
pub(crate) fn parse_response(
    resp: &HttpResponse,
    now: SystemTime,
) -> Result<TokenResponse, Failure> {
    let obj = success_object(resp, now)?;
    let access_token = token_field(&obj, "access_token", resp)?;
    let text = |name: &str, max: usize| {
        obj.get(name)
            .and_then(Value::as_str)
            .map(|t| sanitize(t, max).to_string())
    };
    let expires_in = match obj.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => Some(expires_in(v).map_err(|reason| Failure::InvalidResponse {
            status: resp.status,
            reason: Arc::from(reason),
        })?),
    };
    Ok(TokenResponse {
        claims: jwt::decode_claims(&access_token),
        access_token,
        token_type: text("token_type", 40).unwrap_or_default(),
        expires_in,
        scope: text("scope", 1000),
        issued_token_type: text("issued_token_type", 200),
    })
}

/// Judges Google's answer to a service account's ID token request: `{"id_token": JWT}`,
/// whose `exp` (required, and not yet past at `now`) gives its lifetime.
pub(crate) fn parse_id_token(
    resp: &HttpResponse,
    now: SystemTime,
) -> Result<TokenResponse, Failure> {
    let obj = success_object(resp, now)?;
    let id_token = token_field(&obj, "id_token", resp)?;
    let invalid = |reason: &str| Failure::InvalidResponse {
        status: resp.status,
        reason: Arc::from(reason),
    };
    let claims =
        jwt::decode_claims(&id_token).ok_or_else(|| invalid("the id_token is not a JWT"))?;
    let exp = jwt::jwt_times(&claims)
        .exp
        .ok_or_else(|| invalid("the id_token has no exp claim"))?;
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if u64::try_from(exp).map_or(true, |e| e <= now_unix) {
        return Err(invalid(
            "the id_token has already expired (its exp is past)",
        ));
    }
    Ok(TokenResponse {
        access_token: id_token,
        token_type: String::new(),
        expires_in: None,
        scope: None,
        issued_token_type: None,
        claims: Some(claims),
    })
}

/// RFC 8693's access token type URI.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Token types a token exchange may issue for tollgate to send as a bearer token when
/// the credential did not ask for one type.
const SENDABLE_TYPES: &[&str] = &[
    ACCESS_TOKEN_TYPE,
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];

/// RFC 8693 §2.2.1: `issued_token_type` is required; it must be the requested type when
/// one was requested, else a type tollgate can send. An access token must be Bearer; for
/// other types `token_type` is `N_A` (or Bearer).
pub(crate) fn check_exchange(
    r: &TokenResponse,
    requested: Option<&str>,
    expected: TokenType,
) -> Result<(), Failure> {
    let invalid = |reason: String| Failure::InvalidResponse {
        status: 200,
        reason: Arc::from(reason),
    };
    let Some(issued) = r.issued_token_type.as_deref() else {
        return Err(invalid(
            "it has no issued_token_type (RFC 8693 §2.2.1)".to_string(),
        ));
    };
    match requested {
        Some(want) if issued != want => {
            return Err(invalid(format!(
                "issued_token_type is {issued:?}, not the requested {want:?}"
            )))
        }
        None if !SENDABLE_TYPES.contains(&issued) => {
            return Err(invalid(format!(
                "issued_token_type {issued:?} is not a token tollgate can send; set \
                 requested_token_type"
            )))
        }
        _ => {}
    }
    if issued == ACCESS_TOKEN_TYPE || !r.token_type.eq_ignore_ascii_case("N_A") {
        check_token_type(&r.token_type, expected)?;
    }
    Ok(())
}

/// The token types tollgate can send: `Bearer` (RFC 6750), and `DPoP` (RFC 9449) for
/// DPoP-bound credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenType {
    Bearer,
    /// RFC 9449 §5: the answer to a token request with a DPoP proof.
    Dpop,
}

impl TokenType {
    fn as_str(self) -> &'static str {
        match self {
            TokenType::Bearer => "Bearer",
            TokenType::Dpop => "DPoP",
        }
    }
}

/// RFC 6749 §7.1: a client must not use a token whose type it does not understand. The
/// type is compared case-insensitively (§5.1); an absent `token_type` is taken as the
/// expected one (some servers omit it, and the request asked for nothing else).
/// A DPoP token request must get `token_type: DPoP` (RFC 9449 §5): anything else, absent
/// included, is a token not bound to the key.
pub(crate) fn check_token_type(sent: &str, expected: TokenType) -> Result<(), Failure> {
    let absent_ok = expected == TokenType::Bearer;
    if (sent.is_empty() && absent_ok) || sent.eq_ignore_ascii_case(expected.as_str()) {
        Ok(())
    } else {
        Err(Failure::UnsupportedTokenType {
            sent: sanitize(sent, 40),
            expected: expected.as_str(),
        })
    }
}

/// `expires_in` as a positive number of seconds, or a numeric string (some servers quote
/// it); fractions are dropped. Zero (a token already expired), negative, non-finite and
/// unparsable values are an invalid answer, not a reason to guess a lifetime.
fn expires_in(v: &Value) -> Result<Duration, &'static str> {
    let secs = match v {
        Value::Number(n) => match n.as_u64() {
            Some(s) => Some(s as f64),
            None => n.as_f64(),
        },
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(secs) = secs.filter(|f| f.is_finite()) else {
        return Err("expires_in is not a number");
    };
    if secs < 0.0 {
        return Err("expires_in is negative");
    }
    if secs < 1.0 {
        return Err("expires_in is 0: the token is already expired");
    }
    // `as` saturates: 1e300 becomes u64::MAX (and the lifetime is capped later).
    Ok(Duration::from_secs(secs as u64))
}

/// RFC 6749 §5.2 `error` and `error_description` from a body, if it is such JSON.
fn error_fields(body: &[u8]) -> (Option<Arc<str>>, Option<Arc<str>>) {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let field = |name: &str, max: usize| {
        obj.get(name)
            .and_then(Value::as_str)
            .map(|s| sanitize(s, max))
            .filter(|s| !s.is_empty())
    };
    (field("error", 80), field("error_description", 200))
}

/// The real token endpoint: one reqwest client per credential.
pub struct ReqwestEndpoint {
    client: reqwest::Client,
}

impl ReqwestEndpoint {
    /// A client trusting the system roots plus `extra_roots` (the PEM content of a
    /// `ca_file`). Installs ring as rustls' provider if none is installed.
    /// Never uses `HTTP(S)_PROXY` (tollgate is the proxy) and never follows redirects.
    pub fn new(
        extra_roots: Option<&[reqwest::Certificate]>,
        timeout: Duration,
    ) -> Result<Self, String> {
        Self::with_identity(extra_roots, None, timeout)
    }

    /// [`new`](Self::new), presenting `identity` (a client certificate) in the TLS
    /// handshake.
    pub fn with_identity(
        extra_roots: Option<&[reqwest::Certificate]>,
        identity: Option<reqwest::Identity>,
        timeout: Duration,
    ) -> Result<Self, String> {
        super::install_crypto_provider();
        let mut builder = client_builder(timeout);
        if let Some(roots) = extra_roots {
            builder = builder.tls_certs_merge(roots.iter().cloned());
        }
        if let Some(id) = identity {
            builder = builder.identity(id);
        }
        builder
            .build()
            .map(|client| ReqwestEndpoint { client })
            .map_err(|e| root_cause(&e))
    }

    /// The endpoint for a credential: its `ca_file` read now; each request bounded by
    /// `timeout`.
    pub(crate) fn for_credential(
        def: &Credential,
        timeout: Duration,
    ) -> Result<Arc<dyn TokenEndpoint>, AuthError> {
        let roots = ca_roots(def)?;
        let ca_file = def.oauth2().and_then(|o| o.ca_file.as_ref());
        // Mutual TLS: the certificate read now (a reload reads it again).
        let identity = match def.oauth2().and_then(|o| o.tls_client()) {
            None => None,
            Some(t) => {
                let file_error = |which: Which, reason: String| AuthError::File {
                    credential: def.name.clone(),
                    key: which.key(),
                    path: match which {
                        Which::Cert => t.cert_file.clone(),
                        Which::Key => t.key_file.clone(),
                    },
                    reason,
                };
                let cert = ClientCert::load(t).map_err(|(w, r)| file_error(w, r))?;
                Some(cert.identity().map_err(|r| file_error(Which::Cert, r))?)
            }
        };
        let endpoint = ReqwestEndpoint::with_identity(roots.as_deref(), identity, timeout)
            .map_err(|reason| {
                match ca_file {
                    // Extra roots are the only input the builder can reject.
                    Some(path) => AuthError::CaFile {
                        credential: def.name.clone(),
                        path: path.clone(),
                        reason,
                    },
                    None => AuthError::Client {
                        credential: def.name.clone(),
                        reason,
                    },
                }
            })?;
        Ok(Arc::new(endpoint))
    }
}

/// The PEM certificates of a credential's `ca_file`, read now (`None` without one).
pub(crate) fn ca_roots(def: &Credential) -> Result<Option<Vec<reqwest::Certificate>>, AuthError> {
    let Some(path) = def.oauth2().and_then(|o| o.ca_file.as_ref()) else {
        return Ok(None);
    };
    ca_roots_at(path)
        .map(Some)
        .map_err(|reason| AuthError::CaFile {
            credential: def.name.clone(),
            path: path.clone(),
            reason,
        })
}

/// The PEM certificates of a `ca_file`. The error is the reason alone (no path).
pub(crate) fn ca_roots_at(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("not a PEM certificate bundle: {}", root_cause(&e)))?;
    if certs.is_empty() {
        return Err("contains no PEM certificate".into());
    }
    Ok(certs)
}

impl TokenEndpoint for ReqwestEndpoint {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        Box::pin(async move {
            let mut builder = self.client.post(request.url).body(request.body);
            for (name, value) in request.headers {
                builder = builder.header(name, value);
            }
            let mut resp = builder.send().await.map_err(|e| transport_error(&e))?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| sanitize(v, 40).to_string())
            };
            let retry_after = header("retry-after");
            let rate_limit = RateLimitHeaders {
                remaining: header("x-rate-limit-remaining"),
                reset: header("x-rate-limit-reset"),
            };
            let dpop_nonce = resp
                .headers()
                .get("dpop-nonce")
                .map(|v| v.as_bytes().to_vec());
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
                if body.len() + chunk.len() > MAX_RESPONSE_BODY {
                    return Err(TransportError::BodyTooLarge { status });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse {
                status,
                retry_after,
                rate_limit,
                dpop_nonce,
                body,
            })
        })
    }
}

/// A reqwest client builder as every request to an IdP uses it: bounded time, no redirects,
/// never `HTTP(S)_PROXY` (tollgate is the proxy), our user agent.
pub(crate) fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(USER_AGENT)
}

fn transport_error(e: &reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else {
        TransportError::Unreachable(root_cause(e))
    }
}

/// The innermost cause of an error, short: reqwest's own message carries the URL and
/// little else; the cause says what happened (`connection refused`,
/// `invalid peer certificate: UnknownIssuer`, a DNS failure).
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    loop {
        if let Some(io) = cur.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let known = match io.kind() {
                ConnectionRefused => Some("connection refused"),
                ConnectionReset => Some("connection reset"),
                ConnectionAborted => Some("connection aborted"),
                TimedOut => Some("timed out"),
                UnexpectedEof => Some("connection closed early"),
                _ => None,
            };
            if let Some(k) = known {
                return k.to_string();
            }
        }
        match cur.source() {
            Some(next) => cur = next,
            None => return sanitize(&cur.to_string(), 200).to_string(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::test_support::{client, credential, oauth};
    use std::collections::BTreeMap;
    use tollgate_rules::Secret;

    fn basic() -> Material {
        Material::Basic(
            Arc::new(Secret::new("s:e c%")),
            BasicEncoding::FormUrlencoded,
        )
    }

    /// The client credentials request of a test credential.
    pub(super) fn build(def: &Credential, material: &Material) -> HttpRequest {
        let mut def = def.clone();
        let id = client(&mut def).client_id.clone();
        let o = oauth(&mut def);
        let url = match &o.endpoint {
            tollgate_rules::Endpoint::TokenUrl(u) => u.clone(),
            _ => panic!("a token_url"),
        };
        build_request(
            &url,
            o,
            &GrantForm::ClientCredentials,
            Some((&id, material)),
        )
    }

    #[test]
    fn basic_request_exact() {
        let mut def = credential("billing");
        client(&mut def).client_id = "a:b c%".into();
        let o = oauth(&mut def);
        o.scopes = vec!["invoices:read".into(), "invoices:write".into()];
        o.audience = Some("https://billing.example.com".into());
        o.resource = Some("https://billing.example.com/api".into());
        o.params = BTreeMap::from([("tenant".into(), "eu west".into())]);
        let req = build(&def, &basic());
        assert_eq!(req.url.as_str(), "https://idp.example.com/oauth2/token");
        assert_eq!(
            req.body,
            "grant_type=client_credentials&scope=invoices%3Aread+invoices%3Awrite\
             &audience=https%3A%2F%2Fbilling.example.com\
             &resource=https%3A%2F%2Fbilling.example.com%2Fapi&tenant=eu+west"
        );
        // base64("a%3Ab+c%25:s%3Ae+c%25")
        assert_eq!(
            req.header("authorization"),
            Some("Basic YSUzQWIrYyUyNTpzJTNBZStjJTI1")
        );
        assert_eq!(
            STANDARD.decode("YSUzQWIrYyUyNTpzJTNBZStjJTI1").unwrap(),
            b"a%3Ab+c%25:s%3Ae+c%25"
        );
        assert_eq!(req.header("accept"), Some("application/json"));
        assert_eq!(
            req.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(req.headers.len(), 3);
    }

    #[test]
    fn post_request_exact() {
        let mut def = credential("billing");
        client(&mut def).client_id = "a:b c%".into();
        let req = build(&def, &Material::Post(Arc::new(Secret::new("s:e c%&x=y"))));
        assert_eq!(
            req.body,
            "grant_type=client_credentials&client_id=a%3Ab+c%25&client_secret=s%3Ae+c%25%26x%3Dy"
        );
        assert_eq!(req.header("authorization"), None);
        assert_eq!(
            req.form(),
            vec![
                ("grant_type".into(), "client_credentials".into()),
                ("client_id".into(), "a:b c%".into()),
                ("client_secret".into(), "s:e c%&x=y".into()),
            ]
        );
    }

    #[test]
    fn assertion_request_exact() {
        let def = credential("billing");
        let req = build(&def, &Material::Assertion(Secret::new("h.c.s")));
        assert_eq!(
            req.body,
            "grant_type=client_credentials&client_id=billing-client\
             &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_assertion=h.c.s"
        );
        assert_eq!(req.header("authorization"), None);
    }

    #[test]
    fn raw_basic_encoding_sends_id_and_secret_as_they_are() {
        // An Entra ID secret with `~`: form-urlencoding turns it into `%7E`, which some
        // servers do not decode.
        let secret = Material::Basic(Arc::new(Secret::new("a~b+c")), BasicEncoding::Raw);
        let mut def = credential("e");
        client(&mut def).client_id = "app id".into();
        let req = build(&def, &secret);
        let b64 = req
            .header("authorization")
            .unwrap()
            .strip_prefix("Basic ")
            .unwrap();
        assert_eq!(STANDARD.decode(b64).unwrap(), b"app id:a~b+c");
        let encoded = Material::Basic(
            Arc::new(Secret::new("a~b+c")),
            BasicEncoding::FormUrlencoded,
        );
        let req = build(&def, &encoded);
        let b64 = req
            .header("authorization")
            .unwrap()
            .strip_prefix("Basic ")
            .unwrap();
        assert_eq!(STANDARD.decode(b64).unwrap(), b"app+id:a%7Eb%2Bc");
    }

    #[test]
    fn jwt_bearer_request_exact() {
        let mut def = credential("g");
        oauth(&mut def).scopes = vec!["https://www.googleapis.com/auth/cloud-platform".into()];
        let o = def.oauth2().unwrap();
        let url = Url::parse("https://oauth2.googleapis.com/token").unwrap();
        let assertion = Secret::new("h.c.s");
        let req = build_request(
            &url,
            o,
            &GrantForm::JwtBearer {
                assertion: &assertion,
            },
            None,
        );
        assert_eq!(req.url, url);
        // The scopes are in the assertion, not the form.
        assert_eq!(
            req.body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=h.c.s"
        );
        assert_eq!(req.header("authorization"), None);
        assert_eq!(req.headers.len(), 2);
    }

    #[test]
    fn token_exchange_request_exact() {
        let mut def = credential("sts");
        let o = oauth(&mut def);
        o.audience = Some(
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"
                .into(),
        );
        o.scopes = vec!["https://www.googleapis.com/auth/cloud-platform".into()];
        let o = def.oauth2().unwrap();
        let url = Url::parse("https://sts.googleapis.com/v1/token").unwrap();
        let subject = Secret::new("eyJ.k8s.token");
        let grant = GrantForm::TokenExchange {
            subject_token: &subject,
            subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
            requested_token_type: Some(ACCESS_TOKEN_TYPE),
        };
        let req = build_request(&url, o, &grant, None);
        assert_eq!(
            req.form(),
            vec![
                ("grant_type".into(), TOKEN_EXCHANGE_GRANT.into()),
                ("subject_token".into(), "eyJ.k8s.token".into()),
                ("subject_token_type".into(), "urn:ietf:params:oauth:token-type:jwt".into()),
                ("requested_token_type".into(), ACCESS_TOKEN_TYPE.into()),
                ("scope".into(), "https://www.googleapis.com/auth/cloud-platform".into()),
                ("audience".into(), "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k".into()),
            ]
        );
        assert_eq!(req.header("authorization"), None);
        // With a client (Keycloak): its authentication comes last, as for client credentials.
        let grant = GrantForm::TokenExchange {
            subject_token: &subject,
            subject_token_type: "urn:ietf:params:oauth:token-type:access_token",
            requested_token_type: None,
        };
        let post = Material::Post(Arc::new(Secret::new("s")));
        let req = build_request(&url, o, &grant, Some(("kc-client", &post)));
        let form = req.form();
        assert_eq!(form.len(), 7, "{form:?}");
        assert_eq!(form[5], ("client_id".into(), "kc-client".into()));
        assert_eq!(form[6], ("client_secret".into(), "s".into()));
        assert!(!form.iter().any(|(k, _)| k == "requested_token_type"));
    }

    #[test]
    fn reserved_params_are_never_sent() {
        let mut def = credential("billing");
        oauth(&mut def).params = BTreeMap::from([
            ("grant_type".into(), "password".into()),
            ("client_id".into(), "evil".into()),
            ("subject_token".into(), "evil".into()),
            ("x".into(), "1".into()),
        ]);
        let req = build(&def, &basic());
        assert_eq!(req.body, "grant_type=client_credentials&x=1");
    }

    #[test]
    fn debug_redacts_request_and_response() {
        let req = build(&credential("b"), &basic());
        let s = format!("{req:?}");
        assert!(s.contains("[redacted]"), "{s}");
        assert!(!s.contains("YSUz") && !s.contains("Basic"), "{s}");
        let req = build(
            &credential("b"),
            &Material::Post(Arc::new(Secret::new("hunter2"))),
        );
        assert!(!format!("{req:?}").contains("hunter2"));
        let resp = ok(r#"{"access_token":"tok-123"}"#);
        assert!(!format!("{resp:?}").contains("tok-123"));
    }

    fn ok(body: &str) -> HttpResponse {
        answer(200, body)
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            retry_after: None,
            rate_limit: RateLimitHeaders::default(),
            dpop_nonce: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn parse(r: &HttpResponse) -> Result<TokenResponse, Failure> {
        parse_response(r, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn parses_success() {
        let t = parse(&ok(
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600,"scope":"a b"}"#,
        ))
        .unwrap();
        assert_eq!(t.access_token, "abc");
        assert_eq!(t.token_type, "Bearer");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(t.scope.as_deref(), Some("a b"));
        assert_eq!(t.claims, None);
    }

    #[test]
    fn expires_in_forms() {
        let e = |v: &str| {
            parse(&ok(&format!(r#"{{"access_token":"a","expires_in":{v}}}"#)))
                .map(|t| t.expires_in)
                .map_err(|f| match f {
                    Failure::InvalidResponse { reason, .. } => reason.to_string(),
                    other => panic!("{other:?}"),
                })
        };
        assert_eq!(e("3600"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(e("\"3600\""), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(e("\" 60 \""), Ok(Some(Duration::from_secs(60))));
        assert_eq!(e("59.9"), Ok(Some(Duration::from_secs(59))));
        assert_eq!(e("\"59.9\""), Ok(Some(Duration::from_secs(59))));
        assert_eq!(e("null"), Ok(None));
        assert_eq!(e("1e300"), Ok(Some(Duration::from_secs(u64::MAX))));
        assert_eq!(
            e("184467440737095516150000"),
            Ok(Some(Duration::from_secs(u64::MAX)))
        );
        // Not silently a default lifetime: the answer is unusable.
        let expired = Err("expires_in is 0: the token is already expired".to_string());
        assert_eq!(e("0"), expired);
        assert_eq!(e("\"0\""), expired);
        assert_eq!(e("0.5"), expired);
        assert_eq!(e("-5"), Err("expires_in is negative".into()));
        assert_eq!(e("\"-1\""), Err("expires_in is negative".into()));
        assert_eq!(e("\"soon\""), Err("expires_in is not a number".into()));
        assert_eq!(e("\"inf\""), Err("expires_in is not a number".into()));
        assert_eq!(e("true"), Err("expires_in is not a number".into()));
        assert_eq!(e("[60]"), Err("expires_in is not a number".into()));
        // Absent: the lifetime comes from elsewhere (JWT exp, default).
        assert_eq!(
            parse(&ok(r#"{"access_token":"a"}"#)).unwrap().expires_in,
            None
        );
    }

    #[test]
    fn token_type_is_kept_as_sent_and_judged_apart() {
        let t = parse(&ok(r#"{"access_token":"a","token_type":"mac"}"#)).unwrap();
        assert_eq!(t.token_type, "mac");
        let t = parse(&ok(r#"{"access_token":"a"}"#)).unwrap();
        assert_eq!(t.token_type, "");
        for fine in ["Bearer", "bearer", "BEARER", ""] {
            assert_eq!(check_token_type(fine, TokenType::Bearer), Ok(()), "{fine}");
        }
        for other in ["mac", "DPoP", "N_A", "Bearer2", "Basic"] {
            assert_eq!(
                check_token_type(other, TokenType::Bearer),
                Err(Failure::UnsupportedTokenType {
                    sent: Arc::from(other),
                    expected: "Bearer"
                }),
                "{other}"
            );
        }
        // A hostile type is tamed before it reaches a message.
        let Err(Failure::UnsupportedTokenType { sent, .. }) =
            check_token_type("x\r\nInjected: 1", TokenType::Bearer)
        else {
            panic!()
        };
        assert_eq!(&*sent, "x  Injected: 1");
    }

    #[test]
    fn rejects_unusable_success_bodies() {
        let reason = |body: &str| match parse(&ok(body)) {
            Err(Failure::InvalidResponse {
                status: 200,
                reason,
            }) => reason.to_string(),
            other => panic!("{body}: {:?}", other.map(|t| t.token_type)),
        };
        assert_eq!(reason("<html>"), "the body is not JSON");
        assert_eq!(reason("[1]"), "the body is not a JSON object");
        assert_eq!(reason("{}"), "it has no access_token");
        assert_eq!(
            reason(r#"{"access_token":5}"#),
            "access_token is not a string"
        );
        assert_eq!(reason(r#"{"access_token":""}"#), "access_token is empty");
        assert_eq!(
            reason(r#"{"access_token":"a\r\nX-Evil: 1"}"#),
            "access_token has characters not allowed in an HTTP header"
        );
        assert_eq!(
            reason(r#"{"access_token":"a b"}"#),
            "access_token has characters not allowed in an HTTP header"
        );
    }

    #[test]
    fn parses_errors() {
        let f = parse(&answer(
            401,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        ))
        .err()
        .unwrap();
        assert!(f.is_permanent());
        assert_eq!(
            f,
            Failure::Rejected {
                status: 401,
                error: Some(Arc::from("invalid_client")),
                description: Some(Arc::from("client authentication failed")),
                retry_after: None
            }
        );
        let f = parse(&answer(400, r#"{"error":"invalid_scope"}"#))
            .err()
            .unwrap();
        assert!(!f.is_permanent());
        // 200 with an error object.
        let f = parse(&ok(r#"{"error":"unauthorized_client"}"#))
            .err()
            .unwrap();
        assert!(f.is_permanent());
        // HTML error page: status only.
        let f = parse(&answer(502, "<html>bad gateway</html>"))
            .err()
            .unwrap();
        assert_eq!(
            f,
            Failure::Rejected {
                status: 502,
                error: None,
                description: None,
                retry_after: None
            }
        );
        // Hostile description: control characters and length are tamed.
        let long = "x".repeat(5000);
        let f = parse(&answer(
            400,
            &format!(r#"{{"error":"bad\u0000thing","error_description":"{long}"}}"#),
        ))
        .err()
        .unwrap();
        let Failure::Rejected {
            error, description, ..
        } = f
        else {
            panic!()
        };
        assert_eq!(error.as_deref(), Some("bad thing"));
        assert_eq!(description.unwrap().chars().count(), 201);
    }

    #[test]
    fn retry_after_on_429_and_503_only() {
        let with = |status, ra: &str| HttpResponse {
            status,
            retry_after: Some(ra.into()),
            rate_limit: RateLimitHeaders::default(),
            dpop_nonce: None,
            body: vec![],
        };
        assert_eq!(
            parse(&with(429, "7")).err().unwrap().retry_after(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse(&with(503, "Thu, 01 Jan 1970 00:00:30 GMT"))
                .err()
                .unwrap()
                .retry_after(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse(&with(500, "7")).err().unwrap().retry_after(), None);
        assert_eq!(
            parse(&with(429, "later")).err().unwrap().retry_after(),
            None
        );
    }

    fn jwt_with(claims: &str) -> String {
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let c = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.as_bytes());
        format!("{h}.{c}.sig")
    }

    #[test]
    fn id_token_answers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let id = |claims: &str| format!(r#"{{"id_token":"{}"}}"#, jwt_with(claims));
        let t = parse_id_token(
            &ok(&id(r#"{"aud":"https://svc.run.app","exp":1700003600}"#)),
            now,
        )
        .unwrap();
        assert!(t.access_token.starts_with("eyJ"));
        assert_eq!(t.claims.unwrap()["aud"], "https://svc.run.app");
        let reason = |body: &str| match parse_id_token(&ok(body), now) {
            Err(Failure::InvalidResponse { reason, .. }) => reason.to_string(),
            other => panic!("{body}: {:?}", other.map(|t| t.token_type)),
        };
        assert_eq!(
            reason(&id(r#"{"aud":"x"}"#)),
            "the id_token has no exp claim"
        );
        assert_eq!(
            reason(&id(r#"{"aud":"x","exp":1699999999}"#)),
            "the id_token has already expired (its exp is past)"
        );
        assert_eq!(
            reason(r#"{"id_token":"opaque"}"#),
            "the id_token is not a JWT"
        );
        assert_eq!(reason(r#"{"access_token":"a"}"#), "it has no id_token");
        // Google's error bodies.
        let f = parse_id_token(
            &answer(
                400,
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
            ),
            now,
        )
        .err()
        .unwrap();
        assert_eq!(
            f,
            Failure::Rejected {
                status: 400,
                error: Some(Arc::from("invalid_grant")),
                description: Some(Arc::from("Invalid JWT Signature.")),
                retry_after: None
            }
        );
    }

    #[test]
    fn token_exchange_answers_are_checked() {
        let judge = |body: &str, requested: Option<&str>| {
            let r = parse(&ok(body)).unwrap();
            check_exchange(&r, requested, TokenType::Bearer).map_err(|f| match f {
                Failure::InvalidResponse { reason, .. } => reason.to_string(),
                Failure::UnsupportedTokenType { sent, .. } => format!("type {sent}"),
                other => panic!("{other:?}"),
            })
        };
        let at = ACCESS_TOKEN_TYPE;
        let good = format!(
            r#"{{"access_token":"ya29.x","issued_token_type":"{at}","token_type":"Bearer","expires_in":3599}}"#
        );
        assert_eq!(judge(&good, Some(at)), Ok(()));
        assert_eq!(judge(&good, None), Ok(()));
        assert_eq!(
            judge(r#"{"access_token":"a","token_type":"Bearer"}"#, Some(at)),
            Err("it has no issued_token_type (RFC 8693 §2.2.1)".into())
        );
        assert_eq!(
            judge(&good, Some("urn:ietf:params:oauth:token-type:jwt")),
            Err(format!(
                "issued_token_type is \"{at}\", not the requested \"urn:ietf:params:oauth:token-type:jwt\""
            ))
        );
        assert_eq!(
            judge(
                r#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token","token_type":"N_A"}"#,
                None
            ),
            Err("issued_token_type \"urn:ietf:params:oauth:token-type:refresh_token\" is not a token tollgate can send; set requested_token_type".into())
        );
        // A JWT that is not an access token: N_A is the right token_type (§2.2.1).
        assert_eq!(
            judge(
                r#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"N_A"}"#,
                None
            ),
            Ok(())
        );
        // An access token must be Bearer.
        assert_eq!(
            judge(
                &format!(r#"{{"access_token":"a","issued_token_type":"{at}","token_type":"N_A"}}"#),
                None
            ),
            Err("type N_A".into())
        );
    }

    #[test]
    fn jwt_access_tokens_expose_claims() {
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let c = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"billing-client","exp":1700000300}"#);
        let t = parse(&ok(&format!(r#"{{"access_token":"{h}.{c}.sig"}}"#))).unwrap();
        assert_eq!(t.claims.unwrap()["sub"], "billing-client");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod http_tests;
