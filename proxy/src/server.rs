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
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

    // SIGTERM: listeners stop, in-flight requests get up to `drain_timeout`; `Drain` exits
    // as soon as none is left.
    let drain = state.config.drain_timeout;
    let make_conf = || ServerConf {
        threads,
        grace_period_seconds: Some(drain.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 1024,
        ..Default::default()
    };
    let conf = Arc::new(make_conf());

    let mut server = Server::new_with_opt_and_conf(None, make_conf());
    server.bootstrap();

    let metrics = Arc::new(Metrics::new()?);
    let inflight = Arc::new(AtomicUsize::new(0));
    crate::auth::install_crypto_provider();
    let tokens =
        TokenCache::new(&state.config.credentials, &metrics.registry).map_err(|e| e.to_string())?;
    let mut state = state;
    state.bind(&tokens, &metrics);
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
        inflight: inflight.clone(),
    };
    let mut options = HttpServerOptions::default();
    options.allow_connect_method_proxying = true;
    let mut proxy = pingora::proxy::http_proxy_service_with_name(&conf, app, "tollgate proxy");
    if let Some(logic) = proxy.app_logic_mut() {
        logic.server_options = Some(options);
    }
    // A 4 KiB downstream read buffer instead of pingora's 64 KiB default. Each connection
    // holds its buffer for life and the allocator zeroes it, so it is resident: measured
    // per idle connection 105 KiB (64 KiB), 56-58 (16 KiB), 46 (4 KiB), 40 (none), with
    // throughput unchanged (BENCHMARKS.md). Reads of a head or body at least as large as
    // the buffer bypass it; pingora grows its own header buffer as a head needs (a head
    // up to `forward::MAX_HEADER_BYTES` still reaches `check_head`). Unbuffered would save
    // 6 KiB more but turns every small read into a syscall.
    proxy.add_listener(
        ListenerConfig::tcp(listen.proxy.to_string())
            .l4_buffer(L4BufferSettings::default().read(4 * 1024)),
    );

    let mut admin = Service::new(
        "tollgate admin".to_owned(),
        Admin::new(listen.proxy, metrics),
    );
    admin.add_tcp(&listen.admin.to_string());
    admin.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    tracing::info!(proxy = %listen.proxy, admin = %listen.admin, threads, "tollgate serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(Drain { inflight, drain }),
    });
    crate::telemetry::shutdown();
    std::process::exit(0)
}

/// Signals: SIGTERM (and SIGQUIT) drain gracefully, SIGINT stops at once. pingora's grace
/// period is a fixed sleep; this watcher ends the process as soon as no request is in flight.
struct Drain {
    inflight: Arc<AtomicUsize>,
    drain: Duration,
}

#[async_trait::async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; SIGTERM will not drain");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                ShutdownSignal::FastShutdown
            }
            _ = async { tokio::select! { _ = term.recv() => {}, _ = quit.recv() => {} } } => {
                let inflight = self.inflight.clone();
                tracing::info!(
                    in_flight = inflight.load(Ordering::Acquire),
                    "SIGTERM: no longer accepting; draining in-flight requests for up to {}",
                    humantime::format_duration(self.drain)
                );
                std::thread::spawn(move || {
                    // Let pingora close the listeners first.
                    std::thread::sleep(Duration::from_millis(100));
                    loop {
                        if inflight.load(Ordering::Acquire) == 0 {
                            tracing::info!("drained; exiting");
                            crate::telemetry::shutdown();
                            std::process::exit(0);
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                });
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}
