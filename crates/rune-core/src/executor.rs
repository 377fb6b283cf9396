//! The workload seam: what the container's init process runs once `start` is called.
//!
//! [`ProcessExecutor`] runs `process.args` like runc does. It differs from libcontainer's
//! `DefaultExecutor` in one way users hit: a spec without `PATH` in `process.env`
//! (`ctr run --rootfs` writes such specs) is accepted, with runc's default search path.
//! The enclave executor plugs in next to it and declines plain containers with `CantHandle`.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

/// The search path runc uses when the spec sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the spec's `process.args` with `execv`, resolving the program on `PATH`.
#[derive(Clone, Default)]
pub struct ProcessExecutor;

impl ProcessExecutor {
    fn args(spec: &Spec) -> Option<&Vec<String>> {
        spec.process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .filter(|a| !a.is_empty())
    }
}

/// The `PATH` the spec's environment gives, or runc's default.
pub fn search_path(spec: &Spec) -> String {
    path_of(
        spec.process()
            .as_ref()
            .and_then(|p| p.env().as_deref())
            .unwrap_or_default(),
    )
    .to_string()
}

/// The last `PATH=` of an environment, or runc's default.
fn path_of(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// Resolves `program` as `execvp` would: names with a slash are taken as they are,
/// others are looked up in each directory of `path` for an executable regular file.
pub fn resolve(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Every signal to its default action and none blocked, as the container's program
/// starts under runc: rune (a Rust program) ignores SIGPIPE, and a caller's ignored
/// signals (containerd's Go runtime: 32, 33) would otherwise pass through execve, so that
/// `yes | head -1` would print "Broken pipe" instead of ending quietly.
fn default_signal_dispositions() {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        set_default(signo);
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Every signal this process ignores, but those in `keep`, back at SIG_DFL; the mask
/// cleared. Signals with handlers keep them.
fn unignore_signals(keep: &[libc::c_int]) {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP || keep.contains(&signo) {
            continue;
        }
        let mut old = [0u64; 4];
        // SAFETY: the kernel writes the current action into `old` (32 bytes, more than
        // any architecture's struct with an 8-byte mask) and changes nothing.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo as libc::c_long,
                std::ptr::null::<u8>(),
                old.as_mut_ptr(),
                8 as libc::c_long,
            )
        };
        // The handler is the first field on every architecture; SIG_IGN is 1.
        if r == 0 && old[0] == libc::SIG_IGN as u64 {
            set_default(signo);
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// SIG_DFL for `signo` through the kernel's `rt_sigaction`: glibc's `signal` and
/// `sigaction` refuse 32 and 33 (its own), which Go callers such as containerd and its
/// shims ignore, and which would pass through execve ignored.
fn set_default(signo: libc::c_int) {
    // The kernel's struct sigaction, all zero: handler SIG_DFL (0), no flags, no
    // restorer, an empty mask, whatever the architecture's field order.
    let action = [0u64; 4];
    // SAFETY: the kernel reads `action` (32 bytes, more than any architecture's struct
    // with an 8-byte mask) and writes nothing (no old action asked for); SIG_DFL runs no
    // handler code; a number the kernel does not take fails with EINVAL, changing nothing.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signo as libc::c_long,
            action.as_ptr(),
            std::ptr::null_mut::<u8>(),
            8 as libc::c_long,
        );
    }
}

impl Executor for ProcessExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let args = Self::args(spec).ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("process.args is empty".into())
        })?;
        let program = &args[0];
        // Go's exec.LookPath, which runc calls at create: a directory, or a file this
        // user may not execute fails here, not after start with exit 255.
        let refuse = |p: &Path, why: &str| {
            Err(ExecutorValidationError::ArgValidationError(format!(
                "exec: {p:?}: {why}"
            )))
        };
        match resolve(program, &search_path(spec)) {
            Some(p) => match p.metadata() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    refuse(&p, "no such file or directory")
                }
                // Another failure (a seccomp profile that denies statx) is execve's to judge,
                // as with runc, whose stat takes another syscall.
                Err(_) => Ok(()),
                // Go 1.19's LookPath, in Debian's runc, says so of a directory too.
                Ok(m) if m.is_dir() => refuse(&p, "permission denied"),
                Ok(_) if nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_err() => {
                    refuse(&p, "permission denied")
                }
                Ok(_) => Ok(()),
            },
            None => Err(ExecutorValidationError::ArgValidationError(format!(
                "exec: {program:?}: executable file not found in $PATH"
            ))),
        }
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args = Self::args(spec).ok_or(ExecutorError::InvalidArg)?;
        let program = resolve(&args[0], &search_path(spec))
            .ok_or_else(|| ExecutorError::Execution(format!("{:?} not found", args[0]).into()))?;
        let program = CString::new(program.as_os_str().as_encoded_bytes())
            .map_err(|_| ExecutorError::InvalidArg)?;
        let argv = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        // setup_envs has already replaced the environment with process.env.
        default_signal_dispositions();
        let err = nix::unistd::execv(&program, &argv).unwrap_err();
        // After `start` nobody reads the init's error: say it on the container's stderr
        // in runc's init's words (Go's `exec PATH: errno`) and end with 1, as it does
        // (a seccomp profile denying execve).
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "exec {}: {}\n",
                program.to_string_lossy(),
                err.desc().to_lowercase()
            )
            .as_bytes(),
        );
        std::process::exit(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_on_path_and_keeps_slashed_names() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("hello");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let nonexec = dir.path().join("data");
        std::fs::write(&nonexec, "x").unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(resolve("hello", &path), Some(prog));
        assert_eq!(resolve("data", &path), None);
        assert_eq!(resolve("./x", &path), Some(PathBuf::from("./x")));
    }

    #[test]
    fn default_path_when_spec_has_none() {
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_env(Some(vec!["TERM=xterm".into()]));
        spec.set_process(Some(process.clone()));
        assert_eq!(search_path(&spec), DEFAULT_PATH);
        process.set_env(Some(vec!["PATH=/x:/y".into()]));
        spec.set_process(Some(process));
        assert_eq!(search_path(&spec), "/x:/y");
    }
}

/// An enclave workload: a PAL loaded by `rune create` before the container's processes
/// were cloned from it (so the host path need not be visible inside the container),
/// and the configuration to run it with.
pub struct EnclaveWorkload {
    pub pal: pal::Pal,
    pub config: crate::enclave::EnclaveConfig,
    /// The agent socket `rune create` bound for this container (see [`crate::agent`]).
    pub agent: Option<std::os::unix::net::UnixListener>,
    /// The container's own process, from its argv at `create` to the PAL's pid once
    /// `pal_create_process` made it (see [`InitProcess`]).
    pub init: std::sync::Mutex<InitProcess>,
}

/// Where the container's own process of a v2/v3 PAL is between `create` and `start`.
///
/// runc makes the process at `create` and only runs it at `start`, so that a program
/// that cannot run fails `create`. rune does the same through the PAL: `pal_create_process`
/// ("creates but does not run", pal-api.md §1) at `create`, `pal_exec` at `start`. A v1
/// PAL has no such call, and makes and runs its process at `start` in `pal_exec`.
#[derive(Default)]
pub enum InitProcess {
    /// Nothing yet (or a v1 PAL).
    #[default]
    None,
    /// `validate` found the argv; `setup_envs`, which has the environment, creates it.
    Argv(Vec<String>),
    /// Created: the PAL's pid, and the duplicate of stderr the PAL was given as the
    /// process's stderr (kept open until the process ends: a PAL may use it only then).
    Created {
        pid: i32,
        stderr: Option<std::os::fd::OwnedFd>,
    },
}

impl EnclaveWorkload {
    /// Runs `argv` through the PAL, forwarding the signal numbers that arrive on
    /// `signals` (4-byte little-endian each) to the created process.
    fn run_forwarding(
        self: &std::sync::Arc<Self>,
        argv: &[String],
        env: &[String],
        stdio: pal::StdioFds,
        signals: Option<std::os::fd::OwnedFd>,
        on_started: impl FnOnce(i32),
    ) -> Result<i32, pal::PalError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let me = self.clone();
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        let result = self.pal.run_with(argv, env, stdio, move |pid| {
            on_started(pid);
            let Some(fd) = signals else { return };
            let spawned = std::thread::Builder::new().spawn(move || {
                use std::io::Read;
                let mut pipe = std::fs::File::from(fd);
                let mut buf = [0u8; 4];
                while pipe.read_exact(&mut buf).is_ok() {
                    let _ = me.pal.kill(pid, i32::from_le_bytes(buf));
                }
                // The caller is gone (its end of the pipe closed): a process nobody
                // waits for must not outlive it.
                if !finished.load(Ordering::SeqCst) {
                    let _ = me.pal.kill(pid, libc::SIGKILL);
                }
            });
            if let Err(e) = spawned {
                tracing::warn!("enclave: cannot forward signals to {pid}: {e}");
            }
        });
        done.store(true, Ordering::SeqCst);
        result
    }

    /// `rune attest`: for `intelSgx`, a REPORT targeted at the quoting enclave whose
    /// TARGETINFO aesmd gives (the container sees the host's aesmd directory), and with
    /// `is_ra` its DCAP quote, checked to carry that REPORT. The PAL API passes no
    /// report data: an SGX enclave runtime chooses its own. For the other types, a
    /// report bound to the given report data (`liberpal-sim` takes it from the first
    /// 64 bytes of the target info), which is evidence by itself.
    fn attest(&self, a: &crate::agent::Attest) -> Result<Vec<u8>, String> {
        use crate::enclave::EnclaveType;
        if self.config.typ != EnclaveType::IntelSgx {
            if a.is_ra {
                return Err(format!(
                    "remote attestation (--isRA) needs an intelSgx enclave; a {} report is \
                     evidence by itself (verify it with shelter verify)",
                    self.config.typ.name()
                ));
            }
            let mut target_info = [0u8; pal::SGX_TARGET_INFO_SIZE];
            let n = a.report_data.len().min(64);
            target_info[..n].copy_from_slice(&a.report_data[..n]);
            let mut report = vec![0u8; 4096];
            let len = self
                .pal
                .local_report(&target_info, &mut report)
                .map_err(|e| e.to_string())?;
            report.truncate(len);
            return Ok(report);
        }
        if !a.report_data.is_empty() {
            return Err(
                "intelSgx: the PAL API passes no report data; the enclave runtime chooses it"
                    .into(),
            );
        }
        match a.quote_type.to_ascii_lowercase().as_str() {
            "" | "ecdsa" => {}
            t if t.starts_with("epid") => {
                return Err(format!(
                    "quote type {}: Intel has retired EPID attestation; use ecdsa (DCAP)",
                    a.quote_type
                ))
            }
            _ => return Err(format!("unknown quote type {:?}", a.quote_type)),
        }
        let aesm = aesm::Aesm::default();
        let local_report = |ti: &[u8; aesm::TARGET_INFO_SIZE]| {
            let mut report = [0u8; aesm::REPORT_SIZE];
            match self.pal.local_report(ti, &mut report) {
                Ok(aesm::REPORT_SIZE) => Ok(report),
                Ok(n) => Err(format!(
                    "the enclave runtime returned a {n}-byte report; an SGX REPORT has {}",
                    aesm::REPORT_SIZE
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        if a.is_ra {
            aesm.quote_with(local_report).map_err(|e| e.to_string())?
        } else {
            let key = aesm.ecdsa_key_id().map_err(|e| e.to_string())?;
            let ti = aesm.qe_target_info(&key).map_err(|e| e.to_string())?;
            local_report(&ti).map(|r| r.to_vec())
        }
    }

    /// Serves `rune exec` and `rune attest` requests until the process ends.
    fn serve_agent(self: std::sync::Arc<Self>) {
        let Some(listener) = &self.agent else { return };
        for conn in listener.incoming().flatten() {
            let me = self.clone();
            // A duplicate descriptor, not a task: the answer to a request that finds no
            // thread (the container's pids limit).
            let spare = conn.try_clone();
            let spawned = std::thread::Builder::new().spawn(move || {
                if let Err(e) = me.handle(conn) {
                    tracing::warn!("agent: {e}");
                }
            });
            if let Err(e) = spawned {
                tracing::warn!("agent: {e}");
                if let Ok(conn) = spare {
                    self.refuse(
                        conn,
                        &format!(
                            "no task for the request: the container's pids limit is reached ({e})"
                        ),
                    );
                }
            }
        }
    }

    /// The agent's answer to `rune attest`.
    fn attest_response(&self, a: &crate::agent::Attest) -> crate::agent::Response {
        let (exit_code, error, local_report) = match self.attest(a) {
            Ok(report) => (0, String::new(), report),
            Err(e) => (1, e, vec![]),
        };
        crate::agent::Response::Attest(crate::agent::AttestResponse {
            exit_code,
            error,
            local_report,
        })
    }

    /// Serves one agent request on the listening thread when no thread could be made
    /// for it: reads the request (for at most a second: a silent client cannot hold the
    /// agent); an exec is refused with `why` (its descriptors closed), an attestation
    /// or a kill, which need no task of their own, are done.
    fn refuse(&self, mut conn: std::os::unix::net::UnixStream, why: &str) {
        use crate::agent::*;
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        let Ok(req) = read_frame::<AgentServiceRequest>(&mut conn) else {
            return;
        };
        let response = match req.request {
            Some(Request::Exec(e)) => {
                // Received to be closed: the caller's stdio is not held past the answer.
                drop(recv_fds(&conn, if e.terminal { 2 } else { 4 }));
                Response::Exec(ExecuteResponse {
                    exit_code: -1,
                    error: why.to_string(),
                })
            }
            // These need no task of their own: done here.
            Some(Request::Attest(a)) => self.attest_response(&a),
            Some(Request::Kill(k)) => {
                let _ = self.pal.kill(-1, k.sig);
                return;
            }
            None => return,
        };
        let _ = write_frame(
            &mut conn,
            &AgentServiceResponse {
                response: Some(response),
            },
        );
    }

    fn handle(
        self: std::sync::Arc<Self>,
        mut conn: std::os::unix::net::UnixStream,
    ) -> std::io::Result<()> {
        use crate::agent::*;
        let req: AgentServiceRequest = read_frame(&mut conn)?;
        let response = match req.request {
            Some(Request::Exec(e)) => {
                let mut fds = recv_fds(&conn, 4)?.into_iter();
                let (sig, stdin, stdout, stderr) = if e.terminal {
                    let (Some(sig), Some(console)) = (fds.next(), fds.next()) else {
                        return Err(std::io::Error::other("exec request without its 2 fds"));
                    };
                    let slave = match console_pty(&console) {
                        Ok(slave) => slave,
                        Err(e) => {
                            let error = format!("pty for the console socket: {e}");
                            let response = Response::Exec(ExecuteResponse {
                                exit_code: -1,
                                error,
                            });
                            return write_frame(
                                &mut conn,
                                &AgentServiceResponse {
                                    response: Some(response),
                                },
                            );
                        }
                    };
                    if e.rows > 0 && e.cols > 0 {
                        let size = libc::winsize {
                            ws_row: e.rows.min(u16::MAX as u32) as u16,
                            ws_col: e.cols.min(u16::MAX as u32) as u16,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ reads one winsize through a valid pointer
                        // on the pty slave this function holds.
                        unsafe {
                            libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size);
                        }
                    }
                    (sig, slave.try_clone()?, slave.try_clone()?, slave)
                } else {
                    match (fds.next(), fds.next(), fds.next(), fds.next()) {
                        (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
                        _ => return Err(std::io::Error::other("exec request without its 4 fds")),
                    }
                };
                use std::os::fd::AsRawFd;
                let split = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
                let mut argv = if e.args.is_empty() {
                    split(&e.argv)
                } else {
                    e.args
                };
                let env = if e.env.is_empty() {
                    split(&e.envp)
                } else {
                    e.env
                };
                // As for the container's own program: a bare name is looked up on the
                // exec's PATH (this runs inside the container's root).
                if let Some(first) = argv.first_mut() {
                    if let Some(p) = resolve(first, path_of(&env)).filter(|p| p.exists()) {
                        *first = p.to_string_lossy().into_owned();
                    }
                }
                let stdio = pal::StdioFds {
                    stdin: stdin.as_raw_fd(),
                    stdout: stdout.as_raw_fd(),
                    stderr: stderr.as_raw_fd(),
                };
                // A program in the container that cannot be executed (a directory, no
                // execute permission) is refused as at create, in runc's words; a missing
                // one is the PAL's to judge (it may live in the enclave's own files).
                let not_executable = argv
                    .first()
                    .map(Path::new)
                    .filter(|p| p.is_absolute() && p.exists())
                    .filter(|p| {
                        !(p.is_file()
                            && nix::unistd::access(*p, nix::unistd::AccessFlags::X_OK).is_ok())
                    })
                    .map(|p| format!("exec: {p:?}: permission denied"));
                let mut announce = conn.try_clone().ok();
                let started = std::cell::Cell::new(false);
                let r = if argv.is_empty() {
                    Err("empty command".to_string())
                } else if let Some(refusal) = not_executable {
                    Err(refusal)
                } else {
                    self.run_forwarding(&argv, &env, stdio, Some(sig), |pid| {
                        started.set(true);
                        if let Some(c) = announce.as_mut() {
                            let _ = write_frame(
                                c,
                                &AgentServiceResponse {
                                    response: Some(Response::Started(ExecuteStarted { pid })),
                                },
                            );
                        }
                    })
                    // Named as runc names the program it could not start.
                    .map_err(|e| match started.get() {
                        true => e.to_string(),
                        false => format!("exec: {:?}: {e}", argv[0]),
                    })
                };
                drop(announce);
                let (exit_code, error) = match r {
                    Ok(code) => (code, String::new()),
                    Err(e) if started.get() => {
                        // A detached exec's caller sees the process's stderr, not rune's.
                        let mut err = std::fs::File::from(stderr);
                        let _ = std::io::Write::write_all(
                            &mut err,
                            format!("rune exec: {e}\n").as_bytes(),
                        );
                        (-1, e)
                    }
                    // Not started: the caller is still waiting for the answer, and says it.
                    Err(e) => (-1, e),
                };
                Response::Exec(ExecuteResponse { exit_code, error })
            }
            Some(Request::Attest(a)) => self.attest_response(&a),
            Some(Request::Kill(k)) => {
                let _ = self.pal.kill(-1, k.sig);
                return Ok(());
            }
            None => return Err(std::io::Error::other("empty agent request")),
        };
        write_frame(
            &mut conn,
            &AgentServiceResponse {
                response: Some(response),
            },
        )
    }
}

/// The executor rune gives libcontainer: a plain process, or an enclave payload.
#[derive(Clone, Default)]
pub struct RuneExecutor {
    enclave: Option<std::sync::Arc<EnclaveWorkload>>,
}

/// This process's environment as `NAME=value` strings, for a PAL.
fn current_env() -> Vec<String> {
    std::env::vars().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `error`, followed by what the PAL printed about why (`said`) on the same line.
fn with_cause(error: String, said: &str) -> String {
    let cause = crate::captured::one_line(said);
    if cause.is_empty() {
        error
    } else {
        format!("{error}: {cause}")
    }
}

/// Signals the init of an enclave container forwards to the PAL as `pal_kill(-1, sig)`.
/// A container's pid 1 only receives signals it has a handler for, so each gets one.
const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGCONT,
    libc::SIGWINCH,
];

impl RuneExecutor {
    /// A plain container's executor.
    pub fn process() -> Self {
        RuneExecutor { enclave: None }
    }

    /// An enclave container's executor.
    pub fn enclave(workload: EnclaveWorkload) -> Self {
        RuneExecutor {
            enclave: Some(std::sync::Arc::new(workload)),
        }
    }

    /// True for an enclave container's executor.
    pub fn is_enclave(&self) -> bool {
        self.enclave.is_some()
    }

    /// The enclave payload's argv: `argv[0]` is resolved on `PATH` when it names a file
    /// in the container, and otherwise passed as is (a path in the enclave's file system).
    fn enclave_argv(spec: &Spec) -> Option<Vec<String>> {
        let mut argv = ProcessExecutor::args(spec)?.clone();
        if let Some(p) = resolve(&argv[0], &search_path(spec)).filter(|p| p.exists()) {
            argv[0] = p.to_string_lossy().into_owned();
        }
        Some(argv)
    }
}

impl Executor for RuneExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        // The first call into the executor in the container's init, which then waits
        // for `start`: from here on it shows no host paths.
        crate::title::set_waiting();
        let Some(w) = &self.enclave else {
            return ProcessExecutor.validate(spec);
        };
        if ProcessExecutor::args(spec).is_none() {
            return Err(ExecutorValidationError::ArgValidationError(
                "process.args is empty".into(),
            ));
        }
        // A program that is in the container's file system but cannot be executed (a
        // directory, no execute permission) fails create as runc's does. A missing one
        // is the PAL's to judge: it may live in the enclave's own file system (Occlum),
        // or be the PAL itself (a PAL that runs one built-in payload).
        if let Some(p) = ProcessExecutor::args(spec)
            .and_then(|a| resolve(&a[0], &search_path(spec)))
            .filter(|p| p.exists())
        {
            let executable =
                p.is_file() && nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_ok();
            if !executable {
                return Err(ExecutorValidationError::ArgValidationError(format!(
                    "exec: {p:?}: permission denied"
                )));
            }
        }
        // Runs in the container's init, in process.cwd, when `create` is nearly done: a
        // failing pal_init fails create, in one line that carries what the PAL printed
        // about why; a PAL that succeeds has its text passed on to stderr unchanged.
        let (done, said) =
            crate::captured::stderr_of(|| w.pal.init(&w.config.pal_args(), &w.config.log_level));
        match done {
            Ok(()) => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), said.as_bytes());
                if w.pal.version() >= 2 {
                    let argv = Self::enclave_argv(spec).unwrap_or_default();
                    *w.init.lock().unwrap_or_else(|p| p.into_inner()) = InitProcess::Argv(argv);
                }
                Ok(())
            }
            Err(e) => Err(ExecutorValidationError::ArgValidationError(with_cause(
                format!("enclave init: {e}"),
                &said,
            ))),
        }
    }

    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> Result<(), libcontainer::workload::ExecutorSetEnvsError> {
        // The container's environment, without the ENCLAVE_* variables rune consumed.
        for (key, _) in std::env::vars_os() {
            std::env::remove_var(key);
        }
        for (key, value) in envs {
            if !(self.enclave.is_some() && crate::enclave::is_enclave_var(&key)) {
                std::env::set_var(key, value);
            }
        }
        let Some(w) = &self.enclave else {
            return Ok(());
        };
        // The container's process is made now, with the environment just set, so that a
        // program the PAL cannot run fails `create` in one line naming what the PAL said
        // (still single-threaded: fd 2 can be captured). Its stdio are the init's own,
        // stderr as a duplicate: fd 2 is the capture meanwhile.
        let mut init = w.init.lock().unwrap_or_else(|p| p.into_inner());
        let InitProcess::Argv(argv) = std::mem::take(&mut *init) else {
            return Ok(());
        };
        let env = current_env();
        let (made, stderr, said) = crate::captured::stderr_of_keeping(|stderr| {
            let stdio = pal::StdioFds {
                stderr,
                ..pal::StdioFds::inherit()
            };
            w.pal.create_process(&argv, &env, stdio)
        });
        match made {
            Ok(pid) => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), said.as_bytes());
                *init = InitProcess::Created { pid, stderr };
                Ok(())
            }
            Err(e) => {
                // The PAL's own words name the program; without them, rune does.
                let line = if said.trim().is_empty() {
                    format!("enclave: {}: {e}", argv[0])
                } else {
                    with_cause(format!("enclave: {e}"), &said)
                };
                // runc's words for a program that is missing or may not run lead, as
                // clients read them: docker answers 127 and 126 (not 125) by them.
                let runc = match e {
                    pal::PalError::Call { code, .. } if code == -libc::ENOENT => {
                        Some("no such file or directory")
                    }
                    pal::PalError::Call { code, .. } if code == -libc::EACCES => {
                        Some("permission denied")
                    }
                    _ => None,
                };
                let line = match runc {
                    Some(words) => format!("exec: {:?}: {words}: {line}", argv[0]),
                    None => line,
                };
                Err(libcontainer::workload::ExecutorSetEnvsError::Other(line))
            }
        }
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let Some(w) = &self.enclave else {
            return ProcessExecutor.exec(spec);
        };
        let argv = Self::enclave_argv(spec).ok_or(ExecutorError::InvalidArg)?;
        crate::title::set(&argv);
        // The PAL's processes inherit what this init ignores (the caller's: containerd's
        // 32 and 33): ignored signals back at their default. Handled ones stay: the PAL
        // may have installed its own at pal_init (wasmtime's traps need SIGILL/SIGSEGV).
        unignore_signals(&[libc::SIGPIPE]);
        let env = current_env();
        let agent = w.clone();
        // Threads count against the container's pids limit: one that cannot be made is
        // an error line, not a panic.
        std::thread::Builder::new()
            .spawn(move || agent.serve_agent())
            .map_err(|e| {
                ExecutorError::Execution(format!("enclave: start the agent thread: {e}").into())
            })?;
        // Handlers are installed once the payload exists: a PAL that forks its payload
        // would otherwise pass them on, and the payload would no longer die of SIGTERM.
        let forwarder = w.clone();
        // The realtime signals too: runc forwards every signal but SIGCHLD/SIGURG/SIGWINCH.
        let forwarded = FORWARDED
            .iter()
            .copied()
            .chain(libc::SIGRTMIN()..=libc::SIGRTMAX());
        let install = move |_pid: i32| match signal_hook::iterator::Signals::new(forwarded) {
            Ok(mut signals) => {
                let spawned = std::thread::Builder::new().spawn(move || {
                    for sig in signals.forever() {
                        if let Err(e) = forwarder.pal.kill(-1, sig) {
                            tracing::warn!("forward signal {sig}: {e}");
                        }
                    }
                });
                if let Err(e) = spawned {
                    tracing::warn!("enclave: cannot forward signals: {e}");
                }
            }
            Err(e) => tracing::warn!("enclave: cannot forward signals: {e}"),
        };
        let created = std::mem::take(&mut *w.init.lock().unwrap_or_else(|p| p.into_inner()));
        let code = match created {
            // Made at `create`: only run it. Its stderr duplicate stays open until then.
            InitProcess::Created { pid, stderr } => {
                install(pid);
                let code = w.pal.exec(pid);
                drop(stderr);
                code
            }
            _ => w
                .pal
                .run_with(&argv, &env, pal::StdioFds::inherit(), install),
        }
        .map_err(|e| ExecutorError::Execution(format!("enclave: {e}").into()))?;
        if let Err(e) = w.pal.destroy() {
            tracing::warn!("enclave: {e}");
        }
        std::process::exit(code);
    }
}
