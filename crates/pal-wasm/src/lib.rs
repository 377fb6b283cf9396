//! `liberpal-wasm.so`: a WebAssembly enclave runtime, PAL API v3, on wasmtime.
//!
//! The container's program is a WASI preview 1 *command* module (a `.wasm` file in the
//! image, exporting `_start`). rune loads this PAL in place of executing the program;
//! the module runs inside the runelet under wasmtime (Cranelift), confined by the wasm
//! sandbox: no system calls beyond what WASI grants, memory apart from the runtime's.
//!
//! - **`pal_init`** builds the engine and the WASI preview 1 linker. With a signed
//!   manifest (runtime arg `manifest=PATH`, default `/enclave.manifest.json`, the
//!   format of [`sim_tee::Manifest`], made by `sim-sign`) it reads the module the
//!   manifest names, checks its measurement and compiles it, so a tampered or unusable
//!   module fails `rune create` with one line. Without a manifest the enclave runs only
//!   with the runtime arg `debug`, and the module is checked at `pal_create_process`.
//! - **Measurement**: `mr_enclave` = [`sim_tee::measure_program`] over the SHA-384 of
//!   the module's bytes and its [`sim_tee::EnclaveSpec`] (entrypoint path, fixed args):
//!   the same function as `liberpal-sim`'s, so `sim-sign` and reference values work
//!   unchanged. It is printed as `mr_enclave=… debug=…` at `pal_init` (signed) or at
//!   the first process (debug).
//! - **`pal_create_process`** compiles (or reuses the signed module) and links it
//!   against WASI (imports resolved and type-checked), with argv as given (argv\[0\]
//!   included), the environment as `K=V` pairs (without `ENCLAVE_*`), stdio from
//!   duplicates of the three descriptors it is given, and the container's top-level
//!   directories preopened one by one, read-write, except `/proc`, `/sys` and `/dev`
//!   (a preopened `/proc/self/mem` would be a way out of the sandbox). Files directly
//!   in `/` cannot be created. A WASI preview 1 guest has no working directory of its
//!   own: wasi-libc starts at `/`.
//! - **`pal_exec`** instantiates the module and runs `_start` on a thread of its own
//!   (instantiation runs the module's `start` function, guest code that must be
//!   killable like the rest) and writes the exit value: 0 when `_start` returns; `n`
//!   for `proc_exit(n)` (0..=125); 1 for a `proc_exit` outside WASI's range (the
//!   message on the process's stderr); 134 (128 + SIGABRT, as the wasmtime CLI) for a
//!   trap, with `liberpal-wasm: <module>: wasm trap: <why>` on the process's stderr;
//!   `128 + sig` when ended by `pal_kill`.
//! - **`pal_kill`** ends a process by epoch interruption: it marks the process killed
//!   and advances the engine's epoch, and the guest traps at its next loop back-edge
//!   or function entry (well under a millisecond). A guest blocked in a host call
//!   (`poll_oneoff` sleep, a read of stdin) is not interrupted by that: `pal_exec`
//!   reports `128 + sig` anyway after [`KILL_GRACE`], and the blocked thread ends with
//!   the runelet. Signals whose default action is to ignore or stop (SIGCHLD, SIGCONT,
//!   SIGURG, SIGWINCH, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) are accepted and do nothing.
//! - **Memory**: the guest's linear memories and tables together may not grow past the
//!   container's memory limit (its cgroup's, which rune sets from
//!   `linux.resources.memory.limit`), and each growth must fit beside what the
//!   container already uses (less file cache) with 8 MiB to spare:
//!   otherwise the guest traps with `memory limit exceeded: …` on its stderr, exit
//!   value 134, instead of driving the runelet into the kernel's OOM killer.
//! - **Deadline**: with the runtime arg `deadline=SECONDS` (a positive number, fractions
//!   allowed) a process still running that long after `pal_exec` began is stopped by
//!   epoch interruption (or, blocked in a host call, reported after [`KILL_GRACE`]):
//!   exit value 134 with `deadline exceeded: …` on its stderr. A malformed value fails
//!   `pal_init` with one line.
//! - **Compiled code** is cached on the host per (module, engine configuration), and
//!   loaded only after its digest is checked (see the `cache` module).
//! - **Runtime measurements and init-data**: the event log and RTMR0..3 of
//!   `liberpal-sim`, the launch of each process recorded at CC MR 1, the module's own
//!   events at CC MR 4 through `env.extend_runtime_measurement`, and the runtime arg
//!   `init_data=` bound into the config id (the `rtmr` module).
//! - **wasm OCI artifacts**: with the runtime arg `module=REF` (an artifact in a
//!   registry named by IP address; `insecure_registry=HOST:PORT` for plain HTTP) the
//!   PAL pulls the module at `pal_init`, inside the enclave, and every process runs it
//!   (argv\[0\] names it); the pull is CoCo's `PullImage` event at CC MR 4 (the
//!   `artifact` module).
//! - **Secrets from a key broker**: the host import `env.kbs_get_resource` attests the
//!   enclave to a KBS the module names and puts a resource in its memory (the `kbs`
//!   module).
//! - **`pal_get_local_report`** gives `liberpal-sim`'s evidence: a [`sim_tee::Report`]
//!   with the module's measurement, bound to the first 64 bytes of the target info and
//!   signed by the host's platform key (`sim`: it proves nothing about hardware).
//!
//! Every entry point catches panics: a panic unwinding out of `extern "C"` would abort
//! the runelet.

mod artifact;
mod attest;
mod cache;
mod deadline;
mod guest;
mod kbs;
mod log;
mod module;
mod process;
mod rtmr;

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use guest::{container_memory_limit, guest_env, preopen, Host};
use nix::errno::Errno;
use pal::ffi::{PalAttrV3, PalCreateProcessArgs};
use sha2::Digest as _;
use sim_tee::{Digest, EnclaveSpec, Manifest, PlatformKey, Report};
use wasmtime::{Config, Engine, InstancePre, Linker, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

pub use attest::{key_report_data, nonce_report_data, ATTESTATION_TYPE, GUEST_DIR};
use deadline::Deadline;
use module::Compiled;
pub use module::{Refusal, MAX_MODULE_BYTES};
pub use process::{pal_exec, pal_kill};

/// The checks a module file passes before it may run (header, wasmtime's validation,
/// `_start`, imports against WASI preview 1), with the engine and linker the PAL uses,
/// for tools and fuzzing. Nothing is run, and nothing cached: the module is compiled in
/// memory only.
pub struct Checker {
    engine: Engine,
    linker: Linker<Host>,
}

impl Checker {
    /// The engine and WASI linker of the PAL.
    pub fn new() -> Result<Checker, Refusal> {
        let engine = engine()?;
        let linker = linker(&engine)?;
        Ok(Checker { engine, linker })
    }

    /// Checks `bytes` as the module file `path`: `Ok` when the PAL would run it.
    pub fn check(&self, path: &str, bytes: &[u8]) -> Result<(), Refusal> {
        module::prepare(
            &self.engine,
            &self.linker,
            path,
            bytes,
            Compiled::InMemoryOnly,
        )
        .map(drop)
    }
}

/// How long `pal_exec` waits for a killed guest to stop before it reports the signal
/// anyway (a guest blocked in a host call does not see the epoch).
pub const KILL_GRACE: Duration = Duration::from_millis(200);

/// The exit value of a trapped guest: 128 + SIGABRT, as `wasmtime run` exits.
pub const TRAP_EXIT: i32 = 134;

/// The exit value of a `proc_exit` outside WASI's 0..=125.
pub const BAD_EXIT: i32 = 1;

static STATE: Mutex<Option<Enclave>> = Mutex::new(None);

/// What every process of the enclave shares, fixed at `pal_init`.
struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    manifest: Option<Manifest>,
    /// The signed module, compiled and linked at `pal_init`, and its file's SHA-256.
    signed: Option<(InstancePre<Host>, [u8; 32])>,
    /// The runtime arg `deadline=`: how long a process may run.
    deadline: Option<Deadline>,
    /// In a debug enclave, the module pulled for the runtime arg `module=` (every process
    /// runs it), compiled and linked at `pal_init`.
    artifact: Option<PulledModule>,
}

/// A pulled module, ready to instantiate, with its digests.
struct PulledModule {
    pre: InstancePre<Host>,
    sha256: [u8; 32],
    sha384: Digest,
}

pub(crate) struct Enclave {
    rt: Arc<Runtime>,
    /// The event log and RTMR0..3, reset at `pal_init` (the `rtmr` module).
    pub(crate) measurements: sim_tee::rtmr::Measurements,
    /// The init-data document (runtime arg `init_data=`) bound into the config id.
    pub(crate) init_data: Option<sim_tee::measurement::initdata::InitData>,
    /// Announced once: at `pal_init` (signed) or at the first process (debug).
    identity: Option<Identity>,
    created: HashMap<i32, Created>,
    running: HashMap<i32, Arc<Shared>>,
    next_pid: i32,
}

#[derive(Clone)]
struct Identity {
    mr_enclave: Digest,
    mr_signer: Digest,
    product_id: u16,
    svn: u16,
    debug: bool,
}

/// A process between `pal_create_process` and `pal_exec`.
struct Created {
    store: Store<Host>,
    pre: InstancePre<Host>,
    shared: Arc<Shared>,
    /// The process's stderr, for the PAL's own messages about it.
    stderr: Option<File>,
    name: String,
}

/// What `pal_kill` and the guest's thread share with `pal_exec`.
#[derive(Default)]
pub(crate) struct Shared {
    /// The signal that killed the process; 0 while alive.
    killed: AtomicI32,
    /// Its deadline passed (the runtime arg `deadline=`).
    expired: AtomicBool,
    pub(crate) state: Mutex<Outcome>,
    changed: Condvar,
}

#[derive(Default)]
pub(crate) struct Outcome {
    /// Why the guest was stopped for its memory, when it was.
    pub(crate) over_limit: Option<String>,
    exit: Option<i32>,
    killed_at: Option<Instant>,
}

/// One error line on the runelet's stderr (shown unless the log level is `off`).
fn say(msg: &str) {
    say_at(log::Level::Error, msg);
}

/// One line of `level` on the runelet's stderr, if the log level shows it. Never
/// `eprintln!`: with stderr a pipe nobody reads it panics.
fn say_at(level: log::Level, msg: &str) {
    use std::io::Write;
    if log::enabled(level) {
        // One write: the container's other writers to this stderr cannot split the line.
        let _ = std::io::stderr().write_all(format!("liberpal-wasm: {msg}\n").as_bytes());
    }
}

/// One error line on a process's stderr when it has one, else on ours.
fn tell(stderr: Option<&File>, msg: &str) {
    tell_at(stderr, log::Level::Error, msg);
}

/// One line of `level` on a process's stderr when it has one, else on ours, if the log
/// level shows it.
fn tell_at(stderr: Option<&File>, level: log::Level, msg: &str) {
    use std::io::Write;
    match stderr {
        Some(mut f) if log::enabled(level) => {
            let _ = f.write_all(format!("liberpal-wasm: {msg}\n").as_bytes());
        }
        Some(_) => {}
        None => say_at(level, msg),
    }
}

fn errno(e: Errno) -> c_int {
    -(e as c_int)
}

/// Runs an entry point's body, turning a panic into `-EFAULT` (a panic must not
/// unwind into rune).
fn guarded(f: impl FnOnce() -> c_int) -> c_int {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            say("internal error (panic)");
            errno(Errno::EFAULT)
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Enclave>> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` on the enclave's state under its lock.
pub(crate) fn with_enclave<T>(f: impl FnOnce(&mut Enclave) -> T) -> Result<T, String> {
    lock()
        .as_mut()
        .map(f)
        .ok_or_else(|| "the enclave is not initialised".to_string())
}

/// The platform key, loaded in the host's mount namespace (see `pal_get_version`).
static PLATFORM: OnceLock<Result<Arc<PlatformKey>, String>> = OnceLock::new();

fn platform() -> Result<Arc<PlatformKey>, String> {
    PLATFORM
        .get_or_init(|| {
            let dir = PlatformKey::dir();
            cache::open(&dir);
            PlatformKey::load_or_create(&dir)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// Returns 3. rune (and every PAL loader) calls it first, in the host's mount namespace
/// before the container's root is entered: the platform key (`liberpal-sim`'s, which
/// signs reports) is loaded and the compiled-code cache opened here.
#[no_mangle]
pub extern "C" fn pal_get_version() -> c_int {
    let _ = std::panic::catch_unwind(|| {
        if let Err(e) = platform() {
            say(&format!("platform key: {e}"));
        }
    });
    3
}

/// # Safety
/// `attr` must point to a `pal_attr_v3` whose strings are NUL-terminated or NULL.
#[no_mangle]
pub unsafe extern "C" fn pal_init(attr: *const c_void) -> c_int {
    if attr.is_null() {
        return errno(Errno::EINVAL);
    }
    // SAFETY: the caller passes a v3 attr (this PAL reports version 3).
    let attr = unsafe { &*(attr as *const PalAttrV3) };
    let args = if attr.attr_v1.args.is_null() {
        String::new()
    } else {
        // SAFETY: non-NULL, NUL-terminated per the PAL API.
        unsafe { CStr::from_ptr(attr.attr_v1.args) }
            .to_string_lossy()
            .into_owned()
    };
    let log_level = if attr.attr_v1.log_level.is_null() {
        None
    } else {
        // SAFETY: non-NULL, NUL-terminated per the PAL API.
        Some(unsafe { CStr::from_ptr(attr.attr_v1.log_level) }.to_string_lossy())
    };
    log::set(log_level.as_deref());
    guarded(|| match init(&args) {
        Ok(()) => 0,
        Err(r) => {
            say_at(log::Level::Refusal, &r.message);
            errno(r.errno)
        }
    })
}

/// The engine: Cranelift with epoch interruption (for `pal_kill`).
fn engine() -> Result<Engine, Refusal> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Data segments are copied in rather than mapped from a memfd: a container's
    // seccomp profile may forbid memfd_create with EPERM, which wasmtime does not
    // fall back from.
    config.memory_init_cow(false);
    // A trap is reported in one line; a backtrace would make it several.
    config.wasm_backtrace_max_frames(None);
    Engine::new(&config).map_err(|e| {
        Refusal::new(
            Errno::ENOMEM,
            format!("wasmtime engine: {}", module::one_line(&e)),
        )
    })
}

/// WASI preview 1 (`wasi_snapshot_preview1`), synchronous, over each store's context.
fn linker(engine: &Engine) -> Result<Linker<Host>, Refusal> {
    let mut linker: Linker<Host> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi).map_err(
        |e| {
            Refusal::new(
                Errno::ENOMEM,
                format!("WASI linker: {}", module::one_line(&e)),
            )
        },
    )?;
    attest::add_to_linker(&mut linker)?;
    kbs::add_to_linker(&mut linker)?;
    rtmr::add_to_linker(&mut linker)?;
    Ok(linker)
}

fn init(args: &str) -> Result<(), Refusal> {
    let runtime_args = sim_tee::RuntimeArgs::parse(args);
    let deadline = Deadline::from_args(args)?;
    let init_data =
        sim_tee::rtmr::init_data_arg(args).map_err(|e| Refusal::new(Errno::EINVAL, e))?;
    if let Some(doc) = &init_data {
        say_at(
            log::Level::Info,
            &format!(
                "init-data {} {}",
                doc.algorithm.name(),
                hex::encode(doc.digest())
            ),
        );
    }
    // Nothing in the container may read this process's memory (the platform key).
    let _ = nix::sys::prctl::set_dumpable(false);
    let engine = engine()?;
    let linker = linker(&engine)?;
    let path = runtime_args.manifest_path();
    let manifest = match std::fs::read(path) {
        Ok(bytes) => Some(
            Manifest::parse(&bytes)
                .map_err(|e| Refusal::new(Errno::EINVAL, format!("{path}: {e}")))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && runtime_args.manifest.is_none() => {
            None
        }
        Err(e) => return Err(Refusal::new(Errno::ENOENT, format!("manifest {path}: {e}"))),
    };
    if manifest.is_none() && !runtime_args.debug {
        return Err(Refusal::new(
            Errno::EACCES,
            format!("no signed manifest at {path}: an unsigned enclave runs only with the runtime arg debug"),
        ));
    }
    // After the check above: an enclave that cannot run pulls nothing.
    let (module_ref, insecure) = artifact::args(args);
    let pulled = match &module_ref {
        Some(r) => {
            let a = artifact::pull(r, &insecure)?;
            say_at(
                log::Level::Info,
                &format!(
                    "module {} ({}, {} bytes, pulled in the enclave)",
                    a.reference,
                    a.manifest_digest,
                    a.bytes.len()
                ),
            );
            Some(a)
        }
        None => None,
    };
    let (identity, signed) = match &manifest {
        Some(m) => {
            let entry = &m.spec.entrypoint;
            let read;
            let bytes = match &pulled {
                Some(a) => &a.bytes,
                None => {
                    read = module::read(entry)?;
                    &read
                }
            };
            let sha384 = sim_tee::sha384(bytes);
            let mr_enclave = m
                .verify_program(&sha384)
                .map_err(|e| Refusal::new(Errno::EACCES, format!("{entry}: {e}")))?;
            let mr_signer = m
                .mr_signer()
                .map_err(|e| Refusal::new(Errno::EACCES, e.to_string()))?;
            let compiled = if pulled.is_some() {
                Compiled::InMemoryOnly
            } else {
                Compiled::Cached(sha384)
            };
            let pre = module::prepare(&engine, &linker, entry, bytes, compiled)?;
            let sha256 = sha2::Sha256::digest(bytes).into();
            let id = Identity {
                mr_enclave,
                mr_signer,
                product_id: m.product_id,
                svn: m.svn,
                debug: m.debug || runtime_args.debug,
            };
            announce(None, &id);
            (Some(id), Some((pre, sha256)))
        }
        None => (None, None),
    };
    // A pulled module is known now: a debug enclave checks it at create too (a signed
    // one was, above).
    let artifact = match (&pulled, &signed) {
        (Some(a), None) => {
            let name = format!("module={}", a.reference);
            Some(PulledModule {
                pre: module::prepare(&engine, &linker, &name, &a.bytes, Compiled::InMemoryOnly)?,
                sha256: sha2::Sha256::digest(&a.bytes).into(),
                sha384: sim_tee::sha384(&a.bytes),
            })
        }
        _ => None,
    };
    let mut measurements = sim_tee::rtmr::Measurements::new();
    if let Some(a) = &pulled {
        // As a confidential image's pull: CoCo's PullImage event at CC MR 4, so a
        // verifier's policy can require this artifact.
        let event =
            sim_tee::measurement::eventlog::Event::pull_image(&a.reference, &a.manifest_digest)
                .map_err(|e| Refusal::new(Errno::EINVAL, format!("module={}: {e}", a.reference)))?;
        measurements
            .extend(sim_tee::measurement::eventlog::RUNTIME_MR_INDEX, &event)
            .map_err(|e| Refusal::new(Errno::ENOSPC, e.to_string()))?;
    }
    *lock() = Some(Enclave {
        rt: Arc::new(Runtime {
            engine,
            linker,
            manifest,
            signed,
            deadline,
            artifact,
        }),
        measurements,
        init_data,
        identity,
        created: HashMap::new(),
        running: HashMap::new(),
        next_pid: 1,
    });
    Ok(())
}

fn announce(stderr: Option<&File>, id: &Identity) {
    tell_at(
        stderr,
        log::Level::Info,
        &format!(
            "mr_enclave={} mr_signer={} product_id={} svn={} debug={}",
            hex::encode(id.mr_enclave),
            hex::encode(id.mr_signer),
            id.product_id,
            id.svn,
            id.debug
        ),
    );
}

/// A duplicate of the caller's descriptor `fd` (close-on-exec), or None for a negative
/// one. The caller keeps its own: `rune exec`'s descriptors arrive over a socket and
/// are closed by the agent after the call.
fn dup(fd: c_int) -> Result<Option<File>, Refusal> {
    if fd < 0 {
        return Ok(None);
    }
    // SAFETY: the caller keeps its stdio descriptors open for the duration of the call;
    // the borrow ends at the clone.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .map(|o| Some(File::from(o)))
        .map_err(|e| Refusal::new(Errno::EBADF, format!("stdio descriptor {fd}: {e}")))
}

/// # Safety
/// `args` must point to a valid `pal_create_process_args` (PAL API v2/v3).
#[no_mangle]
pub unsafe extern "C" fn pal_create_process(args: *mut PalCreateProcessArgs) -> c_int {
    if args.is_null() {
        return errno(Errno::EINVAL);
    }
    // SAFETY: the caller passes valid, NULL-terminated vectors and stdio/pid pointers.
    let (argv, env, stdio, pid_out) = unsafe {
        let a = &*args;
        if a.stdio.is_null() || a.pid.is_null() {
            return errno(Errno::EINVAL);
        }
        let s = &*a.stdio;
        (
            pal::ffi::strings(a.argv),
            pal::ffi::strings(a.env),
            [s.stdin, s.stdout, s.stderr],
            a.pid,
        )
    };
    guarded(|| {
        // Why a process is refused goes where whoever asked reads it: for the enclave's
        // first process (the container's own, which rune makes at `create`) on our
        // stderr, which rune folds into its one error line; for a later one (`rune
        // exec`) on that process's stderr, which the exec's caller reads.
        let first = lock().as_ref().is_some_and(|e| e.next_pid == 1);
        let stderr = if first {
            None
        } else {
            dup(stdio[2]).ok().flatten()
        };
        match create(argv, env, stdio) {
            Ok(pid) => {
                // SAFETY: checked non-NULL above; the caller owns the int.
                unsafe { *pid_out = pid };
                0
            }
            Err(r) => {
                tell_at(stderr.as_ref(), log::Level::Refusal, &r.message);
                errno(r.errno)
            }
        }
    })
}

fn create(argv: Vec<String>, env: Vec<String>, stdio: [c_int; 3]) -> Result<i32, Refusal> {
    let Some(program) = argv.first().cloned() else {
        return Err(Refusal::new(Errno::EINVAL, "an empty argv"));
    };
    let (rt, known) = {
        let guard = lock();
        let Some(enclave) = guard.as_ref() else {
            return Err(Refusal::new(
                Errno::EINVAL,
                "pal_create_process before pal_init",
            ));
        };
        (enclave.rt.clone(), enclave.identity.is_some())
    };
    let [stdin, stdout, stderr] = [dup(stdio[0])?, dup(stdio[1])?, dup(stdio[2])?];
    // A debug enclave's identity: its first module's, as it is made.
    let identify = |module_sha384: &Digest| {
        if known {
            return;
        }
        let id = Identity {
            mr_enclave: sim_tee::measure_program(module_sha384, &EnclaveSpec::unsigned(&program)),
            mr_signer: [0; 48],
            product_id: 0,
            svn: 0,
            debug: true,
        };
        // On our stderr, as the first process's other lines: rune passes it on when
        // the process is made, and folds it into its error line when it is not.
        announce(None, &id);
        if let Some(e) = lock().as_mut() {
            e.identity.get_or_insert(id);
        }
    };
    let (pre, module_sha256) = match (&rt.manifest, &rt.signed, &rt.artifact) {
        (Some(m), Some((pre, sha256)), _) => {
            // The enclave runs only what was measured.
            if program != m.spec.entrypoint
                || (!m.spec.args.is_empty() && argv[1..] != m.spec.args[..])
            {
                return Err(Refusal::new(
                    Errno::EPERM,
                    format!(
                        "{program}: not the module this enclave was signed for ({})",
                        m.spec.entrypoint
                    ),
                ));
            }
            (pre.clone(), *sha256)
        }
        (_, _, Some(pulled)) => {
            identify(&pulled.sha384);
            (pulled.pre.clone(), pulled.sha256)
        }
        _ => {
            let bytes = module::read(&program)?;
            let sha384 = sim_tee::sha384(&bytes);
            let pre = module::prepare(
                &rt.engine,
                &rt.linker,
                &program,
                &bytes,
                Compiled::Cached(sha384),
            )?;
            identify(&sha384);
            (pre, sha2::Sha256::digest(&bytes).into())
        }
    };
    let pid = {
        let mut guard = lock();
        let Some(enclave) = guard.as_mut() else {
            return Err(Refusal::new(Errno::EINVAL, "the enclave was destroyed"));
        };
        enclave.next_pid += 1;
        enclave.next_pid - 1
    };

    let guest_env = guest_env(&env);
    // Before the attestation files: this process's own evidence covers its launch.
    rtmr::record_launch(&argv, &guest_env)?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.args(&argv).envs(&guest_env);
    if let Some(f) = stdin {
        wasi.stdin(wasmtime_wasi::cli::InputFile::new(f));
    }
    if let Some(f) = stdout {
        wasi.stdout(wasmtime_wasi::cli::OutputFile::new(f));
    }
    if let Some(f) = &stderr {
        // The guest writes through one copy; the PAL reports traps through the other.
        let copy = f
            .try_clone()
            .map_err(|e| Refusal::new(Errno::EBADF, format!("stderr: {e}")))?;
        wasi.stderr(wasmtime_wasi::cli::OutputFile::new(copy));
    }
    // First, so its descriptor is 3 (the first preopen) in every process.
    let attestation = match attest::prepare(&mut wasi, pid, &module_sha256, signed_report) {
        Ok(files) => Some(files),
        Err(r) => {
            // The program runs; only the attestation files are missing.
            tell_at(
                stderr.as_ref(),
                log::Level::Warning,
                &format!("{program}: no {}: {}", attest::GUEST_DIR, r.message),
            );
            None
        }
    };
    preopen(&mut wasi);
    let shared = Arc::new(Shared::default());
    let mut store = Store::new(
        &rt.engine,
        Host {
            wasi: wasi.build_p1(),
            shared: shared.clone(),
            memory_limit: container_memory_limit(),
            memory_used: 0,
            module_sha256,
            attestation,
            kbs: None,
            stderr: stderr.as_ref().and_then(|f| f.try_clone().ok()),
        },
    );
    store.limiter(|h| h as &mut dyn wasmtime::ResourceLimiter);
    // The epoch is engine-wide: every store reaches its deadline when any process is
    // killed, and only the one whose flag is set stops.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        let shared = &ctx.data().shared;
        if shared.killed.load(Ordering::SeqCst) != 0 || shared.expired.load(Ordering::SeqCst) {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    let mut guard = lock();
    let Some(enclave) = guard.as_mut() else {
        return Err(Refusal::new(Errno::EINVAL, "the enclave was destroyed"));
    };
    enclave.created.insert(
        pid,
        Created {
            store,
            pre,
            shared,
            stderr,
            name: program,
        },
    );
    Ok(pid)
}

/// This enclave's [`sim_tee::Report`] bound to `report_data`, signed by the platform
/// key: the evidence `liberpal-sim` gives, with the module's measurement.
fn signed_report(report_data: [u8; 64]) -> Result<Vec<u8>, String> {
    let key = platform()?;
    let r = with_enclave(|e| {
        let id = e
            .identity
            .clone()
            .ok_or("the enclave's module is not measured yet")?;
        let r = Report::unsigned(
            id.debug,
            id.mr_enclave,
            id.mr_signer,
            id.product_id,
            id.svn,
            report_data,
        );
        Ok::<_, String>(e.measurements.report(r, e.init_data.as_ref()))
    })??;
    Ok(key.sign_report(r).to_bytes())
}

/// A report bound to the first 64 bytes of `target_info` (the report data, as
/// `liberpal-sim` takes it).
///
/// # Safety
/// `target_info` must be readable for `target_info_len` bytes, `report` writable for
/// `*report_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn pal_get_local_report(
    target_info: *mut c_void,
    target_info_len: c_int,
    report: *mut c_void,
    report_len: *mut c_int,
) -> c_int {
    guarded(|| {
        // SAFETY: the caller's pointers and lengths, as the PAL API gives them.
        unsafe {
            pal::ffi::local_report_from_target_info(
                target_info,
                target_info_len,
                report,
                report_len,
                |data| signed_report(data).map_err(|e| say(&e)).ok(),
            )
        }
    })
}

/// Ends every process (as SIGKILL) and frees the enclave. Guest threads still blocked
/// in a host call keep their store until they return or the runelet exits.
#[no_mangle]
pub extern "C" fn pal_destroy() -> c_int {
    guarded(|| {
        let _ = pal_kill(-1, libc::SIGKILL);
        *lock() = None;
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_accepts_a_command_and_refuses_bad_modules_in_one_line() {
        let checker = Checker::new().unwrap();
        // (module (func (export "_start"))), as wat2wasm writes it.
        let ok = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0\x0a\x04\x01\x02\0\x0b";
        checker.check("/ok.wasm", ok).unwrap();
        // (module (import "env" "foo" (func)) (func (export "_start")))
        let import = b"\x00\x61\x73\x6d\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x02\x0b\x01\x03\x65\x6e\x76\x03\x66\x6f\x6f\x00\x00\x03\x02\x01\x00\x07\x0a\x01\x06\x5f\x73\x74\x61\x72\x74\x00\x01\x0a\x04\x01\x02\x00\x0b";
        let cases: [(&[u8], &str); 6] = [
            (b"#!/bin/sh\n", "not a WebAssembly module"),
            (b"\0asm\x0d\0\x01\0", "not supported"),
            (b"\x7fELF\x02\x01\x01\0", "never loaded"),
            (b"\0asm\x01\0\0\0", "no `_start` export"),
            (&ok[..ok.len() - 1], "invalid module"),
            (import, "unknown import: `env::foo`"),
        ];
        for (bytes, needle) in cases {
            let r = checker.check("/m.wasm", bytes).unwrap_err();
            assert_eq!(r.errno, Errno::ENOEXEC, "{}", r.message);
            assert!(r.message.starts_with("/m.wasm: "), "{}", r.message);
            assert!(r.message.contains(needle), "{}", r.message);
            assert!(!r.message.contains('\n'), "{}", r.message);
        }
    }
}
