//! Hot reload: SIGHUP, or a change to the config file or a file it references (secret
//! files, CA files, keys), loads the config again. A valid new config is swapped in whole
//! (routes, upstream trust) and credentials are reconfigured (tokens of unchanged
//! credentials survive); an invalid one is rejected with its problems logged and the old
//! one keeps serving. Listener addresses and thread counts need a restart.

use crate::auth::TokenCache;
use crate::intercept::Interceptor;
use crate::metrics::Metrics;
use crate::state::State;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tollgate_rules::Config;

/// How often watched files are checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

pub struct Reloader {
    pub path: PathBuf,
    pub state: Arc<ArcSwap<State>>,
    pub tokens: Arc<TokenCache>,
    pub metrics: Arc<Metrics>,
    /// Gets each new config's interception CA (a changed CA file reloads like any other).
    pub interceptor: Arc<Interceptor>,
}

/// The files a config depends on (the config itself first, then [`Config::files`]),
/// except those [`tollgate_rules::FileKind::watched`] leaves out: files a credential reads
/// afresh for every token request (`client_assertion_file`, `subject_token_file`: renewed
/// by someone else, often hourly), whose change needs no reload, and the token store's
/// Redis `password_file`, which takes effect on restart only. (Its `encryption_key_files`
/// are watched: a reload rotates them.)
fn watched_files(path: &Path, config: &Config) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    files.extend(
        config
            .files()
            .iter()
            .filter(|f| f.kind.watched())
            .map(|f| f.path.to_path_buf()),
    );
    files
}

/// A cheap fingerprint of a file: modification time and length (None when missing).
fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| stamp(f)).collect()
}

impl Reloader {
    /// Load, validate and apply the config file. Returns whether it was applied.
    pub fn reload(&self, why: &str) -> bool {
        // The same checks as `tollgate check` and start-up: a reload that names a missing
        // secret file or a bad CA is rejected with FILE:LINE:COL, like a typo.
        let outcome = match crate::preflight::load(&self.path) {
            Err(problems) => Err(problems.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
            Ok(config) => {
                let old = self.state.load();
                if config.listen != old.config.listen || config.threads != old.config.threads {
                    tracing::warn!(
                        "listen addresses and threads change only on restart; keeping the current ones"
                    );
                }
                let old_redis = old.config.token_store.as_ref().map(|t| &t.redis);
                if config.token_store.as_ref().map(|t| &t.redis) != old_redis {
                    tracing::warn!(
                        "token_store.redis changes only on restart; keeping the current Redis connection"
                    );
                }
                let credentials = config.credentials.clone();
                let token_store = config.token_store.clone();
                match crate::intercept::prepare(&config) {
                    Err(problems) => Err(problems.iter().map(ToString::to_string).collect()),
                    Ok(intercept) => match State::build(config, &self.metrics, None) {
                        Err(problems) => Err(problems),
                        Ok(mut new) => match self.tokens.reconfigure_store(token_store.as_ref()) {
                            Err(e) => Err(vec![e.to_string()]),
                            Ok(msg) => match self.tokens.reconfigure(&credentials) {
                                Err(e) => Err(vec![e.to_string()]),
                                Ok(()) => {
                                    if !msg.is_empty() {
                                        tracing::info!("{msg}");
                                    }
                                    new.bind(&self.tokens);
                                    self.interceptor.install(intercept);
                                    self.state.store(Arc::new(new));
                                    Ok(())
                                }
                            },
                        },
                    },
                }
            }
        };
        match outcome {
            Ok(()) => {
                self.metrics.reloaded(true);
                tracing::info!(path = %self.path.display(), why, "config reloaded");
                true
            }
            Err(problems) => {
                self.metrics.reloaded(false);
                for p in &problems {
                    tracing::error!(why, "config reload rejected: {p}");
                }
                tracing::error!(
                    path = %self.path.display(),
                    problems = problems.len(),
                    "config reload rejected; the previous config keeps serving"
                );
                false
            }
        }
    }

    /// Watch for SIGHUP and file changes on a thread of its own, for the life of the process.
    ///
    /// The SIGHUP handler and the files' first stamps are set up before this returns (so
    /// before the proxy reports ready): a SIGHUP or a file change right after start-up is
    /// a reload, not a missed change (or, for SIGHUP, the default action: exit).
    pub fn spawn(self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let hup = {
            let _in_rt = rt.enter();
            match signal(SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("cannot listen for SIGHUP: {e}");
                    None
                }
            }
        };
        let files = watched_files(&self.path, &self.state.load().config);
        let seen = stamps(&files);
        std::thread::Builder::new()
            .name("tollgate-reload".into())
            .spawn(move || rt.block_on(self.watch(hup, files, seen)))
            .map(drop)
    }

    async fn watch(
        self,
        mut hup: Option<tokio::signal::unix::Signal>,
        mut files: Vec<PathBuf>,
        mut seen: Vec<Option<(SystemTime, u64)>>,
    ) {
        let mut tick = tokio::time::interval(POLL);
        loop {
            let why = tokio::select! {
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => "SIGHUP",
                _ = tick.tick() => {
                    if stamps(&files) == seen { continue; }
                    "file change"
                }
            };
            self.reload(why);
            files = watched_files(&self.path, &self.state.load().config);
            seen = stamps(&files);
        }
    }
}
