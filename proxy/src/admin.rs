//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/status` and `/status.json`.

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
    status: crate::status::Sources,
}

impl Admin {
    pub fn new(
        proxy_addr: SocketAddr,
        metrics: Arc<Metrics>,
        status: crate::status::Sources,
    ) -> Admin {
        Admin {
            proxy_addr,
            ready: AtomicBool::new(false),
            metrics,
            status,
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
        let req = session.req_header();
        let path = req.uri.path().to_owned();
        let read = matches!(req.method, http::Method::GET | http::Method::HEAD);
        let known = matches!(
            path.as_str(),
            "/healthz" | "/readyz" | "/metrics" | "/status" | "/status.json"
        );
        if known && !read {
            let mut r = text(405, "text/plain", "method not allowed: GET or HEAD\n");
            r.headers_mut()
                .insert("allow", http::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
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
            "/status" => text(
                200,
                "text/html; charset=utf-8",
                crate::status::html(&self.status.snapshot()),
            ),
            "/status.json" => text(
                200,
                "application/json",
                serde_json::to_vec_pretty(&self.status.snapshot()).unwrap_or_default(),
            ),
            _ => text(
                404,
                "text/plain",
                "not found: try /healthz, /readyz, /metrics, /status or /status.json\n",
            ),
        }
    }
}
