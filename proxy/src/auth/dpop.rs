//! DPoP (RFC 9449): a [`DpopKey`] signs the proof that goes with every token request and
//! every upstream request of a DPoP-bound credential, and remembers the nonces servers
//! ask for (`DPoP-Nonce`), per origin.
//!
//! A proof is one ES256 signature over a pre-encoded header (`typ`, `alg` and the public
//! `jwk`, base64url'd once when the key is read) and claims written straight into a
//! per-thread buffer: `jti`, `htm`, `htu`, `iat`, and `ath` (the token's SHA-256,
//! computed once per token) and `nonce` when there are any. The only allocation is the
//! proof itself. The `jti` is 96 random bits drawn when the key is read followed by a
//! counter: unique without a system call per proof (RFC 9449 §4.2 asks for at least 96
//! bits of pseudorandom data or equivalent uniqueness).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dashmap::DashMap;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::PrivateKeyDer;

/// Most origins whose nonce is remembered; past that the map starts afresh (a server
/// whose nonce was forgotten asks again, once).
const MAX_ORIGINS: usize = 1024;
/// Longest nonce kept. RFC 9449 sets no limit; servers send tens of bytes.
const MAX_NONCE: usize = 1024;

/// A P-256 key that signs DPoP proofs. `Debug` shows only the thumbprint.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    /// base64url of the proof's JOSE header, followed by `.`.
    header: Box<str>,
    /// The RFC 7638 thumbprint of the public key: the token's `cnf.jkt`.
    jkt: Box<str>,
    /// The last `DPoP-Nonce` of each origin (`scheme://host[:port]`).
    nonces: DashMap<Box<str>, Arc<str>>,
    /// The random first 12 bytes of every `jti` of this key.
    jti_prefix: [u8; 12],
    /// The last 8: counts the proofs.
    jti_count: AtomicU64,
    rng: SystemRandom,
}

/// `jti` bytes: 12 random, 8 of counter; 27 base64url characters.
const JTI_LEN: usize = 20;
const JTI_TEXT: usize = 27;

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopKey(jkt {}, [redacted])", self.jkt)
    }
}

/// What a proof is for.
pub struct ProofFor<'a> {
    /// The request method.
    pub htm: &'a str,
    /// The target URI without query and fragment ([`write_htu`] builds it).
    pub htu: &'a str,
    /// base64url(SHA-256(access token)) when the proof goes with a token ([`ath`]).
    pub ath: Option<&'a str>,
    /// Seconds since the epoch.
    pub iat: u64,
}

thread_local! {
    static CLAIMS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static HTU: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Where an upstream request goes, as its proof's `htu` says it.
pub struct Target<'a> {
    pub https: bool,
    pub host: &'a str,
    pub port: u16,
    /// The path as sent upstream (after any `upstream:` rewrite), without the query.
    pub path: &'a str,
}

impl Target<'_> {
    /// `scheme://host[:port]`, the key of the origin's nonce.
    pub fn origin(&self) -> String {
        let mut s = String::new();
        let o = write_htu(&mut s, self.https, self.host, self.port, "");
        s.truncate(o);
        s
    }
}

impl DpopKey {
    /// Reads a PEM P-256 private key (PKCS#8 or SEC1). Errors are short sentences without
    /// key bytes.
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem_text).map_err(|e| match e {
            pem::Error::NoItemsFound => "no PEM private key found (expected a PRIVATE KEY or \
                                         EC PRIVATE KEY block holding a P-256 key)"
                .to_string(),
            other => format!("not a readable PEM file: {other}"),
        })?;
        let rng = SystemRandom::new();
        let not_p256 = |e: ring::error::KeyRejected| {
            format!("not a P-256 EC key: DPoP proofs are signed with ES256 ({e})")
        };
        let pair = match &der {
            PrivateKeyDer::Pkcs8(k) => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_pkcs8_der(),
                &rng,
            )
            .map_err(not_p256)?,
            PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &super::jwt::sec1_p256_to_pkcs8(k.secret_sec1_der()),
                &rng,
            )
            .map_err(not_p256)?,
            PrivateKeyDer::Pkcs1(_) => {
                return Err(
                    "an RSA key: DPoP proofs are signed with ES256, which needs a \
                            P-256 EC key"
                        .into(),
                )
            }
            _ => return Err("unsupported private key format (expected a P-256 EC key)".into()),
        };
        let point = pair.public_key().as_ref();
        // Uncompressed point: 0x04 || X (32) || Y (32).
        if point.len() != 65 || point[0] != 4 {
            return Err("unexpected P-256 public key encoding".into());
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let jkt = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
        let header_json = format!(
            r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}}}"#
        );
        let mut header = URL_SAFE_NO_PAD.encode(header_json);
        header.push('.');
        let mut jti_prefix = [0u8; 12];
        rng.fill(&mut jti_prefix)
            .map_err(|_| "no randomness for DPoP proof ids".to_string())?;
        Ok(DpopKey {
            pair,
            header: header.into(),
            jkt: jkt.into(),
            nonces: DashMap::new(),
            jti_prefix,
            jti_count: AtomicU64::new(0),
            rng,
        })
    }

    /// The JWK thumbprint a bound token carries as `cnf.jkt`.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A fresh proof for one request, with the nonce last remembered for `origin`.
    pub fn proof(&self, what: &ProofFor<'_>, origin: &str) -> Result<String, String> {
        let nonce = self.nonce(origin);
        let mut jti = [0u8; JTI_LEN];
        jti[..12].copy_from_slice(&self.jti_prefix);
        let n = self.jti_count.fetch_add(1, Ordering::Relaxed);
        jti[12..].copy_from_slice(&n.to_be_bytes());
        CLAIMS.with(|buf| {
            let mut claims = buf.borrow_mut();
            claims.clear();
            write_claims(&mut claims, &jti, what, nonce.as_deref());
            let claims_len = base64_len(claims.len());
            let mut out =
                String::with_capacity(self.header.len() + claims_len + 1 + base64_len(64));
            out.push_str(&self.header);
            URL_SAFE_NO_PAD.encode_string(&*claims, &mut out);
            let sig = self
                .pair
                .sign(&self.rng, out.as_bytes())
                .map_err(|_| "signing the DPoP proof failed".to_string())?;
            out.push('.');
            URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
            Ok(out)
        })
    }

    /// The proof of one upstream request with token hash `ath`, with the nonce last
    /// remembered for the target's origin.
    pub fn request_proof(
        &self,
        method: &str,
        to: &Target<'_>,
        ath: &str,
    ) -> Result<String, String> {
        HTU.with(|buf| {
            let mut htu = buf.borrow_mut();
            let origin = write_htu(&mut htu, to.https, to.host, to.port, to.path);
            let what = ProofFor {
                htm: method,
                htu: &htu,
                ath: Some(ath),
                iat: unix_now(),
            };
            self.proof(&what, &htu[..origin])
        })
    }

    /// The nonce remembered for `origin`.
    pub fn nonce(&self, origin: &str) -> Option<Arc<str>> {
        self.nonces.get(origin).map(|n| Arc::clone(&n))
    }

    /// Remembers the nonce a server sent (`DPoP-Nonce`). `false` when the value is not a
    /// nonce (RFC 9449 §8.1: `1*NQCHAR`) and was ignored.
    pub fn remember_nonce(&self, origin: &str, nonce: &[u8]) -> bool {
        if !is_nonce(nonce) {
            return false;
        }
        if self
            .nonces
            .get(origin)
            .is_some_and(|n| n.as_bytes() == nonce)
        {
            return true;
        }
        if self.nonces.len() >= MAX_ORIGINS && !self.nonces.contains_key(origin) {
            self.nonces.clear();
        }
        // Checked above: ASCII.
        let text = String::from_utf8_lossy(nonce);
        self.nonces.insert(origin.into(), Arc::from(text.as_ref()));
        true
    }
}

/// RFC 9449 §8.1: `nonce = 1*NQCHAR`, `NQCHAR = %x21 / %x23-5B / %x5D-7E`.
pub fn is_nonce(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_NONCE
        && v.iter()
            .all(|&b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// `ath`: base64url(SHA-256(the access token)) (RFC 9449 §4.2).
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// Seconds since the epoch, for `iat`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

fn write_claims(out: &mut Vec<u8>, jti: &[u8; JTI_LEN], what: &ProofFor<'_>, nonce: Option<&str>) {
    out.extend_from_slice(br#"{"jti":""#);
    let mut jti_text = [0u8; JTI_TEXT];
    let _ = URL_SAFE_NO_PAD.encode_slice(jti, &mut jti_text);
    out.extend_from_slice(&jti_text);
    out.extend_from_slice(br#"","htm":""#);
    json_escaped(out, what.htm.as_bytes());
    out.extend_from_slice(br#"","htu":""#);
    json_escaped(out, what.htu.as_bytes());
    out.extend_from_slice(br#"","iat":"#);
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(what.iat).as_bytes());
    if let Some(ath) = what.ath {
        out.extend_from_slice(br#","ath":""#);
        out.extend_from_slice(ath.as_bytes());
        out.push(b'"');
    }
    if let Some(n) = nonce {
        // A nonce is NQCHAR: no quote or backslash.
        out.extend_from_slice(br#","nonce":""#);
        out.extend_from_slice(n.as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// Appends `s` as the inside of a JSON string.
fn json_escaped(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
            _ => out.push(b),
        }
    }
}

/// Writes the `htu` of a request into `out` (cleared first): `scheme://host[:port]path`,
/// the port only when it is not the scheme's default, an IPv6 host in brackets, no query.
/// The origin is `out[..origin_len]`, returned.
pub fn write_htu(out: &mut String, https: bool, host: &str, port: u16, path: &str) -> usize {
    out.clear();
    out.push_str(if https { "https://" } else { "http://" });
    let v6 = host.contains(':');
    if v6 {
        out.push('[');
    }
    out.push_str(host);
    if v6 {
        out.push(']');
    }
    if port != if https { 443 } else { 80 } {
        out.push(':');
        out.push_str(itoa::Buffer::new().format(port));
    }
    let origin = out.len();
    out.push_str(if path.is_empty() { "/" } else { path });
    origin
}

/// The `htu` of a token URL (no query or fragment), and its origin.
pub fn url_htu(url: &url::Url) -> (String, String) {
    let origin = url.origin().ascii_serialization();
    let mut htu = origin.clone();
    htu.push_str(url.path());
    (htu, origin)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
