//! Shared by the integration tests: verdictd started for real on loopback, plain
//! calls, and the RCAR messages made by hand.
#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use attestation_agent::http::Client;
use attestation_agent::{Agent, Options, TeeChoice};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kbs_protocol::jwe::TeeKeyPair;
use kbs_protocol::{Attestation, AuthRequest, Challenge, CompositeEvidence, RuntimeData};
use serde_json::{json, Value};

pub struct Verdictd {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    /// The private database of a run against the postgres backend (see [`postgres`]);
    /// stopped after verdictd.
    pub pg: Option<test_support::Postgres>,
}

/// Whether this run puts verdictd on PostgreSQL: `VERDICTD_TEST_STORAGE=postgres` runs
/// the same tests against the postgres backend (each verdictd whose config names no
/// `[storage]` gets a private server of its own).
pub fn postgres() -> bool {
    std::env::var("VERDICTD_TEST_STORAGE").is_ok_and(|v| v == "postgres")
}

/// The `[storage]` section for database `db` of `pg`.
pub fn pg_storage(pg: &test_support::Postgres, db: &str) -> String {
    format!("[storage]\ntype = \"postgres\"\nurl = \"{}\"\n", pg.url(db))
}

impl Verdictd {
    /// Starts verdictd on a free loopback port with `extra` config (TOML).
    pub fn start(extra: &str) -> Verdictd {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> Verdictd {
        if postgres() && !extra.contains("[storage]") {
            let pg = test_support::Postgres::start().unwrap();
            pg.create_database("verdictd").unwrap();
            // Appended: [storage] then closes whatever table `extra` ended in.
            let extra = format!("{extra}\n{}", pg_storage(&pg, "verdictd"));
            let mut v = Self::spawn_in(dir, &extra);
            let log = std::fs::read_to_string(v.dir.path().join("verdictd.log")).unwrap();
            assert!(log.contains("database ready"), "not on postgres: {log}");
            v.pg = Some(pg);
            return v;
        }
        Self::spawn_in(dir, extra)
    }

    /// Starts verdictd with exactly this config (no database added).
    pub fn spawn_in(dir: tempfile::TempDir, extra: &str) -> Verdictd {
        let config = dir.path().join("verdictd.toml");
        std::fs::write(&config, format!("listen = \"127.0.0.1:0\"\n{extra}")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_verdictd"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("verdictd.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "verdictd did not start: {line}{}",
                    std::fs::read_to_string(dir.path().join("verdictd.log")).unwrap()
                )
            })
            .to_string();
        Verdictd {
            child,
            url,
            dir,
            pg: None,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, self.ca().as_deref()).unwrap()
    }

    pub fn ca(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join("cert.pem")).ok()
    }

    pub fn agent(&self) -> Agent {
        sample_agent(&self.url, self.ca())
    }

    /// SIGTERM: exits 0.
    pub fn stop(mut self) -> tempfile::TempDir {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(self.child.wait().unwrap().success());
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Verdictd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// (status, body as JSON or Null, raw body)
pub fn call(
    c: &mut Client,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    bearer: Option<&str>,
) -> (u16, Value) {
    let r = rt()
        .block_on(c.request(method, path, body, bearer))
        .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body)
            .unwrap_or(Value::String(String::from_utf8_lossy(&r.body).into_owned())),
    )
}

pub fn error_kind(v: &Value) -> &str {
    v["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or("")
}

pub const ADMIN_OPEN: &str = "insecure_http = true\n[admin]\nmode = \"insecure_allow_all\"\n";

pub fn store(v: &Verdictd, path: &str, secret: &[u8]) {
    let (status, body) = call(
        &mut v.client(),
        "POST",
        &format!("/kbs/v0/resource/{path}"),
        Some(secret.to_vec()),
        None,
    );
    assert_eq!(status, 200, "{body}");
}

pub fn set_policy(v: &Verdictd, rego: &str) {
    let body = json!({"policy": URL_SAFE_NO_PAD.encode(rego)}).to_string();
    let (status, b) = call(
        &mut v.client(),
        "POST",
        "/kbs/v0/resource-policy",
        Some(body.into_bytes()),
        None,
    );
    assert_eq!(status, 200, "{b}");
}

/// The RCAR messages by hand: auth, then an attestation for `tee_key` whose sample
/// evidence is bound to `bound_key` and `bound_nonce` (the honest case: the same).
pub struct Manual {
    pub client: Client,
    pub nonce: String,
}

impl Manual {
    pub fn auth(v: &Verdictd) -> Manual {
        Self::auth_as(v, "sample")
    }

    /// A session of `tee` (`sample`, `sim`, …).
    pub fn auth_as(v: &Verdictd, tee: &str) -> Manual {
        let mut client = v.client();
        let (status, body) = call(
            &mut client,
            "POST",
            "/kbs/v0/auth",
            Some(serde_json::to_vec(&AuthRequest::new(tee)).unwrap()),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let c: Challenge = serde_json::from_value(body).unwrap();
        assert_eq!(STANDARD.decode(&c.nonce).unwrap().len(), 32);
        assert_eq!(c.extra_params, "");
        Manual {
            client,
            nonce: c.nonce,
        }
    }

    pub fn attestation(
        nonce: &str,
        tee_key: &TeeKeyPair,
        bound_key: &TeeKeyPair,
        bound_nonce: &str,
    ) -> Vec<u8> {
        let digest = kbs_protocol::binding::digest(
            kbs_protocol::HashAlgorithm::Sha384,
            bound_nonce,
            &bound_key.public_key(),
            "",
        )
        .unwrap();
        serde_json::to_vec(&Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce: nonce.into(),
                tee_pubkey: tee_key.public_key(),
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: serde_json::to_value(rats::SampleEvidence::new(&digest)).unwrap(),
                additional_evidence: String::new(),
            },
        })
        .unwrap()
    }

    /// A session that attests with `key` and GETs `default/key/demo` by its cookie
    /// alone: the session, the attestation body, the attest reply and the JWE.
    pub fn attest_and_get_demo(
        v: &Verdictd,
        key: &TeeKeyPair,
    ) -> (Manual, Vec<u8>, Value, kbs_protocol::Response) {
        let mut m = Manual::auth(v);
        let body = Manual::attestation(&m.nonce.clone(), key, key, &m.nonce.clone());
        let (status, reply) = m.attest(body.clone());
        assert_eq!(status, 200, "{reply}");
        let (status, jwe) = call(
            &mut m.client,
            "GET",
            "/kbs/v0/resource/default/key/demo",
            None,
            None,
        );
        assert_eq!(status, 200, "{jwe}");
        (m, body, reply, serde_json::from_value(jwe).unwrap())
    }

    /// The attestation of a `sim` session (see [`Manual::auth_as`]) by an enclave whose
    /// report, as `liberpal-sim` makes it, says `mr_enclave`; signed by a platform key
    /// of the test's.
    pub fn sim_attestation(&self, mr_enclave: [u8; 48]) -> Vec<u8> {
        let key = TeeKeyPair::generate();
        let digest = kbs_protocol::binding::digest(
            kbs_protocol::HashAlgorithm::Sha384,
            &self.nonce,
            &key.public_key(),
            "",
        )
        .unwrap();
        let report = sim_tee::Report::unsigned(
            false,
            mr_enclave,
            [0xbb; 48],
            1,
            1,
            kbs_protocol::binding::report_data_64(&digest).unwrap(),
        );
        let platform = sim_tee::PlatformKey::generate().unwrap();
        let report = platform.sign_report(report).to_bytes();
        serde_json::to_vec(&Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce: self.nonce.clone(),
                tee_pubkey: key.public_key(),
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: json!({"report": STANDARD.encode(report)}),
                additional_evidence: String::new(),
            },
        })
        .unwrap()
    }

    pub fn attest(&mut self, body: Vec<u8>) -> (u16, Value) {
        call(&mut self.client, "POST", "/kbs/v0/attest", Some(body), None)
    }
}

/// `verdictd audit ARGS --config CONFIG`: (exit code, stdout, stderr).
pub fn audit_cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verdictd"))
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An attestation agent with the sample TEE for the broker at `url` (trusting `ca_pem`
/// for https).
pub fn sample_agent(url: &str, ca_pem: Option<Vec<u8>>) -> Agent {
    Agent::new(
        url,
        Options {
            tee: TeeChoice::Sample,
            ca_pem,
        },
    )
    .unwrap()
}
