//! One function per subcommand: turn flags into `rune-core` calls and print results.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command as Process;

use anyhow::{bail, Context, Result};
use rune_core::resources::{self, ResourceFlags};
use rune_core::{templates, CreateOptions, Exec, ExecOptions, Runtime};

use crate::cli::{self, Cli, Command, Format};

/// `println!` that returns an error instead of panicking when stdout is closed early
/// (`rune list | head -1`); `main` ends quietly on such an error.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*)?
    };
}

/// Commands whose process ends up inside a container, and so must run from a sealed
/// copy of the binary.
pub fn enters_container(cli: &Cli) -> bool {
    matches!(
        cli.command,
        Some(Command::Create(_) | Command::Run(_) | Command::Exec(_))
    )
}

/// Runs the command and returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    if cli.version {
        print_version()?;
        return Ok(0);
    }
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        Cli::command().print_help()?;
        return Ok(0);
    };
    let rt = Runtime::new(&cli.global.root, cli.global.systemd_cgroup);
    match command {
        Command::Create(c) => {
            warn_unsupported(&c);
            rt.create(&c.id, &create_options(&c), true)?;
        }
        Command::Start(c) => rt.start(&c.id)?,
        Command::Run(r) => {
            warn_unsupported(&r.create);
            let opts = CreateOptions {
                no_subreaper: r.no_subreaper,
                ..create_options(&r.create)
            };
            return Ok(rt.run(&r.create.id, &opts, r.detach)?);
        }
        Command::Exec(e) => return exec(&rt, &cli.global, e),
        Command::EnclaveExecWait(w) => return enclave_exec_wait(&w.id),
        Command::Kill(k) => rt.kill(&k.id, &k.signal, k.all)?,
        Command::Delete(d) => rt.delete(&d.id, d.force)?,
        Command::State(s) => {
            let state = rt.state(&s.id)?;
            out!("{}", serde_json::to_string_pretty(&state)?);
        }
        Command::List(l) => list(&rt, &l)?,
        Command::Spec(s) => spec(&s)?,
        Command::Ps(p) => ps(&rt, &p)?,
        Command::Events(e) => {
            let interval = rune_core::events::parse_go_duration(&e.interval)
                .map_err(|m| anyhow::anyhow!("--interval: {m}"))?;
            rt.events(&e.id, interval, e.stats, |event| {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer(&mut out, event)?;
                writeln!(out)?;
                out.flush()
            })?;
        }
        Command::Pause(p) => rt.pause(&p.id)?,
        Command::Resume(p) => rt.resume(&p.id)?,
        Command::Update(u) => update(&rt, &u)?,
        Command::Attest(a) => attest(&rt, &a)?,
        Command::Features => {
            out!("{}", serde_json::to_string_pretty(&templates::features())?);
        }
    }
    Ok(0)
}

fn print_version() -> Result<()> {
    out!("rune version {}", env!("CARGO_PKG_VERSION"));
    out!("spec: 1.1.0");
    Ok(())
}

fn warn_unsupported(c: &cli::Create) {
    if c.pidfd_socket.is_some() {
        tracing::warn!("--pidfd-socket is not supported yet and is ignored");
    }
}

fn create_options(c: &cli::Create) -> CreateOptions {
    CreateOptions {
        bundle: c.bundle.clone(),
        console_socket: c.console_socket.clone(),
        pid_file: c.pid_file.as_deref().map(absolute),
        no_pivot: c.no_pivot,
        preserve_fds: c.preserve_fds,
        no_subreaper: false,
    }
}

/// runc resolves relative pid files against its own working directory.
fn absolute(p: &Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .with_context(|| format!("--user {s:?}: uid must be a number"))?;
    let gid = g
        .map(|g| g.parse())
        .transpose()
        .with_context(|| format!("--user {s:?}: gid must be a number"))?;
    Ok((uid, gid))
}

fn exec(rt: &Runtime, global: &cli::GlobalOpts, e: cli::Exec) -> Result<i32> {
    if e.pidfd_socket.is_some() {
        tracing::warn!("--pidfd-socket is not supported yet and is ignored");
    }
    let opts = ExecOptions {
        process: e.process.clone(),
        args: e.command.clone(),
        env: e.env.clone(),
        cwd: e.cwd.clone(),
        user: e.user.as_deref().map(parse_user).transpose()?,
        additional_gids: e.additional_gids.clone(),
        capabilities: e.cap.clone(),
        no_new_privs: e.no_new_privs,
        tty: e.tty,
        console_socket: e.console_socket.clone(),
        pid_file: e.pid_file.as_deref().map(absolute),
        preserve_fds: e.preserve_fds,
        detach: e.detach,
        ignore_paused: e.ignore_paused,
        sub_cgroups: e.cgroup.clone(),
        apparmor: e.apparmor.clone(),
        process_label: e.process_label.clone(),
    };
    match rt.exec(&e.id, &opts)? {
        Exec::Started(_) if e.detach => Ok(0),
        Exec::Started(pid) => Ok(rt.wait_exec(pid)?),
        Exec::Terminal(pid, proxy) => Ok(rt.wait_exec_with_terminal(pid, proxy)?),
        Exec::Enclave(started) if e.detach => {
            let pid = spawn_enclave_waiter(global, &e.id, started)?;
            if let Some(path) = &opts.pid_file {
                rune_core::pidfile::write(path, pid)?;
            }
            Ok(0)
        }
        Exec::Enclave(started) => {
            if let Some(path) = &opts.pid_file {
                rune_core::pidfile::write(path, std::process::id() as i32)?;
            }
            Ok(started.wait()?)
        }
    }
}

/// `exec -d` in an enclave container: the process runs inside the enclave runtime,
/// so the pid a caller waits on and signals is a small waiter process (this binary's
/// hidden `enclave-exec-wait`) that holds the agent connection, forwards its signals
/// and exits with the process's exit code. Like a detached runc exec it outlives rune
/// and is reaped by the caller's subreaper.
fn spawn_enclave_waiter(
    global: &cli::GlobalOpts,
    id: &str,
    started: rune_core::EnclaveExec,
) -> Result<i32> {
    use std::process::Stdio;
    let (conn, signals) = started.into_fds();
    let mut cmd = Process::new("/proc/self/exe");
    cmd.arg("--root").arg(&global.root);
    if let Some(log) = &global.log {
        cmd.arg("--log").arg(log);
    }
    if global.log_format == cli::LogFormat::Json {
        cmd.args(["--log-format", "json"]);
    }
    // The waiter reports on stderr when its signals are blocked for forwarding, so a
    // signal sent to the pid we return can never arrive before it is ready for it.
    let (mut ready, ready_w) = std::io::pipe().context("create the waiter's ready pipe")?;
    cmd.args(["enclave-exec-wait", id])
        .stdin(Stdio::from(conn))
        .stdout(Stdio::from(signals))
        .stderr(Stdio::from(ready_w));
    let child = cmd
        .spawn()
        .context("start the waiter of the enclave process")?;
    drop(cmd);
    let mut said = Vec::new();
    ready
        .read_to_end(&mut said)
        .context("hear from the waiter")?;
    match said.strip_prefix(WAITER_READY) {
        Some(_) => Ok(child.id() as i32),
        None if said.is_empty() => {
            bail!("the waiter of the enclave process ended before it was ready")
        }
        None => bail!("{}", String::from_utf8_lossy(&said).trim()),
    }
}

const WAITER_READY: &[u8] = b"ready\n";

fn enclave_exec_wait(id: &str) -> Result<i32> {
    use std::os::fd::AsFd;
    // Signals sent from here on stay pending until the forwarder takes them.
    nix::sys::signal::SigSet::all().thread_block()?;
    let conn = std::io::stdin().as_fd().try_clone_to_owned()?;
    let signals = std::io::stdout().as_fd().try_clone_to_owned()?;
    // Nothing may write into the signal pipe by way of stdout.
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    nix::unistd::dup2(null.as_raw_fd(), 1)?;
    std::io::stderr().write_all(WAITER_READY)?;
    nix::unistd::dup2(null.as_raw_fd(), 2)?;
    Ok(rune_core::EnclaveExec::from_fds(id, conn, signals).wait()?)
}

fn list(rt: &Runtime, l: &cli::List) -> Result<()> {
    let states = rt.list()?;
    let mut out = std::io::stdout().lock();
    if l.quiet {
        for s in &states {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    match l.format {
        // runc 1.1 encodes its nil slice: `null`, not `[]`, when there is no container.
        Format::Json if states.is_empty() => writeln!(out, "null")?,
        Format::Json => writeln!(out, "{}", serde_json::to_string(&states)?)?,
        Format::Table => {
            let rows: Vec<[String; 6]> = states
                .iter()
                .map(|s| {
                    [
                        s.id.clone(),
                        s.pid.to_string(),
                        s.status.clone(),
                        s.bundle.display().to_string(),
                        s.created
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                        s.owner.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
    }
    Ok(())
}

fn attest(rt: &Runtime, a: &cli::Attest) -> Result<()> {
    let data = match &a.report_data {
        Some(h) => {
            let bytes = hex::decode(h).with_context(|| format!("--report-data {h:?}: not hex"))?;
            if bytes.len() > 64 {
                bail!("--report-data: {} bytes, at most 64", bytes.len());
            }
            let mut data = [0u8; 64];
            data[..bytes.len()].copy_from_slice(&bytes);
            Some(data)
        }
        None => None,
    };
    let report = rt.attest(&a.id, data, a.is_ra, &a.quote_type)?;
    match &a.report_file {
        Some(path) => {
            fs::write(path, &report).with_context(|| format!("write {}", path.display()))?
        }
        None => out!(
            "{}",
            report
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    }
    Ok(())
}

fn spec(s: &cli::SpecCmd) -> Result<()> {
    let path = s.bundle.join("config.json");
    if path.exists() {
        bail!("{} exists: remove it first", path.display());
    }
    let ids = s.rootless.then(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    let mut spec = templates::default_spec(ids);
    if let Some(kind) = &s.enclave {
        templates::make_enclave(&mut spec, kind, s.enclave_runtime_path.as_deref());
    }
    let json = serde_json::to_string_pretty(&spec)?;
    fs::write(&path, json + "\n").with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

fn ps(rt: &Runtime, p: &cli::Ps) -> Result<()> {
    let pids = rt.pids(&p.id)?;
    if p.format == Format::Json {
        out!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let opts = if p.ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        p.ps_options.clone()
    };
    let output = Process::new("ps")
        .args(&opts)
        .output()
        .context("run ps(1)")?;
    if !output.status.success() {
        bail!(
            "ps {}: {}",
            opts.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    out!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|pid| pids.contains(&pid)) {
            out!("{line}");
        }
    }
    Ok(())
}

/// Parses runc's `--interval` (a Go duration such as `5s`, `1m`, `500ms`) into whole
/// seconds, at least one.
fn update(rt: &Runtime, u: &cli::Update) -> Result<()> {
    // As runc: a document, when given, is all there is; the flags count otherwise.
    let request = match &u.resources {
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("read resources from stdin")?;
            resources::from_document(&buf)?
        }
        Some(p) => {
            let buf = fs::read(p).with_context(|| format!("open {}", p.display()))?;
            resources::from_document(&buf)?
        }
        None => resources::from_flags(&ResourceFlags {
            memory: u.memory.clone(),
            memory_reservation: u.memory_reservation.clone(),
            memory_swap: u.memory_swap.clone(),
            kernel_memory: u.kernel_memory.clone(),
            kernel_memory_tcp: u.kernel_memory_tcp.clone(),
            cpu_shares: u.cpu_share.clone(),
            cpu_period: u.cpu_period.clone(),
            cpu_quota: u.cpu_quota.clone(),
            cpuset_cpus: u.cpuset_cpus.clone(),
            cpuset_mems: u.cpuset_mems.clone(),
            pids_limit: u.pids_limit.clone(),
            blkio_weight: u.blkio_weight.clone(),
            cpu_rt_period: u.cpu_rt_period.clone(),
            cpu_rt_runtime: u.cpu_rt_runtime.clone(),
        })?,
    };
    if request.kernel_memory_ignored {
        tracing::warn!("{}", resources::KERNEL_MEMORY_WARNING);
    }
    let res = request.resources;
    // runc writes the two as lines of one schemata.
    let schemata: Vec<&str> = [u.l3_cache_schema.as_deref(), u.mem_bw_schema.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let schemata = (!schemata.is_empty()).then(|| schemata.join("\n"));
    rt.update_with_rdt(&u.id, &res, schemata.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1:2").unwrap(), (1, Some(2)));
        assert!(parse_user("root").is_err());
    }

    #[test]
    fn containerd_command_lines_parse() {
        use clap::Parser;
        let lines: &[&[&str]] = &[
            &[
                "rune",
                "--root",
                "/run/containerd/runc/default",
                "--log",
                "/b/log.json",
                "--log-format",
                "json",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/init.pid",
                "c1",
            ],
            &[
                "rune",
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "--systemd-cgroup",
                "start",
                "c1",
            ],
            &["rune", "--root", "/r", "delete", "--force", "c1"],
            &["rune", "--root", "/r", "kill", "--all", "c1", "9"],
            &[
                "rune",
                "--root",
                "/r",
                "exec",
                "--process",
                "/tmp/p.json",
                "--detach",
                "--pid-file",
                "/b/e.pid",
                "c1",
            ],
            &["rune", "--root", "/r", "ps", "--format", "json", "c1"],
            &["rune", "--root", "/r", "update", "--resources=-", "c1"],
            &["rune", "--root", "/r", "events", "--interval=5s", "c1"],
            &["rune", "--rootless=false", "--root", "/r", "state", "c1"],
            &["rune", "list", "--format=json"],
            &["rune", "exec", "-t", "c1", "sh", "-c", "echo -n hi"],
        ];
        for line in lines {
            Cli::try_parse_from(*line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
        let cli = Cli::try_parse_from(["rune", "exec", "c1", "ls", "-la"]).unwrap();
        match cli.command {
            Some(Command::Exec(e)) => assert_eq!(e.command, ["ls", "-la"]),
            other => panic!("{other:?}"),
        }
    }
}
