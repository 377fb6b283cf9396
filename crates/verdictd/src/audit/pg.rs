//! The audit log in PostgreSQL (migration 2 of [`crate::pg`]):
//!
//! | table | holds |
//! |---|---|
//! | `verdictd_audit` | one row per entry, `seq` the primary key; `actor` and `details` as JSON text, the hashes as hex |
//! | `verdictd_audit_head` | one row: the last entry's `seq` and `hash`, the last checkpoint's `seq` and time (Unix ms) |
//!
//! **One chain, whatever the replicas**: an append is one transaction that locks the
//! head row (`SELECT … FOR UPDATE`), inserts the entries after it and moves it; a
//! concurrent append on another replica waits for the lock and then reads the moved
//! head (READ COMMITTED re-reads a locked row once it is released). Two round trips:
//! `BEGIN` with the locking `SELECT`, then the insert with `COMMIT`, pipelined. The
//! head also lets `verify` see entries removed from the end of the log.

use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use super::{Chain, Draft, Entry, Head};
use crate::pg::Pg;
use crate::KbsError;

const WHAT: &str = "appending to the audit log";

const HEAD: &str = "SELECT seq, hash, checkpoint_seq, checkpoint_time FROM verdictd_audit_head";
const LOCK_HEAD: &str =
    "SELECT seq, hash, checkpoint_seq, checkpoint_time FROM verdictd_audit_head FOR UPDATE";
const INSERT: &str = "WITH new AS (\
     INSERT INTO verdictd_audit (seq, time, replica, kind, actor, details, prev_hash, hash) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[])) \
     UPDATE verdictd_audit_head SET seq = $9, hash = $10, checkpoint_seq = $11, \
     checkpoint_time = $12";

fn head_of(row: &tokio_postgres::Row) -> Result<Head, KbsError> {
    let hash: String = row.get(1);
    Ok(Head {
        seq: row.get::<_, i64>(0) as u64,
        hash: super::parse_hash(&hash).ok_or_else(|| {
            KbsError::Unavailable(format!(
                "audit log: verdictd_audit_head.hash is not 64 hex digits ({hash:?}): run `verdictd audit verify`"
            ))
        })?,
        checkpoint_seq: row.get::<_, i64>(2) as u64,
        checkpoint_ms: row.get::<_, i64>(3) as u64,
    })
}

/// Appends `draft` (if any) and a due checkpoint in one transaction.
pub(super) async fn append(
    pg: Arc<Pg>,
    chain: Arc<Chain>,
    draft: Option<Draft>,
    now_ms: u64,
) -> Result<Vec<Entry>, KbsError> {
    let client = pg.client(WHAT).await?;
    if draft.is_none() {
        // A timer's call: look before taking the lock every replica's timer wants.
        let row = client
            .query_one(HEAD, &[])
            .await
            .map_err(|e| pg.fail(WHAT, e))?;
        if !chain.checkpoint_due(&head_of(&row)?, now_ms) {
            return Ok(Vec::new());
        }
    }
    match locked_append(&pg, &client, &chain, draft.as_ref(), now_ms).await {
        Ok(entries) => Ok(pg.ok(entries)),
        Err(e) => {
            // Leave no transaction (nor its lock) on a pooled connection.
            if client.batch_execute("ROLLBACK").await.is_err() {
                drop(Object::take(client));
            }
            Err(e)
        }
    }
}

async fn locked_append(
    pg: &Pg,
    client: &Object,
    chain: &Chain,
    draft: Option<&Draft>,
    now_ms: u64,
) -> Result<Vec<Entry>, KbsError> {
    let fail = |e| pg.fail(WHAT, e);
    let (begin, lock, insert, commit) = tokio::join!(
        client.prepare_cached("BEGIN"),
        client.prepare_cached(LOCK_HEAD),
        client.prepare_cached(INSERT),
        client.prepare_cached("COMMIT"),
    );
    let (begin, lock, insert, commit) = (
        begin.map_err(fail)?,
        lock.map_err(fail)?,
        insert.map_err(fail)?,
        commit.map_err(fail)?,
    );
    // Pipelined: BEGIN and the locking read in one round trip.
    let (began, row) = tokio::join!(client.execute(&begin, &[]), client.query_one(&lock, &[]));
    began.map_err(fail)?;
    let mut head = head_of(&row.map_err(fail)?)?;
    let entries = chain.extend(&mut head, draft, now_ms);
    if entries.is_empty() {
        client.execute(&commit, &[]).await.map_err(fail)?;
        return Ok(entries);
    }
    let column = |f: fn(&Entry) -> String| entries.iter().map(f).collect::<Vec<String>>();
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq as i64).collect();
    let times = column(|e| e.time.clone());
    let replicas = column(|e| e.replica.clone());
    let kinds = column(|e| e.kind.clone());
    let actors = column(|e| e.actor.to_string());
    let details = column(|e| e.details.to_string());
    let prevs = column(|e| e.prev_hash.clone());
    let hashes = column(|e| e.hash.clone());
    let head_hash = hex::encode(head.hash);
    let params: [&(dyn ToSql + Sync); 12] = [
        &seqs,
        &times,
        &replicas,
        &kinds,
        &actors,
        &details,
        &prevs,
        &hashes,
        &(head.seq as i64),
        &head_hash,
        &(head.checkpoint_seq as i64),
        &(head.checkpoint_ms as i64),
    ];
    // Pipelined: the insert and COMMIT in one round trip (a failed insert makes the
    // COMMIT a rollback).
    let (inserted, committed) = tokio::join!(
        client.execute(&insert, &params),
        client.execute(&commit, &[])
    );
    inserted.map_err(fail)?;
    committed.map_err(fail)?;
    Ok(entries)
}

/// A row as read back: the entry, or (its seq and) why its JSON columns do not parse.
pub type Row = Result<Entry, String>;

/// Up to `limit` entries with `seq` > `after`, in seq order.
pub async fn page(pg: &Pg, after: u64, limit: i64) -> Result<Vec<(u64, Row)>, KbsError> {
    let what = "reading the audit log";
    let client = pg.client(what).await?;
    let rows = client
        .query(
            "SELECT seq, time, replica, kind, actor, details, prev_hash, hash \
             FROM verdictd_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&(after as i64), &limit],
        )
        .await
        .map_err(|e| pg.fail(what, e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let seq = r.get::<_, i64>(0) as u64;
            let json = |i: usize, name: &str| -> Result<serde_json::Value, String> {
                serde_json::from_str(r.get::<_, &str>(i))
                    .map_err(|e| format!("its {name} is not JSON: {e}"))
            };
            let entry = json(4, "actor").and_then(|actor| {
                Ok(Entry {
                    seq,
                    time: r.get(1),
                    replica: r.get(2),
                    kind: r.get(3),
                    actor,
                    details: json(5, "details")?,
                    prev_hash: r.get(6),
                    hash: r.get(7),
                })
            });
            (seq, entry)
        })
        .collect())
}

/// The head row (`None`: the table is empty, i.e. altered).
pub async fn head(pg: &Pg) -> Result<Option<Head>, KbsError> {
    let what = "reading the audit log";
    let client = pg.client(what).await?;
    let rows = client
        .query(HEAD, &[])
        .await
        .map_err(|e| pg.fail(what, e))?;
    rows.first().map(head_of).transpose()
}
