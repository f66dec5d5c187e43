//! Differential test of the HTTP/1 data path (issue 12). The same generated cases, valid
//! requests and hostile framing and odd upstream responses, go through tollgate (the real
//! binary, a `pass` route with `upstream:` and an `api.test:*` host pattern) and through
//! the reference proxy (`src/bin/reference_proxy.rs`: the same job on pingora-proxy, the
//! independent HTTP/1 implementation tollgate used before its own loop), each in front of
//! its own recording upstream. What each upstream received (method, target, header
//! multiset, body and trailers after de-framing, number of requests) and what each client
//! got (interim responses, status, headers, body, whether the connection stayed) must be
//! the same, except for the differences listed in [`Known`], each with its reason. Any
//! other difference fails the test, printing the seed, the case's bytes and both sides.
//!
//! Independently of the reference, tollgate must refuse what [`gen::Kind::Refuse`] marks
//! (nothing of it upstream) and never send a chunked body to an HTTP/1.0 client.
//!
//! Cases come from a seeded generator (`gen`), not proptest: each case is a round trip
//! through two real processes, and a failure prints the exact bytes to replay, which is
//! what shrinking would give. `DIFF_SEED=<n>` picks another seed, `DIFF_CASES=<n>` another
//! count (default 300, about a minute in a debug build), `DIFF_FROM=<i>` starts at case
//! `i` (to replay one: `DIFF_FROM=75 DIFF_CASES=76`).

#[path = "differential/gen.rs"]
mod gen;

use gen::{Case, Kind, Rng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_tests::raw::RawResponse;
use tollgate_tests::{RawConn, RecordedRequest, RecordingUpstream, Tollgate};

/// Every difference between tollgate and the reference that the test accepts. `compare`
/// takes exactly these out of the two observations ([`Known::take`]); whatever else
/// differs fails. Those [`Known::everywhere`] lists are taken wherever they show; the
/// others only from the cases made to show them (`gen::Case::known`), and only in the
/// shape described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Known {
    Via,
    Expect,
    ErrorBody,
    ChunkedToHttp10,
    FramingNameCase,
    Trailers,
    ResponseHopByHop,
    CloseDelimited,
    InterimToHttp10,
    Pipelining,
    FirstConnectionField,
    RequestLine,
    HeadLimits,
    HostSpelling,
    ChunkedStrictness,
    ConnectionNamesHost,
    Unsolicited101,
    Fragment,
}

impl Known {
    /// In the order they are taken: those that edit a part of an observation come before
    /// those that compare what is left.
    const ALL: [Known; 18] = [
        Known::Via,
        Known::ErrorBody,
        Known::FramingNameCase,
        Known::Trailers,
        Known::ResponseHopByHop,
        Known::InterimToHttp10,
        Known::Expect,
        Known::ChunkedToHttp10,
        Known::CloseDelimited,
        Known::FirstConnectionField,
        Known::Pipelining,
        Known::RequestLine,
        Known::HeadLimits,
        Known::HostSpelling,
        Known::ChunkedStrictness,
        Known::ConnectionNamesHost,
        Known::Unsolicited101,
        Known::Fragment,
    ];

    /// What differs, and why tollgate does it its way.
    fn why(self) -> &'static str {
        match self {
            Known::Via => "tollgate adds `Via: 1.1 tollgate-xxxxxx` to every request it forwards and every response it relays (RFC 9110 section 7.6.3; it is also how tollgate sees a forwarding loop); pingora adds none",
            Known::Expect => "tollgate answers `Expect: 100-continue` itself and does not forward `Expect` (so the client's body does not wait on an upstream that ignores it); pingora forwards `Expect`, relays the upstream's `100 Continue`, and closes the client connection after the response. With no content to wait for (`Content-Length: 0`) tollgate sends no `100` (RFC 9110 section 10.1.1 allows it), the upstream's through pingora does",
            Known::ErrorBody => "a response the proxy makes itself: tollgate's is its JSON error with `tollgate-error`, pingora's an empty body; only their status is compared",
            Known::ChunkedToHttp10 => "a chunked upstream response to an HTTP/1.0 client: tollgate de-chunks it and closes the connection after it (HTTP/1.0 has no chunked coding, RFC 9112 section 7); pingora sends it chunked, and keeps a keep-alive connection",
            Known::FramingNameCase => "pingora re-frames request bodies and writes its own `Transfer-Encoding`/`Content-Length` field names; tollgate relays the body verbatim with the client's spelling of them (field names are case-insensitive)",
            Known::Trailers => "trailer fields of a chunked body: tollgate relays the body verbatim, trailers included, both ways; pingora drops them (its HTTP/1 trailers are a TODO)",
            Known::InterimToHttp10 => "an upstream's 1xx (103 Early Hints) to an HTTP/1.0 client: tollgate drops it (RFC 9110 section 15.2: no 1xx to an HTTP/1.0 client); pingora relays it",
            Known::Pipelining => "pipelined requests: tollgate answers each in order; pingora answers the first and closes the connection (or, when much of the next request was read along with the first, refuses the first with 400 or resets)",
            Known::FirstConnectionField => "several `Connection` fields: tollgate reads them all; pingora reads only the first for `close` and `keep-alive`, so it keeps a connection the client asked to close or closes one it asked to keep",
            Known::RequestLine => "a malformed request line (two spaces in `GET  / HTTP/1.1`, a NUL in the target): tollgate refuses it (RFC 9112 section 3); pingora repairs it (percent-encodes what httparse refused) and forwards it",
            Known::ResponseHopByHop => "tollgate drops `Proxy-Connection` and the fields the upstream's `Connection` names from a response (RFC 9110 section 7.6.1); pingora passes them to the client",
            Known::CloseDelimited => "a close-delimited upstream response to an HTTP/1.1 keep-alive client: tollgate relays it as is and closes the client connection after it; pingora re-frames it chunked and keeps the connection",
            Known::HeadLimits => "tollgate refuses a request head over 64 KiB or with over 128 fields (400, the limits in `http1::head`); pingora accepts up to 1 MiB and 256 fields",
            Known::HostSpelling => "an absolute-form request whose `Host` names the same authority in another spelling (case, explicit default port): tollgate compares them as authorities and forwards it; pingora compares bytes and refuses it with 400",
            Known::ChunkedStrictness => "a malformed chunked request body (bad size, bare LF, control characters in an extension, junk in a trailer): tollgate refuses it (RFC 9112 section 7.1; these are request-smuggling shapes); pingora's chunked reader is more lenient or fails otherwise",
            Known::ConnectionNamesHost => "`Connection: host`: tollgate ignores a nomination of a field that routes the message and forwards it with its Host; pingora refuses the request",
            Known::Unsolicited101 => "an upstream's `101 Switching Protocols` to a request that asked for no upgrade: tollgate answers 502 (RFC 9110 section 15.2.2); pingora relays it and splices the connection",
            Known::Fragment => "a request-target with a fragment (`#`): tollgate refuses it (RFC 9112 section 3.2: no fragment in a request-target); pingora forwards it",
        }
    }

    /// Takes this difference out of `t` (tollgate) and `r` (the reference) where it shows
    /// in the shape described; `Err` when tollgate broke its own side of it.
    fn take(self, t: &mut Observed, r: &mut Observed, tagged: bool) -> Result<bool, String> {
        Ok(match self {
            Known::Via => {
                for s in &mut t.upstream {
                    if !take_via(&mut s.headers) {
                        return Err(format!(
                            "tollgate forwarded a request without its Via: {s:#?}"
                        ));
                    }
                }
                for h in upstream_responses(t) {
                    if !take_via(h) {
                        return Err("tollgate relayed a response without its Via".into());
                    }
                }
                !t.upstream.is_empty()
            }
            Known::Expect => {
                let mut took = false;
                for s in &mut r.upstream {
                    let before = s.headers.len();
                    s.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("expect"));
                    took |= s.headers.len() != before;
                }
                if tagged {
                    // No content to wait for: tollgate sends no `100 Continue`.
                    if t.early == Some(false) {
                        r.early = Some(false);
                        for (a, b) in t.client.iter().zip(r.client.iter_mut()) {
                            if let (
                                Got::Upstream { interim: a, .. },
                                Got::Upstream { interim: b, .. },
                            ) = (a, b)
                            {
                                if a.is_empty() && *b == [100] {
                                    b.clear();
                                }
                            }
                        }
                    }
                    align_end(t, r);
                }
                took
            }
            Known::ErrorBody => {
                let made = |o: &Observed| o.client.iter().any(|g| matches!(g, Got::Proxy { .. }));
                made(t) && made(r)
            }
            Known::ChunkedToHttp10 => {
                let took = std::mem::take(&mut r.chunked_to_http10);
                if took && t.end == End::Closed {
                    align_end(t, r);
                }
                took
            }
            Known::Trailers => {
                let mut took = false;
                for (a, b) in t.upstream.iter_mut().zip(&r.upstream) {
                    if b.trailers.is_empty() && !a.trailers.is_empty() {
                        a.trailers.clear();
                        took = true;
                    }
                }
                for (a, b) in t.client.iter_mut().zip(&r.client) {
                    if let (Got::Upstream { trailers: a, .. }, Got::Upstream { trailers: b, .. }) =
                        (a, b)
                    {
                        if b.is_empty() && !a.is_empty() {
                            a.clear();
                            took = true;
                        }
                    }
                }
                took
            }
            Known::InterimToHttp10 => {
                let mut took = false;
                for (a, b) in t.client.iter().zip(r.client.iter_mut()) {
                    if let (Got::Upstream { interim: a, .. }, Got::Upstream { interim: b, .. }) =
                        (a, b)
                    {
                        if a.is_empty() && !b.is_empty() {
                            b.clear();
                            took = true;
                        }
                    }
                }
                took
            }
            Known::Pipelining => {
                let shown = t.forwarded()
                    && r.client.last() == Some(&Got::Broken(Broken::Ended))
                    && r.client.len() <= t.client.len()
                    && (r.client.first() == t.client.first()
                        || matches!(r.client.first(), Some(Got::Proxy { status: 400, .. })));
                if shown {
                    *r = t.clone();
                }
                shown
            }
            Known::FirstConnectionField => align_end(t, r),
            Known::FramingNameCase => {
                let before = t.upstream == r.upstream;
                for s in t.upstream.iter_mut().chain(r.upstream.iter_mut()) {
                    for (n, _) in &mut s.headers {
                        if ["transfer-encoding", "content-length"]
                            .iter()
                            .any(|f| n.eq_ignore_ascii_case(f))
                        {
                            *n = n.to_ascii_lowercase();
                        }
                    }
                    s.headers.sort();
                }
                !before && t.upstream == r.upstream
            }
            Known::ResponseHopByHop => {
                let mut took = false;
                for h in upstream_responses(r) {
                    let before = h.len();
                    h.retain(|(n, _)| {
                        !n.eq_ignore_ascii_case("proxy-connection")
                            && !n.eq_ignore_ascii_case("x-resp-hop")
                    });
                    took |= h.len() != before;
                }
                took
            }
            Known::CloseDelimited => t.end == End::Closed && align_end(t, r),
            Known::HeadLimits | Known::Fragment | Known::RequestLine => {
                let shown = t.refused() && !r.refused();
                if shown {
                    *r = t.clone();
                }
                shown
            }
            Known::ChunkedStrictness => {
                let shown = t.refused() && t != r;
                if shown {
                    *r = t.clone();
                }
                shown
            }
            Known::HostSpelling | Known::ConnectionNamesHost => {
                let shown = t.forwarded() && r.refused();
                if shown {
                    *r = t.clone();
                }
                shown
            }
            Known::Unsolicited101 => {
                let shown = matches!(t.client.as_slice(), [Got::Proxy { status: 502, .. }])
                    && !r.client.iter().any(|g| matches!(g, Got::Proxy { .. }));
                if shown {
                    *r = t.clone();
                }
                shown
            }
        })
    }

    /// Taken wherever it shows (not only from the cases made for it).
    fn everywhere(self) -> bool {
        matches!(
            self,
            Known::Via
                | Known::Expect
                | Known::ErrorBody
                | Known::ChunkedToHttp10
                | Known::FramingNameCase
                | Known::Trailers
        )
    }
}

/// When `t` and `r` differ only in whether the client connection was kept after the
/// responses (and so in the probe request it then carried), makes `r`'s end `t`'s.
fn align_end(t: &Observed, r: &mut Observed) -> bool {
    let kept = |o: &Observed| matches!(o.end, End::Open(_) | End::LeftOpen);
    let without_probe = |o: &Observed| {
        let probe = usize::from(matches!(o.end, End::Open(_)));
        o.upstream[..o.upstream.len().saturating_sub(probe)].to_vec()
    };
    let shown = kept(t) != kept(r)
        && t.client == r.client
        && t.early == r.early
        && without_probe(t) == without_probe(r);
    if shown {
        r.end = t.end.clone();
        r.upstream = t.upstream.clone();
    }
    shown
}

/// A body, printed by length and digest.
#[derive(Clone, PartialEq, Eq)]
struct Blob(Vec<u8>);

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.0.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        let head = String::from_utf8_lossy(&self.0[..self.0.len().min(40)]).into_owned();
        write!(f, "{} bytes fnv {h:016x} {head:?}", self.0.len())
    }
}

/// One request as an upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    version: String,
    /// Sorted; `Host` with the upstream's own authority written `UPSTREAM`.
    headers: Vec<(String, String)>,
    body: Blob,
    trailers: Vec<(String, String)>,
}

/// What a client read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    /// The upstream's response (it carries the scripted upstream's mark).
    Upstream {
        interim: Vec<u16>,
        status: u16,
        /// Sorted, without framing and connection-management fields.
        headers: Vec<(String, String)>,
        body: Blob,
        trailers: Vec<(String, String)>,
    },
    /// A response the proxy made itself (see `Known::ErrorBody`).
    Proxy { interim: Vec<u16>, status: u16 },
    /// No complete response.
    Broken(Broken),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// The connection closed or was reset (before or part way through a response).
    Ended,
    TimedOut,
    /// Bytes that are not an HTTP/1.1 response.
    Garbled,
}

/// How the connection ended after the responses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// A response went wrong: not looked at.
    Gone,
    /// The client asked to keep it and it carried a probe request: its response.
    Open(Box<Got>),
    /// Closed by the proxy (as the client asked, or on its own).
    Closed,
    /// Bytes beyond the responses (a second answer to one request).
    Extra(Blob),
    /// Still open although the client asked to close it.
    LeftOpen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    upstream: Vec<Seen>,
    client: Vec<Got>,
    /// With `Expect: 100-continue`: did something arrive before the body was sent?
    early: Option<bool>,
    end: End,
    /// Not compared: a chunked response reached an HTTP/1.0 client.
    chunked_to_http10: bool,
}

impl Observed {
    /// Refused: nothing upstream, the client got a 4xx of the proxy's or a closed
    /// connection.
    fn refused(&self) -> bool {
        self.upstream.is_empty()
            && matches!(
                self.client.as_slice(),
                [Got::Proxy {
                    status: 400..=499,
                    ..
                }] | [Got::Broken(Broken::Ended)]
            )
    }

    /// Forwarded and answered by the upstream.
    fn forwarded(&self) -> bool {
        !self.upstream.is_empty()
            && self
                .client
                .iter()
                .all(|g| matches!(g, Got::Upstream { .. }))
    }
}

/// The reference proxy process (stopped on drop).
struct Reference {
    child: Child,
    addr: SocketAddr,
}

impl Reference {
    async fn start(upstream: SocketAddr) -> Reference {
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let child = Command::new(env!("CARGO_BIN_EXE_reference_proxy"))
                .arg(addr.to_string())
                .arg(upstream.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn the reference proxy");
            let mut r = Reference { child, addr };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return r;
                }
                if r.child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("the reference proxy did not start");
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a client waits for a response (far above what a correct proxy takes here).
const READ: Duration = Duration::from_secs(5);
/// Between two writes of a case.
const PAUSE: Duration = Duration::from_millis(3);

const FRAMING: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "date",
];

fn sorted(mut h: Vec<(String, String)>) -> Vec<(String, String)> {
    h.sort();
    h
}

fn got(resp: RawResponse) -> Got {
    if resp.header("x-upstream") != Some("scripted") {
        return Got::Proxy {
            interim: resp.interim,
            status: resp.status,
        };
    }
    let headers = resp
        .headers
        .into_iter()
        .filter(|(n, _)| !FRAMING.iter().any(|f| n.eq_ignore_ascii_case(f)))
        .collect();
    Got::Upstream {
        interim: resp.interim,
        status: resp.status,
        headers: sorted(headers),
        body: Blob(resp.body),
        trailers: resp.trailers,
    }
}

fn broken(e: &str) -> Broken {
    if e.contains("timed out") {
        Broken::TimedOut
    } else if e.contains("closed") || e.contains("read failed") {
        Broken::Ended
    } else {
        Broken::Garbled
    }
}

fn is_chunked(resp: &RawResponse) -> bool {
    resp.header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn seen(r: &RecordedRequest, upstream: SocketAddr) -> Seen {
    let own = upstream.to_string();
    let headers = r
        .headers
        .iter()
        .map(|(n, v)| {
            if n.eq_ignore_ascii_case("host") && *v == own {
                (n.clone(), "UPSTREAM".to_owned())
            } else {
                (n.clone(), v.clone())
            }
        })
        .collect();
    Seen {
        method: r.method.clone(),
        target: r.target.clone(),
        version: r.version.clone(),
        headers: sorted(headers),
        body: Blob(r.body.clone()),
        trailers: r.trailers.clone(),
    }
}

/// Runs `case` on one client connection to `proxy`, whose upstream is `up`.
async fn run(case: &Case, proxy: SocketAddr, up: &RecordingUpstream) -> Observed {
    let before = up.requests().len();
    let mut conn = RawConn::connect(proxy).await;
    let mut early = None;
    for (i, w) in case.writes.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        if conn.try_send(w).await.is_err() {
            break; // the proxy closed on us; read what it said
        }
        if i == 0 && case.expect_continue {
            early = Some(conn.wait_for_bytes(Duration::from_secs(1)).await);
        }
    }
    let mut client = Vec::new();
    let mut chunked_to_http10 = false;
    for m in &case.methods {
        match tokio::time::timeout(READ, conn.try_read_response(m)).await {
            Ok(Ok(resp)) => {
                chunked_to_http10 |= case.http10 && is_chunked(&resp);
                client.push(got(resp));
            }
            Ok(Err(e)) => {
                client.push(Got::Broken(broken(&e)));
                break;
            }
            Err(_) => {
                client.push(Got::Broken(Broken::TimedOut));
                break;
            }
        }
    }
    let end = if client.iter().any(|g| matches!(g, Got::Broken(_))) {
        End::Gone
    } else if case.keep_alive {
        let probe = b"GET /probe HTTP/1.1\r\nHost: api.test\r\n\r\n";
        if conn.try_send(probe).await.is_err() {
            End::Closed
        } else {
            match tokio::time::timeout(READ, conn.try_read_response("GET")).await {
                Ok(Ok(resp)) => End::Open(Box::new(got(resp))),
                Ok(Err(e)) if broken(&e) == Broken::Ended => End::Closed,
                Ok(Err(e)) => End::Open(Box::new(Got::Broken(broken(&e)))),
                Err(_) => End::Open(Box::new(Got::Broken(Broken::TimedOut))),
            }
        }
    } else {
        match tokio::time::timeout(Duration::from_secs(3), conn.try_read_to_end()).await {
            Ok(Ok(rest)) if rest.is_empty() => End::Closed,
            Ok(Ok(rest)) => End::Extra(Blob(rest)),
            Ok(Err(_)) => End::Closed,
            Err(_) => End::LeftOpen,
        }
    };
    drop(conn);
    let upstream = up.requests()[before..]
        .iter()
        .map(|r| seen(r, up.addr()))
        .collect();
    Observed {
        upstream,
        client,
        early,
        end,
        chunked_to_http10,
    }
}

/// Takes tollgate's own `Via` entry out of `headers`; `false` when it is missing.
fn take_via(headers: &mut Vec<(String, String)>) -> bool {
    let ours = |(n, v): &(String, String)| {
        n.eq_ignore_ascii_case("via")
            && v.strip_prefix("1.1 tollgate-")
                .is_some_and(|p| p.len() == 6 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    match headers.iter().position(ours) {
        Some(i) => {
            headers.remove(i);
            true
        }
        None => false,
    }
}

fn upstream_responses(o: &mut Observed) -> impl Iterator<Item = &mut Vec<(String, String)>> {
    let probe = match &mut o.end {
        End::Open(g) => Some(g.as_mut()),
        _ => None,
    };
    o.client.iter_mut().chain(probe).filter_map(|g| match g {
        Got::Upstream { headers, .. } => Some(headers),
        _ => None,
    })
}

/// Takes the documented differences out of `t` (tollgate) and `r` (the reference), then
/// requires the rest to be equal.
fn compare(
    case: &Case,
    mut t: Observed,
    mut r: Observed,
    tally: &mut BTreeMap<Known, usize>,
) -> Result<(), String> {
    for k in Known::ALL {
        let tagged = case.known.contains(&k);
        if (k.everywhere() || tagged) && k.take(&mut t, &mut r, tagged)? {
            *tally.entry(k).or_default() += 1;
        }
    }
    if t == r {
        return Ok(());
    }
    Err(format!(
        "tollgate and the reference differ (no documented difference covers it)\n--- tollgate ---\n{t:#?}\n--- reference ---\n{r:#?}"
    ))
}

/// What tollgate must do whatever the reference does.
fn oracle(case: &Case, t: &Observed) -> Result<(), String> {
    if case.kind == Kind::Refuse && !t.refused() {
        return Err(format!("tollgate did not refuse a hostile request: {t:#?}"));
    }
    if case.kind == Kind::Refuse && !matches!(t.end, End::Closed | End::Gone) {
        return Err(format!(
            "tollgate kept the connection of a refused request: {t:#?}"
        ));
    }
    if t.chunked_to_http10 {
        return Err("tollgate sent a chunked response to an HTTP/1.0 client".into());
    }
    Ok(())
}

fn config(up: &RecordingUpstream) -> String {
    format!(
        "allow_private_networks: true
timeouts:
  read: 4s
routes:
  - name: diff
    match:
      hosts: [\"api.test:*\"]
    action: pass
    upstream: http://{}
",
        up.addr()
    )
}

const DEFAULT_SEED: u64 = 0x7011_6a7e;
const DEFAULT_CASES: u64 = 300;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The cases: every hostile request and every response shape once (so that each
/// documented difference is seen), then a seeded mix.
fn cases(seed: u64, n: usize) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<Case> = (0..gen::HOSTILE.len())
        .map(|i| gen::hostile(&mut rng, Some(i)))
        .collect();
    for shape in gen::SHAPES {
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            out.push(gen::response_case(&mut rng, shape, Some(version)));
        }
    }
    while out.len() < n {
        let c = match rng.below(20) {
            0..=10 => gen::valid(&mut rng),
            11..=15 => {
                let shape = *rng.pick(&gen::SHAPES);
                gen::response_case(&mut rng, shape, None)
            }
            _ => gen::hostile(&mut rng, None),
        };
        out.push(c);
    }
    out
}

fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
    if bytes.len() > 600 {
        format!("{s:?}... ({} bytes)", bytes.len())
    } else {
        format!("{s:?}")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tollgate_and_pingora_proxy_agree_on_generated_requests() {
    let seed = env_or("DIFF_SEED", DEFAULT_SEED);
    let n = env_or("DIFF_CASES", DEFAULT_CASES) as usize;
    let up_t = RecordingUpstream::start().await;
    let up_r = RecordingUpstream::start().await;
    up_t.set_responder(gen::script);
    up_r.set_responder(gen::script);
    let tg = Tollgate::start(&config(&up_t)).await;
    let reference = Reference::start(up_r.addr()).await;

    let mut tally: BTreeMap<Known, usize> = BTreeMap::new();
    let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    let from = env_or("DIFF_FROM", 0) as usize;
    for (i, case) in cases(seed, n).iter().enumerate().skip(from) {
        *labels.entry(case.label).or_default() += 1;
        let (t, r) = tokio::join!(run(case, tg.proxy, &up_t), run(case, reference.addr, &up_r));
        let verdict = oracle(case, &t).and_then(|()| compare(case, t, r, &mut tally));
        if let Err(why) = verdict {
            failures.push(format!(
                "case {i} ({}, seed {seed:#x}), {} write(s): {}\n{why}",
                case.label,
                case.writes.len(),
                show(&case.bytes())
            ));
            if failures.len() >= 20 {
                break;
            }
        }
    }
    eprintln!(
        "{} cases in {:.1?}: {labels:?}\ndocumented differences seen: {tally:?}",
        labels.values().sum::<usize>(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let unseen: Vec<String> = Known::ALL
        .iter()
        .filter(|k| from == 0 && !tally.contains_key(k))
        .map(|k| format!("{k:?}: {}", k.why()))
        .collect();
    // The default run shows every one of them; another seed or a part of a run may not.
    if seed == DEFAULT_SEED && from == 0 && n >= DEFAULT_CASES as usize {
        assert!(
            unseen.is_empty(),
            "documented differences no case showed (are they gone? then remove them):\n{}",
            unseen.join("\n")
        );
    } else if !unseen.is_empty() {
        eprintln!("not seen in this run:\n{}", unseen.join("\n"));
    }
}
