//! One blocking request at a time, for readiness and sanity checks and for reading
//! tollgate's `/metrics` (not for load: that is `gen`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET target` (origin-form, or absolute-form when `target` starts with `http`) with
/// `Connection: close`; returns the status and body.
pub fn get(
    addr: SocketAddr,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{addr}: {e}"))?;
    parse(&raw)
}

/// Status and body (de-chunked) of one whole response.
pub fn parse(raw: &[u8]) -> Result<(u16, String), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => {
            return Err(format!(
                "malformed response: {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            ))
        }
    };
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding") && h.value.eq_ignore_ascii_case(b"chunked")
    });
    let status = resp.code.unwrap_or(0);
    let mut body = &raw[n..];
    if !chunked {
        return Ok((status, String::from_utf8_lossy(body).into_owned()));
    }
    let mut out = Vec::new();
    while let Ok(httparse::Status::Complete((i, size))) = httparse::parse_chunk_size(body) {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size == 0 || body.len() < i + size {
            break;
        }
        out.extend_from_slice(&body[i..i + size]);
        body = &body[(i + size + 2).min(body.len())..];
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// Sum of a Prometheus metric's samples whose labels contain every `label="value"` given.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let (s, b) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").expect("plain");
        assert_eq!((s, b.as_str()), (200, "ok"));
        let (s, b) = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1\r\n!\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!((s, b.as_str()), (200, "ok!"));
    }

    #[test]
    fn sums_metric_samples() {
        let text = "# HELP x\nx_total{a=\"1\",b=\"2\"} 3\nx_total{a=\"1\",b=\"3\"} 4\nx_totalx 9\n";
        assert_eq!(metric(text, "x_total", &["a=\"1\""]), 7.0);
        assert_eq!(metric(text, "x_total", &["b=\"3\""]), 4.0);
    }
}
