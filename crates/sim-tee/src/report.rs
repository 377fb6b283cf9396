//! The report a `sim` enclave gives about itself.
//!
//! Layout (272 bytes, integers little-endian):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `ISIM` |
//! | 4 | 2 | version, 1 |
//! | 6 | 2 | flags: bit 0 = debug enclave |
//! | 8 | 48 | `mr_enclave` |
//! | 56 | 48 | `mr_signer` |
//! | 104 | 2 | product id |
//! | 106 | 2 | svn |
//! | 108 | 4 | reserved, zero |
//! | 112 | 64 | report data, chosen by the enclave application |
//! | 176 | 32 | the platform's Ed25519 public key |
//! | 208 | 64 | Ed25519 signature over bytes 0..208 by that key |
//!
//! The signature proves the report came from the holder of the platform key; it does
//! not prove any hardware. Verifiers pin the platform keys they trust, or accept any
//! key when their policy says `sim` evidence is acceptable for development.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::{Digest, SimError};

/// `ISIM`.
pub const REPORT_MAGIC: [u8; 4] = *b"ISIM";
/// Total size of a report.
pub const REPORT_SIZE: usize = 272;
/// Bytes covered by the signature.
pub const SIGNED_LEN: usize = 208;
const VERSION: u16 = 1;
const FLAG_DEBUG: u16 = 1;

/// A parsed report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub debug: bool,
    pub mr_enclave: Digest,
    pub mr_signer: Digest,
    pub product_id: u16,
    pub svn: u16,
    pub report_data: [u8; 64],
    pub platform_key: [u8; 32],
    pub signature: [u8; 64],
}

impl Report {
    /// The report of an enclave with this identity, bound to `report_data`, to be
    /// signed with [`crate::PlatformKey::sign_report`].
    pub fn unsigned(
        debug: bool,
        mr_enclave: Digest,
        mr_signer: Digest,
        product_id: u16,
        svn: u16,
        report_data: [u8; 64],
    ) -> Report {
        Report {
            debug,
            mr_enclave,
            mr_signer,
            product_id,
            svn,
            report_data,
            platform_key: [0; 32],
            signature: [0; 64],
        }
    }

    /// The bytes the signature covers.
    pub fn body(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[0..4].copy_from_slice(&REPORT_MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&(if self.debug { FLAG_DEBUG } else { 0 }).to_le_bytes());
        b[8..56].copy_from_slice(&self.mr_enclave);
        b[56..104].copy_from_slice(&self.mr_signer);
        b[104..106].copy_from_slice(&self.product_id.to_le_bytes());
        b[106..108].copy_from_slice(&self.svn.to_le_bytes());
        b[112..176].copy_from_slice(&self.report_data);
        b[176..208].copy_from_slice(&self.platform_key);
        b
    }

    /// The report's wire bytes.
    pub fn to_bytes(&self) -> [u8; REPORT_SIZE] {
        let mut out = [0u8; REPORT_SIZE];
        out[..SIGNED_LEN].copy_from_slice(&self.body());
        out[SIGNED_LEN..].copy_from_slice(&self.signature);
        out
    }

    /// Parses untrusted bytes. Checks the layout only; see [`Report::verify_signature`].
    pub fn parse(bytes: &[u8]) -> Result<Report, SimError> {
        if bytes.len() != REPORT_SIZE {
            return Err(SimError::Report(format!(
                "{} bytes, a sim report has {REPORT_SIZE}",
                bytes.len()
            )));
        }
        if bytes[0..4] != REPORT_MAGIC {
            return Err(SimError::Report("not a sim report (bad magic)".into()));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(SimError::Report(format!("unsupported version {version}")));
        }
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags & !FLAG_DEBUG != 0 {
            return Err(SimError::Report(format!("unknown flags {flags:#x}")));
        }
        if bytes[108..112] != [0; 4] {
            return Err(SimError::Report("reserved bytes are not zero".into()));
        }
        let arr = |r: std::ops::Range<usize>| bytes[r].to_vec();
        Ok(Report {
            debug: flags & FLAG_DEBUG != 0,
            mr_enclave: arr(8..56).try_into().expect("48 bytes"),
            mr_signer: arr(56..104).try_into().expect("48 bytes"),
            product_id: u16::from_le_bytes([bytes[104], bytes[105]]),
            svn: u16::from_le_bytes([bytes[106], bytes[107]]),
            report_data: arr(112..176).try_into().expect("64 bytes"),
            platform_key: arr(176..208).try_into().expect("32 bytes"),
            signature: arr(208..272).try_into().expect("64 bytes"),
        })
    }

    /// Checks the signature against the platform key the report carries.
    pub fn verify_signature(&self) -> Result<(), SimError> {
        let key = VerifyingKey::from_bytes(&self.platform_key)
            .map_err(|_| SimError::Report("platform key is not a valid Ed25519 key".into()))?;
        key.verify(&self.body(), &Signature::from_bytes(&self.signature))
            .map_err(|_| SimError::ReportSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PlatformKey;

    fn sample() -> Report {
        let key = PlatformKey::generate().unwrap();
        key.sign_report(Report::unsigned(true, [1; 48], [2; 48], 3, 4, [5; 64]))
    }

    #[test]
    fn round_trips_and_verifies() {
        let r = sample();
        let bytes = r.to_bytes();
        assert_eq!(&bytes[0..4], b"ISIM");
        assert_eq!(bytes[112], 5);
        let parsed = Report::parse(&bytes).unwrap();
        assert_eq!(parsed, r);
        parsed.verify_signature().unwrap();
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let bytes = sample().to_bytes();
        for i in 0..REPORT_SIZE {
            let mut b = bytes;
            b[i] ^= 0x01;
            let ok = Report::parse(&b).and_then(|r| r.verify_signature()).is_ok();
            assert!(!ok, "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(Report::parse(&[]).is_err());
        assert!(Report::parse(&[0; REPORT_SIZE + 1]).is_err());
        assert!(Report::parse(&[0; REPORT_SIZE]).is_err());
    }
}
