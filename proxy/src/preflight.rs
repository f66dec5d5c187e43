//! Every file the config names, opened and checked the way `tollgate run` will use it,
//! before it serves: one function for `tollgate check`, `tollgate run` and a reload, so
//! that what `check` accepts, `run` accepts.
//!
//! The list of files is the rules crate's ([`tollgate_rules::Config::files`]); each
//! [`FileKind`] is checked here by the loader the proxy itself uses (`auth::check`, the
//! token cache's readers and parsers, the token store's password and key readers;
//! `upstream::load_trust`; the callers' JWKS and htpasswd readers; the interception CA's
//! loader), and each problem is reported at the key naming the file: `FILE:LINE:COL:
//! credentials.billing.ca_file: /etc/ssl/idp.pem: ...`. Nothing here touches the network:
//! an `issuer` is discovered, a `jwks_url` fetched and Redis reached when the proxy
//! starts serving.
//!
//! Files read afresh for every token request (`client_assertion_file`,
//! `subject_token_file`) are checked too, with the rules a token request applies: the
//! first token request would fail without them. (They are not watched for reloads.)
//!
//! A new kind of file is added to `FileKind` in `rules/src/source.rs`, and this `match`
//! then does not compile until it says how to check it.

use crate::{auth, callers, intercept, upstream};
use std::path::Path;
use tollgate_rules::{load::ProcessEnv, Config, FileKind, FileRef, Problem, Route, Source};

/// Load and validate the config file, then check every file it names: what `run`
/// needs before it serves, and what a reload needs before it is applied. Every problem,
/// in file order: the file's own and those of the files named by the entries that were
/// valid on their own.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let loaded = tollgate_rules::load_with_source(path, &ProcessEnv);
    let (config, mut problems) = match loaded.result {
        Ok(config) => {
            let routes: Vec<&Route> = config.routes.iter().collect();
            let problems = check(&config.files(), &routes, &loaded.source);
            (Some(config), problems)
        }
        Err(errors) => {
            let mut problems = errors.0;
            let routes: Vec<&Route> = loaded.partial.routes.iter().map(|(_, r)| r).collect();
            problems.extend(check(&loaded.partial.files(), &routes, &loaded.source));
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
/// Each file is checked on its own, so every bad file is reported, each at its key (a
/// credential's key file and its `ca_file`; both interception files). `routes`: the
/// routes whose `connect: intercept` the interception CA must be able to sign for.
pub fn check(files: &[FileRef<'_>], routes: &[&Route], source: &Source) -> Vec<Problem> {
    let mut problems = Vec::new();
    for f in files {
        let reasons: Vec<String> = match f.kind {
            FileKind::ClientSecret | FileKind::ClientAssertion | FileKind::SubjectToken => {
                auth::check::secret(f.path).err().into_iter().collect()
            }
            FileKind::PrivateKey(k) => auth::check::private_key(f.path, k)
                .err()
                .into_iter()
                .collect(),
            FileKind::Certificate(k) => auth::check::certificate(f.path, k)
                .err()
                .into_iter()
                .collect(),
            FileKind::ClientCertificate(t) => auth::check::client_certificate(f.path, t)
                .err()
                .into_iter()
                .collect(),
            FileKind::ClientKey => auth::check::client_key(f.path).err().into_iter().collect(),
            FileKind::DpopKey => auth::check::dpop_key(f.path).err().into_iter().collect(),
            FileKind::ServiceAccount => auth::check::service_account(f.path)
                .err()
                .into_iter()
                .collect(),
            FileKind::StaticValue => auth::check::static_value(f.path)
                .err()
                .into_iter()
                .collect(),
            FileKind::CredentialCa => auth::check::ca_file(f.path).err().into_iter().collect(),
            FileKind::UpstreamCa => upstream::load_trust(f.path).err().into_iter().collect(),
            FileKind::Jwks => callers::check_jwks_file(f.path).err().into_iter().collect(),
            FileKind::Htpasswd { jwt_too } => callers::read_htpasswd(f.path, jwt_too)
                .err()
                .unwrap_or_default(),
            // The CA is loaded as a pair (the key must be the certificate's) and checked
            // against the routes it signs for; its problems come located at their keys
            // (`interception.ca_cert_file`, `ca_key_file`, a route's `connect`).
            FileKind::InterceptionCert(i) => {
                problems.extend(intercept::check_parts(i, routes.iter().copied()));
                Vec::new()
            }
            // Read with the certificate, above.
            FileKind::InterceptionKey => Vec::new(),
            FileKind::RedisPassword => auth::check::redis_password(f.path)
                .err()
                .into_iter()
                .collect(),
            FileKind::EncryptionKey { index, files } => auth::check::encryption_key(index, files)
                .err()
                .into_iter()
                .collect(),
        };
        problems.extend(
            reasons
                .into_iter()
                .map(|why| source.problem(&f.setting, why)),
        );
    }
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use tollgate_rules::load_str_with_source;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/fixtures");

    /// Every problem `load` would report for this text: validation's, then the files'.
    fn problems(yaml: &str) -> Vec<String> {
        crate::auth::install_crypto_provider();
        let loaded = load_str_with_source("t.yaml", yaml, &|_: &str| None);
        let mut ps = match &loaded.result {
            Ok(config) => {
                let routes: Vec<&Route> = config.routes.iter().collect();
                check(&config.files(), &routes, &loaded.source)
            }
            Err(e) => {
                let routes: Vec<&Route> = loaded.partial.routes.iter().map(|(_, r)| r).collect();
                let mut ps = e.0.clone();
                ps.extend(check(&loaded.partial.files(), &routes, &loaded.source));
                ps
            }
        };
        ps.sort_by_key(|p| (p.line, p.column));
        ps.iter().map(|p| p.to_string()).collect()
    }

    fn fixture(name: &str) -> String {
        format!("{FIXTURES}/{name}")
    }

    /// The files of [`config`], all usable; a test breaks some of them.
    struct Files {
        dir: Dir,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempdir();
            std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
            std::fs::write(dir.join("previous"), "old-s3cret\n").unwrap();
            std::fs::write(dir.join("assertion"), "eyJ.assertion.sig\n").unwrap();
            std::fs::write(dir.join("subject"), "eyJ.subject.sig\n").unwrap();
            std::fs::write(dir.join("value"), "sk_test_123\n").unwrap();
            std::fs::write(dir.join("sa.json"), service_account(|_| {})).unwrap();
            let point = std::fs::read(fixture("ec-p256-public.bin")).unwrap();
            let jwks = serde_json::json!({"keys": [{
                "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }]});
            std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
            let hash = bcrypt::hash("pw", 4).unwrap();
            std::fs::write(dir.join("htpasswd"), format!("alice:{hash}\n")).unwrap();
            let ca = crate::intercept::init::generate(
                std::time::SystemTime::now(),
                std::time::Duration::from_secs(86400 * 30),
                None,
            )
            .unwrap();
            crate::intercept::init::write(&dir, &ca, true).unwrap();
            std::fs::write(dir.join("redis-password"), "r3dis\n").unwrap();
            std::fs::write(dir.join("key1"), "ab".repeat(32)).unwrap();
            std::fs::write(dir.join("key2"), "cd".repeat(32)).unwrap();
            Files { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.join(name).display().to_string()
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.dir.join(name), text).unwrap();
        }

        /// A config naming every kind of file there is.
        fn config(&self) -> String {
            let p = |n| self.path(n);
            format!(
                "credentials:
  a:
    token_url: https://idp.example/t
    client_id: a
    client_secret_file: {secret}
    ca_file: {ca}
  two:
    token_url: https://idp.example/t
    client_id: two
    client_secret_files: [{secret}, {previous}]
  k:
    token_url: https://idp.example/t
    client_id: k
    auth_method: private_key_jwt
    private_key_file: {key}
    certificate_file: {cert}
  fed:
    token_url: https://idp.example/t
    client_id: fed
    auth_method: client_assertion_file
    client_assertion_file: {assertion}
  sa:
    grant: jwt_bearer
    service_account_file: {sa}
    scopes: [x]
  sts:
    token_url: https://idp.example/t
    grant: token_exchange
    subject_token_file: {subject}
    subject_token_type: urn:ietf:params:oauth:token-type:jwt
  api:
    kind: static
    value_file: {value}
callers:
  jwt:
    issuer: https://issuer.example
    audiences: [tollgate]
    jwks_file: {jwks}
  basic:
    htpasswd_file: {htpasswd}
interception:
  ca_cert_file: {ca_crt}
  ca_key_file: {ca_key}
routes:
  - name: r
    match: {{ hosts: [a.example] }}
    action: pass
    upstream: https://a.example
    upstream_ca_file: {ca}
  - name: i
    match: {{ hosts: [i.example] }}
    action: inject
    credential: api
    connect: intercept
token_store:
  redis:
    url: redis://127.0.0.1:6379
    password_file: {redis_password}
  encryption_key_files: [{key1}, {key2}]
",
                secret = p("secret"),
                previous = p("previous"),
                ca = fixture("ca.pem"),
                key = fixture("rsa-2048-pkcs8.pem"),
                cert = fixture("rsa-2048-cert.pem"),
                assertion = p("assertion"),
                sa = p("sa.json"),
                subject = p("subject"),
                value = p("value"),
                jwks = p("jwks.json"),
                htpasswd = p("htpasswd"),
                ca_crt = p("ca.crt"),
                ca_key = p("ca.key"),
                redis_password = p("redis-password"),
                key1 = p("key1"),
                key2 = p("key2"),
            )
        }
    }

    /// A Google service account key file, changed by `mutate`.
    fn service_account(
        mutate: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> String {
        let mut v = serde_json::json!({
            "type": "service_account",
            "private_key_id": "0123abcd",
            "private_key": std::fs::read_to_string(fixture("rsa-2048-pkcs8.pem")).unwrap(),
            "client_email": "egress@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        mutate(v.as_object_mut().unwrap());
        v.to_string()
    }

    /// `t.yaml:LINE:COL:` of the first `key:` at or below the line starting with `after`.
    fn at(yaml: &str, after: &str, key: &str) -> String {
        find(yaml, after, &format!("{key}:"))
    }

    /// `t.yaml:LINE:COL:` of the first `text` at or below the line starting with `after`.
    fn find(yaml: &str, after: &str, text: &str) -> String {
        let lines: Vec<&str> = yaml.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.starts_with(after))
            .expect("anchor");
        for (i, l) in lines.iter().enumerate().skip(start) {
            if let Some(c) = l.find(text) {
                return format!("t.yaml:{}:{}:", i + 1, c + 1);
            }
        }
        panic!("{text:?} not found below {after:?}");
    }

    #[test]
    fn good_files_pass() {
        let f = Files::new();
        assert_eq!(problems(&f.config()), Vec::<String>::new());
    }

    /// Every kind of file, each broken, each reported at its key, all in one pass: the
    /// list of kinds in `Config::files` and this module's checks cannot drift apart
    /// unnoticed.
    #[test]
    fn every_file_kind_is_checked_and_located() {
        let f = Files::new();
        let yaml = f
            .config()
            .replace(&f.path("previous"), &f.path("gone-previous"))
            .replace(&fixture("ca.pem"), &f.path("not-pem"))
            .replace(&fixture("rsa-2048-pkcs8.pem"), &f.path("not-pem"))
            .replace(&fixture("rsa-2048-cert.pem"), &f.path("not-pem"));
        f.write("not-pem", "hello\n");
        f.write("secret", "\n");
        std::fs::remove_file(f.dir.join("assertion")).unwrap();
        f.write(
            "sa.json",
            &service_account(|m| drop(m.remove("client_email"))),
        );
        f.write("subject", "");
        f.write("value", "a\nb\n");
        std::fs::remove_file(f.dir.join("jwks.json")).unwrap();
        f.write(
            "htpasswd",
            "alice:{SHA}abc\ntoken:$2y$04$abcdefghijklmnopqrstuu\n",
        );
        f.write("ca.crt", "hello\n");
        std::fs::remove_file(f.dir.join("ca.key")).unwrap();
        f.write("redis-password", "\n");
        f.write("key2", &format!("{}\n", "ab".repeat(32)));
        let ps = problems(&yaml);
        let want = [
            format!(
                "{} credentials.a.client_secret_file: {}: is empty",
                at(&yaml, "  a:", "client_secret_file"),
                f.path("secret")
            ),
            format!(
                "{} credentials.a.ca_file: {}: contains no PEM certificate",
                at(&yaml, "  a:", "ca_file"),
                f.path("not-pem")
            ),
            format!(
                "{} credentials.two.client_secret_files[0]: {}: is empty",
                find(&yaml, "  two:", &f.path("secret")),
                f.path("secret")
            ),
            format!(
                "{} credentials.two.client_secret_files[1]: {}: ",
                find(&yaml, "  two:", &f.path("gone-previous")),
                f.path("gone-previous")
            ),
            format!(
                "{} credentials.k.private_key_file: {}: no PEM private key found",
                at(&yaml, "  k:", "private_key_file"),
                f.path("not-pem")
            ),
            format!(
                "{} credentials.k.certificate_file: {}: no PEM certificate found",
                at(&yaml, "  k:", "certificate_file"),
                f.path("not-pem")
            ),
            format!(
                "{} credentials.fed.client_assertion_file: {}: ",
                at(&yaml, "  fed:", "client_assertion_file"),
                f.path("assertion")
            ),
            format!(
                "{} credentials.sa.service_account_file: {}: lacks `client_email`",
                at(&yaml, "  sa:", "service_account_file"),
                f.path("sa.json")
            ),
            format!(
                "{} credentials.sts.subject_token_file: {}: is empty",
                at(&yaml, "  sts:", "subject_token_file"),
                f.path("subject")
            ),
            format!(
                "{} credentials.api.value_file: {}: holds characters not allowed",
                at(&yaml, "  api:", "value_file"),
                f.path("value")
            ),
            format!(
                "{} callers.jwt.jwks_file: {}: ",
                at(&yaml, "callers:", "jwks_file"),
                f.path("jwks.json")
            ),
            format!(
                "{} callers.basic.htpasswd_file: {}: line 1: user \"alice\": SHA-1",
                at(&yaml, "callers:", "htpasswd_file"),
                f.path("htpasswd")
            ),
            format!(
                "{} callers.basic.htpasswd_file: {}: line 2: user \"token\" is reserved",
                at(&yaml, "callers:", "htpasswd_file"),
                f.path("htpasswd")
            ),
            format!(
                "{} interception.ca_cert_file: {} holds no PEM certificate",
                at(&yaml, "interception:", "ca_cert_file"),
                f.path("ca.crt")
            ),
            format!(
                "{} interception.ca_key_file: cannot read {}",
                at(&yaml, "interception:", "ca_key_file"),
                f.path("ca.key")
            ),
            format!(
                "{} routes[0].upstream_ca_file: {} holds no certificate",
                at(&yaml, "  - name: r", "upstream_ca_file"),
                f.path("not-pem")
            ),
            format!(
                "{} token_store.redis.password_file: {}: empty",
                at(&yaml, "token_store:", "password_file"),
                f.path("redis-password")
            ),
            format!(
                "{} token_store.encryption_key_files[1]: {}: holds the same key as encryption_key_files[0] {}",
                find(&yaml, "token_store:", &f.path("key2")),
                f.path("key2"),
                f.path("key1")
            ),
        ];
        assert_eq!(ps.len(), want.len(), "{ps:#?}");
        for (p, w) in ps.iter().zip(&want) {
            assert!(p.starts_with(w.as_str()), "expected {w:?}, got {p:?}");
        }
    }

    /// A file with problems of its own still has the files of its valid entries checked.
    #[test]
    fn files_of_valid_entries_are_checked_when_the_config_has_problems() {
        let f = Files::new();
        f.write("ca.crt", "hello\n");
        std::fs::remove_file(f.dir.join("jwks.json")).unwrap();
        let yaml = f.config().replace(
            "token_store:\n",
            "  - name: broken\n    match: { hosts: [b.example] }\ntoken_store:\n",
        );
        let ps = problems(&yaml);
        assert_eq!(ps.len(), 3, "{ps:#?}");
        assert!(ps[0].contains("callers.jwt.jwks_file"), "{ps:#?}");
        assert!(ps[1].contains("interception.ca_cert_file"), "{ps:#?}");
        assert!(ps[2].contains("routes[2]: missing `action`"), "{ps:#?}");
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
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d =
            std::env::temp_dir().join(format!("tollgate-preflight-{}-{n}", std::process::id(),));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}
