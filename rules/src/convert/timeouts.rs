//! `timeouts:` (top level and per route) and `replay_buffer:`.

use super::{child, Checker};
use crate::file::TimeoutsFile;
use crate::model::{RouteTimeouts, Timeouts, DEFAULT_REPLAY_BUFFER, MAX_REPLAY_BUFFER};
use crate::pos::Seg;
use crate::units::{format_duration, parse_duration, parse_size};
use std::time::Duration;

/// Longest timeout accepted anywhere.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

fn duration(
    c: &mut Checker<'_>,
    path: &[Seg],
    raw: &Option<String>,
) -> Result<Option<Duration>, ()> {
    let Some(raw) = raw else { return Ok(None) };
    c.parse(path, raw, |s| {
        let d = parse_duration(s)?;
        if d.is_zero() {
            Err("must be longer than 0s".to_owned())
        } else if d > MAX_TIMEOUT {
            Err(format!("must be at most {}", format_duration(MAX_TIMEOUT)))
        } else {
            Ok(d)
        }
    })
    .map(Some)
    .ok_or(())
}

/// The top-level `timeouts:`.
pub(super) fn top(c: &mut Checker<'_>, f: Option<&TimeoutsFile>) -> Option<Timeouts> {
    let mut t = Timeouts::default();
    let Some(f) = f else { return Some(t) };
    let base = vec![Seg::Key("timeouts".into())];
    let mut ok = true;
    for (key, raw, slot) in [
        ("connect", &f.connect, &mut t.connect),
        ("read", &f.read, &mut t.read),
        ("idle", &f.idle, &mut t.idle),
        ("upstream_idle", &f.upstream_idle, &mut t.upstream_idle),
        ("request_head", &f.request_head, &mut t.request_head),
        ("tunnel_idle", &f.tunnel_idle, &mut t.tunnel_idle),
        ("token_request", &f.token_request, &mut t.token_request),
    ] {
        match duration(c, &child(&base, key), raw) {
            Ok(Some(d)) => *slot = d,
            Ok(None) => {}
            Err(()) => ok = false,
        }
    }
    ok.then_some(t)
}

/// A route's `timeouts:` (`base` is the route's path).
pub(super) fn route(
    c: &mut Checker<'_>,
    base: &[Seg],
    f: Option<&TimeoutsFile>,
) -> Option<RouteTimeouts> {
    let Some(f) = f else {
        return Some(RouteTimeouts::default());
    };
    let tp = child(base, "timeouts");
    let mut ok = true;
    for (key, present) in [
        ("idle", f.idle.is_some()),
        ("request_head", f.request_head.is_some()),
        ("token_request", f.token_request.is_some()),
    ] {
        if present {
            c.node_err(
                &child(&tp, key),
                format!("`{key}` is set only in the top-level `timeouts` (it is not about a route's upstream)"),
            );
            ok = false;
        }
    }
    let mut get = |key: &str, raw: &Option<String>| match duration(c, &child(&tp, key), raw) {
        Ok(d) => d,
        Err(()) => {
            ok = false;
            None
        }
    };
    let t = RouteTimeouts {
        connect: get("connect", &f.connect),
        read: get("read", &f.read),
        upstream_idle: get("upstream_idle", &f.upstream_idle),
        tunnel_idle: get("tunnel_idle", &f.tunnel_idle),
    };
    ok.then_some(t)
}

/// `replay_buffer:`.
pub(super) fn replay_buffer(c: &mut Checker<'_>, raw: Option<&String>) -> Option<usize> {
    let Some(raw) = raw else {
        return Some(DEFAULT_REPLAY_BUFFER);
    };
    let path = vec![Seg::Key("replay_buffer".into())];
    c.parse(&path, raw, |s| {
        let n = parse_size(s)?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_REPLAY_BUFFER)
            .ok_or_else(|| format!("must be at most {} bytes (8MiB)", MAX_REPLAY_BUFFER))
    })
}
