//! Validated configuration types. Built only by [`crate::load()`]; never deserialized directly.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `listen:` addresses.
    pub listen: Listen,
    /// Worker threads; `None` means "number of CPUs" (the proxy decides).
    pub threads: Option<usize>,
    /// How long SIGTERM waits for in-flight requests before exiting; default 10 s.
    pub drain_timeout: Duration,
    /// `default_action:` for requests no route matches; default deny.
    pub default_action: DefaultAction,
    /// `allow_private_networks:` may upstreams resolve to loopback/private/link-local
    /// addresses? Default false.
    pub allow_private_networks: bool,
    /// `path_normalization:`; default normalize.
    pub path_normalization: PathNormalization,
    /// `timeouts:` with defaults filled in.
    pub timeouts: Timeouts,
    /// `replay_buffer:` largest request body kept for a 401 replay; default 64 KiB.
    pub replay_buffer: usize,
    /// Credentials by name (a `BTreeMap`, so iteration is in name order).
    pub credentials: BTreeMap<String, Credential>,
    /// Routes in file order (index = tie-breaker for matching).
    pub routes: Vec<Route>,
    /// `callers:` how workloads prove who they are; `None` when the file has no
    /// `callers:` section (then no route may list `callers`).
    pub callers: Option<Callers>,
    /// `interception:` the CA for `connect: intercept` routes; `None` when not configured
    /// (plain HTTP inside such tunnels still works; TLS inside them is closed).
    pub interception: Option<Interception>,
    /// `token_store:`; `None`: each replica keeps its own tokens.
    pub token_store: Option<TokenStore>,
}

/// `callers:`: the identities of the workloads that use the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Callers {
    /// `callers.jwt:` `Proxy-Authorization: Bearer <JWT>` (and Basic with user `token`).
    pub jwt: Option<JwtCallers>,
    /// `callers.basic:` `Proxy-Authorization: Basic` checked against an htpasswd file.
    pub basic: Option<BasicCallers>,
    /// `callers.required:` every request must authenticate (default false).
    pub required: bool,
}

/// `callers.jwt:`.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtCallers {
    /// `issuer:` the exact `iss` a token must carry.
    pub issuer: String,
    /// `audiences:` a token's `aud` must contain one of these. Never empty.
    pub audiences: Vec<String>,
    /// `jwks_file:` or `jwks_url:`.
    pub keys: JwksSource,
    /// `identity_claim:` the claim that names the caller; default `sub`.
    pub identity_claim: String,
}

/// Where the keys that sign caller tokens come from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// `jwks_file:` a JWK Set on disk, re-read when it changes.
    File(PathBuf),
    /// `jwks_url:` https (http only on a loopback host), fetched and refreshed.
    Url(url::Url),
}

/// `callers.basic:`.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicCallers {
    /// `htpasswd_file:` `user:bcrypt-hash` lines (`htpasswd -B`).
    pub htpasswd_file: PathBuf,
}

/// One entry of a route's `callers:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerPattern {
    /// A caller name, compared exactly.
    Exact(String),
    /// `prefix*`: any caller whose name starts with the prefix (`*` alone: any
    /// authenticated caller).
    Prefix(String),
}

impl CallerPattern {
    /// Does the caller named `caller` match?
    pub fn matches(&self, caller: &str) -> bool {
        match self {
            CallerPattern::Exact(name) => name == caller,
            CallerPattern::Prefix(prefix) => caller.starts_with(prefix.as_str()),
        }
    }
}

/// `interception:`: the CA that signs a leaf certificate for each intercepted CONNECT host.
/// The files are read by the proxy (and re-read when they change), not by validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Interception {
    /// PEM CA certificate (`ca_cert_file:`), optionally followed by the chain above it.
    pub ca_cert_file: PathBuf,
    /// PEM private key of that CA (`ca_key_file:`).
    pub ca_key_file: PathBuf,
    /// How long a leaf certificate is valid (`leaf_lifetime:`, default 24 h), capped by the
    /// CA's own expiry.
    pub leaf_lifetime: Duration,
    /// Where the file keys are, so problems with the files point at them.
    pub sites: InterceptionSites,
}

/// Positions of the `interception` keys that name files.
#[derive(Debug, Clone, PartialEq)]
pub struct InterceptionSites {
    /// The `interception.ca_cert_file` key.
    pub ca_cert_file: crate::load::Location,
    /// The `interception.ca_key_file` key.
    pub ca_key_file: crate::load::Location,
}

/// What a CONNECT to a route does (`connect:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Connect {
    /// Answer 200 and relay the bytes untouched. Pass routes only; their default.
    Tunnel,
    /// Answer 403 `connect_not_allowed`. The default for inject routes; deny routes always.
    Refuse,
    /// Answer 200 and serve the requests inside the tunnel like any other (plain HTTP, or
    /// TLS terminated with a leaf certificate from `interception`). Inject routes only.
    Intercept,
}

impl Connect {
    /// `"tunnel"`, `"refuse"` or `"intercept"`, as in the file.
    pub fn name(self) -> &'static str {
        match self {
            Connect::Tunnel => "tunnel",
            Connect::Refuse => "refuse",
            Connect::Intercept => "intercept",
        }
    }
}

/// `token_store:`: tokens shared by every replica through Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenStore {
    /// `token_store.redis:`.
    pub redis: RedisStore,
    /// `encryption_key_files:`, never empty, no duplicates: the first encrypts, all decrypt.
    /// Read (and re-read on reload) by the proxy.
    pub encryption_key_files: Vec<PathBuf>,
    /// How long a replica waits for the one asking the token endpoint, and how long
    /// that one's lock lives; default 5 s.
    pub lock_timeout: Duration,
}

/// `token_store.redis:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    /// `rediss://` (TLS) or `redis://`.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Explicit, or 6379.
    pub port: u16,
    /// The database number from the URL's path; default 0.
    pub db: u32,
    /// `username:` (Redis 6 ACL user); `None`: the default user.
    pub username: Option<String>,
    /// `password_file:`; read by the proxy. `None`: no `AUTH`.
    pub password_file: Option<PathBuf>,
    /// `key_prefix:`; default `tollgate:`.
    pub key_prefix: String,
    /// `timeout:` for one Redis operation (connecting included); default 500 ms.
    pub timeout: Duration,
}

impl RedisStore {
    /// `redis://host:port/db` (or `rediss://`), never with credentials: what logs show.
    pub fn display_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{host}:{}/{}", self.port, self.db)
    }
}

/// `listen:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// Forward-proxy and gateway listener; default 127.0.0.1:3128.
    pub proxy: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`; default 127.0.0.1:9901.
    pub admin: SocketAddr,
}

/// What happens to a request no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// Refuse it (403 `no_route`). The default.
    Deny,
    /// Forward it untouched, as a `pass` route would.
    Pass,
}

/// A secret string. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The one accessor. Call it only where the value is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a client secret comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    /// `client_secret:` (after `${VAR}` substitution).
    Inline(Secret),
    /// `client_secret_file:`; read (and re-read on change) by the proxy.
    File(PathBuf),
    /// `client_secret_files: [current, previous]`: one or two files, tried in order; the
    /// next is tried when the endpoint refuses the client with the one before.
    Files(Vec<PathBuf>),
}

impl SecretSource {
    /// The files the secret is read from (none for an inline secret).
    pub fn files(&self) -> &[PathBuf] {
        match self {
            SecretSource::Inline(_) => &[],
            SecretSource::File(p) => std::slice::from_ref(p),
            SecretSource::Files(ps) => ps,
        }
    }
}

/// `signing_alg:` for JWT client assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 (Entra ID's preferred algorithm).
    Ps256,
}

/// How `client_secret_basic` puts id and secret into the `Authorization` header
/// (`basic_encoding:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicEncoding {
    /// Each form-urlencoded first, as RFC 6749 §2.3.1 says (the default).
    FormUrlencoded,
    /// As they are, for servers that do not decode them (a `~` would become `%7E`).
    Raw,
}

/// Which certificate thumbprints a client assertion's header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thumbprints {
    /// `x5t#S256` (SHA-256 of the certificate).
    Sha256,
    /// `x5t#S256` and the SHA-1 `x5t` (`x5t: true`; older Entra ID tenants).
    Sha256AndSha1,
}

/// `certificate_file:` of a `private_key_jwt` credential.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateRef {
    /// PEM certificate of the signing key (its first certificate is used).
    pub file: PathBuf,
    /// The thumbprints to send.
    pub thumbprints: Thumbprints,
}

/// `auth_method: private_key_jwt` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateKeyJwt {
    /// PEM private key (`private_key_file:`).
    pub private_key_file: PathBuf,
    /// `None`: derive from the key type (ES256 for P-256, RS256 for RSA).
    pub signing_alg: Option<SigningAlg>,
    /// `kid` header of the assertion (`key_id:`).
    pub key_id: Option<String>,
    /// `certificate_file:`: adds certificate thumbprints to the header.
    pub certificate: Option<CertificateRef>,
    /// `assertion_audience:` the assertion's `aud`; `None`: the token endpoint URL.
    pub assertion_audience: Option<String>,
}

/// A client certificate and its key (`client_cert_file:`, `client_key_file:`): mutual TLS
/// to the token endpoint (RFC 8705) and, with `upstream_client_cert: credential`, to the
/// upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsClient {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
}

/// `dpop:` (RFC 9449): tokens bound to a key; every token request and every upstream
/// request carries a proof signed with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dpop {
    /// `key_file:` a P-256 private key (ES256).
    pub key_file: PathBuf,
}

/// How the client authenticates to the token endpoint (`auth_method:`).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthMethod {
    /// HTTP Basic with client id and secret (the default).
    ClientSecretBasic {
        /// Where the secret comes from.
        secret: SecretSource,
        /// How id and secret are encoded before base64.
        encoding: BasicEncoding,
    },
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost(SecretSource),
    /// A JWT client assertion signed by tollgate (RFC 7523).
    PrivateKeyJwt(PrivateKeyJwt),
    /// A JWT client assertion made by someone else, read from this file for every token
    /// request (`client_assertion_file:`; workload identity federation).
    ClientAssertionFile(PathBuf),
    /// Mutual TLS with a CA-issued certificate (RFC 8705 §2.1): `client_id` in the form.
    TlsClientAuth(TlsClient),
    /// Mutual TLS with a self-signed certificate registered with the client (RFC 8705
    /// §2.2).
    SelfSignedTlsClientAuth(TlsClient),
}

impl AuthMethod {
    /// The `auth_method` name, as in the file and in OAuth metadata
    /// (`token_endpoint_auth_methods_supported`); `client_assertion_file` is
    /// `private_key_jwt` on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic { .. } => "client_secret_basic",
            AuthMethod::ClientSecretPost(_) => "client_secret_post",
            AuthMethod::PrivateKeyJwt(_) => "private_key_jwt",
            AuthMethod::ClientAssertionFile(_) => "client_assertion_file",
            AuthMethod::TlsClientAuth(_) => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth(_) => "self_signed_tls_client_auth",
        }
    }

    /// The client certificate, for the mutual TLS methods.
    pub fn tls_client(&self) -> Option<&TlsClient> {
        match self {
            AuthMethod::TlsClientAuth(t) | AuthMethod::SelfSignedTlsClientAuth(t) => Some(t),
            _ => None,
        }
    }
}

/// A client registration: its id and how it authenticates.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// `client_id:`.
    pub client_id: String,
    /// `auth_method:` with what it needs.
    pub auth: AuthMethod,
}

/// Where the token endpoint is.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `token_url:`. Validated: https, or http on a loopback host.
    TokenUrl(url::Url),
    /// `issuer:`: the token endpoint comes from OIDC discovery
    /// (`ISSUER/.well-known/openid-configuration`). Validated like a token URL.
    Issuer(url::Url),
    /// `grant: jwt_bearer` without `token_url`: the service account file's `token_uri`.
    ServiceAccount,
}

/// `grant: jwt_bearer` (RFC 7523 §2.1) with a Google service account key.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtBearer {
    /// The service account's JSON key file (`client_email`, `private_key`,
    /// `private_key_id`, `token_uri`).
    pub service_account_file: PathBuf,
    /// `target_audience:`: ask for an ID token for this audience instead of an access
    /// token (Cloud Run, IAP).
    pub target_audience: Option<String>,
    /// `assertion_audience:`; `None`: the key file's `token_uri`.
    pub assertion_audience: Option<String>,
}

/// `grant: token_exchange` (RFC 8693).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenExchange {
    /// `subject_token_file:` re-read for every token request.
    pub subject_token_file: PathBuf,
    /// `subject_token_type:` (e.g. `urn:ietf:params:oauth:token-type:jwt`).
    pub subject_token_type: String,
    /// `requested_token_type:`; when set, the answer's `issued_token_type` must match.
    pub requested_token_type: Option<String>,
    /// The client's own authentication, when `client_id` is given (Keycloak); `None` for
    /// endpoints that authenticate by the subject token alone (Google STS).
    pub client: Option<Client>,
}

/// How tokens are obtained (`grant:`).
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// `client_credentials` (RFC 6749 §4.4), the default.
    ClientCredentials(Client),
    /// `jwt_bearer` (RFC 7523 §2.1).
    JwtBearer(JwtBearer),
    /// `token_exchange` (RFC 8693).
    TokenExchange(TokenExchange),
}

impl Grant {
    /// The `grant` name as in the file.
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials(_) => "client_credentials",
            Grant::JwtBearer(_) => "jwt_bearer",
            Grant::TokenExchange(_) => "token_exchange",
        }
    }

    /// The `grant_type` form value (as listed in `grant_types_supported`).
    pub fn grant_type(&self) -> &'static str {
        match self {
            Grant::ClientCredentials(_) => "client_credentials",
            Grant::JwtBearer(_) => "urn:ietf:params:oauth:grant-type:jwt-bearer",
            Grant::TokenExchange(_) => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    /// The client registration, when the grant authenticates one.
    pub fn client(&self) -> Option<&Client> {
        match self {
            Grant::ClientCredentials(c) => Some(c),
            Grant::TokenExchange(t) => t.client.as_ref(),
            Grant::JwtBearer(_) => None,
        }
    }
}

/// `kind: oauth2` (the default): tokens from a token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2 {
    /// `token_url:` or `issuer:`.
    pub endpoint: Endpoint,
    /// `grant:` with what it needs.
    pub grant: Grant,
    /// `scopes:`, sent space-separated as `scope` (omitted when empty).
    pub scopes: Vec<String>,
    /// `audience:` form field (Auth0, Okta, RFC 8693).
    pub audience: Option<String>,
    /// `resource:` form field (RFC 8707, Entra ID v1).
    pub resource: Option<String>,
    /// `params:` extra form fields (never one tollgate sets itself).
    pub params: BTreeMap<String, String>,
    /// `ca_file:` extra trust for the token endpoint (and discovery).
    pub ca_file: Option<PathBuf>,
    /// `dpop:` DPoP-bound tokens.
    pub dpop: Option<Dpop>,
}

impl OAuth2 {
    /// The client certificate of a mutual TLS `auth_method`.
    pub fn tls_client(&self) -> Option<&TlsClient> {
        self.grant.client().and_then(|c| c.auth.tls_client())
    }
}

/// What a credential is.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialKind {
    /// Tokens from a token endpoint.
    OAuth2(Box<OAuth2>),
    /// `kind: static`: a fixed value (an API key) read from `value_file`, re-read when it
    /// changes; never replayed after a 401.
    Static {
        /// `value_file:`.
        value_file: PathBuf,
    },
}

/// One entry of `credentials:`: how to get the value an inject route sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    /// Its key under `credentials:`; routes refer to it by this name.
    pub name: String,
    /// OAuth 2 tokens or a static value.
    pub kind: CredentialKind,
}

impl Credential {
    /// The OAuth 2 settings, unless this is a static credential.
    pub fn oauth2(&self) -> Option<&OAuth2> {
        match &self.kind {
            CredentialKind::OAuth2(o) => Some(o),
            CredentialKind::Static { .. } => None,
        }
    }

    /// `"oauth2"` or `"static"`, as in the file.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            CredentialKind::OAuth2(_) => "oauth2",
            CredentialKind::Static { .. } => "static",
        }
    }

    /// One line for operators (`tollgate route`): the grant, where tokens come from, the
    /// client and the scopes. Never a secret.
    pub fn describe(&self) -> String {
        let o = match &self.kind {
            CredentialKind::Static { value_file } => {
                return format!("static value from {}", value_file.display())
            }
            CredentialKind::OAuth2(o) => o,
        };
        let mut s = o.grant.name().to_owned();
        match &o.endpoint {
            Endpoint::TokenUrl(u) => s.push_str(&format!(" from {u}")),
            Endpoint::Issuer(u) => s.push_str(&format!(" from issuer {u} (discovery)")),
            Endpoint::ServiceAccount => s.push_str(" from the service account's token_uri"),
        }
        match &o.grant {
            Grant::JwtBearer(j) => {
                s.push_str(&format!(
                    " as service account {}",
                    j.service_account_file.display()
                ));
                if let Some(aud) = &j.target_audience {
                    s.push_str(&format!(", ID token for {aud:?}"));
                }
            }
            Grant::TokenExchange(t) => s.push_str(&format!(
                " for the subject token in {}",
                t.subject_token_file.display()
            )),
            Grant::ClientCredentials(_) => {}
        }
        if let Some(c) = o.grant.client() {
            s.push_str(&format!(" as client {:?} ({})", c.client_id, c.auth.name()));
        }
        if !o.scopes.is_empty() {
            s.push_str(&format!(", scope {:?}", o.scopes.join(" ")));
        }
        if o.dpop.is_some() {
            s.push_str(", DPoP-bound");
        }
        s
    }

    /// Every file the credential reads: secret, key, certificate, service account,
    /// subject token, assertion and value files, and the CA file (the paths of
    /// [`Config::files`]' entries for this credential, in the same order).
    pub fn files(&self) -> Vec<&std::path::Path> {
        crate::source::credential_files(self)
            .into_iter()
            .map(|f| f.path)
            .collect()
    }
}

/// An upstream's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// `upstream: https://host:port` (no path, query or userinfo allowed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// http or https.
    pub scheme: Scheme,
    /// Lower-cased host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Explicit, or the scheme's default.
    pub port: u16,
}

/// A host pattern from `match.hosts`: exact (`api.example.com`) or leading wildcard
/// (`*.example.com`, matches one or more labels before `.example.com`, never
/// `example.com` itself), each with an optional `:port`, `:*` for any port; without one
/// it matches only the default port of the request's scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// Exact or wildcard.
    pub kind: HostKind,
    /// Which ports.
    pub port: PortMatch,
}

/// The port part of a [`HostPattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// No port written: the default port of the request's scheme (80 for `http://`,
    /// 443 for `https://` and `CONNECT`; a `CONNECT host:80` is `http`).
    Default,
    /// `:*`: any port.
    Any,
    /// `:N`: that port only.
    Exact(u16),
}

impl PortMatch {
    /// Does a request to `port`, whose scheme's default port is `default_port`, match?
    pub fn admits(self, port: u16, default_port: u16) -> bool {
        match self {
            PortMatch::Default => port == default_port,
            PortMatch::Any => true,
            PortMatch::Exact(p) => p == port,
        }
    }
}

/// `timeouts:`, every value filled in (defaults in [`Timeouts::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Upstream TCP and TLS connect; 10 s.
    pub connect: Duration,
    /// Waiting for the upstream's response head, and for each read or write of a body
    /// once it flows (either side); 60 s.
    pub read: Duration,
    /// A client's keep-alive connection waiting for its next request; 60 s.
    pub idle: Duration,
    /// An idle upstream connection kept for reuse; 60 s.
    pub upstream_idle: Duration,
    /// The whole request head, from its first byte (nginx `client_header_timeout`); 10 s.
    pub request_head: Duration,
    /// A CONNECT tunnel with no traffic in either direction; 10 min.
    pub tunnel_idle: Duration,
    /// One token request, connection included; 10 s.
    pub token_request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            upstream_idle: Duration::from_secs(60),
            request_head: Duration::from_secs(10),
            tunnel_idle: Duration::from_secs(600),
            token_request: Duration::from_secs(10),
        }
    }
}

/// The default `replay_buffer`.
pub const DEFAULT_REPLAY_BUFFER: usize = 64 * 1024;
/// The largest `replay_buffer` accepted.
pub const MAX_REPLAY_BUFFER: usize = 8 * 1024 * 1024;

/// A route's `timeouts:`, over the top-level ones (upstream timeouts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTimeouts {
    /// Overrides [`Timeouts::connect`].
    pub connect: Option<Duration>,
    /// Overrides [`Timeouts::read`].
    pub read: Option<Duration>,
    /// Overrides [`Timeouts::upstream_idle`].
    pub upstream_idle: Option<Duration>,
    /// Overrides [`Timeouts::tunnel_idle`].
    pub tunnel_idle: Option<Duration>,
}

/// What `tollgate` does with request paths before matching and forwarding
/// (`path_normalization:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathNormalization {
    /// Decode percent-encoded unreserved characters, remove `.` and `..` segments and
    /// merge repeated slashes; match and forward the result. The default.
    #[default]
    Normalize,
    /// Refuse (400) any path that normalising would change.
    Reject,
}

/// The host part of a [`HostPattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// Lower-cased full host name or IP literal.
    Exact(String),
    /// Lower-cased suffix *including* the leading dot: `.example.com`.
    Wildcard(String),
}

/// `routes[].match:`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    /// Never empty.
    pub hosts: Vec<HostPattern>,
    /// Empty = all paths. Each starts with `/`.
    pub path_prefixes: Vec<String>,
    /// Empty = all methods. Upper-cased.
    pub methods: Vec<String>,
}

/// What a route does with the requests it matches (`action:`).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Forward with a token from a credential.
    Inject(Inject),
    /// Forward untouched (the only action that allows CONNECT tunnels).
    Pass,
    /// Refuse.
    Deny,
}

impl Action {
    /// `"inject"`, `"pass"` or `"deny"`, as in the file (and in metrics labels).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Inject(_) => "inject",
            Action::Pass => "pass",
            Action::Deny => "deny",
        }
    }
}

/// The settings of an `action: inject` route.
#[derive(Debug, Clone, PartialEq)]
pub struct Inject {
    /// Name of a credential that exists in [`Config::credentials`].
    pub credential: String,
    /// Header name, validated as an HTTP header name; default `Authorization`.
    pub header: String,
    /// default `"Bearer "`
    pub prefix: String,
    /// default true
    pub replay_on_401: bool,
    /// `upstream_client_cert: credential`: present the credential's client certificate
    /// to the upstream (certificate-bound tokens, RFC 8705 §3).
    pub upstream_client_cert: bool,
    /// The credential has `dpop:`: the header is `Authorization: DPoP <token>` and each
    /// request carries a fresh proof.
    pub dpop: bool,
}

/// One entry of `routes:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `name:`, unique; used in logs, metrics and errors.
    pub name: String,
    /// `match:`.
    pub matcher: RouteMatch,
    /// Empty = any client.
    pub clients: Vec<ipnet::IpNet>,
    /// `callers:`; empty = anyone (authenticated or not).
    pub callers: Vec<CallerPattern>,
    /// `action:` (with the inject settings).
    pub action: Action,
    /// `upstream:`; `None` means the requested scheme://host:port.
    pub upstream: Option<Upstream>,
    /// `upstream_ca_file:` extra trust for this route's upstream.
    pub upstream_ca_file: Option<PathBuf>,
    /// `timeouts:` of this route.
    pub timeouts: RouteTimeouts,
    /// `connect:` what a CONNECT to this route does (defaults by action).
    pub connect: Connect,
    /// Where `connect:` is written, when it is (problems found later, such as an
    /// interception CA that may not sign for the route's hosts, point at it).
    pub connect_at: Option<crate::load::Location>,
}

impl Route {
    /// The inject settings, for `action: inject` routes.
    pub fn inject(&self) -> Option<&Inject> {
        match &self.action {
            Action::Inject(i) => Some(i),
            _ => None,
        }
    }
}

impl Config {
    /// The credential an inject route uses (always present in a validated config).
    pub fn credential_for(&self, route: &Route) -> Option<&Credential> {
        self.credentials.get(&route.inject()?.credential)
    }

    /// The routes with `connect: intercept`, in file order.
    pub fn intercepting_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes
            .iter()
            .filter(|r| r.connect == Connect::Intercept)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Kept for callers that want to format durations the way the config spells them.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
