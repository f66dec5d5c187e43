//! A Google service account key file (`service_account_file:`), as the Cloud console and
//! `gcloud iam service-accounts keys create` write it: JSON with `type:
//! "service_account"`, `client_email`, `private_key` (PEM), `private_key_id` and
//! `token_uri`.
//!
//! Errors name the field that is missing or wrong and never quote the file: it holds a
//! private key. The JSON is parsed into an untyped value first, whose syntax errors carry
//! only a line and column.

use serde_json::Value;
use url::Url;

use super::jwt::SigningKey;
use tollgate_rules::SigningAlg;

/// A parsed service account key. `Debug` shows the account, never the key.
#[derive(Debug)]
pub(crate) struct ServiceAccount {
    pub client_email: String,
    /// The `kid` of its assertions (absent in some hand-made files).
    pub private_key_id: Option<String>,
    /// Where the assertion is sent, and its default `aud`.
    pub token_uri: Url,
    pub key: SigningKey,
}

impl ServiceAccount {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let json: Value = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "is not JSON (line {}, column {}); expected a service account key file",
                e.line(),
                e.column()
            )
        })?;
        let obj = json
            .as_object()
            .ok_or("is not a JSON object; expected a service account key file")?;
        match obj.get("type").and_then(Value::as_str) {
            None | Some("service_account") => {}
            Some("external_account") => {
                return Err("is a workload identity federation configuration \
                            (`type: external_account`), not a service account key; use \
                            `grant: token_exchange` with the subject token file instead"
                    .into())
            }
            Some(_) => return Err("has a `type` other than \"service_account\"".into()),
        }
        let field = |name: &str| -> Result<&str, String> {
            match obj.get(name) {
                None | Some(Value::Null) => Err(format!("lacks `{name}`")),
                Some(Value::String(s)) if s.trim().is_empty() => {
                    Err(format!("has an empty `{name}`"))
                }
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(_) => Err(format!("`{name}` is not a string")),
            }
        };
        let client_email = field("client_email")?.to_owned();
        let pem = field("private_key")?;
        let token_uri = field("token_uri")?;
        let token_uri = tollgate_rules::parse_endpoint_url(token_uri)
            .map_err(|e| format!("`token_uri`: {e}"))?;
        let private_key_id = match obj.get("private_key_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err("`private_key_id` is not a non-empty string".into()),
        };
        let key = SigningKey::from_pem(pem.as_bytes(), Some(SigningAlg::Rs256))
            .map_err(|e| format!("`private_key`: {e}"))?;
        Ok(ServiceAccount {
            client_email,
            private_key_id,
            token_uri,
            key,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA_PKCS8: &str = include_str!("fixtures/rsa-2048-pkcs8.pem");
    const EC_PKCS8: &str = include_str!("fixtures/ec-p256-pkcs8.pem");

    fn file(mutate: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
        let mut v = json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "0123abcd",
            "private_key": RSA_PKCS8,
            "client_email": "egress@p.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        mutate(v.as_object_mut().unwrap());
        v.to_string().into_bytes()
    }

    #[test]
    fn parses_a_key_file() {
        let sa = ServiceAccount::parse(&file(|_| {})).unwrap();
        assert_eq!(sa.client_email, "egress@p.iam.gserviceaccount.com");
        assert_eq!(sa.private_key_id.as_deref(), Some("0123abcd"));
        assert_eq!(sa.token_uri.as_str(), "https://oauth2.googleapis.com/token");
        assert_eq!(sa.key.alg(), "RS256");
        let shown = format!("{sa:?}");
        assert!(
            !shown.contains("PRIVATE KEY") && !shown.contains("MII"),
            "{shown}"
        );
    }

    #[test]
    fn each_problem_names_the_field_and_never_the_key() {
        let err = |bytes: &[u8]| ServiceAccount::parse(bytes).unwrap_err();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "is not JSON (line 1, column 2)"),
            (b"[1]".to_vec(), "is not a JSON object"),
            (
                file(|m| {
                    m.remove("client_email");
                }),
                "lacks `client_email`",
            ),
            (
                file(|m| {
                    m.remove("private_key");
                }),
                "lacks `private_key`",
            ),
            (
                file(|m| {
                    m.remove("token_uri");
                }),
                "lacks `token_uri`",
            ),
            (
                file(|m| {
                    m.insert("client_email".into(), json!(" "));
                }),
                "has an empty `client_email`",
            ),
            (
                file(|m| {
                    m.insert("client_email".into(), json!(5));
                }),
                "`client_email` is not a string",
            ),
            (
                file(|m| {
                    m.insert(
                        "token_uri".into(),
                        json!("http://oauth2.googleapis.com/token"),
                    );
                }),
                "`token_uri`: ",
            ),
            (
                file(|m| {
                    m.insert(
                        "private_key".into(),
                        json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
                    );
                }),
                "`private_key`: unsupported private key",
            ),
            (
                file(|m| {
                    m.insert("private_key".into(), json!(EC_PKCS8));
                }),
                "`private_key`: signing_alg RS256 needs an RSA key",
            ),
            (
                file(|m| {
                    m.insert("type".into(), json!("external_account"));
                }),
                "`grant: token_exchange`",
            ),
            (
                file(|m| {
                    m.insert("type".into(), json!("authorized_user"));
                }),
                "`type` other than",
            ),
            (
                file(|m| {
                    m.insert("private_key_id".into(), json!(7));
                }),
                "`private_key_id` is not",
            ),
        ];
        for (bytes, want) in cases {
            let e = err(&bytes);
            assert!(e.contains(want), "{want:?} not in {e:?}");
            assert!(!e.contains("MII") && !e.contains("BEGIN"), "{e}");
        }
        // A syntax error inside the key's string: still no key material.
        let mut broken = file(|_| {});
        let at = broken.len() / 2;
        broken.insert(at, b'"');
        let e = err(&broken);
        assert!(!e.contains("MII"), "{e}");
        // Without private_key_id: no kid.
        let sa = ServiceAccount::parse(&file(|m| {
            m.remove("private_key_id");
        }))
        .unwrap();
        assert_eq!(sa.private_key_id, None);
    }
}
