//! The TLS server side of an intercepted tunnel: a rustls `ServerConfig` per host (ring,
//! the leaf and the CA chain, ALPN `http/1.1` only), the handshake with a deadline, and
//! the two pure checks around it: what the first bytes after the 200 are
//! ([`classify`]), and whether the SNI the client sent names the CONNECT host
//! ([`check_sni`]).

use super::authority::Issued;
use super::cache::Entry;
use super::leaf::{self, Validity};
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish the TLS handshake after the 200 (a client that
/// sends nothing is dropped then).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS sessions kept for resumption, shared by all hosts' configs.
pub const SESSION_CACHE_ENTRIES: usize = 4096;

/// The only protocol offered inside a tunnel: tollgate serves HTTP/1 there.
pub const ALPN: &[u8] = b"http/1.1";

/// What the first bytes of a tunnel after the 200 look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// Nothing yet: read more.
    NeedMore,
    /// A TLS record (handshake type 0x16): a ClientHello, or TLS garbage the handshake
    /// will refuse.
    Tls,
    /// A token character, as an HTTP/1 request line starts: serve it as plain HTTP (the
    /// HTTP parser judges the rest).
    Http,
    /// Neither: close the tunnel.
    Unknown,
}

/// Classifies the start of a tunnel from its first byte (peeked; do not consume it).
pub fn classify(prefix: &[u8]) -> FirstBytes {
    match prefix.first() {
        None => FirstBytes::NeedMore,
        Some(0x16) => FirstBytes::Tls,
        Some(b) if is_tchar(*b) => FirstBytes::Http,
        Some(_) => FirstBytes::Unknown,
    }
}

/// RFC 9110 `tchar`: what a method is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Does the SNI agree with the CONNECT host?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniCheck {
    /// No SNI (normal for an IP host, and for some old clients).
    Absent,
    /// Names the CONNECT host (case, one trailing dot and IPv6 brackets aside).
    Matches,
    /// Names another host: every request in the tunnel gets 421 `misdirected`.
    Mismatch(String),
}

/// Compares the SNI a client sent with the CONNECT host.
pub fn check_sni(connect_host: &str, sni: Option<&str>) -> SniCheck {
    let norm = |h: &str| {
        let h = h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h);
        h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
    };
    match sni {
        None => SniCheck::Absent,
        Some(s) if norm(s) == norm(connect_host) => SniCheck::Matches,
        Some(s) => SniCheck::Mismatch(s.to_owned()),
    }
}

/// Does a request's `Host` inside a tunnel agree with the CONNECT authority? The host
/// must be the same (case, one trailing dot and IPv6 brackets aside); a port, when the
/// `Host` has one, must be the CONNECT port (clients leave out the scheme's default
/// port, so a missing port agrees). A `Host` that does not agree gets 421 `misdirected`.
pub fn host_agrees(connect_host: &str, connect_port: u16, host_header: &str) -> bool {
    let (host, port) = split_host_port(host_header);
    if let Some(p) = port {
        if p.parse::<u16>().ok() != Some(connect_port) {
            return false;
        }
    }
    check_sni(connect_host, Some(host)) == SniCheck::Matches
}

/// `host[:port]` or `[v6][:port]`, the port as written.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address, no port.
        Some((h, _)) if h.contains(':') => (s, None),
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

/// Always the same certificate: the one made for the CONNECT host, whatever the SNI.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A cached leaf, ready to serve.
#[derive(Debug)]
pub struct ServedLeaf {
    pub config: Arc<ServerConfig>,
    pub validity: Validity,
    renew_at: SystemTime,
}

impl Entry for ServedLeaf {
    fn renew_at(&self) -> SystemTime {
        self.renew_at
    }
}

impl ServedLeaf {
    /// The `ServerConfig` that presents `issued` (then `chain`) for a leaf made at `now`.
    pub fn new(
        issued: Issued,
        chain: &[CertificateDer<'static>],
        provider: &Arc<rustls::crypto::CryptoProvider>,
        sessions: &Arc<dyn StoresServerSessions>,
        now: SystemTime,
    ) -> Result<ServedLeaf, String> {
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(issued.key))
            .map_err(|e| format!("rustls refused the leaf key: {e}"))?;
        let mut certs = Vec::with_capacity(1 + chain.len());
        certs.push(issued.cert);
        certs.extend(chain.iter().cloned());
        let mut config = ServerConfig::builder_with_provider(Arc::clone(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("rustls: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(CertifiedKey::new(certs, key)))));
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.session_storage = Arc::clone(sessions);
        Ok(ServedLeaf {
            config: Arc::new(config),
            renew_at: leaf::renew_at(now, &issued.validity),
            validity: issued.validity,
        })
    }
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// The client did not finish within the deadline.
    Timeout,
    /// The client refused the certificate (its alert, e.g. `UnknownCA`): it does not
    /// trust the interception CA.
    Untrusted(String),
    /// Any other failure (no shared protocol or cipher, not TLS, the client went away).
    Failed(String),
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::Timeout => f.write_str("the client did not complete the TLS handshake in time"),
            HandshakeFailure::Untrusted(alert) => write!(
                f,
                "the client refused the leaf certificate (alert {alert}): it does not trust the interception CA"
            ),
            HandshakeFailure::Failed(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// Runs the server handshake on `stream` (whose first bytes must still be unread).
pub async fn handshake<S>(
    config: Arc<ServerConfig>,
    stream: S,
    timeout: Duration,
) -> Result<TlsStream<S>, HandshakeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    match tokio::time::timeout(timeout, accept).await {
        Err(_) => Err(HandshakeFailure::Timeout),
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(classify_error(&e)),
    }
}

fn classify_error(e: &std::io::Error) -> HandshakeFailure {
    use rustls::AlertDescription as A;
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(
            alert @ (A::UnknownCA
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied),
        )) => HandshakeFailure::Untrusted(format!("{alert:?}")),
        Some(other) => HandshakeFailure::Failed(other.to_string()),
        None => HandshakeFailure::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes() {
        assert_eq!(classify(b""), FirstBytes::NeedMore);
        assert_eq!(classify(&[0x16, 0x03, 0x01]), FirstBytes::Tls);
        assert_eq!(classify(&[0x16]), FirstBytes::Tls);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), FirstBytes::Http);
        assert_eq!(classify(b"POST"), FirstBytes::Http);
        assert_eq!(classify(b"get"), FirstBytes::Http);
        assert_eq!(classify(&[0x00, 0x01]), FirstBytes::Unknown);
        assert_eq!(classify(b" GET"), FirstBytes::Unknown);
        assert_eq!(classify(b"\r\nGET"), FirstBytes::Unknown);
        assert_eq!(classify(&[0x80, 0x2e]), FirstBytes::Unknown); // SSLv2-style hello
    }

    #[test]
    fn sni_against_the_connect_host() {
        assert_eq!(check_sni("api.example.com", None), SniCheck::Absent);
        assert_eq!(
            check_sni("api.example.com", Some("api.example.com")),
            SniCheck::Matches
        );
        assert_eq!(
            check_sni("API.example.com", Some("api.example.com.")),
            SniCheck::Matches
        );
        assert_eq!(
            check_sni("[2001:db8::1]", Some("2001:db8::1")),
            SniCheck::Matches
        );
        assert_eq!(
            check_sni("api.example.com", Some("evil.example.com")),
            SniCheck::Mismatch("evil.example.com".to_owned())
        );
    }

    #[test]
    fn host_headers_against_the_connect_authority() {
        assert!(host_agrees("api.example.com", 443, "api.example.com"));
        assert!(host_agrees("api.example.com", 443, "API.example.com:443"));
        assert!(host_agrees("api.example.com", 8081, "api.example.com:8081"));
        assert!(!host_agrees("api.example.com", 8081, "api.example.com:80"));
        assert!(!host_agrees("api.example.com", 443, "evil.example.com"));
        assert!(!host_agrees("api.example.com", 443, "api.example.com:x"));
        assert!(host_agrees("2001:db8::1", 443, "[2001:db8::1]:443"));
        assert!(host_agrees("[2001:db8::1]", 443, "[2001:db8::1]"));
        assert!(host_agrees("2001:db8::1", 443, "2001:db8::1"));
        assert!(!host_agrees("2001:db8::1", 443, "[2001:db8::2]:443"));
        assert!(host_agrees("10.1.2.3", 443, "10.1.2.3:443"));
        assert!(!host_agrees("api.example.com", 443, ""));
    }

    #[test]
    fn untrusting_clients_are_told_apart() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert!(matches!(
            classify_error(&io(rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA))),
            HandshakeFailure::Untrusted(a) if a == "UnknownCA"
        ));
        assert!(matches!(
            classify_error(&io(rustls::Error::AlertReceived(
                rustls::AlertDescription::HandshakeFailure
            ))),
            HandshakeFailure::Failed(_)
        ));
        assert!(matches!(
            classify_error(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            HandshakeFailure::Failed(_)
        ));
    }
}
