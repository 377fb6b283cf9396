//! An event log (TCG2 AAEL) and its events from an untrusted peer, and init-data
//! documents: parsing never panics (every length is bounded by the bytes left), what
//! parses re-encodes to an equal log, a log whose digests match its events replays to
//! the registers it computes, and claims can always be made.
#![no_main]
use measurement::eventlog::{Event, EventLog};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::parse(data) {
        let _ = log.claims();
        let (regs, counts) = log.replay();
        if log.check_digests().is_ok() {
            log.check_replay(&regs, &counts).unwrap();
        }
        assert_eq!(EventLog::parse(&log.to_bytes()).unwrap(), log);
        assert_eq!(log.encoded_len(), log.to_bytes().len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(e) = Event::from_text(text) {
            assert_eq!(e.text(), text);
        }
        if let Ok(d) = measurement::initdata::InitData::parse(text) {
            assert_eq!(d.config_id().len(), 64);
        }
    }
});
