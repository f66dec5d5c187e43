//! TLS interception: what the first CONNECT to a new host costs (a leaf certificate made
//! and signed: ECDSA P-256 key generation, one CA signature, the rustls `ServerConfig`),
//! what later CONNECTs to it cost (a cache hit), and a whole TLS 1.3 handshake inside a
//! tunnel (client and server side, over an in-memory duplex). Reports µs per operation.

use criterion::Criterion;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tollgate::intercept::{self, Authority, Interceptor, LeafName};

/// A fresh CA written to a temp dir, and a config naming it.
struct Fixture {
    _dir: std::path::PathBuf,
    config: tollgate_rules::Config,
    cert_der: rustls::pki_types::CertificateDer<'static>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = intercept::init::generate(SystemTime::now(), Duration::from_secs(86400 * 30), None)
        .expect("CA");
    intercept::init::write(&dir, &ca, true).expect("write CA");
    let yaml = format!(
        "interception:\n  ca_cert_file: {0}/ca.crt\n  ca_key_file: {0}/ca.key\n",
        dir.display()
    );
    let config = tollgate_rules::load_str("bench.yaml", &yaml, &|_: &str| None).expect("config");
    let pem = std::fs::read(dir.join("ca.crt")).expect("read CA");
    let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).expect("CA PEM");
    Fixture {
        _dir: dir,
        config,
        cert_der,
    }
}

pub fn intercept(c: &mut Criterion) {
    tollgate::auth::install_crypto_provider();
    let f = fixture();
    let i = f.config.interception.as_ref().expect("interception");
    let authority = Authority::load(
        &i.ca_cert_file,
        &i.ca_key_file,
        i.leaf_lifetime,
        SystemTime::now(),
    )
    .expect("CA loads");
    let registry = prometheus::Registry::new();
    let interceptor = Interceptor::new(&registry).expect("interceptor");
    interceptor.install(intercept::prepare(&f.config).expect("prepared"));
    let n = AtomicU64::new(0);

    let mut group = c.benchmark_group("intercept");
    let name = LeafName::Dns("api.bench.example.com".into());
    group.bench_function("issue_leaf", |b| {
        b.iter(|| {
            black_box(
                authority
                    .issue(black_box(&name), SystemTime::now())
                    .expect("leaf"),
            )
        })
    });
    // A new host each time: cache miss, leaf issued, ServerConfig built, LRU insert (and,
    // past 1,024 hosts, an eviction), as the first CONNECT to a host pays it.
    group.bench_function("first_connect_new_host", |b| {
        b.iter(|| {
            let host = format!("h{}.bench.example.com", n.fetch_add(1, Ordering::Relaxed));
            black_box(interceptor.server_config(&host).expect("config"))
        })
    });
    interceptor
        .server_config("hot.bench.example.com")
        .expect("warm");
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            black_box(
                interceptor
                    .server_config(black_box("hot.bench.example.com"))
                    .expect("hit"),
            )
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(f.cert_der.clone()).expect("root");
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let connector = tokio_rustls::TlsConnector::from(client);
    let server_name =
        rustls::pki_types::ServerName::try_from("hot.bench.example.com").expect("name");
    group.bench_function("tls_handshake_cached_leaf", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (c, s) = tokio::io::duplex(16 * 1024);
                let server = interceptor.accept(
                    "bench",
                    "hot.bench.example.com",
                    s,
                    intercept::HANDSHAKE_TIMEOUT,
                );
                let client = connector.connect(server_name.clone(), c);
                let (s, c) = tokio::join!(server, client);
                black_box((s.expect("server side").stream, c.expect("client side")))
            })
        })
    });
    group.finish();
}
