//! DSSE envelopes (secure-systems-lab/dsse `protocol.md`, `envelope.md`): what is signed
//! is `PAE(payloadType, payload)`, never the payload bare; the verifier checks a
//! signature first, then the payload type, and only then parses the payload.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::keys::{SigningKey, TrustedKey};
use crate::RvError;

/// The pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`,
/// lengths in ASCII decimal bytes without leading zeros (`protocol.md`).
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// A hint naming the key (unauthenticated); ours: [`TrustedKey::keyid`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// Base64 of the signature bytes.
    pub sig: String,
}

/// A DSSE envelope (JSON form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the body.
    pub payload: String,
    /// The body's type, e.g. `application/vnd.in-toto+json`.
    pub payload_type: String,
    /// At least one.
    pub signatures: Vec<Signature>,
}

/// Base64, standard or URL-safe, padded or not: DSSE verifiers must take both alphabets.
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .ok()
}

impl Envelope {
    /// Signs `body` of `payload_type` with `key`.
    pub fn sign(payload_type: &str, body: &[u8], key: &SigningKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, body));
        Envelope {
            payload: STANDARD.encode(body),
            payload_type: payload_type.to_string(),
            signatures: vec![Signature {
                keyid: key.public().keyid(),
                sig: STANDARD.encode(sig),
            }],
        }
    }

    /// The body, once a signature by one of `trusted` verifies over its PAE (threshold
    /// 1). The payload type is returned for the caller to check next.
    pub fn verify(&self, trusted: &[TrustedKey]) -> Result<Vec<u8>, RvError> {
        let body = decode_b64(&self.payload)
            .ok_or_else(|| RvError::Envelope("payload is not base64".into()))?;
        if self.signatures.is_empty() {
            return Err(RvError::Envelope("no signatures".into()));
        }
        if trusted.is_empty() {
            return Err(RvError::Signature("no trusted keys are configured".into()));
        }
        let message = pae(&self.payload_type, &body);
        let ok = self.signatures.iter().any(|s| {
            decode_b64(&s.sig).is_some_and(|sig| trusted.iter().any(|k| k.verifies(&message, &sig)))
        });
        if !ok {
            let ids: Vec<&str> = self
                .signatures
                .iter()
                .map(|s| {
                    if s.keyid.is_empty() {
                        "-"
                    } else {
                        s.keyid.as_str()
                    }
                })
                .collect();
            return Err(RvError::Signature(format!(
                "no signature verifies against a trusted key (keyid {})",
                ids.join(", ")
            )));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // secure-systems-lab/dsse protocol.md, "Test vector".
    #[test]
    fn pae_is_the_spec_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn signatures_verify_only_with_trusted_keys_and_unchanged_bodies() {
        for key in [
            SigningKey::generate_p256().unwrap(),
            SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
        ] {
            let env = Envelope::sign("t", b"body", &key);
            assert_eq!(env.verify(&[key.public()]).unwrap(), b"body");
            let other = SigningKey::generate_p256().unwrap().public();
            assert!(matches!(env.verify(&[other]), Err(RvError::Signature(_))));
            let mut changed = env.clone();
            changed.payload = STANDARD.encode(b"bodY");
            assert!(changed.verify(&[key.public()]).is_err());
            // The type is signed too.
            let mut retyped = env.clone();
            retyped.payload_type = "u".into();
            assert!(retyped.verify(&[key.public()]).is_err());
            // URL-safe base64 is accepted.
            let mut url = env.clone();
            url.payload = URL_SAFE_NO_PAD.encode(b"body");
            assert_eq!(url.verify(&[key.public()]).unwrap(), b"body");
        }
    }
}
