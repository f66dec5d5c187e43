//! Secret and key files: [`WatchedFile`] (read once, re-read when it changes),
//! [`ClientSecret`] (inline, `client_secret_file` or `client_secret_files`), and
//! [`read_now`] for files read afresh for every token request.
//!
//! Watched files are read once at start-up (a missing or bad file is an [`AuthError`]) and then
//! watched cheaply by [`WatchedFile`]: before each token request one `stat` (a token
//! request is rare), and otherwise at most one `stat` per second, when the cache asks
//! whether a remembered failure is still worth remembering. When the file's
//! modification time, length or inode changed, it is read again (secret rotation,
//! including Kubernetes' symlink swap of mounted Secrets). A file that became unreadable
//! or invalid fails the token request with a message naming it; the next request tries
//! again.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tollgate_rules::{Secret, SecretSource};

use super::error::AuthError;

/// A file is stat'ed at most this often outside token requests.
pub(crate) const STAT_INTERVAL: Duration = Duration::from_secs(1);

/// Secret and key files larger than this are refused (they are a few KiB at most).
const MAX_FILE_LEN: u64 = 1 << 20;

type Parser<T> = Box<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// A file whose parsed content is kept and re-read when the file changes.
pub(crate) struct WatchedFile<T> {
    /// The config key, for messages: `client_secret_file`, `private_key_file`, ...
    what: &'static str,
    path: PathBuf,
    parse: Parser<T>,
    state: Mutex<WatchState<T>>,
}

struct WatchState<T> {
    value: Arc<T>,
    stamp: FileStamp,
    /// Bumped each time a changed file was read successfully.
    version: u64,
    checked_at: Instant,
}

/// What tells us a file changed without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> WatchedFile<T> {
    /// Reads and parses the file now. The error is the reason alone (no path).
    pub(crate) fn open(what: &'static str, path: &Path, parse: Parser<T>) -> Result<Self, String> {
        let (stamp, value) = read(path, &parse)?;
        Ok(WatchedFile {
            what,
            path: path.to_path_buf(),
            parse,
            state: Mutex::new(WatchState {
                value: Arc::new(value),
                stamp,
                version: 0,
                checked_at: Instant::now(),
            }),
        })
    }

    /// The current content and its version: stats the file and re-reads it if it
    /// changed. For token requests. The error names the file.
    pub(crate) fn current(&self) -> Result<(Arc<T>, u64), String> {
        self.refresh(true)
            .map_err(|why| format!("{} {}: {why}", self.what, self.path.display()))
    }

    /// The version of the content, re-checking the file at most once per
    /// [`STAT_INTERVAL`]. Errors are left for the next token request to report.
    pub(crate) fn version(&self) -> u64 {
        match self.refresh(false) {
            Ok((_, v)) => v,
            Err(_) => lock(&self.state).version,
        }
    }

    fn refresh(&self, force: bool) -> Result<(Arc<T>, u64), String> {
        let mut st = lock(&self.state);
        let now = Instant::now();
        if force || now.saturating_duration_since(st.checked_at) >= STAT_INTERVAL {
            st.checked_at = now;
            let stamp = std::fs::metadata(&self.path)
                .map(|m| FileStamp::of(&m))
                .map_err(|e| e.to_string())?;
            if stamp != st.stamp {
                let (stamp, value) = read(&self.path, &self.parse)?;
                st.value = Arc::new(value);
                st.stamp = stamp;
                st.version = st.version.wrapping_add(1);
                tracing::info!(file = %self.path.display(), kind = self.what, "re-read changed file");
            }
        }
        Ok((Arc::clone(&st.value), st.version))
    }
}

/// Reads the file through one handle, so the stamp describes the bytes read. The error
/// is the reason alone (no path).
pub(super) fn read<T>(
    path: &Path,
    parse: &dyn Fn(&[u8]) -> Result<T, String>,
) -> Result<(FileStamp, T), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_LEN {
        return Err(format!("is larger than {MAX_FILE_LEN} bytes"));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_LEN)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let value = parse(&bytes)?;
    Ok((FileStamp::of(&meta), value))
}

/// A secret file's content: UTF-8, trailing line breaks removed (files written by
/// `echo` or editors end with one), not empty.
pub(crate) fn parse_secret(bytes: &[u8]) -> Result<Secret, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err("is empty".into());
    }
    Ok(Secret::new(text))
}

/// Reads a file that is used once and read again for every token request (a client
/// assertion or subject token that someone else renews: Kubernetes' projected service
/// account tokens). Same content rules as a secret file. The error names the file.
pub(crate) fn read_now(what: &'static str, path: &Path) -> Result<Secret, String> {
    let parse: Parser<Secret> = Box::new(parse_secret);
    read(path, &parse)
        .map(|(_, s)| s)
        .map_err(|why| format!("{what} {}: {why}", path.display()))
}

/// A static credential's value: a secret file's rules, and nothing a header cannot hold.
pub(crate) fn parse_header_value(bytes: &[u8]) -> Result<Secret, String> {
    let secret = parse_secret(bytes)?;
    if secret
        .expose()
        .bytes()
        .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err("holds characters not allowed in an HTTP header (a line break?)".into());
    }
    Ok(secret)
}

/// A client secret: inline, or one or two watched files (`client_secret_file`,
/// `client_secret_files: [current, previous]`).
pub(crate) enum ClientSecret {
    Inline(Arc<Secret>),
    Files(Vec<WatchedFile<Secret>>),
}

impl ClientSecret {
    pub(crate) fn new(credential: &str, source: &SecretSource) -> Result<Self, AuthError> {
        let files = match source {
            SecretSource::Inline(s) => return Ok(ClientSecret::Inline(Arc::new(s.clone()))),
            SecretSource::File(path) => std::slice::from_ref(path),
            SecretSource::Files(paths) => paths.as_slice(),
        };
        let what = match source {
            SecretSource::Files(_) => "client_secret_files",
            _ => "client_secret_file",
        };
        files
            .iter()
            .map(|path| {
                WatchedFile::open(what, path, Box::new(parse_secret)).map_err(|reason| {
                    AuthError::SecretFile {
                        credential: credential.to_string(),
                        path: path.clone(),
                        reason,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ClientSecret::Files)
    }

    /// How many secrets there are to try (1 or 2).
    pub(crate) fn count(&self) -> usize {
        match self {
            ClientSecret::Inline(_) => 1,
            ClientSecret::Files(f) => f.len().max(1),
        }
    }

    /// The `i`-th secret (stat'ed, re-read if changed) and its file's version.
    pub(crate) fn current(&self, i: usize) -> Result<(Arc<Secret>, u64), String> {
        match self {
            ClientSecret::Inline(s) => Ok((Arc::clone(s), 0)),
            ClientSecret::Files(f) => match f.get(i) {
                Some(file) => file.current(),
                None => Err("no such secret".into()),
            },
        }
    }

    /// Where the `i`-th secret comes from, for `tollgate token`.
    pub(crate) fn describe(&self, i: usize) -> String {
        match self {
            ClientSecret::Inline(_) => "the inline client_secret".into(),
            ClientSecret::Files(f) if f.len() > 1 => match f.get(i) {
                Some(file) => format!("client_secret_files[{i}] {}", file.path.display()),
                None => String::new(),
            },
            ClientSecret::Files(f) => match f.first() {
                Some(file) => format!("{} {}", file.what, file.path.display()),
                None => String::new(),
            },
        }
    }

    /// Changes whenever one of the files was re-read.
    pub(crate) fn version(&self) -> u64 {
        match self {
            ClientSecret::Inline(_) => 0,
            ClientSecret::Files(f) => f
                .iter()
                .fold(0u64, |acc, file| acc.wrapping_add(file.version())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::method::CredAuth;
    use crate::auth::test_support::{basic, credential, set_auth, TempDir};
    use tollgate_rules::{AuthMethod, PrivateKeyJwt};

    #[test]
    fn secret_file_content_rules() {
        assert_eq!(parse_secret(b"s3cret\n").unwrap().expose(), "s3cret");
        assert_eq!(parse_secret(b"s3cret\r\n\n").unwrap().expose(), "s3cret");
        assert_eq!(parse_secret(b" spaced \n").unwrap().expose(), " spaced ");
        assert_eq!(parse_secret(b"\n").unwrap_err(), "is empty");
        assert_eq!(
            parse_secret(&[0xff, 0xfe]).unwrap_err(),
            "is not UTF-8 text"
        );
    }

    #[test]
    fn missing_secret_file_is_an_auth_error_naming_credential_and_path() {
        let dir = TempDir::new();
        let path = dir.path().join("nope");
        let mut def = credential("billing");
        set_auth(&mut def, basic(SecretSource::File(path.clone())));
        let Err(err) = CredAuth::new(&def) else {
            panic!("expected an error")
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("credential \"billing\": client_secret_file "),
            "{msg}"
        );
        assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
    }

    /// The `client_secret` a prepared request carries (client_secret_post).
    fn posted(auth: &CredAuth, def: &tollgate_rules::Credential) -> Result<(String, u64), String> {
        let p = auth.prepare(def, 0)?;
        let secret = p
            .request
            .form()
            .into_iter()
            .find(|(k, _)| k == "client_secret")
            .map(|(_, v)| v)
            .unwrap();
        Ok((secret, p.version))
    }

    #[tokio::test(start_paused = true)]
    async fn secret_file_is_reread_after_it_changes() {
        let dir = TempDir::new();
        let path = dir.write("secret", "first\n");
        let mut def = credential("billing");
        set_auth(
            &mut def,
            AuthMethod::ClientSecretPost(SecretSource::File(path.clone())),
        );
        let auth = CredAuth::new(&def).unwrap();

        let (m, v0) = posted(&auth, &def).unwrap();
        assert_eq!(m, "first");
        assert_eq!(auth.version(), v0);

        // Rotation: a new file swapped in (new inode, other length).
        dir.replace("secret", "second-secret\n");
        // Within a second of the last stat, version() does not look at the file.
        assert_eq!(auth.version(), v0);
        tokio::time::advance(STAT_INTERVAL).await;
        let v1 = auth.version();
        assert_ne!(v1, v0);
        // A token request always looks, and sees the new secret.
        let (m, _) = posted(&auth, &def).unwrap();
        assert_eq!(m, "second-secret");
        assert_eq!(auth.version(), v1);

        // Rewritten in place: a token request notices at once.
        std::fs::write(&path, "third\n").unwrap();
        let (m, v2) = posted(&auth, &def).unwrap();
        assert_eq!(m, "third");
        assert_ne!(v2, v1);

        // Gone: the token request fails naming the file; the value comes back with it.
        std::fs::remove_file(&path).unwrap();
        let err = posted(&auth, &def).unwrap_err();
        assert!(err.starts_with("client_secret_file "), "{err}");
        assert!(!err.contains("third"), "{err}");
        std::fs::write(&path, "fourth\n").unwrap();
        let (m, _) = posted(&auth, &def).unwrap();
        assert_eq!(m, "fourth");
        // Debug of the request never shows it.
        let p = auth.prepare(&def, 0).unwrap();
        assert!(!format!("{:?}", p.request).contains("fourth"));
    }

    #[test]
    fn read_now_reads_every_time_and_names_the_file() {
        let dir = TempDir::new();
        let path = dir.write("assertion", "eyJ.first.sig");
        assert_eq!(
            read_now("client_assertion_file", &path).unwrap().expose(),
            "eyJ.first.sig"
        );
        // Same length, same second: still seen (no stamp involved).
        std::fs::write(&path, "eyJ.secnd.sig").unwrap();
        assert_eq!(
            read_now("client_assertion_file", &path).unwrap().expose(),
            "eyJ.secnd.sig"
        );
        std::fs::write(&path, "").unwrap();
        let e = read_now("client_assertion_file", &path).unwrap_err();
        assert_eq!(
            e,
            format!("client_assertion_file {}: is empty", path.display())
        );
        std::fs::remove_file(&path).unwrap();
        let e = read_now("subject_token_file", &path).unwrap_err();
        assert!(
            e.starts_with(&format!("subject_token_file {}: ", path.display())),
            "{e}"
        );
    }

    #[test]
    fn header_values_have_no_line_breaks() {
        assert_eq!(
            parse_header_value(b"sk_live_123\n").unwrap().expose(),
            "sk_live_123"
        );
        assert_eq!(
            parse_header_value(b"Basic dXNlcjpwdw==").unwrap().expose(),
            "Basic dXNlcjpwdw=="
        );
        assert!(parse_header_value(b"a\nb")
            .unwrap_err()
            .contains("not allowed in an HTTP header"));
        assert!(parse_header_value(b"a\rb").is_err());
        assert!(parse_header_value(b"a\x00b").is_err());
        assert!(parse_header_value(b"a\tb").is_ok());
    }

    #[test]
    fn key_file_errors_name_the_file() {
        let dir = TempDir::new();
        let path = dir.write("key.pem", "not a key");
        let mut def = credential("signer");
        set_auth(
            &mut def,
            AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
                private_key_file: path,
                signing_alg: None,
                key_id: None,
                certificate: None,
                assertion_audience: None,
            }),
        );
        let Err(err) = CredAuth::new(&def) else {
            panic!("expected an error")
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("credential \"signer\": private_key_file "),
            "{msg}"
        );
        assert!(msg.ends_with("no PEM private key found (expected a PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block)"), "{msg}");
    }
}
