//! Enclave containers: the C skeleton PALs v1-v3 through rune, containerd and docker.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn every_pal_version_runs_the_payload_as_the_container() {
    if !root_or_skip("every_pal_version_runs_the_payload_as_the_container") {
        return;
    }
    let rune = Rune::new();
    for version in 1..=3 {
        let mut b = Bundle::new(&["/bin/app", "two words", "exit_code", "5"])
            .enclave(&skeleton_pal(version), "debug,extra");
        b.spec["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("PAL_VISIBLE=yes"));
        b.save();
        let id = unique_id("pal");
        let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "v{version}: {stderr}");
        assert!(
            stdout.contains("Hello Inclavare Containers!"),
            "v{version}: {stdout}"
        );
        assert!(
            stdout.contains("argv: /bin/app|two words|exit_code|5\n"),
            "v{version}: {stdout}"
        );
        assert!(
            stderr.contains(&format!(
                "pal_init: version={version} args=debug extra log_level=info"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("Enclave runtime skeleton initialization succeeded"),
            "{stderr}"
        );
        assert!(stderr.contains("pal_destroy"), "v{version}: {stderr}");
        // v2 and v3 pass the environment, without the ENCLAVE_* variables rune consumed.
        assert_eq!(
            stdout.contains("env: PAL_VISIBLE=yes"),
            version >= 2,
            "v{version}: {stdout}"
        );
        assert!(!stdout.contains("env: ENCLAVE_"), "v{version}: {stdout}");
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    }
}

#[test]
fn signals_reach_the_enclave_payload_and_kill_9_ends_it() {
    if !root_or_skip("signals_reach_the_enclave_payload_and_kill_9_ends_it") {
        return;
    }
    let rune = Rune::new();
    for (signal, expected) in [("TERM", 128 + 15), ("9", 128 + 9)] {
        let b = Bundle::new(&["app", "wait_timeout", "60"]).enclave(&skeleton_pal(3), "");
        let id = unique_id("sig");
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
        rune.ok(&["kill", &id, signal]);
        let status = run.wait().unwrap();
        assert_eq!(status.code(), Some(expected), "kill {signal}");
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    }
}

/// Each bad enclave setup: one-line error naming the cause, non-zero exit, nothing left.
#[test]
fn bad_enclave_runtimes_fail_create_cleanly() {
    if !root_or_skip("bad_enclave_runtimes_fail_create_cleanly") {
        return;
    }
    let rune = Rune::new();
    let not_elf = rune.root.path().join("not-elf.so");
    std::fs::write(&not_elf, "not a library").unwrap();
    let v4 = skeleton_pal(4);
    let claims_v3 =
        pal::testing::build_skeleton_claiming(2, 3, &skeleton_pal(3).with_file_name(""));
    let v3 = skeleton_pal(3);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "missing PAL",
            vec![
                "ENCLAVE_TYPE=sim".into(),
                "ENCLAVE_RUNTIME_PATH=/no/such/pal.so".into(),
            ],
            "/no/such/pal.so",
        ),
        (
            "non-ELF PAL",
            vec![
                "ENCLAVE_TYPE=sim".into(),
                format!("ENCLAVE_RUNTIME_PATH={}", not_elf.display()),
            ],
            "not an ELF shared object",
        ),
        (
            "version 4",
            vec![
                "ENCLAVE_TYPE=sim".into(),
                format!("ENCLAVE_RUNTIME_PATH={}", v4.display()),
            ],
            "unsupported PAL API version 4",
        ),
        (
            "missing symbol",
            vec![
                "ENCLAVE_TYPE=sim".into(),
                format!("ENCLAVE_RUNTIME_PATH={}", claims_v3.display()),
            ],
            "requires symbol pal_get_local_report",
        ),
        (
            "pal_init fails",
            vec![
                "ENCLAVE_TYPE=sim".into(),
                format!("ENCLAVE_RUNTIME_PATH={}", v3.display()),
                "ENCLAVE_RUNTIME_ARGS=init_error=13".into(),
            ],
            "pal_init() failed with -13 (EACCES",
        ),
        (
            "unknown type",
            vec![
                "ENCLAVE_TYPE=tdx".into(),
                format!("ENCLAVE_RUNTIME_PATH={}", v3.display()),
            ],
            "\"tdx\" is not supported",
        ),
        (
            "no path",
            vec!["ENCLAVE_TYPE=sim".into()],
            "runtime path is not configured",
        ),
        (
            "intelSgx without SGX",
            vec![
                "ENCLAVE_TYPE=intelSgx".into(),
                format!("ENCLAVE_RUNTIME_PATH={}", v3.display()),
            ],
            "needs SGX hardware",
        ),
    ];
    let sgx_here = enclave_host_has_sgx();
    for (name, env, needle) in cases {
        if name == "intelSgx without SGX" && sgx_here {
            continue;
        }
        let mut b = Bundle::new(&["app"]);
        let e = b.spec["process"]["env"].as_array_mut().unwrap();
        e.extend(env.into_iter().map(serde_json::Value::from));
        b.save();
        let id = unique_id("badpal");
        let out = rune.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: create succeeded");
        // The PAL may print on its own; rune's error is one line.
        let rune_lines = error_messages(&err);
        assert_eq!(rune_lines.len(), 1, "{name}: {err}");
        assert!(
            rune_lines[0].contains(needle),
            "{name}: error does not say {needle:?}: {err}"
        );
        // Each cause once ("…: No such file or directory: No such file or directory"
        // was a missing PAL's line).
        let parts: Vec<&str> = rune_lines[0].split(": ").collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(!parts[i + 1..].contains(p), "{name}: {p:?} twice: {err}");
        }
        if name == "missing PAL" {
            // strerror(ENOENT), as runc ends its line for a missing file.
            assert_eq!(
                rune_lines[0].matches("No such file or directory").count(),
                1,
                "{err}"
            );
        }
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "{name}"
        );
    }
}

/// A misspelled setting is not ignored (the container would run with the default: an
/// image without its signature policy): create fails in one line naming it and the
/// setting meant, and leaves nothing behind. The names are the README's.
#[test]
fn misspelled_enclave_settings_fail_create_cleanly() {
    if !root_or_skip("misspelled_enclave_settings_fail_create_cleanly") {
        return;
    }
    let rune = Rune::new();
    let (pal, _) = sim_artifacts();
    let image = "ENCLAVE_IMAGE=127.0.0.1:5000/test/app:v1";
    // Name, variables, annotations, [the misspelled setting, the one meant].
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, [&'a str; 2]);
    let cases: Vec<Case> = vec![
        (
            "variable",
            vec![image, "ENCLAVE_IMAGE_POLICI=kbs:///default/policy/image"],
            vec![],
            ["ENCLAVE_IMAGE_POLICI", "ENCLAVE_IMAGE_POLICY"],
        ),
        (
            "annotation",
            vec![image],
            vec![("enclave.image.polcy", "kbs:///default/policy/image")],
            ["enclave.image.polcy", "enclave.image.policy"],
        ),
        (
            "runtime variable",
            vec!["ENCLAVE_RUNTIME_ARG=debug"],
            vec![],
            ["ENCLAVE_RUNTIME_ARG", "ENCLAVE_RUNTIME_ARGS"],
        ),
    ];
    for (name, env, annotations, [wrong, meant]) in cases {
        let mut b = Bundle::new(&["/bin/true"]).enclave(&pal, "debug");
        let e = b.spec["process"]["env"].as_array_mut().unwrap();
        e.extend(env.into_iter().map(serde_json::Value::from));
        for (k, v) in annotations {
            b.spec["annotations"][k] = serde_json::Value::from(v);
        }
        b.save();
        let id = unique_id("misspelt");
        let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        let lines = error_messages(&err);
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(
            lines[0].contains(&format!("unknown enclave setting {wrong} "))
                || lines[0].contains(&format!("unknown enclave annotation {wrong} ")),
            "{name}: {err}"
        );
        assert!(lines[0].contains(&format!(" {meant},")), "{name}: {err}");
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "{name}"
        );
    }
}

fn enclave_host_has_sgx() -> bool {
    std::path::Path::new("/dev/sgx_enclave").exists()
}

#[test]
fn spec_enclave_writes_the_annotations_rune_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(RUNE)
        .args([
            "spec",
            "--enclave",
            "sim",
            "--enclave-runtime-path",
            "/opt/pal.so",
            "--bundle",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["annotations"]["enclave.type"], "sim");
    assert_eq!(spec["annotations"]["enclave.runtime.path"], "/opt/pal.so");
}

#[test]
fn containerd_and_docker_run_enclave_containers() {
    if !root_or_skip("containerd_and_docker_run_enclave_containers")
        || !tool_or_skip(
            "containerd_and_docker_run_enclave_containers",
            "/usr/bin/containerd",
        )
        || !tool_or_skip(
            "containerd_and_docker_run_enclave_containers",
            "/usr/sbin/dockerd",
        )
    {
        return;
    }
    let pal = skeleton_pal(2);
    let env = [
        "ENCLAVE_TYPE=sim".to_string(),
        format!("ENCLAVE_RUNTIME_PATH={}", pal.display()),
        "ENCLAVE_RUNTIME_ARGS=debug".to_string(),
    ];

    let c = Containerd::start();
    let mut args = vec![
        "run".to_string(),
        "--rm".into(),
        "--runc-binary".into(),
        RUNE.into(),
    ];
    for e in &env {
        args.extend(["--env".to_string(), e.clone()]);
    }
    args.extend([
        "docker.io/library/busybox:rune".into(),
        unique_id("ctr-pal"),
        "app".into(),
        "exit_code".into(),
        "3".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = c.ctr(&args);
    assert_eq!(code, 3, "{err}");
    assert!(
        out.contains("Hello Inclavare Containers!") && out.contains("argv: app|exit_code|3"),
        "{out}"
    );

    // `ctr task exec` goes through the shim's `exec --detach --pid-file` into the PAL.
    let id = unique_id("ctr-exec");
    let mut args = vec!["run", "-d", "--runc-binary", RUNE];
    for e in &env {
        args.extend(["--env", e.as_str()]);
    }
    args.extend([
        "docker.io/library/busybox:rune",
        &id,
        "app",
        "wait_timeout",
        "60",
    ]);
    let (code, _, err) = c.ctr(&args);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "app",
        "from exec",
        "exit_code",
        "5",
    ]);
    assert_eq!(code, 5, "{err}");
    assert!(out.contains("argv: app|from exec|exit_code|5"), "{out}");
    let (code, _, err) = c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(wait_until(Duration::from_secs(10), || {
        c.ctr(&["task", "ls"])
            .1
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))
    }));
    let (code, _, err) = c.ctr(&["task", "delete", &id]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = c.ctr(&["container", "delete", &id]);
    assert_eq!(code, 0, "{err}");

    // liberpal-sim, the software enclave: measured, and the exit code comes back.
    let (sim_pal, _) = sim_artifacts();
    let sim_env = [
        "ENCLAVE_TYPE=sim".to_string(),
        format!("ENCLAVE_RUNTIME_PATH={}", sim_pal.display()),
        "ENCLAVE_RUNTIME_ARGS=debug".to_string(),
    ];
    let id = unique_id("ctr-sim");
    let mut args = vec!["run", "--rm", "--runc-binary", RUNE];
    for e in &sim_env {
        args.extend(["--env", e.as_str()]);
    }
    args.extend([
        "docker.io/library/busybox:rune",
        &id,
        "/bin/sh",
        "-c",
        "echo in the sim enclave; exit 6",
    ]);
    let (code, out, err) = c.ctr(&args);
    assert_eq!(code, 6, "{out}{err}");
    assert!(out.contains("in the sim enclave"), "{out}");
    assert!(
        format!("{out}{err}").contains("liberpal-sim: mr_enclave="),
        "{out}{err}"
    );
    drop(c);

    let d = Dockerd::start();
    let mut args = vec![
        "run".to_string(),
        "--rm".into(),
        "--runtime".into(),
        "rune".into(),
        "--network".into(),
        "none".into(),
        "--pull=never".into(),
    ];
    for e in &env {
        args.extend(["-e".to_string(), e.clone()]);
    }
    args.extend([
        "busybox:rune".into(),
        "app".into(),
        "exit_code".into(),
        "4".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = d.docker(&args);
    assert_eq!(code, 4, "{err}");
    assert!(
        out.contains("Hello Inclavare Containers!") && out.contains("argv: app|exit_code|4"),
        "{out}"
    );

    let mut args = vec![
        "run",
        "--rm",
        "--runtime",
        "rune",
        "--network",
        "none",
        "--pull=never",
    ];
    for e in &sim_env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend([
        "busybox:rune",
        "/bin/sh",
        "-c",
        "echo in the sim enclave; exit 7",
    ]);
    let (code, out, err) = d.docker(&args);
    assert_eq!(code, 7, "{out}{err}");
    assert!(out.contains("in the sim enclave"), "{out}");
    assert!(
        format!("{out}{err}").contains("liberpal-sim: mr_enclave="),
        "{out}{err}"
    );
}

#[test]
fn exec_and_attest_go_through_the_pal_of_the_running_enclave() {
    if !root_or_skip("exec_and_attest_go_through_the_pal_of_the_running_enclave") {
        return;
    }
    let rune = Rune::new();
    let b = Bundle::new(&["app", "wait_timeout", "60"]).enclave(&skeleton_pal(3), "");
    let id = unique_id("agent");
    rune.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(rune.status(&id), "running");

    let out = rune.cmd(&[
        "exec",
        "-e",
        "PAL_FROM_EXEC=1",
        // What docker's exec passes (the container's env): not for the process, as
        // with the container's own program.
        "-e",
        "ENCLAVE_RUNTIME_ARGS=debug",
        &id,
        "app",
        "two words",
        "exit_code",
        "4",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("argv: app|two words|exit_code|4\n"),
        "{stdout}"
    );
    assert!(stdout.contains("env: PAL_FROM_EXEC=1"), "{stdout}");
    assert!(!stdout.contains("ENCLAVE_"), "{stdout}");

    let report = rune.ok(&["attest", "--report-data", "abcd", &id]);
    let report = hex::decode(report.trim()).unwrap();
    assert_eq!(&report[..15], b"SKELETON-REPORT");
    assert_eq!(
        &report[16..20],
        &[0xab, 0xcd, 0, 0],
        "report data reached the PAL"
    );
    let out = rune.cmd(&["attest", "--isRA", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--isRA) needs an intelSgx enclave"), "{err}");

    rune.ok(&["kill", &id, "9"]);
    assert!(wait_until(Duration::from_secs(10), || rune.status(&id) == "stopped"));
    rune.ok(&["delete", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // A plain container has no agent: attest says so.
    let plain = Bundle::new(&["sleep", "60"]);
    let pid = unique_id("plain");
    rune.ok(&[
        "run",
        "-d",
        "--bundle",
        plain.path().to_str().unwrap(),
        &pid,
    ]);
    let out = rune.cmd(&["attest", &pid]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a running enclave container"));
    rune.ok(&["delete", "--force", &pid]);
}

/// `intelSgx` on a host laid out like one with the in-tree SGX driver (real character
/// device nodes, udev's `/dev/sgx/*` links, aesmd's directory): the container gets the
/// nodes, an `rwm` device-cgroup rule for each, and aesmd bind-mounted, while the
/// bundle stays untouched.
#[test]
fn intel_sgx_containers_get_the_hosts_sgx_devices_and_aesmd() {
    if !root_or_skip("intel_sgx_containers_get_the_hosts_sgx_devices_and_aesmd") {
        return;
    }
    let (pal, _) = sim_artifacts();
    let host = fake_sgx_host();
    let h = host.path();
    std::fs::write(h.join("var/run/aesmd/greeting"), "from aesmd\n").unwrap();

    let rune = Rune::new();
    let mut b = Bundle::new(&[
        "/bin/sh",
        "-c",
        // No driver answers 10:125 here: opening it must reach the kernel's device
        // lookup (ENODEV), not be refused by the device cgroup (EPERM).
        "ls -ln /dev/sgx_enclave /dev/sgx/enclave /dev/sgx_provision; \
         cat /var/run/aesmd/greeting; cat /dev/sgx_enclave",
    ])
    .enclave(&pal, "debug");
    let env = b.spec["process"]["env"].as_array_mut().unwrap();
    env.retain(|v| v != "ENCLAVE_TYPE=sim");
    env.push(json!("ENCLAVE_TYPE=intelSgx"));
    b.save();
    let before = std::fs::read(b.path().join("config.json")).unwrap();

    let id = unique_id("sgx");
    let mut c = Command::new(RUNE);
    c.env("RUNE_HOST_ROOT", h)
        .env("INCLAVARE_SIM_PLATFORM_DIR", host.path().join("sim"))
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = output_via_files(&mut c);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = |path: &str| {
        stdout
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing: {stdout}{stderr}"))
            .to_string()
    };
    for (path, minor) in [
        ("/dev/sgx_enclave", 125),
        ("/dev/sgx/enclave", 125),
        ("/dev/sgx_provision", 126),
    ] {
        let l = line(path);
        assert!(l.starts_with("crw-------"), "{l}");
        assert!(
            l.contains(&format!("10, {minor:>4}")) || l.contains(&format!("10, {minor}")),
            "{l}"
        );
    }
    assert!(stdout.contains("from aesmd\n"), "{stdout}");
    assert!(stderr.contains("No such device"), "{stderr}");
    assert!(!stderr.contains("Operation not permitted"), "{stderr}");
    assert_eq!(
        std::fs::read(b.path().join("config.json")).unwrap(),
        before,
        "the bundle is not written"
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    let stray: Vec<_> = std::fs::read_dir(rune.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(stray.is_empty(), "left in the state root: {stray:?}");

    // Without the SGX flag the same container is refused, saying what was found.
    std::fs::write(h.join("proc/cpuinfo"), "flags\t\t: fpu\n").unwrap();
    let out = output_via_files(
        Command::new(RUNE)
            .env("RUNE_HOST_ROOT", h)
            .arg("--root")
            .arg(rune.root.path())
            .args(["run", "--bundle", b.path().to_str().unwrap(), &id]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no sgx flag in /proc/cpuinfo"), "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// A host laid out like one with the in-tree SGX driver: the `sgx` flag, the device
/// nodes, udev's link, and aesmd's directory.
fn fake_sgx_host() -> tempfile::TempDir {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    for d in ["proc", "dev/sgx", "var/run/aesmd"] {
        std::fs::create_dir_all(h.join(d)).unwrap();
    }
    std::fs::write(h.join("proc/cpuinfo"), "flags\t\t: fpu sgx sgx_lc\n").unwrap();
    for (name, minor) in [("dev/sgx_enclave", 125), ("dev/sgx_provision", 126)] {
        mknod(
            &h.join(name),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(10, minor),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("../sgx_enclave", h.join("dev/sgx/enclave")).unwrap();
    host
}

/// `rune attest --isRA` on an `intelSgx` container: the QE's TARGETINFO comes from the
/// host's aesmd (here a stand-in replaying a quote recorded on SGX hardware), the
/// REPORT from the PAL's `pal_get_local_report` (the skeleton PAL handing back that
/// quote's REPORT), and the quote back from aesmd, checked to carry that REPORT.
#[test]
fn intel_sgx_attest_gets_a_dcap_quote_through_the_pal_and_aesmd() {
    use aesm::replay::{Behaviour, ReplayAesmd};
    if !root_or_skip("intel_sgx_attest_gets_a_dcap_quote_through_the_pal_and_aesmd") {
        return;
    }
    let quote = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rats/testdata/sgx_quote"),
    )
    .unwrap();
    let report = aesm::report_of_quote(&quote).unwrap();
    let host = fake_sgx_host();
    let h = host.path();
    let socket = h.join("var/run/aesmd/aesm.socket");
    let aesmd = ReplayAesmd::start(&socket, quote.clone(), Behaviour::default()).unwrap();

    let rune = Rune::new();
    let mut b = Bundle::new(&["app", "wait_timeout", "60"])
        .private_rootfs()
        .enclave(&skeleton_pal(3), "");
    std::fs::write(b.path().join("rootfs/recorded-report.bin"), report).unwrap();
    b.spec["process"]["cwd"] = json!("/");
    let env = b.spec["process"]["env"].as_array_mut().unwrap();
    env.retain(|v| v != "ENCLAVE_TYPE=sim");
    env.push(json!("ENCLAVE_TYPE=intelSgx"));
    b.save();
    let id = unique_id("sgx-ra");
    let out = output_via_files(
        Command::new(RUNE)
            .env("RUNE_HOST_ROOT", h)
            .arg("--root")
            .arg(rune.root.path())
            .args(["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The quote, byte for byte the recorded one (aesmd's buffer padding dropped).
    let file = b.path().join("quote.bin");
    rune.ok(&[
        "attest",
        "--isRA",
        "--report-file",
        file.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(std::fs::read(&file).unwrap(), quote);
    assert_eq!(aesmd.requests(), aesm::replay::QUOTE_EXCHANGE);
    // Without --isRA: the REPORT itself, targeted at the QE.
    let local = rune.ok(&["attest", &id]);
    assert_eq!(hex::decode(local.trim()).unwrap(), report);

    // What cannot work says so in one line, and the container keeps running.
    for (args, expect) in [
        (
            &["attest", "--report-data", "ab"][..],
            "the PAL API passes no report data",
        ),
        (
            &["attest", "--isRA", "--quote-type", "epidLinkable"][..],
            "Intel has retired EPID",
        ),
    ] {
        let mut args = args.to_vec();
        args.push(&id);
        let out = rune.cmd(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // aesmd gone: the error names its socket as the container sees it.
    drop(aesmd);
    let out = rune.cmd(&["attest", "--isRA", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("aesmd is not reachable at /var/run/aesmd/aesm.socket"),
        "{err}"
    );
    assert_eq!(rune.status(&id), "running");

    rune.ok(&["kill", &id, "9"]);
    assert!(wait_until(Duration::from_secs(10), || rune.status(&id) == "stopped"));
    rune.ok(&["delete", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// As runc's `create` makes the container's process and only `start` runs it: a v2/v3
/// PAL is asked for the process (`pal_create_process`) at `create` and runs it
/// (`pal_exec`) at `start`; v1 has only `pal_exec`, at `start`. Before `start` nothing of
/// the payload ran, and a created container killed before a start leaves nothing
/// (the skeleton's created payload, a child waiting to be started, ends with it).
#[test]
fn the_payload_is_made_at_create_and_runs_only_at_start() {
    if !root_or_skip("the_payload_is_made_at_create_and_runs_only_at_start") {
        return;
    }
    let rune = Rune::new();
    for version in 1..=3 {
        let b = Bundle::new(&["/bin/app", "exit_code", "3"]).enclave(&skeleton_pal(version), "");
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("stdout");
        let create = |id: &str| {
            let out = std::fs::File::create(&out_path).unwrap();
            let status = Command::new(RUNE)
                .arg("--root")
                .arg(rune.root.path())
                .args(["create", "--bundle", b.path().to_str().unwrap(), id])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "v{version}: create failed");
        };

        let id = unique_id("made");
        create(&id);
        assert_eq!(rune.status(&id), "created", "v{version}");
        // The PAL's pid a v2/v3 PAL made at create: the skeleton forks it then.
        let pids = rune.ok(&["ps", "--format", "json", &id]);
        let pids: Vec<i64> = serde_json::from_str(&pids).unwrap();
        assert_eq!(
            pids.len(),
            if version == 1 { 1 } else { 2 },
            "v{version}: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let before = std::fs::read_to_string(&out_path).unwrap();
        assert!(
            before.contains("Hello Inclavare Containers!"),
            "v{version}: {before}"
        );
        assert!(
            !before.contains("argv:"),
            "v{version}: ran before start: {before}"
        );
        rune.ok(&["start", &id]);
        assert!(wait_until(Duration::from_secs(10), || rune.status(&id) == "stopped"));
        let after = std::fs::read_to_string(&out_path).unwrap();
        assert!(
            after.contains("argv: /bin/app|exit_code|3\n"),
            "v{version}: {after}"
        );
        rune.ok(&["delete", &id]);
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

        // Created, never started: killing it ends the waiting payload unrun (it sees
        // its start pipe's end of file as the init exits, and does not start).
        let id = unique_id("unstarted");
        create(&id);
        rune.ok(&["kill", &id, "TERM"]);
        assert!(wait_until(Duration::from_secs(10), || rune.status(&id) == "stopped"));
        rune.ok(&["delete", &id]);
        std::thread::sleep(Duration::from_millis(300));
        let after = std::fs::read_to_string(&out_path).unwrap();
        assert!(
            !after.contains("argv:"),
            "v{version}: ran without a start: {after}"
        );
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    }
}
