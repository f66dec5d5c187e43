use super::*;
use crate::http1::{parse_request, parse_response};
use crate::metrics::Metrics;
use crate::plan::plan;
use crate::state::State;
use crate::target;
use bytes::BytesMut;
use tollgate_rules::{load_str, PathNormalization, RequestFacts};

const CONFIG: &str = "credentials:\n  c:\n    token_url: https://idp.test/token\n    client_id: a\n    client_secret: b\nroutes:\n  - name: inj\n    match: { hosts: [inj.test] }\n    action: inject\n    credential: c\n    header: X-Api-Key\n    prefix: \"\"\n  - name: pass\n    match: { hosts: [pass.test] }\n    action: pass\n  - name: up\n    match: { hosts: [up.test] }\n    action: pass\n    upstream: https://real.test:8443\n";

fn state() -> State {
    let config = load_str("t.yaml", CONFIG, &|_: &str| None).expect("config");
    State::build(config, &Metrics::new().expect("metrics"), None)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// The upstream head for `req`, as a string.
fn rewritten(req: &str, credential: Option<&[u8]>, trace: Option<(&str, Option<&str>)>) -> String {
    let state = state();
    let head = parse_request(&mut BytesMut::from(req))
        .expect("head")
        .expect("complete");
    let parsed = target::parse(&head).expect("target");
    let path =
        tollgate_rules::path::normalize(parsed.path, PathNormalization::Normalize).expect("path");
    let facts = RequestFacts {
        host: &parsed.target.host,
        port: parsed.target.port,
        scheme: parsed.target.scheme,
        path: &path,
        method: head.method(),
        client: None,
        caller: None,
    };
    let plan = plan(&state, &parsed.target, &facts).expect("plan");
    let mut out = Vec::new();
    request_head(
        &mut out,
        &head,
        &plan,
        &path,
        parsed.query,
        &Added {
            dpop: None,
            via: "1.1 tollgate-t",
            trace,
            credential,
        },
    );
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn absolute_form_becomes_origin_form_with_host() {
    let out = rewritten(
        "GET http://pass.test/a/../b?x=1 HTTP/1.1\r\nHost: pass.test\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
        None,
        None,
    );
    assert_eq!(
        out,
        "GET /b?x=1 HTTP/1.1\r\nHost: pass.test\r\nUser-Agent: t\r\nAccept: */*\r\nVia: 1.1 tollgate-t\r\n\r\n"
    );
}

#[test]
fn origin_form_keeps_the_clients_host_in_place() {
    let out = rewritten(
        "GET /p HTTP/1.1\r\nX-A: 1\r\nHost: pass.test\r\n\r\n",
        None,
        None,
    );
    assert_eq!(
        out,
        "GET /p HTTP/1.1\r\nX-A: 1\r\nHost: pass.test\r\nVia: 1.1 tollgate-t\r\n\r\n"
    );
}

#[test]
fn a_route_upstream_sets_host() {
    let out = rewritten("GET /p HTTP/1.1\r\nHost: up.test\r\n\r\n", None, None);
    assert!(
        out.starts_with("GET /p HTTP/1.1\r\nHost: real.test:8443\r\n"),
        "{out}"
    );
    assert_eq!(out.matches("Host:").count(), 1, "{out}");
}

#[test]
fn http10_without_host_gets_one() {
    let out = rewritten("GET http://pass.test/old HTTP/1.0\r\n\r\n", None, None);
    assert!(
        out.starts_with("GET /old HTTP/1.1\r\nHost: pass.test\r\n"),
        "{out}"
    );
}

#[test]
fn hop_by_hop_and_proxy_credentials_are_dropped() {
    let out = rewritten(
        "POST http://pass.test/ HTTP/1.1\r\nHost: pass.test\r\nConnection: keep-alive, X-Secret, Content-Length\r\nX-Secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nProxy-Authorization: Basic dTpw\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: websocket\r\nExpect: 100-continue\r\nContent-Length: 2\r\nX-Keep: k\r\n\r\n",
        None,
        None,
    );
    for gone in [
        "X-Secret",
        "Keep-Alive",
        "Proxy-",
        "TE:",
        "Trailer",
        "Upgrade",
        "Expect",
        "Connection",
    ] {
        assert!(!out.contains(gone), "{gone} in {out}");
    }
    assert!(
        out.contains("Content-Length: 2\r\n"),
        "framing kept even when named: {out}"
    );
    assert!(out.contains("X-Keep: k\r\n"), "{out}");
}

#[test]
fn the_clients_credential_is_replaced_and_ours_added_last() {
    let out = rewritten(
        "GET http://inj.test/v HTTP/1.1\r\nHost: inj.test\r\nx-api-key: stolen\r\nAuthorization: Basic kept\r\n\r\n",
        Some(b"tok-123"),
        None,
    );
    assert!(!out.contains("stolen"), "{out}");
    assert!(
        out.contains("Authorization: Basic kept\r\n"),
        "another header is not ours to drop: {out}"
    );
    assert!(
        out.ends_with("Via: 1.1 tollgate-t\r\nX-Api-Key: tok-123\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn trace_context_replaces_the_clients() {
    let out = rewritten(
        "GET http://pass.test/ HTTP/1.1\r\nHost: pass.test\r\ntraceparent: 00-aa-bb-01\r\ntracestate: x=1\r\n\r\n",
        None,
        Some(("00-cc-dd-01", Some("y=2"))),
    );
    assert!(
        !out.contains("00-aa-bb-01") && !out.contains("x=1"),
        "{out}"
    );
    assert!(
        out.contains("traceparent: 00-cc-dd-01\r\ntracestate: y=2\r\n"),
        "{out}"
    );
}

fn response(raw: &str, reply: Reply<'_>) -> String {
    let resp = parse_response(&mut BytesMut::from(raw))
        .expect("head")
        .expect("complete");
    let mut out = Vec::new();
    response_head(&mut out, &resp, &reply);
    String::from_utf8(out).expect("utf-8")
}

fn reply() -> Reply<'static> {
    Reply {
        keep_alive: true,
        client: Version::Http11,
        drop_length: false,
        dechunk: false,
        via: "1.1 tollgate-t",
    }
}

#[test]
fn response_rewrites() {
    let out = response(
        "HTTP/1.1 404 Not Found\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Up: a\r\nContent-Length: 0\r\n\r\n",
        reply(),
    );
    assert_eq!(
        out,
        "HTTP/1.1 404 Not Found\r\nX-Up: a\r\nContent-Length: 0\r\nVia: 1.1 tollgate-t\r\n\r\n"
    );
    let out = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
        Reply {
            keep_alive: false,
            drop_length: true,
            ..reply()
        },
    );
    assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 tollgate-t\r\nConnection: close\r\n\r\n");
    let out = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n",
        Reply {
            keep_alive: false,
            client: Version::Http10,
            dechunk: true,
            ..reply()
        },
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nVia: 1.1 tollgate-t\r\nConnection: close\r\n\r\n"
    );
    let out = response(
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Reply {
            client: Version::Http10,
            ..reply()
        },
    );
    assert!(out.ends_with("Connection: keep-alive\r\n\r\n"), "{out}");
    // A response without a body (to HEAD) names no transfer coding to an HTTP/1.0 client
    // either, though there is nothing to de-chunk.
    let out = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\nX-Up: a\r\n\r\n",
        Reply {
            client: Version::Http10,
            ..reply()
        },
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nX-Up: a\r\nVia: 1.1 tollgate-t\r\nConnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn via_detects_our_own_entry_only() {
    let head = |via: &str| {
        parse_request(&mut BytesMut::from(
            format!("GET / HTTP/1.1\r\nVia: {via}\r\n\r\n").as_str(),
        ))
        .expect("head")
        .expect("complete")
    };
    assert!(via_names(&head("1.1 tollgate-t"), "tollgate-t"));
    assert!(via_names(
        &head("1.0 fred, 1.1 TOLLGATE-T (tollgate)"),
        "tollgate-t"
    ));
    assert!(!via_names(&head("1.1 tollgate-other"), "tollgate-t"));
    assert!(
        !via_names(&head("1.1 squid, tollgate-t"), "tollgate-t"),
        "a pseudonym must follow a protocol"
    );
}
