//! `tollgate-bench target`: load any running proxy (tollgate or another) or origin and
//! print latency and throughput, with a progress line while it runs.

use crate::gen::{self, Plan};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Options {
    /// `http://host:port` of the proxy; absolute-form requests go to it. Without it,
    /// origin-form requests go straight to `url`'s host (gateway use: point `url` at
    /// the gateway and set `host`).
    pub proxy: Option<String>,
    pub url: String,
    /// Host header (default: the URL's authority).
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Requests per second; 0 = closed loop (as fast as it answers).
    pub rate: f64,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub json: Option<PathBuf>,
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// The address to connect to and the request bytes.
pub fn prepare(o: &Options) -> Result<(SocketAddr, Vec<u8>), String> {
    let url = url::Url::parse(&o.url).map_err(|e| format!("--url {}: {e}", o.url))?;
    if url.scheme() != "http" {
        return Err(format!(
            "--url must be http:// (a proxy receives plain HTTP and originates TLS itself): {}",
            o.url
        ));
    }
    let host = url.host_str().ok_or("--url has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut pq = url.path().to_string();
    if let Some(q) = url.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let host_header = o.host.clone().unwrap_or_else(|| authority.clone());
    match &o.proxy {
        Some(p) => {
            let pu = url::Url::parse(p).map_err(|e| format!("--proxy {p}: {e}"))?;
            let ph = pu.host_str().ok_or("--proxy has no host")?;
            let addr = resolve(ph, pu.port_or_known_default().unwrap_or(3128))?;
            // Absolute-form: Host must agree with the URL (pingora answers 400 otherwise),
            // so --host is not used here.
            Ok((
                addr,
                gen::request_bytes(true, "http", &authority, &pq, &o.headers),
            ))
        }
        None => Ok((
            resolve(host, port)?,
            gen::request_bytes(false, "http", &host_header, &pq, &o.headers),
        )),
    }
}

pub fn run(o: &Options) -> Result<(), String> {
    let (addr, request) = prepare(o)?;
    let mut plan = Plan::new(addr, request);
    plan.connections = o.connections;
    plan.threads = o.threads;
    plan.duration = o.duration;
    plan.warmup = o.warmup;
    plan.timeout = o.timeout;
    plan.rate = (o.rate > 0.0).then_some(o.rate);
    plan.progress = Some(match plan.rate {
        Some(r) => format!("{addr} at {r:.0} req/s"),
        None => format!("{addr} closed loop"),
    });
    let mode = match plan.rate {
        Some(r) => format!("constant rate {r:.0} req/s (latency from the intended send time)"),
        None => "closed loop (max throughput)".to_string(),
    };
    println!(
        "tollgate-bench target: GET {} via {}, {} connections, {} thread(s), {:?} (+{:?} warm-up), {mode}",
        o.url,
        o.proxy.as_deref().unwrap_or("(direct)"),
        o.connections,
        o.threads,
        o.duration,
        o.warmup
    );
    let (s, _) = gen::run(&plan)?;
    println!(
        "requests   {} in {:.1} s = {:.0} req/s",
        s.requests, s.seconds, s.rps
    );
    println!(
        "latency    p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  mean {:.3} ms",
        s.p50_us / 1000.0,
        s.p90_us / 1000.0,
        s.p99_us / 1000.0,
        s.p999_us / 1000.0,
        s.max_us / 1000.0,
        s.mean_us / 1000.0
    );
    let statuses: Vec<String> = s
        .statuses
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!(
        "responses  {}  errors {} (timeouts {})  reconnects {}",
        statuses.join(", "),
        s.errors,
        s.timeouts,
        s.reconnects
    );
    if let Some(rate) = s.rate {
        if s.rps < rate * 0.95 {
            println!("note: answered {:.0} of {rate:.0} req/s offered: the target is saturated, latencies include the queue", s.rps);
        }
    }
    if let Some(path) = &o.json {
        let json = serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(proxy: Option<&str>, url: &str, host: Option<&str>) -> Options {
        Options {
            proxy: proxy.map(String::from),
            url: url.into(),
            host: host.map(String::from),
            headers: vec![],
            rate: 0.0,
            connections: 1,
            threads: 1,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(1),
            json: None,
        }
    }

    #[test]
    fn forward_proxy_sends_absolute_form_to_the_proxy() {
        let (addr, req) = prepare(&opts(
            Some("http://127.0.0.1:3128"),
            "http://api.test:8080/v1?x=1",
            None,
        ))
        .expect("ok");
        assert_eq!(addr.to_string(), "127.0.0.1:3128");
        assert_eq!(
            req,
            b"GET http://api.test:8080/v1?x=1 HTTP/1.1\r\nHost: api.test:8080\r\n\r\n"
        );
    }

    #[test]
    fn gateway_sends_origin_form_with_host() {
        let (addr, req) =
            prepare(&opts(None, "http://127.0.0.1:3128/v1", Some("api.test"))).expect("ok");
        assert_eq!(addr.to_string(), "127.0.0.1:3128");
        assert_eq!(req, b"GET /v1 HTTP/1.1\r\nHost: api.test\r\n\r\n");
    }
}
