//! A raw TCP echo server for CONNECT tunnel tests: every byte received is sent back.
//! It counts connections and bytes, so a test can prove a refused CONNECT never dialled it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    bytes: AtomicUsize,
}

pub struct EchoServer {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    pub async fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind echo server");
        let addr = listener.local_addr().expect("echo local addr");
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                c.connections.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                let _ = stream.shutdown().await;
                                return;
                            }
                            Ok(n) => {
                                c.bytes.fetch_add(n, Ordering::SeqCst);
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        EchoServer {
            addr,
            counters,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    pub fn bytes_received(&self) -> usize {
        self.counters.bytes.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::raw::RawConn;

    #[tokio::test(flavor = "multi_thread")]
    async fn echoes_bytes_and_counts() {
        let echo = EchoServer::start().await;
        let mut conn = RawConn::connect(echo.addr()).await;
        conn.send(b"ping").await;
        assert_eq!(conn.read_exact(4).await, b"ping");
        conn.shutdown_write().await;
        assert!(conn.read_to_end().await.is_empty());
        assert_eq!(echo.connections(), 1);
        assert_eq!(echo.bytes_received(), 4);
    }
}
