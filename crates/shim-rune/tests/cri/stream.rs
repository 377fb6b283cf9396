//! `Exec` as `kubectl exec` takes it: the CRI's Exec returns a URL of containerd's
//! streaming server (on loopback here), which the client opens as a WebSocket with
//! the `v4.channel.k8s.io` subprotocol (test-support's `remotecommand`). The same
//! sessions run in a runc container for the expected values.

use std::time::Duration;

use test_support::ExecStream;

use crate::client::Cri;
use crate::common::*;
use crate::node::*;

/// What one container's exec sessions showed, compared between handlers.
#[derive(Debug, PartialEq)]
struct Sessions {
    /// `sh -c 'echo out; echo err >&2; exit 3'`: stdout, stderr, the error channel's
    /// Status, the exit code it reports, whether the server then closed.
    failing: (String, String, serde_json::Value, Option<i32>, bool),
    /// `sh -c 'echo fine'`: stdout, the Status.
    fine: (String, serde_json::Value),
    /// The echo command with stdin: what came back of a line written to it; the Status
    /// seen once the client closed (v4 has no half-close: closing is stdin's end);
    /// whether the exec's process was then gone from the container's cgroup.
    echo: (String, Option<serde_json::Value>, bool),
}

const TIMEOUT: Duration = Duration::from_secs(20);

/// The container's own program, which waits.
const WAITING: &[&str] = &["/bin/sh", "-c", "while :; do sleep 1; done"];

/// Runs the sessions in container `ctr` (whose OCI `cgroupsPath` is `cgroup`), with
/// `sh` the shell and `echo` the command that copies stdin to stdout.
fn sessions(client: &Cri, ctr: &str, cgroup: &str, sh: &str, echo: &[&str]) -> Sessions {
    let url = client.must_exec(ctr, &[sh, "-c", "echo out; echo err >&2; exit 3"], false);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let s = ExecStream::connect(&url).unwrap().finish(TIMEOUT).unwrap();
    let failing = (
        String::from_utf8_lossy(&s.stdout).into_owned(),
        String::from_utf8_lossy(&s.stderr).into_owned(),
        s.status().unwrap_or_default(),
        s.exit_code(),
        s.closed,
    );

    let url = client.must_exec(ctr, &[sh, "-c", "echo fine"], false);
    let s = ExecStream::connect(&url).unwrap().finish(TIMEOUT).unwrap();
    let fine = (
        String::from_utf8_lossy(&s.stdout).into_owned(),
        s.status().unwrap_or_default(),
    );

    let before = procs(cgroup);
    let url = client.must_exec(ctr, echo, true);
    let mut session = ExecStream::connect(&url).unwrap();
    session.write_stdin(b"hello through stdin\n").unwrap();
    session
        .read_until(TIMEOUT, |s| s.stdout.ends_with(b"\n"))
        .unwrap();
    // The container's loop makes a `sleep` a second (a fork of the loop's shell, then
    // `sleep`): the exec's processes are the new ones that are neither, nor gone.
    let exec: Vec<String> = procs(cgroup)
        .into_iter()
        .filter(|p| {
            let cmd = cmdline(p);
            !before.contains(p)
                && !cmd.is_empty()
                && !cmd.starts_with("sleep")
                && cmd.trim_end() != WAITING.join(" ")
        })
        .collect();
    assert!(
        !exec.is_empty(),
        "the exec's process is not in the container"
    );
    let s = session.close().unwrap();
    let ended = wait_until(Duration::from_secs(10), || {
        let now = procs(cgroup);
        exec.iter().all(|p| !now.contains(p))
    });
    let echo = (
        String::from_utf8_lossy(&s.stdout).into_owned(),
        s.status(),
        ended,
    );
    Sessions {
        failing,
        fine,
        echo,
    }
}

/// The pids in the container's cgroup (memory hierarchy), sorted.
fn procs(cgroup: &str) -> Vec<String> {
    let mut pids: Vec<String> = cgroup_file("memory", cgroup, "cgroup.procs")
        .lines()
        .map(str::to_string)
        .collect();
    pids.sort();
    pids
}

/// A process's command line, its arguments joined by spaces; empty once it is gone.
fn cmdline(pid: &str) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// A pod of `handler` (with `annotations`) and one waiting container of it: runs the
/// sessions, then removes the pod; nothing is left.
fn in_pod(
    c: &Ctrd,
    client: &Cri,
    handler: &str,
    annotations: &[(&str, &str)],
    echoes: &[&[&str]],
) -> Vec<Sessions> {
    let mut config = pod_config(c, &format!("exec-{handler}"));
    for (k, v) in annotations {
        config.annotations.insert(k.to_string(), v.to_string());
    }
    let pod = client.must_run_pod_sandbox(&config, handler);
    let ctr = start_container(client, &pod, &config, "app", WAITING);
    let spec = bundle_spec(c, &ctr);
    let cgroup = spec["linux"]["cgroupsPath"].as_str().unwrap().to_string();
    let seen = echoes
        .iter()
        .map(|echo| sessions(client, &ctr, &cgroup, "/bin/sh", echo))
        .collect();
    if annotations.iter().any(|(k, _)| *k == "enclave.type") {
        // The session's process is one of the enclave's: it has the sim enclave's
        // evidence socket, which only the PAL hands out (`INCLAVARE_SIM_FD`).
        let probe = "test -S /proc/self/fd/\"$INCLAVARE_SIM_FD\" && echo enclave process";
        let url = client.must_exec(&ctr, &["/bin/sh", "-c", probe], false);
        let s = ExecStream::connect(&url).unwrap().finish(TIMEOUT).unwrap();
        assert_eq!(
            (&s.stdout[..], s.exit_code()),
            (&b"enclave process\n"[..], Some(0)),
            "{s:?}"
        );
    }
    client.must_stop_container(&ctr, 0);
    client.must_remove_container(&ctr);
    remove_pod(c, client, &pod, &config);
    seen
}

/// `cat`, and the shell's own loop for the enclave (whose only program is the
/// signed `/bin/sh`: the PAL refuses another).
const CAT: &[&str] = &["cat"];
const SH_ECHO: &[&str] = &["/bin/sh", "-c", "while read -r l; do echo \"$l\"; done"];

#[test]
fn exec_streams_through_the_streaming_server_as_with_runc() {
    if !root_or_skip("exec_streams_through_the_streaming_server_as_with_runc") {
        return;
    }
    let (c, client) = start_cri();
    let runc = in_pod(&c, &client, "runc", &[], &[CAT, SH_ECHO]);
    // kubelet's remotecommand (exec.go): a non-zero exit is a Failure Status with
    // reason NonZeroExitCode and an ExitCode cause; a zero one, Success.
    let failing = &runc[0].failing;
    assert_eq!(
        (&failing.0[..], &failing.1[..], failing.3, failing.4),
        ("out\n", "err\n", Some(3), true)
    );
    assert_eq!(failing.2["status"], "Failure");
    assert_eq!(failing.2["reason"], "NonZeroExitCode");
    assert_eq!(
        failing.2["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "3"})
    );
    assert_eq!(runc[0].fine.0, "fine\n");
    assert_eq!(runc[0].fine.1["status"], "Success");
    for s in &runc {
        assert_eq!(s.echo.0, "hello through stdin\n");
        assert!(s.echo.2, "the exec's process outlived the session");
    }

    let rune = in_pod(&c, &client, "rune", &[], &[CAT]);
    assert_eq!(rune[0], runc[0], "rune");

    // An enclave container, made one by the pod's annotations alone: the exec runs
    // through the PAL, its streams and status as with runc.
    let enclave = [("enclave.type", "sim"), ("enclave.runtime.args", "debug")];
    let rune = in_pod(&c, &client, "rune", &enclave, &[SH_ECHO]);
    assert_eq!(rune[0], runc[1], "enclave");
}
