//! The attestation token: an EAR (Entity Attestation Result) JWT signed with ES256,
//! carrying the signing key as the header's `jwk`, as Trustee's attestation service
//! issues it. verdictd re-verifies it on every resource request.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{jwk::Jwk, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde_json::{json, Value};

use crate::KbsError;

pub const EAT_PROFILE: &str = "tag:github.com,2024:confidential-containers/Trustee";
pub const ISSUER: &str = "verdictd";

/// Where the TEE public key sits in a token's claims (the first path Trustee looks at).
pub const TEE_PUBKEY_POINTER: &str =
    "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey";

/// The claims of the EAR issued at `iat` (Unix seconds) for `duration_secs` with one
/// submodule (`cpu0`): what a token carries, and what a resource policy gets as `input`.
pub fn ear_claims(cpu0: Value, iat: u64, duration_secs: u64) -> Value {
    json!({
        "eat_profile": EAT_PROFILE,
        "iat": iat,
        "exp": iat + duration_secs,
        "iss": ISSUER,
        "ear.verifier-id": {
            "developer": "https://github.com/inclavare-containers",
            "build": concat!("verdictd ", env!("CARGO_PKG_VERSION")),
        },
        "submods": { "cpu0": cpu0 },
    })
}

pub struct TokenSigner {
    /// Tokens this process issued, by SHA-256, with their expiry: a token found here is
    /// ours byte for byte, so its signature need not be checked again on every resource
    /// request. Bounded (oldest dropped first, 40 bytes each); a token missing from it
    /// is verified in full.
    issued: std::sync::Mutex<Issued>,
    /// ring, not jsonwebtoken's RustCrypto backend: that one re-derives the public key
    /// on every signature, and the token is on every attestation's path.
    signing: ring::signature::EcdsaKeyPair,
    /// The JWS protected header, base64url, the same for every token.
    header_b64: String,
    decoding: DecodingKey,
    duration_secs: u64,
}

impl TokenSigner {
    /// Loads a P-256 PKCS#8 PEM key, or generates one (tokens then die with the process).
    pub fn new(key: Option<&Path>, duration_secs: u64) -> anyhow::Result<TokenSigner> {
        let secret = match key {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(pem) => p256::SecretKey::from_pkcs8_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("{}: not a P-256 PKCS#8 key: {e}", path.display())
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate_key_file(path)?,
                Err(e) => anyhow::bail!("{}: {e}", path.display()),
            },
            None => p256::SecretKey::random(&mut rand::rngs::OsRng),
        };
        Self::from_secret(&secret, duration_secs)
    }

    /// A signer with the P-256 key in PKCS#8 DER `der` (the postgres backend's shared
    /// key, so every replica's tokens verify at every other).
    pub fn from_pkcs8_der(der: &[u8], duration_secs: u64) -> anyhow::Result<TokenSigner> {
        let secret = p256::SecretKey::from_pkcs8_der(der)
            .map_err(|e| anyhow::anyhow!("token key: not a P-256 PKCS#8 key: {e}"))?;
        Self::from_secret(&secret, duration_secs)
    }

    fn from_secret(secret: &p256::SecretKey, duration_secs: u64) -> anyhow::Result<TokenSigner> {
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("token key: {e}"))?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| anyhow::anyhow!("token key: {e}"))?;
        let decoding =
            DecodingKey::from_jwk(&jwk).map_err(|e| anyhow::anyhow!("token key: {e}"))?;
        let signing = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| anyhow::anyhow!("token key: {e}"))?;
        let mut header = Header::new(Algorithm::ES256);
        header.jwk = Some(jwk);
        let header_b64 = b64url(&serde_json::to_vec(&header)?);
        Ok(TokenSigner {
            issued: Default::default(),
            signing,
            header_b64,
            decoding,
            duration_secs,
        })
    }

    /// Signs an EAR with one submodule (`cpu0`).
    pub fn issue(&self, cpu0: Value) -> Result<(String, Value), KbsError> {
        let now = unix_now();
        let claims = ear_claims(cpu0, now, self.duration_secs);
        let mut token = self.header_b64.clone();
        token.push('.');
        token.push_str(&b64url(&serde_json::to_vec(&claims).map_err(|e| {
            KbsError::TokenVerifier(format!("serialising the token: {e}"))
        })?));
        // ES256 in JWS is the fixed-width r ‖ s ring produces.
        let sig = self
            .signing
            .sign(&ring::rand::SystemRandom::new(), token.as_bytes())
            .map_err(|_| KbsError::TokenVerifier("signing the token failed".into()))?;
        token.push('.');
        token.push_str(&b64url(sig.as_ref()));
        self.issued
            .lock()
            .expect("token cache")
            .insert(digest(&token), now + self.duration_secs);
        Ok((token, claims))
    }

    /// Checks a token's signature (ours only) and expiry; returns its claims.
    pub fn verify(&self, token: &str) -> Result<Value, KbsError> {
        let known = self.issued.lock().expect("token cache").get(&digest(token));
        if let Some(exp) = known {
            if exp >= unix_now() {
                return payload(token);
            }
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[ISSUER]);
        v.leeway = 0;
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| KbsError::TokenVerifier(format!("attestation token refused: {e}")))
    }
}

const ISSUED_CACHE: usize = 16_384;

/// The digests of issued tokens and their expiry, bounded to [`ISSUED_CACHE`] entries,
/// the oldest dropped first.
#[derive(Default)]
pub struct Issued {
    map: std::collections::HashMap<[u8; 32], u64>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl Issued {
    fn insert(&mut self, digest: [u8; 32], exp: u64) {
        while self.order.len() >= ISSUED_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        if self.map.insert(digest, exp).is_none() {
            self.order.push_back(digest);
        }
    }

    fn get(&self, digest: &[u8; 32]) -> Option<u64> {
        self.map.get(digest).copied()
    }
}

/// The claims of a token this process issued and kept itself (a session's): its
/// payload decoded, the signature not checked again.
pub fn payload(token: &str) -> Result<Value, KbsError> {
    use base64::Engine as _;
    let bad = || KbsError::TokenVerifier("attestation token refused: malformed".into());
    let body = token.split('.').nth(1).ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A new P-256 key written to `path` as PKCS#8 PEM, mode 0600, created exclusively: a
/// key another process wrote first (a second replica starting on the same volume) is
/// read instead, so both sign with one key.
fn generate_key_file(path: &Path) -> anyhow::Result<p256::SecretKey> {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = secret
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("token key: {e}"))?;
    match crate::files::create_private_once(path, pem.as_bytes()) {
        Ok(true) => {
            tracing::info!(path = %path.display(), "generated the token signing key");
            Ok(secret)
        }
        Ok(false) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            p256::SecretKey::from_pkcs8_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{}: not a P-256 PKCS#8 key: {e}", path.display()))
        }
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_and_forgery() {
        let s = TokenSigner::new(None, 60).unwrap();
        let (token, claims) = s.issue(json!({"ear.status": "affirming"})).unwrap();
        assert_eq!(s.verify(&token).unwrap(), claims);
        // Out of the cache, the signature itself is checked (ring signs, jsonwebtoken
        // verifies: the two agree on JWS's ES256).
        *s.issued.lock().unwrap() = Issued::default();
        assert_eq!(s.verify(&token).unwrap(), claims);
        // Another signer's token (same shape, other key) is refused.
        let other = TokenSigner::new(None, 60).unwrap();
        let (forged, _) = other.issue(json!({"ear.status": "affirming"})).unwrap();
        assert!(s.verify(&forged).is_err());
        // A changed payload breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1].insert(0, 'e');
        assert!(s.verify(&parts.join(".")).is_err());
        // Expired, though issued here (the cache honours exp too).
        let short = TokenSigner::new(None, 0).unwrap();
        let (t, _) = short.issue(json!({})).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(short.verify(&t).is_err());
    }
}
