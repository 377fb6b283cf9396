//! The enclave application's side of the `sim` evidence interface.
//!
//! `liberpal-sim` gives the program it runs a `SOCK_SEQPACKET` socket, its descriptor
//! number in [`SIM_FD_ENV`]. One request is one 64-byte message (the report data); the
//! answer is one [`REPORT_SIZE`]-byte [`Report`] bound to it, signed by the platform
//! key. Any other request size is answered with an empty message. Because the socket
//! keeps message boundaries, even a shell can use it:
//!
//! ```sh
//! printf '%064d' 0 >&"$INCLAVARE_SIM_FD"
//! dd bs=512 count=1 <&"$INCLAVARE_SIM_FD" | od -An -tx1
//! ```

use std::os::fd::{AsRawFd, RawFd};

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
            .to_vec()
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
