//! Where a request goes: DNS (asynchronous, cached by TTL, bounded), the private-address
//! guard, the guard against dialing our own listeners, TLS trust, and pingora peers.
//!
//! `HttpPeer::new("host:port")` would resolve with a blocking call and panic on failure
//! (NOTES.md), so peers are always built from a socket address we resolved ourselves.
//! Time here is `tokio::time`, so the cache's fresh, stale, negative and refresh paths are
//! tested on paused time.

use crate::auth::BoxFuture;
use crate::errors::{Code, ProxyError};
use dashmap::DashMap;
use hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tollgate_rules::Scheme;

/// Shortest and longest time a DNS answer is trusted, whatever its TTL says.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3600);
/// An expired answer is still served (and refreshed in the background) for this long,
/// so a warm request never waits on DNS.
const STALE_GRACE: Duration = Duration::from_secs(300);
/// A failed lookup is remembered this long.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// Most names kept in the cache, and most failures remembered. Clients choose names
/// (`default_action: pass`, wildcard routes), so both are bounded.
pub const MAX_NAMES: usize = 10_000;

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

/// An answer: addresses and how long they may be trusted.
pub struct Answer {
    pub addrs: Vec<IpAddr>,
    pub ttl: Duration,
}

/// Looks names up. The real one is hickory with the system's configuration; tests
/// script answers.
pub trait Lookup: Send + Sync {
    /// `host` is absolute (ends with a dot).
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Answer, String>>;
}

struct Hickory(TokioResolver);

impl Lookup for Hickory {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Answer, String>> {
        Box::pin(async move {
            let answer = self.0.lookup_ip(host).await.map_err(|e| e.to_string())?;
            let ttl = answer
                .valid_until()
                .saturating_duration_since(std::time::Instant::now());
            Ok(Answer {
                addrs: answer.iter().collect(),
                ttl,
            })
        })
    }
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

/// An asynchronous resolver with a TTL-respecting, bounded cache shared by all requests.
pub struct Dns {
    resolver: Box<dyn Lookup>,
    cache: DashMap<String, Entry>,
    failures: DashMap<String, (Instant, String)>,
    /// Lookups sent (for tests and the status page).
    lookups: AtomicU64,
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
        Dns::with_lookup(Box::new(Hickory(builder.build())))
    }

    pub fn with_lookup(resolver: Box<dyn Lookup>) -> Arc<Dns> {
        Arc::new(Dns {
            resolver,
            cache: DashMap::new(),
            failures: DashMap::new(),
            lookups: AtomicU64::new(0),
        })
    }

    fn cached(&self, host: &str, now: Instant) -> Cached {
        if let Some(e) = self.cache.get(host) {
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
            if now < f.0 + NEGATIVE_TTL {
                return Cached::Failed(f.1.clone());
            }
        }
        Cached::Missing
    }

    /// Addresses for `host` and how long the answer is fresh (an IP literal is returned
    /// as is, with no lookup, fresh for ever).
    pub async fn resolve(self: &Arc<Self>, host: &str) -> Result<(Arc<[IpAddr]>, Instant), String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok((Arc::from([ip]), far_future()));
        }
        let now = Instant::now();
        match self.cached(host, now) {
            Cached::Fresh(a) => Ok((a, self.fresh_until(host).unwrap_or(now))),
            Cached::Stale(a) => {
                let me = self.clone();
                let host = host.to_owned();
                tokio::spawn(async move {
                    let _ = me.lookup(&host).await;
                });
                Ok((a, now))
            }
            Cached::Failed(msg) => Err(msg),
            Cached::Missing => self.lookup(host).await,
        }
    }

    fn fresh_until(&self, host: &str) -> Option<Instant> {
        self.cache.get(host).map(|e| e.valid_until)
    }

    async fn lookup(&self, host: &str) -> Result<(Arc<[IpAddr]>, Instant), String> {
        // A trailing dot makes the name absolute: no search-domain guessing.
        let fqdn = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        self.lookups.fetch_add(1, Ordering::Relaxed);
        match self.resolver.lookup(&fqdn).await {
            Ok(answer) if !answer.addrs.is_empty() => {
                let addrs: Arc<[IpAddr]> = answer.addrs.into();
                let valid_until = Instant::now() + answer.ttl.clamp(MIN_TTL, MAX_TTL);
                self.make_room();
                self.cache.insert(
                    host.to_owned(),
                    Entry {
                        addrs: addrs.clone(),
                        valid_until,
                        refreshing: AtomicBool::new(false),
                    },
                );
                self.failures.remove(host);
                Ok((addrs, valid_until))
            }
            other => {
                let msg = match other {
                    Ok(_) => format!("{host} has no addresses"),
                    Err(e) => format!("cannot resolve {host}: {e}"),
                };
                // Keep serving a stale answer if there is one.
                if let Some(entry) = self.cache.get(host) {
                    entry.refreshing.store(false, Ordering::Release);
                    if Instant::now() < entry.valid_until + STALE_GRACE {
                        return Ok((entry.addrs.clone(), Instant::now()));
                    }
                }
                Err(self.fail(host, msg))
            }
        }
    }

    /// Keeps the cache under [`MAX_NAMES`]: drops answers past their grace first, then
    /// the half that expire soonest.
    fn make_room(&self) {
        if self.cache.len() < MAX_NAMES {
            return;
        }
        let now = Instant::now();
        self.cache.retain(|_, e| now < e.valid_until + STALE_GRACE);
        if self.cache.len() < MAX_NAMES {
            return;
        }
        let mut ages: Vec<(Instant, String)> = self
            .cache
            .iter()
            .map(|e| (e.valid_until, e.key().clone()))
            .collect();
        ages.sort();
        for (_, host) in ages.iter().take(ages.len() / 2 + 1) {
            self.cache.remove(host);
        }
    }

    fn fail(&self, host: &str, msg: String) -> String {
        if self.failures.len() >= MAX_NAMES {
            let now = Instant::now();
            self.failures.retain(|_, f| now < f.0 + NEGATIVE_TTL);
        }
        if self.failures.len() < MAX_NAMES {
            self.failures
                .insert(host.to_owned(), (Instant::now(), msg.clone()));
        }
        msg
    }

    /// How many names are cached.
    pub fn cached_names(&self) -> usize {
        self.cache.len()
    }

    /// How many failures are remembered.
    pub fn remembered_failures(&self) -> usize {
        self.failures.len()
    }

    /// How many lookups were sent.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// Where to dial: scheme, host (for SNI and Host) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dial {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

/// The addresses this process listens on; an upstream address among them would loop.
#[derive(Debug, Clone, Default)]
pub struct OwnListeners {
    exact: Vec<SocketAddr>,
    /// Ports of listeners on an unspecified address (`0.0.0.0`, `::`): any local address.
    any_ip_ports: Vec<u16>,
    local_ips: Vec<IpAddr>,
}

impl OwnListeners {
    pub fn new(listeners: &[SocketAddr]) -> OwnListeners {
        let mut own = OwnListeners::default();
        for l in listeners {
            if l.ip().is_unspecified() {
                own.any_ip_ports.push(l.port());
            } else {
                own.exact.push(*l);
            }
        }
        if !own.any_ip_ports.is_empty() {
            own.local_ips = local_ips();
        }
        own
    }

    /// Would dialing `addr` reach one of our own listeners?
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.exact
            .iter()
            .any(|l| l.port() == addr.port() && l.ip().to_canonical() == ip)
            || (self.any_ip_ports.contains(&addr.port())
                && (ip.is_loopback() || ip.is_unspecified() || self.local_ips.contains(&ip)))
    }
}

/// The addresses of this host's interfaces.
fn local_ips() -> Vec<IpAddr> {
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs
            .filter_map(|a| a.address)
            .filter_map(|s| {
                s.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list local addresses; only loopback counts as this host");
            Vec::new()
        }
    }
}

/// Pick the address to dial, enforcing the private-address rule and refusing our own
/// listeners. The client is told what was refused, never the address (that stays in the
/// error's detail, for the log).
pub fn choose_addr(
    addrs: &[IpAddr],
    port: u16,
    allow_private: bool,
    own: &OwnListeners,
    host: &str,
    route: Option<&str>,
) -> Result<SocketAddr, ProxyError> {
    let pick = if allow_private {
        addrs.first()
    } else {
        addrs.iter().find(|ip| !is_private(**ip))
    };
    match pick {
        Some(ip) => {
            let addr = SocketAddr::new(*ip, port);
            if own.contains(addr) {
                return Err(ProxyError::new(
                    Code::ForwardingLoop,
                    format!("{host} is this proxy: the request would loop"),
                    route,
                )
                .with_detail(format!("{host} resolves to our own listener {addr}")));
            }
            Ok(addr)
        }
        None => Err(ProxyError::new(
            Code::PrivateAddress,
            format!(
                "{host} resolves to a private or loopback address; set allow_private_networks: true to allow it"
            ),
            route,
        )
        .with_detail(format!(
            "{host} resolves to {}",
            addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ))),
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

/// A pingora peer for `addr`, with TLS (SNI = `host`) when `tls`, the route's trust and
/// timeouts. Peers with a custom trust are kept apart in pingora's pool (`group_key`),
/// so a connection verified against one route's CA never serves another's.
pub fn build_peer(
    addr: SocketAddr,
    tls: bool,
    host: &str,
    trust: Option<&Trust>,
    connect_timeout: Duration,
    read_timeout: Duration,
    idle_timeout: Duration,
) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, tls, host.to_owned());
    peer.options.connection_timeout = Some(connect_timeout);
    peer.options.total_connection_timeout = Some(connect_timeout);
    peer.options.read_timeout = Some(read_timeout);
    peer.options.write_timeout = Some(read_timeout);
    peer.options.idle_timeout = Some(idle_timeout);
    if let Some(t) = trust {
        peer.options.ca = Some(t.clone());
        peer.group_key = Arc::as_ptr(t).cast::<u8>() as u64;
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn choose_respects_private_rule_and_hides_addresses() {
        let own = OwnListeners::default();
        let addrs = [ip("127.0.0.1"), ip("1.1.1.1")];
        let a = choose_addr(&addrs, 80, false, &own, "x.test", Some("r")).expect("public one");
        assert_eq!(a.ip(), ip("1.1.1.1"));
        let e = choose_addr(&[ip("10.0.0.1")], 80, false, &own, "x.test", Some("r"))
            .expect_err("refused");
        assert_eq!(e.code, Code::PrivateAddress);
        assert!(!e.message.contains("10.0.0.1"), "{}", e.message);
        assert!(e.detail.as_deref().is_some_and(|d| d.contains("10.0.0.1")));
        assert!(choose_addr(&[ip("10.0.0.1")], 80, true, &own, "x.test", Some("r")).is_ok());
    }

    #[test]
    fn own_listeners_are_refused() {
        let own = OwnListeners::new(&[
            "127.0.0.1:3128".parse().expect("addr"),
            "0.0.0.0:9901".parse().expect("addr"),
        ]);
        assert!(own.contains("127.0.0.1:3128".parse().expect("addr")));
        assert!(!own.contains("127.0.0.1:3129".parse().expect("addr")));
        assert!(!own.contains("127.0.0.2:3128".parse().expect("addr")));
        assert!(own.contains("127.0.0.5:9901".parse().expect("addr")));
        assert!(own.contains("[::ffff:127.0.0.1]:3128".parse().expect("addr")));
        let e = choose_addr(&[ip("127.0.0.1")], 3128, true, &own, "me.test", Some("r"))
            .expect_err("loop");
        assert_eq!(e.code, Code::ForwardingLoop);
    }

    /// Per name, the results to give in turn (the last repeats).
    type Script = Vec<Result<Vec<IpAddr>, String>>;

    /// Answers from a script.
    struct Scripted {
        answers: Mutex<std::collections::HashMap<String, Script>>,
    }

    impl Lookup for Scripted {
        fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Answer, String>> {
            Box::pin(async move {
                let mut m = self.answers.lock().expect("lock");
                let list = m.get_mut(host).ok_or("NXDOMAIN".to_owned())?;
                let r = if list.len() > 1 {
                    list.remove(0)
                } else {
                    list[0].clone()
                };
                r.map(|addrs| Answer {
                    addrs,
                    ttl: Duration::from_secs(30),
                })
            })
        }
    }

    fn scripted(entries: &[(&str, Script)]) -> Arc<Dns> {
        Dns::with_lookup(Box::new(Scripted {
            answers: Mutex::new(
                entries
                    .iter()
                    .map(|(h, a)| (format!("{h}."), a.clone()))
                    .collect(),
            ),
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_then_refreshed() {
        let dns = scripted(&[(
            "a.test",
            vec![Ok(vec![ip("1.1.1.1")]), Ok(vec![ip("2.2.2.2")])],
        )]);
        let (a, _) = dns.resolve("a.test").await.expect("first");
        assert_eq!(&a[..], &[ip("1.1.1.1")]);
        assert_eq!(dns.lookups(), 1);
        dns.resolve("a.test").await.expect("cached");
        assert_eq!(dns.lookups(), 1, "fresh: no lookup");
        tokio::time::advance(Duration::from_secs(31)).await;
        let (a, _) = dns.resolve("a.test").await.expect("stale");
        assert_eq!(&a[..], &[ip("1.1.1.1")], "stale answer served at once");
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(dns.lookups(), 2, "refreshed in the background");
        let (a, _) = dns.resolve("a.test").await.expect("refreshed");
        assert_eq!(&a[..], &[ip("2.2.2.2")]);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_remembered_briefly() {
        let dns = scripted(&[]);
        assert!(dns.resolve("gone.test").await.is_err());
        assert!(dns.resolve("gone.test").await.is_err());
        assert_eq!(dns.lookups(), 1, "negative answer remembered");
        tokio::time::advance(NEGATIVE_TTL + Duration::from_millis(1)).await;
        assert!(dns.resolve("gone.test").await.is_err());
        assert_eq!(dns.lookups(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_answer_survives_a_failed_refresh_within_grace() {
        let dns = scripted(&[(
            "a.test",
            vec![Ok(vec![ip("1.1.1.1")]), Err("SERVFAIL".into())],
        )]);
        dns.resolve("a.test").await.expect("first");
        tokio::time::advance(Duration::from_secs(31)).await;
        dns.resolve("a.test").await.expect("stale");
        tokio::task::yield_now().await;
        let (a, _) = dns.resolve("a.test").await.expect("still stale");
        assert_eq!(&a[..], &[ip("1.1.1.1")]);
        tokio::time::advance(STALE_GRACE + Duration::from_secs(31)).await;
        assert!(dns.resolve("a.test").await.is_err(), "beyond grace");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded() {
        struct Any;
        impl Lookup for Any {
            fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Answer, String>> {
                Box::pin(async move {
                    if host.starts_with("bad") {
                        return Err("NXDOMAIN".into());
                    }
                    Ok(Answer {
                        addrs: vec![IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1))],
                        ttl: Duration::from_secs(60),
                    })
                })
            }
        }
        let dns = Dns::with_lookup(Box::new(Any));
        for i in 0..(MAX_NAMES + 500) {
            dns.resolve(&format!("n{i}.test")).await.expect("answer");
            let _ = dns.resolve(&format!("bad{i}.test")).await;
        }
        assert!(dns.cached_names() <= MAX_NAMES, "{}", dns.cached_names());
        assert!(
            dns.remembered_failures() <= MAX_NAMES,
            "{}",
            dns.remembered_failures()
        );
        // The newest name is still cached.
        let before = dns.lookups();
        dns.resolve(&format!("n{}.test", MAX_NAMES + 499))
            .await
            .expect("cached");
        assert_eq!(dns.lookups(), before);
    }

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        let dns = Dns::system();
        let (a, _) = dns.resolve("127.0.0.1").await.expect("literal");
        assert_eq!(a.len(), 1);
        assert_eq!(dns.cached_names(), 0);
    }

    #[tokio::test]
    async fn localhost_resolves_from_hosts_file_and_is_cached() {
        let dns = Dns::system();
        let (a, _) = dns.resolve("localhost").await.expect("localhost");
        assert!(a.iter().all(|ip| ip.is_loopback()));
        assert_eq!(dns.cached_names(), 1);
    }
}
