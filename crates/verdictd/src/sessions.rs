//! RCAR sessions, keyed by the `kbs-session-id` cookie. The table is bounded: `/auth`
//! needs no credentials, so an unbounded table would let anyone exhaust memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use kbs_protocol::HashAlgorithm;
use rand::RngCore;

use crate::KbsError;

#[derive(Debug, Clone)]
pub enum State {
    /// Challenged, waiting for evidence.
    Authed {
        tee: String,
        nonce: String,
        hash: HashAlgorithm,
    },
    /// Attested: the token and its claims.
    Attested {
        token: String,
        claims: serde_json::Value,
    },
}

struct Session {
    state: State,
    expires: Instant,
}

pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    timeout: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(timeout: Duration, max: usize) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            timeout,
            max,
        }
    }

    /// Opens a session; returns its id and when it expires.
    pub fn open(&self, state: State) -> Result<(String, SystemTime), KbsError> {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let id = hex::encode(id);
        let now = Instant::now();
        let mut table = self.table.lock().expect("session table");
        if table.len() >= self.max {
            table.retain(|_, s| s.expires > now);
            if table.len() >= self.max {
                return Err(KbsError::TooManySessions(format!(
                    "{} sessions are open, the configured maximum: retry later",
                    self.max
                )));
            }
        }
        table.insert(
            id.clone(),
            Session {
                state,
                expires: now + self.timeout,
            },
        );
        Ok((id, SystemTime::now() + self.timeout))
    }

    /// The session's state; an expired session is removed and refused.
    pub fn get(&self, id: &str) -> Result<State, KbsError> {
        let mut table = self.table.lock().expect("session table");
        match table.get(id) {
            None => Err(KbsError::Attestation("no such session".into())),
            Some(s) if s.expires <= Instant::now() => {
                table.remove(id);
                Err(KbsError::Attestation("session expired.".into()))
            }
            Some(s) => Ok(s.state.clone()),
        }
    }

    /// Marks a session attested.
    pub fn set(&self, id: &str, state: State) {
        if let Some(s) = self.table.lock().expect("session table").get_mut(id) {
            s.state = state;
        }
    }

    /// Drops expired sessions; returns how many are left.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut table = self.table.lock().expect("session table");
        table.retain(|_, s| s.expires > now);
        table.len()
    }

    pub fn len(&self) -> usize {
        self.table.lock().expect("session table").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authed() -> State {
        State::Authed {
            tee: "sample".into(),
            nonce: "n".into(),
            hash: HashAlgorithm::Sha384,
        }
    }

    #[test]
    fn bounded_and_expiring() {
        let s = Sessions::new(Duration::from_millis(50), 2);
        let (a, _) = s.open(authed()).unwrap();
        s.open(authed()).unwrap();
        assert!(matches!(
            s.open(authed()),
            Err(KbsError::TooManySessions(_))
        ));
        assert!(s.get(&a).is_ok());
        std::thread::sleep(Duration::from_millis(60));
        // Full of expired sessions: opening sweeps them.
        let (c, _) = s.open(authed()).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.get(&a).is_err());
        assert!(s.get(&c).is_ok());
        assert_eq!(c.len(), 32);
    }
}
