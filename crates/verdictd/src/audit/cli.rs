//! `verdictd audit verify` and `verdictd audit show`: read the log of the configured
//! storage (postgres: the database; localfs: the file beside the resource directory)
//! without a running server.
//!
//! - `verify [--public-key PEM]…`: replays the chain ([`super::verify`]); prints one
//!   line, `audit log intact: N entries, signed up to entry E by the checkpoint at
//!   entry S (TIME)`, or returns the first broken entry (the caller prints it and exits 3).
//!   Checkpoints must be signed by the `[audit] signing_key` (its public half; the file
//!   is never created here), one of `[audit] trusted_keys` or one of the `--public-key`
//!   files.
//! - `show [--since SEQ|RFC3339]`: the entries as JSON lines ([`super::Entry`]), all or
//!   those from entry SEQ on, or with a `time` at or after the given time.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::verify::{Broken, Replay, Summary};
use super::{key, store, Entry};
use crate::config::{Config, StorageKind};

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Replay the audit log and name the first entry altered, removed or reordered
    /// (exit 3); one line either way
    Verify {
        /// An Ed25519 public key (PEM) whose checkpoints are accepted, besides the
        /// [audit] signing_key's and trusted_keys; may be repeated
        #[arg(long)]
        public_key: Vec<PathBuf>,
    },
    /// Print the audit log as JSON lines
    Show {
        /// From this entry number on, or from this time on (RFC 3339)
        #[arg(long, value_parser = parse_since)]
        since: Option<Since>,
    },
}

/// Where `show` starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    Seq(u64),
    Time(chrono::DateTime<chrono::FixedOffset>),
}

fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(n) = s.parse() {
        return Ok(Since::Seq(n));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(Since::Time)
        .map_err(|e| format!("{s:?} is neither an entry number nor an RFC 3339 time ({e})"))
}

impl Since {
    fn admits(&self, e: &Entry) -> bool {
        match self {
            Since::Seq(n) => e.seq >= *n,
            Since::Time(t) => {
                chrono::DateTime::parse_from_rfc3339(&e.time).is_ok_and(|et| et >= *t)
            }
        }
    }
}

/// Where the log of a config is.
enum Source {
    File(PathBuf),
    Postgres(Arc<crate::pg::Pg>),
}

fn source(config: &Config) -> anyhow::Result<Source> {
    match (config.storage.kind, &config.storage.dir) {
        (StorageKind::Postgres, _) => Ok(Source::Postgres(Arc::new(crate::pg::Pg::new(
            &config.storage,
        )?))),
        (StorageKind::Localfs, Some(dir)) => Ok(Source::File(config.audit.log_file(dir))),
        (StorageKind::Localfs, None) => anyhow::bail!("[storage] type = \"localfs\" needs dir"),
        (StorageKind::Memory, _) => anyhow::bail!(
            "[storage] type = \"memory\": the audit log lives in the verdictd process only; configure localfs or postgres storage to keep it"
        ),
    }
}

/// Reads the log in pages (postgres) and hands each entry to `f` with its row's seq.
async fn each_row(
    pg: &crate::pg::Pg,
    from: u64,
    mut f: impl FnMut(Option<u64>, Result<Entry, String>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after = from.saturating_sub(1);
    loop {
        let rows = super::pg::page(pg, after, 1000)
            .await
            .context("reading the audit log (table verdictd_audit)")?;
        let Some((last, _)) = rows.last() else {
            return Ok(());
        };
        after = *last;
        for (seq, row) in rows {
            f(Some(seq), row)?;
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")
}

/// Runs an `audit` command; `Ok(Err(broken))` when `verify` found the log broken.
pub fn run(command: &AuditCommand, config: &Config) -> anyhow::Result<Result<(), Broken>> {
    match command {
        AuditCommand::Verify { public_key } => {
            let mut keys = Vec::new();
            if let Some(k) = config.audit.key_file(config).filter(|k| k.exists()) {
                keys.push(key::load_public(&k)?);
            }
            for k in config.audit.trusted_keys.iter().chain(public_key) {
                keys.push(key::load_public(k)?);
            }
            match verify(config, keys)? {
                Ok(summary) => {
                    writeln!(std::io::stdout(), "{summary}")?;
                    Ok(Ok(()))
                }
                Err(b) => Ok(Err(b)),
            }
        }
        AuditCommand::Show { since } => {
            show(config, since.as_ref())?;
            Ok(Ok(()))
        }
    }
}

fn verify(
    config: &Config,
    keys: Vec<ed25519_dalek::VerifyingKey>,
) -> anyhow::Result<Result<Summary, Broken>> {
    let mut replay = Replay::new(keys);
    match source(config)? {
        Source::File(path) => {
            for e in store::read_file(&path)? {
                replay.push(None, e);
            }
            Ok(replay.finish(None))
        }
        Source::Postgres(pg) => runtime()?.block_on(async {
            each_row(&pg, 1, |seq, e| {
                replay.push(seq, e);
                Ok(())
            })
            .await?;
            let head = super::pg::head(&pg)
                .await
                .context("reading the audit log's head (table verdictd_audit_head)")?
                .unwrap_or(super::Head::EMPTY);
            Ok(replay.finish(Some(head)))
        }),
    }
}

fn show(config: &Config, since: Option<&Since>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut print = |seq: Option<u64>, e: Result<Entry, String>| -> anyhow::Result<()> {
        match e {
            Ok(e) if since.is_none_or(|s| s.admits(&e)) => {
                serde_json::to_writer(&mut out, &e)?;
                out.write_all(b"\n")?;
            }
            Ok(_) => {}
            Err(why) => {
                let at = seq.map(|s| format!("entry {s}")).unwrap_or("a line".into());
                tracing::warn!("{at}: {why} (see `verdictd audit verify`)");
            }
        }
        Ok(())
    };
    match source(config)? {
        Source::File(path) => {
            for e in store::read_file(&path)? {
                print(None, e)?;
            }
        }
        Source::Postgres(pg) => {
            let from = match since {
                Some(Since::Seq(n)) => *n,
                _ => 1,
            };
            runtime()?.block_on(each_row(&pg, from, &mut print))?;
        }
    }
    out.flush()?;
    Ok(())
}
