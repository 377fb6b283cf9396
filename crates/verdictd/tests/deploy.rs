//! The cluster's verdictd configuration (`deploy/verdictd/verdictd.toml`) runs as the
//! Deployment runs it: the real verdictd with that file, its Secrets' files (made with
//! openssl) where the pod mounts them and its state directory, here under a temporary
//! root; `/healthz` answers over TLS and the token key it generates is 0600. The same for
//! the PostgreSQL option (`deploy/verdictd-postgres/verdictd.toml`): two replicas on a
//! private TLS PostgreSQL act as one broker. On both, docs/kubernetes.md's admin steps
//! (its shell block, run as written) are taken.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The Secrets' files as docs/kubernetes.md makes them, where the pod mounts them under
/// `root`: TLS for verdictd's Service name, the admin and reference-value keys.
fn make_secrets(root: &Path) {
    let (tls, keys, state) = (
        root.join("etc/verdictd/tls"),
        root.join("etc/verdictd/keys"),
        root.join("var/lib/verdictd"),
    );
    for d in [&tls, &keys, &state] {
        std::fs::create_dir_all(d).unwrap();
    }
    // What docs/kubernetes.md tells the operator to put in the Secrets.
    let at = |d: &Path, f: &str| d.join(f).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| test_support::run("openssl", args).unwrap();
    test_support::openssl_self_signed(
        &tls,
        "tls.key",
        "tls.crt",
        "/CN=verdictd.inclavare-system.svc",
        &[
            "-addext",
            "subjectAltName=DNS:verdictd.inclavare-system.svc,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    )
    .unwrap();
    let (admin_key, rv_key) = (at(&keys, "admin.key"), at(&keys, "rv.key"));
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &admin_key]);
    openssl(&[
        "pkey",
        "-in",
        &admin_key,
        "-pubout",
        "-out",
        &at(&keys, "admin.pub"),
    ]);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &rv_key,
    ]);
    openssl(&[
        "ec",
        "-in",
        &rv_key,
        "-pubout",
        "-out",
        &at(&keys, "rv.pub"),
    ]);
    for f in [
        tls.join("tls.key"),
        keys.join("admin.key"),
        keys.join("rv.key"),
    ] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// `deploy/<file>` with the pod's mount points moved under `root`, and `more`
/// replacements, written to `root/verdictd.toml`.
fn rooted_config(file: &str, root: &Path, more: &[(&str, &str)]) -> PathBuf {
    let deploy = test_support::workspace_root().join("deploy").join(file);
    let text = std::fs::read_to_string(deploy).unwrap();
    let mut rooted = text
        .replace(
            "\"/etc/verdictd/",
            &format!("\"{}/etc/verdictd/", root.display()),
        )
        .replace(
            "\"/var/lib/verdictd",
            &format!("\"{}/var/lib/verdictd", root.display()),
        );
    assert_ne!(rooted, text, "the config names no mounted paths");
    for (from, to) in more {
        assert!(rooted.contains(from), "{file} has no {from}");
        rooted = rooted.replace(from, to);
    }
    let config = root.join("verdictd.toml");
    std::fs::write(&config, rooted).unwrap();
    config
}

/// A verdictd with the cluster's config on a loopback port; killed when dropped.
struct Replica {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Replica {
    fn start(config: &Path, log: PathBuf) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_verdictd"))
            .args(["--config", config.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Replica { child, port, log }
    }

    /// `/healthz` over TLS checked against `ca` once it answers (up to 20 s).
    fn healthz(&mut self, ca: &Path) -> String {
        let url = format!("https://127.0.0.1:{}/healthz", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = Command::new("curl")
                .args(["-sS", "--cacert", ca.to_str().unwrap(), &url])
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        String::new()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An admin JWT from `scripts/admin-jwt.sh` (what the docs give operators), 5 minutes.
fn admin_jwt(key: &Path) -> String {
    let script = test_support::workspace_root().join("scripts/admin-jwt.sh");
    test_support::run(script.to_str().unwrap(), &[key.to_str().unwrap()])
        .unwrap()
        .trim()
        .to_string()
}

/// docs/kubernetes.md's shell block that provisions verdictd through its admin API, run
/// as written (bash, `set -eu`) in a directory holding what it names (`tls.crt`,
/// `admin.key`, the repository's `scripts/admin-jwt.sh` and `affirming.rego`), with
/// `$BOOT_MR` given and the Service name reaching `port` (`curl --connect-to`, standing in
/// for the docs' port-forward and hosts entry). The attestation policy text it sent.
fn run_the_docs_admin_steps(root: &Path, port: u16, boot_mr: &str) -> String {
    let docs =
        std::fs::read_to_string(test_support::workspace_root().join("docs/kubernetes.md")).unwrap();
    let block = docs
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("/kbs/v0/attestation-policy"))
        .expect("docs/kubernetes.md has no admin block");
    let script: String = block
        .lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let cwd = root.join("operator");
    let rego = cwd.join("crates/verdictd/policies");
    std::fs::create_dir_all(&rego).unwrap();
    std::fs::copy(
        test_support::workspace_root().join("crates/verdictd/policies/affirming.rego"),
        rego.join("affirming.rego"),
    )
    .unwrap();
    std::fs::copy(root.join("etc/verdictd/tls/tls.crt"), cwd.join("tls.crt")).unwrap();
    std::fs::copy(
        root.join("etc/verdictd/keys/admin.key"),
        cwd.join("admin.key"),
    )
    .unwrap();
    std::fs::create_dir_all(cwd.join("scripts")).unwrap();
    std::fs::copy(
        test_support::workspace_root().join("scripts/admin-jwt.sh"),
        cwd.join("scripts/admin-jwt.sh"),
    )
    .unwrap();
    let prologue = format!(
        "set -eu\ncurl() {{ command curl --connect-to verdictd.inclavare-system.svc:8080:127.0.0.1:{port} \"$@\"; }}\n"
    );
    let out = Command::new("bash")
        .args(["-c", &format!("{prologue}{script}")])
        .current_dir(&cwd)
        .env("BOOT_MR", boot_mr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the docs' admin steps: {}{}\n{script}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(cwd.join("attestation.toml")).unwrap()
}

/// `verdictd audit show` with `config`, checked by `audit verify` first: the entries.
fn audit_entries(config: &Path) -> Vec<Value> {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_verdictd"))
            .arg("audit")
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap()
    };
    let verify = run(&["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let show = run(&["show"]);
    assert!(show.status.success());
    String::from_utf8_lossy(&show.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["kind"] != "checkpoint")
        .collect()
}

/// What the docs' steps must have stored: the attestation policy the docs' formula
/// gives for `boot_mr` and Trustee's `affirming` resource policy, by their digests in the
/// audit log.
fn assert_the_docs_policies_are_set(entries: &[Value], sent: &str, boot_mr: &str) {
    let want =
        format!("allow_software_tees = true\n[expected]\nsim_mr_enclave = [\"{boot_mr}\"]\n");
    assert_eq!(sent, want);
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    let affirming = std::fs::read(
        test_support::workspace_root().join("crates/verdictd/policies/affirming.rego"),
    )
    .unwrap();
    let of = |kind: &str| {
        entries
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {entries:?}"))["details"]
            .clone()
    };
    assert_eq!(of("attestation-policy.set")["sha256"], sha(want.as_bytes()));
    assert_eq!(
        of("resource-policy.set")["sha256"],
        sha(&affirming),
        "{entries:?}"
    );
}

#[test]
fn the_clusters_verdictd_config_serves_healthz_over_tls() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_secrets(root);
    let config = rooted_config("verdictd/verdictd.toml", root, &[]);
    let mut replica = Replica::start(&config, root.join("verdictd.log"));
    let answer = replica.healthz(&root.join("etc/verdictd/tls/tls.crt"));
    let token_key = std::fs::metadata(root.join("var/lib/verdictd/token-key.pem"))
        .map(|m| m.permissions().mode() & 0o777);
    assert_eq!(
        answer,
        "ok",
        "verdictd with the cluster's config: {}",
        replica.log()
    );
    assert_eq!(token_key.ok(), Some(0o600), "token key: {}", replica.log());

    // The enclaves' TLS (rustls, in the attestation agent) takes the certificate the
    // docs make, with it as the CA: the agent attests and gets a token.
    let agent = test_support::release_artifact("attestation-agent", "attestation-agent").unwrap();
    let out = Command::new(agent)
        .args(["--url", &format!("https://127.0.0.1:{}", replica.port)])
        .arg("--cert-file")
        .arg(root.join("etc/verdictd/tls/tls.crt"))
        .arg("token")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the agent over the docs' TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let boot_mr = hex::encode(Sha256::digest(b"the boot program"));
    let sent = run_the_docs_admin_steps(root, replica.port, &boot_mr);
    drop(replica);
    assert_the_docs_policies_are_set(&audit_entries(&config), &sent, &boot_mr);
}

#[test]
fn the_clusters_postgres_config_runs_two_replicas_as_one_broker() {
    if !test_support::postgres::available() {
        println!("skipped: the_clusters_postgres_config_runs_two_replicas_as_one_broker needs PostgreSQL (make test installs it)");
        return;
    }
    let pg = test_support::Postgres::start_tls().unwrap();
    pg.create_database("verdictd").unwrap();
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    make_secrets(root);
    // The database's password as the docs make it, and the deploy's pg_hba.conf: TLS
    // with that password, plain connections refused.
    let password = test_support::run("openssl", &["rand", "-hex", "24"])
        .unwrap()
        .trim()
        .to_string();
    pg.psql(
        "verdictd",
        &format!("ALTER USER verdictd PASSWORD '{password}'"),
    )
    .unwrap();
    let hba = test_support::workspace_root().join("deploy/verdictd-postgres/pg_hba.conf");
    pg.use_hba(&hba).unwrap();
    let connect = |sslmode: &str, password: &str| {
        let out = Command::new(test_support::postgres::bin_dir().unwrap().join("psql"))
            .args(["-X", "-A", "-t", "-c", "SELECT 1"])
            .arg(format!(
                "host=127.0.0.1 port={} user=verdictd dbname=verdictd sslmode={sslmode}",
                pg.port()
            ))
            .env("PGPASSWORD", password)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let plain = loop {
        let (ok, err) = connect("disable", &password);
        if !ok || Instant::now() > deadline {
            break (ok, err);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!plain.0 && plain.1.contains("no encryption"), "{plain:?}");
    let wrong = connect("require", "not the password");
    assert!(
        !wrong.0 && wrong.1.contains("password authentication failed"),
        "{wrong:?}"
    );
    assert_eq!(connect("require", &password), (true, String::new()));
    // The other Secrets, as docs/kubernetes.md makes them: the database's password and
    // CA, the sealing key and the audit key.
    let (db, seal) = (root.join("etc/verdictd/db"), root.join("etc/verdictd/seal"));
    std::fs::create_dir_all(&db).unwrap();
    std::fs::create_dir_all(&seal).unwrap();
    std::fs::write(db.join("password"), &password).unwrap();
    std::fs::copy(pg.ca(), db.join("ca.crt")).unwrap();
    test_support::run(
        "openssl",
        &["rand", "-out", seal.join("kek.bin").to_str().unwrap(), "32"],
    )
    .unwrap();
    let audit_key = seal.join("audit-key.pem");
    test_support::run(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            audit_key.to_str().unwrap(),
        ],
    )
    .unwrap();
    for f in [db.join("password"), seal.join("kek.bin"), audit_key] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let address = format!("127.0.0.1:{}", pg.port());
    let config = rooted_config(
        "verdictd-postgres/verdictd.toml",
        root,
        &[(
            "verdictd-postgres.inclavare-system.svc:5432",
            address.as_str(),
        )],
    );
    let ca = root.join("etc/verdictd/tls/tls.crt");
    let mut a = Replica::start(&config, root.join("a.log"));
    let mut b = Replica::start(&config, root.join("b.log"));
    assert_eq!(a.healthz(&ca), "ok", "{}", a.log());
    assert_eq!(b.healthz(&ca), "ok", "{}", b.log());

    // The docs' steps through one replica; the other reads the policy they set.
    let boot_mr = hex::encode(Sha256::digest(b"the boot program"));
    let sent = run_the_docs_admin_steps(root, a.port, &boot_mr);
    let out = Command::new("curl")
        .args(["-fsS", "--cacert", ca.to_str().unwrap(), "-H"])
        .arg(format!(
            "Authorization: Bearer {}",
            admin_jwt(&root.join("etc/verdictd/keys/admin.key"))
        ))
        .arg(format!(
            "https://127.0.0.1:{}/kbs/v0/resource-policy",
            b.port
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", b.log());
    drop((a, b));
    let entries = audit_entries(&config);
    assert_the_docs_policies_are_set(&entries, &sent, &boot_mr);
    // One chain, written by both replicas.
    let read = entries
        .iter()
        .find(|e| e["kind"] == "resource-policy.read")
        .expect("replica b's read is in the chain");
    let set = entries
        .iter()
        .find(|e| e["kind"] == "resource-policy.set")
        .unwrap();
    assert_ne!(read["replica"], set["replica"], "{entries:?}");
    // Nothing of verdictd's own under the pod's state directory: the state is the
    // database's.
    let state: Vec<_> = std::fs::read_dir(root.join("var/lib/verdictd"))
        .unwrap()
        .collect();
    assert!(state.is_empty(), "{state:?}");
}
