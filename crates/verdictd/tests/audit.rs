//! The audit log end to end, with real verdictd processes: what an RCAR flow and admin
//! calls append (checked against the entry format of `verdictd::audit`'s docs with our
//! own JCS, SHA-256 and Ed25519, and openssl's view of the signing key), the secret
//! never in it, `verdictd audit verify` naming the first entry edited, deleted or
//! reordered directly in PostgreSQL or in the local-fs file, two replicas appending
//! concurrently as one chain, and a failed append failing the release with 503.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kbs_protocol::jwe::TeeKeyPair;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use test_support::Postgres;

/// A server, or `None` (and one line) where PostgreSQL is not installed.
fn server() -> Option<Postgres> {
    if !test_support::postgres::available() {
        eprintln!("skipped: no PostgreSQL server installed (Debian package postgresql)");
        return None;
    }
    Some(Postgres::start().unwrap())
}

/// A checkpoint after every 3 entries (so every 4th entry is one), none by time.
fn audit_section(key: Option<&Path>) -> String {
    let key = key
        .map(|k| format!("signing_key = \"{}\"\n", k.display()))
        .unwrap_or_default();
    format!("[audit]\n{key}checkpoint_entries = 3\ncheckpoint_secs = 0\n")
}

fn pg_config(pg: &Postgres, db: &str, key: &Path) -> String {
    format!(
        "resource_policy = \"allow_all\"\n{ADMIN_OPEN}{}{}",
        pg_storage(pg, db),
        audit_section(Some(key))
    )
}

fn config_of(v: &Verdictd) -> PathBuf {
    v.dir.path().join("verdictd.toml")
}

/// `verify` passes, with `entries` entries and the last checkpoint at entry
/// `checkpoint` signing entry `signed` (any, when `None`).
fn assert_intact(config: &Path, entries: u64, checkpoint: u64, signed: Option<u64>) {
    let (code, out, err) = audit_cli(config, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let head = format!("audit log intact: {entries} entries, signed up to entry ");
    let tail = format!(" by the checkpoint at entry {checkpoint} (");
    assert!(
        out.starts_with(&head) && out.contains(&tail) && out.ends_with(")\n"),
        "{out}"
    );
    if let Some(signed) = signed {
        assert!(out.starts_with(&format!("{head}{signed}{tail}")), "{out}");
    }
}

/// `verify` fails (exit 3) with exactly this one line.
fn assert_broken(config: &Path, line: &str) {
    let (code, out, err) = audit_cli(config, &["verify"]);
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert_eq!(err, format!("verdictd: audit log: {line}\n"));
}

/// The Ed25519 public key of a PKCS#8 PEM file, as openssl derives it.
fn openssl_public_key(key: &Path) -> [u8; 32] {
    let pem = test_support::run(
        "openssl",
        &["pkey", "-in", key.to_str().unwrap(), "-pubout"],
    )
    .unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64).unwrap();
    der[der.len() - 32..].try_into().unwrap()
}

/// Checks `show`'s lines against the documented format, independently of verdictd's
/// code: consecutive seq from 1, each `hash` = SHA-256(prev_hash ‖ JCS of the other
/// fields), checkpoints signing the entry before them with `public`. The entries.
fn check_by_spec(lines: &str, public: &[u8; 32]) -> Vec<Value> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public).unwrap();
    let mut prev = "0".repeat(64);
    let mut out: Vec<Value> = Vec::new();
    for (i, line) in lines.lines().enumerate() {
        let e: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "seq",
                "time",
                "replica",
                "kind",
                "actor",
                "details",
                "prev_hash",
                "hash"
            ],
            "{line}"
        );
        assert_eq!(e["seq"], json!(i + 1), "{line}");
        assert_eq!(e["prev_hash"], json!(prev), "{line}");
        let time = e["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok()
                && time.len() == 24
                && time.ends_with('Z'),
            "{time}"
        );
        let mut fields = e.clone();
        let fields = fields.as_object_mut().unwrap();
        fields.remove("prev_hash");
        fields.remove("hash");
        let mut h = Sha256::new();
        h.update(hex::decode(&prev).unwrap());
        h.update(serde_json_canonicalizer::to_vec(&fields).unwrap());
        assert_eq!(e["hash"], json!(hex::encode(h.finalize())), "{line}");
        if e["kind"] == "checkpoint" {
            // It signs an earlier entry (the one before it, unless another replica's
            // entry came between), by its seq and hash.
            let d = &e["details"];
            let signed = d["signed_seq"].as_u64().unwrap() as usize;
            assert!((1..=i).contains(&signed), "{line}");
            assert_eq!(d["signed_hash"], out[signed - 1]["hash"], "{line}");
            assert_eq!(d["public_key"], json!(STANDARD.encode(public)), "{line}");
            let mut message = b"verdictd-audit-checkpoint-v1\0".to_vec();
            message.extend_from_slice(&(signed as u64).to_be_bytes());
            message.extend_from_slice(&hex::decode(d["signed_hash"].as_str().unwrap()).unwrap());
            let sig: [u8; 64] = STANDARD
                .decode(d["signature"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig))
                .unwrap();
        }
        prev = e["hash"].as_str().unwrap().to_string();
        out.push(e);
    }
    out
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A secret no entry can contain by chance: `secret-<32 random hex digits>`.
fn random_secret() -> Vec<u8> {
    let key = TeeKeyPair::generate();
    let marker = sha256_hex(serde_json::to_string(&key.public_key()).unwrap().as_bytes());
    format!("secret-{}", &marker[..32]).into_bytes()
}

/// None of the forms a secret could take in text.
fn assert_no_secret(text: &str, secret: &[u8]) {
    for form in [
        String::from_utf8_lossy(secret).into_owned(),
        hex::encode(secret),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        sha256_hex(secret),
    ] {
        assert!(!text.contains(&form), "{form} found");
    }
}

/// Auth and attest on `v`: the session cookie (`kbs-session-id=…`) and the token.
fn attest(v: &Verdictd, key: &TeeKeyPair) -> (String, String) {
    let mut m = Manual::auth(v);
    let body = Manual::attestation(&m.nonce.clone(), key, key, &m.nonce.clone());
    let (status, reply) = m.attest(body);
    assert_eq!(status, 200, "{reply}");
    (
        m.client.cookie().unwrap().to_string(),
        reply["token"].as_str().unwrap().to_string(),
    )
}

/// GET a resource by cookie or token: the status and the raw body.
fn get_raw(v: &Verdictd, cookie: Option<&str>, token: Option<&str>, path: &str) -> (u16, Vec<u8>) {
    let mut c = v.client();
    if let Some(cookie) = cookie {
        c.set_cookie(cookie);
    }
    let r = rt()
        .block_on(c.request("GET", &format!("/kbs/v0/resource/{path}"), None, token))
        .unwrap();
    (r.status, r.body.to_vec())
}

fn token_claims(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn every_decision_is_chained_and_tampering_in_postgres_is_named() {
    let Some(pg) = server() else { return };
    pg.create_database("kbs").unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("audit.key");
    let v = Verdictd::spawn_in(
        tempfile::tempdir().unwrap(),
        &pg_config(&pg, "kbs", &key_file),
    );
    let config = config_of(&v);
    let secret = random_secret();

    store(&v, "default/key/demo", &secret); // 1
    let tee = TeeKeyPair::generate();
    let (cookie, token) = attest(&v, &tee); // 2
    let (status, body) = get_raw(&v, Some(&cookie), None, "default/key/demo"); // 3, checkpoint 4
    assert_eq!(status, 200);
    let jwe: kbs_protocol::Response = serde_json::from_slice(&body).unwrap();
    assert_eq!(&*tee.decrypt(&jwe).unwrap(), secret.as_slice());
    set_policy(&v, "package policy\ndefault allow = false\n"); // 5
    let (status, _) = get_raw(&v, None, Some(&token), "default/key/demo"); // 6
    assert_eq!(status, 401);
    store(&v, "default/key/other", b"x"); // 7, checkpoint 8
    let (status, _) = call(
        &mut v.client(),
        "GET",
        "/kbs/v0/resource-policy",
        None,
        None,
    ); // 9
    assert_eq!(status, 200);

    // The key was generated 0600, and openssl reads it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = openssl_public_key(&key_file);

    assert_intact(&config, 9, 8, Some(7));
    let (code, shown, err) = audit_cli(&config, &["show"]);
    assert_eq!(code, 0, "{err}");
    let entries = check_by_spec(&shown, &public);
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "resource.set",
            "admission",
            "release",
            "checkpoint",
            "resource-policy.set",
            "release",
            "resource.set",
            "checkpoint",
            "resource-policy.read"
        ]
    );
    // What each says, from what the client saw.
    let session = sha256_hex(cookie.split_once('=').unwrap().1.as_bytes())[..32].to_string();
    let token_id = sha256_hex(token.as_bytes())[..32].to_string();
    let claims = token_claims(&token);
    assert_eq!(entries[0]["details"]["path"], "default/key/demo");
    assert_eq!(entries[0]["details"]["bytes"], json!(secret.len()));
    assert_eq!(entries[0]["actor"]["admin_key"], "insecure_allow_all");
    assert!(entries[0]["actor"]["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(
        entries[1]["details"],
        json!({
            "tee": "sample",
            "verdict": claims["submods"]["cpu0"]["ear.status"],
            "claims_sha256": sha256_hex(&serde_json_canonicalizer::to_vec(&claims).unwrap()),
            "token": token_id,
        })
    );
    assert_eq!(entries[1]["actor"]["session"], json!(session));
    assert_eq!(
        entries[2]["details"],
        json!({"path": "default/key/demo", "verdict": "released", "jwe_sha256": sha256_hex(&body)})
    );
    assert_eq!(entries[2]["actor"]["token"], json!(token_id));
    assert_eq!(entries[2]["actor"]["session"], json!(session));
    assert_eq!(
        entries[4]["details"]["sha256"],
        json!(sha256_hex(b"package policy\ndefault allow = false\n"))
    );
    assert_eq!(
        entries[5]["details"],
        json!({"path": "default/key/demo", "verdict": "denied"})
    );
    assert_eq!(entries[5]["actor"]["token"], json!(token_id));
    assert!(entries[5]["actor"].get("session").is_none());

    // No form of the secret in the log, while the (unsealed) resource table has it:
    // the search can find it.
    assert_no_secret(&shown, &secret);
    assert_no_secret(
        &pg.psql("kbs", "SELECT * FROM verdictd_audit").unwrap(),
        &secret,
    );
    assert!(pg.dump("kbs").unwrap().contains(&hex::encode(&secret)));

    // `show --since`: an entry number, a time.
    let (_, since, _) = audit_cli(&config, &["show", "--since", "7"]);
    assert_eq!(
        since,
        shown
            .lines()
            .skip(6)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let (_, since, _) = audit_cli(
        &config,
        &["show", "--since", entries[0]["time"].as_str().unwrap()],
    );
    assert_eq!(since, shown);
    let (_, since, _) = audit_cli(&config, &["show", "--since", "2100-01-01T00:00:00Z"]);
    assert_eq!(since, "");

    // Tampering in the database, each undone before the next.
    pg.psql("kbs", "CREATE TABLE saved AS SELECT * FROM verdictd_audit")
        .unwrap();
    let restore = || {
        pg.psql(
            "kbs",
            "DELETE FROM verdictd_audit; INSERT INTO verdictd_audit SELECT * FROM saved",
        )
        .unwrap();
        assert_intact(&config, 9, 8, Some(7));
    };
    let tampering = [
        (
            "UPDATE verdictd_audit SET details = replace(details, '\"released\"', '\"denied\"') WHERE seq = 3",
            "entry 3 was altered: its hash does not match its contents",
        ),
        (
            "DELETE FROM verdictd_audit WHERE seq = 5",
            "entry 5 was removed: entry 4 is followed by entry 6",
        ),
        (
            "UPDATE verdictd_audit SET seq = -2 WHERE seq = 2; \
             UPDATE verdictd_audit SET seq = 2 WHERE seq = 6; \
             UPDATE verdictd_audit SET seq = 6 WHERE seq = -2",
            "entry 2 was reordered: the entry numbered 2 is entry 6, moved",
        ),
        (
            "DELETE FROM verdictd_audit WHERE seq = 9",
            "entry 9 was removed: the log ends at entry 8, but its head records entry 9",
        ),
    ];
    for (sql, line) in tampering {
        pg.psql("kbs", sql).unwrap();
        assert_broken(&config, line);
        restore();
    }
    // A rewrite that recomputes every hash after the edit: the next checkpoint's
    // signature is what shows it.
    let mut rewritten = entries.clone();
    rewritten[4]["details"]["sha256"] =
        json!(sha256_hex(b"package policy\ndefault allow = true\n"));
    for i in 4..rewritten.len() {
        let prev = rewritten[i - 1]["hash"].as_str().unwrap().to_string();
        let mut fields = rewritten[i].as_object().unwrap().clone();
        fields.remove("prev_hash");
        fields.remove("hash");
        let mut h = Sha256::new();
        h.update(hex::decode(&prev).unwrap());
        h.update(serde_json_canonicalizer::to_vec(&fields).unwrap());
        rewritten[i]["prev_hash"] = json!(prev);
        rewritten[i]["hash"] = json!(hex::encode(h.finalize()));
        pg.psql(
            "kbs",
            &format!(
                "UPDATE verdictd_audit SET details = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}",
                rewritten[i]["details"], rewritten[i]["prev_hash"].as_str().unwrap(),
                rewritten[i]["hash"].as_str().unwrap(), i + 1
            ),
        )
        .unwrap();
    }
    pg.psql(
        "kbs",
        &format!(
            "UPDATE verdictd_audit_head SET hash = '{}'",
            rewritten[8]["hash"].as_str().unwrap()
        ),
    )
    .unwrap();
    assert_broken(
        &config,
        "entry 8 is a checkpoint that does not verify: it signs entry 7 with another hash than the log's: the entries up to it were rewritten",
    );
    pg.psql(
        "kbs",
        &format!(
            "UPDATE verdictd_audit_head SET hash = '{}'",
            entries[8]["hash"].as_str().unwrap()
        ),
    )
    .unwrap();
    restore();

    // An append that fails fails the release: 503, no JWE; and an admin change with
    // it is refused before it takes effect.
    set_policy_allowed(&v, 200); // 10
    pg.psql(
        "kbs",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON verdictd_audit FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    .unwrap();
    let (status, body) = get_raw(&v, None, Some(&token), "default/key/demo");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, error_kind(&body)),
        (503, "StorageUnavailable"),
        "{body}"
    );
    assert!(body.get("ciphertext").is_none());
    let (status, _) = call(
        &mut v.client(),
        "DELETE",
        "/kbs/v0/resource/default/key/demo",
        None,
        None,
    );
    assert_eq!(status, 503);
    pg.psql("kbs", "DROP TRIGGER refuse ON verdictd_audit")
        .unwrap();
    let (status, _) = get_raw(&v, None, Some(&token), "default/key/demo"); // 11, checkpoint 12
    assert_eq!(status, 200, "the resource was not deleted");
    assert_intact(&config, 12, 12, Some(11));
}

/// Sets an allow-all resource policy, expecting `status`.
fn set_policy_allowed(v: &Verdictd, status: u16) {
    let body = json!({"policy": URL_SAFE_NO_PAD.encode("package policy\ndefault allow = true\n")});
    let (got, e) = call(
        &mut v.client(),
        "POST",
        "/kbs/v0/resource-policy",
        Some(body.to_string().into_bytes()),
        None,
    );
    assert_eq!(got, status, "{e}");
}

#[test]
fn replicas_appending_concurrently_keep_one_chain() {
    let Some(pg) = server() else { return };
    pg.create_database("kbs").unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("audit.key");
    // Started together: both find no key file; one generates it, both use it.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            Verdictd::spawn_in(
                tempfile::tempdir().unwrap(),
                &pg_config(&pg, "kbs", &key_file),
            )
        });
        let b = s.spawn(|| {
            Verdictd::spawn_in(
                tempfile::tempdir().unwrap(),
                &pg_config(&pg, "kbs", &key_file),
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    const WRITERS: usize = 4;
    const EACH: usize = 15;
    std::thread::scope(|s| {
        for w in 0..2 * WRITERS {
            let v = if w % 2 == 0 { &a } else { &b };
            s.spawn(move || {
                for i in 0..EACH {
                    store(v, &format!("default/w{w}/{i}"), b"v");
                }
            });
        }
    });
    // 120 appends, a checkpoint after every 3: 160 entries, the last a checkpoint.
    assert_intact(&config_of(&a), 160, 160, None);
    let (_, shown, _) = audit_cli(&config_of(&b), &["show"]);
    let entries = check_by_spec(&shown, &openssl_public_key(&key_file));
    let replicas: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e["replica"].as_str().unwrap())
        .collect();
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    let stored = entries
        .iter()
        .filter(|e| e["kind"] == "resource.set")
        .count();
    assert_eq!(stored, 2 * WRITERS * EACH);
}

#[test]
fn the_local_fs_log_is_a_file_whose_edits_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "resource_policy = \"allow_all\"\n{ADMIN_OPEN}[storage]\ntype = \"localfs\"\ndir = \"resources\"\n{}",
        audit_section(None)
    );
    let v = Verdictd::spawn_in(dir, &cfg);
    let config = config_of(&v);
    let secret = random_secret();
    store(&v, "default/key/demo", &secret); // 1
    let key = TeeKeyPair::generate();
    Manual::attest_and_get_demo(&v, &key); // 2, 3, checkpoint 4
    store(&v, "default/key/other", b"x"); // 5

    // A second verdictd on the same files refuses to start, in one line.
    let out = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.trim()
            .lines()
            .last()
            .unwrap()
            .contains("another verdictd"),
        "{err}"
    );

    let dir = v.stop();
    let log = dir.path().join("resources.audit.jsonl");
    let key_file = dir.path().join("resources.audit-key.pem");
    use std::os::unix::fs::PermissionsExt;
    for f in [&log, &key_file] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
    }
    let original = std::fs::read_to_string(&log).unwrap();
    let entries = check_by_spec(&original, &openssl_public_key(&key_file));
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[2]["details"]["verdict"], "released");
    assert_no_secret(&original, &secret);
    assert_intact(&config, 5, 4, Some(3));
    let (code, shown, _) = audit_cli(&config, &["show"]);
    assert_eq!((code, shown.as_str()), (0, original.as_str()));

    let lines: Vec<&str> = original.lines().collect();
    let with = |lines: Vec<String>| {
        std::fs::write(
            &log,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap()
    };
    let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut edited = own(&lines);
    edited[2] = edited[2].replace("\"released\"", "\"denied\"");
    with(edited);
    assert_broken(
        &config,
        "entry 3 was altered: its hash does not match its contents",
    );
    let mut deleted = own(&lines);
    deleted.remove(1);
    with(deleted);
    assert_broken(
        &config,
        "entry 2 was removed: entry 1 is followed by entry 3",
    );
    let mut swapped = own(&lines);
    swapped.swap(1, 2);
    with(swapped);
    assert_broken(
        &config,
        "entry 2 was reordered: entry 3 stands in its place",
    );
    let mut garbled = own(&lines);
    garbled[3] = "{\"seq\": 4".into();
    with(garbled);
    let (code, _, err) = audit_cli(&config, &["verify"]);
    assert_eq!(code, 3);
    assert!(
        err.starts_with("verdictd: audit log: entry 4 was altered: not an audit entry"),
        "{err}"
    );
    std::fs::write(&log, &original).unwrap();
    assert_intact(&config, 5, 4, Some(3));

    // Restarted, it continues the chain.
    let v = Verdictd::spawn_in(dir, &cfg);
    store(&v, "default/key/third", b"y"); // 6
    assert_intact(&config, 6, 4, Some(3));

    // A closed stdout ends `show` quietly (SIGPIPE), as the other commands.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .args(["audit", "show", "--config"])
        .arg(&config)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    // With memory storage there is nothing to read: said in one line.
    let memory = v.dir.path().join("memory.toml");
    std::fs::write(&memory, "insecure_http = true\n").unwrap();
    let (code, _, err) = audit_cli(&memory, &["verify"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("lives in the verdictd process"), "{err}");
}

/// A replaced signing key leaves its checkpoints in the log: `audit verify` names the
/// first one it cannot check (by the id of the key that signed it), and accepts it once
/// the old key's public half is given with `--public-key` or listed in `[audit]
/// trusted_keys`; a trusted key that is not one fails in one line.
#[test]
fn checkpoints_of_a_replaced_signing_key_verify_with_trusted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "resource_policy = \"allow_all\"\n{ADMIN_OPEN}[storage]\ntype = \"localfs\"\ndir = \"resources\"\n{}",
        audit_section(None)
    );
    let v = Verdictd::spawn_in(dir, &cfg);
    let config = config_of(&v);
    for i in 0..3 {
        store(&v, &format!("default/key/k{i}"), b"x"); // 1, 2, 3; checkpoint 4
    }
    let dir = v.stop();
    let key_file = dir.path().join("resources.audit-key.pem");
    let old_public = openssl_public_key(&key_file);
    let pem = test_support::run(
        "openssl",
        &["pkey", "-in", key_file.to_str().unwrap(), "-pubout"],
    )
    .unwrap();
    std::fs::write(dir.path().join("old.pub"), pem).unwrap();
    // The key is retired: the next start generates another.
    std::fs::remove_file(&key_file).unwrap();
    let v = Verdictd::spawn_in(dir, &cfg);
    for i in 3..6 {
        store(&v, &format!("default/key/k{i}"), b"x"); // 5, 6, 7; checkpoint 8
    }
    let dir = v.stop();
    assert_ne!(openssl_public_key(&key_file), old_public);

    let id = &sha256_hex(&old_public)[..16];
    assert_broken(
        &config,
        &format!("entry 4 is a checkpoint that does not verify: signed by key {id}, not an audit key given"),
    );
    let old = dir.path().join("old.pub");
    let (code, out, err) = audit_cli(&config, &["verify", "--public-key", old.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "audit log intact: 8 entries, signed up to entry 7 by the checkpoint at entry 8 ("
        ),
        "{out}"
    );

    // Listed in the configuration (relative to it), as an operator keeps it.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}trusted_keys = [\"old.pub\"]\n")).unwrap();
    assert_intact(&config, 8, 8, Some(7));

    std::fs::write(&old, "not a key\n").unwrap();
    let (code, out, err) = audit_cli(&config, &["verify"]);
    assert_ne!(code, 0);
    assert_eq!(out, "");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(old.to_str().unwrap()), "{err}");
}
