//! The runtime measurements of one `sim` enclave: its event log and the registers the
//! log's records extend, kept together so that a record is never logged without its
//! extend or extended without its record (in a process enclave both live in the runtime
//! and end with it, so no write-ahead log is needed; measurement.md §5.2).

use measurement::eventlog::{self, Event, EventLog, EventLogError, Launch, REGISTERS};
use measurement::initdata::InitData;

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

    /// `report` as an enclave with these measurements and `init_data` reports it: the
    /// registers and counts, and the document's digest as the config id.
    pub fn report(&self, mut report: Report, init_data: Option<&InitData>) -> Report {
        if let Some(d) = init_data {
            report.config_id = d.config_id();
        }
        self.apply(&mut report);
        report
    }
}

/// Rune's `Launch` event (CC MR 1) for a process started with `argv` and `env` (`K=V`)
/// in this process's working directory and with its ids, which the process inherits:
/// what the host chose about it. An error says what could not be measured, in one line
/// naming the program.
pub fn launch_event(argv: &[String], env: &[String]) -> Result<Event, String> {
    let program = argv.first().map(String::as_str).unwrap_or("");
    let why = |e: &dyn std::fmt::Display| {
        format!("{program}: its launch (argv, environment, working directory, ids) cannot be measured: {e}")
    };
    let cwd = std::env::current_dir().map_err(|e| why(&e))?;
    let cwd = cwd
        .to_str()
        .ok_or_else(|| why(&format!("the working directory {cwd:?} is not UTF-8")))?
        .to_string();
    let mut groups: Vec<u32> = nix::unistd::getgroups()
        .map_err(|e| why(&e))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let launch = Launch {
        argv: argv.to_vec(),
        env: env.to_vec(),
        cwd,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        groups,
    };
    Event::launch(&launch).map_err(|e| why(&e))
}

/// The runtime arg `init_data=<standard base64 of the TOML document>` (rune adds it from
/// `ENCLAVE_INIT_DATA`), checked: `None` without one; an error (one line) for one that is
/// not base64, not UTF-8, or not an init-data document.
pub fn init_data_arg(args: &str) -> Result<Option<InitData>, String> {
    use base64::Engine as _;
    let Some(b64) = args
        .split_whitespace()
        .find_map(|a| a.strip_prefix("init_data="))
    else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("init_data: not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "init-data: not UTF-8".to_string())?;
    InitData::parse(&text).map(Some).map_err(|e| e.to_string())
}
