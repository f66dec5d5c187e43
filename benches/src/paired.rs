//! Paired runs: one route of a tollgate process against another of the same process
//! (inject ÷ pass, callers ÷ inject, intercept ÷ inject and ÷ tls: [`PAIRS`]), in short
//! alternating closed-loop runs, so that the ratios the issues target (inject ≥ 0.97 ×
//! pass, callers ≥ 0.95 × inject) are not lost in the drift between the matrix's
//! sequential runs (±5 % here, larger than the effects being measured). Each pair runs
//! both routes back to back, alternating which goes first; the result is the median of
//! the per-pair ratios.

use crate::gen::{self, Plan};
use crate::procs::Cpu;
use crate::report::median;
use crate::tunnel::Transport;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Which targets are paired, as (other, base): other's req/s ÷ base's. A variant build's
/// targets (`NAME@VARIANT`) pair with the base of the same variant.
pub const PAIRS: &[(&str, &str)] = &[
    ("tollgate-inject", "tollgate-pass"),
    ("tollgate-callers", "tollgate-inject"),
    ("tollgate-callers-jwt", "tollgate-inject"),
    ("tollgate-intercept", "tollgate-inject"),
    ("tollgate-intercept", "tollgate-tls"),
    ("tollgate-dpop", "tollgate-inject"),
];

/// One route of the pair.
pub struct Side {
    pub name: String,
    pub request: Vec<u8>,
    /// Another process than the pairing's (its pid and address): pairs two processes,
    /// e.g. tollgate with and without a token store.
    pub at: Option<(u32, SocketAddr)>,
    /// Plain, or TLS inside a CONNECT tunnel.
    pub transport: Transport,
}

/// What to pair: both routes of one process.
pub struct Pairing {
    pub pid: u32,
    pub addr: SocketAddr,
    pub mode: &'static str,
    pub base: Side,
    pub other: Side,
}

#[derive(Serialize, Debug, Clone)]
pub struct Paired {
    pub base: String,
    pub other: String,
    pub mode: String,
    pub pairs: usize,
    pub seconds_each: f64,
    /// Per pair: other's req/s ÷ base's req/s.
    pub ratios: Vec<f64>,
    pub ratio_median: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
    /// Median over pairs of other's CPU µs/request minus base's.
    pub cpu_delta_us_median: f64,
    pub base_rps_median: f64,
    pub other_rps_median: f64,
    /// Answers that were not 2xx, and failed exchanges, over every run of both sides
    /// (a ratio with either is not a ratio of successes).
    pub non_2xx: u64,
    pub errors: u64,
}

/// One closed-loop run of one side.
struct Run {
    rps: f64,
    cpu_us_per_req: f64,
    non_2xx: u64,
    errors: u64,
}

/// Closed loop on one side.
fn one(p: &Pairing, side: &Side, plan: &Plan, ticks: f64) -> Result<Run, String> {
    let mut plan = plan.clone();
    plan.request = side.request.clone().into();
    let (pid, addr) = side.at.unwrap_or((p.pid, p.addr));
    plan.connect = addr;
    let before = Cpu::of(pid, ticks);
    plan.transport = side.transport.clone();
    let (stats, _) = gen::run(&plan)?;
    let cpu = Cpu::of(pid, ticks).since(before);
    if stats.responses == 0 {
        return Err(format!("{}: no responses", side.name));
    }
    Ok(Run {
        rps: stats.rps,
        cpu_us_per_req: cpu.total() * 1e6 / stats.responses as f64,
        non_2xx: stats.non_2xx,
        errors: stats.errors,
    })
}

pub fn run(
    p: &Pairing,
    pairs: usize,
    each: Duration,
    connections: usize,
    gen_threads: usize,
    ticks: f64,
) -> Result<Paired, String> {
    let mut plan = Plan::new(p.addr, p.base.request.clone());
    plan.connections = connections;
    plan.threads = gen_threads;
    plan.warmup = Duration::from_millis(300);
    plan.duration = each;
    let (mut ratios, mut deltas, mut base_rps, mut other_rps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut non_2xx, mut errors) = (0, 0);
    for i in 0..pairs {
        let (b, o) = if i % 2 == 0 {
            let b = one(p, &p.base, &plan, ticks)?;
            (b, one(p, &p.other, &plan, ticks)?)
        } else {
            let o = one(p, &p.other, &plan, ticks)?;
            (one(p, &p.base, &plan, ticks)?, o)
        };
        ratios.push(o.rps / b.rps);
        deltas.push(o.cpu_us_per_req - b.cpu_us_per_req);
        base_rps.push(b.rps);
        other_rps.push(o.rps);
        non_2xx += o.non_2xx + b.non_2xx;
        errors += o.errors + b.errors;
    }
    let nan = f64::NAN;
    Ok(Paired {
        base: p.base.name.clone(),
        other: p.other.name.clone(),
        mode: p.mode.to_string(),
        pairs,
        seconds_each: each.as_secs_f64(),
        ratio_median: median(ratios.clone()).unwrap_or(nan),
        ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratio_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ratios,
        cpu_delta_us_median: median(deltas).unwrap_or(nan),
        base_rps_median: median(base_rps).unwrap_or(nan),
        other_rps_median: median(other_rps).unwrap_or(nan),
        non_2xx,
        errors,
    })
}

/// One line for the console and BENCHMARKS.md.
pub fn line(r: &Paired) -> String {
    let bad = if r.non_2xx + r.errors > 0 {
        format!("  NOT ALL 2xx: {} non-2xx, {} errors", r.non_2xx, r.errors)
    } else {
        String::new()
    };
    format!(
        "{:<24} ÷ {:<22} {:<8} {:.3} (min {:.3}, max {:.3}; {} pairs of {:?})  {:.0} vs {:.0} req/s  CPU {:+.2} µs/req{bad}",
        r.other,
        r.base,
        r.mode,
        r.ratio_median,
        r.ratio_min,
        r.ratio_max,
        r.pairs,
        Duration::from_secs_f64(r.seconds_each),
        r.other_rps_median,
        r.base_rps_median,
        r.cpu_delta_us_median
    )
}
