//! The shim's process: containerd's `start` and `delete` actions and the serving
//! daemon, on the `containerd-shim` crate (0.11: its plain-address `start` reply is the
//! one containerd 1.6 understands; 1.7 and 2.x accept it too).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::{api, Config as ShimConfig, Error, Flags, StartOpts};

use crate::config::{default_path, Config, LogLevel};
use crate::rune::{Call, Rune};
use crate::service::{unmount, BundleState, Service, BUNDLE_STATE};

/// containerd's name for this runtime.
pub const RUNTIME_NAME: &str = "io.containerd.rune.v2";
/// Pods group their containers under one shim by this annotation (as the runc shim).
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

pub struct RuneShim {
    id: String,
    namespace: String,
    config: Result<Config, String>,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for RuneShim {
    type T = Service;

    async fn new(_runtime_id: &str, flags: &Flags, shim_config: &mut ShimConfig) -> Self {
        // The shim logs with `tracing`, to containerd's log fifo (set up below).
        shim_config.no_setup_logger = true;
        let config = Config::load(&default_path()).map_err(|e| e.to_string());
        if flags.action.is_empty() && !flags.socket.is_empty() {
            let level = match (&config, flags.debug) {
                (_, true) => LogLevel::Debug,
                (Ok(c), _) => c.log_level,
                (Err(_), _) => LogLevel::Info,
            };
            init_logging(level);
        }
        RuneShim {
            id: flags.id.clone(),
            namespace: flags.namespace.clone(),
            config,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        // A malformed configuration stops the shim before it starts, with one line.
        if let Err(e) = &self.config {
            return Err(Error::InvalidArgument(e.clone()));
        }
        let grouping = std::fs::read("config.json")
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|spec| spec["annotations"][SANDBOX_ID].as_str().map(str::to_string))
            .unwrap_or_else(|| opts.id.clone());
        let address = spawn(opts, &grouping, Vec::new()).await?;
        // containerd finds a running shim again by this file when it restarts.
        containerd_shim::asynchronous::util::write_str_to_file("address", &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<api::DeleteResponse, Error> {
        // The shim is gone (killed, or it never served): end what it left. The bundle
        // is the working directory.
        let state = std::fs::read("rune-shim.json")
            .ok()
            .and_then(|b| serde_json::from_slice::<BundleState>(&b).ok());
        let rune = match &state {
            Some(s) => Rune {
                binary: s.rune.clone(),
                root: s.root.clone(),
            },
            None => {
                let c = self.config.clone().unwrap_or_default();
                Rune {
                    binary: c.rune,
                    root: c.rune_root.join(&self.namespace),
                }
            }
        };
        if let Err(e) = rune
            .run(["delete", "--force", self.id.as_str()], Call::default())
            .await
        {
            if !e.is_not_running() {
                tracing::warn!("rune delete --force {}: {e}", self.id);
            }
        }
        if state.is_some_and(|s| s.rootfs_mounted) {
            unmount(&PathBuf::from("rootfs"));
        }
        let _ = std::fs::remove_file(BUNDLE_STATE);
        Ok(api::DeleteResponse {
            exit_status: 128 + 9,
            exited_at: MessageField::some(
                containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp::now(),
            ),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        let service = Service::new(
            &self.namespace,
            self.config.clone().unwrap_or_default(),
            publisher,
            self.exit.clone(),
        );
        if let Err(e) = service.watch_exits().await {
            tracing::error!("watch process exits: {e}");
        }
        service
    }
}

/// Logs go to the `log` fifo containerd opened in the bundle (the working directory).
fn init_logging(level: LogLevel) {
    let Ok(fifo) = std::fs::OpenOptions::new().write(true).open("log") else {
        return;
    };
    let level = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(fifo))
        .try_init();
}

/// `-v`: the version, in the shape of containerd's own shims.
pub fn version_text() -> String {
    format!(
        "containerd-shim-rune-v2:\n  Runtime: {RUNTIME_NAME}\n  Version: {}\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `-info`: containerd's `RuntimeInfo`, with rune's OCI features.
pub fn info_bytes() -> Result<Vec<u8>, String> {
    use containerd_shim::protos::protobuf::well_known_types::any::Any;
    use containerd_shim::protos::protobuf::Message;
    use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};
    let config = Config::load(&default_path()).map_err(|e| e.to_string())?;
    let features = std::process::Command::new(&config.rune)
        .arg("features")
        .output()
        .map_err(|e| format!("{}: {e}", config.rune.display()))?;
    if !features.status.success() {
        return Err(format!("{} features failed", config.rune.display()));
    }
    let info = RuntimeInfo {
        name: RUNTIME_NAME.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }),
        features: MessageField::some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
                .to_string(),
            value: features.stdout,
            ..Default::default()
        }),
        ..Default::default()
    };
    info.write_to_bytes().map_err(|e| e.to_string())
}
