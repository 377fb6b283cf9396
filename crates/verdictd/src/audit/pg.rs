//! The audit log in PostgreSQL (migration 2 of [`crate::pg`]):
//!
//! | object | holds |
//! |---|---|
//! | `verdictd_audit` | one row per entry, `seq` the primary key; `actor` and `details` as JSON text, the hashes as hex |
//! | `verdictd_audit_head` | one row: the last entry's `seq` and `hash`, the entries appended since the last checkpoint was due (`pending`) and when that was (`checkpoint_time`, Unix ms) |
//! | `verdictd_audit_append(…)` | the append: PL/pgSQL |
//!
//! **One chain, whatever the replicas**: an append is one call of
//! `verdictd_audit_append`, in a transaction of its own: it locks the head row (`SELECT …
//! FOR UPDATE`; a concurrent append waits, then reads the moved head), computes the
//! entry's hash in the database, SHA-256(prev ‖ prefix ‖ seq ‖ suffix) from the two
//! canonical parts verdictd sends ([`super::canonical_parts`]), inserts the row and moves
//! the head. One round trip, and the lock is held for no network round trip. When a
//! checkpoint is due the call says so and has claimed it (reset `pending`); verdictd
//! then signs the entry it appended and appends the checkpoint the same way. A time-due
//! checkpoint is claimed by an `UPDATE … RETURNING` of the head. The head also lets
//! `verify` see entries removed from the end of the log.
//!
//! An admission's entry and the attested session it admits are one statement (the
//! session's upsert in a data-modifying `WITH`): they commit together, in one round trip.

use std::sync::Arc;

use deadpool_postgres::Object;

use super::{canonical_parts, parse_hash, rfc3339_ms, Chain, Draft, Entry, Head};
use crate::pg::{Pg, SessionWrite};
use crate::KbsError;

const WHAT: &str = "appending to the audit log";

const HEAD: &str = "SELECT seq, hash, pending, checkpoint_time FROM verdictd_audit_head";
const APPEND: &str = "SELECT o_seq, o_prev, o_hash, o_due \
     FROM verdictd_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const CLAIM: &str = "UPDATE verdictd_audit_head SET pending = 0, checkpoint_time = $1 \
     WHERE pending > 0 AND $1 - checkpoint_time >= $2 RETURNING seq, hash";

/// Migration 2: the tables and the append function.
pub const MIGRATION: &str = r#"
CREATE TABLE verdictd_audit (
    seq       bigint PRIMARY KEY,
    time      text NOT NULL,
    replica   text NOT NULL,
    kind      text NOT NULL,
    actor     text NOT NULL,
    details   text NOT NULL,
    prev_hash text NOT NULL,
    hash      text NOT NULL
);
CREATE TABLE verdictd_audit_head (
    one             boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq             bigint NOT NULL,
    hash            text NOT NULL,
    pending         bigint NOT NULL,
    checkpoint_time bigint NOT NULL
);
INSERT INTO verdictd_audit_head VALUES
    (true, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, 0);
CREATE FUNCTION verdictd_audit_append(
    p_time text, p_replica text, p_kind text, p_actor text, p_details text,
    p_prefix bytea, p_suffix bytea, p_every bigint, p_every_ms bigint, p_now bigint)
RETURNS TABLE (o_seq bigint, o_prev text, o_hash text, o_due boolean)
LANGUAGE plpgsql AS $$
DECLARE
    h verdictd_audit_head%ROWTYPE;
BEGIN
    SELECT * INTO STRICT h FROM verdictd_audit_head FOR UPDATE;
    o_seq := h.seq + 1;
    o_prev := h.hash;
    o_hash := encode(sha256(decode(h.hash, 'hex') || p_prefix
                            || convert_to(o_seq::text, 'UTF8') || p_suffix), 'hex');
    INSERT INTO verdictd_audit (seq, time, replica, kind, actor, details, prev_hash, hash)
    VALUES (o_seq, p_time, p_replica, p_kind, p_actor, p_details, o_prev, o_hash);
    IF p_kind <> 'checkpoint' THEN
        h.pending := h.pending + 1;
    END IF;
    o_due := p_every > 0 AND h.pending > 0 AND (h.pending >= p_every
             OR (p_every_ms > 0 AND p_now - h.checkpoint_time >= p_every_ms));
    IF o_due THEN
        h.pending := 0;
        h.checkpoint_time := p_now;
    END IF;
    UPDATE verdictd_audit_head SET seq = o_seq, hash = o_hash, pending = h.pending,
        checkpoint_time = h.checkpoint_time;
    RETURN NEXT;
END
$$;
"#;

fn head_of(row: &tokio_postgres::Row) -> Result<Head, KbsError> {
    let hash: String = row.get(1);
    Ok(Head {
        seq: row.get::<_, i64>(0) as u64,
        hash: parse_hash(&hash).ok_or_else(|| corrupt_head(&hash))?,
        pending: row.get::<_, i64>(2) as u64,
        checkpoint_ms: row.get::<_, i64>(3) as u64,
    })
}

fn corrupt_head(hash: &str) -> KbsError {
    KbsError::Unavailable(format!(
        "audit log: its head's hash is not 64 hex digits ({hash:?}): run `verdictd audit verify`"
    ))
}

/// A signed-to-be entry: its seq and hash.
type Due = Option<(u64, [u8; 32])>;

/// Appends `draft` (or, without one, a checkpoint if one is due by time), then the
/// checkpoint its append claimed. A failed checkpoint leaves its entries to the next one
/// (the failure is logged as the database's); it does not fail the entry's request.
pub(super) async fn append(
    pg: Arc<Pg>,
    chain: Arc<Chain>,
    draft: Option<Draft>,
    now_ms: u64,
    session: Option<SessionWrite>,
) -> Result<Vec<Entry>, KbsError> {
    let client = pg.client(WHAT).await?;
    let mut out = Vec::new();
    let mut due = match &draft {
        Some(d) => {
            let (e, due) = insert(&pg, &client, &chain, d, now_ms, session.as_ref()).await?;
            out.push(e);
            due
        }
        None => claim(&pg, &client, &chain, now_ms).await?,
    };
    // A checkpoint's own append claims again only if others appended enough meanwhile.
    for _ in 0..2 {
        let Some((seq, hash)) = due else { break };
        match insert(
            &pg,
            &client,
            &chain,
            &chain.checkpoint(seq, &hash),
            now_ms,
            None,
        )
        .await
        {
            Ok((e, next)) => {
                out.push(e);
                due = next;
            }
            Err(_) => break,
        }
    }
    Ok(out)
}

/// One call of `verdictd_audit_append`: the entry, and whether it claimed a checkpoint.
async fn insert(
    pg: &Pg,
    client: &Object,
    chain: &Chain,
    d: &Draft,
    now_ms: u64,
    session: Option<&SessionWrite>,
) -> Result<(Entry, Due), KbsError> {
    let fail = |e| pg.fail(WHAT, e);
    let time = rfc3339_ms(now_ms);
    let kind = d.kind.as_str();
    let (prefix, suffix) = canonical_parts(&time, &chain.replica, kind, &d.actor, &d.details);
    let (actor, details) = (d.actor.to_string(), d.details.to_string());
    let every = if chain.key.is_some() {
        chain.every_entries as i64
    } else {
        0
    };
    let every_ms = chain.every_ms as i64;
    let now = now_ms as i64;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &time,
        &chain.replica,
        &kind,
        &actor,
        &details,
        &prefix,
        &suffix,
        &every,
        &every_ms,
        &now,
    ];
    let session = session.map(SessionWrite::params);
    let sql = match &session {
        None => APPEND.to_string(),
        Some((id, token, expires, challenge_expires, created)) => {
            params.extend([
                id as &(dyn tokio_postgres::types::ToSql + Sync),
                token,
                expires,
                challenge_expires,
                created,
            ]);
            // A data-modifying WITH runs once, to completion, in the statement's
            // transaction: the session and its entry commit together.
            format!("WITH session AS ({}) {APPEND}", SessionWrite::upsert(11))
        }
    };
    let statement = client.prepare_cached(&sql).await.map_err(fail)?;
    let row = client.query_one(&statement, &params).await.map_err(fail)?;
    let seq = row.get::<_, i64>(0) as u64;
    let hash: String = row.get(2);
    let due = if row.get::<_, bool>(3) {
        Some((seq, parse_hash(&hash).ok_or_else(|| corrupt_head(&hash))?))
    } else {
        None
    };
    let entry = Entry {
        seq,
        time,
        replica: chain.replica.clone(),
        kind: kind.to_string(),
        actor: d.actor.clone(),
        details: d.details.clone(),
        prev_hash: row.get(1),
        hash,
    };
    Ok((pg.ok(entry), due))
}

/// Claims a checkpoint due by time: the head it is to sign.
async fn claim(pg: &Pg, client: &Object, chain: &Chain, now_ms: u64) -> Result<Due, KbsError> {
    if chain.key.is_none() || chain.every_ms == 0 {
        return Ok(None);
    }
    let rows = client
        .query(CLAIM, &[&(now_ms as i64), &(chain.every_ms as i64)])
        .await
        .map_err(|e| pg.fail(WHAT, e))?;
    match rows.first() {
        None => Ok(None),
        Some(r) => {
            let hash: String = r.get(1);
            let bytes = parse_hash(&hash).ok_or_else(|| corrupt_head(&hash))?;
            Ok(Some((r.get::<_, i64>(0) as u64, bytes)))
        }
    }
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
