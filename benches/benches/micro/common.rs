//! Shared by the micro benches: route tables of any size, a warm token
//! cache behind a fake token endpoint, and a helper that polls a future that must not wait.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tollgate::auth::{
    BoxFuture, HttpRequest, HttpResponse, TokenCache, TokenEndpoint, TransportError,
};
use tollgate_rules::{load_str, Config, Credential, RequestFacts, Router};

/// A route table of `n` routes mixing the four kinds of rule users write:
/// exact hosts, leading wildcards, exact hosts with path prefixes, and wildcards with
/// path prefixes and methods. Every route is `pass` (matching is what is measured).
pub fn routes_yaml(n: usize) -> String {
    let mut y = String::with_capacity(n * 96);
    y.push_str("routes:\n");
    for i in 0..n {
        match i % 4 {
            0 => y.push_str(&format!(
                "  - name: r{i}\n    match: {{ hosts: [svc{i}.example.com] }}\n    action: pass\n"
            )),
            1 => y.push_str(&format!(
                "  - name: r{i}\n    match: {{ hosts: [\"*.team{i}.example.net\"] }}\n    action: pass\n"
            )),
            2 => y.push_str(&format!(
                "  - name: r{i}\n    match: {{ hosts: [api{i}.example.org], path_prefixes: [/v{i}/, /admin] }}\n    action: pass\n"
            )),
            _ => y.push_str(&format!(
                "  - name: r{i}\n    match: {{ hosts: [\"*.region{i}.example.io\"], path_prefixes: [/api/], methods: [GET, POST] }}\n    action: pass\n"
            )),
        }
    }
    y
}

/// A loaded config and its router.
pub struct Table {
    pub config: Config,
    pub router: Router,
}

/// Build the route table of [`routes_yaml`].
pub fn table(n: usize) -> Table {
    let yaml = routes_yaml(n);
    let config = load_str("bench.yaml", &yaml, &|_: &str| None)
        .unwrap_or_else(|e| panic!("bench route table does not load: {e}"));
    let router = Router::new(&config);
    Table { config, router }
}

/// Hosts and paths that hit each kind of rule in a table of `n` routes (n >= 4), and one
/// that misses. Hits pick routes in the middle of the table.
pub struct Probes {
    pub exact: (String, String),
    pub wildcard: (String, String),
    pub path_prefix: (String, String),
    pub wildcard_path_method: (String, String),
    pub miss: (String, String),
}

pub fn probes(n: usize) -> Probes {
    let mid = |k: usize| (n / 2) / 4 * 4 + k;
    Probes {
        exact: (format!("svc{}.example.com", mid(0)), "/x".into()),
        wildcard: (format!("a.b.team{}.example.net", mid(1)), "/x".into()),
        path_prefix: (
            format!("api{}.example.org", mid(2)),
            format!("/v{}/items/7", mid(2)),
        ),
        wildcard_path_method: (
            format!("eu.region{}.example.io", mid(3)),
            "/api/orders".into(),
        ),
        miss: ("nothing.here.example.com".into(), "/x".into()),
    }
}

/// Request facts as the proxy builds them for a GET on port 443.
pub fn facts<'a>(host: &'a str, path: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        host,
        port: 443,
        scheme: tollgate_rules::Scheme::Https,
        path,
        method: "GET",
        client: None,
        caller: None,
    }
}

/// A token endpoint that answers every request at once with a fixed token
/// (`expires_in: 3600`), counting requests.
pub struct StaticEndpoint {
    pub token: String,
    pub requests: std::sync::atomic::AtomicU64,
}

impl TokenEndpoint for StaticEndpoint {
    fn send(&self, _request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = format!(
            "{{\"access_token\":\"{}\",\"token_type\":\"Bearer\",\"expires_in\":3600}}",
            self.token
        );
        Box::pin(async move {
            Ok(HttpResponse {
                status: 200,
                retry_after: None,
                rate_limit: Default::default(),
                dpop_nonce: None,
                body: body.into_bytes(),
            })
        })
    }
}

/// The YAML of one credential named `bench` and an inject route using it.
pub const INJECT_YAML: &str = "credentials:
  bench:
    token_url: http://127.0.0.1:9/token
    client_id: bench
    client_secret: bench-secret
routes:
  - name: inject
    match: { hosts: [inject.bench.test] }
    action: inject
    credential: bench
";

/// A token cache with credential `bench` already holding a token (a 40-character
/// opaque token, like most IdPs issue), filled through a fake endpoint.
pub fn warm_cache() -> (Arc<TokenCache>, Config) {
    let config = load_str("bench.yaml", INJECT_YAML, &|_: &str| None)
        .unwrap_or_else(|e| panic!("bench config does not load: {e}"));
    let creds: BTreeMap<String, Credential> = config.credentials.clone();
    let registry = prometheus::Registry::new();
    let endpoint = Arc::new(StaticEndpoint {
        token: "tok-0123456789abcdef0123456789abcdef0123".into(),
        requests: Default::default(),
    });
    let cache = TokenCache::with_endpoint_factory(
        &creds,
        &registry,
        Box::new(move |_: &Credential| Ok(endpoint.clone() as Arc<dyn TokenEndpoint>)),
    )
    .unwrap_or_else(|e| panic!("token cache: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        cache
            .get("bench")
            .await
            .unwrap_or_else(|e| panic!("warming the cache: {e}"));
    });
    assert!(cache.cached("bench").is_some(), "cache is warm");
    (cache, config)
}

/// Poll a future that is expected to complete without waiting (a cache hit) once.
/// Panics if it is pending: that would mean the warm path awaited.
pub fn poll_ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the warm path awaited"),
    }
}
