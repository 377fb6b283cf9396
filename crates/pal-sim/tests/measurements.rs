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

/// The shared object is loaded once per process and holds one enclave: one test at a
/// time.
static ENCLAVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn so() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/liberpal_sim.so")
}

/// Runs `script` with `sh -c` in the enclave; returns (exit code, stdout).
fn run(pal: &pal::Pal, script: &str) -> (i32, String) {
    let argv: Vec<String> = ["/bin/sh", "-c", script].map(String::from).to_vec();
    let (code, out, _) = run_argv(pal, &argv, &["PATH=/usr/bin:/bin"], false);
    (code.unwrap(), out)
}

/// Runs `argv` with `env` in the enclave; returns (exit code or the PAL's refusal,
/// stdout, and stderr when `capture_stderr`, else it is the test's). (dash redirects
/// single-digit descriptors only: every pipe here pushes the evidence socket's up.)
fn run_argv(
    pal: &pal::Pal,
    argv: &[String],
    env: &[&str],
    capture_stderr: bool,
) -> (Result<i32, pal::PalError>, String, String) {
    use std::os::fd::AsRawFd;
    let (r, w) = nix::unistd::pipe().unwrap();
    let err_pipe = capture_stderr.then(|| nix::unistd::pipe().unwrap());
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut r = std::fs::File::from(r);
    let stdio = pal::StdioFds {
        stdin: null.as_raw_fd(),
        stdout: w.as_raw_fd(),
        stderr: err_pipe.as_ref().map_or(2, |(_, ew)| ew.as_raw_fd()),
    };
    let env: Vec<String> = env.iter().map(|e| e.to_string()).collect();
    let code = pal.run_with(argv, &env, stdio, |_| {});
    drop(w);
    let (mut out, mut err) = (String::new(), String::new());
    r.read_to_string(&mut out).unwrap();
    if let Some((er, ew)) = err_pipe {
        drop(ew);
        std::fs::File::from(er).read_to_string(&mut err).unwrap();
    }
    (code, out, err)
}

/// SHA-384 by openssl (`openssl dgst -sha384 -binary`), independent of this workspace.
fn openssl_sha384(bytes: &[u8]) -> [u8; 48] {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha384", "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout.try_into().unwrap()
}

/// The signed report a host asks the PAL for (`pal_get_local_report`).
fn host_report(pal: &pal::Pal) -> sim_tee::Report {
    let mut report = vec![0u8; 4096];
    let n = pal
        .local_report(&[0u8; pal::SGX_TARGET_INFO_SIZE], &mut report)
        .unwrap();
    let report = sim_tee::Report::parse(&report[..n]).unwrap();
    report.verify_signature().unwrap();
    report
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
    let _one = ENCLAVE.lock().unwrap_or_else(|p| p.into_inner());
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

    // The log: "ok" LF, then TCG2 bytes: the runtime's launch of the shell at CC MR 1
    // (its text pinned by `the_launch_is_measured_before_the_program_runs`), then the
    // program's events.
    let log_bytes = answers[9].strip_prefix(b"ok\n").unwrap();
    let log = EventLog::parse(log_bytes).unwrap();
    assert_eq!(log.records().len(), 4);
    assert_eq!(
        log.records().iter().map(|r| r.index).collect::<Vec<_>>(),
        [1, 4, 2, 4]
    );
    let launch = log.records()[0].event().unwrap().text();
    assert!(
        launch.starts_with(
            "github.com/inclavare-containers/rune Launch {\"argv\":[\"/bin/sh\",\"-c\","
        ),
        "{launch}"
    );

    // The report: registers by the spec formula, counts, the config id.
    let report = sim_tee::Report::parse(&answers[11]).unwrap();
    report.verify_signature().unwrap();
    assert_eq!(report.version, 2);
    assert_eq!(report.report_data, report_data());
    let e0 = sha384(&[&tagged(&launch)]);
    let e1 = sha384(&[&tagged("example.org Loaded model-v3")]);
    let e2 = sha384(&[&tagged("example.org Config a b  c")]);
    let e3 = sha384(&[&tagged(
        "github.com/confidential-containers PullImage {\"digest\":\"sha256:00\"}",
    )]);
    let rtmr0 = sha384(&[&[0u8; 48], &e0]);
    let rtmr3 = sha384(&[&sha384(&[&[0u8; 48], &e1]), &e3]);
    let rtmr1 = sha384(&[&[0u8; 48], &e2]);
    assert_eq!(report.rtmr, [rtmr0, rtmr1, [0; 48], rtmr3]);
    assert_eq!(report.rtmr_counts, [1, 1, 0, 2]);
    let mut config_id = Sha256::digest(DOC.as_bytes()).to_vec();
    config_id.resize(64, 0);
    assert_eq!(report.config_id.to_vec(), config_id);

    // The log replays into the report.
    log.check_replay(&report.rtmr, &report.rtmr_counts).unwrap();
    // The init-data as given.
    assert_eq!(answers[10], [b"ok\n", DOC.as_bytes()].concat());

    // A new enclave starts from zero registers and an empty log: it then holds only the
    // launch of its program.
    pal.init("debug", "info").unwrap();
    let (_, out) = run(
        &pal,
        &[ask("log\\n"), ask("init-data\\n"), ASK_REPORT.into()].join("; "),
    );
    let answers: Vec<Vec<u8>> = out.lines().map(|l| hex::decode(l).unwrap()).collect();
    let log = EventLog::parse(answers[0].strip_prefix(b"ok\n").unwrap()).unwrap();
    assert_eq!(log.records().len(), 1);
    assert_eq!(log.records()[0].index, 1);
    assert_eq!(answers[1], b"ok\n");
    let report = sim_tee::Report::parse(&answers[2]).unwrap();
    assert_eq!(
        (
            report.rtmr[1..].to_vec(),
            report.rtmr_counts,
            report.config_id
        ),
        (vec![[0; 48]; 3], [1, 0, 0, 0], [0; 64])
    );
    log.check_replay(&report.rtmr, &report.rtmr_counts).unwrap();
    pal.destroy().unwrap();
}

/// The host's choice of argv and environment (and the init's working directory and
/// ids, which the program inherits) is recorded as rune's `Launch` event at CC MR 1
/// before the program exists; the environment recorded is the one the program gets
/// (coreutils' `env` prints it); the application cannot extend CC MR 1; a launch that
/// does not fit an event does not start. The expected text is written out from its
/// documented form (measurement's `Event::launch`) and hashed by openssl.
#[test]
fn the_launch_is_measured_before_the_program_runs() {
    let _one = ENCLAVE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(sim_tee::PLATFORM_DIR_ENV, dir.path());
    let pal = pal::Pal::open(&so()).unwrap();
    pal.init("debug", "info").unwrap();

    // Given out of order, a name twice, an entry without `=`, and the runtime's own
    // variable: the program gets one value per name (the last), in name order.
    let env = [
        "PATH=/usr/bin:/bin",
        "B=2",
        "A=1",
        "B=3",
        "NOEQUALS",
        "INCLAVARE_SIM_FD=99",
    ];
    let argv = vec!["/usr/bin/env".to_string()];
    let (code, out, err) = run_argv(&pal, &argv, &env, false);
    assert_eq!(code.unwrap(), 0, "{err}");
    let received: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("INCLAVARE_SIM_FD="))
        .collect();
    assert_eq!(received, ["A=1", "B=3", "PATH=/usr/bin:/bin"]);

    let cwd = std::env::current_dir().unwrap();
    let mut groups: Vec<u32> = nix::unistd::getgroups()
        .unwrap()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let groups = groups
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let text = format!(
        r#"github.com/inclavare-containers/rune Launch {{"argv":["/usr/bin/env"],"cwd":"{}","env":["A=1","B=3","PATH=/usr/bin:/bin"],"gid":{},"groups":[{groups}],"uid":{}}}"#,
        cwd.display(),
        nix::unistd::getegid(),
        nix::unistd::geteuid()
    );
    let launch_digest = openssl_sha384(&tagged(&text));
    let rtmr0 = openssl_sha384(&[[0u8; 48], launch_digest].concat());
    let report = host_report(&pal);
    assert_eq!(report.rtmr[0], rtmr0);
    assert_eq!(report.rtmr_counts, [1, 0, 0, 0]);

    // The application reads the record back, and cannot write one of its own at CC MR 1.
    let script = "echo log >&$INCLAVARE_SIM_FD; \
         dd bs=256k count=1 <&$INCLAVARE_SIM_FD 2>/dev/null | od -An -v -tx1 | tr -d '[:space:]'; echo; \
         echo extend 1 github.com/inclavare-containers/rune Launch forged >&$INCLAVARE_SIM_FD; \
         dd bs=1k count=1 <&$INCLAVARE_SIM_FD 2>/dev/null; echo";
    let (_, out) = run(&pal, script);
    let lines: Vec<&str> = out.lines().collect();
    let log_bytes = hex::decode(lines[0]).unwrap();
    let log = EventLog::parse(log_bytes.strip_prefix(b"ok\n").unwrap()).unwrap();
    let first = &log.records()[0];
    assert_eq!(
        (first.index, first.event().unwrap().text(), first.digest),
        (1, text.clone(), launch_digest)
    );
    assert_eq!(
        lines[1],
        "error: CC MR 1 (RTMR0) is the enclave runtime's own: extend CC MR 2..=4"
    );
    // The shell's own launch is the log's second record, at CC MR 1.
    assert_eq!(log.records().len(), 2);
    assert_eq!(log.records()[1].index, 1);
    let report = host_report(&pal);
    assert_eq!(report.rtmr_counts, [2, 0, 0, 0]);
    log.check_replay(&report.rtmr, &report.rtmr_counts).unwrap();

    // An environment too large for an event: the program never starts, one line says
    // why, and nothing is recorded.
    let big = format!("BIG={}", "x".repeat(70_000));
    let argv: Vec<String> = ["/bin/sh", "-c", "echo ran"].map(String::from).to_vec();
    let (code, out, err) = run_argv(&pal, &argv, &[&big], true);
    assert!(code.is_err(), "{out}");
    assert_eq!(out, "");
    assert_eq!(
        err,
        "liberpal-sim: /bin/sh: its launch (argv, environment, working directory, ids) cannot be measured: event: longer than 65536 bytes\n"
    );
    assert_eq!(host_report(&pal).rtmr_counts, [2, 0, 0, 0]);
    pal.destroy().unwrap();
}
