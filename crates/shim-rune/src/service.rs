//! containerd's Task API (`containerd.task.v2.Task`) over the `rune` command line.
//!
//! One shim serves one container, or all containers of a Kubernetes pod. Each task
//! operation runs `rune` once (see [`crate::rune`]); the shim keeps the processes'
//! states, copies their stdio, and publishes containerd's task events.
//!
//! Process exits come from the shim crate's reaper (the shim is a child subreaper, so
//! the container's processes are its children once rune has exited). An exit can arrive
//! before the shim has learnt the pid (a short exec ends before `rune exec` returns);
//! such exits are kept briefly and claimed when the pid is registered.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::asynchronous::monitor::monitor_subscribe;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::monitor::{Subject, Topic};
use containerd_shim::protos::events::task as ev;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageDyn, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::types::task::{ProcessInfo, Status};
use containerd_shim::{api, TtrpcResult};
use tokio::sync::{watch, Mutex};

use crate::carrier;
use crate::config::Config;
use crate::io::{ConsoleSocket, ProcessIo, StdioPaths};
use crate::rune::{Call, ProcessFds, Rune, RuneError};

/// How long a deleted process's output may take to drain.
const IO_DRAIN: Duration = Duration::from_secs(5);
/// Exits of pids not (yet) known to the shim, kept for a late registration.
const UNCLAIMED_EXITS: usize = 256;

/// What the shim writes into each bundle so that `containerd-shim-rune-v2 delete` can
/// clean up after a shim that died.
pub const BUNDLE_STATE: &str = "rune-shim.json";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BundleState {
    pub rune: PathBuf,
    pub root: PathBuf,
    pub rootfs_mounted: bool,
}

type Exit = (u32, Timestamp);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PStatus {
    Created,
    Running,
    Stopped,
}

struct Proc {
    pid: i32,
    status: PStatus,
    exit: watch::Sender<Option<Exit>>,
    stdio: StdioPaths,
    io: Option<ProcessIo>,
    /// An exec's process (OCI `process` JSON), until it is started.
    spec: Vec<u8>,
}

impl Proc {
    fn new(stdio: StdioPaths) -> Proc {
        Proc {
            pid: 0,
            status: PStatus::Created,
            exit: watch::channel(None).0,
            stdio,
            io: None,
            spec: Vec::new(),
        }
    }

    fn exited(&mut self, code: i32, at: Timestamp) {
        self.status = PStatus::Stopped;
        self.exit.send_replace(Some((code as u32, at)));
    }

    fn exit_info(&self) -> (u32, MessageField<Timestamp>) {
        match &*self.exit.borrow() {
            Some((code, at)) => (*code, MessageField::some(at.clone())),
            None => (0, MessageField::none()),
        }
    }
}

struct Container {
    bundle: PathBuf,
    rune: Rune,
    rootfs: Option<PathBuf>,
    init: Proc,
    execs: HashMap<String, Proc>,
    paused: bool,
}

impl Container {
    fn log(&self) -> PathBuf {
        self.bundle.join("log.json")
    }

    fn process(&mut self, exec_id: &str) -> TtrpcResult<&mut Proc> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {exec_id} not found")))
    }
}

/// The task service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    config: Config,
    publisher: RemotePublisher,
    exit: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Container>>,
    unclaimed: std::sync::Mutex<VecDeque<(i32, i32, Timestamp)>>,
}

fn err(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn rune_err(what: &str, e: RuneError) -> ttrpc::Error {
    if e.is_not_running() {
        return err(Code::NOT_FOUND, format!("{what}: {e}"));
    }
    err(Code::UNKNOWN, format!("{what}: {e}"))
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// The runtime options containerd passes at create: runc's (`BinaryName`, `Root`) or
/// the generic CRI ones (`ConfigPath`).
#[derive(Debug, Default, PartialEq, Eq)]
struct CreateOptions {
    binary_name: String,
    root: String,
    config_path: String,
}

fn create_options(any: &Any) -> TtrpcResult<CreateOptions> {
    let bad = |e: String| err(Code::INVALID_ARGUMENT, format!("runtime options: {e}"));
    if any.type_url.is_empty() {
        return Ok(CreateOptions::default());
    }
    if any.type_url.ends_with("containerd.runc.v1.Options") {
        let o = containerd_shim::protos::shim::oci::Options::parse_from_bytes(&any.value)
            .map_err(|e| bad(e.to_string()))?;
        return Ok(CreateOptions {
            binary_name: o.binary_name,
            root: o.root,
            config_path: String::new(),
        });
    }
    if any.type_url.ends_with("runtimeoptions.v1.Options") {
        // `message Options { string type_url = 1; string config_path = 2; }`
        let fields = proto_strings(&any.value).ok_or_else(|| bad("malformed".into()))?;
        return Ok(CreateOptions {
            config_path: fields.get(&2).cloned().unwrap_or_default(),
            ..Default::default()
        });
    }
    Err(bad(format!("{} is not understood", any.type_url)))
}

/// The length-delimited string fields of a protobuf message, by field number.
fn proto_strings(mut b: &[u8]) -> Option<HashMap<u32, String>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = HashMap::new();
    while !b.is_empty() {
        let tag = varint(&mut b)?;
        let (field, wire) = (u32::try_from(tag >> 3).ok()?, tag & 7);
        match wire {
            0 => {
                varint(&mut b)?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                b = b.get(n..)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut b)?).ok()?;
                let value = b.get(..len)?;
                b = &b[len..];
                out.insert(field, String::from_utf8(value.to_vec()).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Container and exec ids become file names: the characters containerd allows only.
fn check_id(kind: &str, id: &str) -> TtrpcResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 76
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(err(
            Code::INVALID_ARGUMENT,
            format!("{kind} {id:?}: must be 1-76 of [A-Za-z0-9_.-], not starting with '.'"),
        ))
    }
}

impl Service {
    pub fn new(
        namespace: &str,
        config: Config,
        publisher: RemotePublisher,
        exit: Arc<ExitSignal>,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                namespace: namespace.to_string(),
                config,
                publisher,
                exit,
                containers: Mutex::new(HashMap::new()),
                unclaimed: std::sync::Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Starts taking process exits from the shim's reaper.
    pub async fn watch_exits(&self) -> containerd_shim::Result<()> {
        let mut sub = monitor_subscribe(Topic::Pid).await?;
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Some(e) = sub.rx.recv().await {
                if let Subject::Pid(pid) = e.subject {
                    inner.exited(pid, e.exit_code).await;
                }
            }
        });
        Ok(())
    }
}

impl Inner {
    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            tracing::warn!("publish {topic}: {e}");
        }
    }

    async fn exited(&self, pid: i32, code: i32) {
        let at = now();
        let event = {
            let mut cs = self.containers.lock().await;
            let found = cs.iter_mut().find_map(|(id, c)| {
                if c.init.pid == pid && c.init.status != PStatus::Stopped {
                    return Some((id.clone(), id.clone(), &mut c.init));
                }
                c.execs
                    .iter_mut()
                    .find(|(_, p)| p.pid == pid && p.status != PStatus::Stopped)
                    .map(|(eid, p)| (id.clone(), eid.clone(), p))
            });
            match found {
                Some((cid, pid_id, p)) => {
                    p.exited(code, at.clone());
                    Some(ev::TaskExit {
                        container_id: cid,
                        id: pid_id,
                        pid: pid as u32,
                        exit_status: code as u32,
                        exited_at: MessageField::some(at.clone()),
                        ..Default::default()
                    })
                }
                None => {
                    let mut u = self.unclaimed.lock().unwrap();
                    if u.len() == UNCLAIMED_EXITS {
                        u.pop_front();
                    }
                    u.push_back((pid, code, at));
                    None
                }
            }
        };
        if let Some(e) = event {
            tracing::debug!("{} {} exited with {}", e.container_id, e.id, e.exit_status);
            self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(e))
                .await;
        }
    }

    /// An exit that came before its pid was registered.
    fn claim_exit(&self, pid: i32) -> Option<(i32, Timestamp)> {
        let mut u = self.unclaimed.lock().unwrap();
        let i = u.iter().position(|(p, _, _)| *p == pid)?;
        u.remove(i).map(|(_, code, at)| (code, at))
    }

    fn settings(&self, options: &CreateOptions) -> TtrpcResult<(Config, Rune)> {
        let mut config = if options.config_path.is_empty() {
            self.config.clone()
        } else {
            Config::load(Path::new(&options.config_path))
                .map_err(|e| err(Code::INVALID_ARGUMENT, e.to_string()))?
        };
        if !options.binary_name.is_empty() {
            config.rune = PathBuf::from(&options.binary_name);
        }
        let base = if options.root.is_empty() {
            config.rune_root.clone()
        } else {
            PathBuf::from(&options.root)
        };
        let rune = Rune {
            binary: config.rune.clone(),
            root: base.join(&self.namespace),
        };
        Ok((config, rune))
    }

    async fn create(&self, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        check_id("container id", &req.id)?;
        if self.containers.lock().await.contains_key(&req.id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", req.id),
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(err(
                Code::UNIMPLEMENTED,
                "rune does not restore checkpoints",
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let options = match req.options.as_ref() {
            Some(any) => create_options(any)?,
            None => CreateOptions::default(),
        };
        let (config, rune) = self.settings(&options)?;
        if !rune.binary.is_file() {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!(
                    "rune binary {} not found (key `rune` in {})",
                    rune.binary.display(),
                    crate::config::default_path().display()
                ),
            ));
        }
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };

        // From here on, a failure undoes what was done.
        let mut undo = Undo::default();
        let res = self
            .create_steps(&req, &bundle, &config, &rune, stdio, &mut undo)
            .await;
        match res {
            Ok(c) => {
                let pid = c.init.pid;
                let mut c = c;
                if let Some((code, at)) = self.claim_exit(pid) {
                    c.init.exited(code, at);
                }
                self.containers.lock().await.insert(req.id.clone(), c);
                self.publish(
                    topics::TASK_CREATE_EVENT_TOPIC,
                    Box::new(ev::TaskCreate {
                        container_id: req.id.clone(),
                        bundle: req.bundle.clone(),
                        rootfs: req.rootfs.clone(),
                        io: MessageField::some(ev::TaskIO {
                            stdin: req.stdin.clone(),
                            stdout: req.stdout.clone(),
                            stderr: req.stderr.clone(),
                            terminal: req.terminal,
                            ..Default::default()
                        }),
                        pid: pid as u32,
                        ..Default::default()
                    }),
                )
                .await;
                Ok(api::CreateTaskResponse {
                    pid: pid as u32,
                    ..Default::default()
                })
            }
            Err(e) => {
                undo.run(&rune, &req.id, &bundle).await;
                Err(e)
            }
        }
    }

    async fn create_steps(
        &self,
        req: &api::CreateTaskRequest,
        bundle: &Path,
        config: &Config,
        rune: &Rune,
        stdio: StdioPaths,
        undo: &mut Undo,
    ) -> TtrpcResult<Container> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            err(Code::FAILED_PRECONDITION, format!("{what}: {e}"))
        };
        // The root filesystem, from containerd's snapshotter.
        let mut image = None;
        let rootfs = if req.rootfs.is_empty() {
            None
        } else {
            let target = bundle.join("rootfs");
            std::fs::create_dir_all(&target).map_err(|e| fail("rootfs", &e))?;
            for m in &req.rootfs {
                undo.rootfs = Some(target.clone());
                containerd_shim::asynchronous::util::mount_rootfs(m, &target)
                    .await
                    .map_err(|e| fail("mount the root filesystem", &e))?;
                // The read-only layers name the image's content.
                image = m
                    .options
                    .iter()
                    .find_map(|o| o.strip_prefix("lowerdir="))
                    .map(str::to_string)
                    .or(image);
            }
            Some(target)
        };
        let state = BundleState {
            rune: rune.binary.clone(),
            root: rune.root.clone(),
            rootfs_mounted: rootfs.is_some(),
        };
        carrier::write_atomic(
            &bundle.join(BUNDLE_STATE),
            &serde_json::to_vec(&state).expect("state serializes"),
            0o600,
        )
        .map_err(|e| fail("write the bundle state", &e))?;

        // The carrier may sign a program: blocking work, off the runtime's threads.
        let (cfg, b) = (config.clone(), bundle.to_path_buf());
        let outcome =
            tokio::task::spawn_blocking(move || carrier::apply(&cfg, &b, image.as_deref()))
                .await
                .map_err(|e| fail("carrier", &e))?
                .map_err(|e| err(Code::FAILED_PRECONDITION, e.to_string()))?;
        match &outcome {
            carrier::Outcome::None => {}
            carrier::Outcome::Sim { mr_enclave, cached } => tracing::info!(
                "{}: sim enclave mr_enclave {mr_enclave} ({})",
                req.id,
                if *cached { "cached manifest" } else { "signed" }
            ),
            carrier::Outcome::Image { reference } => tracing::info!(
                "{}: confidential image {reference}, pulled inside the enclave",
                req.id
            ),
            carrier::Outcome::Sandbox { removed } => tracing::info!(
                "{}: sandbox container: the pod's {removed:?} not applied to it",
                req.id
            ),
            other => tracing::info!("{}: carrier {other:?}", req.id),
        }

        std::fs::create_dir_all(&rune.root).map_err(|e| fail("rune root", &e))?;
        let mut args: Vec<std::ffi::OsString> = vec![
            "create".into(),
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            bundle.join("init.pid").into(),
        ];
        let (setup, fds) = StdioSetup::new(&stdio)?;
        if let Some(socket) = setup.console_socket() {
            args.push("--console-socket".into());
            args.push(socket.into());
        }
        args.push(req.id.clone().into());
        undo.rune_created = true;
        rune.run(
            args,
            Call {
                log: Some(bundle.join("log.json")),
                fds: Some(fds),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| err(Code::UNKNOWN, format!("rune create: {e}")))?;
        let pid = read_pid(&bundle.join("init.pid"))?;
        let io = setup.running(&stdio)?;
        let mut init = Proc::new(stdio);
        init.pid = pid;
        init.io = Some(io);
        Ok(Container {
            bundle: bundle.to_path_buf(),
            rune: rune.clone(),
            rootfs,
            init,
            execs: HashMap::new(),
            paused: false,
        })
    }

    async fn start(&self, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        let (rune, log, bundle, proc_spec, stdio) = {
            let mut cs = self.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            let (rune, log, bundle) = (c.rune.clone(), c.log(), c.bundle.clone());
            let p = c.process(&req.exec_id)?;
            if p.status != PStatus::Created {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("{} is already started", name(&req.id, &req.exec_id)),
                ));
            }
            (rune, log, bundle, p.spec.clone(), p.stdio.clone())
        };
        if req.exec_id.is_empty() {
            rune.run(["start", req.id.as_str()], log_call(&log))
                .await
                .map_err(|e| rune_err("rune start", e))?;
            let pid = {
                let mut cs = self.containers.lock().await;
                let c = container(&mut cs, &req.id)?;
                if c.init.status == PStatus::Created {
                    c.init.status = PStatus::Running;
                }
                c.init.pid
            };
            self.publish(
                topics::TASK_START_EVENT_TOPIC,
                Box::new(ev::TaskStart {
                    container_id: req.id.clone(),
                    pid: pid as u32,
                    ..Default::default()
                }),
            )
            .await;
            return Ok(api::StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }

        // An exec: its process JSON and pid file live in the bundle while it starts.
        let spec_file = bundle.join(format!(".exec-{}.json", req.exec_id));
        let pid_file = bundle.join(format!(".exec-{}.pid", req.exec_id));
        std::fs::write(&spec_file, &proc_spec)
            .map_err(|e| err(Code::UNKNOWN, format!("write the exec's process: {e}")))?;
        let (setup, fds) = StdioSetup::new(&stdio)?;
        let mut args: Vec<std::ffi::OsString> = vec![
            "exec".into(),
            "--process".into(),
            spec_file.clone().into(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.clone().into(),
        ];
        if let Some(socket) = setup.console_socket() {
            args.push("--console-socket".into());
            args.push(socket.into());
        }
        args.push(req.id.clone().into());
        let exec_log = bundle.join(format!(".exec-{}.log.json", req.exec_id));
        let res = rune
            .run(
                args,
                Call {
                    log: Some(exec_log.clone()),
                    fds: Some(fds),
                    ..Default::default()
                },
            )
            .await;
        let pid = res
            .map_err(|e| rune_err("rune exec", e))
            .and_then(|_| read_pid(&pid_file));
        for f in [&spec_file, &pid_file, &exec_log] {
            let _ = std::fs::remove_file(f);
        }
        let pid = match pid {
            Ok(pid) => pid,
            Err(e) => {
                setup.abandon().await;
                return Err(e);
            }
        };
        let io = setup.running(&stdio)?;
        let claimed = self.claim_exit(pid);
        {
            let mut cs = self.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            let p = c.process(&req.exec_id)?;
            p.pid = pid;
            p.status = PStatus::Running;
            p.io = Some(io);
        }
        self.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            Box::new(ev::TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            }),
        )
        .await;
        // An exec that ended before rune returned: its exit comes after its start.
        if let Some((code, _)) = claimed {
            self.exited(pid, code).await;
        }
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn delete(&self, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let p = {
                let mut cs = self.containers.lock().await;
                let c = container(&mut cs, &req.id)?;
                let p = c.process(&req.exec_id)?;
                if p.status == PStatus::Running {
                    return Err(err(
                        Code::FAILED_PRECONDITION,
                        format!("exec {} is running: kill it first", req.exec_id),
                    ));
                }
                c.execs.remove(&req.exec_id).expect("found above")
            };
            let (exit_status, exited_at) = p.exit_info();
            if let Some(io) = p.io {
                io.finish(IO_DRAIN).await;
            }
            return Ok(api::DeleteResponse {
                pid: p.pid as u32,
                exit_status,
                exited_at,
                ..Default::default()
            });
        }
        let (rune, log, status) = {
            let mut cs = self.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            (c.rune.clone(), c.log(), c.init.status)
        };
        if status == PStatus::Running {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("container {} is running: kill it first", req.id),
            ));
        }
        // A created container that never started is ended by the delete.
        rune.run(["delete", "--force", req.id.as_str()], log_call(&log))
            .await
            .or_else(|e| {
                if e.is_not_running() {
                    Ok(Vec::new())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| rune_err("rune delete", e))?;
        let c = {
            let mut cs = self.containers.lock().await;
            cs.remove(&req.id).expect("found above")
        };
        let (mut exit_status, mut exited_at) = c.init.exit_info();
        if exited_at.is_none() {
            // Killed by the delete before it ever ran.
            exit_status = 128 + 9;
            exited_at = MessageField::some(now());
        }
        if let Some(io) = c.init.io {
            io.finish(IO_DRAIN).await;
        }
        for (_, p) in c.execs {
            if let Some(io) = p.io {
                io.finish(Duration::ZERO).await;
            }
        }
        if let Some(rootfs) = &c.rootfs {
            unmount(rootfs);
        }
        let _ = std::fs::remove_file(c.bundle.join(BUNDLE_STATE));
        let pid = c.init.pid as u32;
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(ev::TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid,
                exit_status,
                exited_at: exited_at.clone(),
                ..Default::default()
            }),
        )
        .await;
        Ok(api::DeleteResponse {
            pid,
            exit_status,
            exited_at,
            ..Default::default()
        })
    }
}

/// What a failed create leaves behind, undone in reverse.
#[derive(Default)]
struct Undo {
    rootfs: Option<PathBuf>,
    rune_created: bool,
}

impl Undo {
    async fn run(&self, rune: &Rune, id: &str, bundle: &Path) {
        if self.rune_created {
            let _ = rune.run(["delete", "--force", id], Call::default()).await;
        }
        if let Some(rootfs) = &self.rootfs {
            unmount(rootfs);
        }
        let _ = std::fs::remove_file(bundle.join(BUNDLE_STATE));
        let _ = std::fs::remove_file(bundle.join("init.pid"));
    }
}

/// Unmounts a container's root filesystem (and anything mounted below it).
pub fn unmount(rootfs: &Path) {
    loop {
        match nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => break,
            Err(e) => {
                tracing::warn!("unmount {}: {e}", rootfs.display());
                break;
            }
        }
    }
}

fn read_pid(path: &Path) -> TtrpcResult<i32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            err(
                Code::UNKNOWN,
                format!("rune wrote no pid to {}", path.display()),
            )
        })
}

fn log_call(log: &Path) -> Call {
    Call {
        log: Some(log.to_path_buf()),
        ..Default::default()
    }
}

fn name(id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        format!("container {id}")
    } else {
        format!("exec {exec_id} of {id}")
    }
}

fn container<'a>(
    cs: &'a mut HashMap<String, Container>,
    id: &str,
) -> TtrpcResult<&'a mut Container> {
    cs.get_mut(id)
        .ok_or_else(|| err(Code::NOT_FOUND, format!("container {id} not found")))
}

/// A process's stdio while rune starts it: pipes already copying, or a console socket
/// on which rune sends a terminal's master.
enum StdioSetup {
    Pipes(ProcessIo),
    Console(ConsoleSocket),
}

impl StdioSetup {
    /// The setup and the descriptors rune hands to the process (for a terminal,
    /// /dev/null: the process gets the pty).
    fn new(stdio: &StdioPaths) -> TtrpcResult<(StdioSetup, ProcessFds)> {
        let bad = |e: crate::io::IoError| err(Code::INVALID_ARGUMENT, e.to_string());
        if !stdio.terminal {
            let (io, fds) = ProcessIo::pipes(stdio).map_err(bad)?;
            return Ok((StdioSetup::Pipes(io), fds));
        }
        let console = ConsoleSocket::new().map_err(bad)?;
        let null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(std::os::fd::OwnedFd::from)
                .map_err(|e| err(Code::UNKNOWN, e.to_string()))
        };
        let fds = ProcessFds {
            stdin: null()?,
            stdout: null()?,
            stderr: null()?,
        };
        Ok((StdioSetup::Console(console), fds))
    }

    fn console_socket(&self) -> Option<&Path> {
        match self {
            StdioSetup::Console(c) => Some(c.path()),
            StdioSetup::Pipes(_) => None,
        }
    }

    /// Once rune has started the process: its running copies.
    fn running(self, stdio: &StdioPaths) -> TtrpcResult<ProcessIo> {
        match self {
            StdioSetup::Pipes(io) => Ok(io),
            StdioSetup::Console(c) => {
                let terminal = |e: crate::io::IoError| err(Code::UNKNOWN, format!("terminal: {e}"));
                let master = c.receive().map_err(terminal)?;
                ProcessIo::console(stdio, master).map_err(terminal)
            }
        }
    }

    /// rune failed: stop the copies.
    async fn abandon(self) {
        if let StdioSetup::Pipes(io) = self {
            io.finish(Duration::ZERO).await;
        }
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let id = req.id.clone();
        self.inner.create(req).await.inspect_err(|e| {
            tracing::error!("create {id}: {e:?}");
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        self.inner.start(req).await
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let mut cs = self.inner.containers.lock().await;
        let c = container(&mut cs, &req.id)?;
        let (bundle, paused) = (c.bundle.display().to_string(), c.paused);
        let p = c.process(&req.exec_id)?;
        let status = match p.status {
            PStatus::Created => Status::CREATED,
            PStatus::Running if paused => Status::PAUSED,
            PStatus::Running => Status::RUNNING,
            PStatus::Stopped => Status::STOPPED,
        };
        let (exit_status, exited_at) = p.exit_info();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle,
            pid: p.pid as u32,
            status: status.into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status,
            exited_at,
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let (rune, log, pid, status) = {
            let mut cs = self.inner.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            let (rune, log) = (c.rune.clone(), c.log());
            let p = c.process(&req.exec_id)?;
            (rune, log, p.pid, p.status)
        };
        if status == PStatus::Stopped && !req.all {
            return Err(err(Code::NOT_FOUND, "process already finished"));
        }
        if req.exec_id.is_empty() {
            let mut args = vec!["kill".to_string()];
            if req.all {
                args.push("--all".into());
            }
            args.push(req.id.clone());
            args.push(req.signal.to_string());
            rune.run(args, log_call(&log))
                .await
                .map_err(|e| rune_err("rune kill", e))?;
            return Ok(api::Empty::new());
        }
        if status == PStatus::Created {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("exec {} is not started", req.exec_id),
            ));
        }
        // Any signal the kernel has, realtime ones included (nix's Signal has none).
        let sig = req.signal as i32;
        if !(1..=libc::SIGRTMAX()).contains(&sig) {
            return Err(err(
                Code::INVALID_ARGUMENT,
                format!("signal {}", req.signal),
            ));
        }
        // SAFETY: kill(2) takes two integers and touches no memory of ours.
        if unsafe { libc::kill(pid, sig) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ESRCH) {
                err(Code::NOT_FOUND, "process already finished")
            } else {
                err(Code::UNKNOWN, format!("kill {pid}: {e}"))
            });
        }
        Ok(api::Empty::new())
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        self.inner.delete(req).await
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        check_id("exec id", &req.exec_id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .ok_or_else(|| err(Code::INVALID_ARGUMENT, "exec without a process spec"))?;
        {
            let mut cs = self.inner.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            if c.init.status != PStatus::Running {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("container {} is not running", req.id),
                ));
            }
            if c.execs.contains_key(&req.exec_id) {
                return Err(err(
                    Code::ALREADY_EXISTS,
                    format!("exec {} already exists", req.exec_id),
                ));
            }
            let mut p = Proc::new(StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            });
            p.spec = spec;
            c.execs.insert(req.exec_id.clone(), p);
        }
        self.inner
            .publish(
                topics::TASK_EXEC_ADDED_EVENT_TOPIC,
                Box::new(ev::TaskExecAdded {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let mut cs = self.inner.containers.lock().await;
        let c = container(&mut cs, &req.id)?;
        let p = c.process(&req.exec_id)?;
        if let Some(io) = &p.io {
            io.resize(req.width as u16, req.height as u16)
                .map_err(|e| err(Code::FAILED_PRECONDITION, e.to_string()))?;
        }
        Ok(api::Empty::new())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        let mut cs = self.inner.containers.lock().await;
        let c = container(&mut cs, &req.id)?;
        let p = c.process(&req.exec_id)?;
        if req.stdin {
            if let Some(io) = &p.io {
                io.close_stdin();
            }
        }
        Ok(api::Empty::new())
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let (rune, log) = {
            let mut cs = self.inner.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            (c.rune.clone(), c.log())
        };
        let out = rune
            .run(["ps", "--format", "json", req.id.as_str()], log_call(&log))
            .await
            .map_err(|e| rune_err("rune ps", e))?;
        let pids: Vec<u32> = serde_json::from_slice(&out)
            .map_err(|e| err(Code::UNKNOWN, format!("rune ps: {e}")))?;
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.inner.pause_resume(&req.id, true).await
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        self.inner.pause_resume(&req.id, false).await
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        Err(err(
            Code::UNIMPLEMENTED,
            "rune does not checkpoint containers (an enclave's memory cannot be dumped)",
        ))
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let (rune, log) = {
            let mut cs = self.inner.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            (c.rune.clone(), c.log())
        };
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .ok_or_else(|| err(Code::INVALID_ARGUMENT, "update without resources"))?;
        rune.run(
            ["update", "--resources", "-", req.id.as_str()],
            Call {
                log: Some(log),
                input: Some(resources),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| rune_err("rune update", e))?;
        Ok(api::Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let mut rx = {
            let mut cs = self.inner.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            c.process(&req.exec_id)?.exit.subscribe()
        };
        let exit = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| {
                err(
                    Code::NOT_FOUND,
                    format!("{} was deleted", name(&req.id, &req.exec_id)),
                )
            })?
            .clone()
            .expect("waited for Some");
        Ok(api::WaitResponse {
            exit_status: exit.0,
            exited_at: MessageField::some(exit.1),
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let (rune, log) = {
            let mut cs = self.inner.containers.lock().await;
            let c = container(&mut cs, &req.id)?;
            (c.rune.clone(), c.log())
        };
        let out = rune
            .run(["events", "--stats", req.id.as_str()], log_call(&log))
            .await
            .map_err(|e| rune_err("rune events --stats", e))?;
        let metrics = crate::stats::metrics_v1(&out)
            .map_err(|e| err(Code::UNKNOWN, format!("rune events --stats: {e}")))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(Any {
                type_url: "io.containerd.cgroups.v1.Metrics".to_string(),
                value: metrics
                    .write_to_bytes()
                    .map_err(|e| err(Code::UNKNOWN, e.to_string()))?,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = {
            let cs = self.inner.containers.lock().await;
            cs.get(&req.id).map(|c| c.init.pid as u32).unwrap_or(0)
        };
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        if self.inner.containers.lock().await.is_empty() {
            self.inner.exit.signal();
        }
        Ok(api::Empty::new())
    }
}

impl Inner {
    async fn pause_resume(&self, id: &str, pause: bool) -> TtrpcResult<api::Empty> {
        let (rune, log) = {
            let mut cs = self.containers.lock().await;
            let c = container(&mut cs, id)?;
            (c.rune.clone(), c.log())
        };
        let op = if pause { "pause" } else { "resume" };
        rune.run([op, id], log_call(&log))
            .await
            .map_err(|e| rune_err(&format!("rune {op}"), e))?;
        if let Some(c) = self.containers.lock().await.get_mut(id) {
            c.paused = pause;
        }
        if pause {
            self.publish(
                topics::TASK_PAUSED_EVENT_TOPIC,
                Box::new(ev::TaskPaused {
                    container_id: id.to_string(),
                    ..Default::default()
                }),
            )
            .await;
        } else {
            self.publish(
                topics::TASK_RESUMED_EVENT_TOPIC,
                Box::new(ev::TaskResumed {
                    container_id: id.to_string(),
                    ..Default::default()
                }),
            )
            .await;
        }
        Ok(api::Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_runtime_options_give_the_config_path() {
        // runtimeoptions.v1.Options{type_url: "x", config_path: "/etc/rune.toml"}
        let mut value = vec![0x0a, 1, b'x', 0x12, 14];
        value.extend_from_slice(b"/etc/rune.toml");
        let any = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value,
            ..Default::default()
        };
        assert_eq!(create_options(&any).unwrap().config_path, "/etc/rune.toml");
        let bad = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: vec![0x12, 200, 1],
            ..Default::default()
        };
        assert!(create_options(&bad).is_err());
        let other = Any {
            type_url: "example.com/Other".into(),
            ..Default::default()
        };
        let e = create_options(&other).unwrap_err();
        assert!(format!("{e:?}").contains("not understood"));
    }

    #[test]
    fn runc_options_give_binary_and_root() {
        let o = containerd_shim::protos::shim::oci::Options {
            binary_name: "/opt/rune".into(),
            root: "/run/x".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let got = create_options(&any).unwrap();
        assert_eq!(
            (got.binary_name.as_str(), got.root.as_str()),
            ("/opt/rune", "/run/x")
        );
    }

    #[test]
    fn ids_that_are_not_file_names_are_refused() {
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(77)] {
            assert!(check_id("exec id", bad).is_err(), "{bad:?}");
        }
        for good in ["exec-1", "a.b_c", &"x".repeat(76)] {
            assert!(check_id("exec id", good).is_ok(), "{good:?}");
        }
    }
}
