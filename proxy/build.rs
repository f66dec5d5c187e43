//! Build information for `tollgate version` and `tollgate_build_info`: the git commit (when
//! the source is a git checkout, or from `TOLLGATE_GIT_COMMIT`, e.g. a Docker build arg),
//! the rustc that compiled it and the pingora version in Cargo.lock. No network.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    run(Command::new("git").arg("-C").arg(dir).args(args))
}

/// Rerun when the commit changes: HEAD, the branch it points at, packed refs. Only
/// existing files (cargo reruns every build for a missing one).
fn watch_git(dir: &Path) {
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        paths.push(r);
    }
    for p in paths {
        if let Some(path) = git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", &p],
        ) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

/// The version of `name` in the workspace's Cargo.lock.
fn locked_version(lock: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let want = format!("name = \"{name}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            let v = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(v.trim_end_matches('"').to_owned());
        }
    }
    None
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-env-changed=TOLLGATE_GIT_COMMIT");
    let commit = match std::env::var("TOLLGATE_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            watch_git(&manifest);
            git(&manifest, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc = run(Command::new(rustc).arg("--version")).unwrap_or_else(|| "unknown".into());
    let lock = manifest.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let pingora = locked_version(&lock, "pingora").unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TOLLGATE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=TOLLGATE_RUSTC_VERSION={rustc}");
    println!("cargo:rustc-env=TOLLGATE_PINGORA_VERSION={pingora}");
    for (var, name) in [
        ("TARGET", "TOLLGATE_TARGET"),
        ("PROFILE", "TOLLGATE_PROFILE"),
    ] {
        println!(
            "cargo:rustc-env={name}={}",
            std::env::var(var).unwrap_or_default()
        );
    }
}
