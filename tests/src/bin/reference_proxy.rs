//! The differential tests' reference proxy (`tests/tests/differential.rs`), not part of the
//! product: the job of a tollgate `pass` route with `upstream:`, done by pingora-proxy
//! (`ProxyHttp`) on pingora-core's HTTP/1 sessions, the independent HTTP/1 implementation
//! tollgate ran on before it had its own connection loop (and the benches' control).
//!
//! Every request goes to UPSTREAM: absolute-form or origin-form in, origin-form out with
//! `Host: UPSTREAM`; hop-by-hop fields, the fields `Connection` names and
//! `Proxy-Authorization` are dropped (pingora's standard request policy, with upgrades
//! denied, as tollgate does); a request with both `Content-Length` and `Transfer-Encoding`
//! is refused with 400 (pingora alone would drop the `Content-Length` and go on). Nothing
//! else: no routing, no credential, no `Via`, no metrics. Everything else (framing,
//! 1xx, keep-alive, HTTP/1.0, errors) is pingora's own behaviour: that is what the test
//! compares tollgate's loop against.
//!
//! Usage: `reference_proxy LISTEN UPSTREAM` (both `IP:port`). `cargo build -p
//! tollgate-tests` builds it; the tests find it through `CARGO_BIN_EXE_reference_proxy`.

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpUpstreamRequestPolicy;
use std::net::SocketAddr;

struct Reference {
    peer: HttpPeer,
    /// `Host` for the upstream: its `IP:port`.
    host: String,
}

/// Does the raw request head carry both `Content-Length` and `Transfer-Encoding`? (pingora
/// has already removed the `Content-Length` from the parsed head by the time a hook runs.)
fn both_lengths(raw: &[u8]) -> bool {
    let mut cl = false;
    let mut te = false;
    for line in raw.split(|b| *b == b'\n').skip(1) {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        cl |= name.eq_ignore_ascii_case(b"content-length");
        te |= name.eq_ignore_ascii_case(b"transfer-encoding");
    }
    cl && te
}

#[async_trait]
impl ProxyHttp for Reference {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> pingora::Result<bool> {
        if both_lengths(&session.as_ref().to_h1_raw()) {
            session.set_keepalive(None);
            session.respond_error(400).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        _ctx: &mut (),
    ) -> pingora::Result<()> {
        // Origin-form whatever the client sent (`uri` holds only the path and query of an
        // absolute-form target), with the upstream's Host.
        req.set_uri(session.req_header().uri.clone());
        req.insert_header(http::header::HOST, &self.host)?;
        req.remove_header(&http::header::PROXY_AUTHORIZATION);
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: reference_proxy LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let Ok(up) = upstream.parse::<SocketAddr>() else {
        eprintln!("UPSTREAM must be an IP:port");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut peer = HttpPeer::new(up, false, String::new());
    peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::deny_upgrades();
    let reference = Reference {
        peer,
        host: up.to_string(),
    };
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, reference);
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever();
}
