//! Request and response heads: parsed with `httparse` (the parser hyper and pingora use),
//! kept as the raw bytes plus the positions of each part, so nothing is copied or
//! allocated per header and the bytes we forward are exactly the bytes we parsed.

use bytes::{Bytes, BytesMut};

/// Largest request or response head accepted, request line and headers included.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields accepted in one head.
pub const MAX_HEADERS: usize = 128;

/// Byte positions `[start, end)` inside a head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(base: &[u8], part: &[u8]) -> Span {
        // Both slices come from the same buffer: the offset is a plain subtraction.
        let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    fn get<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        bytes
            .get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// One header field: positions of its name and its value (surrounding whitespace
/// excluded, as httparse reports them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Field {
    name: Span,
    value: Span,
}

/// HTTP/1.0 or HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Why a head cannot be read. Every one is answered with 400 `bad_request` (or, for an
/// upstream's head, 502), naming the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Larger than [`MAX_HEAD`].
    TooLarge,
    /// More than [`MAX_HEADERS`] fields.
    TooManyHeaders,
    /// Not HTTP/1.0 or HTTP/1.1 (HTTP/0.9, HTTP/2's preface, `HTTP/7.5`).
    Version,
    /// Anything else httparse refuses: a bad request line, a bad header name, a control
    /// character (NUL) in a value, obs-fold continuation lines, a bare CR.
    Malformed(&'static str),
}

impl HeadError {
    pub fn reason(self) -> &'static str {
        match self {
            HeadError::TooLarge => "the request head is larger than 64 KiB",
            HeadError::TooManyHeaders => "the request has more than 128 header fields",
            HeadError::Version => "only HTTP/1.0 and HTTP/1.1 are served on this port",
            HeadError::Malformed(why) => why,
        }
    }
}

fn malformed(e: httparse::Error) -> HeadError {
    use httparse::Error as E;
    match e {
        E::TooManyHeaders => HeadError::TooManyHeaders,
        E::Version => HeadError::Version,
        E::HeaderName => HeadError::Malformed("a header name is not a valid token"),
        E::HeaderValue => {
            HeadError::Malformed("a header value has a control character or a line folding")
        }
        E::NewLine | E::Token => {
            HeadError::Malformed("the request line or a header line is malformed")
        }
        E::Status => HeadError::Malformed("the status line is malformed"),
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    bytes: Bytes,
    method: Span,
    target: Span,
    pub version: Version,
    fields: Vec<Field>,
}

/// Fields of a head, with the bytes they point into.
pub struct Fields<'a> {
    bytes: &'a [u8],
    fields: std::slice::Iter<'a, Field>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let f = self.fields.next()?;
        Some((f.name.get(self.bytes), f.value.get(self.bytes)))
    }
}

/// Header lookups shared by request and response heads.
pub trait Head {
    fn bytes(&self) -> &[u8];
    fn field_list(&self) -> &[Field];

    /// Every field in order: `(name, value)`.
    fn fields(&self) -> Fields<'_> {
        Fields {
            bytes: self.bytes(),
            fields: self.field_list().iter(),
        }
    }

    /// Values of the fields named `name` (ASCII case-insensitive).
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The first value of `name`.
    fn value(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Does a `Connection` field list `token` (case-insensitive)?
    fn connection_has(&self, token: &str) -> bool {
        self.values("connection").any(|v| list_has(v, token))
    }
}

/// Is `token` one of the comma-separated elements of `value` (case-insensitive)?
pub fn list_has(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl Head for RequestHead {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn field_list(&self) -> &[Field] {
        &self.fields
    }
}

impl RequestHead {
    /// The method as sent (case-sensitive, as RFC 9110 says).
    pub fn method(&self) -> &str {
        std::str::from_utf8(self.method.get(&self.bytes)).unwrap_or_default()
    }

    /// The request-target as sent.
    pub fn target(&self) -> &str {
        std::str::from_utf8(self.target.get(&self.bytes)).unwrap_or_default()
    }

    /// Length of the head on the wire, final CRLF included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Does the client want the connection kept open after this request?
    pub fn wants_keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_has("close"),
            Version::Http10 => self.connection_has("keep-alive") && !self.connection_has("close"),
        }
    }
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more. On
/// success the head's bytes are split off `buf`, which keeps what follows (a body, a
/// pipelined request).
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(malformed(e)),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let base: &[u8] = buf;
    let method = Span::of(base, req.method.unwrap_or_default().as_bytes());
    let target = Span::of(base, req.path.unwrap_or_default().as_bytes());
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::Version),
    };
    let fields = req
        .headers
        .iter()
        .map(|h| Field {
            name: Span::of(base, h.name.as_bytes()),
            value: Span::of(base, h.value),
        })
        .collect();
    let bytes = buf.split_to(len).freeze();
    Ok(Some(RequestHead {
        bytes,
        method,
        target,
        version,
        fields,
    }))
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    bytes: Bytes,
    pub status: u16,
    reason: Span,
    pub version: Version,
    fields: Vec<Field>,
}

impl Head for ResponseHead {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn field_list(&self) -> &[Field] {
        &self.fields
    }
}

impl ResponseHead {
    pub fn reason(&self) -> &[u8] {
        self.reason.get(&self.bytes)
    }

    /// Does the upstream allow another request on this connection?
    pub fn allows_reuse(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_has("close"),
            Version::Http10 => self.connection_has("keep-alive") && !self.connection_has("close"),
        }
    }
}

/// Parses a response head at the start of `buf`, as [`parse_request`] does.
pub fn parse_response(buf: &mut BytesMut) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(malformed(e)),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let base: &[u8] = buf;
    let reason = Span::of(base, resp.reason.unwrap_or_default().as_bytes());
    let version = match resp.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::Version),
    };
    // httparse takes any three digits; `000` to `099` have no class (RFC 9110 §15), so
    // a client cannot tell what they mean: refused, as nginx and hyper do.
    let status = resp.code.unwrap_or_default();
    if status < 100 {
        return Err(HeadError::Malformed("the status code is below 100"));
    }
    let fields = resp
        .headers
        .iter()
        .map(|h| Field {
            name: Span::of(base, h.name.as_bytes()),
            value: Span::of(base, h.value),
        })
        .collect();
    let bytes = buf.split_to(len).freeze();
    Ok(Some(ResponseHead {
        bytes,
        status,
        reason,
        version,
        fields,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(&mut BytesMut::from(s))
    }

    #[test]
    fn parses_and_keeps_what_follows() {
        let mut buf = BytesMut::from("POST /a?b HTTP/1.1\r\nHost: x\r\nX-Y:  v  \r\n\r\nbody");
        let h = parse_request(&mut buf).expect("ok").expect("complete");
        assert_eq!(h.method(), "POST");
        assert_eq!(h.target(), "/a?b");
        assert_eq!(h.version, Version::Http11);
        let fields: Vec<_> = h.fields().collect();
        assert_eq!(
            fields,
            vec![(&b"Host"[..], &b"x"[..]), (&b"X-Y"[..], &b"v"[..])]
        );
        assert_eq!(h.value("x-y"), Some(&b"v"[..]));
        assert_eq!(&buf[..], b"body");
        assert!(h.wants_keep_alive());
    }

    #[test]
    fn partial_heads_ask_for_more() {
        assert!(matches!(req("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None)));
        assert!(matches!(req("GET / HT"), Ok(None)));
    }

    #[test]
    fn refuses_what_it_must() {
        assert_eq!(
            req("GET / HTTP/2.0\r\n\r\n").err(),
            Some(HeadError::Version)
        );
        assert_eq!(
            req("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").err(),
            Some(HeadError::Version)
        );
        assert!(req("GET /\r\n\r\n").is_err(), "HTTP/0.9");
        assert!(
            req("GET / HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n").is_err(),
            "obs-fold"
        );
        assert!(req("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n").is_err(), "NUL");
        assert!(req("GET / HTTP/1.1\r\nBad Name: a\r\n\r\n").is_err());
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(
            req(&format!("GET / HTTP/1.1\r\n{many}\r\n")).err(),
            Some(HeadError::TooManyHeaders)
        );
        let big = "a".repeat(MAX_HEAD);
        assert_eq!(
            req(&format!("GET / HTTP/1.1\r\nX: {big}")).err(),
            Some(HeadError::TooLarge)
        );
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| req(s).expect("ok").expect("complete").wants_keep_alive();
        assert!(ka("GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: x, close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn responses() {
        let mut buf = BytesMut::from("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno");
        let r = parse_response(&mut buf).expect("ok").expect("complete");
        assert_eq!((r.status, r.reason()), (404, &b"Not Found"[..]));
        assert_eq!(r.value("content-length"), Some(&b"2"[..]));
        assert_eq!(&buf[..], b"no");
        assert!(r.allows_reuse());
    }

    #[test]
    fn status_codes_below_100_are_refused() {
        // Found by the `head` fuzz target: `043` was taken as a status with a body.
        for s in ["000", "043", "099"] {
            let mut buf =
                BytesMut::from(format!("HTTP/1.0 {s} X\r\nContent-Length: 4\r\n\r\n").as_str());
            assert!(parse_response(&mut buf).is_err(), "{s}");
        }
        let mut buf = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(
            parse_response(&mut buf).ok().flatten().map(|r| r.status),
            Some(100)
        );
    }
}
