//! Runtime-measurement events in Confidential Containers' "AAEL" form, the way the
//! enclave records what it did (the image it pulled) for the broker to check.
//!
//! An event is `<domain> <operation> <content>` (T:`kbs/docs/confidential-containers-
//! eventlog.md`); CoCo's one defined event is domain `github.com/confidential-containers`,
//! operation `PullImage`, content `{"digest":"sha256:…","image":"…"}` (the manifest
//! digest), written here as RFC 8785 JSON. On the wire a log is the TCG2 "crypto agile"
//! binary form guest-components writes (G:`attestation-agent/attestation-agent/src/
//! eventlog/tcg2.rs`, G:`attestation-agent/attester/src/utils.rs`): a Spec ID
//! `EV_NO_ACTION` header declaring SHA-384, then per event a record
//!
//! | bytes | field |
//! |---|---|
//! | 4 | MR index (CC MR 4, TDX's RTMR3, for the agent's events) |
//! | 4 | event type `6` (`EV_EVENT_TAG`) |
//! | 4 | digest count `1` |
//! | 2 + 48 | `0x000C` (SHA-384), `SHA-384(tagged event)` |
//! | 4 | event size `8 + n` |
//! | 8 + n | the tagged event: id `0x4141454C` (bytes `LEAA`), `n`, the text |
//!
//! all little-endian, and 8 × `0xFF` at the end.
//!
//! **Binding.** The log travels in the KBS attestation's `additional_evidence` as
//! `{"cc_eventlog":"<standard base64>"}`. That string is inside the runtime data whose
//! hash is the evidence's report data, so a log the enclave did not send fails the
//! report-data check. In a `sim` enclave the log is also *measured*: `liberpal-sim`
//! keeps it and extends the matching runtime measurement register of its report for each
//! record ([`extend_register`]), and the verifier replays the log into the registers
//! ([`EventLog::check_replay`]), as trustee replays TDX's RTMRs
//! (T:`deps/eventlog/src/lib.rs` `replay_and_match`). Trustee reads `additional_evidence`
//! as device evidence keyed by TEE name, so only brokers that know this form (verdictd)
//! accept it; the agent sends it only for the software TEEs (`sim`, `sample`), whose
//! evidence only verdictd checks anyway.
//!
//! **Registers.** Four SHA-384 registers, reset to 48 zero bytes when the enclave
//! starts, as TDX's RTMR0..3: the record's CC MR index `i` (1..=4) names register
//! `i - 1`, and an extend is `R ← SHA-384(R ‖ digest)`. The attestation agent's events
//! go to CC MR 4 (RTMR3), where guest-components puts them on TDX. CC MR 1 (RTMR0) is the
//! enclave runtime's own: `liberpal-sim` records there rune's [`LAUNCH`] event of every
//! process it starts ([`Event::launch`]) before the process exists, and no application
//! can extend it.
//!
//! **Bounds.** At most [`MAX_EVENTS`] records, [`MAX_EVENT_TEXT`] bytes of text each,
//! and [`MAX_LOG_BYTES`] for the whole TCG2 encoding: a longer log is refused (and an
//! extend past the bound is refused), never truncated.
//!
//! Claims ([`EventLog::claims`]) are trustee's `uefi_event_logs` entries
//! (T:`deps/verifier/src/tdx/claims.rs` `generate_parsed_claim`,
//! T:`attestation-service/docs/tcb_claims.md`), so a policy reads an image pull the same
//! way for TDX and for `sim`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest as _;

/// Confidential Containers' event domain.
pub const COCO_DOMAIN: &str = "github.com/confidential-containers";
/// CoCo's image-pull operation.
pub const PULL_IMAGE: &str = "PullImage";
/// The event domain of rune's own events: its enclave runtime's and its
/// confidential-image boot program's.
pub const RUNE_DOMAIN: &str = "github.com/inclavare-containers/rune";
/// The boot program's signature-policy operation: which policy resource checks the
/// image's signatures (`none` when the configuration named none). The configuration
/// comes from the host, so a tenant's resource policy requires this event to be sure
/// signatures are checked before releasing keys.
pub const IMAGE_POLICY: &str = "ImagePolicy";
/// rune's operation recording which KBS the boot program attests to, before it does:
/// the URL and the SHA-256 of the CA certificates it trusts for it (both the host's
/// configuration), so a tenant's policy can refuse an enclave the host pointed at
/// another broker.
pub const KBS: &str = "Kbs";
/// rune's launch operation: what a program of the enclave is started with
/// ([`Event::launch`]). The host chooses argv, environment (`LD_PRELOAD` too), working
/// directory and user, so the enclave runtime records them before the program exists,
/// for a policy to pin.
pub const LAUNCH: &str = "Launch";
/// The CC measurement-register index of the agent's events (TDX's RTMR3, where
/// guest-components extends them).
pub const RUNTIME_MR_INDEX: u32 = 4;
/// The CC measurement-register index of the enclave runtime's own events (RTMR0, where
/// TDX's firmware measures): `liberpal-sim` records there the [`LAUNCH`] of every
/// process it starts, and refuses the application's extends of it, so every record at
/// this index was written by the runtime (measurement.md §5.1).
pub const LAUNCH_MR_INDEX: u32 = 1;
/// `EV_EVENT_TAG` (TCG PC Client PFP).
pub const EV_EVENT_TAG: u32 = 6;
/// The tagged-event id of AAEL records (little-endian bytes `LEAA`).
pub const AAEL_TAG: u32 = 0x4141_454C;
/// TPM_ALG_SHA384.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// The key of the log in `additional_evidence`.
pub const ADDITIONAL_EVIDENCE_KEY: &str = "cc_eventlog";
/// At most this many events in a log (a longer log is refused, never truncated).
pub const MAX_EVENTS: usize = 1024;
/// At most this many bytes of TCG2 encoding (header, records, terminator): 192 KiB, so
/// a whole log fits one message of the `sim` evidence socket.
pub const MAX_LOG_BYTES: usize = 192 * 1024;
/// The number of runtime measurement registers (CC MR 1..=4, RTMR0..3).
pub const REGISTERS: usize = 4;
/// A register's (and a digest's) size: SHA-384.
pub const DIGEST_LEN: usize = SHA384_LEN;
/// The values of the four registers, RTMR0 first.
pub type Registers = [[u8; SHA384_LEN]; REGISTERS];
/// At most this many bytes of event text (`domain operation content`).
/// 64 KiB: a launch record carries the whole environment, and kubelet adds seven
/// variables per service in the namespace (`enableServiceLinks`).
pub const MAX_EVENT_TEXT: usize = 64 * 1024;

const SHA384_LEN: usize = 48;
const EV_NO_ACTION: u32 = 3;
const STOP: [u8; 8] = [0xFF; 8];
/// Bytes of one record around its event data (index, type, count, alg, digest, size).
const RECORD_OVERHEAD: usize = 4 + 4 + 4 + 2 + SHA384_LEN + 4;
/// The header ([`header`]) and the terminator.
const FRAME_BYTES: usize = 65 + 8;

/// One extend: `register ← SHA-384(register ‖ digest)` (TDX's RTMR extend, trustee's
/// `accumulate_hash`).
pub fn extend_register(register: &mut [u8; SHA384_LEN], digest: &[u8; SHA384_LEN]) {
    let mut h = sha2::Sha384::new();
    h.update(&register[..]);
    h.update(digest);
    *register = h.finalize().into();
}

/// The CC MR index (1..=4) as a register number (0..=3); anything else is an unknown
/// register.
pub fn register_of(index: u32) -> Result<usize, EventLogError> {
    match index {
        1..=4 => Ok(index as usize - 1),
        other => Err(EventLogError::Register(other)),
    }
}

/// What is wrong with an event or a log; one line each.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventLogError {
    #[error("event: {0}")]
    Event(String),
    #[error("event log: {0}")]
    Log(String),
    #[error("event log record {index}: {reason}")]
    Record { index: usize, reason: String },
    #[error("unknown register: CC MR index {0} (1..=4, RTMR0..3)")]
    Register(u32),
}

/// One AAEL event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub domain: String,
    pub operation: String,
    pub content: String,
}

impl Event {
    /// An event, checked as measurement.md §5.2 asks (stricter than guest-components):
    /// domain and operation non-empty printable ASCII without spaces, content printable
    /// without CR or LF, the whole text at most [`MAX_EVENT_TEXT`] bytes.
    pub fn new(domain: &str, operation: &str, content: &str) -> Result<Event, EventLogError> {
        let bad = |why: String| Err(EventLogError::Event(why));
        for (what, field) in [("domain", domain), ("operation", operation)] {
            if field.is_empty() || !field.bytes().all(|b| b.is_ascii_graphic()) {
                return bad(format!(
                    "{what} {field:?} must be printable ASCII without spaces"
                ));
            }
        }
        if content.is_empty() || content.chars().any(char::is_control) {
            return bad(format!(
                "content {content:?} must be printable, without CR or LF"
            ));
        }
        let e = Event {
            domain: domain.into(),
            operation: operation.into(),
            content: content.into(),
        };
        if e.text().len() > MAX_EVENT_TEXT {
            return bad(format!("longer than {MAX_EVENT_TEXT} bytes"));
        }
        Ok(e)
    }

    /// An event from its text `domain operation content` (split at the first two
    /// spaces, as trustee splits it), with [`Event::new`]'s checks.
    pub fn from_text(text: &str) -> Result<Event, EventLogError> {
        let mut parts = text.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(d), Some(o), Some(c)) => Event::new(d, o, c),
            _ => Err(EventLogError::Event(format!(
                "{:?} is not `domain operation content`",
                text.chars().take(80).collect::<String>()
            ))),
        }
    }

    /// CoCo's `PullImage` event for `image` (the reference as pulled) and its manifest
    /// `digest` (`sha256:<hex>`); the content is RFC 8785 JSON.
    pub fn pull_image(image: &str, digest: &str) -> Result<Event, EventLogError> {
        let content = serde_json_canonicalizer::to_string(&json!({
            "image": image,
            "digest": digest,
        }))
        .map_err(|e| EventLogError::Event(e.to_string()))?;
        Event::new(COCO_DOMAIN, PULL_IMAGE, &content)
    }

    /// rune's `ImagePolicy` event: the `kbs:///…` resource of the signature policy the
    /// boot program applies, or `none`.
    pub fn image_policy(policy: Option<&str>) -> Result<Event, EventLogError> {
        Event::new(RUNE_DOMAIN, IMAGE_POLICY, policy.unwrap_or("none"))
    }

    /// rune's `Kbs` event for the KBS at `url` reached with the CA certificates `ca_pem`
    /// (the file's bytes; `None`: the built-in web roots only). The content is RFC 8785
    /// JSON `{"ca_sha256":"<hex>"|null,"url":"…"}`.
    pub fn kbs(url: &str, ca_pem: Option<&[u8]>) -> Result<Event, EventLogError> {
        let ca = ca_pem.map(|pem| hex::encode(sha2::Sha256::digest(pem)));
        let content = serde_json_canonicalizer::to_string(&json!({
            "ca_sha256": ca,
            "url": url,
        }))
        .map_err(|e| EventLogError::Event(e.to_string()))?;
        Event::new(RUNE_DOMAIN, KBS, &content)
    }

    /// rune's `Launch` event (domain [`RUNE_DOMAIN`], operation [`LAUNCH`]) for a
    /// program started as `launch` says. The content is RFC 8785 JSON,
    /// `{"argv":[…],"cwd":"…","env":["NAME=value",…],"gid":N,"groups":[N,…],"uid":N}`
    /// (keys sorted, no spaces, strings escaped as JSON escapes them). Refused, as
    /// every event, past [`MAX_EVENT_TEXT`] bytes of text or with a DEL or C1 control
    /// character in a string (JSON leaves those unescaped).
    pub fn launch(launch: &Launch) -> Result<Event, EventLogError> {
        let content = serde_json_canonicalizer::to_string(&json!({
            "argv": launch.argv,
            "cwd": launch.cwd,
            "env": launch.env,
            "gid": launch.gid,
            "groups": launch.groups,
            "uid": launch.uid,
        }))
        .map_err(|e| EventLogError::Event(e.to_string()))?;
        Event::new(RUNE_DOMAIN, LAUNCH, &content)
    }

    /// `domain operation content`.
    pub fn text(&self) -> String {
        format!("{} {} {}", self.domain, self.operation, self.content)
    }

    /// The TCG2 tagged event: id, size, text.
    pub fn tagged(&self) -> Vec<u8> {
        let text = self.text();
        let mut out = Vec::with_capacity(8 + text.len());
        out.extend_from_slice(&AAEL_TAG.to_le_bytes());
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// The digest extended for it: SHA-384 of the tagged event.
    pub fn digest(&self) -> [u8; SHA384_LEN] {
        sha2::Sha384::digest(self.tagged()).into()
    }
}

/// What a program is started with: the content of rune's `Launch` event
/// ([`Event::launch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// The program's argv, `argv[0]` as given (a name is looked up on the `PATH` of
    /// `env`).
    pub argv: Vec<String>,
    /// The environment as the program receives it, `NAME=value`, in its order, without
    /// the evidence socket's `INCLAVARE_SIM_FD` (the runtime's own).
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The effective user and group ids, and the supplementary groups (ascending).
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// One record of a log, as read: its digest need not match its data (see
/// [`Record::digest_matches_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The CC measurement-register index.
    pub index: u32,
    /// The SHA-384 digest the record carries.
    pub digest: [u8; SHA384_LEN],
    /// The event data: the tagged event.
    pub data: Vec<u8>,
}

impl Record {
    /// Whether the digest is SHA-384 of the event data (trustee's
    /// `digest_matches_event`).
    pub fn digest_matches_event(&self) -> bool {
        sha2::Sha384::digest(&self.data)[..] == self.digest
    }

    /// The event the data holds: the text after the tag split at its first two spaces,
    /// as trustee's `AaelEventEntry::from_bytes` splits it.
    pub fn event(&self) -> Result<Event, String> {
        Event::from_text(self.text()?).map_err(|e| e.to_string())
    }

    fn text(&self) -> Result<&str, String> {
        let (head, text) = self.data.split_at_checked(8).ok_or("short tagged event")?;
        if head[..4] != AAEL_TAG.to_le_bytes() {
            return Err(format!("tag {} is not AAEL", hex::encode(&head[..4])));
        }
        if u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize != text.len() {
            return Err("tagged event size disagrees with the record's".into());
        }
        std::str::from_utf8(text).map_err(|_| "the event is not UTF-8".into())
    }
}

/// An ordered, bounded AAEL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventLog {
    records: Vec<Record>,
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog::default()
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends `event` at [`RUNTIME_MR_INDEX`]; see [`EventLog::extend_at`].
    pub fn extend(&mut self, event: &Event) -> Result<(), EventLogError> {
        self.extend_at(RUNTIME_MR_INDEX, event).map(drop)
    }

    /// Appends `event` at CC MR `index` (1..=4) and returns the digest to extend that
    /// register with. Refused for an unknown register, past [`MAX_EVENTS`] or past
    /// [`MAX_LOG_BYTES`]; the log is unchanged then.
    pub fn extend_at(
        &mut self,
        index: u32,
        event: &Event,
    ) -> Result<[u8; SHA384_LEN], EventLogError> {
        register_of(index)?;
        let data = event.tagged();
        let full = |what: String| {
            Err(EventLogError::Log(format!(
                "full ({what}): {} refused",
                event.text()
            )))
        };
        if self.records.len() >= MAX_EVENTS {
            return full(format!("{MAX_EVENTS} events"));
        }
        if self.encoded_len() + RECORD_OVERHEAD + data.len() > MAX_LOG_BYTES {
            return full(format!("{MAX_LOG_BYTES} bytes"));
        }
        let digest = event.digest();
        self.records.push(Record {
            index,
            digest,
            data,
        });
        Ok(digest)
    }

    /// The size of [`EventLog::to_bytes`].
    pub fn encoded_len(&self) -> usize {
        FRAME_BYTES
            + self
                .records
                .iter()
                .map(|r| RECORD_OVERHEAD + r.data.len())
                .sum::<usize>()
    }

    /// The registers and extend counts the log replays to: each register from 48 zero
    /// bytes, extended with the digest of each of its records in log order (trustee's
    /// `replay_and_match`; digests only, see [`EventLog::check_digests`]).
    pub fn replay(&self) -> (Registers, [u32; REGISTERS]) {
        let mut regs = [[0u8; SHA384_LEN]; REGISTERS];
        let mut counts = [0u32; REGISTERS];
        for r in &self.records {
            // Parsed and built logs hold indexes 1..=4 only.
            let i = r.index as usize - 1;
            extend_register(&mut regs[i], &r.digest);
            counts[i] += 1;
        }
        (regs, counts)
    }

    /// Refuses the log unless it is the one the signed `registers` and extend `counts`
    /// were made by: every record's digest matches its event ([`EventLog::check_digests`]),
    /// and the log replays to every register with as many records as extends.
    ///
    /// The error names the first bad record in log order. A digest that does not match
    /// its event is exact. For a register that does not replay: when the log has more
    /// records than the register had extends and the first ones replay to it, the first
    /// extra record; otherwise the first record of that register (any of them may be the
    /// changed one; a register alone cannot tell which), or the log's length when the log
    /// has none for it (records are missing).
    pub fn check_replay(
        &self,
        registers: &Registers,
        counts: &[u32; REGISTERS],
    ) -> Result<(), EventLogError> {
        self.check_digests()?;
        let mut first: Option<EventLogError> = None;
        for reg in 0..REGISTERS {
            let at: Vec<usize> = (0..self.records.len())
                .filter(|&i| self.records[i].index as usize == reg + 1)
                .collect();
            let fold = |n: usize| {
                let mut v = [0u8; SHA384_LEN];
                for &i in &at[..n] {
                    extend_register(&mut v, &self.records[i].digest);
                }
                v
            };
            let (k, c) = (at.len(), counts[reg] as usize);
            let found = fold(k);
            if k == c && found == registers[reg] {
                continue;
            }
            let index = if k > c && fold(c) == registers[reg] {
                at[c]
            } else {
                at.first().copied().unwrap_or(self.records.len())
            };
            let reason = format!(
                "does not replay to RTMR{reg} (CC MR {}): {k} records give {}, the report has {} after {c} extends",
                reg + 1,
                hex::encode(found),
                hex::encode(registers[reg])
            );
            if first
                .as_ref()
                .is_none_or(|e| matches!(e, EventLogError::Record { index: i, .. } if index < *i))
            {
                first = Some(EventLogError::Record { index, reason });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The TCG2 bytes: header, records, terminator.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = header();
        for r in &self.records {
            out.extend_from_slice(&r.index.to_le_bytes());
            out.extend_from_slice(&EV_EVENT_TAG.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
            out.extend_from_slice(&r.digest);
            out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&r.data);
        }
        out.extend_from_slice(&STOP);
        out
    }

    /// Reads TCG2 bytes. Every length is checked against the bytes left; the header
    /// must declare SHA-384; every record must be an AAEL `EV_EVENT_TAG` with one
    /// SHA-384 digest at CC MR 1..=4; at most [`MAX_EVENTS`] records and
    /// [`MAX_LOG_BYTES`] bytes; the log ends with
    /// 8 × `0xFF` (or `0x00`, which trustee also takes) and nothing after it. A record
    /// whose digest does not match its data is read as is: see
    /// [`EventLog::check_digests`].
    pub fn parse(bytes: &[u8]) -> Result<EventLog, EventLogError> {
        if bytes.len() > MAX_LOG_BYTES {
            return Err(EventLogError::Log(format!(
                "{} bytes, at most {MAX_LOG_BYTES}",
                bytes.len()
            )));
        }
        let mut r = Reader { bytes, at: 0 };
        let log = |why: &str| EventLogError::Log(why.to_string());
        // TCG_PCR_EVENT: index, type, SHA-1 digest, size, the Spec ID event.
        let (_, kind) = (r.u32()?, r.u32()?);
        r.take(20)?;
        let size = r.u32()? as usize;
        let spec = r.take(size)?;
        if kind != EV_NO_ACTION || spec.len() < 29 {
            return Err(log("no TCG Spec ID header"));
        }
        let algs = u32::from_le_bytes(spec[24..28].try_into().expect("4 bytes")) as usize;
        let declared = spec[28..]
            .chunks_exact(4)
            .take(algs)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                )
            })
            .collect::<Vec<_>>();
        if declared.len() != algs || !declared.contains(&(TPM_ALG_SHA384, SHA384_LEN as u16)) {
            return Err(log("the header does not declare SHA-384"));
        }
        let mut records = Vec::new();
        loop {
            let rest = &bytes[r.at..];
            if rest.len() >= 8 && (rest[..8] == STOP || rest[..8] == [0; 8]) {
                if rest.len() != 8 {
                    return Err(log("bytes after the terminator"));
                }
                return Ok(EventLog { records });
            }
            let n = records.len();
            if n == MAX_EVENTS {
                return Err(log(&format!("more than {MAX_EVENTS} events")));
            }
            let at = |e: EventLogError| match e {
                EventLogError::Log(reason) => EventLogError::Record { index: n, reason },
                other => other,
            };
            let (index, kind, count) = (
                r.u32().map_err(at)?,
                r.u32().map_err(at)?,
                r.u32().map_err(at)?,
            );
            let bad = |reason: String| EventLogError::Record { index: n, reason };
            register_of(index).map_err(|e| bad(e.to_string()))?;
            if kind != EV_EVENT_TAG {
                return Err(bad(format!("event type {kind} is not EV_EVENT_TAG")));
            }
            if count != 1 || r.u16().map_err(at)? != TPM_ALG_SHA384 {
                return Err(bad("one SHA-384 digest expected".into()));
            }
            let digest: [u8; SHA384_LEN] = r.take(SHA384_LEN).map_err(at)?.try_into().expect("48");
            let size = r.u32().map_err(at)? as usize;
            if size > MAX_EVENT_TEXT + 8 {
                return Err(bad(format!(
                    "{size}-byte event (at most {})",
                    MAX_EVENT_TEXT + 8
                )));
            }
            let data = r.take(size).map_err(at)?.to_vec();
            let record = Record {
                index,
                digest,
                data,
            };
            record.text().map_err(bad)?;
            records.push(record);
        }
    }

    /// Refuses the log unless every record's digest is SHA-384 of its event and every
    /// event reads as `domain operation content`: the broker trusts the text, and the
    /// text is what a policy reads.
    pub fn check_digests(&self) -> Result<(), EventLogError> {
        for (index, r) in self.records.iter().enumerate() {
            if !r.digest_matches_event() {
                return Err(EventLogError::Record {
                    index,
                    reason: "its SHA-384 digest does not match its event".into(),
                });
            }
            r.event()
                .map_err(|reason| EventLogError::Record { index, reason })?;
        }
        Ok(())
    }

    /// The `additional_evidence` string carrying the log: `""` for an empty log (what
    /// every KBS client sends without devices), else `{"cc_eventlog":"<base64>"}`.
    pub fn to_additional_evidence(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        json!({ ADDITIONAL_EVIDENCE_KEY: STANDARD.encode(self.to_bytes()) }).to_string()
    }

    /// The log an `additional_evidence` string carries (empty for `""`). Anything else
    /// (device evidence, other keys) is refused.
    pub fn from_additional_evidence(s: &str) -> Result<EventLog, EventLogError> {
        if s.is_empty() {
            return Ok(EventLog::new());
        }
        let unsupported = || {
            EventLogError::Log(format!(
                "additional evidence must be {{\"{ADDITIONAL_EVIDENCE_KEY}\": \"<base64>\"}} (device evidence is not supported)"
            ))
        };
        let v: serde_json::Map<String, Value> =
            serde_json::from_str(s).map_err(|_| unsupported())?;
        let (Some(Value::String(b64)), 1) = (v.get(ADDITIONAL_EVIDENCE_KEY), v.len()) else {
            return Err(unsupported());
        };
        let bytes = STANDARD.decode(b64).map_err(|e| {
            EventLogError::Log(format!("{ADDITIONAL_EVIDENCE_KEY} is not base64: {e}"))
        })?;
        EventLog::parse(&bytes)
    }

    /// Trustee's `uefi_event_logs` claims of the records: `index`, `type_name`
    /// (`EV_EVENT_TAG`), `digests` (`[{alg: "SHA-384", digest: <hex>}]`), `event` (base64
    /// of the event data), `digest_matches_event`, and `details` = `{string, unicode_name:
    /// "AAEL", data: {domain, operation, content}}` with `content` parsed as JSON when it
    /// is JSON (as trustee does), else the string.
    pub fn claims(&self) -> Value {
        let entries = self.records.iter().map(|r| {
            let text = r.text().unwrap_or_default();
            let data = r.event().ok().map(|e| {
                let content = serde_json::from_str::<Value>(&e.content)
                    .unwrap_or(Value::String(e.content.clone()));
                json!({"domain": e.domain, "operation": e.operation, "content": content})
            });
            json!({
                "index": r.index,
                "type_name": "EV_EVENT_TAG",
                "digests": [{"alg": "SHA-384", "digest": hex::encode(r.digest)}],
                "event": STANDARD.encode(&r.data),
                "digest_matches_event": r.digest_matches_event(),
                "details": {"string": text, "unicode_name": "AAEL", "data": data},
            })
        });
        Value::Array(entries.collect())
    }
}

/// The Spec ID header of a log without firmware events, as guest-components' fixed
/// `EL_HEADER`: PCR 0, `EV_NO_ACTION`, zero SHA-1 digest, then the Spec ID event with
/// zeros where its signature, platform class and versions go (trustee reads only the
/// algorithm list), declaring SHA-384 only.
fn header() -> Vec<u8> {
    let mut spec = vec![0u8; 24];
    spec.extend_from_slice(&1u32.to_le_bytes());
    spec.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
    spec.extend_from_slice(&(SHA384_LEN as u16).to_le_bytes());
    spec.push(0); // vendorInfoSize
    let mut out = Vec::with_capacity(32 + spec.len());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
    out.extend_from_slice(&[0; 20]);
    out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    out.extend_from_slice(&spec);
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EventLogError> {
        let left = self.bytes.len() - self.at;
        if n > left {
            return Err(EventLogError::Log(format!(
                "truncated: {n} bytes needed at offset {}, {left} left",
                self.at
            )));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, EventLogError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u16(&mut self) -> Result<u16, EventLogError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G:`attestation-agent/attestation-agent/src/eventlog/mod.rs` `test_event_digest`
    /// (SHA-384 case): the TCG2 digest of `domain operation content`.
    #[test]
    fn digest_is_guest_components_vector() {
        let e = Event::new("domain", "operation", "content").unwrap();
        assert_eq!(
            hex::encode(e.digest()),
            "dad5f0e226318ffa9839b75a472c6aa7fdb5834949d0a0a22990cf04d5692440\
             fb00f3aa0609db7e49cd8d793f670d02"
        );
    }

    /// measurement.md §6's derived PullImage vector: the JCS content of busybox with a
    /// zero digest hashes to `dc96d77c…`, and its record is 74 + n bytes.
    #[test]
    fn pull_image_event_is_jcs_and_matches_the_reference_vector() {
        let zero = format!("sha256:{}", "0".repeat(64));
        let e = Event::pull_image("docker.io/library/busybox:latest", &zero).unwrap();
        assert_eq!(
            e.content,
            format!(r#"{{"digest":"{zero}","image":"docker.io/library/busybox:latest"}}"#)
        );
        assert_eq!(
            hex::encode(e.digest()),
            "dc96d77cb3fcad6a1e9b24e24257390d6a0860bff17ad8736947e40fbcc37dc0\
             2447bb06f820db9f93c96be94b829270"
        );
        let mut log = EventLog::new();
        log.extend(&e).unwrap();
        let bytes = log.to_bytes();
        assert_eq!(bytes.len(), header().len() + 74 + e.text().len() + 8);
    }

    /// The KBS event's content by hand (RFC 8785: sorted keys, no spaces); the CA's
    /// digest is FIPS 180-2's SHA-256 vector for "abc"; no CA is JSON null.
    #[test]
    fn kbs_event_names_the_url_and_the_cas_digest() {
        let e = Event::kbs("https://kbs.example:8080", Some(b"abc")).unwrap();
        assert_eq!(
            (e.domain.as_str(), e.operation.as_str()),
            (RUNE_DOMAIN, "Kbs")
        );
        assert_eq!(
            e.content,
            r#"{"ca_sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","url":"https://kbs.example:8080"}"#
        );
        let e = Event::kbs("http://127.0.0.1:1", None).unwrap();
        assert_eq!(
            e.content,
            r#"{"ca_sha256":null,"url":"http://127.0.0.1:1"}"#
        );
    }

    /// The launch event's text written out by hand from its documented form (RFC 8785:
    /// sorted keys, no spaces, `"` escaped), and its digest computed with openssl over
    /// `"LEAA" ‖ u32le(193) ‖ text` (`openssl dgst -sha384`), not by this code.
    #[test]
    fn launch_event_is_jcs_and_matches_openssl() {
        let launch = Launch {
            argv: vec!["/bin/app".into(), "--flag".into(), "a b".into()],
            env: vec![
                "HOME=/root".into(),
                "PATH=/usr/bin:/bin".into(),
                r#"QUOTE=say "hi""#.into(),
            ],
            cwd: "/srv".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![10, 27],
        };
        let e = Event::launch(&launch).unwrap();
        let text = r#"github.com/inclavare-containers/rune Launch {"argv":["/bin/app","--flag","a b"],"cwd":"/srv","env":["HOME=/root","PATH=/usr/bin:/bin","QUOTE=say \"hi\""],"gid":1000,"groups":[10,27],"uid":1000}"#;
        assert_eq!(e.text(), text);
        assert_eq!(text.len(), 193);
        assert_eq!(
            hex::encode(e.digest()),
            "c060658e1430378827fd20ac2030e0a59e94c7860d5953dca4c721659609bbdf\
             de9e8e7e75fae198240830c0eec2f774"
        );
        // A launch that does not fit an event, or holds a character JSON leaves
        // unescaped, is refused rather than cut.
        let long = Launch {
            env: vec![format!("BIG={}", "x".repeat(MAX_EVENT_TEXT))],
            ..launch.clone()
        };
        assert!(Event::launch(&long).is_err());
        let del = Launch {
            argv: vec!["a\u{7f}".into()],
            ..launch.clone()
        };
        assert!(Event::launch(&del).is_err());
        // Whatever the host passes, the content reads back as the launch it records:
        // quotes, backslashes, CR/LF and other C0 characters are escaped, so no string
        // can end the content or forge another field.
        for tricky in [
            "a\"],\"uid\":0,\"x\":[\"",
            "back\\slash",
            "line\nbreak\r\t\u{1}",
            "\u{2028}\u{fffd}é",
            "",
        ] {
            let l = Launch {
                argv: vec![tricky.into()],
                env: vec![format!("K={tricky}")],
                cwd: tricky.into(),
                ..launch.clone()
            };
            let e = Event::launch(&l).unwrap();
            let back = Event::from_text(&e.text()).unwrap();
            let v: Value = serde_json::from_str(&back.content).unwrap();
            assert_eq!(v["argv"], json!([tricky]));
            assert_eq!(v["env"], json!([format!("K={tricky}")]));
            assert_eq!(v["cwd"], json!(tricky));
            assert_eq!(v["uid"], json!(1000));
            assert_eq!(v.as_object().unwrap().len(), 6);
        }
    }

    #[test]
    fn a_log_round_trips_and_its_claims_are_trustees_shape() {
        let mut log = EventLog::new();
        let e = Event::pull_image("r.example/app:1", "sha256:abcd").unwrap();
        log.extend(&e).unwrap();
        log.extend(&Event::new("example.org", "op", "some content").unwrap())
            .unwrap();
        let back = EventLog::from_additional_evidence(&log.to_additional_evidence()).unwrap();
        assert_eq!(back, log);
        back.check_digests().unwrap();
        let c = back.claims();
        assert_eq!(c[0]["index"], 4);
        assert_eq!(c[0]["type_name"], "EV_EVENT_TAG");
        assert_eq!(c[0]["digest_matches_event"], true);
        assert_eq!(c[0]["details"]["unicode_name"], "AAEL");
        assert_eq!(c[0]["details"]["data"]["content"]["digest"], "sha256:abcd");
        assert_eq!(c[0]["details"]["string"], e.text());
        assert_eq!(c[0]["digests"][0]["digest"], hex::encode(e.digest()));
        // The raw event data starts with the tag bytes "LEAA".
        assert!(c[0]["event"].as_str().unwrap().starts_with("TEVBQ"));
        assert_eq!(c[1]["details"]["data"]["content"], "some content");
        assert_eq!(
            EventLog::from_additional_evidence("").unwrap(),
            EventLog::new()
        );
        assert_eq!(EventLog::new().to_additional_evidence(), "");
    }

    #[test]
    fn forged_text_under_a_genuine_digest_is_refused() {
        let mut log = EventLog::new();
        log.extend(&Event::pull_image("r/app:1", "sha256:aaaa").unwrap())
            .unwrap();
        let forged = Event::pull_image("r/app:1", "sha256:bbbb").unwrap();
        log.records[0].data = forged.tagged();
        let back = EventLog::parse(&log.to_bytes()).unwrap();
        assert!(!back.records()[0].digest_matches_event());
        assert_eq!(back.claims()[0]["digest_matches_event"], false);
        assert_eq!(
            back.check_digests().unwrap_err().to_string(),
            "event log record 0: its SHA-384 digest does not match its event"
        );
    }

    #[test]
    fn bad_events_and_logs_are_refused_without_panics() {
        assert!(Event::new("a b", "op", "c").is_err());
        assert!(Event::new("d", "", "c").is_err());
        assert!(Event::new("d", "op", "line\nbreak").is_err());
        assert!(Event::new("d", "op", "cr\rhere").is_err());
        assert!(Event::new("d", "op", &"x".repeat(MAX_EVENT_TEXT)).is_err());
        for line in [
            "",
            "domain",
            "domain op",
            "domain  c",
            "d\tx op c",
            "d op line\n",
        ] {
            let err = Event::from_text(line).unwrap_err().to_string();
            assert!(
                err.starts_with("event: ") && !err.contains('\n'),
                "{line:?}: {err}"
            );
        }
        assert_eq!(
            Event::from_text("d op a b  c").unwrap().content,
            "a b  c",
            "everything after the second space is content"
        );
        let e = Event::new("d", "op", "c").unwrap();
        let mut log = EventLog::new();
        for _ in 0..MAX_EVENTS {
            log.extend(&e).unwrap();
        }
        let err = log.extend(&e).unwrap_err().to_string();
        assert!(err.contains("full (1024 events)"), "{err}");
        assert_eq!(log.encoded_len(), log.to_bytes().len());
        EventLog::parse(&log.to_bytes()).unwrap();
        // One record more than the bound, written by hand: refused by the reader.
        let mut over = log.to_bytes();
        let record = over[header().len()..header().len() + RECORD_OVERHEAD + 14].to_vec();
        let end = over.len() - 8;
        over.splice(end..end, record);
        assert_eq!(
            EventLog::parse(&over).unwrap_err().to_string(),
            "event log: more than 1024 events"
        );
        // The byte bound, for the writer and the reader.
        let big = Event::new("d", "op", &"x".repeat(MAX_EVENT_TEXT - 5)).unwrap();
        let mut log = EventLog::new();
        while log.extend(&big).is_ok() {}
        assert!(log.encoded_len() <= MAX_LOG_BYTES);
        let err = log.extend(&big).unwrap_err().to_string();
        assert!(err.contains("full (196608 bytes)"), "{err}");
        let mut long = log.to_bytes();
        long.resize(MAX_LOG_BYTES + 1, 0);
        assert_eq!(
            EventLog::parse(&long).unwrap_err().to_string(),
            "event log: 196609 bytes, at most 196608"
        );

        let mut log = EventLog::new();
        for i in 1..=4 {
            log.extend_at(i, &e).unwrap();
        }
        let bytes = log.to_bytes();
        // Every truncation is an error, never a panic or a shorter log.
        for n in 0..bytes.len() {
            assert!(EventLog::parse(&bytes[..n]).is_err(), "{n}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(EventLog::parse(&trailing).is_err());
        // A record at an index no register has, written and read.
        for bad in [0, 5, 9, 17] {
            assert_eq!(
                log.clone().extend_at(bad, &e).unwrap_err().to_string(),
                format!("unknown register: CC MR index {bad} (1..=4, RTMR0..3)")
            );
        }
        let mut b = bytes.clone();
        let at = header().len();
        b[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(
            EventLog::parse(&b).unwrap_err().to_string(),
            "event log record 0: unknown register: CC MR index 9 (1..=4, RTMR0..3)"
        );
        for s in [
            "{}",
            "[]",
            r#"{"nvidia":{}}"#,
            r#"{"cc_eventlog":"%%"}"#,
            "x",
        ] {
            assert!(EventLog::from_additional_evidence(s).is_err(), "{s}");
        }
    }

    /// SHA-384 computed here from the spec's formulas, not by the code under test.
    fn sha384(parts: &[&[u8]]) -> [u8; 48] {
        let mut h = sha2::Sha384::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    /// measurement.md §6, derived vector: CDH's (non-JCS) PullImage content for busybox
    /// with a zero digest; RTMR3 after one extend from zero is `9a7a66a2…`.
    #[test]
    fn one_extend_matches_the_reference_vector() {
        let content = format!(
            r#"{{"image":"docker.io/library/busybox:latest", "digest":"sha256:{}"}}"#,
            "0".repeat(64)
        );
        let e = Event::new(COCO_DOMAIN, PULL_IMAGE, &content).unwrap();
        assert_eq!(
            hex::encode(e.digest()),
            "9260a402ea3715e9d624c127034073db6cfee19fd5a002ae4f4a2eae0ed6084e\
             7f0c6f4195bb69e290d50c7563ecf46b"
        );
        let mut log = EventLog::new();
        log.extend(&e).unwrap();
        assert_eq!(log.to_bytes().len(), header().len() + 247 + 8);
        let (regs, counts) = log.replay();
        assert_eq!(
            hex::encode(regs[3]),
            "9a7a66a292b40e2bab63502cc13fcf8ce39d3ccf8cf112966cd2e5f45f4bf115\
             5d6b5ccfc4551cc93a6f350d21baee24"
        );
        assert_eq!(counts, [0, 0, 0, 1]);
        assert_eq!(regs[..3], [[0; 48]; 3]);
    }

    fn sample_log() -> (EventLog, Registers, [u32; 4]) {
        // Expected registers by the spec formula: R = SHA-384(R || SHA-384(tagged)).
        let mut log = EventLog::new();
        let mut regs = [[0u8; 48]; 4];
        let mut counts = [0u32; 4];
        for (i, (mr, text)) in [(4, "a"), (2, "b"), (4, "c"), (4, "d"), (1, "e")]
            .into_iter()
            .enumerate()
        {
            let content = format!("{text}{i}");
            let e = Event::new("example.org", "op", &content).unwrap();
            log.extend_at(mr, &e).unwrap();
            let line = format!("example.org op {content}");
            let tagged = [
                &b"LEAA"[..],
                &(line.len() as u32).to_le_bytes(),
                line.as_bytes(),
            ]
            .concat();
            let r = mr as usize - 1;
            regs[r] = sha384(&[&regs[r], &sha384(&[&tagged])]);
            counts[r] += 1;
        }
        (log, regs, counts)
    }

    #[test]
    fn a_log_replays_to_its_registers_and_names_the_first_bad_record() {
        let (log, regs, counts) = sample_log();
        assert_eq!(log.replay(), (regs, counts));
        log.check_replay(&regs, &counts).unwrap();
        let round = EventLog::parse(&log.to_bytes()).unwrap();
        round.check_replay(&regs, &counts).unwrap();

        let err = |l: &EventLog| l.check_replay(&regs, &counts).unwrap_err();
        let index = |e: EventLogError| match e {
            EventLogError::Record { index, .. } => index,
            other => panic!("{other}"),
        };
        // Reordering records of different registers keeps the replay; swapping two of
        // the same register breaks it, at that register's first record.
        let mut l = log.clone();
        l.records.swap(0, 1);
        l.check_replay(&regs, &counts).unwrap();
        let mut l = log.clone();
        l.records.swap(2, 3);
        assert_eq!(index(err(&l)), 0);
        // A record added at the end: exactly that one.
        let mut l = log.clone();
        l.extend(&Event::new("x", "y", "z").unwrap()).unwrap();
        let e = err(&l);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "event log record 5: does not replay to RTMR3 (CC MR 4): 4 records give"
            ) && text.ends_with("after 3 extends")
                && !text.contains('\n'),
            "{text}"
        );
        // Removed: the register's first record, or the end when none is left.
        let mut l = log.clone();
        l.records.remove(4);
        assert_eq!(index(err(&l)), 4);
        let mut l = log.clone();
        l.records.remove(2);
        assert_eq!(index(err(&l)), 0);
        // Forged text under a genuine digest: that record, before any replay.
        let mut l = log.clone();
        l.records[3].data = Event::new("example.org", "op", "forged").unwrap().tagged();
        assert_eq!(
            err(&l).to_string(),
            "event log record 3: its SHA-384 digest does not match its event"
        );
        // A consistent record whose digest was replaced with its own: replay fails.
        let mut l = log.clone();
        let forged = Event::new("example.org", "op", "forged").unwrap();
        l.records[2] = Record {
            index: 4,
            digest: forged.digest(),
            data: forged.tagged(),
        };
        assert_eq!(index(err(&l)), 0);
        // Registers that went unlogged (the trustee#1056 case): the log's end.
        let mut more = counts;
        more[2] = 1;
        let mut r3 = regs;
        r3[2] = [7; 48];
        assert_eq!(index(log.check_replay(&r3, &more).unwrap_err()), 5);
    }
}
