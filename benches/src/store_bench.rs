//! `tollgate-bench token-store`: what the token store costs and saves (BENCHMARKS.md,
//! "Token store"). Starts `redis-server` (password, no persistence), the built-in upstream
//! and token endpoint, and tollgate processes with and without `token_store`, all on
//! loopback, then measures:
//!
//! 1. the warm path with a store against the warm path without one: `--pairs`
//!    alternating closed-loop runs of two processes (same config but `token_store`);
//! 2. the cold path: the first request through a fresh process, with the token already
//!    in Redis (one round trip, then adopted), with an empty store (read, lock, token
//!    request, write) and without a store (token request), each against a warm request;
//! 3. the cold storm: `--replicas` fresh processes on one empty store, `--storm`
//!    concurrent first requests across them: token requests made.
//!
//! Reports figures; asserts nothing.

use crate::gen;
use crate::paired::{self, Pairing, Side};
use crate::peers::{self, Route, Running};
use crate::probe;
use crate::procs::{self, Proc};
use crate::servers::{self, Behaviour, Tokens};
use crate::tunnel::Transport;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct Options {
    pub tollgate: PathBuf,
    pub pairs: usize,
    pub pair_duration: Duration,
    pub connections: usize,
    pub cold: usize,
    pub replicas: usize,
    pub storm: usize,
    pub idp_delay: Duration,
    pub keep_dir: bool,
}

const PASSWORD: &str = "bench-redis-password";
const KEY: &str = "YmVuY2gtc3RvcmUta2V5LTAxMjM0NTY3ODlhYmNkZWY=";

pub fn run(o: &Options) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("tollgate-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = measure(o, &dir);
    if o.keep_dir || result.is_err() {
        eprintln!("work directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn measure(o: &Options, dir: &Path) -> Result<(), String> {
    let redis_bin = procs::which("redis-server").ok_or("redis-server is not installed")?;
    let port = procs::free_port()?;
    let redis_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(redis_bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir);
    let log = dir.join("redis.log");
    let mut redis = Proc::spawn("redis-server", cmd, &log, "TERM")?;
    redis.wait_listening(redis_addr, Duration::from_secs(10), &log)?;

    let upstream = servers::start(SocketAddr::from(([127, 0, 0, 1], 0)), Behaviour::Fast)
        .map_err(|e| format!("upstream: {e}"))?;
    let tokens = Tokens::new(Duration::ZERO);
    let idp = servers::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Behaviour::TokenEndpoint(tokens.clone()),
    )
    .map_err(|e| format!("token endpoint: {e}"))?;
    std::fs::write(dir.join("store-key"), KEY).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("redis-password"), PASSWORD).map_err(|e| e.to_string())?;
    let host = upstream.addr.to_string();
    let routes = [Route::inject("inject", host.clone())];
    let store = |prefix: &str| {
        format!(
            "token_store:\n  redis:\n    url: redis://{redis_addr}/0\n    password_file: {pw}\n    key_prefix: \"{prefix}\"\n  encryption_key_files: [{key}]\n",
            pw = dir.join("redis-password").display(),
            key = dir.join("store-key").display(),
        )
    };
    let start = |name: &str, extra: &str| -> Result<Running, String> {
        peers::tollgate_with(dir, name, &o.tollgate, 1, idp.addr, &routes, extra)
    };
    let first = |tg: &Running| -> Result<f64, String> {
        let t0 = Instant::now();
        let (status, _) = probe::get(tg.addr, "/first", &host, &[])?;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        if status != 200 {
            return Err(format!("first request: {status}"));
        }
        Ok(us)
    };
    let warm_us = |tg: &Running| -> Result<f64, String> {
        let mut v = Vec::new();
        for _ in 0..50 {
            v.push(first(tg)?);
        }
        Ok(median(v))
    };

    // 1. Warm path, paired.
    let mut plain = start("tollgate-plain", "")?;
    let mut shared = start("tollgate-store", &store("bench-warm:"))?;
    first(&plain)?;
    first(&shared)?;
    let request = gen::request_bytes(false, "http", &host, "/warm", &[]);
    let pairing = Pairing {
        pid: plain.proc.pid,
        addr: plain.addr,
        mode: "gateway",
        base: Side {
            name: "tollgate-inject".into(),
            request: request.clone(),
            at: None,
            transport: Transport::Plain,
        },
        other: Side {
            name: "tollgate-inject+store".into(),
            request,
            at: Some((shared.proc.pid, shared.addr)),
            transport: Transport::Plain,
        },
    };
    let ticks = procs::clock_ticks();
    let paired = paired::run(&pairing, o.pairs, o.pair_duration, o.connections, 1, ticks)?;
    println!("warm path, paired closed-loop runs (64 connections unless --connections):");
    println!("  {}", paired::line(&paired));

    // 2. Cold path: the first request through a fresh process.
    let base = warm_us(&shared)?;
    let (mut adopt, mut empty, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..o.cold {
        let mut tg = start(&format!("cold-adopt-{i}"), &store("bench-warm:"))?;
        adopt.push(first(&tg)?);
        tg.proc.stop();
        let mut tg = start(
            &format!("cold-empty-{i}"),
            &store(&format!("bench-empty-{i}:")),
        )?;
        empty.push(first(&tg)?);
        tg.proc.stop();
        let mut tg = start(&format!("cold-plain-{i}"), "")?;
        alone.push(first(&tg)?);
        tg.proc.stop();
    }
    let (adopt, empty, alone) = (median(adopt), median(empty), median(alone));
    println!(
        "cold path, first request through a fresh process (median of {} each; a warm request: {base:.0} µs):",
        o.cold
    );
    println!(
        "  token in Redis (read + adopt):            {adopt:.0} µs  (+{:.0} µs over a warm request)",
        adopt - base
    );
    println!(
        "  no store (token request):                 {alone:.0} µs  (+{:.0} µs)",
        alone - base
    );
    println!(
        "  empty store (read, lock, request, write): {empty:.0} µs  (+{:.0} µs over no store)",
        empty - alone
    );

    // 3. Cold storm across replicas on an empty store.
    tokens.delay_us.store(
        u64::try_from(o.idp_delay.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    let before = tokens.issued.load(Ordering::SeqCst);
    let mut fleet = Vec::new();
    for i in 0..o.replicas {
        fleet.push(start(&format!("storm-{i}"), &store("bench-storm:"))?);
    }
    let addrs: Vec<SocketAddr> = fleet.iter().map(|t| t.addr).collect();
    let (ok, failed) = storm(&addrs, o.storm, &host)?;
    let made = tokens.issued.load(Ordering::SeqCst) - before;
    println!(
        "cold storm: {} replicas, {} concurrent first requests, token endpoint answering after {:?}: {made} token request(s), {ok} ok, {failed} failed",
        o.replicas, o.storm, o.idp_delay
    );
    for mut t in fleet {
        t.proc.stop();
    }
    plain.proc.stop();
    shared.proc.stop();
    redis.stop();
    Ok(())
}

/// `n` requests sent at once, spread over `addrs`: (ok, failed).
fn storm(addrs: &[SocketAddr], n: usize, host: &str) -> Result<(usize, usize), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let request = gen::request_bytes(false, "http", host, "/storm", &[]);
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut streams = Vec::with_capacity(n);
        for i in 0..n {
            let s = tokio::net::TcpStream::connect(addrs[i % addrs.len()])
                .await
                .map_err(|e| format!("connect: {e}"))?;
            streams.push(s);
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::with_capacity(n);
        for mut s in streams {
            let mut rx = rx.clone();
            let req = request.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let _ = rx.wait_for(|go| *go).await;
                s.write_all(&req).await.map_err(|e| e.to_string())?;
                let mut buf = Vec::with_capacity(4096);
                if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed".to_string());
                }
                let (status, _) = gen::read_response_into(&mut s, &mut buf)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<u16, String>(status)
            }));
        }
        let _ = tx.send(true);
        let (mut ok, mut failed) = (0, 0);
        for t in tasks {
            match t.await {
                Ok(Ok(200)) => ok += 1,
                _ => failed += 1,
            }
        }
        Ok((ok, failed))
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
