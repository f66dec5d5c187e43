//! What a token looks like in the store: sealed with AES-256-GCM (ring), one key ring of
//! 32-byte keys, the first of which seals and all of which open (rotation).
//!
//! A stored value, byte by byte:
//!
//! ```text
//! "TG1" | key id (8) | token id (16) | nonce (12) | ciphertext | tag (16)
//! ```
//!
//! - The key id is the first 8 bytes of SHA-256 over a fixed label and the key, so a
//!   value names the key that opens it without revealing anything about the key.
//! - The token id is random, chosen by the replica that fetched the token: 401 replay
//!   invalidates by comparing it (in Redis, so it sits outside the ciphertext).
//! - The plaintext is the token's whole lifetime in milliseconds (8 bytes, little
//!   endian) followed by the token. Not an expiry instant: the time left is the key's
//!   TTL in Redis, so replicas whose clocks disagree still agree on it.
//! - The associated data is the header (everything before the ciphertext) and the Redis
//!   key, which names the credential: a value copied under another credential's key, or
//!   with its token id changed, does not open.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const MAGIC: &[u8; 3] = b"TG1";
pub(crate) const KEY_ID_LEN: usize = 8;
pub(crate) const TOKEN_ID_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + TOKEN_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// Offset and length of the token id, for the compare-and-delete script.
pub(crate) const TOKEN_ID_AT: usize = MAGIC.len() + KEY_ID_LEN;
/// Values larger than this are not ours (a token is a few KiB at most).
pub(crate) const MAX_VALUE: usize = 64 * 1024;
/// Key files are 32 bytes, or their hex or base64 text.
const MAX_KEY_FILE: u64 = 4096;

/// The fleet-wide id of a stored token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenId(pub(crate) [u8; TOKEN_ID_LEN]);

impl TokenId {
    pub(crate) fn random() -> Self {
        let mut id = [0u8; TOKEN_ID_LEN];
        // SystemRandom fails only without an OS RNG; a zero id still works (it is
        // compared, never trusted), and the nonce draw below would fail loudly first.
        let _ = SystemRandom::new().fill(&mut id);
        TokenId(id)
    }

    pub(crate) fn hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.hex())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One encryption key.
struct Key {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
    path: PathBuf,
}

/// The keys of `encryption_key_files`, in order. `Debug` shows paths and key ids only.
pub(crate) struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<(String, String)> = self
            .keys
            .iter()
            .map(|k| (k.path.display().to_string(), hex(&k.id)))
            .collect();
        f.debug_struct("Keyring").field("keys", &keys).finish()
    }
}

/// A token read back from the store.
#[derive(Debug)]
pub(crate) struct Opened {
    pub id: TokenId,
    /// The whole lifetime it was fetched with (its schedule is computed from it).
    pub lifetime: Duration,
    pub token: String,
    /// Opened with a key other than the first: worth sealing again with the first.
    pub stale_key: bool,
}

/// Why a stored value did not open. Each reads as a miss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Not a value tollgate wrote (another program, another format).
    NotOurs,
    /// Sealed with a key not in `encryption_key_files` (key id in hex).
    UnknownKey(String),
    /// Our format and a known key, but it does not open: tampered, or moved from
    /// another credential's key.
    Forged,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotOurs => f.write_str("the stored value is not one tollgate wrote"),
            OpenError::UnknownKey(id) => write!(
                f,
                "the stored value was encrypted with a key that is not in encryption_key_files (key id {id})"
            ),
            OpenError::Forged => f.write_str(
                "the stored value does not decrypt with its key: altered, or copied from another credential",
            ),
        }
    }
}

impl Keyring {
    /// Reads every key file. Errors name the file and never show key material.
    pub(crate) fn load(files: &[PathBuf]) -> Result<Self, String> {
        if files.is_empty() {
            return Err("encryption_key_files is empty".into());
        }
        let mut keys = Vec::with_capacity(files.len());
        for path in files {
            let key = Key::read(path)
                .map_err(|why| format!("encryption key file {}: {why}", path.display()))?;
            if let Some(same) = keys.iter().find(|k: &&Key| k.id == key.id) {
                return Err(format!(
                    "encryption key files {} and {} hold the same key",
                    same.path.display(),
                    path.display()
                ));
            }
            keys.push(key);
        }
        Ok(Keyring { keys })
    }

    /// Key ids, first (the sealing key) first: what the status shows.
    pub(crate) fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex(&k.id)).collect()
    }

    /// Seals `token` for the Redis key `aad_key`.
    pub(crate) fn seal(
        &self,
        aad_key: &str,
        id: TokenId,
        lifetime: Duration,
        token: &str,
    ) -> Result<Vec<u8>, String> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no random numbers for a nonce".to_string())?;
        let mut out = Vec::with_capacity(HEADER_LEN + 8 + token.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&nonce);
        let mut body = Vec::with_capacity(8 + token.len() + TAG_LEN);
        let ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        body.extend_from_slice(&ms.to_le_bytes());
        body.extend_from_slice(token.as_bytes());
        let aad = aad(&out, aad_key);
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut body,
            )
            .map_err(|_| "sealing failed".to_string())?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The token id of a value, without opening it (for invalidation).
    pub(crate) fn peek_id(value: &[u8]) -> Option<TokenId> {
        if value.len() < HEADER_LEN || &value[..MAGIC.len()] != MAGIC {
            return None;
        }
        let mut id = [0u8; TOKEN_ID_LEN];
        id.copy_from_slice(&value[TOKEN_ID_AT..TOKEN_ID_AT + TOKEN_ID_LEN]);
        Some(TokenId(id))
    }

    /// Opens a value read from the Redis key `aad_key`.
    pub(crate) fn open(&self, aad_key: &str, value: &[u8]) -> Result<Opened, OpenError> {
        if value.len() < HEADER_LEN + 8 + TAG_LEN
            || value.len() > MAX_VALUE
            || &value[..MAGIC.len()] != MAGIC
        {
            return Err(OpenError::NotOurs);
        }
        let (header, sealed) = value.split_at(HEADER_LEN);
        let key_id = &header[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
        let Some((index, key)) = self.keys.iter().enumerate().find(|(_, k)| k.id == key_id) else {
            return Err(OpenError::UnknownKey(hex(key_id)));
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[HEADER_LEN - NONCE_LEN..]);
        let aad = aad(header, aad_key);
        let mut body = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut body,
            )
            .map_err(|_| OpenError::Forged)?;
        let (ms, token) = plain.split_at(8);
        let mut ms_bytes = [0u8; 8];
        ms_bytes.copy_from_slice(ms);
        let token = std::str::from_utf8(token)
            .map_err(|_| OpenError::Forged)?
            .to_owned();
        Ok(Opened {
            id: Keyring::peek_id(value).ok_or(OpenError::NotOurs)?,
            lifetime: Duration::from_millis(u64::from_le_bytes(ms_bytes)),
            token,
            stale_key: index != 0,
        })
    }
}

fn aad(header: &[u8], aad_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + aad_key.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(aad_key.as_bytes());
    aad
}

/// The key id of one `encryption_key_files` entry, read and parsed as [`Keyring::load`]
/// reads it (to tell two entries holding the same key). For `preflight`; the error is
/// the reason alone and never shows key material.
pub(crate) fn key_file_id(path: &Path) -> Result<[u8; KEY_ID_LEN], String> {
    Key::read(path).map(|k| k.id)
}

impl Key {
    fn read(path: &Path) -> Result<Self, String> {
        Key::new(&read_key_file(path)?, path)
    }

    fn new(bytes: &[u8], path: &Path) -> Result<Self, String> {
        let key = parse_key(bytes)?;
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"tollgate token store key id\0".as_slice(), &key].concat(),
        );
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
        let unbound =
            UnboundKey::new(&AES_256_GCM, &key).map_err(|_| "not an AES-256 key".to_string())?;
        Ok(Key {
            id,
            key: LessSafeKey::new(unbound),
            path: path.to_path_buf(),
        })
    }
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err("too large for a key file".into());
    }
    Ok(bytes)
}

/// A key file's content: exactly 32 bytes, or (surrounding whitespace ignored) 64 hex
/// digits or base64 of 32 bytes (`openssl rand -base64 32`). Errors never show content.
pub(crate) fn parse_key(bytes: &[u8]) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("00");
            key[i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
        return Ok(key);
    }
    if let Ok(decoded) = STANDARD.decode(text) {
        if decoded.len() == 32 {
            key.copy_from_slice(&decoded);
            return Ok(key);
        }
    }
    Err(format!(
        "not a 32-byte key ({} bytes; want 32 raw bytes, 64 hex digits or base64 of 32 bytes, \
         as `openssl rand -base64 32` writes)",
        bytes.len()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::test_support::TempDir;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn ring(dir: &TempDir, keys: &[&str]) -> Keyring {
        let files: Vec<PathBuf> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| dir.write(&format!("k{i}"), k))
            .collect();
        Keyring::load(&files).unwrap()
    }

    fn other_key() -> String {
        STANDARD.encode([7u8; 32])
    }

    #[test]
    fn key_file_forms() {
        let raw: Vec<u8> = (0u8..32).collect();
        let want: [u8; 32] = raw.clone().try_into().unwrap();
        assert_eq!(parse_key(&raw).unwrap(), want);
        assert_eq!(parse_key(format!("{K1}\n").as_bytes()).unwrap(), want);
        assert_eq!(parse_key(hex(&raw).as_bytes()).unwrap(), want);
        assert_eq!(
            parse_key(format!("  {}\r\n", hex(&raw).to_uppercase()).as_bytes()).unwrap(),
            want
        );
        for bad in [
            &b""[..],
            b"short",
            &[0u8; 31],
            &[0u8; 33],
            b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8fHw==",
        ] {
            let e = parse_key(bad).unwrap_err();
            assert!(e.contains("32-byte"), "{e}");
        }
    }

    #[test]
    fn load_names_the_file_and_never_the_key() {
        let dir = TempDir::new();
        let bad = dir.write("bad", "c2VjcmV0LWtleS1tYXRlcmlhbA==");
        let e = Keyring::load(std::slice::from_ref(&bad)).unwrap_err();
        assert!(e.contains(&bad.display().to_string()), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");
        let e = Keyring::load(&[dir.path().join("missing")]).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let a = dir.write("a", K1);
        let b = dir.write("b", format!("{K1}\n"));
        let e = Keyring::load(&[a, b]).unwrap_err();
        assert!(e.contains("same key"), "{e}");
        let huge = dir.write("huge", vec![b'A'; 5000]);
        assert!(Keyring::load(&[huge]).unwrap_err().contains("too large"));
    }

    #[test]
    fn seal_then_open() {
        let dir = TempDir::new();
        let ring = ring(&dir, &[K1]);
        let id = TokenId::random();
        let v = ring
            .seal(
                "tg:token:a",
                id,
                Duration::from_millis(3_600_000),
                "eyJ.tok",
            )
            .unwrap();
        assert!(
            !v.windows(7).any(|w| w == b"eyJ.tok"),
            "plaintext in the value"
        );
        assert_eq!(Keyring::peek_id(&v), Some(id));
        let o = ring.open("tg:token:a", &v).unwrap();
        assert_eq!(o.id, id);
        assert_eq!(o.token, "eyJ.tok");
        assert_eq!(o.lifetime, Duration::from_secs(3600));
        assert!(!o.stale_key);
        // Two seals of one token differ (random nonce).
        let w = ring
            .seal("tg:token:a", id, Duration::from_secs(3600), "eyJ.tok")
            .unwrap();
        assert_ne!(v, w);
        let dbg = format!("{ring:?}");
        assert!(!dbg.contains(K1), "{dbg}");
    }

    #[test]
    fn hostile_values_are_misses() {
        let dir = TempDir::new();
        let ring1 = ring(&dir, &[K1]);
        let v = ring1
            .seal(
                "tg:token:a",
                TokenId::random(),
                Duration::from_secs(60),
                "t",
            )
            .unwrap();
        // Another credential's key: does not open.
        assert_eq!(ring1.open("tg:token:b", &v).unwrap_err(), OpenError::Forged);
        // Any flipped bit: forged (or, in the magic, not ours; in the key id, unknown).
        for i in 0..v.len() {
            let mut w = v.clone();
            w[i] ^= 1;
            let e = ring1.open("tg:token:a", &w).unwrap_err();
            match i {
                0..=2 => assert_eq!(e, OpenError::NotOurs, "byte {i}"),
                3..=10 => assert!(matches!(e, OpenError::UnknownKey(_)), "byte {i}"),
                _ => assert_eq!(e, OpenError::Forged, "byte {i}"),
            }
        }
        // Not ours at all.
        for junk in [
            &b""[..],
            b"hello",
            b"eyJhbGciOiJSUzI1NiJ9.e30.sig",
            &[0u8; 100],
        ] {
            assert_eq!(
                ring1.open("tg:token:a", junk).unwrap_err(),
                OpenError::NotOurs
            );
        }
        let mut big = v.clone();
        big.resize(MAX_VALUE + 1, 0);
        assert_eq!(
            ring1.open("tg:token:a", &big).unwrap_err(),
            OpenError::NotOurs
        );
        // Truncated.
        assert!(ring1.open("tg:token:a", &v[..v.len() - 1]).is_err());
        // A ring without that key: unknown key, named by id.
        let dir2 = TempDir::new();
        let ring2 = ring(&dir2, &[&other_key()]);
        let e = ring2.open("tg:token:a", &v).unwrap_err();
        assert_eq!(e, OpenError::UnknownKey(ring1.key_ids()[0].clone()));
        assert!(e.to_string().contains("encryption_key_files"), "{e}");
    }

    #[test]
    fn rotation_opens_with_any_key_and_seals_with_the_first() {
        let dir = TempDir::new();
        let old = ring(&dir, &[K1]);
        let v = old
            .seal("k", TokenId::random(), Duration::from_secs(60), "t")
            .unwrap();
        let dir2 = TempDir::new();
        let rotated = ring(&dir2, &[&other_key(), K1]);
        let o = rotated.open("k", &v).unwrap();
        assert!(o.stale_key, "opened with the second key");
        let resealed = rotated.seal("k", o.id, o.lifetime, &o.token).unwrap();
        assert!(!rotated.open("k", &resealed).unwrap().stale_key);
        assert!(matches!(
            old.open("k", &resealed).unwrap_err(),
            OpenError::UnknownKey(_)
        ));
        assert_eq!(rotated.key_ids()[1], old.key_ids()[0]);
    }
}
