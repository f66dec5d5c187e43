//! `run`, `check` and `token`: load the config, report problems, act. `check` and `run`
//! check the same things ([`checked`]), so a config `check` accepts, `run` starts with.

use crate::cli::{Format, EX_CONFIG};
use crate::metrics::Metrics;
use crate::preflight;
use crate::state::State;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tollgate_rules::{load::ProcessEnv, Config, Problem};

/// Load and validate (without opening the files it names), printing every problem.
/// `None` when invalid. For `route` and `token`, which need no secret or CA file.
pub fn load(path: &Path) -> Option<Config> {
    match tollgate_rules::load(path, &ProcessEnv) {
        Ok(c) => Some(c),
        Err(errors) => {
            for p in &errors.0 {
                println!("{p}");
            }
            let n = errors.0.len();
            eprintln!(
                "{}: {n} problem{}",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            None
        }
    }
}

/// Build the runtime state, printing problems with files the config refers to.
/// `metrics`: where the routes' series go (a throwaway registry for `check`/`route`).
pub fn prepare(path: &Path, config: Config, metrics: &Metrics) -> Option<State> {
    match State::build(config, metrics, None) {
        Ok(s) => Some(s),
        Err(problems) => {
            for p in &problems {
                println!("{}: {p}", path.display());
            }
            None
        }
    }
}

/// Everything `run` checks before serving: the config ([`preflight::load`]: the file's
/// own problems and those of every file it names) and the runtime state built from it.
/// A state problem has no position of its own; it is reported at 1:1.
fn checked(path: &Path, metrics: &Metrics) -> Result<(Config, State), Vec<Problem>> {
    let config = preflight::load(path)?;
    match State::build(config.clone(), metrics, None) {
        Ok(state) => Ok((config, state)),
        Err(problems) => Err(problems
            .into_iter()
            .map(|message| Problem {
                file: path.display().to_string(),
                line: 1,
                column: 1,
                message,
            })
            .collect()),
    }
}

/// Prints problems one per line on stdout, and a count on stderr.
fn print_problems(path: &Path, problems: &[Problem]) {
    for p in problems {
        println!("{p}");
    }
    let n = problems.len();
    eprintln!(
        "{}: {n} problem{}",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
}

/// `tollgate check --format json`: one document, whatever the outcome. Documented in
/// docs/configuration.md; fields may be added, none will change meaning.
#[derive(serde::Serialize)]
struct CheckReport<'a> {
    ok: bool,
    file: String,
    problems: Vec<ProblemJson<'a>>,
    summary: Summary,
}

#[derive(serde::Serialize)]
struct ProblemJson<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    message: &'a str,
}

#[derive(serde::Serialize)]
struct Summary {
    problems: usize,
    /// `checked`, or `skipped` with `--skip-files`.
    files: &'static str,
    /// `None` (null) when the config did not validate.
    routes: Option<usize>,
    credentials: Option<usize>,
}

/// Whether `check` opens the files the config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// Open and check each, as `run` does (the default).
    Check,
    /// Validate the config alone (`--skip-files`).
    Skip,
}

pub fn check(path: &Path, format: Format, files: Files) -> i32 {
    let Ok(metrics) = Metrics::new() else {
        return 1;
    };
    let result = match files {
        Files::Check => checked(path, &metrics).map(|(config, _)| config),
        Files::Skip => tollgate_rules::load(path, &ProcessEnv).map_err(|e| e.0),
    };
    let code = if result.is_ok() { 0 } else { EX_CONFIG };
    match format {
        Format::Text => match &result {
            Err(problems) => print_problems(path, problems),
            Ok(config) => {
                let (routes, credentials) = (config.routes.len(), config.credentials.len());
                println!(
                    "{}: ok ({routes} route{}, {credentials} credential{}{})",
                    path.display(),
                    if routes == 1 { "" } else { "s" },
                    if credentials == 1 { "" } else { "s" },
                    match files {
                        Files::Check => "",
                        Files::Skip => "; the files it names were not opened",
                    }
                );
            }
        },
        Format::Json => {
            let none = Vec::new();
            let problems = result.as_ref().err().unwrap_or(&none);
            let config = result.as_ref().ok();
            let report = CheckReport {
                ok: result.is_ok(),
                file: path.display().to_string(),
                problems: problems
                    .iter()
                    .map(|p| ProblemJson {
                        file: &p.file,
                        line: p.line,
                        column: p.column,
                        message: &p.message,
                    })
                    .collect(),
                summary: Summary {
                    problems: problems.len(),
                    files: match files {
                        Files::Check => "checked",
                        Files::Skip => "skipped",
                    },
                    routes: config.map(|c| c.routes.len()),
                    credentials: config.map(|c| c.credentials.len()),
                },
            };
            match serde_json::to_string_pretty(&report) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("tollgate check: {e}");
                    return 1;
                }
            }
        }
    }
    code
}

/// Exits 78 (EX_CONFIG) for any problem with the config or a file it names, the same
/// problems `check` prints; 1 when serving fails for another reason (a port in use).
pub fn run(path: &Path) -> i32 {
    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("tollgate: {e}");
            return 1;
        }
    };
    let state = match checked(path, &metrics) {
        Ok((_, state)) => state,
        Err(problems) => {
            print_problems(path, &problems);
            return EX_CONFIG;
        }
    };
    match crate::server::serve(path, state, metrics) {
        Ok(never) => match never {},
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tollgate: {e}");
            1
        }
    }
}

pub fn token(path: &Path, credential: &str, show: bool) -> i32 {
    let Some(config) = load(path) else {
        return EX_CONFIG;
    };
    if !config.credentials.contains_key(credential) {
        eprintln!(
            "{}: no credential named {credential:?} (have: {})",
            path.display(),
            config
                .credentials
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return 2;
    }
    crate::auth::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate token: {e}");
            return 1;
        }
    };
    let registry = prometheus::Registry::new();
    let result = rt.block_on(async {
        // One fetch, bypassing every cache: the token store is not used.
        let cache = crate::auth::TokenCache::new(&config.credentials, None, &registry)
            .map_err(|e| e.to_string())?;
        cache.fetch_now(credential).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(info) => {
            println!("credential: {credential}");
            let kind = match config.credentials.get(credential).and_then(|c| c.oauth2()) {
                Some(o) => format!("oauth2, grant {}", o.grant.name()),
                None => "static".to_string(),
            };
            println!("kind:       {kind}");
            // Which secret file, key, assertion or service account got the token.
            println!("used:       {}", info.used);
            if info.lifetime_source == "static" {
                println!("lifetime:   until the file changes (re-read within a second)");
                if show {
                    println!("value:      {}", info.token.secret());
                } else {
                    println!("value:      (hidden; add --show to print it)");
                }
                return 0;
            }
            println!("token_type: {}", info.token_type);
            match info.expires_in {
                Some(d) => println!("lifetime:   {} (expires_in)", humantime::format_duration(d)),
                None => println!(
                    "lifetime:   {} (from {})",
                    humantime::format_duration(Duration::from_secs(info.lifetime.as_secs())),
                    info.lifetime_source
                ),
            }
            if let Some(scope) = &info.scope {
                println!("scope:      {scope}");
            }
            if let Some(claims) = &info.claims {
                let pretty = serde_json::to_string_pretty(claims).unwrap_or_default();
                println!("claims:     {}", pretty.replace('\n', "\n            "));
            }
            if show {
                println!("token:      {}", info.token.secret());
            } else {
                println!("token:      (hidden; add --show to print it)");
            }
            0
        }
        Err(e) => {
            eprintln!("tollgate token: {e}");
            1
        }
    }
}
