//! The state a runtime reports, in runc's JSON shape (`runc state`, `runc list -f json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use libcontainer::container::{Container, ContainerStatus};
use serde::{Deserialize, Serialize};

/// One container's state as `runc state` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    /// Init pid; 0 once stopped, as runc reports.
    pub pid: i32,
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: DateTime<Utc>,
    pub owner: String,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl ContainerState {
    /// Builds the state of a loaded container. The rootfs comes from the bundle's
    /// `config.json` as runc reports it; it is empty if the bundle is gone.
    pub fn from_container(c: &Container) -> Self {
        let status = c.status();
        let pid = match status {
            ContainerStatus::Stopped => 0,
            _ => c.pid().map(|p| p.as_raw()).unwrap_or(0),
        };
        let owner = c
            .creator()
            .map(|o| o.to_string_lossy().into_owned())
            .unwrap_or_default();
        ContainerState {
            oci_version: c.state.oci_version.clone(),
            id: c.id().to_string(),
            pid,
            status: status_name(status).to_string(),
            bundle: c.bundle().clone(),
            rootfs: rootfs_of(c.bundle()),
            created: c.created().unwrap_or_default(),
            owner,
            annotations: c.state.annotations.clone().unwrap_or_default(),
        }
    }
}

/// The lower-case status names of the runtime spec (libcontainer displays them capitalised).
pub fn status_name(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

fn rootfs_of(bundle: &Path) -> PathBuf {
    #[derive(Deserialize)]
    struct Root {
        path: PathBuf,
    }
    #[derive(Deserialize)]
    struct Partial {
        root: Option<Root>,
    }
    let Ok(bytes) = std::fs::read(bundle.join("config.json")) else {
        return PathBuf::new();
    };
    match serde_json::from_slice::<Partial>(&bytes) {
        Ok(Partial { root: Some(root) }) if root.path.is_absolute() => root.path,
        Ok(Partial { root: Some(root) }) => bundle.join(root.path),
        _ => PathBuf::new(),
    }
}
