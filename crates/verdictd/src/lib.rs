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
pub mod audit;
pub mod claims;
pub mod config;
pub mod dry_run;
pub mod ear_policy;
mod error;
mod files;
pub mod initdata;
pub mod kek;
pub mod metrics;
pub mod pg;
pub mod policy;
pub mod rotate;
pub mod seal;
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
    /// The database, with `[storage] type = "postgres"`: then sessions, resources,
    /// policies and reference values live there ([`pg`]), and the in-memory copies of
    /// the policies and reference values are checked against it on every use.
    pub pg: Option<Arc<pg::Pg>>,
    /// The audit log ([`audit`]): in the database with postgres, a file beside the
    /// resource directory with localfs, else memory.
    pub audit: audit::Audit,
}

impl AppState {
    /// Builds the state a config describes, loading every file it names. With
    /// `postgres` storage use [`AppState::open`], which connects first.
    pub fn new(config: Config) -> anyhow::Result<Arc<AppState>> {
        config.check()?;
        if config.storage.kind == config::StorageKind::Postgres {
            anyhow::bail!("[storage] type = \"postgres\": the state is built by AppState::open");
        }
        Self::build(config, None)
    }

    /// [`AppState::new`] for any storage: with `postgres`, waits until the database
    /// answers (retrying, one line per attempt), migrates it, and takes the shared
    /// challenge and token keys from it.
    pub async fn open(config: Config) -> anyhow::Result<Arc<AppState>> {
        config.check()?;
        if config.storage.kind != config::StorageKind::Postgres {
            return Self::build(config, None);
        }
        let pg = Arc::new(pg::Pg::new(&config.storage)?);
        let resource_policy = policy::source(&config.resource_policy)?;
        let attestation_policy = match &config.attestation_policy {
            Some(p) => {
                std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
            None => ear_policy::DEFAULT_CPU.to_string(),
        };
        // Checked before they can become the database's policies.
        policy::ResourcePolicy::new(&resource_policy).map_err(|e| anyhow::anyhow!("{e}"))?;
        ear_policy::AttestationPolicy::parse(&attestation_policy).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}",
                config
                    .attestation_policy
                    .as_deref()
                    .unwrap_or(std::path::Path::new("attestation policy"))
                    .display()
            )
        })?;
        let settings = pg
            .open(&[
                (pg::RESOURCE_POLICY, &resource_policy),
                (appraise::ACTIVE_POLICY, &attestation_policy),
            ])
            .await?;
        let state = Self::build(config, Some((pg, settings)))?;
        // The database's policies and reference values, before the first request.
        state.sync_resource_policy().await?;
        state.sync_appraiser().await?;
        Ok(state)
    }

    fn build(
        config: Config,
        shared: Option<(Arc<pg::Pg>, pg::Settings)>,
    ) -> anyhow::Result<Arc<AppState>> {
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
        let storage = match (&shared, config.storage.kind) {
            (Some((pg, _)), _) => storage::Storage::Postgres(pg.clone()),
            (None, config::StorageKind::Localfs) => storage::Storage::local_fs(
                config
                    .storage
                    .dir
                    .clone()
                    .expect("checked by Config::check"),
            )?,
            (None, _) => storage::Storage::memory(),
        };
        let audit = audit::Audit::open(&config, shared.as_ref().map(|(pg, _)| pg.clone()))?;
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
        let s = &config.session;
        let timing = (
            Duration::from_secs(s.timeout_secs),
            s.max_sessions,
            s.max_session_bytes,
            Duration::from_secs(s.challenge_timeout_secs),
            s.max_challenges,
        );
        let (sessions, signer, pg) = match shared {
            Some((pg, settings)) => (
                sessions::Sessions::with_key(
                    &settings.session_key,
                    timing.0,
                    timing.1,
                    timing.2,
                    timing.3,
                    timing.4,
                ),
                match &config.token.signer_key {
                    Some(key) => token::TokenSigner::new(Some(key), config.token.duration_secs)?,
                    None => token::TokenSigner::from_pkcs8_der(
                        &settings.token_key,
                        config.token.duration_secs,
                    )?,
                },
                Some(pg),
            ),
            None => (
                sessions::Sessions::new(timing.0, timing.1, timing.2, timing.3, timing.4),
                token::TokenSigner::new(
                    config.token.signer_key.as_deref(),
                    config.token.duration_secs,
                )?,
                None,
            ),
        };
        Ok(Arc::new(AppState {
            sessions,
            signer,
            resource_policy,
            appraiser,
            rv_keys,
            storage,
            admin: admin::AdminAuth::new(&config.admin)?,
            metrics: metrics::Metrics::default(),
            pg,
            audit,
            config,
        }))
    }

    /// What a request reads before it decides: the session `cookie` names, `policy`
    /// brought up to date (with the attestation policy, the reference values too) and
    /// the row of `resource`. With postgres that is one statement ([`pg::Pg::snapshot`]:
    /// one round trip where three concurrent reads took three); a cookie whose MAC fails
    /// is refused without it. With the local stores nothing is read.
    pub async fn read_ahead(
        &self,
        cookie: Option<&str>,
        policy: PolicyKind,
        resource: Option<&[&str; 3]>,
    ) -> Result<ReadAhead, KbsError> {
        let Some(pg) = &self.pg else {
            return Ok(ReadAhead {
                session: cookie.map(|c| self.sessions.get(c)),
                prefetched: storage::Prefetched::Later,
            });
        };
        let challenge = match cookie.map(|c| self.sessions.challenge(c)).transpose() {
            Ok(c) => c,
            Err(e) => {
                return Ok(ReadAhead {
                    session: Some(Err(e)),
                    prefetched: storage::Prefetched::Later,
                })
            }
        };
        let id = challenge.as_ref().map(|c| c.id);
        let path = resource.map(|k| k.join("/"));
        let snap = pg
            .snapshot(id.as_ref().map(|i| &i[..]), policy.id(), path.as_deref())
            .await?;
        self.apply_policy(pg, policy, snap.policy)?;
        if policy == PolicyKind::Attestation && !pg.reference_values_seen(snap.reference_values) {
            self.apply_reference_values(pg, pg.reference_values_if_changed().await?);
        }
        let row = snap.session;
        Ok(ReadAhead {
            session: challenge.map(|c| session_state(c, row)),
            prefetched: match resource {
                Some(_) => storage::Prefetched::Row(snap.resource),
                None => storage::Prefetched::Later,
            },
        })
    }

    /// Records the admission `details` in the audit log and marks the cookie's session
    /// attested with `token` (before the token is returned, so it is never usable
    /// without its entry); returns when the session expires. With postgres both are one
    /// statement: they commit together, in one round trip.
    pub async fn admit(
        &self,
        cookie: &str,
        token: String,
        actor: &audit::Actor,
        details: serde_json::Value,
    ) -> Result<std::time::SystemTime, KbsError> {
        let Some(_) = &self.pg else {
            self.audit
                .append(audit::Kind::Admission, actor, details)
                .await?;
            return Ok(self.sessions.attested(cookie, token));
        };
        let c = self.sessions.challenge(cookie)?;
        let now = sessions::unix_now();
        let timeout = self.sessions.timeout();
        let session = pg::SessionWrite {
            id: c.id.to_vec(),
            token,
            expires: now + timeout.as_millis() as u64,
            challenge_expires: c.expires,
            created: now,
        };
        self.audit
            .append_with_session(audit::Kind::Admission, actor, details, session)
            .await?;
        Ok(std::time::SystemTime::now() + timeout)
    }

    /// Drops expired sessions; how many attested ones are left (with postgres, in the
    /// whole database; its table is kept to `max_sessions` here).
    pub async fn sweep(&self) -> Result<usize, KbsError> {
        match &self.pg {
            None => Ok(self.sessions.sweep()),
            Some(pg) => {
                pg.sweep_sessions(sessions::unix_now(), self.config.session.max_sessions)
                    .await
            }
        }
    }

    /// With postgres: puts the database's resource policy in force here if it changed
    /// (one round trip when it did not).
    pub async fn sync_resource_policy(&self) -> Result<(), KbsError> {
        let Some(pg) = &self.pg else { return Ok(()) };
        let changed = pg.policy_if_changed(pg::RESOURCE_POLICY).await?;
        self.apply_policy(pg, PolicyKind::Resource, changed)
    }

    /// With postgres: puts the database's attestation policy and reference values in
    /// force here if they changed.
    pub async fn sync_appraiser(&self) -> Result<(), KbsError> {
        let Some(pg) = &self.pg else { return Ok(()) };
        let (policy, values) = tokio::join!(
            pg.policy_if_changed(appraise::ACTIVE_POLICY),
            pg.reference_values_if_changed()
        );
        self.apply_policy(pg, PolicyKind::Attestation, policy?)?;
        self.apply_reference_values(pg, values?);
        Ok(())
    }

    /// Puts `changed` (a policy's text and version read from the database) in force
    /// here; only a newer version than the one in force replaces it (concurrent loads).
    fn apply_policy(
        &self,
        pg: &pg::Pg,
        kind: PolicyKind,
        changed: Option<(String, i64)>,
    ) -> Result<(), KbsError> {
        let Some((text, version)) = changed else {
            return Ok(());
        };
        if pg.loaded_policy(kind.id(), version) {
            match kind {
                PolicyKind::Resource => self.resource_policy.replace(&text)?,
                PolicyKind::Attestation => self.appraiser.set_policy(kind.id(), &text)?,
            }
        }
        Ok(())
    }

    /// As [`AppState::apply_policy`], for the reference values.
    fn apply_reference_values(&self, pg: &pg::Pg, changed: Option<(ReferenceValueRows, i64)>) {
        if let Some((values, version)) = changed {
            if pg.loaded_reference_values(version) {
                self.appraiser.replace_reference_values(values);
            }
        }
    }
}

/// Which policy a request applies ([`AppState::read_ahead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// The resource policy (a resource GET).
    Resource,
    /// The attestation policy and the reference values (an attestation).
    Attestation,
}

impl PolicyKind {
    /// The policy's id in the database.
    fn id(self) -> &'static str {
        match self {
            PolicyKind::Resource => pg::RESOURCE_POLICY,
            PolicyKind::Attestation => appraise::ACTIVE_POLICY,
        }
    }
}

/// Reference values as the database holds them: name → (value, expiry).
type ReferenceValueRows = std::collections::BTreeMap<String, (serde_json::Value, Option<i64>)>;

/// What [`AppState::read_ahead`] read.
pub struct ReadAhead {
    /// The cookie's session, when a cookie was given.
    pub session: Option<Result<sessions::State, KbsError>>,
    /// The resource's row (postgres), for [`storage::Storage::get_prefetched`].
    pub prefetched: storage::Prefetched,
}

/// The session of challenge `c`, given its attested row (if any): attested while the
/// row lives, else a challenge still good for an attestation.
fn session_state(
    c: sessions::Challenge,
    row: Option<pg::SessionRow>,
) -> Result<sessions::State, KbsError> {
    let now = sessions::unix_now();
    match row {
        Some(row) if row.expires > now => Ok(sessions::State::Attested { token: row.token }),
        Some(_) => Err(KbsError::Attestation("session expired.".into())),
        None if c.expires <= now => Err(KbsError::Attestation("session expired.".into())),
        None => Ok(sessions::State::Authed {
            tee: c.tee,
            nonce: c.nonce,
            hash: kbs_protocol::HashAlgorithm::Sha384,
        }),
    }
}
