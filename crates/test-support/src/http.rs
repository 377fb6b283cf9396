//! A minimal HTTP/1.1 client and a fault-injecting proxy, loopback only, for tests that
//! talk to real daemons without pulling an HTTP stack into dev-dependencies.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A response: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (read to connection close or `Content-Length`).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) to `addr` and reads the whole answer.
/// `path` may carry a query; `headers` are added as given.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s);
    let (status_line, headers) = read_head(&mut r)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    match len {
        Some(n) => {
            r.take(n).read_to_end(&mut body)?;
        }
        None if method == "HEAD" => {}
        None => {
            r.read_to_end(&mut body)?;
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Reads a status line (or request line) and headers; returns the first line and the
/// headers with lower-cased names.
pub(crate) fn read_head(r: &mut impl BufRead) -> io::Result<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((line, headers))
}

/// Waits until `GET /v2/` (or `path`) at `addr` answers with any status, up to `timeout`.
pub fn wait_http(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<u16> {
    let start = std::time::Instant::now();
    loop {
        match request(addr, "GET", path, &[], b"") {
            Ok(r) => return Ok(r.status),
            Err(e) if start.elapsed() > timeout => {
                return Err(io::Error::new(e.kind(), format!("{addr}{path}: {e}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A free loopback port (bound then released; the caller binds it soon after).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Which requests a [`FaultProxy`] answers itself, and how.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Requests whose path contains this string are candidates (e.g. a blob digest).
    pub path_contains: String,
    /// How many of them get `status`; `None` means all of them.
    pub times: Option<u32>,
    /// The status sent instead of forwarding, e.g. 500.
    pub status: u16,
    /// A `Location` header sent with it (a redirect, e.g. 307 to a blob store).
    pub location: Option<String>,
}

/// A loopback HTTP proxy in front of a real server that answers matching requests with
/// an error status a fixed number of times and forwards everything else unchanged.
/// Each connection carries one request (`Connection: close` is forced both ways).
pub struct FaultProxy {
    addr: SocketAddr,
    injected: Arc<AtomicU32>,
    forwarded: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts the proxy on an ephemeral loopback port, forwarding to `upstream`.
    pub fn start(upstream: SocketAddr, fault: Fault) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let injected = Arc::new(AtomicU32::new(0));
        let forwarded = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (inj, fwd, st) = (injected.clone(), forwarded.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (inj, fwd, fault) = (inj.clone(), fwd.clone(), fault.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(conn, upstream, &fault, &inj, &fwd);
                });
            }
        });
        Ok(FaultProxy {
            addr,
            injected,
            forwarded,
            stop,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:port` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many error answers were injected so far.
    pub fn injected(&self) -> u32 {
        self.injected.load(Ordering::SeqCst)
    }

    /// How many requests were forwarded so far.
    pub fn forwarded(&self) -> u32 {
        self.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(
    conn: TcpStream,
    upstream: SocketAddr,
    fault: &Fault,
    injected: &AtomicU32,
    forwarded: &AtomicU32,
) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let (request_line, headers) = read_head(&mut r)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let mut client = conn;
    if path.contains(&fault.path_contains) {
        let n = injected.load(Ordering::SeqCst);
        if fault.times.is_none_or(|t| n < t) {
            injected.fetch_add(1, Ordering::SeqCst);
            let body = b"injected by test-support FaultProxy";
            let location = fault
                .location
                .as_ref()
                .map(|l| format!("Location: {l}\r\n"))
                .unwrap_or_default();
            write!(
                client,
                "HTTP/1.1 {} Injected\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n",
                fault.status,
                body.len()
            )?;
            client.write_all(body)?;
            return Ok(());
        }
    }
    forwarded.fetch_add(1, Ordering::SeqCst);
    let mut up = TcpStream::connect(upstream)?;
    let mut head = request_line.clone();
    let mut body_len = 0u64;
    for (n, v) in &headers {
        if n == "connection" {
            continue;
        }
        if n == "content-length" {
            body_len = v.parse().unwrap_or(0);
        }
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    io::copy(&mut (&mut r).take(body_len), &mut up)?;
    // The upstream closes after its answer (Connection: close): relay it verbatim.
    io::copy(&mut up, &mut client)?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

/// Serves the files under a directory over loopback HTTP (`GET` only; 404 for anything
/// missing or outside it), e.g. a lookaside signature store written by skopeo.
pub struct StaticFiles {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl StaticFiles {
    /// Starts on an ephemeral loopback port.
    pub fn serve(dir: &std::path::Path) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU32::new(0));
        let (st, reqs, root) = (stop.clone(), requests.clone(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                reqs.fetch_add(1, Ordering::SeqCst);
                let _ = serve_file(conn, &root);
            }
        });
        Ok(StaticFiles {
            addr,
            stop,
            requests,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests served so far.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for StaticFiles {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_file(conn: TcpStream, root: &std::path::Path) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let (line, _) = read_head(&mut r)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let rel = percent_decode(path.trim_start_matches('/'));
    let file = if rel.split('/').any(|c| c == "..") {
        None
    } else {
        std::fs::read(root.join(rel)).ok()
    };
    let mut w = conn;
    match file {
        Some(body) => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            w.write_all(&body)
        }
        None => write!(
            w,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    }
}

/// Decodes `%XX` escapes (and `+` as space, as in query strings).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
