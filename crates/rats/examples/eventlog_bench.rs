//! Event-log replay: a `sim` report whose RTMR3 was extended 1,000 times, checked with
//! its log (TCG2 parse, digest of each event, replay, comparison), as verdictd does for
//! every `sim` attestation; and the replay alone on a parsed log.
//!
//! `cargo run --release -p rats --example eventlog_bench [RUNS]`: RUNS timed runs (after
//! 5 warm-up runs) of each, interleaved; prints a Markdown table of medians.

use std::time::Instant;

use measurement::eventlog::{Event, EventLog};

const EVENTS: usize = 1000;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30)
        .max(30);
    let mut m = sim_tee::rtmr::Measurements::new();
    for i in 0..EVENTS {
        let e = Event::new("example.org", "Loaded", &format!("layer-{i:04}")).unwrap();
        m.extend(4, &e).unwrap();
    }
    let mut report = sim_tee::Report::unsigned(false, [1; 48], [2; 48], 1, 1, [0; 64]);
    m.apply(&mut report);
    let key = sim_tee::PlatformKey::generate().unwrap();
    let report = key.sign_report(report).to_bytes();
    let bytes = m.log().to_bytes();
    let log = EventLog::parse(&bytes).unwrap();
    let (regs, counts) = (*m.registers(), *m.counts());
    let input = rats::Input::default();
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let cases: Vec<Case> = vec![
        (
            "rats::verify_with_event_log (report + parse + replay)",
            Box::new(|| {
                rats::verify_with_event_log(&report, None, &input, &bytes).unwrap();
            }),
        ),
        (
            "EventLog::parse + check_replay",
            Box::new(|| {
                EventLog::parse(&bytes)
                    .unwrap()
                    .check_replay(&regs, &counts)
                    .unwrap();
            }),
        ),
        (
            "check_replay of a parsed log",
            Box::new(|| log.check_replay(&regs, &counts).unwrap()),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..runs + 5 {
        for (i, (_, f)) in cases.iter().enumerate() {
            let start = Instant::now();
            f();
            if round >= 5 {
                times[i].push(start.elapsed().as_secs_f64());
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\n### event-log replay: {EVENTS} entries into RTMR3, one core\n");
    println!(
        "{runs} runs after 5 warm-up runs, interleaved; log {} bytes; load average {}\n",
        bytes.len(),
        load.split_whitespace().next().unwrap_or("?")
    );
    println!("| check | median µs |");
    println!("|---|---:|");
    for (i, (name, _)) in cases.iter().enumerate() {
        times[i].sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("| {name} | {:.1} |", times[i][times[i].len() / 2] * 1e6);
    }
}
