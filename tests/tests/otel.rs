//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans for proxied requests and for
//! token requests are exported over OTLP/HTTP (protobuf, decoded here by a collector
//! stand-in), and W3C `traceparent` goes to the upstream, continuing the client's trace.

use std::time::Duration;
use tollgate_tests::idp::{Idp, ProtectedUpstream};
use tollgate_tests::otlp::{AttrValue, Collector, ExportedSpan, SpanKind, StatusCode};
use tollgate_tests::{raw, Launch, RecordedRequest, RecordingUpstream, Tollgate};

const CONFIG: &str = "allow_private_networks: true
routes:
  - name: local
    match:
      hosts: [\"127.0.0.1:*\"]
    action: pass
";

const SERVICE: &str = "tollgate-otel-test";
const EXPORT_TIMEOUT: Duration = Duration::from_secs(15);

fn traced(collector: &Collector) -> Launch {
    Launch::new()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", SERVICE)
}

/// A parsed `traceparent`: (trace id, parent id, flags).
#[track_caller]
fn traceparent(req: &RecordedRequest) -> (String, String, String) {
    let all = req.header_all("traceparent");
    assert_eq!(
        all.len(),
        1,
        "exactly one traceparent upstream: {:?}",
        req.headers
    );
    let parts: Vec<&str> = all[0].split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && hex(parts[2], 16)
            && hex(parts[3], 2),
        "malformed traceparent {:?}",
        all[0]
    );
    assert_ne!(parts[1], "0".repeat(32), "all-zero trace id");
    assert_ne!(parts[2], "0".repeat(16), "all-zero parent id");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

async fn get(tg: &Tollgate, port: u16, path: &str, extra_headers: &str) -> raw::RawResponse {
    let req = format!(
        "GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    raw::request(tg.proxy, "GET", req.as_bytes()).await
}

/// Wait for the span named `name` with `span_id` and return it.
async fn span_by_id(c: &Collector, name: &str, span_id: &str) -> ExportedSpan {
    let spans = c
        .wait_for(EXPORT_TIMEOUT, |s| {
            s.iter().any(|s| s.name == name && s.span_id == span_id)
        })
        .await;
    spans
        .iter()
        .find(|s| s.name == name && s.span_id == span_id)
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no {name:?} span {span_id} exported; got {spans:#?}; collector errors {:?}",
                c.errors()
            )
        })
}

/// Checks the attributes of a "proxy request" span. OpenTelemetry's HTTP semantic
/// conventions make `http.response.status_code` and `server.port` integers.
#[track_caller]
fn assert_request_span(s: &ExportedSpan, port: u16, status: i64) {
    assert_eq!(s.kind, SpanKind::Server, "{s:#?}");
    assert_eq!(s.str("http.request.method"), Some("GET"), "{s:#?}");
    assert_eq!(s.str("server.address"), Some("127.0.0.1"), "{s:#?}");
    assert_eq!(s.str("tollgate.route"), Some("local"), "{s:#?}");
    assert_eq!(s.str("tollgate.action"), Some("pass"), "{s:#?}");
    assert_eq!(s.resource_str("service.name"), Some(SERVICE), "{s:#?}");
    assert!(
        s.start_unix_nano > 0 && s.end_unix_nano >= s.start_unix_nano,
        "{s:#?}"
    );
    assert_eq!(
        s.attr("http.response.status_code"),
        Some(&AttrValue::Int(status)),
        "http.response.status_code must be an int attribute: {s:#?}"
    );
    assert_eq!(
        s.attr("upstream.status_code"),
        Some(&AttrValue::Int(status)),
        "{s:#?}"
    );
    assert_eq!(
        s.attr("server.port"),
        Some(&AttrValue::Int(i64::from(port))),
        "server.port must be an int attribute: {s:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proxied_request_is_exported_as_a_span_and_its_trace_goes_upstream() {
    let collector = Collector::start().await;
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::launch(traced(&collector), CONFIG).await;

    let resp = get(&tg, up.port(), "/traced", "").await;
    assert_eq!(resp.status, 200);
    let (trace_id, parent_id, flags) = traceparent(&up.single_request());
    assert_eq!(flags, "01", "the proxy's own trace is sampled");

    let span = span_by_id(&collector, "proxy request", &parent_id).await;
    assert_eq!(
        span.trace_id, trace_id,
        "upstream's traceparent is the span's trace"
    );
    assert_eq!(span.parent_span_id, "", "a new trace: the span is a root");
    assert_request_span(&span, up.port(), 200);
    assert_ne!(span.status, StatusCode::Error, "{span:#?}");

    // A 5xx from the upstream marks the span as an error.
    up.set_status(503);
    let resp = get(&tg, up.port(), "/broken", "").await;
    assert_eq!(resp.status, 503);
    let (_, parent_id, _) = traceparent(&up.requests()[1]);
    let span = span_by_id(&collector, "proxy request", &parent_id).await;
    assert_request_span(&span, up.port(), 503);
    assert_eq!(span.status, StatusCode::Error, "{span:#?}");

    // Each request is its own trace.
    let spans = collector.spans();
    let traces: std::collections::BTreeSet<_> = spans
        .iter()
        .filter(|s| s.name == "proxy request")
        .map(|s| s.trace_id.clone())
        .collect();
    assert_eq!(traces.len(), 2, "{spans:#?}");
    assert!(collector.errors().is_empty(), "{:?}", collector.errors());
    for e in collector.exports() {
        assert_eq!(e.content_type.as_deref(), Some("application/x-protobuf"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn incoming_traceparent_is_continued() {
    let collector = Collector::start().await;
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::launch(traced(&collector), CONFIG).await;

    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let resp = get(
        &tg,
        up.port(),
        "/continued",
        &format!("traceparent: 00-{client_trace}-{client_span}-01\r\ntracestate: vendor=abc\r\n"),
    )
    .await;
    assert_eq!(resp.status, 200);
    let req = up.single_request();
    let (trace_id, parent_id, flags) = traceparent(&req);
    assert_eq!(
        trace_id, client_trace,
        "the client's trace is continued upstream"
    );
    assert_ne!(
        parent_id, client_span,
        "upstream's parent is the proxy's span, not the client's"
    );
    assert_eq!(flags, "01");
    assert_eq!(
        req.header_all("tracestate"),
        vec!["vendor=abc"],
        "tracestate is propagated with the trace"
    );

    let span = span_by_id(&collector, "proxy request", &parent_id).await;
    assert_eq!(span.trace_id, client_trace);
    assert_eq!(
        span.parent_span_id, client_span,
        "child of the client's span"
    );
    assert_request_span(&span, up.port(), 200);
    assert!(collector.errors().is_empty(), "{:?}", collector.errors());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_the_clients_traceparent_passes_through() {
    let up = RecordingUpstream::start().await;
    let tg = Tollgate::start(CONFIG).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = get(&tg, up.port(), "/", &format!("traceparent: {tp}\r\n")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.single_request().header_all("traceparent"), vec![tp]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_requests_are_exported_as_client_spans() {
    let collector = Collector::start().await;
    let idp = Idp::start().await;
    let up = ProtectedUpstream::start(&idp).await;
    let config = format!(
        "allow_private_networks: true
credentials:
  billing:
    token_url: {token_url}
    client_id: basic-client
    client_secret: basic-secret
    scopes: [invoices:read]
routes:
  - name: api
    match:
      hosts: [\"api.test\"]
    action: inject
    credential: billing
    upstream: {upstream}
",
        token_url = idp.token_url,
        upstream = up.url(),
    );
    let tg = Tollgate::launch(traced(&collector), &config).await;
    let send = || async {
        raw::request(
            tg.proxy,
            "GET",
            b"GET http://api.test/v1/x HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
        )
        .await
    };
    assert_eq!(send().await.status, 200);
    // The next request meets a 401: the token is refreshed and the request replayed.
    up.always401(true, Some(1)).await;
    assert_eq!(send().await.status, 200);
    let stats = idp
        .wait_for_token_requests(2, Duration::from_secs(10))
        .await;
    assert_eq!(stats.token_requests, 2, "{stats:#?}");

    let spans = collector
        .wait_for(EXPORT_TIMEOUT, |s| {
            s.iter().filter(|s| s.name == "token request").count() >= 2
                && s.iter().filter(|s| s.name == "proxy request").count() >= 2
        })
        .await;
    let tokens: Vec<_> = spans.iter().filter(|s| s.name == "token request").collect();
    assert_eq!(tokens.len(), 2, "one span per token request: {spans:#?}");
    for s in &tokens {
        assert_eq!(s.kind, SpanKind::Client, "{s:#?}");
        assert_eq!(s.str("credential"), Some("billing"), "{s:#?}");
        assert_eq!(s.str("url.full"), Some(idp.token_url.as_str()), "{s:#?}");
        assert_eq!(s.resource_str("service.name"), Some(SERVICE));
        for (k, v) in &s.attributes {
            if let AttrValue::Str(v) = v {
                assert!(!v.contains("basic-secret"), "secret in attribute {k}");
            }
        }
    }
    let mut requests: Vec<_> = spans.iter().filter(|s| s.name == "proxy request").collect();
    requests.sort_by_key(|s| s.start_unix_nano);
    assert_eq!(requests.len(), 2, "{spans:#?}");
    for s in &requests {
        assert_eq!(s.str("tollgate.route"), Some("api"), "{s:#?}");
        assert_eq!(s.str("tollgate.action"), Some("inject"), "{s:#?}");
    }
    let replayed: Vec<_> = requests
        .iter()
        .map(|s| s.attr("tollgate.replayed").cloned())
        .collect();
    assert_eq!(
        replayed,
        vec![Some(AttrValue::Bool(false)), Some(AttrValue::Bool(true))],
        "{requests:#?}"
    );
    // The upstream saw both tries of the replayed request in the same trace.
    let reqs = up.requests().await;
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    let trace_of = |r: &tollgate_tests::UpstreamRequest| {
        let tp = r.header("traceparent").unwrap_or_default().to_owned();
        tp.split('-').nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(trace_of(&reqs[1]), trace_of(&reqs[2]), "{reqs:#?}");
    assert_eq!(trace_of(&reqs[2]), requests[1].trace_id);
    assert!(collector.errors().is_empty(), "{:?}", collector.errors());
    for s in &requests {
        assert_eq!(
            s.attr("http.response.status_code"),
            Some(&AttrValue::Int(200)),
            "http.response.status_code must be an int attribute: {s:#?}"
        );
    }
}
