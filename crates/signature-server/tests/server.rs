//! The real `signature-server` binary on loopback, driven by the client and by raw
//! HTTP requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use signature_server::{Client, ClientError, Standard};

const BIN: &str = env!("CARGO_BIN_EXE_signature-server");

struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(args: &[&std::ffi::OsStr]) -> Server {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_string();
        Server { child, address }
    }

    fn raw(&self, request: &str) -> String {
        let authority = self.address.trim_start_matches("http://");
        let mut s = TcpStream::connect(authority).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix_kill(self.child.id());
        let _ = self.child.wait();
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill").arg(pid.to_string()).status()?;
    assert!(status.success());
    Ok(())
}

fn keys(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let sim = dir.join("sim.key");
    sim_tee::SignerKey::generate().unwrap().save(&sim).unwrap();
    let rsa = dir.join("rsa.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-3", "-out"])
        .arg(&rsa)
        .arg("3072")
        .stderr(Stdio::null())
        .status()
        .expect("openssl (make deps installs it)")
        .success();
    assert!(ok);
    std::fs::set_permissions(&rsa, std::fs::Permissions::from_mode(0o600)).unwrap();
    (sim, rsa)
}

#[test]
fn signs_with_both_schemes_and_the_replies_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, rsa) = keys(dir.path());
    let server = Server::start(&[
        "--sim-key".as_ref(),
        sim.as_os_str(),
        "--rsa-key".as_ref(),
        rsa.as_os_str(),
    ]);
    let client = Client::new(&server.address).unwrap();

    let public = client.ed25519_public_blocking().unwrap();
    assert_eq!(public, sim_tee::SignerKey::load(&sim).unwrap().public());
    let sig = client
        .sign_ed25519_blocking(b"a manifest", &public)
        .unwrap();
    signature_server::verify_ed25519(
        &signature_server::ed25519_pem(&public).unwrap(),
        b"a manifest",
        &sig,
    )
    .unwrap();

    // A client expecting another key refuses the reply.
    let err = client.sign_ed25519_blocking(b"x", &[7; 32]).unwrap_err();
    assert!(err.to_string().contains("another key"), "{err}");

    // PKCS#1: the public key matches openssl's view of the key file.
    let (sig, pem) = client.sign_pkcs1_blocking(b"sgx signing material").unwrap();
    assert_eq!(sig.len(), 384);
    let out = Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&rsa)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), pem);
    // And openssl verifies the signature.
    std::fs::write(dir.path().join("pub.pem"), &pem).unwrap();
    std::fs::write(dir.path().join("sig"), &sig).unwrap();
    std::fs::write(dir.path().join("data"), b"sgx signing material").unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(dir.path().join("pub.pem"))
        .arg("-signature")
        .arg(dir.path().join("sig"))
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Inclavare's public-key path gives the RSA key as a JSON string.
    let reply = server
        .raw("GET /api/v1/signature/public-key HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"-----BEGIN PUBLIC KEY-----\\n"), "{reply}");
}

#[test]
fn bad_requests_get_a_status_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _) = keys(dir.path());
    let server = Server::start(&["--sim-key".as_ref(), sim.as_os_str()]);
    let cases = [
        ("GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404", "no such path"),
        ("GET /api/v1/signature/ed25519 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "405", "not allowed"),
        ("POST /api/v1/signature/ed25519 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "400", "body is empty"),
        ("POST /api/v1/signature/ed25519 HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n", "413", "over"),
        ("POST /api/v1/signature/pkcs1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", "404", "no key is configured for pkcs1"),
    ];
    for (request, status, message) in cases {
        let reply = server.raw(request);
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{request}: {reply}"
        );
        assert!(reply.contains(message), "{request}: {reply}");
    }
    // The client renders a refusal as one line naming the path and status.
    let client = Client::new(&server.address).unwrap();
    let err = client.sign_pkcs1_blocking(b"x").unwrap_err();
    assert!(matches!(err, ClientError::Status { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "/api/v1/signature/pkcs1 answered 404 Not Found: no key is configured for pkcs1"
    );
    let _ = Standard::Pkcs1;
}

#[test]
fn an_unreachable_server_is_one_clear_error() {
    // A port that was free a moment ago and is closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let err = client.ed25519_public_blocking().unwrap_err();
    assert!(matches!(err, ClientError::Unreachable(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("unreachable (Connection refused"),
        "{err}"
    );
}

#[test]
fn the_server_refuses_to_start_without_a_usable_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "it never listened");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(&[]);
    assert!(err.contains("no key to sign with"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let (sim, rsa) = keys(dir.path());
    std::fs::set_permissions(&sim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = run(&["--sim-key".as_ref(), sim.as_os_str()]);
    assert!(err.contains("chmod 600"), "{err}");

    // SGX needs exponent 3: a key with 65537 is refused by name.
    let e65537 = dir.path().join("e65537.pem");
    assert!(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&e65537)
        .arg("3072")
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success());
    std::fs::set_permissions(&e65537, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = run(&["--rsa-key".as_ref(), e65537.as_os_str()]);
    assert!(err.contains("exponent 3") && err.contains("65537"), "{err}");

    std::fs::write(&rsa, "not a key").unwrap();
    let err = run(&["--rsa-key".as_ref(), rsa.as_os_str()]);
    assert!(err.contains("not an RSA private key"), "{err}");
}
