//! A private PostgreSQL server for tests: its own data directory in a temporary
//! directory, listening on a unix socket there and on a loopback port, trusting local
//! connections (user `verdictd`, no password), stopped by pid when dropped (fast
//! shutdown, then SIGKILL), its directory removed.
//!
//! The server binaries are Debian's (`postgresql` package: `/usr/lib/postgresql/<N>/bin`,
//! the newest taken) or those on `PATH`. PostgreSQL refuses to run as root, so as root
//! the server runs as the `postgres` user the package creates (else `nobody`); the
//! directory is handed to that user.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database superuser the tests connect as.
pub const USER: &str = "verdictd";

/// A running private server (see the module doc).
pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Run the server and its tools as this uid/gid (when we are root).
    owner: Option<(u32, u32)>,
    /// TLS on, with a certificate for 127.0.0.1 from a private CA (`ca.pem`).
    tls: bool,
}

/// The directory holding `initdb` and `postgres`.
pub fn bin_dir() -> io::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .ok_or_else(|| {
            io::Error::other("no PostgreSQL server (initdb): install the postgresql package")
        })
}

/// Whether a server can be started here.
pub fn available() -> bool {
    bin_dir().is_ok()
}

impl Postgres {
    /// initdb and start a server; returns once it accepts connections.
    pub fn start() -> io::Result<Postgres> {
        Self::start_with(false)
    }

    /// [`Postgres::start`] with TLS also offered: a certificate for IP 127.0.0.1 from a
    /// fresh private CA ([`Postgres::ca`]).
    pub fn start_tls() -> io::Result<Postgres> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> io::Result<Postgres> {
        use std::os::unix::fs::PermissionsExt;
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("pg-test-").tempdir()?;
        let owner = if crate::is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .or_else(|| nix::unistd::User::from_name("nobody").ok().flatten())
                .ok_or_else(|| io::Error::other("no postgres or nobody user to run as"))?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        std::fs::create_dir(dir.path().join("socket"))?;
        if let Some((uid, gid)) = owner {
            for p in [dir.path().to_path_buf(), dir.path().join("socket")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
            }
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        }
        let mut pg = Postgres {
            child: None,
            bin,
            dir,
            port: crate::free_port()?,
            owner,
            tls,
        };
        if tls {
            use std::os::unix::fs::PermissionsExt;
            crate::verdictd::write_tls(pg.dir.path(), &pg.ca())?;
            // The server reads its key only if no one else may.
            let key = pg.dir.path().join("server.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            if let Some((uid, gid)) = owner {
                for f in ["server.key", "server.pem", "ca.pem"] {
                    std::os::unix::fs::chown(pg.dir.path().join(f), Some(uid), Some(gid))?;
                }
            }
        }
        let data = pg.data_dir();
        pg.tool(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
        )?;
        pg.launch()?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's directory (data, socket, log), removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM) of a TLS server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The unix socket's directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq URL for `db` over the loopback port.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A libpq key=value string for `db` over the unix socket.
    pub fn socket_conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user={USER} dbname={db}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c.env_remove("PGDATA").env("LC_ALL", "C");
        c
    }

    /// Runs one of the server's tools (initdb, createdb, psql, pg_dump…); its stdout.
    pub fn tool(&self, program: &str, args: &[&str]) -> io::Result<String> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .current_dir(self.dir.path())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.socket_dir().display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            USER.into(),
        ]
    }

    /// Replaces the server's client authentication with the pg_hba.conf `file` and asks
    /// for a reload (applied shortly after: wait for its effect). The file must keep
    /// unix-socket connections open, which this helper's tools use.
    pub fn use_hba(&self, file: &Path) -> io::Result<()> {
        let target = self.data_dir().join("pg_hba.conf");
        std::fs::copy(file, &target)?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&target, Some(uid), Some(gid))?;
        }
        let reloaded = self.psql("postgres", "SELECT pg_reload_conf()")?;
        if reloaded.trim() != "t" {
            return Err(io::Error::other(format!("pg_reload_conf: {reloaded}")));
        }
        // The postmaster applies it after answering: callers wait for its effect.
        Ok(())
    }

    /// Creates a database.
    pub fn create_database(&self, name: &str) -> io::Result<()> {
        let mut args = self.conn_args();
        args.push(name.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool("createdb", &args).map(drop)
    }

    /// Runs SQL in `db` with psql (stops at the first error); the unaligned, tuples-only
    /// output (`|` between columns).
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        let mut args = self.conn_args();
        args.extend(
            [
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-A",
                "-t",
                "-c",
                sql,
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool("psql", &args)
    }

    /// `pg_dump` of `db` (plain SQL, data included).
    pub fn dump(&self, db: &str) -> io::Result<String> {
        let mut args = self.conn_args();
        args.push(db.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool("pg_dump", &args)
    }

    fn launch(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(self.dir.path().join("postgres.log"), Some(uid), Some(gid))?;
        }
        let data = self.data_dir();
        let child = self
            .command("postgres")
            .args(["-D", path_str(&data)?, "-p", &self.port.to_string()])
            .args(["-k", path_str(&self.socket_dir())?])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .args(if self.tls {
                vec![
                    "-c".to_string(),
                    "ssl=on".to_string(),
                    "-c".to_string(),
                    format!(
                        "ssl_cert_file={}",
                        self.dir.path().join("server.pem").display()
                    ),
                    "-c".to_string(),
                    format!(
                        "ssl_key_file={}",
                        self.dir.path().join("server.key").display()
                    ),
                ]
            } else {
                vec![]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = self.conn_args();
        let ready: Vec<&str> = ready.iter().map(String::as_str).collect();
        loop {
            if self.tool("pg_isready", &ready).is_ok() {
                return Ok(());
            }
            if let Some(c) = &mut self.child {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(io::Error::other(format!(
                        "postgres exited ({status}): {}",
                        self.log().trim()
                    )));
                }
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(io::Error::other(format!(
                    "postgres did not get ready in 60 s: {}",
                    self.log().trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected), by pid, and waits.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.launch()
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::other(format!("{}: not UTF-8", p.display())))
}
