//! Problems found *after* validation, at the key that caused them.
//!
//! Validation never opens the files a config names (a secret file, a key, a CA bundle):
//! the proxy does, and it finds some of them missing or unusable. [`Source`] keeps the
//! positions of the file that was loaded, so such a problem is reported like every other
//! one, `FILE:LINE:COL: credentials.billing.client_secret_file: ...`, at the line of the
//! key naming the file. [`FileRef`] lists every file a config names (one list, for
//! `tollgate check`, for `tollgate run`'s start-up checks and for the reload watcher),
//! each with the [`Setting`] that names it.
//!
//! [`Partial`] holds the credentials and routes that validated on their own, so their
//! files can be checked in the same pass as the problems elsewhere in the file.

use crate::load::Problem;
use crate::model::{
    AuthMethod, Callers, Config, Credential, CredentialKind, Grant, Interception, JwksSource,
    JwtCallers, PrivateKeyJwt, Route, SecretSource, TlsClient, TokenStore,
};
use crate::pos::{display, PosIndex, Seg, YPath};
use std::fmt;
use std::path::Path;

/// A key of the config file, by its path: `credentials.billing.ca_file`, `routes[2].upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Setting(YPath);

impl Setting {
    /// A top-level key (`drain_timeout`).
    pub fn top(key: &str) -> Setting {
        Setting(vec![Seg::Key(key.to_owned())])
    }

    /// The key `key` of the credential `name`.
    pub fn credential(name: &str, key: &str) -> Setting {
        Setting(vec![
            Seg::Key("credentials".to_owned()),
            Seg::Key(name.to_owned()),
            Seg::Key(key.to_owned()),
        ])
    }

    /// The key `key` of the route at `index` in `routes:` (file order).
    pub fn route(index: usize, key: &str) -> Setting {
        Setting(vec![
            Seg::Key("routes".to_owned()),
            Seg::Idx(index),
            Seg::Key(key.to_owned()),
        ])
    }

    /// A key below this one (`token_store.redis` -> `token_store.redis.password_file`).
    pub fn key(&self, key: &str) -> Setting {
        let mut p = self.0.clone();
        p.push(Seg::Key(key.to_owned()));
        Setting(p)
    }

    /// An item of the list at this key (`encryption_key_files[1]`).
    pub fn item(&self, index: usize) -> Setting {
        let mut p = self.0.clone();
        p.push(Seg::Idx(index));
        Setting(p)
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&display(&self.0))
    }
}

/// The positions of a loaded config file, kept to report problems found after validation.
#[derive(Debug, Default)]
pub struct Source {
    file: String,
    index: PosIndex,
}

impl Source {
    #[cfg(test)]
    fn new(file: &str, text: &str) -> Source {
        Source::from_index(file, PosIndex::build(text))
    }

    pub(crate) fn from_index(file: &str, index: PosIndex) -> Source {
        Source {
            file: file.to_owned(),
            index,
        }
    }

    /// An unreadable file: every setting is located at 1:1.
    pub(crate) fn empty(file: &str) -> Source {
        Source {
            file: file.to_owned(),
            index: PosIndex::default(),
        }
    }

    /// The file name problems carry (as given to `load`).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based line and column of `setting`'s key (or, when it is a list item, of the
    /// item); of its nearest written ancestor when the key is not in the file.
    pub fn locate(&self, setting: &Setting) -> (usize, usize) {
        let pos = match setting.0.last() {
            Some(Seg::Key(_)) => self.index.key(&setting.0),
            _ => self.index.value(&setting.0),
        };
        (pos.line, pos.column)
    }

    /// A problem at `setting`'s key, `FILE:LINE:COL: setting: message`.
    pub fn problem(&self, setting: &Setting, message: impl fmt::Display) -> Problem {
        let (line, column) = self.locate(setting);
        Problem {
            file: self.file.clone(),
            line,
            column,
            message: format!("{setting}: {message}"),
        }
    }
}

/// What a file named by the config holds, with what the proxy needs to read it the way
/// it will use it.
#[derive(Debug, Clone, Copy)]
pub enum FileKind<'a> {
    /// `client_secret_file`, or one entry of `client_secret_files`: a secret (UTF-8, not
    /// empty once trailing line breaks are removed).
    ClientSecret,
    /// `private_key_file` (`auth_method: private_key_jwt`): the PEM key assertions are
    /// signed with, usable with its `signing_alg`.
    PrivateKey(&'a PrivateKeyJwt),
    /// `certificate_file` (`private_key_jwt`): a PEM certificate of that key.
    Certificate(&'a PrivateKeyJwt),
    /// `client_assertion_file`: a JWT someone else renews; read for every token request.
    ClientAssertion,
    /// `client_cert_file` (mutual TLS): a PEM certificate chain, leaf first, valid now, of
    /// the key in `client_key_file` (read with it).
    ClientCertificate(&'a TlsClient),
    /// `client_key_file`: that certificate's PEM private key (checked with the
    /// certificate).
    ClientKey,
    /// `dpop.key_file`: a PEM P-256 private key (DPoP proofs are ES256).
    DpopKey,
    /// `service_account_file` (`grant: jwt_bearer`): a Google service account JSON key.
    ServiceAccount,
    /// `subject_token_file` (`grant: token_exchange`): read for every token request.
    SubjectToken,
    /// `value_file` (`kind: static`): the value sent, which must fit in a header.
    StaticValue,
    /// `credentials.*.ca_file`: extra trust for the token endpoint (and discovery).
    CredentialCa,
    /// `routes[*].upstream_ca_file`: extra trust for the route's upstream.
    UpstreamCa,
    /// `callers.jwt.jwks_file`: the JWK Set that signs caller tokens.
    Jwks,
    /// `callers.basic.htpasswd_file`: `user:bcrypt-hash` lines. `jwt_too`: JWT callers
    /// are configured as well, so the user name `token` is reserved.
    Htpasswd {
        /// `callers.jwt` is configured too.
        jwt_too: bool,
    },
    /// `interception.ca_cert_file`: the interception CA's PEM certificate (and chain).
    InterceptionCert(&'a Interception),
    /// `interception.ca_key_file`: that CA's PEM private key (read with the certificate:
    /// it must be the certificate's key).
    InterceptionKey,
    /// `token_store.redis.password_file`: the Redis password (read at start only).
    RedisPassword,
    /// `token_store.encryption_key_files[index]`: a 32-byte key; no two entries of
    /// `files` may hold the same key.
    EncryptionKey {
        /// Its position in the list.
        index: usize,
        /// The whole list.
        files: &'a [std::path::PathBuf],
    },
}

impl FileKind<'_> {
    /// Is the file read afresh for every token request (renewed by someone else, such as
    /// a projected Kubernetes service account token) rather than once and when it
    /// changes? Such files are checked like the others (the first token request would
    /// fail without them) but not watched: a change to one needs no reload.
    pub fn per_request(&self) -> bool {
        matches!(self, FileKind::ClientAssertion | FileKind::SubjectToken)
    }

    /// Does the reload watcher watch it? Not the [per-request](Self::per_request) files
    /// (a change there needs no reload), nor the Redis `password_file` (it takes effect
    /// on restart only). Everything else is re-read by a reload when it changes.
    pub fn watched(&self) -> bool {
        !self.per_request() && !matches!(self, FileKind::RedisPassword)
    }
}

/// One file the config names.
#[derive(Debug, Clone)]
pub struct FileRef<'a> {
    /// The key naming it, for problems.
    pub setting: Setting,
    /// The path as configured (after `${VAR}` substitution).
    pub path: &'a Path,
    /// What it holds.
    pub kind: FileKind<'a>,
}

/// Every file one credential reads, in this order: the grant's file (service account,
/// subject token), the client's (secrets, key, certificate, assertion), the CA file; a
/// static credential's value file.
pub(crate) fn credential_files(c: &Credential) -> Vec<FileRef<'_>> {
    let at = |key: &str| Setting::credential(&c.name, key);
    let mut out = Vec::new();
    let o = match &c.kind {
        CredentialKind::Static { value_file } => {
            return vec![FileRef {
                setting: at("value_file"),
                path: value_file,
                kind: FileKind::StaticValue,
            }]
        }
        CredentialKind::OAuth2(o) => o,
    };
    match &o.grant {
        Grant::JwtBearer(j) => out.push(FileRef {
            setting: at("service_account_file"),
            path: &j.service_account_file,
            kind: FileKind::ServiceAccount,
        }),
        Grant::TokenExchange(t) => out.push(FileRef {
            setting: at("subject_token_file"),
            path: &t.subject_token_file,
            kind: FileKind::SubjectToken,
        }),
        Grant::ClientCredentials(_) => {}
    }
    if let Some(client) = o.grant.client() {
        match &client.auth {
            AuthMethod::ClientSecretBasic { secret, .. } | AuthMethod::ClientSecretPost(secret) => {
                match secret {
                    SecretSource::Inline(_) => {}
                    SecretSource::File(p) => out.push(FileRef {
                        setting: at("client_secret_file"),
                        path: p,
                        kind: FileKind::ClientSecret,
                    }),
                    SecretSource::Files(ps) => {
                        out.extend(ps.iter().enumerate().map(|(i, p)| FileRef {
                            setting: at("client_secret_files").item(i),
                            path: p,
                            kind: FileKind::ClientSecret,
                        }))
                    }
                }
            }
            AuthMethod::PrivateKeyJwt(k) => {
                out.push(FileRef {
                    setting: at("private_key_file"),
                    path: &k.private_key_file,
                    kind: FileKind::PrivateKey(k),
                });
                if let Some(cert) = &k.certificate {
                    out.push(FileRef {
                        setting: at("certificate_file"),
                        path: &cert.file,
                        kind: FileKind::Certificate(k),
                    });
                }
            }
            AuthMethod::ClientAssertionFile(p) => out.push(FileRef {
                setting: at("client_assertion_file"),
                path: p,
                kind: FileKind::ClientAssertion,
            }),
            AuthMethod::TlsClientAuth(t) | AuthMethod::SelfSignedTlsClientAuth(t) => {
                out.push(FileRef {
                    setting: at("client_cert_file"),
                    path: &t.cert_file,
                    kind: FileKind::ClientCertificate(t),
                });
                out.push(FileRef {
                    setting: at("client_key_file"),
                    path: &t.key_file,
                    kind: FileKind::ClientKey,
                });
            }
        }
    }
    if let Some(d) = &o.dpop {
        out.push(FileRef {
            setting: at("dpop").key("key_file"),
            path: &d.key_file,
            kind: FileKind::DpopKey,
        });
    }
    if let Some(ca) = &o.ca_file {
        out.push(FileRef {
            setting: at("ca_file"),
            path: ca,
            kind: FileKind::CredentialCa,
        });
    }
    out
}

/// Every file named by these credentials, (file-index, route) pairs, callers,
/// interception CA and token store, in a stable order.
fn files_of<'a>(
    credentials: impl Iterator<Item = &'a Credential>,
    routes: impl Iterator<Item = (usize, &'a Route)>,
    callers: Option<&'a Callers>,
    interception: Option<&'a Interception>,
    token_store: Option<&'a TokenStore>,
) -> Vec<FileRef<'a>> {
    let mut out = Vec::new();
    for c in credentials {
        out.extend(credential_files(c));
    }
    for (i, r) in routes {
        if let Some(ca) = &r.upstream_ca_file {
            out.push(FileRef {
                setting: Setting::route(i, "upstream_ca_file"),
                path: ca,
                kind: FileKind::UpstreamCa,
            });
        }
    }
    if let Some(c) = callers {
        if let Some(JwtCallers {
            keys: JwksSource::File(p),
            ..
        }) = &c.jwt
        {
            out.push(FileRef {
                setting: Setting::top("callers").key("jwt").key("jwks_file"),
                path: p,
                kind: FileKind::Jwks,
            });
        }
        if let Some(b) = &c.basic {
            out.push(FileRef {
                setting: Setting::top("callers").key("basic").key("htpasswd_file"),
                path: &b.htpasswd_file,
                kind: FileKind::Htpasswd {
                    jwt_too: c.jwt.is_some(),
                },
            });
        }
    }
    if let Some(i) = interception {
        out.push(FileRef {
            setting: Setting::top("interception").key("ca_cert_file"),
            path: &i.ca_cert_file,
            kind: FileKind::InterceptionCert(i),
        });
        out.push(FileRef {
            setting: Setting::top("interception").key("ca_key_file"),
            path: &i.ca_key_file,
            kind: FileKind::InterceptionKey,
        });
    }
    if let Some(ts) = token_store {
        if let Some(p) = &ts.redis.password_file {
            out.push(FileRef {
                setting: Setting::top("token_store")
                    .key("redis")
                    .key("password_file"),
                path: p,
                kind: FileKind::RedisPassword,
            });
        }
        let files = &ts.encryption_key_files;
        out.extend(files.iter().enumerate().map(|(index, p)| {
            FileRef {
                setting: Setting::top("token_store")
                    .key("encryption_key_files")
                    .item(index),
                path: p,
                kind: FileKind::EncryptionKey { index, files },
            }
        }));
    }
    out
}

impl Config {
    /// Every file this config names: what `tollgate check` opens, what `tollgate run`
    /// checks before serving, and (except the [per-request](FileKind::per_request) ones)
    /// what the reload watcher watches.
    pub fn files(&self) -> Vec<FileRef<'_>> {
        files_of(
            self.credentials.values(),
            self.routes.iter().enumerate(),
            self.callers.as_ref(),
            self.interception.as_ref(),
            self.token_store.as_ref(),
        )
    }
}

/// The entries that validated on their own, whether or not the whole file did, so that
/// their files can be checked in the same pass.
#[derive(Debug, Clone, Default)]
pub struct Partial {
    /// Valid credentials, in file order.
    pub credentials: Vec<Credential>,
    /// Valid routes with their index in `routes:`.
    pub routes: Vec<(usize, Route)>,
    /// `callers:`, when it was valid.
    pub callers: Option<Callers>,
    /// `interception:`, when it was valid.
    pub interception: Option<Interception>,
    /// `token_store:`, when it was valid.
    pub token_store: Option<TokenStore>,
}

impl Partial {
    /// Every file these entries name (as [`Config::files`]).
    pub fn files(&self) -> Vec<FileRef<'_>> {
        files_of(
            self.credentials.iter(),
            self.routes.iter().map(|(i, r)| (*i, r)),
            self.callers.as_ref(),
            self.interception.as_ref(),
            self.token_store.as_ref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_display_like_problem_paths() {
        assert_eq!(
            Setting::credential("billing", "ca_file").to_string(),
            "credentials.billing.ca_file"
        );
        assert_eq!(
            Setting::route(2, "upstream_ca_file").to_string(),
            "routes[2].upstream_ca_file"
        );
        assert_eq!(
            Setting::top("token_store")
                .key("encryption_key_files")
                .item(1)
                .to_string(),
            "token_store.encryption_key_files[1]"
        );
    }

    #[test]
    fn locates_keys_and_list_items() {
        let text = "credentials:\n  a:\n    ca_file: x\nroutes:\n  - name: r\n    upstream_ca_file: y\nlist:\n  files: [p, q]\n";
        let s = Source::new("t.yaml", text);
        assert_eq!(s.locate(&Setting::credential("a", "ca_file")), (3, 5));
        assert_eq!(s.locate(&Setting::route(0, "upstream_ca_file")), (6, 5));
        assert_eq!(
            s.locate(&Setting::top("list").key("files").item(1)),
            (8, 14)
        );
        // Not written: the nearest ancestor.
        assert_eq!(s.locate(&Setting::credential("a", "nope")), (3, 5));
        let p = s.problem(&Setting::credential("a", "ca_file"), "cannot read x");
        assert_eq!(
            p.to_string(),
            "t.yaml:3:5: credentials.a.ca_file: cannot read x"
        );
        assert_eq!(
            Source::empty("gone.yaml").locate(&Setting::top("x")),
            (1, 1)
        );
    }
}
