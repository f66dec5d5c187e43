//! `tollgate probe URL`: one plain-HTTP GET, exit 0 on a 2xx answer. The container image
//! has no shell and no curl, so health checks (Docker `HEALTHCHECK`, the chart's
//! `helm test` pod) use the binary itself. Never goes through a proxy.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// At most this much of the answer is read (the admin endpoints answer a few bytes).
const MAX_ANSWER: u64 = 64 * 1024;

/// Exit codes: 0 a 2xx answer, 1 any other answer or none, 2 a URL we cannot probe.
pub fn run(url: &str, timeout: Duration) -> i32 {
    let target = match Target::parse(url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tollgate probe: {e}");
            return 2;
        }
    };
    match get(&target, timeout) {
        Ok((status, body)) => {
            let first = body.lines().next().unwrap_or("").trim();
            println!("{url}: {status} {first}");
            if (200..300).contains(&status) {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("tollgate probe: {url}: {e}");
            1
        }
    }
}

#[derive(Debug, PartialEq)]
struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if u.scheme() != "http" {
            return Err(format!("{url:?}: only http:// URLs can be probed"));
        }
        let host = match u.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            Some(h) => h.to_string(),
            None => return Err(format!("{url:?} has no host")),
        };
        let mut path = u.path().to_owned();
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Target {
            host,
            port: u.port().unwrap_or(80),
            path,
        })
    }
}

fn get(t: &Target, timeout: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addrs = (t.host.trim_matches(['[', ']']), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", t.host))?;
    let mut last = format!("{} resolves to no address", t.host);
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, left()) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    let mut s = stream.ok_or(last)?;
    s.set_read_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: tollgate-probe/{}\r\nConnection: close\r\n\r\n",
        t.path,
        t.host,
        t.port,
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    parse_answer(&answer)
}

/// The status code and body of an HTTP/1.x answer (the body as text, lossily).
fn parse_answer(answer: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok((code, body.to_owned())),
        _ => Err(format!(
            "not an HTTP answer: {:?}",
            status_line.chars().take(80).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            Target::parse("http://127.0.0.1:9901/readyz"),
            Ok(Target {
                host: "127.0.0.1".into(),
                port: 9901,
                path: "/readyz".into()
            })
        );
        assert_eq!(
            Target::parse("http://[::1]/x?y=1").map(|t| (t.host, t.port, t.path)),
            Ok(("[::1]".into(), 80, "/x?y=1".into()))
        );
        assert!(Target::parse("https://a/").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn parses_answers() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nready\n"),
            Ok((200, "ready\n".into()))
        );
        assert_eq!(
            parse_answer(b"HTTP/1.0 503 X\r\n\r\n"),
            Ok((503, String::new()))
        );
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_answer(b"").is_err());
    }
}
