//! `callers:` -> [`Callers`], and a route's `callers:` list.

use super::{child, Checker};
use crate::file::CallersFile;
use crate::model::{BasicCallers, CallerPattern, Callers, JwksSource, JwtCallers};
use crate::pos::Seg;
use crate::values;

/// Default `callers.jwt.identity_claim`.
pub const DEFAULT_IDENTITY_CLAIM: &str = "sub";

/// The `callers:` section. `Some(None)`: absent; `None`: it had problems.
pub(super) fn callers(c: &mut Checker<'_>, f: Option<CallersFile>) -> Option<Option<Callers>> {
    let Some(f) = f else { return Some(None) };
    let base: Vec<Seg> = vec![Seg::from("callers")];
    let mut ok = true;
    if f.jwt.is_none() && f.basic.is_none() {
        c.node_err(
            &base,
            "`callers` needs `jwt` or `basic` (or both): how callers prove who they are",
        );
        ok = false;
    }
    let jwt = match f.jwt {
        None => None,
        Some(j) => {
            let jp = child(&base, "jwt");
            let issuer = match &j.issuer {
                Some(raw) => c.text(&child(&jp, "issuer"), raw),
                None => {
                    c.node_err(
                        &jp,
                        "missing `issuer` (the `iss` every caller token carries)",
                    );
                    None
                }
            };
            let ap = child(&jp, "audiences");
            let mut audiences = Vec::new();
            match &j.audiences {
                None => {
                    c.node_err(&jp, "missing `audiences` (e.g. [tollgate])");
                    ok = false;
                }
                Some(list) if list.is_empty() => {
                    c.value_err(&ap, "needs at least one audience (e.g. [tollgate])");
                    ok = false;
                }
                Some(list) => {
                    for (i, raw) in list.iter().enumerate() {
                        match c.text(&child(&ap, i), raw) {
                            Some(a) if !audiences.contains(&a) => audiences.push(a),
                            Some(_) => {}
                            None => ok = false,
                        }
                    }
                }
            }
            let keys = match (&j.jwks_file, &j.jwks_url) {
                (Some(_), Some(_)) => {
                    c.node_err(
                        &child(&jp, "jwks_url"),
                        "set either `jwks_file` or `jwks_url`, not both",
                    );
                    None
                }
                (None, None) => {
                    c.node_err(
                        &jp,
                        "missing `jwks_file` or `jwks_url` (the keys that sign caller tokens)",
                    );
                    None
                }
                (Some(raw), None) => c
                    .file_path(&child(&jp, "jwks_file"), raw)
                    .map(JwksSource::File),
                (None, Some(raw)) => c
                    .parse(&child(&jp, "jwks_url"), raw, |s| {
                        values::parse_token_url(s).map_err(|e| {
                            e.replace("token_url", "jwks_url")
                                .replace("use client_id and client_secret", "put none in it")
                        })
                    })
                    .map(JwksSource::Url),
            };
            let identity_claim = match &j.identity_claim {
                Some(raw) => c.text(&child(&jp, "identity_claim"), raw),
                None => Some(DEFAULT_IDENTITY_CLAIM.to_owned()),
            };
            match (issuer, keys, identity_claim) {
                (Some(issuer), Some(keys), Some(identity_claim)) => Some(JwtCallers {
                    issuer,
                    audiences,
                    keys,
                    identity_claim,
                }),
                _ => {
                    ok = false;
                    None
                }
            }
        }
    };
    let basic = match f.basic {
        None => None,
        Some(b) => {
            let bp = child(&base, "basic");
            match &b.htpasswd_file {
                Some(raw) => match c.file_path(&child(&bp, "htpasswd_file"), raw) {
                    Some(htpasswd_file) => Some(BasicCallers { htpasswd_file }),
                    None => {
                        ok = false;
                        None
                    }
                },
                None => {
                    c.node_err(&bp, "missing `htpasswd_file`");
                    ok = false;
                    None
                }
            }
        }
    };
    ok.then_some(Some(Callers {
        jwt,
        basic,
        required: f.required.unwrap_or(false),
    }))
}

/// A route's `callers:` list (`None` when an entry had a problem).
pub(super) fn route_callers(
    c: &mut Checker<'_>,
    base: &[Seg],
    list: &Option<Vec<String>>,
) -> Option<Vec<CallerPattern>> {
    let path = child(base, "callers");
    let Some(list) = c.non_empty_list(&path, list, "any caller") else {
        return list.is_none().then(Vec::new);
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, raw) in list.iter().enumerate() {
        match c.parse(&child(&path, i), raw, values::parse_caller_pattern) {
            Some(p) if !out.contains(&p) => out.push(p),
            Some(_) => {}
            None => ok = false,
        }
    }
    ok.then_some(out)
}
