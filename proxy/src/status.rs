//! The admin status page: `GET /status` (HTML, no script) and `GET /status.json`.
//! [`Sources::snapshot`] gathers what an operator asks first (which credentials hold a
//! token, for how long, the last IdP error, which routes replay and how they are doing);
//! [`html`] renders it. Never a token or a secret: credentials are shown by how they get
//! their token, errors are the sanitized text of the token cache.

use crate::auth::{CredentialStatus, TokenCache};
use crate::metrics::Metrics;
use crate::route::{ConnectMode, RouteAction};
use crate::state::State;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// What the status page reads.
pub struct Sources {
    pub state: Arc<ArcSwap<State>>,
    pub tokens: Arc<TokenCache>,
    pub metrics: Arc<Metrics>,
    pub config_path: PathBuf,
    pub started: SystemTime,
}

#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub version: &'static str,
    pub config_file: String,
    pub started_at: String,
    pub uptime_seconds: u64,
    /// The last reload (`applied` or `rejected`), if any since start.
    pub last_reload: Option<Reload>,
    pub credentials: Vec<CredentialStatus>,
    pub routes: Vec<RouteStatus>,
    /// Where tokens are kept: this process's memory.
    pub token_store: &'static str,
}

#[derive(Debug, serde::Serialize)]
pub struct Reload {
    pub at: String,
    pub outcome: &'static str,
}

#[derive(Debug, serde::Serialize)]
pub struct RouteStatus {
    pub name: String,
    /// `inject`, `pass` or `deny`.
    pub action: &'static str,
    pub credential: Option<String>,
    pub replay_on_401: bool,
    /// What a CONNECT gets: `tunnel`, `refuse` or `intercept`.
    pub connect: &'static str,
    /// Requests answered since start (all outcomes).
    pub requests: u64,
    /// 401 replays since start (all outcomes).
    pub replays: u64,
    /// The status of the last request (`null` before the first).
    pub last_status: Option<u16>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Sums a counter family by its `route` label.
fn by_route(metrics: &Metrics, name: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for family in metrics.registry.gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            if let Some(route) = m.get_label().iter().find(|l| l.name() == "route") {
                // Counters are whole numbers.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let v = m.get_counter().get_value() as u64;
                *out.entry(route.value().to_owned()).or_insert(0) += v;
            }
        }
    }
    out
}

impl Sources {
    pub fn snapshot(&self) -> Status {
        let state = self.state.load();
        let requests = by_route(&self.metrics, "tollgate_requests_total");
        let replays = by_route(&self.metrics, "tollgate_replays_total");
        let routes = state
            .routes
            .iter()
            .map(|r| {
                let inject = r.injection();
                RouteStatus {
                    name: r.name.clone(),
                    action: r.action_name(),
                    credential: inject.map(|i| i.credential.clone()),
                    replay_on_401: inject.is_some_and(|i| i.replay_on_401),
                    connect: match (&r.action, r.connect) {
                        (RouteAction::Deny, _) | (_, ConnectMode::Refuse) => "refuse",
                        (_, ConnectMode::Tunnel) => "tunnel",
                        (_, ConnectMode::Intercept) => "intercept",
                    },
                    requests: requests.get(&r.name).copied().unwrap_or(0),
                    replays: replays.get(&r.name).copied().unwrap_or(0),
                    last_status: match r.metrics.last_status.load(Ordering::Relaxed) {
                        0 => None,
                        s => Some(s),
                    },
                }
            })
            .collect();
        let now = SystemTime::now();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            config_file: self.config_path.display().to_string(),
            started_at: rfc3339(self.started),
            uptime_seconds: now.duration_since(self.started).map_or(0, |d| d.as_secs()),
            last_reload: self.metrics.last_reload().map(|(at, outcome)| Reload {
                at: rfc3339(at),
                outcome,
            }),
            credentials: self.tokens.status(),
            routes,
            token_store: "memory (this process)",
        }
    }
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1h 02m`, `45s`, `-3m 10s` (expired).
fn span(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (d, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d {h:02}h")
    } else if h > 0 {
        format!("{sign}{h}h {m:02}m")
    } else if m > 0 {
        format!("{sign}{m}m {sec:02}s")
    } else {
        format!("{sign}{sec}s")
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:2em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.valid{color:#176f2c}.failing,.expired{color:#b00020}\
.none{color:#666}code{font-size:.9em}";

/// The status page.
pub fn html(s: &Status) -> String {
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>tollgate status</title><style>{STYLE}</style></head><body>\
         <h1>tollgate {}</h1><p>config <code>{}</code>, up {} (since {})",
        esc(s.version),
        esc(&s.config_file),
        span(i64::try_from(s.uptime_seconds).unwrap_or(i64::MAX)),
        esc(&s.started_at),
    );
    match &s.last_reload {
        Some(r) => {
            let _ = write!(h, ", last reload {} at {}", esc(r.outcome), esc(&r.at));
        }
        None => h.push_str(", not reloaded since start"),
    }
    let _ = write!(
        h,
        ". Tokens are kept in {}. Also: <a href=\"/status.json\">/status.json</a>, \
         <a href=\"/metrics\">/metrics</a>.</p>",
        esc(s.token_store)
    );
    h.push_str(
        "<h2>Credentials</h2><table id=\"credentials\"><tr><th>credential</th><th>state</th>\
         <th>expires in</th><th>token age</th><th>token requests (ok / failed)</th>\
         <th>last error</th><th>how it gets a token</th></tr>",
    );
    if s.credentials.is_empty() {
        h.push_str("<tr><td colspan=\"7\">none configured</td></tr>");
    }
    for c in &s.credentials {
        let _ = write!(
            h,
            "<tr data-credential=\"{name}\"><td>{name}</td><td class=\"{state}\">{state}{refresh}</td>\
             <td>{expires}</td><td>{age}</td><td>{ok} / {failed}</td><td>{error}</td><td>{kind}</td></tr>",
            name = esc(&c.name),
            state = c.state,
            refresh = if c.refreshing { " (refreshed in the background)" } else { "" },
            expires = c
                .expires_in_seconds
                .map(|e| format!("{} ({})", span(e), esc(c.expires_at.as_deref().unwrap_or(""))))
                .unwrap_or_else(|| "—".into()),
            age = c
                .token_age_seconds
                .map(|a| span(i64::try_from(a).unwrap_or(i64::MAX)))
                .unwrap_or_else(|| "—".into()),
            ok = c.token_requests_ok,
            failed = c.token_requests_failed,
            error = match (&c.last_error, &c.last_error_at) {
                (Some(e), Some(at)) => format!("{} <small>({})</small>", esc(e), esc(at)),
                _ => "—".into(),
            },
            kind = esc(&c.kind),
        );
    }
    h.push_str(
        "</table><h2>Routes</h2><table id=\"routes\"><tr><th>route</th><th>action</th>\
         <th>credential</th><th>replay after 401</th><th>CONNECT</th><th>requests</th>\
         <th>replays</th><th>last status</th></tr>",
    );
    for r in &s.routes {
        let _ = write!(
            h,
            "<tr data-route=\"{name}\"><td>{name}</td><td>{action}</td><td>{cred}</td><td>{replay}</td>\
             <td>{connect}</td><td>{requests}</td><td>{replays}</td><td>{last}</td></tr>",
            name = esc(&r.name),
            action = r.action,
            cred = r.credential.as_deref().map_or_else(|| "—".into(), esc),
            replay = if r.replay_on_401 { "yes" } else { "no" },
            connect = r.connect,
            requests = r.requests,
            replays = r.replays,
            last = r.last_status.map_or_else(|| "—".into(), |s| s.to_string()),
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_a_clock() {
        assert_eq!(span(45), "45s");
        assert_eq!(span(125), "2m 05s");
        assert_eq!(span(3720), "1h 02m");
        assert_eq!(span(-190), "-3m 10s");
        assert_eq!(span(90000), "1d 01h");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<b a=\"1\">&'"), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
        let s = Status {
            version: "1",
            config_file: "/etc/<x>.yaml".into(),
            started_at: "t".into(),
            uptime_seconds: 1,
            last_reload: None,
            credentials: vec![CredentialStatus {
                name: "<script>".into(),
                kind: "k".into(),
                state: "failing",
                token_age_seconds: None,
                expires_in_seconds: None,
                expires_at: None,
                refreshing: false,
                last_error: Some("idp said <html>".into()),
                last_error_at: Some("t".into()),
                token_requests_ok: 0,
                token_requests_failed: 1,
            }],
            routes: Vec::new(),
            token_store: "memory",
        };
        let page = html(&s);
        assert!(
            !page.contains("<script>") && !page.contains("<html>idp"),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;") && page.contains("idp said &lt;html&gt;"));
    }
}
