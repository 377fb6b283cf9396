//! The cluster's verdictd configuration (`deploy/verdictd/verdictd.toml`) runs as the
//! Deployment runs it: the real verdictd with that file, its Secrets' files (made with
//! openssl) where the pod mounts them and its state directory, here under a temporary
//! root; `/healthz` answers over TLS and the token key it generates is 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_clusters_verdictd_config_serves_healthz_over_tls() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
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
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        &at(&tls, "tls.key"),
        "-out",
        &at(&tls, "tls.crt"),
    ]);
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

    let deploy = test_support::workspace_root().join("deploy/verdictd/verdictd.toml");
    let text = std::fs::read_to_string(deploy).unwrap();
    let config = root.join("verdictd.toml");
    let rooted = text
        .replace(
            "\"/etc/verdictd/",
            &format!("\"{}/etc/verdictd/", root.display()),
        )
        .replace(
            "\"/var/lib/verdictd",
            &format!("\"{}/var/lib/verdictd", root.display()),
        );
    assert_ne!(rooted, text, "the config names no mounted paths");
    std::fs::write(&config, rooted).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(root.join("verdictd.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .args(["--config", config.to_str().unwrap(), "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("https://{listen}/healthz");
    let ca = tls.join("tls.crt");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = String::new();
    while Instant::now() < deadline {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", ca.to_str().unwrap(), &url])
            .output()
            .unwrap();
        if out.status.success() {
            answer = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let token_key =
        std::fs::metadata(state.join("token-key.pem")).map(|m| m.permissions().mode() & 0o777);
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(root.join("verdictd.log")).unwrap_or_default();
    assert_eq!(answer, "ok", "verdictd with the cluster's config: {log}");
    assert_eq!(token_key.ok(), Some(0o600), "token key: {log}");
}
