//! liberpal-sim's runtime measurements and init-data, through the real shared object
//! (loaded as rune loads it) and a real program in the enclave that talks to its
//! evidence socket with a shell: `extend` records an event and extends the register,
//! the report carries the registers and the init-data's digest in its config id, the
//! log replays into them, and bad requests get one-line errors. Expected values are
//! the spec's formulas computed here with `sha2`, not by the code under test.

use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha384};
use sim_tee::measurement::eventlog::EventLog;

const DOC: &str = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"aa.toml\" = \"x\"\n";

fn so() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/liberpal_sim.so")
}

/// Runs `script` with `sh -c` in the enclave; returns (exit code, stdout).
fn run(pal: &pal::Pal, script: &str) -> (i32, String) {
    use std::os::fd::AsRawFd;
    let (r, w) = nix::unistd::pipe().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut r = std::fs::File::from(r);
    let stdio = pal::StdioFds {
        stdin: null.as_raw_fd(),
        stdout: w.as_raw_fd(),
        stderr: 2,
    };
    let argv: Vec<String> = ["/bin/sh", "-c", script].map(String::from).to_vec();
    let env = vec!["PATH=/usr/bin:/bin".to_string()];
    let code = pal.run_with(&argv, &env, stdio, |_| {}).unwrap();
    drop(w);
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    (code, out)
}

/// One request on the evidence socket, its answer in hex (binary-safe for a shell).
fn ask(request: &str) -> String {
    format!(
        "printf '{request}' >&$INCLAVARE_SIM_FD; dd bs=256k count=1 <&$INCLAVARE_SIM_FD 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'; echo"
    )
}

/// A report request: report data `0…05` (64 ASCII digits).
const ASK_REPORT: &str = "printf '%064d' 5 >&$INCLAVARE_SIM_FD; dd bs=256k count=1 <&$INCLAVARE_SIM_FD 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'; echo";

fn report_data() -> [u8; 64] {
    let mut d = [b'0'; 64];
    d[63] = b'5';
    d
}

fn sha384(parts: &[&[u8]]) -> [u8; 48] {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The TCG2 tagged event of `text` (measurement.md §1.3): `LEAA`, u32 LE size, text.
fn tagged(text: &str) -> Vec<u8> {
    [
        b"LEAA",
        &(text.len() as u32).to_le_bytes()[..],
        text.as_bytes(),
    ]
    .concat()
}

#[test]
fn extends_are_logged_measured_and_reported_with_the_init_data() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(sim_tee::PLATFORM_DIR_ENV, dir.path());
    let pal = pal::Pal::open(&so()).unwrap();

    // Bad init-data fails pal_init with the parser's line.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (doc, want) in [
        ("nope ===", "not TOML"),
        (&DOC.replace("sha256", "md5"), "unknown algorithm"),
    ] {
        let err = pal
            .init(&format!("debug init_data={}", b64(doc)), "info")
            .unwrap_err();
        assert!(err.to_string().contains("pal_init"), "{err} ({want})");
    }

    pal.init(&format!("debug init_data={}", b64(DOC)), "info")
        .unwrap();
    let script = [
        ask("extend 4 example.org Loaded model-v3\\n"),
        ask("extend 2 example.org Config a b  c\\n"),
        ask("extend 4 github.com/confidential-containers PullImage {\"digest\":\"sha256:00\"}\\n"),
        // Bad requests: unknown registers, malformed lines, unknown verbs.
        ask("extend 9 example.org op c\\n"),
        ask("extend 0 example.org op c\\n"),
        ask("extend x example.org op c\\n"),
        ask("extend 4 onlydomain\\n"),
        ask("extend 4 d op line\\rbreak\\n"),
        ask("frobnicate\\n"),
        ask("log\\n"),
        ask("init-data\\n"),
        ASK_REPORT.to_string(),
    ]
    .join("; ");
    let (code, out) = run(&pal, &script);
    assert_eq!(code, 0, "{out}");
    let answers: Vec<Vec<u8>> = out.lines().map(|l| hex::decode(l).unwrap()).collect();
    let text = |i: usize| String::from_utf8_lossy(&answers[i]).into_owned();
    assert_eq!(answers.len(), 12, "{out}");
    for i in 0..3 {
        assert_eq!(text(i), "ok");
    }
    assert_eq!(
        text(3),
        "error: unknown register: CC MR index 9 (1..=4, RTMR0..3)"
    );
    assert_eq!(
        text(4),
        "error: unknown register: CC MR index 0 (1..=4, RTMR0..3)"
    );
    assert_eq!(text(5), "error: unknown register \"x\" (CC MR 1..=4)");
    assert!(
        text(6).starts_with("error: event: \"onlydomain\" is not `domain operation content`"),
        "{}",
        text(6)
    );
    assert!(text(7).starts_with("error: event: content"), "{}", text(7));
    assert!(
        text(8).starts_with("error: unknown request \"frobnicate\""),
        "{}",
        text(8)
    );
    for i in 3..9 {
        assert!(!text(i).contains('\n'), "{}", text(i));
    }

    // The report: registers by the spec formula, counts, the config id.
    let report = sim_tee::Report::parse(&answers[11]).unwrap();
    report.verify_signature().unwrap();
    assert_eq!(report.version, 2);
    assert_eq!(report.report_data, report_data());
    let e1 = sha384(&[&tagged("example.org Loaded model-v3")]);
    let e2 = sha384(&[&tagged("example.org Config a b  c")]);
    let e3 = sha384(&[&tagged(
        "github.com/confidential-containers PullImage {\"digest\":\"sha256:00\"}",
    )]);
    let rtmr3 = sha384(&[&sha384(&[&[0u8; 48], &e1]), &e3]);
    let rtmr1 = sha384(&[&[0u8; 48], &e2]);
    assert_eq!(report.rtmr, [[0; 48], rtmr1, [0; 48], rtmr3]);
    assert_eq!(report.rtmr_counts, [0, 1, 0, 2]);
    let mut config_id = Sha256::digest(DOC.as_bytes()).to_vec();
    config_id.resize(64, 0);
    assert_eq!(report.config_id.to_vec(), config_id);

    // The log: "ok" LF, then TCG2 bytes that replay into the report.
    let log_bytes = answers[9].strip_prefix(b"ok\n").unwrap();
    let log = EventLog::parse(log_bytes).unwrap();
    assert_eq!(log.records().len(), 3);
    assert_eq!(
        log.records().iter().map(|r| r.index).collect::<Vec<_>>(),
        [4, 2, 4]
    );
    log.check_replay(&report.rtmr, &report.rtmr_counts).unwrap();
    // The init-data as given.
    assert_eq!(answers[10], [b"ok\n", DOC.as_bytes()].concat());

    // A new enclave starts from zero registers and an empty log.
    pal.init("debug", "info").unwrap();
    let (_, out) = run(
        &pal,
        &[ask("log\\n"), ask("init-data\\n"), ASK_REPORT.into()].join("; "),
    );
    let answers: Vec<Vec<u8>> = out.lines().map(|l| hex::decode(l).unwrap()).collect();
    let log = EventLog::parse(answers[0].strip_prefix(b"ok\n").unwrap()).unwrap();
    assert!(log.is_empty());
    assert_eq!(answers[1], b"ok\n");
    let report = sim_tee::Report::parse(&answers[2]).unwrap();
    assert_eq!(
        (report.rtmr, report.rtmr_counts, report.config_id),
        ([[0; 48]; 4], [0; 4], [0; 64])
    );
    pal.destroy().unwrap();
}
