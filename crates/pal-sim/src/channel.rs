//! The application's evidence socket: report requests and the runtime-measurement
//! commands of [`sim_tee::evidence`] (`extend`, `log`, `init-data`), answered from the
//! enclave's state.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, MsgFlags};
use sim_tee::measurement::eventlog::{Event, LAUNCH_MR_INDEX, MAX_EVENT_TEXT};

/// The longest command read: an `extend` of the longest event, and its register.
const MAX_COMMAND: usize = MAX_EVENT_TEXT + 64;

/// The answer to one request.
pub(crate) fn answer(request: &[u8]) -> Vec<u8> {
    if request.len() == 64 {
        let mut data = [0u8; 64];
        data.copy_from_slice(request);
        return match crate::report(data) {
            Ok(report) => report,
            Err(e) => format!("error: {e}").into_bytes(),
        };
    }
    let text = match std::str::from_utf8(request) {
        Ok(t) => t.trim_end_matches('\n'),
        Err(_) => return error("a request is 64 bytes of report data or a text command"),
    };
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    match (verb, rest) {
        ("extend", rest) => match extend(rest) {
            Ok(()) => b"ok".to_vec(),
            Err(e) => error(&e),
        },
        ("log", "") => ok(crate::with_enclave(|e| e.measurements.log().to_bytes())),
        ("init-data", "") => ok(crate::with_enclave(|e| {
            e.init_data
                .as_ref()
                .map(|d| d.text.clone().into_bytes())
                .unwrap_or_default()
        })),
        _ => error(&format!(
            "unknown request {:?} (64 bytes of report data, extend, log, init-data)",
            verb.chars().take(40).collect::<String>()
        )),
    }
}

fn ok(payload: Result<Vec<u8>, String>) -> Vec<u8> {
    match payload {
        Ok(p) => [&b"ok\n"[..], &p].concat(),
        Err(e) => error(&e),
    }
}

fn error(reason: &str) -> Vec<u8> {
    format!("error: {reason}").into_bytes()
}

/// `extend <mr> <domain> <operation> <content>`. CC MR 1 is the runtime's own (its
/// launch events): an application's record there could pass for one.
fn extend(rest: &str) -> Result<(), String> {
    let (mr, text) = rest
        .split_once(' ')
        .ok_or("extend takes <mr> <domain> <operation> <content>")?;
    let index: u32 = mr
        .parse()
        .map_err(|_| format!("unknown register {mr:?} (CC MR 1..=4)"))?;
    if index == LAUNCH_MR_INDEX {
        return Err(format!(
            "CC MR {LAUNCH_MR_INDEX} (RTMR0) is the enclave runtime's own: extend CC MR 2..=4"
        ));
    }
    let event = Event::from_text(text).map_err(|e| e.to_string())?;
    crate::with_enclave(|e| {
        e.measurements
            .extend(index, &event)
            .map_err(|e| e.to_string())
    })?
}

/// Answers the application's requests until it closes its end.
pub(crate) fn serve(sock: OwnedFd) {
    // A whole log (up to 192 KiB) is one message: make room for it whatever the
    // host's default socket buffer is.
    let _ = nix::sys::socket::setsockopt(
        &sock,
        nix::sys::socket::sockopt::SndBuf,
        &(2 * sim_tee::measurement::eventlog::MAX_LOG_BYTES),
    );
    let mut buf = vec![0u8; MAX_COMMAND];
    loop {
        // MSG_TRUNC: the message's real length, to refuse (not misread) a longer one.
        match recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let reply = if n > buf.len() {
                    error(&format!("a {n}-byte request (at most {MAX_COMMAND})"))
                } else {
                    answer(&buf[..n])
                };
                if send(sock.as_raw_fd(), &reply, MsgFlags::empty()).is_err() {
                    return;
                }
            }
        }
    }
}
