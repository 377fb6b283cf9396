//! `containerd-shim-rune-v2` under a real, private containerd (Debian's package): its
//! own root, state and socket in a temporary directory, the shim on its PATH, the
//! busybox test image imported from a local OCI tar. Every test checks that nothing is
//! left behind: no shim or container process, mount, cgroup or rune state.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

#[test]
fn plain_containers_behave_as_with_runc() {
    if !root_or_skip("plain_containers_behave_as_with_runc") {
        return;
    }
    let c = Ctrd::start();
    let id = unique_id("plain");
    let (code, out, err) = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        &id,
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]);
    assert_eq!(code, 3, "stdout {out} stderr {err}\n{}", c.log());
    assert_eq!(out, "hello\n");
    assert!(err.contains("oops"), "{err}");
    c.assert_clean(&id);

    // stdin reaches the process and its end ends it.
    let id = unique_id("stdin");
    let (code, out, err) = c.ctr_input(
        &[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            IMAGE,
            &id,
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ],
        Some(b"through the fifo\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "THROUGH THE FIFO\ndone\n");
    c.assert_clean(&id);

    // A terminal: rune sends the pty master over the console socket; `script` gives
    // ctr the terminal it insists on.
    if Path::new("/usr/bin/script").exists() {
        let id = unique_id("tty");
        let ctr = format!(
            "/usr/bin/ctr -a {} run --rm -t --runtime {RUNTIME} {IMAGE} {id} sh -c 'tty; exit 5'",
            c.path().join("c.sock").display()
        );
        let out = Command::new("/usr/bin/script")
            .args(["-qec", &ctr, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(5), "{text}");
        assert!(text.contains("/dev/pts/"), "{text}");
        c.assert_clean(&id);
    }

    // The shim answers -v.
    let v = Command::new(SHIM).arg("-v").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains(RUNTIME));
}

#[test]
fn sim_carrier_signs_the_image_program_once() {
    if !root_or_skip("sim_carrier_signs_the_image_program_once") {
        return;
    }
    let c = Ctrd::start();
    let mut reports = Vec::new();
    for _ in 0..2 {
        let id = unique_id("sim");
        reports.push(c.sim_report(&id));
        c.assert_clean(&id);
    }
    let digest = sim_tee::program_digest(std::fs::File::open("/bin/busybox").unwrap()).unwrap();
    let spec = sim_tee::EnclaveSpec {
        entrypoint: "/bin/sh".into(),
        args: vec![],
    };
    let key = sim_tee::SignerKey::load(&c.path().join("signer.key")).unwrap();
    for r in &reports {
        r.verify_signature().unwrap();
        assert_eq!(r.mr_enclave, sim_tee::measure_program(&digest, &spec));
        assert_eq!(
            r.mr_signer,
            sim_tee::sha384(&key.public()),
            "signed with the configured key"
        );
        assert!(!r.debug, "a signed enclave is not a debug one");
    }
    // The second container's manifest came from the cache.
    let log = c.log();
    assert_eq!(log.matches("(signed)").count(), 1, "{log}");
    assert_eq!(log.matches("(cached manifest)").count(), 1, "{log}");
}

/// `RUNE_CARRIER=sim` with a program that is a WebAssembly module: the shim signs it
/// as any sim program and gives it the wasm PAL (`[enclave_runtime.wasm]`), which runs
/// it with the measurement liberpal-sim's function gives for the module's bytes.
#[test]
fn sim_carrier_runs_a_wasm_module_in_the_wasm_enclave() {
    let test = "sim_carrier_runs_a_wasm_module_in_the_wasm_enclave";
    if !root_or_skip(test) {
        return;
    }
    if !Path::new("/usr/bin/wat2wasm").exists() {
        eprintln!("skipping {test}: needs wabt's wat2wasm");
        return;
    }
    let c = Ctrd::start();
    let tmp = tempfile::tempdir().unwrap();
    let wat = tmp.path().join("app.wat");
    std::fs::write(
        &wat,
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello wasm\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 11))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 7))))"#,
    )
    .unwrap();
    let wasm = tmp.path().join("app.wasm");
    test_support::run(
        "/usr/bin/wat2wasm",
        &[wat.to_str().unwrap(), "-o", wasm.to_str().unwrap()],
    )
    .unwrap();
    let module = std::fs::read(&wasm).unwrap();
    let layout = tmp.path().join("layout");
    test_support::ImageBuilder::new()
        .base(&test_support::busybox_oci_tar().unwrap())
        .executable("app.wasm", &module)
        .cmd(&["/app.wasm"])
        .build(&layout, "latest")
        .unwrap();
    let tar = tmp.path().join("wasm.tar");
    test_support::run(
        "tar",
        &[
            "-C",
            layout.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    )
    .unwrap();
    let image = "docker.io/library/wasm:rune";
    c.import("default", &tar, image).unwrap();
    c.write_config(&format!(
        "[enclave_runtime.wasm]\nenclave_runtime_path = \"{}\"\n",
        artifact("pal-wasm", "liberpal_wasm.so").display()
    ));

    let id = unique_id("wasm");
    let (code, out, err) = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--env",
        "RUNE_CARRIER=sim",
        image,
        &id,
    ]);
    assert_eq!(code, 7, "stdout {out} stderr {err}\n{}", c.log());
    assert_eq!(out, "hello wasm\n");
    let mr = hex::encode(sim_tee::measure_program(
        &sim_tee::sha384(&module),
        &sim_tee::EnclaveSpec {
            entrypoint: "/app.wasm".into(),
            args: vec![],
        },
    ));
    // liberpal-wasm announces the signed measurement (not a debug enclave).
    assert!(err.contains(&format!("mr_enclave={mr} ")), "{err}");
    assert!(err.contains("debug=false"), "{err}");
    c.assert_clean(&id);
}

/// The signature server, on a loopback port of its choosing.
struct SignatureServer {
    child: Child,
    address: String,
}

impl SignatureServer {
    fn start(key: &Path) -> SignatureServer {
        let mut child = Command::new(artifact("signature-server", "signature-server"))
            .args(["--listen", "127.0.0.1:0", "--sim-key"])
            .arg(key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        SignatureServer { child, address }
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for SignatureServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn sim_carrier_signs_through_the_signature_server_and_fails_cleanly_without_it() {
    if !root_or_skip("sim_carrier_signs_through_the_signature_server_and_fails_cleanly_without_it")
    {
        return;
    }
    let c = Ctrd::start();
    let server_key = c.path().join("server.key");
    let ok = Command::new(artifact("pal-sim", "sim-sign"))
        .args(["keygen", "--out"])
        .arg(&server_key)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut server = SignatureServer::start(&server_key);
    c.write_config(&format!(
        "[signature]\nserver_address = \"{}\"\n",
        server.address
    ));
    // The node holds no signing key at all.
    std::fs::remove_file(c.path().join("signer.key")).unwrap();

    let id = unique_id("signsrv");
    let report = c.sim_report(&id);
    report.verify_signature().unwrap();
    let key = sim_tee::SignerKey::load(&server_key).unwrap();
    assert_eq!(
        report.mr_signer,
        sim_tee::sha384(&key.public()),
        "signed by the server's key"
    );
    c.assert_clean(&id);

    // The server is gone: the create fails naming it, and leaves nothing.
    server.stop();
    let id = unique_id("nosrv");
    let err = c.run_fails(
        &id,
        &[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--env",
            "RUNE_CARRIER=sim",
            IMAGE,
            &id,
            "true",
        ],
    );
    let want = format!(
        "signature server {}: unreachable (Connection refused",
        server.address
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn a_long_running_enclave_container_is_managed_through_ctr() {
    if !root_or_skip("a_long_running_enclave_container_is_managed_through_ctr") {
        return;
    }
    let c = Ctrd::start();
    let id = unique_id("long");
    let (code, _, err) = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--env",
        "RUNE_CARRIER=sim",
        IMAGE,
        &id,
        "sh",
        "-c",
        "sleep 1000",
    ]);
    assert_eq!(code, 0, "{err}\n{}", c.log());
    assert_eq!(c.status(&id), "RUNNING");

    // exec: output, exit code.
    let (code, out, err) = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo inside; exit 4",
    ]);
    assert_eq!((code, out.as_str()), (4, "inside\n"), "{err}");
    // The enclave runs only the program it was signed for, and says so.
    let (code, _, err) = c.ctr(&["task", "exec", "--exec-id", "e2", &id, "/bin/echo", "x"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("not the program this enclave was signed for"),
        "{err}"
    );

    // ps lists the container's processes.
    let (code, out, err) = c.ctr(&["task", "ps", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() >= 2, "{out}");

    // metrics come from rune's cgroup statistics.
    let (code, out, err) = c.ctr(&["task", "metrics", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("memory.usage_in_bytes"), "{out}");

    // pause and resume.
    let (code, _, err) = c.ctr(&["task", "pause", &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(c.status(&id), "PAUSED");
    let (code, _, err) = c.ctr(&["task", "resume", &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(c.status(&id), "RUNNING");

    // SIGKILL ends it.
    c.kill_and_remove(&id);
}

#[test]
fn containers_outlive_a_containerd_restart() {
    if !root_or_skip("containers_outlive_a_containerd_restart") {
        return;
    }
    let mut c = Ctrd::start();
    let id = unique_id("restart");
    let (code, _, err) = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ]);
    assert_eq!(code, 0, "{err}\n{}", c.log());
    c.stop_daemon();
    c.spawn_daemon().unwrap();
    let (_, out, _) = c.ctr(&["task", "ls"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING")),
        "{out}"
    );
    c.kill_and_remove(&id);
}

#[test]
fn bad_input_fails_the_create_with_one_clear_line_and_leaves_nothing() {
    if !root_or_skip("bad_input_fails_the_create_with_one_clear_line_and_leaves_nothing") {
        return;
    }
    let c = Ctrd::start();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "unknown carrier",
            vec!["--env", "RUNE_CARRIER=tdx"],
            "RUNE_CARRIER=\"tdx\" is not a carrier",
        ),
        (
            "graphene",
            vec!["--env", "RUNE_CARRIER=graphene"],
            "graphene is not implemented",
        ),
        (
            "no such program",
            vec!["--env", "RUNE_CARRIER=sim"],
            "is not in the image",
        ),
    ];
    for (what, extra, want) in cases {
        let id = unique_id("bad");
        let mut args = vec!["run", "--rm", "--runtime", RUNTIME];
        args.extend(extra.iter().copied());
        args.extend([IMAGE, id.as_str()]);
        args.push(if what == "no such program" {
            "/bin/nothing"
        } else {
            "true"
        });
        let err = c.run_fails(&id, &args);
        assert!(err.contains(want), "{what}: {err}");
    }

    // A missing signing key.
    c.write_config("");
    let cfg = std::fs::read_to_string(c.path().join("config.toml")).unwrap();
    std::fs::write(
        c.path().join("config.toml"),
        cfg.replace("signer.key", "missing.key"),
    )
    .unwrap();
    let id = unique_id("nokey");
    let err = c.run_fails(
        &id,
        &[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--env",
            "RUNE_CARRIER=sim",
            IMAGE,
            &id,
            "true",
        ],
    );
    assert!(
        err.contains("signing key") && err.contains("missing.key"),
        "{err}"
    );

    // A missing rune binary.
    std::fs::write(
        c.path().join("config.toml"),
        format!(
            "rune = \"{}/no-rune\"\nrune_root = \"{}/rune\"\n",
            c.path().display(),
            c.path().display()
        ),
    )
    .unwrap();
    let id = unique_id("norune");
    let err = c.run_fails(
        &id,
        &["run", "--rm", "--runtime", RUNTIME, IMAGE, &id, "true"],
    );
    assert!(
        err.contains("no-rune") && err.contains("not found"),
        "{err}"
    );

    // A malformed configuration stops the shim from starting, naming the key.
    std::fs::write(c.path().join("config.toml"), "rune = 7\n").unwrap();
    let id = unique_id("badcfg");
    let err = c.run_fails(
        &id,
        &["run", "--rm", "--runtime", RUNTIME, IMAGE, &id, "true"],
    );
    assert!(err.contains("rune") && err.contains("line 1"), "{err}");

    // A bundle whose root filesystem does not exist.
    c.write_config("");
    let id = unique_id("norootfs");
    let missing = c.path().join("no-rootfs");
    let err = c.run_fails(
        &id,
        &[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--rootfs",
            missing.to_str().unwrap(),
            &id,
            "true",
        ],
    );
    assert!(err.contains("no-rootfs"), "{err}");
}

/// A create that fails (the program is not executable) says why once, as through
/// containerd's runc shim with Debian's runc: the runtime's error reaches ctr as the
/// task's error, not also as the container's output.
#[test]
fn a_failing_create_reports_its_error_once_as_with_runc() {
    if !root_or_skip("a_failing_create_reports_its_error_once_as_with_runc") {
        return;
    }
    let c = Ctrd::start();
    let mut seen = Vec::new();
    for runtime in ["io.containerd.runc.v2", RUNTIME] {
        let id = unique_id("once");
        let (code, out, err) = c.ctr(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            IMAGE,
            &id,
            "/etc/passwd",
        ]);
        c.ctr(&["container", "delete", &id]);
        let text = format!("{out}{err}");
        let times = text.matches("permission denied").count();
        seen.push((code != 0, times, text));
        if runtime == RUNTIME {
            c.assert_clean(&id);
        }
    }
    let (runc, rune) = (&seen[0], &seen[1]);
    assert!(runc.0 && runc.1 >= 1, "runc shim: {}", runc.2);
    assert_eq!(
        (rune.0, rune.1),
        (runc.0, runc.1),
        "rune: {}\nrunc: {}",
        rune.2,
        runc.2
    );
}

/// `ctr run --null-io`: the task's standard streams lead nowhere, yet writing to them
/// succeeds, reading stdin meets its end, and the task exits with its program's code, as
/// through containerd's runc shim with Debian's runc; for a plain and an enclave
/// (`RUNE_CARRIER=sim`, so `ENCLAVE_TYPE=sim`) container.
#[test]
fn null_io_tasks_write_and_exit_as_with_runc() {
    if !root_or_skip("null_io_tasks_write_and_exit_as_with_runc") {
        return;
    }
    let c = Ctrd::start();
    // Each failing write or read has its own code; 3 when all of them work.
    let script = "echo hi || exit 4; echo err >&2 || exit 5; cat || exit 6; exit 3";
    let ids = std::cell::RefCell::new(Vec::new());
    let run = |runtime: &str, env: &[&str]| {
        let id = unique_id("nullio");
        ids.borrow_mut().push(id.clone());
        let mut args = vec!["run", "--rm", "--null-io", "--runtime", runtime];
        args.extend(env);
        args.extend([IMAGE, id.as_str(), "sh", "-c", script]);
        let seen = c.ctr(&args);
        c.ctr(&["container", "delete", &id]);
        if runtime == RUNTIME {
            c.assert_clean(&id);
        }
        seen
    };
    let runc = run("io.containerd.runc.v2", &[]);
    assert_eq!(runc, (3, String::new(), String::new()), "runc shim");
    let plain = run(RUNTIME, &[]);
    assert_eq!(plain, runc, "plain container\n{}", c.log());
    let enclave = run(RUNTIME, &["--env", "RUNE_CARRIER=sim"]);
    assert_eq!(enclave, runc, "enclave container\n{}", c.log());
    let enclave_id = ids.borrow().last().cloned().unwrap();
    let signed = format!("{enclave_id}: sim enclave mr_enclave");
    assert!(c.log().contains(&signed), "not an enclave:\n{}", c.log());
}
