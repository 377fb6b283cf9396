//! The enclave application's side of the `sim` evidence interface.
//!
//! `liberpal-sim` gives the program it runs a `SOCK_SEQPACKET` socket, its descriptor
//! number in [`SIM_FD_ENV`]. Every request is one message and gets one answer:
//!
//! | request | answer |
//! |---|---|
//! | exactly 64 bytes: the report data | one [`REPORT_SIZE`]-byte [`Report`] bound to it, signed by the platform key, carrying the registers and config id |
//! | `extend <mr> <domain> <operation> <content>` | `ok`, or `error: <reason>`: the event is appended to the enclave's log and CC MR `<mr>` (2..=4, RTMR1..3) extended with its digest; CC MR 1 (RTMR0) is the runtime's own, where it records the launch of every process before the process starts |
//! | `log` | `ok` LF, then the event log in TCG2 form (`measurement::eventlog`) |
//! | `init-data` | `ok` LF, then the init-data document the enclave was launched with (empty without one) |
//!
//! A command is text; trailing LFs are ignored. A message of exactly 64 bytes is
//! always a report request, so a command that would be 64 bytes long gets one more LF
//! ([`command`] adds them). Anything else is answered `error: …`. Because the socket
//! keeps message boundaries, even a shell can use it:
//!
//! ```sh
//! printf '%064d' 0 >&"$INCLAVARE_SIM_FD"
//! dd bs=1k count=1 <&"$INCLAVARE_SIM_FD" | od -An -tx1
//! printf 'extend 4 example.org Loaded model-v3\n' >&"$INCLAVARE_SIM_FD"
//! dd bs=1k count=1 <&"$INCLAVARE_SIM_FD"    # ok
//! ```

use std::os::fd::{AsRawFd, RawFd};

use measurement::eventlog::{Event, EventLog, MAX_LOG_BYTES};
use measurement::initdata::MAX_INIT_DATA_BYTES;

use crate::{Report, SimError, REPORT_SIZE};

/// The environment variable naming the evidence socket's descriptor.
pub const SIM_FD_ENV: &str = "INCLAVARE_SIM_FD";

/// The evidence socket this process inherited, if it runs in a `sim` enclave.
pub fn inherited_fd() -> Option<RawFd> {
    std::env::var(SIM_FD_ENV).ok()?.parse().ok()
}

/// Asks the enclave runtime behind `fd` for a report bound to `report_data`, and checks
/// that it is well-formed, signed, and bound to that data.
pub fn request_report(fd: impl AsRawFd, report_data: &[u8; 64]) -> Result<Report, SimError> {
    let io = |what: &'static str| SimError::io(format!("sim evidence socket: {what}"));
    let sent = nix::sys::socket::send(
        fd.as_raw_fd(),
        report_data,
        nix::sys::socket::MsgFlags::empty(),
    )
    .map_err(|e| io("send")(e.into()))?;
    if sent != report_data.len() {
        return Err(SimError::Report(format!("sent {sent} of 64 bytes")));
    }
    let mut buf = [0u8; REPORT_SIZE + 1];
    let n = nix::sys::socket::recv(
        fd.as_raw_fd(),
        &mut buf,
        nix::sys::socket::MsgFlags::empty(),
    )
    .map_err(|e| io("receive")(e.into()))?;
    let report = Report::parse(&buf[..n])?;
    report.verify_signature()?;
    if &report.report_data != report_data {
        return Err(SimError::Report(
            "the report is bound to other report data".into(),
        ));
    }
    Ok(report)
}

/// The message for command `text`: LF-terminated, never 64 bytes long.
pub fn command(text: &str) -> Vec<u8> {
    let mut m = format!("{text}\n").into_bytes();
    if m.len() == 64 {
        m.push(b'\n');
    }
    m
}

/// Sends command `text` and returns the payload of an `ok` answer (after `ok` and an
/// optional LF); an `error: …` answer is [`SimError::Report`] with its reason.
pub fn request(fd: impl AsRawFd, text: &str, max_answer: usize) -> Result<Vec<u8>, SimError> {
    use nix::sys::socket::{recv, send, MsgFlags};
    let io = |what: &'static str| SimError::io(format!("sim evidence socket: {what}"));
    let m = command(text);
    send(fd.as_raw_fd(), &m, MsgFlags::empty()).map_err(|e| io("send")(e.into()))?;
    let mut buf = vec![0u8; max_answer + 4];
    let n =
        recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|e| io("receive")(e.into()))?;
    buf.truncate(n);
    if let Some(rest) = buf.strip_prefix(b"ok") {
        return Ok(rest.strip_prefix(b"\n").unwrap_or(rest).to_vec());
    }
    let text = String::from_utf8_lossy(&buf);
    let verb = text_verb(text_of(&m));
    Err(SimError::Report(match text.strip_prefix("error: ") {
        Some(reason) => format!("{verb}: {}", reason.trim_end()),
        None => format!("{verb}: unexpected answer of {n} bytes"),
    }))
}

fn text_of(m: &[u8]) -> &str {
    std::str::from_utf8(m).unwrap_or("").trim_end_matches('\n')
}

fn text_verb(t: &str) -> &str {
    t.split(' ').next().unwrap_or(t)
}

/// Asks the enclave runtime to record `event` at CC MR `index` (2..=4; 1 is the
/// runtime's own) and extend that register with its digest.
pub fn extend(fd: impl AsRawFd, index: u32, event: &Event) -> Result<(), SimError> {
    request(fd, &format!("extend {index} {}", event.text()), 64).map(drop)
}

/// The enclave's event log, as the runtime keeps it.
pub fn event_log(fd: impl AsRawFd) -> Result<EventLog, SimError> {
    let bytes = request(fd, "log", MAX_LOG_BYTES)?;
    EventLog::parse(&bytes).map_err(|e| SimError::Report(e.to_string()))
}

/// The init-data document the enclave was launched with, if any.
pub fn init_data(fd: impl AsRawFd) -> Result<Option<String>, SimError> {
    let bytes = request(fd, "init-data", MAX_INIT_DATA_BYTES)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| SimError::Report("init-data is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PlatformKey;
    use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
    use std::os::fd::AsFd;

    fn serve_one(server: std::os::fd::OwnedFd, answer: impl FnOnce([u8; 64]) -> Vec<u8>) {
        let mut req = [0u8; 64];
        let n = nix::sys::socket::recv(server.as_raw_fd(), &mut req, MsgFlags::empty()).unwrap();
        assert_eq!(n, 64);
        nix::sys::socket::send(server.as_raw_fd(), &answer(req), MsgFlags::empty()).unwrap();
    }

    fn pair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn signed(report_data: [u8; 64]) -> Vec<u8> {
        let key = PlatformKey::generate().unwrap();
        key.sign_report(Report::unsigned(true, [1; 48], [2; 48], 3, 4, report_data))
            .to_bytes()
    }

    #[test]
    fn a_request_gets_a_signed_report_bound_to_its_data() {
        let (client, server) = pair();
        let t = std::thread::spawn(move || serve_one(server, signed));
        let report = request_report(client.as_fd(), &[7; 64]).unwrap();
        t.join().unwrap();
        assert_eq!(report.report_data, [7; 64]);
        assert_eq!(report.mr_enclave, [1; 48]);
    }

    #[test]
    fn replayed_or_truncated_answers_are_refused() {
        let (client, server) = pair();
        let t = std::thread::spawn(move || serve_one(server, |_| signed([9; 64])));
        let err = request_report(client.as_fd(), &[7; 64]).unwrap_err();
        t.join().unwrap();
        assert!(err.to_string().contains("other report data"), "{err}");

        let (client, server) = pair();
        let t = std::thread::spawn(move || serve_one(server, |d| signed(d)[..100].to_vec()));
        assert!(request_report(client.as_fd(), &[7; 64]).is_err());
        t.join().unwrap();
    }
}
