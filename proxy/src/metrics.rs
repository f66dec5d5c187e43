//! Proxy metrics (SPEC "Admin and telemetry"). Label values are bounded: route names from
//! the config, actions, status codes and fixed outcome words; never a client id, token or
//! secret. Token metrics are registered by `auth` on the same registry.

use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The label used when no route matched (`default_action` decided).
pub const NO_ROUTE: &str = "-";

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub replays: IntCounterVec,
    pub config_reloads: IntCounterVec,
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
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            replays,
            config_reloads,
        })
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
}
