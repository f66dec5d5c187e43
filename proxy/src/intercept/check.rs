//! Loading a config's CA for serving ([`prepare`]) and for `tollgate check` ([`check`]):
//! the same work, so both refuse the same configs. Problems point at the key that names
//! the file at fault (`interception.ca_cert_file` / `ca_key_file`), or at a route's
//! `connect:` when the CA may not sign for one of its hosts.

use super::authority::{Authority, CaError};
use std::sync::Arc;
use std::time::SystemTime;
use tollgate_rules::{Config, Connect, Interception, Problem, Route};

/// A config's CA, loaded and checked against its intercepting routes; `None` inside when
/// the config has no `interception`. Give it to [`super::Interceptor::install`].
#[derive(Debug, Default)]
pub struct Prepared(Option<Arc<Authority>>);

impl Prepared {
    /// The CA, if the config has one (for `tollgate route` explanations).
    pub fn authority(&self) -> Option<&Authority> {
        self.0.as_deref()
    }

    pub(super) fn into_authority(self) -> Option<Arc<Authority>> {
        self.0
    }
}

/// Loads and checks `config.interception` now. Every problem is FILE:LINE:COL.
pub fn prepare(config: &Config) -> Result<Prepared, Vec<Problem>> {
    prepare_at(config, SystemTime::now())
}

/// What is wrong with the config's CA (empty when nothing is, or there is none).
pub fn check(config: &Config) -> Vec<Problem> {
    prepare(config).err().unwrap_or_default()
}

/// What is wrong with an `interception` CA and the routes that intercept with it (all
/// of them, or those that validated on their own when the file has problems elsewhere):
/// for `preflight`, the same work as [`prepare`]. When the certificate is unusable, the
/// key is still read, so that a bad key is reported with it.
pub fn check_parts<'a>(i: &Interception, routes: impl Iterator<Item = &'a Route>) -> Vec<Problem> {
    prepare_parts(i, routes, SystemTime::now())
        .err()
        .unwrap_or_default()
}

pub(super) fn prepare_at(config: &Config, now: SystemTime) -> Result<Prepared, Vec<Problem>> {
    let Some(i) = &config.interception else {
        return Ok(Prepared(None));
    };
    prepare_parts(i, config.intercepting_routes(), now).map(|a| Prepared(Some(a)))
}

fn prepare_parts<'a>(
    i: &Interception,
    routes: impl Iterator<Item = &'a Route>,
    now: SystemTime,
) -> Result<Arc<Authority>, Vec<Problem>> {
    let authority = Authority::load(&i.ca_cert_file, &i.ca_key_file, i.leaf_lifetime, now)
        .map_err(|e| match e {
            CaError::Cert(m) => {
                let mut problems = vec![i.sites.ca_cert_file.problem(m)];
                if let Err(key) = Authority::load_key(&i.ca_key_file) {
                    problems.push(i.sites.ca_key_file.problem(key));
                }
                problems
            }
            CaError::Key(m) => vec![i.sites.ca_key_file.problem(m)],
        })?;
    let mut problems = Vec::new();
    for route in routes.filter(|r| r.connect == Connect::Intercept) {
        for (j, host) in route.matcher.hosts.iter().enumerate() {
            if let Err(why) = authority.constraints().permits_pattern(host) {
                let at = route.connect_at.as_ref().unwrap_or(&i.sites.ca_cert_file);
                problems.push(at.problem(format!(
                    "route {:?} intercepts match.hosts[{j}], but the interception CA ({}) may not sign for it: {why}",
                    route.name,
                    i.ca_cert_file.display()
                )));
            }
        }
    }
    if problems.is_empty() {
        Ok(Arc::new(authority))
    } else {
        Err(problems)
    }
}
