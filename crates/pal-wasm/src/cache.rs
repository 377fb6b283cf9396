//! The compiled-code cache: a module is compiled by Cranelift once per (module bytes,
//! engine configuration), and later enclaves load the machine code instead.
//!
//! Loading compiled code is `unsafe` in wasmtime (`Module::deserialize`): the artifact
//! is only lightly validated, and a crafted one is arbitrary native code in the
//! runelet. So:
//!
//! - The cache lives on the host, in `<platform dir>/wasm-cache` (root-only, 0700; the
//!   platform dir is `liberpal-sim`'s, `/var/lib/inclavare/sim` or
//!   `$INCLAVARE_SIM_PLATFORM_DIR`). It is opened by `pal_get_version` in the host's
//!   mount namespace and used by descriptor from inside the container; no preopen can
//!   reach it. Whoever can write there is already trusted with the platform key.
//! - An entry is named by SHA-384 over a domain tag, the module's SHA-384 and wasmtime's
//!   [`Engine::precompile_compatibility_hash`] (compiler, flags, tunables, features,
//!   wasmtime version), fed through SHA-384 rather than `DefaultHasher`, whose output
//!   may change between Rust releases.
//! - An entry is a SHA-256 over a domain tag, the entry's own name and the artifact (32
//!   bytes), followed by the artifact, written 0600 through a temporary file, fsync and
//!   rename. SHA-256 because the check runs on every warm start: CPUs with the SHA
//!   extensions (x86-64 SHA-NI, Armv8 SHA2) take it ~3x faster than SHA-384; on x86-64
//!   without them it is somewhat slower. It is read whole into memory, its digest checked, and only then
//!   deserialized (never mapped from the file: the file could change after the check).
//!   The name in the digest makes an entry valid only where it was stored: another
//!   module's or another engine's entry copied over it (a foreign entry) fails the check
//!   like a corrupted or torn one, is removed, and the module is compiled again. A
//!   precompiled module shipped in an image is never loaded at all.
//!
//! When the directory cannot be used (a rootless container, say) modules are simply
//! compiled.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::OnceLock;

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use sha2::{Digest as _, Sha256, Sha384};
use wasmtime::{Engine, Module};

/// The cache directory's name under the platform directory.
pub const CACHE_DIR: &str = "wasm-cache";

/// The domain tag of entry names; a new naming scheme changes it (the entry layout is
/// versioned by [`ENTRY_DOMAIN`]).
const KEY_DOMAIN: &[u8] = b"liberpal-wasm compiled-code cache v1\0";

/// The domain tag of an entry's digest (v2: the entry's name is covered; v3: SHA-256).
const ENTRY_DOMAIN: &[u8] = b"liberpal-wasm compiled-code cache entry v3\0";

/// At most this many entries are kept; past it the cache starts over.
const MAX_ENTRIES: usize = 64;

/// The largest entry read, in bytes: artifacts are a few times their module's size.
const MAX_ENTRY_BYTES: u64 = 4 * crate::module::MAX_MODULE_BYTES;

const DIGEST_LEN: usize = 32;

static DIR: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// Opens (creating, 0700) the cache directory under `platform_dir`. Call once, in the
/// host's mount namespace; a failure leaves the cache off.
pub(crate) fn open(platform_dir: &Path) {
    DIR.get_or_init(|| {
        let dir = platform_dir.join(CACHE_DIR);
        let _ = std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir);
        nix::fcntl::open(
            &dir,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .ok()
        // SAFETY: a fresh descriptor from open(2) that nothing else owns.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .filter(trusted)
    });
}

/// Whether the cache directory is this user's alone (owner, and no write for group or
/// others): compiled code from a directory another user can write to is never loaded.
fn trusted(dir: &OwnedFd) -> bool {
    nix::sys::stat::fstat(dir.as_raw_fd())
        .is_ok_and(|st| st.st_uid == nix::unistd::geteuid().as_raw() && st.st_mode & 0o022 == 0)
}

/// A `Hasher` that feeds everything it is given into SHA-384.
struct Sha384Hasher(Sha384);

impl Hasher for Sha384Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Unused: the digest is taken from the inner SHA-384.
    fn finish(&self) -> u64 {
        0
    }
}

/// The entry name of the module whose SHA-384 is `module_sha384`, compiled by `engine`.
fn key(engine: &Engine, module_sha384: &sim_tee::Digest) -> String {
    let mut h = Sha384Hasher(Sha384::new());
    h.0.update(KEY_DOMAIN);
    h.0.update(module_sha384);
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(h.0.finalize())
}

/// `wasm` (whose SHA-384 is `sha384`: the caller's, taken once) compiled by `engine`,
/// from the cache when an intact entry exists; otherwise compiled and stored.
pub(crate) fn module(
    engine: &Engine,
    wasm: &[u8],
    sha384: &sim_tee::Digest,
) -> wasmtime::Result<(Module, Source)> {
    let Some(dir) = DIR.get().and_then(|d| d.as_ref()) else {
        return Ok((Module::from_binary(engine, wasm)?, Source::NoCache));
    };
    module_in(dir, engine, wasm, sha384)
}

/// Where a module's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An intact cache entry.
    Cached,
    /// Compiled now, and stored.
    Compiled,
    /// Compiled now; no cache directory.
    NoCache,
}

impl Source {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Source::Cached => "loaded from the compiled-code cache",
            Source::Compiled => "compiled and cached",
            Source::NoCache => "compiled (no compiled-code cache)",
        }
    }
}

fn module_in(
    dir: &OwnedFd,
    engine: &Engine,
    wasm: &[u8],
    sha384: &sim_tee::Digest,
) -> wasmtime::Result<(Module, Source)> {
    debug_assert_eq!(
        &Sha384::digest(wasm)[..],
        &sha384[..],
        "the module's own digest"
    );
    let name = key(engine, sha384);
    if let Some(m) = load(dir, &name, engine) {
        return Ok((m, Source::Cached));
    }
    let module = Module::from_binary(engine, wasm)?;
    if let Ok(artifact) = module.serialize() {
        store(dir, &name, &artifact);
    }
    Ok((module, Source::Compiled))
}

/// The digest stored before `artifact` in the entry `name`: bound to the name, so an
/// entry is intact only under the name it was written to.
fn seal(name: &str, artifact: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(ENTRY_DOMAIN);
    h.update((name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(artifact);
    h.finalize().into()
}

fn load(dir: &OwnedFd, name: &str, engine: &Engine) -> Option<Module> {
    let fd = openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: a fresh descriptor from openat(2) that nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut bytes = Vec::new();
    let read = file.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut bytes);
    let intact = read.is_ok()
        && bytes.len() as u64 <= MAX_ENTRY_BYTES
        && bytes.len() > DIGEST_LEN
        && seal(name, &bytes[DIGEST_LEN..]) == bytes[..DIGEST_LEN];
    if !intact {
        remove(dir, name);
        return None;
    }
    // SAFETY: the artifact is byte for byte what `Module::serialize` wrote into this
    // root-only directory under this name (its SHA-256 over the name, stored with it,
    // matches), and it is deserialized
    // from memory, so it cannot change after the check. The name covers the engine's
    // compatibility hash; wasmtime still refuses a mismatched one, handled below.
    match unsafe { Module::deserialize(engine, &bytes[DIGEST_LEN..]) } {
        Ok(m) => Some(m),
        Err(_) => {
            remove(dir, name);
            None
        }
    }
}

fn remove(dir: &OwnedFd, name: &str) {
    let _ = nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
}

/// Writes an entry through a temporary file, fsync and rename: readers see whole
/// entries or none.
fn store(dir: &OwnedFd, name: &str, artifact: &[u8]) {
    prune(dir);
    // Not the pid: it is 1 in every container, and a temporary file a killed runelet
    // left would block the entry for good (O_EXCL).
    let mut nonce = [0u8; 8];
    let _ = getrandom::getrandom(&mut nonce);
    let tmp = format!(".{name}.{}", hex::encode(nonce));
    let Ok(fd) = openat(
        Some(dir.as_raw_fd()),
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) else {
        return;
    };
    // SAFETY: a fresh descriptor from openat(2) that nothing else owns.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let ok = f.write_all(&seal(name, artifact)).is_ok()
        && f.write_all(artifact).is_ok()
        && f.sync_all().is_ok()
        && renameat(
            Some(dir.as_raw_fd()),
            tmp.as_str(),
            Some(dir.as_raw_fd()),
            name,
        )
        .is_ok();
    if !ok {
        remove(dir, &tmp);
    }
}

/// Keeps the cache bounded: at [`MAX_ENTRIES`] it starts over (a miss costs one
/// compilation).
fn prune(dir: &OwnedFd) {
    let Ok(mut listing) = nix::dir::Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let names: Vec<String> = listing
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    if names.len() < MAX_ENTRIES {
        return;
    }
    for n in names {
        remove(dir, &n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).unwrap()
    }

    fn compile(dir: &OwnedFd, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Module, Source)> {
        module_in(dir, engine, wasm, &sim_tee::sha384(wasm))
    }

    /// `(module (func (export "_start")))`, as wat2wasm writes it.
    const MODULE: &[u8] = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0\x0a\x04\x01\x02\0\x0b";

    #[test]
    fn entries_are_reused_and_corrupted_ones_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir: OwnedFd = File::open(tmp.path()).unwrap().into();
        let engine = engine();
        assert_eq!(compile(&dir, &engine, MODULE).unwrap().1, Source::Compiled);
        assert_eq!(compile(&dir, &engine, MODULE).unwrap().1, Source::Cached);
        let name = key(&engine, &sim_tee::sha384(MODULE));
        let path = tmp.path().join(&name);
        let stored = std::fs::read(&path).unwrap();
        assert!(load(&dir, &name, &engine).is_some());

        // One flipped byte of the artifact: detected, removed, never deserialized.
        let mut bad = stored.clone();
        let mid = DIGEST_LEN + (bad.len() - DIGEST_LEN) / 2;
        bad[mid] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(load(&dir, &name, &engine).is_none());
        assert!(!path.exists());
        assert_eq!(compile(&dir, &engine, MODULE).unwrap().1, Source::Compiled);
        assert_eq!(std::fs::read(&path).unwrap(), stored);

        // Another configuration is another entry.
        let other = Engine::default();
        assert_ne!(key(&other, &sim_tee::sha384(MODULE)), name);

        // A foreign entry: another module's, intact, copied over this one's. Refused
        // and removed; this module is compiled again (its own entry comes back).
        // `(module (func (export "_start")) (func))`
        const OTHER: &[u8] = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x03\x02\0\0\x07\x0a\x01\x06_start\0\0\x0a\x07\x02\x02\0\x0b\x02\0\x0b";
        compile(&dir, &engine, OTHER).unwrap();
        let other_name = key(&engine, &sim_tee::sha384(OTHER));
        let foreign = std::fs::read(tmp.path().join(&other_name)).unwrap();
        assert!(load(&dir, &other_name, &engine).is_some());
        std::fs::write(&path, &foreign).unwrap();
        assert!(load(&dir, &name, &engine).is_none());
        assert!(!path.exists());
        compile(&dir, &engine, MODULE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), stored);
    }

    #[test]
    fn entries_of_the_previous_layout_are_recompiled() {
        let tmp = tempfile::tempdir().unwrap();
        let dir: OwnedFd = File::open(tmp.path()).unwrap().into();
        let engine = engine();
        compile(&dir, &engine, MODULE).unwrap();
        let name = key(&engine, &sim_tee::sha384(MODULE));
        let path = tmp.path().join(&name);
        let stored = std::fs::read(&path).unwrap();
        let artifact = &stored[DIGEST_LEN..];
        // The v2 layout, as the previous release wrote it: SHA-384 over its tag, the
        // name's length and the name, and the artifact; then the artifact.
        let mut h = Sha384::new();
        h.update(b"liberpal-wasm compiled-code cache entry v2\0");
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(artifact);
        let mut v2 = h.finalize().to_vec();
        v2.extend_from_slice(artifact);
        std::fs::write(&path, &v2).unwrap();
        assert!(load(&dir, &name, &engine).is_none());
        assert!(!path.exists());
        std::fs::write(&path, &v2).unwrap();
        assert_eq!(compile(&dir, &engine, MODULE).unwrap().1, Source::Compiled);
        assert_eq!(std::fs::read(&path).unwrap(), stored);
    }
}
