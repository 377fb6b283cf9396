//! Errors as KBS clients expect them: an RFC 7807-style body naming Trustee's error
//! variant, and 401 for everything but unknown paths (a 401 is what makes a client
//! attest again).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    /// Bad version, unknown TEE, nonce mismatch, expired session, failed verification.
    #[error("{0}")]
    Attestation(String),
    #[error("{0}")]
    TokenNotFound(String),
    #[error("{0}")]
    TokenVerifier(String),
    #[error("{0}")]
    PolicyDeny(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    Jwe(String),
    #[error("{0}")]
    AdminAuth(String),
    #[error("{0}")]
    ParsePolicy(String),
    #[error("{0}")]
    PolicyEngine(String),
    #[error("{0}")]
    Serde(String),
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    InvalidRequestPath(String),
    /// The session table is full: retry later (429, not 401, so clients do not loop).
    #[error("{0}")]
    TooManySessions(String),
}

impl KbsError {
    /// Trustee's variant name, used in the error body's `type`.
    pub fn variant(&self) -> &'static str {
        match self {
            KbsError::Attestation(_) => "AttestationError",
            KbsError::TokenNotFound(_) => "TokenNotFound",
            KbsError::TokenVerifier(_) => "TokenVerifierError",
            KbsError::PolicyDeny(_) => "PolicyDeny",
            KbsError::ResourceNotFound(_) => "PluginInternalError",
            KbsError::Jwe(_) => "JweError",
            KbsError::AdminAuth(_) => "AdminAuthAccess",
            KbsError::ParsePolicy(_) => "ParsePolicyError",
            KbsError::PolicyEngine(_) => "PolicyEngineError",
            KbsError::Serde(_) => "SerdeError",
            KbsError::Storage(_) => "PluginInternalError",
            KbsError::InvalidRequestPath(_) => "InvalidRequestPath",
            KbsError::TooManySessions(_) => "TooManySessions",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            KbsError::InvalidRequestPath(_) => StatusCode::NOT_FOUND,
            KbsError::TooManySessions(_) => StatusCode::TOO_MANY_REQUESTS,
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
