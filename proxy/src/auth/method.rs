//! How one credential gets its value: [`CredAuth`] holds the live material of its grant
//! and client authentication (watched secret, key, certificate and service account
//! files; the discovered token endpoint) and [`CredAuth::prepare`] makes one token
//! request from it. A static credential's value file is held here too.
//!
//! Set up by [`CredAuth::new`] when the credential is created: every watched file is read
//! (a missing or bad file is an [`AuthError`] naming it), a certificate is checked to
//! certify the private key, and an `issuer` is discovered. Files whose content someone
//! else renews (`client_assertion_file`, `subject_token_file`) are read afresh for every
//! token request instead.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use tollgate_rules::{
    AuthMethod, BasicEncoding, Client, Credential, CredentialKind, Endpoint, Grant, OAuth2, Secret,
    Thumbprints,
};
use url::Url;

use super::client::{build_request, ca_roots, GrantForm, HttpRequest, Material};
use super::discovery;
use super::dpop::DpopKey;
use super::error::AuthError;
use super::jwt::{self, Ask, Certificate, HeaderExtras, SigningKey};
use super::secret::{parse_header_value, read_now, ClientSecret, WatchedFile};
use super::service_account::ServiceAccount;

/// What answer a token request expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// An access token (RFC 6749 §5.1).
    AccessToken,
    /// Google's `{"id_token": ...}`.
    IdToken,
    /// RFC 8693 §2.2.1, with the requested token type.
    Exchange { requested: Option<String> },
}

/// One token request, ready to send.
pub(crate) struct Prepared {
    pub request: HttpRequest,
    /// Version of the files it was made from (a change ends a failure memo).
    pub version: u64,
    /// What it authenticated with, for `tollgate token` and logs. Never a secret.
    pub used: String,
    pub expect: Expect,
    /// The key of a DPoP-bound credential: each send adds a fresh proof, and the token
    /// is bound to it.
    pub dpop: Option<Arc<DpopKey>>,
}

/// The live material of one credential.
pub(crate) enum CredAuth {
    Static(WatchedFile<Secret>),
    OAuth2(Box<OAuthAuth>),
}

pub(crate) struct OAuthAuth {
    endpoint: EndpointState,
    grant: GrantState,
    client: Option<ClientState>,
    /// `dpop.key_file`.
    dpop: Option<WatchedFile<DpopKey>>,
}

enum EndpointState {
    Fixed(Url),
    /// From discovery; replaced when a reload discovers another one.
    Discovered {
        issuer: Url,
        url: RwLock<Url>,
    },
    /// The service account's `token_uri`.
    ServiceAccount,
}

enum GrantState {
    ClientCredentials,
    JwtBearer {
        account: WatchedFile<ServiceAccount>,
        target_audience: Option<String>,
        assertion_audience: Option<String>,
    },
    TokenExchange {
        subject_token_file: PathBuf,
        subject_token_type: String,
        requested_token_type: Option<String>,
    },
}

struct ClientState {
    client_id: String,
    auth: ClientAuthState,
}

enum ClientAuthState {
    Basic(ClientSecret, BasicEncoding),
    Post(ClientSecret),
    Jwt(Box<JwtState>),
    AssertionFile(PathBuf),
    /// Mutual TLS: the endpoint's client presents the certificate; the form has
    /// `client_id`.
    Tls(&'static str),
}

struct JwtState {
    key: WatchedFile<SigningKey>,
    key_file: PathBuf,
    key_id: Option<String>,
    certificate: Option<(WatchedFile<Certificate>, PathBuf, Thumbprints)>,
    assertion_audience: Option<String>,
}

fn file_error(credential: &str, key: &'static str, path: &Path) -> impl Fn(String) -> AuthError {
    let credential = credential.to_owned();
    let path = path.to_path_buf();
    move |reason| AuthError::File {
        credential: credential.clone(),
        key,
        path: path.clone(),
        reason,
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CredAuth {
    /// Reads the credential's files and discovers its issuer (a blocking call).
    pub(crate) fn new(def: &Credential) -> Result<Self, AuthError> {
        let o = match &def.kind {
            CredentialKind::Static { value_file } => {
                return WatchedFile::open("value_file", value_file, Box::new(parse_header_value))
                    .map(CredAuth::Static)
                    .map_err(file_error(&def.name, "value_file", value_file));
            }
            CredentialKind::OAuth2(o) => o,
        };
        let grant = match &o.grant {
            Grant::ClientCredentials(_) => GrantState::ClientCredentials,
            Grant::JwtBearer(j) => GrantState::JwtBearer {
                account: WatchedFile::open(
                    "service_account_file",
                    &j.service_account_file,
                    Box::new(ServiceAccount::parse),
                )
                .map_err(file_error(
                    &def.name,
                    "service_account_file",
                    &j.service_account_file,
                ))?,
                target_audience: j.target_audience.clone(),
                assertion_audience: j.assertion_audience.clone(),
            },
            Grant::TokenExchange(t) => GrantState::TokenExchange {
                subject_token_file: t.subject_token_file.clone(),
                subject_token_type: t.subject_token_type.clone(),
                requested_token_type: t.requested_token_type.clone(),
            },
        };
        let client = o
            .grant
            .client()
            .map(|c| ClientState::new(&def.name, c))
            .transpose()?;
        let endpoint = match &o.endpoint {
            Endpoint::TokenUrl(u) => EndpointState::Fixed(u.clone()),
            Endpoint::ServiceAccount => EndpointState::ServiceAccount,
            Endpoint::Issuer(issuer) => {
                let alg = client.as_ref().and_then(ClientState::alg);
                let found = discover(def, o, issuer, alg)?;
                EndpointState::Discovered {
                    issuer: issuer.clone(),
                    url: RwLock::new(found),
                }
            }
        };
        let dpop = match &o.dpop {
            None => None,
            Some(d) => Some(
                WatchedFile::open("dpop.key_file", &d.key_file, Box::new(DpopKey::from_pem))
                    .map_err(|reason| AuthError::File {
                        credential: def.name.clone(),
                        key: "dpop.key_file",
                        path: d.key_file.clone(),
                        reason,
                    })?,
            ),
        };
        Ok(CredAuth::OAuth2(Box::new(OAuthAuth {
            endpoint,
            grant,
            client,
            dpop,
        })))
    }

    /// For a reload that keeps this credential: discovers its issuer again. `Ok(true)`
    /// when the token endpoint is what it was (or the credential has no issuer),
    /// `Ok(false)` when it moved (the caller sets the credential up afresh).
    pub(crate) fn rediscover(&self, def: &Credential) -> Result<bool, AuthError> {
        let (CredAuth::OAuth2(a), Some(o)) = (self, def.oauth2()) else {
            return Ok(true);
        };
        let EndpointState::Discovered { issuer, url } = &a.endpoint else {
            return Ok(true);
        };
        let found = discover(def, o, issuer, a.client.as_ref().and_then(ClientState::alg))?;
        let same = *url.read().unwrap_or_else(PoisonError::into_inner) == found;
        Ok(same)
    }

    /// The DPoP key a token fetched now would be bound to (for a token another replica
    /// fetched, read from the token store).
    pub(crate) fn dpop_key(&self) -> Option<Arc<DpopKey>> {
        match self {
            CredAuth::OAuth2(a) => a
                .dpop
                .as_ref()
                .and_then(|f| f.current().ok())
                .map(|(k, _)| k),
            CredAuth::Static(_) => None,
        }
    }

    /// The static credential's value and its version, stat'ing the file.
    pub(crate) fn static_value(&self) -> Option<Result<(Arc<Secret>, u64), String>> {
        match self {
            CredAuth::Static(f) => Some(f.current()),
            CredAuth::OAuth2(_) => None,
        }
    }

    /// How many token requests one attempt may make: one per client secret (the next is
    /// tried when the endpoint refuses the one before).
    pub(crate) fn secrets(&self) -> usize {
        match self {
            CredAuth::OAuth2(a) => match a.client.as_ref().map(|c| &c.auth) {
                Some(ClientAuthState::Basic(s, _) | ClientAuthState::Post(s)) => s.count(),
                _ => 1,
            },
            CredAuth::Static(_) => 1,
        }
    }

    /// Version of the watched files; changes when one was rotated. Stats at most once per
    /// second; inline secrets are always version 0.
    pub(crate) fn version(&self) -> u64 {
        match self {
            CredAuth::Static(f) => f.version(),
            CredAuth::OAuth2(a) => {
                let grant = match &a.grant {
                    GrantState::JwtBearer { account, .. } => account.version(),
                    _ => 0,
                };
                let client = match a.client.as_ref().map(|c| &c.auth) {
                    Some(ClientAuthState::Basic(s, _) | ClientAuthState::Post(s)) => s.version(),
                    Some(ClientAuthState::Jwt(j)) => j
                        .key
                        .version()
                        .wrapping_add(j.certificate.as_ref().map_or(0, |(c, _, _)| c.version())),
                    Some(ClientAuthState::AssertionFile(_) | ClientAuthState::Tls(_)) | None => 0,
                };
                let dpop = a.dpop.as_ref().map_or(0, WatchedFile::version);
                grant.wrapping_add(client).wrapping_add(dpop)
            }
        }
    }

    /// The token request with the `secret`-th client secret: reads what changed, signs
    /// fresh assertions. The error (our side: a file) names the file.
    pub(crate) fn prepare(&self, def: &Credential, secret: usize) -> Result<Prepared, String> {
        let (CredAuth::OAuth2(a), Some(o)) = (self, def.oauth2()) else {
            return Err("a static credential makes no token requests".into());
        };
        let mut prepared = a.prepare(o, secret)?;
        // After the files were read for this request, so a change it saw counts.
        prepared.version = self.version();
        Ok(prepared)
    }
}

fn discover(
    def: &Credential,
    o: &OAuth2,
    issuer: &Url,
    alg: Option<&'static str>,
) -> Result<Url, AuthError> {
    let roots = ca_roots(def)?;
    discovery::discover(issuer, o, alg, roots.as_deref())
        .map(|d| d.token_endpoint)
        .map_err(|reason| AuthError::Discovery {
            credential: def.name.clone(),
            reason,
        })
}

impl ClientState {
    fn new(credential: &str, c: &Client) -> Result<Self, AuthError> {
        let auth = match &c.auth {
            AuthMethod::ClientSecretBasic { secret, encoding } => {
                ClientAuthState::Basic(ClientSecret::new(credential, secret)?, *encoding)
            }
            AuthMethod::ClientSecretPost(secret) => {
                ClientAuthState::Post(ClientSecret::new(credential, secret)?)
            }
            AuthMethod::ClientAssertionFile(path) => ClientAuthState::AssertionFile(path.clone()),
            AuthMethod::TlsClientAuth(_) | AuthMethod::SelfSignedTlsClientAuth(_) => {
                ClientAuthState::Tls(c.auth.name())
            }
            AuthMethod::PrivateKeyJwt(k) => {
                let alg = k.signing_alg;
                let key = WatchedFile::open(
                    "private_key_file",
                    &k.private_key_file,
                    Box::new(move |bytes: &[u8]| SigningKey::from_pem(bytes, alg)),
                )
                .map_err(|reason| AuthError::KeyFile {
                    credential: credential.to_string(),
                    path: k.private_key_file.clone(),
                    reason,
                })?;
                let certificate = match &k.certificate {
                    None => None,
                    Some(cert) => {
                        let watched = WatchedFile::open(
                            "certificate_file",
                            &cert.file,
                            Box::new(Certificate::from_pem),
                        )
                        .map_err(file_error(
                            credential,
                            "certificate_file",
                            &cert.file,
                        ))?;
                        let (c, _) = watched.current().map_err(|reason| AuthError::File {
                            credential: credential.to_string(),
                            key: "certificate_file",
                            path: cert.file.clone(),
                            reason,
                        })?;
                        let (signing, _) = key.current().map_err(|reason| AuthError::KeyFile {
                            credential: credential.to_string(),
                            path: k.private_key_file.clone(),
                            reason,
                        })?;
                        if !c.certifies(&signing) {
                            return Err(AuthError::File {
                                credential: credential.to_string(),
                                key: "certificate_file",
                                path: cert.file.clone(),
                                reason: format!(
                                    "is not a certificate of the key in private_key_file {}",
                                    k.private_key_file.display()
                                ),
                            });
                        }
                        Some((watched, cert.file.clone(), cert.thumbprints))
                    }
                };
                ClientAuthState::Jwt(Box::new(JwtState {
                    key,
                    key_file: k.private_key_file.clone(),
                    key_id: k.key_id.clone(),
                    certificate,
                    assertion_audience: k.assertion_audience.clone(),
                }))
            }
        };
        Ok(ClientState {
            client_id: c.client_id.clone(),
            auth,
        })
    }

    /// The JWS algorithm of a signed client assertion (for discovery's check).
    fn alg(&self) -> Option<&'static str> {
        match &self.auth {
            ClientAuthState::Jwt(j) => j.key.current().ok().map(|(k, _)| k.alg()),
            _ => None,
        }
    }

    /// The material for one request to `url`, and what it is.
    fn material(&self, url: &Url, secret: usize) -> Result<(Material, String), String> {
        Ok(match &self.auth {
            ClientAuthState::Basic(s, encoding) => {
                let (value, _) = s.current(secret)?;
                let raw = match encoding {
                    BasicEncoding::Raw => ", basic_encoding raw",
                    BasicEncoding::FormUrlencoded => "",
                };
                (
                    Material::Basic(value, *encoding),
                    format!("client_secret_basic with {}{raw}", s.describe(secret)),
                )
            }
            ClientAuthState::Post(s) => {
                let (value, _) = s.current(secret)?;
                (
                    Material::Post(value),
                    format!("client_secret_post with {}", s.describe(secret)),
                )
            }
            ClientAuthState::AssertionFile(path) => (
                Material::Assertion(read_now("client_assertion_file", path)?),
                format!("client_assertion_file {}", path.display()),
            ),
            ClientAuthState::Tls(method) => (
                Material::ClientId,
                format!("{method} with client_cert_file"),
            ),
            ClientAuthState::Jwt(j) => {
                let (key, _) = j.key.current()?;
                let cert = match &j.certificate {
                    None => None,
                    Some((watched, path, thumbprints)) => {
                        let (c, _) = watched.current()?;
                        if !c.certifies(&key) {
                            return Err(format!(
                                "certificate_file {} is not a certificate of the key in \
                                 private_key_file {}",
                                path.display(),
                                j.key_file.display()
                            ));
                        }
                        Some((c, *thumbprints))
                    }
                };
                let audience = j.assertion_audience.as_deref().unwrap_or(url.as_str());
                let extras = HeaderExtras {
                    kid: j.key_id.as_deref(),
                    x5t_s256: cert.as_ref().map(|(c, _)| c.x5t_s256.as_str()),
                    x5t: cert.as_ref().and_then(|(c, t)| {
                        (*t == Thumbprints::Sha256AndSha1).then_some(c.x5t.as_str())
                    }),
                };
                let assertion = jwt::client_assertion(
                    &key,
                    &self.client_id,
                    audience,
                    &extras,
                    now_unix(),
                    &jwt::new_jti()?,
                )?;
                let mut used = format!(
                    "private_key_jwt, {} with private_key_file {}",
                    key.alg(),
                    j.key_file.display()
                );
                if let Some(kid) = &j.key_id {
                    used.push_str(&format!(", kid {kid:?}"));
                }
                if let Some((_, t)) = &cert {
                    used.push_str(match t {
                        Thumbprints::Sha256 => ", x5t#S256",
                        Thumbprints::Sha256AndSha1 => ", x5t#S256 and x5t",
                    });
                }
                if audience != url.as_str() {
                    used.push_str(&format!(", aud {audience:?}"));
                }
                (Material::Assertion(Secret::new(assertion)), used)
            }
        })
    }
}

impl OAuthAuth {
    fn prepare(&self, o: &OAuth2, secret: usize) -> Result<Prepared, String> {
        // The service account, when the grant has one: its token_uri may be the URL.
        let account = match &self.grant {
            GrantState::JwtBearer { account, .. } => Some(account.current()?.0),
            _ => None,
        };
        let url = match &self.endpoint {
            EndpointState::Fixed(u) => u.clone(),
            EndpointState::Discovered { url, .. } => {
                url.read().unwrap_or_else(PoisonError::into_inner).clone()
            }
            EndpointState::ServiceAccount => match &account {
                Some(sa) => sa.token_uri.clone(),
                None => return Err("no service account for its token_uri".into()),
            },
        };
        let mut used = Vec::new();
        let (grant_secret, expect) = match (&self.grant, &account) {
            (GrantState::ClientCredentials, _) => (None, Expect::AccessToken),
            (
                GrantState::JwtBearer {
                    target_audience,
                    assertion_audience,
                    ..
                },
                Some(sa),
            ) => {
                let scope = o.scopes.join(" ");
                let ask = match target_audience {
                    Some(aud) => Ask::IdToken(aud),
                    None => Ask::Scope(&scope),
                };
                let aud = assertion_audience
                    .as_deref()
                    .unwrap_or(sa.token_uri.as_str());
                let assertion = jwt::service_account_assertion(
                    &sa.key,
                    &sa.client_email,
                    sa.private_key_id.as_deref(),
                    aud,
                    ask,
                    now_unix(),
                )?;
                used.push(format!("jwt_bearer as service account {}", sa.client_email));
                if let Some(aud) = target_audience {
                    used.push(format!("ID token for {aud:?}"));
                }
                let expect = match target_audience {
                    Some(_) => Expect::IdToken,
                    None => Expect::AccessToken,
                };
                (Some(Secret::new(assertion)), expect)
            }
            (GrantState::JwtBearer { .. }, None) => return Err("no service account".into()),
            (
                GrantState::TokenExchange {
                    subject_token_file,
                    requested_token_type,
                    ..
                },
                _,
            ) => {
                used.push(format!(
                    "token_exchange of subject_token_file {}",
                    subject_token_file.display()
                ));
                (
                    Some(read_now("subject_token_file", subject_token_file)?),
                    Expect::Exchange {
                        requested: requested_token_type.clone(),
                    },
                )
            }
        };
        let grant = match (&self.grant, &grant_secret) {
            (GrantState::JwtBearer { .. }, Some(assertion)) => GrantForm::JwtBearer { assertion },
            (
                GrantState::TokenExchange {
                    subject_token_type,
                    requested_token_type,
                    ..
                },
                Some(subject_token),
            ) => GrantForm::TokenExchange {
                subject_token,
                subject_token_type,
                requested_token_type: requested_token_type.as_deref(),
            },
            _ => GrantForm::ClientCredentials,
        };
        let client = match &self.client {
            Some(c) => {
                let (material, what) = c.material(&url, secret)?;
                used.push(what);
                Some((c.client_id.as_str(), material))
            }
            None => None,
        };
        let request = build_request(&url, o, &grant, client.as_ref().map(|(id, m)| (*id, m)));
        let dpop = match &self.dpop {
            Some(f) => {
                let (key, _) = f.current()?;
                used.push(format!("DPoP key {}", key.jkt()));
                Some(key)
            }
            None => None,
        };
        Ok(Prepared {
            request,
            version: 0,
            used: used.join("; "),
            expect,
            dpop,
        })
    }
}
