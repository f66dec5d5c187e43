//! Text -> validated [`Config`], collecting every problem with its location.

use crate::convert::{self, Checker};
use crate::file::ConfigFile;
use crate::model::Config;
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
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&file, &text, env),
        Err(e) => Err(ConfigErrors(vec![Problem {
            message: format!("cannot read config file {file}: {e}"),
            file,
            line: 1,
            column: 1,
        }])),
    }
}

/// Validate config text; `file` is the name used in problems.
///
/// A syntax error, a value of the wrong type, an unknown key or an unknown enum value
/// (`action`, `auth_method`, `signing_alg`, `default_action`, `connect`) stops parsing: it is
/// reported alone. Once the text parses, every semantic problem is collected, in file
/// order. A file with no document at all (empty, or only comments) is the all-defaults
/// config: no routes, so every request gets `default_action`.
pub fn load_str(file: &str, text: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let parsed: ConfigFile = match serde_yaml::from_str::<Option<ConfigFile>>(text) {
        Ok(Some(f)) => f,
        Ok(None) => ConfigFile::default(),
        Err(e) => return Err(ConfigErrors(vec![serde_problem(file, &e)])),
    };
    let mut checker = Checker::new(file, text, env);
    let config = convert::config(&mut checker, parsed);
    let mut problems = checker.into_problems();
    match config {
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
    }
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
