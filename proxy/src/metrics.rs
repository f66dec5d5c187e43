//! Proxy metrics (SPEC "Admin and telemetry"). Label values are bounded: route names from
//! the config, actions, status codes and fixed outcome words; never a client id, token or
//! secret. Token metrics are registered by `auth` on the same registry.

use dashmap::DashMap;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};
use std::sync::atomic::AtomicU16;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

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
                "Upstream 401s on inject routes, by outcome: replayed | second_401 | body_too_large | no_replay",
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
        for c in [&requests, &replays, &config_reloads, &tunnels, &disconnects] {
            must(registry.register(Box::new(c.clone())))?;
        }
        for h in [&request_duration, &upstream_duration] {
            must(registry.register(Box::new(h.clone())))?;
        }
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
        })
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

#[cfg(test)]
mod tests {
    use super::*;

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
