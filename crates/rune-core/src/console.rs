//! A terminal for a foreground process with `terminal: true` and no console socket
//! (`rune run` of `rune spec`'s default bundle, `rune exec -t ID sh`), as runc gives one:
//! a new pseudo-terminal inside the container whose master rune proxies to its own
//! terminal, with the size copied across and kept current on `SIGWINCH`.
//!
//! Follows runc's `utils_linux.go` (`setupIO`) and `tty.go` (`initHostConsole`,
//! `recvtty`, `resize`): the host terminal is the first of stderr, stdout and stdin that
//! is a terminal, else `/dev/tty`; without one the process is refused before anything
//! is created (runc: `open /dev/tty: no such device or address`). When stdin is a
//! terminal it is put in raw mode for the life of the process and restored after.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::termios::{self, SetArg, Termios};

use crate::agent;
use crate::error::{Result, RuneError};

/// The caller's terminal, found before anything is created.
#[derive(Debug)]
pub struct HostTerminal {
    fd: OwnedFd,
}

impl HostTerminal {
    /// The terminal's size (rows, columns), or None when it cannot be read.
    pub fn size(&self) -> Option<(u16, u16)> {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize through a valid pointer on an open fd.
        let ok = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } == 0;
        ok.then_some((size.ws_row, size.ws_col))
    }

    /// The first of stderr, stdout and stdin that is a terminal, else `/dev/tty`.
    ///
    /// # Errors
    /// [`RuneError::Io`] `open /dev/tty: …` when the caller has no terminal at all.
    pub fn find() -> Result<HostTerminal> {
        for fd in [2, 1, 0] {
            if nix::unistd::isatty(fd).unwrap_or(false) {
                // SAFETY: a terminal is open on `fd` (isatty said so) and fds 0-2 stay open
                // for the life of the process; the borrow ends at the clone.
                let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                let fd = borrowed
                    .try_clone_to_owned()
                    .map_err(|e| RuneError::io("duplicate the host terminal", e))?;
                return Ok(HostTerminal { fd });
            }
        }
        let tty = File::options()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(|e| RuneError::io("open /dev/tty", e))?;
        Ok(HostTerminal { fd: tty.into() })
    }
}

/// A console socket rune listens on itself, for libcontainer to send the pty master
/// to (the protocol of `--console-socket`). Removed when dropped.
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds `dir/.console-<pid>.sock` (mode 0600).
    pub fn bind(dir: &Path) -> Result<ConsoleSocket> {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!(".console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| RuneError::io(format!("console socket {}", path.display()), e))?;
        let socket = ConsoleSocket { path, listener };
        std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| RuneError::io(format!("console socket {}", socket.path.display()), e))?;
        Ok(socket)
    }

    /// Where libcontainer connects.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the container's init sent while it was created (it is already
    /// queued on the socket when `create` returns, so this does not block).
    pub fn receive(&self) -> Result<OwnedFd> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| RuneError::io("console socket", e))?;
        let (conn, _) = self.listener.accept().map_err(|e| {
            RuneError::io("console socket: the container's init sent no terminal", e)
        })?;
        conn.set_nonblocking(false)
            .map_err(|e| RuneError::io("console socket", e))?;
        receive_master(&conn)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Receives one pty master sent over `conn` as runc's console-socket protocol sends it
/// (the name as payload, the fd as `SCM_RIGHTS`).
pub fn receive_master(conn: &UnixStream) -> Result<OwnedFd> {
    let mut fds =
        agent::recv_fds(conn, 1).map_err(|e| RuneError::io("receive the pty master", e))?;
    fds.pop().ok_or_else(|| {
        RuneError::io(
            "receive the pty master",
            std::io::Error::other("no descriptor came with the message"),
        )
    })
}

/// Copies between the host terminal and a container's pty master until the container's
/// side closes; restores the host terminal's mode when finished or dropped.
#[derive(Debug)]
pub struct Proxy {
    resizer: Resizer,
    output: Option<JoinHandle<()>>,
    saved: Option<Termios>,
}

/// Copies the host terminal's size to the pty (on `SIGWINCH`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Resizer {
    host: Arc<OwnedFd>,
    master: Arc<OwnedFd>,
}

impl Resizer {
    /// Gives the container's terminal the host terminal's current size; the kernel then
    /// sends `SIGWINCH` to the container's foreground process group.
    pub fn resize(&self) {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write one winsize through a valid pointer
        // on descriptors this struct keeps open.
        unsafe {
            if libc::ioctl(self.host.as_raw_fd(), libc::TIOCGWINSZ, &mut size) == 0 {
                libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size);
            }
        }
    }
}

impl Proxy {
    /// Starts copying stdin → `master` and `master` → stdout (as runc, the process's
    /// input comes from rune's stdin and its output goes to rune's stdout), with stdin
    /// in raw mode when it is a terminal.
    pub fn start(host: HostTerminal, master: OwnedFd) -> Result<Proxy> {
        let master = Arc::new(master);
        let resizer = Resizer {
            host: Arc::new(host.fd),
            master: master.clone(),
        };
        resizer.resize();
        let stdin = std::io::stdin();
        let saved = match termios::tcgetattr(stdin.as_fd()) {
            Ok(saved) => {
                let mut raw = saved.clone();
                termios::cfmakeraw(&mut raw);
                termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                    .map_err(|e| RuneError::io("set the terminal to raw mode", e.into()))?;
                Some(saved)
            }
            Err(_) => None,
        };
        let input = clone_file(&master)?;
        // Never joined: it blocks reading rune's stdin, which may outlive the container.
        std::thread::spawn(move || copy(std::io::stdin().lock(), input));
        let output = clone_file(&master)?;
        let output = std::thread::spawn(move || copy(output, std::io::stdout().lock()));
        Ok(Proxy {
            resizer,
            output: Some(output),
            saved,
        })
    }

    /// A handle that resizes the container's terminal.
    pub fn resizer(&self) -> Resizer {
        self.resizer.clone()
    }

    /// Waits (a bounded time) until the container's output is copied, then restores
    /// the host terminal.
    pub fn finish(mut self) {
        if let Some(output) = self.output.take() {
            // The master reads EIO once every holder of the pty's other side is gone;
            // a process that escaped the container's end could hold it longer.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !output.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if output.is_finished() {
                let _ = output.join();
            }
        }
        self.restore();
    }

    fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &saved);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.restore();
    }
}

fn clone_file(fd: &OwnedFd) -> Result<File> {
    fd.try_clone()
        .map(File::from)
        .map_err(|e| RuneError::io("duplicate the pty master", e))
}

/// Copies until end of input, EIO (the pty's other side closed) or a write error.
fn copy(mut from: impl Read, mut to: impl Write) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}
