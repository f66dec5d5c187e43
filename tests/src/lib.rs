//! tollgate-tests: the black-box harness. Start reading at [`process::Tollgate`], which runs
//! the real binary; the scenario files in `tests/tests/` (one per capability) use it with
//! the servers and clients here:
//!
//! - [`upstream::RecordingUpstream`]: plain or TLS HTTP/1.1 upstream that records each
//!   request exactly as received (request-target, header order, body, SNI).
//! - [`tls::TestCa`]: a CA made at run time with rcgen, for TLS upstreams and `--cacert`.
//! - [`echo::EchoServer`]: raw TCP echo for CONNECT tunnels.
//! - [`raw`]: a raw-socket client for exact bytes (malformed requests, CONNECT + payload).
//! - [`clients`]: curl, Python (urllib, requests) and Node (global-agent, undici) runners.
//!
//! Everything binds 127.0.0.1 only; every test gets its own ports and temp dir.
//! The binary is `target/debug/tollgate` (build it with `cargo build -p tollgate`) or
//! `$TOLLGATE_BIN`.
//!
//! Running, from the workspace root:
//!
//! ```text
//! cargo build -p tollgate
//! npm ci --prefix tests/clients                             # global-agent, undici
//! python3 -m pip install -r tests/clients/requirements.txt  # requests
//! cargo test -p tollgate-tests
//! ```
//!
//! A failing test prints the proxy's captured output (stdout and stderr) after its panic.

pub mod clients;
pub mod echo;
pub mod http1;
pub mod process;
pub mod raw;
pub mod tls;
pub mod upstream;

pub use clients::{curl, curl_via, node, python, ClientResponse};
pub use echo::EchoServer;
pub use process::{check, check_with_env, route, tempdir, ConfigFile, Launch, Tollgate};
pub use raw::{RawConn, RawResponse};
pub use tls::TestCa;
pub use upstream::{RecordedRequest, RecordingUpstream, Reply};

/// Assert that `resp` is one of the proxy's own JSON errors:
/// status `status`, header `tollgate-error: code`, body `{"error": code, "message": <non-empty
/// string>, "route": route}` (`route: None` means JSON `null`). Returns the body.
#[track_caller]
pub fn assert_proxy_error(
    status: u16,
    headers: &[(String, String)],
    body: &str,
    want_status: u16,
    code: &str,
    route: Option<&str>,
) -> serde_json::Value {
    let context = format!("status {status}, headers {headers:?}, body {body:?}");
    assert_eq!(status, want_status, "wrong status; {context}");
    assert_eq!(
        http1::header(headers, "tollgate-error"),
        Some(code),
        "wrong or missing tollgate-error header; {context}"
    );
    let ct = http1::header(headers, "content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error body should be application/json; {context}"
    );
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}); {context}"));
    assert_eq!(v["error"], code, "wrong \"error\" in body; {context}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "\"message\" must be a non-empty string; {context}"
    );
    match route {
        Some(name) => assert_eq!(v["route"], name, "wrong \"route\"; {context}"),
        None => assert!(v["route"].is_null(), "\"route\" must be null; {context}"),
    }
    v
}

impl ClientResponse {
    /// [`assert_proxy_error`] on this response.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, route: Option<&str>) -> serde_json::Value {
        assert_proxy_error(self.status, &self.headers, &self.body, status, code, route)
    }
}

impl RawResponse {
    /// [`assert_proxy_error`] on this response.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, route: Option<&str>) -> serde_json::Value {
        assert_proxy_error(
            self.status,
            &self.headers,
            &self.body_text(),
            status,
            code,
            route,
        )
    }
}
