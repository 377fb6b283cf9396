//! The audit signing key: Ed25519, stored as a PKCS#8 v1 PEM `PRIVATE KEY` (what
//! `openssl genpkey -algorithm ed25519` writes; RFC 8410), mode 0600. Public keys for
//! `verdictd audit verify --public-key` are SPKI PEM `PUBLIC KEY` (`openssl pkey
//! -pubout`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// DER of a PKCS#8 v1 Ed25519 private key, before the 32-byte seed (RFC 8410 §7).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER of an Ed25519 SubjectPublicKeyInfo, before the 32-byte key (RFC 8410 §4).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The key that signs checkpoints.
pub struct AuditKey {
    signing: SigningKey,
}

/// Shows the key id only.
impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id())
    }
}

/// A public key's id: the first 8 bytes of SHA-256 of its 32 bytes, hex.
pub fn key_id(public: &VerifyingKey) -> String {
    super::sha256_hex(public.as_bytes())[..16].to_string()
}

fn bad(path: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("[audit] signing_key {}: {why}", path.display())
}

impl AuditKey {
    /// A fresh key, of this process only.
    pub fn generate() -> AuditKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut *seed);
        AuditKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Reads the key at `path`, or, when there is no such file, generates one there
    /// (mode 0600, written aside and linked into place, so replicas starting together
    /// end up with one key). The file must not be readable by group or others.
    pub fn load_or_create(path: &Path) -> anyhow::Result<AuditKey> {
        match std::fs::metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let pem = key.to_pem();
                match crate::files::create_private_once(path, pem.as_bytes()) {
                    Ok(true) => {
                        tracing::info!(key_id = %key.id(), file = %path.display(), "audit signing key generated");
                        Ok(key)
                    }
                    // Another replica made it first: use that one.
                    Ok(false) => Self::load(path),
                    Err(e) => Err(bad(path, format!("cannot create it: {e}"))),
                }
            }
            Err(e) => Err(bad(path, e)),
        }
    }

    /// Reads a PKCS#8 PEM Ed25519 private key file (mode 0600 or stricter).
    pub fn load(path: &Path) -> anyhow::Result<AuditKey> {
        let meta = std::fs::metadata(path).map_err(|e| bad(path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(bad(
                path,
                format!(
                    "mode {:o}: a key file must be readable by its owner only (chmod 600)",
                    meta.permissions().mode() & 0o777
                ),
            ));
        }
        let text = Zeroizing::new(std::fs::read(path).map_err(|e| bad(path, e))?);
        let block = pem::parse(&*text).map_err(|e| bad(path, e))?;
        let der = Zeroizing::new(block.contents().to_vec());
        match (block.tag(), der.strip_prefix(&PKCS8_PREFIX[..])) {
            ("PRIVATE KEY", Some(seed)) if seed.len() == 32 => {
                let mut s = Zeroizing::new([0u8; 32]);
                s.copy_from_slice(seed);
                Ok(AuditKey {
                    signing: SigningKey::from_bytes(&s),
                })
            }
            _ => Err(bad(
                path,
                "not an Ed25519 private key in PKCS#8 PEM (openssl genpkey -algorithm ed25519)",
            )),
        }
    }

    fn to_pem(&self) -> Zeroizing<String> {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(self.signing.as_bytes());
        let pem = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", der.clone())));
        zeroize::Zeroize::zeroize(&mut der);
        pem
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// [`key_id`] of the public key.
    pub fn id(&self) -> String {
        key_id(&self.public())
    }

    /// The public key, standard base64 of its 32 bytes (a checkpoint's `public_key`).
    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.public().as_bytes())
    }

    /// Standard base64 of the Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.signing.sign(message).to_bytes())
    }

    /// HMAC-SHA256 of `value` under SHA-256(`"verdictd-audit-value\0"` ‖ seed), hex:
    /// equal values give equal digests, and testing a guess needs the key.
    pub fn value_hmac(&self, value: &[u8]) -> String {
        use sha2::Digest;
        let mut k = sha2::Sha256::new();
        k.update(b"verdictd-audit-value\0");
        k.update(self.signing.as_bytes());
        let k = Zeroizing::new(<[u8; 32]>::from(k.finalize()));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &*k);
        hex::encode(ring::hmac::sign(&key, value).as_ref())
    }
}

/// Reads an Ed25519 public key: SPKI PEM `PUBLIC KEY`, or a PKCS#8 private key file
/// (its public half).
pub fn load_public(path: &Path) -> anyhow::Result<VerifyingKey> {
    let text = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let block = pem::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if block.tag() == "PRIVATE KEY" {
        return Ok(AuditKey::load(path)?.public());
    }
    match block.contents().strip_prefix(&SPKI_PREFIX[..]) {
        Some(k) if block.tag() == "PUBLIC KEY" && k.len() == 32 => {
            VerifyingKey::from_bytes(k.try_into().expect("32 bytes"))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        _ => anyhow::bail!("{}: not an Ed25519 public key in PEM", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        let a = AuditKey::load_or_create(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = AuditKey::load_or_create(&p).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(load_public(&p).unwrap(), a.public());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = AuditKey::load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    /// openssl's own Ed25519 key files are read, and its signature checks with ours.
    #[test]
    fn reads_what_openssl_writes() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output();
            match out {
                Ok(o) if o.status.success() => Some(o.stdout),
                _ => None,
            }
        };
        if run(&["genpkey", "-algorithm", "ed25519", "-out", "key.pem"]).is_none() {
            eprintln!("skipped: no openssl with Ed25519");
            return;
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        run(&["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]).unwrap();
        let k = AuditKey::load(&key).unwrap();
        assert_eq!(
            load_public(&dir.path().join("pub.pem")).unwrap(),
            k.public()
        );
        std::fs::write(dir.path().join("msg"), b"checkpoint").unwrap();
        let sig = STANDARD.decode(k.sign(b"checkpoint")).unwrap();
        std::fs::write(dir.path().join("sig"), sig).unwrap();
        run(&[
            "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg",
            "-sigfile", "sig",
        ])
        .expect("openssl verifies our signature");
    }
}
