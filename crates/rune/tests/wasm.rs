//! The WebAssembly enclave runtime `liberpal-wasm` under rune: WASI preview 1 modules,
//! built from WAT with wabt's `wat2wasm` at test time, run as the container's program.
//! Expected values come from the WASI preview 1 ABI (`wasi_snapshot_preview1.witx`) and
//! the exit conventions of `wasmtime run` (134 for a trap, 128 + signal when killed).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::wasm::*;
use common::*;

/// Writes "hello wasm\n" to stdout and returns from `_start` (exit 0).
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello wasm\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 11))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Writes "hello wasm\n", then `proc_exit(7)`.
const HELLO_7: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello wasm\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 11))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 7))))"#;

/// `proc_exit(N)`.
fn exit_module(code: u32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"#
    )
}

/// Writes its argument buffer (NUL-separated), a newline, then its environment buffer.
const ARGS_ENV: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $asg (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $ag (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $esg (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $eg (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "\n")
  (func $out (param $buf i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $buf))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (drop (call $asg (i32.const 16) (i32.const 20)))
    (drop (call $ag (i32.const 1024) (i32.const 8192)))
    (call $out (i32.const 8192) (i32.load (i32.const 20)))
    (call $out (i32.const 100) (i32.const 1))
    (drop (call $esg (i32.const 16) (i32.const 20)))
    (drop (call $eg (i32.const 1024) (i32.const 32768)))
    (call $out (i32.const 32768) (i32.load (i32.const 20)))))"#;

/// For every preopened directory (fd 3 on, until `fd_prestat_get` fails): prints its
/// name; reads `greeting.txt` in it ("read: …", rights `fd_read`); tries to create
/// `../escaped` (prints "ESCAPED" if that works) and `created-by-wasm` ("created in
/// <dir>"), rights `fd_read | fd_write` (witx `rights`: bits 1 and 6).
const FILES: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $pget (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $pname (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1000) "greeting.txt")
  (data (i32.const 1020) "../escaped")
  (data (i32.const 1040) "created-by-wasm")
  (data (i32.const 1060) "\n")
  (data (i32.const 1070) "read: ")
  (data (i32.const 1080) "ESCAPED\n")
  (data (i32.const 1090) "created in ")
  (func $out (param $buf i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $buf))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $try (param $dir i32) (param $path i32) (param $len i32) (param $oflags i32) (param $rights i64) (result i32)
    (if (result i32)
      (i32.eqz (call $open (local.get $dir) (i32.const 0) (local.get $path) (local.get $len)
        (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 600)))
      (then (i32.load (i32.const 600)))
      (else (i32.const -1))))
  (func (export "_start")
    (local $fd i32) (local $len i32) (local $f i32)
    (local.set $fd (i32.const 3))
    (block $done
      (loop $next
        (br_if $done (call $pget (local.get $fd) (i32.const 200)))
        (local.set $len (i32.load (i32.const 204)))
        (drop (call $pname (local.get $fd) (i32.const 300) (local.get $len)))
        (call $out (i32.const 300) (local.get $len))
        (call $out (i32.const 1060) (i32.const 1))
        (local.set $f (call $try (local.get $fd) (i32.const 1000) (i32.const 12) (i32.const 0) (i64.const 2)))
        (if (i32.ge_s (local.get $f) (i32.const 0))
          (then
            (i32.store (i32.const 16) (i32.const 4096))
            (i32.store (i32.const 20) (i32.const 1024))
            (drop (call $read (local.get $f) (i32.const 16) (i32.const 1) (i32.const 24)))
            (call $out (i32.const 1070) (i32.const 6))
            (call $out (i32.const 4096) (i32.load (i32.const 24)))
            (drop (call $close (local.get $f)))))
        (local.set $f (call $try (local.get $fd) (i32.const 1020) (i32.const 10) (i32.const 1) (i64.const 66)))
        (if (i32.ge_s (local.get $f) (i32.const 0))
          (then (call $out (i32.const 1080) (i32.const 8))))
        (local.set $f (call $try (local.get $fd) (i32.const 1040) (i32.const 15) (i32.const 1) (i64.const 66)))
        (if (i32.ge_s (local.get $f) (i32.const 0))
          (then
            (call $out (i32.const 1090) (i32.const 11))
            (call $out (i32.const 300) (local.get $len))
            (call $out (i32.const 1060) (i32.const 1))
            (drop (call $close (local.get $f)))))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $next)))))"#;

/// Spins forever: only epoch interruption ends it.
const LOOP: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

/// Executes `unreachable`.
const TRAP: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") unreachable))"#;

#[test]
fn wasm_hello_world_runs_as_the_container() {
    if !ready("wasm_hello_world_runs_as_the_container") {
        return;
    }
    let rune = Rune::new();
    let b = wasm_bundle(HELLO, &[], "debug");
    let id = unique_id("wasm-hello");
    let (code, stdout, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "hello wasm\n");
    // An unsigned module runs only as a debug enclave, and says so.
    assert!(stderr.contains("debug=true"), "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

#[test]
fn wasm_exit_values_follow_proc_exit_and_traps() {
    if !ready("wasm_exit_values_follow_proc_exit_and_traps") {
        return;
    }
    let rune = Rune::new();
    // proc_exit(n) for n in 0..=125 is the exit code, 0 included; 126 and above are
    // outside WASI's range (wasmtime-wasi refuses them), reported as 1; a trap is 134.
    let cases: [(String, i32, &str); 5] = [
        (exit_module(7), 7, ""),
        (exit_module(0), 0, ""),
        (exit_module(200), 1, "exit with invalid exit status"),
        (
            TRAP.to_string(),
            134,
            "wasm trap: wasm `unreachable` instruction executed",
        ),
        (HELLO.to_string(), 0, ""),
    ];
    for (wat, want, needle) in cases {
        let b = wasm_bundle(&wat, &[], "debug");
        let id = unique_id("wasm-exit");
        let (code, _, stderr) = run_bundle(&rune, &b, &id);
        assert_eq!(code, Some(want), "{stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    }
}

/// `ENCLAVE_RUNTIME_LOGLEVEL` (pal-api.md: `trace debug info warning error fatal panic
/// off`) decides what the PAL prints, not what the module does: the identity line from
/// `info` up, compilation and process lines at `debug`, a trap's line down to `error`,
/// nothing at `off` but why a module is refused; the exit values stay 0 and 134.
#[test]
fn wasm_log_level_decides_what_the_pal_prints() {
    if !ready("wasm_log_level_decides_what_the_pal_prints") {
        return;
    }
    let rune = Rune::new();
    // (level, [identity line, compilation line, trap line] expected).
    let cases = [
        ("debug", [true, true, true]),
        ("info", [true, false, true]),
        ("warning", [false, false, true]),
        ("error", [false, false, true]),
        ("off", [false, false, false]),
    ];
    for (level, [identity, compiled, trap]) in cases {
        for (wat, code) in [(HELLO, 0), (TRAP, 134)] {
            let mut b = wasm_bundle(wat, &[], "debug");
            b.spec["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!(format!(
                    "ENCLAVE_RUNTIME_LOGLEVEL={level}"
                )));
            b.save();
            let id = unique_id("wasm-log");
            let (got, stdout, stderr) = run_bundle(&rune, &b, &id);
            assert_eq!(got, Some(code), "{level}: {stderr}");
            if code == 0 {
                assert_eq!(stdout, "hello wasm\n", "{level}");
            }
            assert_eq!(
                stderr.contains("mr_enclave="),
                identity,
                "{level}: {stderr}"
            );
            assert_eq!(
                stderr.contains("/app.wasm: ") && stderr.contains(" bytes "),
                compiled,
                "{level}: {stderr}"
            );
            assert_eq!(
                stderr.contains(&format!("ended with exit value {code}")),
                compiled,
                "{level}: {stderr}"
            );
            if code == 134 {
                assert_eq!(stderr.contains("wasm trap:"), trap, "{level}: {stderr}");
            }
            if level == "off" {
                assert_eq!(stderr, "", "{level}");
            }
            assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
        }
    }
    // Why a module is refused is the failed call's result, not a log line: even at
    // `off` rune's error line carries it.
    let mut b = wasm_bundle(HELLO, &[], "debug");
    put_module(&b, b"#!/bin/sh\necho hi\n");
    b.spec["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!("ENCLAVE_RUNTIME_LOGLEVEL=off"));
    b.save();
    let id = unique_id("wasm-log-off");
    let out = rune.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let said = error_messages(&stderr);
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(said[0].contains("not a WebAssembly module"), "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

#[test]
fn wasm_args_and_env_round_trip() {
    if !ready("wasm_args_and_env_round_trip") {
        return;
    }
    let rune = Rune::new();
    let mut b = wasm_bundle(ARGS_ENV, &["a b", "c", ""], "debug");
    b.spec["process"]["env"] = serde_json::json!([
        "FOO=bar",
        "EMPTY=",
        "WITH_EQ=x=y",
        "ENCLAVE_TYPE=sim",
        format!("ENCLAVE_RUNTIME_PATH={}", wasm_pal().display()),
        "ENCLAVE_RUNTIME_ARGS=debug",
    ]);
    b.save();
    let id = unique_id("wasm-args");
    let (code, stdout, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(0), "{stderr}");
    let (args, env) = stdout.split_once('\n').expect("two parts");
    // WASI's args_get: each argument NUL-terminated, argv[0] included.
    assert_eq!(args, "/app.wasm\0a b\0c\0\0");
    let mut env: Vec<&str> = env.split_terminator('\0').collect();
    env.sort();
    // HOME is added from the user's passwd entry when the spec has none, as runc does.
    assert_eq!(
        env,
        ["EMPTY=", "FOO=bar", "HOME=/root", "WITH_EQ=x=y"],
        "{stdout:?}"
    );
}

#[test]
fn wasm_sees_the_image_by_directory_and_cannot_write_outside() {
    if !ready("wasm_sees_the_image_by_directory_and_cannot_write_outside") {
        return;
    }
    let rune = Rune::new();
    let out = tempfile::tempdir().unwrap();
    let b = wasm_bundle(FILES, &[], "debug");
    let rootfs = b.path().join("rootfs");
    std::fs::create_dir(rootfs.join("data")).unwrap();
    std::fs::write(rootfs.join("data/greeting.txt"), "hello from the image\n").unwrap();
    std::fs::create_dir(rootfs.join("out")).unwrap();
    let b = b.bind(out.path(), "/out");
    let id = unique_id("wasm-files");
    let (code, stdout, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(0), "{stderr}");
    let dirs: Vec<&str> = stdout.lines().filter(|l| l.starts_with('/')).collect();
    // Every top-level directory of the image but the kernel's and the devices'.
    for d in ["/bin", "/data", "/etc", "/out"] {
        assert!(dirs.contains(&d), "{d} not preopened: {stdout}");
    }
    for d in ["/proc", "/sys", "/dev"] {
        assert!(!dirs.contains(&d), "{d} preopened: {stdout}");
    }
    assert!(
        stdout.contains("/data\nread: hello from the image\n"),
        "{stdout}"
    );
    // `..` never leaves a preopen; the read-only root refuses writes; the bind mount
    // takes them.
    assert!(!stdout.contains("ESCAPED"), "{stdout}");
    let created: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("created in "))
        .collect();
    assert_eq!(created, ["created in /out"], "{stdout}");
    assert!(out.path().join("created-by-wasm").exists());
    assert!(!b.path().join("escaped").exists());
    assert!(!rootfs.join("escaped").exists());
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// Waits for `child` to exit, up to 10 s; returns its status and how long it took.
fn wait_child(child: &mut std::process::Child) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (s, start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("did not end within 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A guest spinning in a loop (ended by epoch interruption) and one blocked in a host
/// call (reported killed after the PAL's grace time) both end on `rune kill ID TERM`
/// well within a second, with 128 + SIGTERM; `KILL` gives 128 + SIGKILL. Signals whose
/// default action is to ignore or stop (signal(7): CONT, WINCH, URG) end nothing.
#[test]
fn wasm_infinite_loop_ends_on_rune_kill_term_within_a_second() {
    if !ready("wasm_infinite_loop_ends_on_rune_kill_term_within_a_second") {
        return;
    }
    let rune = Rune::new();
    for (name, wat, signal, code) in [
        ("loop", LOOP, "TERM", 128 + 15),
        ("sleep in poll_oneoff", SLEEP, "TERM", 128 + 15),
        ("loop", LOOP, "KILL", 128 + 9),
    ] {
        let b = wasm_bundle(wat, &[], "debug");
        let id = unique_id("wasm-loop");
        let mut run = Command::new(RUNE)
            .arg("--root")
            .arg(rune.root.path())
            .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_until(Duration::from_secs(10), || {
            rune.cmd(&["state", &id]).status.success() && rune.status(&id) == "running"
        }));
        // Running, and still running: the guest does not end by itself, nor of
        // signals that end nothing.
        for harmless in ["CONT", "WINCH", "URG"] {
            rune.ok(&["kill", &id, harmless]);
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(run.try_wait().unwrap().is_none(), "{name}");
        assert_eq!(rune.status(&id), "running", "{name}");
        let start = Instant::now();
        rune.ok(&["kill", &id, signal]);
        let (status, _) = wait_child(&mut run);
        let took = start.elapsed();
        println!("{name}: SIG{signal} to exit {took:?}");
        assert_eq!(status.code(), Some(code), "{name} {signal}");
        assert!(took < Duration::from_secs(1), "{name}: {took:?}");
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    }
}

/// Prints "reading", blocks reading stdin (a host call, where no epoch check happens),
/// then calls `proc_exit(0)` as soon as the read returns.
const READ_THEN_EXIT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $r (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "reading\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 8))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 64))
    (drop (call $r (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 0))))"#;

/// The exit status says what ended the process, not how its last call returned: a
/// guest blocked in a host call when `rune kill ID TERM` comes, whose call then returns
/// within the kill grace time and who calls `proc_exit(0)` before any epoch check, was
/// killed: 143, not 0 (the window `wasmtime run` would report as 0).
#[test]
fn a_guest_killed_in_a_host_call_reports_the_signal_even_if_it_then_exits_0() {
    if !ready("a_guest_killed_in_a_host_call_reports_the_signal_even_if_it_then_exits_0") {
        return;
    }
    use std::io::BufRead;
    let rune = Rune::new();
    let mut b = wasm_bundle(READ_THEN_EXIT, &[], "debug");
    // At `debug` the PAL says when a signal reached it: the test waits for that line.
    b.spec["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!("ENCLAVE_RUNTIME_LOGLEVEL=debug"));
    b.save();
    let id = unique_id("wasm-window");
    let mut run = Command::new(RUNE)
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "reading\n");
    let mut err = std::io::BufReader::new(run.stderr.take().unwrap());
    let killed = Instant::now();
    rune.ok(&["kill", &id, "TERM"]);
    loop {
        line.clear();
        assert_ne!(err.read_line(&mut line).unwrap(), 0, "stderr ended");
        if line.contains("signal 15 for pid -1") {
            break;
        }
    }
    // The kill is recorded; now the read returns (end of file) and the guest calls
    // proc_exit(0) at once, inside the PAL's 200 ms grace. (Past the grace, 143 would
    // come from the grace instead: the run proves less, but is not wrong.)
    let seen = killed.elapsed();
    drop(run.stdin.take());
    let (status, took) = wait_child(&mut run);
    println!(
        "killed in a host call, then proc_exit(0): PAL had the signal {seen:?} after the kill; exit {status:?} {took:?} after stdin closed"
    );
    assert_eq!(status.code(), Some(128 + 15));
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// `create` makes the container's wasm process (module compiled, attestation directory
/// preopened) but writes none of its attestation files, the private key among them, until
/// `start`; a created container killed before `start` ran nothing and leaves nothing.
#[test]
fn a_created_wasm_container_holds_no_key_until_start_and_a_kill_leaves_nothing() {
    if !ready("a_created_wasm_container_holds_no_key_until_start_and_a_kill_leaves_nothing") {
        return;
    }
    let rune = Rune::new();
    let b = wasm_bundle(LOOP, &[], "debug");
    let bundle = b.path().to_str().unwrap();
    let attestation = |id: &str| {
        let pid = rune.state(id)["pid"].as_i64().unwrap();
        std::path::PathBuf::from(format!("/proc/{pid}/root/dev/.liberpal-wasm-attestation/1"))
    };

    let id = unique_id("wasm-created");
    let out = rune.cmd(&["create", "--bundle", bundle, &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rune.status(&id), "created");
    let dir = attestation(&id);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .collect();
    assert!(files.is_empty(), "written before start: {files:?}");
    rune.ok(&["kill", &id, "TERM"]);
    assert!(wait_until(Duration::from_secs(5), || rune.status(&id) == "stopped"));
    rune.ok(&["delete", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // Started: the files are there for the running module.
    let id = unique_id("wasm-started");
    let out = rune.cmd(&["create", "--bundle", bundle, &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = attestation(&id);
    rune.ok(&["start", &id]);
    assert!(
        wait_until(Duration::from_secs(5), || dir.join("key.der").exists()
            && dir.join("evidence").exists()),
        "no attestation files after start"
    );
    rune.ok(&["kill", &id, "KILL"]);
    assert!(wait_until(Duration::from_secs(5), || rune.status(&id) == "stopped"));
    rune.ok(&["delete", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// The runtime arg `deadline=SECONDS` stops a guest still running after that long, as a
/// trap (134) with one line saying so: spinning (epoch interruption) or blocked in a
/// host call (reported after the kill grace time). A module done in time exits as
/// usual, and a malformed deadline fails `create` in one line, leaving nothing.
#[test]
fn wasm_deadline_stops_a_guest_that_runs_too_long() {
    if !ready("wasm_deadline_stops_a_guest_that_runs_too_long") {
        return;
    }
    let rune = Rune::new();
    for (name, wat) in [("loop", LOOP), ("sleep in poll_oneoff", SLEEP)] {
        let b = wasm_bundle(wat, &[], "debug deadline=0.5");
        let id = unique_id("wasm-deadline");
        let err = tempfile::NamedTempFile::new().unwrap();
        // Spawned and waited for at most 10 s: a deadline that did not work fails the
        // test instead of hanging it.
        let mut run = Command::new(RUNE)
            .arg("--root")
            .arg(rune.root.path())
            .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err.reopen().unwrap())
            .spawn()
            .unwrap();
        let (status, took) = wait_child(&mut run);
        let stderr = std::fs::read_to_string(err.path()).unwrap();
        let code = status.code();
        println!("{name}: deadline 0.5 s, exit after {took:?}");
        assert_eq!(code, Some(134), "{name}: {stderr}");
        assert!(
            stderr.contains("liberpal-wasm: /app.wasm: deadline exceeded: still running after 0.5 s (runtime arg deadline=0.5)"),
            "{name}: {stderr}"
        );
        assert!(took >= Duration::from_millis(500), "{name}: {took:?}");
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    }

    let b = wasm_bundle(HELLO, &[], "debug,deadline=30");
    let id = unique_id("wasm-deadline");
    let (code, stdout, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "hello wasm\n"),
        "{stderr}"
    );

    let b = wasm_bundle(HELLO, &[], "debug deadline=soon");
    let id = unique_id("wasm-deadline");
    let (code, stdout, stderr) = run_bundle(&rune, &b, &id);
    assert_ne!(code, Some(0));
    assert_eq!(stdout, "");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("deadline")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("runtime arg deadline=soon: not a positive number of seconds"),
        "{stderr}"
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// `rune exec` runs other modules in the same enclave, each its own process: a second
/// module's output and exit code come back to the caller, and a signal to one exec
/// ends that process only.
#[test]
fn wasm_exec_runs_more_modules_and_a_kill_ends_only_its_process() {
    if !ready("wasm_exec_runs_more_modules_and_a_kill_ends_only_its_process") {
        return;
    }
    let rune = Rune::new();
    let b = wasm_bundle(LOOP, &[], "debug");
    let tmp = tempfile::tempdir().unwrap();
    for (name, wat) in [
        ("hello", HELLO.to_string()),
        ("spin", LOOP.to_string()),
        ("seven", exit_module(7)),
    ] {
        let wasm = tmp.path().join(format!("{name}.wasm"));
        wat2wasm(&wat, &wasm);
        put_module_at(&b, &format!("{name}.wasm"), &std::fs::read(&wasm).unwrap());
    }
    let id = unique_id("wasm-exec");
    rune.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(rune.status(&id), "running");

    let out = rune.cmd(&["exec", &id, "/hello.wasm"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello wasm\n");
    assert_eq!(
        rune.cmd(&["exec", &id, "/seven.wasm"]).status.code(),
        Some(7)
    );

    // A spinning exec'd module, ended through its caller: the signal reaches that
    // process (pal_kill with its pid), not the container's own.
    let mut spin = Command::new(RUNE)
        .arg("--root")
        .arg(rune.root.path())
        .args(["exec", &id, "/spin.wasm"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(spin.try_wait().unwrap().is_none());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spin.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (status, took) = wait_child(&mut spin);
    assert_eq!(status.code(), Some(128 + 15));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        rune.status(&id),
        "running",
        "the container's own module was killed"
    );
    let out = rune.cmd(&["exec", &id, "/hello.wasm"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello wasm\n");

    rune.ok(&["kill", &id, "TERM"]);
    assert!(wait_until(Duration::from_secs(5), || rune.status(&id) == "stopped"));
    rune.ok(&["delete", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// Each bad module (unsigned, run with `debug`: the PAL first sees it as the container's
/// process is made): `rune create` fails in one line carrying the PAL's reason, and
/// nothing is left.
#[test]
fn bad_wasm_modules_are_refused_with_one_line_and_leave_nothing() {
    if !ready("bad_wasm_modules_are_refused_with_one_line_and_leave_nothing") {
        return;
    }
    let rune = Rune::new();
    let tmp = tempfile::tempdir().unwrap();
    let compile = |wat: &str| {
        let p = tmp.path().join("m.wasm");
        wat2wasm(wat, &p);
        std::fs::read(&p).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not wasm",
            b"#!/bin/sh\necho hi\n".to_vec(),
            "/app.wasm: not a WebAssembly module",
        ),
        (
            "no _start",
            compile(r#"(module (memory (export "memory") 1))"#),
            "no `_start` export",
        ),
        (
            "import WASI lacks",
            compile(
                r#"(module (import "env" "foo" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            ),
            "unknown import: `env::foo`",
        ),
        (
            "component",
            // The component-model binary header: magic, version 0x0d, layer 1.
            b"\0asm\x0d\0\x01\0".to_vec(),
            "component model): not supported",
        ),
        (
            "precompiled",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec(),
            "precompiled modules are never loaded",
        ),
        (
            // A wasm header, then a sparse file one byte over the documented 256 MiB.
            "over the size limit",
            b"\0asm\x01\0\0\0".to_vec(),
            "the module is over the size limit of 268435456 bytes",
        ),
    ];
    for (name, bytes, needle) in cases {
        let b = Bundle::new(&["/app.wasm"])
            .private_rootfs()
            .enclave(&wasm_pal(), "debug");
        put_module(&b, &bytes);
        if name == "over the size limit" {
            std::fs::OpenOptions::new()
                .write(true)
                .open(b.path().join("rootfs/app.wasm"))
                .unwrap()
                .set_len((256 << 20) + 1)
                .unwrap();
        }
        let id = unique_id("wasm-bad");
        // `create` fails, as runc's does for a program it cannot run: the module is
        // checked as the container's process is made, before anything runs.
        let out = rune.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: created: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{name}");
        // One line, rune's, carrying the PAL's reason; nothing else on stderr.
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
        let said = error_messages(&stderr);
        assert_eq!(said.len(), 1, "{name}: {stderr}");
        assert!(
            said[0].contains("liberpal-wasm: /app.wasm"),
            "{name}: {stderr}"
        );
        assert!(said[0].contains(needle), "{name}: {stderr}");
        let state = rune.cmd(&["state", &id]);
        assert!(
            !state.status.success(),
            "{name}: the container is still there"
        );
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "{name}"
        );
    }
}

#[test]
fn signed_wasm_module_runs_and_a_tampered_one_is_refused_at_create() {
    if !ready("signed_wasm_module_runs_and_a_tampered_one_is_refused_at_create") {
        return;
    }
    let rune = Rune::new();
    let keys = tempfile::tempdir().unwrap();

    // Signed: runs without `debug`, with the signed measurement.
    let b = wasm_bundle(HELLO, &[], "");
    let rootfs = b.path().join("rootfs");
    let mr = sim_sign_rootfs(keys.path(), &rootfs, "/app.wasm");
    let id = unique_id("wasm-signed");
    let (code, stdout, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "hello wasm\n");
    assert!(stderr.contains(&format!("mr_enclave={mr} ")), "{stderr}");
    assert!(stderr.contains("debug=false"), "{stderr}");

    // One byte of the module changed after signing (inside its data segment, so it is
    // still a valid module): refused by `create`, in rune's one error line.
    let module = rootfs.join("app.wasm");
    let mut bytes = std::fs::read(&module).unwrap();
    let at = bytes
        .windows(5)
        .position(|w| w == b"hello")
        .expect("data segment");
    bytes[at] = b'j';
    std::fs::write(&module, &bytes).unwrap();
    let id = unique_id("wasm-tampered");
    let create = rune.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let stderr = String::from_utf8_lossy(&create.stderr);
    assert!(!create.status.success(), "created: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let said = error_messages(&stderr).join("\n");
    assert!(said.contains("does not match the manifest"), "{stderr}");
    assert!(said.contains("/app.wasm"), "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // Unsigned without `debug`: refused too.
    std::fs::remove_file(rootfs.join("enclave.manifest.json")).unwrap();
    let id = unique_id("wasm-unsigned");
    let (code, _, stderr) = run_bundle(&rune, &b, &id);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("runs only with the runtime arg debug"),
        "{stderr}"
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// The compiled-code cache: a module is compiled once and its entry (root-only) reused;
/// an entry with one byte changed, or another module's entry put in its place, is
/// detected, never loaded, and replaced by a fresh compilation.
#[test]
fn wasm_compiled_code_is_cached_and_a_corrupted_entry_is_recompiled() {
    if !ready("wasm_compiled_code_is_cached_and_a_corrupted_entry_is_recompiled") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let rune = Rune::new();
    let platform = tempfile::tempdir().unwrap();
    let b = wasm_bundle(HELLO, &[], "debug");
    let run = || {
        let id = unique_id("wasm-cache");
        let mut c = Command::new(RUNE);
        c.env("INCLAVARE_SIM_PLATFORM_DIR", platform.path())
            .arg("--root")
            .arg(rune.root.path())
            .args(["run", "--bundle", b.path().to_str().unwrap(), &id]);
        let out = output_via_files(&mut c);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello wasm\n");
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    };
    let cache = platform.path().join("wasm-cache");
    let entry = || {
        let entries: Vec<std::path::PathBuf> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries[0].clone()
    };

    run();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    let path = entry();
    assert_eq!(mode(&path), 0o600);
    let stored = std::fs::read(&path).unwrap();
    // A file's identity and times: a rewrite makes a new file (its inode number may be
    // reused, its change time is new).
    let stamp = || {
        let m = std::fs::metadata(&path).unwrap();
        (
            m.ino(),
            m.ctime(),
            m.ctime_nsec(),
            m.mtime(),
            m.mtime_nsec(),
        )
    };
    let written = stamp();

    // A hit: the entry is used as it is (a miss writes a new file over it).
    run();
    assert_eq!(entry(), path);
    assert_eq!(stamp(), written);

    // One byte of the compiled code flipped in place: the module still runs, compiled
    // again, and the entry is written anew.
    let mut bad = stored.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(mid as u64)).unwrap();
        f.write_all(&bad[mid..mid + 1]).unwrap();
    }
    run();
    // Rewritten whole: the flipped byte is gone (a load that skipped the check would
    // have left the file as it was).
    assert_eq!(entry(), path);
    assert_eq!(std::fs::read(&path).unwrap(), stored);

    // A foreign entry: another module's (intact, made by this cache) copied over this
    // one's. Loaded, it would run `proc_exit(7)`; it is refused, the module compiled
    // again and its own entry written back.
    let seven = wasm_bundle(&exit_module(7), &[], "debug");
    let id = unique_id("wasm-cache");
    let mut c = Command::new(RUNE);
    c.env("INCLAVARE_SIM_PLATFORM_DIR", platform.path())
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "--bundle", seven.path().to_str().unwrap(), &id]);
    assert_eq!(output_via_files(&mut c).status.code(), Some(7));
    let other: Vec<std::path::PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| *p != path)
        .collect();
    assert_eq!(other.len(), 1, "{other:?}");
    std::fs::copy(&other[0], &path).unwrap();
    run();
    assert_eq!(std::fs::read(&path).unwrap(), stored);
}

/// `rune attest` of a signed wasm enclave: `sim` evidence with the module's
/// measurement, bound to the report data, which the tenant's verifier accepts with the
/// measurement pinned (and a policy allowing software TEEs).
#[test]
fn wasm_attest_gives_a_report_with_the_modules_measurement() {
    if !ready("wasm_attest_gives_a_report_with_the_modules_measurement") {
        return;
    }
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let b = wasm_bundle(LOOP, &[], "");
    let mr = sim_sign_rootfs(work.path(), &b.path().join("rootfs"), "/app.wasm");
    let id = unique_id("wasm-attest");
    let mut c = Command::new(RUNE);
    c.env("INCLAVARE_SIM_PLATFORM_DIR", &platform)
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = output_via_files(&mut c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let data = "5a".repeat(64);
    let report_file = work.path().join("report.bin");
    rune.ok(&[
        "attest",
        "--report-data",
        &data,
        "--report-file",
        report_file.to_str().unwrap(),
        &id,
    ]);
    let report = sim_tee::Report::parse(&std::fs::read(&report_file).unwrap()).unwrap();
    report.verify_signature().unwrap();
    assert_eq!(hex::encode(report.mr_enclave), mr);
    assert_eq!(report.report_data, [0x5a; 64]);
    assert!(!report.debug);

    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("allow_software_tees = true\n[expected]\nsim_mr_enclave = [\"{mr}\"]\n"),
    )
    .unwrap();
    let mut verify = Command::new(shelter_bin());
    verify
        .args(["verify", "--evidence", report_file.to_str().unwrap()])
        .args(["--report-data", &data])
        .args(["--policy", policy.to_str().unwrap()]);
    let (code, out, err) = run(&mut verify);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("verdict: ACCEPTED"), "{out}");

    rune.ok(&["delete", "--force", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// The same module through containerd (`ctr run` with rune as the runc binary), docker
/// (`--runtime rune`) and podman (`--runtime` rune's path): the module comes from a host
/// directory bound at `/tmp` of the busybox image, its output and exit code (7) come
/// back through each client.
#[test]
fn wasm_runs_through_containerd_docker_and_podman() {
    let test = "wasm_runs_through_containerd_docker_and_podman";
    if !ready(test)
        || !tool_or_skip(test, "/usr/bin/containerd")
        || !tool_or_skip(test, "/usr/sbin/dockerd")
        || !tool_or_skip(test, "/usr/bin/podman")
    {
        return;
    }
    let modules = tempfile::tempdir().unwrap();
    std::fs::set_permissions(modules.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = modules.path().join("app.wasm");
    wat2wasm(HELLO_7, &app);
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = [
        "ENCLAVE_TYPE=sim".to_string(),
        format!("ENCLAVE_RUNTIME_PATH={}", wasm_pal().display()),
        "ENCLAVE_RUNTIME_ARGS=debug".to_string(),
    ];

    let c = Containerd::start();
    let mount = format!(
        "type=bind,src={},dst=/tmp,options=rbind:ro",
        modules.path().display()
    );
    let mut args = vec!["run", "--rm", "--runc-binary", RUNE, "--mount", &mount];
    for e in &env {
        args.extend(["--env", e.as_str()]);
    }
    let id = unique_id("ctr-wasm");
    args.extend(["docker.io/library/busybox:rune", &id, "/tmp/app.wasm"]);
    let (code, out, err) = c.ctr(&args);
    assert_eq!(code, 7, "{out}{err}");
    assert!(out.contains("hello wasm"), "{out}");
    // --rm: no container, task, process or mount of it left.
    assert_eq!(c.ctr(&["containers", "ls", "-q"]).1.trim(), "");
    // The shim leaves once the container is deleted.
    wait_until(Duration::from_secs(10), || c.leftovers().is_empty());
    assert_eq!(c.leftovers(), Vec::<String>::new());
    drop(c);

    let d = Dockerd::start();
    let volume = format!("{}:/tmp:ro", modules.path().display());
    let mut args = vec![
        "run",
        "--rm",
        "--runtime",
        "rune",
        "--network",
        "none",
        "--pull=never",
        "-v",
        &volume,
    ];
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend(["busybox:rune", "/tmp/app.wasm"]);
    let (code, out, err) = d.docker(&args);
    assert_eq!(code, 7, "{out}{err}");
    assert!(out.contains("hello wasm"), "{out}");
    assert_eq!(d.docker(&["ps", "-aq"]).1.trim(), "");
    drop(d);

    let pm = common::podman::Podman::new();
    pm.import(&images().join("rootfs.tar"), "localhost/busybox:rune");
    let mut args = vec!["run", "--rm", "-v", &volume];
    args.extend(common::podman::RUN_BASE);
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend(["localhost/busybox:rune", "/tmp/app.wasm"]);
    let (code, out, err) = pm.cmd(RUNE, &args);
    assert_eq!(code, 7, "{out}{err}");
    assert_eq!(out, "hello wasm\n", "{err}");
    assert_eq!(pm.cmd(RUNE, &["ps", "-aq"]).1.trim(), "");
}

/// Grows its memory by 2,048 pages (128 MiB); `unreachable` if the growth is refused.
const GROW: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 2048)) (i32.const -1)) (then unreachable))))"#;

/// A module growing its memory past the container's memory limit (64 MiB) traps with
/// a message naming the limit and exits 134; without a limit the same growth succeeds.
/// Memories and tables count together, and a growth must fit beside what the container
/// already uses.
#[test]
fn wasm_memory_over_the_containers_limit_traps() {
    if !ready("wasm_memory_over_the_containers_limit_traps") {
        return;
    }
    let rune = Rune::new();
    let b = wasm_bundle(GROW, &[], "debug");
    let id = unique_id("wasm-grow");
    let (code, _, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(0), "no limit: {stderr}");

    let mut b = b;
    b.spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 64u64 << 20 });
    b.save();
    let id = unique_id("wasm-grow");
    let (code, _, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(134), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "liberpal-wasm: /app.wasm: memory limit exceeded: a memory wanted {} bytes, {} in all, limit {}",
            2049u64 << 16,
            2049u64 << 16,
            64u64 << 20
        )),
        "{stderr}"
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // Memories and tables count together: 40 MiB of memory, then a table of 8 Mi
    // elements (64 MiB in wasmtime, a pointer each) is past the 96 MiB.
    let b = wasm_bundle(GROW_BOTH, &[], "debug");
    let mut b = b;
    b.spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 96u64 << 20 });
    b.save();
    let id = unique_id("wasm-grow");
    let (code, _, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(134), "{stderr}");
    assert!(
        stderr.contains("memory limit exceeded: a table wanted"),
        "{stderr}"
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // Within the limit by its own count (60 MiB of 64), but not beside the runtime's
    // own memory in the same cgroup: touched, it would meet the OOM killer (137); it
    // traps instead, before it grows.
    let mut b = wasm_bundle(&grow_and_touch(960), &[], "debug");
    b.spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 64u64 << 20 });
    b.save();
    let id = unique_id("wasm-grow");
    let (code, _, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(134), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "liberpal-wasm: /app.wasm: memory limit exceeded: a memory wanted {} bytes more, beside the ",
            960u64 << 16
        )),
        "{stderr}"
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    // The same module with room for it runs to the end.
    b.spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 256u64 << 20 });
    b.save();
    let id = unique_id("wasm-grow");
    let (code, _, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// Grows its memory by `pages` (64 KiB each), then writes to every 4 KiB page of it;
/// `unreachable` if the growth is refused without a trap.
fn grow_and_touch(pages: u32) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32) (local $end i32)
    (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))
    (local.set $end (i32.mul (i32.const {total}) (i32.const 65536)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (i32.store (local.get $i) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 4096)))
      (br $l)))))"#,
        total = pages + 1
    )
}

/// Grows its memory to 40 MiB, then a table by 8 Mi elements; `unreachable` if either
/// growth is refused without a trap.
const GROW_BOTH: &str = r#"(module
  (memory (export "memory") 1)
  (table 1 funcref)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 639)) (i32.const -1)) (then unreachable))
    (if (i32.eq (table.grow 0 (ref.null func) (i32.const 8388608)) (i32.const -1)) (then unreachable))))"#;

/// Each wasm process is a task of the container (a thread of its init), so the
/// container's pids limit (`linux.resources.pids.limit`, `rune update --pids-limit`)
/// bounds how many run: with no task left, `rune exec` fails in one line naming the
/// limit and the enclave's running module goes on; `rune attest` still answers; once
/// the limit is raised, exec runs again.
#[test]
fn wasm_processes_are_bounded_by_the_containers_pids_limit() {
    if !ready("wasm_processes_are_bounded_by_the_containers_pids_limit") {
        return;
    }
    let rune = Rune::new();
    let b = wasm_bundle(SLEEP, &[], "debug");
    let tmp = tempfile::tempdir().unwrap();
    let hello = tmp.path().join("hello.wasm");
    wat2wasm(HELLO, &hello);
    put_module_at(&b, "hello.wasm", &std::fs::read(&hello).unwrap());
    let id = unique_id("wasm-pids");
    let platform = tmp.path().join("platform");
    let out = rune.sim(
        &platform,
        &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cg = leftovers(rune.root.path(), &id)
        .into_iter()
        .filter_map(|l| l.strip_prefix("cgroup ").map(String::from))
        .find(|p| Path::new(p).join("pids.max").exists())
        .expect("the container has a pids cgroup");
    let read = |f: &str| -> String {
        std::fs::read_to_string(Path::new(&cg).join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    // A first exec makes the runtime's lazily started threads; then the count settles.
    assert_eq!(
        String::from_utf8_lossy(&rune.cmd(&["exec", &id, "/hello.wasm"]).stdout),
        "hello wasm\n"
    );
    std::thread::sleep(Duration::from_millis(200));
    let current: u64 = read("pids.current").parse().unwrap();

    // No task left (the agent's thread for the request) and one left (the agent's
    // thread fits, the module's does not): refused, in one line naming the limit.
    for limit in [current, current + 1] {
        rune.ok(&["update", "--pids-limit", &limit.to_string(), &id]);
        assert_eq!(read("pids.max"), limit.to_string());
        let out = rune.cmd(&["exec", &id, "/hello.wasm"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "limit {limit}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "limit {limit}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
        assert!(
            lines.iter().any(|l| l.contains("pids limit")),
            "limit {limit}: {stderr}"
        );
        assert_eq!(
            error_lines(&stderr).len(),
            1,
            "limit {limit}: one error line: {stderr}"
        );
        assert_eq!(rune.status(&id), "running", "limit {limit}");
    }
    // An attestation needs no task of its own.
    let report_file = tmp.path().join("report.bin");
    rune.ok(&[
        "attest",
        "--report-data",
        &"11".repeat(64),
        "--report-file",
        report_file.to_str().unwrap(),
        &id,
    ]);
    let report = sim_tee::Report::parse(&std::fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(report.report_data, [0x11; 64]);

    rune.ok(&["update", "--pids-limit", &(current + 16).to_string(), &id]);
    let out = rune.cmd(&["exec", &id, "/hello.wasm"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello wasm\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    rune.ok(&["delete", "--force", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// With arguments, writes "hello wasm\n" and returns; without, sleeps 60 s in
/// `poll_oneoff` (the container's own process, alive to be exec'd into).
const HELLO_OR_SLEEP: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $asg (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 400) "hello wasm\n")
  (func (export "_start")
    (drop (call $asg (i32.const 300) (i32.const 304)))
    (if (i32.gt_u (i32.load (i32.const 300)) (i32.const 1))
      (then
        (i32.store (i32.const 0) (i32.const 400)) (i32.store (i32.const 4) (i32.const 11))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
      (else
        (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const 60000000000))
        (drop (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)))))))"#;

/// A signed enclave runs only the module it was signed for: `rune exec` of that module
/// is a second process in it, an exec of any other module in the image is refused in
/// one line (its measurement is not the enclave's), and the enclave goes on.
#[test]
fn signed_wasm_enclave_execs_only_its_own_module() {
    if !ready("signed_wasm_enclave_execs_only_its_own_module") {
        return;
    }
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let b = wasm_bundle(HELLO_OR_SLEEP, &[], "");
    let hello = work.path().join("hello.wasm");
    wat2wasm(HELLO, &hello);
    put_module_at(&b, "other.wasm", &std::fs::read(&hello).unwrap());
    let mr = sim_sign_rootfs(work.path(), &b.path().join("rootfs"), "/app.wasm");
    let platform = work.path().join("platform");
    let id = unique_id("wasm-signed-exec");
    let out = rune.sim(
        &platform,
        &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("mr_enclave={mr} ")), "{stderr}");

    let out = rune.cmd(&["exec", &id, "/app.wasm", "again"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello wasm\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    let out = rune.cmd(&["exec", &id, "/other.wasm"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // The PAL's reason on the exec's stderr (the process's own, where the PAL speaks
    // of it), then rune's one error line.
    assert!(
        stderr.starts_with(
            "liberpal-wasm: /other.wasm: not the module this enclave was signed for (/app.wasm)\n"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let said = error_messages(&stderr);
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(said[0].contains("\"/other.wasm\""), "{stderr}");
    assert!(said[0].contains("EPERM"), "{stderr}");
    assert_eq!(rune.status(&id), "running");

    rune.ok(&["delete", "--force", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// The README's liberpal-wasm walkthrough, run as a user copies it (in a directory of
/// its own, with this build's rune, sim-sign and PAL, a private platform directory and
/// state root): the module runs in a debug enclave, then signed (`debug=false`), its
/// output both times.
#[test]
fn readme_wasm_walkthrough_runs_as_written() {
    let test = "readme_wasm_walkthrough_runs_as_written";
    if !ready(test) || !tool_or_skip(test, "/usr/bin/jq") {
        return;
    }
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("mkdir -p wasm/rootfs")
        .expect("the README's wasm walkthrough");
    let end = start + readme[start..].find("\n```").expect("the block ends");
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let script = readme[start..end]
        .replace(
            "/usr/local/lib/rune/liberpal-wasm.so",
            wasm_pal().to_str().unwrap(),
        )
        .replace(
            "\nrune run",
            &format!("\nrune --root {} run", root.display()),
        );
    let bin = Path::new(RUNE).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(work.path())
        .env("PATH", path)
        .env("INCLAVARE_SIM_PLATFORM_DIR", work.path().join("platform"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.matches("hello from wasm\n").count(), 2, "{stdout}");
    assert!(stderr.contains("debug=true"), "{stderr}");
    assert!(stderr.contains("debug=false"), "{stderr}");
    for id in ["w1", "w2"] {
        assert_eq!(leftovers(&root, id), Vec::<String>::new());
    }
}
