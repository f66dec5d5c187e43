//! One entry of `credentials:` -> [`Credential`].

use super::{child, Checker};
use crate::file::{AuthMethodFile, CredentialFile, SigningAlgFile, RESERVED_PARAMS};
use crate::model::{AuthMethod, Credential, Secret, SecretSource, SigningAlg};
use crate::pos::Seg;
use crate::values;
use std::collections::BTreeMap;

pub(super) fn credential(
    c: &mut Checker<'_>,
    base: &[Seg],
    name: &str,
    f: CredentialFile,
) -> Option<Credential> {
    let mut ok = true;
    let p = |k: &str| child(base, k);

    let token_url = match &f.token_url {
        Some(raw) => c.parse(&p("token_url"), raw, values::parse_token_url),
        None => {
            c.node_err(base, "missing `token_url`");
            None
        }
    };
    let client_id = match &f.client_id {
        Some(raw) => c.text(&p("client_id"), raw),
        None => {
            c.node_err(base, "missing `client_id`");
            None
        }
    };

    // The secret: never quoted in a message.
    let secret = match (&f.client_secret, &f.client_secret_file) {
        (Some(raw), _) => {
            let path = p("client_secret");
            match values::expand(raw, c.env) {
                Ok(s) if s.is_empty() => {
                    c.value_err(&path, "empty secret");
                    ok = false;
                    None
                }
                Ok(s) => Some(SecretSource::Inline(Secret::new(s))),
                Err(errors) => {
                    for e in errors {
                        c.value_err(&path, e.message());
                    }
                    ok = false;
                    None
                }
            }
        }
        (None, Some(raw)) => c
            .file_path(&p("client_secret_file"), raw)
            .map(SecretSource::File),
        (None, None) => None,
    };
    let both_secrets = f.client_secret.is_some() && f.client_secret_file.is_some();

    let method = f.auth_method.unwrap_or(AuthMethodFile::ClientSecretBasic);
    let method_name = match method {
        AuthMethodFile::ClientSecretBasic => "client_secret_basic",
        AuthMethodFile::ClientSecretPost => "client_secret_post",
        AuthMethodFile::PrivateKeyJwt => "private_key_jwt",
    };
    let auth = match method {
        AuthMethodFile::ClientSecretBasic | AuthMethodFile::ClientSecretPost => {
            for (present, key) in [
                (f.private_key_file.is_some(), "private_key_file"),
                (f.signing_alg.is_some(), "signing_alg"),
                (f.key_id.is_some(), "key_id"),
            ] {
                if present {
                    c.node_err(
                        &p(key),
                        format!("only `auth_method: private_key_jwt` uses `{key}` (this credential uses {method_name})"),
                    );
                    ok = false;
                }
            }
            if both_secrets {
                c.node_err(
                    &p("client_secret_file"),
                    "give either `client_secret` or `client_secret_file`, not both",
                );
                ok = false;
                None
            } else if f.client_secret.is_none() && f.client_secret_file.is_none() {
                c.node_err(
                    base,
                    format!("{method_name} needs `client_secret` or `client_secret_file`"),
                );
                ok = false;
                None
            } else {
                secret.map(|s| match method {
                    AuthMethodFile::ClientSecretPost => AuthMethod::ClientSecretPost(s),
                    _ => AuthMethod::ClientSecretBasic(s),
                })
            }
        }
        AuthMethodFile::PrivateKeyJwt => {
            for (present, key) in [
                (f.client_secret.is_some(), "client_secret"),
                (f.client_secret_file.is_some(), "client_secret_file"),
            ] {
                if present {
                    c.node_err(
                        &p(key),
                        format!("`auth_method: private_key_jwt` signs with `private_key_file` and does not use `{key}`"),
                    );
                    ok = false;
                }
            }
            let key_id = match &f.key_id {
                Some(raw) => match c.text(&p("key_id"), raw) {
                    Some(k) => Some(k),
                    None => {
                        ok = false;
                        None
                    }
                },
                None => None,
            };
            match &f.private_key_file {
                Some(raw) => {
                    c.file_path(&p("private_key_file"), raw)
                        .map(|file| AuthMethod::PrivateKeyJwt {
                            private_key_file: file,
                            signing_alg: f.signing_alg.map(|a| match a {
                                SigningAlgFile::Es256 => SigningAlg::Es256,
                                SigningAlgFile::Rs256 => SigningAlg::Rs256,
                            }),
                            key_id,
                        })
                }
                None => {
                    c.node_err(
                        base,
                        "`auth_method: private_key_jwt` needs `private_key_file`",
                    );
                    None
                }
            }
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
    let mut optional_text = |c: &mut Checker<'_>, key: &str, v: &Option<String>| match v {
        Some(raw) => {
            let r = c.text(&p(key), raw);
            ok &= r.is_some();
            r
        }
        None => None,
    };
    let audience = optional_text(c, "audience", &f.audience);
    let resource = optional_text(c, "resource", &f.resource);

    let mut params = BTreeMap::new();
    let params_path = p("params");
    let param_entries = f.params.map(|m| m.0).unwrap_or_default();
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
                _ => "",
            };
            c.at(
                key_pos,
                &kp,
                format!("tollgate sets this form field itself{hint}"),
            );
            ok = false;
        } else if k.is_empty() {
            c.at(key_pos, &kp, "empty parameter name");
            ok = false;
        } else {
            match params.entry(k) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    c.at(key_pos, &kp, "duplicate parameter");
                    ok = false;
                }
                std::collections::btree_map::Entry::Vacant(slot) => match c.expand(&kp, &raw) {
                    Some(v) => {
                        slot.insert(v);
                    }
                    None => ok = false,
                },
            }
        }
    }

    let ca_file = match &f.ca_file {
        Some(raw) => match c.file_path(&p("ca_file"), raw) {
            Some(path) => Some(path),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };

    let cred = Credential {
        name: name.to_owned(),
        token_url: token_url?,
        client_id: client_id?,
        auth: auth?,
        scopes,
        audience,
        resource,
        params,
        ca_file,
    };
    ok.then_some(cred)
}
