//! The software enclave `liberpal-sim` under rune: signed manifests, measurement, and
//! refusal of unsigned or altered enclaves.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// Signs the busybox `sh` of the test image as an enclave; returns (manifest, mr_enclave).
fn sign(dir: &Path, sign_bin: &Path, executable: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("signer.key");
    let manifest = dir.join("enclave.manifest.json");
    assert!(Command::new(sign_bin)
        .args(["keygen", "--out"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let out = Command::new(sign_bin)
        .args(["sign", "--entrypoint", "/bin/sh", "--executable"])
        .arg(executable)
        .arg("--key")
        .arg(&key)
        .arg("--out")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mr = text
        .lines()
        .find_map(|l| l.strip_prefix("mr_enclave "))
        .unwrap()
        .to_string();
    (manifest, mr)
}

/// A sim enclave bundle whose image carries `manifest` at /enclave.manifest.json.
fn sim_bundle(pal: &Path, manifest: Option<&Path>, args: &str) -> Bundle {
    let b = Bundle::new(&["/bin/sh", "-c", "echo enclave says hi; exit 9"])
        .private_rootfs()
        .enclave(pal, args);
    if let Some(m) = manifest {
        std::fs::copy(m, b.path().join("rootfs/enclave.manifest.json")).unwrap();
    }
    b
}

fn run_sim(rune: &Rune, platform: &Path, b: &Bundle, id: &str) -> std::process::Output {
    rune.sim(
        platform,
        &["run", "--bundle", b.path().to_str().unwrap(), id],
    )
}

#[test]
fn signed_enclave_runs_and_reports_its_measurement() {
    if !root_or_skip("signed_enclave_runs_and_reports_its_measurement") {
        return;
    }
    let (pal, sign_bin) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let (manifest, mr) = sign(work.path(), &sign_bin, &images().join("rootfs/bin/busybox"));

    let b = sim_bundle(&pal, Some(&manifest), "");
    let id = unique_id("sim");
    let out = run_sim(&rune, &platform, &b, &id);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "enclave says hi\n");
    assert!(stderr.contains(&format!("mr_enclave={mr} ")), "{stderr}");
    assert!(stderr.contains("debug=false"), "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // The platform key was created once, private to root.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(platform.join("platform.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn altered_or_unsigned_enclaves_are_refused_and_leave_nothing() {
    if !root_or_skip("altered_or_unsigned_enclaves_are_refused_and_leave_nothing") {
        return;
    }
    let (pal, sign_bin) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");

    // Signed for another program: the container's /bin/sh is not what was signed.
    let other = work.path().join("other-program");
    std::fs::write(&other, b"\x7fELF not busybox").unwrap();
    let (changed, _) = sign(work.path(), &sign_bin, &other);
    // A manifest whose svn was raised after signing.
    let good_dir = work.path().join("good");
    std::fs::create_dir(&good_dir).unwrap();
    let (good, _) = sign(&good_dir, &sign_bin, &images().join("rootfs/bin/busybox"));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    m["svn"] = json!(99);
    let forged = work.path().join("forged.json");
    std::fs::write(&forged, m.to_string()).unwrap();

    let cases: [(&str, Option<&Path>, &str, &str); 3] = [
        (
            "executable changed after signing",
            Some(&changed),
            "",
            "does not match the manifest",
        ),
        (
            "manifest tampered",
            Some(&forged),
            "",
            "signature does not verify",
        ),
        (
            "unsigned without debug",
            None,
            "",
            "runs only with the runtime arg debug",
        ),
    ];
    for (name, manifest, args, needle) in cases {
        let b = sim_bundle(&pal, manifest, args);
        let id = unique_id("simbad");
        let out = run_sim(&rune, &platform, &b, &id);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: ran");
        let said = error_messages(&stderr).join("\n");
        assert!(
            stderr.contains(needle) || said.contains(needle),
            "{name}: {stderr}"
        );
        // One line, rune's, naming the PAL's reason: nothing else on stderr.
        let rune_lines = error_lines(&stderr).len();
        assert_eq!(rune_lines, 1, "{name}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
        assert!(said.contains(needle), "{name}: {stderr}");
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "{name}"
        );
    }

    // Unsigned with `debug`: runs, and says it is a debug enclave.
    let b = sim_bundle(&pal, None, "debug");
    let out = run_sim(&rune, &platform, &b, &unique_id("simdbg"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("debug=true"), "{stderr}");
}

/// A debug enclave whose program is not in the container fails `create` (as runc's
/// create fails for a missing program), in one line naming the program with the PAL's
/// reason, and leaves nothing.
#[test]
fn a_debug_enclave_whose_program_is_missing_fails_create_in_one_line() {
    if !root_or_skip("a_debug_enclave_whose_program_is_missing_fails_create_in_one_line") {
        return;
    }
    let (pal, _) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let b = Bundle::new(&["/bin/no-such-program", "x"])
        .private_rootfs()
        .enclave(&pal, "debug");
    let id = unique_id("simmissing");
    let out = rune.sim(
        &platform,
        &["create", "--bundle", b.path().to_str().unwrap(), &id],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "created: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let said = error_messages(&stderr);
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(said[0].contains("/bin/no-such-program"), "{stderr}");
    assert!(said[0].contains("pal_create_process"), "{stderr}");
    assert!(said[0].contains("No such file or directory"), "{stderr}");
    // runc's words lead (docker maps them to exit status 127).
    assert!(
        said[0].contains(r#"exec: "/bin/no-such-program": no such file or directory"#),
        "{stderr}"
    );
    assert!(!rune.cmd(&["state", &id]).status.success());
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// A pids limit that leaves an enclave's program no task (the enclave runtime's own
/// threads count) is refused in one line naming the field, instead of a panic in the
/// init after `start`; one task more runs.
#[test]
fn a_pids_limit_leaving_an_enclave_program_no_task_fails_create_in_one_line() {
    if !root_or_skip("a_pids_limit_leaving_an_enclave_program_no_task") {
        return;
    }
    let (pal, _) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let mut small = Bundle::new(&["/bin/sh", "-c", "exit 9"]).enclave(&pal, "debug");
    let tasks = 4; // rune-core's ENCLAVE_RUNTIME_TASKS
    small.spec["linux"]["resources"]["pids"] = json!({ "limit": tasks });
    small.save();
    let cases = [(&small, "linux.resources.pids.limit: 4")];
    for (b, needle) in cases {
        let id = unique_id("simcant");
        let out = run_sim(&rune, &platform, b, &id);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{needle}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(error_messages(&stderr)[0].contains(needle), "{stderr}");
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    }
    small.spec["linux"]["resources"]["pids"] = json!({ "limit": tasks + 1 });
    small.save();
    let id = unique_id("simcan");
    let out = run_sim(&rune, &platform, &small, &id);
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// A debug enclave whose program is not there fails in one line that reads as an error
/// and names the program and the cause, as runc's `exec: "/bin/nonexist": stat
/// /bin/nonexist: no such file or directory` does; nothing is left.
#[test]
fn a_missing_enclave_program_fails_in_one_error_line() {
    if !root_or_skip("a_missing_enclave_program_fails_in_one_error_line") {
        return;
    }
    let (pal, _) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let b = Bundle::new(&["/bin/nonexist"]).enclave(&pal, "debug");
    let id = unique_id("simmissing");
    let out = run_sim(&rune, &work.path().join("platform"), &b, &id);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    assert!(stderr.contains("/bin/nonexist"), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// An enclave container whose stderr is a pipe nobody reads runs its program, as a plain
/// container (and runc's) does: the PAL's notice (`debug=true`) is lost, not a crash.
#[test]
fn an_enclave_runs_with_stderr_a_pipe_nobody_reads() {
    if !root_or_skip("an_enclave_runs_with_stderr_a_pipe_nobody_reads") {
        return;
    }
    let (pal, _) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let b = Bundle::new(&["/bin/sh", "-c", "echo ran >/tmp/r; exit 9"])
        .private_rootfs()
        .bind(out.path(), "/tmp")
        .enclave(&pal, "debug");
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let id = unique_id("simpipe");
    let status = Command::new(RUNE)
        .env("INCLAVARE_SIM_PLATFORM_DIR", work.path().join("platform"))
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(write))
        .status()
        .unwrap();
    let ran = std::fs::read_to_string(out.path().join("r")).unwrap_or_default();
    let _ = rune.cmd(&["delete", "--force", &id]);
    assert_eq!(
        (status.code(), ran.as_str()),
        (Some(9), "ran\n"),
        "{status:?}"
    );
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

#[test]
fn attest_gives_a_signed_report_bound_to_the_report_data() {
    if !root_or_skip("attest_gives_a_signed_report_bound_to_the_report_data") {
        return;
    }
    let (pal, sign_bin) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let (manifest, mr) = sign(work.path(), &sign_bin, &images().join("rootfs/bin/busybox"));
    let mut b = sim_bundle(&pal, Some(&manifest), "");
    b.spec["process"]["args"] = json!(["/bin/sh", "-c", "sleep 60"]);
    b.save();
    let id = unique_id("simatt");
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

    let data = "11".repeat(64);
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
    assert_eq!(report.report_data, [0x11; 64]);
    assert!(!report.debug);

    // The tenant's verifier: genuine sim evidence, refused by the default policy
    // because it proves nothing about hardware; accepted, with the measurement pinned,
    // by a policy that allows software TEEs.
    let shelter = shelter_bin();
    let verify = |extra: &[&str]| {
        let mut c = Command::new(&shelter);
        c.args(["verify", "--evidence", report_file.to_str().unwrap()])
            .args(["--report-data", &data])
            .args(extra);
        run(&mut c)
    };
    let (code, out, err) = verify(&[]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("proves nothing about hardware"), "{out}");
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("allow_software_tees = true\n[expected]\nsim_mr_enclave = [\"{mr}\"]\n"),
    )
    .unwrap();
    let (code, out, err) = verify(&["--policy", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("verdict: ACCEPTED"), "{out}");

    // exec runs through the enclave, which runs only the program it was signed for.
    let ok = rune.cmd(&["exec", &id, "/bin/sh", "-c", "echo from exec; exit 3"]);
    assert_eq!(
        ok.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "from exec\n");
    let refused = rune.cmd(&["exec", &id, "/bin/echo", "not signed"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("pal_create_process() failed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    rune.ok(&["delete", "--force", &id]);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// The `mr_enclave` a run announced on stderr.
fn announced_mr(stderr: &str) -> String {
    stderr
        .split("mr_enclave=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no measurement in: {stderr}"))
        .to_string()
}

#[test]
fn kept_program_digests_follow_changes_to_the_program() {
    if !root_or_skip("kept_program_digests_follow_changes_to_the_program") {
        return;
    }
    let (pal, sign_bin) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let b = sim_bundle(&pal, None, "debug");
    let busybox = b.path().join("rootfs/bin/busybox");
    let measure = || {
        let out = Command::new(&sign_bin)
            .args(["measure", "--entrypoint", "/bin/sh", "--executable"])
            .arg(&busybox)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // Digests of files changed in the last seconds are not kept (they could change
    // again within one timestamp tick); let the fresh copy settle.
    std::thread::sleep(std::time::Duration::from_millis(3100));

    let first = run_sim(&rune, &platform, &b, &unique_id("simdig"));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(9), "{stderr}");
    assert_eq!(announced_mr(&stderr), measure());
    let kept: Vec<_> = std::fs::read_dir(platform.join("digests"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(kept.len(), 1, "one program digest kept: {kept:?}");

    // The same bytes measure the same from the kept digest.
    let again = run_sim(&rune, &platform, &b, &unique_id("simdig"));
    assert_eq!(
        announced_mr(&String::from_utf8_lossy(&again.stderr)),
        measure()
    );

    // Change one byte in place (same size, same inode): the kept digest is stale and
    // must not be used. The last byte is in the section headers, which execution
    // does not read.
    let mut bytes = std::fs::read(&busybox).unwrap();
    let before = measure();
    *bytes.last_mut().unwrap() ^= 0xff;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&busybox)
            .unwrap();
        f.write_all(&bytes).unwrap();
    }
    let after = measure();
    assert_ne!(before, after);
    let changed = run_sim(&rune, &platform, &b, &unique_id("simdig"));
    assert_eq!(
        announced_mr(&String::from_utf8_lossy(&changed.stderr)),
        after
    );
}

#[test]
fn the_program_inside_gets_reports_bound_to_its_own_data() {
    if !root_or_skip("the_program_inside_gets_reports_bound_to_its_own_data") {
        return;
    }
    let (pal, _) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    // The documented interface, used from busybox's shell: one 64-byte message out,
    // one report back.
    let mut b = sim_bundle(&pal, None, "debug");
    b.spec["process"]["args"] = json!([
        "/bin/sh",
        "-c",
        "printf '%064d' 7 >&\"$INCLAVARE_SIM_FD\"; \
         dd bs=1k count=1 <&\"$INCLAVARE_SIM_FD\" 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'"
    ]);
    b.save();
    let out = run_sim(&rune, &platform, &b, &unique_id("simev"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let bytes = hex::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let report = sim_tee::Report::parse(&bytes).unwrap();
    report.verify_signature().unwrap();
    let mut expected = [b'0'; 64];
    expected[63] = b'7';
    assert_eq!(report.report_data, expected);
    assert_eq!(hex::encode(report.mr_enclave), announced_mr(&stderr));
    assert!(report.debug);
    let host_key = sim_tee::PlatformKey::load_or_create(&platform).unwrap();
    assert_eq!(
        report.platform_key,
        host_key.public(),
        "signed by this host's key"
    );
}

/// Init-data from the `enclave.init.data` annotation: checked at create (a bad document
/// fails it in one line), its SHA-384 zero-padded in every report's config id, the
/// document readable from inside; an event the program records extends RTMR3 by the
/// spec's formula (computed here with sha2).
#[test]
fn init_data_is_bound_into_the_config_id_and_events_into_rtmr3() {
    if !root_or_skip("init_data_is_bound_into_the_config_id_and_events_into_rtmr3") {
        return;
    }
    use sha2::Digest;
    const DOC: &str =
        "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"cdh.toml\" = \"x = 1\"\n";
    let (pal, _) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let mut b = sim_bundle(&pal, None, "debug");
    b.spec["annotations"]["enclave.init.data"] = json!(DOC);
    b.spec["process"]["args"] = json!([
        "/bin/sh",
        "-c",
        "printf 'extend 4 example.org Loaded model\\n' >&\"$INCLAVARE_SIM_FD\"; \
         dd bs=1k count=1 <&\"$INCLAVARE_SIM_FD\" 2>/dev/null; echo; \
         printf 'init-data\\n' >&\"$INCLAVARE_SIM_FD\"; \
         dd bs=64k count=1 <&\"$INCLAVARE_SIM_FD\" 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'; echo; \
         printf '%064d' 7 >&\"$INCLAVARE_SIM_FD\"; \
         dd bs=1k count=1 <&\"$INCLAVARE_SIM_FD\" 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'"
    ]);
    b.save();
    let out = run_sim(&rune, &platform, &b, &unique_id("siminit"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "ok", "{stdout}");
    assert_eq!(
        hex::decode(lines[1]).unwrap(),
        [b"ok\n", DOC.as_bytes()].concat()
    );
    let report = sim_tee::Report::parse(&hex::decode(lines[2]).unwrap()).unwrap();
    report.verify_signature().unwrap();
    let mut id = sha2::Sha384::digest(DOC.as_bytes()).to_vec();
    id.resize(64, 0);
    assert_eq!(report.config_id.to_vec(), id);
    let text = "example.org Loaded model";
    let tagged = [
        &b"LEAA"[..],
        &(text.len() as u32).to_le_bytes(),
        text.as_bytes(),
    ]
    .concat();
    let rtmr3 = sha2::Sha384::digest([&[0u8; 48][..], &sha2::Sha384::digest(&tagged)].concat());
    assert_eq!(report.rtmr[3].to_vec(), rtmr3.to_vec());
    // RTMR0: the runtime's record of the program's launch.
    assert_eq!(report.rtmr_counts, [1, 0, 0, 1]);

    // Not init-data: create fails in one line.
    b.spec["annotations"]["enclave.init.data"] = json!(DOC.replace("sha384", "md5"));
    b.save();
    let out = run_sim(&rune, &platform, &b, &unique_id("siminitbad"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    // (rune's log line quotes the message: `msg="init-data: unknown algorithm \"md5\" …"`.)
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("init-data: unknown algorithm") && stderr.contains("md5"),
        "{stderr}"
    );
}

/// The init of an enclave container hosts the enclave runtime inside rune's process: its
/// command line, which the container and `docker top` see, names the enclave program, not
/// the host's bundle, state root or pid file.
#[test]
fn an_enclave_init_shows_no_host_paths() {
    if !root_or_skip("an_enclave_init_shows_no_host_paths") {
        return;
    }
    let (pal, sign_bin) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let (manifest, _) = sign(work.path(), &sign_bin, &images().join("rootfs/bin/busybox"));
    let mut b = sim_bundle(&pal, Some(&manifest), "");
    b.spec["process"]["args"] = json!(["/bin/sh", "-c", "sleep 30"]);
    b.save();
    let id = unique_id("title");
    let pid_file = work.path().join("init.pid");
    let mut c = Command::new(RUNE);
    c.env("INCLAVARE_SIM_PLATFORM_DIR", &platform)
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "-d", "--pid-file"])
        .arg(&pid_file)
        .args(["--bundle", b.path().to_str().unwrap(), &id]);
    let out = output_via_files(&mut c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let read = || std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    // The title is set as the program starts.
    assert!(wait_until(std::time::Duration::from_secs(10), || read()
        .starts_with(b"rune-init\0")));
    let cmdline = String::from_utf8_lossy(&read()).replace('\0', " ");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.trim())).unwrap();
    rune.ok(&["delete", "--force", &id]);
    assert!(
        cmdline.starts_with("rune-init /bin/sh -c sleep 30"),
        "{cmdline}"
    );
    for host in [b.path(), rune.root.path(), work.path()] {
        assert!(!cmdline.contains(host.to_str().unwrap()), "{cmdline}");
    }
    assert_eq!(comm.trim(), "rune-init");
    assert!(leftovers(rune.root.path(), &id).is_empty());
}

/// Realtime signals reach the enclave program through `pal_kill`, by number and by name,
/// as they reach a plain container's program (see parity.rs).
#[test]
fn realtime_signals_reach_the_enclave_program() {
    if !root_or_skip("realtime_signals_reach_the_enclave_program") {
        return;
    }
    let (pal, sign_bin) = sim_artifacts();
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let (manifest, _) = sign(work.path(), &sign_bin, &images().join("rootfs/bin/busybox"));
    let mut b = sim_bundle(&pal, Some(&manifest), "").bind(out.path(), "/tmp");
    b.spec["process"]["args"] = json!([
        "/bin/sh",
        "-c",
        "trap 'echo 37 >> /tmp/r' 37; trap 'echo 40 >> /tmp/r' 40; \
         echo ready > /tmp/ready; while :; do sleep 0.05; done"
    ]);
    b.save();
    let id = unique_id("rtsig");
    let mut c = Command::new(RUNE);
    c.env("INCLAVARE_SIM_PLATFORM_DIR", &platform)
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let o = output_via_files(&mut c);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let wait = std::time::Duration::from_secs(10);
    assert!(wait_until(wait, || out.path().join("ready").exists()));
    let lines = || {
        std::fs::read_to_string(out.path().join("r"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    rune.ok(&["kill", &id, "37"]);
    wait_until(wait, || lines() >= 1);
    rune.ok(&["kill", &id, "RTMIN+6"]);
    wait_until(wait, || lines() >= 2);
    let got = std::fs::read_to_string(out.path().join("r")).unwrap_or_default();
    rune.ok(&["delete", "--force", &id]);
    assert_eq!(got, "37\n40\n");
    assert!(leftovers(rune.root.path(), &id).is_empty());
}
