//! The connections the generator opens: plain TCP to the proxy, or what an `HTTPS_PROXY`
//! client opens to a `connect: intercept` route: `CONNECT host:443`, the `200`, then TLS
//! (tokio-rustls, trusting only the interception CA) and keep-alive HTTP/1.1 inside.
//!
//! The CONNECT and the handshake happen when a connection opens, before the measured
//! window (the generator connects everything first), so a run measures the requests
//! inside warm tunnels; what the first CONNECT to a new host costs is the micro bench
//! `intercept` (`benches/micro/intercept.rs`).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How a connection reaches the proxy's HTTP.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    /// Requests straight on the TCP connection.
    #[default]
    Plain,
    /// Requests inside TLS inside a CONNECT tunnel.
    Intercept(Arc<Tunnel>),
}

/// A CONNECT tunnel with TLS inside: what to send first and whom to trust.
pub struct Tunnel {
    head: Vec<u8>,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// `CONNECT host:port`, then TLS for `host` trusting only the CA certificate(s) in
    /// `ca_pem` (ALPN `http/1.1`, as curl and Python offer it to a proxy's leaf).
    pub fn new(host: &str, port: u16, ca_pem: &Path) -> Result<Tunnel, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem)
            .map_err(|e| format!("{}: {e}", ca_pem.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", ca_pem.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca_pem.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("{}: no certificate", ca_pem.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name =
            ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        Ok(Tunnel {
            head: format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
                .into_bytes(),
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    async fn open(&self, mut s: TcpStream) -> io::Result<Conn> {
        s.write_all(&self.head).await?;
        let mut buf = Vec::with_capacity(256);
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    if status != 200 {
                        return Err(io::Error::other(format!("CONNECT answered {status}")));
                    }
                    // The proxy waits for our ClientHello: nothing may follow the 200.
                    if n != buf.len() {
                        return Err(io::Error::other("bytes after the CONNECT's 200"));
                    }
                    break;
                }
                Ok(httparse::Status::Partial) => {
                    if s.read_buf(&mut buf).await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed before the CONNECT's answer",
                        ));
                    }
                }
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed answer to CONNECT",
                    ))
                }
            }
        }
        let tls = self.connector.connect(self.server_name.clone(), s).await?;
        Ok(Conn::Tls(Box::new(tls)))
    }
}

/// An open connection: TCP, or TLS inside a tunnel.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connect to `addr` (`TCP_NODELAY`, as wrk and real clients set it) and, for a tunnel,
/// do the CONNECT and the TLS handshake.
pub async fn open(addr: SocketAddr, transport: &Transport) -> io::Result<Conn> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    match transport {
        Transport::Plain => Ok(Conn::Plain(s)),
        Transport::Intercept(t) => t.open(s).await,
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
