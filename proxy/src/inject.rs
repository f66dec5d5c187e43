//! Attaching the route's credential: a token from the cache (`auth`) turned into the
//! route's header value, and token failures mapped to `token_unavailable`.

use crate::auth::{Token, TokenCache, TokenError};
use crate::errors::{Code, ProxyError};
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use tollgate_rules::Inject;

/// The credential attached to one request: which token, as which header.
pub struct Injected {
    pub credential: String,
    pub header: HeaderName,
    pub value: HeaderValue,
    /// The token sent, for compare-and-invalidate on a 401.
    pub token: Token,
}

pub struct Injector {
    pub tokens: Arc<TokenCache>,
}

fn unavailable(e: &TokenError, route: Option<&str>) -> ProxyError {
    ProxyError::new(Code::TokenUnavailable, e.to_string(), route)
}

impl Injector {
    pub fn new(tokens: Arc<TokenCache>) -> Injector {
        Injector { tokens }
    }

    fn build(
        inject: &Inject,
        header: &HeaderName,
        token: Token,
        route: Option<&str>,
    ) -> Result<Injected, ProxyError> {
        let mut value = String::with_capacity(inject.prefix.len() + token.secret().len());
        value.push_str(&inject.prefix);
        value.push_str(token.secret());
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            ProxyError::new(
                Code::TokenUnavailable,
                format!(
                    "credential {:?}: the token endpoint returned a token that is not a valid header value",
                    inject.credential
                ),
                route,
            )
        })?;
        value.set_sensitive(true);
        Ok(Injected {
            credential: inject.credential.clone(),
            header: header.clone(),
            value,
            token,
        })
    }

    /// The credential for a request: a cache hit without awaiting, else the single-flight fetch.
    /// `header` is the route's header name, parsed once at load (`state::RouteRuntime`).
    pub async fn header_for(
        &self,
        inject: &Inject,
        header: &HeaderName,
        route: Option<&str>,
    ) -> Result<Injected, ProxyError> {
        let token = match self.tokens.cached(&inject.credential) {
            Some(t) => t,
            None => self
                .tokens
                .get(&inject.credential)
                .await
                .map_err(|e| unavailable(&e, route))?,
        };
        Self::build(inject, header, token, route)
    }

    /// After a 401: drop the token that was sent, unless the cache already moved on.
    /// Returns whether this call invalidated it.
    pub fn invalidate(&self, sent: &Injected) -> bool {
        self.tokens.invalidate(&sent.credential, &sent.token)
    }
}
