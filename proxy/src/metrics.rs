//! Proxy metrics (SPEC "Admin and telemetry"). Label values are bounded: route names from
//! the config, actions, status codes and fixed outcome words; never a client id, token or
//! secret. Token metrics are registered by `auth` on the same registry.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};
use std::sync::OnceLock;

/// The label used when no route matched (`default_action` decided).
pub const NO_ROUTE: &str = "-";

/// Values of the `action` label.
pub const ACTIONS: [&str; 5] = ["pass", "inject", "deny", "tunnel", "-"];

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

/// One route's series, resolved when the config is loaded (`State::bind`) so a request
/// counts itself without hashing label values. A `tollgate_requests_total` series is
/// created the first time its (action, code) pair is seen, as a labelled vector would.
pub struct RouteMetrics {
    route: String,
    requests_vec: IntCounterVec,
    requests: Box<[OnceLock<IntCounter>]>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
}

impl RouteMetrics {
    fn new(
        route: &str,
        requests: &IntCounterVec,
        request_duration: &HistogramVec,
        upstream_duration: &HistogramVec,
    ) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            requests_vec: requests.clone(),
            requests: (0..ACTIONS.len() * CODES.len())
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

    /// The `tollgate_requests_total{route,action,code}` counter for an [`ACTIONS`] index
    /// and a [`CODES`] index.
    pub fn requests(&self, action: usize, code: usize) -> &IntCounter {
        let (action, code) = (action.min(ACTIONS.len() - 1), code.min(CODES.len() - 1));
        self.requests[action * CODES.len() + code].get_or_init(|| {
            self.requests_vec.with_label_values(&[
                self.route.as_str(),
                ACTIONS[action],
                CODES[code],
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
    /// The series of requests no route matched.
    pub no_route: RouteMetrics,
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
                "Requests handled, by route, action and status code",
            ),
            &["route", "action", "code"],
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
        for c in [&requests, &replays, &config_reloads] {
            must(registry.register(Box::new(c.clone())))?;
        }
        for h in [&request_duration, &upstream_duration] {
            must(registry.register(Box::new(h.clone())))?;
        }
        let no_route =
            RouteMetrics::new(NO_ROUTE, &requests, &request_duration, &upstream_duration);
        Ok(Metrics {
            registry,
            no_route,
            requests,
            request_duration,
            upstream_duration,
            replays,
            config_reloads,
        })
    }

    /// The series of one route (or of [`NO_ROUTE`]).
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics::new(
            route,
            &self.requests,
            &self.request_duration,
            &self.upstream_duration,
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
        m.requests.with_label_values(&["r", "pass", "200"]).inc();
        m.replays.with_label_values(&["r", "replayed"]).inc();
        let text = m.render();
        assert!(
            text.contains(r#"tollgate_requests_total{action="pass",code="200",route="r"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"tollgate_replays_total{outcome="replayed",route="r"} 1"#));
    }

    #[test]
    fn route_handles_count_into_the_labelled_series() {
        let m = Metrics::new().expect("metrics");
        let r = m.route("api");
        r.requests(1, code_index(200)).inc();
        r.requests(1, code_index(200)).inc();
        r.requests(2, code_index(403)).inc();
        r.request_duration.observe(0.001);
        // A second handle (a reload) counts into the same series.
        m.route("api").requests(1, code_index(200)).inc();
        let text = m.render();
        assert!(
            text.contains(r#"tollgate_requests_total{action="inject",code="200",route="api"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tollgate_requests_total{action="deny",code="403",route="api"} 1"#),
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
