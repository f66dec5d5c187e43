//! The admin listener: `/healthz`, `/readyz`, `/metrics`.

use crate::metrics::Metrics;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Admin {
    proxy_addr: SocketAddr,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Admin {
    pub fn new(proxy_addr: SocketAddr, metrics: Arc<Metrics>) -> Admin {
        Admin {
            proxy_addr,
            ready: AtomicBool::new(false),
            metrics,
        }
    }

    /// Ready once the proxy listener accepts connections (the config was loaded before
    /// the server started).
    async fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
        }
        let mut addr = self.proxy_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await,
            Ok(Ok(_))
        );
        if ok {
            self.ready.store(true, Ordering::Release);
        }
        ok
    }
}

fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        match path.as_str() {
            "/healthz" => text(200, "text/plain", "ok\n"),
            "/readyz" => {
                if self.is_ready().await {
                    text(200, "text/plain", "ready\n")
                } else {
                    text(503, "text/plain", "not ready\n")
                }
            }
            "/metrics" => text(200, "text/plain; version=0.0.4", self.metrics.render()),
            _ => text(
                404,
                "text/plain",
                "not found: try /healthz, /readyz or /metrics\n",
            ),
        }
    }
}
