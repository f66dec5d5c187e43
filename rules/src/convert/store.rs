//! `token_store:` -> [`TokenStore`].

use super::{child, Checker};
use crate::file::TokenStoreFile;
use crate::model::{RedisStore, TokenStore};
use crate::pos::Seg;
use crate::units::{format_duration, parse_duration};
use crate::values::{self, shown};
use std::collections::HashSet;
use std::time::Duration;

/// `token_store.lock_timeout` when the file does not say.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// `token_store.redis.timeout` when the file does not say.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// `token_store.redis.key_prefix` when the file does not say.
pub const DEFAULT_KEY_PREFIX: &str = "tollgate:";
/// The port of a Redis URL without one.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

const LOCK_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(300));
const REDIS_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(60));
const MAX_KEY_PREFIX: usize = 100;

pub(super) fn token_store(c: &mut Checker<'_>, f: TokenStoreFile) -> Option<TokenStore> {
    let base: Vec<Seg> = vec![Seg::Key("token_store".into())];
    let p = |k: &str| child(&base, k);
    let mut ok = true;

    let redis = match f.redis {
        Some(r) => {
            let rb = p("redis");
            let rp = |k: &str| child(&rb, k);
            let addr = match &r.url {
                Some(raw) => c.parse(&rp("url"), raw, parse_redis_url),
                None => {
                    c.node_err(
                        &rb,
                        "missing `url` (`redis://HOST:PORT/DB` or `rediss://...`)",
                    );
                    None
                }
            };
            let username = match &r.username {
                Some(raw) => {
                    let u = c.parse(&rp("username"), raw, check_username);
                    ok &= u.is_some();
                    u
                }
                None => None,
            };
            let password_file = match &r.password_file {
                Some(raw) => {
                    let f = c.file_path(&rp("password_file"), raw);
                    ok &= f.is_some();
                    f
                }
                None => None,
            };
            let key_prefix = match &r.key_prefix {
                Some(raw) => c.parse(&rp("key_prefix"), raw, check_key_prefix),
                None => Some(DEFAULT_KEY_PREFIX.to_owned()),
            };
            let timeout = duration(
                c,
                &rp("timeout"),
                r.timeout.as_deref(),
                DEFAULT_REDIS_TIMEOUT,
                REDIS_TIMEOUT_RANGE,
            );
            match (addr, key_prefix, timeout) {
                (Some((tls, host, port, db)), Some(key_prefix), Some(timeout)) => {
                    Some(RedisStore {
                        tls,
                        host,
                        port,
                        db,
                        username,
                        password_file,
                        key_prefix,
                        timeout,
                    })
                }
                _ => None,
            }
        }
        None => {
            c.node_err(&base, "missing `redis` (with at least `url`)");
            None
        }
    };

    let keys_path = p("encryption_key_files");
    let encryption_key_files = match &f.encryption_key_files {
        None => {
            c.node_err(
                &base,
                "missing `encryption_key_files`: tokens are stored encrypted; \
                 give at least one file holding a 32-byte key (`openssl rand -base64 32`)",
            );
            None
        }
        Some(list) if list.is_empty() => {
            c.value_err(&keys_path, "empty list: give at least one 32-byte key file");
            None
        }
        Some(list) => {
            let mut files = Vec::with_capacity(list.len());
            let mut seen = HashSet::new();
            for (i, raw) in list.iter().enumerate() {
                let at = child(&keys_path, i);
                match c.file_path(&at, raw) {
                    Some(path) if !seen.insert(path.clone()) => {
                        c.value_err(&at, "this key file is already listed");
                        ok = false;
                    }
                    Some(path) => files.push(path),
                    None => ok = false,
                }
            }
            Some(files)
        }
    };

    let lock_timeout = duration(
        c,
        &p("lock_timeout"),
        f.lock_timeout.as_deref(),
        DEFAULT_LOCK_TIMEOUT,
        LOCK_TIMEOUT_RANGE,
    );

    let store = TokenStore {
        redis: redis?,
        encryption_key_files: encryption_key_files?,
        lock_timeout: lock_timeout?,
    };
    ok.then_some(store)
}

/// A duration key with a default and an accepted range.
fn duration(
    c: &mut Checker<'_>,
    path: &[Seg],
    raw: Option<&str>,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Option<Duration> {
    let Some(raw) = raw else {
        return Some(default);
    };
    let text = c.text(path, raw)?;
    match parse_duration(&text) {
        Ok(d) if d >= min && d <= max => Some(d),
        Ok(_) => {
            c.value_err(
                path,
                format!(
                    "must be between {} and {}",
                    format_duration(min),
                    format_duration(max)
                ),
            );
            None
        }
        Err(e) => {
            c.value_err(path, e);
            None
        }
    }
}

/// `redis://HOST[:PORT][/DB]` or `rediss://...`: (tls, host, port, db). Credentials belong
/// in `username` and `password_file`, never in the URL (it is logged).
pub(crate) fn parse_redis_url(s: &str) -> Result<(bool, String, u16, u32), String> {
    if s.chars().any(char::is_whitespace) {
        return Err("the url cannot contain whitespace".to_owned());
    }
    let url =
        url::Url::parse(s).map_err(|e| format!("{} is not a URL: {e}", values::shown_url(s)))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "scheme {} is not supported: use redis:// or rediss:// (TLS)",
                shown(other)
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{} carries credentials: put the user in `username` and the password in `password_file`",
            values::shown_url(s)
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(format!("{} has no host", shown(s))),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{} has a query or fragment: tollgate takes only scheme, host, port and database",
            shown(s)
        ));
    }
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        n => n.parse::<u32>().map_err(|_| {
            format!(
                "the path of {} must be a database number such as `/0`",
                shown(s)
            )
        })?,
    };
    let port = url.port().unwrap_or(DEFAULT_REDIS_PORT);
    Ok((tls, host, port, db))
}

fn check_username(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty value; omit the key to use Redis's default user".to_owned());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{} has whitespace or control characters", shown(s)));
    }
    Ok(s.to_owned())
}

fn check_key_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(format!(
            "empty value; omit the key for the default `{DEFAULT_KEY_PREFIX}`"
        ));
    }
    if s.len() > MAX_KEY_PREFIX {
        return Err(format!("longer than {MAX_KEY_PREFIX} bytes"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{} has whitespace or control characters", shown(s)));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly by design
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        assert_eq!(
            parse_redis_url("redis://redis.platform.svc:6379/0"),
            Ok((false, "redis.platform.svc".into(), 6379, 0))
        );
        assert_eq!(
            parse_redis_url("rediss://Cache.Example.com"),
            Ok((true, "cache.example.com".into(), 6379, 0))
        );
        assert_eq!(
            parse_redis_url("redis://[::1]:7000/3"),
            Ok((false, "::1".into(), 7000, 3))
        );
        assert_eq!(
            parse_redis_url("redis://127.0.0.1/"),
            Ok((false, "127.0.0.1".into(), 6379, 0))
        );
    }

    #[test]
    fn bad_redis_urls_never_show_a_password() {
        let e = parse_redis_url("redis://:hunter2@host:6379").unwrap_err();
        assert!(e.contains("password_file"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse_redis_url("redis://user:hunter2@host").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(parse_redis_url("unix:///run/redis.sock")
            .unwrap_err()
            .contains("redis:// or rediss://"));
        assert!(parse_redis_url("redis://host/zero")
            .unwrap_err()
            .contains("database number"));
        assert!(parse_redis_url("redis://host/0?protocol=resp3")
            .unwrap_err()
            .contains("query"));
        assert!(parse_redis_url("redis:///0").is_err());
        assert!(parse_redis_url("redis://host:99999").is_err());
        assert!(parse_redis_url("redis://ho st").is_err());
    }

    #[test]
    fn key_prefixes_and_users() {
        assert_eq!(check_key_prefix("tg:prod:"), Ok("tg:prod:".into()));
        assert!(check_key_prefix("").is_err());
        assert!(check_key_prefix("a b").is_err());
        assert!(check_key_prefix(&"x".repeat(101)).is_err());
        assert!(check_username("tollgate").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("a\nb").is_err());
    }
}
