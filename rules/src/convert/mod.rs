//! File structs -> validated model, collecting every problem with its position.
//!
//! Each `credential`/`route` function validates one entry, records problems on the
//! [`Checker`], and returns `None` when the entry had any. The model is assembled only
//! when nothing at all was wrong. `credential.rs` and `route.rs` hold the per-entry
//! checks; this file the [`Checker`] and the top level.

use crate::file::{ConfigFile, DefaultActionFile, InterceptionFile, PathNormalizationFile};
use crate::load::{Env, Location, Problem};
use crate::model::{
    Config, DefaultAction, Interception, InterceptionSites, Listen, PathNormalization,
};
use crate::pos::{display, Pos, PosIndex, Seg, YPath};
use crate::source::Partial;
use crate::values::{self, shown};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default `listen.proxy`.
pub const DEFAULT_PROXY_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3128);
/// Default `listen.admin`.
pub const DEFAULT_ADMIN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);
/// Default `routes[].header`.
pub const DEFAULT_HEADER: &str = "Authorization";
/// Default `routes[].prefix`.
pub const DEFAULT_PREFIX: &str = "Bearer ";
/// The prefix of a DPoP-bound token (RFC 9449 §7.1).
pub const DPOP_PREFIX: &str = "DPoP ";
/// `drain_timeout` when the file does not say.
pub const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest accepted `drain_timeout`.
const MAX_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `interception.leaf_lifetime` when the file does not say.
pub const DEFAULT_LEAF_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Shortest accepted `interception.leaf_lifetime` (leaves are renewed at 3/4 of it).
pub const MIN_LEAF_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Longest accepted `interception.leaf_lifetime`: 397 days, the CA/Browser Forum limit
/// that Apple and Chrome also apply to TLS server certificates.
pub const MAX_LEAF_LIFETIME: std::time::Duration = std::time::Duration::from_secs(397 * 86400);

/// Largest accepted `threads`.
pub const MAX_THREADS: u64 = 4096;

/// Builds a path from segments: `path!["routes", i, "name"]`.
macro_rules! path {
    ($($seg:expr),* $(,)?) => {{
        let p: YPath = vec![$(Seg::from($seg)),*];
        p
    }};
}

impl From<&str> for Seg {
    fn from(s: &str) -> Seg {
        Seg::Key(s.to_owned())
    }
}

impl From<&String> for Seg {
    fn from(s: &String) -> Seg {
        Seg::Key(s.clone())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Seg {
        Seg::Idx(i)
    }
}

fn child(base: &[Seg], seg: impl Into<Seg>) -> YPath {
    let mut p = base.to_vec();
    p.push(seg.into());
    p
}

mod callers;
mod credential;
mod route;
mod store;
mod timeouts;

pub use callers::DEFAULT_IDENTITY_CLAIM;
use credential::credential;
use route::route;
pub use store::{
    DEFAULT_KEY_PREFIX, DEFAULT_LOCK_TIMEOUT, DEFAULT_REDIS_PORT, DEFAULT_REDIS_TIMEOUT,
};

/// Collects problems and resolves positions.
pub(crate) struct Checker<'a> {
    file: &'a str,
    index: PosIndex,
    env: &'a dyn Env,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a str, text: &str, env: &'a dyn Env) -> Self {
        Checker {
            file,
            index: PosIndex::build(text),
            env,
            problems: Vec::new(),
        }
    }

    /// The problems recorded, and the position index (kept to locate later problems).
    pub fn into_parts(self) -> (Vec<Problem>, PosIndex) {
        (self.problems, self.index)
    }

    /// A problem made elsewhere (a YAML syntax or type error).
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// A key no struct of the file accepts, at the key, in serde's words (so that the
    /// message reads the same as when unknown keys stopped parsing).
    pub fn unknown_key(&mut self, path: &[Seg], expected: Option<&'static [&'static str]>) {
        let Some((Seg::Key(key), parent)) = path.split_last() else {
            return;
        };
        let mut message = format!("unknown field `{key}`");
        match expected.unwrap_or(&[]) {
            [] => {}
            [one] => message.push_str(&format!(", expected `{one}`")),
            [a, b] => message.push_str(&format!(", expected `{a}` or `{b}`")),
            many => {
                let list: Vec<String> = many.iter().map(|f| format!("`{f}`")).collect();
                message.push_str(&format!(", expected one of {}", list.join(", ")));
            }
        }
        let pos = self.index.key(path);
        self.at(pos, parent, message);
    }

    fn at(&mut self, pos: Pos, path: &[Seg], message: impl AsRef<str>) {
        let message = if path.is_empty() {
            message.as_ref().to_owned()
        } else {
            format!("{}: {}", display(path), message.as_ref())
        };
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
        });
    }

    /// Where the key at `path` is, for problems found after validation.
    fn location(&self, path: &[Seg]) -> Location {
        let pos = self.index.key(path);
        Location {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            key: display(path),
        }
    }

    /// A problem with the value at `path`.
    fn value_err(&mut self, path: &[Seg], message: impl AsRef<str>) {
        let pos = self.index.value(path);
        self.at(pos, path, message);
    }

    /// A problem with the node at `path` as a whole (a missing key, a conflict): located
    /// at its key when it is a mapping entry, else at its value.
    fn node_err(&mut self, path: &[Seg], message: impl AsRef<str>) {
        let pos = match path.last() {
            Some(Seg::Key(_)) => self.index.key(path),
            _ => self.index.value(path),
        };
        self.at(pos, path, message);
    }

    /// `${NAME}` substitution for a value that may be quoted in messages.
    fn expand(&mut self, path: &[Seg], raw: &str) -> Option<String> {
        match values::expand(raw, self.env) {
            Ok(s) => Some(s),
            Err(errors) => {
                for e in errors {
                    self.value_err(path, e.message());
                }
                None
            }
        }
    }

    /// Expand, then parse/check; the message quotes the value as written in the file.
    fn parse<T>(
        &mut self,
        path: &[Seg],
        raw: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.expand(path, raw)?;
        match f(&s) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.value_err(path, with_written(msg, raw, &s));
                None
            }
        }
    }

    fn text(&mut self, path: &[Seg], raw: &str) -> Option<String> {
        self.parse(path, raw, |s| {
            if s.is_empty() {
                Err("empty value".to_owned())
            } else {
                Ok(s.to_owned())
            }
        })
    }

    fn file_path(&mut self, path: &[Seg], raw: &str) -> Option<PathBuf> {
        self.parse(path, raw, |s| {
            if s.is_empty() {
                Err("empty file path".to_owned())
            } else {
                Ok(PathBuf::from(s))
            }
        })
    }

    /// An explicit empty list is ambiguous ("none" or "all"?), so it is a problem.
    fn non_empty_list<'l>(
        &mut self,
        path: &[Seg],
        list: &'l Option<Vec<String>>,
        omit_means: &str,
    ) -> Option<&'l [String]> {
        match list {
            Some(l) if l.is_empty() => {
                self.value_err(
                    path,
                    format!("empty list; omit the key to match {omit_means}"),
                );
                None
            }
            Some(l) => Some(l),
            None => None,
        }
    }
}

/// When a value came from `${...}` substitution, says so (without showing the result).
fn with_written(msg: String, raw: &str, expanded: &str) -> String {
    if raw == expanded {
        msg
    } else {
        format!("{msg} (after substituting `${{...}}` in {})", shown(raw))
    }
}

/// `interception:`. The files are not opened here (the proxy reads and checks them).
fn interception(c: &mut Checker<'_>, f: InterceptionFile) -> Option<Interception> {
    let base = path!["interception"];
    let file = |c: &mut Checker<'_>, key: &str, raw: &Option<String>| match raw {
        Some(raw) => c.file_path(&child(&base, key), raw),
        None => {
            c.node_err(
                &base,
                format!("missing `{key}` (`interception` needs `ca_cert_file` and `ca_key_file`)"),
            );
            None
        }
    };
    let ca_cert_file = file(c, "ca_cert_file", &f.ca_cert_file);
    let ca_key_file = file(c, "ca_key_file", &f.ca_key_file);
    if let (Some(cert), Some(key)) = (&ca_cert_file, &ca_key_file) {
        if cert == key {
            c.value_err(
                &child(&base, "ca_key_file"),
                "must not be the certificate file: tollgate reads the certificate and the key from separate files",
            );
        }
    }
    let lp = child(&base, "leaf_lifetime");
    let leaf_lifetime = match &f.leaf_lifetime {
        None => Some(DEFAULT_LEAF_LIFETIME),
        Some(raw) => c
            .text(&lp, raw)
            .and_then(|t| match crate::units::parse_duration(&t) {
                Ok(d) if (MIN_LEAF_LIFETIME..=MAX_LEAF_LIFETIME).contains(&d) => Some(d),
                Ok(_) => {
                    c.value_err(
                        &lp,
                        "must be between 10m and 397d (leaves are renewed when 3/4 of it has passed)",
                    );
                    None
                }
                Err(e) => {
                    c.value_err(&lp, format!("{t:?} is not a duration like 24h or 7d: {e}"));
                    None
                }
            }),
    };
    let sites = InterceptionSites {
        ca_cert_file: c.location(&child(&base, "ca_cert_file")),
        ca_key_file: c.location(&child(&base, "ca_key_file")),
    };
    let (ca_cert_file, ca_key_file, leaf_lifetime) = (ca_cert_file?, ca_key_file?, leaf_lifetime?);
    (ca_cert_file != ca_key_file).then_some(Interception {
        ca_cert_file,
        ca_key_file,
        leaf_lifetime,
        sites,
    })
}

/// The whole conversion. The config is `None` when any problem was recorded; the
/// credentials and routes that were valid on their own come back either way.
pub(crate) fn config(c: &mut Checker<'_>, f: ConfigFile) -> (Option<Config>, Partial) {
    let mut partial = Partial::default();
    let config = assemble(c, f, &mut partial);
    (config, partial)
}

/// The conversion proper; records each valid credential and route in `partial` too.
fn assemble(c: &mut Checker<'_>, f: ConfigFile, partial: &mut Partial) -> Option<Config> {
    let listen = f.listen.unwrap_or_default();
    let proxy = match &listen.proxy {
        Some(raw) => c.parse(&path!["listen", "proxy"], raw, values::parse_listen),
        None => Some(DEFAULT_PROXY_ADDR),
    };
    let admin = match &listen.admin {
        Some(raw) => c.parse(&path!["listen", "admin"], raw, values::parse_listen),
        None => Some(DEFAULT_ADMIN_ADDR),
    };
    if let (Some(p), Some(a)) = (proxy, admin) {
        if p == a && p.port() != 0 {
            c.value_err(
                &path!["listen", "admin"],
                "the admin listener must not use the proxy listener's address",
            );
        }
    }

    let threads = match f.threads {
        None => Some(None),
        Some(0) => {
            c.value_err(
                &path!["threads"],
                "must be at least 1 (omit it to use one thread per CPU)",
            );
            None
        }
        Some(n) if n > MAX_THREADS => {
            c.value_err(&path!["threads"], format!("must be at most {MAX_THREADS}"));
            None
        }
        Some(n) => usize::try_from(n).ok().map(Some),
    };

    let drain_timeout = match f.drain_timeout {
        None => Some(DEFAULT_DRAIN_TIMEOUT),
        Some(raw) => c.text(&path!["drain_timeout"], &raw).and_then(|t| {
            match crate::units::parse_duration(&t) {
                Ok(d) if d <= MAX_DRAIN_TIMEOUT => Some(d),
                Ok(_) => {
                    c.value_err(
                        &path!["drain_timeout"],
                        format!(
                            "must be at most {}",
                            crate::units::format_duration(MAX_DRAIN_TIMEOUT)
                        ),
                    );
                    None
                }
                Err(e) => {
                    c.value_err(
                        &path!["drain_timeout"],
                        format!("{t:?} is not a duration like 10s or 1m: {e}"),
                    );
                    None
                }
            }
        }),
    };

    let timeouts = timeouts::top(c, f.timeouts.as_ref());
    let replay_buffer = timeouts::replay_buffer(c, f.replay_buffer.as_ref());

    let default_action = match f.default_action {
        None | Some(DefaultActionFile::Deny) => DefaultAction::Deny,
        Some(DefaultActionFile::Pass) => DefaultAction::Pass,
    };

    // Credentials, in file order; duplicates reported at the later key.
    let mut credentials = BTreeMap::new();
    let mut declared: HashSet<String> = HashSet::new();
    let mut all_ok = true;
    let entries = f.credentials.map(|m| m.0).unwrap_or_default();
    let key_positions = c.index.key_positions(&path!["credentials"]).to_vec();
    for (i, (name, cf)) in entries.into_iter().enumerate() {
        let base = path!["credentials", &name];
        if !declared.insert(name.clone()) {
            let pos = key_positions
                .get(i)
                .copied()
                .unwrap_or_else(|| c.index.key(&base));
            c.at(
                pos,
                &base,
                format!("duplicate credential name {}", shown(&name)),
            );
            all_ok = false;
            continue;
        }
        if let Err(msg) = values::check_name(&name) {
            c.node_err(&base, msg);
            all_ok = false;
        }
        match credential(c, &base, &name, cf) {
            Some(cred) => {
                partial.credentials.push(cred.clone());
                credentials.insert(name, cred);
            }
            None => all_ok = false,
        }
    }

    let callers = callers::callers(c, f.callers);
    partial.callers = callers.clone().flatten();

    // Routes, in file order.
    let mut routes = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, rf) in f.routes.unwrap_or_default().into_iter().enumerate() {
        let base = path!["routes", i];
        match route(c, &base, rf, &declared, &credentials, &mut names, i) {
            Some(r) => {
                if !r.callers.is_empty() && matches!(callers, Some(None)) {
                    c.node_err(
                        &child(&base, "callers"),
                        "a route lists `callers` but there is no `callers:` section saying how callers authenticate",
                    );
                    all_ok = false;
                }
                partial.routes.push((i, r.clone()));
                routes.push(r);
            }
            None => all_ok = false,
        }
    }

    let interception = match f.interception {
        None => Some(None),
        Some(i) => interception(c, i).map(Some),
    };
    partial.interception = interception.clone().flatten();

    let token_store = match f.token_store {
        None => Some(None),
        Some(ts) => store::token_store(c, ts).map(Some),
    };
    partial.token_store = token_store.clone().flatten();

    let config = Config {
        interception: interception?,
        listen: Listen {
            proxy: proxy?,
            admin: admin?,
        },
        threads: threads?,
        drain_timeout: drain_timeout?,
        default_action,
        allow_private_networks: f.allow_private_networks.unwrap_or(false),
        timeouts: timeouts?,
        replay_buffer: replay_buffer?,
        path_normalization: match f.path_normalization {
            None | Some(PathNormalizationFile::Normalize) => PathNormalization::Normalize,
            Some(PathNormalizationFile::Reject) => PathNormalization::Reject,
        },
        credentials,
        routes,
        callers: callers?,
        token_store: token_store?,
    };
    (all_ok && c.problems.is_empty()).then_some(config)
}
