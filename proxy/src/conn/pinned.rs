//! The upstream connection a client connection keeps for its next request, while its
//! requests go to the same peer; pingora's shared pool takes it when the client idles or
//! goes elsewhere.

use pingora::connectors::TransportConnector;
use pingora::protocols::Stream;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Which connections are interchangeable: same address, TLS or not, SNI and trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Key {
    pub addr: SocketAddr,
    pub tls: bool,
    pub sni: String,
    /// Identity of the route's custom trust (0: system roots).
    pub trust: usize,
    /// Identity of the client certificate presented (0: none).
    pub client_cert: usize,
}

pub(super) struct Pinned {
    pub stream: Stream,
    pub key: Key,
    /// pingora's reuse hash of the peer it was made for (its pool key).
    pub hash: u64,
    pub idle_timeout: Duration,
    /// When it became idle.
    pub since: tokio::time::Instant,
}

impl Pinned {
    pub fn release(self, connector: &TransportConnector) {
        connector.release_stream(self.stream, self.hash, Some(self.idle_timeout));
    }
}

/// Resolves when an idle pinned connection shows EOF, an error or unexpected data
/// (pingora's pool watches its idle connections the same way); pending without one.
pub(super) async fn closed(up: &mut Option<Pinned>) {
    match up {
        None => std::future::pending().await,
        Some(p) => {
            let mut b = [0u8; 1];
            let _ = p.stream.read(&mut b).await;
        }
    }
}
