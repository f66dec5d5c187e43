//! Medians over repeats, ratios to nginx from the same run, the printed table and the
//! JSON document.

use crate::gen::Summary;
use crate::wrk::WrkResult;
use serde::Serialize;
use std::fmt::Write as _;

/// One measurement of one target in one mode (one repeat).
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub target: String,
    pub mode: String,
    pub repeat: usize,
    /// Closed loop (max throughput).
    pub closed: Summary,
    /// CPU of the proxy's process tree over the closed-loop run, per response.
    pub cpu_us_per_req: f64,
    pub cpu_user_us_per_req: f64,
    pub cpu_sys_us_per_req: f64,
    /// Constant rate (latency without coordinated omission).
    pub rate: Option<Summary>,
    pub rate_cpu_us_per_req: Option<f64>,
    pub wrk: Option<WrkResult>,
    /// Resident memory of the proxy's process tree after the runs, and its peak.
    pub rss_kib: u64,
    pub rss_peak_kib: u64,
}

/// Medians of one target in one mode, with ratios to its baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub target: String,
    pub mode: String,
    pub repeats: usize,
    pub rps: f64,
    pub wrk_rps: Option<f64>,
    pub closed_p99_us: f64,
    pub wrk_p99_us: Option<f64>,
    pub rate: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    /// The constant-rate run could not keep up (closed-loop req/s below 1.05 × rate).
    pub saturated: bool,
    pub cpu_us_per_req: f64,
    pub cpu_user_us_per_req: f64,
    pub cpu_sys_us_per_req: f64,
    pub rate_cpu_us_per_req: Option<f64>,
    pub rss_peak_mib: f64,
    pub non_2xx: u64,
    pub errors: u64,
    /// What the ratios compare with (`nginx`, or `nginx-tls` for the TLS scenario).
    pub baseline: Option<String>,
    pub rps_x: Option<f64>,
    pub wrk_rps_x: Option<f64>,
    pub cpu_x: Option<f64>,
    pub p99_x: Option<f64>,
    pub rss_x: Option<f64>,
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn med<F: Fn(&Sample) -> Option<f64>>(s: &[&Sample], f: F) -> Option<f64> {
    median(s.iter().filter_map(|x| f(x)).collect())
}

/// Rows in first-seen order of (target, mode), ratios against `baseline_of(target)` in
/// the same mode.
pub fn rows(samples: &[Sample], baseline_of: &dyn Fn(&str) -> Option<String>) -> Vec<Row> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for s in samples {
        let k = (s.target.clone(), s.mode.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut rows: Vec<Row> = keys
        .iter()
        .map(|(t, m)| {
            let s: Vec<&Sample> = samples
                .iter()
                .filter(|x| &x.target == t && &x.mode == m)
                .collect();
            let rate = s.iter().find_map(|x| x.rate.as_ref().and_then(|r| r.rate));
            let rps = med(&s, |x| Some(x.closed.rps)).unwrap_or(0.0);
            Row {
                target: t.clone(),
                mode: m.clone(),
                repeats: s.len(),
                rps,
                wrk_rps: med(&s, |x| x.wrk.as_ref().map(|w| w.rps)),
                closed_p99_us: med(&s, |x| Some(x.closed.p99_us)).unwrap_or(0.0),
                wrk_p99_us: med(&s, |x| x.wrk.as_ref().map(|w| w.p99_us)),
                rate,
                p50_us: med(&s, |x| x.rate.as_ref().map(|r| r.p50_us)),
                p99_us: med(&s, |x| x.rate.as_ref().map(|r| r.p99_us)),
                p999_us: med(&s, |x| x.rate.as_ref().map(|r| r.p999_us)),
                saturated: rate.is_some_and(|r| rps < 1.05 * r),
                cpu_us_per_req: med(&s, |x| Some(x.cpu_us_per_req)).unwrap_or(0.0),
                cpu_user_us_per_req: med(&s, |x| Some(x.cpu_user_us_per_req)).unwrap_or(0.0),
                cpu_sys_us_per_req: med(&s, |x| Some(x.cpu_sys_us_per_req)).unwrap_or(0.0),
                rate_cpu_us_per_req: med(&s, |x| x.rate_cpu_us_per_req),
                rss_peak_mib: med(&s, |x| Some(x.rss_peak_kib as f64 / 1024.0)).unwrap_or(0.0),
                non_2xx: s
                    .iter()
                    .map(|x| x.closed.non_2xx + x.rate.as_ref().map_or(0, |r| r.non_2xx))
                    .sum(),
                errors: s
                    .iter()
                    .map(|x| x.closed.errors + x.rate.as_ref().map_or(0, |r| r.errors))
                    .sum(),
                baseline: baseline_of(t),
                rps_x: None,
                wrk_rps_x: None,
                cpu_x: None,
                p99_x: None,
                rss_x: None,
            }
        })
        .collect();
    let snapshot = rows.clone();
    for r in rows.iter_mut() {
        let Some(b) = r.baseline.as_ref() else {
            continue;
        };
        let Some(base) = snapshot.iter().find(|x| &x.target == b && x.mode == r.mode) else {
            continue;
        };
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        r.rps_x = ratio(r.rps, base.rps);
        r.wrk_rps_x = r.wrk_rps.zip(base.wrk_rps).and_then(|(a, b)| ratio(a, b));
        r.cpu_x = ratio(r.cpu_us_per_req, base.cpu_us_per_req);
        r.p99_x = r.p99_us.zip(base.p99_us).and_then(|(a, b)| ratio(a, b));
        r.rss_x = ratio(r.rss_peak_mib, base.rss_peak_mib);
    }
    rows
}

fn f0(v: f64) -> String {
    format!("{v:.0}")
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

fn ms(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.0} ms", us / 1000.0)
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn x(v: f64) -> String {
    format!("{v:.2}×")
}

/// The results as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let rate = rows.iter().find_map(|r| r.rate);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| mode | target | req/s | wrk req/s | p50 | p99 | p99.9 | CPU µs/req (user+sys) | peak RSS MiB | req/s ÷ nginx | CPU ÷ nginx | p99 ÷ nginx | RSS ÷ nginx |"
    );
    let _ = writeln!(
        t,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let sat = if r.saturated { " (sat.)" } else { "" };
        let base = match r.baseline.as_deref() {
            Some("nginx") | None => String::new(),
            Some(b) => format!(" (vs {b})"),
        };
        let _ = writeln!(
            t,
            "| {} | {}{} | {} | {} | {} | {}{sat} | {} | {:.1} ({:.1}+{:.1}) | {:.1} | {} | {} | {} | {} |",
            r.mode,
            r.target,
            base,
            f0(r.rps),
            opt(r.wrk_rps, f0),
            opt(r.p50_us, ms),
            opt(r.p99_us, ms),
            opt(r.p999_us, ms),
            r.cpu_us_per_req,
            r.cpu_user_us_per_req,
            r.cpu_sys_us_per_req,
            r.rss_peak_mib,
            opt(r.rps_x, x),
            opt(r.cpu_x, x),
            opt(r.p99_x, x),
            opt(r.rss_x, x),
        );
    }
    if let Some(rate) = rate {
        let _ = writeln!(
            t,
            "\nreq/s: closed loop (max throughput, our generator and wrk). p50/p99/p99.9: constant rate {rate:.0} req/s, \
             from the intended send time (no coordinated omission); \"sat.\" = the target's max is below 1.05 × that rate."
        );
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| r.non_2xx > 0 || r.errors > 0)
        .map(|r| {
            format!(
                "{} {}: {} non-2xx, {} errors",
                r.target, r.mode, r.non_2xx, r.errors
            )
        })
        .collect();
    if !bad.is_empty() {
        let _ = writeln!(t, "\nNot all answers were 2xx: {}", bad.join("; "));
    }
    t
}

/// What the machine is, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_gib: f64,
    pub loadavg_at_start: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = mem
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            mem_total_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} × {}, {} GiB, Linux {}, load average at start {}",
            self.nproc, self.cpu_model, self.mem_total_gib, self.kernel, self.loadavg_at_start
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    fn sample(target: &str, rps: f64, cpu: f64) -> Sample {
        Sample {
            target: target.into(),
            mode: "gateway".into(),
            repeat: 1,
            closed: Summary {
                rps,
                ..Summary::default()
            },
            cpu_us_per_req: cpu,
            cpu_user_us_per_req: cpu / 2.0,
            cpu_sys_us_per_req: cpu / 2.0,
            rate: None,
            rate_cpu_us_per_req: None,
            wrk: None,
            rss_kib: 1024,
            rss_peak_kib: 2048,
        }
    }

    #[test]
    fn ratios_to_the_baseline_of_the_same_mode() {
        let s = vec![
            sample("nginx", 100.0, 10.0),
            sample("tollgate", 50.0, 20.0),
            sample("nginx", 120.0, 10.0),
            sample("tollgate", 60.0, 20.0),
            sample("tollgate", 55.0, 22.0),
        ];
        let rows = rows(&s, &|_| Some("nginx".to_string()));
        let t = rows.iter().find(|r| r.target == "tollgate").expect("row");
        assert_eq!(t.repeats, 3);
        assert_eq!(t.rps, 55.0);
        assert_eq!(t.rps_x, Some(55.0 / 110.0));
        assert_eq!(t.cpu_x, Some(2.0));
        assert!(table(&rows).contains("| gateway | tollgate |"));
    }
}
