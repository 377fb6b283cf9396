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

mod lifecycle;
mod options;
mod stdio;

pub use lifecycle::unmount;
use lifecycle::*;
use options::*;
use stdio::*;

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

impl Service {
    /// Publishes `/tasks/oom` for container `id` whenever the OOM killer acts in its
    /// memory cgroup (that of its init, `pid`), as containerd's runc shim does; the CRI
    /// plugin makes that the status reason `OOMKilled`. A container without a memory
    /// cgroup to watch still runs, as with runc (a warning).
    fn watch_oom(&self, id: &str, pid: i32) {
        let (inner, handle, container) = (
            self.inner.clone(),
            tokio::runtime::Handle::current(),
            id.to_string(),
        );
        let on_oom = move || {
            let (inner, container) = (inner.clone(), container.clone());
            tracing::info!("{container}: OOM kill in its memory cgroup");
            handle.spawn(async move {
                let event = ev::TaskOOM {
                    container_id: container,
                    ..Default::default()
                };
                inner
                    .publish(topics::TASK_OOM_EVENT_TOPIC, Box::new(event))
                    .await;
            });
        };
        match crate::oom::memory_cgroup(pid).and_then(|cg| crate::oom::watch(&cg, on_oom)) {
            Ok(()) => {}
            Err(e) => tracing::warn!("{id}: no OOM events: {e}"),
        }
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

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let id = req.id.clone();
        let created = self.inner.create(req).await.inspect_err(|e| {
            tracing::error!("create {id}: {e:?}");
        })?;
        self.watch_oom(&id, created.pid as i32);
        Ok(created)
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
