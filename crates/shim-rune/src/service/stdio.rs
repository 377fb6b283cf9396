//! A process's stdio while rune starts it.

use super::*;

/// A process's stdio while rune starts it: pipes already copying, or a console socket
/// on which rune sends a terminal's master.
pub(super) enum StdioSetup {
    Pipes(ProcessIo),
    Console(ConsoleSocket),
}

impl StdioSetup {
    /// The setup and the descriptors rune hands to the process (for a terminal,
    /// /dev/null: the process gets the pty).
    pub(super) fn new(stdio: &StdioPaths) -> TtrpcResult<(StdioSetup, ProcessFds)> {
        let bad = |e: crate::io::IoError| err(Code::INVALID_ARGUMENT, e.to_string());
        if !stdio.terminal {
            let (io, fds) = ProcessIo::pipes(stdio).map_err(bad)?;
            return Ok((StdioSetup::Pipes(io), fds));
        }
        let console = ConsoleSocket::new().map_err(bad)?;
        let null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(std::os::fd::OwnedFd::from)
                .map_err(|e| err(Code::UNKNOWN, e.to_string()))
        };
        let fds = ProcessFds {
            stdin: null()?,
            stdout: null()?,
            stderr: null()?,
        };
        Ok((StdioSetup::Console(console), fds))
    }

    pub(super) fn console_socket(&self) -> Option<&Path> {
        match self {
            StdioSetup::Console(c) => Some(c.path()),
            StdioSetup::Pipes(_) => None,
        }
    }

    /// Once rune has started the process: its running copies.
    pub(super) fn running(self, stdio: &StdioPaths) -> TtrpcResult<ProcessIo> {
        match self {
            StdioSetup::Pipes(io) => Ok(io),
            StdioSetup::Console(c) => {
                let terminal = |e: crate::io::IoError| err(Code::UNKNOWN, format!("terminal: {e}"));
                let master = c.receive().map_err(terminal)?;
                ProcessIo::console(stdio, master).map_err(terminal)
            }
        }
    }

    /// rune failed: stop the copies.
    pub(super) async fn abandon(self) {
        if let StdioSetup::Pipes(io) = self {
            io.finish(Duration::ZERO).await;
        }
    }
}
