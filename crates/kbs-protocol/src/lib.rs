//! The Confidential Containers Key Broker Service protocol, version 0.4.0 ("RCAR":
//! Request, Challenge, Attestation, Response), as one crate that both ends import:
//! `verdictd` (the broker) and the attestation agent (the client in the enclave).
//!
//! - The JSON messages are [`kbs_types`]' (re-exported), so field names and shapes are
//!   those of Trustee and guest-components. The one exception is [`AuthRequest`], whose
//!   `tee` is a string: `kbs_types::Tee` has no name for Inclavare's `sim` enclave.
//! - [`binding`]: the report data evidence must carry, `H(JCS({additional-evidence,
//!   nonce, tee-pubkey}))`, so a broker can tell that the evidence was made for this
//!   session's nonce and for the key the secret will be encrypted to.
//! - [`jwe`]: the resource reply, a flattened JWE (`A256GCM` content, key managed by
//!   `ECDH-ES+A256KW` on P-256, `RSA-OAEP-256` or `RSA1_5`), with the header key order
//!   the guest's re-serialisation needs.
//! - [`eventlog`]: runtime-measurement events (CoCo's AAEL, e.g. the image an enclave
//!   pulled) and how they ride in the evidence, bound by the report data (re-exported
//!   from the `measurement` crate).
//! - [`resource_uri`]: `kbs:///repo/type/tag` resource names, shared by the agent that
//!   fetches them and the image code that finds them in layer annotations.

pub mod binding;
/// The event log lives in the `measurement` crate (shared with the enclave runtime and
/// `rats`, which replay it); re-exported here under its old path.
pub use measurement::eventlog;
pub mod jwe;
pub mod resource_uri;
pub mod snp;

pub use kbs_types::{
    Attestation, Challenge, CompositeEvidence, ErrorInformation, HashAlgorithm, InitData,
    ProtectedHeader, Response, RuntimeData, TeePubKey,
};
use serde::{Deserialize, Serialize};

/// The only protocol version spoken: Trustee accepts exactly `=0.4.0`, and clients
/// send exactly this string.
pub const VERSION: &str = "0.4.0";

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// The `tee` name of Inclavare's signed software enclave (`liberpal-sim`); not one of
/// `kbs_types::Tee`'s, so only brokers that know it (verdictd) accept it.
pub const TEE_SIM: &str = "sim";

/// `POST /kbs/v0/auth`'s body. As `kbs_types::Request`, but `tee` is any string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub version: String,
    pub tee: String,
    #[serde(rename = "extra-params", default)]
    pub extra_params: serde_json::Value,
}

impl AuthRequest {
    /// A 0.4.0 request for `tee`, offering the hash algorithms guest-components offers.
    pub fn new(tee: &str) -> AuthRequest {
        AuthRequest {
            version: VERSION.into(),
            tee: tee.into(),
            extra_params: serde_json::json!({
                "supported-hash-algorithms": ["sha256", "sha384", "sha512"]
            }),
        }
    }
}

/// `POST /kbs/v0/attest`'s reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenReply {
    pub token: String,
}

/// The `type` URL prefix of error bodies, as Trustee writes it.
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

/// An error body for `variant` (Trustee's error enum names, e.g. `PolicyDeny`).
pub fn error_information(variant: &str, detail: impl Into<String>) -> ErrorInformation {
    ErrorInformation {
        error_type: format!("{ERROR_TYPE_PREFIX}{variant}"),
        detail: detail.into(),
    }
}

/// The hash the challenge selects: `extra-params.selected-hash-algorithm` when the
/// broker names one, else SHA-384 (what clients assume when Trustee sends `""`).
pub fn selected_hash(challenge: &Challenge) -> Result<HashAlgorithm, ProtocolError> {
    match challenge
        .extra_params
        .get("selected-hash-algorithm")
        .and_then(|v| v.as_str())
    {
        None => Ok(HashAlgorithm::Sha384),
        Some(name) => name
            .parse()
            .map_err(|_| ProtocolError::Malformed(format!("unknown hash algorithm {name:?}"))),
    }
}

/// What can go wrong with protocol data.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("decryption failed: {0}")]
    Decrypt(String),
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_request_wire_shape() {
        let v = serde_json::to_value(AuthRequest::new("sample")).unwrap();
        assert_eq!(v["version"], "0.4.0");
        assert_eq!(v["tee"], "sample");
        assert!(v["extra-params"]["supported-hash-algorithms"].is_array());
        // A request as the stock client sends it parses.
        let r: AuthRequest =
            serde_json::from_str(r#"{"version":"0.4.0","tee":"tdx","extra-params":""}"#).unwrap();
        assert_eq!(r.tee, "tdx");
    }

    #[test]
    fn hash_selection() {
        let c: Challenge = serde_json::from_str(r#"{"nonce":"n","extra-params":""}"#).unwrap();
        assert_eq!(selected_hash(&c).unwrap(), HashAlgorithm::Sha384);
        let c: Challenge = serde_json::from_str(
            r#"{"nonce":"n","extra-params":{"selected-hash-algorithm":"sha256"}}"#,
        )
        .unwrap();
        assert_eq!(selected_hash(&c).unwrap(), HashAlgorithm::Sha256);
        let c: Challenge = serde_json::from_str(
            r#"{"nonce":"n","extra-params":{"selected-hash-algorithm":"md5"}}"#,
        )
        .unwrap();
        assert!(selected_hash(&c).is_err());
    }

    #[test]
    fn error_body() {
        let e = serde_json::to_string(&error_information("PolicyDeny", "denied")).unwrap();
        assert_eq!(
            e,
            r#"{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"denied"}"#
        );
    }
}
