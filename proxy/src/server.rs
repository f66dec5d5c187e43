//! Listeners and services: the proxy listener (forward proxy and gateway on one port) and
//! the admin listener, on one pingora `Server`.

use crate::admin::Admin;
use crate::auth::TokenCache;
use crate::inject::Injector;
use crate::metrics::Metrics;
use crate::proxy::Tollgate;
use crate::reload::Reloader;
use crate::state::State;
use crate::upstream::Dns;
use arc_swap::ArcSwap;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::sync::Arc;

/// Seconds pingora waits, after SIGTERM, for in-flight requests before it stops.
pub const DRAIN_SECONDS: u64 = 10;

/// Check a listen address can be bound, so a port clash is a clear error, not a panic.
fn can_bind(addr: SocketAddr) -> Result<(), String> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Build the server and serve until a signal stops it. Never returns.
pub fn serve(path: &std::path::Path, state: State) -> Result<std::convert::Infallible, String> {
    let listen = state.config.listen.clone();
    can_bind(listen.proxy)?;
    can_bind(listen.admin)?;
    let threads = state
        .config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let make_conf = || {
        let mut conf = ServerConf::default();
        conf.threads = threads;
        conf.grace_period_seconds = Some(0);
        conf.graceful_shutdown_timeout_seconds = Some(DRAIN_SECONDS);
        conf.upstream_keepalive_pool_size = 1024;
        conf
    };
    let conf = Arc::new(make_conf());

    let mut server = Server::new_with_opt_and_conf(None, make_conf());
    server.bootstrap();

    let metrics = Arc::new(Metrics::new()?);
    crate::auth::install_crypto_provider();
    let tokens =
        TokenCache::new(&state.config.credentials, &metrics.registry).map_err(|e| e.to_string())?;
    let state = Arc::new(ArcSwap::from_pointee(state));
    Reloader {
        path: path.to_path_buf(),
        state: state.clone(),
        tokens: tokens.clone(),
        metrics: metrics.clone(),
    }
    .spawn()
    .map_err(|e| format!("cannot start the reload watcher: {e}"))?;
    let app = Tollgate {
        state: state.clone(),
        dns: Dns::system(),
        injector: Arc::new(Injector::new(tokens)),
        metrics: metrics.clone(),
    };
    let mut options = HttpServerOptions::default();
    options.allow_connect_method_proxying = true;
    let mut proxy = pingora::proxy::http_proxy_service_with_name(&conf, app, "tollgate proxy");
    if let Some(logic) = proxy.app_logic_mut() {
        logic.server_options = Some(options);
    }
    proxy.add_tcp(&listen.proxy.to_string());

    let mut admin = Service::new(
        "tollgate admin".to_owned(),
        Admin::new(listen.proxy, metrics),
    );
    admin.add_tcp(&listen.admin.to_string());
    admin.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    tracing::info!(proxy = %listen.proxy, admin = %listen.admin, threads, "tollgate serving");
    server.run_forever()
}
