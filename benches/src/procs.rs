//! Processes the harness starts (proxies, upstreams) and what /proc says about them:
//! CPU time (user + system, over the process and its descendants) and resident memory.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pids of the children still running, for the signal handler. (A process-wide list:
/// a signal arrives for the whole process.)
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn children() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// On SIGINT or SIGTERM, stop every child (and its descendants), then exit 130.
pub fn stop_children_on_signal() {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            });
            let pids: Vec<u32> = children().clone();
            for pid in &pids {
                for p in tree(*pid) {
                    signal("KILL", p);
                }
            }
            eprintln!("\ninterrupted: stopped {} child process(es)", pids.len());
            std::process::exit(130);
        });
}

/// A child process, stopped (signal, then SIGKILL to its whole tree) when dropped.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
    /// `TERM`, `INT`, ...: what stops it gracefully and fast.
    stop_signal: &'static str,
}

impl Proc {
    /// Start `cmd` with stdout and stderr appended to `log`.
    /// The open-files limit is raised first (a shell sets `ulimit -n`, then execs the
    /// program: same pid), for the idle-connections scenario.
    pub fn spawn(
        name: &str,
        cmd: Command,
        log: &Path,
        stop_signal: &'static str,
    ) -> Result<Proc, String> {
        let mut cmd = raise_nofile(cmd);
        let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        children().push(child.id());
        Ok(Proc {
            name: name.to_string(),
            pid: child.id(),
            child,
            stop_signal,
        })
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait until `addr` accepts connections (and the process is still alive).
    pub fn wait_listening(
        &mut self,
        addr: SocketAddr,
        within: Duration,
        log: &Path,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if !self.alive() {
                return Err(format!(
                    "{} exited before listening on {addr}; its log ({}):\n{}",
                    self.name,
                    log.display(),
                    tail(log, 20)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} is not listening on {addr} after {within:?}; its log:\n{}",
                    self.name,
                    tail(log, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop it: the graceful signal, up to 5 s, then SIGKILL to it and its descendants.
    pub fn stop(&mut self) {
        if !self.alive() {
            children().retain(|p| *p != self.pid);
            return;
        }
        let tree = tree(self.pid);
        signal(self.stop_signal, self.pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Descendants (nginx workers) that outlived their parent.
        for pid in tree {
            if Path::new(&format!("/proc/{pid}")).exists() && pid != self.pid {
                signal("KILL", pid);
            }
        }
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        children().retain(|p| *p != self.pid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `sh -c 'ulimit -n N; exec "$@"' sh PROGRAM ARGS...`, keeping env and directory.
fn raise_nofile(cmd: Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("ulimit -Hn 200000 2>/dev/null; ulimit -n 200000 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$@\"")
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        sh.current_dir(d);
    }
    sh
}

/// Send a signal by name to one pid (no unsafe code: `kill(1)`).
pub fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(stat) = Stat::read(p) {
                parents.push((p, stat.ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        for (p, pp) in &parents {
            if *pp == cur && !out.contains(p) {
                out.push(*p);
            }
        }
        i += 1;
    }
    out
}

/// The fields of /proc/PID/stat we use.
struct Stat {
    ppid: u32,
    utime: u64,
    stime: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain spaces: split after it.
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
        Some(Stat {
            ppid: f.get(1)?.parse().ok()?,
            utime: f.get(11)?.parse().ok()?,
            stime: f.get(12)?.parse().ok()?,
        })
    }
}

/// Clock ticks per second for /proc times (`getconf CLK_TCK`; 100 on Linux).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user, system) used so far by a process tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: f64,
    pub sys: f64,
}

impl Cpu {
    pub fn of(pid: u32, ticks: f64) -> Cpu {
        let (mut u, mut s) = (0u64, 0u64);
        for p in tree(pid) {
            if let Some(st) = Stat::read(p) {
                u += st.utime;
                s += st.stime;
            }
        }
        Cpu {
            user: u as f64 / ticks,
            sys: s as f64 / ticks,
        }
    }

    pub fn since(self, before: Cpu) -> Cpu {
        Cpu {
            user: self.user - before.user,
            sys: self.sys - before.sys,
        }
    }

    pub fn total(self) -> f64 {
        self.user + self.sys
    }
}

/// Resident memory of a process tree in KiB: (now, peak). Peak is VmHWM, the
/// high-water mark since the process started.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let (mut now, mut peak) = (0, 0);
    for p in tree(pid) {
        let Ok(s) = fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        for line in s.lines() {
            let val = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                now += val(line);
            } else if line.starts_with("VmHWM:") {
                peak += val(line);
            }
        }
    }
    (now, peak)
}

/// A free TCP port on 127.0.0.1 (bound, then released: a short race with others).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Two distinct free TCP ports on 127.0.0.1 (both held while choosing; still released
/// before use, like [`free_port`]).
pub fn free_port_pair() -> Result<(u16, u16), String> {
    let bind =
        || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"));
    let (a, b) = (bind()?, bind()?);
    let port = |l: &std::net::TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))
    };
    Ok((port(&a)?, port(&b)?))
}

/// Is `name` on PATH (or an absolute path that exists)?
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    if name.contains('/') {
        let p = std::path::PathBuf::from(name);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    // Debian puts daemons in sbin, which a non-login PATH may lack.
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(std::path::PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}
