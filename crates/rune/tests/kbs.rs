//! End to end, for real: `verdictd` on loopback holding a secret for one `sim`
//! measurement, and an enclave container (run by rune) whose program is the
//! attestation agent. The genuine enclave gets the secret; the same container with
//! another executable is refused, and no secret reaches it.

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use sha2::Digest;

const SECRET: &[u8] = b"the enclave's database key";

/// Builds a sim enclave bundle running the agent (with `tweak` bytes appended to
/// the executable, to make it another program) and returns it with its mr_enclave.
/// The broker's URL (argument 2) is set when verdictd runs.
fn agent_bundle(dir: &Path, tweak: &[u8]) -> (Bundle, String) {
    let (pal, _) = sim_artifacts();
    let agent = release_bin("attestation-agent", "attestation-agent");
    let mut b = Bundle::new(&[
        "/bin/attestation-agent",
        "--url",
        "URL",
        "get-resource",
        "kbs:///default/key/demo",
    ])
    .private_rootfs()
    .enclave(&pal, "");
    // The host's network: verdictd listens on the host's loopback.
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.save();
    let rootfs = b.path().join("rootfs");
    install(&rootfs, &agent, "/bin/attestation-agent");
    let exe = rootfs.join("bin/attestation-agent");
    let mut f = std::fs::OpenOptions::new().append(true).open(&exe).unwrap();
    std::io::Write::write_all(&mut f, tweak).unwrap();
    drop(f);
    let mr = sim_sign_rootfs(dir, &rootfs, "/bin/attestation-agent");
    (b, mr)
}

#[test]
fn only_the_expected_enclave_gets_the_secret() {
    if !root_or_skip("only_the_expected_enclave_gets_the_secret") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let platform = dir.path().join("platform");

    // The genuine program first, to learn the measurement verdictd will admit.
    let (genuine, mr) = agent_bundle(dir.path(), b"");

    // verdictd: the secret on disk, a policy admitting that one sim measurement, and
    // the `affirming` resource policy.
    let store = dir.path().join("resources");
    std::fs::create_dir(&store).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(store.join("default\\x2Fkey\\x2Fdemo"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, SECRET))
        .unwrap();
    std::fs::write(
        dir.path().join("attestation.toml"),
        format!("allow_software_tees = true\n[expected]\nsim_mr_enclave = [\"{mr}\"]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("verdictd.toml"),
        "listen = \"127.0.0.1:0\"\ninsecure_http = true\nresource_policy = \"affirming\"\nattestation_policy = \"attestation.toml\"\n[storage]\ntype = \"localfs\"\ndir = \"resources\"\n",
    )
    .unwrap();
    let (mut verdictd, url) = start_announcing(
        Command::new(release_bin("verdictd", "verdictd"))
            .arg("--config")
            .arg(dir.path().join("verdictd.toml")),
        &dir.path().join("verdictd.log"),
    );

    let rune = Rune::new();
    let run = |b: &mut Bundle| {
        let args = b.spec["process"]["args"].as_array_mut().unwrap();
        args[2] = serde_json::json!(url);
        b.save();
        let id = unique_id("kbs");
        let out = output_via_files(
            Command::new(RUNE)
                .env("INCLAVARE_SIM_PLATFORM_DIR", &platform)
                .arg("--root")
                .arg(rune.root.path())
                .args(["run", "--bundle", b.path().to_str().unwrap(), &id]),
        );
        assert!(leftovers(rune.root.path(), &id).is_empty());
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let mut genuine = genuine;
    let (code, out, err) = run(&mut genuine);
    let digest = hex::encode(sha2::Sha256::digest(SECRET));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("sha256:{digest}")), "{out}");
    assert!(out.contains("attested as sim"), "{out}");
    // The secret itself never reaches the container's output (the host reads it).
    assert!(!out.contains("database key") && !err.contains("database key"));

    // Another executable in an otherwise identical, correctly signed enclave.
    let (mut other, other_mr) = agent_bundle(dir.path(), b"\0changed");
    assert_ne!(other_mr, mr);
    let (code, out, err) = run(&mut other);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("401") && err.contains("denies"), "{err}");
    assert!(!out.contains(&digest), "{out}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(verdictd.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(verdictd.wait().unwrap().success());
    let log = std::fs::read_to_string(dir.path().join("verdictd.log")).unwrap();
    assert!(log.contains("released"), "{log}");
    assert!(!log.contains("database key"), "the secret reached the log");
}
