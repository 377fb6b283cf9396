//! Signing and trusted keys from PEM files: ECDSA P-256 (PKCS#8 `PRIVATE KEY` or SEC1
//! `EC PRIVATE KEY`; `PUBLIC KEY` SPKI) and Ed25519 (PKCS#8 / SPKI, RFC 8410).
//!
//! Signatures over a DSSE PAE: ECDSA P-256 with SHA-256, **ASN.1 DER** encoded (what
//! `openssl dgst -sha256 -sign`, cosign and the openanolis RV release tool produce);
//! verification also takes the raw 64-byte `r‖s` form the DSSE spec's example uses.
//! Ed25519: the 64-byte RFC 8032 signature of the PAE itself.
//!
//! A key's id ([`TrustedKey::keyid`]) is the lowercase hex SHA-256 of its SPKI DER: a
//! hint in the envelope only, never trusted (DSSE `keyid` is unauthenticated).

use p256::pkcs8::der::Decode;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use sha2::Digest as _;

use crate::RvError;

/// id-ecPublicKey (RFC 5480).
const OID_EC: &str = "1.2.840.10045.2.1";
/// id-Ed25519 (RFC 8410).
const OID_ED25519: &str = "1.3.101.112";
/// The SPKI DER of an Ed25519 key up to its 32 key bytes (RFC 8410 §4).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The PKCS#8 DER of an Ed25519 key up to its 32-byte seed (RFC 8410 §7).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn key_err(what: impl std::fmt::Display) -> RvError {
    RvError::Key(what.to_string())
}

fn pem_der(pem: &str) -> Result<(String, Vec<u8>), RvError> {
    let (label, der) = p256::pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| key_err(format!("not a PEM document: {e}")))?;
    Ok((label.to_string(), der))
}

/// A key that signs reference-value bundles.
pub enum SigningKey {
    /// ECDSA P-256 / SHA-256.
    P256(p256::ecdsa::SigningKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
}

impl SigningKey {
    /// Reads a private key PEM (PKCS#8 P-256 or Ed25519, or SEC1 P-256).
    pub fn from_pem(pem: &str) -> Result<SigningKey, RvError> {
        let (label, der) = pem_der(pem)?;
        match label.as_str() {
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                .map(|k| SigningKey::P256(k.into()))
                .map_err(|e| key_err(format!("SEC1 P-256 key: {e}"))),
            "PRIVATE KEY" => {
                let info = p256::pkcs8::PrivateKeyInfo::from_der(&der)
                    .map_err(|e| key_err(format!("PKCS#8: {e}")))?;
                match info.algorithm.oid.to_string().as_str() {
                    OID_EC => p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                        .map(SigningKey::P256)
                        .map_err(|e| key_err(format!("P-256 key (only P-256 is supported): {e}"))),
                    OID_ED25519 => {
                        let seed: [u8; 32] = der
                            .strip_prefix(&ED25519_PKCS8_PREFIX[..])
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| key_err("Ed25519 PKCS#8 key is not RFC 8410's form"))?;
                        Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                            &seed,
                        )))
                    }
                    other => Err(key_err(format!(
                        "key algorithm {other} (supported: P-256, Ed25519)"
                    ))),
                }
            }
            other => Err(key_err(format!(
                "PEM label {other:?} (expected PRIVATE KEY or EC PRIVATE KEY)"
            ))),
        }
    }

    /// A fresh random P-256 key.
    pub fn generate_p256() -> Result<SigningKey, RvError> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).map_err(key_err)?;
            // Rejects zero and values ≥ n (probability ~2⁻³²).
            if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                return Ok(SigningKey::P256(k));
            }
        }
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, RvError> {
        match self {
            SigningKey::P256(k) => k
                .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
                .map(|p| p.to_string())
                .map_err(key_err),
            SigningKey::Ed25519(k) => {
                let mut der = ED25519_PKCS8_PREFIX.to_vec();
                der.extend_from_slice(&k.to_bytes());
                p256::pkcs8::der::pem::encode_string("PRIVATE KEY", Default::default(), &der)
                    .map_err(key_err)
            }
        }
    }

    /// The public half.
    pub fn public(&self) -> TrustedKey {
        match self {
            SigningKey::P256(k) => TrustedKey::P256(*k.verifying_key()),
            SigningKey::Ed25519(k) => TrustedKey::Ed25519(k.verifying_key()),
        }
    }

    /// The signature of `message` (a DSSE PAE) in this key type's encoding.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::P256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(message).to_bytes().to_vec()
            }
        }
    }
}

/// A public key whose signatures are trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedKey {
    /// ECDSA P-256 / SHA-256.
    P256(p256::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl TrustedKey {
    /// Reads a `PUBLIC KEY` (SPKI) PEM holding a P-256 or Ed25519 key.
    pub fn from_pem(pem: &str) -> Result<TrustedKey, RvError> {
        let (label, der) = pem_der(pem)?;
        if label != "PUBLIC KEY" {
            return Err(key_err(format!(
                "PEM label {label:?} (expected PUBLIC KEY)"
            )));
        }
        let spki = p256::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|e| key_err(format!("SPKI: {e}")))?;
        match spki.algorithm.oid.to_string().as_str() {
            OID_EC => p256::ecdsa::VerifyingKey::from_public_key_der(&der)
                .map(TrustedKey::P256)
                .map_err(|e| key_err(format!("P-256 key (only P-256 is supported): {e}"))),
            OID_ED25519 => {
                let raw: [u8; 32] = der
                    .strip_prefix(&ED25519_SPKI_PREFIX[..])
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| key_err("Ed25519 SPKI is not RFC 8410's form"))?;
                ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map(TrustedKey::Ed25519)
                    .map_err(|e| key_err(format!("Ed25519 key: {e}")))
            }
            other => Err(key_err(format!(
                "key algorithm {other} (supported: P-256, Ed25519)"
            ))),
        }
    }

    /// The SPKI DER.
    pub fn spki_der(&self) -> Vec<u8> {
        match self {
            TrustedKey::P256(k) => k
                .to_public_key_der()
                .map(|d| d.to_vec())
                .expect("a P-256 key encodes"),
            TrustedKey::Ed25519(k) => {
                let mut der = ED25519_SPKI_PREFIX.to_vec();
                der.extend_from_slice(k.as_bytes());
                der
            }
        }
    }

    /// The key as a `PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> String {
        p256::pkcs8::der::pem::encode_string("PUBLIC KEY", Default::default(), &self.spki_der())
            .expect("PEM encodes")
    }

    /// Lowercase hex SHA-256 of the SPKI DER.
    pub fn keyid(&self) -> String {
        hex::encode(sha2::Sha256::digest(self.spki_der()))
    }

    /// Whether `sig` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        match self {
            TrustedKey::P256(k) => {
                use p256::ecdsa::signature::Verifier;
                let sig = match sig.len() {
                    64 => p256::ecdsa::Signature::from_slice(sig).ok(),
                    _ => p256::ecdsa::Signature::from_der(sig).ok(),
                };
                sig.is_some_and(|s| k.verify(message, &s).is_ok())
            }
            TrustedKey::Ed25519(k) => {
                let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
                    return false;
                };
                k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
                    .is_ok()
            }
        }
    }
}
