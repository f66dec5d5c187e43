//! `tollgate`: thin entry point. CLI → config → server; see `lib.rs` for where to read on.

use clap::Parser;

/// mimalloc: +14-16% req/s and -15% CPU per request against glibc malloc, measured with the
/// load harness in one run (BENCHMARKS.md, "Proposed changes"), at the cost of more memory
/// per idle connection.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use tollgate::cli::{CaCommand, Cli, Command};

fn main() -> ExitCode {
    // reqwest (token endpoint, OTLP export) is built without a default TLS provider.
    tollgate::auth::install_crypto_provider();
    tollgate::telemetry::init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(c) => tollgate::commands::run(&c.path()),
        Command::Check {
            config,
            format,
            skip_files,
        } => {
            let files = if skip_files {
                tollgate::commands::Files::Skip
            } else {
                tollgate::commands::Files::Check
            };
            tollgate::commands::check(&config.path(), format, files)
        }
        Command::Route {
            config,
            url,
            method,
            client,
            caller,
            format,
        } => tollgate::explain::route(
            &config.path(),
            &url,
            &method,
            client,
            caller.as_deref(),
            format,
        ),
        Command::Token {
            config,
            credential,
            show,
        } => tollgate::commands::token(&config.path(), &credential, show),
        Command::Demo { once } => tollgate::demo::run(once),
        Command::Ca {
            command:
                CaCommand::Init {
                    out,
                    for_config,
                    force,
                    lifetime,
                },
        } => tollgate::intercept::init::run(&out, for_config.as_deref(), force, lifetime),
        Command::Version { format } => tollgate::version::print(format),
        Command::Completions { shell } => tollgate::docs::completions(shell),
        Command::Man { out_dir } => tollgate::docs::man(out_dir.as_deref()),
        Command::Probe { url, timeout } => tollgate::probe::run(&url, timeout),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
