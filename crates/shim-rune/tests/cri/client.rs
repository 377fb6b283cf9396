//! A blocking CRI client on containerd's unix socket: k8s-cri's generated tonic client
//! (CRI v1, `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`) on a current-thread runtime,
//! with one method per call the tests make. Methods named as the RPC return its result
//! (an error as the status's message, the one line a CRI client shows); `must_*` ones
//! panic with the call, the status and containerd's log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::common::wait_until;

pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// containerd's log, quoted when a call that must succeed fails.
    log: PathBuf,
}

/// One call on a service: `call!(client, service, method, request)`.
macro_rules! call {
    ($client:expr, $service:ident, $method:ident, $req:expr) => {{
        let mut service = $client.$service.clone();
        $client
            .rt
            .block_on(service.$method($req))
            .map(tonic::Response::into_inner)
    }};
}

impl Cri {
    /// Connects to `socket` and waits (20 s at most) until the CRI plugin answers
    /// `Version`: it says "server is not initialized yet" until it has loaded its state.
    pub fn connect(socket: &Path, log: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = socket.to_path_buf();
        // The URI is not used: every connection goes to the unix socket.
        let channel = rt
            .block_on(
                Endpoint::from_static("http://localhost").connect_with_connector(
                    tower::service_fn(move |_| {
                        let socket = socket.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(socket).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }),
                ),
            )
            .expect("connect to containerd's socket");
        let client = Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            log: log.to_path_buf(),
        };
        let mut last = None;
        let ready = wait_until(Duration::from_secs(20), || {
            let r = call!(client, runtime, version, cri::VersionRequest::default());
            let ok = r.is_ok();
            last = Some(r);
            ok
        });
        assert!(ready, "the CRI plugin is not ready: {last:?}");
        client
    }

    fn must<T, E: std::fmt::Display>(&self, what: &str, r: Result<T, E>) -> T {
        r.unwrap_or_else(|e| {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{what}: {e}\ncontainerd's log:\n{log}")
        })
    }

    /// Whether the image service knows `image` (by reference).
    pub fn image_present(&self, image: &str) -> bool {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        call!(self, images, image_status, req).is_ok_and(|r| r.image.is_some())
    }

    pub fn run_pod_sandbox(
        &self,
        config: &cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String, String> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        call!(self, runtime, run_pod_sandbox, req)
            .map(|r| r.pod_sandbox_id)
            .map_err(|e| e.message().to_string())
    }

    pub fn must_run_pod_sandbox(&self, config: &cri::PodSandboxConfig, handler: &str) -> String {
        self.must("RunPodSandbox", self.run_pod_sandbox(config, handler))
    }

    /// The pod's status and the `info` JSON of a verbose status (with its `pid`).
    pub fn pod_sandbox_status(&self, pod: &str) -> (cri::PodSandboxStatus, serde_json::Value) {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: true,
        };
        let r = self.must(
            "PodSandboxStatus",
            call!(self, runtime, pod_sandbox_status, req),
        );
        (r.status.unwrap(), info(&r.info))
    }

    pub fn must_stop_pod_sandbox(&self, pod: &str) {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        };
        self.must(
            "StopPodSandbox",
            call!(self, runtime, stop_pod_sandbox, req),
        );
    }

    pub fn must_remove_pod_sandbox(&self, pod: &str) {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        };
        self.must(
            "RemovePodSandbox",
            call!(self, runtime, remove_pod_sandbox, req),
        );
    }

    pub fn list_pod_sandbox(&self) -> Vec<cri::PodSandbox> {
        let req = cri::ListPodSandboxRequest::default();
        self.must(
            "ListPodSandbox",
            call!(self, runtime, list_pod_sandbox, req),
        )
        .items
    }

    pub fn must_create_container(
        &self,
        pod: &str,
        config: &cri::ContainerConfig,
        sandbox_config: &cri::PodSandboxConfig,
    ) -> String {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        self.must(
            "CreateContainer",
            call!(self, runtime, create_container, req),
        )
        .container_id
    }

    pub fn start_container(&self, id: &str) -> Result<(), String> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        call!(self, runtime, start_container, req)
            .map(drop)
            .map_err(|e| e.message().to_string())
    }

    pub fn must_start_container(&self, id: &str) {
        self.must("StartContainer", self.start_container(id));
    }

    /// The container's status and the `info` JSON of a verbose status (`pid`,
    /// `runtimeType`, …).
    pub fn container_status(&self, id: &str) -> (cri::ContainerStatus, serde_json::Value) {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let r = self.must(
            "ContainerStatus",
            call!(self, runtime, container_status, req),
        );
        (r.status.unwrap(), info(&r.info))
    }

    /// ExecSync with a 10 s timeout: (stdout, stderr, exit code).
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> Result<(String, String, i32), String> {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        };
        call!(self, runtime, exec_sync, req)
            .map(|r| {
                (
                    String::from_utf8_lossy(&r.stdout).into_owned(),
                    String::from_utf8_lossy(&r.stderr).into_owned(),
                    r.exit_code,
                )
            })
            .map_err(|e| e.message().to_string())
    }

    pub fn must_exec_sync(&self, id: &str, cmd: &[&str]) -> (String, String, i32) {
        self.must("ExecSync", self.exec_sync(id, cmd))
    }

    /// Exec (no TTY, stdout and stderr, stdin if `stdin`): the streaming server's URL
    /// for the session, which the caller then opens.
    pub fn must_exec(&self, id: &str, cmd: &[&str], stdin: bool) -> String {
        let req = cri::ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin,
            stdout: true,
            stderr: true,
        };
        self.must("Exec", call!(self, runtime, exec, req)).url
    }

    pub fn must_list_container_stats(&self, id: &str) -> Vec<cri::ContainerStats> {
        let req = cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                id: id.into(),
                ..Default::default()
            }),
        };
        self.must(
            "ListContainerStats",
            call!(self, runtime, list_container_stats, req),
        )
        .stats
    }

    pub fn must_update_container_resources(&self, id: &str, r: cri::LinuxContainerResources) {
        let req = cri::UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(r),
            ..Default::default()
        };
        self.must(
            "UpdateContainerResources",
            call!(self, runtime, update_container_resources, req),
        );
    }

    /// StopContainer with a grace period of `timeout` seconds.
    pub fn must_stop_container(&self, id: &str, timeout: i64) {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        self.must("StopContainer", call!(self, runtime, stop_container, req));
    }

    pub fn must_remove_container(&self, id: &str) {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.must(
            "RemoveContainer",
            call!(self, runtime, remove_container, req),
        );
    }

    pub fn list_containers(&self) -> Vec<cri::Container> {
        let req = cri::ListContainersRequest::default();
        self.must("ListContainers", call!(self, runtime, list_containers, req))
            .containers
    }
}

/// The `info` entry of a verbose status: containerd's JSON about the task.
fn info(map: &HashMap<String, String>) -> serde_json::Value {
    map.get("info")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}
