//! Test helpers: a scripted fake [`TokenEndpoint`], credentials, temporary files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tollgate_rules::{
    AuthMethod, BasicEncoding, Client, Credential, CredentialKind, Endpoint, Grant, OAuth2, Secret,
    SecretSource,
};
use url::Url;

use super::client::{
    BoxFuture, HttpRequest, HttpResponse, RateLimitHeaders, TokenEndpoint, TransportError,
};
use super::TokenCache;

/// A credential `NAME` with client id `NAME-client`, secret `NAME-secret` (basic), at
/// `https://idp.example.com/oauth2/token`.
pub(crate) fn credential(name: &str) -> Credential {
    Credential {
        name: name.into(),
        kind: CredentialKind::OAuth2(Box::new(OAuth2 {
            endpoint: Endpoint::TokenUrl(
                Url::parse("https://idp.example.com/oauth2/token").unwrap(),
            ),
            grant: Grant::ClientCredentials(Client {
                client_id: format!("{name}-client"),
                auth: basic(SecretSource::Inline(Secret::new(format!("{name}-secret")))),
            }),
            scopes: vec![],
            audience: None,
            resource: None,
            params: BTreeMap::new(),
            ca_file: None,
            dpop: None,
        })),
    }
}

/// `client_secret_basic` with the default encoding.
pub(crate) fn basic(secret: SecretSource) -> AuthMethod {
    AuthMethod::ClientSecretBasic {
        secret,
        encoding: BasicEncoding::FormUrlencoded,
    }
}

/// The OAuth 2 settings of a test credential.
pub(crate) fn oauth(def: &mut Credential) -> &mut OAuth2 {
    match &mut def.kind {
        CredentialKind::OAuth2(o) => o,
        CredentialKind::Static { .. } => panic!("a static credential"),
    }
}

/// The client of a test credential (client_credentials or token_exchange).
pub(crate) fn client(def: &mut Credential) -> &mut Client {
    match &mut oauth(def).grant {
        Grant::ClientCredentials(c) => c,
        Grant::TokenExchange(t) => t.client.as_mut().expect("a client"),
        Grant::JwtBearer(_) => panic!("jwt_bearer has no client"),
    }
}

/// Sets a test credential's auth method.
pub(crate) fn set_auth(def: &mut Credential, auth: AuthMethod) {
    client(def).auth = auth;
}

/// A static credential reading `value_file`.
pub(crate) fn static_credential(name: &str, value_file: &Path) -> Credential {
    Credential {
        name: name.into(),
        kind: CredentialKind::Static {
            value_file: value_file.to_path_buf(),
        },
    }
}

pub(crate) fn credentials(defs: &[Credential]) -> BTreeMap<String, Credential> {
    defs.iter().map(|d| (d.name.clone(), d.clone())).collect()
}

/// What the fake endpoint answers.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// 200 with `access_token` `tok-N` (N = call number), Bearer, this `expires_in`.
    Token { expires_in: Option<u64> },
    /// This status and JSON body (and `Retry-After`).
    Status(u16, &'static str, Option<&'static str>),
    /// A transport failure.
    Fail(TransportError),
    /// Computed from the request and the call number: (status, body).
    With(Responder),
}

/// A function answering a request (for [`Reply::With`]).
#[derive(Clone)]
pub(crate) struct Responder(pub Arc<RespondFn>);

/// What a [`Responder`] runs: (request, call number) -> (status, body).
pub(crate) type RespondFn = dyn Fn(&HttpRequest, usize) -> (u16, String) + Send + Sync;

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl Reply {
    /// A reply computed by `f` from the request and the call number (1-based).
    pub(crate) fn with(
        f: impl Fn(&HttpRequest, usize) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        Reply::With(Responder(Arc::new(f)))
    }
}

impl Reply {
    pub(crate) fn token(expires_in: u64) -> Self {
        Reply::Token {
            expires_in: Some(expires_in),
        }
    }
}

/// Records every request; answers with the current default reply.
pub(crate) struct FakeEndpoint {
    calls: AtomicUsize,
    requests: Mutex<Vec<HttpRequest>>,
    default: Mutex<Reply>,
    delay: Mutex<Duration>,
    rate_limit: Mutex<RateLimitHeaders>,
}

impl FakeEndpoint {
    pub(crate) fn new(default: Reply) -> Arc<Self> {
        Arc::new(FakeEndpoint {
            calls: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            default: Mutex::new(default),
            delay: Mutex::new(Duration::ZERO),
            rate_limit: Mutex::default(),
        })
    }

    pub(crate) fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    /// Each answer takes this long (tokio time).
    pub(crate) fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Every answer carries these rate-limit headers.
    pub(crate) fn set_rate_limit(&self, remaining: Option<&str>, reset: Option<&str>) {
        *self.rate_limit.lock().unwrap() = RateLimitHeaders {
            remaining: remaining.map(str::to_owned),
            reset: reset.map(str::to_owned),
        };
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub(crate) fn last_request(&self) -> HttpRequest {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }
}

impl TokenEndpoint for FakeEndpoint {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.requests.lock().unwrap().push(request.clone());
            let reply = self.default.lock().unwrap().clone();
            let delay = *self.delay.lock().unwrap();
            let rate_limit = self.rate_limit.lock().unwrap().clone();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match reply {
                Reply::Token { expires_in } => {
                    let mut body = serde_json::json!({
                        "access_token": format!("tok-{n}"),
                        "token_type": "Bearer",
                    });
                    if let Some(e) = expires_in {
                        body["expires_in"] = e.into();
                    }
                    Ok(HttpResponse {
                        status: 200,
                        retry_after: None,
                        rate_limit,
                        dpop_nonce: None,
                        body: body.to_string().into_bytes(),
                    })
                }
                Reply::Status(status, body, retry_after) => Ok(HttpResponse {
                    status,
                    retry_after: retry_after.map(str::to_owned),
                    rate_limit,
                    dpop_nonce: None,
                    body: body.as_bytes().to_vec(),
                }),
                Reply::Fail(e) => Err(e),
                Reply::With(Responder(f)) => {
                    let (status, body) = f(&request, n);
                    Ok(HttpResponse {
                        status,
                        retry_after: None,
                        rate_limit,
                        dpop_nonce: None,
                        body: body.into_bytes(),
                    })
                }
            }
        })
    }
}

/// A cache over `defs` whose endpoints are all `fake`, with its own registry.
pub(crate) fn cache_with(
    fake: &Arc<FakeEndpoint>,
    defs: &[Credential],
) -> (Arc<TokenCache>, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let fake = Arc::clone(fake);
    let cache = TokenCache::with_endpoint_factory(
        &credentials(defs),
        &registry,
        Box::new(move |_| Ok(Arc::clone(&fake) as Arc<dyn TokenEndpoint>)),
    )
    .unwrap();
    (cache, registry)
}

/// The value of one series in a registry (0 when absent).
pub(crate) fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if matches {
                return match family.get_field_type() {
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                    prometheus::proto::MetricType::HISTOGRAM => {
                        m.get_histogram().get_sample_count() as f64
                    }
                    _ => 0.0,
                };
            }
        }
    }
    0.0
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "tollgate-auth-test-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file (in place) and returns its path.
    pub(crate) fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Replaces a file atomically (a new inode), as secret rotation does.
    pub(crate) fn replace(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let tmp = self.write(&format!(".{name}.new"), content);
        let path = self.0.join(name);
        std::fs::rename(tmp, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One replica of a fleet: a cache over `defs` whose endpoints are all `fake`, sharing
/// `redis` (an in-memory stand-in) with the other replicas, sealing with `keys` (base64
/// key texts, the first seals). Lock timeout 5 s, operation timeout 500 ms, prefix `tg:`.
pub(crate) fn replica(
    fake: &Arc<FakeEndpoint>,
    defs: &[Credential],
    redis: &Arc<super::store::memory::MemoryRedis>,
    keys: &[&str],
) -> Replica {
    let registry = prometheus::Registry::new();
    let dir = TempDir::new();
    let files: Vec<PathBuf> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| dir.write(&format!("key{i}"), k))
        .collect();
    let keyring = super::store::Keyring::load(&files).unwrap();
    let backend = redis.connect();
    let fleet = super::store::Fleet::with_backend(
        Arc::clone(&backend) as Arc<dyn super::store::Backend>,
        keyring,
        "tg:",
        Duration::from_secs(5),
        Duration::from_millis(500),
        &registry,
    )
    .unwrap();
    let fake = Arc::clone(fake);
    let cache = TokenCache::with_parts(
        &credentials(defs),
        &registry,
        Box::new(move |_| Ok(Arc::clone(&fake) as Arc<dyn TokenEndpoint>)),
        Some(fleet),
    )
    .unwrap();
    Replica {
        cache,
        registry,
        backend,
        dir,
    }
}

/// See [`replica`].
pub(crate) struct Replica {
    pub cache: Arc<TokenCache>,
    pub registry: prometheus::Registry,
    pub backend: Arc<super::store::memory::MemoryBackend>,
    /// Holds the key files (for reload tests).
    pub dir: TempDir,
}

/// Two 32-byte keys, base64.
pub(crate) const KEY_A: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
pub(crate) const KEY_B: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
