//! The HTTP/1 head and framing code: `http1::parse_request`, `parse_response`,
//! `request_body` and `response_body`, on raw bytes (seeded with heads and a dictionary:
//! see `scripts/fuzz`), as a request or as a response.
//!
//! Checks, for every head the parser accepts:
//! - it takes exactly the head's bytes from the buffer (at most `MAX_HEAD`) and leaves
//!   what follows, and gives the same head whatever follows;
//! - every shorter prefix of it is "incomplete, read more", never an error (the
//!   connection loop reads heads in pieces);
//! - written back as we write heads (`NAME: VALUE` CRLF), it parses identically: method,
//!   target, version (status and reason), every field in order, the framing and the
//!   keep-alive decision;
//! - the framing agrees with an independent reading of RFC 9112 §6: a request with both
//!   `Content-Length` and `Transfer-Encoding`, differing lengths, `Transfer-Encoding` in
//!   HTTP/1.0 or a coding other than chunked last is refused; a chunked response keeps
//!   its connection only without `Content-Length`; HEAD, 1xx, 204 and 304 have no body.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tollgate::http1::{
    parse_request, parse_response, request_body, response_body, Head, ReqBody, RespBody, Version,
    MAX_HEAD,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the direction (and, for responses, the request method), so
    // the same corpus feeds both.
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        request(data);
    } else {
        response(data, if sel & 2 == 0 { "GET" } else { "HEAD" });
    }
});

fn version(v: Version) -> &'static str {
    match v {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    }
}

/// Every prefix shorter than `len` must ask for more (checked at a few cut points, and
/// at every one for short heads).
fn prefixes_incomplete<T>(
    data: &[u8],
    len: usize,
    parse: impl Fn(&mut BytesMut) -> Result<Option<T>, tollgate::http1::HeadError>,
) {
    let cuts: Vec<usize> = if len <= 64 {
        (0..len).collect()
    } else {
        vec![0, 1, len / 3, len / 2, len - 2, len - 1]
    };
    for cut in cuts {
        match parse(&mut BytesMut::from(&data[..cut])) {
            Ok(None) => {}
            Ok(Some(_)) => panic!("a prefix of {cut} bytes of a {len}-byte head is complete"),
            Err(e) => panic!("a prefix of {cut} bytes of a {len}-byte head is refused: {e:?}"),
        }
    }
}

fn fields_of<H: Head>(h: &H) -> Vec<(Vec<u8>, Vec<u8>)> {
    h.fields().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
}

fn write_fields(out: &mut Vec<u8>, fields: &[(Vec<u8>, Vec<u8>)]) {
    for (n, v) in fields {
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn request(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let h = match parse_request(&mut buf) {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert!(
                data.len() < MAX_HEAD,
                "{} bytes and still incomplete",
                data.len()
            );
            assert_eq!(buf.len(), data.len(), "an incomplete head consumed bytes");
            return;
        }
        Err(e) => {
            assert!(!e.reason().is_empty());
            return;
        }
    };
    let len = h.len();
    assert!(len <= MAX_HEAD && len <= data.len());
    assert_eq!(
        &buf[..],
        &data[len..],
        "the bytes after the head were not kept"
    );
    let alone = parse_request(&mut BytesMut::from(&data[..len]))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the head alone does not parse"));
    assert_eq!(fields_of(&alone), fields_of(&h));
    prefixes_incomplete(data, len, parse_request);

    let fields = fields_of(&h);
    let framing = request_body(&h);
    assert_eq!(
        framing.map_err(|_| ""),
        reference_request_framing(h.version, &fields),
        "{fields:?}"
    );

    let mut out = format!("{} {} {}\r\n", h.method(), h.target(), version(h.version)).into_bytes();
    write_fields(&mut out, &fields);
    let n = out.len();
    let mut again_buf = BytesMut::from(&out[..]);
    let again = match parse_request(&mut again_buf) {
        Ok(Some(a)) => a,
        other => panic!(
            "{:?} re-serialised as {:?} gives {:?}",
            String::from_utf8_lossy(&data[..len]),
            String::from_utf8_lossy(&out),
            other.map(|o| o.map(|a| a.len()))
        ),
    };
    assert_eq!(again.len(), n);
    assert_eq!(again.method(), h.method());
    assert_eq!(again.target(), h.target());
    assert_eq!(again.version, h.version);
    assert_eq!(fields_of(&again), fields);
    assert_eq!(request_body(&again), framing);
    assert_eq!(again.wants_keep_alive(), h.wants_keep_alive());
}

fn response(data: &[u8], method: &str) {
    let mut buf = BytesMut::from(data);
    let h = match parse_response(&mut buf) {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert!(data.len() < MAX_HEAD);
            assert_eq!(buf.len(), data.len());
            return;
        }
        Err(e) => {
            assert!(!e.reason().is_empty());
            return;
        }
    };
    let len = data.len() - buf.len();
    assert!(len <= MAX_HEAD);
    assert!((100..=999).contains(&h.status), "status {}", h.status);
    prefixes_incomplete(data, len, parse_response);

    let fields = fields_of(&h);
    let framing = response_body(&h, method);
    assert_eq!(
        framing.map_err(|_| ""),
        reference_response_framing(h.status, method, &fields),
        "{fields:?}"
    );

    let mut out = format!("{} {:03} ", version(h.version), h.status).into_bytes();
    out.extend_from_slice(h.reason());
    out.extend_from_slice(b"\r\n");
    write_fields(&mut out, &fields);
    let again = match parse_response(&mut BytesMut::from(&out[..])) {
        Ok(Some(a)) => a,
        other => panic!(
            "response re-serialised as {:?} gives {:?}",
            String::from_utf8_lossy(&out),
            other.map(|o| o.map(|a| a.status))
        ),
    };
    assert_eq!((again.status, again.version), (h.status, h.version));
    assert_eq!(again.reason(), h.reason());
    assert_eq!(fields_of(&again), fields);
    assert_eq!(response_body(&again, method), framing);
    assert_eq!(again.allows_reuse(), h.allows_reuse());
}

fn values<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
}

/// Elements of a comma-separated list, trimmed, empty ones dropped.
fn elements<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    values
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
        .collect()
}

/// `Content-Length`: `None` absent, `Some(Err)` invalid or disagreeing, else the value.
fn reference_length(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<Result<u64, ()>> {
    let mut any = false;
    let mut seen: Option<u64> = None;
    for v in values(fields, "content-length") {
        any = true;
        for part in v.split(|b| *b == b',') {
            let part = std::str::from_utf8(part.trim_ascii()).unwrap_or("x");
            // Digits only, and small enough that a length cannot overflow anything.
            if part.is_empty() || part.len() > 18 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Some(Err(()));
            }
            let n: u64 = part.parse().unwrap_or(u64::MAX);
            if seen.is_some_and(|s| s != n) {
                return Some(Err(()));
            }
            seen = Some(n);
        }
    }
    any.then(|| seen.ok_or(()))
}

fn reference_request_framing(
    version: Version,
    fields: &[(Vec<u8>, Vec<u8>)],
) -> Result<ReqBody, &'static str> {
    let has_te = values(fields, "transfer-encoding").next().is_some();
    let codings = elements(values(fields, "transfer-encoding"));
    let cl = reference_length(fields);
    let refuse = Err("");
    let got = match (has_te, cl) {
        (_, Some(Err(()))) => refuse,
        (true, Some(Ok(_))) => refuse,
        (true, None) if version == Version::Http10 => refuse,
        (true, None) => match codings.last() {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => Ok(ReqBody::Chunked),
            _ => refuse,
        },
        (false, None) | (false, Some(Ok(0))) => Ok(ReqBody::None),
        (false, Some(Ok(n))) => Ok(ReqBody::Length(n)),
    };
    got
}

fn reference_response_framing(
    status: u16,
    method: &str,
    fields: &[(Vec<u8>, Vec<u8>)],
) -> Result<(RespBody, bool), &'static str> {
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok((RespBody::None, false));
    }
    let has_te = values(fields, "transfer-encoding").next().is_some();
    let has_cl = values(fields, "content-length").next().is_some();
    if has_te {
        let chunked = elements(values(fields, "transfer-encoding"))
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked {
            (RespBody::Chunked, has_cl)
        } else {
            (RespBody::Close, true)
        });
    }
    match reference_length(fields) {
        Some(Err(())) => Err(""),
        Some(Ok(0)) => Ok((RespBody::None, false)),
        Some(Ok(n)) => Ok((RespBody::Length(n), false)),
        None => Ok((RespBody::Close, true)),
    }
}
