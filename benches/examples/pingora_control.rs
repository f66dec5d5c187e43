//! The control for the load harness: the leanest proxy pingora allows for this job, so
//! that tollgate's cost over pingora itself can be read off the same run. One fixed
//! upstream (a ready `HttpPeer`, cloned per request), a static
//! `Authorization: Bearer x`, origin-form upstream, no routing, no metrics, no logs;
//! tollgate's allocator (mimalloc) and release profile.
//!
//! `cargo build --release -p tollgate-benches --example pingora_control`; the harness
//! runs it as target `pingora-control` when `target/release/examples/pingora_control`
//! exists. Usage: `pingora_control LISTEN UPSTREAM THREADS`.

/// The same allocator as tollgate (`proxy/src/main.rs`), so the difference between the two
/// is tollgate's own work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::net::SocketAddr;

struct Control {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Control {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        _c: &mut (),
    ) -> pingora::Result<()> {
        // Origin-form upstream whatever the client sent (absolute-form from HTTP_PROXY clients).
        req.set_uri(session.req_header().uri.clone());
        req.insert_header(http::header::AUTHORIZATION, "Bearer x")?;
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: pingora_control LISTEN UPSTREAM [THREADS]");
        std::process::exit(2);
    };
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1);
    let Ok(up) = upstream.parse::<SocketAddr>() else {
        eprintln!("UPSTREAM must be an IP:port");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads,
        upstream_keepalive_pool_size: 1024,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let peer = HttpPeer::new(up, false, String::new());
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, Control { peer });
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever();
}
