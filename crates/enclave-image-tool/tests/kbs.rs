//! `encrypt --kbs`: a fresh KEK stored in a real verdictd through its admin API (JWT
//! signed with an openssl-made Ed25519 or P-256 admin key), then released to an attested
//! client (the attestation agent, `sample` evidence) — the bytes it gets decrypt the
//! image to the original diff_ids (`gzip -dc | sha256sum`).

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::*;
use attestation_agent::{Agent, Options, TeeChoice};
use test_support::{free_port, leftovers, skopeo, Auth, Registry};

const KID: &str = "kbs:///default/image-kek/app";

struct Verdictd {
    child: Child,
    url: String,
}

impl Drop for Verdictd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// verdictd on a free loopback port: plain HTTP, resources released to any attested
/// client, admin API open to JWTs signed by `admin.pub` (Ed25519) or `ec.pub` (P-256).
fn verdictd(dir: &Path) -> Verdictd {
    openssl(
        dir,
        &["genpkey", "-algorithm", "ed25519", "-out", "admin.key"],
    );
    openssl(
        dir,
        &["pkey", "-in", "admin.key", "-pubout", "-out", "admin.pub"],
    );
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.key",
        ],
    );
    openssl(dir, &["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
    openssl(
        dir,
        &["genpkey", "-algorithm", "ed25519", "-out", "stranger.key"],
    );
    let config = dir.join("verdictd.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ninsecure_http = true\nresource_policy = \"allow_all\"\n\
         [admin]\nmode = \"bearer_jwt\"\npublic_keys = [\"admin.pub\", \"ec.pub\"]\nroles = [\"admin\"]\n",
    )
    .unwrap();
    let mut child = Command::new(release_bin("verdictd", "verdictd"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("verdictd.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("verdictd did not start: {line}"))
        .to_string();
    Verdictd { child, url }
}

/// What verdictd releases for `kid` to an attested client.
fn fetch(url: &str, kid: &str) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut agent = Agent::new(
            url,
            Options {
                tee: TeeChoice::Sample,
                ca_pem: None,
            },
        )
        .map_err(|e| e.to_string())?;
        agent
            .get_resource(kid)
            .await
            .map(|k| k.to_vec())
            .map_err(|e| e.to_string())
    })
}

#[test]
fn a_fresh_kek_goes_to_verdictd_and_comes_back_to_an_attested_client() {
    if !have(&[
        "skopeo",
        "umoci",
        "docker-registry",
        "openssl",
        "gzip",
        "sha256sum",
    ]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let v = verdictd(d);
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    let (src, layers) = two_layer_image(d);
    let saved = d.join("saved.kek");
    let enc = format!("{host}/test/app:enc");
    ok(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            KID,
            "--kbs",
            &v.url,
            "--admin-key",
            d.join("admin.key").to_str().unwrap(),
            "--save-kek",
            saved.to_str().unwrap(),
            "--insecure-registry",
            &host,
            &src,
            &enc,
        ],
    ));
    let kek = fetch(&v.url, KID).unwrap();
    assert_eq!(kek.len(), 32);
    assert_eq!(std::fs::read(&saved).unwrap(), kek);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&saved).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    library_unpack(&host, &enc, &kek, &diff_ids, &d.join("root"));

    // A P-256 admin key works too (ES256); a second run stores a new KEK.
    let enc2 = format!("{host}/test/app:enc2");
    ok(&tool_in(
        &tmp,
        &[
            "encrypt",
            "--kek-id",
            "kbs:///default/image-kek/app2",
            "--kbs",
            &v.url,
            "--admin-key",
            d.join("ec.key").to_str().unwrap(),
            "--insecure-registry",
            &host,
            &src,
            &enc2,
        ],
    ));
    let kek2 = fetch(&v.url, "kbs:///default/image-kek/app2").unwrap();
    assert_ne!(kek2, kek);
    library_unpack(&host, &enc2, &kek2, &diff_ids, &d.join("root2"));
    assert_eq!(tree(&tmp), Vec::<String>::new());
}

#[test]
fn a_refused_or_absent_kbs_publishes_nothing() {
    if !have(&["skopeo", "umoci", "docker-registry", "openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tmp = d.join("tmp");
    let v = verdictd(d);
    let reg = Registry::start(&d.join("reg"), Auth::None).unwrap();
    let host = reg.host();
    let (src, _) = two_layer_image(d);
    let saved = d.join("saved.kek");
    let enc = format!("{host}/test/app:enc");
    let down = format!("http://127.0.0.1:{}", free_port().unwrap());
    let not_pem = d.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let run = |kbs: &str, key: &Path| {
        tool_in(
            &tmp,
            &[
                "encrypt",
                "--kek-id",
                KID,
                "--kbs",
                kbs,
                "--admin-key",
                key.to_str().unwrap(),
                "--save-kek",
                saved.to_str().unwrap(),
                "--insecure-registry",
                &host,
                &src,
                &enc,
            ],
        )
    };
    let line = one_line_error(&run(&v.url, &d.join("stranger.key")));
    assert!(
        line.contains(&format!("store the KEK as {KID}: KBS {}: POST /kbs/v0/resource/default/image-kek/app: HTTP 401: AdminAuthInitialization", v.url)),
        "{line}"
    );
    let line = one_line_error(&run(&down, &d.join("admin.key")));
    assert!(
        line.ends_with(&format!(
            "store the KEK as {KID}: KBS {down}: Connection refused (os error 111)"
        )),
        "{line}"
    );
    let line = one_line_error(&run(&v.url, &not_pem));
    assert_eq!(line, "enclave-image: admin key: no PEM private key block");
    // Nothing was published, nothing kept.
    assert!(!saved.exists());
    assert!(skopeo(&["inspect", "--tls-verify=false", &format!("docker://{enc}")]).is_err());
    let e = fetch(&v.url, KID).unwrap_err();
    assert!(
        e.contains("401") || e.contains("PluginInternalError"),
        "{e}"
    );
    // An existing --save-kek file is refused before any work, and kept.
    std::fs::write(&saved, b"keep me").unwrap();
    let line = one_line_error(&run(&v.url, &d.join("admin.key")));
    assert!(
        line.ends_with("saved.kek: already exists (not overwritten)"),
        "{line}"
    );
    assert_eq!(std::fs::read(&saved).unwrap(), b"keep me");
    assert!(fetch(&v.url, KID).is_err());
    assert_eq!(tree(&tmp), Vec::<String>::new());
    assert_eq!(leftovers(&tmp), Vec::<String>::new());
}
