//! Splicing two byte streams (a CONNECT tunnel) until both sides close, or until neither
//! side sends anything for the idle timeout.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bytes carried each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    /// Client to upstream.
    pub up: u64,
    /// Upstream to client.
    pub down: u64,
    /// Ended by the idle timeout.
    pub idled_out: bool,
}

/// Copies `a` → `b` and `b` → `a` until both directions reached EOF (each EOF is passed
/// on as a write shutdown), an error, or `idle` passes with no byte either way.
pub async fn splice<A, B>(a: &mut A, b: &mut B, idle: Duration) -> Carried
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    let mut carried = Carried::default();
    let (mut a_open, mut b_open) = (true, true);
    let mut last = Instant::now();
    while a_open || b_open {
        tokio::select! {
            r = a.read(&mut buf_a), if a_open => match r {
                Ok(0) | Err(_) => {
                    a_open = false;
                    let _ = b.shutdown().await;
                }
                Ok(n) => {
                    if b.write_all(&buf_a[..n]).await.is_err() || b.flush().await.is_err() {
                        break;
                    }
                    carried.up += n as u64;
                    last = Instant::now();
                }
            },
            r = b.read(&mut buf_b), if b_open => match r {
                Ok(0) | Err(_) => {
                    b_open = false;
                    let _ = a.shutdown().await;
                }
                Ok(n) => {
                    if a.write_all(&buf_b[..n]).await.is_err() || a.flush().await.is_err() {
                        break;
                    }
                    carried.down += n as u64;
                    last = Instant::now();
                }
            },
            _ = tokio::time::sleep_until(last + idle) => {
                carried.idled_out = true;
                break;
            }
        }
    }
    carried
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn carries_both_ways_until_both_close() {
        let (mut client, mut a) = tokio::io::duplex(1024);
        let (mut b, mut server) = tokio::io::duplex(1024);
        let task =
            tokio::spawn(async move { splice(&mut a, &mut b, Duration::from_secs(5)).await });
        client.write_all(b"hello").await.expect("write");
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
        server.write_all(b"world!").await.expect("write");
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"world!");
        drop(client);
        drop(server);
        let c = task.await.expect("join");
        assert_eq!((c.up, c.down, c.idled_out), (5, 6, false));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_ends() {
        let (_client, mut a) = tokio::io::duplex(1024);
        let (mut b, _server) = tokio::io::duplex(1024);
        let c = splice(&mut a, &mut b, Duration::from_secs(30)).await;
        assert!(c.idled_out);
    }
}
