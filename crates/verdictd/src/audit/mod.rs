//! The tamper-evident audit log: every admission decision, every resource release (or
//! refusal by the resource policy), and every admin call is appended to a hash chain
//! that `verdictd audit verify` replays ([`cli`]); signed checkpoints make a rewrite of
//! the chain detectable too.
//!
//! # Entries
//!
//! One entry is this JSON object (`verdictd audit show` prints one per line, in this
//! key order; the `localfs` log file holds exactly these lines):
//!
//! | key | value |
//! |---|---|
//! | `seq` | 1, 2, 3, … without gaps: the entry's place in the chain |
//! | `time` | RFC 3339 UTC with milliseconds, `2026-08-01T12:00:00.123Z`, when it was appended |
//! | `replica` | the appending verdictd (`[audit] replica_id`, default `<hostname>/<pid>`) |
//! | `kind` | what happened ([`Kind`]) |
//! | `actor` | who: an object of `addr` (the peer's `ip:port`), `session` ([`session_id`]), `token` ([`token_id`]), `admin_key` (the admin public key that verified the call, [`crate::admin::key_id`], or `insecure_allow_all`), `role` (its JWT's role); each present when known |
//! | `details` | an object per kind ([`Kind`]): digests, never a secret |
//! | `prev_hash` | the previous entry's `hash` (64 hex digits; entry 1: 64 zeros) |
//! | `hash` | SHA-256(`prev_hash` as 32 bytes ‖ the canonical bytes), 64 lowercase hex digits |
//!
//! **Canonical bytes** ([`canonical`]): the RFC 8785 (JCS) serialisation of the object
//! `{"actor", "details", "kind", "replica", "seq", "time"}` (the entry without
//! `prev_hash` and `hash`): keys sorted, no whitespace, integers as plain digits (JCS
//! numbers are IEEE 754 doubles: exact below 2^53, which `seq` never reaches), strings
//! with JCS's minimal escapes, UTF-8. So the hash commits to every field, the `seq`
//! included, and to the whole chain before it.
//!
//! The canonical bytes are built as `prefix ‖ seq ‖ suffix` ([`canonical_parts`]):
//! `seq` is the only member a backend learns at append time (postgres computes the hash
//! in the database, under its lock, from the two parts).
//!
//! **Checkpoints** ([`Kind::Checkpoint`]): when `[audit] checkpoint_entries` entries
//! that are not checkpoints were appended since the last checkpoint, or `checkpoint_secs`
//! passed since it and something is unsigned, verdictd appends a checkpoint whose details
//! sign the newest entry: `{"signed_seq": n, "signed_hash": <hex>, "key_id": <hex>,
//! "public_key": <base64 of the 32-byte Ed25519 key>, "signature": <base64 of 64
//! bytes>}`, an Ed25519 signature over [`checkpoint_message`]`(n, hash)` with the
//! `[audit] signing_key`. In memory and local-fs the checkpoint is the entry right after
//! the one it signs (with N = 3: entries 1-3, checkpoint 4, 5-7, checkpoint 8); on
//! postgres another replica's entry may come between. Whoever can edit the store but
//! lacks the key can recompute hashes, but not the signatures: a rewrite of the chain
//! shows at the next checkpoint; an edit that leaves the hashes alone shows at the
//! edited entry.
//!
//! # What verification proves, and not
//!
//! [`verify::replay`] names the first entry altered, removed or reordered. It cannot see
//! the newest entries removed after the last checkpoint, except on postgres, where the
//! chain's head (`verdictd_audit_head`, written with every append) still names them;
//! nor a log replaced whole by someone holding the signing key.
//!
//! # Failure
//!
//! An append that fails fails its request (a release is never sent without its entry):
//! 503 `StorageUnavailable` on postgres, as every database failure; a local-fs write
//! failure likewise 503. An admin change is appended before it is stored, so a store
//! failure after it leaves an entry for a change that did not happen (the retry
//! appends another), never a change without an entry.

pub mod cli;
pub mod key;
pub(crate) mod pg;
mod store;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{Config, StorageKind};
use crate::KbsError;
pub use key::AuditKey;

/// `[audit]`.
///
/// ```toml
/// [audit]
/// signing_key = "audit-signing.key"  # Ed25519 private key, PKCS#8 PEM, mode 0600;
///                                    # generated (0600) when the file is absent. Every
///                                    # replica on one database needs the same file.
///                                    # Default: localfs `<dir>.audit-key.pem`; memory a
///                                    # key of this process; postgres none (the chain
///                                    # is kept but not signed: a warning at start)
/// checkpoint_entries = 100           # a signed checkpoint after this many entries
/// checkpoint_secs = 60               # … or this long after the last one (0: never)
/// file = "audit.jsonl"               # localfs: the log (default `<dir>.audit.jsonl`)
/// replica_id = "kbs-a"               # default `<hostname>/<pid>`
/// trusted_keys = ["audit-2025.pub"]  # Ed25519 public keys (PEM) of signing keys the
///                                    # log was signed with before: `audit verify`
///                                    # accepts their checkpoints too (a replaced key
///                                    # leaves its checkpoints in the log)
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    pub signing_key: Option<PathBuf>,
    pub checkpoint_entries: u64,
    pub checkpoint_secs: u64,
    pub file: Option<PathBuf>,
    pub replica_id: Option<String>,
    pub trusted_keys: Vec<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            signing_key: None,
            checkpoint_entries: 100,
            checkpoint_secs: 60,
            file: None,
            replica_id: None,
            trusted_keys: Vec::new(),
        }
    }
}

impl AuditConfig {
    /// The log file of `localfs` storage: `file`, or `<dir>.audit.jsonl` beside the
    /// resource directory (never inside it: that holds one file per resource).
    pub fn log_file(&self, storage_dir: &std::path::Path) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| sibling(storage_dir, "audit.jsonl"))
    }

    /// The signing key file for `config`'s storage (see the table above); `None`: a
    /// key of this process (memory) or none (postgres).
    pub fn key_file(&self, config: &Config) -> Option<PathBuf> {
        if let Some(k) = &self.signing_key {
            return Some(k.clone());
        }
        match (config.storage.kind, &config.storage.dir) {
            (StorageKind::Localfs, Some(dir)) => Some(sibling(dir, "audit-key.pem")),
            _ => None,
        }
    }
}

/// `dir.ext` in dir's parent (`/var/lib/verdictd/resources` → `…/resources.ext`).
fn sibling(dir: &std::path::Path, ext: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(ext);
    dir.with_file_name(name)
}

/// The kinds of entries, with their `details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/attest` decided: `{"tee", "verdict": <ear.status> | "refused", "claims_sha256":
    /// <SHA-256 of the JCS of the token's claims>, "token": <token id>}`, or for a
    /// refusal by the verifier `{"tee", "verdict": "refused", "reason"}`.
    Admission,
    /// A resource GET decided: `{"path", "verdict": "released", "jwe_sha256": <SHA-256
    /// of the response body sent, the JWE>}` or `{"path", "verdict": "denied"}` (the
    /// resource policy).
    Release,
    /// `POST /kbs/v0/resource/…`: `{"path", "bytes", "value_hmac"}`: HMAC-SHA256 of
    /// the value under a key derived from the signing key ([`AuditKey::value_hmac`]),
    /// absent without one; a plain digest would let a reader test guesses of a
    /// low-entropy secret.
    ResourceSet,
    /// `DELETE /kbs/v0/resource/…`: `{"path"}`.
    ResourceDelete,
    /// `POST /kbs/v0/resource-policy`: `{"sha256", "bytes"}` of the Rego text.
    ResourcePolicySet,
    /// `GET /kbs/v0/resource-policy`: `{}`.
    ResourcePolicyRead,
    /// `POST /kbs/v0/attestation-policy`: `{"policy_id", "sha256", "bytes"}`.
    AttestationPolicySet,
    /// `POST /kbs/v0/reference-value`: `{"type": "sample" | "corim" | "dsse", "values": {name:
    /// <SHA-256 of the value's JCS>}}` (+ `"expires"`, RFC 3339, for a signed bundle).
    ReferenceValueSet,
    /// `GET /kbs/v0/reference-value/<name>`: `{"name"}`.
    ReferenceValueRead,
    /// `DELETE /kbs/v0/reference-value/<name>`: `{"name"}`.
    ReferenceValueDelete,
    /// A signed checkpoint (see the module docs).
    Checkpoint,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Admission => "admission",
            Kind::Release => "release",
            Kind::ResourceSet => "resource.set",
            Kind::ResourceDelete => "resource.delete",
            Kind::ResourcePolicySet => "resource-policy.set",
            Kind::ResourcePolicyRead => "resource-policy.read",
            Kind::AttestationPolicySet => "attestation-policy.set",
            Kind::ReferenceValueSet => "reference-value.set",
            Kind::ReferenceValueRead => "reference-value.read",
            Kind::ReferenceValueDelete => "reference-value.delete",
            Kind::Checkpoint => "checkpoint",
        }
    }
}

/// Who made a request, as far as verdictd knows (the entry's `actor`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Actor {
    pub fn from_addr(addr: Option<std::net::SocketAddr>) -> Actor {
        Actor {
            addr: addr.map(|a| a.to_string()),
            ..Actor::default()
        }
    }
}

/// One entry, as stored and printed (field order = `show`'s key order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub seq: u64,
    pub time: String,
    pub replica: String,
    pub kind: String,
    pub actor: Value,
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of the chain before entry 1.
pub const GENESIS: [u8; 32] = [0; 32];

/// The canonical bytes of an entry (see the module docs): JCS of every field but the
/// two hashes.
pub fn canonical(
    seq: u64,
    time: &str,
    replica: &str,
    kind: &str,
    actor: &Value,
    details: &Value,
) -> Vec<u8> {
    let (mut bytes, suffix) = canonical_parts(time, replica, kind, actor, details);
    bytes.extend_from_slice(seq.to_string().as_bytes());
    bytes.extend_from_slice(&suffix);
    bytes
}

/// The canonical bytes around `seq`: `{"actor":…,"details":…,"kind":…,"replica":…,"seq":`
/// and `,"time":"…"}`. JCS sorts members by key, and `seq` (an integer, written as plain
/// digits) sorts between `replica` and `time`.
pub fn canonical_parts(
    time: &str,
    replica: &str,
    kind: &str,
    actor: &Value,
    details: &Value,
) -> (Vec<u8>, Vec<u8>) {
    let jcs = |v: &Value| serde_json_canonicalizer::to_vec(v).expect("JSON values serialise");
    let mut prefix = jcs(&json!({
        "actor": actor,
        "details": details,
        "kind": kind,
        "replica": replica,
    }));
    prefix.pop(); // its closing brace
    prefix.extend_from_slice(b",\"seq\":");
    let mut suffix = b",\"time\":".to_vec();
    suffix.extend_from_slice(&jcs(&json!(time)));
    suffix.push(b'}');
    (prefix, suffix)
}

/// SHA-256(`prev` ‖ `canonical`).
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

impl Entry {
    /// The entry's hash recomputed from its fields, its stored `prev_hash` and `seq`
    /// (`None`: `prev_hash` is not 64 hex digits).
    pub fn recomputed_hash(&self, seq: u64) -> Option<[u8; 32]> {
        let prev = parse_hash(&self.prev_hash)?;
        Some(chain_hash(
            &prev,
            &canonical(
                seq,
                &self.time,
                &self.replica,
                &self.kind,
                &self.actor,
                &self.details,
            ),
        ))
    }
}

/// 64 hex digits → 32 bytes.
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// What a checkpoint's signature covers: `"verdictd-audit-checkpoint-v1\0"` ‖ `seq`
/// (8 bytes, big-endian) ‖ `hash` (32 bytes): the entry it signs.
pub fn checkpoint_message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = b"verdictd-audit-checkpoint-v1\0".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 (hex) of a JSON value's JCS: what `claims_sha256` and reference-value
/// digests are.
pub fn json_sha256(value: &Value) -> String {
    sha256_hex(&serde_json_canonicalizer::to_vec(value).expect("JSON values serialise"))
}

/// A token's id in the log: the first 16 bytes of SHA-256 of the token text, hex. It
/// links a release to the admission that issued its token, and cannot be used as one.
pub fn token_id(token: &str) -> String {
    sha256_hex(token.as_bytes())[..32].to_string()
}

/// A session's id in the log: the first 16 bytes of SHA-256 of the cookie value, hex
/// (the cookie itself is a credential while the session lives).
pub fn session_id(cookie: &str) -> String {
    sha256_hex(cookie.as_bytes())[..32].to_string()
}

/// Unix milliseconds.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix milliseconds as an entry's `time`.
pub fn rfc3339_ms(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The end of the chain, as the appender keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
    /// Entries (not checkpoints) appended since the last checkpoint was due.
    pub pending: u64,
    /// When the last checkpoint was due (Unix ms; 0: never).
    pub checkpoint_ms: u64,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: GENESIS,
        pending: 0,
        checkpoint_ms: 0,
    };
}

/// An entry before it has a place in the chain.
#[derive(Debug, Clone)]
pub struct Draft {
    pub kind: Kind,
    pub actor: Value,
    pub details: Value,
}

/// Makes entries and checkpoints: what every backend shares.
pub(crate) struct Chain {
    pub key: Option<Arc<AuditKey>>,
    pub replica: String,
    pub every_entries: u64,
    pub every_ms: u64,
}

impl Chain {
    /// Appends `draft` (if any) to `head`, then a checkpoint if one is due; the new
    /// entries, in order, with `head` moved past them. (Memory and local-fs; postgres
    /// keeps the head in the database, [`pg`].)
    pub fn extend(&self, head: &mut Head, draft: Option<&Draft>, now_ms: u64) -> Vec<Entry> {
        let time = rfc3339_ms(now_ms);
        let mut out = Vec::with_capacity(2);
        if let Some(d) = draft {
            out.push(self.entry(head, &time, d));
            if d.kind != Kind::Checkpoint {
                head.pending += 1;
            }
        }
        if self.checkpoint_due(head, now_ms) {
            let cp = self.checkpoint(head.seq, &head.hash);
            head.pending = 0;
            head.checkpoint_ms = now_ms;
            out.push(self.entry(head, &time, &cp));
        }
        out
    }

    /// Whether the entries since the last checkpoint are to be signed now.
    pub fn checkpoint_due(&self, head: &Head, now_ms: u64) -> bool {
        self.key.is_some()
            && head.pending > 0
            && (head.pending >= self.every_entries
                || (self.every_ms > 0
                    && now_ms.saturating_sub(head.checkpoint_ms) >= self.every_ms))
    }

    /// The checkpoint that signs entry `seq` with `hash` (there is a key: checked by
    /// whoever found it due).
    pub fn checkpoint(&self, seq: u64, hash: &[u8; 32]) -> Draft {
        let key = self
            .key
            .as_ref()
            .expect("a checkpoint is due only with a key");
        Draft {
            kind: Kind::Checkpoint,
            actor: json!({}),
            details: json!({
                "signed_seq": seq,
                "signed_hash": hex::encode(hash),
                "key_id": key.id(),
                "public_key": key.public_base64(),
                "signature": key.sign(&checkpoint_message(seq, hash)),
            }),
        }
    }

    fn entry(&self, head: &mut Head, time: &str, d: &Draft) -> Entry {
        let seq = head.seq + 1;
        let kind = d.kind.as_str();
        let hash = chain_hash(
            &head.hash,
            &canonical(seq, time, &self.replica, kind, &d.actor, &d.details),
        );
        let entry = Entry {
            seq,
            time: time.to_string(),
            replica: self.replica.clone(),
            kind: kind.to_string(),
            actor: d.actor.clone(),
            details: d.details.clone(),
            prev_hash: hex::encode(head.hash),
            hash: hex::encode(hash),
        };
        head.seq = seq;
        head.hash = hash;
        entry
    }
}

/// The audit log of a running verdictd: appends to the backend of its `[storage]`.
pub struct Audit {
    chain: Arc<Chain>,
    store: store::Store,
}

/// `<hostname>/<pid>`.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "localhost".into()
    } else {
        host
    };
    format!("{host}/{}", std::process::id())
}

impl Audit {
    /// Opens the log `config` describes: the database's tables (created by its
    /// migrations) with `pg`, else the `localfs` file (created 0600, locked against a
    /// second verdictd) or memory; and the signing key (loaded, or generated 0600).
    pub fn open(config: &Config, pg: Option<Arc<crate::pg::Pg>>) -> anyhow::Result<Audit> {
        let a = &config.audit;
        let key = match a.key_file(config) {
            Some(path) => Some(Arc::new(AuditKey::load_or_create(&path)?)),
            None if config.storage.kind == StorageKind::Postgres => {
                tracing::warn!(
                    "no [audit] signing_key: the audit log is hash-chained but its checkpoints are not signed"
                );
                None
            }
            None => Some(Arc::new(AuditKey::generate())),
        };
        let chain = Arc::new(Chain {
            key,
            replica: a.replica_id.clone().unwrap_or_else(default_replica_id),
            every_entries: a.checkpoint_entries.max(1),
            every_ms: a.checkpoint_secs.saturating_mul(1000),
        });
        let store = match (pg, config.storage.kind, &config.storage.dir) {
            (Some(pg), _, _) => store::Store::Postgres(pg),
            (None, StorageKind::Localfs, Some(dir)) => {
                store::Store::file(&config.audit.log_file(dir))?
            }
            _ => store::Store::memory(),
        };
        Ok(Audit { chain, store })
    }

    /// Appends one entry (and a checkpoint when one is due); its seq.
    pub async fn append(&self, kind: Kind, actor: &Actor, details: Value) -> Result<u64, KbsError> {
        self.append_draft(kind, actor, details, None).await
    }

    /// Appends one entry and, in the same statement, stores the attested `session` it
    /// admits (postgres storage; with another, an error: the caller stores its sessions
    /// itself).
    pub async fn append_with_session(
        &self,
        kind: Kind,
        actor: &Actor,
        details: Value,
        session: crate::pg::SessionWrite,
    ) -> Result<u64, KbsError> {
        self.append_draft(kind, actor, details, Some(session)).await
    }

    async fn append_draft(
        &self,
        kind: Kind,
        actor: &Actor,
        details: Value,
        session: Option<crate::pg::SessionWrite>,
    ) -> Result<u64, KbsError> {
        let draft = Draft {
            kind,
            actor: serde_json::to_value(actor).unwrap_or_else(|_| json!({})),
            details,
        };
        let entries = self
            .store
            .append(self.chain.clone(), Some(draft), unix_ms(), session)
            .await?;
        Ok(entries.first().map(|e| e.seq).unwrap_or(0))
    }

    /// Signs the newest entries if `checkpoint_secs` passed since the last checkpoint
    /// (called every `checkpoint_secs` by the server, so an idle log is signed too).
    pub async fn checkpoint_if_due(&self) -> Result<(), KbsError> {
        self.store
            .append(self.chain.clone(), None, unix_ms(), None)
            .await
            .map(drop)
    }

    /// How often [`Audit::checkpoint_if_due`] is worth calling (`None`: never).
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        (self.chain.key.is_some() && self.chain.every_ms > 0)
            .then(|| Duration::from_millis(self.chain.every_ms))
    }

    /// The value digest of a stored resource (see [`Kind::ResourceSet`]).
    pub fn value_hmac(&self, value: &[u8]) -> Option<String> {
        self.chain.key.as_ref().map(|k| k.value_hmac(value))
    }

    /// The entries kept in memory (memory storage only; empty otherwise).
    pub fn memory_entries(&self) -> Vec<Entry> {
        self.store.memory_entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical bytes and hash of an entry, worked out from RFC 8785 by hand.
    #[test]
    fn canonical_bytes_and_hash_follow_the_spec() {
        let actor = json!({"session": "s", "addr": "127.0.0.1:1"});
        let details = json!({"path": "a/b/c", "verdict": "released", "n": 10, "é": "\u{7f}\n"});
        let bytes = canonical(
            7,
            "2026-01-02T03:04:05.006Z",
            "r/1",
            "release",
            &actor,
            &details,
        );
        // prefix ‖ seq ‖ suffix is the JCS of the whole object, for any seq.
        for seq in [0u64, 7, 10, 1 << 40, 1 << 53] {
            let time = "2026-01-02T03:04:05.006Z";
            let whole = json!({"actor": actor, "details": details, "kind": "release",
                               "replica": "r/1", "seq": seq, "time": time});
            assert_eq!(
                canonical(seq, time, "r/1", "release", &actor, &details),
                serde_json_canonicalizer::to_vec(&whole).unwrap(),
                "{seq}"
            );
        }
        let want = "{\"actor\":{\"addr\":\"127.0.0.1:1\",\"session\":\"s\"},\
                    \"details\":{\"n\":10,\"path\":\"a/b/c\",\"verdict\":\"released\",\"é\":\"\u{7f}\\n\"},\
                    \"kind\":\"release\",\"replica\":\"r/1\",\"seq\":7,\
                    \"time\":\"2026-01-02T03:04:05.006Z\"}";
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        let mut input = vec![0xabu8; 32];
        input.extend_from_slice(want.as_bytes());
        assert_eq!(
            hex::encode(chain_hash(&[0xab; 32], &bytes)),
            hex::encode(Sha256::digest(&input))
        );
        assert_eq!(rfc3339_ms(1_767_323_045_006), "2026-01-02T03:04:05.006Z");
        assert_eq!(
            checkpoint_message(258, &[1; 32])[29..37],
            [0, 0, 0, 0, 0, 0, 1, 2]
        );
    }

    #[test]
    fn checkpoints_follow_every_n_entries() {
        let chain = Chain {
            key: Some(Arc::new(AuditKey::generate())),
            replica: "r".into(),
            every_entries: 3,
            every_ms: 0,
        };
        let mut head = Head::EMPTY;
        let d = Draft {
            kind: Kind::ResourceDelete,
            actor: json!({}),
            details: json!({"path": "a/b/c"}),
        };
        let kinds: Vec<String> = (0..7)
            .flat_map(|_| chain.extend(&mut head, Some(&d), 1000))
            .map(|e| format!("{}:{}", e.seq, e.kind))
            .collect();
        // N = 3: entries 1-3, checkpoint 4, 5-7, checkpoint 8, 9.
        assert_eq!(
            kinds,
            [
                "1:resource.delete",
                "2:resource.delete",
                "3:resource.delete",
                "4:checkpoint",
                "5:resource.delete",
                "6:resource.delete",
                "7:resource.delete",
                "8:checkpoint",
                "9:resource.delete"
            ]
        );
        // Time: due once every_ms passed since the last checkpoint, and only with
        // something unsigned.
        let chain = Chain {
            every_entries: 100,
            every_ms: 500,
            ..chain
        };
        assert!(!chain.checkpoint_due(&head, 1400));
        assert!(chain.checkpoint_due(&head, 1500));
        let signed = chain.extend(&mut head, None, 1500);
        assert_eq!(signed.len(), 1);
        assert!(!chain.checkpoint_due(&head, 99_999));
    }
}
