//! Where the audit log is kept: in memory (development), in a JSON-lines file
//! (`localfs` storage), or in PostgreSQL ([`super::pg`]).
//!
//! **The file**: one [`Entry`] per line, as `verdictd audit show` prints it, opened
//! with `O_APPEND` (mode 0600 when created); each append writes its lines in one call
//! and `fdatasync`s before the request goes on. The file is `flock`ed by the verdictd
//! that appends to it, so a second one fails at start instead of forking the chain. A
//! line cut short by a crash (never acknowledged: its request failed) is cut off at
//! the next start, with a warning.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};

use super::{Chain, Draft, Entry, Head};
use crate::KbsError;

/// Entries the memory backend keeps (the oldest are dropped beyond).
pub const MEMORY_KEPT: usize = 1_000;

/// The tail of the file read at start to find the head and the last checkpoint.
const TAIL_BYTES: u64 = 1 << 20;

pub(super) enum Store {
    Memory(Mutex<MemoryLog>),
    File(Arc<Mutex<FileLog>>),
    Postgres(Arc<crate::pg::Pg>),
}

pub(super) struct MemoryLog {
    head: Head,
    entries: VecDeque<Entry>,
}

pub(super) struct FileLog {
    file: Flock<File>,
    path: PathBuf,
    /// Bytes of complete lines: where a failed append is cut back to.
    len: u64,
    head: Head,
}

impl Store {
    pub fn memory() -> Store {
        Store::Memory(Mutex::new(MemoryLog {
            head: Head::EMPTY,
            entries: VecDeque::new(),
        }))
    }

    pub fn file(path: &Path) -> anyhow::Result<Store> {
        Ok(Store::File(Arc::new(Mutex::new(FileLog::open(path)?))))
    }

    /// Appends `draft` and a due checkpoint; the entries written.
    pub async fn append(
        &self,
        chain: Arc<Chain>,
        draft: Option<Draft>,
        now_ms: u64,
        session: Option<crate::pg::SessionWrite>,
    ) -> Result<Vec<Entry>, KbsError> {
        if session.is_some() && !matches!(self, Store::Postgres(_)) {
            return Err(KbsError::Unavailable(
                "audit log: a session is stored with its entry only in postgres".into(),
            ));
        }
        match self {
            Store::Memory(m) => {
                let mut log = m.lock().expect("audit log");
                let mut head = log.head;
                let entries = chain.extend(&mut head, draft.as_ref(), now_ms);
                log.head = head;
                log.entries.extend(entries.iter().cloned());
                while log.entries.len() > MEMORY_KEPT {
                    log.entries.pop_front();
                }
                Ok(entries)
            }
            Store::File(f) => {
                let f = f.clone();
                tokio::task::spawn_blocking(move || {
                    f.lock()
                        .expect("audit log")
                        .append(&chain, draft.as_ref(), now_ms)
                })
                .await
                .map_err(|e| KbsError::Unavailable(format!("audit log: {e}")))?
            }
            // Run to its end even when the request is dropped (the peer left): a
            // transaction is never left open on a pooled connection.
            Store::Postgres(pg) => {
                tokio::spawn(super::pg::append(pg.clone(), chain, draft, now_ms, session))
                    .await
                    .map_err(|e| KbsError::Unavailable(format!("audit log: {e}")))?
            }
        }
    }

    pub fn memory_entries(&self) -> Vec<Entry> {
        match self {
            Store::Memory(m) => m
                .lock()
                .expect("audit log")
                .entries
                .iter()
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl FileLog {
    fn open(path: &Path) -> anyhow::Result<FileLog> {
        let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("audit log {}: {e}", path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(&e))?;
        let mut file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            err(&format!(
                "locked by another process ({e}): is another verdictd using it?"
            ))
        })?;
        let size = file.metadata().map_err(|e| err(&e))?.len();
        let start = size.saturating_sub(TAIL_BYTES);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_to_end(&mut tail))
            .map_err(|e| err(&e))?;
        // Complete lines only; a partial last line is a write that never finished.
        let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let len = start + complete as u64;
        if len < size {
            tracing::warn!(
                file = %path.display(),
                bytes = size - len,
                "audit log: cutting off an unfinished last line (its request failed)"
            );
            file.set_len(len).map_err(|e| err(&e))?;
        }
        let mut head = Head::EMPTY;
        let mut lines = tail[..complete]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty());
        // With the tail read from the middle of the file, its first line is partial.
        if start > 0 {
            lines.next();
        }
        let mut last = None;
        for line in lines {
            last = Some(line);
            // What is unsigned since the last checkpoint (all the tail, if it has none:
            // then the next append signs it).
            if let Ok(e) = serde_json::from_slice::<Entry>(line) {
                if e.kind == super::Kind::Checkpoint.as_str() {
                    head.pending = 0;
                    head.checkpoint_ms = chrono::DateTime::parse_from_rfc3339(&e.time)
                        .map(|t| t.timestamp_millis() as u64)
                        .unwrap_or(0);
                } else {
                    head.pending += 1;
                }
            }
        }
        if let Some(line) = last {
            let e: Entry = serde_json::from_slice(line).map_err(|e| {
                err(&format!(
                    "its last entry does not parse ({e}); check it with `verdictd audit verify`"
                ))
            })?;
            head.seq = e.seq;
            head.hash = super::parse_hash(&e.hash).ok_or_else(|| {
                err(&"its last entry's hash is not 64 hex digits; check it with `verdictd audit verify`")
            })?;
        }
        Ok(FileLog {
            file,
            path: path.to_path_buf(),
            len,
            head,
        })
    }

    fn append(
        &mut self,
        chain: &Chain,
        draft: Option<&Draft>,
        now_ms: u64,
    ) -> Result<Vec<Entry>, KbsError> {
        let mut head = self.head;
        let entries = chain.extend(&mut head, draft, now_ms);
        if entries.is_empty() {
            return Ok(entries);
        }
        let mut lines = Vec::new();
        for e in &entries {
            serde_json::to_writer(&mut lines, e).expect("entries serialise");
            lines.push(b'\n');
        }
        let written = (&*self.file)
            .write_all(&lines)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += lines.len() as u64;
                self.head = head;
                Ok(entries)
            }
            Err(e) => {
                // Nothing half-written stays: the next append starts on a line of its own.
                let _ = self.file.set_len(self.len);
                tracing::warn!(file = %self.path.display(), "audit log: {e}");
                Err(KbsError::Unavailable(format!(
                    "audit log unavailable: {}: {e}",
                    self.path.display()
                )))
            }
        }
    }
}

/// The entries of a log file, in file order: each line parsed, or why not.
pub fn read_file(path: &Path) -> anyhow::Result<impl Iterator<Item = Result<Entry, String>>> {
    let file =
        File::open(path).map_err(|e| anyhow::anyhow!("audit log {}: {e}", path.display()))?;
    Ok(std::io::BufReader::new(file).lines().map(|line| {
        let line = line.map_err(|e| e.to_string())?;
        serde_json::from_str::<Entry>(&line).map_err(|e| format!("not an audit entry: {e}"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditKey, Kind};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn chain() -> Chain {
        Chain {
            key: Some(Arc::new(AuditKey::generate())),
            replica: "t".into(),
            every_entries: 2,
            every_ms: 0,
        }
    }

    fn draft(n: u64) -> Draft {
        Draft {
            kind: Kind::ResourceDelete,
            actor: json!({}),
            details: json!({"n": n}),
        }
    }

    #[test]
    fn a_file_log_continues_its_chain_after_a_restart_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let c = chain();
        let mut log = FileLog::open(&path).unwrap();
        // A second appender is refused while the first holds the file.
        let e = FileLog::open(&path).err().unwrap().to_string();
        assert!(e.contains("another verdictd"), "{e}");
        for n in 0..3 {
            log.append(&c, Some(&draft(n)), 1000).unwrap();
        }
        drop(log);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // 1, 2, checkpoint 3, 4; then a torn write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\":5,\"ti")
            .unwrap();
        let mut log = FileLog::open(&path).unwrap();
        assert_eq!((log.head.seq, log.head.pending), (4, 1));
        let more = log.append(&c, Some(&draft(9)), 1000).unwrap();
        assert_eq!(
            more.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [5, 6],
            "5, then the checkpoint of 4 and 5"
        );
        let all: Vec<Entry> = read_file(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(all.len(), 6);
        for w in all.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
    }
}
