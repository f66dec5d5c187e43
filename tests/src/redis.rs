//! A real `redis-server` (Debian's package) for the token store tests: on a free
//! 127.0.0.1 port, no persistence (`--save '' --appendonly no`, its own temp `--dir`), the
//! default user behind `--requirepass`, and an ACL user `tollgate` limited to the
//! `tollgate:` keys and channels and to the commands tollgate needs. Stopped by PID (SIGKILL
//! for [`RedisServer::kill`], as a crash would; SIGTERM on drop); [`RedisServer::restart`]
//! starts it again on the same port, empty.
//!
//! [`RedisServer::cli`] runs `redis-cli` as the admin (the default user).

use crate::process::{tempdir, Captured};
use std::io::Read as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The ACL user tollgate connects as, and its password.
pub const USER: &str = "tollgate";
pub const USER_PASSWORD: &str = "tg-redis-Pa55word-7f3a";
/// The default user's password (the admin, for `redis-cli`).
pub const ADMIN_PASSWORD: &str = "admin-Pa55word-91c2";

/// What the `tollgate` user may do: documented in docs/configuration.md.
pub const USER_ACL: &[&str] = &[
    "on",
    ">tg-redis-Pa55word-7f3a",
    "resetkeys",
    "~tollgate:*",
    "resetchannels",
    "&tollgate:*",
    "-@all",
    "+ping",
    "+hello",
    "+auth",
    "+subscribe",
    "+evalsha",
    "+script|load",
    "+get",
    "+set",
    "+del",
    "+pttl",
    "+publish",
];

/// How long `redis-server` may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    log: Captured,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind for a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

impl RedisServer {
    /// Starts `redis-server` (panics with how to install it when it is missing).
    pub async fn start() -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: tempdir(),
            log: Captured::default(),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--requirepass", ADMIN_PASSWORD])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--user")
            .arg(USER)
            .args(USER_ACL)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("spawn redis-server: {e} (install it: `apt-get install redis-server`, or run scripts/setup)")
        });
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = self.log.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    log.append(&chunk[..n]);
                }
            });
        }
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING; its output:\n{}",
                self.log.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Writes the `tollgate` user's password to `dir/redis-password` and returns its path.
    pub fn password_file(dir: &std::path::Path) -> PathBuf {
        let path = dir.join("redis-password");
        std::fs::write(&path, format!("{USER_PASSWORD}\n")).expect("write the password file");
        path
    }

    /// `redis-cli` as the admin; stdout (and stderr) as text.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-a", ADMIN_PASSWORD, "--no-auth-warning"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The value of `key` as raw bytes (`redis-cli --no-raw` would escape them).
    pub fn get_raw(&self, key: &str) -> Vec<u8> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-a",
                ADMIN_PASSWORD,
                "--no-auth-warning",
                "--raw",
                "GET",
                key,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        out.stdout
    }

    /// Every key matching `pattern` (`redis-cli --scan`).
    pub fn scan(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli(&["--scan", "--pattern", pattern])
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect();
        keys.sort();
        keys
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    fn signal(&mut self, signal: nix::sys::signal::Signal) {
        if let (Some(pid), Some(mut child)) = (self.pid(), self.child.take()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            let _ = child.wait();
        }
    }

    /// SIGKILL by PID, as a crash would.
    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// What the server printed.
    pub fn output(&self) -> String {
        self.log.text()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        if std::thread::panicking() {
            eprintln!("--- redis-server output ---\n{}\n---", self.log.text());
        }
    }
}
