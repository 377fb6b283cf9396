//! The agent of an enclave container: how `rune exec` and `rune attest` reach the PAL,
//! which lives in the container's init process.
//!
//! `rune create` binds `<root>/<id>/agent.sock` (mode 0600) before the init is cloned,
//! so the init inherits the listening socket; once started, it serves requests in a
//! thread. The wire format follows Inclavare's (`libenclave_proto`): a 4-byte
//! little-endian length, then an `AgentServiceRequest` / `AgentServiceResponse`
//! protobuf. After an exec request the client sends one byte carrying four fds with
//! `SCM_RIGHTS`: a signal pipe (4-byte little-endian signal numbers), stdin, stdout,
//! stderr. Unlike the original, argv and env also travel as lists (`args`, `env`), so
//! arguments with spaces arrive intact; the space-joined fields are still filled for
//! old readers. With `terminal` (also ours, `exec -t --console-socket`) the client sends
//! two fds instead, the signal pipe and its connection to the caller's console socket:
//! the agent opens a pty in the container's devpts, sends the master there as runc
//! does, and gives the slave to the process as stdin, stdout and stderr. An exec's
//! answer is two frames: [`ExecuteStarted`] once the process exists, then its
//! [`ExecuteResponse`]; a process that could not be made gets only the latter, with
//! the error.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The socket's file name in the container's state directory.
pub const SOCKET: &str = "agent.sock";
/// Largest frame accepted (a request carries argv and env).
const MAX_FRAME: usize = 1 << 20;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Execute {
    /// Space-joined argv (the original field; lossy).
    #[prost(string, tag = "1")]
    pub argv: String,
    /// Space-joined env (the original field; lossy).
    #[prost(string, tag = "2")]
    pub envp: String,
    /// argv, element by element.
    #[prost(string, repeated, tag = "3")]
    pub args: Vec<String>,
    /// `K=V` entries, element by element.
    #[prost(string, repeated, tag = "4")]
    pub env: Vec<String>,
    /// The process gets a pty (see the module's description).
    #[prost(bool, tag = "5")]
    pub terminal: bool,
    /// The caller's terminal size, set on the pty before the process starts (so it
    /// never reads 0×0 before the caller's proxy catches up); 0: unknown.
    #[prost(uint32, tag = "6")]
    pub rows: u32,
    #[prost(uint32, tag = "7")]
    pub cols: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Kill {
    #[prost(int32, tag = "1")]
    pub sig: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Attest {
    #[prost(bool, tag = "1")]
    pub is_ra: bool,
    #[prost(string, tag = "2")]
    pub quote_type: String,
    #[prost(string, tag = "3")]
    pub spid: String,
    #[prost(string, tag = "4")]
    pub subscription_key: String,
    /// The 64 bytes of report data the report is bound to (a rune extension).
    #[prost(bytes = "vec", tag = "5")]
    pub report_data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    #[prost(message, tag = "1")]
    Exec(Execute),
    #[prost(message, tag = "2")]
    Kill(Kill),
    #[prost(message, tag = "3")]
    Attest(Attest),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentServiceRequest {
    #[prost(oneof = "Request", tags = "1, 2, 3")]
    pub request: Option<Request>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecuteResponse {
    #[prost(int32, tag = "1")]
    pub exit_code: i32,
    #[prost(string, tag = "2")]
    pub error: String,
}

/// Sent on an exec's connection once the PAL has made the process
/// (`pal_create_process`), before the final [`ExecuteResponse`] (a rune extension): a
/// caller that does not wait for the process (`exec -d`) learns that it started, and an
/// exec that fails before this frame failed to start at all.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecuteStarted {
    /// The PAL's pid of the process (0 from a v1 PAL, which has none).
    #[prost(int32, tag = "1")]
    pub pid: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttestResponse {
    #[prost(int32, tag = "1")]
    pub exit_code: i32,
    #[prost(string, tag = "2")]
    pub error: String,
    #[prost(bytes = "vec", tag = "3")]
    pub local_report: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Response {
    #[prost(message, tag = "1")]
    Exec(ExecuteResponse),
    #[prost(message, tag = "2")]
    Attest(AttestResponse),
    #[prost(message, tag = "3")]
    Started(ExecuteStarted),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentServiceResponse {
    #[prost(oneof = "Response", tags = "1, 2, 3")]
    pub response: Option<Response>,
}

/// Writes one length-prefixed message.
pub fn write_frame<M: prost::Message>(w: &mut impl Write, msg: &M) -> std::io::Result<()> {
    let body = msg.encode_to_vec();
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(&body)
}

/// Reads one length-prefixed message, reading exactly the announced length.
pub fn read_frame<M: prost::Message + Default>(r: &mut impl Read) -> std::io::Result<M> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("agent frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    M::decode(body.as_slice()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Sends `fds` with one byte of payload.
pub fn send_fds(sock: &UnixStream, fds: &[RawFd]) -> std::io::Result<()> {
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&[0])],
        &cmsg,
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives the fds [`send_fds`] sent (at most `max`).
pub fn recv_fds(sock: &UnixStream, max: usize) -> std::io::Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut out = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                out.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if out.len() > max {
        out.truncate(max);
    }
    Ok(out)
}

/// The name runc sends with the pty master over a console socket.
const PTMX_NAME: &[u8] = b"/dev/ptmx";

/// Opens a pty from the devpts mounted in this mount namespace (the container's, as
/// runc and libcontainer do for `exec -t`), sends its master to `console` (a
/// connection to the caller's console socket: one message carrying the name
/// `/dev/ptmx` and the master as `SCM_RIGHTS`) and returns the slave.
///
/// Errors: opening the pty, a master that is not the `ptmx` device (char 5:2) or a
/// slave that is not a pty (char majors 136-143, the kernel's
/// `Documentation/admin-guide/devices.txt`),
/// sending.
pub fn console_pty(console: &OwnedFd) -> std::io::Result<OwnedFd> {
    use nix::sys::stat::{fstat, major, minor, SFlag};
    let pty = nix::pty::openpty(None, None)?;
    // The container controls its /dev: what goes to the caller must be a real pty.
    let device = |fd: &OwnedFd| -> std::io::Result<Option<(u64, u64)>> {
        let st = fstat(fd.as_raw_fd())?;
        let char_dev = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
        Ok(char_dev.then(|| (major(st.st_rdev), minor(st.st_rdev))))
    };
    let master_ok = device(&pty.master)? == Some((5, 2));
    let slave_ok = device(&pty.slave)?.is_some_and(|(maj, _)| (136..=143).contains(&maj));
    if !master_ok || !slave_ok {
        return Err(std::io::Error::other(
            "/dev/ptmx of the container is not a pty multiplexer",
        ));
    }
    let fds = [pty.master.as_raw_fd()];
    sendmsg::<()>(
        console.as_raw_fd(),
        &[IoSlice::new(PTMX_NAME)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(pty.slave)
}

/// Binds the agent socket at `dir/agent.sock` with mode 0600. The path is reached
/// relative to an open directory, so long state roots do not hit the 108-byte limit of
/// a socket address.
pub fn bind(dir: &Path) -> std::io::Result<UnixListener> {
    bind_as(dir, SOCKET)
}

/// Binds a socket named `name` in `dir` with mode 0600 (see [`bind`]).
pub fn bind_as(dir: &Path, name: &str) -> std::io::Result<UnixListener> {
    let listener = UnixListener::bind(short_path(dir)?.join(name))?;
    std::fs::set_permissions(
        dir.join(name),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    Ok(listener)
}

/// Connects to the agent of the container whose state directory is `dir`.
pub fn connect(dir: &Path) -> std::io::Result<UnixStream> {
    UnixStream::connect(short_path(dir)?.join(SOCKET))
}

/// A path to `dir` short enough for a socket address: the directory itself, or
/// `/proc/self/fd/N` of an open handle to it.
fn short_path(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    if dir.as_os_str().len() + SOCKET.len() + 2 < 100 {
        return Ok(dir.to_path_buf());
    }
    let f = std::fs::File::open(dir)?;
    let p = std::path::PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    // Kept open for the life of the process: the path must stay valid for bind/connect.
    std::mem::forget(f);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused() {
        let req = AgentServiceRequest {
            request: Some(Request::Exec(Execute {
                argv: "sh -c echo hi".into(),
                envp: String::new(),
                args: vec!["sh".into(), "-c".into(), "echo hi".into()],
                env: vec!["A=b c".into()],
                terminal: true,
                rows: 24,
                cols: 80,
            })),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(
            u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize,
            buf.len() - 4
        );
        let back: AgentServiceRequest = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, req);

        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert!(read_frame::<AgentServiceRequest>(&mut huge.as_slice()).is_err());
        let truncated = [10u8, 0, 0, 0, 1];
        assert!(read_frame::<AgentServiceRequest>(&mut truncated.as_slice()).is_err());
    }

    #[test]
    fn fds_travel_and_long_directories_work() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a".repeat(60)).join("b".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let listener = bind(&deep).unwrap();
        let client = connect(&deep).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        send_fds(&client, &[r.as_raw_fd(), 1]).unwrap();
        let fds = recv_fds(&server, 4).unwrap();
        assert_eq!(fds.len(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(deep.join(SOCKET))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
