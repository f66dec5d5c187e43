//! A CONNECT to a pass route: dial, `200 Connection Established`, splice.

use super::{status_line, Conn, Next, Outcome, Shared};
use crate::errors::{Code, ProxyError};
use crate::http1::RequestHead;
use crate::metrics::Source;
use crate::plan::Plan;
use crate::state::State;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

impl Conn {
    pub(super) async fn tunnel<'s>(
        &mut self,
        sh: &Shared,
        state: &'s State,
        plan: &Plan<'s, '_>,
        head: &RequestHead,
        out: &mut Outcome<'s>,
    ) -> Result<Next, ProxyError> {
        let route = plan.route;
        let name = route.name.as_str();
        let addr = self.resolve(sh, state, plan).await?;
        let mut upstream =
            match tokio::time::timeout(route.timeouts.connect, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(ProxyError::new(
                        Code::UpstreamUnreachable,
                        format!("cannot connect to {}:{}", plan.dial.host, plan.dial.port),
                        route.label(),
                    )
                    .with_detail(format!("{addr}: {e}")))
                }
                Err(_) => {
                    return Err(ProxyError::new(
                        Code::UpstreamTimeout,
                        format!(
                            "connecting to {}:{} timed out",
                            plan.dial.host, plan.dial.port
                        ),
                        route.label(),
                    ))
                }
            };
        let _ = upstream.set_nodelay(true);
        sh.metrics
            .tunnels
            .with_label_values(&[name, "tunnel"])
            .inc();
        let established = status_line(head.version, "200 Connection Established");
        out.status = 200;
        out.source = Source::Tollgate;
        if super::io::write_all(&mut self.down, established.as_bytes(), route.timeouts.read)
            .await
            .is_err()
        {
            return Ok(Next::Close);
        }
        // Bytes the client sent right behind the CONNECT head belong to the tunnel.
        if !self.dbuf.is_empty() {
            if upstream.write_all(&self.dbuf).await.is_err() {
                return Ok(Next::Close);
            }
            out.bytes_in += self.dbuf.len() as u64;
            self.dbuf.clear();
        }
        let carried =
            crate::tunnel::splice(&mut self.down, &mut upstream, route.timeouts.tunnel_idle).await;
        out.bytes_in += carried.up;
        out.bytes_out = carried.down;
        tracing::debug!(
            route = name,
            to_upstream = carried.up,
            to_client = carried.down,
            idled_out = carried.idled_out,
            "tunnel closed"
        );
        Ok(Next::Close)
    }
}
