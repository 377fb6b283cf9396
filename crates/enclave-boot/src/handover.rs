//! Handing over to the image's program: its argv, environment, working directory and
//! user, computed from the image configuration as docker computes them
//! (docker's `daemon/create.go` / moby `oci` defaults, and the image-spec's
//! `config.md` for `Entrypoint`, `Cmd`, `Env`, `WorkingDir` and `User`).
//!
//! The host's part of that launch (the command after `--`, the container's variables)
//! is in the evidence already: the enclave runtime recorded the boot program's own
//! launch before it started. What the boot program makes of it is recorded too
//! ([`record`]): rune's `Launch` event at CC MR 4, just before the `execve`. The
//! program then keeps the enclave's evidence socket (`INCLAVARE_SIM_FD`) and can attest
//! and extend, its evidence saying that it is no longer the boot program: everything
//! after that record in the log is the workload's.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use attestation_agent::eventlog::{self, Event};
use oci_spec::image::Config;

/// The argv that asks for the image's own command: rune puts the container's
/// `process.args` after `--`, and a boot image (or a `config.json`) whose command is
/// the boot program itself means "no override".
pub const NO_OVERRIDE: &str = "/.rune/enclave-boot";

/// The search path docker gives when neither the image nor the container sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandoverError {
    #[error("the image has no Entrypoint or Cmd and the container gives no command")]
    NoCommand,
    #[error("user {0:?}: {1}")]
    User(String, String),
    #[error("{0}: {1}")]
    Io(String, String),
    #[error("exec {0}: {1}")]
    Exec(String, String),
    #[error("the launch of {0} cannot be recorded in the evidence: {1}")]
    Record(String, String),
}

/// What the workload runs as, where and with what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    /// `None`: keep the boot program's own user (the container's `process.user`).
    pub user: Option<Ids>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: Option<String>,
}

/// Docker's command rule: `Entrypoint` + (the given args, or else `Cmd`).
pub fn command(config: Option<&Config>, args: &[String]) -> Result<Vec<String>, HandoverError> {
    let entrypoint = config
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let overridden = !args.is_empty() && (args.len() != 1 || args[0] != NO_OVERRIDE);
    let rest = if overridden {
        args.to_vec()
    } else {
        config.and_then(|c| c.cmd().clone()).unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(rest).collect();
    if argv.is_empty() {
        return Err(HandoverError::NoCommand);
    }
    Ok(argv)
}

/// The image's `Env`, then the container's variables on top, except `PATH` when the
/// image sets one (the container's comes from the boot image, not from the user).
pub fn environment(config: Option<&Config>, container: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<(String, String)> = config
        .and_then(|c| c.env().clone())
        .unwrap_or_default()
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    let image_has_path = env.iter().any(|(k, _)| k == "PATH");
    for (k, v) in container {
        if k == "PATH" && image_has_path {
            continue;
        }
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Resolves the image's `User` (`user`, `uid`, `user:group`, `uid:gid`, …) against the
/// `etc/passwd` and `etc/group` of `root`, as docker does: a name must exist, a number
/// need not; the group defaults to the user's primary group (else 0); supplementary
/// groups are those of `etc/group` that list the user by name.
pub fn resolve_user(root: &Path, user: &str) -> Result<Ids, HandoverError> {
    let err = |why: &str| HandoverError::User(user.to_string(), why.to_string());
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // passwd: name:x:uid:gid:gecos:home:shell
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let entry = entries
        .iter()
        .find(|f| f[0] == u)
        .or_else(|| entries.iter().find(|f| f[2] == u));
    let uid: u32 = match (entry, u.parse::<u32>()) {
        (Some(f), _) => f[2]
            .parse()
            .map_err(|_| err("its passwd entry has a bad uid"))?,
        (None, Ok(n)) => n,
        (None, Err(_)) => return Err(err("no such user in the image's /etc/passwd")),
    };
    let name = entry.map(|f| f[0].to_string());
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let gid: u32 = match g {
        Some(g) => match groups.iter().find(|f| f[0] == g) {
            Some(f) => f[2]
                .parse()
                .map_err(|_| err("its group entry has a bad gid"))?,
            None => g
                .parse()
                .map_err(|_| err("no such group in the image's /etc/group"))?,
        },
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let mut supplementary: Vec<u32> = match &name {
        Some(n) => groups
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == n))
            .filter_map(|f| f[2].parse().ok())
            .collect(),
        None => vec![],
    };
    if g.is_some() {
        // An explicit group replaces the primary one, as in docker; members stay.
        supplementary.retain(|x| *x != gid);
    }
    supplementary.sort_unstable();
    supplementary.dedup();
    Ok(Ids {
        uid,
        gid,
        groups: supplementary,
        home: entry.map(|f| f[5].to_string()),
    })
}

/// Everything the workload needs, from the image config, the container's command
/// (`args`) and environment, found under `root`.
pub fn plan(
    root: &Path,
    config: Option<&Config>,
    args: &[String],
    container_env: &[(String, String)],
    running_as_root: bool,
) -> Result<Launch, HandoverError> {
    let argv = command(config, args)?;
    let mut env = environment(config, container_env);
    let image_user = config
        .and_then(|c| c.user().clone())
        .filter(|u| !u.is_empty());
    // A container started as another user (docker run --user) keeps it.
    let user = match (image_user, running_as_root) {
        (Some(u), true) => Some(resolve_user(root, &u)?),
        _ => None,
    };
    // HOME from the image's passwd when the image does not set it (the container's
    // came from the boot image's, which is not the workload's).
    let image_home = config
        .and_then(|c| c.env().as_ref())
        .is_some_and(|e| e.iter().any(|kv| kv.starts_with("HOME=")));
    if !image_home {
        let home = match &user {
            Some(ids) => ids.home.clone(),
            None => resolve_user(root, &nix::unistd::getuid().as_raw().to_string())
                .ok()
                .and_then(|ids| ids.home),
        }
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
        env.retain(|kv| !kv.starts_with("HOME="));
        env.push(format!("HOME={home}"));
    }
    let cwd = config
        .and_then(|c| c.working_dir().clone())
        .filter(|w| !w.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok(Launch {
        argv,
        env,
        cwd,
        user,
    })
}

/// Where the workload's launch is kept for `rune exec` (inside the enclave's private
/// root, beside the boot program's mount point).
pub const SAVED_LAUNCH: &str = ".rune/launch.json";

/// Keeps `launch` under `root` so that later processes (`rune exec`) get the image's
/// environment, working directory and user as `docker exec` gives them.
///
/// The file is the boot program's own: written only as a regular file (0600) in a real
/// `.rune` directory, never through a symbolic link an image put there.
pub fn save(root: &Path, launch: &Launch) -> Result<(), HandoverError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join(SAVED_LAUNCH);
    let io = |e: std::io::Error| HandoverError::Io(path.display().to_string(), e.to_string());
    let bytes = serde_json::to_vec(launch)
        .map_err(|e| HandoverError::Io(path.display().to_string(), e.to_string()))?;
    let dir = path.parent().unwrap_or(root);
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(io(std::io::Error::other(
            "its directory is not a directory (a link?)",
        )));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(io)
}

/// The launch of a `rune exec` process: `argv` with the workload's saved environment
/// (then `overrides`, the exec's own variables, win), working directory and user, as
/// `docker exec` runs a process in the container's configuration.
pub fn for_exec(
    root: &Path,
    argv: Vec<String>,
    overrides: &[(String, String)],
) -> Result<Launch, HandoverError> {
    if argv.is_empty() {
        return Err(HandoverError::NoCommand);
    }
    let path = root.join(SAVED_LAUNCH);
    let bytes = read_nofollow(&path).map_err(|e| {
        HandoverError::Io(
            path.display().to_string(),
            format!("{e} (the image's program has not started yet)"),
        )
    })?;
    let saved: Launch = serde_json::from_slice(&bytes)
        .map_err(|e| HandoverError::Io(path.display().to_string(), e.to_string()))?;
    let mut env = saved.env;
    for (k, v) in overrides {
        env.retain(|kv| kv.split_once('=').map(|(n, _)| n) != Some(k.as_str()));
        env.push(format!("{k}={v}"));
    }
    Ok(Launch {
        argv,
        env,
        cwd: saved.cwd,
        user: saved.user,
    })
}

/// Records `launch` in the enclave's event log as rune's `Launch` event at CC MR 4
/// (`measurement::eventlog::Event::launch`): its argv, its environment without the
/// evidence socket's variable, its working directory, and the ids it will run with
/// (the boot program's own when the image names no user). Call it last before
/// [`exec`]: the workload can attest once it runs, and its evidence must show what it
/// is. `None` outside a `sim` enclave (no evidence socket, nothing to record into).
pub fn record(launch: &Launch) -> Result<Option<Event>, HandoverError> {
    let Some(fd) = sim_tee::evidence::inherited_fd() else {
        return Ok(None);
    };
    let program = launch.argv.first().cloned().unwrap_or_default();
    let why = |e: &dyn std::fmt::Display| HandoverError::Record(program.clone(), e.to_string());
    let (uid, gid, mut groups) = match &launch.user {
        Some(ids) => (ids.uid, ids.gid, ids.groups.clone()),
        None => (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
            nix::unistd::getgroups()
                .map_err(|e| why(&e))?
                .into_iter()
                .map(|g| g.as_raw())
                .collect(),
        ),
    };
    groups.sort_unstable();
    groups.dedup();
    let cwd = launch
        .cwd
        .to_str()
        .ok_or_else(|| why(&"the working directory is not UTF-8"))?;
    let measured = eventlog::Launch {
        argv: launch.argv.clone(),
        env: launch
            .env
            .iter()
            .filter(|kv| !is_socket_var(kv))
            .cloned()
            .collect(),
        cwd: cwd.to_string(),
        uid,
        gid,
        groups,
    };
    let event = Event::launch(&measured).map_err(|e| why(&e))?;
    sim_tee::evidence::extend(fd, eventlog::RUNTIME_MR_INDEX, &event).map_err(|e| why(&e))?;
    Ok(Some(event))
}

/// `INCLAVARE_SIM_FD=…`: the evidence socket's descriptor, which the runtime chose.
fn is_socket_var(kv: &str) -> bool {
    kv.split_once('=').map(|(k, _)| k) == Some(sim_tee::evidence::SIM_FD_ENV)
}

/// Finds `program` on the launch's `PATH` (names with a slash are taken as they are).
fn lookup(program: &str, env: &[String]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Becomes the workload: working directory (created if missing, as docker does), user,
/// then `execve`, keeping the evidence socket (see [`record`]). Returns only on failure.
pub fn exec(launch: &Launch) -> HandoverError {
    use nix::unistd::{Gid, Uid};
    let io = |what: String, e: &dyn std::fmt::Display| HandoverError::Io(what, e.to_string());
    if let Err(e) = std::fs::create_dir_all(&launch.cwd) {
        return io(format!("working directory {}", launch.cwd.display()), &e);
    }
    if let Some(ids) = &launch.user {
        let groups: Vec<Gid> = ids.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        if let Err(e) = nix::unistd::setgroups(&groups) {
            return io("setgroups".into(), &e);
        }
        if let Err(e) = nix::unistd::setgid(Gid::from_raw(ids.gid)) {
            return io(format!("setgid {}", ids.gid), &e);
        }
        if let Err(e) = nix::unistd::setuid(Uid::from_raw(ids.uid)) {
            return io(format!("setuid {}", ids.uid), &e);
        }
    }
    if let Err(e) = std::env::set_current_dir(&launch.cwd) {
        return io(format!("chdir {}", launch.cwd.display()), &e);
    }
    let program = &launch.argv[0];
    let Some(path) = lookup(program, &launch.env) else {
        return HandoverError::Exec(program.clone(), "executable file not found in $PATH".into());
    };
    let cstr =
        |s: &str| CString::new(s).map_err(|_| HandoverError::Exec(s.into(), "NUL byte".into()));
    let prepared = (|| {
        let path = cstr(&path.to_string_lossy())?;
        let argv = launch
            .argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let env = launch
            .env
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, HandoverError>((path, argv, env))
    })();
    match prepared {
        Ok((path, argv, env)) => match nix::unistd::execve(&path, &argv, &env) {
            Err(e) => HandoverError::Exec(program.clone(), e.desc().to_lowercase()),
            Ok(never) => match never {},
        },
        Err(e) => e,
    }
}

/// Reads `path` unless it is a symbolic link.
fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    /// The saved launch is written and read only as a regular file in a real `.rune`
    /// directory, mode 0600: a link an image left there is refused and its target kept.
    #[test]
    fn the_saved_launch_never_follows_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let launch = Launch {
            argv: vec!["/bin/app".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: None,
        };
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".rune")).unwrap();
        save(root.path(), &launch).unwrap();
        let mode = std::fs::metadata(root.path().join(SAVED_LAUNCH))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            for_exec(root.path(), vec!["x".into()], &[]).unwrap().argv,
            ["x"]
        );

        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::fs::remove_file(root.path().join(SAVED_LAUNCH)).unwrap();
        std::os::unix::fs::symlink(&target, root.path().join(SAVED_LAUNCH)).unwrap();
        assert!(save(root.path(), &launch).is_err());
        assert!(for_exec(root.path(), vec!["x".into()], &[]).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");

        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), linked.path().join(".rune")).unwrap();
        assert!(save(linked.path(), &launch).is_err());
        assert!(!elsewhere.path().join("launch.json").exists());
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn command_follows_docker() {
        // docker run IMAGE            → Entrypoint + Cmd
        // docker run IMAGE a b        → Entrypoint + [a b]
        let c = ConfigBuilder::default()
            .entrypoint(s(&["/bin/ep"]))
            .cmd(s(&["x"]))
            .build()
            .unwrap();
        assert_eq!(command(Some(&c), &[]).unwrap(), s(&["/bin/ep", "x"]));
        assert_eq!(
            command(Some(&c), &s(&[NO_OVERRIDE])).unwrap(),
            s(&["/bin/ep", "x"])
        );
        assert_eq!(
            command(Some(&c), &s(&["a", "b"])).unwrap(),
            s(&["/bin/ep", "a", "b"])
        );
        let none = ConfigBuilder::default().build().unwrap();
        assert_eq!(command(Some(&none), &[]), Err(HandoverError::NoCommand));
    }

    #[test]
    fn users_resolve_as_in_docker() {
        let root = std::env::temp_dir().join(format!("boot-user-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:app,root\nstaff:x:50:app\n",
        )
        .unwrap();
        let app = resolve_user(&root, "app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.groups.clone()),
            (1000, 1001, vec![10, 50])
        );
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        assert_eq!(resolve_user(&root, "1000").unwrap().uid, 1000);
        let explicit = resolve_user(&root, "app:staff").unwrap();
        assert_eq!((explicit.gid, explicit.groups), (50, vec![10]));
        let numeric = resolve_user(&root, "4242:4243").unwrap();
        assert_eq!((numeric.uid, numeric.gid, numeric.home), (4242, 4243, None));
        assert!(resolve_user(&root, "nobody").is_err());
        assert!(resolve_user(&root, "app:nogroup").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn image_path_wins_other_variables_are_overridden() {
        let c = ConfigBuilder::default()
            .env(s(&["PATH=/app/bin", "A=image", "B=image"]))
            .build()
            .unwrap();
        let container = vec![
            ("PATH".to_string(), "/boot".to_string()),
            ("B".to_string(), "container".to_string()),
            ("C".to_string(), "c".to_string()),
        ];
        assert_eq!(
            environment(Some(&c), &container),
            s(&["PATH=/app/bin", "A=image", "B=container", "C=c"])
        );
    }
}
