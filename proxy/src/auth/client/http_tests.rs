//! The reqwest endpoint against a real HTTP server (a tiny tokio one on 127.0.0.1):
//! it must put on the wire exactly what the trait-level tests assert.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tollgate_rules::{
    AuthMethod, BasicEncoding, Credential, Endpoint, PrivateKeyJwt, Secret, SecretSource,
};

use super::tests::build;
use super::*;
use crate::auth::test_support::{basic, client, credential, credentials, oauth, TempDir};
use crate::auth::{AuthError, TokenCache};

/// One request as the server saw it.
struct Seen {
    request_line: String,
    /// Lower-cased names, in order.
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one connection: reads one request, answers `response` (raw HTTP), closes.
async fn serve_once(response: String) -> (SocketAddr, tokio::task::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before sending a request");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            body.extend_from_slice(&chunk[..n]);
        }
        sock.write_all(response.as_bytes()).await.unwrap();
        sock.shutdown().await.unwrap();
        Seen {
            request_line,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    });
    (addr, task)
}

fn json_response(status: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         {extra_headers}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

fn def_for(addr: SocketAddr, auth: AuthMethod) -> Credential {
    let mut def = credential("billing");
    let o = oauth(&mut def);
    o.endpoint = Endpoint::TokenUrl(Url::parse(&format!("http://{addr}/oauth2/token")).unwrap());
    o.scopes = vec!["invoices:read".into(), "invoices:write".into()];
    o.audience = Some("https://billing.example.com".into());
    o.params = BTreeMap::from([("tenant".into(), "eu".into())]);
    let c = client(&mut def);
    c.client_id = "a:b c%".into();
    c.auth = auth;
    def
}

fn inline(secret: &str) -> SecretSource {
    SecretSource::Inline(Secret::new(secret))
}

fn cache(def: &Credential) -> Arc<TokenCache> {
    TokenCache::new(
        &credentials(std::slice::from_ref(def)),
        None,
        &prometheus::Registry::new(),
    )
    .unwrap()
}

#[tokio::test]
async fn basic_on_the_wire_matches_the_built_request() {
    let (addr, server) = serve_once(json_response(
        "200 OK",
        "",
        r#"{"access_token":"real-token","token_type":"Bearer","expires_in":3600}"#,
    ))
    .await;
    let def = def_for(addr, basic(inline("s:e c%")));
    let token = cache(&def).get("billing").await.unwrap();
    assert_eq!(token.secret(), "real-token");
    let seen = server.await.unwrap();
    assert_eq!(seen.request_line, "POST /oauth2/token HTTP/1.1");
    let built = build(
        &def,
        &Material::Basic(
            Arc::new(Secret::new("s:e c%")),
            BasicEncoding::FormUrlencoded,
        ),
    );
    assert_eq!(seen.body, built.body);
    assert_eq!(
        seen.body,
        "grant_type=client_credentials&scope=invoices%3Aread+invoices%3Awrite\
         &audience=https%3A%2F%2Fbilling.example.com&tenant=eu"
    );
    assert_eq!(
        seen.header("authorization"),
        Some("Basic YSUzQWIrYyUyNTpzJTNBZStjJTI1")
    );
    for (name, value) in &built.headers {
        assert_eq!(
            seen.header(&name.to_ascii_lowercase()),
            Some(value.as_str()),
            "{name}"
        );
    }
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(seen.header("host"), Some(addr.to_string().as_str()));
    assert!(seen.header("user-agent").unwrap().starts_with("tollgate/"));
    assert_eq!(
        seen.header("content-length"),
        Some(seen.body.len().to_string().as_str())
    );
    assert_eq!(seen.header("proxy-authorization"), None);
}

#[tokio::test]
async fn post_on_the_wire() {
    let (addr, server) = serve_once(json_response(
        "200 OK",
        "",
        r#"{"access_token":"real-token","expires_in":"60"}"#,
    ))
    .await;
    let def = def_for(addr, AuthMethod::ClientSecretPost(inline("s:e c%")));
    cache(&def).get("billing").await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(
        seen.body,
        "grant_type=client_credentials&scope=invoices%3Aread+invoices%3Awrite\
         &audience=https%3A%2F%2Fbilling.example.com&tenant=eu\
         &client_id=a%3Ab+c%25&client_secret=s%3Ae+c%25"
    );
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn private_key_jwt_on_the_wire() {
    let dir = TempDir::new();
    let key = dir.write("key.pem", include_str!("../fixtures/rsa-2048-pkcs8.pem"));
    let (addr, server) = serve_once(json_response("200 OK", "", r#"{"access_token":"t"}"#)).await;
    let def = def_for(
        addr,
        AuthMethod::PrivateKeyJwt(PrivateKeyJwt {
            private_key_file: key,
            signing_alg: None,
            key_id: None,
            certificate: None,
            assertion_audience: None,
        }),
    );
    cache(&def).get("billing").await.unwrap();
    let seen = server.await.unwrap();
    let form: Vec<(String, String)> = form_urlencoded::parse(seen.body.as_bytes())
        .into_owned()
        .collect();
    let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "grant_type",
            "scope",
            "audience",
            "tenant",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    let assertion = &form[6].1;
    let claims = crate::auth::decode_claims(assertion).unwrap();
    assert_eq!(claims["aud"], format!("http://{addr}/oauth2/token"));
    assert_eq!(claims["iss"], "a:b c%");
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn error_answers_on_the_wire() {
    let (addr, server) = serve_once(json_response(
        "401 Unauthorized",
        "WWW-Authenticate: Basic\r\n",
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    ))
    .await;
    let def = def_for(addr, basic(inline("wrong")));
    let e = cache(&def).get("billing").await.unwrap_err();
    server.await.unwrap();
    assert!(e.is_permanent());
    assert_eq!(
        e.to_string(),
        "credential \"billing\": token endpoint answered 401 invalid_client: client authentication failed"
    );

    let (addr, server) = serve_once(json_response(
        "503 Service Unavailable",
        "Retry-After: 7\r\n",
        "{}",
    ))
    .await;
    let def = def_for(addr, basic(inline("s")));
    let e = cache(&def).get("billing").await.unwrap_err();
    server.await.unwrap();
    assert_eq!(
        e.to_string(),
        "credential \"billing\": token endpoint answered 503 Service Unavailable (retry after 7s)"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (addr, server) = serve_once(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
            .to_string(),
    )
    .await;
    let def = def_for(addr, basic(inline("s")));
    let e = cache(&def).get("billing").await.unwrap_err();
    server.await.unwrap();
    assert_eq!(
        e.to_string(),
        "credential \"billing\": token endpoint answered 302 Found"
    );
}

#[tokio::test]
async fn connection_refused() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let def = def_for(addr, basic(inline("s")));
    let e = cache(&def).get("billing").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "credential \"billing\": token endpoint unreachable: connection refused"
    );
    assert!(!e.is_permanent());
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        let (_sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let endpoint = ReqwestEndpoint::new(None, Duration::from_millis(300)).unwrap();
    let def = def_for(addr, basic(inline("s")));
    let req = build(
        &def,
        &Material::Basic(Arc::new(Secret::new("s")), BasicEncoding::FormUrlencoded),
    );
    assert_eq!(
        endpoint.send(req).await.unwrap_err(),
        TransportError::Timeout
    );
}

#[tokio::test]
async fn huge_bodies_are_refused() {
    let body = "x".repeat(MAX_RESPONSE_BODY + 1);
    let (addr, server) = serve_once(json_response("200 OK", "", &body)).await;
    let def = def_for(addr, basic(inline("s")));
    let e = cache(&def).get("billing").await.unwrap_err();
    let _ = server.await;
    assert_eq!(
        e.to_string(),
        "credential \"billing\": token endpoint answered 200 with an unusable body: \
         the body is larger than 1 MiB"
    );
}

#[test]
fn ca_file_is_loaded_or_explained() {
    let dir = TempDir::new();
    let mut def = credential("billing");
    oauth(&mut def).ca_file = Some(dir.write("ca.pem", include_str!("../fixtures/ca.pem")));
    assert!(ReqwestEndpoint::for_credential(&def, REQUEST_TIMEOUT).is_ok());

    for (content, reason) in [
        ("not a certificate", "contains no PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "",
        ),
    ] {
        oauth(&mut def).ca_file = Some(dir.write("bad.pem", content));
        let err = match ReqwestEndpoint::for_credential(&def, REQUEST_TIMEOUT) {
            Err(e @ AuthError::CaFile { .. }) => e.to_string(),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("{content} accepted"),
        };
        assert!(err.starts_with("credential \"billing\": ca_file "), "{err}");
        assert!(err.ends_with(reason), "{err}");
    }
    oauth(&mut def).ca_file = Some(dir.path().join("missing.pem"));
    let Err(err) = ReqwestEndpoint::for_credential(&def, REQUEST_TIMEOUT) else {
        panic!()
    };
    assert!(
        err.to_string().contains("missing.pem: No such file"),
        "{err}"
    );
}
