//! tollgate-tests: the black-box harness. Start reading at [`process::Tollgate`], which runs
//! the real binary; the scenario files in `tests/tests/` (one per capability) use it with
//! the servers and clients here:
//!
//! - [`upstream::RecordingUpstream`]: plain or TLS HTTP/1.1 upstream that records each
//!   request exactly as received (request-target, header order, body, SNI).
//! - [`tls::TestCa`]: a CA made at run time with rcgen, for TLS upstreams and `--cacert`.
//! - [`echo::EchoServer`]: raw TCP echo for CONNECT tunnels.
//! - [`raw`]: a raw-socket client for exact bytes (malformed requests, CONNECT + payload).
//! - [`callers`]: caller JWTs signed at test time, their JWK Sets, htpasswd lines.
//! - [`clients`]: curl, Python (urllib, requests) and Node (global-agent, undici) runners.
//! - [`idp::Idp`] / [`idp::ProtectedUpstream`]: the real OAuth2 server (oidc-provider) and
//!   the token-validating upstream of `tests/idp/` (needs `npm ci --prefix tests/idp`).
//! - [`providers::Providers`]: local stand-ins for the token endpoints of Auth0, Okta,
//!   Entra ID, Cognito, Google and Keycloak, each checking its documented request shape.
//! - [`redis::RedisServer`]: a real `redis-server` with a password and an ACL user, for the
//!   token store.
//! - [`pki::SenderPki`]: the CA, server and client certificates (CA-issued, self-signed,
//!   expired) and DPoP keys (P-256, and P-384 / RSA to be refused) of sender-constrained
//!   tokens, made at run time.
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

pub mod callers;
pub mod clients;
pub mod echo;
pub mod http1;
pub mod idp;
pub mod pki;
pub mod process;
pub mod providers;
pub mod raw;
pub mod redis;
pub mod tls;
pub mod upstream;

pub use clients::{curl, curl_via, node, node_env, python, python_env, try_curl, ClientResponse};
pub use echo::EchoServer;
pub use idp::{
    Fault, Idp, IdpOptions, IdpStats, ProtectedUpstream, TokenRequest, UpstreamOptions,
    UpstreamRequest,
};
pub use pki::{SenderPki, TlsServer};
pub use process::{check, check_with_env, route, tempdir, ConfigFile, Launch, Tollgate};
pub use raw::{RawConn, RawResponse};
pub use redis::RedisServer;
pub use tls::TestCa;
pub use upstream::{RecordedRequest, RecordingUpstream, Reply, Scripted};

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

// --- Admin and telemetry (issue 6): the OTLP collector stand-in and `/metrics` parsing. ---

pub mod otlp;

/// One sample of a `/metrics` scrape, as the reference parser read it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// e.g. `tollgate_requests_total`, `tollgate_request_duration_seconds_count`.
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family (`kind`: counter, gauge, histogram, ...).
#[derive(Debug, Clone)]
pub struct Family {
    /// The family name as the parser reports it (prometheus_client drops a counter's `_total`).
    pub name: String,
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// A `/metrics` body parsed by Python's `prometheus_client.parser` (a real Prometheus text
/// parser: a malformed exposition fails the test).
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub families: Vec<Family>,
}

const PROM_PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels,
                             "value": s.value if math.isfinite(s.value) else str(s.value)}
                            for s in f.samples]})
print(json.dumps(out))
"#;

impl Scrape {
    /// Parse `text` with `prometheus_client` (panics with the parser's error). Also checks
    /// that the parser kept every sample line (none silently skipped).
    pub async fn parse(text: &str) -> Scrape {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg("-c")
            .arg(PROM_PARSE)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("run python3");
        let mut stdin = child.stdin.take().expect("python stdin");
        stdin
            .write_all(text.as_bytes())
            .await
            .expect("write to python");
        drop(stdin);
        let out = tokio::time::timeout(clients::CLIENT_TIMEOUT, child.wait_with_output())
            .await
            .expect("prometheus_client parser timed out")
            .expect("python3 output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("No module named 'prometheus_client'"),
            "install the test clients' Python packages: \
             `python3 -m pip install -r tests/clients/requirements.txt`\n{stderr}"
        );
        assert!(
            out.status.success(),
            "prometheus_client could not parse /metrics: {stderr}\n--- text ---\n{text}"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("parser printed JSON");
        let families: Vec<Family> = v
            .as_array()
            .expect("array of families")
            .iter()
            .map(|f| Family {
                name: f["name"].as_str().unwrap_or_default().to_string(),
                kind: f["type"].as_str().unwrap_or_default().to_string(),
                help: f["help"].as_str().unwrap_or_default().to_string(),
                samples: f["samples"]
                    .as_array()
                    .map(|ss| {
                        ss.iter()
                            .map(|s| Sample {
                                name: s["name"].as_str().unwrap_or_default().to_string(),
                                labels: s["labels"]
                                    .as_object()
                                    .map(|m| {
                                        m.iter()
                                            .map(|(k, v)| {
                                                (k.clone(), v.as_str().unwrap_or("").to_string())
                                            })
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                                value: match &s["value"] {
                                    serde_json::Value::String(t) => t.parse().unwrap_or(f64::NAN),
                                    other => other.as_f64().unwrap_or(f64::NAN),
                                },
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        let parsed: usize = families.iter().map(|f| f.samples.len()).sum();
        assert_eq!(
            parsed, lines,
            "the parser kept {parsed} samples of {lines} sample lines:\n{text}"
        );
        Scrape {
            text: text.to_string(),
            families,
        }
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.iter().flat_map(|f| f.samples.iter())
    }

    /// The family that has a sample named `sample_name` (e.g. `tollgate_requests_total`).
    pub fn family_of(&self, sample_name: &str) -> Option<&Family> {
        self.families
            .iter()
            .find(|f| f.samples.iter().any(|s| s.name == sample_name))
    }

    /// Sum of the samples named `name` whose labels include every pair in `labels`
    /// (0 when there is none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum::<f64>()
            + 0.0 // an empty f64 sum is -0.0
    }
}

impl Tollgate {
    /// `GET /metrics` on the admin port, checked (200, text format 0.0.4) and parsed.
    /// Scrape `/metrics` once the counters have settled: a request is counted just after
    /// its response is written, so a client can read the response before the count moves.
    /// Scrapes until two in a row, 50 ms apart, agree on `tollgate_requests_total`.
    pub async fn scrape(&self) -> Scrape {
        let mut last = self.scrape_once().await;
        for _ in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let next = self.scrape_once().await;
            let settled = next.sum("tollgate_requests_total", &[])
                == last.sum("tollgate_requests_total", &[]);
            last = next;
            if settled {
                break;
            }
        }
        last
    }

    /// One scrape of `/metrics`, parsed.
    pub async fn scrape_once(&self) -> Scrape {
        let resp = raw::get(self.admin, "/metrics").await;
        assert_eq!(resp.status, 200, "/metrics: {resp:?}");
        let ct = resp.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
            "/metrics content-type {ct:?}"
        );
        Scrape::parse(&resp.body_text()).await
    }
}

/// The body [`SlowUpstream`] sends, in two parts with a pause between them.
pub const SLOW_BODY: (&str, &str) = ("slow-first-half|", "slow-second-half");

/// An HTTP/1.1 upstream on 127.0.0.1 that answers slowly: after reading a request it waits
/// `head_delay`, sends the head and the first part of [`SLOW_BODY`], waits `body_delay`,
/// then sends the rest. Stops when dropped.
pub struct SlowUpstream {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    completed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowUpstream {
    pub async fn start(
        head_delay: std::time::Duration,
        body_delay: std::time::Duration,
    ) -> SlowUpstream {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind slow upstream");
        let addr = listener.local_addr().expect("slow upstream addr");
        let received = Arc::new(AtomicUsize::new(0));
        let completed = Arc::new(AtomicUsize::new(0));
        let (rcv, done) = (received.clone(), completed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (rcv, done) = (rcv.clone(), done.clone());
                tokio::spawn(async move {
                    let mut wire = http1::Wire::new(stream);
                    while let Ok(Some(head)) = wire.read_head(1024 * 1024).await {
                        let Ok(kind) = http1::request_body_kind(&head.headers) else {
                            return;
                        };
                        if wire.read_body(kind).await.is_err() {
                            return;
                        }
                        rcv.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(head_delay).await;
                        let (first, second) = SLOW_BODY;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{first}",
                            first.len() + second.len()
                        );
                        if wire.stream.write_all(head.as_bytes()).await.is_err()
                            || wire.stream.flush().await.is_err()
                        {
                            return;
                        }
                        tokio::time::sleep(body_delay).await;
                        if wire.stream.write_all(second.as_bytes()).await.is_err()
                            || wire.stream.flush().await.is_err()
                        {
                            return;
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        SlowUpstream {
            addr,
            received,
            completed,
            task,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests whose head and body arrived.
    pub fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Responses written completely.
    pub fn completed(&self) -> usize {
        self.completed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait up to `timeout` until `n` requests have arrived; returns whether they did.
    pub async fn wait_received(&self, n: usize, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.received() < n {
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }
}
