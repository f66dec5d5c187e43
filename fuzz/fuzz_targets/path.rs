//! `tollgate_rules::path::normalize` on arbitrary paths, and on paths assembled from the
//! pieces path confusion is made of (`..`, `%2e`, `//`, `%2f`, `%61`, ...).
//!
//! Checks, in `normalize` mode:
//! - the result agrees with an independent reference (decode unreserved characters,
//!   upper-case the other escapes, merge slashes, then RFC 3986 §5.2.4's
//!   remove_dot_segments loop as the RFC writes it);
//! - the result is in normal form: it starts with `/` and holds no dot segment, no `//`,
//!   no encoded unreserved character, no encoded slash or backslash, no lower-case escape;
//! - it is idempotent: normalising the result gives it back, borrowed (unchanged);
//! - `reject` mode accepts exactly the paths `normalize` leaves unchanged;
//! - a refusal names a reason the path really has, and a path with no such reason is
//!   never refused.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;
use tollgate_rules::path::{normalize, PathError};
use tollgate_rules::PathNormalization::{Normalize, Reject};

/// Pieces that path confusion is made of.
const PIECES: &[&str] = &[
    "/", "//", ".", "..", "%2e", "%2E", ".%2e", "%2e.", "%2e%2E", "a", "v2", "admin", "%61",
    "%41dmin", "%7e", "%7E", "~", "%2f", "%2F", "%5c", "%5C", "\\", "%00", "%", "%4", "%zz", "%20",
    "%c3%a9", "%C3%A9", "é", "%25", "%2525", "?", ";", ":", "@", "-", "_", "%5f", "%2d", "%30",
];

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Raw(&'a str),
    Pieces(Vec<u8>),
}

fuzz_target!(|input: Input<'_>| {
    let path: Cow<'_, str> = match input {
        Input::Raw(s) => Cow::Borrowed(s),
        Input::Pieces(ix) => Cow::Owned(
            ix.iter()
                .map(|i| PIECES[usize::from(*i) % PIECES.len()])
                .collect(),
        ),
    };
    check(&path);
});

fn check(path: &str) {
    let reference = reference(path);
    match normalize(path, Normalize) {
        Ok(out) => {
            let want = reference
                .as_ref()
                .unwrap_or_else(|why| panic!("{path:?} -> {out:?}, but it {why:?}"));
            assert_eq!(&*out, want, "{path:?}: differs from the reference");
            assert_normal(&out);
            // Borrowed exactly when unchanged.
            assert_eq!(matches!(out, Cow::Borrowed(_)), *out == *path, "{path:?}");
            match normalize(&out, Normalize) {
                Ok(Cow::Borrowed(again)) => assert_eq!(again, &*out),
                other => panic!("{path:?} -> {out:?} -> {other:?}: not idempotent"),
            }
            match normalize(path, Reject) {
                Ok(r) => {
                    assert_eq!(&*r, path, "reject mode rewrote {path:?}");
                    assert_eq!(
                        &*out, path,
                        "reject mode accepted {path:?}, which normalises"
                    );
                }
                Err(e) => {
                    assert_eq!(e, PathError::NotNormal, "{path:?}");
                    assert_ne!(&*out, path, "reject mode refused the normal {path:?}");
                }
            }
            assert_eq!(normalize(&out, Reject).as_deref(), Ok(&*out));
        }
        Err(e) => {
            let reasons = match &reference {
                Ok(r) => panic!("{path:?} refused with {e:?}, the reference gives {r:?}"),
                Err(reasons) => reasons,
            };
            assert!(
                reasons.contains(&e),
                "{path:?}: {e:?}, not one of {reasons:?}"
            );
            assert_eq!(
                normalize(path, Reject),
                Err(e),
                "{path:?}: modes refuse differently"
            );
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Normal form, checked on its own terms (not by normalising again).
fn assert_normal(p: &str) {
    let b = p.as_bytes();
    assert_eq!(b.first(), Some(&b'/'), "{p:?}");
    assert!(!p.contains("//"), "{p:?} has //");
    assert!(!p.contains('\\'), "{p:?} has a backslash");
    for seg in p[1..].split('/') {
        assert!(seg != "." && seg != "..", "{p:?} has a dot segment");
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = &b[i + 1..(i + 3).min(b.len())];
            assert!(
                hex.len() == 2 && hex.iter().all(|h| matches!(h, b'0'..=b'9' | b'A'..=b'F')),
                "{p:?}: bad or lower-case escape at {i}"
            );
            let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
                .unwrap_or_else(|_| panic!("{p:?}"));
            assert!(!is_unreserved(v), "{p:?}: encoded unreserved {v:#x}");
            assert!(v != b'/' && v != b'\\' && v != 0, "{p:?}: encoded {v:#x}");
            i += 3;
        } else {
            i += 1;
        }
    }
}

/// The reference: every reason to refuse the path (in any order), or its normal form.
fn reference(path: &str) -> Result<String, Vec<PathError>> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(vec![PathError::NotAbsolute]);
    }
    let mut reasons = Vec::new();
    let mut decoded = String::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                reasons.push(PathError::Backslash);
                i += 1;
            }
            b'%' => {
                let hex = path
                    .get(i + 1..i + 3)
                    .filter(|h| h.len() == 2 && h.bytes().all(|c| c.is_ascii_hexdigit()));
                let Some(hex) = hex else {
                    reasons.push(PathError::BadPercent);
                    i += 1;
                    continue;
                };
                let v = u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{hex}"));
                if v == b'/' || v == b'\\' {
                    reasons.push(PathError::EncodedSlash);
                } else if v == 0 {
                    reasons.push(PathError::EncodedNul);
                } else if is_unreserved(v) {
                    decoded.push(char::from(v));
                } else {
                    decoded.push_str(&format!("%{v:02X}"));
                }
                i += 3;
            }
            _ => {
                // Copy one whole character.
                let len = path[i..].chars().next().map_or(1, char::len_utf8);
                decoded.push_str(&path[i..i + len]);
                i += len;
            }
        }
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    // Merge slashes.
    let mut merged = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    Ok(remove_dot_segments(&merged))
}

/// RFC 3986 §5.2.4, step by step as written there.
fn remove_dot_segments(input: &str) -> String {
    let mut input = input.to_owned();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_owned();
        } else if input.starts_with("/./") {
            input = input[2..].to_owned();
        } else if input == "/." {
            input = "/".to_owned();
        } else if input.starts_with("/../") || input == "/.." {
            input = format!("/{}", &input[if input == "/.." { 3 } else { 4 }..]);
            match output.rfind('/') {
                Some(k) => output.truncate(k),
                None => output.clear(),
            }
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |k| k + start);
            output.push_str(&input[..end]);
            input = input[end..].to_owned();
        }
    }
    if output.is_empty() {
        output.push('/');
    }
    output
}
