//! The `rune` command line as the shim drives it: one `rune` process per operation, as
//! containerd's runc shim drives runc. libcontainer never runs inside the shim's
//! multi-threaded process (a clone of a tokio process is not safe to use).
//!
//! The shim is a child subreaper and reaps every child from its SIGCHLD handler, so a
//! `rune` process is never waited on directly: its exit arrives through the shim crate's
//! exit monitor, subscribed to before the process is started.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim::asynchronous::monitor::{monitor_subscribe, monitor_unsubscribe};
use containerd_shim::monitor::{ExitEvent, Subject, Topic};

/// Why a `rune` invocation failed. The message is rune's own, as containerd shows it.
#[derive(Debug, thiserror::Error)]
pub enum RuneError {
    #[error("start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Shim(String),
}

impl RuneError {
    /// The process or container is gone: containerd expects "not found" then.
    pub fn is_not_running(&self) -> bool {
        let msg = self.to_string();
        [
            "container not running",
            "process already finished",
            "no such process",
            "does not exist",
        ]
        .iter()
        .any(|m| msg.contains(m))
    }
}

/// The file descriptors a container process gets as its stdin, stdout and stderr.
pub struct ProcessFds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// One `rune` binary and state root.
#[derive(Debug, Clone)]
pub struct Rune {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// One invocation's extras.
#[derive(Default)]
pub struct Call {
    /// `--log FILE --log-format json`: rune's errors, read back on failure.
    pub log: Option<PathBuf>,
    /// Bytes for rune's stdin.
    pub input: Option<Vec<u8>>,
    /// The container process's stdio, which `create` and `exec` hand on to it.
    pub fds: Option<ProcessFds>,
}

impl Rune {
    /// Runs `rune --root ROOT [--log L --log-format json] ARGS…` and returns its stdout.
    pub async fn run<I, S>(&self, args: I, call: Call) -> Result<Vec<u8>, RuneError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = &call.log {
            cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        cmd.args(args.into_iter().map(Into::into));
        match call.fds {
            Some(fds) => {
                cmd.stdin(Stdio::from(fds.stdin))
                    .stdout(Stdio::from(fds.stdout))
                    .stderr(Stdio::from(fds.stderr));
            }
            None => {
                cmd.stdin(if call.input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            }
        }
        let mut sub = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|e| RuneError::Shim(format!("subscribe to exits: {e}")))?;
        let spawned = cmd.spawn();
        // The command holds the container's stdio ends; the shim must not keep them.
        drop(cmd);
        let mut child = match spawned {
            Ok(c) => c,
            Err(source) => {
                let _ = monitor_unsubscribe(sub.id).await;
                return Err(RuneError::Spawn {
                    binary: self.binary.clone(),
                    source,
                });
            }
        };
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        let input = call.input;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // Pipes are read on blocking threads: small, and they end with the process.
        let writer = tokio::task::spawn_blocking(move || {
            if let (Some(mut w), Some(data)) = (stdin, input) {
                let _ = std::io::Write::write_all(&mut w, &data);
            }
        });
        let out = tokio::task::spawn_blocking(move || read_all(stdout));
        let err = tokio::task::spawn_blocking(move || read_all(stderr));
        let code = wait_for(&mut sub.rx, pid).await;
        let _ = monitor_unsubscribe(sub.id).await;
        let _ = writer.await;
        let out = out.await.unwrap_or_default();
        let err = err.await.unwrap_or_default();
        if code == 0 {
            return Ok(out);
        }
        let msg = call
            .log
            .as_deref()
            .and_then(last_error)
            .or_else(|| last_line(&err))
            .unwrap_or_else(|| format!("rune exited with status {code}"));
        Err(RuneError::Failed(msg))
    }
}

fn read_all(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}

async fn wait_for(rx: &mut tokio::sync::mpsc::UnboundedReceiver<ExitEvent>, pid: i32) -> i32 {
    while let Some(ev) = rx.recv().await {
        if matches!(ev.subject, Subject::Pid(p) if p == pid) {
            return ev.exit_code;
        }
    }
    -1
}

/// The message of the last `"level":"error"` entry of a runc-style JSON log, which is
/// where containerd's runc shim looks too.
pub fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

fn last_line(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    // rune without --log prints runc's logrus line: time="…" level=error msg="…".
    if let Some((_, quoted)) = line.split_once(" level=error msg=") {
        if let Ok(msg) = serde_json::from_str::<String>(quoted) {
            return Some(msg);
        }
    }
    Some(line.trim_start_matches("rune: ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_of_the_log_is_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(
            &log,
            concat!(
                "{\"level\":\"error\",\"msg\":\"first\",\"time\":\"t\"}\n",
                "not json\n",
                "{\"level\":\"error\",\"msg\":\"container not running\",\"time\":\"t\"}\n",
                "{\"level\":\"info\",\"msg\":\"later\",\"time\":\"t\"}\n",
            ),
        )
        .unwrap();
        assert_eq!(last_error(&log).as_deref(), Some("container not running"));
        assert!(RuneError::Failed(last_error(&log).unwrap()).is_not_running());
        assert_eq!(last_error(&dir.path().join("none")), None);
        assert_eq!(
            last_line(b"rune: container abc does not exist\n\n").as_deref(),
            Some("container abc does not exist")
        );
        // runc's text form, as logrus writes it (Go-quoted msg).
        assert_eq!(
            last_line(b"time=\"2026-11-30T12:56:02Z\" level=error msg=\"exec: \\\"/x\\\": permission denied\"\n")
                .as_deref(),
            Some("exec: \"/x\": permission denied")
        );
    }
}
