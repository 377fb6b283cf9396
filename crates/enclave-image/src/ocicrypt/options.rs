//! The options documents of containers/ocicrypt:blockcipher/blockcipher.go (§1.3):
//! the private `PrivateLayerBlockCipherOptions` (what every key wrap protects) and the
//! public `PublicLayerBlockCipherOptions` (the `pubopts` annotation). Byte fields are
//! Go JSON `[]byte`: standard base64 with padding.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::Error;

/// The only cipher ocicrypt registers.
pub const CIPHER_AES_256_CTR_HMAC_SHA256: &str = "AES_256_CTR_HMAC_SHA256";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 16;
const HMAC_LEN: usize = 32;

/// Go's `map[string][]byte`: values std-base64, the whole map possibly `null`.
type ByteMap = Option<BTreeMap<String, String>>;

#[derive(Serialize, Deserialize)]
struct PrivateWire {
    symkey: String,
    digest: String,
    cipheroptions: ByteMap,
}

impl Drop for PrivateWire {
    fn drop(&mut self) {
        self.symkey.zeroize();
    }
}

/// `PrivateLayerBlockCipherOptions`: the layer key (32 bytes), the 16-byte nonce
/// (`cipheroptions.nonce`, the initial CTR counter block) and the digest of the
/// unencrypted (compressed) layer blob. The key is zeroized on drop and never
/// printed: `Debug` shows the digest only.
///
/// The `digest` is **untrusted** (anyone with a recipient's public key can write
/// one): check the decrypted blob against the manifest's or config's digests.
#[derive(Clone)]
pub struct PrivateOptions {
    pub(super) key: Zeroizing<[u8; KEY_LEN]>,
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) digest: String,
}

impl fmt::Debug for PrivateOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateOptions")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

fn decode_exact<const N: usize>(b64: &str, what: &str) -> Result<Zeroizing<[u8; N]>, Error> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(b64)
            // No decoder detail: "invalid symbol X at offset N" would quote key material.
            .map_err(|_| Error::Options(format!("{what} is not standard base64")))?,
    );
    let mut out = Zeroizing::new([0u8; N]);
    if bytes.len() != N {
        return Err(Error::Options(format!("{what} is not {N} bytes")));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

impl PrivateOptions {
    /// A fresh random key and nonce for a layer whose plain blob has `digest`.
    pub(super) fn random(digest: String) -> Result<PrivateOptions, Error> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(key.as_mut())
            .and_then(|_| getrandom::getrandom(&mut nonce))
            .map_err(|e| Error::Encrypt(format!("random layer key: {e}")))?;
        Ok(PrivateOptions { key, nonce, digest })
    }

    /// Parses the JSON as ocicrypt writes it:
    /// `{"symkey":"<b64 32 bytes>","digest":"sha256:…","cipheroptions":{"nonce":"<b64 16 bytes>"}}`.
    ///
    /// Errors: [`Error::Options`] for bad JSON, base64, or a key/nonce of another size.
    pub fn from_json(json: &[u8]) -> Result<PrivateOptions, Error> {
        // No serde detail in the message: it could quote key material.
        let wire: PrivateWire = serde_json::from_slice(json).map_err(|e| {
            Error::Options(format!(
                "private options are not ocicrypt's JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let key = decode_exact::<KEY_LEN>(&wire.symkey, "symkey")?;
        let nonce = wire
            .cipheroptions
            .as_ref()
            .and_then(|m| m.get("nonce"))
            .ok_or_else(|| Error::Options("private options have no cipheroptions.nonce".into()))?;
        let nonce = *decode_exact::<NONCE_LEN>(nonce, "cipheroptions.nonce")?;
        Ok(PrivateOptions {
            key,
            nonce,
            digest: wire.digest.clone(),
        })
    }

    /// The JSON ocicrypt writes (fields in Go's order), zeroized on drop.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let wire = PrivateWire {
            symkey: STANDARD.encode(self.key.as_ref()),
            digest: self.digest.clone(),
            cipheroptions: Some(BTreeMap::from([(
                "nonce".to_string(),
                STANDARD.encode(self.nonce),
            )])),
        };
        Zeroizing::new(serde_json::to_vec(&wire).expect("strings serialise"))
    }

    /// The digest the encrypting side recorded for the plain blob (`sha256:<hex>`);
    /// untrusted, see the type's documentation.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The 16-byte nonce (initial counter block).
    pub fn nonce(&self) -> [u8; NONCE_LEN] {
        self.nonce
    }
}

#[derive(Serialize, Deserialize)]
struct PublicWire {
    cipher: String,
    hmac: Option<String>,
    cipheroptions: ByteMap,
}

/// `PublicLayerBlockCipherOptions`, the `org.opencontainers.image.enc.pubopts`
/// annotation: the cipher name and the HMAC-SHA256 of the ciphertext (32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOptions {
    pub(super) hmac: [u8; HMAC_LEN],
}

impl PublicOptions {
    pub(super) fn new(hmac: [u8; HMAC_LEN]) -> PublicOptions {
        PublicOptions { hmac }
    }

    /// Parses the annotation's value (std-base64 of the JSON).
    ///
    /// Errors: [`Error::Options`] for bad base64 or JSON, a cipher other than
    /// `AES_256_CTR_HMAC_SHA256`, a missing HMAC ("HMAC is not provided…", as ocicrypt
    /// says), an HMAC that is not 32 bytes, or a public nonce (ocicrypt would let it
    /// override the private one; it is refused here).
    pub fn from_annotation(value: &str) -> Result<PublicOptions, Error> {
        let json = STANDARD
            .decode(value.trim())
            .map_err(|e| Error::Options(format!("pubopts is not standard base64: {e}")))?;
        let wire: PublicWire = serde_json::from_slice(&json)
            .map_err(|e| Error::Options(format!("pubopts is not ocicrypt's JSON: {e}")))?;
        if wire.cipher != CIPHER_AES_256_CTR_HMAC_SHA256 {
            return Err(Error::Options(format!(
                "pubopts cipher {:?} (only {CIPHER_AES_256_CTR_HMAC_SHA256} exists)",
                wire.cipher
            )));
        }
        if wire
            .cipheroptions
            .as_ref()
            .is_some_and(|m| m.contains_key("nonce"))
        {
            return Err(Error::Options(
                "pubopts carries a nonce (it belongs in the private options)".into(),
            ));
        }
        let hmac = wire.hmac.as_deref().unwrap_or_default();
        if hmac.is_empty() {
            return Err(Error::Options(
                "HMAC is not provided for decryption process".into(),
            ));
        }
        Ok(PublicOptions {
            hmac: *decode_exact::<HMAC_LEN>(hmac, "pubopts hmac")?,
        })
    }

    /// The annotation's value as ocicrypt writes it:
    /// std-base64 of `{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"…","cipheroptions":{}}`.
    pub fn to_annotation(&self) -> String {
        let wire = PublicWire {
            cipher: CIPHER_AES_256_CTR_HMAC_SHA256.into(),
            hmac: Some(STANDARD.encode(self.hmac)),
            cipheroptions: Some(BTreeMap::new()),
        };
        STANDARD.encode(serde_json::to_vec(&wire).expect("strings serialise"))
    }

    /// The 32-byte HMAC-SHA256 of the ciphertext.
    pub fn hmac(&self) -> [u8; HMAC_LEN] {
        self.hmac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes observed from skopeo 1.9.3 (§1.3 [TB]).
    #[test]
    fn go_json_shapes_parse_and_round_trip() {
        let key = [7u8; 32];
        let nonce = [9u8; 16];
        let json = format!(
            r#"{{"symkey":"{}","digest":"sha256:d81592","cipheroptions":{{"nonce":"{}"}}}}"#,
            STANDARD.encode(key),
            STANDARD.encode(nonce)
        );
        let p = PrivateOptions::from_json(json.as_bytes()).unwrap();
        assert_eq!((*p.key, p.nonce, p.digest()), (key, nonce, "sha256:d81592"));
        assert_eq!(p.to_json().as_slice(), json.as_bytes());
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains(&STANDARD.encode(key)) && !dbg.contains("7, 7"),
            "{dbg}"
        );

        let hmac = [3u8; 32];
        let pubopts = format!(
            r#"{{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"{}","cipheroptions":{{}}}}"#,
            STANDARD.encode(hmac)
        );
        let value = STANDARD.encode(&pubopts);
        let p = PublicOptions::from_annotation(&value).unwrap();
        assert_eq!(p.hmac(), hmac);
        assert_eq!(p.to_annotation(), value);
        // Go writes a nil map as null.
        let null = r#"{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=","cipheroptions":null}"#;
        assert!(PublicOptions::from_annotation(&STANDARD.encode(null)).is_ok());
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        for (json, why) in [
            (
                r#"{"symkey":"AAAA","digest":"","cipheroptions":{"nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}}"#,
                "symkey is not 32 bytes",
            ),
            (
                r#"{"symkey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","digest":"","cipheroptions":{}}"#,
                "no cipheroptions.nonce",
            ),
            (
                r#"{"symkey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","digest":"","cipheroptions":{"nonce":"AAAA"}}"#,
                "nonce is not 16 bytes",
            ),
            (
                r#"{"symkey":"!!","digest":"","cipheroptions":{}}"#,
                "not standard base64",
            ),
            (r#"{"symkey":"secretsecret"#, "line 1"),
        ] {
            let err = PrivateOptions::from_json(json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{json}: {err}");
            assert!(!err.contains("secretsecret"), "{err}");
        }
        for (json, why) in [
            (
                r#"{"cipher":"AES_256_CTR_HMAC_SHA256","cipheroptions":{}}"#,
                "HMAC is not provided for decryption process",
            ),
            (
                r#"{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"","cipheroptions":{}}"#,
                "HMAC is not provided",
            ),
            (r#"{"cipher":"AES_128_GCM","hmac":"AAAA"}"#, "AES_128_GCM"),
            (
                r#"{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"AAAA","cipheroptions":{}}"#,
                "hmac is not 32 bytes",
            ),
            (
                r#"{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"AAAA","cipheroptions":{"nonce":"AAAA"}}"#,
                "nonce",
            ),
        ] {
            let err = PublicOptions::from_annotation(&STANDARD.encode(json))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{json}: {err}");
        }
    }
}
