//! Every file the config names, opened and checked the way `tollgate run` will use it,
//! before it serves: one function for `tollgate check`, `tollgate run` and the reload
//! watcher, so that what `check` accepts, `run` accepts.
//!
//! The list of files is the rules crate's ([`tollgate_rules::Config::files`]); each
//! [`FileKind`] is checked here by the loader the proxy itself uses (the token cache's
//! secret, key and CA readers in `auth`, `upstream::load_trust`), and each problem is
//! reported at the key naming the file: `FILE:LINE:COL: credentials.billing.ca_file:
//! /etc/ssl/idp.pem: ...`. Nothing here touches the network.
//!
//! A new kind of file (JWKS, htpasswd, service-account key, ...) is added to
//! `FileKind` in `rules/src/source.rs`, and this `match` then does not compile until it
//! says how to check it.

use crate::auth::{self, AuthError};
use crate::upstream;
use std::path::Path;
use tollgate_rules::{load::ProcessEnv, Config, FileKind, FileRef, Problem, Source};

/// Load and validate the config file, then check every file it names: what `run`
/// needs before it serves, and what a reload needs before it is applied. Every problem,
/// in file order: the file's own and those of the files named by the entries that were
/// valid on their own.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let loaded = tollgate_rules::load_with_source(path, &ProcessEnv);
    let (config, mut problems) = match loaded.result {
        Ok(config) => {
            let problems = check(&config.files(), &loaded.source);
            (Some(config), problems)
        }
        Err(errors) => {
            let mut problems = errors.0;
            problems.extend(check(&loaded.partial.files(), &loaded.source));
            (None, problems)
        }
    };
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            problems.sort_by_key(|p| (p.line, p.column));
            Err(problems)
        }
    }
}

/// Problems with the files in `files`, in file order, each at the key naming its file.
/// A credential's secret or key file and its `ca_file` are checked separately, so both
/// are reported when both are wrong.
pub fn check(files: &[FileRef<'_>], source: &Source) -> Vec<Problem> {
    let mut problems: Vec<Problem> = files
        .iter()
        .filter_map(|f| {
            let result = match f.kind {
                FileKind::ClientSecret(c) | FileKind::PrivateKey(c) => {
                    auth::check_client_auth(c).map_err(reason)
                }
                FileKind::CredentialCa(c) => auth::check_token_endpoint(c).map_err(reason),
                FileKind::UpstreamCa(_) => upstream::load_trust(f.path).map(drop),
            };
            result.err().map(|why| source.problem(&f.setting, why))
        })
        .collect();
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

/// What is wrong with the file, without the credential name (the setting names it).
fn reason(e: AuthError) -> String {
    match e {
        AuthError::SecretFile { path, reason, .. }
        | AuthError::KeyFile { path, reason, .. }
        | AuthError::CaFile { path, reason, .. } => format!("{}: {reason}", path.display()),
        AuthError::Client { reason, .. } => {
            format!("cannot build the token endpoint client: {reason}")
        }
        AuthError::Metrics(e) => format!("metrics: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tollgate_rules::load_str_with_source;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/fixtures");

    fn problems(yaml: &str) -> Vec<String> {
        crate::auth::install_crypto_provider();
        let loaded = load_str_with_source("t.yaml", yaml, &|_: &str| None);
        let config = loaded.result.expect("valid config");
        check(&config.files(), &loaded.source)
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn good_files_pass() {
        let dir = tempdir();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let yaml = format!(
            "credentials:
  a:
    token_url: https://idp.example/t
    client_id: a
    client_secret_file: {secret}
    ca_file: {FIXTURES}/ca.pem
  k:
    token_url: https://idp.example/t
    client_id: k
    auth_method: private_key_jwt
    private_key_file: {FIXTURES}/ec-p256-pkcs8.pem
routes:
  - name: r
    match: {{ hosts: [a.example] }}
    action: pass
    upstream: https://a.example
    upstream_ca_file: {FIXTURES}/ca.pem
",
            secret = secret.display()
        );
        assert_eq!(problems(&yaml), Vec::<String>::new());
    }

    /// Every kind of file, each broken, each reported at its key: the list of kinds in
    /// `Config::files` and this module's checks cannot drift apart unnoticed.
    #[test]
    fn every_file_kind_is_checked_and_located() {
        let dir = tempdir();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let not_pem = dir.join("not-pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let missing = dir.join("missing");
        let yaml = format!(
            "credentials:
  a:
    token_url: https://idp.example/t
    client_id: a
    client_secret_file: {empty}
    ca_file: {missing}
  k:
    token_url: https://idp.example/t
    client_id: k
    auth_method: private_key_jwt
    private_key_file: {not_pem}
routes:
  - name: r
    match: {{ hosts: [a.example] }}
    action: pass
    upstream: https://a.example
    upstream_ca_file: {not_pem}
",
            empty = empty.display(),
            missing = missing.display(),
            not_pem = not_pem.display(),
        );
        let ps = problems(&yaml);
        let want = [
            format!(
                "t.yaml:5:5: credentials.a.client_secret_file: {}: is empty",
                empty.display()
            ),
            format!(
                "t.yaml:6:5: credentials.a.ca_file: {}: No such file",
                missing.display()
            ),
            format!(
                "t.yaml:11:5: credentials.k.private_key_file: {}: ",
                not_pem.display()
            ),
            format!(
                "t.yaml:17:5: routes[0].upstream_ca_file: {} holds no certificate",
                not_pem.display()
            ),
        ];
        assert_eq!(ps.len(), want.len(), "{ps:#?}");
        for (p, w) in ps.iter().zip(&want) {
            assert!(p.starts_with(w.as_str()), "expected {w:?}, got {p:?}");
        }
    }

    /// A scratch directory, removed when dropped.
    struct Dir(std::path::PathBuf);

    impl std::ops::Deref for Dir {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir() -> Dir {
        let d = std::env::temp_dir().join(format!(
            "tollgate-preflight-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}
