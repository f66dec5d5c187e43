//! `tollgate demo`: the zero-setup tour.
//!
//! Starts, on loopback: an in-process OAuth2 token endpoint (a small fake, issuing opaque
//! tokens), an upstream API that accepts only tokens that endpoint issued (and can be told
//! to reject the current one), and the real proxy (this binary, `tollgate run`, as a child
//! process with a generated config). Then it sends traffic through the proxy and reports
//! what each side actually saw: injection, a cache hit, a forced 401 with replay, a denied
//! destination. Without `--once` it stays up and prints a `curl -x` line to try by hand.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const CLIENT_ID: &str = "demo-client";
const CLIENT_SECRET: &str = "demo-secret";

/// What the fake IdP and the upstream saw.
#[derive(Default)]
struct World {
    token_requests: AtomicU64,
    issued: Mutex<HashSet<String>>,
    upstream_requests: AtomicU64,
    /// Authorization values the upstream rejected / accepted, in order.
    seen: Mutex<Vec<(String, u16)>>,
}

impl World {
    fn lock_issued(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn lock_seen(&self) -> std::sync::MutexGuard<'_, Vec<(String, u16)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

async fn token_endpoint(world: Arc<World>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use base64::Engine;
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form = String::from_utf8_lossy(&body).into_owned();
    world.token_requests.fetch_add(1, Ordering::SeqCst);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if auth != expected || !form.contains("grant_type=client_credentials") {
        return respond(
            401,
            "application/json",
            r#"{"error":"invalid_client"}"#.to_owned(),
        );
    }
    let n = world.token_requests.load(Ordering::SeqCst);
    let token = format!("demo-token-{n}-{:08x}", rand_u32());
    world.lock_issued().insert(token.clone());
    respond(
        200,
        "application/json",
        format!(
            r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":300,"scope":"demo:read"}}"#
        ),
    )
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default(),
    );
    h.finish() as u32
}

async fn upstream(world: Arc<World>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    world.upstream_requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    if path == "/_demo/revoke" {
        world.lock_issued().clear();
        return respond(200, "text/plain", "revoked\n".to_owned());
    }
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let status = match auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        Some(tok) if world.lock_issued().contains(tok) => 200,
        Some(_) => 401,
        None if path.starts_with("/public") => 200,
        None => 401,
    };
    world
        .lock_seen()
        .push((auth.clone().unwrap_or_else(|| "(none)".into()), status));
    if status == 401 {
        let mut r = respond(
            401,
            "application/json",
            r#"{"error":"invalid_token"}"#.to_owned(),
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        return r;
    }
    respond(
        200,
        "application/json",
        format!(
            r#"{{"hello":"from the demo upstream","path":"{path}","host":"{host}","authenticated":{}}}"#,
            auth.is_some()
        ),
    )
}

async fn serve<F, Fut>(listener: TcpListener, world: Arc<World>, f: F)
where
    F: Fn(Arc<World>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let world = world.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let world = world.clone();
                async move { Ok::<_, std::convert::Infallible>(f(world, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Kills the proxy child when the demo ends, however it ends.
struct ChildGuard(Child, PathBuf);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// `N` distinct free loopback ports for the proxy to bind. All are held until every one
/// is known: binding and dropping one at a time can hand out the same port twice.
fn free_ports<const N: usize>() -> std::io::Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        *port = l.local_addr()?.port();
        held.push(l);
    }
    Ok(ports)
}

fn config_yaml(proxy: u16, admin: u16, idp: SocketAddr, api: SocketAddr) -> String {
    format!(
        r#"# generated by `tollgate demo`
listen:
  proxy: 127.0.0.1:{proxy}
  admin: 127.0.0.1:{admin}
threads: 1
default_action: deny
allow_private_networks: true     # the demo's upstream lives on loopback

credentials:
  demo:
    token_url: http://{idp}/oauth2/token
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    scopes: [demo:read]

routes:
  - name: demo-api
    match:
      hosts: [api.demo.test]
    action: inject
    credential: demo
    upstream: http://{api}
  - name: demo-public
    match:
      hosts: [public.demo.test]
    action: pass
    upstream: http://{api}
"#
    )
}

struct Step {
    ok: bool,
    line: String,
}

fn step(ok: bool, line: String) -> Step {
    Step { ok, line }
}

async fn tour(
    world: &World,
    proxy: u16,
    api: SocketAddr,
) -> Result<Vec<Step>, Box<dyn std::error::Error>> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .proxy(reqwest::Proxy::http(format!("http://127.0.0.1:{proxy}"))?)
        .timeout(Duration::from_secs(15))
        .build()?;
    let mut steps = Vec::new();

    // 1. Pass route: forwarded untouched.
    let r = client
        .get("http://public.demo.test/public/hello")
        .send()
        .await?;
    let s = r.status().as_u16();
    steps.push(step(
        s == 200,
        format!("pass        GET http://public.demo.test/public/hello -> {s} (forwarded without a credential)"),
    ));

    // 2. Inject route, cold cache: one token request, header attached.
    let before = world.token_requests.load(Ordering::SeqCst);
    let r = client
        .get("http://api.demo.test/v1/invoices")
        .send()
        .await?;
    let s = r.status().as_u16();
    let err = header(&r, "tollgate-error");
    let fetched = world.token_requests.load(Ordering::SeqCst) - before;
    let bearer_seen = world
        .lock_seen()
        .last()
        .is_some_and(|(a, st)| a.starts_with("Bearer ") && *st == 200);
    steps.push(step(
        s == 200 && fetched == 1 && bearer_seen,
        format!(
            "inject      GET http://api.demo.test/v1/invoices -> {s}{err} (token requests: {fetched}; upstream saw a Bearer token it issued: {bearer_seen})"
        ),
    ));

    // 3. Cache hit: no token request.
    let before = world.token_requests.load(Ordering::SeqCst);
    let r = client
        .get("http://api.demo.test/v1/invoices/2")
        .send()
        .await?;
    let s = r.status().as_u16();
    let fetched = world.token_requests.load(Ordering::SeqCst) - before;
    steps.push(step(
        s == 200 && fetched == 0,
        format!(
            "cache hit   GET http://api.demo.test/v1/invoices/2 -> {s} (token requests: {fetched})"
        ),
    ));

    // 4. The upstream stops accepting the token: 401, fresh token, replay.
    reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!("http://{api}/_demo/revoke"))
        .send()
        .await?;
    let before_tokens = world.token_requests.load(Ordering::SeqCst);
    let before_seen = world.lock_seen().len();
    let r = client
        .post("http://api.demo.test/v1/invoices")
        .body(r#"{"amount":42}"#)
        .send()
        .await?;
    let s = r.status().as_u16();
    let err = header(&r, "tollgate-error");
    let fetched = world.token_requests.load(Ordering::SeqCst) - before_tokens;
    let statuses: Vec<u16> = world.lock_seen()[before_seen..]
        .iter()
        .map(|x| x.1)
        .collect();
    steps.push(step(
        s == 200 && statuses == [401, 200] && fetched == 1,
        format!(
            "401 replay  POST http://api.demo.test/v1/invoices -> {s}{err} (upstream answered {statuses:?}; token requests: {fetched}; the client saw only the replay)"
        ),
    ));

    // 5. A destination no route allows.
    let before = world.upstream_requests.load(Ordering::SeqCst);
    let r = client.get("http://blocked.demo.test/").send().await?;
    let s = r.status().as_u16();
    let err = header(&r, "tollgate-error");
    let reached = world.upstream_requests.load(Ordering::SeqCst) - before;
    steps.push(step(
        s == 403 && err.contains("no_route") && reached == 0,
        format!(
            "denied      GET http://blocked.demo.test/ -> {s}{err} (reached the upstream: {})",
            reached > 0
        ),
    ));
    Ok(steps)
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" [{name}: {v}]"))
        .unwrap_or_default()
}

async fn wait_ready(admin: u16, child: &mut Child) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{admin}/readyz");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the proxy exited early ({status})"));
        }
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the proxy did not become ready within 10 s".into())
}

async fn demo(once: bool) -> Result<bool, Box<dyn std::error::Error>> {
    let world = Arc::new(World::default());
    let idp_l = TcpListener::bind("127.0.0.1:0").await?;
    let api_l = TcpListener::bind("127.0.0.1:0").await?;
    let (idp, api) = (idp_l.local_addr()?, api_l.local_addr()?);
    tokio::spawn(serve(idp_l, world.clone(), token_endpoint));
    tokio::spawn(serve(api_l, world.clone(), upstream));

    let [proxy, admin] = free_ports()?;
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("tollgate.yaml");
    std::fs::write(&cfg, config_yaml(proxy, admin, idp, api))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("run")
        .arg("-c")
        .arg(&cfg)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .spawn()?;
    let mut guard = ChildGuard(child, dir);
    wait_ready(admin, &mut guard.0).await?;

    println!("tollgate demo: everything below runs on loopback");
    println!("  token endpoint  http://{idp}/oauth2/token   (in-process fake OAuth2 server)");
    println!(
        "  upstream API    http://{api}                (accepts only tokens that endpoint issued)"
    );
    println!(
        "  proxy           http://127.0.0.1:{proxy}    (admin http://127.0.0.1:{admin}/metrics)"
    );
    println!("  config          {}", cfg.display());
    println!();
    let steps = tour(&world, proxy, api).await?;
    let mut all = true;
    for s in &steps {
        all &= s.ok;
        println!("  {} {}", if s.ok { "ok  " } else { "FAIL" }, s.line);
    }
    println!();
    println!("Try it yourself:");
    println!("  curl -x http://127.0.0.1:{proxy} http://api.demo.test/v1/invoices");
    println!("  curl -x http://127.0.0.1:{proxy} http://blocked.demo.test/");
    println!(
        "  tollgate route -c {} http://api.demo.test/v1/invoices",
        cfg.display()
    );
    if !once {
        println!();
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    drop(guard);
    Ok(all)
}

pub fn run(once: bool) -> i32 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate demo: {e}");
            return 1;
        }
    };
    match rt.block_on(demo(once)) {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("tollgate demo: some steps did not behave as expected (see FAIL above)");
            1
        }
        Err(e) => {
            eprintln!("tollgate demo: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        for _ in 0..50 {
            let ports: [u16; 4] = free_ports().expect("ports");
            let set: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
            assert_eq!(set.len(), 4, "{ports:?}");
            assert!(ports.iter().all(|p| *p != 0), "{ports:?}");
        }
    }
}
