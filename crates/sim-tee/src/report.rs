//! The report a `sim` enclave gives about itself.
//!
//! Layout of version 2 (544 bytes, integers little-endian):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `ISIM` |
//! | 4 | 2 | version, 2 |
//! | 6 | 2 | flags: bit 0 = debug enclave |
//! | 8 | 48 | `mr_enclave` |
//! | 56 | 48 | `mr_signer` |
//! | 104 | 2 | product id |
//! | 106 | 2 | svn |
//! | 108 | 4 | reserved, zero |
//! | 112 | 64 | report data, chosen by the enclave application |
//! | 176 | 64 | config id: set at launch, not part of `mr_enclave` (init-data's digest, zero-padded) |
//! | 240 | 4 × 48 | runtime measurement registers RTMR0..3 |
//! | 432 | 4 × 4 | how many times each register was extended |
//! | 448 | 32 | the platform's Ed25519 public key |
//! | 480 | 64 | Ed25519 signature over bytes 0..480 by that key |
//!
//! **Registers.** Four, as TDX has RTMR0..3, so the event log replays with the same
//! rule and CC MR numbering (CC MR `i` = RTMR`i-1`, see `measurement::eventlog`) and a
//! policy written for TDX's `uefi_event_logs` reads the same for `sim`. Each is SHA-384,
//! 48 zero bytes when the enclave starts (`pal_init`), and extended as
//! `R ← SHA-384(R ‖ digest)`. The extend counts (measurement.md §5.1's "R3") let a
//! verifier tell an extra or missing log record from a changed one and name it.
//!
//! **Config id.** 64 bytes, as SGX KSS's `CONFIGID` (REPORT body offset 192): chosen by
//! the launcher, outside the measurement, so one reference value of the code serves
//! every deployment configuration bound beside it.
//!
//! **Version 1** (272 bytes) is the same up to the report data, then the platform key
//! (176) and the signature over bytes 0..208 (208); it has no registers and no config
//! id. It is still parsed and verified ([`Report::version`] says which), and read as
//! zero registers, zero counts and a zero config id.
//!
//! The signature proves the report came from the holder of the platform key; it does
//! not prove any hardware. Verifiers pin the platform keys they trust, or accept any
//! key when their policy says `sim` evidence is acceptable for development.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::{Digest, SimError};

/// `ISIM`.
pub const REPORT_MAGIC: [u8; 4] = *b"ISIM";
/// Total size of a (version 2) report.
pub const REPORT_SIZE: usize = 544;
/// Bytes covered by the signature (version 2).
pub const SIGNED_LEN: usize = 480;
/// Total size of a version 1 report.
pub const REPORT_SIZE_V1: usize = 272;
const SIGNED_LEN_V1: usize = 208;
/// The version [`Report::unsigned`] makes.
pub const REPORT_VERSION: u16 = 2;
/// The number of runtime measurement registers.
pub const RTMR_COUNT: usize = 4;
/// The size of the config id.
pub const CONFIG_ID_LEN: usize = 64;
const FLAG_DEBUG: u16 = 1;

/// A parsed report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// 2, or 1 for a report of the old layout.
    pub version: u16,
    pub debug: bool,
    pub mr_enclave: Digest,
    pub mr_signer: Digest,
    pub product_id: u16,
    pub svn: u16,
    pub report_data: [u8; 64],
    /// Zero when launched without one (and in version 1).
    pub config_id: [u8; CONFIG_ID_LEN],
    /// RTMR0..3.
    pub rtmr: [Digest; RTMR_COUNT],
    /// How many times each register was extended.
    pub rtmr_counts: [u32; RTMR_COUNT],
    pub platform_key: [u8; 32],
    pub signature: [u8; 64],
}

impl Report {
    /// The (version 2) report of an enclave with this identity, bound to
    /// `report_data`, with zero registers and config id (set them with the fields), to
    /// be signed with [`crate::PlatformKey::sign_report`].
    pub fn unsigned(
        debug: bool,
        mr_enclave: Digest,
        mr_signer: Digest,
        product_id: u16,
        svn: u16,
        report_data: [u8; 64],
    ) -> Report {
        Report {
            version: REPORT_VERSION,
            debug,
            mr_enclave,
            mr_signer,
            product_id,
            svn,
            report_data,
            config_id: [0; CONFIG_ID_LEN],
            rtmr: [[0; 48]; RTMR_COUNT],
            rtmr_counts: [0; RTMR_COUNT],
            platform_key: [0; 32],
            signature: [0; 64],
        }
    }

    fn signed_len(&self) -> usize {
        if self.version == 1 {
            SIGNED_LEN_V1
        } else {
            SIGNED_LEN
        }
    }

    /// The bytes the signature covers, in the report's version's layout.
    pub fn body(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.signed_len()];
        b[0..4].copy_from_slice(&REPORT_MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&(if self.debug { FLAG_DEBUG } else { 0 }).to_le_bytes());
        b[8..56].copy_from_slice(&self.mr_enclave);
        b[56..104].copy_from_slice(&self.mr_signer);
        b[104..106].copy_from_slice(&self.product_id.to_le_bytes());
        b[106..108].copy_from_slice(&self.svn.to_le_bytes());
        b[112..176].copy_from_slice(&self.report_data);
        if self.version == 1 {
            b[176..208].copy_from_slice(&self.platform_key);
            return b;
        }
        b[176..240].copy_from_slice(&self.config_id);
        for (i, r) in self.rtmr.iter().enumerate() {
            b[240 + 48 * i..288 + 48 * i].copy_from_slice(r);
        }
        for (i, c) in self.rtmr_counts.iter().enumerate() {
            b[432 + 4 * i..436 + 4 * i].copy_from_slice(&c.to_le_bytes());
        }
        b[448..480].copy_from_slice(&self.platform_key);
        b
    }

    /// The report's wire bytes ([`REPORT_SIZE`], or [`REPORT_SIZE_V1`] for version 1).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses untrusted bytes of either version. Checks the layout only; see
    /// [`Report::verify_signature`].
    pub fn parse(bytes: &[u8]) -> Result<Report, SimError> {
        if bytes.len() < 8 || bytes[0..4] != REPORT_MAGIC {
            return Err(SimError::Report("not a sim report (bad magic)".into()));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        let size = match version {
            1 => REPORT_SIZE_V1,
            2 => REPORT_SIZE,
            v => return Err(SimError::Report(format!("unsupported version {v}"))),
        };
        if bytes.len() != size {
            return Err(SimError::Report(format!(
                "{} bytes, a version {version} sim report has {size}",
                bytes.len()
            )));
        }
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags & !FLAG_DEBUG != 0 {
            return Err(SimError::Report(format!("unknown flags {flags:#x}")));
        }
        if bytes[108..112] != [0; 4] {
            return Err(SimError::Report("reserved bytes are not zero".into()));
        }
        let arr = |r: std::ops::Range<usize>| bytes[r].to_vec();
        let mut report = Report {
            version,
            debug: flags & FLAG_DEBUG != 0,
            mr_enclave: arr(8..56).try_into().expect("48 bytes"),
            mr_signer: arr(56..104).try_into().expect("48 bytes"),
            product_id: u16::from_le_bytes([bytes[104], bytes[105]]),
            svn: u16::from_le_bytes([bytes[106], bytes[107]]),
            report_data: arr(112..176).try_into().expect("64 bytes"),
            config_id: [0; CONFIG_ID_LEN],
            rtmr: [[0; 48]; RTMR_COUNT],
            rtmr_counts: [0; RTMR_COUNT],
            platform_key: [0; 32],
            signature: [0; 64],
        };
        let signed = report.signed_len();
        report.platform_key = arr(signed - 32..signed).try_into().expect("32 bytes");
        report.signature = arr(signed..size).try_into().expect("64 bytes");
        if version >= 2 {
            report.config_id = arr(176..240).try_into().expect("64 bytes");
            for i in 0..RTMR_COUNT {
                report.rtmr[i] = arr(240 + 48 * i..288 + 48 * i)
                    .try_into()
                    .expect("48 bytes");
                report.rtmr_counts[i] =
                    u32::from_le_bytes(arr(432 + 4 * i..436 + 4 * i).try_into().expect("4"));
            }
        }
        Ok(report)
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
        let mut r = Report::unsigned(true, [1; 48], [2; 48], 3, 4, [5; 64]);
        r.config_id = [6; 64];
        r.rtmr = [[7; 48], [8; 48], [9; 48], [10; 48]];
        r.rtmr_counts = [1, 2, 3, 0x0102_0304];
        key.sign_report(r)
    }

    #[test]
    fn round_trips_and_verifies() {
        let r = sample();
        let bytes = r.to_bytes();
        assert_eq!(bytes.len(), REPORT_SIZE);
        assert_eq!(&bytes[0..6], b"ISIM\x02\x00");
        assert_eq!(bytes[112], 5);
        assert_eq!(bytes[176], 6);
        assert_eq!(
            (bytes[240], bytes[288], bytes[336], bytes[384]),
            (7, 8, 9, 10)
        );
        assert_eq!(
            bytes[432..448],
            [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 3, 2, 1]
        );
        assert_eq!(bytes[448..480], r.platform_key);
        let parsed = Report::parse(&bytes).unwrap();
        assert_eq!(parsed, r);
        parsed.verify_signature().unwrap();
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let bytes = sample().to_bytes();
        for i in 0..REPORT_SIZE {
            let mut b = bytes.clone();
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
        let mut b = sample().to_bytes();
        // A v2 report claiming v1, and the other way round: the size is wrong.
        b[4] = 1;
        assert!(Report::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("version 1 sim report has 272"));
        b[4] = 3;
        assert!(Report::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("unsupported version 3"));
    }
}
