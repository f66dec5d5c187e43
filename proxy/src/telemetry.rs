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

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
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

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
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

struct HeaderExtract<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInject<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderInject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// The span of one proxied request, continuing the client's `traceparent` when present.
pub fn request_span(headers: &http::HeaderMap, method: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: "tollgate::proxy",
        "proxy request",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        tollgate.route = tracing::field::Empty,
        tollgate.action = tracing::field::Empty,
        tollgate.replayed = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        upstream.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtract(headers));
    let _ = span.set_parent(parent);
    span
}

/// The W3C trace headers (`traceparent`, `tracestate`) to send upstream for `span`.
pub fn trace_headers(span: &tracing::Span) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(2);
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInject(&mut out));
    out
}
