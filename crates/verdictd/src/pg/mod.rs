//! The `postgres` storage backend: everything replicas must agree on lives in one
//! PostgreSQL database, so any number of verdictd processes on it behave as one broker.
//!
//! | table | holds | read |
//! |---|---|---|
//! | `verdictd_resources` | `path` (`repo/type/tag`) → `value` (bytes, sealed with `dek` when a KEK is configured: [`crate::seal`]) | on every resource GET |
//! | `verdictd_sessions` | attested sessions: the challenge MAC's first 16 bytes → the EAR token, its expiry and the challenge's (Unix ms) | on every `/attest` and cookie GET |
//! | `verdictd_policies` | `resource-policy` and attestation policies by id → text, `version` | the version on every request that applies the policy |
//! | `verdictd_reference_values` | name → JSON text, expiry (Unix s) of signed ones | when `verdictd_versions.reference-values` moved |
//! | `verdictd_versions` | `reference-values` → a counter bumped by every change | on every `/attest` and reference-value read |
//! | `verdictd_settings` | the challenge MAC key and the token signing key (used without `[token] signer_key`), generated once by the first replica, sealed as resources are | at start |
//! | `verdictd_audit`, `verdictd_audit_head` | the audit log ([`crate::audit`]: one chain for all replicas) | appended on every decision and admin call |
//! | `verdictd_kek` | one row: the id of the key-encryption key values are sealed under ([`crate::kek`]; moved by `verdictd rotate-kek`) | on every resource store, and at start |
//! | `verdictd_schema` | the migrations applied | at start |
//!
//! **No stale cache**: a replica keeps the compiled policies and the reference values in
//! memory but checks their version in the database on every request that applies them
//! (one indexed row each), so a change made through any replica is in force on all of
//! them from the next request on (bound: 0 s; the cost is one round trip).
//!
//! **Migrations** run at start in one transaction holding a transaction-level advisory
//! lock ([`MIGRATION_LOCK`]), so replicas starting together apply each migration once
//! and the others wait and then see it applied.
//!
//! **Faults**: a database unreachable at start is retried (one line each attempt, 1 s to
//! 5 s apart) until it answers; one lost while serving fails the requests that need it
//! with 503 (`StorageUnavailable`), logged once as a warning when it goes away and once
//! when it is back; the pool reconnects by itself.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use zeroize::Zeroizing;

use crate::config::StorageConfig;
use crate::KbsError;

mod rows;

pub use rows::{census, SealedResource, SessionRow, SessionWrite, Snapshot};

/// `pg_advisory_xact_lock` key of the migrations ("verdictd" in ASCII, as an i64).
pub const MIGRATION_LOCK: i64 = 0x7665_7264_6963_7464;

/// The resource policy's row in `verdictd_policies`.
pub const RESOURCE_POLICY: &str = "resource-policy";
const REFERENCE_VALUES: &str = "reference-values";

/// Schema migrations, in order; the index + 1 is the version recorded. Never edit one
/// that shipped: add another.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE verdictd_resources (
    path    text PRIMARY KEY,
    value   bytea NOT NULL,
    dek     bytea,
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE verdictd_sessions (
    id                bytea PRIMARY KEY,
    token             text NOT NULL,
    expires           bigint NOT NULL,
    challenge_expires bigint NOT NULL,
    created           bigint NOT NULL
);
CREATE INDEX verdictd_sessions_created ON verdictd_sessions (created);
CREATE TABLE verdictd_policies (
    id      text PRIMARY KEY,
    body    text NOT NULL,
    version bigint NOT NULL
);
CREATE TABLE verdictd_reference_values (
    name    text PRIMARY KEY,
    value   text NOT NULL,
    expires bigint
);
CREATE TABLE verdictd_versions (
    name    text PRIMARY KEY,
    version bigint NOT NULL
);
INSERT INTO verdictd_versions VALUES ('reference-values', 1);
CREATE TABLE verdictd_settings (
    name  text PRIMARY KEY,
    value bytea NOT NULL,
    dek   bytea
);
"#,
    // The audit log (crate::audit::pg).
    crate::audit::pg::MIGRATION,
    // The key-encryption key values are sealed under (crate::kek, crate::rotate).
    r#"
CREATE TABLE verdictd_kek (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    id      bytea NOT NULL,
    changed timestamptz NOT NULL DEFAULT now()
);
"#,
];

/// The versions of what this replica holds in memory (0: not loaded yet).
#[derive(Default)]
struct Seen {
    resource_policy: AtomicI64,
    attestation_policy: AtomicI64,
    reference_values: AtomicI64,
}

/// A pool of connections to the database, and what this replica last loaded from it.
pub struct Pg {
    pool: Pool,
    /// Whether the last call failed for want of the database (logged once per outage).
    down: AtomicBool,
    seen: Seen,
    /// Where the database is, for messages (no password).
    target: String,
    /// `[storage.kek]` (or `kek_file`): resources and settings are sealed with it.
    kek: Option<crate::kek::Keys>,
}

/// Why the database could not be opened.
enum OpenError {
    /// Worth retrying: the database is not there (yet).
    Retry(String),
    /// Retrying cannot help (a newer schema, another KEK).
    Fatal(String),
}

impl<E: std::error::Error> From<E> for OpenError {
    fn from(e: E) -> Self {
        OpenError::Retry(one_line(e))
    }
}

/// An error and its causes on one line (tokio-postgres says only "db error" at the
/// top; the server's message is its source).
fn one_line<E: std::error::Error>(e: E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The shared secrets generated once per database (see the module table).
pub struct Settings {
    pub session_key: Zeroizing<Vec<u8>>,
    /// PKCS#8 DER of the P-256 token signing key.
    pub token_key: Zeroizing<Vec<u8>>,
}

impl Pg {
    /// A pool for `[storage]` (nothing is connected yet).
    pub fn new(config: &StorageConfig) -> anyhow::Result<Pg> {
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("[storage] type = \"postgres\" needs url"))?;
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("[storage] url: {}", one_line(e)))?;
        if let Some(f) = &config.password_file {
            let password = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("[storage] password_file {}: {e}", f.display()))?;
            pg.password(password.trim_end_matches(['\n', '\r']));
        }
        pg.connect_timeout(Duration::from_secs(5));
        if pg.get_application_name().is_none() {
            pg.application_name("verdictd");
        }
        let target = describe(&pg);
        let kek = crate::kek::Keyring::load(config)?
            .map(|ring| crate::kek::Keys::new(ring, config.config_file.clone()));
        let manager_config = ManagerConfig {
            // A connection the server closed is noticed by its task; Fast trusts that,
            // and a request that still meets a dead one fails with 503 once.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &config.ca_file {
            Some(ca) => Manager::from_config(pg, tls_connector(ca)?, manager_config),
            None => {
                if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                    anyhow::bail!("[storage] url asks for sslmode=require: set ca_file, the CA that signed the database's certificate");
                }
                Manager::from_config(pg, tokio_postgres::NoTls, manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| anyhow::anyhow!("[storage] pool: {e}"))?;
        Ok(Pg {
            pool,
            down: AtomicBool::new(false),
            seen: Seen::default(),
            target,
            kek,
        })
    }

    /// Connects (retrying until the database answers, one line per attempt), applies
    /// the migrations and returns the shared settings, generating them on first use.
    /// `initial` are the rows of `verdictd_policies` to create if absent (the
    /// configured policies: the database's own win once there).
    pub async fn open(&self, initial: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.migrate(initial).await {
                Ok(s) => {
                    tracing::info!(
                        database = %self.target,
                        sealed = self.kek.is_some(),
                        "database ready"
                    );
                    return Ok(s);
                }
                Err(OpenError::Fatal(e)) => anyhow::bail!("database {}: {e}", self.target),
                Err(OpenError::Retry(e)) => {
                    tracing::error!(
                        "database {} unreachable: {e}; retrying in {}s",
                        self.target,
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn migrate(&self, initial: &[(&str, &str)]) -> Result<Settings, OpenError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        // No "already exists, skipping" notice in the log at every start.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS verdictd_schema (version integer PRIMARY KEY, \
             applied timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let applied: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM verdictd_schema", &[])
            .await?
            .get(0);
        if applied as usize > MIGRATIONS.len() {
            return Err(OpenError::Fatal(format!(
                "the schema is version {applied}, newer than this verdictd's {}: upgrade verdictd",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = i as i32 + 1;
            tx.batch_execute(sql)
                .await
                .map_err(|e| OpenError::Fatal(format!("migration {version}: {}", one_line(e))))?;
            tx.execute(
                "INSERT INTO verdictd_schema (version) VALUES ($1)",
                &[&version],
            )
            .await?;
            tracing::info!(version, "database migration applied");
        }
        for (id, body) in initial {
            tx.execute(
                "INSERT INTO verdictd_policies (id, body, version) VALUES ($1, $2, 1) \
                 ON CONFLICT (id) DO NOTHING",
                &[id, body],
            )
            .await?;
        }
        let sealing = self.check_keks(&tx).await?;
        let sealing = sealing.as_deref();
        let mut key = Zeroizing::new(vec![0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        let session_key = self.setting(&tx, "session-key", key, sealing).await?;
        use p256::pkcs8::EncodePrivateKey;
        let der = p256::SecretKey::random(&mut rand::rngs::OsRng)
            .to_pkcs8_der()
            .map_err(|e| OpenError::Fatal(format!("token key: {e}")))?;
        let token_key = self
            .setting(
                &tx,
                "token-key",
                Zeroizing::new(der.as_bytes().to_vec()),
                sealing,
            )
            .await?;
        tx.commit().await?;
        Ok(Settings {
            session_key,
            token_key,
        })
    }

    /// The KEK the database seals under (on a fresh database, this replica's current
    /// one, recorded), after checking that this replica holds it and the KEK of every
    /// sealed row: a configuration that dropped a key some row still needs is refused
    /// here, in one line, before anything is served.
    async fn check_keks(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<Option<Arc<crate::seal::Kek>>, OpenError> {
        let Some(keys) = &self.kek else {
            return Ok(None);
        };
        let ring = keys.ring();
        tx.execute(
            "INSERT INTO verdictd_kek (id) VALUES ($1) ON CONFLICT (one) DO NOTHING",
            &[&ring.current().id_bytes().as_slice()],
        )
        .await?;
        let id: Vec<u8> = tx
            .query_one("SELECT id FROM verdictd_kek", &[])
            .await?
            .get(0);
        let sealing = <[u8; 8]>::try_from(id.as_slice())
            .ok()
            .and_then(|id| ring.get(&id))
            .ok_or_else(|| {
                OpenError::Fatal(format!(
                    "the database seals under key-encryption key {} (recorded by the first replica or `verdictd rotate-kek`), which [storage.kek] does not hold (it holds {})",
                    hex::encode(&id),
                    ring.ids()
                ))
            })?;
        for (id, rows) in census(&**tx).await? {
            if let Some(id) = id.filter(|id| ring.get(id).is_none()) {
                return Err(OpenError::Fatal(format!(
                    "{rows} sealed rows need key-encryption key {}, which [storage.kek] does not hold (it holds {}): keep it in `old` until `verdictd rotate-kek` has moved every row off it",
                    hex::encode(id),
                    ring.ids()
                )));
            }
        }
        Ok(Some(sealing.clone()))
    }

    /// The setting `name`: stored as `fresh` (sealed with `kek`, if any) unless a
    /// replica stored it first; a setting stored unsealed is sealed now that there
    /// is a KEK.
    async fn setting(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        name: &str,
        fresh: Zeroizing<Vec<u8>>,
        kek: Option<&crate::seal::Kek>,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let aad = format!("verdictd-setting/{name}");
        let (value, dek) = match kek {
            Some(kek) => {
                let (v, d) = kek.seal(&aad, &fresh);
                (v, Some(d))
            }
            None => (fresh.to_vec(), None),
        };
        tx.execute(
            "INSERT INTO verdictd_settings (name, value, dek) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
            &[&name, &value, &dek],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT value, dek FROM verdictd_settings WHERE name = $1",
                &[&name],
            )
            .await?;
        let (value, dek): (Vec<u8>, Option<Vec<u8>>) = (row.get(0), row.get(1));
        let value = Zeroizing::new(value);
        // check_keks made sure the row's KEK is held.
        let ring = self.kek.as_ref().map(|k| k.ring());
        let opening = ring.as_ref().map(|r| {
            dek.as_deref()
                .and_then(crate::seal::kek_id)
                .and_then(|id| r.get(&id))
                .unwrap_or(r.current())
                .clone()
        });
        let plain = crate::seal::open(opening.as_deref(), &aad, &value, dek.as_deref())
            .map_err(|e| OpenError::Fatal(e.to_string()))?;
        if let (Some(kek), None) = (kek, dek) {
            let (v, d) = kek.seal(&aad, &plain);
            tx.execute(
                "UPDATE verdictd_settings SET value = $2, dek = $3 WHERE name = $1",
                &[&name, &v, &d],
            )
            .await?;
        }
        Ok(plain)
    }

    /// Maps a database failure to 503, logging the outage once.
    pub(crate) fn fail(&self, what: &str, e: impl std::error::Error) -> KbsError {
        let e = one_line(e);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!("database {} unavailable: {what}: {e}", self.target);
        }
        KbsError::Unavailable(format!("storage unavailable: {what}: {e}"))
    }

    /// Passes `v` on, logging the end of an outage.
    pub(crate) fn ok<T>(&self, v: T) -> T {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("database {} reachable again", self.target);
        }
        v
    }

    pub(crate) async fn client(&self, what: &str) -> Result<deadpool_postgres::Client, KbsError> {
        self.pool.get().await.map_err(|e| self.fail(what, e))
    }

    /// One statement's rows.
    async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, KbsError> {
        let client = self.client(what).await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.fail(what, e))?;
        let rows = client
            .query(&stmt, params)
            .await
            .map_err(|e| self.fail(what, e))?;
        Ok(self.ok(rows))
    }

    /// The key-encryption keys of this replica (`None`: values are stored unsealed).
    pub fn keys(&self) -> Option<&crate::kek::Keys> {
        self.kek.as_ref()
    }

    /// Applies the migrations once (no retry, for the command line) and checks the
    /// keys as a starting replica does.
    pub async fn open_once(&self) -> anyhow::Result<()> {
        match self.migrate(&[]).await {
            Ok(_) => Ok(()),
            Err(OpenError::Fatal(e) | OpenError::Retry(e)) => {
                anyhow::bail!("database {}: {e}", self.target)
            }
        }
    }

    /// Where the database is (no password), for messages.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// `user@host:port/dbname` (or the socket directory), for messages: never the password.
fn describe(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        pg.get_user().unwrap_or(""),
        pg.get_dbname().unwrap_or("")
    )
}

/// TLS to the database with rustls (ring), trusting only the CA certificates in `ca`.
fn tls_connector(ca: &std::path::Path) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(|e| anyhow::anyhow!("[storage] ca_file {}: {e}", ca.display()))?
    {
        let cert = cert.map_err(|e| anyhow::anyhow!("[storage] ca_file {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("[storage] ca_file {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("[storage] ca_file {}: no certificate", ca.display());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
