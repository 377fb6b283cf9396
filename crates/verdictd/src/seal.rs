//! Secrets at rest (postgres storage): each value is sealed with a data key of its own,
//! and the data key is wrapped by the key-encryption key (KEK) the operator keeps in a
//! file, never in the database.
//!
//! - value: AES-256-GCM under a fresh random 32-byte data key, 12-byte random nonce,
//!   the value's name (a resource's `repo/type/tag`) as associated data; stored as
//!   `nonce (12) | ciphertext | tag (16)`.
//! - data key: AES-256-GCM under the KEK, random nonce, associated data
//!   `"verdictd-dek\0" | name`; stored as `KEK id (8) | nonce (12) | wrapped key (32) |
//!   tag (16)` (68 bytes). The KEK id is the first 8 bytes of SHA-256 of the KEK: a
//!   reader picks the KEK by it among the current and old ones ([`crate::kek`]), and a
//!   value sealed under a KEK it does not hold is named as such rather than failing as
//!   tampered. Rotation ([`Kek::rewrap`]) re-wraps the data key only: the value's bytes
//!   stay as they are.
//!
//! A row moved to another name fails to open (the name is bound twice), as does any
//! changed byte.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

/// Bytes of a wrapped data key.
pub const WRAPPED_LEN: usize = 8 + NONCE_LEN + 32 + 16;

/// Why a value could not be sealed or opened; one line each.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("key-encryption key file {path}: {reason}")]
    KekFile { path: String, reason: String },
    #[error(
        "{name}: sealed under another key-encryption key (id {found}; [storage.kek] holds {ours})"
    )]
    OtherKek {
        name: String,
        found: String,
        ours: String,
    },
    #[error("{name}: sealed, but no kek_file or [storage.kek] is configured")]
    NoKek { name: String },
    #[error("{name}: the sealed value does not open (altered, or moved from another name)")]
    Corrupt { name: String },
}

/// The key-encryption key.
pub struct Kek {
    key: LessSafeKey,
    id: [u8; 8],
}

/// Shows the id only, never the key.
impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id())
    }
}

fn random<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut b = Zeroizing::new([0u8; N]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut *b);
    b
}

fn aes(key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"))
}

/// AES-256-GCM: `nonce | ciphertext | tag`.
fn seal_with(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = random::<NONCE_LEN>();
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&*nonce);
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(*nonce),
        Aad::from(aad),
        &mut body,
    )
    .expect("AES-GCM seals any length verdictd stores");
    out.extend_from_slice(&body);
    body.fill(0);
    out
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = Zeroizing::new(body.to_vec());
    let n = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .ok()?
        .len();
    buf.truncate(n);
    Some(buf)
}

fn dek_aad(name: &str) -> Vec<u8> {
    [b"verdictd-dek\0".as_slice(), name.as_bytes()].concat()
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn new(key: &[u8; 32]) -> Kek {
        use sha2::Digest;
        let mut id = [0u8; 8];
        id.copy_from_slice(&sha2::Sha256::digest(key)[..8]);
        Kek { key: aes(key), id }
    }

    /// A KEK from what a key file or command holds: 32 bytes, raw or as 64 hex digits
    /// (surrounding white space allowed); else why not.
    pub fn parse(bytes: &[u8]) -> Result<Kek, String> {
        let mut key = Zeroizing::new([0u8; 32]);
        let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
        if text.len() == 64 && hex::decode_to_slice(text, &mut *key).is_ok() {
            return Ok(Kek::new(&key));
        }
        if bytes.len() == 32 {
            key.copy_from_slice(bytes);
            return Ok(Kek::new(&key));
        }
        Err(format!(
            "{} bytes: expected 32 bytes, raw or as 64 hex digits",
            bytes.len()
        ))
    }

    /// Reads a KEK file ([`Kek::parse`]). The file must not be readable by group or
    /// others.
    pub fn load(path: &Path) -> Result<Kek, SealError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |reason: String| SealError::KekFile {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o}: a key file must be readable by its owner only (chmod 600)",
                meta.permissions().mode() & 0o777
            )));
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
        Kek::parse(&bytes).map_err(err)
    }

    /// The KEK's id, hex (for messages).
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// The KEK's id: the first 8 bytes of SHA-256 of the key.
    pub fn id_bytes(&self) -> [u8; 8] {
        self.id
    }

    /// The data key `wrapped` under `from` (for the value named `name`), wrapped under
    /// this KEK instead; the sealed value itself is unchanged.
    pub fn rewrap(&self, from: &Kek, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, SealError> {
        let dek = unwrap_dek(from, name, wrapped)?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&seal_with(&self.key, &dek_aad(name), &dek));
        Ok(out)
    }

    /// Seals `plaintext` named `name`: (the sealed value, the wrapped data key).
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let dek = random::<32>();
        let value = seal_with(&aes(&*dek), name.as_bytes(), plaintext);
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        wrapped.extend_from_slice(&self.id);
        wrapped.extend_from_slice(&seal_with(&self.key, &dek_aad(name), &*dek));
        (value, wrapped)
    }
}

/// Opens a stored value named `name`: sealed when `wrapped` is a data key, as stored
/// otherwise (a value written without a KEK).
pub fn open(
    kek: Option<&Kek>,
    name: &str,
    value: &[u8],
    wrapped: Option<&[u8]>,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let Some(wrapped) = wrapped else {
        return Ok(Zeroizing::new(value.to_vec()));
    };
    let kek = kek.ok_or_else(|| SealError::NoKek { name: name.into() })?;
    let dek = unwrap_dek(kek, name, wrapped)?;
    open_with(&aes(&dek), name.as_bytes(), value)
        .ok_or_else(|| SealError::Corrupt { name: name.into() })
}

/// The id of the KEK a wrapped data key names (its first 8 bytes), if it is one.
pub fn kek_id(wrapped: &[u8]) -> Option<[u8; 8]> {
    (wrapped.len() == WRAPPED_LEN).then(|| wrapped[..8].try_into().expect("8 bytes"))
}

fn unwrap_dek(kek: &Kek, name: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let corrupt = || SealError::Corrupt { name: name.into() };
    let id = kek_id(wrapped).ok_or_else(corrupt)?;
    if id != kek.id {
        return Err(SealError::OtherKek {
            name: name.into(),
            found: hex::encode(id),
            ours: kek.id(),
        });
    }
    let dek = open_with(&kek.key, &dek_aad(name), &wrapped[8..]).ok_or_else(corrupt)?;
    if dek.len() != 32 {
        return Err(corrupt());
    }
    Ok(dek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_their_name_and_kek() {
        let kek = Kek::new(&[7; 32]);
        let (value, wrapped) = kek.seal("a/b/c", b"the secret");
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(value.len(), NONCE_LEN + 10 + 16);
        assert!(!value.windows(10).any(|w| w == b"the secret"));
        let opened = open(Some(&kek), "a/b/c", &value, Some(&wrapped)).unwrap();
        assert_eq!(opened.as_slice(), b"the secret");
        // Each seal is fresh: another data key and nonces.
        let (value2, wrapped2) = kek.seal("a/b/c", b"the secret");
        assert_ne!((&value, &wrapped), (&value2, &wrapped2));
        // Moved to another name, altered anywhere, or without/with another KEK: refused.
        let err = open(Some(&kek), "a/b/d", &value, Some(&wrapped)).unwrap_err();
        assert!(matches!(err, SealError::Corrupt { .. }), "{err}");
        for at in [0, NONCE_LEN, value.len() - 1] {
            let mut v = value.clone();
            v[at] ^= 1;
            assert!(open(Some(&kek), "a/b/c", &v, Some(&wrapped)).is_err());
        }
        for at in [8, 20, WRAPPED_LEN - 1] {
            let mut w = wrapped.clone();
            w[at] ^= 1;
            assert!(open(Some(&kek), "a/b/c", &value, Some(&w)).is_err());
        }
        let err = open(None, "a/b/c", &value, Some(&wrapped)).unwrap_err();
        assert!(err.to_string().contains("no kek_file"), "{err}");
        let other = Kek::new(&[8; 32]);
        let err = open(Some(&other), "a/b/c", &value, Some(&wrapped)).unwrap_err();
        assert!(
            err.to_string().contains("another key-encryption key"),
            "{err}"
        );
        // Re-wrapped under another KEK: the value's bytes unchanged, opened by the new
        // KEK only; re-wrapping needs the KEK it was wrapped under.
        let rewrapped = other.rewrap(&kek, "a/b/c", &wrapped).unwrap();
        assert_eq!(rewrapped.len(), WRAPPED_LEN);
        assert_eq!(kek_id(&rewrapped), Some(other.id_bytes()));
        let opened = open(Some(&other), "a/b/c", &value, Some(&rewrapped)).unwrap();
        assert_eq!(opened.as_slice(), b"the secret");
        assert!(open(Some(&kek), "a/b/c", &value, Some(&rewrapped)).is_err());
        assert!(other.rewrap(&other, "a/b/c", &wrapped).is_err());
        assert!(other.rewrap(&kek, "a/b/d", &wrapped).is_err());
        // Unsealed values pass through.
        assert_eq!(
            open(None, "x", b"plain", None).unwrap().as_slice(),
            b"plain"
        );
    }

    #[test]
    fn kek_files_are_32_bytes_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek");
        let set = |bytes: &[u8], mode: u32| {
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        set(&[1; 32], 0o600);
        let raw = Kek::load(&p).unwrap();
        set(format!("{}\n", hex::encode([1u8; 32])).as_bytes(), 0o400);
        assert_eq!(Kek::load(&p).unwrap().id(), raw.id());
        set(&[1; 32], 0o644);
        assert!(Kek::load(&p).unwrap_err().to_string().contains("chmod 600"));
        set(&[1; 31], 0o600);
        assert!(Kek::load(&p).unwrap_err().to_string().contains("31 bytes"));
    }
}
