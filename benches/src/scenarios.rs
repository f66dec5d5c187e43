//! Scenario benches, each against a fresh tollgate with its own token endpoint:
//! - **cold-cache storm**: N connections send their first request at once to an inject
//!   route whose token is not cached yet (the token endpoint takes `--idp-delay`):
//!   how many token requests were made, and time to first byte;
//! - **401 storm**: under closed-loop load, the upstream (answering after 2 ms, so many
//!   requests are in flight) starts rejecting the current token: requests failed,
//!   upstream 401s, replays, token requests;
//! - **idle connections**: N keep-alive connections held open (each after one
//!   request), with the proxy's RSS; and RSS at 1,000 active connections.

use crate::gen::{self, Plan};
use crate::harness::Options;
use crate::peers::{self, Route};
use crate::probe;
use crate::procs::{self, Cpu};
use crate::report::median;
use crate::servers::{self, Behaviour, Tokens};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub struct Env<'a> {
    pub dir: &'a Path,
    pub tollgate: &'a Path,
    /// Other tollgate builds (`NAME`, path) measured in the idle/active scenario too.
    pub variants: &'a [(String, std::path::PathBuf)],
    pub threads: usize,
    pub backend: SocketAddr,
    pub ticks: f64,
}

/// A peer for the idle-connections comparison.
pub struct IdleTarget {
    pub name: String,
    pub pid: u32,
    pub addr: SocketAddr,
    pub request: Vec<u8>,
}

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub cold_storm: Option<ColdStorm>,
    pub storm_401: Option<Storm401>,
    pub idle: Vec<Idle>,
    pub active: Vec<Active>,
}

#[derive(Debug, Serialize)]
pub struct ColdStorm {
    pub requests: usize,
    pub idp_delay_ms: f64,
    pub token_requests: u64,
    pub ok: usize,
    pub failed: usize,
    pub ttfb_p50_ms: f64,
    pub ttfb_p99_ms: f64,
    pub ttfb_max_ms: f64,
    pub all_done_ms: f64,
    /// tollgate_token_cache_total{result="wait"}: requests that waited for the fetch.
    pub waited: f64,
}

#[derive(Debug, Serialize)]
pub struct Storm401 {
    pub connections: usize,
    pub seconds: f64,
    pub revoked_after_s: f64,
    /// The upstream's answer delay (requests in flight at the revocation).
    pub upstream_delay_ms: f64,
    pub requests: u64,
    pub failed: u64,
    /// 401s the upstream sent (the requests in flight with the revoked token).
    pub upstream_401s: u64,
    pub replayed: f64,
    pub second_401: f64,
    /// Token requests after the revocation (the first, warm-up token excluded).
    pub token_requests: u64,
}

#[derive(Debug, Serialize)]
pub struct Idle {
    pub target: String,
    pub connections: usize,
    pub held: usize,
    pub rss_before_mib: f64,
    pub rss_mib: f64,
    pub kib_per_connection: f64,
}

#[derive(Debug, Serialize)]
pub struct Active {
    pub target: String,
    pub connections: usize,
    pub rps: f64,
    pub p99_ms: f64,
    pub rss_peak_mib: f64,
    pub cpu_us_per_req: f64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run_all(
    env: &Env,
    o: &Options,
    peers_idle: &[IdleTarget],
    notes: &mut Vec<String>,
) -> Results {
    let mut r = Results::default();
    println!(
        "\n== scenario: cold-cache storm ({} concurrent first requests, IdP answers in {:?})",
        o.storm, o.idp_delay
    );
    match cold_storm(env, o.storm, o.idp_delay) {
        Ok(c) => {
            println!(
                "  token requests: {}  ok: {}  failed: {}  waited: {}  TTFB p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  all done in {:.1} ms",
                c.token_requests, c.ok, c.failed, c.waited, c.ttfb_p50_ms, c.ttfb_p99_ms, c.ttfb_max_ms, c.all_done_ms
            );
            r.cold_storm = Some(c);
        }
        Err(e) => {
            println!("  FAILED: {e}");
            notes.push(format!("cold storm failed: {e}"));
        }
    }
    println!(
        "\n== scenario: 401 storm ({} connections, closed loop, token revoked at 1 s of {} s)",
        o.connections, o.storm_401_seconds
    );
    match storm_401(env, o.connections, o.storm_401_seconds) {
        Ok(s) => {
            println!(
                "  requests: {}  failed: {}  upstream 401s: {}  replayed: {}  second 401s: {}  token requests: {}",
                s.requests, s.failed, s.upstream_401s, s.replayed, s.second_401, s.token_requests
            );
            r.storm_401 = Some(s);
        }
        Err(e) => {
            println!("  FAILED: {e}");
            notes.push(format!("401 storm failed: {e}"));
        }
    }
    if !o.idle.is_empty() {
        println!(
            "\n== scenario: idle keep-alive connections held {:?}, and {} active",
            o.idle, o.active
        );
        match idle_and_active(env, o, peers_idle) {
            Ok((idle, active)) => {
                for i in &idle {
                    println!(
                        "  {:<16} {:>6} held ({:>6} ok)  RSS {:>6.1} MiB (before {:>5.1})  {:>5.1} KiB/conn",
                        i.target, i.connections, i.held, i.rss_mib, i.rss_before_mib, i.kib_per_connection
                    );
                }
                for a in &active {
                    println!(
                        "  {} at {} active connections: {:.0} req/s, p99 {:.2} ms, peak RSS {:.1} MiB, CPU {:.1} µs/req",
                        a.target, a.connections, a.rps, a.p99_ms, a.rss_peak_mib, a.cpu_us_per_req
                    );
                }
                r.idle = idle;
                r.active = active;
            }
            Err(e) => {
                println!("  FAILED: {e}");
                notes.push(format!("idle connections failed: {e}"));
            }
        }
    }
    r
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

fn inject_route(host: String) -> Route {
    Route::inject("inject", host)
}

fn cold_storm(env: &Env, n: usize, delay: Duration) -> Result<ColdStorm, String> {
    let tokens = Tokens::new(delay);
    let idp = servers::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Behaviour::TokenEndpoint(tokens.clone()),
    )
    .map_err(|e| format!("token endpoint: {e}"))?;
    let host = env.backend.to_string();
    let tg = peers::tollgate(
        env.dir,
        "tollgate-cold",
        env.tollgate,
        env.threads,
        idp.addr,
        &[inject_route(host.clone())],
        &peers::Sections::default(),
    )?;
    let request = gen::request_bytes(false, "http", &host, "/cold", &[]);
    let rt = runtime()?;
    let local = tokio::task::LocalSet::new();
    let (ttfb, ok, failed, all_done) = local.block_on(&rt, async {
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            let s = TcpStream::connect(tg.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_nodelay(true);
            streams.push(s);
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::with_capacity(n);
        for mut s in streams {
            let mut rx = rx.clone();
            let req = request.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let _ = rx.wait_for(|go| *go).await;
                let t0 = Instant::now();
                s.write_all(&req).await.map_err(|e| e.to_string())?;
                let mut buf = Vec::with_capacity(4096);
                use tokio::io::AsyncReadExt;
                if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed".to_string());
                }
                let ttfb = t0.elapsed();
                let (status, _) = gen::read_response_into(&mut s, &mut buf)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((ttfb, status))
            }));
        }
        let start = Instant::now();
        let _ = tx.send(true);
        let mut ttfb = Vec::with_capacity(n);
        let (mut ok, mut failed) = (0usize, 0usize);
        for t in tasks {
            match t.await {
                Ok(Ok((d, 200))) => {
                    ok += 1;
                    ttfb.push(d.as_secs_f64() * 1000.0);
                }
                Ok(Ok((d, _))) => {
                    failed += 1;
                    ttfb.push(d.as_secs_f64() * 1000.0);
                }
                _ => failed += 1,
            }
        }
        Ok::<_, String>((ttfb, ok, failed, start.elapsed()))
    })?;
    let metrics = tg
        .admin
        .map(|a| {
            probe::get(a, "/metrics", "127.0.0.1", &[])
                .map(|(_, b)| b)
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let mut sorted = ttfb.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        if sorted.is_empty() {
            0.0
        } else {
            sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
        }
    };
    Ok(ColdStorm {
        requests: n,
        idp_delay_ms: delay.as_secs_f64() * 1000.0,
        token_requests: tokens.issued.load(Ordering::SeqCst),
        ok,
        failed,
        ttfb_p50_ms: median(ttfb).unwrap_or(0.0),
        ttfb_p99_ms: pct(0.99),
        ttfb_max_ms: sorted.last().copied().unwrap_or(0.0),
        all_done_ms: all_done.as_secs_f64() * 1000.0,
        waited: 0.0 + probe::metric(&metrics, "tollgate_token_cache_total", &["result=\"wait\""]),
    })
}

/// The revocable upstream answers after this long, so that many requests are in flight
/// with the old token when it is revoked.
const STORM_UPSTREAM_DELAY: Duration = Duration::from_millis(2);

fn storm_401(env: &Env, connections: usize, seconds: u64) -> Result<Storm401, String> {
    let tokens = Tokens::new(Duration::ZERO);
    tokens.upstream_delay_us.store(
        u64::try_from(STORM_UPSTREAM_DELAY.as_micros()).unwrap_or(0),
        Ordering::Relaxed,
    );
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let idp = servers::start(any, Behaviour::TokenEndpoint(tokens.clone()))
        .map_err(|e| format!("token endpoint: {e}"))?;
    let up = servers::start(any, Behaviour::Revocable(tokens.clone()))
        .map_err(|e| format!("upstream: {e}"))?;
    let host = up.addr.to_string();
    let tg = peers::tollgate(
        env.dir,
        "tollgate-401",
        env.tollgate,
        env.threads,
        idp.addr,
        &[inject_route(host.clone())],
        &peers::Sections::default(),
    )?;
    let (status, _) = probe::get(tg.addr, "/warm", &host, &[])?;
    if status != 200 {
        return Err(format!("warm-up request answered {status}"));
    }
    let warm_tokens = tokens.issued.load(Ordering::SeqCst);
    let mut plan = Plan::new(
        tg.addr,
        gen::request_bytes(false, "http", &host, "/storm", &[]),
    );
    plan.connections = connections;
    plan.warmup = Duration::ZERO;
    plan.duration = Duration::from_secs(seconds.max(2));
    let revoke_after = Duration::from_secs(1);
    let t = std::thread::spawn(move || gen::run(&plan));
    std::thread::sleep(revoke_after);
    tokens.revoke();
    let (summary, _) = t.join().map_err(|_| "generator panicked".to_string())??;
    let metrics = tg
        .admin
        .map(|a| {
            probe::get(a, "/metrics", "127.0.0.1", &[])
                .map(|(_, b)| b)
                .unwrap_or_default()
        })
        .unwrap_or_default();
    Ok(Storm401 {
        connections,
        seconds: summary.seconds,
        revoked_after_s: revoke_after.as_secs_f64(),
        upstream_delay_ms: STORM_UPSTREAM_DELAY.as_secs_f64() * 1000.0,
        requests: summary.statuses.values().sum(),
        failed: summary.non_2xx + summary.errors,
        upstream_401s: tokens.rejected.load(Ordering::SeqCst),
        replayed: 0.0
            + probe::metric(
                &metrics,
                "tollgate_replays_total",
                &["outcome=\"replayed\""],
            ),
        second_401: 0.0
            + probe::metric(
                &metrics,
                "tollgate_replays_total",
                &["outcome=\"second_401\""],
            ),
        token_requests: tokens.issued.load(Ordering::SeqCst) - warm_tokens,
    })
}

/// Open `n` connections to `addr`, send `request` on each (64 at a time, so the proxy
/// reuses a few upstream connections), and return those that got a 200.
async fn hold(addr: SocketAddr, request: &[u8], n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(64);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            let req = request.to_vec();
            tasks.push(tokio::task::spawn_local(async move {
                let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                    .await
                    .ok()?
                    .ok()?;
                let mut buf = Vec::with_capacity(1024);
                let answer = tokio::time::timeout(
                    Duration::from_secs(5),
                    gen::exchange(&mut s, &req, &mut buf),
                )
                .await;
                match answer {
                    Ok(Ok((200, true))) => Some(s),
                    _ => None,
                }
            }));
        }
        for t in tasks {
            if let Ok(Some(s)) = t.await {
                held.push(s);
            }
        }
        i += batch;
    }
    held
}

fn idle_one(
    rt: &tokio::runtime::Runtime,
    name: &str,
    pid: u32,
    addr: SocketAddr,
    request: &[u8],
    n: usize,
) -> Idle {
    let local = tokio::task::LocalSet::new();
    let before = procs::rss_kib(pid).0;
    let held = local.block_on(rt, hold(addr, request, n));
    std::thread::sleep(Duration::from_millis(500));
    let now = procs::rss_kib(pid).0;
    let count = held.len();
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    Idle {
        target: name.to_string(),
        connections: n,
        held: count,
        rss_before_mib: mib(before),
        rss_mib: mib(now),
        kib_per_connection: if count > 0 {
            (now as f64 - before as f64) / count as f64
        } else {
            0.0
        },
    }
}

fn idle_and_active(
    env: &Env,
    o: &Options,
    peers_idle: &[IdleTarget],
) -> Result<(Vec<Idle>, Vec<Active>), String> {
    let tokens = Tokens::new(Duration::ZERO);
    let idp = servers::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Behaviour::TokenEndpoint(tokens),
    )
    .map_err(|e| format!("token endpoint: {e}"))?;
    let host = env.backend.to_string();
    let request = gen::request_bytes(false, "http", &host, "/idle", &[]);
    let rt = runtime()?;
    let mut out = Vec::new();
    let mut active = Vec::new();
    let builds = std::iter::once(("tollgate-inject".to_string(), env.tollgate.to_path_buf()))
        .chain(
            env.variants
                .iter()
                .map(|(n, p)| (format!("tollgate-inject@{n}"), p.clone())),
        );
    for (name, bin) in builds {
        // A fresh process for each build, so its peak RSS is this scenario's.
        let tg = peers::tollgate(
            env.dir,
            &format!("{}-idle", name.replace('@', "-")),
            &bin,
            env.threads,
            idp.addr,
            &[inject_route(host.clone())],
            &peers::Sections::default(),
        )?;
        for (k, &n) in o.idle.iter().enumerate() {
            out.push(idle_one(&rt, &name, tg.proc.pid, tg.addr, &request, n));
            // After the first size: the same process under load at `active` connections.
            if k == 0 && o.active > 0 {
                let mut plan = Plan::new(tg.addr, request.clone());
                plan.connections = o.active;
                plan.warmup = Duration::from_millis(500);
                plan.duration = o
                    .duration
                    .min(Duration::from_secs(3))
                    .max(Duration::from_secs(1));
                let before = Cpu::of(tg.proc.pid, env.ticks);
                let (s, _) = gen::run(&plan)?;
                let cpu = Cpu::of(tg.proc.pid, env.ticks).since(before);
                active.push(Active {
                    target: name.clone(),
                    connections: o.active,
                    rps: s.rps,
                    p99_ms: s.p99_us / 1000.0,
                    rss_peak_mib: mib(procs::rss_kib(tg.proc.pid).1),
                    cpu_us_per_req: if s.responses > 0 {
                        cpu.total() * 1e6 / s.responses as f64
                    } else {
                        0.0
                    },
                });
            }
        }
    }
    for p in peers_idle {
        for &n in &o.idle {
            out.push(idle_one(&rt, &p.name, p.pid, p.addr, &p.request, n));
        }
    }
    Ok((out, active))
}
