//! Listeners and services: the proxy listener (forward proxy and gateway on one port) and
//! the admin listener, on one pingora `Server`.

use crate::admin::Admin;
use crate::auth::TokenCache;
use crate::conn::{App, Shared};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::state::State;
use crate::upstream::{Dns, OwnListeners};
use arc_swap::ArcSwap;
use pingora::connectors::{ConnectorOptions, TransportConnector};
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

/// Raises the soft limit on open files to the hard limit: each connection holds one
/// descriptor (two while proxying), and the default soft limit (1024) is reached by a
/// modest burst. Returns the limit in effect.
fn raise_nofile_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
            return Some(soft);
        }
        return Some(hard);
    }
    Some(soft)
}

/// Build the server and serve until a signal stops it. Never returns.
pub fn serve(
    path: &std::path::Path,
    state: State,
    metrics: Arc<Metrics>,
) -> Result<std::convert::Infallible, String> {
    let listen = state.config.listen.clone();
    can_bind(listen.proxy)?;
    can_bind(listen.admin)?;
    let nofile = raise_nofile_limit();
    let threads = state
        .config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    // SIGTERM: listeners stop, open connections get up to `drain_timeout`; `Drain` exits
    // as soon as none is left.
    let drain = state.config.drain_timeout;
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(drain.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 1024,
        ..Default::default()
    };
    let connector = TransportConnector::new(Some(ConnectorOptions::from_server_conf(&conf)));
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let open = Arc::new(AtomicUsize::new(0));
    crate::auth::install_crypto_provider();
    let tokens = TokenCache::with_request_timeout(
        &state.config.credentials,
        state.config.token_store.as_ref(),
        &metrics.registry,
        state.config.timeouts.token_request,
    )
    .map_err(|e| e.to_string())?;
    let mut state = state;
    state.bind(&tokens);
    // Interception: the CA is loaded here and on every reload.
    let interceptor = crate::intercept::Interceptor::new(&metrics.registry)?;
    interceptor.install(
        crate::intercept::prepare(&state.config).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            lines.join("\n")
        })?,
    );
    let state = Arc::new(ArcSwap::from_pointee(state));
    Reloader {
        path: path.to_path_buf(),
        state: state.clone(),
        tokens: tokens.clone(),
        metrics: metrics.clone(),
        interceptor: interceptor.clone(),
    }
    .spawn()
    .map_err(|e| format!("cannot start the reload watcher: {e}"))?;
    let pseudonym = Shared::pseudonym();
    let status = crate::status::Sources {
        state: state.clone(),
        tokens: tokens.clone(),
        metrics: metrics.clone(),
        config_path: path.to_path_buf(),
        started: std::time::SystemTime::now(),
    };
    let shared = Arc::new(Shared {
        state,
        dns: Dns::system(),
        tokens,
        connector,
        metrics: metrics.clone(),
        open: open.clone(),
        via: format!("1.1 {pseudonym}"),
        pseudonym,
        own: OwnListeners::new(&[listen.proxy, listen.admin]),
        interceptor,
    });
    let mut proxy = Service::new("tollgate proxy".to_owned(), App(shared));
    // No read buffer below our own: the connection loop reads into its own buffer, which
    // an idle connection gives back.
    proxy.add_listener(
        ListenerConfig::tcp(listen.proxy.to_string())
            .l4_buffer(L4BufferSettings::default().read(0)),
    );

    let mut admin = Service::new(
        "tollgate admin".to_owned(),
        Admin::new(listen.proxy, metrics, status),
    );
    admin.add_tcp(&listen.admin.to_string());
    admin.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    tracing::info!(proxy = %listen.proxy, admin = %listen.admin, threads, open_files_limit = nofile, "tollgate serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(Drain { open, drain }),
    });
    crate::telemetry::shutdown();
    std::process::exit(0)
}

/// Signals: SIGTERM (and SIGQUIT) drain gracefully, SIGINT stops at once. pingora's grace
/// period is a fixed sleep; this watcher ends the process as soon as no request is in flight.
struct Drain {
    /// Open client connections (idle ones close at once on SIGTERM).
    open: Arc<AtomicUsize>,
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
                let inflight = self.open.clone();
                tracing::info!(
                    open_connections = inflight.load(Ordering::Acquire),
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
