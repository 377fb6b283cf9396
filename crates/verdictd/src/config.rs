//! `verdictd.toml`.
//!
//! ```toml
//! listen = "127.0.0.1:8080"      # loopback unless configured
//! insecure_http = false          # plain HTTP only when set
//! resource_policy = "default"    # default | allow_all | deny_all | affirming | FILE.rego
//! # Relative file names are relative to this file's directory.
//! attestation_policy = "FILE"    # Rego (Trustee's EAR policy form) or a rats appraisal
//!                                # policy (TOML or JSON); default: the built-in Rego that
//!                                # follows Trustee's default_cpu (see ear_policy)
//! dcap_collateral = "FILE"       # QuoteCollateralV3 JSON for sgx and tdx evidence
//! max_body_bytes = 2097152       # 2 MiB, Trustee's payload_request_size default; larger
//!                                # bodies get 413 with a JSON error
//!
//! [tls]
//! certificate = "cert.pem"
//! private_key = "key.pem"
//!
//! [session]
//! timeout_secs = 300             # an attested session (cookie) lives this long
//! max_sessions = 10000           # attested sessions kept; the oldest is evicted beyond
//! max_session_bytes = 67108864   # 64 MiB: the attested sessions' tokens in total; the
//!                                # oldest is evicted beyond
//! challenge_timeout_secs = 300   # a challenge (after /auth) is good this long (stateless)
//! max_challenges = 10000         # used challenges remembered; the oldest is forgotten beyond
//!
//! [token]
//! duration_secs = 300
//! signer_key = "token-key.pem"   # P-256 PKCS#8 PEM; generated at start when absent.
//!                                # Without it: a key of this process, or with postgres
//!                                # storage one generated once in the database, shared
//!                                # by the replicas (the token of one is good at all)
//!
//! [storage]
//! type = "localfs"               # or "memory" (the default), or "postgres"
//! dir = "/var/lib/verdictd/resources"
//! # type = "postgres": everything (resources, sessions, policies, reference values) in
//! # one database, so replicas on it act as one broker (see crate::pg)
//! # url = "postgres://verdictd@db.example:5432/verdictd?sslmode=require"
//! #                              # or "host=/run/postgresql dbname=verdictd user=verdictd"
//! # password_file = "db-password"  # optional; the password is never logged
//! # ca_file = "db-ca.pem"        # TLS to the database, verified against this CA
//! # pool_size = 16               # connections per replica
//! # kek_file = "kek.bin"         # 32 bytes (raw or hex), 0600: resources sealed at
//! #                              # rest with per-resource data keys (crate::seal);
//! #                              # short for [storage.kek] current = "kek.bin"
//! # [storage.kek]                # the current and old key-encryption keys, files or
//! # current = "kek-2.bin"        # commands (crate::kek); `verdictd rotate-kek` moves
//! # old = ["kek-1.bin"]          # every row to the current one (crate::rotate)
//!
//! [admin]
//! mode = "bearer_jwt"            # insecure_allow_all | deny_all | bearer_jwt
//! public_keys = ["admin.pub"]    # Ed25519, P-256 or RSA public keys, PEM
//! roles = ["admin"]
//!
//! [rvps]
//! trusted_keys = ["rv.pub"]      # P-256 or Ed25519 public keys (PEM) whose signed
//!                                # reference-value bundles (`shelter rv bundle`) are
//!                                # accepted; none: signed bundles are refused
//! require_reference_values = true  # a sim or SGX enclave is affirmed only when its
//!                                # mr_enclave is a provisioned, unexpired reference value
//!
//! [audit]                        # the hash-chained audit log (crate::audit)
//! signing_key = "audit-signing.key"  # Ed25519 PKCS#8 PEM, 0600, generated when absent;
//!                                # the same file on every replica (default: localfs
//!                                # <dir>.audit-key.pem; postgres: none, checkpoints
//!                                # unsigned; memory: a key of this process)
//! checkpoint_entries = 100       # a signed checkpoint after this many entries
//! checkpoint_secs = 60           # … or this long after the last one (0: never)
//! file = "audit.jsonl"           # localfs: the log (default <dir>.audit.jsonl)
//! replica_id = "kbs-a"           # default <hostname>/<pid>
//! trusted_keys = ["old.pub"]     # public keys of earlier signing keys: `audit verify`
//!                                # accepts their checkpoints
//! ```
//!
//! The admin endpoints these keys open (resources, resource and attestation policies,
//! reference values) are listed in [`crate::admin_api`]; the attestation policy's forms
//! in [`crate::ear_policy`]; the session tables in [`crate::sessions`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub insecure_http: bool,
    pub tls: Option<TlsConfig>,
    pub resource_policy: String,
    pub attestation_policy: Option<PathBuf>,
    pub dcap_collateral: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub session: SessionConfig,
    pub token: TokenConfig,
    pub storage: StorageConfig,
    pub admin: AdminConfig,
    pub rvps: RvpsConfig,
    pub audit: crate::audit::AuditConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            insecure_http: false,
            tls: None,
            resource_policy: "default".into(),
            attestation_policy: None,
            dcap_collateral: None,
            // T:kbs/src/config.rs DEFAULT_PAYLOAD_REQUEST_SIZE: 2 (MiB).
            max_body_bytes: 2 << 20,
            session: SessionConfig::default(),
            token: TokenConfig::default(),
            storage: StorageConfig::default(),
            admin: AdminConfig::default(),
            rvps: RvpsConfig::default(),
            audit: crate::audit::AuditConfig::default(),
        }
    }
}

/// `[rvps]`: verdictd as a reference value provider (see [`crate::admin_api`] for the
/// signed bundle upload and [`crate::appraise`] for the measurement gate).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RvpsConfig {
    /// PEM public keys (P-256 or Ed25519) whose DSSE bundles are accepted.
    pub trusted_keys: Vec<PathBuf>,
    /// A `sim` or `sgx` enclave is affirmed only when its `mr_enclave` is a provisioned
    /// reference value (`sim_mr_enclave`; SGX: `mr_enclave` or `sgx_mr_enclave`), or
    /// listed in a rats policy's `[expected]` (default: true).
    pub require_reference_values: bool,
}

impl Default for RvpsConfig {
    fn default() -> Self {
        RvpsConfig {
            trusted_keys: vec![],
            require_reference_values: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// `[session]`: the bounded session tables (see [`crate::sessions`]). Challenges are
/// stateless (the cookie carries them, authenticated), so `/auth` stores nothing and
/// never refuses; a full table evicts its oldest entry, and an evicted client gets 401
/// and runs RCAR again. The tables hold at most about `max_challenges` × 0.1 KB +
/// `max_session_bytes` (tokens, each charged its length + 128 bytes), whatever clients
/// send: a token's size depends on the evidence and init-data (at most 64 KiB) the
/// client sent, from about 2 KB for a plain `sample` exchange up to megabytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Seconds an attested session lives (Trustee's `timeout`, 5 minutes).
    pub timeout_secs: u64,
    /// Attested sessions kept.
    pub max_sessions: usize,
    /// Bytes of tokens the attested sessions hold in total (64 MiB).
    pub max_session_bytes: usize,
    /// Seconds a challenge is good for (Trustee's session timeout, 5 minutes).
    pub challenge_timeout_secs: u64,
    /// Used challenges remembered (so each opens one session), until they expire.
    pub max_challenges: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            timeout_secs: 300,
            max_sessions: 10_000,
            max_session_bytes: 64 << 20,
            challenge_timeout_secs: 300,
            max_challenges: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    pub duration_secs: u64,
    pub signer_key: Option<PathBuf>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            duration_secs: 300,
            signer_key: None,
        }
    }
}

/// `[storage]`: where resources, sessions, policies and reference values live.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(rename = "type")]
    pub kind: StorageKind,
    /// `localfs`: the resource directory.
    pub dir: Option<PathBuf>,
    /// `postgres`: a libpq connection URL (`postgres://user@host:port/dbname?sslmode=…`)
    /// or key=value string (`host=/run/postgresql dbname=verdictd user=verdictd`; a
    /// host that is a directory is a unix socket).
    pub url: Option<String>,
    /// `postgres`: a file holding the password (so it need not be in the URL).
    pub password_file: Option<PathBuf>,
    /// `postgres`: PEM CA certificate(s) the database's TLS certificate must chain to;
    /// with it, TLS is used (`sslmode=prefer`, the default: TLS when the server offers
    /// it; `sslmode=require` in the URL: only TLS). Without it, no TLS.
    pub ca_file: Option<PathBuf>,
    /// `postgres`: connections kept open at most (default 16).
    pub pool_size: usize,
    /// `postgres`: the key-encryption key (32 bytes, raw or 64 hex digits; mode 0600),
    /// never stored in the database. With it, each resource (and verdictd's own keys
    /// in the database) is sealed with a data key of its own ([`crate::seal`]); every
    /// replica needs the same file. Without it, values are stored as they are.
    pub kek_file: Option<PathBuf>,
    /// `postgres`: `[storage.kek]`, the current and old KEKs ([`crate::kek`]).
    pub kek: Option<crate::kek::KekConfig>,
    /// The configuration file this was read from: re-read for `[storage.kek]` when a
    /// replica meets a KEK it does not hold.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::default(),
            dir: None,
            url: None,
            password_file: None,
            ca_file: None,
            pool_size: 16,
            kek_file: None,
            kek: None,
            config_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// In this process only (the default: development).
    #[default]
    Memory,
    /// Resources in files; the rest in memory.
    Localfs,
    /// Everything in PostgreSQL ([`crate::pg`]): replicas on one database act as one.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub mode: AdminMode,
    pub public_keys: Vec<PathBuf>,
    pub roles: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            mode: AdminMode::DenyAll,
            public_keys: vec![],
            roles: vec!["admin".into()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminMode {
    InsecureAllowAll,
    DenyAll,
    BearerJwt,
}

impl Config {
    /// Reads a config file. [`Config::check`] runs when the state is built, after
    /// command-line overrides (`--insecure-http`) are applied.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        config.storage.config_file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Makes relative file names relative to `base` (the config file's directory), so
    /// a config means the same whatever the working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(t) = &mut self.tls {
            fix(&mut t.certificate);
            fix(&mut t.private_key);
        }
        for p in [
            self.attestation_policy.as_mut(),
            self.dcap_collateral.as_mut(),
            self.token.signer_key.as_mut(),
            self.storage.dir.as_mut(),
            self.storage.password_file.as_mut(),
            self.storage.ca_file.as_mut(),
            self.storage.kek_file.as_mut(),
            self.audit.signing_key.as_mut(),
            self.audit.file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        for p in &mut self.audit.trusted_keys {
            fix(p);
        }
        if let Some(kek) = &mut self.storage.kek {
            for source in kek.current.iter_mut().chain(kek.old.iter_mut()) {
                if let crate::kek::KeySource::File(p) = source {
                    fix(p);
                }
            }
            kek.base = Some(base.to_path_buf());
        }
        self.admin.public_keys.iter_mut().for_each(fix);
        self.rvps.trusted_keys.iter_mut().for_each(fix);
        if self.resource_policy.ends_with(".rego") && Path::new(&self.resource_policy).is_relative()
        {
            self.resource_policy = base.join(&self.resource_policy).display().to_string();
        }
    }

    /// Refuses configurations that cannot work, before anything starts.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.tls.is_none() && !self.insecure_http {
            anyhow::bail!(
                "no [tls] certificate and key: configure them, or set insecure_http = true to serve plain HTTP"
            );
        }
        if self.storage.kind == StorageKind::Localfs && self.storage.dir.is_none() {
            anyhow::bail!("[storage] type = \"localfs\" needs dir");
        }
        if self.storage.kind == StorageKind::Postgres {
            if self.storage.url.is_none() {
                anyhow::bail!("[storage] type = \"postgres\" needs url");
            }
            if self.storage.pool_size == 0 {
                anyhow::bail!("[storage] pool_size must be at least 1");
            }
        }
        if self.admin.mode == AdminMode::BearerJwt && self.admin.public_keys.is_empty() {
            anyhow::bail!("[admin] mode = \"bearer_jwt\" needs public_keys");
        }
        if self.session.max_sessions == 0 || self.session.max_challenges == 0 {
            anyhow::bail!("[session] max_sessions and max_challenges must be at least 1");
        }
        Ok(())
    }
}
