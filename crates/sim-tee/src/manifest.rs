//! Measurement and the signed enclave manifest.

use std::io::Read;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::{sha384, Digest, SimError};

/// The `format` value of a manifest.
pub const MANIFEST_FORMAT: &str = "inclavare-sim-manifest/1";

/// The measurement algorithm's name and version: the domain tag `mr_enclave` starts
/// with (without its NUL). Reference values record it, so a changed algorithm is seen.
pub const MEASUREMENT_VERSION: &str = "inclavare-sim mr_enclave v1";

const MEASURE_DOMAIN: &[u8] = b"inclavare-sim mr_enclave v1\0";

/// Where the PAL looks for the signed manifest in the container without `manifest=PATH`.
pub const DEFAULT_MANIFEST: &str = "/enclave.manifest.json";

/// The runtime args the PAL reads (`ENCLAVE_RUNTIME_ARGS`, which rune hands over with
/// its commas turned into spaces): `debug`, `manifest=PATH`. Others are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeArgs {
    /// `debug`: an enclave without a manifest may run (its reports say debug).
    pub debug: bool,
    /// `manifest=PATH`: the manifest's path in the container (it must then exist).
    pub manifest: Option<String>,
}

impl RuntimeArgs {
    /// Parses space- (or comma-) separated runtime args.
    pub fn parse(args: &str) -> RuntimeArgs {
        let words = || args.split(|c: char| c.is_whitespace() || c == ',');
        RuntimeArgs {
            debug: words().any(|a| a == "debug"),
            manifest: words().find_map(|a| a.strip_prefix("manifest=").map(str::to_string)),
        }
    }

    /// The manifest path the PAL reads.
    pub fn manifest_path(&self) -> &str {
        self.manifest.as_deref().unwrap_or(DEFAULT_MANIFEST)
    }
}

/// The part of the enclave configuration that is measured with the program: which
/// program is the enclave, and the arguments it is allowed to run with (empty: any).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveSpec {
    /// The program's path inside the container, as `process.args[0]` names it.
    pub entrypoint: String,
    /// Fixed arguments after argv[0]; when not empty the enclave refuses any others.
    #[serde(default)]
    pub args: Vec<String>,
}

impl EnclaveSpec {
    /// The spec of an enclave without a manifest (a debug enclave): the program
    /// `process.args[0]` names, any arguments.
    pub fn unsigned(program: &str) -> EnclaveSpec {
        EnclaveSpec {
            entrypoint: program.to_string(),
            args: vec![],
        }
    }
}

/// `mr_enclave` of a program held in memory: [`measure_program`] of its
/// [`program_digest`].
pub fn measure(executable: &[u8], spec: &EnclaveSpec) -> Digest {
    measure_program(&sha384(executable), spec)
}

/// `mr_enclave`: SHA-384 over a domain tag, the program's SHA-384 and the
/// length-prefixed (u64, little-endian) canonical JSON of its [`EnclaveSpec`].
///
/// The program enters as its own digest so that a runtime can keep digests of programs
/// it has already read (as the kernel's IMA does) instead of hashing them again.
pub fn measure_program(program: &Digest, spec: &EnclaveSpec) -> Digest {
    let config = serde_json::to_vec(spec).expect("EnclaveSpec serialises");
    let mut h = sha2::Sha384::new();
    h.update(MEASURE_DOMAIN);
    h.update(program);
    h.update((config.len() as u64).to_le_bytes());
    h.update(&config);
    h.finalize().into()
}

/// SHA-384 of a program's bytes, read through a small buffer: the program is never
/// held in memory whole, which also keeps the copy from the page cache cheap.
pub fn program_digest(mut program: impl Read) -> std::io::Result<Digest> {
    let mut h = sha2::Sha384::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        match program.read(&mut buf) {
            Ok(0) => return Ok(h.finalize().into()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// An enclave signing key (Ed25519). Stored as the 32-byte seed in hex, mode 0600.
pub struct SignerKey(SigningKey);

impl SignerKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SimError> {
        Ok(SignerKey(SigningKey::from_bytes(&crate::random_seed()?)))
    }

    /// Reads a key written by [`SignerKey::save`].
    pub fn load(path: &Path) -> Result<Self, SimError> {
        Ok(SignerKey(SigningKey::from_bytes(&crate::read_seed(path)?)))
    }

    /// Writes the key, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), SimError> {
        crate::platform::write_private(path, hex::encode(self.0.to_bytes()).as_bytes())
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// The signed manifest of an enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// Hex of the measurement this manifest releases.
    pub mr_enclave: String,
    pub product_id: u16,
    pub svn: u16,
    /// A debug enclave: its reports say so, and default policies refuse it.
    pub debug: bool,
    pub spec: EnclaveSpec,
    /// Hex of the signer's Ed25519 public key.
    pub signer: String,
    /// Hex of the Ed25519 signature over [`Manifest::signed_bytes`].
    pub signature: String,
}

impl Manifest {
    /// Signs `executable` as the enclave described by `spec`.
    pub fn sign(
        executable: &[u8],
        spec: EnclaveSpec,
        key: &SignerKey,
        product_id: u16,
        svn: u16,
        debug: bool,
    ) -> Manifest {
        Manifest::sign_program(&sha384(executable), spec, key, product_id, svn, debug)
    }

    /// [`Manifest::sign`] for a program given by its [`program_digest`], so a large
    /// program is never read into memory whole.
    pub fn sign_program(
        program: &Digest,
        spec: EnclaveSpec,
        key: &SignerKey,
        product_id: u16,
        svn: u16,
        debug: bool,
    ) -> Manifest {
        let mut m = Manifest::unsigned(program, spec, &key.public(), product_id, svn, debug);
        m.signature = hex::encode(key.sign(&m.signed_bytes()));
        m
    }

    /// A manifest to be signed elsewhere (a signature server holds the key): sign its
    /// [`Manifest::signed_bytes`] with the key whose public half is `signer`, then
    /// complete it with [`Manifest::with_signature`].
    pub fn unsigned(
        program: &Digest,
        spec: EnclaveSpec,
        signer: &[u8; 32],
        product_id: u16,
        svn: u16,
        debug: bool,
    ) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.to_string(),
            mr_enclave: hex::encode(measure_program(program, &spec)),
            product_id,
            svn,
            debug,
            spec,
            signer: hex::encode(signer),
            signature: String::new(),
        }
    }

    /// Completes an [`Manifest::unsigned`] manifest with a signature made elsewhere,
    /// which must verify against its signer: a wrong key or a corrupted signature is
    /// refused here rather than by the enclave at start.
    pub fn with_signature(mut self, signature: &[u8; 64]) -> Result<Manifest, SimError> {
        self.signer_key()?
            .verify(&self.signed_bytes(), &Signature::from_bytes(signature))
            .map_err(|_| SimError::ManifestSignature)?;
        self.signature = hex::encode(signature);
        Ok(self)
    }

    /// The bytes the signature covers: the canonical JSON of every field but the
    /// signature, in declaration order.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut body = self.clone();
        body.signature = String::new();
        serde_json::to_vec(&body).expect("Manifest serialises")
    }

    /// Parses a manifest file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, SimError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| SimError::Manifest(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(SimError::Manifest(format!("unknown format {:?}", m.format)));
        }
        Ok(m)
    }

    /// `mr_signer`: SHA-384 of the signer's public key.
    pub fn mr_signer(&self) -> Result<Digest, SimError> {
        Ok(sha384(&self.signer_key()?.to_bytes()))
    }

    fn signer_key(&self) -> Result<VerifyingKey, SimError> {
        let bytes: [u8; 32] = hex::decode(&self.signer)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SimError::Manifest("signer is not a 32-byte hex key".into()))?;
        VerifyingKey::from_bytes(&bytes).map_err(|e| SimError::Manifest(format!("signer: {e}")))
    }

    /// Checks the signature, then that `executable` is the program that was signed.
    /// Returns `mr_enclave`.
    pub fn verify(&self, executable: &[u8]) -> Result<Digest, SimError> {
        self.verify_program(&sha384(executable))
    }

    /// [`Manifest::verify`] for a program given by its [`program_digest`].
    pub fn verify_program(&self, program: &Digest) -> Result<Digest, SimError> {
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SimError::Manifest("signature is not 64 hex bytes".into()))?;
        self.signer_key()?
            .verify(&self.signed_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| SimError::ManifestSignature)?;
        let actual = measure_program(program, &self.spec);
        if hex::encode(actual) != self.mr_enclave {
            return Err(SimError::MeasurementMismatch {
                actual: hex::encode(actual),
                signed: self.mr_enclave.clone(),
            });
        }
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> EnclaveSpec {
        EnclaveSpec {
            entrypoint: "/bin/app".into(),
            args: vec![],
        }
    }

    #[test]
    fn runtime_args_are_read_as_the_pal_reads_them() {
        let a = RuntimeArgs::parse("debug manifest=/m.json other");
        assert!(a.debug);
        assert_eq!(a.manifest_path(), "/m.json");
        // rune hands commas over as spaces; commas given directly read the same.
        assert_eq!(RuntimeArgs::parse("debug,manifest=/m.json"), a);
        let none = RuntimeArgs::parse("");
        assert!(!none.debug && none.manifest.is_none());
        assert_eq!(none.manifest_path(), DEFAULT_MANIFEST);
        assert!(!RuntimeArgs::parse("nodebug").debug);
    }

    #[test]
    fn measurement_covers_program_and_spec() {
        let a = measure(b"program", &spec());
        assert_ne!(a, measure(b"programX", &spec()));
        let mut other = spec();
        other.args = vec!["--x".into()];
        assert_ne!(a, measure(b"program", &other));
        assert_eq!(a, measure(b"program", &spec()));
    }

    #[test]
    fn streamed_digest_equals_whole_digest() {
        // Longer than the read buffer, and not a multiple of it.
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(program_digest(&data[..]).unwrap(), sha384(&data));
        assert_eq!(
            measure_program(&program_digest(&data[..]).unwrap(), &spec()),
            measure(&data, &spec())
        );
    }

    #[test]
    fn signed_manifest_verifies_and_detects_changes() {
        let key = SignerKey::generate().unwrap();
        let m = Manifest::sign(b"program", spec(), &key, 7, 2, false);
        assert_eq!(m.verify(b"program").unwrap(), measure(b"program", &spec()));
        assert_eq!(m.mr_signer().unwrap(), sha384(&key.public()));

        let err = m.verify(b"changed after signing").unwrap_err();
        assert!(matches!(err, SimError::MeasurementMismatch { .. }), "{err}");

        let mut forged = m.clone();
        forged.svn = 3;
        assert!(matches!(
            forged.verify(b"program").unwrap_err(),
            SimError::ManifestSignature
        ));

        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::parse(&json).unwrap(), m);
        assert!(Manifest::parse(b"{}").is_err());
    }

    #[test]
    fn a_manifest_signed_elsewhere_equals_one_signed_here_and_wrong_signatures_are_refused() {
        let key = SignerKey::generate().unwrap();
        let digest = sha384(b"program");
        let local = Manifest::sign_program(&digest, spec(), &key, 1, 2, false);
        let unsigned = Manifest::unsigned(&digest, spec(), &key.public(), 1, 2, false);
        let sig = key.sign(&unsigned.signed_bytes());
        let remote = unsigned.clone().with_signature(&sig).unwrap();
        assert_eq!(remote, local, "Ed25519 is deterministic");
        remote.verify(b"program").unwrap();

        let other = SignerKey::generate().unwrap();
        let wrong = other.sign(&unsigned.signed_bytes());
        assert!(matches!(
            unsigned.with_signature(&wrong).unwrap_err(),
            SimError::ManifestSignature
        ));
    }

    #[test]
    fn keys_round_trip_with_private_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signer.key");
        let key = SignerKey::generate().unwrap();
        key.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(SignerKey::load(&path).unwrap().public(), key.public());
    }
}
