//! A real `verdictd` (the workspace's key broker) on a loopback port, for tests whose
//! enclaves attest to it and fetch KBS resources: which sim enclave it admits, which
//! resources it holds, optionally HTTPS with a private CA and an admin API open to one
//! public key (what `enclave-image encrypt --kbs` stores the KEK through).

use std::io::{self, BufRead as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::boot::release_artifact;

/// How [`Verdictd::start_with`] configures the broker.
#[derive(Debug, Clone, Default)]
pub struct VerdictdOptions<'a> {
    /// The sim enclave measurement (`mr_enclave`, hex) the attestation policy admits;
    /// any other sim enclave is contraindicated. Software TEEs are allowed. Empty: the
    /// policy names none, so only a provisioned reference value admits an enclave
    /// (verdictd's `require_reference_values` gate).
    pub admit: &'a str,
    /// Resources written to the store before it starts: `repo/type/tag` and bytes.
    pub resources: &'a [(&'a str, &'a [u8])],
    /// A PEM public key (Ed25519, P-256 or RSA) whose JWTs may use the admin API
    /// (`[admin] mode = "bearer_jwt"`, role `admin`); without one the admin API is closed.
    pub admin_public_key: Option<&'a Path>,
    /// Serve HTTPS with a certificate for `127.0.0.1` from a fresh private CA
    /// ([`Verdictd::ca`]; or the one [`write_tls`] already put in the directory);
    /// otherwise plain HTTP (`insecure_http`).
    pub tls: bool,
    /// A PEM public key (P-256 or Ed25519) whose signed reference-value bundles
    /// verdictd accepts (`[rvps] trusted_keys`).
    pub rvps_trusted_key: Option<&'a Path>,
    /// Open the admin API to anyone (`[admin] mode = "insecure_allow_all"`); ignored
    /// when `admin_public_key` is given.
    pub admin_open: bool,
    /// The address to listen on (`127.0.0.1:PORT`); by default a free loopback port.
    pub listen: Option<&'a str>,
    /// A resource policy (Rego text) in place of `affirming`.
    pub resource_policy: Option<&'a str>,
}

/// verdictd started from `dir/verdictd.toml` with the resource policy `affirming` (a
/// resource goes only to an enclave the attestation policy affirmed), its store in
/// `dir/resources` (localfs), its log as JSON lines in `dir/verdictd.log`. Killed by pid
/// and reaped on drop.
pub struct Verdictd {
    child: Child,
    url: String,
    log: PathBuf,
    ca: Option<PathBuf>,
}

impl Verdictd {
    /// Plain HTTP, admitting `mr_enclave`, holding `resources`, no admin API.
    pub fn start(dir: &Path, mr_enclave: &str, resources: &[(&str, &[u8])]) -> io::Result<Self> {
        Self::start_with(
            dir,
            &VerdictdOptions {
                admit: mr_enclave,
                resources,
                ..VerdictdOptions::default()
            },
        )
    }

    /// Starts verdictd as `opts` says, with its files in `dir` (created; the resource
    /// store must not exist yet). Returns once it announced its address. The binary is
    /// `target/release/verdictd`, built if missing.
    pub fn start_with(dir: &Path, opts: &VerdictdOptions) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)?;
        let store = dir.join("resources");
        std::fs::create_dir(&store)?;
        for (path, bytes) in opts.resources {
            // verdictd's localfs store: one file per resource, `/` escaped as `\x2F`.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(store.join(path.replace('/', "\\x2F")))
                .and_then(|mut f| io::Write::write_all(&mut f, bytes))?;
        }
        let mut policy = String::from("allow_software_tees = true\n");
        if !opts.admit.is_empty() {
            policy.push_str(&format!(
                "[expected]\nsim_mr_enclave = [\"{}\"]\n",
                opts.admit
            ));
        }
        std::fs::write(dir.join("attestation.toml"), policy)?;
        let resource_policy = match opts.resource_policy {
            Some(rego) => {
                std::fs::write(dir.join("resource-policy.rego"), rego)?;
                "resource-policy.rego"
            }
            None => "affirming",
        };
        let mut config = format!(
            "listen = \"{}\"\nresource_policy = \"{resource_policy}\"\n\
             attestation_policy = \"attestation.toml\"\n",
            opts.listen.unwrap_or("127.0.0.1:0")
        );
        let ca = if opts.tls {
            let ca = dir.join("ca.pem");
            // Made beforehand (`write_tls` into `dir`) when a client must know the CA
            // before the broker starts.
            if !dir.join("server.pem").exists() {
                write_tls(dir, &ca)?;
            }
            config.push_str("[tls]\ncertificate = \"server.pem\"\nprivate_key = \"server.key\"\n");
            Some(ca)
        } else {
            config.insert_str(0, "insecure_http = true\n");
            None
        };
        config.push_str("[storage]\ntype = \"localfs\"\ndir = \"resources\"\n");
        if let Some(key) = opts.admin_public_key {
            config.push_str(&format!(
                "[admin]\nmode = \"bearer_jwt\"\npublic_keys = [\"{}\"]\nroles = [\"admin\"]\n",
                key.display()
            ));
        } else if opts.admin_open {
            config.push_str("[admin]\nmode = \"insecure_allow_all\"\n");
        }
        if let Some(key) = opts.rvps_trusted_key {
            config.push_str(&format!("[rvps]\ntrusted_keys = [\"{}\"]\n", key.display()));
        }
        std::fs::write(dir.join("verdictd.toml"), config)?;
        let log = dir.join("verdictd.log");
        let mut child = Command::new(release_artifact("verdictd", "verdictd")?)
            .arg("--config")
            .arg(dir.join("verdictd.toml"))
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let mut line = String::new();
        let read = io::BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map(|_| ());
        // `listening on http(s)://ADDR`.
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "verdictd did not start ({read:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default().trim()
            )));
        };
        Ok(Verdictd {
            child,
            url: addr.to_string(),
            log,
            ca,
        })
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The private CA's certificate (PEM) when serving HTTPS.
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The log so far (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's events in order, each as tracing writes it: `{"level", "fields":
    /// {"message", …}, …}`; lines that are not JSON are skipped.
    pub fn events(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The index in [`events`](Self::events) of the first event whose `fields` hold
    /// every `(name, value)` of `fields` (`message` included; a number matches its
    /// decimal text).
    pub fn find_event(&self, fields: &[(&str, &str)]) -> Option<usize> {
        self.events().iter().position(|e| {
            fields.iter().all(|(k, v)| match &e["fields"][*k] {
                Value::String(s) => s == v,
                Value::Number(n) => n.to_string() == *v,
                _ => false,
            })
        })
    }
}

impl Drop for Verdictd {
    fn drop(&mut self) {
        // Our own child, by pid; reaped so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA (`ca`) and a certificate for IP 127.0.0.1 signed by it
/// (`dir/server.pem`, key `dir/server.key`).
pub fn write_tls(dir: &Path, ca: &Path) -> io::Result<()> {
    let e = |e: rcgen::Error| io::Error::other(format!("certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test KBS CA");
    let ca_cert = params.self_signed(&ca_key).map_err(e)?;
    let key = rcgen::KeyPair::generate().map_err(e)?;
    // rcgen makes an IP address SAN of a name that parses as one.
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).map_err(e)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(e)?;
    std::fs::write(ca, ca_cert.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}
