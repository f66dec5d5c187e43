//! Message framing (RFC 9112 §6): how long a body is, and the chunked coding, read
//! strictly. Bodies are relayed verbatim (a chunked body stays chunked, byte for byte);
//! [`Chunked`] only finds where it ends, and can hand out the data for clients that
//! cannot read chunked (HTTP/1.0).
//!
//! Strict where request smuggling lives: both `Content-Length` and `Transfer-Encoding`,
//! differing `Content-Length` values, a request coding that does not end in `chunked`,
//! `Transfer-Encoding` on HTTP/1.0, bare LF or junk inside the chunked coding: refused.

use super::head::{Head, RequestHead, ResponseHead, Version};

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqBody {
    None,
    Length(u64),
    Chunked,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespBody {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// The single value of the `Content-Length` fields (equal repeats, as `5, 5`, allowed).
fn content_length<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, &'static str> {
    let mut found: Option<u64> = None;
    for v in values {
        for part in v.split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
                return Err("Content-Length is not a number");
            }
            let n = part
                .iter()
                .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            if found.is_some_and(|f| f != n) {
                return Err("Content-Length fields disagree");
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// `Some(true)`: the last transfer coding is `chunked`; `Some(false)`: some other coding
/// is last; `None`: no `Transfer-Encoding`.
fn chunked_last<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<bool> {
    let mut last: Option<&[u8]> = None;
    let mut any = false;
    for v in values.by_ref() {
        any = true;
        for c in v.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            if !c.is_empty() {
                last = Some(c);
            }
        }
    }
    any.then(|| last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")))
}

/// The framing of a request body, or why the request must be refused.
pub fn request_body(head: &RequestHead) -> Result<ReqBody, &'static str> {
    let te = chunked_last(head.values("transfer-encoding"));
    let cl = content_length(head.values("content-length"))?;
    match (te, cl) {
        (Some(_), Some(_)) => {
            Err("both Content-Length and Transfer-Encoding are present (RFC 9112 section 6.3)")
        }
        (Some(_), None) if head.version == Version::Http10 => {
            Err("Transfer-Encoding is not allowed in an HTTP/1.0 request")
        }
        (Some(true), None) => Ok(ReqBody::Chunked),
        (Some(false), None) => Err("the request's transfer coding does not end in chunked"),
        (None, Some(0)) | (None, None) => Ok(ReqBody::None),
        (None, Some(n)) => Ok(ReqBody::Length(n)),
    }
}

/// The framing of a response body to a request with method `method`, and whether the
/// upstream connection must close afterwards (both length fields present). Errors make
/// the response unusable (502).
pub fn response_body(head: &ResponseHead, method: &str) -> Result<(RespBody, bool), &'static str> {
    let status = head.status;
    if method.eq_ignore_ascii_case("HEAD")
        || status == 204
        || status == 304
        || (100..200).contains(&status)
    {
        return Ok((RespBody::None, false));
    }
    let te = chunked_last(head.values("transfer-encoding"));
    match te {
        Some(true) => {
            let both = head.value("content-length").is_some();
            Ok((RespBody::Chunked, both))
        }
        Some(false) => Ok((RespBody::Close, true)),
        None => match content_length(head.values("content-length"))? {
            Some(0) => Ok((RespBody::None, false)),
            Some(n) => Ok((RespBody::Length(n), false)),
            None => Ok((RespBody::Close, true)),
        },
    }
}

/// Longest chunk-size line (size, extensions) and trailer section accepted.
const MAX_CHUNK_LINE: u32 = 4096;
const MAX_TRAILERS: u32 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Reading hex digits of a chunk size: value so far, digits seen.
    Size(u64, u8),
    /// After the digits: optional whitespace, then `;` extensions or CR.
    AfterSize(u64),
    /// Inside chunk extensions, until CR.
    Ext(u64),
    /// CR seen after a size line; LF must follow.
    SizeLf(u64),
    /// Chunk data left.
    Data(u64),
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line, until CR.
    Trailer,
    /// CR seen at the end of a trailer line; `true` when the line was empty.
    TrailerLf(bool),
    Done,
}

/// The chunked coding's state machine over a stream of bytes.
#[derive(Debug, Clone)]
pub struct Chunked {
    st: St,
    /// Bytes in the current size line or trailer section (bounded).
    line: u32,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            st: St::Size(0, 0),
            line: 0,
        }
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

impl Chunked {
    /// Has the last chunk and the trailer section been seen?
    pub fn done(&self) -> bool {
        self.st == St::Done
    }

    /// Consumes bytes of `buf` that belong to the body, calling `data` with the chunk
    /// data among them; returns how many belong to the body (the rest follow it).
    pub fn advance(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, &'static str> {
        let mut i = 0;
        while i < buf.len() {
            if let St::Data(left) = self.st {
                let take = (buf.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                data(&buf[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.st = if left == 0 {
                    St::DataCr
                } else {
                    St::Data(left)
                };
                continue;
            }
            if self.st == St::Done {
                return Ok(i);
            }
            let b = buf[i];
            i += 1;
            self.st = self.step(b)?;
            if self.st == St::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }

    fn count(&mut self, limit: u32, why: &'static str) -> Result<(), &'static str> {
        self.line += 1;
        if self.line > limit {
            return Err(why);
        }
        Ok(())
    }

    fn step(&mut self, b: u8) -> Result<St, &'static str> {
        const BAD: &str = "malformed chunked body";
        Ok(match self.st {
            St::Size(n, digits) => {
                self.count(MAX_CHUNK_LINE, "chunk size line too long")?;
                match (hex(b), b) {
                    (Some(d), _) => {
                        if digits >= 16 {
                            return Err("chunk size too large");
                        }
                        St::Size(n * 16 + d, digits + 1)
                    }
                    (None, _) if digits == 0 => return Err(BAD),
                    (None, b'\r') => St::SizeLf(n),
                    (None, b';') => St::Ext(n),
                    (None, b' ' | b'\t') => St::AfterSize(n),
                    _ => return Err(BAD),
                }
            }
            St::AfterSize(n) => {
                self.count(MAX_CHUNK_LINE, "chunk size line too long")?;
                match b {
                    b' ' | b'\t' => St::AfterSize(n),
                    b';' => St::Ext(n),
                    b'\r' => St::SizeLf(n),
                    _ => return Err(BAD),
                }
            }
            St::Ext(n) => {
                self.count(MAX_CHUNK_LINE, "chunk extensions too long")?;
                match b {
                    b'\r' => St::SizeLf(n),
                    b'\t' | b' '..=b'~' | 0x80..=0xff => St::Ext(n),
                    _ => return Err(BAD),
                }
            }
            St::SizeLf(n) => {
                if b != b'\n' {
                    return Err(BAD);
                }
                self.line = 0;
                if n == 0 {
                    St::TrailerStart
                } else {
                    St::Data(n)
                }
            }
            St::DataCr if b == b'\r' => St::DataLf,
            St::DataLf if b == b'\n' => St::Size(0, 0),
            St::TrailerStart => {
                self.count(MAX_TRAILERS, "trailer section too large")?;
                match b {
                    b'\r' => St::TrailerLf(true),
                    b'\t' | b' '..=b'~' | 0x80..=0xff => St::Trailer,
                    _ => return Err(BAD),
                }
            }
            St::Trailer => {
                self.count(MAX_TRAILERS, "trailer section too large")?;
                match b {
                    b'\r' => St::TrailerLf(false),
                    b'\t' | b' '..=b'~' | 0x80..=0xff => St::Trailer,
                    _ => return Err(BAD),
                }
            }
            St::TrailerLf(empty) if b == b'\n' => {
                if empty {
                    St::Done
                } else {
                    St::TrailerStart
                }
            }
            _ => return Err(BAD),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::head::{parse_request, parse_response};
    use bytes::BytesMut;

    fn req(s: &str) -> Result<ReqBody, &'static str> {
        let h = parse_request(&mut BytesMut::from(s))
            .expect("head")
            .expect("complete");
        request_body(&h)
    }

    #[test]
    fn request_framing() {
        assert_eq!(req("GET / HTTP/1.1\r\n\r\n"), Ok(ReqBody::None));
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Ok(ReqBody::None)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Ok(ReqBody::Length(12))
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(ReqBody::Length(5))
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            Ok(ReqBody::Chunked)
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        ] {
            assert!(req(bad).is_err(), "{bad:?}");
        }
    }

    fn resp(s: &str, method: &str) -> (RespBody, bool) {
        let h = parse_response(&mut BytesMut::from(s))
            .expect("head")
            .expect("complete");
        response_body(&h, method).expect("framing")
    }

    #[test]
    fn response_framing() {
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "GET"),
            (RespBody::Length(3), false)
        );
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "HEAD"),
            (RespBody::None, false)
        );
        assert_eq!(
            resp("HTTP/1.1 204 No Content\r\n\r\n", "GET"),
            (RespBody::None, false)
        );
        assert_eq!(
            resp(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                "GET"
            )
            .0,
            RespBody::None
        );
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\n\r\n", "GET"),
            (RespBody::Close, true)
        );
        assert_eq!(
            resp(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET"
            ),
            (RespBody::Chunked, false)
        );
        assert_eq!(
            resp(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                "GET"
            ),
            (RespBody::Chunked, true)
        );
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET"),
            (RespBody::Close, true)
        );
    }

    fn scan(body: &[u8]) -> Result<(usize, Vec<u8>, bool), &'static str> {
        let mut c = Chunked::default();
        let mut data = Vec::new();
        let n = c.advance(body, |d| data.extend_from_slice(d))?;
        Ok((n, data, c.done()))
    }

    #[test]
    fn chunked_reads_to_the_end_and_no_further() {
        let body = b"5\r\nhello\r\n6;ext=1;x=\"y\"\r\n world\r\n0\r\nTrailer: t\r\n\r\nNEXT";
        let (n, data, done) = scan(body).expect("valid");
        assert!(done);
        assert_eq!(&body[n..], b"NEXT");
        assert_eq!(data, b"hello world");
        let (n, data, done) = scan(b"A \t; e\r\n0123456789\r\n0\r\n\r\n").expect("valid");
        assert!(done && n == 25 && data == b"0123456789", "{n}");
    }

    #[test]
    fn chunked_across_any_split() {
        let body = b"3\r\nabc\r\n1;x\r\nd\r\n0\r\nA: b\r\n\r\n";
        for cut in 0..body.len() {
            let mut c = Chunked::default();
            let mut data = Vec::new();
            let a = c
                .advance(&body[..cut], |d| data.extend_from_slice(d))
                .expect("first part");
            assert_eq!(a, cut);
            let b = c
                .advance(&body[cut..], |d| data.extend_from_slice(d))
                .expect("second part");
            assert_eq!(a + b, body.len());
            assert!(c.done());
            assert_eq!(data, b"abcd");
        }
    }

    #[test]
    fn chunked_refuses_smuggling_shapes() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..], // bare LF after size
            b"5\r\nhello\n0\r\n\r\n",      // bare LF after data
            b"5\r\nhelloX\r\n0\r\n\r\n",   // data longer than the size
            b"\r\n",                       // no digits
            b"-5\r\n",                     // sign
            b"0x5\r\n",                    // prefix
            b"5 5\r\n",                    // digits after whitespace
            b"11111111111111111\r\n",      // 17 hex digits
            b"1;a\nb\r\n",                 // LF inside an extension
            b"0\r\nTrailer: a\nb\r\n\r\n", // bare LF in a trailer
            b"1\r\na\r\n0\r\n\n",          // bare LF ends the trailers
        ] {
            assert!(scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("1;{}\r\n", "e".repeat(5000));
        assert!(scan(long.as_bytes()).is_err());
    }
}
