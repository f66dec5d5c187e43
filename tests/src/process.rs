//! Running the real `tollgate` binary: `tollgate run` as a supervised child process
//! (free loopback ports, config in a temp dir, output captured, SIGINT on drop) and the
//! one-shot subcommands (`check`, `route`).

use crate::raw;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long `tollgate run` may take to answer 200 on `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long after SIGINT before the harness sends SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Upper bound for one CLI invocation.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Proxy-related variables removed from every child's environment so that nothing
/// the harness runs is redirected by the developer's or CI's own proxy settings.
pub const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "GLOBAL_AGENT_HTTP_PROXY",
    "GLOBAL_AGENT_HTTPS_PROXY",
    "GLOBAL_AGENT_NO_PROXY",
    "TOLLGATE_CONFIG",
];

/// The `tests/` directory of the workspace.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of the binary under test: `$TOLLGATE_BIN`, else `$CARGO_TARGET_DIR/debug/tollgate`,
/// else `<workspace>/target/debug/tollgate`. Panics with what to do when it is missing.
pub fn binary() -> PathBuf {
    let path = if let Some(p) = std::env::var_os("TOLLGATE_BIN") {
        PathBuf::from(p)
    } else if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            tests_dir().join("..").join(dir)
        };
        dir.join("debug").join("tollgate")
    } else {
        tests_dir()
            .join("..")
            .join("target")
            .join("debug")
            .join("tollgate")
    };
    assert!(
        path.is_file(),
        "the tollgate binary is not at {}: build it first with `cargo build -p tollgate` \
         (or point TOLLGATE_BIN at it)",
        path.display()
    );
    path
}

/// A config file in its own temp directory (removed on drop).
pub struct ConfigFile {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    /// Write `yaml` to `<new temp dir>/tollgate.yaml`.
    pub fn new(yaml: &str) -> ConfigFile {
        Self::new_in(tempdir(), yaml)
    }

    /// Write `yaml` to `dir/tollgate.yaml`.
    pub fn new_in(dir: TempDir, yaml: &str) -> ConfigFile {
        let path = dir.path().join("tollgate.yaml");
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        ConfigFile { dir, path }
    }
}

/// A fresh temp directory.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("tollgate-test-")
        .tempdir()
        .expect("create temp dir")
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// stdout then stderr.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panic (showing the output) unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A `tollgate` command with a clean environment (no proxy variables, no
/// `TOLLGATE_CONFIG`).
pub fn command() -> Command {
    let mut cmd = Command::new(binary());
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Run a command to completion (bounded by [`CLI_TIMEOUT`]), capturing its output.
pub fn run_to_end(mut cmd: Command) -> CmdOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = capture(child.stdout.take(), None);
    let stderr = capture(child.stderr.take(), None);
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {CLI_TIMEOUT:?}; output so far:\n{}{}",
                stdout.text(),
                stderr.text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CmdOutput {
        code: status.code(),
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    }
}

/// `tollgate check -c FILE` on `yaml` written to a temp file. Returns the file (keep it
/// alive to know its path) and the output.
pub fn check(yaml: &str) -> (ConfigFile, CmdOutput) {
    check_with_env(yaml, &[])
}

/// Like [`check`], with extra environment variables for `${VAR}` substitution.
pub fn check_with_env(yaml: &str, env: &[(&str, &str)]) -> (ConfigFile, CmdOutput) {
    let file = ConfigFile::new(yaml);
    let out = check_file(&file.path, env);
    (file, out)
}

/// `tollgate check -c PATH`.
pub fn check_file(path: &Path, env: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = command();
    cmd.arg("check").arg("-c").arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_to_end(cmd)
}

/// `tollgate route -c FILE ARGS...` (ARGS: the URL, `--method M`, `--client IP`).
pub fn route(file: &ConfigFile, args: &[&str]) -> CmdOutput {
    let mut cmd = command();
    cmd.arg("route").arg("-c").arg(&file.path).args(args);
    run_to_end(cmd)
}

/// One `FILE:LINE:COL: message` line of `tollgate check` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every `FILE:LINE:COL: message` line in `text` whose FILE ends with `file_suffix`.
pub fn diagnostics(text: &str, file_suffix: &str) -> Vec<Diagnostic> {
    text.lines()
        .filter_map(|line| {
            let at = line.find(file_suffix)? + file_suffix.len();
            let file = &line[..at];
            let rest = line[at..].strip_prefix(':')?;
            let (l, rest) = rest.split_once(':')?;
            let (c, message) = rest.split_once(':')?;
            Some(Diagnostic {
                file: file.to_string(),
                line: l.parse().ok()?,
                column: c.parse().ok()?,
                message: message.strip_prefix(' ')?.to_string(),
            })
        })
        .collect()
}

/// 1-based number of the first line of `yaml` containing `needle`.
pub fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not in the YAML:\n{yaml}"))
}

/// Shared, growing copy of a child's output.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("output lock")).into_owned()
    }
}

impl Captured {
    /// Add bytes (used by other launchers, e.g. [`crate::idp`]).
    pub fn append(&self, bytes: &[u8]) {
        self.0.lock().expect("output lock").extend_from_slice(bytes);
    }
}

struct Capture {
    buf: Captured,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn text(&self) -> String {
        self.buf.text()
    }

    fn finish(mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.buf.text()
    }
}

/// Copy a pipe into a buffer on a thread; `also` receives the same bytes (combined log).
fn capture<R: Read + Send + 'static>(pipe: Option<R>, also: Option<Captured>) -> Capture {
    let buf = Captured::default();
    let b = buf.clone();
    let thread = pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        b.0.lock()
                            .expect("output lock")
                            .extend_from_slice(&chunk[..n]);
                        if let Some(also) = &also {
                            also.0
                                .lock()
                                .expect("output lock")
                                .extend_from_slice(&chunk[..n]);
                        }
                    }
                }
            }
        })
    });
    Capture { buf, thread }
}

/// Two distinct free ports on 127.0.0.1 (both held while choosing).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
    (
        a.local_addr().expect("local addr").port(),
        b.local_addr().expect("local addr").port(),
    )
}

/// Options for [`Tollgate::launch`].
pub struct Launch {
    dir: Option<TempDir>,
    env: Vec<(String, String)>,
    binary: Option<PathBuf>,
}

impl Default for Launch {
    fn default() -> Self {
        Self::new()
    }
}

impl Launch {
    pub fn new() -> Launch {
        Launch {
            dir: None,
            env: vec![("RUST_LOG".into(), "info".into())],
            binary: None,
        }
    }

    /// Run this executable instead of [`binary()`] (the harness's own tests use a fake).
    pub fn binary(mut self, path: PathBuf) -> Launch {
        self.binary = Some(path);
        self
    }

    /// Put the config in `dir` (which may already hold CA files and secrets).
    pub fn dir(mut self, dir: TempDir) -> Launch {
        self.dir = Some(dir);
        self
    }

    /// Set an environment variable for the process (`RUST_LOG` defaults to `info`).
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running `tollgate run`. Dropping it stops the process (SIGINT, then SIGKILL).
pub struct Tollgate {
    child: Option<Child>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    config: ConfigFile,
    output: Captured,
    stdout: Capture,
    stderr: Capture,
}

impl Tollgate {
    /// Start with `body` as the config, in a new temp dir. The harness prepends
    /// `listen:` (two free loopback ports) and, unless `body` sets it, `threads: 1`.
    pub async fn start(body: &str) -> Tollgate {
        Self::launch(Launch::new(), body).await
    }

    /// Start with the config written into `dir`.
    pub async fn start_in(dir: TempDir, body: &str) -> Tollgate {
        Self::launch(Launch::new().dir(dir), body).await
    }

    pub async fn launch(opts: Launch, body: &str) -> Tollgate {
        let mut dir = opts.dir.unwrap_or_else(tempdir);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (proxy_port, admin_port) = free_ports();
            let mut yaml = format!(
                "listen:\n  proxy: 127.0.0.1:{proxy_port}\n  admin: 127.0.0.1:{admin_port}\n"
            );
            if !body.lines().any(|l| l.starts_with("threads:")) {
                yaml.push_str("threads: 1\n");
            }
            yaml.push_str(body);
            let config = ConfigFile::new_in(dir, &yaml);
            let mut cmd = match &opts.binary {
                Some(path) => {
                    let mut cmd = Command::new(path);
                    for var in PROXY_VARS {
                        cmd.env_remove(var);
                    }
                    cmd
                }
                None => command(),
            };
            cmd.arg("run")
                .arg("-c")
                .arg(&config.path)
                .current_dir(config.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in &opts.env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
            let output = Captured::default();
            let stdout = capture(child.stdout.take(), Some(output.clone()));
            let stderr = capture(child.stderr.take(), Some(output.clone()));
            let mut tg = Tollgate {
                child: Some(child),
                proxy: SocketAddr::from(([127, 0, 0, 1], proxy_port)),
                admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
                config,
                output,
                stdout,
                stderr,
            };
            match tg.wait_ready().await {
                Ok(()) => return tg,
                Err(Exit::PortTaken) if attempt < 3 => {
                    // Another test grabbed one of our ports between choosing and binding.
                    tg.stop();
                    dir = std::mem::replace(&mut tg.config.dir, tempdir());
                }
                Err(e) => {
                    let out = tg.output();
                    tg.stop();
                    panic!(
                        "tollgate did not become ready ({e:?}); config:\n{yaml}\n--- output ---\n{out}"
                    );
                }
            }
        }
    }

    async fn wait_ready(&mut self) -> Result<(), Exit> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait() {
                let out = self.output().to_ascii_lowercase();
                if out.contains("address already in use") || out.contains("addrinuse") {
                    return Err(Exit::PortTaken);
                }
                return Err(Exit::Exited(status));
            }
            if let Ok(resp) = raw::try_get(self.admin, "/readyz").await {
                if resp.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Exit::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:PORT` of the proxy listener (for `curl -x`, `HTTP_PROXY`).
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    /// The temp dir holding the config (and whatever the test put there).
    pub fn dir(&self) -> &Path {
        self.config.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config.path
    }

    /// Everything the process printed so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Stop the process: SIGINT by PID, SIGKILL after [`STOP_GRACE`]. Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

#[derive(Debug)]
enum Exit {
    PortTaken,
    Exited(#[allow(dead_code)] ExitStatus),
    Timeout,
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.stdout.thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.stderr.thread.take() {
            let _ = t.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- tollgate output (config {}) ---\n{}\n--- end of tollgate output ---",
                self.config.path.display(),
                self.output()
            );
        }
    }
}

// --- Signals, exit and config rewriting (issue 6: reload and shutdown tests). ---

impl Tollgate {
    /// Send `signal` to the process (by PID). Panics if it was already stopped.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the process was stopped");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
    }

    /// Wait up to `timeout` for the process to exit by itself. `None`: still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait up to `timeout` until the output contains `needle` at least `count` times.
    /// Returns whether it did.
    pub async fn wait_for_output(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().matches(needle).count() >= count {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `listen:` (and `threads: 1`) lines the harness put in front of the body.
    pub fn config_header(&self, body: &str) -> String {
        let mut yaml = format!(
            "listen:\n  proxy: {}\n  admin: {}\n",
            self.proxy, self.admin
        );
        if !body.lines().any(|l| l.starts_with("threads:")) {
            yaml.push_str("threads: 1\n");
        }
        yaml
    }

    /// Replace the config file with the same header and a new `body`, atomically (written
    /// to a temp file in the same dir, then renamed over it), as a ConfigMap update does.
    pub fn replace_config(&self, body: &str) {
        let yaml = format!("{}{body}", self.config_header(body));
        replace_file(self.config_path(), yaml.as_bytes());
    }
}

/// Write `bytes` to `path` atomically: a temp file in the same directory renamed over it.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let dir = path.parent().expect("file has a parent dir");
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

impl Tollgate {
    /// What the process wrote to stderr so far (its logs).
    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// What the process wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.text()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn parses_diagnostics() {
        let text = "/tmp/x/tollgate.yaml:3:5: unknown field `acton`\nnoise\n\
                    /tmp/x/tollgate.yaml:10:1: duplicate route name \"a\": b: c";
        let d = diagnostics(text, "tollgate.yaml");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].file, "/tmp/x/tollgate.yaml");
        assert_eq!((d[0].line, d[0].column), (3, 5));
        assert_eq!(d[0].message, "unknown field `acton`");
        assert_eq!(d[1].message, "duplicate route name \"a\": b: c");
    }

    #[test]
    fn line_numbers_are_one_based() {
        assert_eq!(line_of("a\nb\nc", "b"), 2);
    }

    /// A stand-in for `tollgate run`: serves /readyz on the admin port from the config.
    const FAKE: &str = r#"#!/usr/bin/env python3
import re, sys, http.server
cfg = open(sys.argv[sys.argv.index("-c") + 1]).read()
port = int(re.search(r"admin: 127.0.0.1:(\d+)", cfg).group(1))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
print("fake tollgate up; secret-free", flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

    #[tokio::test(flavor = "multi_thread")]
    async fn launcher_waits_for_readyz_captures_output_and_stops_the_process() {
        let bin_dir = tempdir();
        let fake = bin_dir.path().join("fake-tollgate");
        std::fs::write(&fake, FAKE).unwrap();
        let mut cmd = Command::new("chmod");
        cmd.arg("+x").arg(&fake);
        assert_eq!(run_to_end(cmd).code, Some(0));

        let mut tg = Tollgate::launch(Launch::new().binary(fake), "routes: []\n").await;
        let config = std::fs::read_to_string(tg.config_path()).unwrap();
        assert!(config.contains(&format!("admin: {}", tg.admin)), "{config}");
        assert!(config.contains("threads: 1\nroutes: []"), "{config}");
        assert_eq!(raw::get(tg.admin, "/readyz").await.status, 200);
        // Output is captured while running.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !tg.output().contains("fake tollgate up") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(tg.output().contains("fake tollgate up"), "{}", tg.output());
        assert!(tg.is_running());
        tg.stop();
        assert!(!tg.is_running());
        assert!(raw::try_get(tg.admin, "/readyz").await.is_err());
    }

    #[test]
    fn run_to_end_captures_output_and_code() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run_to_end(cmd);
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }
}
