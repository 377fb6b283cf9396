//! A container process's stdio, between containerd's fifos (or `file://` logs) and the
//! process.
//!
//! As containerd's runc shim does, the process gets pipes (or, with a terminal, the pty
//! whose master rune sends over a console socket), and the shim copies between them and
//! the fifos. So the process's output is never lost to a reader that comes late, and
//! `CloseIO` can end its stdin.
//!
//! Copies run on small blocking threads: a fifo's open blocks until its other end is
//! opened, which is the semantics needed here, and a thread per stream is cheap.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::rune::ProcessFds;

/// containerd's description of a process's stdio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("stdio {uri}: scheme not supported (fifo paths and file:// are)")]
    Scheme { uri: String },
    #[error("stdio {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("stdio: {0}")]
    Pipe(std::io::Error),
    #[error("console socket: {0}")]
    Console(String),
}

/// Where output goes.
enum Sink {
    Fifo(PathBuf),
    File(PathBuf),
}

fn sink(uri: &str) -> Result<Option<Sink>, IoError> {
    if uri.is_empty() {
        return Ok(None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Some(Sink::File(PathBuf::from(path))));
    }
    if uri.contains("://") {
        return Err(IoError::Scheme {
            uri: uri.to_string(),
        });
    }
    Ok(Some(Sink::Fifo(PathBuf::from(uri))))
}

impl Sink {
    fn open(&self) -> Result<File, IoError> {
        let (path, res) = match self {
            // Opened for reading too, as containerd's shim does: the open never blocks
            // and a writer never gets EPIPE when the client goes away for a while.
            Sink::Fifo(p) => (p, OpenOptions::new().read(true).write(true).open(p)),
            Sink::File(p) => {
                if let Some(dir) = p.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                (
                    p,
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o640)
                        .open(p),
                )
            }
        };
        res.map_err(|source| IoError::Open {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The running copies of one process's stdio.
pub struct ProcessIo {
    /// The process's stdin writer, shared with the copy thread so `CloseIO` can end it.
    stdin: Arc<Mutex<Option<File>>>,
    stdin_fifo: Option<PathBuf>,
    /// One receiver per output copy; each turns true when its copy has ended.
    done: Vec<watch::Receiver<bool>>,
    /// The pty master of a terminal process, for `ResizePty`.
    console: Option<Arc<OwnedFd>>,
}

impl ProcessIo {
    /// Pipes for a process without a terminal: the ends it gets, and the copies.
    pub fn pipes(paths: &StdioPaths) -> Result<(ProcessIo, ProcessFds), IoError> {
        let stdout = sink(&paths.stdout)?;
        let stderr = sink(&paths.stderr)?;
        if !paths.stdin.is_empty() && paths.stdin.contains("://") {
            return Err(IoError::Scheme {
                uri: paths.stdin.clone(),
            });
        }
        let mut io = ProcessIo {
            stdin: Arc::new(Mutex::new(None)),
            stdin_fifo: None,
            done: Vec::new(),
            console: None,
        };
        let null = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(IoError::Pipe)
        };
        let child_stdin = if paths.stdin.is_empty() {
            null()?
        } else {
            let (r, w) = std::io::pipe().map_err(IoError::Pipe)?;
            *io.stdin.lock().unwrap() = Some(File::from(OwnedFd::from(w)));
            io.stdin_fifo = Some(PathBuf::from(&paths.stdin));
            OwnedFd::from(r)
        };
        let mut out_end = |s: Option<Sink>| -> Result<OwnedFd, IoError> {
            match s {
                None => null(),
                Some(s) => {
                    let dst = s.open()?;
                    let (r, w) = std::io::pipe().map_err(IoError::Pipe)?;
                    io.done.push(copy_thread(r, dst));
                    Ok(OwnedFd::from(w))
                }
            }
        };
        let child_stdout = out_end(stdout)?;
        let child_stderr = out_end(stderr)?;
        io.start_stdin();
        Ok((
            io,
            ProcessFds {
                stdin: child_stdin,
                stdout: child_stdout,
                stderr: child_stderr,
            },
        ))
    }

    /// Copies for a process with a terminal, once rune has sent its pty master.
    pub fn console(paths: &StdioPaths, master: OwnedFd) -> Result<ProcessIo, IoError> {
        let master = Arc::new(master);
        let mut io = ProcessIo {
            stdin: Arc::new(Mutex::new(None)),
            stdin_fifo: None,
            done: Vec::new(),
            console: Some(master.clone()),
        };
        if let Some(s) = sink(&paths.stdout)? {
            let dst = s.open()?;
            let src = master.try_clone().map_err(IoError::Pipe)?;
            io.done.push(copy_thread(src, dst));
        }
        if !paths.stdin.is_empty() {
            let w = master.try_clone().map_err(IoError::Pipe)?;
            *io.stdin.lock().unwrap() = Some(File::from(w));
            io.stdin_fifo = Some(PathBuf::from(&paths.stdin));
        }
        io.start_stdin();
        Ok(io)
    }

    fn start_stdin(&self) {
        let Some(fifo) = self.stdin_fifo.clone() else {
            return;
        };
        let stdin = self.stdin.clone();
        spawn_small(move || {
            // Blocks until the client opens its end.
            let Ok(mut src) = File::open(&fifo) else {
                return;
            };
            let mut buf = [0u8; 32 * 1024];
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut guard = stdin.lock().unwrap();
                let Some(w) = guard.as_mut() else { return };
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            // The client closed its end: so does the process's stdin (not a terminal's,
            // whose master is still the output).
            stdin.lock().unwrap().take();
        });
    }

    /// `CloseIO`: the process sees the end of its stdin.
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap().take();
    }

    /// `ResizePty`.
    pub fn resize(&self, width: u16, height: u16) -> Result<(), IoError> {
        let Some(master) = &self.console else {
            return Err(IoError::Console("the process has no terminal".into()));
        };
        let size = rustix::termios::Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(master.as_fd(), size)
            .map_err(|e| IoError::Console(format!("resize: {e}")))
    }

    /// Waits until all output is copied, at most `limit` (a process may leave a child
    /// behind that holds its stdout), and ends the stdin copy.
    pub async fn finish(mut self, limit: Duration) {
        let all = async {
            for rx in &mut self.done {
                let _ = rx.wait_for(|done| *done).await;
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
        self.close_stdin();
        // A stdin copy still blocked in opening the fifo is released by an open of
        // the other end (non-blocking: when no one waits there, nothing happens).
        if let Some(fifo) = &self.stdin_fifo {
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo);
        }
    }
}

fn spawn_small(f: impl FnOnce() + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name("stdio".into())
        .stack_size(64 * 1024)
        .spawn(f);
}

/// Copies `src` to `dst` until the end (or EIO, when a pty's other side has closed).
fn copy_thread(src: impl Into<OwnedFd>, dst: File) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let mut src = File::from(src.into());
    let mut dst = dst;
    spawn_small(move || {
        let mut buf = [0u8; 32 * 1024];
        loop {
            match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if dst.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        wait_read(&dst, FIFO_READ_LIMIT);
        let _ = tx.send(true);
    });
    rx
}

/// How long the end of a process's output may wait in a fifo for its client. A client
/// that opened the fifo reads it at once; one starved of CPU on a loaded node may take
/// seconds (a test once lost a quick process's stderr under load with 2 s here).
const FIFO_READ_LIMIT: Duration = Duration::from_secs(10);

/// A fifo opened read-write never blocks, so a quick process's output can be all
/// copied before the client has opened its end; closing ours then would discard it.
/// Waits, at most `limit`, until what is in the fifo has been read.
fn wait_read(dst: &File, limit: Duration) {
    let is_fifo = dst
        .metadata()
        .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
        .unwrap_or(false);
    if !is_fifo {
        return;
    }
    let start = std::time::Instant::now();
    while rustix::io::ioctl_fionread(dst).is_ok_and(|n| n > 0) && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A unix socket on which rune sends a terminal's pty master (`--console-socket`). It
/// lives in a private temporary directory: a bundle path can be too long for a socket.
pub struct ConsoleSocket {
    /// Removed with the socket.
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<ConsoleSocket, IoError> {
        let dir = tempfile::Builder::new()
            .prefix("rune-pty")
            .tempdir()
            .map_err(|e| IoError::Console(e.to_string()))?;
        let path = dir.path().join("pty.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| IoError::Console(format!("{}: {e}", path.display())))?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master rune sent (it connected and sent before its `create`/`exec` returned).
    pub fn receive(&self) -> Result<OwnedFd, IoError> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::{AsRawFd, FromRawFd};
        self.listener
            .set_nonblocking(true)
            .map_err(|e| IoError::Console(e.to_string()))?;
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| IoError::Console(format!("rune sent no terminal: {e}")))?;
        conn.set_nonblocking(false)
            .map_err(|e| IoError::Console(e.to_string()))?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| IoError::Console(format!("receive the terminal: {e}")))?;
        for cmsg in msg.cmsgs().map_err(|e| IoError::Console(e.to_string()))? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS just installed this descriptor in this process
                    // and nothing else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(IoError::Console("rune sent no terminal".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process whose output is all copied before its client opens the fifo: the
    /// output waits in the fifo for the client instead of being discarded.
    #[test]
    fn output_waits_in_the_fifo_for_a_late_client() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let dst = Sink::Fifo(fifo.clone()).open().unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        let mut done = copy_thread(r, dst);
        w.write_all(b"quick output\n").unwrap();
        drop(w);
        std::thread::sleep(Duration::from_millis(200));
        assert!(!*done.borrow(), "the copy holds the fifo until it is read");
        let mut client = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let mut got = [0u8; 13];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"quick output\n");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d))
                .await
                .expect("the copy ends once its output is read")
                .unwrap();
        });
    }

    #[test]
    fn uris_name_a_fifo_a_file_or_nothing() {
        assert!(sink("").unwrap().is_none());
        assert!(matches!(
            sink("/run/x/stdout").unwrap(),
            Some(Sink::Fifo(_))
        ));
        assert!(matches!(
            sink("file:///var/log/c.log").unwrap(),
            Some(Sink::File(p)) if p == Path::new("/var/log/c.log")
        ));
        let e = sink("binary:///usr/bin/logger?x=y").err().unwrap();
        assert!(e.to_string().contains("scheme not supported"), "{e}");
    }

    #[tokio::test]
    async fn output_reaches_the_file_and_stdin_closes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.log");
        let paths = StdioPaths {
            stdout: format!("file://{}", out.display()),
            ..Default::default()
        };
        let (io, fds) = ProcessIo::pipes(&paths).unwrap();
        let mut w = File::from(fds.stdout);
        w.write_all(b"hello\n").unwrap();
        drop(w);
        drop(fds.stderr);
        io.finish(Duration::from_secs(5)).await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello\n");
    }
}
