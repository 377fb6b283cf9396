//! create, start and delete of containers and exec processes: each runs `rune` and
//! records the processes' states; a failed create undoes what it did.

use super::*;

impl Inner {
    pub(super) fn settings(&self, options: &CreateOptions) -> TtrpcResult<(Config, Rune)> {
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

    pub(super) async fn create(
        &self,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
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

    pub(super) async fn create_steps(
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

    pub(super) async fn start(&self, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
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

    pub(super) async fn delete(&self, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
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
pub(super) struct Undo {
    rootfs: Option<PathBuf>,
    rune_created: bool,
}

impl Undo {
    pub(super) async fn run(&self, rune: &Rune, id: &str, bundle: &Path) {
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

pub(super) fn read_pid(path: &Path) -> TtrpcResult<i32> {
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

pub(super) fn log_call(log: &Path) -> Call {
    Call {
        log: Some(log.to_path_buf()),
        ..Default::default()
    }
}
