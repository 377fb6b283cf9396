//! End to end, for real: an attested-TLS server in a `sim` enclave container run by
//! rune, `inclavared` relaying to it, and the tenant's `shelter remoteattestation` and
//! `shelter mrverify`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use serde_json::json;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A release binary of the workspace, built if missing.
fn built(args: &[&str], path: &str) -> PathBuf {
    let p = workspace().join("target/release").join(path);
    if !p.exists() {
        assert!(Command::new(env!("CARGO"))
            .args(["build", "--release"])
            .args(args)
            .current_dir(workspace())
            .status()
            .unwrap()
            .success());
    }
    p
}

struct Inclavared {
    child: Child,
    socket: PathBuf,
}

impl Inclavared {
    fn start(dir: &Path, name: &str, xfer: &Path, policy: &Path, extra: &[&str]) -> Inclavared {
        let socket = dir.join(format!("{name}.sock"));
        let (child, addr) = start_announcing(
            Command::new(built(&["-p", "inclavared"], "inclavared"))
                .args(extra)
                .arg("--listen")
                .arg(format!("unix://{}", socket.display()))
                .arg("--xfer")
                .arg(format!("unix://{}", xfer.display()))
                .arg("--policy")
                .arg(policy),
            &dir.join(format!("{name}.log")),
        );
        assert!(addr.starts_with("unix://"), "{addr}");
        Inclavared { child, socket }
    }

    fn addr(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// SIGTERM: it exits 0 and removes its socket.
    fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "inclavared exited {status}");
        assert!(!self.socket.exists(), "socket left behind");
    }
}

impl Drop for Inclavared {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shelter(args: &[&str]) -> (i32, String, String) {
    run(Command::new(shelter_bin()).args(args))
}

/// `shelter remoteattestation` at `addr` under `policy`, with `extra` flags.
fn remote(addr: &str, policy: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["remoteattestation", "--addr", addr, "--policy"];
    args.push(policy.to_str().unwrap());
    args.extend(extra);
    shelter(&args)
}

#[test]
fn shelter_attests_a_sim_enclave_through_inclavared() {
    if !root_or_skip("shelter_attests_a_sim_enclave_through_inclavared") {
        return;
    }
    let (pal, _) = sim_artifacts();
    let server = built(
        &["-p", "rats-tls", "--example", "enclave_server"],
        "examples/enclave_server",
    );
    let dir = tempfile::tempdir().unwrap();
    let sock_dir = dir.path().join("sock");
    std::fs::create_dir(&sock_dir).unwrap();
    let platform = dir.path().join("platform");

    // The enclave container: the server, signed, listening on a socket in a shared dir.
    let mut b = Bundle::new(&[
        "/bin/enclave_server",
        "--listen",
        "unix:///sock/enclave.sock",
        "--mutual",
        "--message",
        "hello from the enclave",
    ])
    .private_rootfs()
    .enclave(&pal, "");
    let rootfs = b.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("sock")).unwrap();
    install(&rootfs, &server, "/bin/enclave_server");
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/sock", "type": "bind", "source": sock_dir, "options": ["rbind", "rw"]}));
    b.save();
    let mr = sim_sign_rootfs(dir.path(), &rootfs, "/bin/enclave_server");

    let rune = Rune::new();
    let id = unique_id("eaa");
    let rune_cmd = |args: &[&str]| {
        let mut c = Command::new(RUNE);
        c.env("INCLAVARE_SIM_PLATFORM_DIR", &platform)
            .arg("--root")
            .arg(rune.root.path())
            .args(args);
        output_via_files(&mut c)
    };
    let out = rune_cmd(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let upstream = sock_dir.join("enclave.sock");
    assert!(
        wait_until(Duration::from_secs(10), || upstream.exists()),
        "the enclave server never listened"
    );

    // Policies: this measurement, or another one.
    let policy = |name: &str, mr: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!("allow_software_tees = true\n[expected]\nsim_mr_enclave = [\"{mr}\"]\n"),
        )
        .unwrap();
        p
    };
    let good = policy("good.toml", &mr);
    let other = policy("other.toml", &"00".repeat(48));
    let relay = Inclavared::start(dir.path(), "inclavared", &upstream, &good, &[]);
    let addr = relay.addr();

    let (code, out, err) = remote(&addr, &good, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verdict: ACCEPTED"), "{out}");
    assert!(out.contains(&format!("mrenclave  {mr}")), "{out}");
    assert!(out.contains("hello from the enclave"), "{out}");

    let (code, out, err) = remote(&addr, &other, &["--json"]);
    assert_eq!(code, 3, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["accepted"], false);
    assert!(
        doc["reasons"].to_string().contains("sim_mr_enclave"),
        "{out}"
    );

    // The default policy refuses sim, saying why.
    let (code, out, _) = shelter(&["remoteattestation", "--addr", &addr]);
    assert_eq!(code, 3);
    assert!(out.contains("proves nothing about hardware"), "{out}");

    // mrverify: the program the tenant built is the one running.
    let exe = rootfs.join("bin/enclave_server");
    let (code, out, err) = shelter(&[
        "mrverify",
        "--executable",
        exe.to_str().unwrap(),
        "--entrypoint",
        "/bin/enclave_server",
        "--addr",
        &addr,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("MATCH"), "{out}");
    let (code, out, _) = shelter(&[
        "mrverify",
        "--executable",
        "/bin/busybox",
        "--entrypoint",
        "/bin/enclave_server",
        "--addr",
        &addr,
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("MISMATCH"), "{out}");

    relay.stop();

    // Mutual: inclavared requires tenants to attest, under its own tenant policy; its own
    // certificates (to the tenant and to the enclave) have RSA-3072 keys here.
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(&tenants, "allow_software_tees = true\n").unwrap();
    let relay = Inclavared::start(
        dir.path(),
        "inclavared-mutual",
        &upstream,
        &good,
        &[
            "--mutual",
            "--tenant-policy",
            tenants.to_str().unwrap(),
            "--key",
            "rsa3072",
        ],
    );
    let addr = relay.addr();
    let (code, out, err) = remote(&addr, &good, &["--mutual"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = remote(&addr, &good, &[]);
    assert_eq!(
        code, 1,
        "a tenant that does not attest is turned away: {err}"
    );
    relay.stop();
    rune_cmd(&["kill", &id, "9"]);
    assert!(wait_until(Duration::from_secs(10), || rune.status(&id) == "stopped"));
    rune_cmd(&["delete", &id]);
    assert!(
        leftovers(rune.root.path(), &id).is_empty(),
        "{:?}",
        leftovers(rune.root.path(), &id)
    );

    // The enclave's program changed after signing: it never starts, and the tenant
    // gets a clear failure, not an answer.
    let mut f = std::fs::OpenOptions::new().append(true).open(&exe).unwrap();
    std::io::Write::write_all(&mut f, b"\0").unwrap();
    drop(f);
    let _ = std::fs::remove_file(&upstream);
    let id = unique_id("eaa-altered");
    let out = rune_cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not the program this enclave was signed for")
            || String::from_utf8_lossy(&out.stderr).contains("does not match the manifest"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let relay = Inclavared::start(dir.path(), "inclavared2", &upstream, &good, &[]);
    let addr = relay.addr();
    let (code, _, err) = remote(&addr, &good, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unreachable"), "{err}");
    relay.stop();
    assert!(leftovers(rune.root.path(), &id).is_empty());
}
