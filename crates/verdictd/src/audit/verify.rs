//! Replaying a log: every entry's hash against its contents, every link to the entry
//! before, the `seq` numbers without gaps, and every checkpoint's signature; the first
//! entry that fails is named ([`Broken`]).
//!
//! It runs in two passes: [`Replay::push`] checks each entry on its own (its hash,
//! a checkpoint's signature) and keeps ~100 bytes of it; [`Replay::finish`] walks the
//! chain in order. Keeping the hashes of all entries is what tells a reordered entry
//! (it still links to an entry of the log, elsewhere) from an altered one.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};

use super::{checkpoint_message, parse_hash, Entry, Head, Kind, GENESIS};

/// The first entry found altered, removed or reordered. Each is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("entry {seq} was altered: {why}")]
    Altered { seq: u64, why: String },
    #[error("entry {seq} was altered and its hash recomputed (entry {next} does not link to it), or entry {next}'s link was altered")]
    Rehashed { seq: u64, next: u64 },
    #[error("entry {seq} was removed: {context}")]
    Removed { seq: u64, context: String },
    #[error("entry {seq} was reordered: {context}")]
    Reordered { seq: u64, context: String },
    #[error(
        "entry {seq} was not appended by verdictd: the log's head records entry {head} as its last"
    )]
    Added { seq: u64, head: u64 },
    #[error("entry {seq} is a checkpoint that does not verify: {why}")]
    Checkpoint { seq: u64, why: String },
}

impl Broken {
    /// The entry named.
    pub fn seq(&self) -> u64 {
        match self {
            Broken::Altered { seq, .. }
            | Broken::Rehashed { seq, .. }
            | Broken::Removed { seq, .. }
            | Broken::Reordered { seq, .. }
            | Broken::Added { seq, .. }
            | Broken::Checkpoint { seq, .. } => *seq,
        }
    }
}

/// What an intact log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    /// The last checkpoint's seq, its time, and the entry it signs.
    pub last_checkpoint: Option<(u64, String, u64)>,
    /// Whether checkpoint signatures were checked (a key was given).
    pub signatures_checked: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.entries == 1 {
            "entry"
        } else {
            "entries"
        };
        write!(f, "audit log intact: {} {plural}", self.entries)?;
        match &self.last_checkpoint {
            Some((seq, time, signed)) => {
                write!(
                    f,
                    ", signed up to entry {signed} by the checkpoint at entry {seq} ({time})"
                )?;
                if !self.signatures_checked {
                    write!(f, "; signatures not checked (no key)")?;
                }
                Ok(())
            }
            None => write!(f, ", no checkpoint"),
        }
    }
}

struct CheckpointSeen {
    signed_seq: u64,
    signed_hash: Option<[u8; 32]>,
    /// Why the signature is refused.
    refused: Option<String>,
    time: String,
}

/// What pass 2 needs of an entry.
struct Row {
    seq: Option<u64>,
    /// Why it could not be read as an entry.
    unreadable: Option<String>,
    prev: Option<[u8; 32]>,
    hash: Option<[u8; 32]>,
    /// Its hash matches its contents (with its own seq and prev_hash).
    intact: bool,
    /// Kept when not intact: the reordering check recomputes its hash.
    entry: Option<Box<Entry>>,
    checkpoint: Option<CheckpointSeen>,
}

/// A replay in progress.
pub struct Replay {
    keys: Vec<VerifyingKey>,
    rows: Vec<Row>,
}

impl Replay {
    /// Checkpoints must be signed by one of `keys` (none: signatures are not checked).
    pub fn new(keys: Vec<VerifyingKey>) -> Replay {
        Replay {
            keys,
            rows: Vec::new(),
        }
    }

    /// The next entry in the store's order (`seq`: the store's own number for a row
    /// that does not parse, when it has one).
    pub fn push(&mut self, seq: Option<u64>, entry: Result<Entry, String>) {
        let e = match entry {
            Ok(e) => e,
            Err(why) => {
                self.rows.push(Row {
                    seq,
                    unreadable: Some(why),
                    prev: None,
                    hash: None,
                    intact: false,
                    entry: None,
                    checkpoint: None,
                });
                return;
            }
        };
        let hash = parse_hash(&e.hash);
        let intact = hash.is_some() && e.recomputed_hash(e.seq) == hash;
        let checkpoint = (e.kind == Kind::Checkpoint.as_str()).then(|| self.checkpoint(&e));
        self.rows.push(Row {
            seq: Some(e.seq),
            unreadable: None,
            prev: parse_hash(&e.prev_hash),
            hash,
            intact,
            checkpoint,
            entry: (!intact).then(|| Box::new(e)),
        });
    }

    fn checkpoint(&self, e: &Entry) -> CheckpointSeen {
        let d = &e.details;
        let signed_seq = d["signed_seq"].as_u64().unwrap_or(0);
        let signed_hash = d["signed_hash"].as_str().and_then(parse_hash);
        let refused = (|| {
            let public: [u8; 32] = STANDARD
                .decode(d["public_key"].as_str()?)
                .ok()?
                .try_into()
                .ok()?;
            let public = VerifyingKey::from_bytes(&public).ok()?;
            let sig: [u8; 64] = STANDARD
                .decode(d["signature"].as_str()?)
                .ok()?
                .try_into()
                .ok()?;
            if !self.keys.is_empty() && !self.keys.contains(&public) {
                return Some(Some(format!(
                    "signed by key {}, not an audit key given",
                    super::key::key_id(&public)
                )));
            }
            let message = checkpoint_message(signed_seq, &signed_hash?);
            Some(
                public
                    .verify_strict(&message, &Signature::from_bytes(&sig))
                    .err()
                    .map(|_| "its signature does not match what it signs".to_string()),
            )
        })()
        .unwrap_or_else(|| Some("its details are not a checkpoint's".into()));
        CheckpointSeen {
            signed_seq,
            signed_hash,
            refused,
            time: e.time.clone(),
        }
    }

    /// Walks the chain; `head`: what the store records as its end (postgres).
    pub fn finish(self, head: Option<Head>) -> Result<Summary, Broken> {
        let mut by_hash: HashMap<[u8; 32], usize> = HashMap::with_capacity(self.rows.len());
        for (i, r) in self.rows.iter().enumerate() {
            if let Some(h) = r.hash {
                by_hash.entry(h).or_insert(i);
            }
        }
        let (mut expected, mut prev) = (1u64, GENESIS);
        let mut last_checkpoint = None;
        for (i, row) in self.rows.iter().enumerate() {
            let Some(seq) = row.seq else {
                return Err(Broken::Altered {
                    seq: expected,
                    why: row.unreadable.clone().unwrap_or_default(),
                });
            };
            if seq != expected {
                let later = self.rows[i + 1..].iter().any(|r| r.seq == Some(expected));
                return Err(if later || seq < expected {
                    Broken::Reordered {
                        seq: expected,
                        context: format!("entry {seq} stands in its place"),
                    }
                } else {
                    Broken::Removed {
                        seq: expected,
                        context: if expected == 1 {
                            format!("the log starts at entry {seq}")
                        } else {
                            format!("entry {} is followed by entry {seq}", expected - 1)
                        },
                    }
                });
            }
            if let Some(why) = &row.unreadable {
                return Err(Broken::Altered {
                    seq,
                    why: why.clone(),
                });
            }
            let (Some(row_prev), Some(row_hash)) = (row.prev, row.hash) else {
                return Err(Broken::Altered {
                    seq,
                    why: "its hashes are not 64 hex digits".into(),
                });
            };
            if row_prev != prev {
                // Still linked into the log, elsewhere, and intact under the seq that
                // follows that link: an entry moved here.
                let moved = by_hash
                    .get(&row_prev)
                    .and_then(|&k| self.rows[k].seq)
                    .and_then(|s| s.checked_add(1))
                    .filter(|&orig| {
                        orig != seq
                            && row.entry.as_ref().and_then(|e| e.recomputed_hash(orig))
                                == Some(row_hash)
                    });
                return Err(match moved {
                    Some(orig) => Broken::Reordered {
                        seq,
                        context: format!("the entry numbered {seq} is entry {orig}, moved"),
                    },
                    None if row.intact && seq > 1 => Broken::Rehashed {
                        seq: seq - 1,
                        next: seq,
                    },
                    None => Broken::Altered {
                        seq,
                        why: format!("it does not link to entry {}", seq - 1),
                    },
                });
            }
            if !row.intact {
                return Err(Broken::Altered {
                    seq,
                    why: "its hash does not match its contents".into(),
                });
            }
            if let Some(cp) = &row.checkpoint {
                // An earlier entry, checked already: its row is at index seq - 1.
                let signed = (1..seq)
                    .contains(&cp.signed_seq)
                    .then(|| self.rows[cp.signed_seq as usize - 1].hash)
                    .flatten();
                if cp.signed_hash.is_none() || signed != cp.signed_hash {
                    return Err(Broken::Checkpoint {
                        seq,
                        why: format!(
                            "it signs entry {} with another hash than the log's: the entries up to it were rewritten",
                            cp.signed_seq
                        ),
                    });
                }
                if let Some(why) = &cp.refused {
                    return Err(Broken::Checkpoint {
                        seq,
                        why: why.clone(),
                    });
                }
                last_checkpoint = Some((seq, cp.time.clone(), cp.signed_seq));
            }
            prev = row_hash;
            expected = seq + 1;
        }
        let last = expected - 1;
        if let Some(h) = head {
            if h.seq > last {
                return Err(Broken::Removed {
                    seq: last + 1,
                    context: format!(
                        "the log ends at entry {last}, but its head records entry {}",
                        h.seq
                    ),
                });
            }
            if h.seq < last {
                return Err(Broken::Added {
                    seq: h.seq + 1,
                    head: h.seq,
                });
            }
            if h.hash != prev {
                return Err(Broken::Altered {
                    seq: last,
                    why: "its hash is not the one the log's head records".into(),
                });
            }
        }
        Ok(Summary {
            entries: last,
            last_checkpoint,
            signatures_checked: !self.keys.is_empty(),
        })
    }
}

/// Replays `entries` (in store order) against `keys`.
pub fn replay(
    entries: impl IntoIterator<Item = Result<Entry, String>>,
    keys: Vec<VerifyingKey>,
    head: Option<Head>,
) -> Result<Summary, Broken> {
    let mut r = Replay::new(keys);
    for e in entries {
        r.push(None, e);
    }
    r.finish(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditKey, Chain, Draft};
    use serde_json::json;
    use std::sync::Arc;

    /// A log of `n` entries with a checkpoint every 4th.
    fn log(n: u64) -> (Vec<Entry>, Head, Arc<AuditKey>) {
        let key = Arc::new(AuditKey::generate());
        let chain = Chain {
            key: Some(key.clone()),
            replica: "t".into(),
            every_entries: 3,
            every_ms: 0,
        };
        let mut head = Head::EMPTY;
        let mut out = Vec::new();
        while head.seq < n {
            let d = Draft {
                kind: Kind::Release,
                actor: json!({"token": "t"}),
                details: json!({"path": format!("r/k/{}", head.seq + 1), "verdict": "released"}),
            };
            out.extend(chain.extend(&mut head, Some(&d), 5));
        }
        out.truncate(n as usize);
        (out, head, key)
    }

    fn check(entries: &[Entry], key: &AuditKey) -> Result<Summary, Broken> {
        replay(entries.iter().cloned().map(Ok), vec![key.public()], None)
    }

    #[test]
    fn an_intact_log_replays() {
        let (entries, head, key) = log(10);
        let s = replay(entries.into_iter().map(Ok), vec![key.public()], Some(head)).unwrap();
        assert_eq!(s.entries, 10);
        assert_eq!(s.last_checkpoint.as_ref().map(|c| c.0), Some(8));
        assert_eq!(
            s.to_string(),
            "audit log intact: 10 entries, signed up to entry 7 by the checkpoint at entry 8 (1970-01-01T00:00:00.005Z)"
        );
        assert_eq!(
            replay(Vec::new(), vec![], Some(Head::EMPTY))
                .unwrap()
                .to_string(),
            "audit log intact: 0 entries, no checkpoint"
        );
    }

    #[test]
    fn the_first_broken_entry_is_named() {
        let (entries, head, key) = log(10);
        // Altered details.
        let mut e = entries.clone();
        e[5].details["path"] = json!("r/k/other");
        let b = check(&e, &key).unwrap_err();
        assert!(matches!(b, Broken::Altered { seq: 6, .. }), "{b}");
        // Removed (the middle, the first, the end as the head knows it).
        for (i, seq) in [(4usize, 5u64), (0, 1)] {
            let mut e = entries.clone();
            e.remove(i);
            let b = check(&e, &key).unwrap_err();
            assert!(
                matches!(b, Broken::Removed { seq: s, .. } if s == seq),
                "{b}"
            );
        }
        let b = replay(entries[..9].iter().cloned().map(Ok), vec![], Some(head)).unwrap_err();
        assert_eq!(
            b.to_string(),
            "entry 10 was removed: the log ends at entry 9, but its head records entry 10"
        );
        // Lines swapped (file) and seq numbers swapped (database rows).
        let mut e = entries.clone();
        e.swap(2, 6);
        let b = check(&e, &key).unwrap_err();
        assert_eq!(
            b.to_string(),
            "entry 3 was reordered: entry 7 stands in its place"
        );
        let mut e = entries.clone();
        e.swap(2, 6);
        (e[2].seq, e[6].seq) = (3, 7);
        let b = check(&e, &key).unwrap_err();
        assert_eq!(
            b.to_string(),
            "entry 3 was reordered: the entry numbered 3 is entry 7, moved"
        );
        // One entry altered and re-hashed: named by the link after it.
        let mut e = entries.clone();
        e[1].details["path"] = json!("x");
        e[1].hash = hex::encode(e[1].recomputed_hash(2).unwrap());
        assert!(matches!(
            check(&e, &key).unwrap_err(),
            Broken::Rehashed { seq: 2, next: 3 }
        ));
        // The whole chain rewritten from entry 2 on: the checkpoint (4) shows it.
        let mut e = entries.clone();
        e[1].details["path"] = json!("x");
        for i in 1..e.len() {
            e[i].prev_hash = e[i - 1].hash.clone();
            e[i].hash = hex::encode(e[i].recomputed_hash(e[i].seq).unwrap());
        }
        let b = check(&e, &key).unwrap_err();
        assert!(matches!(b, Broken::Checkpoint { seq: 4, .. }), "{b}");
        // A checkpoint by another key.
        let other = AuditKey::generate();
        let b = check(&entries, &other).unwrap_err();
        assert!(
            b.to_string()
                .starts_with("entry 4 is a checkpoint that does not verify: signed by key"),
            "{b}"
        );
        // A line that is not an entry.
        let mut rows: Vec<Result<Entry, String>> = entries.iter().cloned().map(Ok).collect();
        rows[3] = Err("not an audit entry".into());
        let b = replay(rows, vec![], None).unwrap_err();
        assert_eq!(b.to_string(), "entry 4 was altered: not an audit entry");
    }
}
