//! Init-data: the TOML document of Confidential Containers' initdata spec that a guest
//! was launched with, sent in the attestation as `{"format": "toml", "body": …}`.
//!
//! As Trustee's attestation service reads it (T:`attestation-service/src/lib.rs`
//! `Initdata` and `parse_init_data`): `version` (string), `algorithm` (`sha256`,
//! `sha384`, `sha512` or `sm3`) and `[data]` (string values) are required; the digest
//! is the algorithm over the whole body; the claims are the `[data]` table, where the
//! `aa.toml` and `cdh.toml` strings are parsed as TOML documents, and a `policy.rego`
//! that declares `policy_data := {…}` (last in the file) is replaced by that JSON
//! under `agent_policy_claims`.
//!
//! How the digest is bound to the evidence depends on the TEE (T:`deps/verifier`):
//! TDX `MRCONFIGID` (48 bytes), SEV-SNP `HOST_DATA` (32), SGX `CONFIGID` (64), the
//! digest zero-padded or truncated to the field. Inclavare's `sim` report (version 2)
//! has a 64-byte config id like SGX's, which `liberpal-sim` sets from the init-data it
//! was launched with, and is checked the same way. `sample` has no such field: its
//! init-data is reported, not bound.
//!
//! **SGX with Occlum (KSS).** An enclave built with `"enable_kss": true` in
//! `Occlum.json`'s `metadata` and started with `occlum run --config-id <base64 of the
//! digest> …` (the PAL zero-pads it into the 64-byte `CONFIGID`, REPORT body offset
//! 192, quote offset 240, outside `MRENCLAVE`) gives quotes whose `config_id` claim is
//! checked against the init-data sent exactly as for `sim`. rune binds init-data only for
//! `sim`: the PAL API has no config-id argument, so for `intelSgx` the enclave must be
//! launched by Occlum's own tools with the config id.

use std::collections::HashMap;

use kbs_protocol::HashAlgorithm;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Initdata {
    #[allow(dead_code)]
    version: String,
    algorithm: HashAlgorithm,
    data: HashMap<String, String>,
}

/// A parsed init-data: its digest and its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct InitData {
    pub digest: Vec<u8>,
    pub claims: Value,
}

/// The largest init-data body accepted, in bytes (64 KiB). Trustee sets no limit of its
/// own beyond the 2 MiB request body; verdictd caps it because the parsed document is
/// carried in the token (`init_data_claims`) that an attested session keeps.
pub const MAX_INIT_DATA_BYTES: usize = 64 * 1024;

/// Refuses an init-data body over [`MAX_INIT_DATA_BYTES`]; the error is one line.
pub fn check_size(body: &str) -> Result<(), String> {
    if body.len() > MAX_INIT_DATA_BYTES {
        return Err(format!(
            "init-data is {} bytes, over the limit of {MAX_INIT_DATA_BYTES} bytes",
            body.len()
        ));
    }
    Ok(())
}

/// Parses an init-data body of `format`; errors are one line. Bodies over
/// [`MAX_INIT_DATA_BYTES`] are refused before parsing.
pub fn parse(format: &str, body: &str) -> Result<InitData, String> {
    check_size(body)?;
    if format != "toml" {
        return Err(format!(
            "init-data format {format:?} is not supported (toml is)"
        ));
    }
    let doc: Initdata = toml::from_str(body).map_err(|e| format!("init-data: {}", e.message()))?;
    let digest = doc.algorithm.digest(body.as_bytes());
    let mut claims = serde_json::Map::new();
    for (key, text) in doc.data {
        let value = match key.as_str() {
            "aa.toml" | "cdh.toml" => toml::from_str::<toml::Value>(&text)
                .ok()
                .and_then(|t| serde_json::to_value(t).ok())
                .unwrap_or(Value::String(text)),
            _ => Value::String(text),
        };
        claims.insert(key, value);
    }
    if let Some(policy_data) = claims
        .get("policy.rego")
        .and_then(Value::as_str)
        .and_then(policy_data)
    {
        claims.remove("policy.rego");
        claims.insert("agent_policy_claims".into(), policy_data);
    }
    Ok(InitData {
        digest,
        claims: Value::Object(claims),
    })
}

/// The JSON after `policy_data := ` in an agent policy, when it is the rest of the file.
fn policy_data(rego: &str) -> Option<Value> {
    const START: &str = "policy_data := {";
    let at = rego.find(START)? + START.len() - 1;
    serde_json::from_str(&rego[at..]).ok()
}

/// `digest` fitted to a `len`-byte report field: zero-padded, or truncated (as
/// T:`deps/verifier/src/lib.rs` `regularize_data`).
pub fn fit(digest: &[u8], len: usize) -> Vec<u8> {
    let mut v = digest.to_vec();
    v.resize(len, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sha2::Digest;

    #[test]
    fn claims_are_the_parsed_document() {
        let body = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = '''\n[token_configs.kbs]\nurl = \"http://kbs\"\nx = 1\n'''\n\"policy.rego\" = '''\npackage agent_policy\npolicy_data := {\"containers\": [1]}\n'''\nplain = \"text\"\n";
        let d = parse("toml", body).unwrap();
        assert_eq!(d.digest, sha2::Sha256::digest(body.as_bytes()).to_vec());
        assert_eq!(
            d.claims,
            json!({"aa.toml": {"token_configs": {"kbs": {"url": "http://kbs", "x": 1}}},
                   "agent_policy_claims": {"containers": [1]},
                   "plain": "text"})
        );
        // A policy without policy_data stays as text; a cdh.toml that is not TOML too.
        let body = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"policy.rego\" = \"package x\"\n\"cdh.toml\" = \"= nope\"\n";
        let d = parse("toml", body).unwrap();
        assert_eq!(
            d.claims,
            json!({"policy.rego": "package x", "cdh.toml": "= nope"})
        );
        assert_eq!(d.digest.len(), 48);
    }

    #[test]
    fn what_trustee_refuses_is_refused() {
        for (format, body, want) in [
            ("json", "{}", "format"),
            ("toml", "version = \"0.1.0\"\n[data]\n", "algorithm"),
            (
                "toml",
                "version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n",
                "md5",
            ),
            (
                "toml",
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = 1\n",
                "string",
            ),
            ("toml", "not toml ===", "init-data"),
        ] {
            let err = parse(format, body).unwrap_err();
            assert!(err.contains(want) && !err.contains('\n'), "{want}: {err}");
        }
        assert_eq!(fit(&[1; 64], 48), vec![1; 48]);
        assert_eq!(fit(&[1; 32], 48)[32..], [0; 16]);
    }
}
