//! Real HTTP clients pointed at the proxy: curl, Python (urllib, requests) and Node
//! (global-agent, undici). The scripts live in `tests/clients/`; each prints one JSON
//! object `{"status", "headers": [[name, value]...], "body"}` on stdout.

use crate::http1;
use crate::process::{tempdir, tests_dir, PROXY_VARS};
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;

/// Upper bound for one client run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A response as a client reported it.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// What the client printed on stderr (diagnostics).
    pub stderr: String,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "client got a non-JSON body ({e}): status {} headers {:?} body {:?}",
                self.status, self.headers, self.body
            )
        })
    }
}

/// Where the client scripts live.
pub fn clients_dir() -> PathBuf {
    tests_dir().join("clients")
}

/// `program` with no proxy variables inherited (callers set the ones they mean).
fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    cmd
}

async fn run(mut cmd: Command) -> std::process::Output {
    let what = format!("{cmd:?}");
    let child = cmd.output();
    match tokio::time::timeout(CLIENT_TIMEOUT, child).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("could not run {what}: {e}"),
        Err(_) => panic!("{what} did not finish within {CLIENT_TIMEOUT:?}"),
    }
}

/// Run curl with `args` plus `-sS --max-time 20`; parse the last response head from the
/// header dump (a CONNECT's `200 Connection established` block comes first with `-p`).
/// Panics if curl itself fails (exit code != 0), showing its stderr.
pub async fn curl(args: &[&str]) -> ClientResponse {
    try_curl(args)
        .await
        .unwrap_or_else(|e| panic!("curl {args:?} failed: {e}"))
}

/// Like [`curl`] but returns curl's failure (exit code and stderr) as `Err`.
pub async fn try_curl(args: &[&str]) -> Result<ClientResponse, String> {
    let dir = tempdir();
    let head_file = dir.path().join("head");
    let body_file = dir.path().join("body");
    let mut cmd = command("curl");
    cmd.args(["-sS", "--max-time", "20", "-D"])
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file)
        .args(args);
    let out = run(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("exit {:?}: {stderr}", out.status.code()));
    }
    let heads = std::fs::read_to_string(&head_file).unwrap_or_default();
    let last = heads
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .ok_or_else(|| format!("curl wrote no response head; stderr: {stderr}"))?;
    let head = http1::parse_head(last.trim_start().as_bytes())?;
    let status = head
        .start_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", head.start_line))?;
    let body = std::fs::read(&body_file).unwrap_or_default();
    Ok(ClientResponse {
        status,
        headers: head.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        stderr,
    })
}

/// `curl -x PROXY URL EXTRA...`
pub async fn curl_via(proxy_url: &str, url: &str, extra: &[&str]) -> ClientResponse {
    let mut args = vec!["-x", proxy_url, url];
    args.extend_from_slice(extra);
    curl(&args).await
}

fn parse_script_output(what: &str, out: &std::process::Output) -> ClientResponse {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed (exit {:?})\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("{what} printed no JSON ({e})\nstdout: {stdout}\nstderr: {stderr}")
    });
    let status = v["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or_else(|| panic!("{what}: no status in {v}"));
    let headers = v["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    Some((
                        h.get(0)?.as_str()?.to_string(),
                        h.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    ClientResponse {
        status,
        headers,
        body: v["body"].as_str().unwrap_or_default().to_string(),
        stderr,
    }
}

/// Run `python3 tests/clients/SCRIPT ARGS...` with `HTTP_PROXY`/`HTTPS_PROXY` (both
/// cases) set to `proxy_url`.
pub async fn python(script: &str, args: &[&str], proxy_url: &str) -> ClientResponse {
    python_env(script, args, proxy_url, &[]).await
}

/// [`python`] with more environment variables (`REQUESTS_CA_BUNDLE`, ...).
pub async fn python_env(
    script: &str,
    args: &[&str],
    proxy_url: &str,
    env: &[(&str, &str)],
) -> ClientResponse {
    let path = clients_dir().join(script);
    let mut cmd = command("python3");
    cmd.arg(&path).args(args).envs(env.iter().copied());
    for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"] {
        cmd.env(var, proxy_url);
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "python3 {script}: a module is missing; install the test clients' Python packages \
         with `python3 -m pip install -r tests/clients/requirements.txt`:\n{stderr}"
    );
    parse_script_output(&format!("python3 {script} {args:?}"), &out)
}

/// Run `node tests/clients/SCRIPT ARGS...` with `HTTP_PROXY`, `HTTPS_PROXY` and
/// `GLOBAL_AGENT_HTTP_PROXY` set to `proxy_url`. Panics with the fix when
/// `tests/clients/node_modules` is missing.
pub async fn node(script: &str, args: &[&str], proxy_url: &str) -> ClientResponse {
    node_env(script, args, proxy_url, &[]).await
}

/// [`node`] with more environment variables (`NODE_EXTRA_CA_CERTS`, ...).
pub async fn node_env(
    script: &str,
    args: &[&str],
    proxy_url: &str,
    env: &[(&str, &str)],
) -> ClientResponse {
    let modules = clients_dir().join("node_modules");
    for package in ["global-agent", "undici"] {
        assert!(
            modules.join(package).is_dir(),
            "{} is missing: run `npm ci --prefix tests/clients` first",
            modules.join(package).display()
        );
    }
    let path = clients_dir().join(script);
    let mut cmd = command("node");
    cmd.arg(&path).args(args).envs(env.iter().copied());
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "GLOBAL_AGENT_HTTP_PROXY",
    ] {
        cmd.env(var, proxy_url);
    }
    cmd.env("NODE_NO_WARNINGS", "1");
    let out = run(cmd).await;
    parse_script_output(&format!("node {script} {args:?}"), &out)
}

#[cfg(test)]
mod tests {
    //! The client runners against the recording upstream posing as the proxy: proves the
    //! scripts honour the proxy settings and send absolute-form, without tollgate.
    use super::*;
    use crate::upstream::RecordingUpstream;

    async fn assert_absolute_form(up: &RecordingUpstream, resp: &ClientResponse, method: &str) {
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.json()["target"], "http://client-check.test:8080/p?q=1");
        let req = up.requests().pop().expect("a request at the fake proxy");
        assert_eq!(req.method, method);
        assert_eq!(req.target, "http://client-check.test:8080/p?q=1");
        assert_eq!(req.header("host"), Some("client-check.test:8080"));
        if method == "POST" {
            assert_eq!(req.body_text(), r#"{"n":1}"#);
        }
    }

    const URL: &str = "http://client-check.test:8080/p?q=1";

    #[tokio::test(flavor = "multi_thread")]
    async fn curl_python_and_node_send_absolute_form_to_the_proxy() {
        let up = RecordingUpstream::start().await;
        let proxy = format!("http://{}", up.addr());
        let resp = curl_via(&proxy, URL, &[]).await;
        assert_absolute_form(&up, &resp, "GET").await;
        for script in ["py_urllib.py", "py_requests.py"] {
            let resp = python(script, &[URL], &proxy).await;
            assert_absolute_form(&up, &resp, "GET").await;
            let resp = python(
                script,
                &[URL, "--method", "POST", "--data", r#"{"n":1}"#],
                &proxy,
            )
            .await;
            assert_absolute_form(&up, &resp, "POST").await;
        }
        for script in ["node_global_agent.mjs", "node_undici.mjs"] {
            let resp = node(script, &[URL], &proxy).await;
            assert_absolute_form(&up, &resp, "GET").await;
            let resp = node(script, &[URL, "POST", r#"{"n":1}"#], &proxy).await;
            assert_absolute_form(&up, &resp, "POST").await;
        }
    }
}
