//! Checking blob bytes against their descriptor while they stream (digest at the end,
//! size at every chunk so an oversized blob stops early).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest as _, Sha256, Sha512};

use super::{Descriptor, Error};

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Hashes and counts bytes on their way to a writer.
pub(crate) struct Checker<'a> {
    location: &'a str,
    desc: &'a Descriptor,
    hasher: Hasher,
    seen: u64,
}

impl<'a> Checker<'a> {
    /// Refuses up front a descriptor over `limit` or with a digest we cannot check.
    pub fn new(location: &'a str, desc: &'a Descriptor, limit: u64) -> Result<Self, Error> {
        if desc.size > limit {
            return Err(Error::TooLarge {
                location: location.to_string(),
                digest: desc.digest.clone(),
                size: desc.size,
                limit,
            });
        }
        let hasher = match desc.digest.split_once(':') {
            Some(("sha256", _)) => Hasher::Sha256(Sha256::new()),
            Some(("sha512", _)) => Hasher::Sha512(Sha512::new()),
            _ => {
                return Err(Error::Manifest {
                    what: location.to_string(),
                    reason: format!("unsupported digest {:?}", desc.digest),
                })
            }
        };
        super::reference::check_digest(&desc.digest).map_err(|reason| Error::Manifest {
            what: location.to_string(),
            reason,
        })?;
        Ok(Checker {
            location,
            desc,
            hasher,
            seen: 0,
        })
    }

    /// Refuses an announced length (e.g. `Content-Length`) other than the descriptor's.
    pub fn announced(&self, len: Option<u64>) -> Result<(), Error> {
        match len {
            Some(n) if n != self.desc.size => Err(self.size_error(format!(
                "the source announces {n} bytes, the descriptor {}",
                self.desc.size
            ))),
            _ => Ok(()),
        }
    }

    /// Hashes `chunk` and writes it to `out`, refusing bytes beyond the descriptor size.
    pub fn feed(&mut self, chunk: &[u8], out: &mut (dyn Write + Send)) -> Result<(), Error> {
        self.seen += chunk.len() as u64;
        if self.seen > self.desc.size {
            return Err(self.size_error(format!(
                "got more than the descriptor's {} bytes",
                self.desc.size
            )));
        }
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(chunk),
            Hasher::Sha512(h) => h.update(chunk),
        }
        out.write_all(chunk).map_err(|source| Error::Io {
            path: format!("destination of blob {}", self.desc.digest),
            source,
        })
    }

    /// Bytes fed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Checks size and digest at the end of the content.
    pub fn finish(self, out: &mut (dyn Write + Send)) -> Result<u64, Error> {
        if self.seen != self.desc.size {
            return Err(self.size_error(format!(
                "got {} bytes, the descriptor says {}",
                self.seen, self.desc.size
            )));
        }
        let actual = match self.hasher {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        };
        if actual != self.desc.digest {
            return Err(Error::Digest {
                location: self.location.to_string(),
                digest: self.desc.digest.clone(),
                actual,
            });
        }
        out.flush().map_err(|source| Error::Io {
            path: format!("destination of blob {}", self.desc.digest),
            source,
        })?;
        Ok(self.seen)
    }

    fn size_error(&self, reason: String) -> Error {
        Error::Size {
            location: self.location.to_string(),
            digest: self.desc.digest.clone(),
            reason,
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Creates `path` for writing, mode 0600. `create_new` (O_CREAT|O_EXCL) refuses an
/// existing file and never follows a planted symlink.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: "x".into(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        }
    }

    #[test]
    fn checks_size_and_digest() {
        let d = desc(b"hello");
        let mut out = Vec::new();
        let mut c = Checker::new("t", &d, 100).unwrap();
        c.feed(b"hel", &mut out).unwrap();
        c.feed(b"lo", &mut out).unwrap();
        assert_eq!(c.finish(&mut out).unwrap(), 5);

        let mut c = Checker::new("t", &d, 100).unwrap();
        c.feed(b"hellO", &mut out).unwrap();
        let e = c.finish(&mut out).unwrap_err().to_string();
        assert!(
            e.contains(&d.digest) && e.contains("digest mismatch"),
            "{e}"
        );

        let mut c = Checker::new("t", &d, 100).unwrap();
        assert!(c.feed(b"hello!", &mut out).is_err());
        assert!(Checker::new("t", &d, 4).is_err());
    }
}
