//! Text -> validated [`Config`], collecting every problem with its location.

use crate::convert::{self, Checker};
use crate::file::{
    fields, BasicCallersFile, CallersFile, ConfigFile, CredentialFile, DpopFile, InterceptionFile,
    JwtCallersFile, ListenFile, MatchFile, RedisFile, RouteFile, TimeoutsFile, TokenStoreFile,
};
use crate::model::Config;
use crate::pos::{Seg, YPath};
use crate::source::{Partial, Source};
use std::fmt;
use std::path::Path;

/// Where `${NAME}` values come from (the process environment in production; a map in tests).
pub trait Env {
    /// The value of variable `name`, or `None` when it is unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// One problem in a config file. `Display` is `FILE:LINE:COL: message` (1-based line and
/// column). The message never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct Problem {
    /// The file name as given to [`load_str`] (or the path given to [`load`]).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, starting with the key's path (`routes[2].credential: ...`).
    pub message: String,
}

/// Where a key sits in the config file, kept in the model for problems found after
/// validation (by the proxy, reading the files a key names): `FILE:LINE:COL` of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name, as in [`Problem::file`].
    pub file: String,
    /// 1-based line of the key.
    pub line: usize,
    /// 1-based column of the key, in characters.
    pub column: usize,
    /// The key's path, as problems start their message: `interception.ca_cert_file`.
    pub key: String,
}

impl Location {
    /// A problem at this key: `FILE:LINE:COL: key: message`.
    pub fn problem(&self, message: impl AsRef<str>) -> Problem {
        Problem {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message: format!("{}: {}", self.key, message.as_ref()),
        }
    }
}

/// Every problem found, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and validate a config file. An unreadable file is one problem at 1:1 naming the
/// path; everything else is as [`load_str`], with the path (as given) as the file name.
pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigErrors> {
    load_with_source(path, env).result
}

/// Validate config text; `file` is the name used in problems.
///
/// A syntax error, a value of the wrong type or an unknown enum value (`action`,
/// `auth_method`, `signing_alg`, `default_action`, `connect`) stops parsing: it is
/// reported alone (with any unknown keys before it). Once the text parses, every unknown
/// key and every semantic problem is collected, in file order. A file with no document at
/// all (empty, or only comments) is the all-defaults config: no routes, so every request
/// gets `default_action`.
pub fn load_str(file: &str, text: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
    load_str_with_source(file, text, env).result
}

/// What loading a file gives: the validated config or every problem, the positions of
/// the file (to report problems found later, such as an unreadable secret file, at their
/// keys), and the entries that validated on their own (whose files can then be checked
/// in the same pass).
#[derive(Debug)]
pub struct Loaded {
    /// The config, or every problem found by validation.
    pub result: Result<Config, ConfigErrors>,
    /// Positions of the file's keys and values.
    pub source: Source,
    /// Credentials and routes without problems of their own.
    pub partial: Partial,
}

/// [`load`], keeping the positions and the valid entries.
pub fn load_with_source(path: &Path, env: &dyn Env) -> Loaded {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str_with_source(&file, &text, env),
        Err(e) => Loaded {
            result: Err(ConfigErrors(vec![Problem {
                message: format!("cannot read config file {file}: {e}"),
                file: file.clone(),
                line: 1,
                column: 1,
            }])),
            source: Source::empty(&file),
            partial: Partial::default(),
        },
    }
}

/// [`load_str`], keeping the positions and the valid entries.
pub fn load_str_with_source(file: &str, text: &str, env: &dyn Env) -> Loaded {
    let mut checker = Checker::new(file, text, env);
    let mut ignored: Vec<YPath> = Vec::new();
    let de = serde_yaml::Deserializer::from_str(text);
    let parsed: Result<Option<ConfigFile>, _> =
        serde_ignored::deserialize(de, |path| ignored.push(ypath(&path)));
    for path in &ignored {
        checker.unknown_key(path, expected_keys(path));
    }
    let (config, partial) = match parsed {
        Ok(parsed) => convert::config(&mut checker, parsed.unwrap_or_default()),
        Err(e) => {
            checker.push(serde_problem(file, &e));
            (None, Partial::default())
        }
    };
    let (mut problems, index) = checker.into_parts();
    let source = Source::from_index(file, index);
    let result = match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => {
            if problems.is_empty() {
                // Cannot happen: every `None` records a problem. Never return an empty error.
                problems.push(Problem {
                    file: file.to_owned(),
                    line: 1,
                    column: 1,
                    message: "invalid configuration".to_owned(),
                });
            }
            problems.sort_by_key(|p| (p.line, p.column));
            Err(ConfigErrors(problems))
        }
    };
    Loaded {
        result,
        source,
        partial,
    }
}

/// A path as serde_ignored reports it, as a position-index path.
fn ypath(path: &serde_ignored::Path<'_>) -> YPath {
    use serde_ignored::Path as P;
    let mut out = match path {
        P::Root => return Vec::new(),
        P::Seq { parent, .. }
        | P::Map { parent, .. }
        | P::Some { parent }
        | P::NewtypeStruct { parent }
        | P::NewtypeVariant { parent } => ypath(parent),
    };
    match path {
        P::Seq { index, .. } => out.push(Seg::Idx(*index)),
        P::Map { key, .. } => out.push(Seg::Key(key.clone())),
        _ => {}
    }
    out
}

/// The keys the mapping holding `path`'s last key accepts, when it is one of the file's
/// structs.
fn expected_keys(path: &[Seg]) -> Option<&'static [&'static str]> {
    let parent = path.split_last()?.1;
    let k = |s: &Seg, want: &str| matches!(s, Seg::Key(k) if k == want);
    Some(match parent {
        [] => fields::<ConfigFile>(),
        [a] if k(a, "listen") => fields::<ListenFile>(),
        [a] if k(a, "timeouts") => fields::<TimeoutsFile>(),
        [a] if k(a, "callers") => fields::<CallersFile>(),
        [a, j] if k(a, "callers") && k(j, "jwt") => fields::<JwtCallersFile>(),
        [a, b] if k(a, "callers") && k(b, "basic") => fields::<BasicCallersFile>(),
        [a] if k(a, "interception") => fields::<InterceptionFile>(),
        [a] if k(a, "token_store") => fields::<TokenStoreFile>(),
        [a, r] if k(a, "token_store") && k(r, "redis") => fields::<RedisFile>(),
        [a, Seg::Idx(_), t] if k(a, "routes") && k(t, "timeouts") => fields::<TimeoutsFile>(),
        [a, Seg::Key(_)] if k(a, "credentials") => fields::<CredentialFile>(),
        [a, Seg::Key(_), d] if k(a, "credentials") && k(d, "dpop") => fields::<DpopFile>(),
        [a, Seg::Idx(_)] if k(a, "routes") => fields::<RouteFile>(),
        [a, Seg::Idx(_), m] if k(a, "routes") && k(m, "match") => fields::<MatchFile>(),
        _ => return None,
    })
}

/// A serde_yaml error as a problem: its location, and its message without the
/// " at line L column C" that would repeat it.
fn serde_problem(file: &str, e: &serde_yaml::Error) -> Problem {
    let (line, column) = e
        .location()
        .map(|l| (l.line().max(1), l.column().max(1)))
        .unwrap_or((1, 1));
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let mut message = match full.find(&suffix) {
        Some(i) => format!("{}{}", &full[..i], &full[i + suffix.len()..]),
        None => full,
    };
    // Say what the file needs, not which Rust type failed.
    for name in [
        "ConfigFile",
        "ListenFile",
        "CredentialFile",
        "RouteFile",
        "MatchFile",
        "InterceptionFile",
    ] {
        message = message.replace(&format!("struct {name}"), "a mapping");
    }
    message = message.replace("expected u64", "expected a whole number");
    Problem {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}
