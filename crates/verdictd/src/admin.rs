//! Who may change resources and policies: nobody (`deny_all`, the default), anybody
//! (`insecure_allow_all`, for tests), or the bearer of a JWT signed by one of the
//! configured keys (Ed25519, P-256 or RSA) whose `role` claim is an allowed role.

use std::path::Path;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AdminConfig, AdminMode};
use crate::KbsError;

pub enum AdminAuth {
    AllowAll,
    DenyAll,
    Jwt {
        /// Each key, its algorithm and its [`key_id`].
        keys: Vec<(DecodingKey, Algorithm, String)>,
        roles: Vec<String>,
    },
}

/// Who an allowed admin request came from, for the audit log.
#[derive(Debug, Clone)]
pub struct AdminIdentity {
    /// The [`key_id`] of the public key that verified its token, or
    /// `insecure_allow_all`.
    pub key: String,
    /// The token's role.
    pub role: Option<String>,
}

impl AdminIdentity {
    /// The audit log's actor: this identity from `addr`.
    pub fn actor(&self, addr: Option<std::net::SocketAddr>) -> crate::audit::Actor {
        crate::audit::Actor {
            admin_key: Some(self.key.clone()),
            role: self.role.clone(),
            ..crate::audit::Actor::from_addr(addr)
        }
    }
}

/// An admin public key's id: the first 8 bytes of SHA-256 of its DER (the PEM's
/// contents), hex: `openssl pkey -pubin -in KEY -outform DER | sha256sum | cut -c1-16`.
pub fn key_id(der: &[u8]) -> String {
    crate::audit::sha256_hex(der)[..16].to_string()
}

#[derive(Deserialize)]
struct AdminClaims {
    role: Option<String>,
}

const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads a PEM public key, the JWT algorithm it signs with and its [`key_id`].
fn load_key(path: &Path) -> anyhow::Result<(DecodingKey, Algorithm, String)> {
    let text = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: {e}", path.display());
    let block = pem::parse(&text).map_err(|e| bad(&e))?;
    let der = block.contents();
    let id = key_id(der);
    let (key, alg) = if block.tag() == "RSA PUBLIC KEY" || contains(der, OID_RSA) {
        (
            DecodingKey::from_rsa_pem(&text).map_err(|e| bad(&e))?,
            Algorithm::RS256,
        )
    } else if contains(der, OID_ED25519) {
        (
            DecodingKey::from_ed_pem(&text).map_err(|e| bad(&e))?,
            Algorithm::EdDSA,
        )
    } else if contains(der, OID_EC_PUBLIC_KEY) && contains(der, OID_P256) {
        (
            DecodingKey::from_ec_pem(&text).map_err(|e| bad(&e))?,
            Algorithm::ES256,
        )
    } else {
        anyhow::bail!(
            "{}: not an Ed25519, P-256 or RSA public key in PEM",
            path.display()
        )
    };
    Ok((key, alg, id))
}

impl AdminAuth {
    pub fn new(c: &AdminConfig) -> anyhow::Result<AdminAuth> {
        Ok(match c.mode {
            AdminMode::InsecureAllowAll => AdminAuth::AllowAll,
            AdminMode::DenyAll => AdminAuth::DenyAll,
            AdminMode::BearerJwt => AdminAuth::Jwt {
                keys: c
                    .public_keys
                    .iter()
                    .map(|p| load_key(p))
                    .collect::<anyhow::Result<_>>()?,
                roles: c.roles.clone(),
            },
        })
    }

    /// Allows an admin request (saying who made it) or refuses it.
    pub fn check(&self, headers: &HeaderMap) -> Result<AdminIdentity, KbsError> {
        match self {
            AdminAuth::AllowAll => Ok(AdminIdentity {
                key: "insecure_allow_all".into(),
                role: None,
            }),
            AdminAuth::DenyAll => Err(KbsError::AdminAuth(
                "the admin API is disabled ([admin] mode = \"deny_all\")".into(),
            )),
            AdminAuth::Jwt { keys, roles } => {
                let token = bearer(headers).ok_or_else(|| {
                    KbsError::AdminAuth("admin request without Authorization: Bearer".into())
                })?;
                let mut last = String::from("no key configured");
                for (key, alg, id) in keys {
                    let mut v = Validation::new(*alg);
                    v.validate_aud = false;
                    match jsonwebtoken::decode::<AdminClaims>(token, key, &v) {
                        Ok(d) => {
                            return match d.claims.role {
                                Some(r) if roles.contains(&r) => Ok(AdminIdentity {
                                    key: id.clone(),
                                    role: Some(r),
                                }),
                                Some(r) => Err(KbsError::AdminAuth(format!(
                                    "role {r:?} may not use the admin API"
                                ))),
                                None => {
                                    Err(KbsError::AdminAuth("admin token has no role claim".into()))
                                }
                            }
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(KbsError::AdminAuth(format!("admin token refused: {last}")))
            }
        }
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}
