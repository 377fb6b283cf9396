//! The runtime measurements of one `sim` enclave: its event log and the registers the
//! log's records extend, kept together so that a record is never logged without its
//! extend or extended without its record (in a process enclave both live in the runtime
//! and end with it, so no write-ahead log is needed; measurement.md §5.2).

use measurement::eventlog::{self, Event, EventLog, EventLogError, REGISTERS};

use crate::{Digest, Report};

/// The log and the registers, reset (zero registers, empty log) when the enclave
/// starts.
#[derive(Debug, Clone)]
pub struct Measurements {
    log: EventLog,
    rtmr: [Digest; REGISTERS],
    counts: [u32; REGISTERS],
}

impl Default for Measurements {
    fn default() -> Self {
        Measurements {
            log: EventLog::new(),
            rtmr: [[0; 48]; REGISTERS],
            counts: [0; REGISTERS],
        }
    }
}

impl Measurements {
    pub fn new() -> Measurements {
        Measurements::default()
    }

    /// Records `event` at CC MR `index` (1..=4) and extends that register
    /// (`R ← SHA-384(R ‖ SHA-384(tagged event))`). Refused, with nothing changed, for an
    /// unknown register or a full log.
    pub fn extend(&mut self, index: u32, event: &Event) -> Result<(), EventLogError> {
        let digest = self.log.extend_at(index, event)?;
        let r = eventlog::register_of(index)?;
        eventlog::extend_register(&mut self.rtmr[r], &digest);
        self.counts[r] += 1;
        Ok(())
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// RTMR0..3.
    pub fn registers(&self) -> &[Digest; REGISTERS] {
        &self.rtmr
    }

    /// How many times each register was extended.
    pub fn counts(&self) -> &[u32; REGISTERS] {
        &self.counts
    }

    /// Puts the registers and counts into `report`.
    pub fn apply(&self, report: &mut Report) {
        report.rtmr = self.rtmr;
        report.rtmr_counts = self.counts;
    }
}
