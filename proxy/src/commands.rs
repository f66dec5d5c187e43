//! `run`, `check` and `token`: load the config, report problems, act.

use crate::cli::EX_CONFIG;
use crate::metrics::Metrics;
use crate::state::State;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tollgate_rules::{load::ProcessEnv, Config};

/// Load and validate, printing every problem. `None` when invalid.
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

/// Print what is wrong with the config's interception CA; `false` when anything is.
fn interception_ok(path: &Path, config: &Config) -> bool {
    let problems = crate::intercept::check(config);
    for p in &problems {
        println!("{p}");
    }
    if !problems.is_empty() {
        eprintln!("{}: the interception CA cannot be used", path.display());
    }
    problems.is_empty()
}

pub fn check(path: &Path) -> i32 {
    let Some(config) = load(path) else {
        return EX_CONFIG;
    };
    if !interception_ok(path, &config) {
        return EX_CONFIG;
    }
    let (routes, credentials) = (config.routes.len(), config.credentials.len());
    let Ok(metrics) = Metrics::new() else {
        return 1;
    };
    if prepare(path, config, &metrics).is_none() {
        return EX_CONFIG;
    }
    println!(
        "{}: ok ({routes} route{}, {credentials} credential{})",
        path.display(),
        if routes == 1 { "" } else { "s" },
        if credentials == 1 { "" } else { "s" }
    );
    0
}

pub fn run(path: &Path) -> i32 {
    let Some(config) = load(path) else {
        return EX_CONFIG;
    };
    if !interception_ok(path, &config) {
        return EX_CONFIG;
    }
    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("tollgate: {e}");
            return 1;
        }
    };
    let Some(state) = prepare(path, config, &metrics) else {
        return EX_CONFIG;
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
