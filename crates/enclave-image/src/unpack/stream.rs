//! The byte streams around the tar parser: decompression by media type, and the meter that
//! hashes (diff_id), counts and bounds the uncompressed bytes and remembers why the stream
//! failed (the caller's reader — decryption with its HMAC, a download with its digest — or
//! our size limit), so that the error names the real cause rather than the tar parser's view.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256, Sha512};

/// Why the uncompressed stream stopped early.
#[derive(Debug)]
pub(super) enum Failure {
    /// More than the configured limit of uncompressed bytes.
    TooLarge(u64),
    /// The reader below failed (its error, kept whole).
    Source(io::Error),
}

/// Digest algorithms a diff_id may use (OCI image-spec: sha256, sha512).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Algo {
    Sha256,
    Sha512,
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Counts, bounds and optionally hashes everything read through it.
pub(super) struct Meter<R> {
    inner: R,
    hasher: Option<Hasher>,
    count: u64,
    limit: u64,
    pub(super) failure: Option<Failure>,
}

impl<R: Read> Meter<R> {
    pub(super) fn new(inner: R, algo: Option<Algo>, limit: u64) -> Self {
        let hasher = algo.map(|a| match a {
            Algo::Sha256 => Hasher::Sha256(Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(Sha512::new()),
        });
        Meter {
            inner,
            hasher,
            count: 0,
            limit,
            failure: None,
        }
    }

    /// Bytes read so far.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// Reads the rest of the stream (§1.5 of the images reference: the checks of the readers
    /// below fire only at their EOF).
    pub(super) fn drain(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.read(&mut buf)? != 0 {}
        Ok(())
    }

    /// The digest of everything read, as `algo:hex`.
    pub(super) fn digest(self) -> Option<String> {
        self.hasher.map(|h| match h {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        })
    }
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.failure {
            return Err(io::Error::other(match f {
                Failure::TooLarge(l) => format!("more than {l} uncompressed bytes"),
                Failure::Source(e) => e.to_string(),
            }));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let msg = e.to_string();
                self.failure = Some(Failure::Source(e));
                return Err(io::Error::other(msg));
            }
        };
        self.count += n as u64;
        if self.count > self.limit {
            self.failure = Some(Failure::TooLarge(self.limit));
            return Err(io::Error::other(format!(
                "more than {} uncompressed bytes",
                self.limit
            )));
        }
        match &mut self.hasher {
            Some(Hasher::Sha256(h)) => h.update(&buf[..n]),
            Some(Hasher::Sha512(h)) => h.update(&buf[..n]),
            None => {}
        }
        Ok(n)
    }
}

/// A zstd stream of one or more frames (pzstd and `zstd -T` may write several), decoded
/// with the pure-Rust `ruzstd`.
pub(super) struct ZstdFrames<R: BufRead> {
    state: ZState<R>,
}

enum ZState<R: BufRead> {
    Frame(Box<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>),
    Between(R),
    Done,
}

fn zerr(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> ZstdFrames<R> {
    pub(super) fn new(src: R) -> io::Result<Self> {
        let dec = ruzstd::decoding::StreamingDecoder::new(src).map_err(zerr)?;
        Ok(ZstdFrames {
            state: ZState::Frame(Box::new(dec)),
        })
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match std::mem::replace(&mut self.state, ZState::Done) {
                ZState::Frame(mut dec) => {
                    let n = match dec.read(buf) {
                        Ok(n) => n,
                        Err(e) => {
                            self.state = ZState::Frame(dec);
                            return Err(e);
                        }
                    };
                    if n > 0 || buf.is_empty() {
                        self.state = ZState::Frame(dec);
                        return Ok(n);
                    }
                    self.state = ZState::Between(dec.into_inner());
                }
                ZState::Between(mut src) => {
                    if src.fill_buf()?.is_empty() {
                        return Ok(0);
                    }
                    let dec = ruzstd::decoding::StreamingDecoder::new(src).map_err(zerr)?;
                    self.state = ZState::Frame(Box::new(dec));
                }
                ZState::Done => return Ok(0),
            }
        }
    }
}

/// Wraps a compressed reader in its decoder.
pub(super) fn decoder<'a, R: Read + 'a>(
    compression: super::Compression,
    src: R,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        super::Compression::None => Box::new(src),
        // Multi-member, as pigz and concatenated gzip files are valid gzip.
        super::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(src)),
        super::Compression::Zstd => {
            Box::new(ZstdFrames::new(BufReader::with_capacity(64 * 1024, src))?)
        }
    })
}
