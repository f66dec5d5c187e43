//! The request-target and `Host` parser (`tollgate::target::parse`) on heads accepted by
//! `tollgate::http1::parse_request`: either raw bytes, or a head assembled from a method,
//! a request-target and `Host` fields of the fuzzer's choosing.
//!
//! Checks, for every accepted target:
//! - the host is lower case and either a valid IPv6 address or a plausible name
//!   (letters, digits, `-._`, at most 253 bytes); the port is not 0;
//! - the form follows from the method and the request-target; path and query are the
//!   request-target's own bytes (`/` only where the target has no path), the path starts
//!   with `/` (or is `*` for `OPTIONS *`) and holds no `?`; nothing holds a `#`;
//! - an origin-form request had exactly one `Host` field;
//! - it round-trips: the target written back in absolute-form (or authority-form for
//!   CONNECT, or origin-form with `host_header_value` as `Host`) parses to the same
//!   destination, path and query; `split_authority(authority())` gives host and port back.
//!
//! Every refusal is a 400 `bad_request` with a message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv6Addr;
use tollgate::errors::Code;
use tollgate::http1::{parse_request, Head, RequestHead};
use tollgate::target::{self, host_header_value, split_authority, Form, Parsed, Target};
use tollgate_rules::Scheme;

const METHODS: &[&str] = &[
    "GET", "CONNECT", "OPTIONS", "POST", "HEAD", "get", "connect",
];

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Raw(&'a [u8]),
    Built {
        method: u8,
        target: &'a str,
        hosts: Vec<&'a str>,
        http10: bool,
    },
}

fn head(bytes: &[u8]) -> Option<RequestHead> {
    parse_request(&mut BytesMut::from(bytes)).ok().flatten()
}

fuzz_target!(|input: Input<'_>| {
    let bytes = match input {
        Input::Raw(b) => b.to_vec(),
        Input::Built {
            method,
            target,
            hosts,
            http10,
        } => {
            let mut s = format!(
                "{} {target} HTTP/1.{}\r\n",
                METHODS[usize::from(method) % METHODS.len()],
                u8::from(!http10)
            );
            for h in hosts.iter().take(3) {
                s.push_str(&format!("Host: {h}\r\n"));
            }
            s.push_str("\r\n");
            s.into_bytes()
        }
    };
    let Some(h) = head(&bytes) else { return };
    match target::parse(&h) {
        Ok(p) => check(&h, &p),
        Err(e) => {
            assert_eq!(e.code, Code::BadRequest, "{e:?}");
            assert!(!e.message.is_empty());
        }
    }
});

fn check(h: &RequestHead, p: &Parsed<'_>) {
    let raw = h.target();
    let t = &p.target;
    assert_eq!(t.host, t.host.to_ascii_lowercase(), "{t:?}");
    if t.host.contains(':') {
        assert!(
            t.host.parse::<Ipv6Addr>().is_ok(),
            "{t:?}: not an IPv6 address"
        );
    } else {
        assert!(
            !t.host.is_empty()
                && t.host.len() <= 253
                && t.host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
            "{t:?}: not a plausible host name"
        );
    }
    assert_ne!(t.port, 0, "{t:?}");
    assert!(!p.path.contains('?') && !p.path.contains('#') && !p.query.contains('#'));
    assert!(p.query.is_empty() || p.query.starts_with('?'), "{p:?}");
    let hosts = h.values("host").count();
    match t.form {
        Form::Connect => {
            assert_eq!(h.method(), "CONNECT");
            assert_eq!((p.path, p.query, t.scheme), ("/", "", Scheme::Https));
            let again = reparse(&format!("CONNECT {} HTTP/1.1\r\n\r\n", t.authority()));
            assert_eq!(&again.target, t, "CONNECT {raw:?}");
        }
        Form::Origin => {
            assert_ne!(h.method(), "CONNECT");
            assert_eq!(hosts, 1, "origin-form without exactly one Host");
            assert_eq!(format!("{}{}", p.path, p.query), raw);
            assert!(p.path.starts_with('/') || (p.path == "*" && h.method() == "OPTIONS"));
            assert_eq!(t.scheme, Scheme::Http);
            let again = reparse(&format!(
                "{} {raw} HTTP/1.1\r\nHost: {}\r\n\r\n",
                h.method(),
                host_header_value(&t.host, t.port, Scheme::Http)
            ));
            assert_eq!(
                (&again.target, again.path.as_str(), again.query.as_str()),
                (t, p.path, p.query)
            );
        }
        Form::Absolute => {
            assert_ne!(h.method(), "CONNECT");
            assert!(hosts <= 1);
            assert!(p.path.starts_with('/'), "{p:?}");
            let tail = format!("{}{}", p.path, p.query);
            assert!(
                raw.ends_with(&tail) || (p.path == "/" && raw.ends_with(p.query)),
                "{raw:?} does not end with {tail:?}"
            );
            let scheme = match t.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            };
            let again = reparse(&format!(
                "GET {scheme}://{}{tail} HTTP/1.1\r\n\r\n",
                t.authority()
            ));
            assert_eq!(
                (&again.target, again.path.as_str(), again.query.as_str()),
                (t, p.path, p.query)
            );
        }
    }
    let (host, port) = split_authority(&t.authority()).unwrap_or_else(|e| panic!("{t:?}: {e:?}"));
    assert_eq!((host.as_str(), port), (t.host.as_str(), Some(t.port)));
}

/// What a parse gave, owned.
struct Again {
    target: Target,
    path: String,
    query: String,
}

/// Parses a head we wrote ourselves: it must be accepted.
fn reparse(s: &str) -> Again {
    let h = head(s.as_bytes()).unwrap_or_else(|| panic!("our own head {s:?} was refused"));
    let p = target::parse(&h).unwrap_or_else(|e| panic!("our own head {s:?}: {e:?}"));
    Again {
        target: p.target,
        path: p.path.to_owned(),
        query: p.query.to_owned(),
    }
}
