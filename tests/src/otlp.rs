//! A local OTLP/HTTP collector stand-in on `127.0.0.1:0`.
//!
//! It accepts `POST /v1/traces` with a protobuf `ExportTraceServiceRequest` (what
//! `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces` receives from an OTLP/HTTP exporter),
//! decodes it with the generated OpenTelemetry protobuf types, answers 200 with an empty
//! `ExportTraceServiceResponse`, and keeps the decoded spans for the test. Anything it
//! cannot take (another path, another content type, a body that does not decode) is
//! answered 400 and recorded in [`Collector::errors`], so a test can assert there were none.

use crate::http1::{self, Wire};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
pub use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// An attribute value as exported.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    /// Arrays, maps and bytes, in their `Debug` form.
    Other(String),
}

impl AttrValue {
    fn from_any(v: Option<&AnyValue>) -> AttrValue {
        match v.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
            Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
            Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
            Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
            other => AttrValue::Other(format!("{other:?}")),
        }
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, AttrValue> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), AttrValue::from_any(kv.value.as_ref())))
        .collect()
}

/// Lower-case hex of bytes (trace and span ids as they appear in `traceparent`).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One decoded span with its resource and scope.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub name: String,
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, AttrValue>,
    /// Resource attributes (e.g. `service.name`).
    pub resource: BTreeMap<String, AttrValue>,
    /// Instrumentation scope name.
    pub scope: String,
}

impl ExportedSpan {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// A string attribute (`None` if absent or not a string).
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer attribute (`None` if absent or not an integer).
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// A resource attribute that is a string.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        match self.resource.get(key) {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// One export request as received.
#[derive(Debug, Clone)]
pub struct Export {
    pub content_type: Option<String>,
    pub request: ExportTraceServiceRequest,
}

#[derive(Default)]
struct State {
    exports: Mutex<Vec<Export>>,
    errors: Mutex<Vec<String>>,
}

/// The collector. Stops when dropped.
pub struct Collector {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    pub async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP collector");
        let addr = listener.local_addr().expect("collector local addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, st.clone()));
            }
        });
        Collector { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter appends `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every export request received so far, decoded.
    pub fn exports(&self) -> Vec<Export> {
        self.state.exports.lock().expect("exports lock").clone()
    }

    /// What the collector refused (wrong path or content type, undecodable body).
    pub fn errors(&self) -> Vec<String> {
        self.state.errors.lock().expect("errors lock").clone()
    }

    /// Every span received so far, flattened, in arrival order.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        let mut out = Vec::new();
        for export in self.exports() {
            for rs in &export.request.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    let scope = ss
                        .scope
                        .as_ref()
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    for s in &ss.spans {
                        out.push(ExportedSpan {
                            name: s.name.clone(),
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent_span_id: hex(&s.parent_span_id),
                            kind: SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified),
                            status: s
                                .status
                                .as_ref()
                                .and_then(|st| StatusCode::try_from(st.code).ok())
                                .unwrap_or(StatusCode::Unset),
                            start_unix_nano: s.start_time_unix_nano,
                            end_unix_nano: s.end_time_unix_nano,
                            attributes: attributes(&s.attributes),
                            resource: resource.clone(),
                            scope: scope.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Poll (every 50 ms, up to `timeout`) until `done(spans)` holds; returns the spans
    /// either way, so the caller's assertion shows what did arrive.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ExportedSpan]) -> bool,
    ) -> Vec<ExportedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, state: Arc<State>) {
    let mut wire = Wire::new(stream);
    loop {
        let head = match wire.read_head(1024 * 1024).await {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return,
        };
        let Ok(kind) = http1::request_body_kind(&head.headers) else {
            return;
        };
        let Ok(body) = wire.read_body(kind).await else {
            return;
        };
        let target = head.start_line.split(' ').nth(1).unwrap_or_default();
        let content_type = head.header("content-type").map(str::to_owned);
        let encoding = head.header("content-encoding").map(str::to_owned);
        let result = if !head.start_line.starts_with("POST ") || target != "/v1/traces" {
            Err(format!("unexpected request {:?}", head.start_line))
        } else if encoding.as_deref().is_some_and(|e| e != "identity") {
            Err(format!("unsupported content-encoding {encoding:?}"))
        } else if content_type.as_deref() != Some("application/x-protobuf") {
            Err(format!(
                "content-type {content_type:?}, expected application/x-protobuf"
            ))
        } else {
            ExportTraceServiceRequest::decode(body.as_slice())
                .map_err(|e| format!("body ({} bytes) does not decode: {e}", body.len()))
        };
        let response: &[u8] = match result {
            Ok(request) => {
                state.exports.lock().expect("exports lock").push(Export {
                    content_type,
                    request,
                });
                // An empty ExportTraceServiceResponse encodes to zero bytes.
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
            }
            Err(e) => {
                state.errors.lock().expect("errors lock").push(e);
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
            }
        };
        if wire.stream.write_all(response).await.is_err() || wire.stream.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::raw;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn decodes_protobuf_exports_and_refuses_anything_else() {
        let c = Collector::start().await;
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("svc".into()),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "scope".into(),
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                        name: "op".into(),
                        kind: SpanKind::Server as i32,
                        attributes: vec![kv("n", any_value::Value::IntValue(7))],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = req.encode_to_vec();
        let mut msg = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        msg.extend_from_slice(&body);
        let resp = raw::request(c.addr(), "POST", &msg).await;
        assert_eq!(resp.status, 200);
        let spans = c.spans();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.name, "op");
        assert_eq!(s.trace_id, "ab".repeat(16));
        assert_eq!(s.span_id, "0102030405060708");
        assert_eq!(s.parent_span_id, "");
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.int("n"), Some(7));
        assert_eq!(s.resource_str("service.name"), Some("svc"));
        assert_eq!(s.scope, "scope");
        assert!(c.errors().is_empty());

        // JSON, or garbage claiming to be protobuf, is refused and recorded.
        let resp = raw::request(
            c.addr(),
            "POST",
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        assert_eq!(resp.status, 400);
        let resp = raw::request(
            c.addr(),
            "POST",
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 3\r\n\r\n\xff\xff\xff",
        )
        .await;
        assert_eq!(resp.status, 400);
        assert_eq!(c.errors().len(), 2, "{:?}", c.errors());
        assert_eq!(c.spans().len(), 1);
    }
}
