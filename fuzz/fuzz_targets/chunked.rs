//! The chunked-coding scanner (`http1::Chunked::advance`), on raw bytes and on bodies we
//! encode ourselves, fed whole, split at arbitrary points, and byte by byte.
//!
//! Checks:
//! - however the body is split, the scan gives the same verdict, the same end of the
//!   body and the same chunk data as the whole body at once; it stops short of a piece
//!   only when the body is done;
//! - the data handed out is at most what was consumed;
//! - a body we encode (chunk sizes in any case with leading zeros, extensions, quoted
//!   strings, trailers, then whatever follows the body) is accepted, ends exactly where
//!   the encoding ends and gives back exactly the data encoded.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tollgate::http1::Chunked;

#[derive(Arbitrary, Debug)]
struct Chunk<'a> {
    data: &'a [u8],
    upper: bool,
    zeros: u8,
    ext: Option<(&'a str, Option<&'a str>)>,
    space: bool,
}

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    Raw(&'a [u8]),
    Encoded {
        chunks: Vec<Chunk<'a>>,
        last_ext: bool,
        trailers: Vec<(&'a str, &'a str)>,
        after: &'a [u8],
    },
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    body: Body<'a>,
    cuts: Vec<u16>,
}

/// Extension names and trailer names are tokens; values are tokens or quoted strings.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c))
        .take(20)
        .collect();
    if t.is_empty() {
        "x".to_owned()
    } else {
        t
    }
}

fn quoted(s: &str) -> String {
    let inner: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(20)
        .map(|c| if c == '"' || c == '\\' { '_' } else { c })
        .collect();
    format!("\"{inner}\"")
}

/// Our encoding of a body: the bytes, where the body ends in them, and its data.
fn encode(body: &Body<'_>) -> Option<(Vec<u8>, usize, Vec<u8>)> {
    let Body::Encoded {
        chunks,
        last_ext,
        trailers,
        after,
    } = body
    else {
        return None;
    };
    let mut out = Vec::new();
    let mut data = Vec::new();
    for c in chunks.iter().filter(|c| !c.data.is_empty()) {
        let zeros = "0".repeat(usize::from(c.zeros % 4));
        let size = if c.upper {
            format!("{zeros}{:X}", c.data.len())
        } else {
            format!("{zeros}{:x}", c.data.len())
        };
        out.extend_from_slice(size.as_bytes());
        if c.space {
            out.extend_from_slice(b" \t");
        }
        if let Some((name, value)) = c.ext {
            out.push(b';');
            out.extend_from_slice(token(name).as_bytes());
            if let Some(v) = value {
                out.push(b'=');
                let v = if v.len() % 2 == 0 {
                    token(v)
                } else {
                    quoted(v)
                };
                out.extend_from_slice(v.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(c.data);
        out.extend_from_slice(b"\r\n");
        data.extend_from_slice(c.data);
    }
    out.extend_from_slice(if *last_ext { b"0;last\r\n" } else { b"0\r\n" });
    for (name, value) in trailers.iter().take(8) {
        let value: String = value
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        out.extend_from_slice(format!("{}: {value}\r\n", token(name)).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let end = out.len();
    out.extend_from_slice(after);
    Some((out, end, data))
}

/// What a scan gave: `Ok((consumed, done))` or the error, and the data handed out.
type Scan = (Result<(usize, bool), &'static str>, Vec<u8>);

fn scan(pieces: &[&[u8]]) -> Scan {
    let mut c = Chunked::default();
    let mut data = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        match c.advance(piece, |d| data.extend_from_slice(d)) {
            Ok(n) => {
                assert!(n <= piece.len());
                consumed += n;
                if n < piece.len() {
                    assert!(
                        c.done(),
                        "stopped {n} bytes into a {}-byte piece, not done",
                        piece.len()
                    );
                }
                if c.done() {
                    break;
                }
            }
            Err(e) => return (Err(e), data),
        }
    }
    assert!(data.len() <= consumed, "more data than bytes consumed");
    (Ok((consumed, c.done())), data)
}

fuzz_target!(|input: Input<'_>| {
    let encoded = encode(&input.body);
    let bytes: &[u8] = match (&input.body, &encoded) {
        (Body::Raw(b), _) => b,
        (_, Some((b, _, _))) => b,
        (_, None) => return,
    };
    let whole = scan(&[bytes]);
    if let Some((_, end, data)) = &encoded {
        assert_eq!(
            whole.0,
            Ok((*end, true)),
            "our own encoding {:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(&whole.1, data);
    }
    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|c| usize::from(*c) % (bytes.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = 0;
    for c in cuts {
        pieces.push(&bytes[at..c]);
        at = c;
    }
    pieces.push(&bytes[at..]);
    let split = scan(&pieces);
    compare(&whole, &split, "split");
    if bytes.len() <= 512 {
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        compare(&whole, &scan(&bytewise), "byte by byte");
    }
});

/// Same verdict, end and data. After an error only the verdict is compared: how far a
/// scan got before refusing depends on where the pieces end.
fn compare(whole: &Scan, other: &Scan, how: &str) {
    match (&whole.0, &other.0) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "{how}: a different end");
            assert_eq!(whole.1, other.1, "{how}: different data");
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("{how}: {b:?}, whole: {a:?}"),
    }
}
