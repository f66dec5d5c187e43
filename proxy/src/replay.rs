//! The 401 replay decision (SPEC "401 replay"). Pure: the data path asks [`decide`] when
//! an inject route's upstream answers 401, then replays with a fresh token.

use crate::http1::{Head, ResponseHead};

/// What happened to an upstream 401 on an inject route (the `outcome` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Token invalidated, request replayed with a fresh one.
    Replayed,
    /// The replay got a 401 too: passed to the client unchanged.
    Second401,
    /// The body was larger than the replay buffer (64 KiB): streamed, 401 passed on.
    BodyTooLarge,
    /// Not replayed by rule: `replay_on_401: false`, `insufficient_scope`, or a DPoP nonce
    /// challenge whose nonce cannot be sent.
    NoReplay,
    /// A DPoP-bound route's upstream asked for a nonce (RFC 9449 §9): sent again with the
    /// same token and a proof carrying the nonce.
    DpopNonce,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Replayed => "replayed",
            Outcome::Second401 => "second_401",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::NoReplay => "no_replay",
            Outcome::DpopNonce => "dpop_nonce",
        }
    }
}

/// The facts the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub replay_on_401: bool,
    pub already_replayed: bool,
    pub body_truncated: bool,
    pub insufficient_scope: bool,
    /// The 401 is a DPoP nonce challenge (`use_dpop_nonce` with a `DPoP-Nonce`) on a
    /// DPoP-bound route.
    pub dpop_nonce: bool,
    /// ... whose `DPoP-Nonce` is no nonce (not `1*NQCHAR`, or too long): a fresh token
    /// would not answer it, and the nonce cannot be sent.
    pub bad_nonce: bool,
}

pub fn decide(f: Facts) -> Outcome {
    if f.already_replayed {
        Outcome::Second401
    } else if !f.replay_on_401 || f.insufficient_scope || f.bad_nonce {
        Outcome::NoReplay
    } else if f.body_truncated {
        Outcome::BodyTooLarge
    } else if f.dpop_nonce {
        Outcome::DpopNonce
    } else {
        Outcome::Replayed
    }
}

/// The nonce of a DPoP nonce challenge (RFC 9449 §9): a `WWW-Authenticate: DPoP` with
/// `error="use_dpop_nonce"` and a `DPoP-Nonce` field.
pub fn dpop_nonce_challenge(resp: &ResponseHead) -> Option<&[u8]> {
    let asks = resp
        .values("www-authenticate")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .any(|v| {
            let l = v.to_ascii_lowercase();
            let scheme = l
                .split(|c: char| c == ',' || c.is_ascii_whitespace())
                .any(|t| t == "dpop");
            scheme && (l.contains("error=\"use_dpop_nonce\"") || l.contains("error=use_dpop_nonce"))
        });
    if asks {
        resp.values("dpop-nonce").next()
    } else {
        None
    }
}

/// Does a `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750 §3.1) say the token
/// is fine but lacks scope? A fresh token would not help, so such a 401 is not replayed.
pub fn insufficient_scope(resp: &ResponseHead) -> bool {
    resp.values("www-authenticate")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .any(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("error=\"insufficient_scope\"") || v.contains("error=insufficient_scope")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            replay_on_401: true,
            already_replayed: false,
            body_truncated: false,
            insufficient_scope: false,
            dpop_nonce: false,
            bad_nonce: false,
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(facts()), Outcome::Replayed);
        assert_eq!(
            decide(Facts {
                already_replayed: true,
                ..facts()
            }),
            Outcome::Second401
        );
        assert_eq!(
            decide(Facts {
                replay_on_401: false,
                ..facts()
            }),
            Outcome::NoReplay
        );
        assert_eq!(
            decide(Facts {
                insufficient_scope: true,
                ..facts()
            }),
            Outcome::NoReplay
        );
        assert_eq!(
            decide(Facts {
                body_truncated: true,
                ..facts()
            }),
            Outcome::BodyTooLarge
        );
        assert_eq!(
            decide(Facts {
                dpop_nonce: true,
                ..facts()
            }),
            Outcome::DpopNonce
        );
        // A nonce challenge follows the replay rules: once, with a kept body, if allowed.
        for (f, want) in [
            (
                Facts {
                    dpop_nonce: true,
                    already_replayed: true,
                    ..facts()
                },
                Outcome::Second401,
            ),
            (
                Facts {
                    dpop_nonce: true,
                    replay_on_401: false,
                    ..facts()
                },
                Outcome::NoReplay,
            ),
            (
                Facts {
                    dpop_nonce: true,
                    body_truncated: true,
                    ..facts()
                },
                Outcome::BodyTooLarge,
            ),
            // A challenge with a forged or oversized nonce: neither answered nor
            // "fixed" with a fresh token.
            (
                Facts {
                    dpop_nonce: true,
                    bad_nonce: true,
                    ..facts()
                },
                Outcome::NoReplay,
            ),
        ] {
            assert_eq!(decide(f), want);
        }
    }

    fn resp(www: &str) -> ResponseHead {
        let raw = format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {www}\r\n\r\n");
        crate::http1::parse_response(&mut bytes::BytesMut::from(raw.as_str()))
            .expect("head")
            .expect("complete")
    }

    #[test]
    fn reads_insufficient_scope() {
        assert!(insufficient_scope(&resp(
            r#"Bearer realm="x", error="insufficient_scope", scope="a b""#
        )));
        assert!(!insufficient_scope(&resp(
            r#"Bearer error="invalid_token""#
        )));
    }

    fn with_nonce(www: &str, nonce: Option<&str>) -> ResponseHead {
        let mut raw = format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {www}\r\n");
        if let Some(n) = nonce {
            raw.push_str(&format!("DPoP-Nonce: {n}\r\n"));
        }
        raw.push_str("\r\n");
        crate::http1::parse_response(&mut bytes::BytesMut::from(raw.as_str()))
            .expect("head")
            .expect("complete")
    }

    #[test]
    fn reads_dpop_nonce_challenges() {
        let nonce = |www: &str, n: Option<&str>| {
            dpop_nonce_challenge(&with_nonce(www, n))
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let ask = r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#;
        assert_eq!(nonce(ask, Some("eyJ7S_zG")), Some("eyJ7S_zG".into()));
        assert_eq!(
            nonce(
                r#"Bearer realm="x", DPoP algs="ES256", error=use_dpop_nonce"#,
                Some("n")
            ),
            Some("n".into())
        );
        // No nonce given, another error, another scheme: not a nonce challenge.
        assert_eq!(nonce(ask, None), None);
        assert_eq!(nonce(r#"DPoP error="invalid_token""#, Some("n")), None);
        assert_eq!(nonce(r#"Bearer error="use_dpop_nonce""#, Some("n")), None);
    }
}
