//! Logs and traces.
//!
//! Logs go through `tracing`: text by default, JSON with `TOLLGATE_LOG_FORMAT=json`, level
//! from `RUST_LOG` (default `info`; the per-request access log is the `tollgate::access`
//! target, so `RUST_LOG=info,tollgate::access=off` silences it). pingora's `log` records
//! go through the same subscriber.
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans for proxied requests and token
//! requests are exported over OTLP/HTTP (protobuf), and W3C `traceparent` is propagated
//! upstream (continuing the client's trace when it sent one). The standard `OTEL_*`
//! variables (service name, batch delay, headers) apply.

use crate::http1::{Head, RequestHead};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The tracer provider, kept to flush spans at exit (OpenTelemetry's own API is global).
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are being exported (so the proxy only builds request spans when they go somewhere).
pub fn tracing_enabled() -> bool {
    PROVIDER.get().is_some()
}

fn otlp_provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "tollgate".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// pingora's debug and trace logs dump request and response headers and bodies, which
/// carry the tokens we inject: whatever `RUST_LOG` says, they stay at info at most (and
/// follow `RUST_LOG`'s default level when that is quieter, e.g. `warn`).
const PINGORA_TARGETS: &[&str] = &[
    "pingora_core",
    "pingora_proxy",
    "pingora_http",
    "pingora_pool",
    "pingora_cache",
    "pingora_error",
    "pingora_timeout",
    "pingora_rustls",
    "pingora_runtime",
    "pingora",
];

/// The level of the last target-less directive (`warn` in `warn,tollgate=debug`), if any.
fn default_level(directives: &str) -> Option<LevelFilter> {
    directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains('=') && !d.contains('['))
        .filter_map(|d| d.parse::<LevelFilter>().ok())
        .next_back()
}

/// The log filter: `RUST_LOG` (default `info`), with pingora capped (see [`PINGORA_TARGETS`]).
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    // Directives for pingora's own targets are dropped: a more specific one would beat the caps.
    let kept: Option<String> = rust_log.map(|v| {
        v.split(',')
            .filter(|d| !d.trim_start().starts_with("pingora"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let mut filter = match kept.as_deref() {
        Some(v) if !v.is_empty() => EnvFilter::try_new(v).unwrap_or_else(|e| {
            eprintln!("tollgate: ignoring RUST_LOG={v:?}: {e}");
            EnvFilter::new("info")
        }),
        _ => EnvFilter::new("info"),
    };
    let cap = kept
        .as_deref()
        .and_then(default_level)
        .map_or(LevelFilter::INFO, |l| l.min(LevelFilter::INFO));
    for target in PINGORA_TARGETS {
        if let Ok(d) = format!("{target}={cap}").parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let json = std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = if json {
        // Flat lines: an event's fields at the top level, next to timestamp and level.
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    let mut otel_error = None;
    let otel = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(v) if !v.is_empty() => match otlp_provider() {
            Ok(provider) => {
                let tracer = provider.tracer("tollgate");
                let _ = PROVIDER.set(provider);
                opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
                // Only our spans go to the exporter, whatever RUST_LOG says about logs.
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                            m.is_span() && m.target().starts_with("tollgate")
                        })),
                )
            }
            Err(e) => {
                otel_error = Some(e);
                None
            }
        },
        _ => None,
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    if let Some(e) = otel_error {
        tracing::error!("tracing export disabled: {e}");
    }
}

/// Flush and stop the span exporter (call before the process exits).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
        let _ = p.shutdown();
    }
}

struct HeaderExtract<'a>(&'a RequestHead);

impl Extractor for HeaderExtract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.value(key).and_then(|v| std::str::from_utf8(v).ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .fields()
            .filter_map(|(k, _)| std::str::from_utf8(k).ok())
            .collect()
    }
}

struct HeaderInject<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderInject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// The span of one proxied request, continuing the client's `traceparent` when present.
pub fn request_span(head: &RequestHead) -> tracing::Span {
    let method = head.method();
    let span = tracing::info_span!(
        target: "tollgate::proxy",
        "proxy request",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        tollgate.route = tracing::field::Empty,
        tollgate.caller = tracing::field::Empty,
        tollgate.tunnel = tracing::field::Empty,
        tollgate.action = tracing::field::Empty,
        tollgate.replayed = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        upstream.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtract(head));
    let _ = span.set_parent(parent);
    span
}

/// The W3C trace headers (`traceparent`, and `tracestate` if any) to send upstream for
/// `span`.
pub fn trace_headers(span: &tracing::Span) -> (String, Option<String>) {
    let mut out = Vec::with_capacity(2);
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInject(&mut out));
    let mut parent = String::new();
    let mut state = None;
    for (k, v) in out {
        match k.as_str() {
            "traceparent" => parent = v,
            "tracestate" if !v.is_empty() => state = Some(v),
            _ => {}
        }
    }
    (parent, state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn pingora_is_capped_at_info_whatever_rust_log_says() {
        for v in [
            "trace",
            "debug",
            "pingora_core=trace",
            "info,pingora_core::protocols=trace",
        ] {
            let f = filter(Some(v));
            let text = f.to_string();
            assert!(text.contains("pingora_core=info"), "{v}: {text}");
            assert!(
                !text.contains("=trace") || !text.contains("pingora_core::"),
                "{v}: {text}"
            );
            assert!(!text.contains("pingora_core=trace"), "{v}: {text}");
        }
        assert!(filter(None).max_level_hint() <= Some(LevelFilter::INFO));
    }

    #[test]
    fn pingora_follows_a_quieter_default_level() {
        for (v, want) in [
            ("warn", "pingora_core=warn"),
            ("error,tollgate=debug", "pingora_core=error"),
            ("off", "pingora_core=off"),
            ("info,warn", "pingora_core=warn"),
            ("tollgate=debug", "pingora_core=info"),
        ] {
            let text = filter(Some(v)).to_string();
            assert!(text.contains(want), "{v}: {text}");
        }
        assert_eq!(
            filter(Some("warn")).max_level_hint(),
            Some(LevelFilter::WARN)
        );
    }
}
