//! Reading and checking a WebAssembly module before anything of it runs.
//!
//! Every refusal is one line naming the file and the reason, and maps to the errno the
//! PAL API lists for it (`-ENOENT` unreadable, `-ENOEXEC` not a runnable module,
//! `-EFBIG` over the size limit).

use nix::errno::Errno;
use sim_tee::wasm::{kind, Kind};
use wasmtime::{Engine, ExternType, InstancePre, Linker};

/// The largest module file the PAL reads, in bytes (256 MiB). A module is read into
/// memory whole (it is compiled from memory), so a bound keeps a huge file from
/// exhausting the runelet.
pub const MAX_MODULE_BYTES: u64 = 256 << 20;

/// A refusal: the errno returned to rune and the one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub errno: Errno,
    pub message: String,
}

impl Refusal {
    pub fn new(errno: Errno, message: impl Into<String>) -> Refusal {
        Refusal {
            errno,
            message: message.into(),
        }
    }
}

/// Reads the module file at `path` (a path in the container), bounded by
/// [`MAX_MODULE_BYTES`].
pub fn read(path: &str) -> Result<Vec<u8>, Refusal> {
    use std::io::Read;
    let why = |e: std::io::Error| {
        let errno = match e.kind() {
            std::io::ErrorKind::NotFound => Errno::ENOENT,
            std::io::ErrorKind::PermissionDenied => Errno::EACCES,
            _ => Errno::EIO,
        };
        Refusal::new(errno, format!("{path}: {e}"))
    };
    let file = std::fs::File::open(path).map_err(why)?;
    let meta = file.metadata().map_err(why)?;
    if !meta.is_file() {
        return Err(Refusal::new(
            Errno::ENOEXEC,
            format!("{path}: not a regular file"),
        ));
    }
    let too_big = || {
        Refusal::new(
            Errno::EFBIG,
            format!("{path}: the module is over the size limit of {MAX_MODULE_BYTES} bytes"),
        )
    };
    if meta.len() > MAX_MODULE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte past the limit tells a file that grew while being read.
    file.take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(why)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// One line from a wasmtime error: its causes joined with `: `, newlines removed.
pub fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where compiled code may be kept: the host's cache (a module that came from the
/// host's image; with the module's SHA-384, already taken for its measurement, which
/// names its cache entry), or nowhere (a module the host never saw: its compiled code,
/// which carries its data segments, must not reach a host directory either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiled {
    Cached(sim_tee::Digest),
    InMemoryOnly,
}

/// Compiles `bytes` (the module `path`) and links it against WASI preview 1: the module
/// must be a core module, valid, export `_start: [] -> []` (a WASI command, WASI
/// `application-abi.md`), and import nothing `linker` lacks.
pub fn prepare<T: 'static>(
    engine: &Engine,
    linker: &Linker<T>,
    path: &str,
    bytes: &[u8],
    compiled: Compiled,
) -> Result<InstancePre<T>, Refusal> {
    let refuse = |m: String| Refusal::new(Errno::ENOEXEC, format!("{path}: {m}"));
    match kind(bytes) {
        Kind::CoreModule => {}
        Kind::Component => {
            return Err(refuse(
                "a WebAssembly component (component model): not supported, only WASI preview 1 core modules".into(),
            ))
        }
        Kind::UnknownVersion => {
            return Err(refuse(format!(
                "unsupported WebAssembly binary version {:02x?}",
                &bytes[4..8]
            )))
        }
        // A precompiled module is native code: never loaded from an image.
        Kind::Elf => {
            return Err(refuse(
                "an ELF file, not a WebAssembly module (precompiled modules are never loaded)"
                    .into(),
            ))
        }
        Kind::Other => return Err(refuse("not a WebAssembly module".into())),
    }
    let started = std::time::Instant::now();
    let (module, source) = match compiled {
        Compiled::Cached(sha384) => crate::cache::module(engine, bytes, &sha384),
        Compiled::InMemoryOnly => {
            wasmtime::Module::new(engine, bytes).map(|m| (m, crate::cache::Source::NoCache))
        }
    }
    .map_err(|e| refuse(format!("invalid module: {}", one_line(&e))))?;
    crate::say_at(
        crate::log::Level::Debug,
        &format!(
            "{path}: {} bytes {} in {:.1} ms",
            bytes.len(),
            source.describe(),
            started.elapsed().as_secs_f64() * 1e3
        ),
    );
    match module.get_export("_start") {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
        Some(_) => {
            return Err(refuse(
                "its `_start` export is not a function taking and returning nothing".into(),
            ))
        }
        None => {
            return Err(refuse(
                "no `_start` export: not a WASI command module".into(),
            ))
        }
    }
    linker.instantiate_pre(&module).map_err(|e| {
        refuse(format!(
            "{} (WASI preview 1 provides only wasi_snapshot_preview1)",
            one_line(&e)
        ))
    })
}
