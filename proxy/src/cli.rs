//! The command line of SPEC: `run`, `check`, `route`, `token`, `demo`, `ca init`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// EX_CONFIG from sysexits.h: the configuration is invalid.
pub const EX_CONFIG: i32 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the proxy and admin listeners.
    Run(ConfigArg),
    /// Validate the config; print every problem as FILE:LINE:COL: message; exit 78 if invalid.
    Check(ConfigArg),
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
