//! Reading `Proxy-Authorization`: which scheme, and the credential it carries.
//!
//! Accepted forms (case-insensitive scheme, one or more spaces, then the credential):
//! - `Bearer <JWT>`;
//! - `Basic base64(user:password)`, checked against the htpasswd file;
//! - `Basic base64(token:<JWT>)`: the user name [`TOKEN_USER`] marks a JWT in the password,
//!   for clients that can only send Basic (`http://token:<jwt>@tollgate:3128`).
//!
//! Nothing here is logged or shown: errors say what was wrong, never the value.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tollgate_rules::Secret;

/// The Basic user name that says "the password is a JWT".
pub const TOKEN_USER: &str = "token";

/// The longest `Proxy-Authorization` value accepted (a Kubernetes service-account token
/// is about 1 KiB; IdP tokens with many claims stay well under this).
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// What a request presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// A JWT (from `Bearer`, or Basic with user [`TOKEN_USER`]).
    Jwt(JwtText<'a>),
    /// A user name and password from `Basic`.
    Password { user: String, password: Secret },
}

/// A JWT as presented; its `Debug` never shows it.
#[derive(PartialEq, Eq)]
pub enum JwtText<'a> {
    Borrowed(&'a str),
    Owned(Secret),
}

impl JwtText<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            JwtText::Borrowed(s) => s,
            JwtText::Owned(s) => s.expose(),
        }
    }
}

impl std::fmt::Debug for JwtText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtText([redacted])")
    }
}

/// Why a `Proxy-Authorization` value could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    TooLong,
    NotText,
    NoCredential,
    /// A scheme other than Bearer or Basic.
    Scheme,
    /// A Bearer value that is not a `b64token` (RFC 6750 section 2.1).
    BearerChars,
    NotBase64,
    NotUtf8,
    NoColon,
}

impl Malformed {
    pub fn message(self) -> &'static str {
        match self {
            Malformed::TooLong => "Proxy-Authorization is longer than 16 KiB",
            Malformed::NotText => "Proxy-Authorization is not visible ASCII text",
            Malformed::NoCredential => "Proxy-Authorization has a scheme but no credential",
            Malformed::Scheme => {
                "Proxy-Authorization scheme is not supported: use Bearer <JWT> or Basic"
            }
            Malformed::BearerChars => "the Bearer credential has characters a token cannot have",
            Malformed::NotBase64 => "the Basic credential is not base64",
            Malformed::NotUtf8 => "the Basic credential is not UTF-8",
            Malformed::NoColon => "the Basic credential has no `user:password` colon",
        }
    }
}

/// Parses one `Proxy-Authorization` value.
pub fn parse(value: &[u8]) -> Result<Presented<'_>, Malformed> {
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(Malformed::TooLong);
    }
    if !value
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t')
    {
        return Err(Malformed::NotText);
    }
    // Visible ASCII only, so this cannot fail.
    let text = std::str::from_utf8(value).map_err(|_| Malformed::NotText)?;
    let text = text.trim_matches([' ', '\t']);
    let (scheme, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    let credential = rest.trim_start_matches([' ', '\t']);
    if credential.is_empty() {
        return Err(
            if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("basic") {
                Malformed::NoCredential
            } else {
                Malformed::Scheme
            },
        );
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        if !is_b64token(credential) {
            return Err(Malformed::BearerChars);
        }
        return Ok(Presented::Jwt(JwtText::Borrowed(credential)));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Malformed::Scheme);
    }
    let decoded = STANDARD
        .decode(credential)
        .map_err(|_| Malformed::NotBase64)?;
    let decoded = String::from_utf8(decoded).map_err(|_| Malformed::NotUtf8)?;
    let Some((user, password)) = decoded.split_once(':') else {
        return Err(Malformed::NoColon);
    };
    if user == TOKEN_USER {
        return Ok(Presented::Jwt(JwtText::Owned(Secret::new(password))));
    }
    Ok(Presented::Password {
        user: user.to_owned(),
        password: Secret::new(password),
    })
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        format!("Basic {}", STANDARD.encode(s))
    }

    #[test]
    fn reads_each_accepted_form() {
        assert_eq!(
            parse(b"Bearer a.b.c"),
            Ok(Presented::Jwt(JwtText::Borrowed("a.b.c")))
        );
        assert_eq!(
            parse(b"bearer   a.b.c  "),
            Ok(Presented::Jwt(JwtText::Borrowed("a.b.c")))
        );
        assert_eq!(
            parse(basic("alice:pa:ss word").as_bytes()),
            Ok(Presented::Password {
                user: "alice".into(),
                password: Secret::new("pa:ss word")
            })
        );
        match parse(basic("token:x.y.z").as_bytes()) {
            Ok(Presented::Jwt(j)) => assert_eq!(j.as_str(), "x.y.z"),
            other => panic!("{other:?}"),
        }
        // An empty password is a password (htpasswd decides).
        assert!(matches!(
            parse(basic("bob:").as_bytes()),
            Ok(Presented::Password { .. })
        ));
    }

    #[test]
    fn refuses_malformed_values() {
        assert_eq!(parse(b"Basic !!!"), Err(Malformed::NotBase64));
        assert_eq!(parse(b"Basic"), Err(Malformed::NoCredential));
        assert_eq!(parse(b"Bearer "), Err(Malformed::NoCredential));
        assert_eq!(parse(b"Digest x=1"), Err(Malformed::Scheme));
        assert_eq!(parse(b"x"), Err(Malformed::Scheme));
        assert_eq!(parse(b""), Err(Malformed::Scheme));
        assert_eq!(parse(b"Bearer a,b"), Err(Malformed::BearerChars));
        assert_eq!(parse(b"Bearer ="), Err(Malformed::BearerChars));
        assert_eq!(parse(b"Bearer a\x01"), Err(Malformed::NotText));
        assert_eq!(parse("Bearer é".as_bytes()), Err(Malformed::NotText));
        let no_colon = basic("alice");
        assert_eq!(parse(no_colon.as_bytes()), Err(Malformed::NoColon));
        let latin1 = format!("Basic {}", STANDARD.encode([0xe9, b':', b'x']));
        assert_eq!(parse(latin1.as_bytes()), Err(Malformed::NotUtf8));
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL_BYTES));
        assert_eq!(parse(long.as_bytes()), Err(Malformed::TooLong));
    }

    #[test]
    fn debug_never_shows_the_credential() {
        let value = basic("alice:hunter2");
        let p = parse(value.as_bytes()).expect("parsed");
        assert!(!format!("{p:?}").contains("hunter2"));
        let p = parse(b"Bearer sekrit.tok.en").expect("parsed");
        assert!(!format!("{p:?}").contains("sekrit"));
    }
}
