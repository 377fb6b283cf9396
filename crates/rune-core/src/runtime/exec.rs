//! `exec`: a new process in a running (or created) container, started by libcontainer
//! in a plain container or through the agent and the PAL in an enclave container.

use std::collections::HashMap;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::SigSet;
use nix::unistd::Pid;

use super::{wait_forwarding_signals, Runtime};
use crate::error::{Result, RuneError};
use crate::executor::ProcessExecutor;
use crate::pidfile;
use crate::signal;
use crate::state::status_name;
use crate::{agent, console};
use crate::{exec_flags, image};

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A `process.json` replacing every other option below.
    pub process: Option<PathBuf>,
    /// Command and arguments.
    pub args: Vec<String>,
    /// Extra environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: Option<PathBuf>,
    /// `uid[:gid]`.
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    /// `--tty`: the process gets a pty whose master goes to `console_socket` (with
    /// `process`, that file's `terminal` decides).
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub detach: bool,
    /// Exec into a paused container (the process starts frozen).
    pub ignore_paused: bool,
    /// `--cgroup` (repeatable): `[controller[,controller…]:]path` of existing
    /// sub-cgroups of the container to run the process in (see
    /// [`crate::exec_flags::parse_sub_cgroups`]).
    pub sub_cgroups: Vec<String>,
    /// `--apparmor`: the AppArmor profile of the process.
    pub apparmor: Option<String>,
    /// `--process-label`: the SELinux label of the process.
    pub process_label: Option<String>,
}

impl Runtime {
    /// `exec`: runs a new process in a running container. A plain container's process
    /// is started and its pid returned; an enclave container's runs through the PAL of
    /// the container's init (over the agent socket) and its exit code is returned.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<Exec> {
        let c = self.load(id)?;
        // As runc's init would refuse them, before any process is made. An unreadable
        // --process file is reported where it is read.
        // The checks name config.json's fields; here the values come from flags.
        let from = |flag: &str| {
            let flag = flag.to_string();
            move |e: RuneError| match e {
                RuneError::Config { field, message } => RuneError::InvalidArgument {
                    flag: format!("{flag} ({field})"),
                    message,
                },
                other => other,
            }
        };
        crate::spec::check_env(&opts.env).map_err(from("--env"))?;
        let mut user = libcontainer::oci_spec::runtime::User::default();
        if let Some((uid, gid)) = opts.user {
            user.set_uid(uid);
            user.set_gid(gid.unwrap_or(0));
        }
        user.set_additional_gids(Some(opts.additional_gids.clone()));
        crate::spec::check_user(&user).map_err(from("--user/--additional-gids"))?;
        // Parsed as it will run: unknown capabilities left out (runc warns and runs).
        if let Some(process) = opts
            .process
            .as_ref()
            .and_then(|path| fs::read(path).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|mut v| {
                crate::spec::drop_unknown_capabilities(&mut v, "/capabilities");
                serde_json::from_value::<libcontainer::oci_spec::runtime::Process>(v).ok()
            })
        {
            crate::spec::check_env(process.env().as_deref().unwrap_or_default())
                .map_err(from("--process"))?;
            crate::spec::check_user(process.user()).map_err(from("--process"))?;
            if !process.cwd().is_absolute() {
                return Err(from("--process")(RuneError::config(
                    "process.cwd",
                    format!("{} is not an absolute path", process.cwd().display()),
                )));
            }
            crate::spec::check_lsm_config(
                process.apparmor_profile().as_deref(),
                process.selinux_label().as_deref(),
                None,
            )
            .map_err(from("--process"))?;
        }
        if c.status() == ContainerStatus::Running
            && self.container_dir(id).join(agent::SOCKET).exists()
        {
            // A confidential-image enclave admits only its signed boot program: it
            // becomes the requested process in the image's configuration.
            let image = c
                .state
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(image::ROOTFS_TMPFS_ANNOTATION));
            return self.exec_in_enclave(id, opts, image).map(Exec::Enclave);
        }
        self.exec_process(id, c, opts)
    }

    /// Starts `opts`' process through the enclave runtime of a running enclave
    /// container; the process runs from when this returns.
    fn exec_in_enclave(&self, id: &str, opts: &ExecOptions, image: bool) -> Result<EnclaveExec> {
        use crate::agent::*;
        use std::os::fd::AsRawFd;
        exec_flags::refuse_for_enclave(opts)?;
        // Unknown capabilities are ignored with runc's warning, as for a plain exec.
        let (_, mut unknown) = crate::spec::split_known_capabilities(&opts.capabilities);
        let (args, mut env, terminal) = match &opts.process {
            Some(path) => {
                let bytes = fs::read(path)
                    .map_err(|e| RuneError::io(format!("read {}", path.display()), e))?;
                let invalid = |e: serde_json::Error| RuneError::InvalidArgument {
                    flag: "--process".into(),
                    message: e.to_string(),
                };
                // Capabilities do not apply inside the enclave runtime; unknown ones must
                // not refuse the exec (the shim passes the container's).
                let mut value: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(invalid)?;
                for d in crate::spec::drop_unknown_capabilities(&mut value, "/capabilities") {
                    if !unknown.contains(&d) {
                        unknown.push(d);
                    }
                }
                let p: libcontainer::oci_spec::runtime::Process =
                    serde_json::from_value(value).map_err(invalid)?;
                (
                    p.args().clone().unwrap_or_default(),
                    p.env().clone().unwrap_or_default(),
                    p.terminal().unwrap_or(false),
                )
            }
            None => (opts.args.clone(), Vec::new(), opts.tty),
        };
        if !unknown.is_empty() {
            tracing::warn!(
                "ignoring unknown or unavailable capabilities: [{}]",
                unknown.join(" ")
            );
        }
        env.extend(opts.env.iter().cloned());
        // The ENCLAVE_* variables configured the enclave, which exists; like the init's,
        // the process does not see them (docker's exec passes the container's whole env).
        env.retain(|kv| {
            !crate::enclave::is_enclave_var(kv.split_once('=').map_or(kv.as_str(), |(k, _)| k))
        });
        if args.is_empty() {
            return Err(RuneError::InvalidArgument {
                flag: "exec".into(),
                message: "a command or --process is required".into(),
            });
        }
        let args = if image {
            [image::BOOT_PROGRAM, "--exec", "--"]
                .into_iter()
                .map(String::from)
                .chain(args)
                .collect()
        } else {
            args
        };
        let foreground = terminal && !opts.detach && opts.console_socket.is_none();
        let size = if foreground {
            console::HostTerminal::find().ok().and_then(|t| t.size())
        } else {
            None
        };
        let (console, host) = if foreground {
            // A terminal of rune's own, as for a plain container: the agent sends the
            // pty master over one end of a pair, rune proxies it from the other.
            let host = console::HostTerminal::find()?;
            let (mine, theirs) =
                UnixStream::pair().map_err(|e| RuneError::io("console socket pair", e))?;
            (Some(theirs), Some((host, mine)))
        } else {
            (console_connection(terminal, opts)?, None)
        };
        let ctx = |what: &str| format!("agent of {id}: {what}");
        let mut conn = agent::connect(&self.container_dir(id))
            .map_err(|e| RuneError::io(ctx("connect"), e))?;
        let request = AgentServiceRequest {
            request: Some(Request::Exec(Execute {
                argv: args.join(" "),
                envp: env.join(" "),
                args,
                env,
                terminal,
                rows: size.map_or(0, |(r, _)| r.into()),
                cols: size.map_or(0, |(_, c)| c.into()),
            })),
        };
        write_frame(&mut conn, &request).map_err(|e| RuneError::io(ctx("send"), e))?;
        let (sig_r, sig_w) = std::io::pipe().map_err(|e| RuneError::io("pipe", e))?;
        let fds = match &console {
            Some(c) => vec![sig_r.as_raw_fd(), c.as_raw_fd()],
            None => vec![sig_r.as_raw_fd(), 0, 1, 2],
        };
        send_fds(&conn, &fds).map_err(|e| RuneError::io(ctx("send stdio"), e))?;
        drop(sig_r);
        drop(console);
        let proxy = match host {
            Some((host, mine)) => {
                Some(console::receive_master(&mine).and_then(|m| console::Proxy::start(host, m))?)
            }
            None => None,
        };
        // The process exists once the agent says it started; a process that could not
        // be made is this exec's failure (runc's exec fails so, before returning a pid).
        let first = read_frame::<AgentServiceResponse>(&mut conn);
        let fail = |proxy: Option<console::Proxy>, e: RuneError| {
            if let Some(p) = proxy {
                p.finish();
            }
            Err(e)
        };
        let early = match first {
            Ok(AgentServiceResponse {
                response: Some(Response::Started(_)),
            }) => None,
            Ok(AgentServiceResponse {
                response: Some(Response::Exec(r)),
            }) if !r.error.is_empty() => {
                return fail(
                    proxy,
                    RuneError::Enclave(format!("exec in {id}: {}", r.error)),
                )
            }
            // An agent of an older rune: no start frame, the process already ended.
            Ok(AgentServiceResponse {
                response: Some(Response::Exec(r)),
            }) => Some(r.exit_code),
            Ok(_) => {
                return fail(
                    proxy,
                    RuneError::Enclave(format!("exec in {id}: unexpected agent response")),
                )
            }
            Err(e) => return fail(proxy, RuneError::io(ctx("receive"), e)),
        };
        Ok(EnclaveExec {
            id: id.to_string(),
            conn: conn.into(),
            signals: sig_w.into(),
            proxy,
            early,
        })
    }

    fn exec_process(&self, id: &str, c: Container, opts: &ExecOptions) -> Result<Exec> {
        // As runc: a created container takes processes (it stays created), a paused one
        // only with --ignore-paused.
        let what = match c.status() {
            ContainerStatus::Running | ContainerStatus::Created => None,
            ContainerStatus::Paused if opts.ignore_paused => None,
            ContainerStatus::Paused => {
                Some("cannot exec in a paused container (use --ignore-paused)")
            }
            _ => Some("cannot exec in a stopped container"),
        };
        if let Some(what) = what {
            return Err(RuneError::State {
                id: id.to_string(),
                status: status_name(c.status()).to_string(),
                what,
            });
        }
        if c.status() == ContainerStatus::Created
            && self.container_dir(id).join(agent::SOCKET).exists()
        {
            return Err(RuneError::State {
                id: id.to_string(),
                status: "created".into(),
                what: "an enclave container takes processes once started (its agent serves from start)",
            });
        }
        let apparmor = exec_flags::lsm_value(&opts.apparmor);
        let process_label = exec_flags::lsm_value(&opts.process_label);
        exec_flags::check_lsm(apparmor.as_deref(), process_label.as_deref())?;
        let sub_cgroups = exec_flags::parse_sub_cgroups(&opts.sub_cgroups)?;
        if opts.process.is_none() && opts.args.is_empty() {
            return Err(RuneError::InvalidArgument {
                flag: "exec".into(),
                message: "a command or --process is required".into(),
            });
        }
        // Capabilities this runtime does not know are left out with runc's warning, as at
        // create: from --cap, and from a --process file (through a filtered copy).
        let (capabilities, mut unknown) = crate::spec::split_known_capabilities(&opts.capabilities);
        let mut process_copy = None;
        if let Some(path) = &opts.process {
            if let Some(mut value) = fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            {
                let dropped = crate::spec::drop_unknown_capabilities(&mut value, "/capabilities");
                if !dropped.is_empty() {
                    let copy = self
                        .root
                        .join(format!(".process-{}.json", std::process::id()));
                    fs::write(&copy, serde_json::to_vec(&value).expect("JSON serialises"))
                        .map_err(|e| RuneError::io("exec: copy of --process", e))?;
                    process_copy = Some(RemoveOnDrop(copy));
                    for d in dropped {
                        if !unknown.contains(&d) {
                            unknown.push(d);
                        }
                    }
                }
            }
        }
        if !unknown.is_empty() {
            tracing::warn!(
                "ignoring unknown or unavailable capabilities: [{}]",
                unknown.join(" ")
            );
        }
        let process_path = process_copy
            .as_ref()
            .map(|c| c.0.clone())
            .or_else(|| opts.process.clone());
        let foreground = !opts.detach && opts.console_socket.is_none() && process_terminal(opts)?;
        let console = if foreground {
            let host = console::HostTerminal::find()?;
            Some((host, console::ConsoleSocket::bind(&self.root)?))
        } else {
            None
        };
        let env: HashMap<String, String> = opts
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(ProcessExecutor)
            .with_root_path(&self.root)
            .map_err(RuneError::lc("state root"))?
            .with_console_socket(match &console {
                Some((_, socket)) => Some(socket.path()),
                None => opts.console_socket.as_deref(),
            })
            .with_preserved_fds(opts.preserve_fds)
            .as_tenant()
            .with_terminal(opts.tty)
            // libcontainer takes a console socket only from a detached caller; the
            // detach flag has no other effect there.
            .with_detach(opts.detach || console.is_some())
            .with_cwd(opts.cwd.as_ref())
            .with_env(env)
            .with_process(process_path.as_ref())
            .with_no_new_privs(opts.no_new_privs)
            .with_container_args(opts.args.clone())
            .with_additional_gids(opts.additional_gids.clone())
            .with_user(opts.user.map(|(u, _)| u))
            .with_group(opts.user.and_then(|(_, g)| g))
            .with_capabilities(capabilities)
            .with_ignore_paused(opts.ignore_paused)
            .with_sub_cgroups(sub_cgroups)
            .with_apparmor(apparmor)
            .with_process_label(process_label)
            .build()
            .map_err(|e| {
                super::reap_failed_children();
                // The init may end while the process is being made (a paused container
                // whose program exits on thaw): the kernel then refuses the clone into
                // its dead pid namespace with ENOMEM, or, while the init is still
                // exiting, joining its namespaces fails with ENOENT. Say what happened,
                // as runc does for a stopped container.
                match c.pid() {
                    Some(init) if super::process_ending(init) => RuneError::State {
                        id: id.to_string(),
                        status: "stopped".into(),
                        what: "cannot exec in a stopped container",
                    },
                    _ => RuneError::lc(format!("exec in {id}"))(e),
                }
            })?;
        let proxy = match console {
            Some((host, socket)) => match socket
                .receive()
                .and_then(|m| console::Proxy::start(host, m))
            {
                Ok(proxy) => Some(proxy),
                Err(err) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(pid, None);
                    return Err(err);
                }
            },
            None => None,
        };
        if let Some(path) = &opts.pid_file {
            pidfile::write(path, pid.as_raw())?;
        }
        Ok(match proxy {
            Some(proxy) => Exec::Terminal(pid, proxy),
            None => Exec::Started(pid),
        })
    }

    /// Waits for a process started by [`Runtime::exec`] without `detach`.
    pub fn wait_exec(&self, pid: Pid) -> Result<i32> {
        wait_forwarding_signals(pid, None)
    }

    /// Waits for a process [`Runtime::exec`] gave rune's terminal ([`Exec::Terminal`]).
    pub fn wait_exec_with_terminal(&self, pid: Pid, proxy: console::Proxy) -> Result<i32> {
        let code = wait_forwarding_signals(pid, Some(proxy.resizer()));
        proxy.finish();
        code
    }
}

/// Whether the exec'd process asks for a terminal: `--tty`, or with `--process` that
/// file's `terminal`.
fn process_terminal(opts: &ExecOptions) -> Result<bool> {
    match &opts.process {
        None => Ok(opts.tty),
        Some(path) => {
            let bytes =
                fs::read(path).map_err(|e| RuneError::io(format!("read {}", path.display()), e))?;
            let invalid = |e: serde_json::Error| RuneError::InvalidArgument {
                flag: "--process".into(),
                message: e.to_string(),
            };
            // Unknown capabilities are left out (with a warning) by exec, not refused.
            let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(invalid)?;
            crate::spec::drop_unknown_capabilities(&mut value, "/capabilities");
            let p: libcontainer::oci_spec::runtime::Process =
                serde_json::from_value(value).map_err(invalid)?;
            Ok(p.terminal().unwrap_or(false))
        }
    }
}

/// What `exec` did.
#[derive(Debug)]
pub enum Exec {
    /// A process was started in the container; wait for it with [`Runtime::wait_exec`].
    Started(Pid),
    /// A foreground process was started with a new terminal proxied to rune's; wait
    /// for it with [`Runtime::wait_exec_with_terminal`].
    Terminal(Pid, console::Proxy),
    /// A process was started by the enclave runtime of an enclave container.
    Enclave(EnclaveExec),
}

/// A process running in an enclave, started by `rune exec`: the open request to the
/// container's agent and the pipe that carries signals to the process.
///
/// The process lives as long as its caller: when the signal pipe closes before the
/// process ends (its waiter was killed), the agent kills the process. A detached exec
/// hands both descriptors to a small waiter process (`rune exec -d` gives its pid), so
/// signalling or killing that pid signals or kills the enclave process, as a shim
/// expects of an exec'd pid.
#[derive(Debug)]
pub struct EnclaveExec {
    id: String,
    conn: std::os::fd::OwnedFd,
    signals: std::os::fd::OwnedFd,
    /// A foreground process's terminal, proxied to rune's.
    proxy: Option<console::Proxy>,
    /// The exit code, when the agent answered with it at once (an older agent).
    early: Option<i32>,
}

impl EnclaveExec {
    /// The agent connection and the signal pipe, to hand to a waiter process.
    pub fn into_fds(self) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        (self.conn, self.signals)
    }

    /// Takes over an exec from the descriptors [`EnclaveExec::into_fds`] gave.
    pub fn from_fds(
        id: &str,
        conn: std::os::fd::OwnedFd,
        signals: std::os::fd::OwnedFd,
    ) -> EnclaveExec {
        EnclaveExec {
            id: id.to_string(),
            conn,
            signals,
            proxy: None,
            early: None,
        }
    }

    /// Forwards the signals this process receives to the enclave process and returns
    /// its exit code.
    pub fn wait(self) -> Result<i32> {
        use crate::agent::*;
        let id = self.id;
        if let Some(code) = self.early {
            if let Some(proxy) = self.proxy {
                proxy.finish();
            }
            return Ok(code);
        }
        forward_signals_to(
            std::io::PipeWriter::from(self.signals),
            self.proxy.as_ref().map(|p| p.resizer()),
        )?;
        let mut conn = std::os::unix::net::UnixStream::from(self.conn);
        let response = read_frame::<AgentServiceResponse>(&mut conn);
        if let Some(proxy) = self.proxy {
            proxy.finish();
        }
        let response = response.map_err(|e| RuneError::io(format!("agent of {id}: receive"), e))?;
        match response.response {
            Some(Response::Exec(r)) if r.error.is_empty() => Ok(r.exit_code),
            Some(Response::Exec(r)) => {
                Err(RuneError::Enclave(format!("exec in {id}: {}", r.error)))
            }
            _ => Err(RuneError::Enclave(format!(
                "exec in {id}: unexpected agent response"
            ))),
        }
    }
}

/// For an enclave exec: checks `--tty` and `--console-socket` as runc's
/// `checkTerminal` does (a console socket only for a detached process with a terminal,
/// and such a process needs one), then connects to the console socket.
fn console_connection(
    terminal: bool,
    opts: &ExecOptions,
) -> Result<Option<std::os::unix::net::UnixStream>> {
    let refuse = |message: &str| {
        Err(RuneError::InvalidArgument {
            flag: "--console-socket".into(),
            message: message.into(),
        })
    };
    match (&opts.console_socket, opts.detach && terminal) {
        (None, false) => Ok(None),
        (None, true) => refuse("a detached process with a terminal needs one"),
        (Some(_), false) => refuse("only for a detached process with a terminal"),
        (Some(path), true) => std::os::unix::net::UnixStream::connect(path)
            .map(Some)
            .map_err(|e| RuneError::io(format!("connect to {}", path.display()), e)),
    }
}

/// Blocks signals in this thread and forwards each one received to `pipe` as a 4-byte
/// little-endian number, from a helper thread, for the life of the process.
/// With a `resizer`, `SIGWINCH` resizes the process's terminal instead.
fn forward_signals_to(pipe: std::io::PipeWriter, resizer: Option<console::Resizer>) -> Result<()> {
    let set = SigSet::all();
    set.thread_block()
        .map_err(|e| RuneError::io("block signals", e.into()))?;
    std::thread::spawn(move || {
        use std::io::Write;
        let mut pipe = pipe;
        while let Ok(sig) = signal::wait(&set) {
            if sig.as_raw() == libc::SIGWINCH {
                if let Some(r) = &resizer {
                    r.resize();
                }
                continue;
            }
            if signal::is_not_forwarded(sig) {
                continue;
            }
            if pipe.write_all(&sig.as_raw().to_le_bytes()).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// A file removed when this is dropped (the filtered copy of an `exec --process` file).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
