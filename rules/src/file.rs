//! serde structs mirroring the YAML file. Converted by `load`.
//!
//! Unknown keys are errors, but they do not stop parsing: `load` deserializes through
//! `serde_ignored`, which reports every key no struct here accepts, and turns each into a
//! problem at its position (in serde's words, with the keys [`fields`] lists), so they are
//! reported together with every other problem in the file. That is why these structs do
//! not say `deny_unknown_fields`: it would stop at the first unknown key. Deserializing
//! them other than through `load` ignores unknown keys.
//!
//! These types say only what the file *looks like*: they check key names and value
//! types, nothing else. Almost every value is a `String` (or `Option`) here even when the
//! model wants an address, URL, CIDR or path, because `${NAME}` substitution applies to
//! string values and every semantic check belongs to [`crate::load()`], which knows each
//! value's line and column and collects all problems instead of stopping at the first.
//! Keys the model requires are `Option` here for the same reason: a missing key is a
//! collected problem, not a serde error that hides the rest.
//!
//! The only values serde rejects on its own are enums (`action`, `auth_method`,
//! `signing_alg`, `default_action`, `kind`, `grant`, `basic_encoding`, `connect`,
//! `upstream_client_cert`), booleans
//! and integers.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct ConfigFile {
    /// `listen:` addresses.
    #[serde(default)]
    pub listen: Option<ListenFile>,
    /// `threads:` worker threads.
    #[serde(default)]
    pub threads: Option<u64>,
    /// `drain_timeout:` how long SIGTERM waits for in-flight requests (humantime).
    #[serde(default)]
    pub drain_timeout: Option<String>,
    /// `default_action:` for requests no route matches.
    #[serde(default)]
    pub default_action: Option<DefaultActionFile>,
    /// `allow_private_networks:`.
    #[serde(default)]
    pub allow_private_networks: Option<bool>,
    /// `timeouts:`.
    #[serde(default)]
    pub timeouts: Option<TimeoutsFile>,
    /// `replay_buffer:` size (`64KiB`).
    #[serde(default)]
    pub replay_buffer: Option<String>,
    /// `path_normalization:` normalize | reject.
    #[serde(default)]
    pub path_normalization: Option<PathNormalizationFile>,
    /// `credentials:` by name, in file order.
    #[serde(default)]
    pub credentials: Option<OrderedMap<CredentialFile>>,
    /// `routes:` in file order.
    #[serde(default)]
    pub routes: Option<Vec<RouteFile>>,
    /// `callers:`.
    #[serde(default)]
    pub callers: Option<CallersFile>,
    /// `interception:` the CA that signs leaf certificates for intercepted CONNECT tunnels.
    #[serde(default)]
    pub interception: Option<InterceptionFile>,
    /// `token_store:` tokens shared by a fleet of replicas.
    #[serde(default)]
    pub token_store: Option<TokenStoreFile>,
}

/// `callers:`.
#[derive(Debug, Default, Deserialize)]
pub struct CallersFile {
    /// `callers.jwt:`.
    #[serde(default)]
    pub jwt: Option<JwtCallersFile>,
    /// `callers.basic:`.
    #[serde(default)]
    pub basic: Option<BasicCallersFile>,
    /// `callers.required:`.
    #[serde(default)]
    pub required: Option<bool>,
}

/// `callers.jwt:`.
#[derive(Debug, Default, Deserialize)]
pub struct JwtCallersFile {
    /// `issuer:` (required).
    #[serde(default)]
    pub issuer: Option<String>,
    /// `audiences:` (required, non-empty).
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// `jwks_file:`.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// `jwks_url:`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// `identity_claim:`.
    #[serde(default)]
    pub identity_claim: Option<String>,
}

/// `callers.basic:`.
#[derive(Debug, Default, Deserialize)]
pub struct BasicCallersFile {
    /// `htpasswd_file:` (required).
    #[serde(default)]
    pub htpasswd_file: Option<String>,
}

/// `interception:`.
#[derive(Debug, Default, Deserialize)]
pub struct InterceptionFile {
    /// `interception.ca_cert_file:` (required) PEM CA certificate.
    #[serde(default)]
    pub ca_cert_file: Option<String>,
    /// `interception.ca_key_file:` (required) PEM private key of that CA.
    #[serde(default)]
    pub ca_key_file: Option<String>,
    /// `interception.leaf_lifetime:` (humantime) how long issued leaf certificates are valid.
    #[serde(default)]
    pub leaf_lifetime: Option<String>,
}

/// `token_store:`.
#[derive(Debug, Default, Deserialize)]
pub struct TokenStoreFile {
    /// `token_store.redis:` (required).
    #[serde(default)]
    pub redis: Option<RedisFile>,
    /// `token_store.encryption_key_files:` (required, non-empty): the first encrypts.
    #[serde(default)]
    pub encryption_key_files: Option<Vec<String>>,
    /// `token_store.lock_timeout:` (humantime).
    #[serde(default)]
    pub lock_timeout: Option<String>,
}

/// `token_store.redis:`.
#[derive(Debug, Default, Deserialize)]
pub struct RedisFile {
    /// `url:` `redis://HOST[:PORT][/DB]` or `rediss://...` (required).
    #[serde(default)]
    pub url: Option<String>,
    /// `username:` (Redis ACL user).
    #[serde(default)]
    pub username: Option<String>,
    /// `password_file:`.
    #[serde(default)]
    pub password_file: Option<String>,
    /// `key_prefix:`.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// `timeout:` per Redis operation (humantime).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `listen:`.
#[derive(Debug, Default, Deserialize)]
pub struct ListenFile {
    /// `listen.proxy:` `IP:PORT`.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `listen.admin:` `IP:PORT`.
    #[serde(default)]
    pub admin: Option<String>,
}

/// `timeouts:` at the top level (every key) or on a route (the upstream ones).
#[derive(Debug, Default, Deserialize)]
pub struct TimeoutsFile {
    /// Upstream TCP and TLS connect.
    #[serde(default)]
    pub connect: Option<String>,
    /// Upstream response head, and each read or write of a body once it flows.
    #[serde(default)]
    pub read: Option<String>,
    /// A client's keep-alive connection waiting for its next request (top level only).
    #[serde(default)]
    pub idle: Option<String>,
    /// An idle upstream connection kept for reuse.
    #[serde(default)]
    pub upstream_idle: Option<String>,
    /// The whole request head, from its first byte (top level only).
    #[serde(default)]
    pub request_head: Option<String>,
    /// A CONNECT tunnel with no traffic either way.
    #[serde(default)]
    pub tunnel_idle: Option<String>,
    /// One token request to a token endpoint (top level only).
    #[serde(default)]
    pub token_request: Option<String>,
}

/// `default_action:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultActionFile {
    /// `deny`
    Deny,
    /// `pass`
    Pass,
}

/// `path_normalization:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathNormalizationFile {
    /// `normalize` (the default)
    Normalize,
    /// `reject`
    Reject,
}

/// `auth_method:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodFile {
    /// `client_secret_basic` (the default)
    ClientSecretBasic,
    /// `client_secret_post`
    ClientSecretPost,
    /// `private_key_jwt`
    PrivateKeyJwt,
    /// `client_assertion_file`
    ClientAssertionFile,
    /// `tls_client_auth` (RFC 8705 §2.1: a CA-issued client certificate)
    TlsClientAuth,
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2: a certificate registered as a JWK)
    SelfSignedTlsClientAuth,
}

/// `credentials.*.dpop:` (RFC 9449).
#[derive(Debug, Default, Deserialize)]
pub struct DpopFile {
    /// `key_file:` a P-256 private key (ES256) that signs the proofs.
    #[serde(default)]
    pub key_file: Option<String>,
}

/// `routes[].upstream_client_cert:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamClientCertFile {
    /// `credential`: the route's credential's `client_cert_file`/`client_key_file`
    Credential,
}

/// `kind:` of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindFile {
    /// `oauth2` (the default)
    Oauth2,
    /// `static`
    Static,
}

/// `grant:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantFile {
    /// `client_credentials` (the default)
    ClientCredentials,
    /// `jwt_bearer`
    JwtBearer,
    /// `token_exchange`
    TokenExchange,
}

/// `basic_encoding:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BasicEncodingFile {
    /// `form_urlencoded` (the default)
    FormUrlencoded,
    /// `raw`
    Raw,
}

/// `signing_alg:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SigningAlgFile {
    /// `ES256`
    #[serde(rename = "ES256")]
    Es256,
    /// `RS256`
    #[serde(rename = "RS256")]
    Rs256,
    /// `PS256`
    #[serde(rename = "PS256")]
    Ps256,
}

/// One entry of `credentials:`.
#[derive(Default, Deserialize)]
pub struct CredentialFile {
    /// `kind:` `oauth2` (default) or `static`.
    #[serde(default)]
    pub kind: Option<KindFile>,
    /// `value_file:` (`kind: static`).
    #[serde(default)]
    pub value_file: Option<String>,
    /// `grant:`.
    #[serde(default)]
    pub grant: Option<GrantFile>,
    /// `token_url:` (this or `issuer` is required, except for `jwt_bearer`).
    #[serde(default)]
    pub token_url: Option<String>,
    /// `issuer:` (OIDC discovery).
    #[serde(default)]
    pub issuer: Option<String>,
    /// `client_id:` (required).
    #[serde(default)]
    pub client_id: Option<String>,
    /// `client_secret:` inline secret, usually `${VAR}`.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `client_secret_file:`.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// `client_secret_files:` current and previous.
    #[serde(default)]
    pub client_secret_files: Option<Vec<String>>,
    /// `auth_method:`.
    #[serde(default)]
    pub auth_method: Option<AuthMethodFile>,
    /// `basic_encoding:` (client_secret_basic).
    #[serde(default)]
    pub basic_encoding: Option<BasicEncodingFile>,
    /// `private_key_file:` (private_key_jwt).
    #[serde(default)]
    pub private_key_file: Option<String>,
    /// `signing_alg:` (private_key_jwt).
    #[serde(default)]
    pub signing_alg: Option<SigningAlgFile>,
    /// `key_id:` (private_key_jwt).
    #[serde(default)]
    pub key_id: Option<String>,
    /// `certificate_file:` (private_key_jwt).
    #[serde(default)]
    pub certificate_file: Option<String>,
    /// `x5t:` also send the SHA-1 thumbprint (private_key_jwt with certificate_file).
    #[serde(default)]
    pub x5t: Option<bool>,
    /// `assertion_audience:` (private_key_jwt, jwt_bearer).
    #[serde(default)]
    pub assertion_audience: Option<String>,
    /// `client_assertion_file:` (auth_method client_assertion_file).
    #[serde(default)]
    pub client_assertion_file: Option<String>,
    /// `client_cert_file:` (tls_client_auth, self_signed_tls_client_auth).
    #[serde(default)]
    pub client_cert_file: Option<String>,
    /// `client_key_file:` (tls_client_auth, self_signed_tls_client_auth).
    #[serde(default)]
    pub client_key_file: Option<String>,
    /// `dpop:` DPoP-bound tokens (RFC 9449).
    #[serde(default)]
    pub dpop: Option<DpopFile>,
    /// `service_account_file:` (jwt_bearer).
    #[serde(default)]
    pub service_account_file: Option<String>,
    /// `target_audience:` (jwt_bearer).
    #[serde(default)]
    pub target_audience: Option<String>,
    /// `subject_token_file:` (token_exchange).
    #[serde(default)]
    pub subject_token_file: Option<String>,
    /// `subject_token_type:` (token_exchange).
    #[serde(default)]
    pub subject_token_type: Option<String>,
    /// `requested_token_type:` (token_exchange).
    #[serde(default)]
    pub requested_token_type: Option<String>,
    /// `scopes:`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// `audience:`.
    #[serde(default)]
    pub audience: Option<String>,
    /// `resource:`.
    #[serde(default)]
    pub resource: Option<String>,
    /// `params:` extra form fields.
    #[serde(default)]
    pub params: Option<OrderedMap<String>>,
    /// `ca_file:`.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl fmt::Debug for CredentialFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand so that `client_secret` never shows.
        f.debug_struct("CredentialFile")
            .field("kind", &self.kind)
            .field("value_file", &self.value_file)
            .field("grant", &self.grant)
            .field("token_url", &self.token_url)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("client_secret_file", &self.client_secret_file)
            .field("client_secret_files", &self.client_secret_files)
            .field("auth_method", &self.auth_method)
            .field("basic_encoding", &self.basic_encoding)
            .field("private_key_file", &self.private_key_file)
            .field("signing_alg", &self.signing_alg)
            .field("key_id", &self.key_id)
            .field("certificate_file", &self.certificate_file)
            .field("x5t", &self.x5t)
            .field("assertion_audience", &self.assertion_audience)
            .field("client_assertion_file", &self.client_assertion_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("dpop", &self.dpop)
            .field("service_account_file", &self.service_account_file)
            .field("target_audience", &self.target_audience)
            .field("subject_token_file", &self.subject_token_file)
            .field("subject_token_type", &self.subject_token_type)
            .field("requested_token_type", &self.requested_token_type)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("params", &self.params)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// One entry of `routes:`.
#[derive(Debug, Default, Deserialize)]
pub struct RouteFile {
    /// `name:` (required, unique).
    #[serde(default)]
    pub name: Option<String>,
    /// `match:` (required).
    #[serde(default, rename = "match")]
    pub matcher: Option<MatchFile>,
    /// `clients:` source CIDRs.
    #[serde(default)]
    pub clients: Option<Vec<String>>,
    /// `callers:` caller names and `prefix*` patterns.
    #[serde(default)]
    pub callers: Option<Vec<String>>,
    /// `action:` (required).
    #[serde(default)]
    pub action: Option<ActionFile>,
    /// `credential:` (inject only).
    #[serde(default)]
    pub credential: Option<String>,
    /// `header:` (inject only).
    #[serde(default)]
    pub header: Option<String>,
    /// `prefix:` (inject only).
    #[serde(default)]
    pub prefix: Option<String>,
    /// `upstream:`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// `upstream_ca_file:`.
    #[serde(default)]
    pub upstream_ca_file: Option<String>,
    /// `upstream_client_cert:` (inject only).
    #[serde(default)]
    pub upstream_client_cert: Option<UpstreamClientCertFile>,
    /// `replay_on_401:` (inject only).
    #[serde(default)]
    pub replay_on_401: Option<bool>,
    /// `timeouts:` for this route's upstream (connect, read, upstream_idle, tunnel_idle).
    #[serde(default)]
    pub timeouts: Option<TimeoutsFile>,
    /// `connect:` what a CONNECT to this route does.
    #[serde(default)]
    pub connect: Option<ConnectFile>,
}

/// `routes[].connect:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectFile {
    /// `tunnel` (the default for pass routes)
    Tunnel,
    /// `refuse` (the default for inject routes)
    Refuse,
    /// `intercept` (inject routes only)
    Intercept,
}

/// `routes[].match:`.
#[derive(Debug, Default, Deserialize)]
pub struct MatchFile {
    /// `hosts:` (required, non-empty).
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// `path_prefixes:`.
    #[serde(default)]
    pub path_prefixes: Option<Vec<String>>,
    /// `methods:`.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

/// `routes[].action:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionFile {
    /// `inject`
    Inject,
    /// `pass`
    Pass,
    /// `deny`
    Deny,
}

/// A YAML mapping with string keys that keeps file order and keeps duplicate keys (so that
/// validation can report them with their positions instead of one silently winning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(OrderedMap::default())
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    entries.push((k, v));
                }
                Ok(OrderedMap(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// The keys a struct of this file accepts (serde's field list, as written in the file).
pub fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};
    type Error = serde::de::value::Error;

    /// Answers only `deserialize_struct`, recording its field list.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }

    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut out));
    out
}

/// Form fields tollgate sets itself; `params` may not override them.
pub const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "audience",
    "resource",
    "assertion",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "actor_token",
    "actor_token_type",
];
