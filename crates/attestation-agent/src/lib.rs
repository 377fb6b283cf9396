//! The attestation agent: a KBS protocol 0.4.0 client that runs inside the enclave.
//! It proves what it runs on to a key broker (`verdictd`, or Trustee's KBS) and
//! fetches secrets that only this enclave can decrypt.
//!
//! ```no_run
//! # async fn f() -> Result<(), attestation_agent::AgentError> {
//! let mut agent = attestation_agent::Agent::new("http://127.0.0.1:8080", Default::default())?;
//! let secret = agent.get_resource("kbs:///default/key/demo").await?;
//! // The host part is ignored, as the guest components ignore it:
//! let same = agent.get_resource("kbs://127.0.0.1:8080/default/key/demo").await?;
//! # Ok(()) }
//! ```
//!
//! Each RCAR run uses a fresh P-256 key: its public half is bound into the evidence
//! (with the broker's nonce), and the broker encrypts resources to it, so a secret
//! is readable only by the process that attested.
//!
//! [`Agent::extend_runtime_measurement`] records an event (guest-components' AA API of
//! that name), e.g. CoCo's `PullImage` with the image's manifest digest; every later
//! attestation carries the log, bound by the report data (see
//! [`kbs_protocol::eventlog`]), and the broker shows it to its policies as
//! `uefi_event_logs` claims. In a `sim` enclave the enclave runtime keeps the log and
//! extends RTMR3 (CC MR 4) of its reports for each event, so the broker also replays the
//! log into the signed registers; the `sample` TEE has no registers and the log lives
//! in this process.
//!
//! **Init-data.** In a `sim` enclave launched with init-data (`ENCLAVE_INIT_DATA`), the
//! runtime binds the document's digest into the report's config id and gives the
//! document to the agent, which sends it as the attestation's `init-data`
//! (`{"format": "toml", "body": …}`) for the broker to check and expose.

pub mod http;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kbs_protocol::jwe::TeeKeyPair;
use kbs_protocol::{
    Attestation, AuthRequest, Challenge, CompositeEvidence, RuntimeData, TokenReply,
};
use serde_json::Value;
use zeroize::Zeroizing;

pub use http::HttpError;
/// Runtime-measurement events (re-exported so enclave programs need not depend on the
/// wire crate).
pub use kbs_protocol::eventlog;
/// The resource URI lives with the wire format, so image code can name KBS resources
/// without depending on the agent.
pub use kbs_protocol::resource_uri::{ResourceUri, UriError};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Http(#[from] HttpError),
    /// The broker answered with an error body (its status and detail).
    #[error("{url}: {status} {detail}")]
    Kbs {
        url: String,
        status: u16,
        detail: String,
    },
    /// A resource URI that is not `kbs[+PLUGIN]://[HOST[:PORT]]/PATH[?QUERY]`.
    #[error("{0}")]
    BadUri(#[from] UriError),
    #[error("attester: {0}")]
    Attester(String),
    #[error("protocol: {0}")]
    Protocol(String),
    /// The TEE's evidence cannot carry runtime measurements (guest-components'
    /// `NOT_SUPPORTED`): TDX and SNP until the agent extends their registers.
    #[error("{0} evidence cannot carry runtime measurements")]
    MeasurementNotSupported(&'static str),
    #[error("{0}")]
    EventLog(#[from] kbs_protocol::eventlog::EventLogError),
}

/// Which evidence to produce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TeeChoice {
    /// `sim` inside a `sim` enclave, TDX or SEV-SNP through configfs-tsm in such a
    /// guest, else `sample`.
    #[default]
    Auto,
    Sim,
    Tdx,
    Snp,
    Sample,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub tee: TeeChoice,
    /// PEM CA certificates to trust for an `https://` broker (else the URL must be
    /// `http://`).
    pub ca_pem: Option<Vec<u8>>,
}

/// An enclave runtime that makes its own `sim` evidence (liberpal-wasm), for an
/// [`Agent`] ([`Agent::with_sim_reporter`]) running inside it. Errors are one line.
pub trait SimRuntime: Send + Sync {
    /// A signed [`sim_tee::Report`] bound to `report_data`, with the runtime's
    /// measurement registers.
    fn report(&self, report_data: [u8; 64]) -> Result<Vec<u8>, String>;
    /// The event log the report's registers replay from.
    fn event_log(&self) -> Result<kbs_protocol::eventlog::EventLog, String>;
    /// The init-data document bound into the report's config id, if any.
    fn init_data(&self) -> Option<String>;
}

/// A shared [`SimRuntime`].
pub type SimReporter = std::sync::Arc<dyn SimRuntime>;

enum Attester {
    Sim(rats::SimAttester),
    /// `sim` reports from the enclave runtime itself: no event log, no init-data.
    Reporter(SimReporter),
    /// configfs-tsm, in a TDX (`tdx`) or SEV-SNP (`snp`) guest.
    Tsm(Box<dyn rats::Attester + Send + Sync>, &'static str),
    Sample,
}

impl Attester {
    fn choose(choice: TeeChoice) -> Result<Attester, AgentError> {
        let sim = || {
            rats::SimAttester::inherited()
                .map(Attester::Sim)
                .ok_or_else(|| {
                    AgentError::Attester("not in a sim enclave (no INCLAVARE_SIM_FD)".into())
                })
        };
        let tsm = |device: &str, name: &'static str| -> Result<Attester, AgentError> {
            if !std::path::Path::new(device).exists() {
                return Err(AgentError::Attester(format!(
                    "not a {name} guest (no {device})"
                )));
            }
            rats::tsm::TsmAttester::probe(std::path::Path::new(rats::tsm::TSM_REPORT_DIR))
                .map(|a| Attester::Tsm(Box::new(a), name))
                .ok_or_else(|| AgentError::Attester("configfs-tsm report interface missing".into()))
        };
        let tdx = || tsm("/dev/tdx_guest", "tdx");
        let snp = || tsm("/dev/sev-guest", "snp");
        match choice {
            TeeChoice::Sim => sim(),
            TeeChoice::Tdx => tdx(),
            TeeChoice::Snp => snp(),
            TeeChoice::Sample => Ok(Attester::Sample),
            TeeChoice::Auto => sim()
                .or_else(|_| tdx())
                .or_else(|_| snp())
                .or(Ok(Attester::Sample)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Attester::Sim(_) | Attester::Reporter(_) => kbs_protocol::TEE_SIM,
            Attester::Tsm(_, name) => name,
            Attester::Sample => "sample",
        }
    }

    /// The primary evidence, bound to `digest`, as the broker's verifier reads it.
    fn evidence(&self, digest: &[u8]) -> Result<Value, AgentError> {
        let report_data = kbs_protocol::binding::report_data_64(digest)
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        let attester_err = |e: rats::RatsError| AgentError::Attester(e.to_string());
        Ok(match self {
            // Trustee's sample verifier compares the bare digest, without padding.
            Attester::Sample => serde_json::to_value(rats::SampleEvidence::new(digest))
                .map_err(|e| AgentError::Protocol(e.to_string()))?,
            Attester::Sim(a) => {
                primary_evidence(&rats::Attester::attest(a, &report_data).map_err(attester_err)?)?
            }
            Attester::Tsm(a, _) => {
                primary_evidence(&a.attest(&report_data).map_err(attester_err)?)?
            }
            Attester::Reporter(r) => serde_json::json!({
                "report": STANDARD.encode(r.report(report_data).map_err(AgentError::Attester)?)
            }),
        })
    }
}

/// Evidence in the form the KBS verifiers read for its TEE: `{"report"}` for `sim`,
/// `{"quote"}` for SGX and TDX, and the guest components' `{"attestation_report",
/// "cert_chain"}` for SEV-SNP (the certificate table from configfs-tsm's `auxblob`).
pub fn primary_evidence(e: &rats::Evidence) -> Result<Value, AgentError> {
    Ok(match e.tee {
        rats::Tee::Sim => serde_json::json!({"report": STANDARD.encode(&e.bytes)}),
        rats::Tee::SgxEcdsa | rats::Tee::TdxEcdsa => {
            serde_json::json!({"quote": STANDARD.encode(&e.bytes)})
        }
        rats::Tee::SevSnp => {
            let table = match &e.collateral {
                Some(aux) => rats::snp::parse_cert_table(aux)
                    .map_err(|e| AgentError::Attester(e.to_string()))?,
                None => Vec::new(),
            };
            kbs_protocol::snp::evidence(&e.bytes, &table)
                .map_err(|e| AgentError::Attester(e.to_string()))?
        }
        rats::Tee::Sample => serde_json::from_slice(&e.bytes)
            .map_err(|e| AgentError::Attester(format!("sample evidence: {e}")))?,
    })
}

/// A client of one broker.
pub struct Agent {
    http: http::Client,
    attester: Attester,
    keypair: TeeKeyPair,
    token: Option<String>,
    eventlog: kbs_protocol::eventlog::EventLog,
}

impl Agent {
    pub fn new(url: &str, options: Options) -> Result<Agent, AgentError> {
        Ok(Agent {
            http: http::Client::new(url, options.ca_pem.as_deref())?,
            attester: Attester::choose(options.tee)?,
            keypair: TeeKeyPair::generate(),
            token: None,
            eventlog: Default::default(),
        })
    }

    /// A client of the broker at `url` (`ca_pem` as in [`Options`]) whose evidence is
    /// the `sim` reports `reporter` makes.
    pub fn with_sim_reporter(
        url: &str,
        ca_pem: Option<&[u8]>,
        reporter: SimReporter,
    ) -> Result<Agent, AgentError> {
        Ok(Agent {
            http: http::Client::new(url, ca_pem)?,
            attester: Attester::Reporter(reporter),
            keypair: TeeKeyPair::generate(),
            token: None,
            eventlog: Default::default(),
        })
    }

    /// Records `event` for every later attestation (a token obtained before it is
    /// dropped, so the next request attests again with it): in a `sim` enclave the
    /// runtime logs it and extends RTMR3 (CC MR 4), for `sample` this agent logs it.
    /// Refused when the TEE's evidence cannot carry it
    /// ([`AgentError::MeasurementNotSupported`]) or the log is full.
    pub fn extend_runtime_measurement(
        &mut self,
        event: &kbs_protocol::eventlog::Event,
    ) -> Result<(), AgentError> {
        match &self.attester {
            Attester::Sim(a) => {
                sim_tee::evidence::extend(a.fd(), kbs_protocol::eventlog::RUNTIME_MR_INDEX, event)
                    .map_err(|e| AgentError::Attester(e.to_string()))?
            }
            Attester::Sample => {
                self.eventlog.extend(event)?;
            }
            Attester::Tsm(..) | Attester::Reporter(_) => {
                return Err(AgentError::MeasurementNotSupported(self.attester.name()))
            }
        }
        self.token = None;
        Ok(())
    }

    /// The events recorded so far (in a `sim` enclave, the runtime's log: every
    /// process's events).
    pub fn event_log(&self) -> Result<kbs_protocol::eventlog::EventLog, AgentError> {
        match &self.attester {
            Attester::Sim(a) => sim_tee::evidence::event_log(a.fd())
                .map_err(|e| AgentError::Attester(e.to_string())),
            Attester::Reporter(r) => r.event_log().map_err(AgentError::Attester),
            _ => Ok(self.eventlog.clone()),
        }
    }

    /// The init-data document the enclave was launched with (`sim`), if any.
    pub fn init_data(&self) -> Result<Option<String>, AgentError> {
        match &self.attester {
            Attester::Sim(a) => sim_tee::evidence::init_data(a.fd())
                .map_err(|e| AgentError::Attester(e.to_string())),
            Attester::Reporter(r) => Ok(r.init_data()),
            _ => Ok(None),
        }
    }

    /// The TEE the agent attests as (`sim`, `tdx`, `snp` or `sample`).
    pub fn tee(&self) -> &'static str {
        self.attester.name()
    }

    fn kbs_error(&self, path: &str, status: u16, body: &[u8]) -> AgentError {
        let detail = serde_json::from_slice::<kbs_protocol::ErrorInformation>(body)
            .map(|e| e.detail)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect());
        AgentError::Kbs {
            url: format!("{}{path}", self.http.base()),
            status,
            detail,
        }
    }

    /// POSTs `body` as JSON and reads a 200 reply as `T`; any other status is the
    /// broker's error.
    async fn post<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, AgentError> {
        let body = serde_json::to_vec(body).map_err(|e| AgentError::Protocol(e.to_string()))?;
        let r = self.http.request("POST", path, Some(body), None).await?;
        if r.status != 200 {
            return Err(self.kbs_error(path, r.status, &r.body));
        }
        serde_json::from_slice(&r.body)
            .map_err(|e| AgentError::Protocol(format!("reply to {path}: {e}")))
    }

    /// The log, its `additional_evidence` and the primary evidence bound to them. In a
    /// `sim` enclave another process may extend between reading the log and taking the
    /// report: the report's extend counts then differ from the log's, and the pair is
    /// taken again (a few times) rather than sent to be refused.
    fn evidence_with_log(
        &self,
        hash: kbs_protocol::HashAlgorithm,
        nonce: &str,
        tee_pubkey: &kbs_protocol::TeePubKey,
    ) -> Result<(String, Value), AgentError> {
        let mut tries = 0;
        loop {
            let log = self.event_log()?;
            let additional_evidence = log.to_additional_evidence();
            let digest =
                kbs_protocol::binding::digest(hash, nonce, tee_pubkey, &additional_evidence)
                    .map_err(|e| AgentError::Protocol(e.to_string()))?;
            let evidence = self.attester.evidence(&digest)?;
            if !matches!(self.attester, Attester::Sim(_) | Attester::Reporter(_)) {
                return Ok((additional_evidence, evidence));
            }
            let report = evidence["report"]
                .as_str()
                .and_then(|b| STANDARD.decode(b).ok())
                .and_then(|b| sim_tee::Report::parse(&b).ok())
                .ok_or_else(|| AgentError::Attester("the sim report does not parse".into()))?;
            tries += 1;
            if report.rtmr_counts == log.replay().1 || tries == 5 {
                return Ok((additional_evidence, evidence));
            }
        }
    }

    /// Runs RCAR: auth, challenge, evidence bound to the nonce and a fresh key, attest.
    /// Returns the attestation token (also kept for later requests).
    pub async fn attest(&mut self) -> Result<String, AgentError> {
        self.keypair = TeeKeyPair::generate();
        self.http.forget_cookies();
        let challenge: Challenge = self
            .post("/kbs/v0/auth", &AuthRequest::new(self.attester.name()))
            .await?;
        let hash = kbs_protocol::selected_hash(&challenge)
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        let tee_pubkey = self.keypair.public_key();
        let (additional_evidence, primary_evidence) =
            self.evidence_with_log(hash, &challenge.nonce, &tee_pubkey)?;
        let init_data = self.init_data()?.map(|body| kbs_protocol::InitData {
            format: "toml".into(),
            body,
        });
        let attestation = Attestation {
            init_data,
            runtime_data: RuntimeData {
                nonce: challenge.nonce,
                tee_pubkey,
            },
            tee_evidence: CompositeEvidence {
                primary_evidence,
                additional_evidence,
            },
        };
        let reply: TokenReply = self.post("/kbs/v0/attest", &attestation).await?;
        self.token = Some(reply.token.clone());
        Ok(reply.token)
    }

    /// Fetches and decrypts a resource (`kbs:///repo/type/tag`, see [`ResourceUri`]).
    /// Attests first if needed, and once more when the broker answers 401 (expired
    /// session or token).
    pub async fn get_resource(&mut self, uri: &str) -> Result<Zeroizing<Vec<u8>>, AgentError> {
        let path = ResourceUri::parse(uri)?.request_path();
        let mut retried = false;
        loop {
            if self.token.is_none() {
                self.attest().await?;
            }
            let r = self
                .http
                .request("GET", &path, None, self.token.as_deref())
                .await?;
            match r.status {
                200 => {
                    let jwe: kbs_protocol::Response = serde_json::from_slice(&r.body)
                        .map_err(|e| AgentError::Protocol(format!("resource reply: {e}")))?;
                    return self
                        .keypair
                        .decrypt(&jwe)
                        .map_err(|e| AgentError::Protocol(e.to_string()));
                }
                401 if !retried => {
                    tracing::info!("{path}: 401, attesting again");
                    retried = true;
                    self.token = None;
                }
                status => return Err(self.kbs_error(&path, status, &r.body)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbs_protocol::eventlog::{Event, EventLog, MAX_EVENTS};

    #[test]
    fn events_ride_in_the_bound_additional_evidence_and_reset_the_token() {
        let mut agent = Agent::new(
            "http://127.0.0.1:9",
            Options {
                tee: TeeChoice::Sample,
                ca_pem: None,
            },
        )
        .unwrap();
        agent.token = Some("old".into());
        let e = Event::pull_image("r.example/app:1", "sha256:ab").unwrap();
        agent.extend_runtime_measurement(&e).unwrap();
        // A token from before the event does not show it: the next request attests.
        assert_eq!(agent.token, None);
        let carried = agent.event_log().unwrap().to_additional_evidence();
        let back = EventLog::from_additional_evidence(&carried).unwrap();
        assert_eq!(back.records().len(), 1);
        assert_eq!(back.records()[0].event().unwrap(), e);
        // What the digest covers is exactly that string (kbs-protocol's binding).
        let key = TeeKeyPair::generate().public_key();
        let with =
            kbs_protocol::binding::digest(kbs_protocol::HashAlgorithm::Sha384, "n", &key, &carried)
                .unwrap();
        let without =
            kbs_protocol::binding::digest(kbs_protocol::HashAlgorithm::Sha384, "n", &key, "")
                .unwrap();
        assert_ne!(with, without);
        for _ in 1..MAX_EVENTS {
            agent.extend_runtime_measurement(&e).unwrap();
        }
        let err = agent.extend_runtime_measurement(&e).unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
    }
}
