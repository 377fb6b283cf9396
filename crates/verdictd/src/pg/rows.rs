//! The rows verdictd reads and writes while serving: resources (sealed when a KEK is
//! configured), attested sessions, policies and reference values (see the table in
//! [`super`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use zeroize::Zeroizing;

use super::{Pg, REFERENCE_VALUES, RESOURCE_POLICY};
use crate::KbsError;

/// An attested session to store: the challenge's id, its token, and (Unix ms) when the
/// session and its challenge expire and when it was made.
/// No `Debug`: it holds the session's token.
#[derive(Clone)]
pub struct SessionWrite {
    pub id: Vec<u8>,
    pub token: String,
    pub expires: u64,
    pub challenge_expires: u64,
    pub created: u64,
}

impl SessionWrite {
    /// The upsert, its parameters numbered from `$first`.
    pub(crate) fn upsert(first: usize) -> String {
        let n: Vec<String> = (first..first + 5).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO verdictd_sessions (id, token, expires, challenge_expires, created) \
             VALUES ({}) ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token, \
             expires = EXCLUDED.expires, created = EXCLUDED.created",
            n.join(", ")
        )
    }

    /// The upsert's parameters: id, token, expires, challenge_expires, created.
    pub(crate) fn params(&self) -> (&[u8], &str, i64, i64, i64) {
        (
            &self.id,
            &self.token,
            self.expires as i64,
            self.challenge_expires as i64,
            self.created as i64,
        )
    }
}

/// A resource's row as read: its path, its value (sealed when its data key is there) and
/// its wrapped data key.
pub struct SealedResource {
    path: String,
    value: Zeroizing<Vec<u8>>,
    dek: Option<Vec<u8>>,
}

/// An attested session's row.
pub struct SessionRow {
    pub token: String,
    /// Unix ms.
    pub expires: u64,
}

/// What a request reads before it decides ([`Pg::snapshot`]).
pub struct Snapshot {
    /// The attested session asked for, if it is in the table.
    pub session: Option<SessionRow>,
    /// The policy's text and version, when its version moved since this replica loaded
    /// it (for [`Pg::loaded_policy`]).
    pub policy: Option<(String, i64)>,
    /// The reference values' version (0: never stored).
    pub reference_values: i64,
    /// The resource's row as stored, when one was asked for.
    pub resource: Option<SealedResource>,
}

impl Pg {
    /// A resource's bytes.
    pub async fn resource(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KbsError> {
        match self.sealed_resource(path).await? {
            Some(row) => self.open_resource(row).await.map(Some),
            None => Ok(None),
        }
    }

    /// A resource's row as stored (sealed when a KEK is configured), for
    /// [`Pg::open_resource`]. (A GET reads it within [`Pg::snapshot`].)
    async fn sealed_resource(&self, path: &str) -> Result<Option<SealedResource>, KbsError> {
        let rows = self
            .query(
                "reading a resource",
                "SELECT value, dek FROM verdictd_resources WHERE path = $1",
                &[&path],
            )
            .await?;
        Ok(rows.first().map(|row| SealedResource {
            path: path.to_string(),
            value: Zeroizing::new(row.get::<_, Vec<u8>>(0)),
            dek: row.get(1),
        }))
    }

    /// The bytes of a resource row: unsealed under the KEK that sealed it.
    pub async fn open_resource(&self, row: SealedResource) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        let SealedResource { path, value, dek } = row;
        let sealed_under = dek.as_deref().and_then(crate::seal::kek_id);
        let kek = match (&self.kek, sealed_under) {
            (Some(keys), Some(id)) => Some(
                keys.get(&id, &path)
                    .await
                    .map_err(|e| KbsError::PluginInternal(format!("resource {e}")))?,
            ),
            (Some(keys), None) => Some(keys.ring().current().clone()),
            (None, _) => None,
        };
        crate::seal::open(kek.as_deref(), &path, &value, dek.as_deref())
            .map_err(|e| KbsError::PluginInternal(format!("resource {e}")))
    }

    /// Stores a resource, sealed when a KEK is configured: under the KEK the database
    /// names, its row held in share mode until the value is stored (so a rotation
    /// waits for this store, and every store after it uses the new KEK).
    pub async fn put_resource(&self, path: &str, value: &[u8]) -> Result<(), KbsError> {
        const UPSERT: &str =
            "INSERT INTO verdictd_resources (path, value, dek) VALUES ($1, $2, $3) \
             ON CONFLICT (path) DO UPDATE SET value = EXCLUDED.value, dek = EXCLUDED.dek, \
             updated = now()";
        let what = "storing a resource";
        let Some(keys) = &self.kek else {
            return self
                .query(what, UPSERT, &[&path, &value, &None::<Vec<u8>>])
                .await
                .map(drop);
        };
        let mut client = self.client(what).await?;
        let tx = client.transaction().await.map_err(|e| self.fail(what, e))?;
        let named = tx
            .query_opt("SELECT id FROM verdictd_kek FOR SHARE", &[])
            .await
            .map_err(|e| self.fail(what, e))?
            .map(|r| r.get::<_, Vec<u8>>(0));
        let kek = match named {
            Some(id) => {
                let id = <[u8; 8]>::try_from(id.as_slice()).map_err(|_| {
                    KbsError::PluginInternal(format!(
                        "storing {path}: table verdictd_kek holds no KEK id"
                    ))
                })?;
                keys.get(&id, path).await.map_err(|_| {
                    KbsError::PluginInternal(format!(
                        "storing {path}: the database seals under key-encryption key {} (set by `verdictd rotate-kek`), which this replica's [storage.kek] does not hold",
                        hex::encode(id)
                    ))
                })?
            }
            None => keys.ring().current().clone(),
        };
        let (value, dek) = kek.seal(path, value);
        let value = Zeroizing::new(value);
        tx.execute(UPSERT, &[&path, &value.as_slice(), &Some(dek)])
            .await
            .map_err(|e| self.fail(what, e))?;
        tx.commit().await.map_err(|e| self.fail(what, e))?;
        self.ok(());
        Ok(())
    }

    /// Whether it existed.
    pub async fn delete_resource(&self, path: &str) -> Result<bool, KbsError> {
        let rows = self
            .query(
                "deleting a resource",
                "DELETE FROM verdictd_resources WHERE path = $1 RETURNING 1",
                &[&path],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Everything a request reads before it decides, in **one statement** (one round
    /// trip on one pooled connection, where three concurrent reads took three): the
    /// attested session `session`, policy `policy`'s version (and its text when that
    /// moved since this replica loaded it), the reference values' version, and the
    /// sealed row of `resource`. Each part is a left join on its key, so an absent
    /// session, policy or resource is `None`, never a missing row.
    pub async fn snapshot(
        &self,
        session: Option<&[u8]>,
        policy: &str,
        resource: Option<&str>,
    ) -> Result<Snapshot, KbsError> {
        const SQL: &str = "SELECT s.token, s.expires, p.version, \
             CASE WHEN p.version <> $3 THEN p.body END, v.version, r.value, r.dek \
             FROM (SELECT 1) AS one \
             LEFT JOIN verdictd_sessions s ON s.id = $1 \
             LEFT JOIN verdictd_policies p ON p.id = $2 \
             LEFT JOIN verdictd_versions v ON v.name = $4 \
             LEFT JOIN verdictd_resources r ON r.path = $5";
        let seen = self.seen_policy(policy).load(Ordering::Acquire);
        let rows = self
            .query(
                "reading a request's session, policy and resource",
                SQL,
                &[&session, &policy, &seen, &REFERENCE_VALUES, &resource],
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            KbsError::Unavailable("storage unavailable: the snapshot returned no row".into())
        })?;
        let session = row.get::<_, Option<String>>(0).map(|token| SessionRow {
            token,
            expires: row.get::<_, Option<i64>>(1).unwrap_or(0) as u64,
        });
        let policy_version: Option<i64> = row.get(2);
        let policy = match (row.get::<_, Option<String>>(3), policy_version) {
            (Some(body), Some(version)) => Some((body, version)),
            _ => None,
        };
        let resource = match (resource, row.get::<_, Option<Vec<u8>>>(5)) {
            (Some(path), Some(value)) => Some(SealedResource {
                path: path.to_string(),
                value: Zeroizing::new(value),
                dek: row.get(6),
            }),
            _ => None,
        };
        Ok(Snapshot {
            session,
            policy,
            reference_values: row.get::<_, Option<i64>>(4).unwrap_or(0),
            resource,
        })
    }

    /// Whether the reference values at `version` are the ones in force here.
    pub fn reference_values_seen(&self, version: i64) -> bool {
        self.seen.reference_values.load(Ordering::Acquire) == version
    }

    /// Deletes sessions whose session and challenge both expired, then the oldest
    /// beyond `max` (the table's bound, enforced here, every sweep); returns how many
    /// attested sessions are live.
    pub async fn sweep_sessions(&self, now: u64, max: usize) -> Result<usize, KbsError> {
        let now = now as i64;
        self.query(
            "sweeping sessions",
            "DELETE FROM verdictd_sessions WHERE expires <= $1 AND challenge_expires <= $1",
            &[&now],
        )
        .await?;
        self.query(
            "sweeping sessions",
            "DELETE FROM verdictd_sessions WHERE id IN (SELECT id FROM verdictd_sessions \
             ORDER BY created DESC OFFSET $1)",
            &[&(max as i64)],
        )
        .await?;
        let rows = self
            .query(
                "counting sessions",
                "SELECT count(*) FROM verdictd_sessions WHERE expires > $1",
                &[&now],
            )
            .await?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as usize)
    }

    /// Stores a policy (already checked to compile) and bumps its version.
    pub async fn put_policy(&self, id: &str, body: &str) -> Result<(), KbsError> {
        self.query(
            "storing a policy",
            "INSERT INTO verdictd_policies (id, body, version) VALUES ($1, $2, 1) \
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, \
             version = verdictd_policies.version + 1",
            &[&id, &body],
        )
        .await
        .map(drop)
    }

    /// The policy `id`'s text if its version moved since this replica loaded it, with
    /// the new version (to pass to [`Pg::loaded_policy`] once it is in force).
    pub async fn policy_if_changed(&self, id: &str) -> Result<Option<(String, i64)>, KbsError> {
        let seen = self.seen_policy(id).load(Ordering::Acquire);
        let rows = self
            .query(
                "reading a policy",
                "SELECT version, CASE WHEN version <> $2 THEN body END \
                 FROM verdictd_policies WHERE id = $1",
                &[&id, &seen],
            )
            .await?;
        Ok(rows.first().and_then(|r| {
            let version: i64 = r.get(0);
            r.get::<_, Option<String>>(1).map(|b| (b, version))
        }))
    }

    fn seen_policy(&self, id: &str) -> &AtomicI64 {
        if id == RESOURCE_POLICY {
            &self.seen.resource_policy
        } else {
            &self.seen.attestation_policy
        }
    }

    /// Records that policy `id` at `version` is in force here; false if a newer one
    /// already is (the caller then keeps that one).
    pub fn loaded_policy(&self, id: &str, version: i64) -> bool {
        self.seen_policy(id).fetch_max(version, Ordering::AcqRel) < version
    }

    /// Registers reference values (name → JSON value; `expires`: Unix s, for a signed
    /// bundle's) in one transaction that bumps their version.
    pub async fn put_reference_values(
        &self,
        values: &BTreeMap<String, Value>,
        expires: Option<i64>,
    ) -> Result<(), KbsError> {
        let what = "storing reference values";
        let mut client = self.client(what).await?;
        let result = async {
            let tx = client.transaction().await?;
            for (name, value) in values {
                tx.execute(
                    "INSERT INTO verdictd_reference_values (name, value, expires) \
                     VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE \
                     SET value = EXCLUDED.value, expires = EXCLUDED.expires",
                    &[name, &value.to_string(), &expires],
                )
                .await?;
            }
            tx.execute(
                "UPDATE verdictd_versions SET version = version + 1 WHERE name = $1",
                &[&REFERENCE_VALUES],
            )
            .await?;
            tx.commit().await
        }
        .await;
        result.map_err(|e| self.fail(what, e)).map(|v| self.ok(v))
    }

    /// Removes a reference value; whether it existed.
    pub async fn delete_reference_value(&self, name: &str) -> Result<bool, KbsError> {
        let what = "deleting a reference value";
        let mut client = self.client(what).await?;
        let result = async {
            let tx = client.transaction().await?;
            let n = tx
                .execute(
                    "DELETE FROM verdictd_reference_values WHERE name = $1",
                    &[&name],
                )
                .await?;
            tx.execute(
                "UPDATE verdictd_versions SET version = version + 1 WHERE name = $1",
                &[&REFERENCE_VALUES],
            )
            .await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>(n > 0)
        }
        .await;
        result.map_err(|e| self.fail(what, e)).map(|v| self.ok(v))
    }

    /// All reference values (name → (value, expiry)) if their version moved since this
    /// replica loaded them, with the new version (for [`Pg::loaded_reference_values`]).
    #[allow(clippy::type_complexity)]
    pub async fn reference_values_if_changed(
        &self,
    ) -> Result<Option<(BTreeMap<String, (Value, Option<i64>)>, i64)>, KbsError> {
        let seen = self.seen.reference_values.load(Ordering::Acquire);
        let what = "reading reference values";
        let rows = self
            .query(
                what,
                "SELECT version FROM verdictd_versions WHERE name = $1",
                &[&REFERENCE_VALUES],
            )
            .await?;
        let version: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        if version == seen {
            return Ok(None);
        }
        // Read in one snapshot with the version, so values and version agree.
        let mut client = self.client(what).await?;
        let result = async {
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let version: i64 = tx
                .query_one(
                    "SELECT version FROM verdictd_versions WHERE name = $1",
                    &[&REFERENCE_VALUES],
                )
                .await?
                .get(0);
            let rows = tx
                .query(
                    "SELECT name, value, expires FROM verdictd_reference_values",
                    &[],
                )
                .await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>((version, rows))
        }
        .await;
        let (version, rows) = result.map_err(|e| self.fail(what, e))?;
        let mut values = BTreeMap::new();
        for r in rows {
            let name: String = r.get(0);
            let text: String = r.get(1);
            let value = serde_json::from_str(&text).map_err(|e| {
                KbsError::Rvps(format!("reference value {name} in the database: {e}"))
            })?;
            values.insert(name, (value, r.get::<_, Option<i64>>(2)));
        }
        Ok(Some(self.ok((values, version))))
    }

    /// As [`Pg::loaded_policy`], for the reference values.
    pub fn loaded_reference_values(&self, version: i64) -> bool {
        self.seen
            .reference_values
            .fetch_max(version, Ordering::AcqRel)
            < version
    }
}

/// Sealed rows (resources and settings) by the id of the KEK their data key is wrapped
/// under (`None`: stored unsealed): (id, rows).
pub async fn census<C: tokio_postgres::GenericClient>(
    client: &C,
) -> Result<Vec<(Option<[u8; 8]>, i64)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT substring(dek from 1 for 8), count(*) FROM (SELECT dek FROM \
             verdictd_resources UNION ALL SELECT dek FROM verdictd_settings) d GROUP BY 1",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Option<Vec<u8>> = r.get(0);
            // A malformed id (not 8 bytes) reads as all zero: no KEK has it.
            let id = id.map(|id| <[u8; 8]>::try_from(id.as_slice()).unwrap_or([0; 8]));
            (id, r.get::<_, i64>(1))
        })
        .collect())
}
