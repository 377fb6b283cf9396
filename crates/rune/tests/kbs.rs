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
        let out = rune.sim(
            &platform,
            &["run", "--bundle", b.path().to_str().unwrap(), &id],
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

/// SHA-384 by openssl (`openssl dgst -sha384 -binary`), as hex.
fn openssl_sha384(bytes: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha384", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    hex::encode(out.stdout)
}

/// The tenant's resource policy: keys only to an affirmed enclave whose every launch
/// (rune's `Launch` events, README "What the host decides") is the one whose digest
/// the tenant computed.
fn launch_policy(digest: &str) -> String {
    format!(
        r#"package policy
import rego.v1
default allow := false
launches := [e | some e in input.submods.cpu0["ear.veraison.annotated-evidence"].sim.uefi_event_logs; e.details.data.operation == "Launch"]
allow if {{
    input.submods.cpu0["ear.status"] == "affirming"
    count(launches) == 1
    every e in launches {{
        e.index == 1
        e.digest_matches_event
        e.digests[0].digest == "{digest}"
    }}
}}
"#
    )
}

/// The README's launch-pinning resource policy (the Rego block that checks `env`), for
/// the program `argv` instead of its example's.
fn readme_launch_policy(argv: &[&str]) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let policy = readme
        .split("```rego\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(rego, _)| rego))
        .find(|rego| rego.contains("every v in e.details.data.content.env"))
        .expect("the README's launch policy");
    let example = r#"["/bin/app", "--serve"]"#;
    assert!(policy.contains(example), "{policy}");
    policy.replace(example, &serde_json::json!(argv).to_string())
}

/// The host picks the program's environment: one `LD_PRELOAD` more and the genuine
/// enclave (same program, same mr_enclave, admitted by the attestation policy) gets no
/// key from a tenant who pinned the launch; the launch the tenant expects gets it. Two
/// policies: one pins the digest of the `Launch` event written out from its documented
/// form (the bundle's argv, its environment in name order without rune's `ENCLAVE_*`,
/// cwd, ids) and hashed by openssl over `"LEAA" ‖ u32le(n) ‖ text`; the other is the
/// README's, pinning argv and refusing `LD_*` variables.
#[test]
fn a_launch_with_an_unexpected_variable_gets_no_key() {
    use base64::Engine as _;
    if !root_or_skip("a_launch_with_an_unexpected_variable_gets_no_key") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let platform = dir.path().join("platform");
    let (mut b, mr) = agent_bundle(dir.path(), b"");
    let v = test_support::Verdictd::start_with(
        &dir.path().join("verdictd"),
        &test_support::VerdictdOptions {
            admit: &mr,
            resources: &[("default/key/demo", SECRET)],
            admin_open: true,
            ..Default::default()
        },
    )
    .unwrap();
    let url = v.url().to_string();
    b.spec["process"]["args"][2] = serde_json::json!(url);
    // HOME given, so that libcontainer adds none from the root's passwd (as runc would).
    let env = b.spec["process"]["env"].as_array_mut().unwrap();
    env.push(serde_json::json!("HOME=/root"));
    b.save();
    let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    assert!(
        b.spec["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == path),
        "{}",
        b.spec["process"]
    );
    let text = format!(
        r#"github.com/inclavare-containers/rune Launch {{"argv":["/bin/attestation-agent","--url","{url}","get-resource","kbs:///default/key/demo"],"cwd":"/","env":["HOME=/root","{path}","TERM=xterm"],"gid":0,"groups":[],"uid":0}}"#
    );
    let tagged = [
        &b"LEAA"[..],
        &(text.len() as u32).to_le_bytes(),
        text.as_bytes(),
    ]
    .concat();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let set_policy = |rego: &str| {
        let policy = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rego);
        let r = test_support::http::request(
            addr,
            "POST",
            "/kbs/v0/resource-policy",
            &[("Content-Type", "application/json")],
            serde_json::json!({ "policy": policy })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    let argv = [
        "/bin/attestation-agent",
        "--url",
        url.as_str(),
        "get-resource",
        "kbs:///default/key/demo",
    ];
    let policies = [
        launch_policy(&openssl_sha384(&tagged)),
        readme_launch_policy(&argv),
    ];

    let rune = Rune::new();
    let run = |b: &Bundle| {
        let id = unique_id("launch");
        let out = rune.sim(
            &platform,
            &["run", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert!(leftovers(rune.root.path(), &id).is_empty());
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let digest = hex::encode(sha2::Sha256::digest(SECRET));
    let preload = serde_json::json!("LD_PRELOAD=/lib/preload.so");
    for (i, policy) in policies.iter().enumerate() {
        set_policy(policy);
        // The launch the tenant expects: the key.
        let env = b.spec["process"]["env"].as_array_mut().unwrap();
        env.retain(|e| e != &preload);
        b.save();
        let (code, out, err) = run(&b);
        assert_eq!(code, Some(0), "policy {i}: {out}{err}\n{}", v.log());
        assert!(out.contains(&format!("sha256:{digest}")), "{out}");

        // The same enclave with LD_PRELOAD from the host (ld.so ignores a missing
        // library with a warning; the program runs and attests): affirmed, but no key.
        let env = b.spec["process"]["env"].as_array_mut().unwrap();
        env.push(preload.clone());
        b.save();
        let (code, out, err) = run(&b);
        assert_eq!(code, Some(1), "policy {i}: {out}{err}");
        assert!(err.contains("401") && err.contains("denies"), "{err}");
        assert!(!out.contains(&digest), "{out}");
        let released = v.log().matches("released").count();
        assert_eq!(released, i + 1, "{}", v.log());
    }
}
