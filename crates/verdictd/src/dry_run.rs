//! `verdictd policy test`: the decision a verdictd would make for one piece of evidence
//! and one resource, without a server, a network or storage — for operators debugging
//! a `PolicyDeny`.
//!
//! It runs the server's own steps: the evidence verified and appraised by
//! [`Appraiser`] (rats, the claims in Trustee's layout, the attestation policy, the
//! reference values and the measurement gate), the EAR claims a token would carry
//! ([`crate::token::ear_claims`]), and the resource policy's decision
//! ([`ResourcePolicy::allows_query`]), explained by [`ResourcePolicy::explain`]: which
//! definition of `allow` decided, and the first condition of each rule that did not
//! hold.
//!
//! Evidence comes in three forms:
//! - the body of `POST /kbs/v0/attest` (a KBS `Attestation`): bound, as the server binds
//!   it, to its own nonce and `tee-pubkey` (SHA-384 of the JCS runtime data);
//! - its primary evidence alone (`{"quote"}`, `{"attestation_report","cert_chain"}`,
//!   `{"report"}`, sample JSON), or raw evidence (a DCAP quote, an SNP report, a sim
//!   report; bytes or hex text; configfs-tsm's JSON report): these were made for no
//!   session, so their report data is taken as they carry it (or checked against
//!   `--report-data`), and the runtime data claims hold an empty nonce and the P-256
//!   base point as a stand-in key.
//!
//! Exit status: 0 allowed, 3 denied (by the verifier, which refuses the evidence, or
//! by the resource policy), 1 for input that cannot be used (one line on stderr).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kbs_protocol::InitData;
use serde_json::{json, Value};

use crate::appraise::{self, Appraiser};

mod evidence;
use crate::ear_policy::{self, AttestationPolicy};
use crate::policy::{Explanation, ResourcePolicy};
use crate::Config;
use evidence::{dcap_collateral, load_evidence};

/// The exit status of a denial.
pub const DENIED: i32 = 3;

/// `verdictd policy test`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Attestation policy: `default` (the built-in default_cpu) or a file: Rego (as
    /// kbs-client's set-attestation-policy sends it), a rats policy (TOML or JSON), or
    /// the JSON body of POST /kbs/v0/attestation-policy. Default: the config's, else
    /// `default`
    #[arg(long)]
    pub attestation_policy: Option<String>,
    /// Resource policy: default, allow_all, deny_all, affirming, a Rego file, Rego text,
    /// or a file holding the JSON body of POST /kbs/v0/resource-policy. Default: the
    /// config's, else `default`
    #[arg(long)]
    pub resource_policy: Option<String>,
    /// The evidence: the body of POST /kbs/v0/attest, its primary evidence alone, or raw
    /// evidence (a DCAP quote, an SNP report, a sim report; bytes or hex text;
    /// configfs-tsm's JSON report)
    #[arg(long)]
    pub evidence: PathBuf,
    /// The TEE (sample, sim, sgx, tdx, snp); default: recognised from the evidence
    #[arg(long)]
    pub tee: Option<String>,
    /// Collateral. sgx, tdx: QuoteCollateralV3 JSON (a file, or a directory holding one;
    /// default: the config's dcap_collateral). snp: the VCEK or VLEK (DER or PEM, perhaps
    /// with its chain), a certificate table, or a directory of certificate files, sent as
    /// the evidence's cert_chain
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// The time to verify at (RFC 3339 or Unix seconds): validity of certificates and
    /// collateral, of signed reference values, and the token's iat. Default: now
    #[arg(long)]
    pub at: Option<String>,
    /// The report data (hex, at most 64 bytes) the evidence must carry. Default: an
    /// Attestation's binding; other evidence's own, unchecked
    #[arg(long)]
    pub report_data: Option<String>,
    /// Init-data (Trustee's initdata TOML) sent with the evidence; replaces an
    /// Attestation's
    #[arg(long)]
    pub init_data: Option<PathBuf>,
    /// Reference values: a JSON object {name: value}, or the body of POST
    /// /kbs/v0/reference-value (type sample). Repeatable
    #[arg(long)]
    pub reference_values: Vec<PathBuf>,
    /// A verdictd config (verdictd's global `--config`): its attestation_policy,
    /// resource_policy, dcap_collateral, [rvps] require_reference_values and [token]
    /// duration_secs, unless given here
    #[arg(skip)]
    pub config: Option<PathBuf>,
    /// The resource: repo/type/tag (or kbs:///repo/type/tag), with an optional ?query
    #[arg(long)]
    pub resource: String,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs the dry run, prints its report, and returns the exit status (0 or [`DENIED`]).
pub fn run(args: &Args) -> Result<i32> {
    let report = test(args)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report.to_json())?)?;
    } else {
        report.print(&mut out)?;
    }
    out.flush()?;
    Ok(if report.allowed() { 0 } else { DENIED })
}

/// How the evidence is tied to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Binding {
    /// An Attestation's runtime data hashed to this digest.
    RuntimeData(Vec<u8>),
    /// `--report-data`.
    Given(Vec<u8>),
    /// Taken as the evidence carries it.
    Unbound,
}

/// What [`test`] found.
#[derive(Debug)]
pub struct Report {
    evidence: PathBuf,
    form: &'static str,
    tee: rats::Tee,
    binding: Binding,
    at: u64,
    attestation_policy: String,
    resource_policy: String,
    resource: String,
    query: Value,
    /// The `cpu0` appraisal, or why the evidence was refused.
    appraisal: Result<Value, String>,
    /// The resource policy's decision (none when the evidence was refused).
    decision: Option<Explanation>,
}

/// Appraises the evidence and decides on the resource as the server would; errors are
/// input that cannot be used.
pub fn test(args: &Args) -> Result<Report> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let at = match &args.at {
        Some(s) => parse_time(s)?,
        None => crate::token::unix_now(),
    };
    let (resource, segments, query) = parse_resource(&args.resource)?;

    let ap_spec = args
        .attestation_policy
        .clone()
        .or_else(|| {
            config
                .attestation_policy
                .as_ref()
                .map(|p| p.display().to_string())
        })
        .unwrap_or_else(|| "default".into());
    let attestation_policy = load_attestation_policy(&ap_spec)?;
    let rp_spec = args
        .resource_policy
        .clone()
        .unwrap_or_else(|| config.resource_policy.clone());
    // The engine's errors start "resource policy: "; the label names which.
    let policy_err = |e: crate::KbsError| {
        let e = e.to_string();
        anyhow!(
            "{}: {}",
            label(&rp_spec),
            e.strip_prefix("resource policy: ").unwrap_or(&e)
        )
    };
    let resource_policy =
        ResourcePolicy::new(&resource_policy_text(&rp_spec)?).map_err(policy_err)?;

    let mut loaded = load_evidence(args)?;
    let tee = loaded.tee;
    if let Some(path) = &args.init_data {
        let body = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("init-data {}: {e}", path.display()))?;
        crate::initdata::check_size(&body)
            .map_err(|e| anyhow!("init-data {}: {e}", path.display()))?;
        loaded.attestation.init_data = Some(InitData {
            format: "toml".into(),
            body,
        });
    }
    if let Some(hex_data) = &args.report_data {
        let bytes = hex::decode(hex_data.trim())
            .map_err(|e| anyhow!("--report-data {hex_data:?}: not hex: {e}"))?;
        if bytes.len() > 64 {
            bail!("--report-data: {} bytes, at most 64", bytes.len());
        }
        loaded.binding = Binding::Given(bytes);
    }

    let dcap = match tee {
        rats::Tee::SgxEcdsa | rats::Tee::TdxEcdsa => {
            match args.collateral.as_ref().or(config.dcap_collateral.as_ref()) {
                Some(path) => Some(dcap_collateral(tee, path)?),
                None => None,
            }
        }
        rats::Tee::SevSnp => None,
        other => match &args.collateral {
            Some(_) => bail!(
                "--collateral: {} evidence takes no collateral",
                other.name()
            ),
            None => None,
        },
    };
    let mut appraiser = Appraiser::new(attestation_policy, dcap);
    appraiser.require_reference_values(config.rvps.require_reference_values);
    for path in &args.reference_values {
        appraiser.set_reference_values(reference_values(path)?);
    }

    // What the server's /attest refuses before appraising, then the appraisal.
    let att = &loaded.attestation;
    let appraisal = att
        .init_data
        .as_ref()
        .map_or(Ok(()), |i| crate::initdata::check_size(&i.body))
        .and_then(|()| match loaded.form {
            "attestation" => kbs_protocol::jwe::check_key(&att.runtime_data.tee_pubkey)
                .map_err(|e| format!("tee-pubkey: {e}")),
            _ => Ok(()),
        })
        .and_then(|()| {
            match &loaded.binding {
                Binding::RuntimeData(d) | Binding::Given(d) => appraiser.appraise(tee, att, d, at),
                Binding::Unbound => appraiser.appraise_unbound(tee, att, at),
            }
            .map_err(|e| e.to_string())
        });
    let decision = match &appraisal {
        Ok(cpu0) => {
            let claims = crate::token::ear_claims(cpu0.clone(), at, config.token.duration_secs);
            let path: Vec<&str> = segments.iter().map(String::as_str).collect();
            Some(
                resource_policy
                    .explain(&claims, "resource", &path, &query)
                    .map_err(policy_err)?,
            )
        }
        Err(_) => None,
    };
    Ok(Report {
        evidence: args.evidence.clone(),
        form: loaded.form,
        tee,
        binding: loaded.binding,
        at,
        attestation_policy: label_attestation(&ap_spec),
        resource_policy: label(&rp_spec),
        resource,
        query,
        appraisal,
        decision,
    })
}

/// `--at`: Unix seconds or RFC 3339.
fn parse_time(s: &str) -> Result<u64> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| anyhow!("--at {s:?}: neither RFC 3339 nor Unix seconds: {e}"))?;
    u64::try_from(t.timestamp()).map_err(|_| anyhow!("--at {s:?}: before 1970"))
}

/// `repo/type/tag[?query]` (or `kbs:///…`, `kbs://host/…`): the path, its segments and
/// the query as the server passes them to the policy.
fn parse_resource(s: &str) -> Result<(String, Vec<String>, Value)> {
    let rest = match s.strip_prefix("kbs://") {
        // The host part names a broker; this is the broker.
        Some(r) => &r[r.find('/').unwrap_or(r.len())..],
        None => s,
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = path.trim_start_matches('/');
    crate::storage::resource_path(path).map_err(|e| anyhow!("--resource {s:?}: {e}"))?;
    Ok((
        path.to_string(),
        path.split('/').map(str::to_string).collect(),
        crate::policy::query_object(query),
    ))
}

/// The attestation policy `spec` names: `default` (or `default_cpu`), or a file.
fn load_attestation_policy(spec: &str) -> Result<AttestationPolicy> {
    let text = if spec == "default" || spec == appraise::ACTIVE_POLICY {
        ear_policy::DEFAULT_CPU.to_string()
    } else {
        let text =
            std::fs::read_to_string(spec).map_err(|e| anyhow!("attestation policy {spec}: {e}"))?;
        admin_upload(&text)
            .transpose()
            .map_err(|e| anyhow!("attestation policy {spec}: {e}"))?
            .unwrap_or(text)
    };
    AttestationPolicy::parse(&text).map_err(|e| anyhow!("attestation policy {spec}: {e}"))
}

/// The Rego of a resource policy `spec`: a builtin name, Rego text, or a file (Rego,
/// or the admin upload's JSON).
fn resource_policy_text(spec: &str) -> Result<String> {
    if ear_policy::is_rego(spec) {
        return Ok(spec.to_string());
    }
    let text = crate::policy::source(spec)?;
    Ok(admin_upload(&text)
        .transpose()
        .map_err(|e| anyhow!("resource policy {spec}: {e}"))?
        .unwrap_or(text))
}

/// The policy of an admin upload body (`{"policy": <base64url>, …}`, as kbs-client
/// sends it to /kbs/v0/resource-policy and /kbs/v0/attestation-policy); `None` for
/// other text.
fn admin_upload(text: &str) -> Option<Result<String>> {
    let v: Value = serde_json::from_str(text).ok()?;
    let policy = v.get("policy")?.as_str()?;
    Some(
        URL_SAFE_NO_PAD
            .decode(policy.trim_end_matches('='))
            .map_err(|e| anyhow!("the upload's policy is not base64url: {e}"))
            .and_then(|b| String::from_utf8(b).map_err(|e| anyhow!("the upload's policy: {e}"))),
    )
}

fn label(spec: &str) -> String {
    if ear_policy::is_rego(spec) {
        "resource policy (Rego text)".into()
    } else if crate::policy::BUILTIN.iter().any(|(n, _)| *n == spec) {
        format!("resource policy {spec} (built-in)")
    } else {
        format!("resource policy {spec}")
    }
}

fn label_attestation(spec: &str) -> String {
    if spec == "default" || spec == appraise::ACTIVE_POLICY {
        "default_cpu (built-in)".into()
    } else {
        spec.to_string()
    }
}

/// Reference values from a file: `{name: value}` or a `sample` or `corim` RVPS message.
fn reference_values(path: &Path) -> Result<BTreeMap<String, Value>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow!("reference values {}: {e}", path.display()))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("reference values {}: not JSON: {e}", path.display()))?;
    if v.get("payload").is_some() && v.get("type").is_some() {
        return crate::admin_api::reference_values(&bytes)
            .map_err(|e| anyhow!("reference values {}: {e}", path.display()));
    }
    serde_json::from_value(v).map_err(|_| {
        anyhow!(
            "reference values {}: neither a JSON object {{name: value}} nor a reference-value message",
            path.display()
        )
    })
}

impl Report {
    /// Whether the resource would be released.
    pub fn allowed(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| d.allowed)
    }

    fn binding_text(&self) -> String {
        match &self.binding {
            Binding::RuntimeData(_) => {
                "bound to its runtime data (nonce and tee-pubkey, SHA-384), as the server binds it"
                    .into()
            }
            Binding::Given(d) => format!("must carry the report data {}", hex::encode(d)),
            Binding::Unbound => {
                "made for no session: its report data is taken as it is (not checked)".into()
            }
        }
    }

    /// One line: the decision and what made it.
    pub fn reason(&self) -> String {
        let d = match (&self.appraisal, &self.decision) {
            (Err(e), _) => return format!("denied: the attestation is refused: {e}"),
            (_, None) => return "denied".into(),
            (_, Some(d)) => d,
        };
        let deciding: Vec<String> = d
            .deciding()
            .iter()
            .map(|def| format!("`{}` (line {})", def.text, def.line))
            .collect();
        let failed: Vec<String> = d
            .definitions
            .iter()
            .filter_map(|def| def.failed.as_ref().map(|c| (def, c)))
            .map(|(def, c)| {
                format!(
                    "`{}` (line {}) failed at line {}: {}",
                    def.text, def.line, c.line, c.text
                )
            })
            .collect();
        let allow = match &d.allow {
            Some(v) => format!("allow = {v}"),
            None => "allow is undefined".into(),
        };
        let mut s = format!(
            "{} by the {}: {allow}",
            if d.allowed { "allowed" } else { "denied" },
            self.resource_policy
        );
        if !deciding.is_empty() {
            s.push_str(&format!(", from {}", deciding.join(", ")));
        }
        if !d.allowed && !failed.is_empty() {
            s.push_str(&format!("; {}", failed.join("; ")));
        }
        s
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "evidence": {
                "file": self.evidence.display().to_string(),
                "form": self.form,
                "tee": appraise::tee_name(self.tee),
                "software_tee": self.tee.is_software(),
                "binding": self.binding_text(),
            },
            "at": rats::validity::rfc3339(self.at as i64),
            "attestation_policy": self.attestation_policy,
            "appraisal": self.appraisal.as_ref().ok(),
            "refused": self.appraisal.as_ref().err(),
            "resource": {
                "path": self.resource,
                "query": self.query,
                "policy": self.resource_policy,
                "decision": self.decision,
            },
            "decision": if self.allowed() { "allowed" } else { "denied" },
            "reason": self.reason(),
        })
    }

    /// The report as text.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let tee = appraise::tee_name(self.tee);
        writeln!(
            out,
            "evidence     {} ({})",
            self.evidence.display(),
            self.form
        )?;
        writeln!(out, "binding      {}", self.binding_text())?;
        if self.tee.is_software() {
            writeln!(
                out,
                "TEE          {tee}: a software TEE, its evidence proves nothing about hardware"
            )?;
        } else {
            writeln!(out, "TEE          {tee}")?;
        }
        writeln!(
            out,
            "at           {}",
            rats::validity::rfc3339(self.at as i64)
        )?;
        writeln!(out, "attestation  policy {}", self.attestation_policy)?;
        match &self.appraisal {
            Err(e) => writeln!(out, "  refused    {e}")?,
            Ok(cpu0) => {
                let annotated = &cpu0["ear.veraison.annotated-evidence"];
                let claims = &annotated[tee];
                writeln!(
                    out,
                    "  status     {}",
                    cpu0["ear.status"].as_str().unwrap_or("?")
                )?;
                let tcb = claims["tcb_status"].as_str().unwrap_or("none");
                writeln!(out, "  TCB status {tcb}")?;
                if let Some(a) = claims["advisory_ids"].as_array() {
                    let ids: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                    writeln!(
                        out,
                        "  advisories {}",
                        if ids.is_empty() {
                            "none".into()
                        } else {
                            ids.join(", ")
                        }
                    )?;
                }
                if let Some(v) = cpu0["ear.trustworthiness-vector"].as_object() {
                    let set: Vec<String> = v
                        .iter()
                        .filter(|(_, n)| n.as_i64() != Some(0))
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect();
                    writeln!(out, "  trust      {} (the rest 0)", set.join(", "))?;
                }
                let reasons: Vec<&str> = cpu0[appraise::REASONS]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (i, r) in reasons.iter().enumerate() {
                    writeln!(
                        out,
                        "  {}  {r}",
                        if i == 0 { "reasons  " } else { "         " }
                    )?;
                }
                writeln!(out, "  claims")?;
                let mut flat = Vec::new();
                flatten(annotated, "", &mut flat);
                let width = flat.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                for (k, v) in flat {
                    writeln!(out, "    {k:width$}  {v}")?;
                }
            }
        }
        write!(out, "resource     {}", self.resource)?;
        if self.query.as_object().is_some_and(|q| !q.is_empty()) {
            write!(out, " (query {})", self.query)?;
        }
        writeln!(out, ", {}", self.resource_policy)?;
        if self.decision.is_none() {
            writeln!(out, "  not asked: a refused attestation gets no token")?;
        }
        if let Some(d) = &self.decision {
            match &d.allow {
                Some(v) => writeln!(out, "  allow      {v}")?,
                None => writeln!(out, "  allow      undefined")?,
            }
            for def in &d.definitions {
                let outcome = match (&def.value, def.default, &def.failed) {
                    (Some(v), true, _) => format!("applied: {v}"),
                    (None, true, _) => "not applied".into(),
                    (Some(v), false, _) => format!("held: {v}"),
                    (None, false, Some(c)) => {
                        format!("did not hold: line {}: {} failed", c.line, c.text)
                    }
                    (None, false, None) => "did not hold".into(),
                };
                writeln!(out, "  line {:<5} {}  -> {outcome}", def.line, def.text)?;
            }
            for (name, value) in &d.rules {
                let shown = match value {
                    None => "undefined".to_string(),
                    Some(v @ (Value::Object(_) | Value::Array(_))) => {
                        let s = v.to_string();
                        if s.chars().count() > 60 {
                            format!("{}…", s.chars().take(60).collect::<String>())
                        } else {
                            s
                        }
                    }
                    Some(v) => v.to_string(),
                };
                writeln!(out, "  rule       {name} = {shown}")?;
            }
        }
        writeln!(out, "decision     {}", self.reason())
    }
}

/// The claims as `dotted.path  value` lines: strings bare, other scalars as JSON,
/// lists of scalars inline, lists of objects counted.
fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(child, &path, out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            out.push((prefix.to_string(), format!("[{} entries]", items.len())))
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
