//! What this binary is: `tollgate version`, `tollgate --version` and the
//! `tollgate_build_info` metric. Filled in at build time by `build.rs` (no network).

use serde::Serialize;

/// Build information, from `build.rs`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BuildInfo {
    /// The crate version (`Cargo.toml`).
    pub version: &'static str,
    /// Short git commit of the source, or `unknown` (not a git checkout and no
    /// `TOLLGATE_GIT_COMMIT` at build time).
    pub commit: &'static str,
    /// `rustc --version` of the compiler.
    pub rustc: &'static str,
    /// The pingora version in Cargo.lock.
    pub pingora: &'static str,
    /// The target triple.
    pub target: &'static str,
    /// `debug` or `release`.
    pub profile: &'static str,
}

/// This binary's build information.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("TOLLGATE_GIT_COMMIT"),
    rustc: env!("TOLLGATE_RUSTC_VERSION"),
    pingora: env!("TOLLGATE_PINGORA_VERSION"),
    target: env!("TOLLGATE_TARGET"),
    profile: env!("TOLLGATE_PROFILE"),
};

/// `tollgate --version`'s long form, the same text as `tollgate version`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit:  ",
    env!("TOLLGATE_GIT_COMMIT"),
    "\nrustc:   ",
    env!("TOLLGATE_RUSTC_VERSION"),
    "\npingora: ",
    env!("TOLLGATE_PINGORA_VERSION"),
    "\ntarget:  ",
    env!("TOLLGATE_TARGET"),
    "\nprofile: ",
    env!("TOLLGATE_PROFILE"),
);

/// `tollgate version [--format json]`.
pub fn print(format: crate::cli::Format) -> i32 {
    match format {
        crate::cli::Format::Text => println!("tollgate {LONG_VERSION}"),
        crate::cli::Format::Json => match serde_json::to_string_pretty(&BUILD) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("tollgate version: {e}");
                return 1;
            }
        },
    }
    0
}
