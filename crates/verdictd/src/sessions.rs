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

struct Entry<T> {
    value: T,
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
    ttl: Duration,
    seq: u64,
}

impl<T> Bounded<T> {
    fn new(max: usize, ttl: Duration) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            max,
            ttl,
            seq: 0,
        }
    }

    fn live(&self, slot: &(Id, u64, Instant)) -> bool {
        self.map.get(&slot.0).is_some_and(|e| e.seq == slot.1)
    }

    /// Drops expired entries and stale slots from the front, then the oldest live
    /// entries while more than `keep` remain.
    fn trim(&mut self, now: Instant, keep: usize) {
        while let Some(front) = self.order.front().copied() {
            let live = self.live(&front);
            if !live {
                self.order.pop_front();
            } else if front.2 <= now || self.map.len() > keep {
                self.map.remove(&front.0);
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

    fn insert(&mut self, id: Id, value: T, now: Instant) -> Instant {
        self.trim(now, self.max.saturating_sub(1));
        self.seq += 1;
        let expires = now + self.ttl;
        self.map.insert(
            id,
            Entry {
                value,
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
            self.map.remove(id);
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
    /// size of each table.
    pub fn new(
        timeout: Duration,
        max_sessions: usize,
        challenge_timeout: Duration,
        max_challenges: usize,
    ) -> Sessions {
        Sessions {
            tables: Mutex::new(Tables {
                challenged: Bounded::new(max_challenges.max(1), challenge_timeout),
                attested: Bounded::new(max_sessions.max(1), timeout),
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
            .insert(id, state, now);
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
            t.challenged.map.remove(&key);
            t.attested.insert(key, token, now);
        }
        SystemTime::now() + self.timeout
    }

    /// Drops expired sessions; returns how many are left.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut t = self.tables.lock().expect("session table");
        let (cm, am) = (t.challenged.max, t.attested.max);
        t.challenged.trim(now, cm);
        t.attested.trim(now, am);
        t.challenged.map.retain(|_, e| e.expires > now);
        t.attested.map.retain(|_, e| e.expires > now);
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
        let s = Sessions::new(Duration::from_millis(200), 2, Duration::from_millis(50), 2);
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
        let s = Sessions::new(Duration::from_secs(60), 10, Duration::from_secs(60), 10);
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
}
