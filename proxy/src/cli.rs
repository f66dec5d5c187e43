//! The command line: `run`, `check`, `route`, `token`, `demo`, `ca init`, and the
//! operator's helpers `version`, `completions`, `man` and `probe`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// EX_CONFIG from sysexits.h: the configuration is invalid.
pub const EX_CONFIG: i32 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    long_version = crate::version::LONG_VERSION,
    about = "An authenticating egress proxy: routes outbound HTTP, attaches OAuth2 tokens, replays once after a 401"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file [default: $TOLLGATE_CONFIG, then tollgate.yaml]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn path(&self) -> PathBuf {
        if let Some(p) = &self.config {
            return p.clone();
        }
        match std::env::var_os("TOLLGATE_CONFIG") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from("tollgate.yaml"),
        }
    }
}

/// How `check`, `route` and `version` print their result: text, or one JSON document.
pub use crate::explain::Format;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the proxy and admin listeners (exits 78 if the config or a file it names is unusable).
    Run(ConfigArg),
    /// Validate the config and every file it names; print every problem as FILE:LINE:COL: message; exit 78 if invalid.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Validate the config alone, without opening the files it names (for a CI machine
        /// that does not have the secrets); `run` still checks them
        #[arg(long)]
        skip_files: bool,
    },
    /// Explain what the proxy would do with a request to URL (exit 1 when it would be refused).
    Route {
        #[command(flatten)]
        config: ConfigArg,
        /// e.g. http://api.billing.example.com/v2/invoices, or host:port for CONNECT
        url: String,
        /// Request method
        #[arg(long, short = 'm', default_value = "GET")]
        method: String,
        /// Client (source) IP address
        #[arg(long)]
        client: Option<std::net::IpAddr>,
        /// The authenticated caller's name (e.g. system:serviceaccount:billing:api)
        #[arg(long)]
        caller: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = crate::explain::Format::Text)]
        format: crate::explain::Format,
    },
    /// Fetch a token for CREDENTIAL now and describe it (the token itself only with --show).
    Token {
        #[command(flatten)]
        config: ConfigArg,
        credential: String,
        /// Print the access token itself
        #[arg(long)]
        show: bool,
    },
    /// The interception CA for `connect: intercept` routes.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Zero-setup tour on loopback: token endpoint, upstream, proxy, and traffic.
    Demo {
        /// Exit after the tour instead of staying up for you to try it.
        #[arg(long)]
        once: bool,
    },
    /// Print the version, git commit, rustc and pingora versions of this build.
    Version {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a shell completion script (e.g. `tollgate completions bash > /etc/bash_completion.d/tollgate`).
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (tollgate.1), or write one page per command into DIR.
    Man {
        /// Write tollgate.1 and tollgate-COMMAND.1 into this directory instead
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// GET an http:// URL and exit 0 on a 2xx answer (a health check for images without curl).
    Probe {
        /// e.g. http://127.0.0.1:9901/readyz
        url: String,
        /// Give up after this long (humantime: 5s, 500ms)
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Write a new interception CA: DIR/ca.crt (0644) and DIR/ca.key (0600), ECDSA P-256.
    Init {
        /// Directory to write ca.crt and ca.key into (created if missing)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Name-constrain the CA to the hosts of this config's `connect: intercept` routes
        #[arg(long, value_name = "FILE")]
        for_config: Option<PathBuf>,
        /// Replace existing ca.crt / ca.key
        #[arg(long)]
        force: bool,
        /// How long the CA is valid, e.g. 365d or 2years
        #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = humantime::parse_duration)]
        lifetime: std::time::Duration,
    },
}
