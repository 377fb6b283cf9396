//! `liberpal-sim.so`: the software enclave runtime, PAL API v3.
//!
//! It runs the container's program (an ordinary Linux executable in the container's
//! root filesystem) as the "enclave application", and gives it everything a TEE would:
//!
//! - **Measurement.** At `pal_init`, `mr_enclave` is the SHA-384 of the program and
//!   its measured configuration, checked against a signed manifest
//!   ([`sim_tee::Manifest`], runtime arg `manifest=PATH`, default
//!   `/enclave.manifest.json`). The program must be the one that was signed. An enclave
//!   without a manifest runs only with the runtime arg `debug`, and its reports say debug.
//! - **Reports.** `pal_get_local_report` and the application's evidence channel give
//!   a [`sim_tee::Report`] signed by the host's platform key.
//! - **The application's interface.** The program gets an inherited `SOCK_SEQPACKET`
//!   socket whose fd number is in `INCLAVARE_SIM_FD`. It sends 64 bytes of report
//!   data and receives one 544-byte report bound to them ([`sim_tee::Report`] layout),
//!   or a command ([`sim_tee::evidence`]): `extend` records an event in the enclave's
//!   event log and extends the matching runtime measurement register, `log` returns the
//!   log, `init-data` the init-data document.
//! - **Runtime measurements.** The log and RTMR0..3 ([`sim_tee::rtmr::Measurements`])
//!   start empty and zero at `pal_init` and live as long as the enclave; every process
//!   of the enclave (the entrypoint and `exec`s) shares them. Every report carries them.
//! - **Launches.** The host chooses what the PAL starts (argv, environment, and the
//!   working directory and user of the container's init, which the program inherits),
//!   so before `pal_exec` starts a process (the entrypoint or an `exec`) it records
//!   rune's `Launch` event ([`sim_tee::measurement::eventlog::Event::launch`]) at CC MR 1
//!   (RTMR0), which applications cannot extend. A launch that cannot be recorded (its
//!   event is over 64 KiB, the log is full) does not start.
//! - **Init-data.** The runtime arg `init_data=<standard base64 of the TOML document>`
//!   (rune adds it from `ENCLAVE_INIT_DATA`) is checked at `pal_init`
//!   ([`sim_tee::measurement::initdata`]; a bad document fails `pal_init` with one
//!   line) and its digest, zero-padded to 64 bytes, is the report's config id; the
//!   application reads the document back with `init-data`.
//!
//! Runtime args (space-separated): `debug`, `manifest=PATH`, `init_data=BASE64`.
//!
//! **Nothing here is hardware-protected**: `sim` evidence proves nothing about the
//! platform, and verifiers refuse it unless their policy allows it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_void};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

mod channel;
mod digests;

use pal::ffi::{PalAttrV3, PalCreateProcessArgs, PalExecArgs};
use sim_tee::measurement::eventlog::LAUNCH_MR_INDEX;
use sim_tee::measurement::initdata::InitData;
use sim_tee::rtmr::Measurements;
use sim_tee::{Digest, EnclaveSpec, Manifest, PlatformKey, Report};

/// The environment variable naming the application's evidence socket.
pub use sim_tee::evidence::SIM_FD_ENV;

/// The platform key, loaded in the host's mount namespace (see `pal_get_version`).
static PLATFORM: OnceLock<Result<Arc<PlatformKey>, String>> = OnceLock::new();
static STATE: Mutex<Option<Enclave>> = Mutex::new(None);

#[derive(Clone)]
struct Identity {
    mr_enclave: Digest,
    mr_signer: Digest,
    product_id: u16,
    svn: u16,
    debug: bool,
}

/// This enclave's report bound to `report_data`, with its registers and config id,
/// signed by the platform key.
pub(crate) fn report(report_data: [u8; 64]) -> Result<Vec<u8>, String> {
    let key = platform()?;
    let r = with_enclave(|e| {
        let id = e
            .identity
            .as_ref()
            .ok_or("the enclave's program is not measured yet")?;
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

/// Runs `f` on the enclave's state under its lock.
pub(crate) fn with_enclave<T>(f: impl FnOnce(&mut Enclave) -> T) -> Result<T, String> {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    guard
        .as_mut()
        .map(f)
        .ok_or_else(|| "the enclave is not initialised".to_string())
}

pub(crate) struct Enclave {
    manifest: Option<Manifest>,
    /// Known at `pal_init` with a manifest; at `pal_create_process` without one.
    identity: Option<Identity>,
    /// Created, not yet started, by PAL pid.
    created: HashMap<i32, Process>,
    /// Running, PAL pid to host pid.
    running: HashMap<i32, i32>,
    next_pid: i32,
    /// The event log and RTMR0..3, reset at `pal_init`.
    pub(crate) measurements: Measurements,
    /// The init-data document bound into the config id.
    pub(crate) init_data: Option<InitData>,
}

struct Process {
    argv: Vec<String>,
    env: Vec<String>,
    stdio: [c_int; 3],
}

/// One line on stderr. Never `eprintln!`: with stderr a pipe nobody reads (and SIGPIPE
/// ignored, as in rune's init) it panics, and a panic cannot cross the PAL's C ABI.
fn say(msg: &str) {
    use std::io::Write;
    // One write: the container's other writers to this stderr cannot split the line.
    let _ = std::io::stderr().write_all(format!("liberpal-sim: {msg}\n").as_bytes());
}

fn platform() -> Result<Arc<PlatformKey>, String> {
    PLATFORM
        .get_or_init(|| {
            let dir = PlatformKey::dir();
            let key = PlatformKey::load_or_create(&dir)
                .map(Arc::new)
                .map_err(|e| e.to_string());
            if key.is_ok() {
                digests::open(&dir);
            }
            key
        })
        .clone()
}

/// Returns 3. rune (and every PAL loader) calls it first, in the host's mount namespace
/// before the container's root is entered: the platform key is loaded here, as a TEE's
/// hardware keys exist independently of the container's file system.
#[no_mangle]
pub extern "C" fn pal_get_version() -> c_int {
    if let Err(e) = platform() {
        say(&format!("platform key: {e}"));
    }
    3
}

fn errno(e: nix::errno::Errno) -> c_int {
    -(e as c_int)
}

/// # Safety
/// `attr` must point to a `pal_attr_v3` whose strings are NUL-terminated or NULL.
#[no_mangle]
pub unsafe extern "C" fn pal_init(attr: *const c_void) -> c_int {
    if attr.is_null() {
        return errno(nix::errno::Errno::EINVAL);
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
    match init(&args) {
        Ok(()) => 0,
        Err((code, msg)) => {
            say(&msg);
            errno(code)
        }
    }
}

fn init(args: &str) -> Result<(), (nix::errno::Errno, String)> {
    use nix::errno::Errno;
    // One reading of the args and one choice of what is measured, shared with the
    // reference-value tool (`shelter rv`), which must predict mr_enclave exactly.
    let runtime_args = sim_tee::RuntimeArgs::parse(args);
    let debug = runtime_args.debug;
    let manifest_arg = runtime_args.manifest.as_deref();
    platform().map_err(|e| (Errno::EACCES, format!("platform key: {e}")))?;
    let init_data = sim_tee::rtmr::init_data_arg(args).map_err(|e| (Errno::EINVAL, e))?;
    if let Some(doc) = &init_data {
        say(&format!(
            "init-data {} {}",
            doc.algorithm.name(),
            hex::encode(doc.digest())
        ));
    }
    // Nothing in the container may read this process's memory (the platform key).
    let _ = nix::sys::prctl::set_dumpable(false);

    let path = runtime_args.manifest_path();
    let manifest = match std::fs::read(path) {
        Ok(bytes) => {
            Some(Manifest::parse(&bytes).map_err(|e| (Errno::EINVAL, format!("{path}: {e}")))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && manifest_arg.is_none() => None,
        Err(e) => return Err((Errno::ENOENT, format!("manifest {path}: {e}"))),
    };
    let identity = match &manifest {
        Some(m) => {
            let program = digests::program_digest(&m.spec.entrypoint)
                .map_err(|e| (Errno::ENOENT, format!("enclave program {}: {e}", m.spec.entrypoint)))?;
            let mr_enclave = m
                .verify_program(&program)
                .map_err(|e| (Errno::EACCES, e.to_string()))?;
            let mr_signer = m.mr_signer().map_err(|e| (Errno::EACCES, e.to_string()))?;
            let id = Identity {
                mr_enclave,
                mr_signer,
                product_id: m.product_id,
                svn: m.svn,
                debug: m.debug || debug,
            };
            announce(&id);
            Some(id)
        }
        None if debug => None,
        None => {
            return Err((
                Errno::EACCES,
                format!("no signed manifest at {path}: an unsigned enclave runs only with the runtime arg debug"),
            ))
        }
    };
    *STATE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Enclave {
        manifest,
        identity,
        created: HashMap::new(),
        running: HashMap::new(),
        next_pid: 1,
        measurements: Measurements::new(),
        init_data,
    });
    Ok(())
}

fn announce(id: &Identity) {
    say(&format!(
        "mr_enclave={} mr_signer={} product_id={} svn={} debug={}",
        hex::encode(id.mr_enclave),
        hex::encode(id.mr_signer),
        id.product_id,
        id.svn,
        id.debug
    ));
}

/// # Safety
/// `args` must point to a valid `pal_create_process_args` (PAL API v2/v3).
#[no_mangle]
pub unsafe extern "C" fn pal_create_process(args: *mut PalCreateProcessArgs) -> c_int {
    use nix::errno::Errno;
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
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(enclave) = guard.as_mut() else {
        say("pal_create_process before pal_init");
        return errno(Errno::EINVAL);
    };
    let Some(program) = argv.first() else {
        return errno(Errno::EINVAL);
    };
    match &enclave.manifest {
        Some(m) => {
            // The enclave runs only what was measured.
            if program != &m.spec.entrypoint
                || (!m.spec.args.is_empty() && argv[1..] != m.spec.args[..])
            {
                let msg = format!(
                    "{program}: not the program this enclave was signed for ({})",
                    m.spec.entrypoint
                );
                // The first process's caller (rune, at `create`) reads our stderr;
                // a later one's (`rune exec`) reads the process's.
                let first = enclave.next_pid == 1;
                refuse((!first).then_some(stdio[2]), &msg);
                return errno(Errno::EPERM);
            }
        }
        // A later process of a debug enclave (`rune exec`): a program that is not there
        // fails here, where the caller learns it did not start (rune names it).
        None if enclave.identity.is_some() => {
            if let Err(e) = std::fs::metadata(program) {
                return errno(Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)));
            }
        }
        None => match digests::program_digest(program) {
            Ok(digest) => {
                let spec = EnclaveSpec::unsigned(program);
                let id = Identity {
                    mr_enclave: sim_tee::measure_program(&digest, &spec),
                    mr_signer: [0; 48],
                    product_id: 0,
                    svn: 0,
                    debug: true,
                };
                announce(&id);
                enclave.identity = Some(id);
            }
            Err(e) => {
                say(&format!("error: enclave program {program}: {e}"));
                return errno(Errno::ENOENT);
            }
        },
    }
    let pid = enclave.next_pid;
    enclave.next_pid += 1;
    enclave.created.insert(pid, Process { argv, env, stdio });
    // SAFETY: checked non-NULL above; the caller owns the int.
    unsafe { *pid_out = pid };
    0
}

/// Says why a process does not start, on our stderr and, when given, on the process's
/// (the caller of an exec sees the process's stderr, not ours).
fn refuse(stderr: Option<c_int>, msg: &str) {
    say(msg);
    if let Some(stderr) = stderr.filter(|fd| *fd >= 0) {
        // SAFETY: the caller keeps its stdio descriptors open for the PAL call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stderr) };
        let _ = nix::unistd::write(fd, format!("liberpal-sim: {msg}\n").as_bytes());
    }
}

/// The environment a program gets from `env` (`NAME=value` each): one value per name,
/// the last given, in name order (the order `Command` passes them in), without entries
/// lacking `=` and without [`SIM_FD_ENV`], which the runtime sets.
fn program_env(env: &[String]) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k != SIM_FD_ENV)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Records the launch of `argv` with `env`, in this process's working directory and
/// with its ids (the program inherits both), as rune's `Launch` event at CC MR 1. It
/// runs before the program exists, so no report the program can ask for lacks it.
fn record_launch(argv: &[String], env: &BTreeMap<String, String>) -> Result<(), String> {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let event = sim_tee::rtmr::launch_event(argv, &env)?;
    with_enclave(|e| e.measurements.extend(LAUNCH_MR_INDEX, &event))?.map_err(|e| {
        format!(
            "{}: its launch (argv, environment, working directory, ids) cannot be measured: {e}",
            argv[0]
        )
    })
}

/// In the child before exec: a terminal on stdin that is not our session's controlling
/// terminal (a pty opened for this process, as for `exec -t`) becomes the controlling
/// terminal of a session of the process's own, as a runtime's exec with a terminal
/// does, so that ^C typed on it signals the process. The container's console (the
/// init's controlling terminal) is left as it is; a terminal another session controls
/// stays theirs (TIOCSCTTY without force fails), and the process leads its own session
/// without one, as a process runc execs does.
fn take_terminal() {
    // SAFETY: isatty, tcgetsid, setsid and ioctl(TIOCSCTTY) take integers only.
    unsafe {
        if libc::isatty(0) == 1 && libc::tcgetsid(0) == -1 {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
        }
    }
}

/// A close-on-exec copy of `fd` for the program's stdio: the program gets it as fd 0-2
/// only (a plain dup would also stay open at its own number in the program).
fn dup_stdio(fd: c_int) -> std::io::Result<Stdio> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the caller's process keeps its stdio descriptors open for this call; the
    // borrow ends at the clone.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    Ok(Stdio::from(borrowed.try_clone_to_owned()?))
}

/// # Safety
/// `args` must point to a valid `pal_exec_args` whose `exit_value` is writable.
#[no_mangle]
pub unsafe extern "C" fn pal_exec(args: *mut PalExecArgs) -> c_int {
    use nix::errno::Errno;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    if args.is_null() {
        return errno(Errno::EINVAL);
    }
    // SAFETY: checked non-NULL; the caller owns the struct for the call.
    let (pal_pid, exit_out) = unsafe { ((*args).pid, (*args).exit_value) };
    if exit_out.is_null() {
        return errno(Errno::EINVAL);
    }
    let process = {
        let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
        let Some(enclave) = guard.as_mut() else {
            return errno(Errno::EINVAL);
        };
        if enclave.identity.is_none() {
            return errno(Errno::EINVAL);
        }
        let Some(p) = enclave.created.remove(&pal_pid) else {
            return errno(Errno::EINVAL);
        };
        p
    };
    let env = program_env(&process.env);
    if let Err(msg) = record_launch(&process.argv, &env) {
        refuse(Some(process.stdio[2]), &msg);
        return errno(Errno::EPERM);
    }
    // Our end is close-on-exec; the application's end is inherited.
    let (ours, theirs) = match socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::empty(),
    ) {
        Ok(pair) => pair,
        Err(e) => return errno(e),
    };
    let _ = nix::fcntl::fcntl(
        ours.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let stdio = (|| {
        Ok::<_, std::io::Error>((
            dup_stdio(process.stdio[0])?,
            dup_stdio(process.stdio[1])?,
            dup_stdio(process.stdio[2])?,
        ))
    })();
    let Ok((stdin, stdout, stderr)) = stdio else {
        return errno(Errno::EBADF);
    };
    let mut cmd = Command::new(&process.argv[0]);
    cmd.args(&process.argv[1..])
        .env_clear()
        .envs(&env)
        .env(SIM_FD_ENV, theirs.as_raw_fd().to_string())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: the hook runs between fork and exec and makes only async-signal-safe
    // system calls.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            take_terminal();
            Ok(())
        });
    }
    // The evidence channel's thread first: it counts against the container's pids limit,
    // and a program started before it could take the last task and run half-served.
    // When no thread can be made the failure is said, not panicked on (a panic cannot
    // unwind out of this extern "C" function: it would abort the init). The thread ends
    // when the program's end of the socket closes.
    if let Err(e) = std::thread::Builder::new().spawn(move || channel::serve(ours)) {
        say(&format!(
            "error: {}: cannot start the enclave's evidence channel: {e}",
            process.argv[0]
        ));
        return -(e.raw_os_error().unwrap_or(libc::EAGAIN));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            // An error line tools recognise ("error"), naming the program.
            say(&format!("error: {}: {e}", process.argv[0]));
            return -(e.raw_os_error().unwrap_or(libc::ENOEXEC));
        }
    };
    drop(theirs);
    if let Some(enclave) = STATE.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        enclave.running.insert(pal_pid, child.id() as i32);
    }
    let status = child.wait();
    if let Some(enclave) = STATE.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        enclave.running.remove(&pal_pid);
    }
    let code = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
        }
        Err(e) => return -(e.raw_os_error().unwrap_or(libc::ECHILD)),
    };
    // SAFETY: checked non-NULL above.
    unsafe { *exit_out = code };
    0
}

/// Signals a process of the enclave by PAL pid (-1: every process).
#[no_mangle]
pub extern "C" fn pal_kill(pid: c_int, sig: c_int) -> c_int {
    // Any signal the kernel has, realtime ones included (nix's Signal has none).
    if !(1..=libc::SIGRTMAX()).contains(&sig) {
        return errno(nix::errno::Errno::EINVAL);
    }
    let targets: Vec<i32> = STATE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|e| {
            e.running
                .iter()
                .filter(|(p, _)| pid == -1 || **p == pid)
                .map(|(_, host)| *host)
                .collect()
        })
        .unwrap_or_default();
    for host in targets {
        // SAFETY: kill(2) takes two integers and touches no memory of ours.
        if unsafe { libc::kill(host, sig) } != 0 {
            let e = nix::errno::Errno::last();
            if e != nix::errno::Errno::ESRCH {
                return errno(e);
            }
        }
    }
    0
}

/// A report bound to the first 64 bytes of `target_info` (the report data), with the
/// enclave's registers and config id.
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
    // SAFETY: the caller's pointers and lengths, as the PAL API gives them.
    unsafe {
        pal::ffi::local_report_from_target_info(
            target_info,
            target_info_len,
            report,
            report_len,
            |data| crate::report(data).ok(),
        )
    }
}

#[no_mangle]
pub extern "C" fn pal_destroy() -> c_int {
    *STATE.lock().unwrap_or_else(|p| p.into_inner()) = None;
    0
}
