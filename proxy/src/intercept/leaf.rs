//! When a leaf certificate is valid and when it is renewed: pure functions of the clock,
//! the configured `leaf_lifetime` and the CA's own validity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Leaves start this long before they are made, so a client whose clock is a little
/// behind still accepts them (never before the CA's own notBefore).
pub const BACKDATE: Duration = Duration::from_secs(3600);

/// A certificate's validity period (whole seconds, as X.509 stores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
}

impl Validity {
    /// Does it hold at `now`?
    pub fn holds_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// `t` without its fraction of a second.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

/// Why no leaf can be made now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidityError {
    /// The CA's notBefore is later than now.
    CaNotYetValid(SystemTime),
    /// The CA's notAfter is earlier than now.
    CaExpired(SystemTime),
}

impl std::fmt::Display for ValidityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValidityError::CaNotYetValid(t) => write!(
                f,
                "the interception CA is not valid until {}",
                humantime::format_rfc3339_seconds(*t)
            ),
            ValidityError::CaExpired(t) => write!(
                f,
                "the interception CA expired at {}",
                humantime::format_rfc3339_seconds(*t)
            ),
        }
    }
}

/// The validity of a leaf made at `now`: from `now - BACKDATE` to `now + lifetime`, both
/// inside the CA's validity (so a leaf never outlives its CA).
pub fn leaf_validity(
    now: SystemTime,
    lifetime: Duration,
    ca: &Validity,
) -> Result<Validity, ValidityError> {
    let now = whole_seconds(now);
    if now < ca.not_before {
        return Err(ValidityError::CaNotYetValid(ca.not_before));
    }
    if now >= ca.not_after {
        return Err(ValidityError::CaExpired(ca.not_after));
    }
    let start = now.checked_sub(BACKDATE).unwrap_or(UNIX_EPOCH);
    let end = now.checked_add(lifetime).unwrap_or(ca.not_after);
    Ok(Validity {
        not_before: start.max(ca.not_before),
        not_after: end.min(ca.not_after),
    })
}

/// When a leaf made at `issued_at` should be replaced: once 3/4 of the time from
/// `issued_at` to its notAfter has passed (well before a client could see it expire).
pub fn renew_at(issued_at: SystemTime, validity: &Validity) -> SystemTime {
    let left = validity
        .not_after
        .duration_since(issued_at)
        .unwrap_or(Duration::ZERO);
    issued_at + left.mul_f64(0.75)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ca(from: u64, to: u64) -> Validity {
        Validity {
            not_before: at(from),
            not_after: at(to),
        }
    }

    #[test]
    fn a_leaf_is_backdated_and_lasts_its_lifetime() {
        let now = at(1_000_000);
        let v = leaf_validity(now, 24 * H, &ca(0, 100_000_000)).expect("valid");
        assert_eq!(v.not_before, now - BACKDATE);
        assert_eq!(v.not_after, now + 24 * H);
        assert!(v.holds_at(now));
    }

    #[test]
    fn a_leaf_never_outlives_its_ca_nor_predates_it() {
        let now = at(1_000_000);
        let v = leaf_validity(now, 24 * H, &ca(999_000, 1_003_600)).expect("valid");
        assert_eq!(v.not_before, at(999_000));
        assert_eq!(v.not_after, at(1_003_600));
    }

    #[test]
    fn no_leaf_from_an_expired_or_future_ca() {
        assert_eq!(
            leaf_validity(at(10), H, &ca(20, 30)),
            Err(ValidityError::CaNotYetValid(at(20)))
        );
        assert_eq!(
            leaf_validity(at(30), H, &ca(20, 30)),
            Err(ValidityError::CaExpired(at(30)))
        );
        let msg = ValidityError::CaExpired(at(0)).to_string();
        assert_eq!(msg, "the interception CA expired at 1970-01-01T00:00:00Z");
    }

    #[test]
    fn fractions_of_a_second_are_dropped() {
        let now = at(1_000_000) + Duration::from_millis(700);
        let v = leaf_validity(now, H, &ca(0, 100_000_000)).expect("valid");
        assert_eq!(v.not_after, at(1_000_000) + H);
    }

    #[test]
    fn renewal_at_three_quarters() {
        let issued = at(1_000_000);
        let v = Validity {
            not_before: issued - BACKDATE,
            not_after: issued + 24 * H,
        };
        assert_eq!(renew_at(issued, &v), issued + 18 * H);
        // Capped by the CA: the remaining time shrinks, renewal comes sooner.
        let v = Validity {
            not_before: issued,
            not_after: issued + 4 * H,
        };
        assert_eq!(renew_at(issued, &v), issued + 3 * H);
        // Already past notAfter: renew now.
        assert_eq!(renew_at(issued + 5 * H, &v), issued + 5 * H);
    }
}
