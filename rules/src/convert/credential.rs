//! One entry of `credentials:` -> [`Credential`].
//!
//! The keys a credential may have depend on its `kind`, `grant` and `auth_method`; a key
//! given where it does nothing is a problem at that key, saying who uses it. The order:
//! kind (static or OAuth 2), then the token endpoint (`token_url`/`issuer`), the grant
//! and its keys, the client and its authentication, and the keys every grant shares.

use super::{child, Checker};
use crate::file::{
    AuthMethodFile, BasicEncodingFile, CredentialFile, DpopFile, GrantFile, KindFile,
    SigningAlgFile, RESERVED_PARAMS,
};
use crate::model::{
    AuthMethod, BasicEncoding, CertificateRef, Client, Credential, CredentialKind, Dpop, Endpoint,
    Grant, JwtBearer, OAuth2, PrivateKeyJwt, Secret, SecretSource, SigningAlg, Thumbprints,
    TlsClient, TokenExchange,
};
use crate::pos::Seg;
use crate::values;
use std::collections::BTreeMap;

/// Most secrets a credential may rotate between (`client_secret_files`).
const MAX_SECRET_FILES: usize = 2;

/// Keys that belong to the client and its authentication.
const CLIENT_KEYS: &[&str] = &[
    "client_id",
    "auth_method",
    "client_secret",
    "client_secret_file",
    "client_secret_files",
    "basic_encoding",
    "private_key_file",
    "signing_alg",
    "key_id",
    "certificate_file",
    "x5t",
    "client_assertion_file",
    "client_cert_file",
    "client_key_file",
];

/// Keys of `grant: jwt_bearer` alone.
const JWT_BEARER_KEYS: &[&str] = &["service_account_file", "target_audience"];

/// Keys of `grant: token_exchange` alone.
const TOKEN_EXCHANGE_KEYS: &[&str] = &[
    "subject_token_file",
    "subject_token_type",
    "requested_token_type",
];

/// The keys present in `f` (other than `kind`), by name.
fn present(f: &CredentialFile) -> Vec<&'static str> {
    let keys = [
        ("value_file", f.value_file.is_some()),
        ("grant", f.grant.is_some()),
        ("token_url", f.token_url.is_some()),
        ("issuer", f.issuer.is_some()),
        ("client_id", f.client_id.is_some()),
        ("client_secret", f.client_secret.is_some()),
        ("client_secret_file", f.client_secret_file.is_some()),
        ("client_secret_files", f.client_secret_files.is_some()),
        ("auth_method", f.auth_method.is_some()),
        ("basic_encoding", f.basic_encoding.is_some()),
        ("private_key_file", f.private_key_file.is_some()),
        ("signing_alg", f.signing_alg.is_some()),
        ("key_id", f.key_id.is_some()),
        ("certificate_file", f.certificate_file.is_some()),
        ("x5t", f.x5t.is_some()),
        ("assertion_audience", f.assertion_audience.is_some()),
        ("client_assertion_file", f.client_assertion_file.is_some()),
        ("client_cert_file", f.client_cert_file.is_some()),
        ("client_key_file", f.client_key_file.is_some()),
        ("dpop", f.dpop.is_some()),
        ("service_account_file", f.service_account_file.is_some()),
        ("target_audience", f.target_audience.is_some()),
        ("subject_token_file", f.subject_token_file.is_some()),
        ("subject_token_type", f.subject_token_type.is_some()),
        ("requested_token_type", f.requested_token_type.is_some()),
        ("scopes", f.scopes.is_some()),
        ("audience", f.audience.is_some()),
        ("resource", f.resource.is_some()),
        ("params", f.params.is_some()),
        ("ca_file", f.ca_file.is_some()),
    ];
    keys.iter().filter(|(_, p)| *p).map(|(k, _)| *k).collect()
}

pub(super) fn credential(
    c: &mut Checker<'_>,
    base: &[Seg],
    name: &str,
    f: CredentialFile,
) -> Option<Credential> {
    let kind = match f.kind.unwrap_or(KindFile::Oauth2) {
        KindFile::Static => static_value(c, base, &f)?,
        KindFile::Oauth2 => CredentialKind::OAuth2(Box::new(oauth2(c, base, f)?)),
    };
    Some(Credential {
        name: name.to_owned(),
        kind,
    })
}

/// `kind: static`: `value_file` and nothing else.
fn static_value(c: &mut Checker<'_>, base: &[Seg], f: &CredentialFile) -> Option<CredentialKind> {
    let mut ok = true;
    for key in present(f) {
        if key != "value_file" {
            c.node_err(
                &child(base, key),
                format!(
                    "`kind: static` uses only `value_file`; `{key}` is for OAuth 2 credentials"
                ),
            );
            ok = false;
        }
    }
    let value_file = match &f.value_file {
        Some(raw) => c.file_path(&child(base, "value_file"), raw),
        None => {
            c.node_err(base, "`kind: static` needs `value_file`");
            None
        }
    };
    let value_file = value_file?;
    ok.then_some(CredentialKind::Static { value_file })
}

/// Records "`key` does nothing here" for each of `keys` present in `f`.
fn unused(
    c: &mut Checker<'_>,
    base: &[Seg],
    f: &CredentialFile,
    keys: &[&str],
    why: impl Fn(&str) -> String,
) -> bool {
    let mut ok = true;
    for key in present(f) {
        if keys.contains(&key) {
            c.node_err(&child(base, key), why(key));
            ok = false;
        }
    }
    ok
}

fn optional_text(
    c: &mut Checker<'_>,
    base: &[Seg],
    key: &str,
    v: &Option<String>,
    ok: &mut bool,
) -> Option<String> {
    match v {
        Some(raw) => {
            let r = c.text(&child(base, key), raw);
            *ok &= r.is_some();
            r
        }
        None => None,
    }
}

fn optional_file(
    c: &mut Checker<'_>,
    base: &[Seg],
    key: &str,
    v: &Option<String>,
    ok: &mut bool,
) -> Option<std::path::PathBuf> {
    match v {
        Some(raw) => {
            let r = c.file_path(&child(base, key), raw);
            *ok &= r.is_some();
            r
        }
        None => None,
    }
}

fn oauth2(c: &mut Checker<'_>, base: &[Seg], f: CredentialFile) -> Option<OAuth2> {
    let mut ok = true;
    let p = |k: &str| child(base, k);
    if f.value_file.is_some() {
        c.node_err(
            &p("value_file"),
            "only `kind: static` uses `value_file` (this credential gets OAuth 2 tokens)",
        );
        ok = false;
    }
    let grant_kind = f.grant.unwrap_or(GrantFile::ClientCredentials);

    // The token endpoint.
    let endpoint = match grant_kind {
        GrantFile::JwtBearer => {
            if f.issuer.is_some() {
                c.node_err(
                    &p("issuer"),
                    "`grant: jwt_bearer` sends the assertion to the service account's `token_uri` \
                     (or `token_url`); it does not use `issuer`",
                );
                ok = false;
            }
            match &f.token_url {
                Some(raw) => c
                    .parse(&p("token_url"), raw, values::parse_token_url)
                    .map(Endpoint::TokenUrl),
                None => Some(Endpoint::ServiceAccount),
            }
        }
        _ => match (&f.token_url, &f.issuer) {
            (Some(_), Some(_)) => {
                c.node_err(
                    &p("issuer"),
                    "give either `token_url` or `issuer` (discovery finds the token URL), not both",
                );
                None
            }
            (Some(raw), None) => c
                .parse(&p("token_url"), raw, values::parse_token_url)
                .map(Endpoint::TokenUrl),
            (None, Some(raw)) => c
                .parse(&p("issuer"), raw, values::parse_issuer)
                .map(Endpoint::Issuer),
            (None, None) => {
                c.node_err(
                    base,
                    "missing `token_url` (or `issuer`, to find it by OIDC discovery)",
                );
                None
            }
        },
    };

    // The grant and the client.
    let grant = match grant_kind {
        GrantFile::ClientCredentials => {
            ok &= unused(c, base, &f, JWT_BEARER_KEYS, |k| {
                format!("only `grant: jwt_bearer` uses `{k}`")
            });
            ok &= unused(c, base, &f, TOKEN_EXCHANGE_KEYS, |k| {
                format!("only `grant: token_exchange` uses `{k}`")
            });
            client(c, base, &f).map(Grant::ClientCredentials)
        }
        GrantFile::JwtBearer => jwt_bearer(c, base, &f).map(Grant::JwtBearer),
        GrantFile::TokenExchange => {
            ok &= unused(c, base, &f, JWT_BEARER_KEYS, |k| {
                format!("only `grant: jwt_bearer` uses `{k}`")
            });
            token_exchange(c, base, &f).map(Grant::TokenExchange)
        }
    };

    let mut scopes = Vec::new();
    if let Some(list) = &f.scopes {
        for (i, raw) in list.iter().enumerate() {
            match c.parse(&child(&p("scopes"), i), raw, |s| {
                values::check_scope(s).map(|()| s.to_owned())
            }) {
                Some(s) => scopes.push(s),
                None => ok = false,
            }
        }
    }
    let audience = optional_text(c, base, "audience", &f.audience, &mut ok);
    let resource = optional_text(c, base, "resource", &f.resource, &mut ok);
    let params = params(c, base, f.params, &mut ok);
    let ca_file = optional_file(c, base, "ca_file", &f.ca_file, &mut ok);
    let dpop = match &f.dpop {
        None => None,
        Some(d) => {
            let r = dpop(c, &p("dpop"), d);
            ok &= r.is_some();
            r
        }
    };

    let cred = OAuth2 {
        endpoint: endpoint?,
        grant: grant?,
        scopes,
        audience,
        resource,
        params,
        ca_file,
        dpop,
    };
    ok.then_some(cred)
}

/// `dpop:`: its `key_file` (checked to be a P-256 key when the files are read).
fn dpop(c: &mut Checker<'_>, base: &[Seg], d: &DpopFile) -> Option<Dpop> {
    match &d.key_file {
        Some(raw) => c
            .file_path(&child(base, "key_file"), raw)
            .map(|key_file| Dpop { key_file }),
        None => {
            c.node_err(
                base,
                "`dpop` needs `key_file` (a P-256 private key in PEM: DPoP proofs are ES256)",
            );
            None
        }
    }
}

fn params(
    c: &mut Checker<'_>,
    base: &[Seg],
    entries: Option<crate::file::OrderedMap<String>>,
    ok: &mut bool,
) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let params_path = child(base, "params");
    let param_entries = entries.map(|m| m.0).unwrap_or_default();
    let param_keys = c.index.key_positions(&params_path).to_vec();
    for (i, (k, raw)) in param_entries.into_iter().enumerate() {
        let kp = child(&params_path, &k);
        let key_pos = param_keys
            .get(i)
            .copied()
            .unwrap_or_else(|| c.index.key(&kp));
        if RESERVED_PARAMS.contains(&k.as_str()) {
            let hint = match k.as_str() {
                "scope" => "; use `scopes`",
                "audience" => "; use `audience`",
                "resource" => "; use `resource`",
                "subject_token" => "; use `subject_token_file`",
                "subject_token_type" => "; use `subject_token_type`",
                "requested_token_type" => "; use `requested_token_type`",
                _ => "",
            };
            c.at(
                key_pos,
                &kp,
                format!("tollgate sets this form field itself{hint}"),
            );
            *ok = false;
        } else if k.is_empty() {
            c.at(key_pos, &kp, "empty parameter name");
            *ok = false;
        } else {
            match params.entry(k) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    c.at(key_pos, &kp, "duplicate parameter");
                    *ok = false;
                }
                std::collections::btree_map::Entry::Vacant(slot) => match c.expand(&kp, &raw) {
                    Some(v) => {
                        slot.insert(v);
                    }
                    None => *ok = false,
                },
            }
        }
    }
    params
}

/// `grant: jwt_bearer`: a service account key, an access token (scopes) or an ID token
/// (`target_audience`).
fn jwt_bearer(c: &mut Checker<'_>, base: &[Seg], f: &CredentialFile) -> Option<JwtBearer> {
    let mut ok = true;
    let p = |k: &str| child(base, k);
    let client_keys: Vec<&str> = CLIENT_KEYS.to_vec();
    ok &= unused(c, base, f, &client_keys, |k| {
        format!("`grant: jwt_bearer` signs with the service account's key; it does not use `{k}`")
    });
    ok &= unused(c, base, f, TOKEN_EXCHANGE_KEYS, |k| {
        format!("only `grant: token_exchange` uses `{k}`")
    });
    ok &= unused(c, base, f, &["dpop"], |_| {
        "Google's token endpoint issues no DPoP-bound tokens: `grant: jwt_bearer` does not use \
         `dpop`"
            .to_string()
    });
    let target_audience = optional_text(c, base, "target_audience", &f.target_audience, &mut ok);
    let assertion_audience = optional_text(
        c,
        base,
        "assertion_audience",
        &f.assertion_audience,
        &mut ok,
    );
    match (&target_audience, &f.scopes) {
        (Some(_), Some(_)) => {
            c.node_err(
                &p("scopes"),
                "an ID token (`target_audience`) has no scopes; omit `scopes`",
            );
            ok = false;
        }
        (None, None) if f.target_audience.is_none() => {
            c.node_err(
                base,
                "`grant: jwt_bearer` needs `scopes` (or `target_audience`, for an ID token)",
            );
            ok = false;
        }
        _ => {}
    }
    let file = match &f.service_account_file {
        Some(raw) => c.file_path(&p("service_account_file"), raw),
        None => {
            c.node_err(base, "`grant: jwt_bearer` needs `service_account_file`");
            None
        }
    };
    let j = JwtBearer {
        service_account_file: file?,
        target_audience,
        assertion_audience,
    };
    ok.then_some(j)
}

/// `grant: token_exchange`: a subject token from a file, and the client when `client_id`
/// is given.
fn token_exchange(c: &mut Checker<'_>, base: &[Seg], f: &CredentialFile) -> Option<TokenExchange> {
    let mut ok = true;
    let p = |k: &str| child(base, k);
    let subject_token_file = match &f.subject_token_file {
        Some(raw) => c.file_path(&p("subject_token_file"), raw),
        None => {
            c.node_err(base, "`grant: token_exchange` needs `subject_token_file`");
            None
        }
    };
    let subject_token_type = match &f.subject_token_type {
        Some(raw) => c.text(&p("subject_token_type"), raw),
        None => {
            c.node_err(
                base,
                "`grant: token_exchange` needs `subject_token_type` (e.g. \
                 `urn:ietf:params:oauth:token-type:jwt`)",
            );
            None
        }
    };
    let requested_token_type = optional_text(
        c,
        base,
        "requested_token_type",
        &f.requested_token_type,
        &mut ok,
    );
    let client = if f.client_id.is_some() {
        match client(c, base, f) {
            Some(cl) => Some(cl),
            None => {
                ok = false;
                None
            }
        }
    } else {
        let mut keys: Vec<&str> = CLIENT_KEYS.to_vec();
        keys.push("assertion_audience");
        ok &= unused(c, base, f, &keys, |k| {
            format!(
                "`{k}` needs `client_id` (token_exchange authenticates a client only when \
                 `client_id` is given)"
            )
        });
        None
    };
    let t = TokenExchange {
        subject_token_file: subject_token_file?,
        subject_token_type: subject_token_type?,
        requested_token_type,
        client,
    };
    ok.then_some(t)
}

fn method_name(m: AuthMethodFile) -> &'static str {
    match m {
        AuthMethodFile::ClientSecretBasic => "client_secret_basic",
        AuthMethodFile::ClientSecretPost => "client_secret_post",
        AuthMethodFile::PrivateKeyJwt => "private_key_jwt",
        AuthMethodFile::ClientAssertionFile => "client_assertion_file",
        AuthMethodFile::TlsClientAuth => "tls_client_auth",
        AuthMethodFile::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
    }
}

/// `client_id` and the keys of its `auth_method`.
fn client(c: &mut Checker<'_>, base: &[Seg], f: &CredentialFile) -> Option<Client> {
    let mut ok = true;
    let p = |k: &str| child(base, k);
    let client_id = match &f.client_id {
        Some(raw) => c.text(&p("client_id"), raw),
        None => {
            c.node_err(base, "missing `client_id`");
            None
        }
    };
    let method = f.auth_method.unwrap_or(AuthMethodFile::ClientSecretBasic);
    let name = method_name(method);

    // Keys of one method given with another.
    let jwt_keys = [
        "private_key_file",
        "signing_alg",
        "key_id",
        "certificate_file",
        "x5t",
        "assertion_audience",
    ];
    let secret_keys = ["client_secret", "client_secret_file", "client_secret_files"];
    if method != AuthMethodFile::PrivateKeyJwt {
        ok &= unused(c, base, f, &jwt_keys, |k| {
            format!("only `auth_method: private_key_jwt` uses `{k}` (this credential uses {name})")
        });
    }
    if method != AuthMethodFile::ClientSecretBasic {
        ok &= unused(c, base, f, &["basic_encoding"], |k| {
            format!(
                "only `auth_method: client_secret_basic` uses `{k}` (this credential uses {name})"
            )
        });
    }
    let tls = matches!(
        method,
        AuthMethodFile::TlsClientAuth | AuthMethodFile::SelfSignedTlsClientAuth
    );
    if !tls {
        ok &= unused(c, base, f, &["client_cert_file", "client_key_file"], |k| {
            format!(
                "only `auth_method: tls_client_auth` and `self_signed_tls_client_auth` use \
                 `{k}` (this credential uses {name})"
            )
        });
    }
    if method != AuthMethodFile::ClientAssertionFile {
        ok &= unused(c, base, f, &["client_assertion_file"], |k| {
            format!(
                "only `auth_method: client_assertion_file` uses `{k}` (this credential uses {name})"
            )
        });
    }

    let auth = match method {
        AuthMethodFile::ClientSecretBasic | AuthMethodFile::ClientSecretPost => {
            let secret = secret(c, base, f, name);
            ok &= secret.is_some();
            secret.map(|secret| match method {
                AuthMethodFile::ClientSecretPost => AuthMethod::ClientSecretPost(secret),
                _ => AuthMethod::ClientSecretBasic {
                    secret,
                    encoding: match f.basic_encoding {
                        Some(BasicEncodingFile::Raw) => BasicEncoding::Raw,
                        _ => BasicEncoding::FormUrlencoded,
                    },
                },
            })
        }
        AuthMethodFile::PrivateKeyJwt => {
            ok &= unused(c, base, f, &secret_keys, |k| {
                format!("`auth_method: private_key_jwt` signs with `private_key_file` and does not use `{k}`")
            });
            let key_id = optional_text(c, base, "key_id", &f.key_id, &mut ok);
            let assertion_audience = optional_text(
                c,
                base,
                "assertion_audience",
                &f.assertion_audience,
                &mut ok,
            );
            let certificate =
                optional_file(c, base, "certificate_file", &f.certificate_file, &mut ok).map(
                    |file| CertificateRef {
                        file,
                        thumbprints: if f.x5t == Some(true) {
                            Thumbprints::Sha256AndSha1
                        } else {
                            Thumbprints::Sha256
                        },
                    },
                );
            if f.x5t.is_some() && f.certificate_file.is_none() {
                c.node_err(
                    &p("x5t"),
                    "`x5t` is the certificate's SHA-1 thumbprint: it needs `certificate_file`",
                );
                ok = false;
            }
            match &f.private_key_file {
                Some(raw) => c.file_path(&p("private_key_file"), raw).map(|file| {
                    AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
                        private_key_file: file,
                        signing_alg: f.signing_alg.map(|a| match a {
                            SigningAlgFile::Es256 => SigningAlg::Es256,
                            SigningAlgFile::Rs256 => SigningAlg::Rs256,
                            SigningAlgFile::Ps256 => SigningAlg::Ps256,
                        }),
                        key_id,
                        certificate,
                        assertion_audience,
                    })
                }),
                None => {
                    c.node_err(
                        base,
                        "`auth_method: private_key_jwt` needs `private_key_file`",
                    );
                    None
                }
            }
        }
        AuthMethodFile::ClientAssertionFile => {
            ok &= unused(c, base, f, &secret_keys, |k| {
                format!(
                    "`auth_method: client_assertion_file` sends the assertion read from \
                     `client_assertion_file` and does not use `{k}`"
                )
            });
            match &f.client_assertion_file {
                Some(raw) => c
                    .file_path(&p("client_assertion_file"), raw)
                    .map(AuthMethod::ClientAssertionFile),
                None => {
                    c.node_err(
                        base,
                        "`auth_method: client_assertion_file` needs `client_assertion_file`",
                    );
                    None
                }
            }
        }
        AuthMethodFile::TlsClientAuth | AuthMethodFile::SelfSignedTlsClientAuth => {
            ok &= unused(c, base, f, &secret_keys, |k| {
                format!(
                    "`auth_method: {name}` authenticates with the client certificate and does \
                     not use `{k}`"
                )
            });
            let mut file = |key: &str, v: &Option<String>, what: &str| match v {
                Some(raw) => c.file_path(&p(key), raw),
                None => {
                    c.node_err(
                        base,
                        format!("`auth_method: {name}` needs `{key}` ({what})"),
                    );
                    None
                }
            };
            let cert_file = file(
                "client_cert_file",
                &f.client_cert_file,
                "the PEM client certificate, leaf first",
            );
            let key_file = file(
                "client_key_file",
                &f.client_key_file,
                "the PEM private key of that certificate",
            );
            match (cert_file, key_file) {
                (Some(cert_file), Some(key_file)) => {
                    let t = TlsClient {
                        cert_file,
                        key_file,
                    };
                    Some(if method == AuthMethodFile::TlsClientAuth {
                        AuthMethod::TlsClientAuth(t)
                    } else {
                        AuthMethod::SelfSignedTlsClientAuth(t)
                    })
                }
                _ => None,
            }
        }
    };
    let cl = Client {
        client_id: client_id?,
        auth: auth?,
    };
    ok.then_some(cl)
}

/// The secret of `client_secret_basic`/`client_secret_post`: exactly one of
/// `client_secret`, `client_secret_file`, `client_secret_files`. Never quoted.
fn secret(
    c: &mut Checker<'_>,
    base: &[Seg],
    f: &CredentialFile,
    method: &str,
) -> Option<SecretSource> {
    let p = |k: &str| child(base, k);
    let given: Vec<&str> = [
        ("client_secret", f.client_secret.is_some()),
        ("client_secret_file", f.client_secret_file.is_some()),
        ("client_secret_files", f.client_secret_files.is_some()),
    ]
    .iter()
    .filter(|(_, g)| *g)
    .map(|(k, _)| *k)
    .collect();
    match given.as_slice() {
        [] => {
            c.node_err(
                base,
                format!(
                    "{method} needs `client_secret`, `client_secret_file` or `client_secret_files`"
                ),
            );
            return None;
        }
        [_] => {}
        [_, rest @ ..] => {
            for key in rest {
                c.node_err(
                    &p(key),
                    "give only one of `client_secret`, `client_secret_file` and `client_secret_files`",
                );
            }
            return None;
        }
    }
    if let Some(raw) = &f.client_secret {
        let path = p("client_secret");
        return match values::expand(raw, c.env) {
            Ok(s) if s.is_empty() => {
                c.value_err(&path, "empty secret");
                None
            }
            Ok(s) => Some(SecretSource::Inline(Secret::new(s))),
            Err(errors) => {
                for e in errors {
                    c.value_err(&path, e.message());
                }
                None
            }
        };
    }
    if let Some(raw) = &f.client_secret_file {
        return c
            .file_path(&p("client_secret_file"), raw)
            .map(SecretSource::File);
    }
    let list = f.client_secret_files.as_deref().unwrap_or_default();
    let lp = p("client_secret_files");
    if list.is_empty() {
        c.value_err(
            &lp,
            "empty list; give the current secret's file (and the previous one's)",
        );
        return None;
    }
    if list.len() > MAX_SECRET_FILES {
        c.value_err(
            &lp,
            format!(
                "at most {MAX_SECRET_FILES} files: the current secret's and the previous one's"
            ),
        );
        return None;
    }
    let mut files = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, raw) in list.iter().enumerate() {
        match c.file_path(&child(&lp, i), raw) {
            Some(path) if files.contains(&path) => {
                c.value_err(&child(&lp, i), "the same file twice");
                ok = false;
            }
            Some(path) => files.push(path),
            None => ok = false,
        }
    }
    ok.then_some(SecretSource::Files(files))
}
