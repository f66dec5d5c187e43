//! The token endpoint's answer, judged as the token cache judges it
//! (`tollgate::auth::fuzzing::parse_response`): arbitrary status, `Retry-After` and body,
//! the body either raw bytes or a JSON object built from the fields RFC 6749 §5.1 and
//! §5.2 name, with values of any JSON type.
//!
//! Checks:
//! - a token only from a 2xx answer, and it is the body's `access_token`, non-empty and
//!   made of visible ASCII only (it goes into a header);
//! - `token_type` and `scope` are bounded and free of control characters; an
//!   `expires_in` is what the body said (a whole number of seconds, or a fraction floored);
//! - claims only for a token shaped like a JWT;
//! - a refusal never carries the token: its `Display` and `Debug` hold no control
//!   character, are bounded, and contain the body's `access_token` only if the body's
//!   `error` or `error_description` did;
//! - a 401 from the endpoint is a permanent failure (fix the secret, retrying won't help).
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use std::time::{Duration, SystemTime};
use tollgate::auth::fuzzing::parse_response;
use tollgate::auth::HttpResponse;

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    U(u64),
    I(i64),
    F(f64),
    S(String),
    /// A numeric string, as some endpoints send `expires_in`.
    NumStr(i64, bool),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn value(&self, depth: u32) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::U(n) => Value::from(*n),
            Json::I(n) => Value::from(*n),
            Json::F(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::S(s) => Value::String(s.clone()),
            Json::NumStr(n, pad) => Value::String(if *pad {
                format!(" {n} ")
            } else {
                n.to_string()
            }),
            Json::Arr(v) if depth < 4 => {
                Value::Array(v.iter().map(|j| j.value(depth + 1)).collect())
            }
            Json::Obj(v) if depth < 4 => Value::Object(
                v.iter()
                    .map(|(k, j)| (k.clone(), j.value(depth + 1)))
                    .collect(),
            ),
            Json::Arr(_) | Json::Obj(_) => Value::Null,
        }
    }
}

const FIELDS: &[&str] = &[
    "access_token",
    "token_type",
    "expires_in",
    "scope",
    "error",
    "error_description",
    "refresh_token",
    "id_token",
];

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    Raw(&'a [u8]),
    /// Fields by index into FIELDS (repeats allowed: the last one wins, as in serde_json).
    Fields(Vec<(u8, Json)>),
    /// A JWT-shaped token: header and payload JSON, base64url, and a signature.
    Jwt {
        header: Json,
        payload: Json,
        sig: &'a str,
        rest: Vec<(u8, Json)>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    status: u16,
    retry_after: Option<&'a str>,
    body: Body<'a>,
}

fn b64url(v: &Value) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = v.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for k in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * k)) & 63) as usize]));
        }
    }
    out
}

fn object(fields: &[(u8, Json)]) -> Map<String, Value> {
    let mut m = Map::new();
    for (i, j) in fields {
        m.insert(
            FIELDS[usize::from(*i) % FIELDS.len()].to_owned(),
            j.value(0),
        );
    }
    m
}

fuzz_target!(|input: Input<'_>| {
    let body: Vec<u8> = match &input.body {
        Body::Raw(b) => b.to_vec(),
        Body::Fields(f) => Value::Object(object(f)).to_string().into_bytes(),
        Body::Jwt {
            header,
            payload,
            sig,
            rest,
        } => {
            let mut m = object(rest);
            let token = format!(
                "{}.{}.{}",
                b64url(&header.value(0)),
                b64url(&payload.value(0)),
                sig
            );
            m.insert("access_token".to_owned(), Value::String(token));
            Value::Object(m).to_string().into_bytes()
        }
    };
    let resp = HttpResponse {
        status: input.status,
        retry_after: input.retry_after.map(str::to_owned),
        rate_limit: Default::default(),
        dpop_nonce: None,
        body,
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let parsed: Option<Map<String, Value>> = match serde_json::from_slice(&resp.body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    let field = |name: &str| parsed.as_ref().and_then(|m| m.get(name));
    match parse_response(&resp, now) {
        Ok(t) => {
            assert!(
                (200..300).contains(&resp.status),
                "a token from a {}",
                resp.status
            );
            assert_eq!(
                field("access_token").and_then(Value::as_str),
                Some(t.access_token.as_str()),
                "the token is not the body's access_token"
            );
            assert!(!t.access_token.is_empty());
            assert!(
                t.access_token.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "a token that cannot go into a header"
            );
            assert_clean(&t.token_type, 41);
            if let Some(s) = &t.scope {
                assert_clean(s, 1001);
            }
            if let Some(d) = t.expires_in {
                let said = match field("expires_in") {
                    Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
                    Some(Value::String(s)) => {
                        let s = s.trim();
                        s.parse::<u64>()
                            .ok()
                            .or_else(|| s.parse::<f64>().ok().map(|f| f as u64))
                    }
                    _ => None,
                };
                assert_eq!(
                    Some(d.as_secs()),
                    said,
                    "expires_in is not what the body said"
                );
                assert_eq!(d.subsec_nanos(), 0);
            }
            if t.claims.is_some() {
                assert_eq!(
                    t.access_token.matches('.').count(),
                    2,
                    "claims of a non-JWT"
                );
            }
        }
        Err(e) => {
            let display = e.to_string();
            let debug = format!("{e:?}");
            for text in [&display, &debug] {
                assert!(
                    !text.chars().any(char::is_control),
                    "control character in {text:?}"
                );
                assert!(
                    text.chars().count() <= 700,
                    "unbounded error: {} chars",
                    text.len()
                );
            }
            if let Some(token) = field("access_token").and_then(Value::as_str) {
                // Long enough not to occur in our own words by chance.
                let distinctive =
                    token.len() >= 16 && token.bytes().all(|b| b.is_ascii_alphanumeric());
                let echoed = ["error", "error_description"].iter().any(|f| {
                    field(f)
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.contains(token))
                });
                if distinctive && !echoed {
                    assert!(
                        !display.contains(token),
                        "the token leaked into {display:?}"
                    );
                    assert!(!debug.contains(token), "the token leaked into {debug:?}");
                }
            }
            if resp.status == 401 {
                assert!(e.is_permanent(), "a 401 from the endpoint is not permanent");
            }
        }
    }
});

/// Bounded (in characters) and free of control characters.
fn assert_clean(s: &str, max: usize) {
    assert!(s.chars().count() <= max, "{} chars", s.chars().count());
    assert!(!s.chars().any(char::is_control), "{s:?}");
}
