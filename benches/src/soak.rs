//! `tollgate-bench soak`: a long run of mixed traffic through one release tollgate, with
//! faults injected on purpose, watching for leaks and for failures the faults do not
//! explain.
//!
//! Running on 127.0.0.1: the built-in upstream (`ok`, or 1 MiB for `/big`) behind a
//! `pass` route; an upstream that rejects revoked tokens with 401 behind an `inject`
//! route; the built-in token endpoint, failing `--token-fail-permille` of its requests with
//! 503 and issuing tokens that live `--token-lifetime`; and tollgate. For `--duration`:
//! - `pass` clients (GET) and `inject` clients (GET, and POST with a body, so replays
//!   carry one) on keep-alive connections, reconnecting every 100 requests;
//! - one client reading `/big` whole, and clients that leave mid-head, mid-body and
//!   mid-response;
//! - every `--revoke-every` the upstream revokes every token issued so far (in-flight
//!   requests get 401 and are replayed); every `--reload-every` the config is reloaded,
//!   alternately by rewriting the file (a route added) and by SIGHUP.
//!
//! Every `--sample-every` it records tollgate's RSS, open descriptors (`/proc/PID/fd`),
//! threads, and from `/metrics` the requests, client disconnects by stage, replays,
//! reloads and token requests. At the end, after the traffic stops and the proxy idles
//! for a few seconds, one more sample; then it prints the samples, the verdict on RSS and
//! descriptors (the rule is printed with it), and the failures by kind, each marked as
//! explained by an injected fault or not. It fails (non-zero exit) on any unexplained
//! failure, growth, or a proxy that died.

use crate::gen;
use crate::peers::{self, Route};
use crate::probe;
use crate::procs;
use crate::servers::{self, Behaviour, Tokens, INJECTED_FAILURE};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Options {
    pub duration: Duration,
    pub sample_every: Duration,
    pub reload_every: Duration,
    pub revoke_every: Duration,
    pub token_fail_permille: u64,
    pub token_lifetime: Duration,
    pub pass_clients: usize,
    pub inject_clients: usize,
    /// Pause between two requests of one client (bounds the offered load).
    pub pause: Duration,
    /// Pause between two hostile connections of each disconnecting client.
    pub disconnect_every: Duration,
    pub threads: usize,
    pub tollgate: Option<PathBuf>,
    pub keep_dir: bool,
}

/// One sample of the proxy's state.
#[derive(Debug, Clone, Default)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    requests: f64,
    gone_head: f64,
    gone_body: f64,
    gone_response: f64,
    replayed: f64,
    reloads: f64,
    reloads_rejected: f64,
    token_requests: u64,
}

/// What the clients saw, by kind of outcome.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    big_ok: AtomicU64,
    left: [AtomicU64; 3],
    failures: Mutex<BTreeMap<String, u64>>,
    /// Failures the injected faults explain.
    explained: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn fail(&self, kind: String, explained: bool) {
        let map = if explained {
            &self.explained
        } else {
            &self.failures
        };
        let mut m = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(kind).or_insert(0) += 1;
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn sample(t: f64, pid: u32, admin: SocketAddr, tokens: &Tokens) -> Sample {
    let m = probe::get(admin, "/metrics", "127.0.0.1", &[])
        .map(|(_, b)| b)
        .unwrap_or_default();
    let metric = |name: &str, labels: &[&str]| probe::metric(&m, name, labels);
    Sample {
        t,
        rss_kib: procs::rss_kib(pid).0,
        fds: fd_count(pid),
        threads: threads(pid),
        requests: metric("tollgate_requests_total", &[]),
        gone_head: metric("tollgate_client_disconnects_total", &["stage=\"head\""]),
        gone_body: metric("tollgate_client_disconnects_total", &["stage=\"body\""]),
        gone_response: metric("tollgate_client_disconnects_total", &["stage=\"response\""]),
        replayed: metric("tollgate_replays_total", &["outcome=\"replayed\""]),
        reloads: metric("tollgate_config_reloads_total", &["outcome=\"applied\""]),
        reloads_rejected: metric("tollgate_config_reloads_total", &["outcome=\"rejected\""]),
        token_requests: tokens.attempts.load(Ordering::SeqCst),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The growth rule, one place: the median of the last minute's samples against the
/// median of the samples between minute 1 and minute 2 (the first minute is warm-up:
/// pools, caches and the allocator fill). Flat when `end <= base * (1 + ratio) + slack`.
struct Growth {
    base: f64,
    end: f64,
    max: f64,
    flat: bool,
}

fn growth(samples: &[Sample], value: impl Fn(&Sample) -> f64, ratio: f64, slack: f64) -> Growth {
    let last_t = samples.last().map_or(0.0, |s| s.t);
    let base: Vec<f64> = samples
        .iter()
        .filter(|s| s.t >= 60.0 && s.t <= 120.0)
        .map(&value)
        .collect();
    // Short runs: the second sixth of the run stands in for minute 1 to 2.
    let base = if base.is_empty() {
        samples
            .iter()
            .filter(|s| s.t >= last_t / 6.0 && s.t <= last_t / 3.0)
            .map(&value)
            .collect()
    } else {
        base
    };
    let end: Vec<f64> = samples
        .iter()
        .filter(|s| s.t >= last_t - 60.0)
        .map(&value)
        .collect();
    let (base, end) = (median(base), median(end));
    Growth {
        base,
        end,
        max: samples.iter().map(&value).fold(0.0, f64::max),
        flat: end <= base * (1.0 + ratio) + slack,
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The error code in one of our JSON error bodies, with whether the token endpoint's
/// injected failure caused it.
fn error_of(response: &[u8]) -> (String, bool) {
    let text = String::from_utf8_lossy(response);
    let code = text
        .split("\"error\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("-")
        .to_string();
    let injected = code == "token_unavailable" && text.contains(INJECTED_FAILURE);
    (code, injected)
}

/// A keep-alive client: `requests` in turn, reconnecting every 100 requests or after
/// any failure, until `stop`.
async fn client(
    proxy: SocketAddr,
    requests: Vec<Vec<u8>>,
    pause: Duration,
    name: &'static str,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = Vec::with_capacity(8192);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(mut s)) = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(proxy)).await
        else {
            tally.fail(format!("{name}: connect failed"), false);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = s.set_nodelay(true);
        for _ in 0..100 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let req = &requests[i % requests.len()];
            i += 1;
            match tokio::time::timeout(REQUEST_TIMEOUT, gen::exchange(&mut s, req, &mut buf)).await
            {
                Ok(Ok((200, keep))) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    if !keep {
                        break;
                    }
                }
                Ok(Ok((status, _))) => {
                    let (code, injected) = error_of(&buf);
                    tally.fail(format!("{name}: {status} {code}"), injected);
                    break;
                }
                Ok(Err(e)) => {
                    tally.fail(format!("{name}: {:?} ({e})", e.kind()), false);
                    break;
                }
                Err(_) => {
                    tally.fail(format!("{name}: no response within 10 s"), false);
                    break;
                }
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// How a hostile client leaves.
#[derive(Clone, Copy)]
enum Leave {
    Head,
    Body,
    Response,
}

/// Connects, starts a request, and leaves part way through, every `every`, until `stop`.
async fn leaver(
    proxy: SocketAddr,
    host: String,
    how: Leave,
    every: Duration,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let (bytes, read_first): (Vec<u8>, bool) = match how {
        Leave::Head => (
            format!("GET /head HTTP/1.1\r\nHost: {host}\r\nX-Partial: abc").into_bytes(),
            false,
        ),
        Leave::Body => {
            let mut b =
                format!("POST /body HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n\r\n")
                    .into_bytes();
            b.extend_from_slice(&[b'b'; 4096]);
            (b, false)
        }
        Leave::Response => (
            format!("GET /big HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            true,
        ),
    };
    let slot = how as usize;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(proxy)).await
        {
            if s.write_all(&bytes).await.is_ok() {
                if read_first {
                    let mut first = [0u8; 4096];
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, s.read(&mut first)).await;
                } else {
                    // Let the proxy read what was sent before we go.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tally.left[slot].fetch_add(1, Ordering::Relaxed);
            }
            drop(s);
        }
        tokio::time::sleep(every).await;
    }
}

/// Reads `/big` whole, again and again: the large responses that are not cut.
async fn big_reader(proxy: SocketAddr, host: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let req = gen::request_bytes(false, "http", &host, "/big", &[]);
    let mut buf = Vec::with_capacity(servers::BIG_BODY + 4096);
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(mut s)) = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(proxy)).await
        else {
            tally.fail("big: connect failed".into(), false);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, gen::exchange(&mut s, &req, &mut buf)).await {
            Ok(Ok((200, _))) if buf.len() > servers::BIG_BODY => {
                tally.big_ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok((status, _))) => tally.fail(format!("big: {status} {}", error_of(&buf).0), false),
            Ok(Err(e)) => tally.fail(format!("big: {:?} ({e})", e.kind()), false),
            Err(_) => tally.fail("big: no response within 10 s".into(), false),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reload_route(n: usize) -> String {
    format!(
        "  - name: reload-{n}\n    match: {{ hosts: [\"reload-{n}.soak.test\"] }}\n    action: deny\n"
    )
}

pub fn run(o: &Options) -> Result<(), String> {
    let bin = peers::find_tollgate(o.tollgate.as_deref()).ok_or(
        "no tollgate release binary: cargo build --release -p tollgate (or --tollgate PATH)",
    )?;
    let dir = tempdir()?;
    let result = soak(o, &bin, &dir);
    if o.keep_dir {
        println!("work directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn tempdir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("tollgate-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn soak(o: &Options, bin: &Path, dir: &Path) -> Result<(), String> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let tokens = Tokens::new(Duration::ZERO);
    tokens
        .fail_permille
        .store(o.token_fail_permille, Ordering::Relaxed);
    tokens
        .expires_in
        .store(o.token_lifetime.as_secs().max(1), Ordering::Relaxed);
    // A little latency upstream keeps requests in flight when a token is revoked.
    tokens.upstream_delay_us.store(500, Ordering::Relaxed);
    let idp = servers::start(any, Behaviour::TokenEndpoint(tokens.clone()))
        .map_err(|e| format!("token endpoint: {e}"))?;
    let revocable = servers::start(any, Behaviour::Revocable(tokens.clone()))
        .map_err(|e| format!("revocable upstream: {e}"))?;
    let plain = servers::start(any, Behaviour::Sized).map_err(|e| format!("upstream: {e}"))?;
    let pass_host = plain.addr.to_string();
    let inject_host = revocable.addr.to_string();
    let routes = [
        Route::pass("pass", pass_host.clone()),
        Route::inject("inject", inject_host.clone()),
    ];
    let mut tg = peers::tollgate(
        dir,
        "tollgate-soak",
        bin,
        o.threads,
        idp.addr,
        &routes,
        &peers::Sections::default(),
    )?;
    let admin = tg.admin.ok_or("tollgate has no admin listener")?;
    let pid = tg.proc.pid;
    let config_path = dir.join("tollgate-soak.yaml");
    let base_config = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;

    let proxy = tg.addr;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let post_body = "p".repeat(512);
    let inject_requests = vec![
        gen::request_bytes(false, "http", &inject_host, "/inject", &[]),
        format!(
            "POST /inject HTTP/1.1\r\nHost: {inject_host}\r\nContent-Length: {}\r\n\r\n{post_body}",
            post_body.len()
        )
        .into_bytes(),
        // Forward-proxy form too.
        gen::request_bytes(true, "http", &inject_host, "/inject?abs", &[]),
    ];
    let pass_requests = vec![
        gen::request_bytes(false, "http", &pass_host, "/pass", &[]),
        gen::request_bytes(true, "http", &pass_host, "/pass?abs", &[]),
    ];

    let traffic = {
        let (tally, stop) = (tally.clone(), stop.clone());
        let (o_pass, o_inject, pause, every) = (
            o.pass_clients,
            o.inject_clients,
            o.pause,
            o.disconnect_every,
        );
        let (pass_host, inject_host) = (pass_host.clone(), inject_host.clone());
        std::thread::Builder::new()
            .name("soak-clients".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let mut tasks = Vec::new();
                    for _ in 0..o_pass {
                        tasks.push(tokio::task::spawn_local(client(
                            proxy,
                            pass_requests.clone(),
                            pause,
                            "pass",
                            tally.clone(),
                            stop.clone(),
                        )));
                    }
                    for _ in 0..o_inject {
                        tasks.push(tokio::task::spawn_local(client(
                            proxy,
                            inject_requests.clone(),
                            pause,
                            "inject",
                            tally.clone(),
                            stop.clone(),
                        )));
                    }
                    tasks.push(tokio::task::spawn_local(big_reader(
                        proxy,
                        pass_host.clone(),
                        tally.clone(),
                        stop.clone(),
                    )));
                    for (how, host) in [
                        (Leave::Head, &pass_host),
                        (Leave::Body, &pass_host),
                        (Leave::Response, &pass_host),
                        (Leave::Body, &inject_host),
                    ] {
                        tasks.push(tokio::task::spawn_local(leaver(
                            proxy,
                            host.clone(),
                            how,
                            every,
                            tally.clone(),
                            stop.clone(),
                        )));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })
            .map_err(|e| format!("client thread: {e}"))?
    };

    let start = Instant::now();
    let mut samples = vec![sample(0.0, pid, admin, &tokens)];
    println!(
        "soak: {:?} of mixed traffic through tollgate (pid {pid}, threads: {}), sampling every {:?}",
        o.duration, o.threads, o.sample_every
    );
    print_header();
    print_sample(&samples[0]);
    let (mut next_sample, mut next_reload, mut next_revoke) =
        (o.sample_every, o.reload_every, o.revoke_every);
    let (mut reloads, mut revokes) = (0usize, 0usize);
    let mut extra_routes = String::new();
    let mut died = false;
    while start.elapsed() < o.duration {
        std::thread::sleep(Duration::from_millis(100));
        let now = start.elapsed();
        if !tg.proc.alive() {
            died = true;
            break;
        }
        if now >= next_revoke {
            tokens.revoke();
            revokes += 1;
            next_revoke += o.revoke_every;
        }
        if now >= next_reload {
            reloads += 1;
            if reloads % 2 == 1 {
                extra_routes.push_str(&reload_route(reloads));
                std::fs::write(&config_path, format!("{base_config}{extra_routes}"))
                    .map_err(|e| format!("{}: {e}", config_path.display()))?;
            } else {
                procs::signal("HUP", pid);
            }
            next_reload += o.reload_every;
        }
        if now >= next_sample {
            let s = sample(now.as_secs_f64(), pid, admin, &tokens);
            print_sample(&s);
            samples.push(s);
            next_sample += o.sample_every;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    // Idle: in-flight requests finish, pinned upstream connections go back to the pool.
    std::thread::sleep(Duration::from_secs(5));
    let quiet = sample(start.elapsed().as_secs_f64(), pid, admin, &tokens);
    println!("after the traffic stopped and 5 s idle:");
    print_sample(&quiet);
    died |= !tg.proc.alive();
    tg.proc.stop();

    report(o, &samples, &quiet, &tally, &tokens, reloads, revokes, died)
}

fn print_header() {
    println!(
        "{:>6} {:>9} {:>5} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "t(s)",
        "RSS(MiB)",
        "fds",
        "threads",
        "requests",
        "gone:hd",
        "gone:bd",
        "gone:rs",
        "replays",
        "reloads",
        "tokens"
    );
}

fn print_sample(s: &Sample) {
    println!(
        "{:>6.0} {:>9.1} {:>5} {:>7} {:>10.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>7.0} {:>7}",
        s.t,
        s.rss_kib as f64 / 1024.0,
        s.fds,
        s.threads,
        s.requests,
        s.gone_head,
        s.gone_body,
        s.gone_response,
        s.replayed,
        s.reloads,
        s.token_requests
    );
}

#[allow(clippy::too_many_arguments)]
fn report(
    o: &Options,
    samples: &[Sample],
    quiet: &Sample,
    tally: &Tally,
    tokens: &Tokens,
    reloads: usize,
    revokes: usize,
    died: bool,
) -> Result<(), String> {
    let first = samples.first().cloned().unwrap_or_default();
    let rss = growth(samples, |s| s.rss_kib as f64 / 1024.0, 0.10, 2.0);
    let fds = growth(samples, |s| s.fds as f64, 0.10, 8.0);
    let thr: Vec<u64> = samples.iter().skip(1).map(|s| s.threads).collect();
    let threads_flat = thr.windows(2).all(|w| w[0] == w[1]);
    let left = |i: usize| tally.left[i].load(Ordering::Relaxed);
    println!("\n== soak summary ({:?})", o.duration);
    println!(
        "client side: {} ok responses, {} /big read whole; left mid-head {}, mid-body {}, mid-response {}",
        tally.ok.load(Ordering::Relaxed),
        tally.big_ok.load(Ordering::Relaxed),
        left(Leave::Head as usize),
        left(Leave::Body as usize),
        left(Leave::Response as usize)
    );
    println!(
        "proxy side: {:.0} requests counted, client disconnects head {:.0} / body {:.0} / response {:.0}, replays {:.0}",
        quiet.requests - first.requests,
        quiet.gone_head,
        quiet.gone_body,
        quiet.gone_response,
        quiet.replayed
    );
    println!(
        "faults injected: {revokes} revocations (upstream 401s: {}), {} of {} token requests failed on purpose (503), {reloads} reloads ({:.0} applied, {:.0} rejected)",
        tokens.rejected.load(Ordering::SeqCst),
        tokens.failed.load(Ordering::SeqCst),
        tokens.attempts.load(Ordering::SeqCst),
        quiet.reloads,
        quiet.reloads_rejected
    );
    println!(
        "rule: a series is flat when the median of its last minute of samples is at most the median of minute 1-2 plus 10 % plus a slack (RSS 2 MiB, descriptors 8)"
    );
    println!(
        "RSS: minute 1-2 {:.1} MiB, last minute {:.1} MiB, max {:.1} MiB, after idle {:.1} MiB: {}",
        rss.base,
        rss.end,
        rss.max,
        quiet.rss_kib as f64 / 1024.0,
        if rss.flat { "flat" } else { "GROWING" }
    );
    println!(
        "descriptors: before traffic {}, minute 1-2 {:.0}, last minute {:.0}, max {:.0}, after idle {}: {}",
        first.fds,
        fds.base,
        fds.end,
        fds.max,
        quiet.fds,
        if fds.flat { "flat" } else { "GROWING" }
    );
    println!(
        "threads: {} before traffic, {:?} under traffic, {} after idle: {}",
        first.threads,
        thr.iter().min().zip(thr.iter().max()),
        quiet.threads,
        if threads_flat { "constant" } else { "CHANGING" }
    );
    let failures = tally
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let explained = tally
        .explained
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    println!("failures explained by the injected token-endpoint failures:");
    if explained.is_empty() {
        println!("  none");
    }
    for (k, n) in &explained {
        println!("  {n:>8}  {k}");
    }
    println!("failures NOT explained by an injected fault:");
    if failures.is_empty() {
        println!("  none");
    }
    for (k, n) in &failures {
        println!("  {n:>8}  {k}");
    }
    let mut problems = Vec::new();
    if died {
        problems.push("tollgate died during the soak".to_string());
    }
    if !failures.is_empty() {
        problems.push(format!(
            "{} unexplained failures",
            failures.values().sum::<u64>()
        ));
    }
    if !rss.flat {
        problems.push("RSS grew".into());
    }
    if !fds.flat {
        problems.push("open descriptors grew".into());
    }
    if quiet.reloads_rejected > 0.0 || (quiet.reloads as usize) < reloads {
        problems.push(format!(
            "{reloads} reloads made, {:.0} applied, {:.0} rejected",
            quiet.reloads, quiet.reloads_rejected
        ));
    }
    if problems.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        Err(format!("soak: FAIL: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[u64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Sample {
                t: i as f64 * 10.0,
                rss_kib: *v,
                ..Sample::default()
            })
            .collect()
    }

    #[test]
    fn growth_rule() {
        let rss = |s: &Sample| s.rss_kib as f64;
        // 10 minutes: minute 1-2 at 100, the last minute at 109: within 10 %.
        let mut v = vec![50; 6];
        v.extend([100; 7]);
        v.extend([105; 35]);
        v.extend([109; 13]);
        let g = growth(&series(&v), rss, 0.10, 0.0);
        assert!(g.flat && g.base == 100.0 && g.end == 109.0, "{}", g.end);
        // A steady leak: 1 % a sample.
        let leak: Vec<u64> = (0..61).map(|i| 100 + i).collect();
        assert!(!growth(&series(&leak), rss, 0.10, 0.0).flat);
    }

    #[test]
    fn errors_are_told_apart() {
        let injected = format!(
            "HTTP/1.1 502 Bad Gateway\r\n\r\n{{\"error\":\"token_unavailable\",\"message\":\"credential \\\"bench\\\": token endpoint answered 503 {INJECTED_FAILURE}\"}}"
        );
        assert_eq!(
            error_of(injected.as_bytes()),
            ("token_unavailable".to_string(), true)
        );
        let other = "HTTP/1.1 502 Bad Gateway\r\n\r\n{\"error\":\"upstream_unreachable\"}";
        assert_eq!(
            error_of(other.as_bytes()),
            ("upstream_unreachable".to_string(), false)
        );
        assert_eq!(
            error_of(b"HTTP/1.1 401 x\r\n\r\n"),
            ("-".to_string(), false)
        );
    }
}
