//! One attempt to get a credential's value: the token request(s) to its endpoint, or the
//! read of a static credential's file. Metrics and logs here; nothing is cached (the
//! cache stores what this returns).
//!
//! With `client_secret_files: [current, previous]` an attempt tries the current secret
//! and, when the endpoint refuses the client with it (`invalid_client`, a 401), the
//! previous one: during a rotation overlap both work, and the metric
//! `tollgate_token_client_secret_in_use` and `tollgate token` say which one did, so an
//! operator knows when the old secret can be revoked. Every attempt starts with the
//! current one again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;
use tollgate_rules::Credential;

use super::client::{
    check_exchange, check_token_type, parse_id_token, parse_response, HttpRequest, HttpResponse,
    TokenEndpoint, TokenResponse, TokenType, TransportError, REQUEST_TIMEOUT,
};
use super::dpop::{self, DpopKey, ProofFor};
use super::error::{sanitize, Failure, Outcome, TokenError};
use super::jwt::jwt_times;
use super::method::{CredAuth, Expect, Prepared};
use super::metrics::CredMetrics;
use super::schedule::{self, LifetimeSource, Schedule, MAX_LIFETIME};
use super::secret::STAT_INTERVAL;
use super::token::Token;

/// One successful attempt, with what `tollgate token` shows.
pub(crate) struct Fetched {
    pub token: Token,
    pub token_type: String,
    pub expires_in: Option<Duration>,
    pub scope: Option<String>,
    pub claims: Option<Value>,
    pub lifetime: Duration,
    pub source: LifetimeSource,
    /// What authenticated the request that got it (or the static file). Never a secret.
    pub used: String,
}

/// What an attempt works with (borrowed from the cache's slot).
pub(crate) struct Attempt<'a> {
    pub name: &'a Arc<str>,
    pub def: &'a Credential,
    pub auth: &'a CredAuth,
    pub endpoint: Arc<dyn TokenEndpoint>,
    pub m: &'a CredMetrics,
    pub next_id: &'a AtomicU64,
}

impl Attempt<'_> {
    fn fail(&self, failure: Failure) -> TokenError {
        TokenError::new(Arc::clone(self.name), failure)
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs the attempt. Also returns the version of the files used (a newer one ends
    /// a failure memo early).
    pub(crate) async fn run(self) -> (Result<Fetched, TokenError>, u64) {
        if let Some(value) = self.auth.static_value() {
            return self.read_static(value);
        }
        let tries = self.auth.secrets();
        let mut refused: Vec<String> = Vec::new();
        for i in 0..tries {
            let prepared = match self.auth.prepare(self.def, i) {
                Ok(p) => p,
                Err(why) => {
                    let error = self.fail(Failure::Local(Arc::from(format!(
                        "cannot authenticate: {why}"
                    ))));
                    tracing::error!(credential = %self.name, %error, "token request not sent");
                    return (Err(error), self.auth.version());
                }
            };
            let version = prepared.version;
            match self.request(prepared).await {
                Ok(mut fetched) => {
                    if tries > 1 {
                        self.m.secret_in_use(i + 1);
                        if i > 0 {
                            tracing::warn!(
                                credential = %self.name,
                                refused = %refused.join("; "),
                                "got a token with {}; the current secret was refused: keep the \
                                 old secret until the token endpoint accepts the new one",
                                fetched.used
                            );
                            fetched
                                .used
                                .push_str(&format!(" (refused: {})", refused.join("; ")));
                        }
                    }
                    return (Ok(fetched), version);
                }
                Err((error, used)) if error.is_permanent() && i + 1 < tries => {
                    tracing::warn!(
                        credential = %self.name,
                        %error,
                        "the token endpoint refused {used}; trying the next of client_secret_files"
                    );
                    refused.push(used);
                }
                Err((error, _)) => return (Err(error), version),
            }
        }
        // Not reached: the last try returns.
        let error = self.fail(Failure::Local(Arc::from("no client secret to try")));
        (Err(error), self.auth.version())
    }

    /// A static credential: its file's current content, usable until it changes.
    fn read_static(
        &self,
        value: Result<(Arc<tollgate_rules::Secret>, u64), String>,
    ) -> (Result<Fetched, TokenError>, u64) {
        let (secret, version) = match value {
            Ok(v) => v,
            Err(why) => {
                let error = self.fail(Failure::Local(Arc::from(why)));
                tracing::error!(credential = %self.name, %error, "static credential unreadable");
                return (Err(error), self.auth.version());
            }
        };
        // Handed out for a day at most; looked at again (a stat) after a second, so a
        // rotated file is picked up within about a second.
        let schedule = Schedule {
            lifetime: MAX_LIFETIME,
            refresh_after: STAT_INTERVAL,
            usable_for: MAX_LIFETIME,
        };
        let token = Token::new(
            secret.expose().to_owned(),
            self.id(),
            Instant::now(),
            &schedule,
        );
        let used = match self.def.kind {
            tollgate_rules::CredentialKind::Static { ref value_file } => {
                format!("static value_file {}", value_file.display())
            }
            _ => String::new(),
        };
        let fetched = Fetched {
            token,
            token_type: "static".into(),
            expires_in: None,
            scope: None,
            claims: None,
            lifetime: MAX_LIFETIME,
            source: LifetimeSource::Static,
            used,
        };
        (Ok(fetched), version)
    }

    /// Sends `request`; for a DPoP-bound credential with a fresh proof (the token URL's
    /// last nonce in it), and once more with the nonce the endpoint asks for.
    async fn send(
        &self,
        mut request: HttpRequest,
        dpop: Option<&DpopKey>,
    ) -> Result<HttpResponse, TransportError> {
        let Some(key) = dpop else {
            return self.endpoint.send(request).await;
        };
        let (htu, origin) = dpop::url_htu(&request.url);
        let mut asked = false;
        loop {
            let proof = key
                .proof(
                    &ProofFor {
                        htm: "POST",
                        htu: &htu,
                        ath: None,
                        iat: dpop::unix_now(),
                    },
                    &origin,
                )
                .map_err(TransportError::Local)?;
            request.headers.retain(|(n, _)| *n != "DPoP");
            request.headers.push(("DPoP", proof));
            let resp = self.endpoint.send(request.clone()).await?;
            let nonce_given = resp
                .dpop_nonce
                .as_deref()
                .is_some_and(|n| key.remember_nonce(&origin, n));
            if !asked && nonce_given && asks_for_nonce(&resp) {
                asked = true;
                tracing::debug!(credential = %self.name, "the token endpoint asked for a DPoP nonce; sending again with it");
                continue;
            }
            return Ok(resp);
        }
    }

    /// One request to the endpoint: metrics and logs. On failure also returns what
    /// authenticated it.
    async fn request(&self, prepared: Prepared) -> Result<Fetched, (TokenError, String)> {
        let Prepared {
            request,
            used,
            expect,
            dpop,
            ..
        } = prepared;
        let span = tracing::info_span!(
            target: "tollgate::auth",
            "token request",
            otel.kind = "client",
            credential = %self.name,
            url.full = %request.url,
        );
        // The token's lifetime counts from here, when the request is sent: the endpoint
        // starts the clock when it issues the token, which may be well before its answer
        // reaches us (a slow network, a busy endpoint). SPEC "Tokens".
        let started = Instant::now();
        let sent_at = SystemTime::now();
        let sent = tokio::time::timeout(
            REQUEST_TIMEOUT,
            tracing::Instrument::instrument(self.send(request, dpop.as_deref()), span),
        )
        .await;
        let received = Instant::now();
        self.m
            .duration
            .observe(received.duration_since(started).as_secs_f64());
        let now = SystemTime::now();
        let parsed = match sent {
            Err(_) | Ok(Err(TransportError::Timeout)) => Err(Failure::Timeout(REQUEST_TIMEOUT)),
            Ok(Err(TransportError::Unreachable(why))) => {
                Err(Failure::Unreachable(sanitize(&why, 200)))
            }
            Ok(Err(TransportError::BodyTooLarge { status })) => Err(Failure::InvalidResponse {
                status,
                reason: Arc::from("the body is larger than 1 MiB"),
            }),
            Ok(Err(TransportError::Local(why))) => Err(Failure::Local(Arc::from(why))),
            Ok(Ok(resp)) => judge(&resp, now, &expect, dpop.is_some()),
        };
        let resp = match parsed {
            Ok(resp) => resp,
            Err(failure) => {
                if let Some(outcome) = failure.outcome() {
                    self.m.outcome(outcome).inc();
                }
                let error = self.fail(failure);
                if error.is_permanent() {
                    tracing::error!(
                        credential = %self.name,
                        %error,
                        used = %used,
                        "token endpoint refused the client: check its client_id and secret or key; retrying every {}s",
                        schedule::PERMANENT_RETRY.as_secs()
                    );
                } else {
                    tracing::warn!(credential = %self.name, %error, "token request failed");
                }
                return Err((error, used));
            }
        };
        self.m.outcome(Outcome::Success).inc();
        let sent_unix = sent_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let jwt = resp.claims.as_ref().map(jwt_times).unwrap_or_default();
        let (lifetime, source) = schedule::lifetime(resp.expires_in, jwt, sent_unix);
        tracing::debug!(
            credential = %self.name,
            lifetime_secs = lifetime.as_secs(),
            lifetime_source = source.as_str(),
            used = %used,
            "fetched a token"
        );
        let token = Token::bound(
            resp.access_token,
            self.id(),
            started,
            &Schedule::new(lifetime),
            dpop,
        );
        Ok(Fetched {
            token,
            token_type: resp.token_type,
            expires_in: resp.expires_in,
            scope: resp.scope,
            claims: resp.claims,
            lifetime,
            source,
            used,
        })
    }
}

/// The answer, judged for what the request asked.
fn judge(
    resp: &super::client::HttpResponse,
    now: SystemTime,
    expect: &Expect,
    dpop: bool,
) -> Result<TokenResponse, Failure> {
    let token_type = if dpop {
        TokenType::Dpop
    } else {
        TokenType::Bearer
    };
    match expect {
        Expect::AccessToken => {
            let r = parse_response(resp, now)?;
            check_token_type(&r.token_type, token_type)?;
            Ok(r)
        }
        Expect::IdToken => parse_id_token(resp, now),
        Expect::Exchange { requested } => {
            let r = parse_response(resp, now)?;
            check_exchange(&r, requested.as_deref(), token_type)?;
            Ok(r)
        }
    }
}

/// Is this the token endpoint's "use a nonce" answer (RFC 9449 §8: 400
/// `use_dpop_nonce` with a `DPoP-Nonce`)?
fn asks_for_nonce(resp: &HttpResponse) -> bool {
    resp.status == 400
        && resp.dpop_nonce.is_some()
        && serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .is_some_and(|e| e == "use_dpop_nonce")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod dpop_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
