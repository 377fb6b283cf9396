//! Errors as KBS clients expect them: an RFC 7807-style body naming Trustee's error
//! variant, and 401 for everything but unknown endpoints (404) and oversized bodies
//! (413) and a database that is away (503). A 401 is what makes a client attest again;
//! a 404 makes it stop.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Every error verdictd answers with. Each is one of Trustee's error variants
/// (T:`kbs/src/error.rs`), chosen where Trustee's KBS raises it for the same request,
/// so a client reacts the same way (401: run RCAR again; 404: stop).
#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    /// Bad version, unknown TEE, nonce mismatch, expired session, failed verification,
    /// a refused attestation policy upload.
    #[error("{0}")]
    Attestation(String),
    #[error("{0}")]
    TokenNotFound(String),
    #[error("{0}")]
    TokenVerifier(String),
    #[error("{0}")]
    PolicyDeny(String),
    /// What Trustee's resource plugin refuses: a malformed resource path, a resource
    /// that is not there, a storage failure.
    #[error("{0}")]
    PluginInternal(String),
    #[error("{0}")]
    Jwe(String),
    /// Admin refused on the policy and reference-value endpoints.
    #[error("{0}")]
    AdminAuth(String),
    /// Admin refused on the resource endpoints: Trustee's plugin path converts the
    /// admin error into `AdminAuthInitialization` there.
    #[error("{0}")]
    AdminAuthResource(String),
    /// A resource policy upload that is not `{"policy": <base64url>}`.
    #[error("{0}")]
    ParsePolicy(String),
    /// A resource policy that does not compile or cannot be evaluated.
    #[error("{0}")]
    PolicyEngine(String),
    /// Reference values: a message that is not a `sample` provenance, an unknown id.
    #[error("{0}")]
    Rvps(String),
    #[error("{0}")]
    Serde(String),
    /// An endpoint (Trustee: plugin) that does not exist, or a method it does not take.
    #[error("{0}")]
    PluginNotFound(String),
    #[error("{0}")]
    InvalidRequestPath(String),
    /// A body over `max_body_bytes` (413: Trustee's actix answers so too, without a
    /// JSON body).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The database is unreachable (postgres storage): 503, the client may retry here
    /// or at another replica. Not one of Trustee's variants (its KBS has no 503).
    #[error("{0}")]
    Unavailable(String),
}

impl KbsError {
    /// Trustee's variant name, used in the error body's `type`.
    pub fn variant(&self) -> &'static str {
        match self {
            KbsError::Attestation(_) => "AttestationError",
            KbsError::TokenNotFound(_) => "TokenNotFound",
            KbsError::TokenVerifier(_) => "TokenVerifierError",
            KbsError::PolicyDeny(_) => "PolicyDeny",
            KbsError::PluginInternal(_) => "PluginInternalError",
            KbsError::Jwe(_) => "JweError",
            KbsError::AdminAuth(_) => "AdminAuthAccess",
            KbsError::AdminAuthResource(_) => "AdminAuthInitialization",
            KbsError::ParsePolicy(_) => "ParsePolicyError",
            KbsError::PolicyEngine(_) => "PolicyEngineError",
            KbsError::Rvps(_) => "RvpsError",
            KbsError::Serde(_) => "SerdeError",
            KbsError::PluginNotFound(_) => "PluginNotFound",
            KbsError::InvalidRequestPath(_) => "InvalidRequestPath",
            KbsError::PayloadTooLarge(_) => "PayloadTooLarge",
            KbsError::Unavailable(_) => "StorageUnavailable",
        }
    }

    /// 404 for unknown endpoints, 413 for oversized bodies, 503 for a database that is
    /// away, 401 for the rest.
    pub fn status(&self) -> StatusCode {
        match self {
            KbsError::InvalidRequestPath(_) | KbsError::PluginNotFound(_) => StatusCode::NOT_FOUND,
            KbsError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            KbsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for KbsError {
    fn into_response(self) -> Response {
        tracing::info!(
            status = self.status().as_u16(),
            kind = self.variant(),
            "{self}"
        );
        let body = kbs_protocol::error_information(self.variant(), self.to_string());
        let body = serde_json::to_vec(&body).unwrap_or_default();
        (
            self.status(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
