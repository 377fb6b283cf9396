//! `verdictd`: a key broker for confidential containers. It releases secrets (keys,
//! certificates, configuration) to workloads only after they prove, with hardware
//! evidence, what they are — over the Confidential Containers KBS protocol 0.4.0, so
//! Trustee's `kbs-client` and the guest attestation agent work with it unchanged.
//!
//! A request walks: `POST /kbs/v0/auth` (challenge and session cookie) →
//! `POST /kbs/v0/attest` (evidence bound to the nonce and the TEE's key, verified by
//! [`rats`], appraised, answered with an EAR token) → `GET /kbs/v0/resource/r/t/t`
//! (token checked, resource policy in Rego, secret encrypted to the TEE's key as a JWE).

pub mod admin;
pub mod admin_api;
pub mod appraise;
pub mod claims;
pub mod config;
pub mod ear_policy;
mod error;
pub mod initdata;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod sessions;
pub mod storage;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use error::KbsError;

/// Everything a request may touch.
pub struct AppState {
    pub config: Config,
    pub sessions: sessions::Sessions,
    pub signer: token::TokenSigner,
    pub resource_policy: policy::ResourcePolicy,
    pub appraiser: appraise::Appraiser,
    pub storage: storage::Storage,
    pub admin: admin::AdminAuth,
    pub metrics: metrics::Metrics,
    /// Keys whose signed reference-value bundles are accepted (`[rvps] trusted_keys`).
    pub rv_keys: Vec<reference_values::TrustedKey>,
}

impl AppState {
    /// Builds the state a config describes, loading every file it names.
    pub fn new(config: Config) -> anyhow::Result<Arc<AppState>> {
        config.check()?;
        let rego = policy::source(&config.resource_policy)?;
        let resource_policy =
            policy::ResourcePolicy::new(&rego).map_err(|e| anyhow::anyhow!("{e}"))?;
        let attestation_policy = match &config.attestation_policy {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                ear_policy::AttestationPolicy::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
            None => ear_policy::AttestationPolicy::default_cpu(),
        };
        let collateral = match &config.dcap_collateral {
            Some(p) => {
                let bytes =
                    std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                Some(rats::Collateral::parse(rats::Tee::SgxEcdsa, &bytes)?)
            }
            None => None,
        };
        let storage = match config.storage.kind {
            config::StorageKind::Memory => storage::Storage::memory(),
            config::StorageKind::Localfs => storage::Storage::local_fs(
                config
                    .storage
                    .dir
                    .clone()
                    .expect("checked by Config::check"),
            )?,
        };
        let rv_keys = config
            .rvps
            .trusted_keys
            .iter()
            .map(|p| {
                let pem = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("[rvps] trusted key {}: {e}", p.display()))?;
                reference_values::TrustedKey::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("[rvps] trusted key {}: {e}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut appraiser = appraise::Appraiser::new(attestation_policy, collateral);
        appraiser.require_reference_values(config.rvps.require_reference_values);
        Ok(Arc::new(AppState {
            sessions: sessions::Sessions::new(
                Duration::from_secs(config.session.timeout_secs),
                config.session.max_sessions,
                config.session.max_session_bytes,
                Duration::from_secs(config.session.challenge_timeout_secs),
                config.session.max_challenges,
            ),
            signer: token::TokenSigner::new(
                config.token.signer_key.as_deref(),
                config.token.duration_secs,
            )?,
            resource_policy,
            appraiser,
            rv_keys,
            storage,
            admin: admin::AdminAuth::new(&config.admin)?,
            metrics: metrics::Metrics::default(),
            config,
        }))
    }
}
