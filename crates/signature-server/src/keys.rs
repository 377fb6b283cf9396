//! The server's signing keys, and the public-key encodings both sides use.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sim_tee::SignerKey;

/// The RSA key size SGX signs enclaves with.
pub const RSA_BITS: usize = 3072;
/// The RSA public exponent SGX requires.
pub const RSA_EXPONENT: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("no key is configured for {0}")]
    NotConfigured(&'static str),
    #[error("public key: {0}")]
    PublicKey(String),
    #[error("the signature does not verify against the public key")]
    BadSignature,
}

/// What the server signs with. Either key may be absent; requests for it are then
/// refused.
pub struct Keys {
    sim: Option<SignerKey>,
    rsa: Option<RsaPrivateKey>,
}

impl Keys {
    /// Loads the `sim` Ed25519 key (a `sim-sign keygen` file) and the SGX RSA key
    /// (PEM, PKCS#8 or PKCS#1: `openssl genrsa -3 3072`). Key files must not be
    /// readable by anyone but their owner.
    pub fn load(sim: Option<&Path>, rsa: Option<&Path>) -> Result<Keys, KeyError> {
        let sim = sim
            .map(|p| {
                private_file(p)?;
                SignerKey::load(p).map_err(|e| file_error(p, e))
            })
            .transpose()?;
        let rsa = rsa.map(load_rsa).transpose()?;
        Ok(Keys { sim, rsa })
    }

    pub fn new(sim: Option<SignerKey>, rsa: Option<RsaPrivateKey>) -> Keys {
        Keys { sim, rsa }
    }

    /// Ed25519 signature and public key (PEM) for `data`.
    pub fn sign_ed25519(&self, data: &[u8]) -> Result<(Vec<u8>, String), KeyError> {
        let key = self
            .sim
            .as_ref()
            .ok_or(KeyError::NotConfigured("ed25519"))?;
        Ok((key.sign(data).to_vec(), ed25519_pem(&key.public())?))
    }

    /// RSASSA-PKCS1-v1_5/SHA-256 signature and public key (PEM) for `data`.
    pub fn sign_pkcs1(&self, data: &[u8]) -> Result<(Vec<u8>, String), KeyError> {
        let key = self.rsa.as_ref().ok_or(KeyError::NotConfigured("pkcs1"))?;
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
        let sig = signer.sign(data).to_vec();
        Ok((sig, rsa_pem(&key.to_public_key())?))
    }

    pub fn ed25519_public_pem(&self) -> Result<String, KeyError> {
        let key = self
            .sim
            .as_ref()
            .ok_or(KeyError::NotConfigured("ed25519"))?;
        ed25519_pem(&key.public())
    }

    pub fn pkcs1_public_pem(&self) -> Result<String, KeyError> {
        let key = self.rsa.as_ref().ok_or(KeyError::NotConfigured("pkcs1"))?;
        rsa_pem(&key.to_public_key())
    }

    /// The `sim` key's public half, raw.
    pub fn ed25519_public(&self) -> Option<[u8; 32]> {
        self.sim.as_ref().map(SignerKey::public)
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> KeyError {
    KeyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Refuses a key file that others can read, as ssh does: a signing key others have
/// read is no longer the tenant's.
fn private_file(path: &Path) -> Result<(), KeyError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(file_error(
            path,
            format!("readable by other users (mode {mode:04o}); chmod 600 it"),
        ));
    }
    Ok(())
}

fn load_rsa(path: &Path) -> Result<RsaPrivateKey, KeyError> {
    private_file(path)?;
    let pem = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let key = RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
        .map_err(|e| file_error(path, format!("not an RSA private key in PEM ({e})")))?;
    if key.size() * 8 != RSA_BITS || key.e() != &rsa::BigUint::from(RSA_EXPONENT) {
        return Err(file_error(
            path,
            format!(
                "SGX needs an RSA-{RSA_BITS} key with exponent {RSA_EXPONENT}, this is \
                 RSA-{} with exponent {} (make one with `openssl genrsa -3 3072`)",
                key.size() * 8,
                key.e()
            ),
        ));
    }
    Ok(key)
}

/// PEM (SubjectPublicKeyInfo) of an Ed25519 public key.
pub fn ed25519_pem(public: &[u8; 32]) -> Result<String, KeyError> {
    ed25519_dalek::VerifyingKey::from_bytes(public)
        .map_err(|e| KeyError::PublicKey(e.to_string()))?
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::PublicKey(e.to_string()))
}

fn rsa_pem(public: &RsaPublicKey) -> Result<String, KeyError> {
    rsa::pkcs8::EncodePublicKey::to_public_key_pem(public, LineEnding::LF)
        .map_err(|e| KeyError::PublicKey(e.to_string()))
}

/// The raw Ed25519 key of a PEM (SubjectPublicKeyInfo).
pub fn ed25519_from_pem(pem: &str) -> Result<[u8; 32], KeyError> {
    ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
        .map(|k| k.to_bytes())
        .map_err(|e| KeyError::PublicKey(format!("not an Ed25519 public key in PEM ({e})")))
}

/// Checks an Ed25519 signature of `data` by the key in `pem`; returns the raw key.
pub fn verify_ed25519(pem: &str, data: &[u8], signature: &[u8]) -> Result<[u8; 32], KeyError> {
    let public = ed25519_from_pem(pem)?;
    let sig: [u8; 64] = signature.try_into().map_err(|_| KeyError::BadSignature)?;
    ed25519_dalek::VerifyingKey::from_bytes(&public)
        .map_err(|e| KeyError::PublicKey(e.to_string()))?
        .verify(data, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| KeyError::BadSignature)?;
    Ok(public)
}

/// Checks an RSASSA-PKCS1-v1_5/SHA-256 signature of `data` by the key in `pem`.
pub fn verify_pkcs1(pem: &str, data: &[u8], signature: &[u8]) -> Result<RsaPublicKey, KeyError> {
    let public = <RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_pem(pem)
        .map_err(|e| KeyError::PublicKey(format!("not an RSA public key in PEM ({e})")))?;
    let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| KeyError::BadSignature)?;
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public.clone())
        .verify(data, &sig)
        .map_err(|_| KeyError::BadSignature)?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_signatures_verify_against_the_served_pem_and_nothing_else() {
        let keys = Keys::new(Some(SignerKey::generate().unwrap()), None);
        let (sig, pem) = keys.sign_ed25519(b"manifest").unwrap();
        assert_eq!(pem, keys.ed25519_public_pem().unwrap());
        assert_eq!(
            verify_ed25519(&pem, b"manifest", &sig).unwrap(),
            keys.ed25519_public().unwrap()
        );
        assert!(matches!(
            verify_ed25519(&pem, b"other", &sig),
            Err(KeyError::BadSignature)
        ));
        assert!(matches!(
            keys.sign_pkcs1(b"x"),
            Err(KeyError::NotConfigured("pkcs1"))
        ));
        assert!(
            ed25519_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn key_files_others_can_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        SignerKey::generate().unwrap().save(&path).unwrap();
        assert!(Keys::load(Some(&path), None).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keys::load(Some(&path), None).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
