//! RCAR sessions, keyed by the `kbs-session-id` cookie.
//!
//! `/auth` needs no credentials, so the table must hold under any load without
//! refusing anyone and without growing. Two bounded tables, each evicting by expiry and
//! then oldest first:
//!
//! - **challenged** sessions (after `/auth`, before `/attest`): a few dozen bytes each
//!   (TEE, nonce, hash), kept `challenge_timeout` (seconds: a client attests right
//!   after its challenge);
//! - **attested** sessions: the EAR token alone (its claims are decoded again when a
//!   cookie GET needs them), kept `timeout` (Trustee's session timeout, 5 minutes).
//!   This table is bounded by count (`max_sessions`) and by the tokens' total length
//!   (`max_session_bytes`): a token's size follows what the client sent (init-data
//!   claims, sample evidence), so the count alone bounds nothing. A token longer than
//!   the whole budget is not kept at all: its client still has the token (Bearer).
//!
//! A full table evicts its oldest session instead of answering 429: an evicted client
//! gets 401 on its next request, which makes a KBS client run RCAR again (Trustee's
//! answer to an expired session).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use kbs_protocol::HashAlgorithm;
use rand::RngCore;

use crate::KbsError;

/// A session's state.
#[derive(Debug, Clone)]
pub enum State {
    /// Challenged, waiting for evidence.
    Authed {
        tee: rats::Tee,
        /// The 32 random bytes of the challenge (sent standard-base64 encoded).
        nonce: [u8; 32],
        hash: HashAlgorithm,
    },
    /// Attested: the EAR token issued to it.
    Attested { token: String },
}

/// A session id: 16 random bytes, 32 hex characters in the cookie.
type Id = [u8; 16];

/// Bytes an attested session is charged beyond its token's length: the map entry, the
/// queue slot and the allocator's rounding (an estimate, in bytes).
pub const ENTRY_OVERHEAD: usize = 128;

struct Entry<T> {
    value: T,
    /// The bytes this entry is charged (see [`Bounded::bytes`]).
    size: usize,
    expires: Instant,
    /// The insertion this entry came from, to tell stale queue slots from live ones.
    seq: u64,
}

/// A map bounded in size, evicting expired entries and then the oldest.
struct Bounded<T> {
    map: HashMap<Id, Entry<T>>,
    /// Insertion order: (id, seq, expiry). A slot whose seq no longer matches the
    /// map's entry is stale (the session moved on or was removed).
    order: VecDeque<(Id, u64, Instant)>,
    max: usize,
    /// Sum of the live entries' sizes, and its bound.
    bytes: usize,
    max_bytes: usize,
    ttl: Duration,
    seq: u64,
}

impl<T> Bounded<T> {
    fn new(max: usize, max_bytes: usize, ttl: Duration) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            max,
            bytes: 0,
            max_bytes,
            ttl,
            seq: 0,
        }
    }

    fn live(&self, slot: &(Id, u64, Instant)) -> bool {
        self.map.get(&slot.0).is_some_and(|e| e.seq == slot.1)
    }

    fn remove(&mut self, id: &Id) -> Option<Entry<T>> {
        let e = self.map.remove(id)?;
        self.bytes -= e.size;
        Some(e)
    }

    /// Drops expired entries and stale slots from the front, then the oldest live
    /// entries while more than `keep` remain or they hold more than `keep_bytes`.
    fn trim(&mut self, now: Instant, keep: usize, keep_bytes: usize) {
        while let Some(front) = self.order.front().copied() {
            let live = self.live(&front);
            if !live {
                self.order.pop_front();
            } else if front.2 <= now || self.map.len() > keep || self.bytes > keep_bytes {
                self.remove(&front.0);
                self.order.pop_front();
            } else {
                break;
            }
        }
        // Stale slots behind live ones (sessions that moved on) are compacted away
        // before they outgrow the table.
        if self.order.len() > 2 * self.max + 64 {
            let map = &self.map;
            self.order
                .retain(|s| map.get(&s.0).is_some_and(|e| e.seq == s.1));
        }
    }

    /// Inserts `value`, charged `size` bytes, evicting expired and then the oldest
    /// entries to make room; a value larger than the whole byte budget is not kept.
    fn insert(&mut self, id: Id, value: T, size: usize, now: Instant) -> Instant {
        let expires = now + self.ttl;
        self.remove(&id);
        if size > self.max_bytes {
            return expires;
        }
        self.trim(now, self.max.saturating_sub(1), self.max_bytes - size);
        self.seq += 1;
        self.bytes += size;
        self.map.insert(
            id,
            Entry {
                value,
                size,
                expires,
                seq: self.seq,
            },
        );
        self.order.push_back((id, self.seq, expires));
        expires
    }

    /// The live entry, or `Err(true)` if it expired (and is now removed), `Err(false)`
    /// if there is none.
    fn get(&mut self, id: &Id, now: Instant) -> Result<&T, bool> {
        let expired = match self.map.get(id) {
            None => return Err(false),
            Some(e) => e.expires <= now,
        };
        if expired {
            self.remove(id);
            return Err(true);
        }
        Ok(&self.map[id].value)
    }
}

struct Tables {
    challenged: Bounded<State>,
    attested: Bounded<String>,
}

/// Both session tables behind one lock (each operation is a few map operations).
pub struct Sessions {
    tables: Mutex<Tables>,
    timeout: Duration,
}

fn parse_id(id: &str) -> Option<Id> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(id, &mut out).ok()?;
    Some(out)
}

impl Sessions {
    /// `timeout`: how long an attested session lives; `challenge_timeout`: how long a
    /// challenge waits for its attestation; `max_sessions` and `max_challenges`: the
    /// size of each table; `max_session_bytes`: the most bytes of tokens the attested
    /// table holds (each token is charged its length plus [`ENTRY_OVERHEAD`]).
    pub fn new(
        timeout: Duration,
        max_sessions: usize,
        max_session_bytes: usize,
        challenge_timeout: Duration,
        max_challenges: usize,
    ) -> Sessions {
        Sessions {
            tables: Mutex::new(Tables {
                challenged: Bounded::new(max_challenges.max(1), usize::MAX, challenge_timeout),
                attested: Bounded::new(max_sessions.max(1), max_session_bytes, timeout),
            }),
            timeout,
        }
    }

    /// Opens a challenged session (evicting the oldest one if the table is full);
    /// returns its id (32 hex characters) and when it expires.
    pub fn open(&self, state: State) -> (String, SystemTime) {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let now = Instant::now();
        let expires = self
            .tables
            .lock()
            .expect("session table")
            .challenged
            .insert(id, state, 0, now);
        (hex::encode(id), SystemTime::now() + (expires - now))
    }

    /// The session's state; an expired session is removed and refused.
    pub fn get(&self, id: &str) -> Result<State, KbsError> {
        let Some(key) = parse_id(id) else {
            return Err(KbsError::Attestation("no such session".into()));
        };
        let now = Instant::now();
        let mut t = self.tables.lock().expect("session table");
        let expired = match t.attested.get(&key, now) {
            Ok(token) => {
                return Ok(State::Attested {
                    token: token.clone(),
                })
            }
            Err(expired) => expired,
        };
        match t.challenged.get(&key, now) {
            Ok(state) => Ok(state.clone()),
            Err(e) if e || expired => Err(KbsError::Attestation("session expired.".into())),
            Err(_) => Err(KbsError::Attestation("no such session".into())),
        }
    }

    /// Marks a session attested with `token`: it moves to the attested table and
    /// lives `timeout` from now. Returns when it expires.
    pub fn attested(&self, id: &str, token: String) -> SystemTime {
        let now = Instant::now();
        if let Some(key) = parse_id(id) {
            let mut t = self.tables.lock().expect("session table");
            t.challenged.remove(&key);
            let size = token.len() + ENTRY_OVERHEAD;
            t.attested.insert(key, token, size, now);
        }
        SystemTime::now() + self.timeout
    }

    /// Drops expired sessions; returns how many are left.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut t = self.tables.lock().expect("session table");
        let (cm, am, ab) = (t.challenged.max, t.attested.max, t.attested.max_bytes);
        t.challenged.trim(now, cm, usize::MAX);
        t.attested.trim(now, am, ab);
        t.challenged.map.retain(|_, e| e.expires > now);
        let before = t.attested.map.len();
        t.attested.map.retain(|_, e| e.expires > now);
        if t.attested.map.len() != before {
            t.attested.bytes = t.attested.map.values().map(|e| e.size).sum();
        }
        t.challenged.map.len() + t.attested.map.len()
    }

    /// Open sessions, both tables.
    pub fn len(&self) -> usize {
        let t = self.tables.lock().expect("session table");
        t.challenged.map.len() + t.attested.map.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authed() -> State {
        State::Authed {
            tee: rats::Tee::Sample,
            nonce: [0; 32],
            hash: HashAlgorithm::Sha384,
        }
    }

    #[test]
    fn full_tables_evict_the_oldest_and_expire() {
        let s = Sessions::new(
            Duration::from_millis(200),
            2,
            usize::MAX,
            Duration::from_millis(50),
            2,
        );
        let (a, _) = s.open(authed());
        let (b, _) = s.open(authed());
        // A third challenge evicts the oldest one, never refuses.
        let (c, _) = s.open(authed());
        assert!(s.get(&a).is_err());
        assert!(s.get(&b).is_ok() && s.get(&c).is_ok());
        assert_eq!(c.len(), 32);
        // Attested sessions live longer than challenges.
        s.attested(&b, "token-b".into());
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(s.get(&b), Ok(State::Attested { token }) if token == "token-b"));
        let err = s.get(&c).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        assert_eq!(s.sweep(), 1);
        // The attested table evicts its oldest too.
        for i in 0..3 {
            let (id, _) = s.open(authed());
            s.attested(&id, format!("t{i}"));
        }
        assert!(s.get(&b).is_err());
        assert_eq!(s.len(), 2);
        std::thread::sleep(Duration::from_millis(210));
        assert_eq!(s.sweep(), 0);
        assert!(s.get("not hex").is_err());
    }

    #[test]
    fn churn_keeps_the_queues_bounded() {
        let s = Sessions::new(
            Duration::from_secs(60),
            10,
            usize::MAX,
            Duration::from_secs(60),
            10,
        );
        for _ in 0..10_000 {
            let (id, _) = s.open(authed());
            s.attested(&id, "t".into());
        }
        let t = s.tables.lock().unwrap();
        assert_eq!(t.attested.map.len(), 10);
        assert!(t.attested.order.len() <= 2 * 10 + 64);
        assert!(t.challenged.order.len() <= 2 * 10 + 64);
        assert!(t.challenged.map.is_empty());
    }

    #[test]
    fn the_attested_table_keeps_within_its_byte_budget() {
        // Room for three tokens of 1000 bytes (each charged 1000 + ENTRY_OVERHEAD).
        let budget = 3 * (1000 + ENTRY_OVERHEAD);
        let s = Sessions::new(
            Duration::from_secs(60),
            100,
            budget,
            Duration::from_secs(60),
            100,
        );
        let mut ids = vec![];
        for i in 0..5 {
            let (id, _) = s.open(authed());
            s.attested(&id, format!("{i}").repeat(1000));
            ids.push(id);
        }
        // The count allows 100, the bytes three: the two oldest are gone.
        assert!(s.get(&ids[0]).is_err() && s.get(&ids[1]).is_err());
        for id in &ids[2..] {
            assert!(matches!(s.get(id), Ok(State::Attested { .. })));
        }
        let bytes = s.tables.lock().unwrap().attested.bytes;
        assert_eq!(bytes, budget);
        // A token larger than the whole budget is not kept, and evicts nobody.
        let (big, _) = s.open(authed());
        s.attested(&big, "x".repeat(budget));
        assert!(s.get(&big).is_err());
        assert!(s.get(&ids[4]).is_ok());
        assert_eq!(s.tables.lock().unwrap().attested.bytes, budget);
    }
}
