//! The wire format, shared by the server and the client.

use serde::{Deserialize, Serialize};

/// Every path of the API starts here.
pub const API_PREFIX: &str = "/api/v1/signature";

/// Inclavare's signature server listened here.
pub const DEFAULT_PORT: u16 = 9080;

/// The largest request or reply body accepted. Signing material is small (SGX's is a
/// few hundred bytes, a `sim` manifest a few KiB); anything larger is refused.
pub const MAX_BODY: usize = 1 << 20;

/// The reply to a signing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignaturePayload {
    /// Base64 (standard alphabet, padded) of the signature.
    pub signature: String,
    /// The signer's public key, PEM (SubjectPublicKeyInfo).
    #[serde(rename = "publicKey")]
    pub public_key: String,
}

/// A signature scheme the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standard {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over the body, with an RSA-3072 key of exponent
    /// 3: what an SGX SIGSTRUCT needs.
    Pkcs1,
    /// Ed25519 over the body: what a `liberpal-sim` manifest needs.
    Ed25519,
}

impl Standard {
    /// The path that signs with this scheme.
    pub fn sign_path(self) -> String {
        match self {
            Standard::Pkcs1 => format!("{API_PREFIX}/pkcs1"),
            Standard::Ed25519 => format!("{API_PREFIX}/ed25519"),
        }
    }

    /// The path that gives this scheme's public key. Inclavare's `public-key` path is
    /// the PKCS#1 one.
    pub fn public_key_path(self) -> String {
        match self {
            Standard::Pkcs1 => format!("{API_PREFIX}/public-key"),
            Standard::Ed25519 => format!("{API_PREFIX}/ed25519/public-key"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Standard::Pkcs1 => "pkcs1",
            Standard::Ed25519 => "ed25519",
        }
    }
}
