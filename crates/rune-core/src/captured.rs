//! What an enclave runtime prints on stderr while `pal_init` runs.
//!
//! The PAL API (v1–v3) returns only a negative number from `pal_init`; a PAL says why
//! it refused (an unsigned enclave, a manifest that does not verify) on stderr. rune
//! keeps that text so that a failed `create` ends in one error line naming the cause,
//! as runc's errors do, instead of the PAL's line followed by rune's bare errno.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Longest PAL text carried into an error line, in bytes.
const MAX_CAUSE: usize = 1024;

/// Runs `f` with file descriptor 2 pointed at an anonymous memory file, then restores
/// it. Returns `f`'s result and what was written to fd 2 meanwhile. When fd 2 cannot be
/// redirected, `f` runs with stderr as it was and the text is empty.
///
/// Only for a single-threaded process (the container's init): fd 2 is process-wide.
pub fn stderr_of<R>(f: impl FnOnce() -> R) -> (R, String) {
    let Some((saved, mut memfd)) = redirect() else {
        return (f(), String::new());
    };
    let r = f();
    let _ = std::io::stderr().flush();
    // Restoring fd 2 cannot fail on a valid descriptor; if it did, stderr stays on the
    // memory file, which loses output but nothing else.
    let _ = nix::unistd::dup2(saved.as_raw_fd(), 2);
    let mut text = Vec::new();
    let _ = memfd.rewind().and_then(|_| memfd.read_to_end(&mut text));
    (r, String::from_utf8_lossy(&text).into_owned())
}

/// [`stderr_of`] for a call that also hands out the caller's stderr: `f` gets the
/// number of a close-on-exec duplicate of fd 2 as it was (fd 2 itself is the memory
/// file meanwhile), for a PAL to take as a process's stderr (`pal_create_process`).
/// The duplicate is returned, for the caller to keep open as long as the PAL may use
/// it. When fd 2 cannot be redirected, `f` gets 2, and no duplicate or text comes back.
pub fn stderr_of_keeping<R>(f: impl FnOnce(i32) -> R) -> (R, Option<OwnedFd>, String) {
    let Some((saved, mut memfd)) = redirect() else {
        return (f(2), None, String::new());
    };
    let r = f(saved.as_raw_fd());
    let _ = std::io::stderr().flush();
    // As in `stderr_of`: restoring cannot fail on a valid descriptor.
    let _ = nix::unistd::dup2(saved.as_raw_fd(), 2);
    let mut text = Vec::new();
    let _ = memfd.rewind().and_then(|_| memfd.read_to_end(&mut text));
    (r, Some(saved), String::from_utf8_lossy(&text).into_owned())
}

/// fd 2 saved and replaced by a new memory file (returned too).
fn redirect() -> Option<(OwnedFd, std::fs::File)> {
    let saved = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let memfd = nix::sys::memfd::memfd_create(
        c"rune-pal-stderr",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .ok()?;
    nix::unistd::dup2(memfd.as_raw_fd(), 2).ok()?;
    Some((saved, std::fs::File::from(memfd)))
}

/// `text` as one line: its non-empty lines joined with "; ", cut at [`MAX_CAUSE`] bytes
/// on a character boundary.
pub fn one_line(text: &str) -> String {
    let mut line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if line.len() > MAX_CAUSE {
        let mut cut = MAX_CAUSE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_joined_and_blank_ones_dropped() {
        assert_eq!(one_line("a: b\n\n  c d \n"), "a: b; c d");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let s = "é".repeat(MAX_CAUSE);
        let l = one_line(&s);
        assert!(l.len() <= MAX_CAUSE + '…'.len_utf8());
        assert!(l.ends_with('…'));
    }
}
