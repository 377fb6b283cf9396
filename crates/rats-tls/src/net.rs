//! Addresses in Inclavare's form, `tcp://HOST:PORT` or `unix:///PATH`, and the streams
//! and listeners they name.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// Where to listen or connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(String),
    Unix(PathBuf),
}

impl std::str::FromStr for Address {
    type Err = String;

    /// `tcp://HOST:PORT`, `unix:///PATH`; a bare `HOST:PORT` is TCP and a bare path
    /// (starting with `/`) a unix socket.
    fn from_str(s: &str) -> Result<Address, String> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            if rest
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!("{s:?}: want tcp://HOST:PORT"));
            }
            return Ok(Address::Tcp(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("unix://") {
            if rest.is_empty() {
                return Err(format!("{s:?}: want unix:///PATH"));
            }
            return Ok(Address::Unix(PathBuf::from(rest)));
        }
        if s.starts_with('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        if s.contains("://") {
            return Err(format!("{s:?}: only tcp:// and unix:// are supported"));
        }
        format!("tcp://{s}").parse()
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp://{a}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// A connected stream of either kind.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn connect(addr: &Address) -> std::io::Result<Stream> {
        Ok(match addr {
            Address::Tcp(a) => Stream::Tcp(TcpStream::connect(a)?),
            Address::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
        })
    }

    /// Bounds every read and write, so a silent peer cannot hold a thread forever.
    pub fn set_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// A listener of either kind.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. A unix socket path must not exist yet (a stale socket file is
    /// replaced; any other file is refused).
    pub fn bind(addr: &Address) -> std::io::Result<Listener> {
        Ok(match addr {
            Address::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
            Address::Unix(p) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(m) = std::fs::symlink_metadata(p) {
                    if m.file_type().is_socket() {
                        std::fs::remove_file(p)?;
                    } else {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!("{} exists and is not a socket", p.display()),
                        ));
                    }
                }
                Listener::Unix(UnixListener::bind(p)?, p.clone())
            }
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<Address> {
        Ok(match self {
            Listener::Tcp(l) => Address::Tcp(l.local_addr()?.to_string()),
            Listener::Unix(_, p) => Address::Unix(p.clone()),
        })
    }

    pub fn accept(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Listener::Tcp(l) => Stream::Tcp(l.accept()?.0),
            Listener::Unix(l, _) => Stream::Unix(l.accept()?.0),
        })
    }

    /// Removes a unix socket's file; call when stopping.
    pub fn remove(&self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_in_inclavares_forms() {
        assert_eq!(
            "tcp://127.0.0.1:1234".parse(),
            Ok(Address::Tcp("127.0.0.1:1234".into()))
        );
        assert_eq!(
            "127.0.0.1:1".parse(),
            Ok(Address::Tcp("127.0.0.1:1".into()))
        );
        assert_eq!(
            "unix:///run/x.sock".parse(),
            Ok(Address::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            "/run/x.sock".parse(),
            Ok(Address::Unix("/run/x.sock".into()))
        );
        for bad in ["tcp://nohost", "tcp://:1", "http://x:1", "unix://", "x"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }
}
