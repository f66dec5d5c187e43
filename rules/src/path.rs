//! Request paths as tollgate matches and forwards them (`path_normalization:`).
//!
//! An upstream that normalises paths (RFC 3986 §6.2.2) would serve `/admin` for
//! `/v2/../admin`, `/v2/%2e%2e/admin` or `//admin`; a proxy that matched the raw path
//! would have routed (and injected a token into) a request for `/v2/`. So tollgate decides
//! on the normalised path and forwards exactly that path, byte for byte:
//!
//! 1. percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded
//!    (`%61dmin` → `admin`, `%2e` → `.`); other percent-encodings are kept, with
//!    upper-case hex digits (`%2f` → `%2F` is refused below, `%c3%a9` → `%C3%A9`);
//! 2. `.` segments are removed and `..` segments remove the segment before them
//!    (RFC 3986 §5.2.4), never climbing above `/`;
//! 3. repeated slashes are merged (`//a///b` → `/a/b`), as nginx's `merge_slashes` does.
//!
//! Refused outright (whatever the mode), because upstreams disagree on what they mean:
//! an encoded slash or backslash (`%2F`, `%5C`), a literal backslash, an encoded NUL
//! (`%00`), and a `%` not followed by two hex digits.
//!
//! With [`PathNormalization::Reject`] any path that normalising would change is refused
//! instead of rewritten (for upstreams that must see paths exactly as clients sent them).
//!
//! The query (after `?`) is never touched: split it off before calling [`normalize`].

use crate::model::PathNormalization;
use std::borrow::Cow;
use std::fmt;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// `%2F` or `%5C`: an encoded `/` or `\`.
    EncodedSlash,
    /// A literal `\`.
    Backslash,
    /// `%00`.
    EncodedNul,
    /// `%` not followed by two hex digits.
    BadPercent,
    /// `path_normalization: reject` and the path is not in normal form.
    NotNormal,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the path must start with `/`",
            PathError::EncodedSlash => {
                "the path contains an encoded slash or backslash (%2F, %5C), which upstreams read differently"
            }
            PathError::Backslash => "the path contains a backslash, which upstreams read differently",
            PathError::EncodedNul => "the path contains an encoded NUL (%00)",
            PathError::BadPercent => "the path has a `%` not followed by two hex digits",
            PathError::NotNormal => {
                "the path is not in normal form (dot segments, repeated slashes or needlessly encoded characters) and path_normalization is reject"
            }
        })
    }
}

impl std::error::Error for PathError {}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Could this path need any work? (A cheap scan, so that the common path is borrowed.)
fn maybe_unnormal(p: &[u8]) -> bool {
    p.iter().any(|b| matches!(b, b'%' | b'\\')) || p.windows(2).any(|w| w == b"//" || w == b"/.")
}

/// The path (without query) in normal form, or why it is refused. See the module docs.
pub fn normalize(path: &str, mode: PathNormalization) -> Result<Cow<'_, str>, PathError> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if !maybe_unnormal(raw) {
        return Ok(Cow::Borrowed(path));
    }
    // 1. Decode unreserved characters; check the rest.
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (Some(h), Some(l)) = (
                    raw.get(i + 1).copied().and_then(hex),
                    raw.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadPercent);
                };
                let v = h * 16 + l;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    0 => return Err(PathError::EncodedNul),
                    _ if is_unreserved(v) => decoded.push(v),
                    _ => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        decoded.extend_from_slice(&[
                            b'%',
                            HEX[usize::from(v >> 4)],
                            HEX[usize::from(v & 15)],
                        ]);
                    }
                }
                i += 3;
            }
            b => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    // 2 and 3. Dot segments and repeated slashes.
    let segments: Vec<&[u8]> = decoded[1..].split(|b| *b == b'/').collect();
    let last = segments.len() - 1;
    let mut kept: Vec<&[u8]> = Vec::with_capacity(segments.len());
    let mut trailing_slash = false;
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            b"" | b"." => trailing_slash = n == last,
            b".." => {
                kept.pop();
                trailing_slash = n == last;
            }
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out: Vec<u8> = Vec::with_capacity(decoded.len());
    for s in &kept {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    // Only ASCII was decoded, and only into ASCII, so UTF-8 validity is kept.
    let out = String::from_utf8(out).map_err(|_| PathError::BadPercent)?;
    if out == path {
        return Ok(Cow::Borrowed(path));
    }
    match mode {
        PathNormalization::Normalize => Ok(Cow::Owned(out)),
        PathNormalization::Reject => Err(PathError::NotNormal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p, PathNormalization::Normalize).map(Cow::into_owned)
    }

    #[test]
    fn the_confusions_of_the_issue_resolve_to_what_an_upstream_serves() {
        for (raw, want) in [
            ("/v2/../admin/x", "/admin/x"),
            ("/v2/%2e%2e/admin", "/admin"),
            ("/v2/%2E%2E/admin", "/admin"),
            ("/v2/.%2e/admin", "/admin"),
            ("/v2/./../admin", "/admin"),
            ("//admin/x", "/admin/x"),
            ("/%61dmin/x", "/admin/x"),
            ("/v2/./x", "/v2/x"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/a/./", "/a/"),
            ("//", "/"),
            ("/%7euser", "/~user"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/.hidden/..x", "/.hidden/..x"),
        ] {
            assert_eq!(n(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/v2/invoices", "/a/b/", "/x.y/z_~-", "/a%20b"] {
            assert!(
                matches!(
                    normalize(p, PathNormalization::Normalize),
                    Ok(Cow::Borrowed(_))
                ),
                "{p}"
            );
            assert!(
                matches!(
                    normalize(p, PathNormalization::Reject),
                    Ok(Cow::Borrowed(_))
                ),
                "{p}"
            );
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(n("/v2/..%2fadmin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/v2/%2F"), Err(PathError::EncodedSlash));
        assert_eq!(n("/v2/%5c"), Err(PathError::EncodedSlash));
        assert_eq!(n("/v2\\..\\admin"), Err(PathError::Backslash));
        assert_eq!(n("/a%00"), Err(PathError::EncodedNul));
        assert_eq!(n("/a%"), Err(PathError::BadPercent));
        assert_eq!(n("/a%4"), Err(PathError::BadPercent));
        assert_eq!(n("/a%zz"), Err(PathError::BadPercent));
        assert_eq!(n("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(n(""), Err(PathError::NotAbsolute));
    }

    #[test]
    fn reject_mode_refuses_what_normalize_would_change() {
        let r = |p| normalize(p, PathNormalization::Reject);
        assert_eq!(r("/v2/../admin"), Err(PathError::NotNormal));
        assert_eq!(r("//admin"), Err(PathError::NotNormal));
        assert_eq!(r("/%61"), Err(PathError::NotNormal));
        assert_eq!(r("/%c3"), Err(PathError::NotNormal));
        assert_eq!(r("/%C3").as_deref(), Ok("/%C3"));
        assert_eq!(r("/v2/x").as_deref(), Ok("/v2/x"));
    }

    #[test]
    fn idempotent_on_the_examples() {
        for p in ["/v2/../admin", "/a//b/./c/..", "/%7e%2E/x", "/caf%c3%a9/"] {
            let once = n(p).expect("normal");
            assert_eq!(n(&once).as_deref(), Ok(once.as_str()), "{p}");
        }
    }
}
