//! Init-data: the deployment configuration a confidential workload is launched with, as
//! Confidential Containers defines it (T:`kbs/docs/initdata.md`; T = confidential-
//! containers/trustee): a TOML document
//!
//! ```toml
//! version = "0.1.0"
//! algorithm = "sha384"          # sha256, sha384 or sha512
//! [data]
//! "aa.toml" = "..."             # file name -> content, strings only
//! ```
//!
//! Its **digest** is the algorithm over the exact bytes of the document as delivered
//! (no canonical form: re-encoding the TOML changes it). The launcher binds the digest
//! into a field of the TEE's report that is not part of the launch measurement; for a
//! process enclave that is the 64-byte config id ([`InitData::config_id`]), which is
//! where SGX KSS puts `CONFIGID` (REPORT body offset 192) and what Occlum's
//! `--config-id` sets. The digest is zero-padded (or truncated) to the field, as trustee's
//! `regularize_data` fits it (T:`deps/verifier/src/lib.rs`).
//!
//! The parser is as strict as Kata's host-side one about the algorithm (`sha256`,
//! `sha384`, `sha512`; trustee also takes `sm3`, which no enclave runtime here can
//! compute) and as trustee's about the rest: `version` a string, `data` a table of
//! strings. Every error is one line.

use std::collections::BTreeMap;

use sha2::Digest as _;

/// The largest document accepted, in bytes (64 KiB, verdictd's limit too).
pub const MAX_INIT_DATA_BYTES: usize = 64 * 1024;
/// The size of the report field the digest is bound to (SGX KSS `CONFIGID`).
pub const CONFIG_ID_LEN: usize = 64;

/// Why a document is not init-data; one line.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("init-data: {0}")]
pub struct InitDataError(String);

/// The digest algorithms init-data may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    /// The name in the document (`sha256`, `sha384`, `sha512`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn parse(s: &str) -> Result<Algorithm, InitDataError> {
        Ok(match s {
            "sha256" => Algorithm::Sha256,
            "sha384" => Algorithm::Sha384,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(InitDataError(format!(
                    "unknown algorithm {other:?} (sha256, sha384 or sha512)"
                )))
            }
        })
    }

    /// The digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
            Algorithm::Sha384 => sha2::Sha384::digest(bytes).to_vec(),
            Algorithm::Sha512 => sha2::Sha512::digest(bytes).to_vec(),
        }
    }
}

/// A checked init-data document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitData {
    /// The document exactly as given (what is hashed and what is sent to the verifier).
    pub text: String,
    pub version: String,
    pub algorithm: Algorithm,
    /// `[data]`: file name to content.
    pub data: BTreeMap<String, String>,
}

impl InitData {
    /// Checks `text`: at most [`MAX_INIT_DATA_BYTES`], TOML, `version` a string,
    /// `algorithm` one of [`Algorithm`], `data` a table of strings, nothing else.
    pub fn parse(text: &str) -> Result<InitData, InitDataError> {
        fn err<T>(m: String) -> Result<T, InitDataError> {
            Err(InitDataError(m))
        }
        if text.len() > MAX_INIT_DATA_BYTES {
            return err(format!(
                "{} bytes, at most {MAX_INIT_DATA_BYTES}",
                text.len()
            ));
        }
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let line = e
                    .span()
                    .map(|s| text[..s.start].lines().count().max(1))
                    .unwrap_or(1);
                return err(format!(
                    "not TOML (line {line}): {}",
                    e.message().lines().next().unwrap_or("")
                ));
            }
        };
        let string = |key: &str| match table.get(key) {
            Some(toml::Value::String(s)) => Ok(s.clone()),
            Some(_) => err(format!("{key} is not a string")),
            None => err(format!("no {key}")),
        };
        let version = string("version")?;
        let algorithm = Algorithm::parse(&string("algorithm")?)?;
        let data = match table.get("data") {
            Some(toml::Value::Table(t)) => t
                .iter()
                .map(|(k, v)| match v {
                    toml::Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => err(format!("data.{k:?} is not a string")),
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?,
            Some(_) => return err("data is not a table".into()),
            None => return err("no [data] table".into()),
        };
        if let Some(other) = table
            .keys()
            .find(|k| !["version", "algorithm", "data"].contains(&k.as_str()))
        {
            return err(format!("unknown key {other:?} (version, algorithm, data)"));
        }
        Ok(InitData {
            text: text.to_string(),
            version,
            algorithm,
            data,
        })
    }

    /// The algorithm over the document's bytes.
    pub fn digest(&self) -> Vec<u8> {
        self.algorithm.digest(self.text.as_bytes())
    }

    /// The 64-byte config id binding the document: its digest, zero-padded.
    pub fn config_id(&self) -> [u8; CONFIG_ID_LEN] {
        let mut id = [0u8; CONFIG_ID_LEN];
        let d = self.digest();
        let n = d.len().min(CONFIG_ID_LEN);
        id[..n].copy_from_slice(&d[..n]);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// measurement.md §6 derived vectors (the 63-byte document).
    const DOC256: &str =
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"aa.toml\" = \"x\"\n";

    #[test]
    fn digests_and_config_ids_match_the_reference_vectors() {
        assert_eq!(DOC256.len(), 63);
        let d = InitData::parse(DOC256).unwrap();
        assert_eq!(d.data["aa.toml"], "x");
        assert_eq!(
            hex::encode(d.digest()),
            "1fbaa2c99550a1af22626c900a55ab0405fc552d3375da31c820ac0443db1c29"
        );
        assert_eq!(
            hex::encode(d.config_id()),
            format!(
                "1fbaa2c99550a1af22626c900a55ab0405fc552d3375da31c820ac0443db1c29{}",
                "00".repeat(32)
            )
        );
        let d = InitData::parse(&DOC256.replace("sha256", "sha384")).unwrap();
        assert_eq!(
            hex::encode(d.config_id()),
            format!(
                "9647c680bbebf05b0737263d213ffcc413dbef5e81214583eb4efee725b2b18a\
                 90e6a6e51673e206c87be7220a8a01c8{}",
                "00".repeat(16)
            )
        );
        let d = InitData::parse(&DOC256.replace("sha256", "sha512")).unwrap();
        assert_eq!(d.config_id().to_vec(), d.digest());
    }

    #[test]
    fn bad_documents_are_one_line_errors() {
        for (doc, want) in [
            ("not toml ===", "init-data: not TOML (line 1)"),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data\n",
                "not TOML (line 3)",
            ),
            ("algorithm = \"sha256\"\n[data]\n", "init-data: no version"),
            (
                "version = 1\nalgorithm = \"sha256\"\n[data]\n",
                "version is not a string",
            ),
            ("version = \"0.1.0\"\n[data]\n", "no algorithm"),
            (
                "version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n",
                "init-data: unknown algorithm \"md5\" (sha256, sha384 or sha512)",
            ),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha-256\"\n[data]\n",
                "\"sha-256\"",
            ),
            (
                "version = \"0.1.0\"\nalgorithm = \"sm3\"\n[data]\n",
                "\"sm3\"",
            ),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\n",
                "no [data] table",
            ),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\ndata = 3\n",
                "data is not a table",
            ),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = 1\n",
                "data.\"x\" is not a string",
            ),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\nextra = \"\"\n[data]\n",
                "unknown key \"extra\"",
            ),
        ] {
            let e = InitData::parse(doc).unwrap_err().to_string();
            assert!(e.contains(want) && !e.contains('\n'), "{doc:?}: {e}");
        }
        let big = format!("{DOC256}# {}\n", "x".repeat(MAX_INIT_DATA_BYTES));
        assert!(InitData::parse(&big)
            .unwrap_err()
            .to_string()
            .contains("at most 65536"));
    }
}
