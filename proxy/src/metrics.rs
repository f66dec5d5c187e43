//! Proxy metrics (SPEC "Admin and telemetry"). Label values are bounded: route names from
//! the config, actions, status codes and fixed outcome words; never a client id, token or
//! secret. Token metrics are registered by `auth` on the same registry. docs/metrics.md
//! describes every family and gives an example alert for each.
//!
//! Every series an alert needs exists from start-up, at zero: reload outcomes here, each
//! inject route's replay outcomes once a config is bound ([`Metrics::prepare`]), each
//! credential's token request outcomes in `auth`. An alert on `increase(...) > 0` can then
//! fire on the first event (a series that appears at 1 has no increase). Also here:
//! `tollgate_build_info` and the standard `process_*` families.

use dashmap::DashMap;
use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};
use std::sync::atomic::AtomicU16;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate_rules::Config;

/// Values of `tollgate_replays_total`'s `outcome` label (`replay::Outcome::as_str`).
pub const REPLAY_OUTCOMES: [&str; 5] = [
    "replayed",
    "second_401",
    "body_too_large",
    "no_replay",
    "dpop_nonce",
];

/// Values of `tollgate_config_reloads_total`'s `outcome` label.
pub const RELOAD_OUTCOMES: [&str; 2] = ["applied", "rejected"];

/// The label used when no route matched (`default_action` decided).
pub const NO_ROUTE: &str = "-";

/// The `action` label of `tollgate_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionLabel {
    Pass,
    Inject,
    /// Refused by policy (a deny route, no route, a client or caller not allowed).
    Deny,
    /// A CONNECT tunnel.
    Tunnel,
    /// Not routed (a malformed request).
    None,
}

impl ActionLabel {
    const ALL: [ActionLabel; 5] = [
        ActionLabel::Pass,
        ActionLabel::Inject,
        ActionLabel::Deny,
        ActionLabel::Tunnel,
        ActionLabel::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionLabel::Pass => "pass",
            ActionLabel::Inject => "inject",
            ActionLabel::Deny => "deny",
            ActionLabel::Tunnel => "tunnel",
            ActionLabel::None => "-",
        }
    }
}

/// The `source` label: who made the response the client got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// tollgate itself (our JSON errors, a tunnel's `200 Connection Established`).
    Tollgate,
    /// The upstream.
    Upstream,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Tollgate => "tollgate",
            Source::Upstream => "upstream",
        }
    }
}

/// Values of the `code` label: common status codes, else the class (bounded).
pub const CODES: [&str; 31] = [
    "0", "200", "201", "202", "204", "206", "301", "302", "304", "307", "308", "400", "401", "403",
    "404", "405", "409", "413", "422", "429", "431", "500", "502", "503", "504", "1xx", "2xx",
    "3xx", "4xx", "5xx", "other",
];

/// The `code` label of a status: its index in [`CODES`].
pub fn code_index(status: u16) -> usize {
    listed_code(status).unwrap_or(match status / 100 {
        1 => 25,
        2 => 26,
        3 => 27,
        4 => 28,
        5 => 29,
        _ => 30,
    })
}

fn listed_code(status: u16) -> Option<usize> {
    Some(match status {
        0 => 0,
        200 => 1,
        201 => 2,
        202 => 3,
        204 => 4,
        206 => 5,
        301 => 6,
        302 => 7,
        304 => 8,
        307 => 9,
        308 => 10,
        400 => 11,
        401 => 12,
        403 => 13,
        404 => 14,
        405 => 15,
        409 => 16,
        413 => 17,
        422 => 18,
        429 => 19,
        431 => 20,
        500 => 21,
        502 => 22,
        503 => 23,
        504 => 24,
        _ => return None,
    })
}

/// One route's series, resolved when the config is loaded (`State::build`) so a request
/// counts itself without hashing label values. A `tollgate_requests_total` series is
/// created the first time its (action, code, source) is seen, as a labelled vector would.
pub struct RouteMetrics {
    route: String,
    requests_vec: IntCounterVec,
    requests: Box<[OnceLock<IntCounter>]>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    /// The status of the route's last answered request (the status page), kept across
    /// reloads; 0 before the first.
    pub last_status: Arc<AtomicU16>,
}

impl RouteMetrics {
    fn new(
        route: &str,
        requests: &IntCounterVec,
        request_duration: &HistogramVec,
        upstream_duration: &HistogramVec,
        last_status: Arc<AtomicU16>,
    ) -> RouteMetrics {
        RouteMetrics {
            last_status,
            route: route.to_owned(),
            requests_vec: requests.clone(),
            requests: (0..ActionLabel::ALL.len() * CODES.len() * 2)
                .map(|_| OnceLock::new())
                .collect(),
            request_duration: request_duration.with_label_values(&[route]),
            upstream_duration: upstream_duration.with_label_values(&[route]),
        }
    }

    /// The route label of these series.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The `tollgate_requests_total{route,action,code,source}` counter of a response
    /// with status `status`.
    pub fn requests(&self, action: ActionLabel, status: u16, source: Source) -> &IntCounter {
        let a = ActionLabel::ALL
            .iter()
            .position(|x| *x == action)
            .unwrap_or(4);
        let code = code_index(status);
        let s = usize::from(source == Source::Upstream);
        self.requests[(a * CODES.len() + code) * 2 + s].get_or_init(|| {
            self.requests_vec.with_label_values(&[
                self.route.as_str(),
                action.as_str(),
                CODES[code],
                source.as_str(),
            ])
        })
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub replays: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// `tollgate_tunnels_total{route,mode}`: CONNECTs by what became of them.
    pub tunnels: IntCounterVec,
    /// `tollgate_client_disconnects_total{stage}`: clients that went away mid-request.
    pub client_gone_mid_head: IntCounter,
    pub client_gone_mid_body: IntCounter,
    pub client_gone_mid_response: IntCounter,
    /// 1 while the last reload attempt was applied (or none was made), 0 after a rejected one.
    pub config_last_reload_successful: IntGauge,
    /// Unix time of the last config load that was applied (start-up counts).
    pub config_last_reload_success_timestamp: Gauge,
    /// The series of requests no route matched (and of requests too malformed to route).
    pub no_route: RouteMetrics,
    /// The same, for requests refused before routing.
    pub unrouted: RouteMetrics,
    /// Each route's last status (the status page), by route name.
    last_status: DashMap<String, Arc<AtomicU16>>,
    /// When the config was last reloaded, and whether it was `applied` or `rejected`.
    last_reload: Mutex<Option<(SystemTime, &'static str)>>,
}

fn must<T>(r: prometheus::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("metrics: {e}"))
}

impl Metrics {
    pub fn new() -> Result<Metrics, String> {
        let registry = Registry::new();
        let buckets = must(exponential_buckets(0.0005, 2.0, 16))?;
        let requests = must(IntCounterVec::new(
            Opts::new(
                "tollgate_requests_total",
                "Requests handled, by route, action, status code and who answered (source: tollgate | upstream)",
            ),
            &["route", "action", "code", "source"],
        ))?;
        let request_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "tollgate_request_duration_seconds",
                "Time from request head to end of response, by route",
            )
            .buckets(buckets.clone()),
            &["route"],
        ))?;
        let upstream_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "tollgate_upstream_duration_seconds",
                "Time from sending upstream to the upstream's response head, by route",
            )
            .buckets(buckets),
            &["route"],
        ))?;
        let replays = must(IntCounterVec::new(
            Opts::new(
                "tollgate_replays_total",
                "Upstream 401s on inject routes, by outcome: replayed | second_401 | body_too_large | no_replay | dpop_nonce",
            ),
            &["route", "outcome"],
        ))?;
        let config_reloads = must(IntCounterVec::new(
            Opts::new(
                "tollgate_config_reloads_total",
                "Config reloads, by outcome: applied | rejected",
            ),
            &["outcome"],
        ))?;
        let tunnels = must(IntCounterVec::new(
            Opts::new(
                "tollgate_tunnels_total",
                "CONNECT requests, by route and mode: tunnel (byte for byte) | refused",
            ),
            &["route", "mode"],
        ))?;
        let disconnects = must(IntCounterVec::new(
            Opts::new(
                "tollgate_client_disconnects_total",
                "Clients that closed their connection part way through a request, by stage: head | body | response",
            ),
            &["stage"],
        ))?;
        let config_last_reload_successful = must(IntGauge::new(
            "tollgate_config_last_reload_successful",
            "1 if the last config reload was applied (or none was tried yet), 0 if it was rejected",
        ))?;
        let config_last_reload_success_timestamp = must(Gauge::new(
            "tollgate_config_last_reload_success_timestamp_seconds",
            "Unix time the running config was loaded (at start-up or by the last applied reload)",
        ))?;
        let build_info = must(IntGaugeVec::new(
            Opts::new(
                "tollgate_build_info",
                "Always 1; the labels say which build is running",
            ),
            &["version", "commit", "rustc", "pingora"],
        ))?;
        let b = crate::version::BUILD;
        build_info
            .with_label_values(&[b.version, b.commit, b.rustc, b.pingora])
            .set(1);
        for c in [&requests, &replays, &config_reloads, &tunnels, &disconnects] {
            must(registry.register(Box::new(c.clone())))?;
        }
        for h in [&request_duration, &upstream_duration] {
            must(registry.register(Box::new(h.clone())))?;
        }
        must(registry.register(Box::new(config_last_reload_successful.clone())))?;
        must(registry.register(Box::new(config_last_reload_success_timestamp.clone())))?;
        must(registry.register(Box::new(build_info)))?;
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        #[cfg(target_os = "linux")]
        must(registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )))?;
        for outcome in RELOAD_OUTCOMES {
            config_reloads.with_label_values(&[outcome]);
        }
        config_last_reload_successful.set(1);
        config_last_reload_success_timestamp.set(unix_now());
        let last_status: DashMap<String, Arc<AtomicU16>> = DashMap::new();
        let no_route = RouteMetrics::new(
            NO_ROUTE,
            &requests,
            &request_duration,
            &upstream_duration,
            last_status.entry(NO_ROUTE.to_owned()).or_default().clone(),
        );
        let unrouted = RouteMetrics::new(
            NO_ROUTE,
            &requests,
            &request_duration,
            &upstream_duration,
            last_status.entry(NO_ROUTE.to_owned()).or_default().clone(),
        );
        Ok(Metrics {
            last_status,
            last_reload: Mutex::new(None),
            registry,
            no_route,
            unrouted,
            tunnels,
            client_gone_mid_head: disconnects.with_label_values(&["head"]),
            client_gone_mid_body: disconnects.with_label_values(&["body"]),
            client_gone_mid_response: disconnects.with_label_values(&["response"]),
            requests,
            request_duration,
            upstream_duration,
            replays,
            config_reloads,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
        })
    }
    /// Creates, at zero, the series a config's alerts need before anything happens: the
    /// replay outcomes of each inject route. Called whenever a config is bound (start-up
    /// and each applied reload); series of routes that went away keep their last value.
    pub fn prepare(&self, config: &Config) {
        for r in config.routes.iter().filter(|r| r.inject().is_some()) {
            for outcome in REPLAY_OUTCOMES {
                self.replays.with_label_values(&[r.name.as_str(), outcome]);
            }
        }
    }

    /// Counts a reload attempt, sets the last-reload gauges and notes it for the status
    /// page.
    pub fn reloaded(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "rejected" };
        self.config_reloads.with_label_values(&[outcome]).inc();
        self.note_reload(outcome);
        self.config_last_reload_successful.set(i64::from(applied));
        if applied {
            self.config_last_reload_success_timestamp.set(unix_now());
        }
    }

    /// Records a reload's outcome (`applied` or `rejected`) for the status page.
    pub fn note_reload(&self, outcome: &'static str) {
        *self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((SystemTime::now(), outcome));
    }

    /// When the config was last reloaded, and the outcome.
    pub fn last_reload(&self) -> Option<(SystemTime, &'static str)> {
        *self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The series of one route (or of [`NO_ROUTE`]).
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics::new(
            route,
            &self.requests,
            &self.request_duration,
            &self.upstream_duration,
            self.last_status
                .entry(route.to_owned())
                .or_default()
                .clone(),
        )
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_outcomes_are_the_replay_decisions_words() {
        use crate::replay::Outcome;
        // Exhaustive: a new outcome must be added to REPLAY_OUTCOMES (and pre-created).
        for o in [
            Outcome::Replayed,
            Outcome::Second401,
            Outcome::BodyTooLarge,
            Outcome::NoReplay,
            Outcome::DpopNonce,
        ] {
            match o {
                Outcome::Replayed
                | Outcome::Second401
                | Outcome::BodyTooLarge
                | Outcome::NoReplay
                | Outcome::DpopNonce => {
                    assert!(REPLAY_OUTCOMES.contains(&o.as_str()), "{}", o.as_str());
                }
            }
        }
    }

    #[test]
    fn alert_series_exist_at_zero_before_anything_happens() {
        let m = Metrics::new().expect("metrics");
        let config = tollgate_rules::load_str(
            "t.yaml",
            "credentials:\n  c: { token_url: http://127.0.0.1:9/t, client_id: a, client_secret: s }\n\
             routes:\n  - { name: api, match: { hosts: [a.com] }, action: inject, credential: c }\n\
             \x20 - { name: open, match: { hosts: [b.com] }, action: pass }\n",
            &|_: &str| None,
        )
        .expect("config");
        m.prepare(&config);
        let text = m.render();
        for outcome in REPLAY_OUTCOMES {
            let want = format!(r#"tollgate_replays_total{{outcome="{outcome}",route="api"}} 0"#);
            assert!(text.contains(&want), "{want}\n{text}");
        }
        assert!(
            !text.contains(r#"route="open""#),
            "a pass route has no replays: {text}"
        );
        for outcome in RELOAD_OUTCOMES {
            let want = format!(r#"tollgate_config_reloads_total{{outcome="{outcome}"}} 0"#);
            assert!(text.contains(&want), "{want}\n{text}");
        }
        assert!(
            text.contains("tollgate_config_last_reload_successful 1"),
            "{text}"
        );
        assert!(text.contains("tollgate_build_info{commit="), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        m.reloaded(false);
        let text = m.render();
        assert!(
            text.contains("tollgate_config_last_reload_successful 0"),
            "{text}"
        );
        assert!(text.contains(r#"tollgate_config_reloads_total{outcome="rejected"} 1"#));
        m.reloaded(true);
        assert!(m
            .render()
            .contains("tollgate_config_last_reload_successful 1"));
    }

    #[test]
    fn renders_registered_families() {
        let m = Metrics::new().expect("metrics");
        m.requests
            .with_label_values(&["r", "pass", "200", "upstream"])
            .inc();
        m.replays.with_label_values(&["r", "replayed"]).inc();
        let text = m.render();
        assert!(
            text.contains(
                r#"tollgate_requests_total{action="pass",code="200",route="r",source="upstream"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"tollgate_replays_total{outcome="replayed",route="r"} 1"#));
    }

    #[test]
    fn route_handles_count_into_the_labelled_series() {
        let m = Metrics::new().expect("metrics");
        let r = m.route("api");
        r.requests(ActionLabel::Inject, 200, Source::Upstream).inc();
        r.requests(ActionLabel::Inject, 200, Source::Upstream).inc();
        r.requests(ActionLabel::Deny, 403, Source::Tollgate).inc();
        r.request_duration.observe(0.001);
        // A second handle (a reload) counts into the same series.
        m.route("api")
            .requests(ActionLabel::Inject, 200, Source::Upstream)
            .inc();
        let text = m.render();
        assert!(
            text.contains(
                r#"tollgate_requests_total{action="inject",code="200",route="api",source="upstream"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tollgate_requests_total{action="deny",code="403",route="api",source="tollgate"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"tollgate_request_duration_seconds_count{route="api"} 1"#),
            "{text}"
        );
        // Series appear when first counted, not before.
        assert!(!text.contains(r#"code="500""#), "{text}");
    }

    #[test]
    fn status_codes_map_to_bounded_labels() {
        assert_eq!(CODES[code_index(200)], "200");
        assert_eq!(CODES[code_index(0)], "0");
        assert_eq!(CODES[code_index(504)], "504");
        assert_eq!(CODES[code_index(418)], "4xx");
        assert_eq!(CODES[code_index(299)], "2xx");
        assert_eq!(CODES[code_index(101)], "1xx");
        assert_eq!(CODES[code_index(599)], "5xx");
        assert_eq!(CODES[code_index(999)], "other");
        assert_eq!(CODES[code_index(42)], "other");
        // Every listed code maps to itself.
        for (i, c) in CODES[..25].iter().enumerate() {
            assert_eq!(code_index(c.parse().expect("a number")), i, "{c}");
        }
    }
}
