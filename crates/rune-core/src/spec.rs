//! Loading and checking a bundle's `config.json` before anything is created.
//!
//! libcontainer validates too, but part-way through `create`, after it has made the state
//! directory, and its messages do not always say which field is wrong. Checking here first
//! means bad input fails with a one-line error naming the field and leaves nothing behind.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;

use crate::error::{Result, RuneError};

/// A bundle whose `config.json` parsed and passed the checks below.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// The parsed spec, exactly as written in `config.json`.
    pub spec: Spec,
    /// Absolute, canonical path of the root filesystem.
    pub rootfs: PathBuf,
    /// Capabilities of `config.json` this runtime does not know, left out of `spec` (see
    /// [`parse_dropping_unknown_capabilities`]); when any, the container must be built
    /// from a copy holding `spec`.
    pub dropped_capabilities: Vec<String>,
    /// Mount destinations written relative in `config.json`, made absolute (relative to
    /// `/`) in `spec`, as runtime-spec 1.1 config.md "Mounts" says and runc does with a
    /// warning; when any, the container must be built from a copy holding `spec`.
    pub relative_mounts: Vec<String>,
}

impl Bundle {
    /// Reads `<dir>/config.json` and checks it. See [`check`] for what is checked.
    pub fn load(dir: &Path) -> Result<Self> {
        let dir = fs::canonicalize(dir).map_err(|source| RuneError::Bundle {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("config.json");
        let bytes = fs::read(&path).map_err(|source| RuneError::Bundle {
            path: path.clone(),
            source,
        })?;
        let (mut spec, dropped_capabilities) = parse_dropping_unknown_capabilities(&bytes)?;
        let relative_mounts = absolute_mount_destinations(&mut spec);
        let rootfs = check(&spec, &dir)?;
        Ok(Bundle {
            dir,
            spec,
            rootfs,
            dropped_capabilities,
            relative_mounts,
        })
    }
}

/// Makes relative mount destinations absolute (relative to `/`: runtime-spec 1.1
/// config.md "Mounts"); returns them as written.
pub fn absolute_mount_destinations(spec: &mut Spec) -> Vec<String> {
    let mut relative = Vec::new();
    let Some(mut mounts) = spec.mounts().clone() else {
        return relative;
    };
    for m in mounts.iter_mut().filter(|m| !m.destination().is_absolute()) {
        relative.push(m.destination().display().to_string());
        let absolute = Path::new("/").join(m.destination());
        m.set_destination(absolute);
    }
    if !relative.is_empty() {
        spec.set_mounts(Some(mounts));
    }
    relative
}

/// Parses `config.json` bytes as [`parse`] does, leaving out of `process.capabilities`
/// the names this runtime does not know (a newer kernel's, or a typo), as runc does:
/// it warns and runs without them, where parsing them would refuse the whole bundle.
/// Returns the spec and the names left out.
pub fn parse_dropping_unknown_capabilities(bytes: &[u8]) -> Result<(Spec, Vec<String>)> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return parse(bytes).map(|spec| (spec, Vec::new()));
    };
    let dropped = drop_unknown_capabilities(&mut value, "/process/capabilities");
    if dropped.is_empty() {
        return parse(bytes).map(|spec| (spec, dropped));
    }
    let bytes = serde_json::to_vec(&value).expect("a JSON value serialises");
    parse(&bytes).map(|spec| (spec, dropped))
}

/// Leaves out of the capability sets at JSON `pointer` (`/process/capabilities` of a
/// config, `/capabilities` of an `exec --process` file) the names this runtime does not
/// know; returns them, each once, in order of appearance.
pub fn drop_unknown_capabilities(value: &mut serde_json::Value, pointer: &str) -> Vec<String> {
    let mut dropped = Vec::new();
    if let Some(sets) = value.pointer_mut(pointer).and_then(|c| c.as_object_mut()) {
        for set in sets.values_mut() {
            if let Some(names) = set.as_array_mut() {
                names.retain(|name| {
                    let known = !name.is_string() || is_known_capability(name);
                    if !known {
                        let name = name.as_str().unwrap_or_default().to_string();
                        if !dropped.contains(&name) {
                            dropped.push(name);
                        }
                    }
                    known
                });
            }
        }
    }
    dropped
}

/// Whether `name` (a JSON string, `CAP_…`) is a capability this runtime knows.
fn is_known_capability(name: &serde_json::Value) -> bool {
    serde_json::from_value::<libcontainer::oci_spec::runtime::Capability>(name.clone()).is_ok()
}

/// `exec --cap` names split into those this runtime knows and the rest (runc warns about
/// those and runs without them).
pub fn split_known_capabilities(names: &[String]) -> (Vec<String>, Vec<String>) {
    names
        .iter()
        .cloned()
        .partition(|n| is_known_capability(&serde_json::Value::String(n.clone())))
}

/// Parses `config.json` bytes, naming the JSON path of the first value that does not fit.
pub fn parse(bytes: &[u8]) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        // serde_json appends "at line L column C"; keep it, it helps find the spot.
        RuneError::config(field, inner.to_string())
    })
}

/// Checks what runc checks before creating anything, and returns the canonical rootfs.
/// `process.env` (or `exec --env`) entries as runc's init takes them
/// (libcontainer/init_linux.go `populateProcessEnvironment`): `NAME=value`, a non-empty
/// name, no NUL byte. The error is runc's sentence, naming the entry.
pub fn check_env(env: &[String]) -> Result<()> {
    for entry in env {
        let bad = |what: &str| {
            Err(RuneError::config(
                "process.env",
                format!("{what}: {}", go_quote(entry)),
            ))
        };
        let Some((name, value)) = entry.split_once('=') else {
            return bad("invalid environment variable");
        };
        if name.is_empty() {
            return bad("environment variable name can't be empty");
        }
        if name.contains('\0') {
            return bad("environment variable name can't contain null(\\x00)");
        }
        if value.contains('\0') {
            return bad("environment variable value can't contain null(\\x00)");
        }
    }
    Ok(())
}

/// `s` quoted as Go's `%q` quotes it (runc's messages): `\"`, `\\`, `\n`, `\t`, and other
/// control bytes as `\xNN`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn check(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    if !spec.version().starts_with("1.") {
        return Err(RuneError::config(
            "ociVersion",
            format!(
                "unsupported version {:?}, only 1.x is supported",
                spec.version()
            ),
        ));
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuneError::config("process", "missing"))?;
    match process.args() {
        Some(args) if !args.is_empty() => {
            if args[0].is_empty() {
                return Err(RuneError::config("process.args[0]", "must not be empty"));
            }
        }
        _ => {
            return Err(RuneError::config(
                "process.args",
                "missing or empty: the container needs a program to run",
            ))
        }
    }
    if let Some(env) = process.env() {
        check_env(env)?;
    }
    if !process.cwd().is_absolute() {
        return Err(RuneError::config(
            "process.cwd",
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    check_user(process.user())?;
    if let Some(adj) = process.oom_score_adj() {
        check_oom_score_adj(adj)?;
    }
    check_lsm_config(
        process.apparmor_profile().as_deref(),
        process.selinux_label().as_deref(),
        spec.linux()
            .as_ref()
            .and_then(|l| l.mount_label().as_deref()),
    )?;

    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RuneError::config("root", "missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let rootfs = fs::canonicalize(&rootfs)
        .map_err(|err| RuneError::config("root.path", format!("{}: {err}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(RuneError::config(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }

    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if !m.destination().is_absolute() {
                return Err(RuneError::config(
                    format!("mounts[{i}].destination"),
                    format!("{} is not an absolute path", m.destination().display()),
                ));
            }
        }
    }

    if let Some(linux) = spec.linux() {
        if let Some(namespaces) = linux.namespaces() {
            let mut seen = HashSet::new();
            for (i, ns) in namespaces.iter().enumerate() {
                if !seen.insert(ns.typ()) {
                    return Err(RuneError::config(
                        format!("linux.namespaces[{i}].type"),
                        format!("namespace {:?} is listed twice", ns.typ()),
                    ));
                }
                // runc's check (libcontainer/configs/validate): the namespace to join
                // must be there before anything is made.
                if let Some(path) = ns.path() {
                    if let Err(err) = fs::symlink_metadata(path) {
                        return Err(RuneError::config(
                            format!("linux.namespaces[{i}].path"),
                            format!("lstat {}: {}", path.display(), os_error(&err)),
                        ));
                    }
                }
            }
        }
    }

    if let Some(hooks) = spec.hooks() {
        let lists = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (name, list) in lists {
            for (i, hook) in list.iter().flatten().enumerate() {
                if !hook.path().is_absolute() {
                    return Err(RuneError::config(
                        format!("hooks.{name}[{i}].path"),
                        format!("{} is not an absolute path", hook.path().display()),
                    ));
                }
            }
        }
    }
    Ok(rootfs)
}

/// runc's largest uid or gid (libcontainer/init_linux.go `setupUser`): ids above it are
/// refused although the kernel takes up to 2^32-2.
const MAX_ID: u32 = i32::MAX as u32;

/// `process.user` as runc's init checks it: uid, gid and every additional gid in
/// 0..=2147483647 (runc: "uids and gids must be in range 0-2147483647").
pub fn check_user(user: &libcontainer::oci_spec::runtime::User) -> Result<()> {
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(
            user.additional_gids()
                .iter()
                .flatten()
                .map(|g| ("additionalGids", *g)),
        );
    for (field, id) in ids {
        if id > MAX_ID {
            return Err(RuneError::config(
                format!("process.user.{field}"),
                format!("{id}: uids and gids must be in range 0-{MAX_ID}"),
            ));
        }
    }
    Ok(())
}

/// The kernel's range of `/proc/PID/oom_score_adj` (OOM_SCORE_ADJ_MIN..=MAX in
/// include/uapi/linux/oom.h); a value outside it fails with EINVAL, as runc reports.
pub fn check_oom_score_adj(adj: i32) -> Result<()> {
    if !(-1000..=1000).contains(&adj) {
        return Err(RuneError::config(
            "process.oomScoreAdj",
            format!(
                "{adj} is outside -1000..1000: failed to update /proc/self/oom_score_adj: Invalid argument"
            ),
        ));
    }
    Ok(())
}

/// LSM settings of `config.json` the host cannot apply, refused before anything is made
/// instead of being ignored (a label asked for and silently not applied) or failing
/// later with a bare errno. The SELinux sentence is runc's (libcontainer/configs/validate
/// `security`); runc applies `mountLabel` through the /dev tmpfs's `context=` and fails
/// there with EINVAL.
pub fn check_lsm_config(
    apparmor_profile: Option<&str>,
    selinux_label: Option<&str>,
    mount_label: Option<&str>,
) -> Result<()> {
    fn set(v: Option<&str>) -> Option<&str> {
        v.filter(|v| !v.is_empty())
    }
    if let Some(profile) = set(apparmor_profile) {
        if !crate::exec_flags::apparmor_enabled() {
            return Err(RuneError::config(
                "process.apparmorProfile",
                format!("{profile:?}: apparmor is not enabled on this host: the profile cannot be applied"),
            ));
        }
    }
    let labels = [
        ("process.selinuxLabel", set(selinux_label)),
        ("linux.mountLabel", set(mount_label)),
    ];
    for (field, label) in labels {
        if let Some(label) = label.filter(|_| !crate::exec_flags::selinux_enabled()) {
            return Err(RuneError::config(
                field,
                format!("{label:?}: selinux label is specified in config, but selinux is disabled or not supported"),
            ));
        }
    }
    Ok(())
}

/// An OS error as Go prints it in runc's lines ("no such file or directory").
fn os_error(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// Checks a container id the way runc does: a non-empty file name made of
/// letters, digits, `_`, `+`, `-` and `.`, and not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(RuneError::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("must not be empty");
    }
    if id == "." || id == ".." {
        return bad("must not be . or ..");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if !id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'-' | b'.'))
    {
        return bad("only letters, digits, '_', '+', '-' and '.' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(extra: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                "process":{{"cwd":"/","args":["sh"],"user":{{"uid":0,"gid":0}}}}{extra}}}"#
        )
    }

    #[test]
    fn names_the_field_of_an_unknown_namespace() {
        let json = minimal(r#","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}"#);
        let err = parse(json.as_bytes()).unwrap_err().to_string();
        assert!(
            err.starts_with("config.json: linux.namespaces[1].type: unknown variant `bogus`"),
            "{err}"
        );
    }

    #[test]
    fn bad_json_is_one_line() {
        let err = parse(b"{\"ociVersion\": ").unwrap_err().to_string();
        assert!(err.starts_with("config.json: "), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn missing_args_names_process_args() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        let json = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
                      "process":{"cwd":"/","user":{"uid":0,"gid":0}}}"#;
        let spec = parse(json.as_bytes()).unwrap();
        let err = check(&spec, dir.path()).unwrap_err().to_string();
        assert!(err.contains("process.args"), "{err}");
    }

    #[test]
    fn relative_rootfs_is_resolved_against_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let spec = parse(minimal("").as_bytes()).unwrap();
        let err = check(&spec, dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("config.json: root.path: "), "{err}");
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        let rootfs = check(&spec, dir.path()).unwrap();
        assert_eq!(rootfs, fs::canonicalize(dir.path().join("rootfs")).unwrap());
    }

    #[test]
    fn duplicate_namespace_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        let json = minimal(r#","linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}"#);
        let spec = parse(json.as_bytes()).unwrap();
        let err = check(&spec, dir.path()).unwrap_err().to_string();
        assert!(err.contains("linux.namespaces[1].type"), "{err}");
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
