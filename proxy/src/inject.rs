//! Attaching the route's credential. Token fetching lives in `auth`; this module turns a
//! token into the header value for a route and maps failures to `token_unavailable`.

use crate::ctx::Injected;
use crate::errors::{Code, ProxyError};
use tollgate_rules::Inject;

pub struct Injector {}

impl Injector {
    pub fn new() -> Injector {
        Injector {}
    }

    pub async fn header_for(
        &self,
        inject: &Inject,
        route: Option<&str>,
    ) -> Result<Injected, ProxyError> {
        Err(ProxyError::new(
            Code::TokenUnavailable,
            format!(
                "credential {:?}: token fetching is not available yet",
                inject.credential
            ),
            route,
        ))
    }
}

impl Default for Injector {
    fn default() -> Self {
        Injector::new()
    }
}
