//! The `AES_256_CTR_HMAC_SHA256` layer cipher (containers/ocicrypt:
//! blockcipher/blockcipher_aes_ctr.go, §1.4–§1.5): AES-256-CTR whose initial counter
//! block is the whole 16-byte nonce, incremented as a 128-bit big-endian integer
//! (Go's `cipher.NewCTR`), and HMAC-SHA256 over the ciphertext keyed with the same
//! 32-byte key (encrypt-then-MAC). Ciphertext and plaintext have the same length.

use std::io::{self, Read, Write};

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::options::{PrivateOptions, PublicOptions};
use super::Error;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;

enum State {
    Reading,
    Verified,
    Failed,
}

/// Decrypts an encrypted layer blob as it is read, feeding the ciphertext to the HMAC.
///
/// The HMAC is compared (in constant time) when the inner reader reports EOF; a
/// mismatch is an `io::Error` of kind `InvalidData` wrapping [`Error::Hmac`], returned
/// from that `read` and every later one, never `Ok(0)`. Bytes returned before EOF are
/// **unauthenticated**: stage them and publish nothing until this reader returned
/// `Ok(0)` (§1.5). [`DecryptReader::verified`] tells whether that happened.
pub struct DecryptReader<R> {
    inner: R,
    cipher: Aes256Ctr,
    mac: HmacSha256,
    expected: [u8; 32],
    state: State,
    layer: String,
}

impl<R: Read> DecryptReader<R> {
    /// Wraps `inner` (the encrypted blob) with the layer's options; `layer` names the
    /// layer (its digest) in the HMAC error.
    pub fn new(
        inner: R,
        private: &PrivateOptions,
        public: &PublicOptions,
        layer: &str,
    ) -> DecryptReader<R> {
        let key = private.key.as_ref();
        DecryptReader {
            inner,
            cipher: Aes256Ctr::new(key.into(), (&private.nonce).into()),
            mac: <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length"),
            expected: public.hmac,
            state: State::Reading,
            layer: layer.to_string(),
        }
    }

    /// Whether the inner reader reached EOF and the HMAC matched.
    pub fn verified(&self) -> bool {
        matches!(self.state, State::Verified)
    }

    /// The inner reader (e.g. to check a blob digest it computed).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    fn hmac_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Error::Hmac {
                layer: self.layer.clone(),
            },
        )
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.state {
            State::Verified => return Ok(0),
            State::Failed => return Err(self.hmac_error()),
            State::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            // verify_slice compares in constant time.
            return match self.mac.clone().verify_slice(&self.expected) {
                Ok(()) => {
                    self.state = State::Verified;
                    Ok(0)
                }
                Err(_) => {
                    self.state = State::Failed;
                    Err(self.hmac_error())
                }
            };
        }
        self.mac.update(&buf[..n]);
        self.cipher.apply_keystream(&mut buf[..n]);
        Ok(n)
    }
}

/// What [`encrypt_layer`] produced besides the ciphertext.
#[derive(Debug)]
pub struct EncryptedLayer {
    /// The key, nonce and plain-blob digest: wrap these for each recipient.
    pub private: PrivateOptions,
    /// The HMAC, for the `pubopts` annotation.
    pub public: PublicOptions,
    /// `sha256:<hex>` of the ciphertext: the encrypted layer descriptor's digest.
    pub digest: String,
    /// Length of the ciphertext (equal to the plain blob's), in bytes.
    pub size: u64,
}

/// Encrypts a plain (usually compressed) layer blob read from `plain` into `out` with
/// a fresh random key and nonce, as `skopeo copy --encryption-key` does; the private
/// options' digest is the plain blob's sha256.
///
/// Errors: [`Error::Io`] from reading or writing, [`Error::Encrypt`] when no random
/// bytes can be had.
pub fn encrypt_layer(mut plain: impl Read, mut out: impl Write) -> Result<EncryptedLayer, Error> {
    let mut private = PrivateOptions::random(String::new())?;
    let mut cipher = Aes256Ctr::new(private.key.as_ref().into(), (&private.nonce).into());
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(private.key.as_ref()).expect("any key length");
    let (mut plain_hash, mut cipher_hash) = (Sha256::new(), Sha256::new());
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match plain.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let chunk = &mut buf[..n];
        plain_hash.update(&*chunk);
        cipher.apply_keystream(chunk);
        mac.update(chunk);
        cipher_hash.update(&*chunk);
        out.write_all(chunk)?;
        size += n as u64;
    }
    out.flush()?;
    private.digest = format!("sha256:{}", hex::encode(plain_hash.finalize()));
    Ok(EncryptedLayer {
        private,
        public: PublicOptions::new(mac.finalize().into_bytes().into()),
        digest: format!("sha256:{}", hex::encode(cipher_hash.finalize())),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one byte at a time, so every code path sees short reads.
    struct Trickle<R>(R);
    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut ct = Vec::new();
        let enc = encrypt_layer(&plain[..], &mut ct).unwrap();
        assert_eq!((ct.len() as u64, enc.size), (plain.len() as u64, enc.size));
        assert_eq!(
            enc.private.digest(),
            format!("sha256:{}", hex::encode(Sha256::digest(&plain)))
        );
        assert_eq!(
            enc.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&ct)))
        );
        assert_ne!(ct[..64], plain[..64]);

        let mut r = DecryptReader::new(Trickle(&ct[..]), &enc.private, &enc.public, "L");
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert!(r.verified());
        assert_eq!(out, plain);
        assert_eq!(r.read(&mut [0u8; 4]).unwrap(), 0);

        let mut bad = ct.clone();
        bad[40_000] ^= 0x20;
        let mut r = DecryptReader::new(&bad[..], &enc.private, &enc.public, "sha256:abc");
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("layer sha256:abc: HMAC mismatch"),
            "{err}"
        );
        assert!(!r.verified());
        // And it stays an error.
        assert!(r.read(&mut [0u8; 4]).is_err());

        // A truncated blob fails too (the HMAC covers the whole ciphertext).
        let mut r = DecryptReader::new(&ct[..ct.len() - 1], &enc.private, &enc.public, "L");
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
    }
}
