//! The messages of Inclavare's Enclave Attestation Architecture between `shelter`, `inclavared`
//! and an enclave application.
//!
//! `shelter` → `inclavared`: [`Request`] `{"type":"GETENCLAVEINFO","nonce":"<hex>"}`, one
//! JSON line. `inclavared` opens attested TLS to the enclave with *that* nonce, and
//! answers with [`Reply`]: Inclavare's `ENCLAVEINFO` fields plus the enclave's own
//! certificate. The tenant checks that certificate itself (evidence, key binding, its
//! nonce, its policy), so the relay, which runs on the untrusted host, is not trusted.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub const GET_ENCLAVE_INFO: &str = "GETENCLAVEINFO";
pub const ENCLAVE_INFO: &str = "ENCLAVEINFO";
pub const ERROR: &str = "ERROR";
/// The largest message either side reads.
pub const MAX_MESSAGE: u64 = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    #[serde(rename = "type")]
    pub kind: String,
    /// Hex of the tenant's nonce (1 to 31 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reply {
    pub id: u64,
    pub msgtype: String,
    pub version: u32,
    #[serde(default)]
    pub mrenclave: String,
    #[serde(default)]
    pub mrsigner: String,
    /// The enclave's answer, or the error.
    #[serde(default)]
    pub message: String,
    /// The evidence's type (`sim`, `sgx_ecdsa`, ...).
    #[serde(default)]
    pub tee: String,
    /// Base64 of the enclave's attested certificate (DER).
    #[serde(default)]
    pub certificate: String,
}

impl Reply {
    pub fn error(id: u64, message: impl Into<String>) -> Reply {
        Reply {
            id,
            msgtype: ERROR.into(),
            version: 1,
            message: message.into(),
            ..Default::default()
        }
    }

    /// The certificate's DER.
    pub fn certificate_der(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.certificate)
            .map_err(|e| format!("certificate: {e}"))
    }

    /// An `ENCLAVEINFO` reply from what the enclave proved and said.
    pub fn enclave_info(id: u64, peer: &crate::PeerInfo, message: String) -> Reply {
        let (mrenclave, mrsigner) = measurements(&peer.verified);
        Reply {
            id,
            msgtype: ENCLAVE_INFO.into(),
            version: 1,
            mrenclave,
            mrsigner,
            message,
            tee: peer.verified.tee.name().into(),
            certificate: base64::engine::general_purpose::STANDARD.encode(&peer.cert_der),
        }
    }
}

/// The enclave's measurement and signer, in hex, under each TEE's names.
pub fn measurements(v: &rats::Verified) -> (String, String) {
    let get = |k: &str| {
        v.claims
            .get(k)
            .map(|c| c.canonical().join(","))
            .unwrap_or_default()
    };
    match v.tee {
        rats::Tee::Sim => (get("sim_mr_enclave"), get("sim_mr_signer")),
        rats::Tee::SgxEcdsa => (get("sgx_mr_enclave"), get("sgx_mr_signer")),
        rats::Tee::TdxEcdsa => (get("tdx_mr_td"), get("tdx_mr_seam")),
        rats::Tee::SevSnp => (get("snp_measurement"), get("snp_author_key_digest")),
        rats::Tee::Sample => (String::new(), String::new()),
    }
}
