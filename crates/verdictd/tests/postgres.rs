//! verdictd replicas on one private PostgreSQL server (test-support's, started and
//! stopped here): an RCAR exchange whose steps hit different replicas, changes made
//! through one replica in force on the others at once, replicas migrating a fresh
//! database together, and the database away at start and mid-run.
//!
//! The protocol tests run against this backend too: `VERDICTD_TEST_STORAGE=postgres
//! cargo test -p verdictd --test protocol --test rvps` (as `make test` does).

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use kbs_protocol::jwe::TeeKeyPair;
use serde_json::{json, Value};
use test_support::Postgres;

/// A server, or `None` (and one line) where PostgreSQL is not installed.
fn server() -> Option<Postgres> {
    if !test_support::postgres::available() {
        eprintln!("skipped: no PostgreSQL server installed (Debian package postgresql)");
        return None;
    }
    Some(Postgres::start().unwrap())
}

/// Admin open, resources for any attested TEE (the policy is what a test changes).
fn config(pg: &Postgres, db: &str) -> String {
    format!(
        "insecure_http = true\nresource_policy = \"allow_all\"\n\
         [admin]\nmode = \"insecure_allow_all\"\n{}",
        pg_storage(pg, db)
    )
}

fn replica(pg: &Postgres, db: &str) -> Verdictd {
    Verdictd::spawn_in(tempfile::tempdir().unwrap(), &config(pg, db))
}

fn log(v: &Verdictd) -> String {
    std::fs::read_to_string(v.dir.path().join("verdictd.log")).unwrap_or_default()
}

/// Auth on `auth`, attest on `attest`: the cookie and the attest reply's token.
fn attest_across(auth: &Verdictd, attest: &Verdictd, key: &TeeKeyPair) -> (String, String) {
    let m = Manual::auth(auth);
    let cookie = m.client.cookie().expect("a session cookie").to_string();
    let mut b = attest.client();
    b.set_cookie(&cookie);
    let body = Manual::attestation(&m.nonce, key, key, &m.nonce);
    let (status, reply) = call(&mut b, "POST", "/kbs/v0/attest", Some(body), None);
    assert_eq!(status, 200, "{reply}");
    (cookie, reply["token"].as_str().unwrap().to_string())
}

fn get_with_cookie(v: &Verdictd, cookie: &str, path: &str) -> (u16, Value) {
    let mut c = v.client();
    c.set_cookie(cookie);
    call(
        &mut c,
        "GET",
        &format!("/kbs/v0/resource/{path}"),
        None,
        None,
    )
}

fn get_with_token(v: &Verdictd, token: &str, path: &str) -> (u16, Value) {
    call(
        &mut v.client(),
        "GET",
        &format!("/kbs/v0/resource/{path}"),
        None,
        Some(token),
    )
}

fn secret_of(key: &TeeKeyPair, jwe: Value) -> Vec<u8> {
    key.decrypt(&serde_json::from_value(jwe).unwrap())
        .unwrap()
        .to_vec()
}

#[test]
fn an_rcar_exchange_may_hit_a_different_replica_at_every_step() {
    let Some(pg) = server() else { return };
    pg.create_database("kbs").unwrap();
    let (a, b, c) = (
        replica(&pg, "kbs"),
        replica(&pg, "kbs"),
        replica(&pg, "kbs"),
    );
    store(&a, "default/key/demo", b"one broker, three processes");
    let key = TeeKeyPair::generate();

    // auth on A, attest on B, GET on C by the cookie, and by the token on A.
    let (cookie, token) = attest_across(&a, &b, &key);
    let (status, jwe) = get_with_cookie(&c, &cookie, "default/key/demo");
    assert_eq!(status, 200, "{jwe}");
    assert_eq!(secret_of(&key, jwe), b"one broker, three processes");
    let (status, jwe) = get_with_token(&a, &token, "default/key/demo");
    assert_eq!(status, 200, "{jwe}");
    assert_eq!(secret_of(&key, jwe), b"one broker, three processes");

    // The session is attested everywhere: attesting again on C returns B's token
    // (KBS protocol: an attested session gets its existing token back).
    let mut cc = c.client();
    cc.set_cookie(&cookie);
    let (status, reply) = call(&mut cc, "POST", "/kbs/v0/attest", Some(Vec::new()), None);
    assert_eq!(
        (status, reply["token"].as_str()),
        (200, Some(token.as_str()))
    );

    // A forged cookie is refused on every replica (the MAC key is shared, not absent).
    let mut forged = hex::decode(cookie.split_once('=').unwrap().1).unwrap();
    forged[5] ^= 1;
    for v in [&a, &b, &c] {
        let (status, e) = get_with_cookie(
            v,
            &format!("kbs-session-id={}", hex::encode(&forged)),
            "default/key/demo",
        );
        assert_eq!((status, error_kind(&e)), (401, "TokenNotFound"), "{e}");
    }
    // What is in the database: the resource and one attested session; no challenge
    // (they are stateless).
    assert_eq!(
        pg.psql("kbs", "SELECT count(*) FROM verdictd_sessions")
            .unwrap()
            .trim(),
        "1"
    );
}

#[test]
fn a_change_through_one_replica_is_in_force_on_the_others_at_once() {
    let Some(pg) = server() else { return };
    pg.create_database("kbs").unwrap();
    let (a, b) = (replica(&pg, "kbs"), replica(&pg, "kbs"));
    store(&a, "default/key/k", b"v1");
    let key = TeeKeyPair::generate();
    let (_, token) = attest_across(&a, &b, &key);
    assert_eq!(get_with_token(&b, &token, "default/key/k").0, 200);

    // Each change is made on A and the very next request on B sees it: no cache.
    set_policy(&a, "package policy\ndefault allow = false\n");
    let (status, e) = get_with_token(&b, &token, "default/key/k");
    assert_eq!((status, error_kind(&e)), (401, "PolicyDeny"), "{e}");
    set_policy(&a, "package policy\ndefault allow = true\n");
    store(&a, "default/key/k", b"v2");
    let (status, jwe) = get_with_token(&b, &token, "default/key/k");
    assert_eq!(status, 200, "{jwe}");
    assert_eq!(secret_of(&key, jwe), b"v2");
    let (status, e) = call(
        &mut a.client(),
        "DELETE",
        "/kbs/v0/resource/default/key/k",
        None,
        None,
    );
    assert_eq!(status, 200, "{e}");
    let (status, e) = get_with_token(&b, &token, "default/key/k");
    assert_eq!(
        (status, error_kind(&e)),
        (401, "PluginInternalError"),
        "{e}"
    );

    // Reference values registered on A decide B's appraisal: with Trustee's
    // default_cpu policy a sample TEE is contraindicated without them, and affirming
    // with its launch digest, svn and platform version registered (kbs-protocol.md
    // §8.2, §10: the sample verifier's fixed claims).
    let status_of = |token: &str| -> String {
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        claims["submods"]["cpu0"]["ear.status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status_of(&token), "contraindicated");
    for (name, value) in [
        ("launch_digest", json!(["abcde"])),
        ("svn", json!(["1"])),
        ("major_version", json!(1)),
        ("minimum_minor_version", json!(0)),
    ] {
        let body = json!({"version": "0.1.0", "type": "sample",
            "payload": STANDARD.encode(json!({name: value}).to_string())});
        let (status, e) = call(
            &mut a.client(),
            "POST",
            "/kbs/v0/reference-value",
            Some(body.to_string().into_bytes()),
            None,
        );
        assert_eq!(status, 200, "{e}");
    }
    let (status, v) = call(
        &mut b.client(),
        "GET",
        "/kbs/v0/reference-value/launch_digest",
        None,
        None,
    );
    assert_eq!((status, v), (200, json!(["abcde"])));
    let (_, token) = attest_across(&b, &b, &key);
    assert_eq!(status_of(&token), "affirming");
    // Deleted on B: A's next appraisal is contraindicated again.
    let (status, e) = call(
        &mut b.client(),
        "DELETE",
        "/kbs/v0/reference-value/svn",
        None,
        None,
    );
    assert_eq!(status, 200, "{e}");
    let (_, token) = attest_across(&a, &a, &key);
    assert_eq!(status_of(&token), "contraindicated");

    // An attestation policy uploaded on B applies on A: one that affirms everything.
    let rego = "package policy\nimport rego.v1\ntrust_claims := {\"executables\": 2, \
                \"hardware\": 2, \"configuration\": 2}\n";
    let body = json!({"type": "rego", "policy_id": "default_cpu",
                      "policy": URL_SAFE_NO_PAD.encode(rego)});
    let (status, e) = call(
        &mut b.client(),
        "POST",
        "/kbs/v0/attestation-policy",
        Some(body.to_string().into_bytes()),
        None,
    );
    assert_eq!(status, 200, "{e}");
    let (_, token) = attest_across(&a, &a, &key);
    assert_eq!(status_of(&token), "affirming");
    // A policy that does not compile is refused and stores nothing.
    let body = json!({"policy": URL_SAFE_NO_PAD.encode("package policy\nallow if {")});
    let (status, e) = call(
        &mut a.client(),
        "POST",
        "/kbs/v0/resource-policy",
        Some(body.to_string().into_bytes()),
        None,
    );
    assert_eq!((status, error_kind(&e)), (401, "PolicyEngineError"), "{e}");
    let stored = pg
        .psql(
            "kbs",
            "SELECT body FROM verdictd_policies WHERE id = 'resource-policy'",
        )
        .unwrap();
    assert!(stored.contains("default allow = true"), "{stored}");
}

#[test]
fn replicas_starting_together_on_a_fresh_database_migrate_it_once() {
    let Some(pg) = server() else { return };
    for round in 0..3 {
        let db = format!("race{round}");
        pg.create_database(&db).unwrap();
        let replicas: Vec<Verdictd> = std::thread::scope(|s| {
            let started: Vec<_> = (0..4).map(|_| s.spawn(|| replica(&pg, &db))).collect();
            started.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Each started at its first try: no replica met a half-made schema.
        for v in &replicas {
            let log = log(v);
            assert!(!log.contains("retrying"), "round {round}: {log}");
        }
        assert_eq!(
            pg.psql(
                &db,
                "SELECT count(*), min(version), max(version) FROM verdictd_schema"
            )
            .unwrap()
            .trim(),
            "1|1|1"
        );
        assert_eq!(
            pg.psql(&db, "SELECT count(*) FROM verdictd_settings")
                .unwrap()
                .trim(),
            "2"
        );
        let applied = replicas
            .iter()
            .filter(|v| log(v).contains("database migration applied"))
            .count();
        assert_eq!(applied, 1, "round {round}");
        // And they are one broker: the first's challenge attests at the last.
        let key = TeeKeyPair::generate();
        attest_across(&replicas[0], &replicas[3], &key);
    }
}

/// Starts verdictd without waiting for it: the child and a receiver of its first
/// stdout line.
fn spawn_waiting(
    dir: &tempfile::TempDir,
    config: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let path = dir.path().join("verdictd.toml");
    std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\n{config}")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("verdictd.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    (child, rx)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_database_down_at_start_is_retried_until_it_answers() {
    let Some(mut pg) = server() else { return };
    pg.create_database("kbs").unwrap();
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, listening) = spawn_waiting(&dir, &config(&pg, "kbs"));
    let log = || std::fs::read_to_string(dir.path().join("verdictd.log")).unwrap();
    wait_for("two failed attempts", Duration::from_secs(20), || {
        log().matches("retrying in").count() >= 2
    });
    // Still running, not serving; each attempt one line naming the database.
    assert!(child.try_wait().unwrap().is_none(), "{}", log());
    assert!(listening.try_recv().is_err());
    for line in log().lines().filter(|l| l.contains("retrying in")) {
        assert!(line.contains("ERROR"), "{line}");
        assert!(
            line.contains(&format!(
                "database verdictd@127.0.0.1:{}/kbs unreachable",
                pg.port()
            )),
            "{line}"
        );
    }
    assert!(!log().contains("panicked"), "{}", log());

    pg.restart().unwrap();
    let line = listening.recv_timeout(Duration::from_secs(30)).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let v = Verdictd {
        child,
        url,
        dir,
        pg: None,
    };
    store(&v, "default/key/demo", b"late but served");
    let key = TeeKeyPair::generate();
    let (cookie, _) = attest_across(&v, &v, &key);
    let (status, jwe) = get_with_cookie(&v, &cookie, "default/key/demo");
    assert_eq!(status, 200, "{jwe}");
    assert_eq!(secret_of(&key, jwe), b"late but served");
    // SIGTERM while waiting for the database also stops it cleanly.
    pg.stop();
    let dir2 = tempfile::tempdir().unwrap();
    let (mut waiting, _rx) = spawn_waiting(&dir2, &config(&pg, "kbs"));
    wait_for("a failed attempt", Duration::from_secs(20), || {
        std::fs::read_to_string(dir2.path().join("verdictd.log"))
            .unwrap()
            .contains("retrying in")
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(waiting.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(waiting.wait().unwrap().success());
}

#[test]
fn a_database_restarted_mid_run_gives_503_then_recovers() {
    let Some(mut pg) = server() else { return };
    pg.create_database("kbs").unwrap();
    let v = replica(&pg, "kbs");
    store(&v, "default/key/demo", b"still here");
    let key = TeeKeyPair::generate();
    let (cookie, token) = attest_across(&v, &v, &key);

    pg.stop();
    for _ in 0..3 {
        let (status, e) = get_with_token(&v, &token, "default/key/demo");
        assert_eq!((status, error_kind(&e)), (503, "StorageUnavailable"), "{e}");
        let (status, e) = get_with_cookie(&v, &cookie, "default/key/demo");
        assert_eq!((status, error_kind(&e)), (503, "StorageUnavailable"), "{e}");
    }
    // The outage is one warning, whatever the number of failed requests.
    let warnings: Vec<String> = log(&v)
        .lines()
        .filter(|l| l.contains("WARN"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("unavailable"), "{}", warnings[0]);

    pg.restart().unwrap();
    let mut last = (0, Value::Null);
    wait_for("recovery", Duration::from_secs(15), || {
        last = get_with_token(&v, &token, "default/key/demo");
        last.0 == 200
    });
    assert_eq!(secret_of(&key, last.1), b"still here");
    let (status, _) = get_with_cookie(&v, &cookie, "default/key/demo");
    assert_eq!(status, 200);
    assert!(log(&v).contains("reachable again"), "{}", log(&v));
    assert!(!log(&v).contains("panicked"));

    // Nothing of the server is left once it is dropped (its processes run in its
    // directory while it is up).
    let dir = pg.dir().to_path_buf();
    assert!(!test_support::leftovers(&dir).is_empty());
    drop(v);
    drop(pg);
    assert_eq!(test_support::leftovers(&dir), Vec::<String>::new());
    assert!(!dir.exists());
}

/// A 0600 KEK file of 32 random bytes (hex) in `dir`.
fn kek_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut key = [0u8; 32];
    getrandom(&mut key);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, hex::encode(key).as_bytes()))
        .unwrap();
    path
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

fn sealed_config(pg: &Postgres, db: &str, kek: &std::path::Path) -> String {
    format!("{}kek_file = \"{}\"\n", config(pg, db), kek.display())
}

/// What a value looks like in a plain `pg_dump`: bytea as `\x` and lowercase hex.
fn in_dump(dump: &str, secret: &[u8]) -> bool {
    dump.contains(&hex::encode(secret)) || dump.contains(&*String::from_utf8_lossy(secret))
}

#[test]
fn secrets_are_sealed_at_rest_and_a_dump_of_the_database_shows_none() {
    let Some(pg) = server() else { return };
    let keys = tempfile::tempdir().unwrap();
    let (kek, other_kek) = (kek_file(keys.path(), "kek"), kek_file(keys.path(), "other"));
    let mut marker = [0u8; 16];
    getrandom(&mut marker);
    let secret = format!("secret-{}", hex::encode(marker)).into_bytes();

    // The control: without a KEK the dump shows the secret (so the check below can fail).
    pg.create_database("plain").unwrap();
    let plain = replica(&pg, "plain");
    store(&plain, "default/key/a", &secret);
    assert!(in_dump(&pg.dump("plain").unwrap(), &secret));
    drop(plain);

    pg.create_database("kbs").unwrap();
    let spawn = |kek: &std::path::Path| {
        Verdictd::spawn_in(
            tempfile::tempdir().unwrap(),
            &sealed_config(&pg, "kbs", kek),
        )
    };
    let (a, b) = (spawn(&kek), spawn(&kek));
    store(&a, "default/key/a", &secret);
    store(&a, "default/key/b", b"another secret");
    let key = TeeKeyPair::generate();
    let (_, token) = attest_across(&a, &b, &key);
    let (status, jwe) = get_with_token(&b, &token, "default/key/a");
    assert_eq!(status, 200, "{jwe}");
    assert_eq!(secret_of(&key, jwe), secret);

    let dump = pg.dump("kbs").unwrap();
    assert!(dump.contains("verdictd_resources"), "{dump}");
    assert!(!in_dump(&dump, &secret));
    assert!(!in_dump(&dump, b"another secret"));
    // verdictd's own keys (challenge MAC, token signing) are sealed too.
    assert_eq!(
        pg.psql(
            "kbs",
            "SELECT count(*) FROM verdictd_settings WHERE dek IS NULL"
        )
        .unwrap()
        .trim(),
        "0"
    );

    // A row moved to another name does not open there (the path is bound).
    pg.psql(
        "kbs",
        "UPDATE verdictd_resources SET (value, dek) = (SELECT value, dek FROM \
         verdictd_resources WHERE path = 'default/key/a') WHERE path = 'default/key/b'",
    )
    .unwrap();
    let (status, e) = get_with_token(&b, &token, "default/key/b");
    assert_eq!(
        (status, error_kind(&e)),
        (401, "PluginInternalError"),
        "{e}"
    );
    assert!(
        e["detail"].as_str().unwrap().contains("does not open"),
        "{e}"
    );

    // A replica without the KEK, or with another, refuses to start, in one line.
    let dir = tempfile::tempdir().unwrap();
    for (config, expect) in [
        (config(&pg, "kbs"), "no kek_file"),
        (
            sealed_config(&pg, "kbs", &other_kek),
            "another key-encryption key",
        ),
    ] {
        let path = dir.path().join("verdictd.toml");
        std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\n{config}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_verdictd"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let last = err.trim().lines().last().unwrap_or("");
        assert!(last.contains(expect), "{err}");
        assert!(!err.contains("retrying"), "{err}");
    }
}

#[test]
fn the_database_is_reached_over_tls_verified_against_the_configured_ca() {
    if server().is_none() {
        return;
    }
    let pg = Postgres::start_tls().unwrap();
    pg.create_database("kbs").unwrap();
    let base = format!(
        "insecure_http = true\nresource_policy = \"allow_all\"\n[admin]\n\
         mode = \"insecure_allow_all\"\n[storage]\ntype = \"postgres\"\n\
         url = \"{}?sslmode=require\"\n",
        pg.url("kbs")
    );
    let dir = tempfile::tempdir().unwrap();
    // sslmode=require without a CA to verify against: refused before connecting.
    let path = dir.path().join("verdictd.toml");
    std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\n{base}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("ca_file"), "{err}");

    let v = Verdictd::spawn_in(
        tempfile::tempdir().unwrap(),
        &format!("{base}ca_file = \"{}\"\n", pg.ca().display()),
    );
    store(&v, "default/key/tls", b"over TLS");
    let key = TeeKeyPair::generate();
    let (_, token) = attest_across(&v, &v, &key);
    let (status, jwe) = get_with_token(&v, &token, "default/key/tls");
    assert_eq!(status, 200, "{jwe}");
    assert_eq!(secret_of(&key, jwe), b"over TLS");
    // The server says so: every verdictd connection is TLS.
    let by_ssl = pg
        .psql(
            "kbs",
            "SELECT s.ssl, count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a \
             USING (pid) WHERE a.application_name = 'verdictd' GROUP BY s.ssl",
        )
        .unwrap();
    assert!(by_ssl.trim().starts_with("t|"), "{by_ssl}");
    assert_eq!(by_ssl.trim().lines().count(), 1, "{by_ssl}");

    // A CA that did not sign the server's certificate: no connection, said why.
    test_support::run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            dir.path().join("other.key").to_str().unwrap(),
            "-out",
            dir.path().join("other.pem").to_str().unwrap(),
            "-days",
            "1",
            "-subj",
            "/CN=another CA",
        ],
    )
    .unwrap();
    let waiting_dir = tempfile::tempdir().unwrap();
    let (mut child, _rx) = spawn_waiting(
        &waiting_dir,
        &format!(
            "{base}ca_file = \"{}\"\n",
            dir.path().join("other.pem").display()
        ),
    );
    let log = || std::fs::read_to_string(waiting_dir.path().join("verdictd.log")).unwrap();
    wait_for("a refused connection", Duration::from_secs(20), || {
        log().contains("retrying in")
    });
    assert!(log().to_lowercase().contains("certificate"), "{}", log());
    child.kill().unwrap();
    child.wait().unwrap();
}
