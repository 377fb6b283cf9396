//! The Enclave Runtime PAL API, v1 to v3.
//!
//! A PAL ("platform abstraction layer") is a shared object an enclave runtime (Occlum,
//! WAMR, `liberpal-sim`, the skeleton test PAL) exports; rune drives the enclave through
//! it instead of calling `execve`. [`Pal::open`] loads one, resolves its symbols and
//! settles the API version; the methods then call it with the C structs of [`ffi`].
//!
//! This crate knows nothing of containers. All `unsafe` code of the project's PAL edge
//! lives here.
//!
//! ```no_run
//! use pal::{Pal, StdioFds};
//! let pal = Pal::open("/usr/lib/liberpal-sim.so".as_ref())?;
//! pal.init("debug", "info")?;
//! let code = pal.run(&["/bin/hello".into()], &[], StdioFds::inherit())?;
//! pal.destroy()?;
//! # Ok::<(), pal::PalError>(())
//! ```

pub mod ffi;
#[cfg(feature = "test-pal")]
pub mod testing;

use std::ffi::{CString, NulError};
use std::io::Read;
use std::os::raw::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr;

use ffi::*;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

/// The highest PAL API version this loader speaks.
pub const MAX_VERSION: u32 = 3;

/// Size of an SGX TARGETINFO and REPORT, which `pal_get_local_report` exchanges.
pub const SGX_TARGET_INFO_SIZE: usize = 512;
pub const SGX_REPORT_SIZE: usize = 432;

/// What went wrong loading or calling a PAL. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum PalError {
    /// The file cannot be opened or read. The cause is in the message, not also a
    /// `source()`, so that printers of error chains say it once.
    #[error("enclave runtime {}: {cause}", path.display())]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("enclave runtime {}: not an ELF shared object", path.display())]
    NotElf { path: PathBuf },
    #[error("enclave runtime {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("enclave runtime {}: PAL API v{version} requires symbol {symbol}, which it does not export", path.display())]
    MissingSymbol {
        path: PathBuf,
        version: u32,
        symbol: &'static str,
    },
    #[error("enclave runtime {}: unsupported PAL API version {version} (this rune speaks 1 to {MAX_VERSION})", path.display())]
    UnsupportedVersion { path: PathBuf, version: i32 },
    /// A PAL call returned a negative value. `code` is that value; when it is `-errno`
    /// the errno name is shown too.
    #[error("{call}() failed with {code}{}", errno_suffix(*code))]
    Call { call: &'static str, code: i32 },
    #[error("{call}() is not supported by PAL API v{version}")]
    NotSupported { call: &'static str, version: u32 },
    #[error("argument contains a NUL byte: {0}")]
    Nul(#[from] NulError),
    #[error("pal_get_local_report: {0}")]
    Report(String),
}

fn errno_suffix(code: i32) -> String {
    if code < 0 {
        let errno = nix::errno::Errno::from_raw(-code);
        if errno != nix::errno::Errno::UnknownErrno {
            return format!(" ({errno:?}: {})", errno.desc());
        }
    }
    String::new()
}

/// The payload's stdio, as file descriptor numbers in the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioFds {
    pub stdin: i32,
    pub stdout: i32,
    pub stderr: i32,
}

impl StdioFds {
    /// This process's own fds 0, 1 and 2.
    pub fn inherit() -> Self {
        StdioFds {
            stdin: 0,
            stdout: 1,
            stderr: 2,
        }
    }
}

struct Symbols {
    init: InitFn,
    create_process: Option<CreateProcessFn>,
    exec: Option<ExecFn>,
    exec_v1: Option<ExecV1Fn>,
    kill: Option<KillFn>,
    destroy: DestroyFn,
    get_local_report: Option<GetLocalReportFn>,
}

/// A loaded PAL. Its function pointers stay valid while it lives.
pub struct Pal {
    path: PathBuf,
    version: u32,
    syms: Symbols,
    // Keeps the object mapped; declared last so it is dropped after everything else.
    _lib: Library,
}

impl std::fmt::Debug for Pal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pal")
            .field("path", &self.path)
            .field("version", &self.version)
            .finish()
    }
}

/// The argv and env vectors of one call, kept alive while the PAL reads them.
struct CVec {
    _strings: Vec<CString>,
    ptrs: Vec<*const std::os::raw::c_char>,
}

impl CVec {
    fn new(items: &[String]) -> Result<Self, PalError> {
        let strings = items
            .iter()
            .map(|s| CString::new(s.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ptrs: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(ptr::null());
        Ok(CVec {
            _strings: strings,
            ptrs,
        })
    }
}

fn check(call: &'static str, rc: c_int) -> Result<c_int, PalError> {
    // Only negative values are errors: the skeleton PAL returns a positive exit code
    // from pal_exec on one of its paths.
    if rc < 0 {
        Err(PalError::Call { call, code: rc })
    } else {
        Ok(rc)
    }
}

impl Pal {
    /// Loads the PAL at `path` with `dlopen(RTLD_NOW)`, resolves its symbols and its
    /// version (no `pal_get_version` means v1), and checks that every symbol its version
    /// requires is there. Nothing of the PAL runs but its constructors and
    /// `pal_get_version`.
    pub fn open(path: &Path) -> Result<Pal, PalError> {
        let mut magic = [0u8; 4];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|cause| PalError::Unreadable {
                path: path.to_path_buf(),
                cause,
            })?;
        if magic != *b"\x7fELF" {
            return Err(PalError::NotElf {
                path: path.to_path_buf(),
            });
        }
        // SAFETY: loading a shared object runs its initialisers. The PAL path is chosen by
        // whoever configures the container (a host path, as in the original rune), and
        // loading it is the purpose of this call.
        let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
            PalError::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;

        macro_rules! sym {
            ($ty:ty, $name:literal) => {
                // SAFETY: the symbol, when present, has the C signature the PAL API gives
                // it; the pointer is copied out and used only while `lib` is alive.
                unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes()) }
                    .ok()
                    .map(|s| *s)
            };
        }

        let version = match sym!(GetVersionFn, "pal_get_version") {
            None => 1,
            // SAFETY: pal_get_version takes no arguments and returns an int.
            Some(f) => unsafe { f() },
        };
        if !(1..=MAX_VERSION as i32).contains(&version) {
            return Err(PalError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let version = version as u32;
        let missing = |symbol| PalError::MissingSymbol {
            path: path.to_path_buf(),
            version,
            symbol,
        };
        let init = sym!(InitFn, "pal_init").ok_or_else(|| missing("pal_init"))?;
        let destroy = sym!(DestroyFn, "pal_destroy").ok_or_else(|| missing("pal_destroy"))?;
        let (create_process, exec, exec_v1) = if version == 1 {
            let exec_v1 = sym!(ExecV1Fn, "pal_exec").ok_or_else(|| missing("pal_exec"))?;
            (None, None, Some(exec_v1))
        } else {
            let cp = sym!(CreateProcessFn, "pal_create_process")
                .ok_or_else(|| missing("pal_create_process"))?;
            let exec = sym!(ExecFn, "pal_exec").ok_or_else(|| missing("pal_exec"))?;
            (Some(cp), Some(exec), None)
        };
        let kill = if version >= 2 {
            Some(sym!(KillFn, "pal_kill").ok_or_else(|| missing("pal_kill"))?)
        } else {
            None
        };
        let get_local_report = if version >= 3 {
            Some(
                sym!(GetLocalReportFn, "pal_get_local_report")
                    .ok_or_else(|| missing("pal_get_local_report"))?,
            )
        } else {
            None
        };
        Ok(Pal {
            path: path.to_path_buf(),
            version,
            syms: Symbols {
                init,
                create_process,
                exec,
                exec_v1,
                kill,
                destroy,
                get_local_report,
            },
            _lib: lib,
        })
    }

    /// The PAL API version in effect (1 to 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The path it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `pal_init`: builds the enclave. `args` are the runtime args (space-separated),
    /// `log_level` one of `trace debug info warning error fatal panic off`.
    pub fn init(&self, args: &str, log_level: &str) -> Result<(), PalError> {
        let args = CString::new(args)?;
        let log_level = CString::new(log_level)?;
        let v1 = PalAttrV1 {
            args: args.as_ptr(),
            log_level: log_level.as_ptr(),
        };
        let v3 = PalAttrV3 {
            attr_v1: v1,
            fd: -1,
            addr: 0,
        };
        let attr: *const c_void = if self.version >= 3 {
            &v3 as *const PalAttrV3 as *const c_void
        } else {
            &v1 as *const PalAttrV1 as *const c_void
        };
        // SAFETY: `attr` points to the struct of this version, whose strings outlive the call.
        check("pal_init", unsafe { (self.syms.init)(attr) }).map(drop)
    }

    /// `pal_create_process` (v2, v3): creates the payload `argv` (argv[0] is the path in
    /// the enclave's file system) with `env`, without running it; returns its PAL pid.
    pub fn create_process(
        &self,
        argv: &[String],
        env: &[String],
        stdio: StdioFds,
    ) -> Result<i32, PalError> {
        let f = self.syms.create_process.ok_or(PalError::NotSupported {
            call: "pal_create_process",
            version: self.version,
        })?;
        let argv_c = CVec::new(argv)?;
        let env_c = CVec::new(env)?;
        let mut fds = PalStdioFds {
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
        };
        let mut pid: c_int = 0;
        let mut args = PalCreateProcessArgs {
            path: argv_c.ptrs[0],
            argv: argv_c.ptrs.as_ptr(),
            env: env_c.ptrs.as_ptr(),
            stdio: &mut fds,
            pid: &mut pid,
        };
        // SAFETY: every pointer in `args` refers to locals that outlive the call; the
        // vectors are NULL-terminated.
        check("pal_create_process", unsafe { f(&mut args) })?;
        Ok(pid)
    }

    /// `pal_exec` (v2, v3): runs the created process `pid` to its end; returns its exit
    /// value, taken as a plain exit code.
    pub fn exec(&self, pid: i32) -> Result<i32, PalError> {
        let f = self.syms.exec.ok_or(PalError::NotSupported {
            call: "pal_exec",
            version: self.version,
        })?;
        let mut exit_value: c_int = 0;
        let mut args = PalExecArgs {
            pid,
            exit_value: &mut exit_value,
        };
        // SAFETY: `args` and `exit_value` outlive the call.
        check("pal_exec", unsafe { f(&mut args) })?;
        Ok(exit_value)
    }

    /// Runs `argv` to its end the way this PAL's version does it: v1 `pal_exec` (which
    /// takes no environment), or `pal_create_process` + `pal_exec`. Returns the exit
    /// value. `on_created` gets the PAL pid (v2+; 0 from v1, which has none) before the
    /// payload runs: once `pal_create_process` succeeded, or as v1's `pal_exec` begins.
    pub fn run_with(
        &self,
        argv: &[String],
        env: &[String],
        stdio: StdioFds,
        on_created: impl FnOnce(i32),
    ) -> Result<i32, PalError> {
        if self.version == 1 {
            let f = self.syms.exec_v1.expect("v1 PAL has pal_exec");
            let argv_c = CVec::new(argv)?;
            let mut fds = PalStdioFds {
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
            };
            let path = argv_c.ptrs.first().copied().unwrap_or(ptr::null());
            let mut exit_code: c_int = 0;
            // v1 makes and runs the process in one call: it has no pid, and its start
            // is announced as it begins.
            on_created(0);
            // SAFETY: all pointers refer to locals that outlive the call; a NULL path is
            // what v1 passes for an empty command.
            check("pal_exec", unsafe {
                f(path, argv_c.ptrs.as_ptr(), &mut fds, &mut exit_code)
            })?;
            return Ok(exit_code);
        }
        let pid = self.create_process(argv, env, stdio)?;
        on_created(pid);
        self.exec(pid)
    }

    /// [`Pal::run_with`] without the pid callback.
    pub fn run(&self, argv: &[String], env: &[String], stdio: StdioFds) -> Result<i32, PalError> {
        self.run_with(argv, env, stdio, |_| {})
    }

    /// `pal_kill` (v2, v3): `pid` -1 means every process, 0 the current one. A no-op on v1.
    pub fn kill(&self, pid: i32, sig: i32) -> Result<(), PalError> {
        match self.syms.kill {
            None => Ok(()),
            // SAFETY: plain integer arguments.
            Some(f) => check("pal_kill", unsafe { f(pid, sig) }).map(drop),
        }
    }

    /// `pal_destroy`: tears the enclave down.
    pub fn destroy(&self) -> Result<(), PalError> {
        // SAFETY: no arguments.
        check("pal_destroy", unsafe { (self.syms.destroy)() }).map(drop)
    }

    /// `pal_get_local_report` (v3): a local report for `target_info`, written into
    /// `report`; returns its length.
    pub fn local_report(&self, target_info: &[u8], report: &mut [u8]) -> Result<usize, PalError> {
        let f = self.syms.get_local_report.ok_or(PalError::NotSupported {
            call: "pal_get_local_report",
            version: self.version,
        })?;
        let mut ti = target_info.to_vec();
        let mut len = c_int::try_from(report.len())
            .map_err(|_| PalError::Report("report buffer too large".into()))?;
        // SAFETY: both buffers are valid for the lengths passed; the PAL writes at most
        // `len` bytes to `report` and updates `len`.
        let rc = unsafe {
            f(
                ti.as_mut_ptr().cast(),
                ti.len() as c_int,
                report.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(PalError::Call {
                call: "pal_get_local_report",
                code: rc,
            });
        }
        usize::try_from(len)
            .ok()
            .filter(|&l| l <= report.len())
            .ok_or_else(|| PalError::Report(format!("PAL returned length {len}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_missing_and_non_elf_paths() {
        let err = Pal::open(Path::new("/no/such/pal.so")).unwrap_err();
        assert!(matches!(err, PalError::Unreadable { .. }), "{err}");
        let dir = std::env::temp_dir().join(format!("pal-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("not-elf.so");
        std::fs::write(&text, "#!/bin/sh\n").unwrap();
        let err = Pal::open(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "enclave runtime {}: not an ELF shared object",
                text.display()
            )
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn call_errors_name_the_errno() {
        let e = PalError::Call {
            call: "pal_init",
            code: -22,
        };
        assert_eq!(
            e.to_string(),
            "pal_init() failed with -22 (EINVAL: Invalid argument)"
        );
        let e = PalError::Call {
            call: "pal_exec",
            code: -1,
        };
        assert!(e
            .to_string()
            .starts_with("pal_exec() failed with -1 (EPERM"));
    }
}
