//! A client of the CRI streaming server's exec and attach URLs (what `kubectl exec`
//! reaches through the kubelet): a WebSocket on loopback with the `v4.channel.k8s.io`
//! subprotocol, as kubelet's `pkg/cri/streaming/remotecommand` serves it (containerd
//! 1.6 carries a copy: `pkg/cri/streaming/remotecommand/websocket.go`, `exec.go`).
//!
//! Every binary message starts with its channel byte: 0 stdin (client to server), 1
//! stdout, 2 stderr, 3 the error channel (v4: one `metav1.Status` as JSON when the
//! command ends), 4 resize. The server first sends an empty message on the lowest
//! output channel it opened. v4 has no half-close: the only way to end stdin is to
//! close the whole connection, output included.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest as _;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

/// The subprotocol asked for (binary channels, with the error channel's Status JSON).
pub const V4_CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";
/// Channel numbers (`stdinChannel` … `errorChannel` of `websocket.go`).
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;

/// What one exec session showed so far.
#[derive(Default, Clone, PartialEq)]
pub struct Streamed {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error channel's content: on v4, the command's `metav1.Status` as JSON
    /// (`{"status":"Success"}`, or `"reason":"NonZeroExitCode"` with an `ExitCode`
    /// cause); empty until the command ends.
    pub error: Vec<u8>,
    /// Whether the server closed the connection (after writing the status).
    pub closed: bool,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("Streamed")
            .field("stdout", &text(&self.stdout))
            .field("stderr", &text(&self.stderr))
            .field("error", &text(&self.error))
            .field("closed", &self.closed)
            .finish()
    }
}

impl Streamed {
    /// The error channel's Status, parsed, once there is one.
    pub fn status(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.error).ok()
    }

    /// The exit code the Status reports: 0 for `Success`, the `ExitCode` cause's
    /// message for `NonZeroExitCode`; `None` without a Status or for another failure.
    pub fn exit_code(&self) -> Option<i32> {
        let status = self.status()?;
        if status["status"] == "Success" {
            return Some(0);
        }
        if status["reason"] != "NonZeroExitCode" {
            return None;
        }
        status["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// One exec (or attach) session on a streaming server URL (`http://127.0.0.1:<port>/exec/<token>`).
pub struct ExecStream {
    ws: WebSocket<TcpStream>,
    seen: Streamed,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl ExecStream {
    /// Opens the WebSocket at `url` (its `http` scheme read as `ws`), asking for
    /// [`V4_CHANNEL_PROTOCOL`]; fails unless the server agrees to it.
    pub fn connect(url: &str) -> io::Result<ExecStream> {
        let ws_url = url
            .strip_prefix("http://")
            .map(|rest| format!("ws://{rest}"))
            .ok_or_else(|| other(format!("not a loopback http URL: {url}")))?;
        let mut request = ws_url.as_str().into_client_request().map_err(other)?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            V4_CHANNEL_PROTOCOL.parse().map_err(other)?,
        );
        let uri = request.uri().clone();
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(80);
        let stream = TcpStream::connect((host, port))?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        let (ws, response) = tungstenite::client(request, stream).map_err(other)?;
        let agreed = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if agreed != Some(V4_CHANNEL_PROTOCOL) {
            return Err(other(format!("subprotocol {agreed:?} agreed, not v4")));
        }
        Ok(ExecStream {
            ws,
            seen: Streamed::default(),
        })
    }

    /// Sends `data` on the stdin channel.
    pub fn write_stdin(&mut self, data: &[u8]) -> io::Result<()> {
        let mut message = vec![STDIN];
        message.extend_from_slice(data);
        self.ws.send(Message::Binary(message)).map_err(other)
    }

    /// Reads messages until `done` holds for what was seen, the server closes, or
    /// `timeout` passes; returns what was seen.
    pub fn read_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Streamed) -> bool,
    ) -> io::Result<&Streamed> {
        let end = Instant::now() + timeout;
        while !done(&self.seen) && !self.seen.closed && Instant::now() < end {
            match self.ws.read() {
                Ok(Message::Binary(m)) => {
                    let Some((&channel, data)) = m.split_first() else {
                        continue;
                    };
                    match channel {
                        STDOUT => self.seen.stdout.extend_from_slice(data),
                        STDERR => self.seen.stderr.extend_from_slice(data),
                        ERROR => self.seen.error.extend_from_slice(data),
                        _ => return Err(other(format!("a message on channel {channel}"))),
                    }
                }
                Ok(Message::Close(_)) => self.seen.closed = true,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    self.seen.closed = true
                }
                Err(e) => return Err(other(e)),
            }
        }
        Ok(&self.seen)
    }

    /// Reads until the server closes the connection (`timeout` at most): the whole
    /// session of a command that ends by itself.
    pub fn finish(mut self, timeout: Duration) -> io::Result<Streamed> {
        self.read_until(timeout, |_| false)?;
        Ok(self.seen)
    }

    /// Closes the connection from this side (which, on v4, is how stdin ends) and
    /// waits (2 s at most) for the server's close; returns what was seen.
    pub fn close(mut self) -> io::Result<Streamed> {
        self.ws.close(None).map_err(other)?;
        self.read_until(Duration::from_secs(2), |_| false)?;
        Ok(self.seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(status: &str) -> Streamed {
        Streamed {
            error: status.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_exit_code_is_read_from_the_status_kubelets_exec_writes() {
        // The shapes of `ServeExec` (remotecommand/exec.go) in metav1.Status JSON.
        let failed = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: x","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(with_status(failed).exit_code(), Some(3));
        let ok = r#"{"metadata":{},"status":"Success"}"#;
        assert_eq!(with_status(ok).exit_code(), Some(0));
        let internal = r#"{"metadata":{},"status":"Failure","message":"error executing command in container: x","reason":"InternalError","code":500}"#;
        assert_eq!(with_status(internal).exit_code(), None);
        assert_eq!(with_status("").exit_code(), None);
        assert_eq!(
            with_status(r#"{"reason":"NonZeroExitCode"}"#).exit_code(),
            None
        );
    }
}
