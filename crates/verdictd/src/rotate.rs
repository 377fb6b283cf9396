//! `verdictd rotate-kek`: moves every sealed row of the configured database (resources
//! and verdictd's own keys) to the current key-encryption key of `[storage.kek]`
//! ([`crate::kek`]), without a running server and while replicas serve.
//!
//! 1. Opens the database as a replica does (migrations, then the start checks: every
//!    KEK a row names must be among the current and old keys, else one line and
//!    nothing changed).
//! 2. Records the current KEK as the one the database seals under (table
//!    `verdictd_kek`; the row lock waits for stores in flight, and every store after it
//!    seals under the new KEK).
//! 3. In batches of `--batch` rows, each one transaction holding the rows' locks:
//!    re-wraps each data key from the KEK its row names to the current one (the sealed
//!    value is not touched), and seals a value stored unsealed. Each row names its KEK,
//!    so readers open it before and after; a run stopped anywhere is finished by running
//!    it again.
//!
//! `--check` changes nothing: it prints how many rows each KEK still holds and exits 0
//! when every row is under the current one (the old keys can be removed from the
//! configuration), else 3.

use std::io::Write;

use anyhow::Context;

use crate::config::{Config, StorageKind};
use crate::pg::{census, Pg};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Only report which keys the rows are under; exit 3 if any row still needs an old
    /// key (or is unsealed)
    #[arg(long)]
    pub check: bool,
    /// Rows re-wrapped per transaction
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
}

/// A table of sealed rows: its name, key column, and the name a row's value is sealed
/// under (its associated data, see [`crate::seal`]).
struct Table {
    name: &'static str,
    key: &'static str,
    aad: fn(&str) -> String,
}

const TABLES: [Table; 2] = [
    Table {
        name: "verdictd_resources",
        key: "path",
        aad: |path| path.to_string(),
    },
    Table {
        name: "verdictd_settings",
        key: "name",
        aad: |name| format!("verdictd-setting/{name}"),
    },
];

/// Runs `rotate-kek`: the exit status (0, or 3 when `--check` found rows to move).
pub fn run(args: &Args, config: &Config) -> anyhow::Result<i32> {
    match config.storage.kind {
        StorageKind::Postgres => {}
        StorageKind::Localfs => anyhow::bail!(
            "[storage] type = \"localfs\" keeps resources in 0600 files, not sealed: there is no key-encryption key to rotate"
        ),
        StorageKind::Memory => anyhow::bail!(
            "[storage] type = \"memory\": nothing is kept at rest, so there is no key-encryption key to rotate"
        ),
    }
    let pg = Pg::new(&config.storage)?;
    if pg.keys().is_none() {
        anyhow::bail!(
            "no [storage.kek] current key (or kek_file) configured: nothing to rotate to"
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?
        .block_on(async {
            pg.open_once().await?;
            if args.check {
                check(&pg).await
            } else {
                rotate(&pg, args.batch).await.map(|()| 0)
            }
        })
}

fn db<E: std::fmt::Display>(pg: &Pg) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("database {}: {e}", pg.target())
}

async fn check(pg: &Pg) -> anyhow::Result<i32> {
    let ring = pg.keys().expect("checked").ring();
    let current = ring.current().id_bytes();
    let client = pg.client("reading sealed rows").await.map_err(db(pg))?;
    let mut moving = 0;
    let mut out = std::io::stdout().lock();
    for (id, rows) in census(&**client).await.map_err(db(pg))? {
        match id {
            Some(id) if id == current => writeln!(
                out,
                "{rows} rows under key-encryption key {} (current)",
                hex::encode(id)
            )?,
            Some(id) => {
                moving += rows;
                writeln!(
                    out,
                    "{rows} rows under key-encryption key {} (old: still needed)",
                    hex::encode(id)
                )?
            }
            None => {
                moving += rows;
                writeln!(out, "{rows} rows unsealed")?
            }
        }
    }
    if moving > 0 {
        writeln!(out, "{moving} rows to move: run `verdictd rotate-kek`")?;
        return Ok(3);
    }
    writeln!(
        out,
        "every row is under the current key-encryption key {}: the old keys can be removed",
        hex::encode(current)
    )?;
    Ok(0)
}

async fn rotate(pg: &Pg, batch: u32) -> anyhow::Result<()> {
    let ring = pg.keys().expect("checked").ring();
    let target = ring.current().clone();
    let id = target.id_bytes();
    let mut client = pg.client("rotating").await.map_err(db(pg))?;
    {
        let tx = client.transaction().await.map_err(db(pg))?;
        let was: Option<Vec<u8>> = tx
            .query_opt("SELECT id FROM verdictd_kek FOR UPDATE", &[])
            .await
            .map_err(db(pg))?
            .map(|r| r.get(0));
        tx.execute(
            "INSERT INTO verdictd_kek (id) VALUES ($1) ON CONFLICT (one) \
             DO UPDATE SET id = EXCLUDED.id, changed = now()",
            &[&id.as_slice()],
        )
        .await
        .map_err(db(pg))?;
        tx.commit().await.map_err(db(pg))?;
        if was.as_deref() != Some(id.as_slice()) {
            tracing::info!(
                "the database now seals under key-encryption key {} (was {})",
                target.id(),
                was.map(hex::encode).unwrap_or_default()
            );
        }
    }
    let (mut rewrapped, mut sealed, mut batches) = (0u64, 0u64, 0u64);
    for table in &TABLES {
        let select = format!(
            "SELECT {key}, value, dek FROM {name} WHERE dek IS NULL \
             OR substring(dek from 1 for 8) <> $1 ORDER BY {key} LIMIT $2 FOR UPDATE",
            key = table.key,
            name = table.name
        );
        let update = format!(
            "UPDATE {name} SET value = $2, dek = $3 WHERE {key} = $1",
            key = table.key,
            name = table.name
        );
        loop {
            let tx = client.transaction().await.map_err(db(pg))?;
            let rows = tx
                .query(&select, &[&id.as_slice(), &i64::from(batch)])
                .await
                .map_err(db(pg))?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let key: String = row.get(0);
                let value = zeroize::Zeroizing::new(row.get::<_, Vec<u8>>(1));
                let dek: Option<Vec<u8>> = row.get(2);
                let name = (table.aad)(&key);
                let (value, dek) = match dek {
                    Some(dek) => {
                        let from = crate::seal::kek_id(&dek)
                            .and_then(|id| ring.get(&id))
                            .ok_or_else(|| {
                                anyhow::anyhow!(
                                    "{} {key}: its data key names no key-encryption key of [storage.kek] (holds {}); earlier batches are committed and readable",
                                    table.name,
                                    ring.ids()
                                )
                            })?;
                        rewrapped += 1;
                        let dek = target.rewrap(from, &name, &dek).with_context(|| {
                            format!(
                                "{} {key}; earlier batches are committed and readable",
                                table.name
                            )
                        })?;
                        (value, dek)
                    }
                    None => {
                        sealed += 1;
                        let (v, d) = target.seal(&name, &value);
                        (zeroize::Zeroizing::new(v), d)
                    }
                };
                tx.execute(&update, &[&key, &value.as_slice(), &dek])
                    .await
                    .map_err(db(pg))?;
            }
            tx.commit().await.map_err(db(pg))?;
            batches += 1;
            tracing::debug!(rows = rows.len(), table = table.name, "batch re-wrapped");
        }
    }
    writeln!(
        std::io::stdout(),
        "{rewrapped} data keys re-wrapped and {sealed} unsealed values sealed, in {batches} batches: every row is under key-encryption key {}",
        target.id()
    )?;
    Ok(())
}
