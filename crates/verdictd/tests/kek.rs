//! Key-encryption key rotation on a private PostgreSQL server (test-support's): `verdictd
//! rotate-kek` while clients fetch resources through RCAR on two replicas, a replica
//! picking up the new key without restart, a key kept encrypted and given by a command
//! (`openssl enc -d`, as an operator would keep it), a rotation killed mid-way, and
//! wrong, missing or retired keys refused in one line with nothing changed.
//!
//! The KEK ids expected here are computed from the key bytes by the definition in
//! `verdictd::seal` (first 8 bytes of SHA-256), not read from verdictd.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use kbs_protocol::jwe::TeeKeyPair;
use sha2::Digest;
use test_support::Postgres;

fn server() -> Option<Postgres> {
    if !test_support::postgres::available() {
        eprintln!("skipped: no PostgreSQL server installed (Debian package postgresql)");
        return None;
    }
    Some(Postgres::start().unwrap())
}

/// A key: its raw bytes kept in `dir` (0600) by openssl's generator, and its KEK id hex.
struct Key {
    raw: PathBuf,
    id: String,
}

fn openssl(args: &[&str]) {
    test_support::run("openssl", args).unwrap();
}

fn new_key(dir: &Path, name: &str) -> Key {
    use std::os::unix::fs::PermissionsExt;
    let raw = dir.join(name);
    openssl(&["rand", "-out", raw.to_str().unwrap(), "32"]);
    std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let id = hex::encode(&sha2::Sha256::digest(std::fs::read(&raw).unwrap())[..8]);
    Key { raw, id }
}

/// `key` encrypted under a passphrase file (`openssl enc`, PBKDF2), and the
/// `[storage.kek]` source that gets it back by running `openssl enc -d`.
fn key_command(dir: &Path, key: &Key, passphrase: &str) -> String {
    let pass = dir.join(format!("{passphrase}.pass"));
    std::fs::write(&pass, passphrase).unwrap();
    let enc = key.raw.with_extension("enc");
    if !enc.exists() {
        openssl(&[
            "enc",
            "-aes-256-cbc",
            "-pbkdf2",
            "-salt",
            "-pass",
            &format!("file:{}", dir.join("master.pass").display()),
            "-in",
            key.raw.to_str().unwrap(),
            "-out",
            enc.to_str().unwrap(),
        ]);
    }
    format!(
        "{{ command = [\"openssl\", \"enc\", \"-d\", \"-aes-256-cbc\", \"-pbkdf2\", \"-pass\", \"file:{}\", \"-in\", \"{}\"] }}",
        pass.display(),
        enc.display()
    )
}

fn file(key: &Key) -> String {
    format!("{:?}", key.raw.display().to_string())
}

/// Admin open, resources for any attested TEE, on database `db`, with `[storage.kek]`
/// `current` and `old` (sources as TOML).
fn config(pg: &Postgres, db: &str, current: &str, old: &[&str]) -> String {
    format!(
        "insecure_http = true\nresource_policy = \"allow_all\"\n\
         [admin]\nmode = \"insecure_allow_all\"\n{}\
         [storage.kek]\ncurrent = {current}\nold = [{}]\n",
        pg_storage(pg, db),
        old.join(", ")
    )
}

fn replica(config: &str) -> Verdictd {
    Verdictd::spawn_in(tempfile::tempdir().unwrap(), config)
}

/// Rewrites a running replica's configuration file (it is not restarted).
fn reconfigure(v: &Verdictd, config: &str) {
    std::fs::write(
        v.dir.path().join("verdictd.toml"),
        format!("listen = \"127.0.0.1:0\"\n{config}"),
    )
    .unwrap();
}

/// `verdictd --config C ARGS…` in `dir`.
fn verdictd(dir: &Path, config: &str, args: &[&str]) -> Output {
    let path = dir.join("cli.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sealed rows by KEK id (hex; "" for unsealed): `id|rows` lines, sorted.
fn census(pg: &Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT coalesce(encode(substring(dek from 1 for 8), 'hex'), ''), count(*) FROM \
         (SELECT dek FROM verdictd_resources UNION ALL SELECT dek FROM verdictd_settings) d \
         GROUP BY 1 ORDER BY 1",
    )
    .unwrap()
    .trim()
    .to_string()
}

/// Every stored byte of the sealed tables and the KEK row, for "nothing changed".
fn snapshot(pg: &Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT 'r', path, md5(value), encode(dek, 'hex') FROM verdictd_resources \
         UNION ALL SELECT 's', name, md5(value), encode(dek, 'hex') FROM verdictd_settings \
         UNION ALL SELECT 'k', '', '', encode(id, 'hex') FROM verdictd_kek ORDER BY 1, 2",
    )
    .unwrap()
}

/// One RCAR exchange on `v` (auth, attest with a fresh key), then GETs of `paths` by
/// the session cookie, each decrypted and compared: the number that failed.
fn fetch(v: &Verdictd, paths: &[(String, Vec<u8>)]) -> usize {
    let key = TeeKeyPair::generate();
    let mut m = Manual::auth(v);
    let body = Manual::attestation(&m.nonce.clone(), &key, &key, &m.nonce.clone());
    let (status, reply) = m.attest(body);
    assert_eq!(status, 200, "{reply}");
    let mut failed = 0;
    for (path, expected) in paths {
        let (status, jwe) = call(
            &mut m.client,
            "GET",
            &format!("/kbs/v0/resource/{path}"),
            None,
            None,
        );
        let got = (status == 200)
            .then(|| {
                key.decrypt(&serde_json::from_value(jwe.clone()).unwrap())
                    .ok()
            })
            .flatten();
        if got.as_deref().map(|g| g.as_slice()) != Some(expected.as_slice()) {
            eprintln!("{path}: {status} {jwe}");
            failed += 1;
        }
    }
    failed
}

fn secret(marker: &str, i: usize) -> Vec<u8> {
    format!("secret-{marker}-{i:04}").into_bytes()
}

#[test]
fn rotation_under_load_fails_no_fetch_and_leaves_no_row_under_the_old_key() {
    let Some(pg) = server() else { return };
    pg.create_database("kbs").unwrap();
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("master.pass"), "operator passphrase").unwrap();
    let (k1, k2) = (new_key(keys.path(), "k1"), new_key(keys.path(), "k2"));
    let k2_source = key_command(keys.path(), &k2, "master");
    let before = config(&pg, "kbs", &file(&k1), &[]);
    let (a, b) = (replica(&before), replica(&before));

    const N: usize = 400;
    let mut marker = [0u8; 8];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut marker,
    )
    .unwrap();
    let marker = hex::encode(marker);
    let resources: Vec<(String, Vec<u8>)> = (0..N)
        .map(|i| (format!("default/r/{i:04}"), secret(&marker, i)))
        .collect();
    for (path, value) in &resources {
        store(&a, path, value);
    }
    assert_eq!(census(&pg, "kbs"), format!("{}|{}", k1.id, N + 2));

    // The new key in every replica's configuration (they keep running), then the
    // rotation, while four clients run RCAR and fetch on both replicas and a fifth
    // stores resources through B.
    let after = config(&pg, "kbs", &k2_source, &[&file(&k1)]);
    reconfigure(&a, &after);
    reconfigure(&b, &after);
    let stop = AtomicBool::new(false);
    let (fetched, failed, stored) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let cli_dir = tempfile::tempdir().unwrap();
    let (rotation, during) = std::thread::scope(|s| {
        for t in 0..4 {
            let (v, resources) = (if t % 2 == 0 { &a } else { &b }, &resources);
            let (stop, fetched, failed) = (&stop, &fetched, &failed);
            s.spawn(move || {
                let mut i = t * 7;
                while !stop.load(Ordering::Relaxed) {
                    let paths: Vec<_> = (0..8)
                        .map(|j| resources[(i + j * 53) % N].clone())
                        .collect();
                    failed.fetch_add(fetch(v, &paths), Ordering::Relaxed);
                    fetched.fetch_add(paths.len(), Ordering::Relaxed);
                    i += 11;
                }
            });
        }
        let (stop_ref, stored_ref) = (&stop, &stored);
        let writer = s.spawn(|| {
            let mut j = 0;
            while !stop_ref.load(Ordering::Relaxed) {
                store(
                    &b,
                    &format!("default/w/{}", j % 50),
                    &secret(&marker, 10_000 + j),
                );
                stored_ref.fetch_add(1, Ordering::Relaxed);
                j += 1;
            }
            j
        });
        while fetched.load(Ordering::Relaxed) < 40 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let at_start = fetched.load(Ordering::Relaxed);
        let started = Instant::now();
        let out = verdictd(cli_dir.path(), &after, &["rotate-kek", "--batch", "10"]);
        let took = started.elapsed();
        let during = fetched.load(Ordering::Relaxed) - at_start;
        // And on, a while after it.
        let at_end = fetched.load(Ordering::Relaxed);
        while fetched.load(Ordering::Relaxed) < at_end + 40 {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        ((out, took), during)
    });
    let ((out, took), during) = (rotation, during);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    eprintln!(
        "rotate-kek: {N} resources, batches of 10, {took:?}; {during} fetches during it, {} in all, {} stores",
        fetched.load(Ordering::Relaxed),
        stored.load(Ordering::Relaxed)
    );
    assert!(
        text(&out.stdout).contains(&format!("every row is under key-encryption key {}", k2.id)),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(during > 0, "no fetch overlapped the rotation ({took:?})");
    assert!(stored.load(Ordering::Relaxed) > 0);

    // Every row, the ones stored during the rotation too, is under the new KEK; a dump
    // shows no secret and no data key wrapped by the old one (bytea is `\x` + hex; the
    // new id is there, so the search can find an id).
    let written = pg
        .psql("kbs", "SELECT count(*) FROM verdictd_resources")
        .unwrap();
    assert_eq!(
        census(&pg, "kbs"),
        format!("{}|{}", k2.id, written.trim().parse::<usize>().unwrap() + 2)
    );
    let dump = pg.dump("kbs").unwrap();
    assert!(dump.contains(&format!("x{}", k2.id)));
    assert!(!dump.contains(&format!("x{}", k1.id)));
    assert!(!dump.contains(&format!("secret-{marker}")));
    assert!(!dump.contains(&hex::encode(format!("secret-{marker}"))));
    let out = verdictd(cli_dir.path(), &after, &["rotate-kek", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Both replicas, never restarted, serve after it (B re-read its configuration on
    // meeting the new key), and so does a replica that holds only the new key.
    assert_eq!(fetch(&a, &resources[..5]), 0);
    assert_eq!(fetch(&b, &resources[N - 5..]), 0);
    for v in [&a, &b] {
        let log = std::fs::read_to_string(v.dir.path().join("verdictd.log")).unwrap();
        assert!(log.contains("re-read [storage.kek]"), "{log}");
        assert!(!log.contains("does not open"), "{log}");
    }
    let c = replica(&config(&pg, "kbs", &k2_source, &[]));
    assert_eq!(fetch(&c, &resources[100..110]), 0);
}

/// Runs `verdictd --config C` expecting it to refuse to start: its stderr.
fn refused_start(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = verdictd(
        dir.path(),
        &format!("listen = \"127.0.0.1:0\"\n{config}"),
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

#[test]
fn wrong_missing_or_retired_keys_change_nothing_and_a_killed_rotation_is_finished_later() {
    let Some(pg) = server() else { return };
    pg.create_database("kbs").unwrap();
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("master.pass"), "operator passphrase").unwrap();
    let (k1, k2, k3) = (
        new_key(keys.path(), "k1"),
        new_key(keys.path(), "k2"),
        new_key(keys.path(), "k3"),
    );
    let v = replica(&config(&pg, "kbs", &file(&k1), &[]));
    let resources: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("default/k/{i}"), secret("k", i)))
        .collect();
    for (path, value) in &resources {
        store(&v, path, value);
    }
    drop(v);
    let unchanged = snapshot(&pg, "kbs");
    let dir = tempfile::tempdir().unwrap();
    let k2_file = file(&k2);

    // Refused, one line each, nothing written: the old key missing, another key in its
    // place, a command that fails (wrong passphrase: openssl's own "bad decrypt"), a key
    // file others can read, no current key.
    let loose = keys.path().join("loose");
    std::fs::copy(&k3.raw, &loose).unwrap();
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    // (A wrong passphrase fails openssl's padding check but for about 1 in 256: then
    // it prints 47 bytes, refused as not a key.)
    let wrong_pass = key_command(keys.path(), &k2, "wrong");
    for (config, expect) in [
        (config(&pg, "kbs", &k2_file, &[]), k1.id.as_str()),
        (config(&pg, "kbs", &k2_file, &[&file(&k3)]), &k1.id),
        (
            config(&pg, "kbs", &wrong_pass, &[&file(&k1)]),
            "key-encryption key command \"openssl enc -d",
        ),
        (
            config(
                &pg,
                "kbs",
                &format!("{:?}", loose.display().to_string()),
                &[&file(&k1)],
            ),
            "chmod 600",
        ),
        (
            config(&pg, "kbs", &k2_file, &[&file(&k1)]).replace("current = ", "# "),
            "[storage.kek]: old keys but no current",
        ),
    ] {
        let out = verdictd(dir.path(), &config, &["rotate-kek"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{expect}: {err}");
        assert_eq!(snapshot(&pg, "kbs"), unchanged, "{err}");
    }
    // Retiring the old key before the rotation: a replica refuses to start, naming it.
    let err = refused_start(&config(&pg, "kbs", &k2_file, &[]));
    assert!(err.contains(&k1.id) && err.contains("rotate-kek"), "{err}");

    // A rotation killed mid-way (blocked on a row another session holds, after its
    // first batch committed): every row opens with the old or the new key, --check
    // says what is left, the old key still cannot be retired, and a second run
    // finishes it.
    let both = config(&pg, "kbs", &k2_file, &[&file(&k1)]);
    let out = verdictd(dir.path(), &both, &["rotate-kek", "--check"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!(
            "5 rows under key-encryption key {} (old: still needed)",
            k1.id
        )),
        "{}",
        text(&out.stdout)
    );
    std::thread::scope(|s| {
        let holder = s.spawn(|| {
            pg.psql(
                "kbs",
                "BEGIN; SELECT 1 FROM verdictd_resources WHERE path = 'default/k/1' FOR UPDATE; \
                 SELECT pg_sleep(4); COMMIT;",
            )
            .unwrap();
        });
        // The row is locked once the session sleeps.
        let deadline = Instant::now() + Duration::from_secs(3);
        while pg
            .psql(
                "kbs",
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
            )
            .unwrap()
            .trim()
            != "1"
        {
            assert!(Instant::now() < deadline, "the lock holder did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let path = dir.path().join("rotate.toml");
        std::fs::write(&path, &both).unwrap();
        let mut rotating = Command::new(env!("CARGO_BIN_EXE_verdictd"))
            .arg("--config")
            .arg(&path)
            .args(["rotate-kek", "--batch", "1"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !census(&pg, "kbs").contains(&format!("{}|1", k2.id)) {
            assert!(Instant::now() < deadline, "{}", census(&pg, "kbs"));
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        rotating.kill().unwrap();
        rotating.wait().unwrap();
        holder.join().unwrap();
    });
    let mut expected = [format!("{}|1", k2.id), format!("{}|4", k1.id)];
    expected.sort();
    assert_eq!(census(&pg, "kbs"), expected.join("\n"));
    let v = replica(&both);
    assert_eq!(fetch(&v, &resources), 0);
    drop(v);
    let err = refused_start(&config(&pg, "kbs", &k2_file, &[]));
    assert!(
        err.contains(&format!("4 sealed rows need key-encryption key {}", k1.id)),
        "{err}"
    );
    let out = verdictd(dir.path(), &both, &["rotate-kek"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("4 data keys re-wrapped and 0 unsealed values sealed, in 2 batches: every row is under key-encryption key {}", k2.id)
    );

    // Now the old key is retired: the configuration without it starts and serves, and
    // --check agrees.
    let retired = config(&pg, "kbs", &k2_file, &[]);
    let out = verdictd(dir.path(), &retired, &["rotate-kek", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let v = replica(&retired);
    assert_eq!(fetch(&v, &resources), 0);
}
