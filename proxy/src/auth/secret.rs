//! What a client authenticates with: its secret (inline, or `client_secret_file`) or,
//! for `private_key_jwt`, its private key file.
//!
//! Files are read once at start-up (a missing or bad file is an [`AuthError`]) and then
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
use tollgate_rules::{AuthMethod, Credential, Secret, SecretSource};

use super::error::AuthError;
use super::jwt::{self, SigningKey};

/// A file is stat'ed at most this often outside token requests.
pub(crate) const STAT_INTERVAL: Duration = Duration::from_secs(1);

/// Secret and key files larger than this are refused (they are a few KiB at most).
const MAX_FILE_LEN: u64 = 1 << 20;

type Parser<T> = Box<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// A file whose parsed content is kept and re-read when the file changes.
pub(crate) struct WatchedFile<T> {
    /// The config key, for messages: `client_secret_file` or `private_key_file`.
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
struct FileStamp {
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

/// Reads the file through one handle, so the stamp describes the bytes read.
fn read<T>(path: &Path, parse: &Parser<T>) -> Result<(FileStamp, T), String> {
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
fn parse_secret(bytes: &[u8]) -> Result<Secret, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err("is empty".into());
    }
    Ok(Secret::new(text))
}

/// A client secret, from the config or from a watched file.
pub(crate) enum ClientSecret {
    Inline(Arc<Secret>),
    File(WatchedFile<Secret>),
}

impl ClientSecret {
    fn new(credential: &str, source: &SecretSource) -> Result<Self, AuthError> {
        match source {
            SecretSource::Inline(s) => Ok(ClientSecret::Inline(Arc::new(s.clone()))),
            SecretSource::File(path) => {
                WatchedFile::open("client_secret_file", path, Box::new(parse_secret))
                    .map(ClientSecret::File)
                    .map_err(|reason| AuthError::SecretFile {
                        credential: credential.to_string(),
                        path: path.clone(),
                        reason,
                    })
            }
        }
    }

    fn current(&self) -> Result<(Arc<Secret>, u64), String> {
        match self {
            ClientSecret::Inline(s) => Ok((Arc::clone(s), 0)),
            ClientSecret::File(f) => f.current(),
        }
    }

    fn version(&self) -> u64 {
        match self {
            ClientSecret::Inline(_) => 0,
            ClientSecret::File(f) => f.version(),
        }
    }
}

/// How a credential authenticates at the token endpoint, with its live material.
pub(crate) enum ClientAuth {
    Basic(ClientSecret),
    Post(ClientSecret),
    PrivateKeyJwt {
        key: WatchedFile<SigningKey>,
        key_id: Option<String>,
    },
}

/// The material for one token request. Every variant's `Debug` is redacted.
#[derive(Debug)]
pub(crate) enum Material {
    /// `client_secret_basic`: id and secret in the `Authorization` header.
    Basic(Arc<Secret>),
    /// `client_secret_post`: id and secret in the form body.
    Post(Arc<Secret>),
    /// `private_key_jwt`: a freshly signed assertion.
    Assertion(Secret),
}

impl ClientAuth {
    /// Reads the secret or key file (an error names the credential and the file).
    pub(crate) fn new(def: &Credential) -> Result<Self, AuthError> {
        Ok(match &def.auth {
            AuthMethod::ClientSecretBasic(src) => {
                ClientAuth::Basic(ClientSecret::new(&def.name, src)?)
            }
            AuthMethod::ClientSecretPost(src) => {
                ClientAuth::Post(ClientSecret::new(&def.name, src)?)
            }
            AuthMethod::PrivateKeyJwt {
                private_key_file,
                signing_alg,
                key_id,
            } => {
                let alg = *signing_alg;
                let key = WatchedFile::open(
                    "private_key_file",
                    private_key_file,
                    Box::new(move |bytes: &[u8]| SigningKey::from_pem(bytes, alg)),
                )
                .map_err(|reason| AuthError::KeyFile {
                    credential: def.name.clone(),
                    path: private_key_file.clone(),
                    reason,
                })?;
                ClientAuth::PrivateKeyJwt {
                    key,
                    key_id: key_id.clone(),
                }
            }
        })
    }

    /// Material for one token request, and the version of the file it came from.
    /// Stats the secret or key file (re-reading it if changed) and, for
    /// `private_key_jwt`, signs a fresh assertion for `def.token_url`.
    pub(crate) fn material(&self, def: &Credential) -> Result<(Material, u64), String> {
        match self {
            ClientAuth::Basic(s) => s.current().map(|(s, v)| (Material::Basic(s), v)),
            ClientAuth::Post(s) => s.current().map(|(s, v)| (Material::Post(s), v)),
            ClientAuth::PrivateKeyJwt { key, key_id } => {
                let (key, version) = key.current()?;
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let assertion = jwt::client_assertion(
                    &key,
                    &def.client_id,
                    def.token_url.as_str(),
                    key_id.as_deref(),
                    now,
                    &jwt::new_jti()?,
                )?;
                Ok((Material::Assertion(Secret::new(assertion)), version))
            }
        }
    }

    /// Version of the secret or key file; changes when the file was rotated. Stats at
    /// most once per [`STAT_INTERVAL`]; inline secrets are always version 0.
    pub(crate) fn version(&self) -> u64 {
        match self {
            ClientAuth::Basic(s) | ClientAuth::Post(s) => s.version(),
            ClientAuth::PrivateKeyJwt { key, .. } => key.version(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::test_support::{credential, TempDir};

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
        def.auth = AuthMethod::ClientSecretBasic(SecretSource::File(path.clone()));
        let Err(err) = ClientAuth::new(&def) else {
            panic!("expected an error")
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("credential \"billing\": client_secret_file "),
            "{msg}"
        );
        assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
    }

    #[tokio::test(start_paused = true)]
    async fn secret_file_is_reread_after_it_changes() {
        let dir = TempDir::new();
        let path = dir.write("secret", "first\n");
        let mut def = credential("billing");
        def.auth = AuthMethod::ClientSecretPost(SecretSource::File(path.clone()));
        let auth = ClientAuth::new(&def).unwrap();

        let (m, v0) = auth.material(&def).unwrap();
        assert!(matches!(&m, Material::Post(s) if s.expose() == "first"));
        assert_eq!(auth.version(), v0);

        // Rotation: a new file swapped in (new inode, other length).
        dir.replace("secret", "second-secret\n");
        // Within a second of the last stat, version() does not look at the file.
        assert_eq!(auth.version(), v0);
        tokio::time::advance(STAT_INTERVAL).await;
        let v1 = auth.version();
        assert_ne!(v1, v0);
        // A token request always looks, and sees the new secret.
        let (m, v) = auth.material(&def).unwrap();
        assert!(matches!(&m, Material::Post(s) if s.expose() == "second-secret"));
        assert_eq!(v, v1);

        // Rewritten in place: a token request notices at once.
        std::fs::write(&path, "third\n").unwrap();
        let (m, v2) = auth.material(&def).unwrap();
        assert!(matches!(&m, Material::Post(s) if s.expose() == "third"));
        assert_ne!(v2, v1);

        // Gone: the token request fails naming the file; the value comes back with it.
        std::fs::remove_file(&path).unwrap();
        let err = auth.material(&def).unwrap_err();
        assert!(err.starts_with("client_secret_file "), "{err}");
        assert!(!err.contains("third"), "{err}");
        std::fs::write(&path, "fourth\n").unwrap();
        let (m, _) = auth.material(&def).unwrap();
        assert!(matches!(&m, Material::Post(s) if s.expose() == "fourth"));
        // Debug never shows it.
        assert!(!format!("{m:?}").contains("fourth"));
    }

    #[test]
    fn key_file_errors_name_the_file() {
        let dir = TempDir::new();
        let path = dir.write("key.pem", "not a key");
        let mut def = credential("signer");
        def.auth = AuthMethod::PrivateKeyJwt {
            private_key_file: path,
            signing_alg: None,
            key_id: None,
        };
        let Err(err) = ClientAuth::new(&def) else {
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
