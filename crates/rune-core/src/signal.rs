//! Signals as runc takes them: by number (`9`, `37`) or name (`KILL`, `SIGTERM`, `term`),
//! including the realtime signals (`RTMIN`, `SIGRTMIN+3`, `RTMAX-2`), which nix's `Signal`
//! enum cannot hold. Names follow moby/sys `signal.ParseSignal`, which runc uses.

use crate::error::{Result, RuneError};

/// A signal number accepted by `kill(2)`: 1 ..= `SIGRTMAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// `SIGKILL`.
    pub const KILL: Signal = Signal(libc::SIGKILL);

    /// The signal with this number, if the kernel has one.
    pub fn from_raw(n: i32) -> Option<Signal> {
        (1..=libc::SIGRTMAX()).contains(&n).then_some(Signal(n))
    }

    /// The number.
    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// Parses a number or a name, with or without `SIG`, in any case; realtime signals as
    /// `RTMIN`, `RTMIN+N` and `RTMAX-N`. Errors with [`RuneError::Signal`].
    pub fn parse(s: &str) -> Result<Signal> {
        let bad = || RuneError::Signal(s.to_string());
        if let Ok(n) = s.parse::<i32>() {
            // 0 is kill(2)'s existence check, which runc's `kill ID 0` passes through.
            if n == 0 {
                return Ok(Signal(0));
            }
            return Signal::from_raw(n).ok_or_else(bad);
        }
        let upper = s.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        // "" or SEP followed by digits.
        let offset = |rest: &str, sep: char| -> Option<i32> {
            if rest.is_empty() {
                return Some(0);
            }
            let digits = rest.strip_prefix(sep)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        let rt = if let Some(rest) = name.strip_prefix("RTMIN") {
            Some(offset(rest, '+').map(|n| min + n))
        } else {
            name.strip_prefix("RTMAX")
                .map(|rest| offset(rest, '-').map(|n| max - n))
        };
        if let Some(n) = rt {
            return n
                .filter(|n| (min..=max).contains(n))
                .map(Signal)
                .ok_or_else(bad);
        }
        use std::str::FromStr;
        nix::sys::signal::Signal::from_str(&format!("SIG{name}"))
            .map(|s| Signal(s as i32))
            .map_err(|_| bad())
    }

    /// Sends the signal to `pid` with `kill(2)`.
    pub fn send(self, pid: i32) -> std::io::Result<()> {
        // SAFETY: kill(2) takes two integers and touches no memory of ours.
        if unsafe { libc::kill(pid, self.0) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Waits for one of the signals in `set` (blocked in this thread) and returns it,
/// realtime signals included: nix's `SigSet::wait` fails on those.
pub fn wait(set: &nix::sys::signal::SigSet) -> std::io::Result<Signal> {
    let mut n = 0;
    // SAFETY: sigwait reads the set and writes one integer, both owned here.
    let r = unsafe { libc::sigwait(set.as_ref(), &mut n) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(Signal(n))
}

/// Signals a runtime waiting for a child keeps for itself rather than forwarding:
/// child status changes, Go's preemption signal, terminal resizes and closed pipes.
pub fn is_not_forwarded(sig: Signal) -> bool {
    [libc::SIGCHLD, libc::SIGURG, libc::SIGWINCH, libc::SIGPIPE].contains(&sig.0)
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match nix::sys::signal::Signal::try_from(self.0) {
            _ if self.0 == 0 => f.write_str("0"),
            Ok(s) => f.write_str(s.as_str()),
            Err(_) => write!(f, "SIGRTMIN+{}", self.0 - libc::SIGRTMIN()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_as_runc_takes_them() {
        // Numbers from signal(7) on Linux x86-64 and glibc's SIGRTMIN (34) / SIGRTMAX (64).
        for (text, n) in [
            ("9", 9),
            ("KILL", 9),
            ("SIGTERM", 15),
            ("term", 15),
            ("sigusr1", 10),
            ("37", 37),
            ("RTMIN", 34),
            ("SIGRTMIN+3", 37),
            ("rtmin+30", 64),
            ("RTMAX", 64),
            ("RTMAX-2", 62),
            ("64", 64),
            ("0", 0),
        ] {
            assert_eq!(Signal::parse(text).unwrap().as_raw(), n, "{text}");
        }
        for bad in [
            "65", "-1", "RTMIN+31", "RTMAX-31", "RTMIN-1", "RTMIN+", "NOPE", "",
        ] {
            assert!(Signal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_rt_signals_by_offset() {
        assert_eq!(Signal::parse("37").unwrap().to_string(), "SIGRTMIN+3");
        assert_eq!(Signal::KILL.to_string(), "SIGKILL");
    }
}
