//! The key-encryption keys (KEKs) that wrap the data keys of sealed values
//! ([`crate::seal`]), and where a replica gets them: `[storage.kek]`.
//!
//! ```toml
//! [storage.kek]
//! current = "kek-2.bin"          # seals; a file of 32 bytes, raw or 64 hex digits, 0600
//! old = ["kek-1.bin"]            # still opened, until `verdictd rotate-kek` has moved
//!                                # every row off them; then removed from here
//! # Or a command that prints the key on stdout (same forms), run without a shell in
//! # this file's directory, stdin empty, 10 s at most: the key kept encrypted by
//! # systemd-creds (TPM or host key), a KMS CLI or `openssl enc -d`, never on disk:
//! # current = { command = ["systemd-creds", "decrypt", "/etc/credstore.encrypted/verdictd-kek"] }
//! ```
//!
//! (`kek_file = "F"` in `[storage]` is short for `[storage.kek] current = "F"`.)
//!
//! **Which KEK seals**: the one the database names (table `verdictd_kek`: the first
//! replica records its current KEK there; `verdictd rotate-kek` moves it, then re-wraps
//! every data key to it in batches, see [`crate::rotate`]). A replica stores a value
//! under that KEK, holding the row's lock in share mode so that a rotation waits for
//! stores in flight and every store after it uses the new KEK.
//!
//! **Which KEK opens**: the one whose id a wrapped data key starts with, among the
//! current and old keys. Every row names its KEK, so a rotation stopped anywhere leaves
//! each row readable with either key.
//!
//! **Replicas pick up a new KEK without restart**: a replica that meets a KEK id it does
//! not hold (a row re-wrapped by `rotate-kek`, or the database naming a new current KEK)
//! re-reads `[storage.kek]` from its configuration file and runs its commands again, at
//! most once a second, then retries. The operator's order: put the new key in every
//! replica's configuration as `current` and the previous one in `old`, run `rotate-kek`
//! once, then remove the old key. A replica refuses to start, in one line, while a row
//! still needs a key its configuration does not list.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::{Config, StorageConfig};
use crate::seal::{Kek, SealError};

/// How long a key command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Re-reads of the configuration for an unknown KEK id: at most one per this interval.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Where a KEK comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a key file name, or { command = [\"program\", \"arg\", …] }"
)]
pub enum KeySource {
    /// A file: 32 bytes, raw or 64 hex digits, mode 0600 or stricter.
    File(PathBuf),
    /// A command printing the key on stdout.
    Command(CommandSource),
}

/// `{ command = [...] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSource {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
}

/// `[storage.kek]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KekConfig {
    /// The KEK this configuration seals with (unless the database names an old one
    /// that `rotate-kek` has not moved yet).
    pub current: Option<KeySource>,
    /// KEKs still accepted for opening.
    pub old: Vec<KeySource>,
    /// Where commands run and relative file names start (the configuration file's
    /// directory).
    #[serde(skip)]
    pub base: Option<PathBuf>,
}

/// Why a KEK could not be had; one line.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("{0}")]
    Seal(#[from] SealError),
    #[error("key-encryption key command {command}: {reason}")]
    Command { command: String, reason: String },
    #[error("[storage.kek]: {0}")]
    Config(String),
}

impl KeySource {
    /// Reads or runs it.
    pub fn load(&self, base: Option<&Path>) -> Result<Kek, KekError> {
        match self {
            KeySource::File(p) => Ok(Kek::load(p)?),
            KeySource::Command(c) => {
                let err = |reason: String| KekError::Command {
                    command: format!("{:?}", c.command.join(" ")),
                    reason,
                };
                let out = run(&c.command, base, COMMAND_TIMEOUT).map_err(err)?;
                Kek::parse(&out).map_err(|e| err(format!("printed {e}")))
            }
        }
    }
}

/// Runs `argv` (in its own process group, killed whole after `timeout`): its stdout if
/// it exits 0, else its last line of stderr.
fn run(
    argv: &[String],
    dir: Option<&Path>,
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let (program, args) = argv.split_first().ok_or("an empty command")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Zeroizing::new(Vec::new());
        let mut err = Vec::new();
        // At most 64 KiB of each: a key is 64 hex digits.
        let _ = (&mut stdout).take(64 << 10).read_to_end(&mut out);
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut err);
        let _ = tx.send((out, err));
    });
    let (out, err) = match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            return Err(format!("still running after {timeout:?}: killed"));
        }
    };
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        return Ok(out);
    }
    let err = String::from_utf8_lossy(&err);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let last: String = last.trim().chars().take(200).collect();
    Err(format!(
        "{status}{}{last}",
        if last.is_empty() { "" } else { ": " }
    ))
}

/// The KEKs of one configuration: the current one first, then the old ones.
pub struct Keyring {
    keys: Vec<Arc<Kek>>,
}

impl Keyring {
    /// The keys `[storage]` names (`kek_file` or `[storage.kek]`), loaded; `None` when
    /// it names none.
    pub fn load(config: &StorageConfig) -> Result<Option<Keyring>, KekError> {
        let kek = config.kek.clone().unwrap_or_default();
        let current = match (&config.kek_file, kek.current) {
            (Some(_), Some(_)) => {
                return Err(KekError::Config(
                    "current and [storage] kek_file both set: keep one".into(),
                ))
            }
            (Some(f), None) => KeySource::File(f.clone()),
            (None, Some(c)) => c,
            (None, None) if kek.old.is_empty() => return Ok(None),
            (None, None) => return Err(KekError::Config("old keys but no current".into())),
        };
        let mut keys = Vec::with_capacity(1 + kek.old.len());
        for source in std::iter::once(&current).chain(&kek.old) {
            keys.push(Arc::new(source.load(kek.base.as_deref())?));
        }
        Ok(Some(Keyring { keys }))
    }

    /// The key this configuration seals with.
    pub fn current(&self) -> &Arc<Kek> {
        &self.keys[0]
    }

    /// The key whose id is `id`.
    pub fn get(&self, id: &[u8; 8]) -> Option<&Arc<Kek>> {
        self.keys.iter().find(|k| k.id_bytes() == *id)
    }

    /// The ids held, hex, current first (for messages).
    pub fn ids(&self) -> String {
        let ids: Vec<String> = self.keys.iter().map(|k| k.id()).collect();
        ids.join(", ")
    }
}

/// A replica's keyring, re-read from its configuration file when a KEK id it does not
/// hold turns up (see the module doc).
pub struct Keys {
    ring: RwLock<Arc<Keyring>>,
    config_file: Option<PathBuf>,
    last_reload: tokio::sync::Mutex<Option<Instant>>,
}

impl Keys {
    pub fn new(ring: Keyring, config_file: Option<PathBuf>) -> Keys {
        Keys {
            ring: RwLock::new(Arc::new(ring)),
            config_file,
            last_reload: tokio::sync::Mutex::new(None),
        }
    }

    /// The keyring as last read.
    pub fn ring(&self) -> Arc<Keyring> {
        self.ring.read().expect("keyring").clone()
    }

    /// The KEK whose id is `id`, re-reading the configuration once if it is not held
    /// (not more often than [`RELOAD_INTERVAL`]); `name` is the value's, for the error.
    pub async fn get(&self, id: &[u8; 8], name: &str) -> Result<Arc<Kek>, SealError> {
        if let Some(k) = self.ring().get(id) {
            return Ok(k.clone());
        }
        let mut last = self.last_reload.lock().await;
        // Another request may have re-read it meanwhile.
        let ring = self.ring();
        if let Some(k) = ring.get(id) {
            return Ok(k.clone());
        }
        let other = || SealError::OtherKek {
            name: name.into(),
            found: hex::encode(id),
            ours: ring.ids(),
        };
        let (Some(path), true) = (
            self.config_file.clone(),
            last.is_none_or(|t| t.elapsed() >= RELOAD_INTERVAL),
        ) else {
            return Err(other());
        };
        *last = Some(Instant::now());
        let loaded = tokio::task::spawn_blocking(move || -> Result<Option<Keyring>, String> {
            let config = Config::load(&path).map_err(|e| e.to_string())?;
            Keyring::load(&config.storage).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match loaded {
            Ok(Some(new)) => {
                tracing::info!(
                    keys = %new.ids(),
                    "re-read [storage.kek] for key-encryption key {}",
                    hex::encode(id)
                );
                let found = new.get(id).cloned();
                let ids = new.ids();
                *self.ring.write().expect("keyring") = Arc::new(new);
                found.ok_or_else(|| SealError::OtherKek {
                    name: name.into(),
                    found: hex::encode(id),
                    ours: ids,
                })
            }
            Ok(None) => {
                tracing::warn!("re-reading [storage.kek]: the configuration names no key now; keeping the keys read before");
                Err(other())
            }
            Err(e) => {
                tracing::warn!("re-reading [storage.kek]: {e}; keeping the keys read before");
                Err(other())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(toml: &str) -> Result<StorageConfig, String> {
        let config: Config = toml::from_str(&format!(
            "[storage]\ntype = \"postgres\"\nurl = \"x\"\n{toml}"
        ))
        .map_err(|e| e.message().to_string())?;
        Ok(config.storage)
    }

    #[test]
    fn keys_from_files_and_commands_current_first() {
        use sha2::Digest;
        let hex_key = hex::encode([5u8; 32]);
        let id = hex::encode(&sha2::Sha256::digest([5u8; 32])[..8]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old");
        std::fs::write(&file, [6u8; 32]).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let config = storage(&format!(
            "[storage.kek]\ncurrent = {{ command = [\"printf\", \"%s\\n\", \"{hex_key}\"] }}\nold = [{:?}]\n",
            file.display().to_string()
        ))
        .unwrap();
        let ring = Keyring::load(&config).unwrap().unwrap();
        assert_eq!(ring.current().id(), id);
        assert_eq!(ring.ids(), format!("{id}, {}", Kek::new(&[6; 32]).id()));
        assert!(ring.get(&Kek::new(&[6; 32]).id_bytes()).is_some());
        assert!(ring.get(&Kek::new(&[7; 32]).id_bytes()).is_none());
        // None configured: unsealed storage.
        assert!(Keyring::load(&storage("").unwrap()).unwrap().is_none());
    }

    #[test]
    fn bad_key_sources_are_one_line_errors() {
        let e = storage("[storage.kek]\ncurrent = 3\n").unwrap_err();
        assert!(e.contains("a key file name, or { command"), "{e}");
        let e =
            storage("[storage.kek]\ncurrent = { command = [\"x\"], shell = true }\n").unwrap_err();
        assert!(e.contains("a key file name, or { command"), "{e}");
        for (toml, expect) in [
            ("kek_file = \"a\"\n[storage.kek]\ncurrent = \"b\"\n", "keep one"),
            ("[storage.kek]\nold = [\"a\"]\n", "old keys but no current"),
            (
                "[storage.kek]\ncurrent = { command = [\"sh\", \"-c\", \"echo no key here >&2; exit 4\"] }\n",
                "exit status: 4: no key here",
            ),
            (
                "[storage.kek]\ncurrent = { command = [\"printf\", \"short\"] }\n",
                "printed 5 bytes",
            ),
            ("[storage.kek]\ncurrent = { command = [] }\n", "an empty command"),
            (
                "[storage.kek]\ncurrent = { command = [\"/nonexistent/kek-helper\"] }\n",
                "/nonexistent/kek-helper: No such file",
            ),
        ] {
            let e = Keyring::load(&storage(toml).unwrap())
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(expect), "{toml}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn a_command_that_hangs_is_killed_with_its_children() {
        let started = Instant::now();
        let argv: Vec<String> = ["sh", "-c", "sleep 31 & sleep 31"].map(String::from).into();
        let e = run(&argv, None, Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The background sleep was killed with the group.
        std::thread::sleep(Duration::from_millis(100));
        let left = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|c| c == b"sleep\x0031\x00")
            .count();
        assert_eq!(left, 0);
    }
}
