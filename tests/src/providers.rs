//! [`Providers`]: `node tests/idp/providers.mjs`, local stand-ins for the token endpoints
//! of Auth0, Okta, Entra ID, Cognito, Google (OAuth 2 and STS) and Keycloak, each checking
//! the request shape its provider documents. Its registrations (client ids, secrets,
//! keys) are fixed; see `tests/idp/README.md`. Killed by PID when dropped.

use crate::idp::{control, idp_dir, NodeChild};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Entra ID tenant, application (client) id and its registered secret (with a `~`).
pub const ENTRA_TENANT: &str = "contoso";
pub const ENTRA_APP: &str = "11111111-2222-3333-4444-555555555555";
pub const ENTRA_SECRET: &str = "Tx8Q~abc.DEF";
/// The Google service account's email and key id.
pub const SA_EMAIL: &str = "egress@tollgate-test.iam.gserviceaccount.com";
pub const SA_KID: &str = "test-key-1";
/// Google STS: the workload identity pool provider (the `audience`), and the `aud` its
/// subject tokens carry.
pub const STS_AUDIENCE: &str =
    "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/tollgate/providers/test";
pub const STS_SUBJECT_AUD: &str =
    "https://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/tollgate/providers/test";

/// The client key every fake registers (RS256; Entra knows it by its certificate).
pub fn client_key() -> PathBuf {
    idp_dir().join("fixtures").join("jwt-client-rs256.pem")
}

/// The certificate of [`client_key`] registered with Entra ID.
pub fn client_cert() -> PathBuf {
    idp_dir().join("fixtures").join("jwt-client-rs256-cert.pem")
}

/// A running `providers.mjs`.
pub struct Providers {
    node: NodeChild,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

/// One token request as a fake saw it.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub provider: String,
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    /// `{"scheme": "Basic", "client_id", "raw_client_id"}` when an Authorization header came.
    pub authorization: Option<Value>,
    /// The form, with secrets, assertions and subject tokens shown as `<N chars>`.
    pub form: Value,
    /// The form's field names in wire order.
    pub field_names: Vec<String>,
    /// Where the request deviated from the provider's documented shape.
    pub violations: Vec<String>,
    pub status: u16,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The token it issued (test values only).
    pub issued: Option<String>,
    /// The client assertion's (or service account grant's) verified header and claims.
    pub assertion: Option<Value>,
    pub raw: Value,
}

impl ProviderRequest {
    fn parse(v: &Value) -> ProviderRequest {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        ProviderRequest {
            provider: s("provider").unwrap_or_default(),
            method: s("method").unwrap_or_default(),
            path: s("path").unwrap_or_default(),
            content_type: s("content_type"),
            authorization: v.get("authorization").cloned().filter(|a| !a.is_null()),
            form: v.get("form").cloned().unwrap_or(Value::Null),
            field_names: v
                .get("field_names")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            violations: v
                .get("violations")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            status: v
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(0),
            error: s("error"),
            error_description: s("error_description"),
            issued: s("issued"),
            assertion: v.get("assertion").cloned().filter(|a| !a.is_null()),
            raw: v.clone(),
        }
    }

    /// A form field as recorded.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.get(name).and_then(Value::as_str)
    }

    /// Panics unless the request had the documented shape.
    #[track_caller]
    pub fn assert_shape(&self) {
        assert!(
            self.violations.is_empty(),
            "{} request deviates from the documented shape: {:?}\n{self:#?}",
            self.provider,
            self.violations
        );
        assert_eq!(self.method, "POST", "{self:#?}");
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/x-www-form-urlencoded"),
            "{self:#?}"
        );
    }
}

impl Providers {
    pub async fn start() -> Providers {
        let args: Vec<String> = vec!["--port".into(), "0".into()];
        let (node, ready) = tokio::task::spawn_blocking(move || {
            NodeChild::spawn("providers", "providers.mjs", &args)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let port = ready
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("providers: no port in {ready}"));
        Providers {
            node,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `BASE` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the fake printed on stderr so far.
    pub fn output(&self) -> String {
        self.node.stderr_text()
    }

    /// Every token request so far, in order.
    pub async fn requests(&self) -> Vec<ProviderRequest> {
        let v = control(self.addr, "GET", "/_test/requests", None).await;
        v["requests"]
            .as_array()
            .map(|a| a.iter().map(ProviderRequest::parse).collect())
            .unwrap_or_default()
    }

    /// The token requests one provider (`auth0`, `okta`, `entra`, ...) got.
    pub async fn requests_to(&self, provider: &str) -> Vec<ProviderRequest> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r.provider == provider)
            .collect()
    }

    /// `POST /_test/config` (`{"entra_secret": ...}`, `{"discovery": {"okta": "down"}}`).
    pub async fn config(&self, body: Value) {
        control(self.addr, "POST", "/_test/config", Some(&body)).await;
    }

    /// A projected service account token signed by the fake's cluster key: `aud`, and
    /// `iss`/`sub` of the Entra federated credential unless given.
    pub async fn mint(&self, aud: &str, iss: Option<&str>, sub: Option<&str>) -> String {
        let mut body = json!({ "aud": aud });
        if let Some(i) = iss {
            body["iss"] = json!(i);
        }
        if let Some(s) = sub {
            body["sub"] = json!(s);
        }
        let v = control(self.addr, "POST", "/_test/mint", Some(&body)).await;
        v["token"].as_str().unwrap_or_default().to_owned()
    }

    /// An access token of the Keycloak realm (a subject token for its token exchange).
    pub async fn keycloak_token(&self) -> String {
        let v = control(self.addr, "POST", "/_test/keycloak_token", Some(&json!({}))).await;
        v["token"].as_str().unwrap_or_default().to_owned()
    }

    /// A Google service account key file for [`SA_EMAIL`] whose `token_uri` is the
    /// fake's, written into `dir`.
    pub fn service_account_file(&self, dir: &std::path::Path) -> PathBuf {
        let key = std::fs::read_to_string(client_key()).expect("read the client key fixture");
        let json = json!({
            "type": "service_account",
            "project_id": "tollgate-test",
            "private_key_id": SA_KID,
            "private_key": key,
            "client_email": SA_EMAIL,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.url("/google/token"),
        });
        let path = dir.join("service-account.json");
        std::fs::write(&path, json.to_string()).expect("write the service account file");
        path
    }
}
