//! The load generator: HTTP/1.1 keep-alive over raw TCP, closed-loop (max throughput)
//! or constant-rate (latency without coordinated omission).
//!
//! Each connection is a task on one of `threads` single-threaded tokio runtimes. It
//! opens its connection (plain TCP, or a CONNECT tunnel with TLS inside: `tunnel.rs`),
//! writes the pre-built request bytes, reads one response (Content-Length, chunked, or
//! until close), and goes again. In constant-rate mode connection `i` of `C` sends its
//! `k`-th request at the intended time `start + (k + i/C) · C/rate`. Latency is taken
//! from that intended time whenever the connection was still busy with an earlier
//! response when it came (the server's backlog counts, as in wrk2); when the connection
//! was idle and only our timer woke late (tokio timers tick in milliseconds), it is
//! taken from the actual send, so generator slack is not charged to the server.
//!
//! Throughput counts responses completed inside the measured window (after warm-up);
//! latency counts every request intended inside it, including those answered after
//! it closed.

use crate::tunnel::{self, Conn, Transport};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write as _};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What to send, where, how hard and for how long.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Where to connect (the proxy, or the origin itself).
    pub connect: SocketAddr,
    /// Plain TCP, or a CONNECT tunnel with TLS inside (`connect: intercept`).
    pub transport: Transport,
    /// The whole request, head and body.
    pub request: Arc<[u8]>,
    pub connections: usize,
    /// Generator threads (one single-threaded runtime each).
    pub threads: usize,
    /// Run, unrecorded, before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Requests per second over all connections; `None` = closed loop.
    pub rate: Option<f64>,
    /// Give up on one response after this long (counted as an error, connection closed).
    pub timeout: Duration,
    /// Print a progress line to stderr each second, with this label.
    pub progress: Option<String>,
}

impl Plan {
    pub fn new(connect: SocketAddr, request: Vec<u8>) -> Plan {
        Plan {
            connect,
            transport: Transport::Plain,
            request: Arc::from(request),
            connections: 64,
            threads: 1,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            rate: None,
            timeout: Duration::from_secs(10),
            progress: None,
        }
    }
}

/// The request bytes: origin-form with `Host` (gateway, or straight to an origin) or
/// absolute-form (what an `HTTP_PROXY` client sends).
pub fn request_bytes(
    absolute: bool,
    scheme: &str,
    host: &str,
    path_query: &str,
    extra: &[(String, String)],
) -> Vec<u8> {
    let mut r = String::with_capacity(128);
    if absolute {
        r.push_str(&format!("GET {scheme}://{host}{path_query} HTTP/1.1\r\n"));
    } else {
        r.push_str(&format!("GET {path_query} HTTP/1.1\r\n"));
    }
    r.push_str(&format!("Host: {host}\r\n"));
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Figures of one run. Latencies in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Responses completed inside the measured window.
    pub requests: u64,
    /// Responses completed in the whole run, warm-up included (for CPU per request).
    pub responses: u64,
    pub seconds: f64,
    pub rps: f64,
    /// Offered rate (constant-rate mode).
    pub rate: Option<f64>,
    pub connections: usize,
    /// Responses by status (all, warm-up excluded).
    pub statuses: BTreeMap<u16, u64>,
    /// Responses that were not 2xx.
    pub non_2xx: u64,
    /// Connection failures, resets, malformed answers and timeouts.
    pub errors: u64,
    pub timeouts: u64,
    /// Connections re-opened (server closed one, or after an error).
    pub reconnects: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Summary {
    fn from(h: &Histogram<u64>, t: &Totals, plan: &Plan, seconds: f64) -> Summary {
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |x: f64| {
            if h.is_empty() {
                0.0
            } else {
                us(h.value_at_quantile(x))
            }
        };
        Summary {
            requests: t.in_window,
            responses: t.all,
            seconds,
            rps: if seconds > 0.0 {
                t.in_window as f64 / seconds
            } else {
                0.0
            },
            rate: plan.rate,
            connections: plan.connections,
            non_2xx: t
                .statuses
                .iter()
                .filter(|(s, _)| !(200..300).contains(*s))
                .map(|(_, n)| n)
                .sum(),
            statuses: t.statuses.clone(),
            errors: t.errors,
            timeouts: t.timeouts,
            reconnects: t.reconnects,
            mean_us: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.is_empty() { 0.0 } else { us(h.max()) },
        }
    }
}

/// One thread's counts.
#[derive(Default)]
struct Totals {
    in_window: u64,
    all: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    timeouts: u64,
    reconnects: u64,
}

fn new_histogram() -> Histogram<u64> {
    // 100 ns .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(100, 60_000_000_000, 3).unwrap_or_else(|e| panic!("histogram: {e}"))
}

/// State shared by the connection tasks of one thread.
struct Local {
    hist: RefCell<Histogram<u64>>,
    totals: RefCell<Totals>,
    in_window: Cell<u64>,
    all: Cell<u64>,
}

/// Live counters for the progress line (all threads).
#[derive(Default)]
struct Live {
    done: AtomicU64,
    errors: AtomicU64,
}

struct Times {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// Run the plan: connect every connection, then drive them all for warm-up + duration.
pub fn run(plan: &Plan) -> Result<(Summary, Histogram<u64>), String> {
    if plan.connections == 0 || plan.threads == 0 {
        return Err("connections and threads must be at least 1".into());
    }
    let threads = plan.threads.min(plan.connections);
    let ready = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let times: Arc<OnceLock<Times>> = Arc::new(OnceLock::new());
    let live = Arc::new(Live::default());
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let plan = plan.clone();
        let (ready, go, times, live) = (ready.clone(), go.clone(), times.clone(), live.clone());
        let h = std::thread::Builder::new()
            .name(format!("gen-{t}"))
            .spawn(move || thread_main(t, threads, plan, ready, go, times, live))
            .map_err(|e| format!("cannot start a generator thread: {e}"))?;
        handles.push(h);
    }
    ready.wait();
    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let _ = times.set(Times {
        start,
        measure_from,
        end,
    });
    go.wait();
    if let Some(label) = &plan.progress {
        progress(label, &live, start, end);
    }
    let mut hist = new_histogram();
    let mut totals = Totals::default();
    for h in handles {
        let (h1, t1) = h
            .join()
            .map_err(|_| "a generator thread panicked".to_string())??;
        hist.add(&h1).map_err(|e| format!("histogram: {e}"))?;
        totals.in_window += t1.in_window;
        totals.all += t1.all;
        totals.errors += t1.errors;
        totals.timeouts += t1.timeouts;
        totals.reconnects += t1.reconnects;
        for (s, n) in t1.statuses {
            *totals.statuses.entry(s).or_default() += n;
        }
    }
    let seconds = plan.duration.as_secs_f64();
    Ok((Summary::from(&hist, &totals, plan, seconds), hist))
}

fn progress(label: &str, live: &Live, start: Instant, end: Instant) {
    let tty = io::stderr().is_terminal();
    let total = end.saturating_duration_since(start).as_secs_f64();
    let mut last = (start, 0u64);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let next = (now + Duration::from_secs(1)).min(end);
        std::thread::sleep(next.saturating_duration_since(now));
        let now = Instant::now();
        let done = live.done.load(Ordering::Relaxed);
        let rps = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, done);
        let line = format!(
            "{label}: {:>5.1}s/{total:.0}s  {:>9.0} req/s  {done} responses  {} errors",
            now.saturating_duration_since(start).as_secs_f64(),
            rps,
            live.errors.load(Ordering::Relaxed)
        );
        let mut err = io::stderr();
        if tty {
            let _ = write!(err, "\r{line}   ");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
    if tty {
        let _ = writeln!(io::stderr());
    }
}

type ThreadResult = Result<(Histogram<u64>, Totals), String>;

fn thread_main(
    t: usize,
    threads: usize,
    plan: Plan,
    ready: Arc<Barrier>,
    go: Arc<Barrier>,
    times: Arc<OnceLock<Times>>,
    live: Arc<Live>,
) -> ThreadResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"));
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            ready.wait();
            go.wait();
            return Err(e);
        }
    };
    let local = tokio::task::LocalSet::new();
    let plan = Rc::new(plan);
    local.block_on(&rt, async move {
        let mine: Vec<usize> = (t..plan.connections).step_by(threads).collect();
        let mut streams = Vec::with_capacity(mine.len());
        let mut failed = 0u64;
        for _ in &mine {
            match tunnel::open(plan.connect, &plan.transport).await {
                Ok(s) => streams.push(Some(s)),
                Err(_) => {
                    failed += 1;
                    streams.push(None)
                }
            }
        }
        ready.wait();
        go.wait();
        let Some(times) = times.get() else {
            return Err("generator start time missing".to_string());
        };
        let state = Rc::new(Local {
            hist: RefCell::new(new_histogram()),
            totals: RefCell::new(Totals {
                errors: failed,
                ..Totals::default()
            }),
            in_window: Cell::new(0),
            all: Cell::new(0),
        });
        let mut tasks = Vec::with_capacity(mine.len());
        for (i, stream) in mine.into_iter().zip(streams) {
            let (plan, state, live) = (plan.clone(), state.clone(), live.clone());
            let (start, measure_from, end) = (times.start, times.measure_from, times.end);
            tasks.push(tokio::task::spawn_local(async move {
                drive(i, stream, &plan, &state, &live, start, measure_from, end).await
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        let hist = state.hist.borrow().clone();
        let mut totals = std::mem::take(&mut *state.totals.borrow_mut());
        totals.in_window = state.in_window.get();
        totals.all = state.all.get();
        Ok((hist, totals))
    })
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    i: usize,
    mut stream: Option<Conn>,
    plan: &Plan,
    st: &Local,
    live: &Live,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) {
    let interval = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.connections as f64 / r.max(1e-9)));
    let phase = i as f64 / plan.connections as f64;
    let mut k: u64 = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    tokio::time::sleep_until(start.into()).await;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let from = match interval {
            None => now,
            Some(iv) => {
                let intended = start + iv.mul_f64(k as f64 + phase);
                k += 1;
                if intended >= end {
                    break;
                }
                if intended > now {
                    tokio::time::sleep_until(intended.into()).await;
                    Instant::now()
                } else {
                    intended
                }
            }
        };
        if stream.is_none() {
            match tunnel::open(plan.connect, &plan.transport).await {
                Ok(s) => {
                    stream = Some(s);
                    st.totals.borrow_mut().reconnects += 1;
                }
                Err(_) => {
                    st.totals.borrow_mut().errors += 1;
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let r = tokio::time::timeout(plan.timeout, exchange(s, &plan.request, &mut buf)).await;
        let done = Instant::now();
        match r {
            Ok(Ok((status, keep))) => {
                live.done.fetch_add(1, Ordering::Relaxed);
                st.all.set(st.all.get() + 1);
                if from >= measure_from {
                    let ns =
                        u64::try_from(done.duration_since(from).as_nanos()).unwrap_or(u64::MAX);
                    st.hist.borrow_mut().saturating_record(ns);
                    *st.totals.borrow_mut().statuses.entry(status).or_default() += 1;
                }
                if done >= measure_from && done <= end {
                    st.in_window.set(st.in_window.get() + 1);
                }
                if !keep {
                    stream = None;
                }
            }
            Ok(Err(_)) => {
                stream = None;
                st.totals.borrow_mut().errors += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stream = None;
                let mut t = st.totals.borrow_mut();
                t.errors += 1;
                t.timeouts += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Send one request and read its response; returns the status and whether the
/// connection can be reused.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> io::Result<(u16, bool)> {
    s.write_all(req).await?;
    // A no-op on TCP; TLS may hold the last record until flushed.
    s.flush().await?;
    read_response(s, buf).await
}

/// One request on a fresh connection (a sanity check, not load): the status and the
/// body, de-chunked.
pub fn fetch(
    addr: SocketAddr,
    transport: &Transport,
    request: &[u8],
) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let raw = rt.block_on(async {
        let mut s = tunnel::open(addr, transport).await?;
        let mut buf = Vec::with_capacity(4096);
        tokio::time::timeout(Duration::from_secs(10), exchange(&mut s, request, &mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer within 10 s"))??;
        Ok::<_, io::Error>(buf)
    });
    crate::probe::parse(&raw.map_err(|e| format!("{addr}: {e}"))?)
}

/// How the body of a response ends.
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// Read one whole response into `buf` (cleared first). Returns status and keep-alive.
pub async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<(u16, bool)> {
    buf.clear();
    read_response_into(s, buf).await
}

/// Like [`read_response`], but `buf` may already hold the start of the response.
pub async fn read_response_into<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<(u16, bool)> {
    let (status, head_len, framing, keep) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(0);
                let mut framing = None;
                let mut keep = resp.version == Some(1);
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let v = std::str::from_utf8(h.value).map_err(|_| bad("content-length"))?;
                        let len = v.trim().parse().map_err(|_| bad("content-length"))?;
                        framing.get_or_insert(Framing::Length(len));
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value
                            .windows(7)
                            .any(|w| w.eq_ignore_ascii_case(b"chunked"))
                    {
                        framing = Some(Framing::Chunked);
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        if h.value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close")) {
                            keep = false;
                        } else if h
                            .value
                            .windows(10)
                            .any(|w| w.eq_ignore_ascii_case(b"keep-alive"))
                        {
                            keep = true;
                        }
                    }
                }
                let framing = match framing {
                    Some(f) => f,
                    None if status == 204 || status == 304 || (100..200).contains(&status) => {
                        Framing::Length(0)
                    }
                    None => Framing::Close,
                };
                break (status, n, framing, keep);
            }
            Ok(httparse::Status::Partial) => {
                if s.read_buf(buf).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed before a response",
                    ));
                }
            }
            Err(_) => return Err(bad("malformed response head")),
        }
    };
    match framing {
        Framing::Length(len) => {
            while buf.len() < head_len + len {
                if s.read_buf(buf).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed in the body",
                    ));
                }
            }
            Ok((status, keep))
        }
        Framing::Chunked => loop {
            if chunked_complete(&buf[head_len..])? {
                return Ok((status, keep));
            }
            if s.read_buf(buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in a chunked body",
                ));
            }
        },
        Framing::Close => {
            while s.read_buf(buf).await? != 0 {}
            Ok((status, false))
        }
    }
}

/// Is a chunked body (without trailers beyond the final CRLF) complete?
fn chunked_complete(mut body: &[u8]) -> io::Result<bool> {
    loop {
        match httparse::parse_chunk_size(body) {
            Ok(httparse::Status::Complete((n, size))) => {
                let size = usize::try_from(size).map_err(|_| bad("chunk size"))?;
                body = &body[n..];
                if size == 0 {
                    // Trailers end with an empty line.
                    if body.starts_with(b"\r\n") {
                        return Ok(true);
                    }
                    return Ok(body.windows(4).any(|w| w == b"\r\n\r\n"));
                }
                if body.len() < size + 2 {
                    return Ok(false);
                }
                body = &body[size + 2..];
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => return Err(bad("bad chunk size")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        assert!(chunked_complete(b"3\r\nabc\r\n0\r\n\r\n").expect("ok"));
        assert!(!chunked_complete(b"3\r\nabc\r\n").expect("ok"));
        assert!(!chunked_complete(b"3\r\nab").expect("ok"));
        assert!(chunked_complete(b"0\r\nx-t: 1\r\n\r\n").expect("ok"));
    }

    #[test]
    fn request_forms() {
        let a = request_bytes(true, "http", "h.test:81", "/p?q", &[]);
        assert_eq!(
            a,
            b"GET http://h.test:81/p?q HTTP/1.1\r\nHost: h.test:81\r\n\r\n"
        );
        let o = request_bytes(false, "http", "h.test", "/", &[("X".into(), "1".into())]);
        assert_eq!(o, b"GET / HTTP/1.1\r\nHost: h.test\r\nX: 1\r\n\r\n");
    }
}
