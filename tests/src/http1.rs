//! A deliberately small HTTP/1.1 reader shared by the recording upstream and the raw
//! client. It keeps what a real library would normalise away: the request-target exactly
//! as sent, header names in their original case and order, duplicates.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long any single read may wait before the harness gives up (no test should hang).
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// A parsed message head: the start line and the header fields in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of a header, by case-insensitive name, in wire order.
pub fn header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Parse a head (everything before the empty line, without it).
pub fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let start_line = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| "empty message head".to_string())?
        .to_string();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        start_line,
        headers,
    })
}

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Body framing of a request (no body unless Content-Length or chunked).
pub fn request_body_kind(headers: &[(String, String)]) -> Result<BodyKind, String> {
    if header_all(headers, "transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(BodyKind::Chunked);
    }
    match header(headers, "content-length") {
        Some(v) => v
            .trim()
            .parse()
            .map(BodyKind::Length)
            .map_err(|_| format!("bad content-length {v:?}")),
        None => Ok(BodyKind::None),
    }
}

/// Body framing of a response to `method` with `status`.
pub fn response_body_kind(
    method: &str,
    status: u16,
    headers: &[(String, String)],
) -> Result<BodyKind, String> {
    if method.eq_ignore_ascii_case("HEAD")
        || (method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&status))
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(BodyKind::None);
    }
    match request_body_kind(headers)? {
        BodyKind::None => Ok(BodyKind::UntilClose),
        other => Ok(other),
    }
}

/// A stream plus the bytes already read from it but not yet consumed.
pub struct Wire<S> {
    pub stream: S,
    pub buf: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Wire<S> {
    pub fn new(stream: S) -> Self {
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    /// Read more bytes into the buffer. Returns how many (0 at EOF).
    async fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| format!("read timed out after {READ_TIMEOUT:?}"))?
            .map_err(|e| format!("read failed: {e}"))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Read one head (up to and excluding the blank line). `Ok(None)`: clean EOF before
    /// any byte of a new message.
    pub async fn read_head(&mut self, max: usize) -> Result<Option<Head>, String> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return parse_head(&head[..pos]).map(Some);
            }
            if self.buf.len() > max {
                return Err(format!("head larger than {max} bytes"));
            }
            if self.fill().await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(format!(
                    "connection closed in the middle of a head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        }
    }

    /// Read exactly `n` bytes.
    pub async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(format!(
                    "connection closed after {} of {n} bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(line[..pos].to_vec());
            }
            if self.fill().await? == 0 {
                return Err("connection closed in the middle of a line".into());
            }
        }
    }

    /// Read everything until the peer closes.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, String> {
        while self.fill().await? != 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Read a body with the given framing (chunked is decoded; trailers are dropped).
    pub async fn read_body(&mut self, kind: BodyKind) -> Result<Vec<u8>, String> {
        self.read_body_and_trailers(kind)
            .await
            .map(|(body, _)| body)
    }

    /// Read a body with the given framing; chunked is decoded and its trailer fields are
    /// returned (in order, as sent).
    pub async fn read_body_and_trailers(
        &mut self,
        kind: BodyKind,
    ) -> Result<(Vec<u8>, Vec<(String, String)>), String> {
        match kind {
            BodyKind::None => Ok((Vec::new(), Vec::new())),
            BodyKind::Length(n) => Ok((self.read_exact(n).await?, Vec::new())),
            BodyKind::UntilClose => Ok((self.read_to_end().await?, Vec::new())),
            BodyKind::Chunked => {
                let mut body = Vec::new();
                loop {
                    let line = self.read_line().await?;
                    let line = String::from_utf8_lossy(&line);
                    let size_text = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| format!("bad chunk size line {line:?}"))?;
                    if size == 0 {
                        // Trailer section, ended by an empty line.
                        let mut trailers = Vec::new();
                        loop {
                            let line = self.read_line().await?;
                            if line.is_empty() {
                                return Ok((body, trailers));
                            }
                            let line = String::from_utf8_lossy(&line);
                            let (n, v) = line.split_once(':').unwrap_or((&line, ""));
                            trailers.push((n.to_string(), v.trim().to_string()));
                        }
                    }
                    body.extend(self.read_exact(size).await?);
                    if !self.read_line().await?.is_empty() {
                        return Err("chunk not followed by CRLF".into());
                    }
                }
            }
        }
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn parses_head_keeping_case_order_and_duplicates() {
        let head =
            parse_head(b"GET http://a:1/x?y HTTP/1.1\r\nHost: a:1\r\nX-A: 1\r\nx-a:  2 ").unwrap();
        assert_eq!(head.start_line, "GET http://a:1/x?y HTTP/1.1");
        assert_eq!(
            head.headers,
            vec![
                ("Host".to_string(), "a:1".to_string()),
                ("X-A".to_string(), "1".to_string()),
                ("x-a".to_string(), "2".to_string()),
            ]
        );
        assert_eq!(header_all(&head.headers, "x-a"), vec!["1", "2"]);
    }

    #[tokio::test]
    async fn reads_chunked_body_and_keeps_leftover() {
        let data: &[u8] = b"4\r\nabcd\r\n2;ext=1\r\nef\r\n0\r\nT: 1\r\n\r\nNEXT";
        let mut wire = Wire::new(data);
        let (body, trailers) = wire
            .read_body_and_trailers(BodyKind::Chunked)
            .await
            .unwrap();
        assert_eq!(body, b"abcdef");
        assert_eq!(trailers, vec![("T".to_string(), "1".to_string())]);
        assert_eq!(wire.buf, b"NEXT");
    }

    #[test]
    fn response_framing() {
        let none: Vec<(String, String)> = vec![];
        assert_eq!(
            response_body_kind("CONNECT", 200, &none).unwrap(),
            BodyKind::None
        );
        assert_eq!(
            response_body_kind("GET", 200, &none).unwrap(),
            BodyKind::UntilClose
        );
        let cl = vec![("Content-Length".to_string(), "3".to_string())];
        assert_eq!(
            response_body_kind("GET", 403, &cl).unwrap(),
            BodyKind::Length(3)
        );
    }
}
