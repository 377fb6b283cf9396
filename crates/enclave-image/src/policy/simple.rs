//! Simple signing (containers/image:docs/containers-signature.5.md, images.md §3.2):
//! an OpenPGP signed message (RFC 4880 §11.3, not detached, not cleartext) whose literal
//! data is the JSON payload. Verified first, parsed afterwards.

use std::io::Read as _;
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{Deserializable as _, Message, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails as _;

use super::MAX_SIGNATURE_BYTES;

/// Trusted OpenPGP public keys (a `signedBy` requirement's keyring).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Parses `gpg --export` output, binary or ASCII-armored, holding one or more keys.
    /// Every key's self-signatures must verify.
    ///
    /// # Errors
    /// A one-line message when the bytes hold no key or a key is malformed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring, String> {
        let trimmed = bytes.trim_ascii_start();
        let keys: Vec<SignedPublicKey> = if trimmed.starts_with(b"-----BEGIN PGP") {
            let (iter, _) = SignedPublicKey::from_armor_many(trimmed)
                .map_err(|e| format!("invalid armored GPG keyring: {e}"))?;
            iter.collect::<Result<_, _>>()
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(|e| format!("invalid GPG keyring: {e}"))?
                .collect::<Result<_, _>>()
        }
        .map_err(|e| format!("invalid GPG keyring: {e}"))?;
        if keys.is_empty() {
            return Err("No public keys imported".into());
        }
        for k in &keys {
            k.verify_bindings().map_err(|e| {
                format!("GPG key {:X}: invalid self-signature: {e}", k.fingerprint())
            })?;
        }
        Ok(Keyring { keys })
    }

    /// Adds another keyring's keys (a requirement's `keyPaths`).
    pub fn extend(&mut self, other: Keyring) {
        self.keys.extend(other.keys);
    }

    /// Upper-case hex fingerprints of the primary keys.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{:X}", k.fingerprint()))
            .collect()
    }
}

/// A verified simple-signing blob: the signed bytes and who signed them.
#[derive(Debug, Clone)]
pub struct VerifiedMessage {
    /// The literal data: the JSON payload, still unparsed.
    pub payload: Vec<u8>,
    /// Fingerprint (upper-case hex) of the key that made the signature (primary or
    /// subkey).
    pub signer: String,
    /// Fingerprint of the signer's primary key.
    pub primary: String,
}

/// Verifies an OpenPGP signed message against `keyring` at time `now` and returns its
/// literal data. Refuses encrypted or unsigned messages, more than one signature,
/// signatures no trusted key verifies, and expired or revoked signatures and keys.
///
/// # Errors
/// A one-line message starting "Invalid GPG signature" (containers/image's words) when
/// the signature does not verify, otherwise naming what is malformed.
pub fn verify_message(
    blob: &[u8],
    keyring: &Keyring,
    now: SystemTime,
) -> Result<VerifiedMessage, String> {
    if blob.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "signature is larger than {MAX_SIGNATURE_BYTES} bytes"
        ));
    }
    let mut msg = Message::from_bytes(blob)
        .map_err(|e| format!("Invalid GPG signature: not an OpenPGP message: {e}"))?;
    // skopeo wraps the signed message in a ZIP compressed packet; allow nesting a little.
    for _ in 0..4 {
        if !msg.is_compressed() {
            break;
        }
        msg = msg
            .decompress()
            .map_err(|e| format!("Invalid GPG signature: decompression: {e}"))?;
    }
    match &msg {
        Message::Signed { .. } => {}
        Message::Encrypted { .. } => {
            return Err("Invalid GPG signature: the message is encrypted".into())
        }
        Message::Literal { .. } => {
            return Err("Invalid GPG signature: the message is not signed".into())
        }
        Message::Compressed { .. } => {
            return Err("Invalid GPG signature: compressed too deeply".into())
        }
    }
    // Read the literal data to the end (the signatures are hashed over it), bounded.
    let mut payload = Vec::new();
    (&mut msg)
        .take(MAX_SIGNATURE_BYTES as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(|e| format!("Invalid GPG signature: reading the signed data: {e}"))?;
    if payload.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "signed payload is larger than {MAX_SIGNATURE_BYTES} bytes"
        ));
    }
    let Message::Signed { reader, .. } = &msg else {
        unreachable!("checked above");
    };
    let count = reader.num_signatures();
    if count != 1 {
        return Err(format!("Unexpected GPG signature count {count}"));
    }
    let sig = reader
        .signature(0)
        .ok_or("Invalid GPG signature: the signature packet is missing")?
        .clone();
    let issuer = issuer_text(&sig);

    for key in &keyring.keys {
        let primary = format!("{:X}", key.fingerprint());
        if msg.verify(key).is_ok() {
            check_times(&sig, now)?;
            check_key_valid(key, now, &primary)?;
            return Ok(VerifiedMessage {
                payload,
                signer: primary.clone(),
                primary,
            });
        }
        for sub in &key.public_subkeys {
            if msg.verify(&sub.key).is_ok() {
                check_times(&sig, now)?;
                check_key_valid(key, now, &primary)?;
                let signer = format!("{:X}", sub.key.fingerprint());
                check_subkey_valid(key, sub, now, &signer)?;
                return Ok(VerifiedMessage {
                    payload,
                    signer,
                    primary,
                });
            }
        }
    }
    Err(format!(
        "Invalid GPG signature: no trusted key verifies it (signed by {issuer})"
    ))
}

fn issuer_text(sig: &Signature) -> String {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        return format!("key {fp:X}");
    }
    match sig.issuer_key_id().first() {
        Some(id) => format!("key ID {}", hex::encode_upper(id.as_ref())),
        None => "an unnamed key".into(),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The signature's own creation and expiration times.
fn check_times(sig: &Signature, now: SystemTime) -> Result<(), String> {
    let now = unix(now);
    let created = sig.created().map(|t| u64::from(t.as_secs()));
    if let Some(c) = created {
        if c > now + 60 * 60 {
            return Err(format!(
                "Invalid GPG signature: created in the future ({c})"
            ));
        }
        if let Some(exp) = sig
            .signature_expiration_time()
            .map(|d| u64::from(d.as_secs()))
        {
            if exp != 0 && c + exp <= now {
                return Err(format!(
                    "Invalid GPG signature: the signature expired at {}",
                    c + exp
                ));
            }
        }
    }
    Ok(())
}

/// The primary key: not revoked, not expired (by its newest self-signature).
fn check_key_valid(key: &SignedPublicKey, now: SystemTime, fpr: &str) -> Result<(), String> {
    if !key.details.revocation_signatures.is_empty() {
        return Err(format!("Invalid GPG signature: key {fpr} is revoked"));
    }
    let created = u64::from(key.primary_key.created_at().as_secs());
    let newest = key
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(key.details.direct_signatures.iter())
        .max_by_key(|s| s.created().map(|t| t.as_secs()));
    if let Some(exp) = newest
        .and_then(|s| s.key_expiration_time())
        .map(|d| u64::from(d.as_secs()))
    {
        if exp != 0 && created + exp <= unix(now) {
            return Err(format!(
                "Invalid GPG signature: key {fpr} expired at {}",
                created + exp
            ));
        }
    }
    Ok(())
}

/// A signing subkey: bound by a signing-capable binding, not revoked, not expired.
fn check_subkey_valid(
    key: &SignedPublicKey,
    sub: &pgp::composed::SignedPublicSubKey,
    now: SystemTime,
    fpr: &str,
) -> Result<(), String> {
    use pgp::packet::SignatureType;
    if sub
        .signatures
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return Err(format!("Invalid GPG signature: subkey {fpr} is revoked"));
    }
    let binding = sub
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .filter(|s| s.verify_subkey_binding(&key.primary_key, &sub.key).is_ok())
        .max_by_key(|s| s.created().map(|t| t.as_secs()))
        .ok_or_else(|| format!("Invalid GPG signature: subkey {fpr} has no valid binding"))?;
    if !binding.key_flags().sign() {
        return Err(format!(
            "Invalid GPG signature: subkey {fpr} is not a signing key"
        ));
    }
    let created = u64::from(sub.key.created_at().as_secs());
    if let Some(exp) = binding
        .key_expiration_time()
        .map(|d| u64::from(d.as_secs()))
    {
        if exp != 0 && created + exp <= unix(now) {
            return Err(format!(
                "Invalid GPG signature: subkey {fpr} expired at {}",
                created + exp
            ));
        }
    }
    Ok(())
}
