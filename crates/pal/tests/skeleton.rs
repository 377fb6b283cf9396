//! The loader against the C skeleton PALs v1-v3: the ABI proven from the C side.
//! Payload output goes to a pipe the tests read.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use pal::{Pal, PalError, StdioFds};

fn pals() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-pals")
}

/// Runs `f` with a loaded PAL of `version`, its payload's stdout and stderr going to a
/// pipe, and returns f's result plus everything written to the pipe.
///
/// One at a time: every test of this process that opens a version gets the same
/// library (dlopen shares it), whose payload table is global, so one test's
/// `pal_kill(-1, …)` would reach another's payload.
fn with_pal<T>(version: u32, f: impl FnOnce(&Pal, StdioFds) -> T) -> (T, String) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let so = pal::testing::build_skeleton(version, &pals());
    let pal = Pal::open(&so).unwrap();
    assert_eq!(pal.version(), version);
    let (mut rd, wr) = std::io::pipe().unwrap();
    let stdio = StdioFds {
        stdin: 0,
        stdout: wr.as_raw_fd(),
        stderr: wr.as_raw_fd(),
    };
    let out = f(&pal, stdio);
    drop(wr);
    let mut text = String::new();
    rd.read_to_string(&mut text).unwrap();
    (out, text)
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_version_runs_the_payload_with_exact_argv_and_exit_code() {
    for version in 1..=3 {
        let ((init, code), out) = with_pal(version, |pal, stdio| {
            let init = pal.init("debug", "info");
            let env = vec!["PAL_GREETING=hi there".to_string(), "OTHER=x".into()];
            let code = pal.run(&argv(&["/bin/app", "a b", "exit_code", "7"]), &env, stdio);
            pal.destroy().unwrap();
            (init, code)
        });
        init.unwrap();
        assert_eq!(code.unwrap(), 7, "v{version}");
        assert!(
            out.contains("argv: /bin/app|a b|exit_code|7\n"),
            "v{version}: {out}"
        );
        assert!(
            out.contains("Enclave runtime skeleton initialization succeeded"),
            "v{version}"
        );
        // v1 passes no environment; v2 and v3 pass it as given.
        assert_eq!(
            out.contains("env: PAL_GREETING=hi there"),
            version >= 2,
            "v{version}: {out}"
        );
    }
}

#[test]
fn init_errors_carry_the_pal_code_and_errno_name() {
    for version in 1..=3 {
        let (err, _) = with_pal(version, |pal, _| {
            pal.init("init_error=13", "info").unwrap_err()
        });
        assert_eq!(
            err.to_string(),
            "pal_init() failed with -13 (EACCES: Permission denied)"
        );
    }
}

#[test]
fn kill_reaches_the_payload_on_v2_and_v3() {
    for version in 2..=3 {
        let (code, _) = with_pal(version, |pal, stdio| {
            pal.init("", "info").unwrap();
            let pid = pal
                .create_process(&argv(&["app", "wait_timeout", "30"]), &[], stdio)
                .unwrap();
            pal.kill(-1, libc::SIGKILL).unwrap();
            pal.exec(pid).unwrap()
        });
        assert_eq!(code, 128 + libc::SIGKILL, "v{version}");
    }
}

#[test]
fn local_report_is_v3_only() {
    let (report, _) = with_pal(3, |pal, _| {
        let mut report = vec![0u8; pal::SGX_REPORT_SIZE];
        let ti = [0xabu8; pal::SGX_TARGET_INFO_SIZE];
        let n = pal.local_report(&ti, &mut report).unwrap();
        report.truncate(n);
        report
    });
    assert_eq!(report.len(), 432);
    assert_eq!(&report[..15], b"SKELETON-REPORT");
    assert_eq!(report[16..32], [0xab; 16]);
    let (err, _) = with_pal(2, |pal, _| {
        pal.local_report(&[0; 512], &mut [0; 432]).unwrap_err()
    });
    assert!(matches!(err, PalError::NotSupported { version: 2, .. }));
}

#[test]
fn version_four_and_missing_symbols_are_refused_at_load() {
    let so = pal::testing::build_skeleton(4, &pals());
    let err = Pal::open(&so).unwrap_err();
    assert!(
        err.to_string().contains("unsupported PAL API version 4"),
        "{err}"
    );

    // Reports v3 but lacks pal_get_local_report; reports v2 but lacks pal_kill (v1 body).
    let so = pal::testing::build_skeleton_claiming(2, 3, &pals());
    let err = Pal::open(&so).unwrap_err();
    assert!(
        err.to_string()
            .contains("requires symbol pal_get_local_report"),
        "{err}"
    );
    let so = pal::testing::build_skeleton_claiming(1, 2, &pals());
    let err = Pal::open(&so).unwrap_err();
    assert!(
        err.to_string()
            .contains("requires symbol pal_create_process"),
        "{err}"
    );
}
