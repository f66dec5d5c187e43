//! OIDC discovery (`issuer:`): the token endpoint from
//! `ISSUER/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
//!
//! It runs when a credential is set up: at start (a failure stops the start) and at each
//! reload (a failure rejects the reload; the old config keeps serving). Between, the
//! discovered endpoint is kept: token requests never wait for discovery.
//!
//! The document is judged by [`judge`] (pure): its `issuer` must be the configured one
//! (§4.3: otherwise it is refused), its `token_endpoint` must pass the rules of
//! `token_url` (https, or http on loopback), and where it lists them,
//! `token_endpoint_auth_methods_supported`, `grant_types_supported` and
//! `token_endpoint_auth_signing_alg_values_supported` must include what the credential
//! uses. [`discover`] fetches it (a blocking call, on a thread of its own).

use std::time::Duration;

use serde_json::Value;
use tollgate_rules::{AuthMethod, OAuth2};
use url::Url;

/// The path appended to the issuer.
pub const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// How long fetching the document may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Discovery documents are a few KiB.
const MAX_BODY: usize = 1 << 20;

/// What discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Discovered {
    pub token_endpoint: Url,
}

/// The document's URL: the issuer without a trailing `/`, then [`WELL_KNOWN`].
pub(crate) fn document_url(issuer: &Url) -> String {
    format!("{}{WELL_KNOWN}", issuer.as_str().trim_end_matches('/'))
}

/// Judges a discovery document for `def` (whose endpoint is `issuer`). `alg`: the JWS
/// algorithm of the credential's client assertion, when it signs one.
pub(crate) fn judge(
    body: &[u8],
    issuer: &Url,
    def: &OAuth2,
    alg: Option<&str>,
) -> Result<Discovered, String> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|_| "the discovery document is not JSON".to_string())?;
    let doc = json
        .as_object()
        .ok_or("the discovery document is not a JSON object")?;
    let text = |name: &str| doc.get(name).and_then(Value::as_str);
    let said = text("issuer").ok_or("the discovery document has no `issuer`")?;
    // Compared as URLs: `https://idp.example` and `https://idp.example/` are one issuer;
    // any other difference is refused, as OpenID Connect Discovery §4.3 requires.
    if Url::parse(said).ok().as_ref() != Some(issuer) {
        return Err(format!(
            "the discovery document is for issuer {:?}, not the configured {:?}; refusing it \
             (OpenID Connect Discovery §4.3)",
            short(said),
            issuer.as_str()
        ));
    }
    let endpoint =
        text("token_endpoint").ok_or("the discovery document has no `token_endpoint`")?;
    let token_endpoint = tollgate_rules::parse_endpoint_url(endpoint)
        .map_err(|e| format!("its token_endpoint: {e}"))?;

    let list = |name: &str| -> Option<Vec<&str>> {
        doc.get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
    };
    let grant_type = def.grant.grant_type();
    if let Some(grants) = list("grant_types_supported") {
        if !grants.contains(&grant_type) {
            return Err(format!(
                "the issuer does not support the {grant_type} grant (grant_types_supported: {})",
                grants.join(", ")
            ));
        }
    }
    if let Some(client) = def.grant.client() {
        let method = match &client.auth {
            AuthMethod::ClientAssertionFile(_) => "private_key_jwt",
            other => other.name(),
        };
        if let Some(methods) = list("token_endpoint_auth_methods_supported") {
            if !methods.contains(&method) {
                return Err(format!(
                    "the issuer does not accept auth_method {method} \
                     (token_endpoint_auth_methods_supported: {})",
                    methods.join(", ")
                ));
            }
        }
        if let (Some(alg), Some(algs)) = (
            alg,
            list("token_endpoint_auth_signing_alg_values_supported"),
        ) {
            if !algs.contains(&alg) {
                return Err(format!(
                    "the issuer does not accept {alg} client assertions \
                     (token_endpoint_auth_signing_alg_values_supported: {})",
                    algs.join(", ")
                ));
            }
        }
    }
    Ok(Discovered { token_endpoint })
}

fn short(s: &str) -> String {
    super::error::sanitize(s, 200).to_string()
}

/// Fetches and judges the document, blocking the calling thread (at most about
/// [`TIMEOUT`]). Runs on a thread of its own with its own runtime and client, so it works
/// from inside or outside a tokio runtime. `roots`: the credential's `ca_file`.
pub(crate) fn discover(
    issuer: &Url,
    def: &OAuth2,
    alg: Option<&str>,
    roots: Option<&[reqwest::Certificate]>,
) -> Result<Discovered, String> {
    let url = document_url(issuer);
    let body = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start discovery: {e}"))?;
            rt.block_on(fetch(&url, roots))
        })
        .join()
        .unwrap_or_else(|_| Err("discovery failed unexpectedly".to_string()))
    })
    .map_err(|e| format!("discovery at {url}: {e}"))?;
    judge(&body, issuer, def, alg).map_err(|e| format!("discovery at {url}: {e}"))
}

async fn fetch(url: &str, roots: Option<&[reqwest::Certificate]>) -> Result<Vec<u8>, String> {
    super::install_crypto_provider();
    let mut builder = super::client::client_builder(TIMEOUT);
    if let Some(roots) = roots {
        builder = builder.tls_certs_merge(roots.iter().cloned());
    }
    let client = builder.build().map_err(|e| super::client::root_cause(&e))?;
    let mut resp = client
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| super::client::root_cause(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| super::client::root_cause(&e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err("the document is larger than 1 MiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::test_support::credential;
    use serde_json::json;
    use tollgate_rules::{Endpoint, PrivateKeyJwt};

    fn issuer() -> Url {
        Url::parse("https://dev-123.okta.com/oauth2/default").unwrap()
    }

    fn doc(mutate: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
        let mut v = json!({
            "issuer": "https://dev-123.okta.com/oauth2/default",
            "token_endpoint": "https://dev-123.okta.com/oauth2/default/v1/token",
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        });
        mutate(v.as_object_mut().unwrap());
        v.to_string().into_bytes()
    }

    fn oauth(def: &tollgate_rules::Credential) -> OAuth2 {
        let mut o = def.oauth2().unwrap().clone();
        o.endpoint = Endpoint::Issuer(issuer());
        o
    }

    #[test]
    fn the_url_is_under_the_issuer() {
        assert_eq!(
            document_url(&issuer()),
            "https://dev-123.okta.com/oauth2/default/.well-known/openid-configuration"
        );
        assert_eq!(
            document_url(&Url::parse("http://127.0.0.1:8080").unwrap()),
            "http://127.0.0.1:8080/.well-known/openid-configuration"
        );
        assert_eq!(
            document_url(&Url::parse("https://kc.example/realms/x/").unwrap()),
            "https://kc.example/realms/x/.well-known/openid-configuration"
        );
    }

    #[test]
    fn finds_the_token_endpoint() {
        let def = oauth(&credential("okta"));
        let d = judge(&doc(|_| {}), &issuer(), &def, None).unwrap();
        assert_eq!(
            d.token_endpoint.as_str(),
            "https://dev-123.okta.com/oauth2/default/v1/token"
        );
        // Lists that are absent are not checked.
        let sparse = doc(|m| {
            m.remove("grant_types_supported");
            m.remove("token_endpoint_auth_methods_supported");
        });
        assert!(judge(&sparse, &issuer(), &def, None).is_ok());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let def = oauth(&credential("okta"));
        let err = |body: Vec<u8>, def: &OAuth2, alg| judge(&body, &issuer(), def, alg).unwrap_err();
        assert!(err(b"<html>".to_vec(), &def, None).contains("not JSON"));
        assert!(err(b"[]".to_vec(), &def, None).contains("not a JSON object"));
        let e = err(
            doc(|m| {
                m.insert(
                    "issuer".into(),
                    json!("https://evil.example/oauth2/default"),
                );
            }),
            &def,
            None,
        );
        assert!(
            e.contains("is for issuer \"https://evil.example/oauth2/default\""),
            "{e}"
        );
        assert!(e.contains("§4.3"), "{e}");
        // A trailing slash is another issuer when the path is not empty.
        let e = err(
            doc(|m| {
                m.insert(
                    "issuer".into(),
                    json!("https://dev-123.okta.com/oauth2/default/"),
                );
            }),
            &def,
            None,
        );
        assert!(e.contains("not the configured"), "{e}");
        assert!(err(
            doc(|m| {
                m.remove("issuer");
            }),
            &def,
            None
        )
        .contains("no `issuer`"));
        assert!(err(
            doc(|m| {
                m.remove("token_endpoint");
            }),
            &def,
            None
        )
        .contains("no `token_endpoint`"));
        let e = err(
            doc(|m| {
                m.insert(
                    "token_endpoint".into(),
                    json!("http://dev-123.okta.com/token"),
                );
            }),
            &def,
            None,
        );
        assert!(
            e.contains("its token_endpoint") && e.contains("https"),
            "{e}"
        );
        let e = err(
            doc(|m| {
                m.insert(
                    "grant_types_supported".into(),
                    json!(["authorization_code"]),
                );
            }),
            &def,
            None,
        );
        assert!(e.contains("client_credentials grant"), "{e}");
        let e = err(
            doc(|m| {
                m.insert(
                    "token_endpoint_auth_methods_supported".into(),
                    json!(["private_key_jwt"]),
                );
            }),
            &def,
            None,
        );
        assert!(
            e.contains("does not accept auth_method client_secret_basic"),
            "{e}"
        );
        // The signing algorithm of a private_key_jwt client.
        let mut jwt = def.clone();
        if let tollgate_rules::Grant::ClientCredentials(c) = &mut jwt.grant {
            c.auth = AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
                private_key_file: "k.pem".into(),
                signing_alg: None,
                key_id: None,
                certificate: None,
                assertion_audience: None,
            });
        }
        assert!(judge(&doc(|_| {}), &issuer(), &jwt, Some("ES256")).is_ok());
        let e = err(doc(|_| {}), &jwt, Some("PS256"));
        assert!(e.contains("does not accept PS256"), "{e}");
    }

    #[test]
    fn an_empty_path_issuer_matches_with_or_without_slash() {
        let iss = Url::parse("http://127.0.0.1:9000").unwrap();
        let mut def = oauth(&credential("x"));
        def.endpoint = Endpoint::Issuer(iss.clone());
        let body = json!({"issuer": "http://127.0.0.1:9000", "token_endpoint": "http://127.0.0.1:9000/token"});
        assert!(judge(body.to_string().as_bytes(), &iss, &def, None).is_ok());
    }

    /// Serves `response` (raw HTTP) to connections until dropped; returns the issuer URL.
    async fn serve(response: String) -> (Url, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (Url::parse(&format!("http://{addr}")).unwrap(), task)
    }

    async fn discover_at(response: String) -> Result<Discovered, String> {
        let (issuer, task) = serve(response).await;
        let mut def = oauth(&credential("x"));
        def.endpoint = Endpoint::Issuer(issuer.clone());
        let r = tokio::task::spawn_blocking(move || discover(&issuer, &def, None, None))
            .await
            .unwrap();
        task.abort();
        r
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn fetching_is_bounded_and_never_follows_redirects() {
        let ok = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        // A redirect is not followed (the document must be at the issuer).
        let e = discover_at(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        )
        .await
        .unwrap_err();
        assert!(e.ends_with("answered 302 Found"), "{e}");
        assert!(e.starts_with("discovery at http://127.0.0.1:"), "{e}");
        // More than 1 MiB is refused.
        let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_BODY));
        let e = discover_at(ok(&huge)).await.unwrap_err();
        assert!(e.ends_with("the document is larger than 1 MiB"), "{e}");
        // Nothing listening: a clear reason.
        let issuer = Url::parse("http://127.0.0.1:9").unwrap();
        let mut def = oauth(&credential("x"));
        def.endpoint = Endpoint::Issuer(issuer.clone());
        let e = tokio::task::spawn_blocking(move || discover(&issuer, &def, None, None))
            .await
            .unwrap()
            .unwrap_err();
        assert!(e.ends_with("connection refused"), "{e}");
    }
}
