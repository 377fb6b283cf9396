//! Container lifecycle operations, one method per runc command.
//!
//! A [`Runtime`] is a state root (`--root`) plus the cgroup driver choice. Every method
//! is called from a single-threaded process: libcontainer clones the caller, which is
//! only safe when no other thread exists.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupConfig, CgroupManager, ControllerOpt};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::runtime::LinuxResources;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::SigSet;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Result, RuneError};
use crate::events;
use crate::executor::{EnclaveWorkload, RuneExecutor};
use crate::pidfile;
use crate::signal::{self, Signal};
use crate::spec::{validate_id, Bundle};
use crate::state::{status_name, ContainerState};
use crate::{agent, console, enclave, image};

mod exec;

pub use exec::{EnclaveExec, Exec, ExecOptions};

/// The default state root, as runc's `/run/runc`.
pub const DEFAULT_ROOT: &str = "/run/rune";

/// A state root and the options that apply to every container in it.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    systemd_cgroup: bool,
}

/// Options of `create` and `run`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Bundle directory holding `config.json`.
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// File that receives the init pid, written atomically.
    pub pid_file: Option<PathBuf>,
    /// Use `MS_MOVE` instead of `pivot_root`.
    pub no_pivot: bool,
    /// Extra file descriptors (from 3) passed to the container.
    pub preserve_fds: i32,
    /// `run --no-subreaper`: a foreground `run` does not make itself the child subreaper
    /// (runc does by default, so orphans of a container sharing its pid namespace are
    /// reparented to it and reaped).
    pub no_subreaper: bool,
}

impl Runtime {
    /// A runtime keeping state under `root`. Nothing is created until a container is.
    pub fn new(root: impl Into<PathBuf>, systemd_cgroup: bool) -> Self {
        Runtime {
            root: root.into(),
            systemd_cgroup,
        }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Loads a container's state, refreshing its status from the live process.
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = self.container_dir(id);
        if !dir.join("state.json").exists() {
            return Err(RuneError::NotFound(id.to_string()));
        }
        // libcontainer rewrites state.json in place: a read racing a write can see it
        // empty or partial. Such a read is retried briefly.
        let mut attempts = 0;
        loop {
            match Container::load(dir.clone()) {
                Ok(c) => return Ok(c),
                Err(e) if attempts < 20 && dir.join("state.json").exists() => {
                    tracing::debug!("load {id}: {e}; retrying");
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) if !dir.join("state.json").exists() => {
                    return Err(RuneError::NotFound(id.to_string()))
                }
                Err(e) => return Err(RuneError::lc(format!("load container {id}"))(e)),
            }
        }
    }

    /// `create`: sets up the container and leaves its init process waiting for `start`.
    ///
    /// On failure nothing is left: no state directory, no cgroup, no process.
    pub fn create(&self, id: &str, opts: &CreateOptions, detach: bool) -> Result<Container> {
        validate_id(id)?;
        let bundle = Bundle::load(&opts.bundle)?;
        self.ensure_root()?;
        let dir = self.container_dir(id);
        if dir.exists() {
            return Err(RuneError::Exists(id.to_string()));
        }
        // An enclave's PAL is loaded here, in the host's mount namespace, before any
        // state exists: a bad PAL fails create with nothing to clean up.
        // The agent socket is bound under a temporary name (libcontainer refuses an
        // existing container directory) and moved into it once the container exists.
        let agent_name = format!(".agent-{}.sock", std::process::id());
        let agent_tmp = self.root.join(&agent_name);
        // A spec rune changed (unknown capabilities left out) is built from a copy.
        let mut injected = None;
        if !bundle.dropped_capabilities.is_empty() {
            // runc's words (libcontainer/capabilities); the container runs without them.
            tracing::warn!(
                "ignoring unknown or unavailable capabilities: [{}]",
                bundle.dropped_capabilities.join(" ")
            );
            injected = Some(bundle.spec.clone());
        }
        for destination in &bundle.relative_mounts {
            // runc's words (libcontainer/specconv); the mount lands at /DESTINATION.
            tracing::warn!(
                "mount destination {destination} is not absolute. Support for non-absolute mount destinations will be removed in a future release."
            );
            injected = Some(bundle.spec.clone());
        }
        let enclave_config = enclave::config_from_spec(&bundle.spec)?;
        if enclave_config.is_some() {
            enclave::check_pids_limit(&bundle.spec)?;
        }
        let image = image::config_from_spec(&bundle.spec, enclave_config.as_ref())?;
        let executor = match enclave_config {
            None => RuneExecutor::process(),
            Some(mut config) => {
                let host = enclave::host_root();
                enclave::check_host(config.typ, &host)?;
                if config.typ == enclave::EnclaveType::IntelSgx {
                    let found = enclave::SgxInjection::probe(&host, &bundle.spec)?;
                    if !found.is_empty() {
                        let mut spec = bundle.spec.clone();
                        found.apply(&mut spec)?;
                        injected = Some(spec);
                    }
                }
                if let Some(image) = &image {
                    let mut spec = injected.take().unwrap_or_else(|| bundle.spec.clone());
                    image.apply(&mut spec, &mut config)?;
                    injected = Some(spec);
                }
                let pal = pal::Pal::open(&config.runtime_path)?;
                tracing::debug!(id, version = pal.version(), "loaded enclave runtime");
                let _ = fs::remove_file(&agent_tmp);
                let listener = agent::bind_as(&self.root, &agent_name).map_err(|e| {
                    RuneError::io(format!("agent socket {}", agent_tmp.display()), e)
                })?;
                RuneExecutor::enclave(EnclaveWorkload {
                    pal,
                    config,
                    agent: Some(listener),
                    init: Default::default(),
                })
            }
        };
        let enclave = executor.is_enclave();
        // Found here, inherited by the init, which retitles itself (`rune init`).
        crate::title::prepare();

        let result = self
            .build(id, &bundle, injected, opts, detach, executor)
            .and_then(|c| {
                if enclave {
                    let target = dir.join(agent::SOCKET);
                    fs::rename(&agent_tmp, &target)
                        .and_then(|_| {
                            fs::set_permissions(&target, fs::Permissions::from_mode(0o600))
                        })
                        .map_err(|e| {
                            RuneError::io(format!("agent socket {}", target.display()), e)
                        })?;
                }
                Ok(c)
            });
        if enclave && result.is_err() {
            let _ = fs::remove_file(&agent_tmp);
        }
        match result {
            Ok(container) => Ok(container),
            Err(err) => {
                // libcontainer removes cgroups and kills the init on most failures, but
                // not the state directory it made before validating the rootfs.
                self.cleanup_failed_create(id, &dir);
                Err(err)
            }
        }
    }

    /// Builds the container from the bundle, or, when rune adds to the spec (`injected`,
    /// the host's SGX devices and services), from a private copy of the bundle's
    /// `config.json`: the user's bundle is never written. The state records the user's
    /// bundle either way.
    fn build(
        &self,
        id: &str,
        bundle: &Bundle,
        injected: Option<libcontainer::oci_spec::runtime::Spec>,
        opts: &CreateOptions,
        detach: bool,
        executor: RuneExecutor,
    ) -> Result<Container> {
        let shadow = match injected {
            None => None,
            Some(mut spec) => {
                let dir = self
                    .root
                    .join(format!(".bundle-{}-{}", id, std::process::id()));
                let mut root = spec.root().clone().unwrap_or_default();
                root.set_path(bundle.rootfs.clone());
                spec.set_root(Some(root));
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| RuneError::io(format!("bundle copy {}", dir.display()), e))?;
                let guard = RemoveOnDrop(dir.clone());
                spec.save(dir.join("config.json"))
                    .map_err(|e| RuneError::Enclave(format!("bundle copy: {e}")))?;
                Some(guard)
            }
        };
        let source = shadow.as_ref().map_or(&bundle.dir, |g| &g.0);
        let mut container = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(executor)
            .with_root_path(&self.root)
            .map_err(RuneError::lc("state root"))?
            .with_console_socket(opts.console_socket.as_ref())
            .with_preserved_fds(opts.preserve_fds)
            .as_init(source)
            .with_systemd(self.systemd_cgroup)
            .with_detach(detach)
            .with_no_pivot(opts.no_pivot)
            .build()
            .map_err(|e| creation_error(id, e))?;
        if shadow.is_some() {
            container.state.bundle = bundle.dir.clone();
            container
                .save()
                .map_err(RuneError::lc(format!("save state of {id}")))?;
        }
        if let (Some(path), Some(pid)) = (&opts.pid_file, container.pid()) {
            if let Err(err) = pidfile::write(path, pid.as_raw()) {
                let mut c = container;
                let _ = c.delete(true);
                return Err(err);
            }
        }
        Ok(container)
    }

    fn ensure_root(&self) -> Result<()> {
        // Root's alone, as runc's (0700): the states name bundles, pids and hooks.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| RuneError::io(format!("state root {}", self.root.display()), e))
    }

    fn cleanup_failed_create(&self, id: &str, dir: &Path) {
        if let Ok(mut c) = Container::load(dir.to_path_buf()) {
            if let Err(e) = c.delete(true) {
                tracing::warn!(id, "cleanup after failed create: {e}");
            }
        }
        if dir.exists() {
            if let Err(e) = fs::remove_dir_all(dir) {
                tracing::warn!(id, "remove {}: {e}", dir.display());
            }
        }
        reap_failed_children();
    }

    /// `start`: runs the user program of a created container, then the poststart hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        if !c.can_start() {
            return Err(RuneError::State {
                id: id.to_string(),
                status: status_name(c.status()).to_string(),
                what: "only a created container can be started",
            });
        }
        c.start().map_err(RuneError::lc(format!("start {id}")))
    }

    /// `run`: create + start; unless `detach`, wait for the init process, forwarding
    /// signals to it, delete the container and return the exit code (128+N when it was
    /// killed by signal N, as a shell reports it).
    ///
    /// In the foreground, a process with `terminal: true` and no console socket gets a
    /// new pseudo-terminal proxied to the caller's, as with runc (see [`crate::console`]);
    /// a caller without a terminal is refused before anything is created.
    pub fn run(&self, id: &str, opts: &CreateOptions, detach: bool) -> Result<i32> {
        let console = if !detach && opts.console_socket.is_none() && wants_terminal(opts) {
            validate_id(id)?;
            let host = console::HostTerminal::find()?;
            self.ensure_root()?;
            Some((host, console::ConsoleSocket::bind(&self.root)?))
        } else {
            None
        };
        if !detach && !opts.no_subreaper {
            nix::sys::prctl::set_child_subreaper(true)
                .map_err(|e| RuneError::io("become a child subreaper", e.into()))?;
        }
        let mut c = match &console {
            // libcontainer takes a console socket only from a detached caller; the
            // detach flag has no other effect there.
            Some((_, socket)) => {
                let opts = CreateOptions {
                    console_socket: Some(socket.path().to_path_buf()),
                    ..opts.clone()
                };
                self.create(id, &opts, true)?
            }
            None => self.create(id, opts, detach)?,
        };
        let proxy = match console {
            Some((host, socket)) => {
                match socket
                    .receive()
                    .and_then(|m| console::Proxy::start(host, m))
                {
                    Ok(proxy) => Some(proxy),
                    Err(err) => {
                        let _ = c.delete(true);
                        return Err(err);
                    }
                }
            }
            None => None,
        };
        if let Err(err) = c.start() {
            let _ = c.delete(true);
            return Err(RuneError::lc(format!("start {id}"))(err));
        }
        if detach {
            return Ok(0);
        }
        let pid = c
            .pid()
            .ok_or_else(|| RuneError::NotFound(format!("{id} init process")))?;
        let code = wait_forwarding_signals(pid, proxy.as_ref().map(|p| p.resizer()));
        if let Some(proxy) = proxy {
            proxy.finish();
        }
        if let Err(e) = delete_settling(&mut c, true) {
            tracing::warn!(id, "delete after run: {e}");
        }
        code
    }

    /// `attest`: a local report from the enclave runtime of a running enclave
    /// container (bound to `report_data` where the type allows), or with `is_ra` an
    /// `intelSgx` enclave's DCAP quote from aesmd.
    pub fn attest(
        &self,
        id: &str,
        report_data: Option<[u8; 64]>,
        is_ra: bool,
        quote_type: &str,
    ) -> Result<Vec<u8>> {
        use crate::agent::*;
        let c = self.load(id)?;
        if c.status() != ContainerStatus::Running
            || !self.container_dir(id).join(agent::SOCKET).exists()
        {
            return Err(RuneError::Enclave(format!(
                "{id} is not a running enclave container"
            )));
        }
        let ctx = |what: &str| format!("agent of {id}: {what}");
        let mut conn = agent::connect(&self.container_dir(id))
            .map_err(|e| RuneError::io(ctx("connect"), e))?;
        let request = AgentServiceRequest {
            request: Some(Request::Attest(Attest {
                is_ra,
                quote_type: quote_type.to_string(),
                report_data: report_data.map(|d| d.to_vec()).unwrap_or_default(),
                ..Default::default()
            })),
        };
        write_frame(&mut conn, &request).map_err(|e| RuneError::io(ctx("send"), e))?;
        let response: AgentServiceResponse =
            read_frame(&mut conn).map_err(|e| RuneError::io(ctx("receive"), e))?;
        match response.response {
            Some(Response::Attest(r)) if r.exit_code == 0 => Ok(r.local_report),
            Some(Response::Attest(r)) => {
                Err(RuneError::Enclave(format!("attest {id}: {}", r.error)))
            }
            _ => Err(RuneError::Enclave(format!(
                "attest {id}: unexpected agent response"
            ))),
        }
    }

    /// `kill`: sends `signal` to the init process (or every process with `all`).
    ///
    /// Unlike libcontainer's kill this writes no state: the status is derived from the
    /// process, and a write could race with a concurrent `delete` and recreate the
    /// state file in a directory being removed.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<()> {
        use libcgroups::common::FreezerState;
        let signal = Signal::parse(signal)?;
        let c = self.load(id)?;
        let status = c.status();
        match status {
            ContainerStatus::Stopped if !all => return Err(RuneError::NotRunning),
            ContainerStatus::Creating => {
                return Err(RuneError::State {
                    id: id.to_string(),
                    status: status_name(status).to_string(),
                    what: "it cannot be signalled until create finishes",
                })
            }
            _ => {}
        }
        let send = |pid: Pid| match signal.send(pid.as_raw()) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
                Err(RuneError::io(format!("kill {pid}"), e))
            }
            _ => Ok(()),
        };
        let v1 = !matches!(
            libcgroups::common::get_cgroup_setup(),
            Ok(libcgroups::common::CgroupSetup::Unified)
        );
        if all {
            let m = self.cgroup_manager(&c)?;
            // Frozen, the set of processes cannot change while it is signalled.
            let _ = m.freeze(FreezerState::Frozen);
            let pids = m
                .get_all_pids()
                .map_err(|e| RuneError::Cgroup(e.to_string()));
            let sent = pids.and_then(|pids| pids.into_iter().try_for_each(send));
            if status != ContainerStatus::Paused || signal == Signal::KILL {
                let _ = m.freeze(FreezerState::Thawed);
            }
            return sent;
        }
        let pid = c.pid().ok_or(RuneError::NotRunning)?;
        if !process_alive(pid) {
            return Err(RuneError::NotRunning);
        }
        send(pid)?;
        // On cgroup v1 a frozen process cannot act on signals: SIGKILL thaws it.
        if status == ContainerStatus::Paused && signal == Signal::KILL && v1 {
            let _ = self.cgroup_manager(&c)?.freeze(FreezerState::Thawed);
        }
        Ok(())
    }

    /// `delete`: removes a stopped or created container (any container with `force`),
    /// killing it first, then runs the poststop hooks. Deleting a missing container with `force` succeeds.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut c = match self.load(id) {
            Err(RuneError::NotFound(_)) if force => {
                // A state directory without state.json is debris of a crashed create.
                let dir = self.container_dir(id);
                if dir.is_dir() {
                    let _ = fs::remove_dir_all(dir);
                }
                return Ok(());
            }
            other => other?,
        };
        // A created container is killed and deleted without --force, as by runc
        // (delete.go: `case libcontainer.Created: return killContainer(container)`).
        let created = c.status() == ContainerStatus::Created;
        if !force && !created && c.status() != ContainerStatus::Stopped {
            return Err(RuneError::State {
                id: id.to_string(),
                status: status_name(c.status()).to_string(),
                what: "cannot delete a container that is not stopped (use --force)",
            });
        }
        delete_reporting_hooks(&mut c, force || created)
            .map_err(RuneError::lc(format!("delete {id}")))
    }

    /// `state`: the runc-shaped state of one container.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let c = self.load(id)?;
        Ok(ContainerState::from_container(&c))
    }

    /// `list`: the state of every container under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RuneError::io(format!("read {}", self.root.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.join("state.json").exists() {
                continue;
            }
            match Container::load(dir) {
                Ok(c) => out.push(ContainerState::from_container(&c)),
                Err(e) => tracing::warn!("skip {}: {e}", entry.path().display()),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// `pause`: freezes every process of a running container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        c.pause().map_err(RuneError::lc(format!("pause {id}")))
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let mut c = self.load(id)?;
        c.resume().map_err(RuneError::lc(format!("resume {id}")))
    }

    /// `events`: runc's event stream of a created, running or paused container, written
    /// through `emit` one event at a time (see [`crate::events`]): with `stats_only`
    /// one stats event, else stats every `interval` and OOM events until the
    /// container's cgroup is removed. Refused for a stopped container, as by runc.
    pub fn events(
        &self,
        id: &str,
        interval: std::time::Duration,
        stats_only: bool,
        mut emit: impl FnMut(&events::Event) -> std::io::Result<()>,
    ) -> Result<()> {
        let c = self.load(id)?;
        if c.status() == ContainerStatus::Stopped {
            return Err(RuneError::State {
                id: id.to_string(),
                status: status_name(c.status()).to_string(),
                what: "events need a container that is not stopped",
            });
        }
        let m = self.cgroup_manager(&c)?;
        let dirs = m.dirs();
        let dir = |key: &str| dirs.iter().find(|(k, _)| k == key).map(|(_, p)| p.clone());
        let cpuset = dir("cpuset");
        // v1: the memory hierarchy; v2 (and a hybrid host without v1 memory): the unified one.
        let memory = dir("memory").or_else(|| dir(""));
        let read = || {
            m.stats()
                .map(|s| events::Stats::from_cgroup(&s, cpuset.as_deref()))
                .map_err(|e| RuneError::Cgroup(format!("stats of {id}: {e}")))
        };
        if stats_only {
            let event = events::Event {
                kind: "stats",
                id: id.to_string(),
                data: Some(read()?),
            };
            return emit(&event).map_err(|e| RuneError::io("write event", e));
        }
        let read_logged = || read().map_err(|e| tracing::error!("{e}")).ok();
        events::stream(id, interval, memory.as_deref(), read_logged, emit)
    }

    fn cgroup_manager(&self, c: &Container) -> Result<libcgroups::common::AnyCgroupManager> {
        let config = c
            .spec()
            .map_err(RuneError::lc(format!("config of {}", c.id())))?;
        libcgroups::common::create_cgroup_manager(CgroupConfig {
            cgroup_path: config.cgroup_path,
            systemd_cgroup: c.systemd(),
            container_name: c.id().to_string(),
            // where the creator resolved a relative path (vendor/README.md)
            caller_cgroups: config.caller_cgroups,
        })
        .map_err(|e| RuneError::Cgroup(e.to_string()))
    }

    /// `ps`: pids of every process in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let c = self.load(id)?;
        let m = self.cgroup_manager(&c)?;
        let mut pids: Vec<i32> = m
            .get_all_pids()
            .map_err(|e| RuneError::Cgroup(e.to_string()))?
            .into_iter()
            .map(|p| p.as_raw())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// `update`: applies new resource limits to a created, running or paused container.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        self.update_with_rdt(id, resources, None)
    }

    /// `update` with Intel RDT schemata (`--l3-cache-schema`, `--mem-bw-schema`), written
    /// to the container's resctrl group as runc does. Refused, before anything changes,
    /// where the host has no resctrl file system or the container no group.
    pub fn update_with_rdt(
        &self,
        id: &str,
        resources: &LinuxResources,
        schemata: Option<&str>,
    ) -> Result<()> {
        let c = self.load(id)?;
        if c.status() == ContainerStatus::Stopped {
            return Err(RuneError::NotRunning);
        }
        let rdt_file = match schemata {
            None => None,
            Some(_) if !Path::new("/sys/fs/resctrl/schemata").exists() => {
                return Err(RuneError::InvalidArgument {
                    flag: "--l3-cache-schema/--mem-bw-schema".into(),
                    message: "Intel RDT is not enabled on this host (no resctrl file system at /sys/fs/resctrl)".into(),
                })
            }
            Some(_) => Some(
                c.state
                    .intel_rdt_dir
                    .as_ref()
                    .map(|d| d.join("schemata"))
                    .ok_or_else(|| RuneError::InvalidArgument {
                        flag: "--l3-cache-schema/--mem-bw-schema".into(),
                        message: format!("container {id} has no Intel RDT group (its spec has no linux.intelRdt)"),
                    })?,
            ),
        };
        if let (Some(file), Some(s)) = (&rdt_file, schemata) {
            fs::write(file, format!("{s}\n"))
                .map_err(|e| RuneError::io(format!("write {}", file.display()), e))?;
        }
        let m = self.cgroup_manager(&c)?;
        m.apply(&ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| RuneError::Cgroup(e.to_string()))
    }
}

/// Deletes `c`, retrying for up to a second: right after a container's init dies, the
/// other processes of its pid namespace are still being reaped by the kernel, and
/// until they are gone the cgroup cannot be removed.
fn delete_settling(c: &mut Container, force: bool) -> std::result::Result<(), LibcontainerError> {
    let mut attempts = 0;
    loop {
        match delete_reporting_hooks(c, force) {
            Ok(()) => return Ok(()),
            Err(e) if attempts < 50 && c.status() == ContainerStatus::Stopped => {
                tracing::debug!("delete {}: {e}; retrying", c.id());
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deletes `c`. Failing poststop hooks do not fail the delete: they run once the
/// container is gone, and each failure is logged as an error line naming the hook, as
/// runc logs it (its `delete` exits 0 too).
fn delete_reporting_hooks(
    c: &mut Container,
    force: bool,
) -> std::result::Result<(), LibcontainerError> {
    use libcontainer::hooks::HookError;
    match c.delete(force) {
        Err(LibcontainerError::Hook(HookError::Several(failures))) => {
            for f in &failures {
                let message = crate::error::libcontainer_message(f);
                tracing::error!("delete {}: {message}", c.id());
            }
            Ok(())
        }
        other => other,
    }
}

/// Reaps what a failed create or exec leaves: libcontainer's intermediate process and
/// the init (cloned with `CLONE_PARENT`, so also this process's child), which end on
/// the failure. Unreaped they would pass to rune's caller as zombies (runc leaves
/// none), and an exec's would sit in the container's pid namespace, where its init
/// cannot finish exiting until someone reaps it. Waits at most a second for children
/// still ending. Every child of the process is one of these: rune-core's runtime is
/// the rune command's, which starts no other.
pub(crate) fn reap_failed_children() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Ok(WaitStatus::StillAlive) => return,
            Ok(_) => {}
            // ECHILD: none left.
            Err(_) => return,
        }
    }
}

/// True when `pid` is gone, a zombie, or on its way out (`PF_EXITING`, 0x4, in the
/// flags field of /proc/PID/stat: its namespaces are already released, so joining them
/// fails with ENOENT before it becomes a zombie).
fn process_ending(pid: Pid) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return true;
    };
    // After the command: state ppid pgrp session tty_nr tpgid flags …
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().unwrap_or("X");
    let flags = fields
        .nth(5)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0
}

/// True while `pid` exists and is not a zombie.
fn process_alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Whether the bundle's process asks for a terminal (an unreadable bundle is left for
/// `create` to report).
fn wants_terminal(opts: &CreateOptions) -> bool {
    Bundle::load(&opts.bundle)
        .ok()
        .and_then(|b| b.spec.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

fn creation_error(id: &str, err: LibcontainerError) -> RuneError {
    match err {
        LibcontainerError::Exist => RuneError::Exists(id.to_string()),
        other => RuneError::lc(format!("create {id}"))(other),
    }
}

/// Waits for `pid` (a child of this process), forwarding every signal this process
/// receives to it, and returns its exit code. Runs in the foreground of `run` and `exec`.
///
/// With a `resizer` (the process has rune's terminal), `SIGWINCH` resizes the process's
/// terminal instead, as runc does.
fn wait_forwarding_signals(pid: Pid, resizer: Option<console::Resizer>) -> Result<i32> {
    let set = SigSet::all();
    set.thread_block()
        .map_err(|e| RuneError::io("block signals", e.into()))?;
    loop {
        // Reap before waiting: a SIGCHLD that arrived before the mask was set is lost.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(128 + sig as i32),
                Ok(WaitStatus::StillAlive) => break,
                Err(nix::errno::Errno::ECHILD) => {
                    return Err(RuneError::io(
                        format!("wait for {pid}"),
                        std::io::Error::other("the process is not a child of rune"),
                    ))
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(RuneError::io("waitpid", e.into())),
            }
        }
        let sig = signal::wait(&set).map_err(|e| RuneError::io("sigwait", e))?;
        if sig.as_raw() == libc::SIGWINCH {
            if let Some(r) = &resizer {
                r.resize();
            }
            continue;
        }
        if sig.as_raw() == libc::SIGPIPE || !signal::is_not_forwarded(sig) {
            if let Err(e) = sig.send(pid.as_raw()) {
                tracing::warn!("forward {sig} to {pid}: {e}");
            }
        }
    }
}

/// Removes a directory tree when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read from the kernel's /proc: a running process is not ending, its zombie and a
    /// pid that no longer exists are.
    #[test]
    fn process_ending_reads_the_kernel_state() {
        assert!(!process_ending(nix::unistd::getpid()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        // Not reaped: a zombie once it has exited. Polled on process_alive: process_ending
        // is already true while the child is exiting (PF_EXITING), before it is a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process_alive(pid), "the exited child is a zombie");
        assert!(process_ending(pid), "a zombie reads as ending");
        child.wait().unwrap();
        assert!(process_ending(pid), "a reaped pid reads as gone");
    }
}
