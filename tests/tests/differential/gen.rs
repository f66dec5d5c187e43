//! The differential test's cases: a seeded generator of requests (valid ones and hostile
//! framing) and of the upstream responses they ask for. Everything is a function of the
//! seed, so a failure is replayed with `DIFF_SEED`.

use super::Known;
use tollgate_tests::{RecordedRequest, Scripted};

/// splitmix64: small, fast, good enough to pick test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `0..n`
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `lo..=hi`
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }

    /// Bytes of any value.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `n` characters of `[a-z0-9_~-]`.
    pub fn token(&mut self, n: usize) -> String {
        const CH: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_~";
        (0..n).map(|_| *self.pick(CH) as char).collect()
    }
}

/// What a correct proxy must do with a case, whatever the reference does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Forward it.
    Valid,
    /// Refuse it: nothing of it reaches the upstream; the client gets a 4xx or a closed
    /// connection.
    Refuse,
    /// RFC 9112 lets a recipient accept it or refuse it (bare LF line ends): either, but
    /// compared with the reference all the same.
    Either,
}

/// One generated case: the bytes one client connection writes, and what to read back.
pub struct Case {
    /// The family, for the summary (`valid/chunked`, `hostile/cl+te`, ...).
    pub label: &'static str,
    pub kind: Kind,
    /// Written in order, with a short pause between them (so that the proxy reads them
    /// apart).
    pub writes: Vec<Vec<u8>>,
    /// The method of each request written, in order (one response is read for each).
    pub methods: Vec<String>,
    /// `writes[0]` is a head with `Expect: 100-continue`: wait for the interim response
    /// before writing the body, as curl does (up to a second).
    pub expect_continue: bool,
    /// The client's last request asks to keep the connection.
    pub keep_alive: bool,
    /// Some request is HTTP/1.0 (its response must not be chunked).
    pub http10: bool,
    /// The documented differences this case is made to show.
    pub known: Vec<Known>,
}

impl Case {
    /// The whole byte stream (for failure reports).
    pub fn bytes(&self) -> Vec<u8> {
        self.writes.concat()
    }
}

enum Body {
    None,
    Length(Vec<u8>),
    /// Chunks (data, extension text after the size), trailer fields.
    Chunked(Vec<(Vec<u8>, String)>, Vec<(String, String)>),
}

struct Req {
    method: String,
    target: String,
    version: &'static str,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
    keep_alive: bool,
    expect: bool,
    known: Vec<Known>,
}

impl Req {
    fn head(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.target, self.version).into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The body on the wire, and where its last chunk's final CRLF starts (to split
    /// there).
    fn body(&self, rng: &mut Rng) -> (Vec<u8>, Option<usize>) {
        match &self.body {
            Body::None => (Vec::new(), None),
            Body::Length(b) => (b.clone(), None),
            Body::Chunked(chunks, trailers) => {
                let mut out = Vec::new();
                for (data, ext) in chunks {
                    let size = match rng.below(3) {
                        0 => format!("{:x}", data.len()),
                        1 => format!("{:X}", data.len()),
                        _ => format!("00{:x}", data.len()),
                    };
                    out.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                for (n, v) in trailers {
                    out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                let last = out.len();
                out.extend_from_slice(b"\r\n");
                (out, Some(last))
            }
        }
    }
}

/// Cuts `bytes` into 1..=`max` pieces at random points, always also at `must` points.
fn split(rng: &mut Rng, bytes: Vec<u8>, max: usize, must: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = must
        .iter()
        .copied()
        .filter(|c| *c > 0 && *c < bytes.len())
        .collect();
    if bytes.len() > 1 {
        for _ in 0..rng.below(max) {
            cuts.push(rng.range(1, bytes.len() - 1));
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        out.push(bytes[at..c].to_vec());
        at = c;
    }
    out.push(bytes[at..].to_vec());
    out
}

/// Random upper/lower case for the letters of `name`, now and then.
fn recase(rng: &mut Rng, name: &str) -> String {
    match rng.below(4) {
        0 => name.to_ascii_lowercase(),
        1 => name
            .chars()
            .map(|c| {
                if rng.chance(50) {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect(),
        _ => name.to_owned(),
    }
}

/// The authority the client asks for: `api.test` (matched by the route's `api.test:*`)
/// with or without a port.
fn authority(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => "api.test".into(),
        1 => "api.test:80".into(),
        2 => "api.test:8080".into(),
        _ => "API.test:8443".into(),
    }
}

/// A path with no dot segments and no percent-encoding (tollgate normalises those; its
/// own tests cover that), and sometimes a query, which both forward as sent.
fn path(rng: &mut Rng) -> String {
    let mut p = String::new();
    for _ in 0..rng.range(1, 4) {
        p.push('/');
        let n = rng.range(1, 8);
        p.push_str(&rng.token(n));
    }
    if rng.chance(20) {
        p.push('/');
    }
    if rng.chance(40) {
        p.push('?');
        let q = [
            "a=1", "b=x%20y", "c=/s:t@u", "d=e+f", "empty=", "k", "x=%3F%26",
        ];
        for i in 0..rng.range(1, 3) {
            if i > 0 {
                p.push('&');
            }
            let s: &&str = rng.pick(&q);
            p.push_str(s);
        }
    }
    p
}

/// Ordinary end-to-end fields, forwarded by both proxies.
fn end_to_end(rng: &mut Rng) -> (String, Vec<u8>) {
    let pool: [(&str, &[u8]); 14] = [
        ("Accept", b"*/*"),
        ("User-Agent", b"diff/1.0 (+tollgate tests)"),
        ("Accept-Encoding", b"gzip, br"),
        ("Cookie", b"a=b; c=d"),
        ("Authorization", b"Bearer the-clients-own"),
        ("X-Dup", b"one"),
        ("X-Dup", b"two"),
        ("Cache-Control", b"no-cache"),
        ("X-Empty", b""),
        ("X-Spaces", b"a  b\tc"),
        ("X-Obs-Text", b"caf\xe9"),
        ("Via", b"1.0 an-earlier-proxy"),
        ("X-Forwarded-For", b"192.0.2.1"),
        ("Accept-Language", b"en;q=0.8, fr"),
    ];
    if rng.chance(25) {
        let n = rng.range(1, 12);
        let name = format!("X-Gen-{}", rng.token(n));
        let n = rng.range(0, 30);
        return (name, rng.token(n).into_bytes());
    }
    let (n, v) = rng.pick(&pool);
    (recase(rng, n), v.to_vec())
}

/// Hop-by-hop fields (and `Proxy-Authorization`), dropped by both proxies.
fn hop_by_hop(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let pool: [&[(&str, &[u8])]; 6] = [
        &[("Keep-Alive", b"timeout=5, max=100")],
        &[("TE", b"trailers")],
        &[("Trailer", b"X-Trail")],
        &[("Proxy-Authorization", b"Basic Zm9vOmJhcg==")],
        &[("Proxy-Connection", b"keep-alive")],
        &[("Connection", b"x-hop"), ("X-Hop", b"dropped, it is named")],
    ];
    rng.pick(&pool)
        .iter()
        .map(|(n, v)| (recase(rng, n), v.to_vec()))
        .collect()
}

fn body_bytes(rng: &mut Rng) -> Vec<u8> {
    let n = match rng.below(10) {
        0 => 0,
        1 => 1,
        2..=4 => rng.range(2, 200),
        5..=7 => rng.range(200, 8000),
        8 => rng.range(60_000, 70_000), // across the 64 KiB replay and pingora buffers
        _ => rng.range(100_000, 200_000),
    };
    rng.bytes(n)
}

fn chunks(rng: &mut Rng) -> Body {
    let data = body_bytes(rng);
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = match rng.below(4) {
            0 => rng.range(1, 16),
            1 => rng.range(16, 1000),
            _ => rng.range(1000, 40_000),
        }
        .min(data.len() - at);
        let ext = match rng.below(6) {
            0 => ";a=b".to_owned(),
            1 => ";x".to_owned(),
            2 => ";q=\"v v\";r".to_owned(),
            _ => String::new(),
        };
        chunks.push((data[at..at + n].to_vec(), ext));
        at += n;
    }
    let mut trailers = Vec::new();
    if rng.chance(25) {
        trailers.push(("X-Trail".to_owned(), "t1".to_owned()));
        if rng.chance(50) {
            trailers.push(("X-Checksum".to_owned(), rng.token(8)));
        }
    }
    Body::Chunked(chunks, trailers)
}

/// A valid request (HTTP/1.1 or `version`), with or without a body.
fn valid_request(rng: &mut Rng, version: &'static str, target_path: Option<String>) -> Req {
    let http10 = version == "HTTP/1.0";
    let method = if target_path.is_some() {
        "GET"
    } else {
        *rng.pick(&[
            "GET", "GET", "HEAD", "POST", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
        ])
    };
    let auth = authority(rng);
    let path = target_path.unwrap_or_else(|| path(rng));
    let absolute = rng.chance(50);
    let target = if absolute {
        format!("http://{auth}{path}")
    } else {
        path
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for _ in 0..rng.range(0, 7) {
        headers.push(end_to_end(rng));
    }
    if rng.chance(35) {
        headers.extend(hop_by_hop(rng));
    }
    let body = match method {
        "POST" | "PUT" | "PATCH" => match rng.below(3) {
            0 => Body::None,
            1 => Body::Length(body_bytes(rng)),
            _ if http10 => Body::Length(body_bytes(rng)),
            _ => chunks(rng),
        },
        "DELETE" if rng.chance(20) => Body::Length(body_bytes(rng)),
        _ => Body::None,
    };
    match &body {
        Body::Length(b) => {
            if !b.is_empty() || rng.chance(50) {
                headers.push((recase(rng, "Content-Length"), b.len().to_string().into()));
            }
        }
        Body::Chunked(..) => headers.push((recase(rng, "Transfer-Encoding"), b"chunked".to_vec())),
        Body::None => {}
    }
    let expect = !matches!(body, Body::None) && !http10 && rng.chance(20);
    if expect {
        headers.push((recase(rng, "Expect"), b"100-continue".to_vec()));
    }
    let mut keep_alive = !http10;
    match rng.below(8) {
        0 if !http10 => {
            headers.push((recase(rng, "Connection"), b"close".to_vec()));
            keep_alive = false;
        }
        1 | 2 if http10 => {
            headers.push((recase(rng, "Connection"), b"keep-alive".to_vec()));
            keep_alive = true;
        }
        3 if !http10 => headers.push((recase(rng, "Connection"), b"keep-alive".to_vec())),
        _ => {}
    }
    rng.shuffle(&mut headers);
    let mut known = Vec::new();
    if expect {
        known.push(Known::Expect);
    }
    let connection_fields = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .count();
    if connection_fields > 1 {
        known.push(Known::FirstConnectionField);
    }
    // Host: required with origin-form; with absolute-form, exactly the target's authority
    // or none (see `Known::HostSpelling` for the rest).
    if !absolute || rng.chance(70) {
        let at = rng.below(headers.len() + 1);
        headers.insert(at, (recase(rng, "Host"), auth.into_bytes()));
    }
    Req {
        method: method.to_owned(),
        target,
        version,
        headers,
        body,
        keep_alive,
        expect,
        known,
    }
}

/// The bytes of `req`, cut into writes (at the last chunk's final CRLF now and then).
fn writes_of(rng: &mut Rng, req: &Req) -> Vec<Vec<u8>> {
    let head = req.head();
    let (body, last_crlf) = req.body(rng);
    if req.expect {
        let mut w = vec![head];
        let must: Vec<usize> = last_crlf.filter(|_| rng.chance(50)).into_iter().collect();
        w.extend(split(rng, body, 3, &must));
        return w;
    }
    let must: Vec<usize> = last_crlf
        .filter(|_| rng.chance(40))
        .map(|c| c + head.len())
        .into_iter()
        .collect();
    let max = if rng.chance(40) { 0 } else { 4 };
    let mut all = head;
    all.extend_from_slice(&body);
    split(rng, all, max, &must)
}

fn single(label: &'static str, rng: &mut Rng, req: Req) -> Case {
    Case {
        label,
        kind: Kind::Valid,
        writes: writes_of(rng, &req),
        methods: vec![req.method.clone()],
        expect_continue: req.expect,
        keep_alive: req.keep_alive,
        http10: req.version == "HTTP/1.0",
        known: req.known.clone(),
    }
}

/// A valid request case: HTTP/1.1 (most), HTTP/1.0, or a pipelined pair.
pub fn valid(rng: &mut Rng) -> Case {
    match rng.below(10) {
        0 | 1 => {
            let req = valid_request(rng, "HTTP/1.0", None);
            single("valid/http1.0", rng, req)
        }
        2 | 3 => {
            let mut a = valid_request(rng, "HTTP/1.1", None);
            while !a.keep_alive || a.expect {
                a = valid_request(rng, "HTTP/1.1", None);
            }
            let mut b = valid_request(rng, "HTTP/1.1", None);
            while b.expect {
                b = valid_request(rng, "HTTP/1.1", None);
            }
            let mut bytes = a.head();
            bytes.extend(a.body(rng).0);
            bytes.extend(b.head());
            bytes.extend(b.body(rng).0);
            let mut known = vec![Known::Pipelining];
            known.extend(a.known.iter().chain(&b.known).copied());
            let max = if rng.chance(50) { 0 } else { 4 };
            Case {
                label: "valid/pipelined",
                kind: Kind::Valid,
                writes: split(rng, bytes, max, &[]),
                methods: vec![a.method, b.method],
                expect_continue: false,
                keep_alive: b.keep_alive,
                http10: false,
                known,
            }
        }
        _ => {
            let req = valid_request(rng, "HTTP/1.1", None);
            let label = match (&req.body, req.expect) {
                (_, true) => "valid/expect-100",
                (Body::Chunked(..), _) => "valid/chunked",
                (Body::Length(_), _) => "valid/length",
                (Body::None, _) => "valid/no-body",
            };
            single(label, rng, req)
        }
    }
}

/// Upstream response shapes, chosen by the request path `/r/<shape>/<seed>`.
pub const SHAPES: [&str; 14] = [
    "length",
    "chunked",
    "close",
    "head",
    "204",
    "304",
    "1xx",
    "http1.0",
    "hop",
    "both",
    "status",
    "truncated",
    "garbage",
    "101",
];

/// A request for an upstream response shape, from an HTTP/1.1 or HTTP/1.0 client.
pub fn response_case(rng: &mut Rng, shape: &'static str, version: Option<&'static str>) -> Case {
    let version = version.unwrap_or(if rng.chance(35) {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    });
    let seed = rng.next() % 1_000_000;
    let mut req = valid_request(rng, version, Some(format!("/r/{shape}/{seed}")));
    if shape == "head" {
        req.method = "HEAD".into();
    }
    if matches!(shape, "truncated" | "garbage" | "101") {
        // Not retried by either proxy: one attempt each, whatever the pools hold. The
        // connection is not used again after the proxy's own 502 (pingora closes it;
        // tollgate keeps it, and then answers the next request with the leftovers of the
        // failed upstream connection: bug 1 of the report, `connection_loop_bugs.rs`).
        req.method = "POST".into();
        req.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("connection"));
        req.headers.push(("Content-Length".into(), b"0".to_vec()));
        req.headers.push(("Connection".into(), b"close".to_vec()));
        req.keep_alive = false;
    }
    let label = match shape {
        "length" => "response/length",
        "chunked" => "response/chunked",
        "close" => "response/close-delimited",
        "head" => "response/head",
        "204" => "response/204",
        "304" => "response/304",
        "1xx" => "response/1xx",
        "http1.0" => "response/upstream-http1.0",
        "hop" => "response/hop-by-hop",
        "both" => "response/cl+te",
        "status" => "response/status",
        "truncated" => "response/truncated",
        "garbage" => "response/garbage",
        _ => "response/unsolicited-101",
    };
    let mut case = single(label, rng, req);
    case.known.extend(match shape {
        "101" => Some(Known::Unsolicited101),
        "close" if case.keep_alive => Some(Known::CloseDelimited),
        "hop" => Some(Known::ResponseHopByHop),
        "1xx" if version == "HTTP/1.0" => Some(Known::InterimToHttp10),
        _ => None,
    });
    case
}

fn shape_of(target: &str) -> Option<(&str, u64)> {
    let mut parts = target.strip_prefix("/r/")?.split('/');
    let shape = parts.next()?;
    let seed = parts.next()?.parse().ok()?;
    Some((shape, seed))
}

const MARK: &str = "X-Upstream: scripted\r\n";

/// What the upstream answers to `req`: the shape its path asks for, else a small
/// response naming the request.
pub fn script(req: &RecordedRequest) -> Option<Scripted> {
    let head_only = req.method == "HEAD";
    let Some((shape, seed)) = shape_of(&req.target) else {
        let body = format!("ok {} {}", req.method, req.body.len());
        let mut r = format!(
            "HTTP/1.1 200 OK\r\n{MARK}Content-Length: {}\r\n\r\n",
            body.len()
        );
        if !head_only {
            r.push_str(&body);
        }
        return Some(Scripted {
            pieces: vec![r.into_bytes()],
            close: false,
        });
    };
    let mut rng = Rng::new(seed);
    let text = |rng: &mut Rng, n: usize| -> Vec<u8> { rng.token(n).into_bytes() };
    let (pieces, close): (Vec<Vec<u8>>, bool) = match shape {
        "length" | "status" => {
            let status = if shape == "status" {
                *rng.pick(&["201 Created", "301 Moved", "404 Not Found", "500 Oops", "503 Busy"])
            } else {
                "200 OK"
            };
            let n = rng.range(0, 20_000);
            let mut r = format!("HTTP/1.1 {status}\r\n{MARK}Content-Length: {n}\r\n\r\n").into_bytes();
            r.extend(text(&mut rng, n));
            (split(&mut rng, r, 3, &[]), false)
        }
        "chunked" | "both" => {
            let length = if shape == "both" { "Content-Length: 3\r\n" } else { "" };
            let mut r =
                format!("HTTP/1.1 200 OK\r\n{MARK}{length}Transfer-Encoding: chunked\r\n\r\n")
                    .into_bytes();
            for _ in 0..rng.range(0, 5) {
                let n = rng.range(1, 3000);
                let ext = if rng.chance(30) { ";ext=1" } else { "" };
                r.extend(format!("{n:x}{ext}\r\n").into_bytes());
                r.extend(text(&mut rng, n));
                r.extend(b"\r\n");
            }
            r.extend(b"0\r\n");
            if rng.chance(30) {
                r.extend(b"X-Resp-Trailer: t\r\n");
            }
            let last = r.len();
            r.extend(b"\r\n");
            (split(&mut rng, r, 3, &[last]), false)
        }
        "close" => {
            let n = rng.range(0, 5000);
            let mut r = format!("HTTP/1.1 200 OK\r\n{MARK}\r\n").into_bytes();
            r.extend(text(&mut rng, n));
            (split(&mut rng, r, 3, &[]), true)
        }
        "head" => {
            let framing = if rng.chance(50) {
                "Content-Length: 1234\r\n"
            } else {
                "Transfer-Encoding: chunked\r\n"
            };
            (vec![format!("HTTP/1.1 200 OK\r\n{MARK}{framing}\r\n").into_bytes()], false)
        }
        "204" => (vec![format!("HTTP/1.1 204 No Content\r\n{MARK}\r\n").into_bytes()], false),
        "304" => (
            vec![format!("HTTP/1.1 304 Not Modified\r\n{MARK}ETag: \"v1\"\r\n\r\n").into_bytes()],
            false,
        ),
        "1xx" => {
            let mut p = vec![b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n".to_vec()];
            if rng.chance(50) {
                p.push(b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n".to_vec());
            }
            p.push(format!("HTTP/1.1 200 OK\r\n{MARK}Content-Length: 5\r\n\r\nfinal").into_bytes());
            (p, false)
        }
        "http1.0" => {
            let n = rng.range(0, 3000);
            let mut r = format!("HTTP/1.0 200 OK\r\n{MARK}Content-Length: {n}\r\n\r\n").into_bytes();
            r.extend(text(&mut rng, n));
            (vec![r], true)
        }
        "hop" => (
            vec![format!(
                "HTTP/1.1 200 OK\r\n{MARK}Connection: x-resp-hop\r\nX-Resp-Hop: named\r\nKeep-Alive: timeout=9\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
            )
            .into_bytes()],
            false,
        ),
        "truncated" => (
            vec![format!("HTTP/1.1 200 OK\r\n{MARK}Content-Length: 100\r\n\r\nonly ten..").into_bytes()],
            true,
        ),
        "garbage" => (vec![b"HTTP/1.1 2x0 Nonsense\r\n\r\n".to_vec()], true),
        _ => (
            vec![format!("HTTP/1.1 101 Switching Protocols\r\n{MARK}Upgrade: x-proto\r\nConnection: upgrade\r\n\r\nraw bytes").into_bytes()],
            true,
        ),
    };
    Some(Scripted { pieces, close })
}

/// One hostile request (or a fixed one of the list with `which`), cut into writes.
pub fn hostile(rng: &mut Rng, which: Option<usize>) -> Case {
    let n = HOSTILE.len();
    let i = which.unwrap_or_else(|| rng.below(n));
    let (label, kind, make, known) = HOSTILE[i % n];
    let bytes = make(rng);
    let max = if rng.chance(50) { 0 } else { 3 };
    Case {
        label,
        kind,
        writes: split(rng, bytes, max, &[]),
        methods: vec!["GET".into()],
        expect_continue: false,
        // A refused request ends its connection; the others keep it.
        keep_alive: kind != Kind::Refuse,
        http10: false,
        known: known.into_iter().collect(),
    }
}

type Make = fn(&mut Rng) -> Vec<u8>;

fn post(target_abs: bool, extra: &str, body: &str) -> Vec<u8> {
    let target = if target_abs {
        "http://api.test/h"
    } else {
        "/h"
    };
    format!("POST {target} HTTP/1.1\r\nHost: api.test\r\n{extra}\r\n{body}").into_bytes()
}

/// The hostile requests: label, what a correct proxy must do, the bytes, and the
/// documented difference the reference shows on it (if any).
pub const HOSTILE: [(&str, Kind, Make, Option<Known>); 28] = [
    (
        "hostile/cl+te",
        Kind::Refuse,
        |r| {
            post(
                r.chance(50),
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n",
            )
        },
        None,
    ),
    (
        "hostile/te+cl",
        Kind::Refuse,
        |r| {
            post(
                r.chance(50),
                "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            )
        },
        None,
    ),
    (
        "hostile/two-lengths",
        Kind::Refuse,
        |r| {
            post(
                r.chance(50),
                "Content-Length: 3\r\nContent-Length: 5\r\n",
                "abcde",
            )
        },
        None,
    ),
    (
        "hostile/length-list",
        Kind::Refuse,
        |_| post(false, "Content-Length: 3, 5\r\n", "abcde"),
        None,
    ),
    (
        "hostile/length-sign",
        Kind::Refuse,
        |r| {
            let v = *r.pick(&["+5", "-5", "0x5", "5x", "5 5", "", "99999999999999999999"]);
            post(false, &format!("Content-Length: {v}\r\n"), "hello")
        },
        None,
    ),
    (
        "hostile/te-not-chunked-last",
        Kind::Refuse,
        |r| {
            let v = *r.pick(&["gzip", "chunked, gzip", "xchunked", "chunked;q=1"]);
            post(
                false,
                &format!("Transfer-Encoding: {v}\r\n"),
                "5\r\nhello\r\n0\r\n\r\n",
            )
        },
        None,
    ),
    (
        "hostile/te-http1.0",
        Kind::Refuse,
        |_| {
            b"POST /h HTTP/1.0\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec()
        },
        None,
    ),
    (
        "hostile/chunk-size",
        Kind::Refuse,
        |r| {
            let v = *r.pick(&["zz", "-1", "0x5", "11111111111111111", "5 5", " 5", "5\x00"]);
            post(
                false,
                "Transfer-Encoding: chunked\r\n",
                &format!("{v}\r\nhello\r\n0\r\n\r\n"),
            )
        },
        Some(Known::ChunkedStrictness),
    ),
    (
        "hostile/chunk-overrun",
        Kind::Refuse,
        |_| {
            post(
                false,
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhelloEXTRA\r\n0\r\n\r\n",
            )
        },
        None,
    ),
    (
        "hostile/chunk-bare-lf",
        Kind::Refuse,
        |r| {
            let body = *r.pick(&[
                "5\nhello\r\n0\r\n\r\n",
                "5\r\nhello\n0\r\n\r\n",
                "5\r\nhello\r\n0\n\n",
                "5;e\nhello\r\n0\r\n\r\n",
            ]);
            post(false, "Transfer-Encoding: chunked\r\n", body)
        },
        Some(Known::ChunkedStrictness),
    ),
    (
        "hostile/chunk-ext-ctl",
        Kind::Refuse,
        |_| {
            post(
                false,
                "Transfer-Encoding: chunked\r\n",
                "5;a\x01b\r\nhello\r\n0\r\n\r\n",
            )
        },
        Some(Known::ChunkedStrictness),
    ),
    (
        "hostile/trailer-bare-lf",
        Kind::Refuse,
        |_| {
            post(
                false,
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\nX-T: a\nb\r\n\r\n",
            )
        },
        Some(Known::ChunkedStrictness),
    ),
    (
        "hostile/head-bare-lf",
        Kind::Either,
        |r| {
            if r.chance(50) {
                b"GET /lf HTTP/1.1\nHost: api.test\n\n".to_vec()
            } else {
                b"GET /lf HTTP/1.1\r\nHost: api.test\nX-A: b\r\n\r\n".to_vec()
            }
        },
        None,
    ),
    (
        "hostile/obs-fold",
        Kind::Refuse,
        |_| b"GET /f HTTP/1.1\r\nHost: api.test\r\nX-Folded: a\r\n  b\r\n\r\n".to_vec(),
        None,
    ),
    (
        "hostile/nul",
        Kind::Refuse,
        |r| {
            if r.chance(50) {
                b"GET /n HTTP/1.1\r\nHost: api.test\r\nX-Nul: a\x00b\r\n\r\n".to_vec()
            } else {
                b"GET /n\x00x HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec()
            }
        },
        Some(Known::RequestLine),
    ),
    (
        "hostile/bare-cr",
        Kind::Refuse,
        |_| b"GET /cr HTTP/1.1\r\nHost: api.test\r\nX-Cr: a\rb\r\n\r\n".to_vec(),
        None,
    ),
    (
        "hostile/space-before-colon",
        Kind::Refuse,
        |_| b"GET /s HTTP/1.1\r\nHost : api.test\r\n\r\n".to_vec(),
        None,
    ),
    (
        "hostile/oversized-head",
        Kind::Refuse,
        |r| {
            // Beyond both limits (pingora's is 1 MiB).
            let n = r.range(1_100_000, 1_200_000);
            format!(
                "GET /big HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\n\r\n",
                "a".repeat(n)
            )
            .into_bytes()
        },
        None,
    ),
    (
        "hostile/oversized-head-70k",
        Kind::Refuse,
        |r| {
            let n = r.range(66_000, 80_000);
            format!(
                "GET /big HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\n\r\n",
                "a".repeat(n)
            )
            .into_bytes()
        },
        Some(Known::HeadLimits),
    ),
    (
        "hostile/too-many-fields",
        Kind::Refuse,
        |r| {
            let n = r.range(129, 250);
            let fields: String = (0..n).map(|i| format!("X-F{i}: v\r\n")).collect();
            format!("GET /many HTTP/1.1\r\nHost: api.test\r\n{fields}\r\n").into_bytes()
        },
        Some(Known::HeadLimits),
    ),
    (
        "hostile/host-mismatch",
        Kind::Refuse,
        |r| {
            let host = *r.pick(&["other.test", "api.test:81", "api.test.evil"]);
            format!("GET http://api.test/m HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
        },
        None,
    ),
    (
        "hostile/host-spelling",
        Kind::Valid,
        |r| {
            // The same authority written differently: tollgate compares hosts as hosts.
            let (target, host) = *r.pick(&[
                ("http://api.test/m", "API.test"),
                ("http://api.test/m", "api.test:80"),
                ("http://api.test:80/m", "api.test"),
            ]);
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
        },
        Some(Known::HostSpelling),
    ),
    (
        "hostile/two-hosts",
        Kind::Refuse,
        |_| b"GET /h HTTP/1.1\r\nHost: api.test\r\nHost: api.test\r\n\r\n".to_vec(),
        None,
    ),
    (
        "hostile/userinfo",
        Kind::Refuse,
        |_| b"GET http://user:pw@api.test/u HTTP/1.1\r\n\r\n".to_vec(),
        None,
    ),
    (
        "hostile/bad-version",
        Kind::Refuse,
        |r| {
            let line = *r.pick(&[
                "GET / HTTP/1.2",
                "GET / HTTP/2.0",
                "GET /",
                "GET / http/1.1",
                "GET  / HTTP/1.1",
            ]);
            format!("{line}\r\nHost: api.test\r\n\r\n").into_bytes()
        },
        Some(Known::RequestLine),
    ),
    (
        "hostile/connection-names-host",
        Kind::Valid,
        |_| b"GET /c HTTP/1.1\r\nHost: api.test\r\nConnection: host\r\n\r\n".to_vec(),
        Some(Known::ConnectionNamesHost),
    ),
    (
        "hostile/two-connection-fields",
        Kind::Valid,
        |r| {
            // `close` in the second of two fields.
            let first = *r.pick(&["x-hop", "keep-alive"]);
            format!("GET /cc HTTP/1.1\r\nHost: api.test\r\nConnection: {first}\r\nConnection: close\r\n\r\n").into_bytes()
        },
        Some(Known::FirstConnectionField),
    ),
    (
        "hostile/fragment",
        Kind::Refuse,
        |_| b"GET /a#frag HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        Some(Known::Fragment),
    ),
];
