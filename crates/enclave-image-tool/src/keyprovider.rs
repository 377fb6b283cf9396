//! ocicrypt's key-provider protocol (containers/ocicrypt
//! `keywrap/keyprovider/keyprovider.go`, images.md §1.7), `cmd` transport: one JSON
//! request on stdin, one JSON answer on stdout, a non-zero exit on error. Registered in
//! an `ocicrypt.conf` (`OCICRYPT_KEYPROVIDER_CONFIG`) as
//! `{"key-providers":{"attestation-agent":{"cmd":{"path":"/usr/local/bin/enclave-image","args":["keyprovider"]}}}}`,
//! it lets a skopeo or containerd imgcrypt built on ocicrypt ≥ 1.1 write and read
//! Confidential Containers' annotation packets.
//!
//! Requests (Go writes `[]byte` as std-base64 strings and `nil` as `null`; ocicrypt-rs
//! writes strings too; number arrays are accepted as well):
//! ```json
//! {"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":["<b64 params>"]},"DecryptConfig":{"Parameters":{}}},"optsdata":"<b64 PLBCO JSON>"},"keyunwrapparams":{"dc":null,"annotation":null}}
//! {"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":{"Parameters":{…}},"annotation":"<b64 packet JSON>"}}
//! ```
//! Answers carry bytes as JSON number arrays, which ocicrypt-rs requires (serde
//! `Vec<u8>`) and Go's `encoding/json` accepts for `[]byte` (images.md §1.7):
//! `{"keywrapresults":{"annotation":[…packet JSON…]}}`,
//! `{"keyunwrapresults":{"optsdata":[…PLBCO JSON…]}}`.
//!
//! Parameters (`provider:attestation-agent:<params>` on skopeo's command line) are
//! coco_keyprovider's: `key=value` pairs joined by `::`, here `keyid=kbs:///repo/type/tag`,
//! `keypath=FILE` (32 raw bytes) and `algorithm=A256GCM`; `Enabled` (no params) means
//! "use the KEKs given to this command with `--kek KID=FILE`".

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_image::ocicrypt::{seal_packet, Kek, Keys};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::files::{read_kek, FileError};
use crate::kbs::resource_path;

/// The provider name the annotation is written under by default
/// (`org.opencontainers.image.enc.keys.provider.attestation-agent`).
pub const DEFAULT_PROVIDER: &str = "attestation-agent";
/// Largest request read from stdin (requests hold a few hundred bytes).
pub const MAX_REQUEST: u64 = 1 << 20;

/// Errors of this module, one line each.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The request does not parse or lacks what its `op` needs.
    #[error("key provider request: {0}")]
    Request(String),
    /// Parameters that do not parse.
    #[error("key provider parameters: {0}")]
    Params(String),
    /// No KEK for the key id.
    #[error("{0}")]
    NoKek(String),
    /// Reading a KEK file.
    #[error(transparent)]
    File(#[from] FileError),
    /// Wrapping or opening the packet.
    #[error(transparent)]
    Ocicrypt(#[from] enclave_image::ocicrypt::Error),
}

/// A `[]byte` field: a std-base64 string (Go, ocicrypt-rs) or a number array (serde).
#[derive(Deserialize)]
#[serde(untagged)]
enum WireBytes {
    Text(String),
    Array(Vec<u8>),
}

impl WireBytes {
    fn decode(self, what: &str) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        match self {
            WireBytes::Array(v) => Ok(Zeroizing::new(v)),
            WireBytes::Text(s) => STANDARD
                .decode(s.trim())
                .map(Zeroizing::new)
                .map_err(|_| ProviderError::Request(format!("{what} is not standard base64"))),
        }
    }
}

type Parameters = Option<HashMap<String, Option<Vec<WireBytes>>>>;

#[derive(Deserialize)]
struct Input {
    op: String,
    #[serde(default)]
    keywrapparams: Option<WrapParams>,
    #[serde(default)]
    keyunwrapparams: Option<UnwrapParams>,
}

#[derive(Deserialize)]
struct WrapParams {
    #[serde(default)]
    ec: Option<Config>,
    #[serde(default)]
    optsdata: Option<WireBytes>,
}

#[derive(Deserialize)]
struct UnwrapParams {
    #[serde(default)]
    dc: Option<Config>,
    #[serde(default)]
    annotation: Option<WireBytes>,
}

/// Go's `EncryptConfig` / `DecryptConfig`: only `Parameters` is read.
#[derive(Deserialize)]
struct Config {
    #[serde(rename = "Parameters", default)]
    parameters: Parameters,
}

/// One parameter entry, parsed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Param {
    /// `keyid=`: the KBS resource URI of the KEK.
    pub keyid: Option<String>,
    /// `keypath=`: a file holding the KEK's 32 bytes.
    pub keypath: Option<PathBuf>,
}

/// A parsed request.
#[derive(Debug)]
pub enum Request {
    /// Wrap `optsdata` (a layer's private options JSON).
    Wrap {
        /// This provider's parameter entries.
        params: Vec<Param>,
        /// What to seal.
        optsdata: Zeroizing<Vec<u8>>,
    },
    /// Open `packet` (the annotation packet JSON).
    Unwrap {
        /// This provider's parameter entries (from the decrypt config).
        params: Vec<Param>,
        /// The packet JSON.
        packet: Vec<u8>,
        /// The packet's `kid`, as written.
        kid: String,
    },
}

/// Parses one parameter entry: `Enabled` (none), or `key=value` pairs joined by `::`.
pub fn parse_param(entry: &[u8]) -> Result<Option<Param>, ProviderError> {
    let text = std::str::from_utf8(entry)
        .map_err(|_| ProviderError::Params("not UTF-8".into()))?
        .trim();
    if text.is_empty() || text == "Enabled" {
        return Ok(None);
    }
    let mut p = Param::default();
    for pair in text.split("::") {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ProviderError::Params(format!("{pair:?} is not key=value")))?;
        match k {
            "keyid" => p.keyid = Some(v.to_string()),
            "keypath" => p.keypath = Some(PathBuf::from(v)),
            "algorithm" if v == "A256GCM" => {}
            "algorithm" => {
                return Err(ProviderError::Params(format!(
                    "algorithm {v:?} (only A256GCM)"
                )))
            }
            "sample" => {
                return Err(ProviderError::Params(
                    "sample= (coco_keyprovider's built-in test key) is not supported".into(),
                ))
            }
            other => {
                return Err(ProviderError::Params(format!(
                    "unknown key {other:?} (keyid, keypath, algorithm)"
                )))
            }
        }
    }
    Ok(Some(p))
}

fn params_of(cfg: Option<Config>, provider: &str) -> Result<Vec<Param>, ProviderError> {
    let entries = cfg
        .and_then(|c| c.parameters)
        .and_then(|mut m| m.remove(provider))
        .flatten()
        .unwrap_or_default();
    let mut out = Vec::new();
    for e in entries {
        if let Some(p) = parse_param(&e.decode("a parameter")?)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// The packet JSON in an unwrap request's annotation: the bytes the provider returned at
/// wrap time, or (from a client that encodes once more) their std-base64.
fn packet_bytes(raw: &[u8]) -> Vec<u8> {
    if raw.trim_ascii_start().starts_with(b"{") {
        return raw.to_vec();
    }
    let text = String::from_utf8_lossy(raw);
    STANDARD
        .decode(text.trim())
        .unwrap_or_else(|_| raw.to_vec())
}

/// Parses a request for provider `provider` (whose `Parameters` entry is read).
///
/// Errors: [`ProviderError::Request`] for JSON that is not a request, an unknown `op`, a
/// missing `optsdata` / `annotation`, a packet without a `kid`;
/// [`ProviderError::Params`] for bad parameters.
pub fn parse_request(input: &[u8], provider: &str) -> Result<Request, ProviderError> {
    let input: Input = serde_json::from_slice(input).map_err(|e| {
        ProviderError::Request(format!(
            "not JSON of ocicrypt's protocol (line {}, column {}: {})",
            e.line(),
            e.column(),
            e.classify_name()
        ))
    })?;
    match input.op.as_str() {
        "keywrap" => {
            let w = input
                .keywrapparams
                .ok_or_else(|| ProviderError::Request("keywrap without keywrapparams".into()))?;
            let optsdata = w
                .optsdata
                .ok_or_else(|| ProviderError::Request("keywrap without optsdata".into()))?
                .decode("optsdata")?;
            Ok(Request::Wrap {
                params: params_of(w.ec, provider)?,
                optsdata,
            })
        }
        "keyunwrap" => {
            let u = input.keyunwrapparams.ok_or_else(|| {
                ProviderError::Request("keyunwrap without keyunwrapparams".into())
            })?;
            let raw = u
                .annotation
                .ok_or_else(|| ProviderError::Request("keyunwrap without annotation".into()))?
                .decode("annotation")?;
            let packet = packet_bytes(&raw);
            #[derive(Deserialize)]
            struct Kid {
                kid: String,
            }
            let kid = serde_json::from_slice::<Kid>(&packet)
                .map_err(|_| {
                    ProviderError::Request(
                        "the annotation is not an annotation packet with a kid".into(),
                    )
                })?
                .kid;
            Ok(Request::Unwrap {
                params: params_of(u.dc, provider)?,
                packet,
                kid,
            })
        }
        other => Err(ProviderError::Request(format!(
            "op {other:?} (keywrap or keyunwrap)"
        ))),
    }
}

trait ErrorName {
    fn classify_name(&self) -> &'static str;
}

impl ErrorName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// KEKs given on the command line: `(kid, file)`.
#[derive(Debug, Default, Clone)]
pub struct ProviderKeys {
    /// `--kek KID=FILE`, in order.
    pub keks: Vec<(String, PathBuf)>,
}

fn same_resource(a: &str, b: &str) -> bool {
    match (resource_path(a), resource_path(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

impl ProviderKeys {
    fn file_for(&self, kid: &str) -> Option<&Path> {
        self.keks
            .iter()
            .find(|(k, _)| same_resource(k, kid))
            .map(|(_, p)| p.as_path())
    }
}

fn bytes_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::Value::Array(bytes.iter().map(|b| (*b).into()).collect())
}

/// Answers a parsed request, reading KEK files as the parameters or `keys` name them.
/// Returns the answer JSON.
///
/// - wrap: the KEK is `keypath=` with `keyid=`, or the `--kek` file of `keyid=`, or,
///   without parameters, the only `--kek` given;
/// - unwrap: the KEK for the packet's `kid` is the `--kek` file of that kid, or a
///   parameter's `keypath=` whose `keyid=` is that kid or absent.
///
/// Errors: [`ProviderError::NoKek`] naming the kid; [`ProviderError::File`];
/// [`ProviderError::Ocicrypt`] (bad kid, wrong KEK, malformed packet).
pub fn respond(request: Request, keys: &ProviderKeys) -> Result<Vec<u8>, ProviderError> {
    match request {
        Request::Wrap { params, optsdata } => {
            if params.len() > 1 {
                return Err(ProviderError::Params(format!(
                    "{} entries; one annotation is written per call, give one",
                    params.len()
                )));
            }
            let (kid, path) = match params.into_iter().next() {
                Some(Param {
                    keyid: Some(kid),
                    keypath: Some(p),
                }) => (kid, p),
                Some(Param {
                    keyid: Some(kid),
                    keypath: None,
                }) => {
                    let p = keys.file_for(&kid).ok_or_else(|| {
                        ProviderError::NoKek(format!(
                            "no KEK for {kid}: give keypath= or --kek {kid}=FILE"
                        ))
                    })?;
                    (kid, p.to_path_buf())
                }
                Some(Param { keyid: None, .. }) => {
                    return Err(ProviderError::Params(
                        "keyid=kbs:///<repo>/<type>/<tag> is required to wrap".into(),
                    ))
                }
                None => match keys.keks.as_slice() {
                    [(kid, p)] => (kid.clone(), p.clone()),
                    _ => {
                        return Err(ProviderError::NoKek(format!(
                            "no keyid= parameter and {} --kek given (need exactly one)",
                            keys.keks.len()
                        )))
                    }
                },
            };
            let kek = Kek::new(&read_kek(&path)?)?;
            let packet = seal_packet(&kek, &kid, &optsdata)?;
            Ok(serde_json::to_vec(
                &serde_json::json!({"keywrapresults": {"annotation": bytes_json(&packet)}}),
            )
            .expect("JSON serialises"))
        }
        Request::Unwrap {
            params,
            packet,
            kid,
        } => {
            let path = keys.file_for(&kid).map(Path::to_path_buf).or_else(|| {
                params.into_iter().find_map(|p| match (p.keyid, p.keypath) {
                    (Some(id), Some(path)) if same_resource(&id, &kid) => Some(path),
                    (None, Some(path)) => Some(path),
                    _ => None,
                })
            });
            let path = path.ok_or_else(|| {
                ProviderError::NoKek(format!(
                    "no KEK for {kid}: give --kek {kid}=FILE, or keypath= in the decryption parameters"
                ))
            })?;
            let mut held = Keys::default();
            held.add_kek(&kid, &read_kek(&path)?)?;
            let opts = held.open_packet(&packet)?;
            Ok(serde_json::to_vec(
                &serde_json::json!({"keyunwrapresults": {"optsdata": bytes_json(&opts)}}),
            )
            .expect("JSON serialises"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_follow_coco_keyprovider() {
        assert_eq!(parse_param(b"Enabled").unwrap(), None);
        assert_eq!(
            parse_param(b"keyid=kbs:///a/b/c::keypath=/k.bin::algorithm=A256GCM").unwrap(),
            Some(Param {
                keyid: Some("kbs:///a/b/c".into()),
                keypath: Some("/k.bin".into())
            })
        );
        for (bad, why) in [
            (&b"keyid"[..], "not key=value"),
            (b"algorithm=A256CTR", "only A256GCM"),
            (b"sample=true", "not supported"),
            (b"color=red", "unknown key"),
        ] {
            let e = parse_param(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn requests_need_their_fields() {
        for (json, why) in [
            (
                r#"{"op":"keywrap","keywrapparams":{"ec":null,"optsdata":null}}"#,
                "without optsdata",
            ),
            (
                r#"{"op":"keyunwrap","keyunwrapparams":{"dc":null,"annotation":null}}"#,
                "without annotation",
            ),
            (
                r#"{"op":"keyunwrap","keyunwrapparams":{"annotation":"e30="}}"#,
                "with a kid",
            ),
            (r#"{"op":"rotate"}"#, "op \"rotate\""),
            (
                r#"{"op":"keywrap","keywrapparams":{"optsdata":"!!"}}"#,
                "not standard base64",
            ),
            ("[", "truncated"),
        ] {
            let e = parse_request(json.as_bytes(), DEFAULT_PROVIDER)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{json}: {e}");
        }
    }

    /// The fuzz target's seed (made with Python's `cryptography`) parses and opens with
    /// the target's fixed KEK, so the fuzzer starts from a request that gets all the way.
    #[test]
    fn the_fuzz_seed_opens() {
        let seed = include_bytes!("../../../fuzz/seeds/keyprovider_request/unwrap.json");
        let Request::Unwrap {
            packet,
            kid,
            params,
        } = parse_request(seed, DEFAULT_PROVIDER).unwrap()
        else {
            panic!("not an unwrap request");
        };
        assert_eq!(kid, "kbs:///default/image-kek/app");
        assert_eq!(params[0].keypath.as_deref(), Some(Path::new("/dev/null")));
        let mut keys = Keys::default();
        keys.add_kek(&kid, &[0x42; 32]).unwrap();
        let opts = keys.open_packet(&packet).unwrap();
        assert!(opts.starts_with(br#"{"symkey":"#));
        let wrap = include_bytes!("../../../fuzz/seeds/keyprovider_request/wrap_arrays.json");
        assert!(matches!(
            parse_request(wrap, DEFAULT_PROVIDER).unwrap(),
            Request::Wrap { .. }
        ));
    }
}
