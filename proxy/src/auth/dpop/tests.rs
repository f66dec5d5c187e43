use super::*;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn key() -> DpopKey {
    DpopKey::from_pem(&fixture("ec-p256-pkcs8.pem")).unwrap()
}

fn b64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).unwrap()
}

/// Splits and verifies a proof with the key in its own header; returns (header, claims).
fn open(proof: &str) -> (Value, Value) {
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "{proof}");
    let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&b64(parts[1])).unwrap();
    let jwk = &header["jwk"];
    let mut point = vec![4u8];
    point.extend(b64(jwk["x"].as_str().unwrap()));
    point.extend(b64(jwk["y"].as_str().unwrap()));
    let signed = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &b64(parts[2]))
        .expect("the signature verifies with the header's jwk");
    (header, claims)
}

#[test]
fn the_thumbprint_matches_jose() {
    let want = String::from_utf8(fixture("ec-p256-pkcs8.jkt")).unwrap();
    assert_eq!(key().jkt(), want);
    // The same key as SEC1 is the same thumbprint.
    assert_eq!(
        DpopKey::from_pem(&fixture("ec-p256-sec1.pem"))
            .unwrap()
            .jkt(),
        want
    );
}

#[test]
fn a_proof_has_the_header_and_claims_of_rfc_9449() {
    let k = key();
    let ath = ath("tok-123");
    let proof = k
        .proof(
            &ProofFor {
                htm: "POST",
                htu: "https://api.example/v2/x",
                ath: Some(&ath),
                iat: 1_700_000_000,
            },
            "https://api.example",
        )
        .unwrap();
    let (header, claims) = open(&proof);
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["jwk"]["kty"], "EC");
    assert_eq!(header["jwk"]["crv"], "P-256");
    assert!(header["jwk"].get("d").is_none(), "no private part");
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], "https://api.example/v2/x");
    assert_eq!(claims["iat"], 1_700_000_000u64);
    // ath = base64url(SHA-256("tok-123")), computed here independently.
    let want = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, b"tok-123"));
    assert_eq!(claims["ath"], want.as_str());
    assert_eq!(claims["jti"].as_str().unwrap().len(), 27);
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims.as_object().unwrap().len(), 5);
}

#[test]
fn each_proof_has_its_own_jti() {
    let k = key();
    let what = ProofFor {
        htm: "GET",
        htu: "http://h/",
        ath: None,
        iat: 1,
    };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let (_, c) = open(&k.proof(&what, "http://h").unwrap());
        assert!(c.get("ath").is_none());
        assert!(seen.insert(c["jti"].as_str().unwrap().to_owned()));
    }
    // Another key (another replica, the same key file) has its own random part.
    let (_, c) = open(&key().proof(&what, "http://h").unwrap());
    assert!(!seen.contains(c["jti"].as_str().unwrap()));
    let jti = |c: &Value| URL_SAFE_NO_PAD.decode(c["jti"].as_str().unwrap()).unwrap();
    let (_, a) = open(&k.proof(&what, "http://h").unwrap());
    assert_eq!(jti(&a).len(), 20);
    assert_ne!(jti(&a)[..12], jti(&c)[..12], "96 random bits per key");
}

#[test]
fn nonces_are_remembered_per_origin_and_checked() {
    let k = key();
    let what = ProofFor {
        htm: "GET",
        htu: "https://a.example/",
        ath: None,
        iat: 1,
    };
    assert!(k.remember_nonce("https://a.example", b"n-1_x"));
    let (_, c) = open(&k.proof(&what, "https://a.example").unwrap());
    assert_eq!(c["nonce"], "n-1_x");
    // Another origin has none.
    let (_, c) = open(&k.proof(&what, "https://b.example").unwrap());
    assert!(c.get("nonce").is_none());
    // A newer nonce replaces the old one.
    assert!(k.remember_nonce("https://a.example", b"n-2"));
    assert_eq!(k.nonce("https://a.example").as_deref(), Some("n-2"));
    // Not NQCHAR: quote, backslash, space, control, non-ASCII, empty, too long.
    for bad in [
        &b"a\"b"[..],
        b"a\\b",
        b"a b",
        b"a\x01",
        "é".as_bytes(),
        b"",
        &[b'a'; MAX_NONCE + 1],
    ] {
        assert!(!k.remember_nonce("https://a.example", bad), "{bad:?}");
    }
    assert_eq!(k.nonce("https://a.example").as_deref(), Some("n-2"));
}

#[test]
fn the_nonce_map_is_bounded() {
    let k = key();
    for i in 0..(MAX_ORIGINS + 10) {
        assert!(k.remember_nonce(&format!("https://h{i}"), b"n"));
    }
    assert!(k.nonces.len() <= MAX_ORIGINS);
}

#[test]
fn htu_is_escaped_in_the_claims() {
    let k = key();
    let what = ProofFor {
        htm: "GET",
        htu: "https://h/a\"b\\c\u{1}",
        ath: None,
        iat: 1,
    };
    let (_, c) = open(&k.proof(&what, "https://h").unwrap());
    assert_eq!(c["htu"], "https://h/a\"b\\c\u{1}");
}

#[test]
fn write_htu_drops_default_ports_and_brackets_ipv6() {
    let mut s = String::new();
    let o = write_htu(&mut s, true, "api.example", 443, "/v2/x");
    assert_eq!(
        (s.as_str(), &s[..o]),
        ("https://api.example/v2/x", "https://api.example")
    );
    write_htu(&mut s, false, "api.example", 8080, "/");
    assert_eq!(s, "http://api.example:8080/");
    write_htu(&mut s, true, "::1", 8443, "");
    assert_eq!(s, "https://[::1]:8443/");
    let (htu, origin) = url_htu(&url::Url::parse("https://idp.example:8443/token?x=1#f").unwrap());
    assert_eq!(htu, "https://idp.example:8443/token");
    assert_eq!(origin, "https://idp.example:8443");
}

#[test]
fn keys_that_are_not_p256_are_refused_with_a_reason() {
    let e = DpopKey::from_pem(&fixture("ec-p384-pkcs8.pem")).unwrap_err();
    assert!(
        e.contains("not a P-256 EC key") && e.contains("ES256"),
        "{e}"
    );
    let e = DpopKey::from_pem(&fixture("rsa-2048-pkcs1.pem")).unwrap_err();
    assert!(e.contains("RSA") && e.contains("P-256"), "{e}");
    let e = DpopKey::from_pem(&fixture("rsa-2048-pkcs8.pem")).unwrap_err();
    assert!(e.contains("not a P-256 EC key"), "{e}");
    let e = DpopKey::from_pem(b"hello").unwrap_err();
    assert!(e.contains("no PEM private key"), "{e}");
    // Debug shows no key material.
    assert!(format!("{:?}", key()).contains("redacted"));
}
