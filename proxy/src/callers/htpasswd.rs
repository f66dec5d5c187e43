//! The htpasswd file of `callers.basic`: `user:hash` lines with bcrypt hashes, as
//! `htpasswd -B` writes them (and nginx and Squid read them).
//!
//! Accepted: `$2y$`, `$2b$` and `$2a$` bcrypt hashes. Any other kind (MD5 `$apr1$`, SHA-1
//! `{SHA}`, crypt, plain text) is refused at load with the line and user named, so a file
//! never silently admits nobody, or everybody. Blank lines and `#` comments are skipped.
//!
//! Checking a password runs bcrypt (milliseconds of CPU by design): the proxy runs it on
//! a blocking thread and caches the result (`cache.rs`). A user absent from the file is
//! checked against a dummy hash of the same cost, so the answer takes as long as for a
//! wrong password (no user enumeration by timing); bcrypt's own comparison is
//! constant-time.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The users of one htpasswd file.
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// The cost of the file's first hash, for the dummy check.
    cost: u32,
    dummy: OnceLock<String>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Htpasswd({} users, [redacted])", self.users.len())
    }
}

/// The outcome of one password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok,
    /// Unknown user or wrong password (the caller is not told which).
    Refused,
}

impl Htpasswd {
    /// Parses the file's text. `reserved`: a user name that may not appear (the JWT
    /// marker, when JWTs are accepted). Every problem is `line N: ...`.
    pub fn parse(text: &str, reserved: Option<&str>) -> Result<Htpasswd, Vec<String>> {
        let mut users = HashMap::new();
        let mut problems = Vec::new();
        let mut cost = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                problems.push(format!("line {n}: expected `user:hash`"));
                continue;
            };
            if user.is_empty() {
                problems.push(format!("line {n}: empty user name"));
                continue;
            }
            if Some(user) == reserved {
                problems.push(format!(
                    "line {n}: user {user:?} is reserved: Basic with that user name carries a JWT"
                ));
                continue;
            }
            let hash = hash.trim();
            let bcrypt_kind = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p));
            if !bcrypt_kind {
                problems.push(format!(
                    "line {n}: user {user:?}: {} hashes are not supported; only bcrypt (`htpasswd -B`)",
                    kind(hash)
                ));
                continue;
            }
            let parts: bcrypt::HashParts = match hash.parse() {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!(
                        "line {n}: user {user:?}: not a valid bcrypt hash ({e})"
                    ));
                    continue;
                }
            };
            cost.get_or_insert(parts.get_cost());
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                problems.push(format!("line {n}: user {user:?} appears twice"));
            }
        }
        if problems.is_empty() {
            Ok(Htpasswd {
                users,
                cost: cost.unwrap_or(bcrypt::DEFAULT_COST),
                dummy: OnceLock::new(),
            })
        } else {
            Err(problems)
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.users.len()
    }

    /// Runs bcrypt: call it off the async threads.
    pub fn check(&self, user: &str, password: &str) -> Check {
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy(), false),
        };
        match bcrypt::verify(password, hash) {
            Ok(true) if known => Check::Ok,
            _ => Check::Refused,
        }
    }

    fn dummy(&self) -> &str {
        self.dummy.get_or_init(|| {
            bcrypt::hash_with_salt("tollgate-dummy", self.cost, [7u8; 16])
                .map(|h| h.format_for_version(bcrypt::Version::TwoY))
                .unwrap_or_default()
        })
    }
}

/// The hash kind of an htpasswd entry, for the error message.
fn kind(hash: &str) -> &'static str {
    if hash.starts_with("$apr1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt ($5$/$6$)"
    } else if hash.starts_with('$') {
        "this kind of"
    } else {
        "crypt or plain-text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cost 4 keeps the tests quick; the file format is the same at any cost.
    fn entry(user: &str, password: &str) -> String {
        let h = bcrypt::hash(password, 4).expect("hash");
        format!("{user}:{h}")
    }

    #[test]
    fn checks_bcrypt_entries_of_each_prefix() {
        let h = bcrypt::hash_with_result("pw", 4).expect("hash");
        let text = format!(
            "# callers\n\nalice:{}\nbob:{}\r\ncarol:{}\n",
            h.format_for_version(bcrypt::Version::TwoY),
            h.format_for_version(bcrypt::Version::TwoB),
            h.format_for_version(bcrypt::Version::TwoA),
        );
        let f = Htpasswd::parse(&text, None).expect("valid");
        assert_eq!(f.len(), 3);
        for user in ["alice", "bob", "carol"] {
            assert_eq!(f.check(user, "pw"), Check::Ok, "{user}");
            assert_eq!(f.check(user, "pw "), Check::Refused, "{user}");
        }
        assert_eq!(f.check("mallory", "pw"), Check::Refused);
        assert_eq!(f.check("", ""), Check::Refused);
    }

    #[test]
    fn refuses_other_hash_kinds_and_broken_lines_at_load() {
        let text = format!(
            "{}\nmd5:$apr1$abc$def\nsha:{{SHA}}qUqP5cyxm6YcTAhz05Hph5gvu9M=\nplain:secret\nnocolon\n:x\nbad:$2y$04$short\n{}\ntoken:{}\n",
            entry("ok", "pw"),
            entry("ok", "again"),
            bcrypt::hash("x", 4).expect("hash"),
        );
        let problems = Htpasswd::parse(&text, Some("token")).expect_err("invalid");
        let joined = problems.join("\n");
        for needle in [
            "line 2: user \"md5\": MD5 ($apr1$) hashes are not supported; only bcrypt",
            "line 3: user \"sha\": SHA-1 ({SHA})",
            "line 4: user \"plain\": crypt or plain-text",
            "line 5: expected `user:hash`",
            "line 6: empty user name",
            "line 7: user \"bad\": not a valid bcrypt hash",
            "line 8: user \"ok\" appears twice",
            "line 9: user \"token\" is reserved",
        ] {
            assert!(joined.contains(needle), "{needle:?} in\n{joined}");
        }
        assert!(
            !joined.contains("secret"),
            "a problem shows a password: {joined}"
        );
        assert_eq!(Htpasswd::parse("", None).expect("empty is valid").len(), 0);
    }
}
