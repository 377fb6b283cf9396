//! The application's attestation interface, usable from plain WASI.
//!
//! **Files** (`/dev/attestation`, a read-only preopen of its own, made for each process
//! by `pal_create_process` before the guest starts; Gramine's directory and, where the
//! meaning matches, its file names):
//!
//! | file | bytes | content |
//! |---|---|---|
//! | `attestation_type` | 3 | `sim` (Gramine: `none`, `dcap`): the evidence below is `liberpal-sim`'s, which proves nothing about hardware |
//! | `module_sha256` | 32 | SHA-256 of the module file the process runs, as compiled |
//! | `key.der` | ~138 | an ephemeral P-256 key pair made for this process: PKCS#8 DER (RFC 5208) |
//! | `public_key.der` | 91 | its public key: SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7) |
//! | `report_data` | 64 | `SHA-256(module_sha256 ‖ SHA-256(public_key.der))` then 32 zero bytes |
//! | `evidence` | 544 | a [`sim_tee::Report`] with the enclave's measurement and `report_data`, signed by the platform key: what `rune attest --report-file` writes, verified by `shelter verify --evidence F --report-data HEX` |
//!
//! The binding follows the reference design (WAMR lib-rats binds evidence to the module's
//! hash, Enarx to the key's hash): a verifier that checks the evidence, recomputes
//! `report_data` from the module it expects and the public key the app presents (in a
//! TLS certificate, a KBS `tee-pubkey`) knows the key belongs to that module in that
//! enclave. Unlike Gramine's, `user_report_data` and `target_info` are not writable:
//! wasmtime's WASI has no virtual files, so the files are real ones on the container's
//! `/dev` (a tmpfs the guest never sees otherwise; `/dev` is not preopened), removed when
//! the process's store is dropped. A container user other than root gets none (the
//! directory is made by that user, in a `/dev` only root may write).
//!
//! **Fresh evidence** (a nonce from a verifier): one host import shaped like WAMR's
//! lib-rats call, in module `env`:
//!
//! ```c
//! // evidence_json receives a pointer (into the guest's memory, from its exported
//! // `malloc`) to a NUL-terminated JSON object:
//! //   {"type":"sim","report_base64":"<evidence, base64>","report_len":544}
//! // whose report data is SHA-256(module_sha256 || buffer[0..buffer_size]) then 32 zero
//! // bytes. Returns 0, or a negative errno: -ENOSYS (the module exports no `malloc`),
//! // -EFAULT (a pointer outside the guest's memory), -EAGAIN (no evidence: the
//! // platform key is missing), -ENOMEM (`malloc` returned 0).
//! int librats_collect(char **evidence_json, const char *buffer, uint32_t buffer_size);
//! // Frees what librats_collect allocated (the module's exported `free`, if any).
//! void librats_dispose_evidence_json(char *evidence_json);
//! ```
//!
//! A C program built with wasi-libc exports its allocator with
//! `-Wl,--export=malloc -Wl,--export=free`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use nix::errno::Errno;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use sha2::{Digest as _, Sha256};
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::guest::Host;
use crate::module::{one_line, Refusal};

/// The guest's path of the attestation directory.
pub const GUEST_DIR: &str = "/dev/attestation";

/// Where the per-process directories are made, in the container's `/dev`.
const HOST_PARENT: &str = "/dev/.liberpal-wasm-attestation";

/// The attestation type written to `attestation_type`.
pub const ATTESTATION_TYPE: &str = "sim";

/// The 64 bytes of report data binding `module_sha256` and the public key (DER).
pub fn key_report_data(module_sha256: &[u8; 32], public_key_der: &[u8]) -> [u8; 64] {
    nonce_report_data(module_sha256, &Sha256::digest(public_key_der))
}

/// The 64 bytes of report data `librats_collect` binds: `SHA-256(module_sha256 ‖ user)`
/// then zeros.
pub fn nonce_report_data(module_sha256: &[u8; 32], user: &[u8]) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(module_sha256);
    h.update(user);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&h.finalize());
    out
}

/// A process's attestation directory on the host side; removed on drop. Made (empty,
/// preopened) when the process is made, at `create` for the container's own; its files,
/// the private key among them, are written only as the process starts
/// ([`Files::publish`]), so a container deleted before `start` leaves no key behind.
pub(crate) struct Files {
    dir: PathBuf,
    /// The files still to write: (name, content).
    pending: Vec<(&'static str, Vec<u8>)>,
}

impl Files {
    /// Writes the files (0400) and makes the directory read-only (0500). Once.
    pub(crate) fn publish(&mut self) -> Result<(), Refusal> {
        for (name, bytes) in std::mem::take(&mut self.pending) {
            let path = self.dir.join(name);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            f.write_all(&bytes).map_err(|e| io(&path, e))?;
        }
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o500))
            .map_err(|e| io(&self.dir, e))
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        // Writable again first: removing entries of a 0500 directory needs
        // CAP_DAC_OVERRIDE, which a container's root often lacks.
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn io(what: &Path, e: std::io::Error) -> Refusal {
    Refusal::new(
        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        format!("{GUEST_DIR}: {}: {e}", what.display()),
    )
}

/// Makes the files for process `pid` (of the module whose SHA-256 is `module_sha256`),
/// with `evidence` signing report data, and preopens their directory at [`GUEST_DIR`]
/// read-only; the files are written by [`Files::publish`].
/// `evidence` turns 64 bytes of report data into a signed report.
pub(crate) fn prepare(
    wasi: &mut WasiCtxBuilder,
    pid: i32,
    module_sha256: &[u8; 32],
    evidence: impl FnOnce([u8; 64]) -> Result<Vec<u8>, String>,
) -> Result<Files, Refusal> {
    let (key_der, public_der) = ephemeral_key()?;
    let report_data = key_report_data(module_sha256, &public_der);
    let report = evidence(report_data)
        .map_err(|e| Refusal::new(Errno::EAGAIN, format!("{GUEST_DIR}/evidence: {e}")))?;

    let parent = Path::new(HOST_PARENT);
    match std::fs::DirBuilder::new().mode(0o700).create(parent) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(parent, e)),
    }
    let dir = parent.join(pid.to_string());
    // A directory left by an earlier runelet with the same pid numbering is replaced.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io(&dir, e))?;
    let files = Files {
        dir,
        pending: vec![
            ("attestation_type", ATTESTATION_TYPE.as_bytes().to_vec()),
            ("module_sha256", module_sha256.to_vec()),
            ("key.der", key_der),
            ("public_key.der", public_der),
            ("report_data", report_data.to_vec()),
            ("evidence", report),
        ],
    };
    // The guest sees the directory through this descriptor: files written into it
    // later (`publish`) appear there.
    wasi.preopened_dir(&files.dir, GUEST_DIR, FsPerms::ReadOnly)
        .map_err(|e| {
            Refusal::new(
                Errno::EIO,
                format!("{GUEST_DIR}: preopen: {}", one_line(&e)),
            )
        })?;
    Ok(files)
}

/// A fresh P-256 key pair: (PKCS#8 DER, SubjectPublicKeyInfo DER).
fn ephemeral_key() -> Result<(Vec<u8>, Vec<u8>), Refusal> {
    let fail = |what: &str| Refusal::new(Errno::EIO, format!("{GUEST_DIR}/key.der: {what}"));
    // A uniformly random scalar: rejection-sampled (a value ≥ the group order, or 0,
    // is refused by from_slice and drawn again).
    let secret = loop {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::getrandom(bytes.as_mut_slice()).map_err(|e| fail(&e.to_string()))?;
        if let Ok(k) = p256::SecretKey::from_slice(bytes.as_slice()) {
            break k;
        }
    };
    let key = secret.to_pkcs8_der().map_err(|e| fail(&e.to_string()))?;
    let public = secret
        .public_key()
        .to_public_key_der()
        .map_err(|e| fail(&e.to_string()))?;
    Ok((key.as_bytes().to_vec(), public.as_bytes().to_vec()))
}

/// Adds `env.librats_collect` and `env.librats_dispose_evidence_json` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<(), Refusal> {
    let fail = |e: wasmtime::Error| {
        Refusal::new(Errno::ENOMEM, format!("lib-rats imports: {}", one_line(&e)))
    };
    linker
        .func_wrap(
            "env",
            "librats_collect",
            |mut caller: Caller<'_, Host>, out: u32, buf: u32, len: u32| -> wasmtime::Result<i32> {
                Ok(collect(&mut caller, out, buf, len)?.unwrap_or_else(|e| -(e as i32)))
            },
        )
        .map_err(fail)?;
    linker
        .func_wrap(
            "env",
            "librats_dispose_evidence_json",
            |mut caller: Caller<'_, Host>, ptr: u32| -> wasmtime::Result<()> {
                if let Some(Extern::Func(free)) = caller.get_export("free") {
                    if let Ok(free) = free.typed::<u32, ()>(&caller) {
                        free.call(&mut caller, ptr)?;
                    }
                }
                Ok(())
            },
        )
        .map_err(fail)?;
    Ok(())
}

/// The call's errno, or (outer error) what ended the guest meanwhile: a trap, an exit
/// or a kill inside its `malloc` ends it as it would anywhere else.
fn collect(
    caller: &mut Caller<'_, Host>,
    out: u32,
    buf: u32,
    len: u32,
) -> wasmtime::Result<Result<i32, Errno>> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(Err(Errno::EFAULT));
    };
    let user = {
        let data = memory.data(&*caller);
        let (start, end) = (buf as usize, buf as usize + len as usize);
        match data.get(start..end) {
            Some(b) => b.to_vec(),
            None => return Ok(Err(Errno::EFAULT)),
        }
    };
    let module_sha256 = caller.data().module_sha256;
    let report = match crate::signed_report(nonce_report_data(&module_sha256, &user)) {
        Ok(r) => r,
        Err(e) => {
            crate::say(&format!("librats_collect: {e}"));
            return Ok(Err(Errno::EAGAIN));
        }
    };
    let json = serde_json::json!({
        "type": ATTESTATION_TYPE,
        "report_base64": base64::engine::general_purpose::STANDARD.encode(&report),
        "report_len": report.len(),
    })
    .to_string();
    let mut bytes = json.into_bytes();
    bytes.push(0);
    let malloc = match caller.get_export("malloc") {
        Some(Extern::Func(f)) => match f.typed::<u32, u32>(&*caller) {
            Ok(m) => m,
            Err(_) => return Ok(Err(Errno::ENOSYS)),
        },
        _ => return Ok(Err(Errno::ENOSYS)),
    };
    let at = malloc.call(&mut *caller, bytes.len() as u32)?;
    if at == 0 {
        return Ok(Err(Errno::ENOMEM));
    }
    if memory.write(&mut *caller, at as usize, &bytes).is_err()
        || memory
            .write(&mut *caller, out as usize, &at.to_le_bytes())
            .is_err()
    {
        return Ok(Err(Errno::EFAULT));
    }
    Ok(Ok(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_is_the_sha256_of_module_hash_and_key_hash_then_zeros() {
        let module = [7u8; 32];
        let key = b"a public key";
        let mut h = Sha256::new();
        h.update(module);
        h.update(Sha256::digest(key));
        let want = h.finalize();
        let got = key_report_data(&module, key);
        assert_eq!(&got[..32], want.as_slice());
        assert_eq!(got[32..], [0u8; 32]);
    }

    #[test]
    fn ephemeral_keys_are_p256_pkcs8_and_spki_and_differ() {
        let (k1, p1) = ephemeral_key().unwrap();
        let (_, p2) = ephemeral_key().unwrap();
        assert_ne!(p1, p2);
        // SPKI for id-ecPublicKey on prime256v1 (RFC 5480): 91 bytes, an uncompressed point.
        assert_eq!(p1.len(), 91);
        use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
        let sk = p256::SecretKey::from_pkcs8_der(&k1).unwrap();
        assert_eq!(
            sk.public_key(),
            p256::PublicKey::from_public_key_der(&p1).unwrap()
        );
    }
}
