//! Where a request goes: DNS (asynchronous, cached by TTL), the private-address guard,
//! TLS trust, and the ready-made [`HttpPeer`].
//!
//! `HttpPeer::new("host:port")` would resolve with a blocking call and panic on failure
//! (NOTES.md), so peers are always built from a socket address we resolved ourselves.

use crate::errors::{Code, ProxyError};
use dashmap::DashMap;
use hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_rules::Scheme;

/// Shortest and longest time a DNS answer is trusted, whatever its TTL says.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3600);
/// An expired answer is still served (and refreshed in the background) for this long,
/// so a warm request never waits on DNS.
const STALE_GRACE: Duration = Duration::from_secs(300);
/// A failed lookup is remembered this long.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Is this address one an egress proxy must not reach unless told to?
/// Loopback, RFC 1918 private, CGNAT, link-local (which holds the 169.254.169.254 metadata
/// service), unspecified, broadcast/multicast, documentation-free "this network", and their
/// IPv6 counterparts (ULA, link-local, IPv4-mapped, the AWS fd00:ec2::254 metadata address).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // fc00::/7 unique local (incl. fd00:ec2::254)
                || (seg0 & 0xffc0) == 0xfe80 // fe80::/10 link-local
                || (seg0 & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d
                || (v6.segments()[0] == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 64:ff9b::/96
        }
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || o[0] == 0 // 0.0.0.0/8
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved
}

struct Entry {
    addrs: Arc<[IpAddr]>,
    valid_until: Instant,
    refreshing: AtomicBool,
}

enum Cached {
    Fresh(Arc<[IpAddr]>),
    Stale(Arc<[IpAddr]>),
    Failed(String),
    Missing,
}

/// An asynchronous resolver with a TTL-respecting cache shared by all requests.
pub struct Dns {
    resolver: TokioResolver,
    cache: DashMap<String, Entry>,
    failures: DashMap<String, (Instant, String)>,
}

impl Dns {
    /// The system's resolver configuration (`/etc/resolv.conf`, `/etc/hosts`). If it cannot
    /// be read, only the hosts file is used: we never fall back to public resolvers.
    pub fn system() -> Arc<Dns> {
        let builder = match TokioResolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the system DNS configuration; using /etc/hosts only");
                TokioResolver::builder_with_config(
                    ResolverConfig::new(),
                    TokioConnectionProvider::default(),
                )
            }
        };
        let mut builder = builder;
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.use_hosts_file = ResolveHosts::Always;
        let resolver = builder.build();
        Arc::new(Dns {
            resolver,
            cache: DashMap::new(),
            failures: DashMap::new(),
        })
    }

    fn cached(&self, host: &str) -> Cached {
        if let Some(e) = self.cache.get(host) {
            let now = Instant::now();
            if now < e.valid_until {
                return Cached::Fresh(e.addrs.clone());
            }
            if now < e.valid_until + STALE_GRACE {
                if e.refreshing.swap(true, Ordering::AcqRel) {
                    return Cached::Fresh(e.addrs.clone());
                }
                return Cached::Stale(e.addrs.clone());
            }
        }
        if let Some(f) = self.failures.get(host) {
            if f.0.elapsed() < NEGATIVE_TTL {
                return Cached::Failed(f.1.clone());
            }
        }
        Cached::Missing
    }

    /// Addresses for `host` (an IP literal is returned as is, with no lookup).
    pub async fn resolve(self: &Arc<Self>, host: &str) -> Result<Arc<[IpAddr]>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([ip]));
        }
        match self.cached(host) {
            Cached::Fresh(a) => Ok(a),
            Cached::Stale(a) => {
                let me = self.clone();
                let host = host.to_owned();
                tokio::spawn(async move {
                    let _ = me.lookup(&host).await;
                });
                Ok(a)
            }
            Cached::Failed(msg) => Err(msg),
            Cached::Missing => self.lookup(host).await,
        }
    }

    async fn lookup(&self, host: &str) -> Result<Arc<[IpAddr]>, String> {
        // A trailing dot makes the name absolute: no search-domain guessing.
        let fqdn = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        match self.resolver.lookup_ip(fqdn).await {
            Ok(answer) => {
                let addrs: Arc<[IpAddr]> = answer.iter().collect::<Vec<_>>().into();
                if addrs.is_empty() {
                    return Err(self.fail(host, format!("{host} has no addresses")));
                }
                let ttl = answer
                    .valid_until()
                    .saturating_duration_since(Instant::now())
                    .clamp(MIN_TTL, MAX_TTL);
                self.cache.insert(
                    host.to_owned(),
                    Entry {
                        addrs: addrs.clone(),
                        valid_until: Instant::now() + ttl,
                        refreshing: AtomicBool::new(false),
                    },
                );
                self.failures.remove(host);
                Ok(addrs)
            }
            Err(e) => {
                // Keep serving a stale answer if there is one.
                if let Some(entry) = self.cache.get(host) {
                    entry.refreshing.store(false, Ordering::Release);
                    if Instant::now() < entry.valid_until + STALE_GRACE {
                        return Ok(entry.addrs.clone());
                    }
                }
                Err(self.fail(host, format!("cannot resolve {host}: {e}")))
            }
        }
    }

    fn fail(&self, host: &str, msg: String) -> String {
        self.failures
            .insert(host.to_owned(), (Instant::now(), msg.clone()));
        msg
    }

    /// How many names are cached (for tests and the admin page).
    pub fn cached_names(&self) -> usize {
        self.cache.len()
    }
}

/// Where to dial: scheme, host (for SNI and Host) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dial {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

/// Pick the address to dial, enforcing the private-address rule.
pub fn choose_addr(
    addrs: &[IpAddr],
    allow_private: bool,
    dial: &Dial,
    route: Option<&str>,
) -> Result<SocketAddr, ProxyError> {
    let pick = if allow_private {
        addrs.first()
    } else {
        addrs.iter().find(|ip| !is_private(**ip))
    };
    match pick {
        Some(ip) => Ok(SocketAddr::new(*ip, dial.port)),
        None => Err(ProxyError::new(
            Code::PrivateAddress,
            format!(
                "{} resolves to a private or loopback address ({}); set allow_private_networks: true to allow it",
                dial.host,
                addrs
                    .first()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            ),
            route,
        )),
    }
}

/// Trust for an upstream with `upstream_ca_file`: the system roots plus that file.
/// (pingora's per-peer CA list replaces the default store, so both go in.)
pub type Trust = Arc<[WrappedX509]>;

pub fn load_trust(ca_file: &Path) -> Result<Trust, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut ders: Vec<Vec<u8>> = Vec::new();
    let extra = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
    let mut n_extra = 0;
    for c in extra {
        let c = c.map_err(|e| format!("bad PEM in {}: {e}", ca_file.display()))?;
        ders.push(c.as_ref().to_vec());
        n_extra += 1;
    }
    if n_extra == 0 {
        return Err(format!("{} holds no certificate", ca_file.display()));
    }
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        ders.push(c.as_ref().to_vec());
    }
    let certs: Vec<WrappedX509> = ders
        .into_iter()
        // pingora parses each certificate and panics on one it cannot parse: check first.
        .filter(|d| x509_parser::parse_x509_certificate(d).is_ok())
        .map(|d| WrappedX509::new(d, pingora::utils::tls::parse_x509))
        .collect();
    Ok(Arc::from(certs))
}

/// Upstream connection settings applied to every peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn build_peer(addr: SocketAddr, dial: &Dial, trust: Option<&Trust>) -> HttpPeer {
    let tls = dial.scheme == Scheme::Https;
    let mut peer = HttpPeer::new(addr, tls, dial.host.clone());
    peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
    peer.options.total_connection_timeout = Some(CONNECT_TIMEOUT);
    peer.options.read_timeout = Some(READ_TIMEOUT);
    peer.options.write_timeout = Some(READ_TIMEOUT);
    peer.options.idle_timeout = Some(IDLE_TIMEOUT);
    if let Some(t) = trust {
        peer.options.ca = Some(t.clone());
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(s.parse().expect("ip")), "{s} should be private");
        }
        for s in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_private(s.parse().expect("ip")), "{s} should be public");
        }
    }

    #[test]
    fn choose_respects_private_rule() {
        let dial = Dial {
            scheme: Scheme::Http,
            host: "x.test".into(),
            port: 80,
        };
        let addrs: Vec<IpAddr> = vec![
            "127.0.0.1".parse().expect("ip"),
            "1.1.1.1".parse().expect("ip"),
        ];
        let a = choose_addr(&addrs, false, &dial, None).expect("public one");
        assert_eq!(a.ip().to_string(), "1.1.1.1");
        let only_private: Vec<IpAddr> = vec!["10.0.0.1".parse().expect("ip")];
        let e = choose_addr(&only_private, false, &dial, Some("r")).expect_err("refused");
        assert_eq!(e.code, Code::PrivateAddress);
        assert!(choose_addr(&only_private, true, &dial, None).is_ok());
    }

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        let dns = Dns::system();
        let a = dns.resolve("127.0.0.1").await.expect("literal");
        assert_eq!(a.len(), 1);
        assert_eq!(dns.cached_names(), 0);
    }

    #[tokio::test]
    async fn localhost_resolves_from_hosts_file_and_is_cached() {
        let dns = Dns::system();
        let a = dns.resolve("localhost").await.expect("localhost");
        assert!(a.iter().all(|ip| ip.is_loopback()));
        assert_eq!(dns.cached_names(), 1);
    }
}
