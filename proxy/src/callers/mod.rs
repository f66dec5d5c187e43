//! Callers: workloads prove who they are with `Proxy-Authorization`, and routes say who
//! may use them (`callers:` in the config; the matching is in `tollgate_rules::matcher`).
//!
//! Start reading at [`Callers`]: built once per config load by [`Callers::load`] (which
//! reads the JWKS and htpasswd files, so their problems are config problems), held in
//! the `State`, and asked once per request (once per CONNECT tunnel) by
//! [`Callers::authenticate`]. Its answer goes into `RequestFacts::caller`; a failure is
//! answered with [`Callers::refusal`], and every 407 carries [`Callers::challenge_lines`]
//! (`Proxy-Authenticate`, one per accepted scheme).
//!
//! One concern per file:
//! - `header.rs`: reading `Proxy-Authorization` (Bearer, Basic, Basic with user `token`);
//! - `jwt.rs`: verifying a JWT with ring (RS256, ES256, PS256; issuer, audience, exp, nbf);
//! - `jwks.rs`: parsing a JWK Set; `source.rs`: the file or URL it comes from, refreshes;
//! - `htpasswd.rs`: the bcrypt htpasswd file;
//! - `cache.rs`: credential digest → identity, bounded, never past a JWT's `exp`.
//!
//! Credentials never reach a log, an error message or `Debug` output; the caller's
//! *name* is not a secret and appears in the access log and traces (never in a metric
//! label).

mod cache;
mod header;
mod htpasswd;
mod jwks;
mod jwt;
mod source;

pub use cache::{BASIC_TTL, MAX_ENTRIES};
pub use header::{Malformed, MAX_CREDENTIAL_BYTES, TOKEN_USER};
pub use jwt::{JwtError, LEEWAY_SECS};
pub use source::{MAX_AGE as JWKS_MAX_AGE, MIN_REFRESH_INTERVAL};

use crate::errors::{Code, ProxyError};
use header::{JwtText, Presented};
use htpasswd::{Check, Htpasswd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_rules::Config;

/// The realm in every challenge.
pub const REALM: &str = "tollgate";

/// Who a request proved to be.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    name: Arc<str>,
    via: Via,
}

/// How an identity was proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A JWT (Bearer, or Basic with user `token`).
    Jwt,
    /// An htpasswd user and password.
    Basic,
}

impl Identity {
    pub fn new(name: &str, via: Via) -> Identity {
        Identity {
            name: Arc::from(name),
            via,
        }
    }
    /// The caller's name: the JWT's identity claim, or the htpasswd user.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn via(&self) -> Via {
        self.via
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({:?} via {:?})", self.name, self.via)
    }
}

/// Why a presented credential proved nothing. Every one is answered 407
/// `proxy_auth_required` (see [`Callers::refusal`]); none says what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerError {
    /// More than one `Proxy-Authorization` header.
    Repeated,
    Malformed(Malformed),
    /// A JWT where `callers.jwt` is not configured.
    JwtNotAccepted,
    /// A password where `callers.basic` is not configured.
    BasicNotAccepted,
    Token(JwtError),
    /// Unknown user or wrong password (not told apart).
    Password,
    /// No keys could be had to verify a JWT (`jwks_url` unreachable).
    KeysUnavailable(String),
    Internal(String),
}

impl CallerError {
    pub fn message(&self) -> String {
        match self {
            CallerError::Repeated => "more than one Proxy-Authorization header".to_owned(),
            CallerError::Malformed(m) => m.message().to_owned(),
            CallerError::JwtNotAccepted => {
                "this proxy does not accept tokens (no callers.jwt); use Basic".to_owned()
            }
            CallerError::BasicNotAccepted => {
                "this proxy does not accept passwords (no callers.basic); send Bearer <JWT>"
                    .to_owned()
            }
            CallerError::Token(e) => e.message(),
            CallerError::Password => "wrong user or password".to_owned(),
            CallerError::KeysUnavailable(e) => {
                format!("caller tokens cannot be verified now: {e}")
            }
            CallerError::Internal(e) => format!("internal error: {e}"),
        }
    }
}

struct JwtCallers {
    policy: jwt::Policy,
    keys: Arc<source::Keys>,
}

/// Everything that authenticates callers for one config.
pub struct Callers {
    jwt: Option<JwtCallers>,
    basic: Option<Arc<Htpasswd>>,
    cache: cache::Cache,
    /// The key generation the cache's JWT entries were verified with.
    cached_generation: AtomicU64,
    challenges: Vec<String>,
}

impl std::fmt::Debug for Callers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callers")
            .field("jwt", &self.jwt.as_ref().map(|j| j.keys.origin()))
            .field("basic", &self.basic)
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// Reads and parses `callers.jwt.jwks_file` the way [`Callers::load`] (and a reload)
/// does. The error names the file, not the key. For `preflight`.
pub(crate) fn check_jwks_file(path: &Path) -> Result<(), String> {
    source::read_file(path).map(drop)
}

/// Reads and parses `callers.basic.htpasswd_file`: one problem per bad line, each naming
/// the file (not the key). `jwt_too`: `callers.jwt` is configured as well, so the user
/// name [`TOKEN_USER`] is reserved. Used by [`Callers::load`] and `preflight`.
pub(crate) fn read_htpasswd(path: &Path, jwt_too: bool) -> Result<Htpasswd, Vec<String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    Htpasswd::parse(&text, jwt_too.then_some(TOKEN_USER))
        .map_err(|ps| ps.into_iter().map(|p| format!("{shown}: {p}")).collect())
}

impl Callers {
    /// Builds the config's callers (`None` without a `callers:` section), reading the
    /// JWKS and htpasswd files. Each problem names the key and the file.
    pub fn load(config: &Config) -> Result<Option<Callers>, Vec<String>> {
        let Some(c) = &config.callers else {
            return Ok(None);
        };
        let mut problems = Vec::new();
        let jwt = match &c.jwt {
            None => None,
            Some(j) => {
                let key = match j.keys {
                    tollgate_rules::JwksSource::File(_) => "jwks_file",
                    tollgate_rules::JwksSource::Url(_) => "jwks_url",
                };
                match source::Keys::load(&j.keys) {
                    Ok(keys) => Some(JwtCallers {
                        policy: jwt::Policy {
                            issuer: j.issuer.clone(),
                            audiences: j.audiences.clone(),
                            identity_claim: j.identity_claim.clone(),
                        },
                        keys: Arc::new(keys),
                    }),
                    Err(e) => {
                        problems.push(format!("callers.jwt.{key}: {e}"));
                        None
                    }
                }
            }
        };
        let basic = match &c.basic {
            None => None,
            Some(b) => match read_htpasswd(&b.htpasswd_file, c.jwt.is_some()) {
                Ok(h) => Some(Arc::new(h)),
                Err(ps) => {
                    problems.extend(
                        ps.into_iter()
                            .map(|p| format!("callers.basic.htpasswd_file: {p}")),
                    );
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut challenges = Vec::new();
        if jwt.is_some() {
            challenges.push(format!("Bearer realm=\"{REALM}\""));
        }
        // Basic is offered with JWTs too: Basic with user `token` carries one.
        challenges.push(format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""));
        Ok(Some(Callers {
            jwt,
            basic,
            cache: cache::Cache::default(),
            cached_generation: AtomicU64::new(0),
            challenges,
        }))
    }

    /// The `Proxy-Authenticate` values of a 407, one per accepted scheme.
    pub fn challenges(&self) -> &[String] {
        &self.challenges
    }

    /// The header lines (`proxy-authenticate: ...`, without CRLF) every 407 carries.
    pub fn challenge_lines(&self) -> Vec<String> {
        self.challenges
            .iter()
            .map(|c| format!("proxy-authenticate: {c}"))
            .collect()
    }

    /// The 407 for a failed authentication (route unknown yet: `null`). Answer it with
    /// [`Callers::challenge_lines`].
    pub fn refusal(&self, e: &CallerError) -> ProxyError {
        ProxyError::new(Code::ProxyAuthRequired, e.message(), None)
    }

    /// The sync fast path: the identity a value already proved, if the cache holds it.
    pub fn cached(&self, proxy_authorization: &[u8]) -> Option<Identity> {
        self.sync_cache();
        self.cache
            .get(&cache::key(proxy_authorization), Instant::now())
    }

    /// Authenticate one request: `None` without `Proxy-Authorization`, the identity it
    /// proves, or why it proves nothing. A warm call is [`Callers::cached`].
    pub async fn authenticate(
        &self,
        proxy_authorization: Option<&[u8]>,
    ) -> Result<Option<Identity>, CallerError> {
        let Some(value) = proxy_authorization else {
            return Ok(None);
        };
        self.sync_cache();
        let key = cache::key(value);
        let now = Instant::now();
        if let Some(id) = self.cache.get(&key, now) {
            self.refresh_if_stale(now);
            return Ok(Some(id));
        }
        let (identity, until) = match header::parse(value).map_err(CallerError::Malformed)? {
            Presented::Jwt(token) => self.verify_jwt(&token).await?,
            Presented::Password { user, password } => {
                let Some(file) = self.basic.clone() else {
                    return Err(CallerError::BasicNotAccepted);
                };
                let name = user.clone();
                let check =
                    tokio::task::spawn_blocking(move || file.check(&user, password.expose()))
                        .await
                        .map_err(|e| CallerError::Internal(e.to_string()))?;
                if check != Check::Ok {
                    return Err(CallerError::Password);
                }
                (Identity::new(&name, Via::Basic), now + BASIC_TTL)
            }
        };
        self.cache.insert(key, identity.clone(), until, now);
        Ok(Some(identity))
    }

    async fn verify_jwt(&self, token: &JwtText<'_>) -> Result<(Identity, Instant), CallerError> {
        let Some(j) = &self.jwt else {
            return Err(CallerError::JwtNotAccepted);
        };
        let now = Instant::now();
        self.refresh_if_stale(now);
        let unix = unix_now();
        let mut keys = j.keys.current();
        let mut result = jwt::verify(token.as_str(), &keys, &j.policy, unix);
        let needs_keys = keys.keys.is_empty() || matches!(result, Err(JwtError::UnknownKid(_)));
        if needs_keys {
            match j.keys.refresh().await {
                source::Refresh::Failed(e) if keys.keys.is_empty() => {
                    return Err(CallerError::KeysUnavailable(e))
                }
                _ => {}
            }
            keys = j.keys.current();
            if keys.keys.is_empty() {
                return Err(CallerError::KeysUnavailable(format!(
                    "no keys from {} yet; retry shortly",
                    j.keys.origin()
                )));
            }
            result = jwt::verify(token.as_str(), &keys, &j.policy, unix);
        }
        let v = result.map_err(CallerError::Token)?;
        let left = Duration::from_secs(v.exp.saturating_sub(unix));
        Ok((Identity::new(&v.caller, Via::Jwt), now + left))
    }

    /// Start a background refresh of `jwks_url` keys past their age.
    fn refresh_if_stale(&self, now: Instant) {
        let Some(j) = &self.jwt else { return };
        if j.keys.stale(now.into()) {
            let keys = j.keys.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    keys.refresh().await;
                });
            }
        }
    }

    /// Drop cached JWT verifications once the keys have changed.
    fn sync_cache(&self) {
        let Some(j) = &self.jwt else { return };
        let g = j.keys.generation();
        if self.cached_generation.load(Ordering::Acquire) != g {
            self.cache.clear();
            self.cached_generation.store(g, Ordering::Release);
        }
    }
}

/// The request's one `Proxy-Authorization` value, from all the values of that field
/// (`Err` when there are several).
pub fn proxy_authorization<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<&'a [u8]>, CallerError> {
    let first = values.next();
    if values.next().is_some() {
        return Err(CallerError::Repeated);
    }
    Ok(first)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::jwt::tests::{claims, EcKey};
    use super::*;
    use serde_json::json;

    struct Fixture {
        dir: std::path::PathBuf,
        jwks: std::path::PathBuf,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir = std::env::temp_dir()
                .join(format!("tollgate-callers-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Fixture {
                jwks: dir.join("jwks.json"),
                dir,
            }
        }
        fn write(&self, keys: &[&EcKey]) {
            let doc = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
            std::fs::write(&self.jwks, doc.to_string()).expect("write jwks");
        }
        fn callers(&self) -> Callers {
            let yaml = format!(
                "callers:\n  jwt:\n    issuer: https://issuer.test\n    audiences: [tollgate]\n    jwks_file: {}\n",
                self.jwks.display()
            );
            let config =
                tollgate_rules::load_str("t.yaml", &yaml, &|_: &str| None).expect("valid config");
            Callers::load(&config).expect("loads").expect("has callers")
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn live_claims() -> serde_json::Value {
        let mut c = claims();
        let now = unix_now();
        c["exp"] = json!(now + 600);
        c["nbf"] = json!(now - 10);
        c
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_refreshes_once_and_a_bad_file_keeps_the_old_keys() {
        let f = Fixture::new("kid");
        let (k1, k2, k3) = (EcKey::new("k1"), EcKey::new("k2"), EcKey::new("k3"));
        f.write(&[&k1]);
        let callers = f.callers();
        let t1 = bearer(&k1.token(&live_claims()));
        let id = callers.authenticate(Some(&t1)).await.expect("k1 verifies");
        assert_eq!(
            id.map(|i| i.name().to_owned()).as_deref(),
            Some("system:serviceaccount:billing:api")
        );
        // Rotation: k2 appears in the file; its first token refreshes the keys.
        f.write(&[&k1, &k2]);
        let t2 = bearer(&k2.token(&live_claims()));
        assert!(callers
            .authenticate(Some(&t2))
            .await
            .expect("k2 after refresh")
            .is_some());
        // Within the interval, another unknown kid is refused without a refresh, even
        // though the file now has it.
        f.write(&[&k1, &k2, &k3]);
        let t3 = bearer(&k3.token(&live_claims()));
        assert_eq!(
            callers.authenticate(Some(&t3)).await,
            Err(CallerError::Token(JwtError::UnknownKid("k3".into())))
        );
        // After the interval, a file that is not JSON fails the refresh: old keys serve.
        std::fs::write(&f.jwks, "{not json").expect("write");
        tokio::time::advance(MIN_REFRESH_INTERVAL + Duration::from_secs(1)).await;
        assert!(callers.authenticate(Some(&t3)).await.is_err());
        let t1b = bearer(&k1.token(&live_claims()));
        assert!(callers
            .authenticate(Some(&t1b))
            .await
            .expect("old keys")
            .is_some());
    }

    #[tokio::test]
    async fn a_warm_credential_needs_no_keys_and_a_key_change_drops_the_cache() {
        let f = Fixture::new("warm");
        let k1 = EcKey::new("k1");
        f.write(&[&k1]);
        let callers = f.callers();
        let t = bearer(&k1.token(&live_claims()));
        assert!(callers.cached(&t).is_none());
        assert!(callers
            .authenticate(Some(&t))
            .await
            .expect("cold")
            .is_some());
        assert!(callers.cached(&t).is_some(), "the sync fast path hits");
        // A warm call does no signature check: it answers with no usable key at all.
        let j = callers.jwt.as_ref().expect("jwt");
        j.keys.poison_for_test();
        assert!(callers.cached(&t).is_some(), "warm: no key needed");
        // Keys that change (k1 removed) drop the cache: the token is refused now.
        let other = EcKey::new("k9");
        f.write(&[&other]);
        j.keys.replace_for_test(other.set());
        assert!(
            callers.cached(&t).is_none(),
            "new keys: the cache starts again"
        );
        assert!(callers.authenticate(Some(&t)).await.is_err());
    }

    #[tokio::test]
    async fn refusals_are_407_with_a_challenge_per_scheme() {
        let f = Fixture::new("refuse");
        let k1 = EcKey::new("k1");
        f.write(&[&k1]);
        let callers = f.callers();
        let e = callers
            .authenticate(Some(b"Basic dXNlcjpwdw=="))
            .await
            .expect_err("no basic");
        assert_eq!(e, CallerError::BasicNotAccepted);
        let p = callers.refusal(&e);
        assert_eq!(p.code, Code::ProxyAuthRequired);
        assert_eq!(
            callers.challenge_lines(),
            [
                "proxy-authenticate: Bearer realm=\"tollgate\"",
                "proxy-authenticate: Basic realm=\"tollgate\", charset=\"UTF-8\""
            ]
        );
        assert!(callers.authenticate(None).await.expect("none").is_none());
        let two: [&[u8]; 2] = [b"Bearer a", b"Bearer b"];
        assert_eq!(
            proxy_authorization(two.into_iter()),
            Err(CallerError::Repeated)
        );
        assert_eq!(
            proxy_authorization([&b"x"[..]].into_iter()),
            Ok(Some(&b"x"[..]))
        );
    }
}
