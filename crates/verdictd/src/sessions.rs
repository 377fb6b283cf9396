//! RCAR sessions, keyed by the `kbs-session-id` cookie.
//!
//! `/auth` needs no credentials, so it must hold under any load without refusing anyone,
//! without growing, and without one client's flood evicting anyone else's challenge:
//!
//! - **challenges** (after `/auth`, before `/attest`) are stateless: the cookie itself
//!   carries the TEE, the nonce and the expiry (Unix milliseconds), with an HMAC-SHA256 over
//!   them under a per-process random key (cookie = hex of `tee index (1) | nonce (32) |
//!   expiry (8, big-endian) | MAC (32)`, 146 characters). `/auth` stores nothing; a
//!   challenge is good until its expiry (`challenge_timeout`, Trustee's 5 minutes)
//!   unless it was forged, altered or already used. A restart invalidates outstanding
//!   challenges (the key is new): those clients get 401 and run RCAR again.
//! - **used challenges**: a challenge that attested successfully is remembered (16
//!   bytes of its MAC) until it expires, in a table bounded by `max_challenges`, so it
//!   cannot open a second session; only successful attestations fill this table.
//! - **attested** sessions, keyed by the challenge cookie's MAC: the EAR token alone
//!   (its claims are decoded again when a cookie GET needs them), kept `timeout`
//!   (Trustee's session timeout, 5 minutes). The cookie does not change at `/attest`.
//!   This table is bounded by count (`max_sessions`) and by the tokens' total length
//!   (`max_session_bytes`): a token's size follows what the client sent (init-data
//!   claims, sample evidence), so the count alone bounds nothing. A token longer than
//!   the whole budget is not kept at all: its client still has the token (Bearer).
//!
//! A full table evicts its oldest entry (expired ones first) instead of answering 429:
//! an evicted client gets 401 on its next request, which makes a KBS client run RCAR
//! again (Trustee's answer to an expired session).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
pub type Id = [u8; 16];

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
        self.insert_for(id, value, size, now, self.ttl)
    }

    /// [`Bounded::insert`] with its own lifetime `ttl` (at most the table's).
    fn insert_for(
        &mut self,
        id: Id,
        value: T,
        size: usize,
        now: Instant,
        ttl: Duration,
    ) -> Instant {
        let expires = now + ttl.min(self.ttl);
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
    /// Used challenges: MAC prefix -> nothing, until the challenge's expiry.
    used: Bounded<()>,
    attested: Bounded<String>,
}

/// The session tables behind one lock (each operation is a few map operations), and
/// the key challenges are authenticated with.
pub struct Sessions {
    tables: Mutex<Tables>,
    key: ring::hmac::Key,
    timeout: Duration,
    challenge_timeout: Duration,
}

/// Cookie layout (bytes): TEE index, nonce, expiry, MAC.
const PAYLOAD: usize = 1 + 32 + 8;
const COOKIE: usize = PAYLOAD + 32;

/// A verified challenge cookie.
pub struct Challenge {
    pub tee: rats::Tee,
    pub nonce: [u8; 32],
    /// Unix milliseconds.
    pub expires: u64,
    /// The table key: the MAC's first 16 bytes.
    pub id: Id,
}

/// Unix milliseconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn unknown() -> KbsError {
    KbsError::Attestation("no such session".into())
}

impl Sessions {
    /// `timeout`: how long an attested session lives; `max_sessions` and
    /// `max_session_bytes`: the attested table's bounds (each token is charged its
    /// length plus [`ENTRY_OVERHEAD`]); `challenge_timeout`: how long a challenge is
    /// good for; `max_challenges`: used challenges remembered.
    pub fn new(
        timeout: Duration,
        max_sessions: usize,
        max_session_bytes: usize,
        challenge_timeout: Duration,
        max_challenges: usize,
    ) -> Sessions {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        Self::with_key(
            &*key,
            timeout,
            max_sessions,
            max_session_bytes,
            challenge_timeout,
            max_challenges,
        )
    }

    /// [`Sessions::new`] with the challenge MAC key given: replicas sharing it accept
    /// each other's challenges (the postgres backend keeps it in the database).
    pub fn with_key(
        key: &[u8],
        timeout: Duration,
        max_sessions: usize,
        max_session_bytes: usize,
        challenge_timeout: Duration,
        max_challenges: usize,
    ) -> Sessions {
        Sessions {
            tables: Mutex::new(Tables {
                used: Bounded::new(max_challenges.max(1), usize::MAX, challenge_timeout),
                attested: Bounded::new(max_sessions.max(1), max_session_bytes, timeout),
            }),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            timeout,
            challenge_timeout,
        }
    }

    /// How long an attested session lives.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A challenge for `tee` and `nonce`: the cookie value (146 hex characters) and
    /// when it expires. Nothing is stored.
    pub fn open(&self, tee: rats::Tee, nonce: [u8; 32]) -> (String, SystemTime) {
        let expires = unix_now() + self.challenge_timeout.as_millis() as u64;
        let index = rats::Tee::ALL.iter().position(|t| *t == tee).unwrap_or(0) as u8;
        let mut cookie = Vec::with_capacity(COOKIE);
        cookie.push(index);
        cookie.extend_from_slice(&nonce);
        cookie.extend_from_slice(&expires.to_be_bytes());
        let tag = ring::hmac::sign(&self.key, &cookie);
        cookie.extend_from_slice(tag.as_ref());
        (
            hex::encode(cookie),
            UNIX_EPOCH + Duration::from_millis(expires),
        )
    }

    /// The challenge a cookie carries, if its MAC is ours (expiry not checked).
    pub fn challenge(&self, cookie: &str) -> Result<Challenge, KbsError> {
        let mut raw = [0u8; COOKIE];
        hex::decode_to_slice(cookie, &mut raw).map_err(|_| unknown())?;
        let (payload, tag) = raw.split_at(PAYLOAD);
        ring::hmac::verify(&self.key, payload, tag).map_err(|_| unknown())?;
        let tee = *rats::Tee::ALL
            .get(payload[0] as usize)
            .ok_or_else(unknown)?;
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&payload[1..33]);
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&payload[33..]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&tag[..16]);
        Ok(Challenge {
            tee,
            nonce,
            expires: u64::from_be_bytes(expires),
            id,
        })
    }

    /// The session's state: attested (its token), or a challenge still good for an
    /// attestation. Forged, expired and used challenges are refused.
    pub fn get(&self, cookie: &str) -> Result<State, KbsError> {
        let c = self.challenge(cookie)?;
        let now = Instant::now();
        let mut t = self.tables.lock().expect("session table");
        let expired = match t.attested.get(&c.id, now) {
            Ok(token) => {
                return Ok(State::Attested {
                    token: token.clone(),
                })
            }
            Err(expired) => expired,
        };
        if expired || c.expires <= unix_now() {
            return Err(KbsError::Attestation("session expired.".into()));
        }
        if t.used.get(&c.id, now).is_ok() {
            return Err(KbsError::Attestation(
                "this challenge was already used: POST /kbs/v0/auth again".into(),
            ));
        }
        Ok(State::Authed {
            tee: c.tee,
            nonce: c.nonce,
            hash: HashAlgorithm::Sha384,
        })
    }

    /// Marks a session attested with `token`: the challenge is recorded as used and
    /// the session lives `timeout` from now. Returns when it expires.
    pub fn attested(&self, cookie: &str, token: String) -> SystemTime {
        let now = Instant::now();
        if let Ok(c) = self.challenge(cookie) {
            let left = Duration::from_millis(c.expires.saturating_sub(unix_now()));
            let mut t = self.tables.lock().expect("session table");
            t.used.insert_for(c.id, (), 0, now, left);
            let size = token.len() + ENTRY_OVERHEAD;
            t.attested.insert(c.id, token, size, now);
        }
        SystemTime::now() + self.timeout
    }

    /// Drops expired entries; returns how many attested sessions are left.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut t = self.tables.lock().expect("session table");
        let (um, am, ab) = (t.used.max, t.attested.max, t.attested.max_bytes);
        t.used.trim(now, um, usize::MAX);
        t.attested.trim(now, am, ab);
        t.used.map.retain(|_, e| e.expires > now);
        let before = t.attested.map.len();
        t.attested.map.retain(|_, e| e.expires > now);
        if t.attested.map.len() != before {
            t.attested.bytes = t.attested.map.values().map(|e| e.size).sum();
        }
        t.attested.map.len()
    }

    /// Attested sessions open (challenges are not stored).
    pub fn len(&self) -> usize {
        self.tables
            .lock()
            .expect("session table")
            .attested
            .map
            .len()
    }

    /// Whether no attested session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(timeout_ms: u64, max: usize, bytes: usize, challenge_s: u64) -> Sessions {
        Sessions::new(
            Duration::from_millis(timeout_ms),
            max,
            bytes,
            Duration::from_secs(challenge_s),
            max,
        )
    }

    #[test]
    fn challenges_are_stateless_authenticated_and_used_once() {
        let s = sessions(200, 2, usize::MAX, 60);
        // Any number of challenges, none stored, all good.
        let ids: Vec<String> = (0..1000)
            .map(|_| s.open(rats::Tee::Sample, [7; 32]).0)
            .collect();
        assert_eq!(ids[0].len(), 146);
        assert_eq!(s.tables.lock().unwrap().used.map.len(), 0);
        for id in [&ids[0], &ids[999]] {
            match s.get(id) {
                Ok(State::Authed { tee, nonce, .. }) => {
                    assert_eq!((tee, nonce), (rats::Tee::Sample, [7; 32]))
                }
                other => panic!("{other:?}"),
            }
        }
        // A changed TEE, nonce or expiry fails the MAC; so does another process's key.
        for at in [0, 1, 40, 72] {
            let mut raw = hex::decode(&ids[0]).unwrap();
            raw[at] ^= 1;
            let err = s.get(&hex::encode(raw)).unwrap_err().to_string();
            assert!(err.contains("no such session"), "{err}");
        }
        assert!(sessions(200, 2, usize::MAX, 60).get(&ids[0]).is_err());
        assert!(s.get("not hex").is_err());
        // Attested: the token comes back; after the session expires the challenge
        // is used and cannot attest again.
        s.attested(&ids[0], "token-0".into());
        assert!(matches!(s.get(&ids[0]), Ok(State::Attested { token }) if token == "token-0"));
        std::thread::sleep(Duration::from_millis(210));
        let err = s.get(&ids[0]).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        assert_eq!(s.sweep(), 0);
        let err = s.get(&ids[0]).unwrap_err().to_string();
        assert!(err.contains("already used"), "{err}");
    }

    #[test]
    fn challenges_expire() {
        let s = sessions(200, 2, usize::MAX, 1);
        let (id, expires) = s.open(rats::Tee::Sample, [0; 32]);
        assert!(expires > SystemTime::now());
        assert!(s.get(&id).is_ok());
        std::thread::sleep(Duration::from_millis(1100));
        let err = s.get(&id).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
    }

    #[test]
    fn full_tables_evict_the_oldest() {
        let s = sessions(60_000, 2, usize::MAX, 60);
        let ids: Vec<String> = (0..3)
            .map(|i| {
                let (id, _) = s.open(rats::Tee::Sample, [i as u8; 32]);
                s.attested(&id, format!("t{i}"));
                id
            })
            .collect();
        // The oldest session is gone (its challenge, forgotten by the used table of
        // two, is only a challenge again).
        assert!(matches!(s.get(&ids[0]), Ok(State::Authed { .. })));
        for id in &ids[1..] {
            assert!(matches!(s.get(id), Ok(State::Attested { .. })));
        }
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn churn_keeps_the_queues_bounded() {
        let s = sessions(60_000, 10, usize::MAX, 60);
        for i in 0..10_000u32 {
            let mut nonce = [0; 32];
            nonce[..4].copy_from_slice(&i.to_le_bytes());
            let (id, _) = s.open(rats::Tee::Sample, nonce);
            s.attested(&id, "t".into());
        }
        let t = s.tables.lock().unwrap();
        assert_eq!(t.attested.map.len(), 10);
        assert!(t.attested.order.len() <= 2 * 10 + 64);
        assert!(t.used.order.len() <= 2 * 10 + 64);
        assert_eq!(t.used.map.len(), 10);
    }

    #[test]
    fn the_attested_table_keeps_within_its_byte_budget() {
        // Room for three tokens of 1000 bytes (each charged 1000 + ENTRY_OVERHEAD).
        let budget = 3 * (1000 + ENTRY_OVERHEAD);
        let s = sessions(60_000, 100, budget, 60);
        let mut ids = vec![];
        for i in 0..5u8 {
            let (id, _) = s.open(rats::Tee::Sample, [i; 32]);
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
        let (big, _) = s.open(rats::Tee::Sample, [9; 32]);
        s.attested(&big, "x".repeat(budget));
        assert!(!matches!(s.get(&big), Ok(State::Attested { .. })));
        assert!(s.get(&ids[4]).is_ok());
        assert_eq!(s.tables.lock().unwrap().attested.bytes, budget);
    }
}
