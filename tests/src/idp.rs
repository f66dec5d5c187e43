//! The real OAuth2 server and the token-validating upstream of `tests/idp/`, started from
//! Rust tests.
//!
//! - [`Idp`] runs `node tests/idp/idp.mjs` (panva's oidc-provider, client credentials
//!   grant) on a free 127.0.0.1 port. Clients it knows: `basic-client` / `basic-secret`
//!   (client_secret_basic), `post-client` / `post-secret` (client_secret_post),
//!   `jwt-client` (private_key_jwt ES256, key [`jwt_client_key`]), `jwt-rs-client`
//!   (private_key_jwt RS256, key [`jwt_rs_client_key`]), `rotating-client` /
//!   `rotating-secret` (client_secret_basic; [`Idp::rotate`] changes the accepted secret),
//!   `dpop-client` / `dpop-secret` (client_secret_basic, DPoP proof required),
//!   `mtls-client` (tls_client_auth: a certificate of the `--tls-ca` CA with subject
//!   `O=tollgate-tests, CN=mtls-client`), `self-signed-client` (self_signed_tls_client_auth,
//!   with [`IdpOptions::self_signed_client_certs`]); the mutual TLS clients' tokens carry
//!   `cnf.x5t#S256`, DPoP tokens `cnf.jkt`. HTTPS with [`IdpOptions::tls`] (see
//!   [`crate::pki::SenderPki`]).
//!   Scopes: `invoices:read invoices:write other:read`. Tokens are RS256 JWTs by default.
//! - [`ProtectedUpstream`] runs `node tests/idp/upstream.mjs`: every non-`/_test/` request
//!   needs a valid `Bearer` token from that IdP (JWT signature via `/jwks`, or introspection
//!   for opaque tokens), is recorded, and answers 200 with a JSON echo (see the README).
//!   Certificate-bound tokens need their TLS client certificate; DPoP-bound ones the
//!   `DPoP` scheme and a proof it verifies completely ([`UpstreamRequest::dpop_error`] says
//!   what failed); [`UpstreamOptions::dpop_nonce`] demands a server nonce.
//!
//! Both are killed by PID (SIGKILL) when dropped. They are also spawned with a piped stdin
//! and `--exit-on-stdin-close`, so they exit if the test process dies without running
//! `Drop`. On a panicking drop their stderr is printed.
//!
//! ```ignore
//! use tollgate_tests::idp::{Idp, IdpOptions, ProtectedUpstream, Fault};
//! let idp = Idp::start().await;                                  // or Idp::start_with(IdpOptions { ttl: Some(3), ..Default::default() })
//! let up = ProtectedUpstream::start(&idp).await;
//! // config: token_url: {idp.token_url}, upstream: {up.url()}
//! idp.fault(Fault::status(503).count(-1)).await;                 // POST /_test/fault
//! idp.delay(2000).await;                                         // {"delay_ms": 2000}
//! idp.clear_fault().await;                                       // {"clear": true}
//! idp.rotate("new-secret").await;                                // rotating-client
//! idp.set_ttl(2).await;                                          // POST /_test/config
//! let stats = idp.stats().await;                                 // GET /_test/stats, parsed
//! assert_eq!(stats.token_requests, 1);
//! assert_eq!(stats.requests[0].auth_method, "client_secret_basic");
//! let stats = idp.wait_for_token_requests(2, Duration::from_secs(10)).await;
//! up.revoke_all().await;                                         // POST /_test/revoke
//! up.always401(true, None).await;                                // POST /_test/always401
//! up.insufficient_scope(true, Some(1), None).await;
//! up.fail(403, 1).await;                                         // POST /_test/fail
//! let reqs = up.requests().await;                                // GET /_test/requests, parsed
//! assert_eq!(reqs[0].status, Some(200));
//! ```
//!
//! Prerequisite: `npm ci --prefix tests/idp` (the launcher panics with that hint when
//! `tests/idp/node_modules` is missing) and `node` (20+) on PATH.

use crate::http1::{self, Wire};
use crate::pki::TlsServer;
use crate::process::{tests_dir, Captured, PROXY_VARS};
use crate::raw;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// How long `idp.mjs` / `upstream.mjs` may take to print their ready line (a busy 2-core
/// machine can be slow to start node).
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the polling helpers (`wait_for_*`) wait by default.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(15);

/// `tests/idp/`.
pub fn idp_dir() -> PathBuf {
    tests_dir().join("idp")
}

/// `tests/idp/fixtures/jwt-client-es256.pem` (private key of `jwt-client`, ES256).
pub fn jwt_client_key() -> PathBuf {
    idp_dir().join("fixtures").join("jwt-client-es256.pem")
}

/// `tests/idp/fixtures/jwt-client-rs256.pem` (private key of `jwt-rs-client`, RS256).
pub fn jwt_rs_client_key() -> PathBuf {
    idp_dir().join("fixtures").join("jwt-client-rs256.pem")
}

fn check_node_modules() {
    let dir = idp_dir();
    let marker = dir.join("node_modules").join("oidc-provider");
    assert!(
        marker.is_dir(),
        "{} is missing: install the test IdP's dependencies first with \
         `npm ci --prefix tests/idp` (from the workspace root)",
        marker.display()
    );
}

/// A `node` child process speaking the ready-line protocol.
pub(crate) struct NodeChild {
    child: Option<Child>,
    /// Held so the child sees EOF (and exits) only when we go away.
    _stdin: Option<ChildStdin>,
    stderr: Captured,
    name: &'static str,
}

impl NodeChild {
    /// Spawn `node tests/idp/<script> --exit-on-stdin-close ARGS` and wait for its ready line.
    pub(crate) fn spawn(name: &'static str, script: &str, args: &[String]) -> (NodeChild, Value) {
        check_node_modules();
        let dir = idp_dir();
        let mut cmd = Command::new("node");
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        cmd.arg(dir.join(script))
            .arg("--exit-on-stdin-close")
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("spawn {cmd:?}: {e} (is node 20+ on PATH? run `npm ci --prefix tests/idp`)")
        });
        let stdin = child.stdin.take();
        let stderr = Captured::default();
        if let Some(mut pipe) = child.stderr.take() {
            let buf = stderr.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.append(&chunk[..n]),
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        if let Some(pipe) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(pipe).lines();
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
                // Drain anything else (nothing is expected) so the child never blocks.
                for _ in lines {}
            });
        }
        let mut node = NodeChild {
            child: Some(child),
            _stdin: stdin,
            stderr,
            name,
        };
        let line = match rx.recv_timeout(NODE_READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                node.kill();
                panic!(
                    "{name} ({script}) printed no ready line within {NODE_READY_TIMEOUT:?} ({e}); \
                     stderr:\n{}",
                    node.stderr.text()
                );
            }
        };
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "{name}: ready line is not JSON ({e}): {line:?}; stderr:\n{}",
                node.stderr.text()
            )
        });
        assert_eq!(
            ready["ready"],
            true,
            "{name}: unexpected ready line {line:?}; stderr:\n{}",
            node.stderr.text()
        );
        (node, ready)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let _ = child.wait();
        }
    }

    pub(crate) fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} stderr ---\n{}\n--- end of {} stderr ---",
                self.name,
                self.stderr.text(),
                self.name
            );
        }
    }
}

/// One request to a `/_test/` endpoint; returns the status and the JSON body.
pub(crate) async fn control(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Value {
    control_via(addr, None, method, path, body).await
}

/// [`control`] over TLS when `tls` is given (a server started with `--tls-cert`).
pub(crate) async fn control_via(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = match tls {
        None => raw::request(addr, method, req.as_bytes()).await,
        Some(config) => tls_request(addr, config, method, req.as_bytes()).await,
    };
    assert_eq!(
        resp.status,
        200,
        "{method} {path} on {addr} with {body} answered {}: {}",
        resp.status,
        resp.body_text()
    );
    resp.json()
}

/// One request over TLS to `addr` (server name `127.0.0.1`), one response.
async fn tls_request(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    method: &str,
    request: &[u8],
) -> raw::RawResponse {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let stream = connector
        .connect(crate::tls::server_name("127.0.0.1"), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
    let mut wire = Wire::new(stream);
    wire.stream
        .write_all(request)
        .await
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    let head = wire
        .read_head(1024 * 1024)
        .await
        .unwrap_or_else(|e| panic!("response from {addr}: {e}"))
        .unwrap_or_else(|| panic!("{addr} closed without a response"));
    let mut parts = head.start_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status: u16 = parts.next().unwrap_or_default().parse().unwrap_or(0);
    let reason = parts.next().unwrap_or_default().to_string();
    let kind = http1::response_body_kind(method, status, &head.headers)
        .unwrap_or_else(|e| panic!("response from {addr}: {e}"));
    let (body, trailers) = wire
        .read_body_and_trailers(kind)
        .await
        .unwrap_or_else(|e| panic!("response body from {addr}: {e}"));
    raw::RawResponse {
        version,
        status,
        reason,
        headers: head.headers,
        body,
        trailers,
        interim: Vec::new(),
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn u64_field(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn bool_field(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn count_map(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------------ IdP

/// Token format of the IdP's access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    /// RS256 JWT (`typ: at+jwt`), verified by the upstream against `/jwks`.
    Jwt,
    /// Opaque, verified by the upstream through introspection.
    Opaque,
}

/// Options for [`Idp::start_with`]. `Default` = the CLI defaults (TTL 300 s, JWT, strict
/// auth methods, default resource `https://api.test`).
#[derive(Debug, Clone, Default)]
pub struct IdpOptions {
    /// `--ttl`: access token lifetime in seconds.
    pub ttl: Option<u32>,
    /// `--format`.
    pub format: Option<TokenFormat>,
    /// `--default-resource`.
    pub default_resource: Option<String>,
    /// `--lenient-auth`: accept basic and post interchangeably.
    pub lenient_auth: bool,
    /// `--verbose`: one stderr line per token request (shown on a panicking drop).
    pub verbose: bool,
    /// `--tls-cert`/`--tls-key` (`--tls-ca` from `client_ca`): serve HTTPS; clients may
    /// present a certificate (`mtls-client`, `self-signed-client`).
    pub tls: Option<TlsServer>,
    /// `--self-signed-client-cert` (each): registers `self-signed-client` with these.
    pub self_signed_client_certs: Vec<PathBuf>,
    /// `--dpop-require-nonce`: the token endpoint demands a DPoP nonce.
    pub dpop_require_nonce: bool,
}

/// A running `idp.mjs`. Dropping it kills the process.
pub struct Idp {
    node: NodeChild,
    pub port: u16,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (`https://` with [`IdpOptions::tls`])
    pub issuer: String,
    /// `http://127.0.0.1:PORT/token` (`https://` with [`IdpOptions::tls`])
    pub token_url: String,
    /// The HTTPS identity it serves, if any.
    pub tls: Option<TlsServer>,
}

/// A token-endpoint fault for [`Idp::fault`] (`POST /_test/fault`).
#[derive(Debug, Clone)]
pub struct Fault(Value);

impl Fault {
    /// Answer `status` (error code by default: 503 → `temporarily_unavailable`, other 5xx →
    /// `server_error`, 401 → `invalid_client`, 429 → `slow_down`, else `invalid_request`)
    /// to the next request.
    pub fn status(status: u16) -> Fault {
        Fault(json!({ "status": status }))
    }

    /// 401 `invalid_client`.
    pub fn invalid_client() -> Fault {
        Fault(json!({ "status": 401, "error": "invalid_client" }))
    }

    /// Drop the connection without an answer (a network error).
    pub fn close() -> Fault {
        Fault(json!({ "close": true }))
    }

    /// Apply to the next `n` token requests (`-1`: until cleared; default 1).
    pub fn count(mut self, n: i64) -> Fault {
        self.0["count"] = json!(n);
        self
    }

    /// Set the OAuth `error` code.
    pub fn error(mut self, error: &str) -> Fault {
        self.0["error"] = json!(error);
        self
    }

    pub fn error_description(mut self, text: &str) -> Fault {
        self.0["error_description"] = json!(text);
        self
    }

    /// Send `Retry-After: seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Fault {
        self.0["retry_after"] = json!(seconds);
        self
    }

    /// Also delay every token response by `ms` (until set to 0).
    pub fn delay_ms(mut self, ms: u64) -> Fault {
        self.0["delay_ms"] = json!(ms);
        self
    }

    /// The JSON body sent.
    pub fn body(&self) -> &Value {
        &self.0
    }
}

/// One token request as the IdP saw it (an entry of `requests` in `/_test/stats`).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub seq: u64,
    pub received_at_ms: u64,
    pub client_id: Option<String>,
    /// From the wire: `client_secret_basic`, `client_secret_post`, `private_key_jwt`,
    /// `client_secret_jwt`, `none` or `multiple`.
    pub auth_method: String,
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub audience: Option<String>,
    /// Every form field except `client_secret` and `client_assertion`.
    pub fields: BTreeMap<String, Value>,
    /// Request headers (Authorization shown as `Basic <redacted>`).
    pub headers: Value,
    /// Decoded client assertion claims/header for private_key_jwt.
    pub client_assertion: Option<Value>,
    /// Answer status (`0`: connection closed by a fault; `None`: still in flight).
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Answered by an injected fault.
    pub fault: bool,
    /// Rejected because the auth method did not match the registered one.
    pub strict_auth_rejected: bool,
    /// `{"token_type","expires_in","scope","format","jti","aud","exp"}` when a token was issued.
    pub issued: Option<Value>,
    pub duration_ms: Option<u64>,
    /// oidc-provider's reason for a refusal, which it does not send (`client certificate
    /// was not provided`, `DPoP proof JWT not provided`, ...).
    pub error_detail: Option<String>,
    /// The TLS client certificate (`{present, x5t_s256, subject, issuer, self_signed,
    /// authorized, ...}`), when one was presented.
    pub client_cert: Option<Value>,
    /// A `DPoP` header was sent.
    pub dpop_proof_present: bool,
    /// The proof, decoded (`{typ, alg, jwk_kty, jwk_crv, jwk_thumbprint, htm, htu, iat,
    /// jti, nonce, ath}`).
    pub dpop_proof: Option<Value>,
    /// The proof carried a `nonce`.
    pub dpop_nonce_present: bool,
    /// The `DPoP-Nonce` header of the answer.
    pub dpop_nonce_answered: Option<String>,
    /// The entry as received.
    pub raw: Value,
}

impl TokenRequest {
    fn parse(v: &Value) -> TokenRequest {
        TokenRequest {
            seq: u64_field(v, "seq").unwrap_or(0),
            received_at_ms: u64_field(v, "received_at_ms").unwrap_or(0),
            client_id: str_field(v, "client_id"),
            auth_method: str_field(v, "auth_method").unwrap_or_default(),
            grant_type: str_field(v, "grant_type"),
            scope: str_field(v, "scope"),
            resource: str_field(v, "resource"),
            audience: str_field(v, "audience"),
            fields: v
                .get("fields")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, x)| (k.clone(), x.clone())).collect())
                .unwrap_or_default(),
            headers: v.get("headers").cloned().unwrap_or(Value::Null),
            client_assertion: v.get("client_assertion").cloned(),
            status: u64_field(v, "status").and_then(|s| u16::try_from(s).ok()),
            error: str_field(v, "error"),
            fault: bool_field(v, "fault"),
            strict_auth_rejected: bool_field(v, "strict_auth_rejected"),
            issued: v.get("issued").cloned(),
            duration_ms: u64_field(v, "duration_ms"),
            error_detail: str_field(v, "error_detail"),
            client_cert: v
                .get("client_cert")
                .filter(|c| bool_field(c, "present"))
                .cloned(),
            dpop_proof_present: bool_field(v, "dpop_proof_present"),
            dpop_proof: v.get("dpop_proof").cloned(),
            dpop_nonce_present: bool_field(v, "dpop_nonce_present"),
            dpop_nonce_answered: str_field(v, "dpop_nonce_answered"),
            raw: v.clone(),
        }
    }

    /// `x5t#S256` of the presented TLS client certificate.
    pub fn client_cert_x5t(&self) -> Option<String> {
        self.client_cert
            .as_ref()
            .and_then(|c| str_field(c, "x5t_s256"))
    }

    /// The `nonce` of the DPoP proof.
    pub fn dpop_nonce(&self) -> Option<String> {
        self.dpop_proof.as_ref().and_then(|p| str_field(p, "nonce"))
    }

    /// A claim of the DPoP proof (`htu`, `htm`, `jti`, `jwk_thumbprint`, ...).
    pub fn dpop_claim(&self, name: &str) -> Option<String> {
        self.dpop_proof.as_ref().and_then(|p| str_field(p, name))
    }

    /// `cnf` of the issued JWT.
    pub fn issued_cnf(&self) -> Option<Value> {
        self.issued
            .as_ref()
            .and_then(|i| i.get("cnf"))
            .filter(|c| !c.is_null())
            .cloned()
    }

    /// `token_type` of the answer (before a rewrite).
    pub fn issued_token_type(&self) -> Option<String> {
        self.issued
            .as_ref()
            .and_then(|i| str_field(i, "token_type"))
    }

    /// A form field as a string.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// `jti` of the issued token (for an opaque token: the token itself).
    pub fn issued_jti(&self) -> Option<String> {
        self.issued.as_ref().and_then(|i| str_field(i, "jti"))
    }

    /// Whether it was answered 200 with a token.
    pub fn succeeded(&self) -> bool {
        self.status == Some(200) && self.issued.is_some()
    }
}

/// `GET /_test/stats`, parsed.
#[derive(Debug, Clone)]
pub struct IdpStats {
    /// Every token request, faulted ones included.
    pub token_requests: usize,
    pub by_client: BTreeMap<String, u64>,
    pub by_auth_method: BTreeMap<String, u64>,
    pub introspection_requests: u64,
    pub ttl: u64,
    pub delay_ms: u64,
    /// The token requests in arrival order.
    pub requests: Vec<TokenRequest>,
    /// The whole answer.
    pub raw: Value,
}

impl IdpStats {
    fn parse(v: Value) -> IdpStats {
        IdpStats {
            token_requests: u64_field(&v, "token_requests")
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0),
            by_client: count_map(&v["by_client"]),
            by_auth_method: count_map(&v["by_auth_method"]),
            introspection_requests: u64_field(&v, "introspection_requests").unwrap_or(0),
            ttl: u64_field(&v, "ttl").unwrap_or(0),
            delay_ms: u64_field(&v, "delay_ms").unwrap_or(0),
            requests: v["requests"]
                .as_array()
                .map(|a| a.iter().map(TokenRequest::parse).collect())
                .unwrap_or_default(),
            raw: v,
        }
    }

    /// Token requests answered 200 with a token.
    pub fn successful(&self) -> usize {
        self.requests.iter().filter(|r| r.succeeded()).count()
    }

    /// Token requests answered by an injected fault.
    pub fn faulted(&self) -> usize {
        self.requests.iter().filter(|r| r.fault).count()
    }

    /// The token requests of one client, in order.
    pub fn of_client(&self, client_id: &str) -> Vec<&TokenRequest> {
        self.requests
            .iter()
            .filter(|r| r.client_id.as_deref() == Some(client_id))
            .collect()
    }

    /// `by_client_detail[client_id]`: `{requests, with_dpop_proof, with_dpop_nonce,
    /// with_client_cert, use_dpop_nonce, issued}` (zeros when the client made none).
    pub fn client_detail(&self, client_id: &str) -> BTreeMap<String, u64> {
        count_map(&self.raw["by_client_detail"][client_id])
    }
}

impl Idp {
    /// Start with the defaults (TTL 300 s, JWT tokens, strict auth methods).
    pub async fn start() -> Idp {
        Self::start_with(IdpOptions::default()).await
    }

    pub async fn start_with(opts: IdpOptions) -> Idp {
        let mut args: Vec<String> = vec!["--port".into(), "0".into()];
        if let Some(ttl) = opts.ttl {
            args.extend(["--ttl".into(), ttl.to_string()]);
        }
        if let Some(format) = opts.format {
            let f = match format {
                TokenFormat::Jwt => "jwt",
                TokenFormat::Opaque => "opaque",
            };
            args.extend(["--format".into(), f.into()]);
        }
        if let Some(r) = &opts.default_resource {
            args.extend(["--default-resource".into(), r.clone()]);
        }
        if opts.lenient_auth {
            args.push("--lenient-auth".into());
        }
        if opts.verbose {
            args.push("--verbose".into());
        }
        if let Some(tls) = &opts.tls {
            args.extend([
                "--tls-cert".into(),
                tls.cert.display().to_string(),
                "--tls-key".into(),
                tls.key.display().to_string(),
            ]);
            if let Some(ca) = &tls.client_ca {
                args.extend(["--tls-ca".into(), ca.display().to_string()]);
            }
        }
        for cert in &opts.self_signed_client_certs {
            args.extend([
                "--self-signed-client-cert".into(),
                cert.display().to_string(),
            ]);
        }
        if opts.dpop_require_nonce {
            args.push("--dpop-require-nonce".into());
        }
        let (node, ready) =
            tokio::task::spawn_blocking(move || NodeChild::spawn("idp", "idp.mjs", &args))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let port = u64_field(&ready, "port")
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("idp: no port in the ready line {ready}"));
        Idp {
            node,
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            issuer: str_field(&ready, "issuer")
                .unwrap_or_else(|| format!("http://127.0.0.1:{port}")),
            token_url: str_field(&ready, "token_url")
                .unwrap_or_else(|| format!("http://127.0.0.1:{port}/token")),
            tls: opts.tls,
        }
    }

    /// One request to a `/_test/` endpoint (over TLS when the IdP serves HTTPS).
    async fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let trust = self.tls.as_ref().map(|t| &t.trust);
        control_via(self.addr, trust, method, path, body).await
    }

    /// `/_test/config {"dpop_require_nonce": on}`.
    pub async fn set_dpop_require_nonce(&self, on: bool) {
        self.config(json!({ "dpop_require_nonce": on })).await;
    }

    /// What the IdP printed on stderr so far.
    pub fn output(&self) -> String {
        self.node.stderr.text()
    }

    pub fn is_running(&mut self) -> bool {
        self.node.is_running()
    }

    /// Kill the process now (SIGKILL by PID). Idempotent; also done on drop.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// `GET /_test/stats`, parsed.
    pub async fn stats(&self) -> IdpStats {
        IdpStats::parse(self.control("GET", "/_test/stats", None).await)
    }

    /// `POST /_test/reset`: log, counters, faults, delay, rotating secret, runtime config.
    pub async fn reset(&self) {
        self.control("POST", "/_test/reset", Some(&json!({}))).await;
    }

    /// `POST /_test/fault` with `fault`.
    pub async fn fault(&self, fault: Fault) {
        self.control("POST", "/_test/fault", Some(&fault.0)).await;
    }

    /// `POST /_test/fault` with any JSON body.
    pub async fn fault_json(&self, body: Value) {
        self.control("POST", "/_test/fault", Some(&body)).await;
    }

    /// Delay every token response by `ms` (0 turns it off). Faults are kept.
    pub async fn delay(&self, ms: u64) {
        self.fault_json(json!({ "delay_ms": ms })).await;
    }

    /// Delay each answer by `ms` after the token was issued (0 turns it off).
    pub async fn delay_after(&self, ms: u64) {
        self.fault_json(json!({ "delay_after_ms": ms })).await;
    }

    /// Change successful token responses until cleared: each field set to its value, or
    /// removed when it is `null` (`{"token_type": "mac"}`, `{"expires_in": 0}`).
    pub async fn rewrite(&self, fields: Value) {
        self.fault_json(json!({ "rewrite": fields })).await;
    }

    /// Remove the fault (the delay stays; use [`Idp::delay`]`(0)`).
    pub async fn clear_fault(&self) {
        self.fault_json(json!({ "clear": true })).await;
    }

    /// `POST /_test/rotate`: from now on `rotating-client` is accepted only with `secret`.
    pub async fn rotate(&self, secret: &str) {
        self.control(
            "POST",
            "/_test/rotate",
            Some(&json!({ "client_id": "rotating-client", "secret": secret })),
        )
        .await;
    }

    /// Like [`Idp::rotate`], also changing the registered auth method
    /// (`client_secret_basic` | `client_secret_post`).
    pub async fn rotate_with_method(&self, secret: &str, auth_method: &str) {
        self.control(
            "POST",
            "/_test/rotate",
            Some(&json!({
                "client_id": "rotating-client",
                "secret": secret,
                "auth_method": auth_method,
            })),
        )
        .await;
    }

    /// `POST /_test/config` with any subset of `{"ttl","format","strict_auth"}`.
    pub async fn config(&self, body: Value) {
        self.control("POST", "/_test/config", Some(&body)).await;
    }

    /// Token lifetime for tokens issued from now on.
    pub async fn set_ttl(&self, seconds: u32) {
        self.config(json!({ "ttl": seconds })).await;
    }

    /// The token requests in arrival order (`requests` of `/_test/stats`).
    pub async fn requests(&self) -> Vec<TokenRequest> {
        self.stats().await.requests
    }

    /// Poll `/_test/stats` until `pred` holds; panics with the last stats after `timeout`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&IdpStats) -> bool,
    ) -> IdpStats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats().await;
            if pred(&stats) {
                return stats;
            }
            if Instant::now() > deadline {
                panic!("IdP: {what} did not happen within {timeout:?}; stats: {stats:#?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Poll until at least `n` token requests have been received (and answered).
    pub async fn wait_for_token_requests(&self, n: usize, timeout: Duration) -> IdpStats {
        self.wait_until(&format!("{n} token requests"), timeout, |s| {
            s.token_requests >= n && s.requests.iter().all(|r| r.status.is_some())
        })
        .await
    }
}

// ------------------------------------------------------------------------ upstream

/// Options for [`ProtectedUpstream::start_with`].
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// `--audience`: also require this `aud`.
    pub audience: Option<String>,
    /// `--tls-cert` / `--tls-key` (`--tls-ca` from `client_ca`): serve HTTPS; clients may
    /// present a certificate.
    pub tls: Option<TlsServer>,
    /// `--require-cnf`: refuse tokens that are not certificate-bound (bound ones are
    /// always checked against the client certificate).
    pub require_cnf: bool,
    /// `--dpop-nonce`: demand the current server nonce in DPoP proofs.
    pub dpop_nonce: bool,
    /// `--dpop-nonce-always-new`: challenge every DPoP request with a new nonce.
    pub dpop_nonce_always_new: bool,
    /// `--introspection-cache` seconds (default 0: ask every time).
    pub introspection_cache: Option<u32>,
    /// `--verbose`: one stderr line per request (shown on a panicking drop).
    pub verbose: bool,
}

/// A running `upstream.mjs` that accepts only valid tokens of one [`Idp`]. Dropping it
/// kills the process.
pub struct ProtectedUpstream {
    node: NodeChild,
    pub port: u16,
    pub addr: SocketAddr,
    pub tls: bool,
    trust: Option<Arc<rustls::ClientConfig>>,
}

/// One request the upstream received (an entry of `/_test/requests`).
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub seq: u64,
    pub received_at_ms: u64,
    pub method: String,
    /// The request-target as received.
    pub url: String,
    pub path: String,
    pub query: String,
    pub http_version: String,
    /// Headers as Node combines them (lower-case names).
    pub headers: Value,
    /// `[name, value]` pairs as received, in order.
    pub raw_headers: Vec<(String, String)>,
    pub body_length: u64,
    pub body_sha256: String,
    pub bearer_present: bool,
    /// The answer's status (`None` while still in flight).
    pub status: Option<u16>,
    pub www_authenticate: Option<String>,
    /// Validated token claims (`format, sub, client_id, scope, aud, iss, iat, exp, jti,
    /// iat_ms`) when the token was valid.
    pub token: Option<Value>,
    /// Why the token was refused (`token expired`, `token revoked`, `always401 is on`, ...).
    pub token_error: Option<String>,
    /// `fail`, `always401` or `insufficient_scope` when a switch answered.
    pub injected: Option<String>,
    /// The scheme of `Authorization` as sent (`Bearer`, `DPoP`, ...).
    pub authorization_scheme: Option<String>,
    /// `x5t#S256` of the TLS client certificate, when one was presented.
    pub client_cert_x5t: Option<String>,
    /// Number of `DPoP` header lines.
    pub dpop_count: u64,
    /// The DPoP proof as decoded (`{typ, alg, jwk, jwk_has_private, htm, htu, iat, jti,
    /// ath, nonce, jkt}`), with the `DPoP` scheme.
    pub dpop: Option<Value>,
    /// The proof passed every check.
    pub dpop_valid: bool,
    /// Why the proof (or a DPoP-bound token) was refused: the `error_description`.
    pub dpop_error: Option<String>,
    /// `invalid_dpop_proof`, `invalid_token` or `use_dpop_nonce`.
    pub dpop_error_code: Option<String>,
    /// The `htu` the upstream expected.
    pub dpop_expected_htu: Option<String>,
    /// The nonce a `use_dpop_nonce` answer carried in `DPoP-Nonce`.
    pub dpop_nonce_sent: Option<String>,
    /// Why a certificate-bound token was refused.
    pub cnf_error: Option<String>,
    /// The entry as received.
    pub raw: Value,
}

impl UpstreamRequest {
    fn parse(v: &Value) -> UpstreamRequest {
        UpstreamRequest {
            seq: u64_field(v, "seq").unwrap_or(0),
            received_at_ms: u64_field(v, "received_at_ms").unwrap_or(0),
            method: str_field(v, "method").unwrap_or_default(),
            url: str_field(v, "url").unwrap_or_default(),
            path: str_field(v, "path").unwrap_or_default(),
            query: str_field(v, "query").unwrap_or_default(),
            http_version: str_field(v, "http_version").unwrap_or_default(),
            headers: v.get("headers").cloned().unwrap_or(Value::Null),
            raw_headers: v
                .get("raw_headers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            Some((
                                p.get(0)?.as_str()?.to_string(),
                                p.get(1)?.as_str()?.to_string(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body_length: u64_field(v, "body_length").unwrap_or(0),
            body_sha256: str_field(v, "body_sha256").unwrap_or_default(),
            bearer_present: bool_field(v, "bearer_present"),
            status: u64_field(v, "status").and_then(|s| u16::try_from(s).ok()),
            www_authenticate: str_field(v, "www_authenticate"),
            token: v.get("token").cloned().filter(|t| !t.is_null()),
            token_error: str_field(v, "token_error"),
            injected: str_field(v, "injected"),
            authorization_scheme: str_field(v, "authorization_scheme"),
            client_cert_x5t: v.get("client_cert").and_then(|c| str_field(c, "x5t_s256")),
            dpop_count: u64_field(v, "dpop_count").unwrap_or(0),
            dpop: v.get("dpop").cloned().filter(|d| !d.is_null()),
            dpop_valid: bool_field(v, "dpop_valid"),
            dpop_error: str_field(v, "dpop_error"),
            dpop_error_code: str_field(v, "dpop_error_code"),
            dpop_expected_htu: str_field(v, "dpop_expected_htu"),
            dpop_nonce_sent: str_field(v, "dpop_nonce_sent"),
            cnf_error: str_field(v, "cnf_error"),
            raw: v.clone(),
        }
    }

    /// A claim of the DPoP proof (`htu`, `htm`, `jti`, `ath`, `nonce`, `jkt`, ...).
    pub fn dpop_claim(&self, name: &str) -> Option<String> {
        self.dpop.as_ref().and_then(|d| str_field(d, name))
    }

    /// `cnf` of the validated token.
    pub fn token_cnf(&self) -> Option<Value> {
        self.token
            .as_ref()
            .and_then(|t| t.get("cnf"))
            .filter(|c| !c.is_null())
            .cloned()
    }

    /// The access token as sent in `Authorization` (after the scheme).
    pub fn access_token(&self) -> Option<String> {
        self.header("authorization")
            .and_then(|a| a.split_once(' '))
            .map(|(_, t)| t.trim().to_string())
    }

    /// A header by (lower-case) name, as Node combined it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name.to_ascii_lowercase())
            .and_then(Value::as_str)
    }

    /// Every raw header value with this name (case-insensitive), in wire order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.raw_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `jti` of the validated token.
    pub fn token_jti(&self) -> Option<String> {
        self.token.as_ref().and_then(|t| str_field(t, "jti"))
    }

    /// `exp` (seconds) of the validated token.
    pub fn token_exp(&self) -> Option<u64> {
        self.token.as_ref().and_then(|t| u64_field(t, "exp"))
    }

    /// `client_id` of the validated token.
    pub fn token_client_id(&self) -> Option<String> {
        self.token.as_ref().and_then(|t| str_field(t, "client_id"))
    }
}

impl ProtectedUpstream {
    /// Start, trusting `idp`'s tokens (JWKS at `ISSUER/jwks`, introspection with
    /// `upstream-client`).
    pub async fn start(idp: &Idp) -> ProtectedUpstream {
        Self::start_with(idp, UpstreamOptions::default()).await
    }

    pub async fn start_with(idp: &Idp, opts: UpstreamOptions) -> ProtectedUpstream {
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--issuer".into(),
            idp.issuer.clone(),
        ];
        if let Some(aud) = &opts.audience {
            args.extend(["--audience".into(), aud.clone()]);
        }
        let tls = opts.tls.is_some();
        if let Some(t) = &opts.tls {
            args.extend([
                "--tls-cert".into(),
                t.cert.display().to_string(),
                "--tls-key".into(),
                t.key.display().to_string(),
            ]);
            if let Some(ca) = &t.client_ca {
                args.extend(["--tls-ca".into(), ca.display().to_string()]);
            }
        }
        // An https IdP: trust its CA for the JWKS and introspection.
        if let Some(t) = &idp.tls {
            args.extend(["--idp-ca".into(), t.ca_file.display().to_string()]);
        }
        if opts.require_cnf {
            args.push("--require-cnf".into());
        }
        if opts.dpop_nonce {
            args.push("--dpop-nonce".into());
        }
        if opts.dpop_nonce_always_new {
            args.push("--dpop-nonce-always-new".into());
        }
        let trust = opts.tls.as_ref().map(|t| t.trust.clone());
        if let Some(s) = opts.introspection_cache {
            args.extend(["--introspection-cache".into(), s.to_string()]);
        }
        if opts.verbose {
            args.push("--verbose".into());
        }
        let (node, ready) = tokio::task::spawn_blocking(move || {
            NodeChild::spawn("upstream", "upstream.mjs", &args)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let port = u64_field(&ready, "port")
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("upstream: no port in the ready line {ready}"));
        ProtectedUpstream {
            node,
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tls,
            trust,
        }
    }

    /// One request to a `/_test/` endpoint (over TLS when the upstream serves HTTPS).
    async fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        control_via(self.addr, self.trust.as_ref(), method, path, body).await
    }

    /// `POST /_test/config` with any subset of `{"require_cnf", "dpop_nonce",
    /// "dpop_nonce_always_new"}`.
    pub async fn config(&self, body: Value) {
        self.control("POST", "/_test/config", Some(&body)).await;
    }

    /// `GET /_test/dpop_nonce`: `{on, always_new, current, challenges, accepted, rejected}`.
    pub async fn dpop_nonce_state(&self) -> Value {
        self.control("GET", "/_test/dpop_nonce", None).await
    }

    /// `POST /_test/dpop_nonce {"rotate": true}`: a fresh nonce; returns it.
    pub async fn rotate_dpop_nonce(&self) -> String {
        let v = self
            .control(
                "POST",
                "/_test/dpop_nonce",
                Some(&json!({ "rotate": true })),
            )
            .await;
        str_field(&v, "current").expect("the current nonce")
    }

    /// `POST /_test/dpop_nonce` with any body (`{"on": bool}`, `{"always_new": bool}`,
    /// `{"value": "..."}`).
    pub async fn dpop_nonce(&self, body: Value) -> Value {
        self.control("POST", "/_test/dpop_nonce", Some(&body)).await
    }

    /// `http://127.0.0.1:PORT` (or `https://`), for a route's `upstream:`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, for `match.hosts` and absolute-form URLs.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the upstream printed on stderr so far.
    pub fn output(&self) -> String {
        self.node.stderr.text()
    }

    pub fn is_running(&mut self) -> bool {
        self.node.is_running()
    }

    /// Kill the process now (SIGKILL by PID). Idempotent; also done on drop.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// `GET /_test/requests`: every request so far (rejected ones too), in order.
    pub async fn requests(&self) -> Vec<UpstreamRequest> {
        self.requests_since(0).await
    }

    /// `GET /_test/requests?since=SEQ`: requests with `seq > since`.
    pub async fn requests_since(&self, since: u64) -> Vec<UpstreamRequest> {
        let v = self
            .control("GET", &format!("/_test/requests?since={since}"), None)
            .await;
        v["requests"]
            .as_array()
            .map(|a| a.iter().map(UpstreamRequest::parse).collect())
            .unwrap_or_default()
    }

    /// Number of requests received so far (the `count` of `/_test/requests`).
    pub async fn count(&self) -> u64 {
        let v = self.control("GET", "/_test/requests?since=0", None).await;
        u64_field(&v, "count").unwrap_or(0)
    }

    /// Poll until at least `n` requests have been received and answered.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<UpstreamRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests().await;
            if reqs.len() >= n && reqs.iter().all(|r| r.status.is_some()) {
                return reqs;
            }
            if Instant::now() > deadline {
                panic!(
                    "upstream: {n} answered requests did not arrive within {timeout:?}; \
                     got {reqs:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `POST /_test/reset`: clear records, revocations and switches.
    pub async fn reset(&self) {
        self.control("POST", "/_test/reset", Some(&json!({}))).await;
    }

    /// `POST /_test/revoke` without a body: reject every token issued before now and
    /// every token seen so far. Tokens issued afterwards work.
    pub async fn revoke_all(&self) {
        self.control("POST", "/_test/revoke", Some(&json!({})))
            .await;
    }

    /// Revoke one token by `jti`.
    pub async fn revoke_jti(&self, jti: &str) {
        self.control("POST", "/_test/revoke", Some(&json!({ "jti": jti })))
            .await;
    }

    /// `POST /_test/always401`: 401 `invalid_token` to every request (`count`: only the next N).
    pub async fn always401(&self, on: bool, count: Option<i64>) {
        let mut body = json!({ "on": on });
        if let Some(n) = count {
            body["count"] = json!(n);
        }
        self.control("POST", "/_test/always401", Some(&body)).await;
    }

    /// `POST /_test/insufficient_scope`: valid tokens get 401 (or `status`) with
    /// `error="insufficient_scope"`.
    pub async fn insufficient_scope(&self, on: bool, count: Option<i64>, status: Option<u16>) {
        let mut body = json!({ "on": on });
        if let Some(n) = count {
            body["count"] = json!(n);
        }
        if let Some(s) = status {
            body["status"] = json!(s);
        }
        self.control("POST", "/_test/insufficient_scope", Some(&body))
            .await;
    }

    /// `POST /_test/fail`: the next `count` requests (-1: until cleared) get `status`.
    pub async fn fail(&self, status: u16, count: i64) {
        self.fail_json(json!({ "status": status, "count": count }))
            .await;
    }

    /// `POST /_test/fail` with any body (`headers`, `body` ...).
    pub async fn fail_json(&self, body: Value) {
        self.control("POST", "/_test/fail", Some(&body)).await;
    }

    /// Turn `fail` off.
    pub async fn clear_fail(&self) {
        self.fail_json(json!({ "status": null })).await;
    }

    /// `POST /_test/delay`: delay every response by `ms`.
    pub async fn delay(&self, ms: u64) {
        self.control("POST", "/_test/delay", Some(&json!({ "delay_ms": ms })))
            .await;
    }
}
