//! wrk, run on the same targets as a cross-check of our generator (closed loop).
//! Forward-proxy mode uses a Lua script that sets `wrk.path` to the absolute URL.

use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Clone, Debug, Default, Serialize)]
pub struct WrkResult {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: u64,
    pub non_2xx: u64,
    pub socket_errors: u64,
}

/// Run `wrk -t1 -cC -dD --latency` against `url` (the proxy) with `host` as Host and
/// `headers`, and, when `absolute` is set, the absolute-form target `absolute` as the
/// request path.
#[allow(clippy::too_many_arguments)]
pub fn run(
    dir: &Path,
    proxy: std::net::SocketAddr,
    path: &str,
    host: &str,
    headers: &[(String, String)],
    absolute: Option<&str>,
    connections: usize,
    duration: Duration,
) -> Result<WrkResult, String> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "--latency", "--timeout", "10s"]);
    cmd.arg(format!("-c{connections}"));
    cmd.arg(format!("-d{}s", duration.as_secs().max(1)));
    cmd.arg("-H").arg(format!("Host: {host}"));
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(abs) = absolute {
        let script = dir.join(format!("wrk-{}.lua", proxy.port()));
        std::fs::write(&script, format!("wrk.path = \"{abs}\"\n"))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        cmd.arg("-s").arg(&script);
    }
    cmd.arg(format!("http://{proxy}{path}"));
    let out = cmd.output().map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&text)
}

/// Latency as wrk prints it (`812.00us`, `1.23ms`, `2.00s`) in microseconds.
fn micros(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix("m") {
        (n, 60_000_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mul)
}

pub fn parse(text: &str) -> Result<WrkResult, String> {
    let mut r = WrkResult::default();
    for line in text.lines() {
        let l = line.trim();
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v, ..] => r.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => r.p50_us = micros(v).unwrap_or(0.0),
            ["99%", v] => r.p99_us = micros(v).unwrap_or(0.0),
            [n, "requests", "in", ..] => r.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                r.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    if r.rps == 0.0 {
        return Err(format!("no Requests/sec in wrk output:\n{text}"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   650.12us  100.00us   5.00ms   90.00%\n  Latency Distribution\n     50%  612.00us\n     75%  700.00us\n     90%  800.00us\n     99%    1.20ms\n  500000 requests in 5.00s, 50.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 7\nRequests/sec: 100000.50\nTransfer/sec:     10.00MB\n";
        let r = parse(out).expect("parses");
        assert_eq!(r.rps, 100000.5);
        assert_eq!(r.p50_us, 612.0);
        assert_eq!(r.p99_us, 1200.0);
        assert_eq!(r.requests, 500000);
        assert_eq!(r.non_2xx, 7);
        assert_eq!(r.socket_errors, 3);
    }
}
