//! Pure timing rules for tokens (STYLE habit 5): no clocks are read here; callers pass
//! the time and the randomness in, so every rule is tested alone.
//!
//! - [`lifetime`]: from `expires_in`, else the JWT's `exp`, else [`DEFAULT_LIFETIME`],
//!   clamped to `[MIN_LIFETIME, MAX_LIFETIME]`.
//! - [`Schedule`]: relative to the moment its token request was sent, when to refresh it in the
//!   background (75 % of its lifetime) and until when it may be handed out (its expiry
//!   minus `min(30 s, 10 % of lifetime)`).
//! - [`backoff`], [`retry_delay`], [`memo_for`]: when to try the endpoint again.
//! - [`parse_retry_after`]: the `Retry-After` header (delta-seconds or HTTP-date).
//! - [`rate_limit_wait`]: Okta-style `X-Rate-Limit-Remaining` / `X-Rate-Limit-Reset`.

use std::time::{Duration, SystemTime};

/// Lifetime of a token whose answer has neither `expires_in` nor a JWT `exp`.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// Shortest lifetime we believe. (An `expires_in` below one second never gets here: the
/// answer is refused as unusable.)
pub const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// Longest lifetime we believe: a token claiming more is refreshed as if it had this.
/// Also keeps `Instant` arithmetic far from overflow whatever the endpoint says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Upper bound of the "do not inject" window before expiry.
pub const MAX_CUTOFF: Duration = Duration::from_secs(30);
/// How long a transient failure is remembered when no valid token exists.
pub const FAILURE_MEMO: Duration = Duration::from_secs(1);
/// How often a permanent failure (`invalid_client`, `unauthorized_client`) is retried.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(30);
/// First background retry delay after a transient failure (before jitter).
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Largest background retry delay after transient failures (before jitter).
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The most of a `Retry-After` we honour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Where a token's lifetime came from (shown by `tollgate token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifetimeSource {
    ExpiresIn,
    JwtExp,
    Default,
    /// A static credential: until its file changes.
    Static,
}

impl LifetimeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LifetimeSource::ExpiresIn => "expires_in",
            LifetimeSource::JwtExp => "jwt_exp",
            LifetimeSource::Default => "default",
            LifetimeSource::Static => "static",
        }
    }
}

/// The `exp` and `iat` claims of a JWT access token, in Unix seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JwtTimes {
    pub exp: Option<i64>,
    pub iat: Option<i64>,
}

/// A token's lifetime and where it came from.
///
/// - `expires_in` when present and non-zero, unless the JWT's `exp` (by our clock) comes
///   sooner: then the time left until `exp`.
/// - Else the JWT's `exp`: the time left until `exp` by our clock (`now_unix`), but no
///   more than `exp - iat` when `iat` is present (a clock running behind ours does not
///   stretch the lifetime). When `exp` is already past by our clock, `exp - iat` alone
///   (the issuer's own window: our clock is probably ahead); without `iat`, the default.
/// - Else [`DEFAULT_LIFETIME`].
///
/// The result is clamped to `[MIN_LIFETIME, MAX_LIFETIME]`.
pub fn lifetime(
    expires_in: Option<Duration>,
    jwt: JwtTimes,
    now_unix: Duration,
) -> (Duration, LifetimeSource) {
    if let Some(d) = expires_in.filter(|d| !d.is_zero()) {
        // A JWT's `exp` is whole seconds from the issuer's clock: when it says the token
        // ends sooner than `expires_in` counted from the request, believe `exp`, so the
        // upstream never sees a token it considers expired.
        let jwt_remaining = jwt
            .exp
            .and_then(|exp| u64::try_from(exp).ok())
            .map(Duration::from_secs)
            .and_then(|exp| exp.checked_sub(now_unix))
            .filter(|r| !r.is_zero() && *r < d);
        return match jwt_remaining {
            Some(r) => (clamp_lifetime(r), LifetimeSource::JwtExp),
            None => (clamp_lifetime(d), LifetimeSource::ExpiresIn),
        };
    }
    if let Some(exp) = jwt.exp {
        let window = jwt
            .iat
            .and_then(|iat| exp.checked_sub(iat))
            .filter(|w| *w > 0)
            .map(|w| Duration::from_secs(w.unsigned_abs()));
        let remaining = u64::try_from(exp)
            .ok()
            .map(Duration::from_secs)
            .and_then(|exp| exp.checked_sub(now_unix))
            .filter(|d| !d.is_zero());
        let chosen = match (remaining, window) {
            (Some(r), Some(w)) => Some(r.min(w)),
            (Some(r), None) => Some(r),
            (None, Some(w)) => Some(w),
            (None, None) => None,
        };
        if let Some(d) = chosen {
            return (clamp_lifetime(d), LifetimeSource::JwtExp);
        }
    }
    (DEFAULT_LIFETIME, LifetimeSource::Default)
}

fn clamp_lifetime(d: Duration) -> Duration {
    d.clamp(MIN_LIFETIME, MAX_LIFETIME)
}

/// The "do not inject" window before expiry: `min(30 s, 10 % of lifetime)`.
pub fn cutoff(lifetime: Duration) -> Duration {
    MAX_CUTOFF.min(lifetime / 10)
}

/// When a token is refreshed and handed out, relative to the moment its token request was
/// sent (the endpoint's clock starts when it issues the token, before its answer arrives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub lifetime: Duration,
    /// Background refresh starts once this much time has passed (75 % of lifetime).
    pub refresh_after: Duration,
    /// The token may be handed out while less than this has passed (lifetime − cutoff).
    pub usable_for: Duration,
}

impl Schedule {
    pub fn new(lifetime: Duration) -> Self {
        let refresh_after = lifetime - lifetime / 4;
        let usable_for = lifetime - cutoff(lifetime);
        Schedule {
            lifetime,
            refresh_after,
            usable_for,
        }
    }
}

/// Exponential backoff with "equal jitter": the `attempt`-th retry (0-based) waits
/// `d/2 + d/2 × jitter` where `d = min(BACKOFF_MAX, BACKOFF_BASE × 2^attempt)`.
/// `jitter` is a uniform sample from `[0, 1)`; anything else is clamped (NaN → 0).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    let d = BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX);
    let half = d / 2;
    half + half.mul_f64(unit(jitter))
}

fn unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// How long the background refresher waits after a failed attempt.
///
/// Permanent failures: [`PERMANENT_RETRY`] plus up to 10 % jitter. Transient ones: the
/// larger of [`backoff`] and the endpoint's `Retry-After` (capped at [`MAX_RETRY_AFTER`]).
pub fn retry_delay(
    permanent: bool,
    retry_after: Option<Duration>,
    attempt: u32,
    jitter: f64,
) -> Duration {
    if permanent {
        return PERMANENT_RETRY + (PERMANENT_RETRY / 10).mul_f64(unit(jitter));
    }
    let b = backoff(attempt, jitter);
    match retry_after {
        Some(ra) => b.max(ra.min(MAX_RETRY_AFTER)),
        None => b,
    }
}

/// How long a failure is remembered for requests that find no valid token: requests in
/// that window fail at once without contacting the endpoint.
///
/// Permanent failures: [`PERMANENT_RETRY`]. Transient ones: [`FAILURE_MEMO`], or the
/// endpoint's `Retry-After` when longer (capped at [`MAX_RETRY_AFTER`]).
pub fn memo_for(permanent: bool, retry_after: Option<Duration>) -> Duration {
    if permanent {
        return PERMANENT_RETRY;
    }
    match retry_after {
        Some(ra) => FAILURE_MEMO.max(ra.min(MAX_RETRY_AFTER)),
        None => FAILURE_MEMO,
    }
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date, relative to
/// `now`. A date in the past means zero; garbage means `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and a huge delay is capped by the callers.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `X-Rate-Limit-Reset` values below this are seconds from now, not a Unix time (no
/// reset lies before 2001; some endpoints send a delay in this header).
const RESET_IS_UNIX_FROM: u64 = 1_000_000_000;

/// How long the endpoint's rate-limit headers (Okta's `X-Rate-Limit-Remaining` and
/// `X-Rate-Limit-Reset`, a Unix time in seconds) say not to send another token request,
/// judged at `now_unix`.
///
/// - `Remaining: 0` with a `Reset` in the future, on any answer: until the reset.
/// - A 429 with a `Reset`: until the reset, whatever `Remaining` says.
/// - Anything else (no headers, garbage, remaining budget, a reset already past): `None`.
///
/// Capped at [`MAX_RETRY_AFTER`]. `Retry-After` is handled by [`parse_retry_after`] and
/// the failure memo; this adds the case of a success that used the last request.
pub fn rate_limit_wait(
    status: u16,
    remaining: Option<&str>,
    reset: Option<&str>,
    now_unix: Duration,
) -> Option<Duration> {
    let remaining = remaining.and_then(|r| r.trim().parse::<u64>().ok());
    let reset = reset.and_then(|r| r.trim().parse::<u64>().ok())?;
    let wait = if reset < RESET_IS_UNIX_FROM {
        Duration::from_secs(reset)
    } else {
        Duration::from_secs(reset).checked_sub(now_unix)?
    };
    if wait.is_zero() || (status != 429 && remaining != Some(0)) {
        return None;
    }
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn okta_rate_limit_headers() {
        let now = Duration::from_secs(1_700_000_000);
        let at = |s: u64| (now.as_secs() + s).to_string();
        // The last request of the window succeeded: wait for the reset.
        assert_eq!(
            rate_limit_wait(200, Some("0"), Some(&at(42)), now),
            Some(secs(42))
        );
        // Budget left: nothing to wait for.
        assert_eq!(rate_limit_wait(200, Some("3"), Some(&at(42)), now), None);
        assert_eq!(rate_limit_wait(200, None, Some(&at(42)), now), None);
        // 429: the reset, even without Remaining.
        assert_eq!(rate_limit_wait(429, None, Some(&at(9)), now), Some(secs(9)));
        // A reset in the past (our clock ahead of theirs), or garbage: no wait.
        assert_eq!(rate_limit_wait(429, Some("0"), Some(&at(0)), now), None);
        assert_eq!(
            rate_limit_wait(200, Some("0"), Some("1699999000"), now),
            None
        );
        assert_eq!(rate_limit_wait(200, Some("0"), Some("soon"), now), None);
        assert_eq!(rate_limit_wait(200, Some("none"), Some(&at(5)), now), None);
        assert_eq!(rate_limit_wait(200, Some("0"), None, now), None);
        // A small number is a delay in seconds.
        assert_eq!(
            rate_limit_wait(200, Some("0"), Some(" 30 "), now),
            Some(secs(30))
        );
        // Capped.
        assert_eq!(
            rate_limit_wait(200, Some("0"), Some(&at(86_400)), now),
            Some(MAX_RETRY_AFTER)
        );
    }

    const NOW: Duration = Duration::from_secs(1_700_000_000);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn lifetime_is_the_earlier_of_expires_in_and_jwt_exp() {
        let later = JwtTimes {
            exp: Some(NOW.as_secs() as i64 + 7200),
            iat: None,
        };
        assert_eq!(
            lifetime(Some(secs(3600)), later, NOW),
            (secs(3600), LifetimeSource::ExpiresIn)
        );
        // exp in whole seconds ends sooner than expires_in counted from arrival.
        let now = NOW + Duration::from_millis(700);
        let sooner = JwtTimes {
            exp: Some(NOW.as_secs() as i64 + 3),
            iat: None,
        };
        assert_eq!(
            lifetime(Some(secs(3)), sooner, now),
            (Duration::from_millis(2300), LifetimeSource::JwtExp)
        );
        // An exp already past by our clock is ignored: expires_in stands.
        let past = JwtTimes {
            exp: Some(NOW.as_secs() as i64 - 10),
            iat: None,
        };
        assert_eq!(
            lifetime(Some(secs(60)), past, NOW),
            (secs(60), LifetimeSource::ExpiresIn)
        );
    }

    #[test]
    fn zero_expires_in_is_absent() {
        assert_eq!(
            lifetime(Some(Duration::ZERO), JwtTimes::default(), NOW),
            (DEFAULT_LIFETIME, LifetimeSource::Default)
        );
        let jwt = JwtTimes {
            exp: Some(NOW.as_secs() as i64 + 120),
            iat: None,
        };
        assert_eq!(
            lifetime(Some(Duration::ZERO), jwt, NOW),
            (secs(120), LifetimeSource::JwtExp)
        );
    }

    #[test]
    fn lifetime_from_jwt_exp() {
        let n = NOW.as_secs() as i64;
        // exp only: time left by our clock.
        let only_exp = JwtTimes {
            exp: Some(n + 600),
            iat: None,
        };
        assert_eq!(
            lifetime(None, only_exp, NOW),
            (secs(600), LifetimeSource::JwtExp)
        );
        // Issued now, valid ten minutes.
        let normal = JwtTimes {
            exp: Some(n + 600),
            iat: Some(n),
        };
        assert_eq!(
            lifetime(None, normal, NOW),
            (secs(600), LifetimeSource::JwtExp)
        );
        // Issuer's clock an hour ahead of ours: exp - iat, not exp - now.
        let issuer_ahead = JwtTimes {
            exp: Some(n + 3900),
            iat: Some(n + 3600),
        };
        assert_eq!(
            lifetime(None, issuer_ahead, NOW),
            (secs(300), LifetimeSource::JwtExp)
        );
        // Issuer's clock an hour behind ours: exp already past by our clock.
        let issuer_behind = JwtTimes {
            exp: Some(n - 3300),
            iat: Some(n - 3600),
        };
        assert_eq!(
            lifetime(None, issuer_behind, NOW),
            (secs(300), LifetimeSource::JwtExp)
        );
        // exp past and no iat: default.
        let past = JwtTimes {
            exp: Some(n - 10),
            iat: None,
        };
        assert_eq!(
            lifetime(None, past, NOW),
            (DEFAULT_LIFETIME, LifetimeSource::Default)
        );
        // Nonsense claims: default, no panic.
        let nonsense = JwtTimes {
            exp: Some(i64::MIN),
            iat: Some(i64::MAX),
        };
        assert_eq!(
            lifetime(None, nonsense, NOW),
            (DEFAULT_LIFETIME, LifetimeSource::Default)
        );
    }

    #[test]
    fn lifetime_default_and_clamps() {
        assert_eq!(
            lifetime(None, JwtTimes::default(), NOW),
            (DEFAULT_LIFETIME, LifetimeSource::Default)
        );
        assert_eq!(
            lifetime(Some(Duration::from_millis(10)), JwtTimes::default(), NOW).0,
            MIN_LIFETIME
        );
        assert_eq!(
            lifetime(Some(Duration::MAX), JwtTimes::default(), NOW).0,
            MAX_LIFETIME
        );
    }

    #[test]
    fn schedule_for_an_hour_token() {
        let s = Schedule::new(secs(3600));
        assert_eq!(s.refresh_after, secs(2700));
        assert_eq!(s.usable_for, secs(3570));
    }

    #[test]
    fn schedule_for_short_tokens() {
        let s = Schedule::new(secs(100));
        assert_eq!(s.refresh_after, secs(75));
        assert_eq!(s.usable_for, secs(90));
        let s = Schedule::new(secs(2));
        assert_eq!(s.refresh_after, Duration::from_millis(1500));
        assert_eq!(s.usable_for, Duration::from_millis(1800));
        let s = Schedule::new(Duration::ZERO);
        assert_eq!(s.refresh_after, Duration::ZERO);
        assert_eq!(s.usable_for, Duration::ZERO);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 1.0), secs(4));
        assert_eq!(backoff(10, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX, 0.0), BACKOFF_MAX / 2);
        assert_eq!(backoff(2, f64::NAN), Duration::from_secs(1));
    }

    #[test]
    fn retry_delay_rules() {
        assert!(retry_delay(true, None, 0, 0.0) >= PERMANENT_RETRY);
        assert!(retry_delay(true, None, 0, 1.0) <= PERMANENT_RETRY + PERMANENT_RETRY / 10);
        assert_eq!(retry_delay(false, Some(secs(20)), 0, 0.0), secs(20));
        assert_eq!(
            retry_delay(false, Some(secs(100_000)), 0, 0.0),
            MAX_RETRY_AFTER
        );
        assert_eq!(retry_delay(false, None, 0, 0.0), backoff(0, 0.0));
    }

    #[test]
    fn memo_rules() {
        assert_eq!(memo_for(false, None), FAILURE_MEMO);
        assert_eq!(memo_for(false, Some(Duration::ZERO)), FAILURE_MEMO);
        assert_eq!(memo_for(false, Some(secs(7))), secs(7));
        assert_eq!(memo_for(false, Some(Duration::MAX)), MAX_RETRY_AFTER);
        assert_eq!(memo_for(true, None), PERMANENT_RETRY);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    proptest! {
        #[test]
        fn lifetime_is_always_clamped(
            expires_in in proptest::option::of(any::<u64>()),
            nanos in 0u32..1_000_000_000,
            exp in proptest::option::of(any::<i64>()),
            iat in proptest::option::of(any::<i64>()),
            now in any::<u64>(),
        ) {
            let e = expires_in.map(|s| Duration::new(s, nanos));
            let (l, src) = lifetime(e, JwtTimes { exp, iat }, Duration::from_secs(now));
            prop_assert!(l >= MIN_LIFETIME && l <= MAX_LIFETIME);
            if src == LifetimeSource::Default {
                prop_assert_eq!(l, DEFAULT_LIFETIME);
            }
        }

        #[test]
        fn schedule_is_ordered(nanos in 0u64..=(MAX_LIFETIME.as_nanos() as u64 * 2)) {
            let l = Duration::from_nanos(nanos);
            let s = Schedule::new(l);
            prop_assert!(s.refresh_after <= s.usable_for);
            prop_assert!(s.usable_for <= l);
            let c = l - s.usable_for;
            prop_assert!(c <= MAX_CUTOFF);
            prop_assert!(c <= l / 10 + Duration::from_nanos(1));
            // The refresh starts at least 15 % of the lifetime before the cutoff.
            prop_assert!(s.usable_for - s.refresh_after + Duration::from_nanos(2) >= (l * 3) / 20);
        }

        #[test]
        fn backoff_is_bounded_and_monotone(attempt in any::<u32>(), j in any::<f64>()) {
            let d = backoff(attempt, j);
            prop_assert!(d >= BACKOFF_BASE / 4);
            prop_assert!(d <= BACKOFF_MAX);
            let j = if j.is_nan() { 0.0 } else { j.clamp(0.0, 1.0) };
            prop_assert!(backoff(attempt.saturating_add(1), j) >= backoff(attempt, j));
        }

        #[test]
        fn retry_delay_never_below_retry_after(
            ra in proptest::option::of(any::<u64>()),
            attempt in any::<u32>(),
            j in 0.0f64..1.0,
        ) {
            let ra = ra.map(Duration::from_secs);
            let d = retry_delay(false, ra, attempt, j);
            if let Some(ra) = ra {
                prop_assert!(d >= ra.min(MAX_RETRY_AFTER));
            }
            prop_assert!(d <= MAX_RETRY_AFTER.max(BACKOFF_MAX));
            let m = memo_for(false, ra);
            prop_assert!(m >= FAILURE_MEMO && m <= MAX_RETRY_AFTER);
        }

        #[test]
        fn retry_after_never_panics(s in ".{0,40}") {
            let _ = parse_retry_after(&s, SystemTime::UNIX_EPOCH);
        }

        #[test]
        fn rate_limit_wait_is_bounded(
            status in any::<u16>(),
            remaining in proptest::option::of(".{0,12}"),
            reset in proptest::option::of(any::<u64>().prop_map(|n| n.to_string())),
            now in any::<u64>(),
        ) {
            if let Some(w) = rate_limit_wait(
                status,
                remaining.as_deref(),
                reset.as_deref(),
                Duration::from_secs(now),
            ) {
                prop_assert!(!w.is_zero() && w <= MAX_RETRY_AFTER);
            }
        }
    }
}
