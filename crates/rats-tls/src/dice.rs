//! The Interoperable RA-TLS certificate extension: `TAG([bstr evidence, bstr claims])`
//! in CBOR, and the claims map it carries.
//!
//! The decoder accepts exactly the shapes the format defines: definite lengths only,
//! a 2-element array under a known tag, a map of text keys to byte strings without
//! duplicates, and no trailing bytes. It is a parser of bytes from the network, so it
//! never panics and never allocates more than its input's length.

use std::collections::BTreeMap;

use sha2::Digest as _;

use crate::RaTlsError;

/// `tcg-dice-conceptual-message-wrapper`: the evidence extension.
pub const OID_EVIDENCE: &[u64] = &[2, 23, 133, 5, 4, 9];
/// `tcg-dice-endorsement-manifest`: the endorsements extension.
pub const OID_ENDORSEMENTS: &[u64] = &[2, 23, 133, 5, 4, 2];

/// Intel TEE quote (SGX or TDX ECDSA quote).
pub const TAG_INTEL_QUOTE: u64 = 60000;
/// AMD SEV-SNP attestation report (rats-tls and rats-rs).
pub const TAG_SEV_SNP: u64 = 0x1a7504;
/// `liberpal-sim` report. Private to this project: no other implementation emits it.
pub const TAG_SIM: u64 = 0x1a7510;
/// Confidential Containers `sample` evidence (JSON). Private to this project.
pub const TAG_SAMPLE: u64 = 0x1a7511;

/// The claim every certificate carries: the hash of its own public key.
pub const CLAIM_PUBKEY_HASH: &str = "pubkey-hash";
/// The verifier's challenge, when freshness was asked for.
pub const CLAIM_NONCE: &str = "nonce";

/// IANA named-information hash algorithm ids.
pub const HASH_SHA256: u64 = 1;
pub const HASH_SHA384: u64 = 7;
pub const HASH_SHA512: u64 = 8;

/// The CBOR tag for evidence of `tee`.
pub fn tag_of(tee: rats::Tee) -> u64 {
    match tee {
        rats::Tee::SgxEcdsa | rats::Tee::TdxEcdsa => TAG_INTEL_QUOTE,
        rats::Tee::SevSnp => TAG_SEV_SNP,
        rats::Tee::Sim => TAG_SIM,
        rats::Tee::Sample => TAG_SAMPLE,
    }
}

/// The TEE a tag stands for; Intel quotes are told apart by their header.
pub fn tee_of(tag: u64, evidence: &[u8]) -> Result<rats::Tee, RaTlsError> {
    match tag {
        TAG_INTEL_QUOTE => match rats::Tee::detect(evidence) {
            Ok(t @ (rats::Tee::SgxEcdsa | rats::Tee::TdxEcdsa)) => Ok(t),
            _ => Err(RaTlsError::Extension(
                "tag 60000 holds no SGX or TDX ECDSA quote".into(),
            )),
        },
        TAG_SEV_SNP => Ok(rats::Tee::SevSnp),
        TAG_SIM => Ok(rats::Tee::Sim),
        TAG_SAMPLE => Ok(rats::Tee::Sample),
        60001 | 60002 => Err(RaTlsError::Extension(format!(
            "tag {tag} (an SGX/TDX local report) is verifiable only on the same platform"
        ))),
        other => Err(RaTlsError::Extension(format!(
            "unknown evidence tag {other:#x}"
        ))),
    }
}

/// `report_data` for a claims buffer: SHA-256 of it, then 32 zero bytes.
pub fn report_data(claims_buffer: &[u8]) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&sha2::Sha256::digest(claims_buffer));
    rd
}

/// The `pubkey-hash` claim's value for a DER SubjectPublicKeyInfo (SHA-256).
pub fn pubkey_hash_claim(spki_der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, 4, 2);
    header(&mut out, 0, HASH_SHA256);
    let h = sha2::Sha256::digest(spki_der);
    header(&mut out, 2, h.len() as u64);
    out.extend_from_slice(&h);
    out
}

/// Checks a `pubkey-hash` claim's value against a DER SubjectPublicKeyInfo, with
/// whichever of SHA-256, SHA-384 or SHA-512 the claim names.
pub fn check_pubkey_hash(claim: &[u8], spki_der: &[u8]) -> Result<(), RaTlsError> {
    let mut r = Reader::new(claim);
    let n = r.expect(4, "pubkey-hash: an array")?;
    if n != 2 {
        return Err(RaTlsError::Extension(format!(
            "pubkey-hash: an array of {n}, not [alg, hash]"
        )));
    }
    let alg = r.expect(0, "pubkey-hash: an algorithm id")?;
    let hash = r.bytes("pubkey-hash: a hash")?;
    r.end("pubkey-hash")?;
    let actual: Vec<u8> = match alg {
        HASH_SHA256 => sha2::Sha256::digest(spki_der).to_vec(),
        HASH_SHA384 => sha2::Sha384::digest(spki_der).to_vec(),
        HASH_SHA512 => sha2::Sha512::digest(spki_der).to_vec(),
        other => {
            return Err(RaTlsError::Extension(format!(
                "pubkey-hash: unknown hash algorithm {other} (known: 1, 7, 8)"
            )))
        }
    };
    if actual != hash {
        return Err(RaTlsError::KeyMismatch);
    }
    Ok(())
}

/// Encodes claims as a definite-length CBOR map (keys in order).
pub fn encode_claims(claims: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, 5, claims.len() as u64);
    for (k, v) in claims {
        header(&mut out, 3, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        header(&mut out, 2, v.len() as u64);
        out.extend_from_slice(v);
    }
    out
}

/// Decodes a claims buffer.
pub fn decode_claims(buf: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, RaTlsError> {
    let mut r = Reader::new(buf);
    let n = r.expect(5, "claims: a map")?;
    let mut claims = BTreeMap::new();
    for _ in 0..n {
        let key = r.text("claims: a text key")?;
        let value = r.bytes("claims: a byte-string value")?;
        if claims.insert(key.clone(), value.to_vec()).is_some() {
            return Err(RaTlsError::Extension(format!("claims: {key:?} twice")));
        }
    }
    r.end("claims")?;
    Ok(claims)
}

/// Encodes the evidence extension's value.
pub fn encode_evidence(tag: u64, evidence: &[u8], claims_buffer: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(evidence.len() + claims_buffer.len() + 16);
    header(&mut out, 6, tag);
    header(&mut out, 4, 2);
    header(&mut out, 2, evidence.len() as u64);
    out.extend_from_slice(evidence);
    header(&mut out, 2, claims_buffer.len() as u64);
    out.extend_from_slice(claims_buffer);
    out
}

/// The parts of an evidence extension's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedEvidence<'a> {
    pub tag: u64,
    pub evidence: &'a [u8],
    pub claims_buffer: &'a [u8],
}

/// Decodes the evidence extension's value.
pub fn decode_evidence(value: &[u8]) -> Result<TaggedEvidence<'_>, RaTlsError> {
    let mut r = Reader::new(value);
    let tag = r.expect(6, "evidence: a tag")?;
    let n = r.expect(4, "evidence: an array")?;
    if n != 2 {
        return Err(RaTlsError::Extension(format!(
            "evidence: an array of {n}, not [evidence, claims]"
        )));
    }
    let evidence = r.bytes("evidence: a byte string")?;
    let claims_buffer = r.bytes("evidence: a claims byte string")?;
    r.end("evidence")?;
    Ok(TaggedEvidence {
        tag,
        evidence,
        claims_buffer,
    })
}

pub(crate) fn header(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    match value {
        0..=23 => out.push(m | value as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, value as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// A strict reader of the CBOR subset above.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn fail(&self, what: &str) -> RaTlsError {
        RaTlsError::Extension(format!("{what} expected at byte {}", self.pos))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RaTlsError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(RaTlsError::Extension(format!(
                "{what}: {n} bytes run past the end ({} left)",
                self.buf.len() - self.pos
            )));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A header of major type `major`; returns its argument.
    pub(crate) fn expect(&mut self, major: u8, what: &str) -> Result<u64, RaTlsError> {
        let &first = self.buf.get(self.pos).ok_or_else(|| self.fail(what))?;
        if first >> 5 != major {
            return Err(self.fail(what));
        }
        let ai = first & 0x1f;
        let start = self.pos;
        self.pos += 1;
        let value = match ai {
            0..=23 => u64::from(ai),
            24 => u64::from(self.take(1, what)?[0]),
            25 => u64::from(u16::from_be_bytes(
                self.take(2, what)?.try_into().unwrap_or_default(),
            )),
            26 => u64::from(u32::from_be_bytes(
                self.take(4, what)?.try_into().unwrap_or_default(),
            )),
            27 => u64::from_be_bytes(self.take(8, what)?.try_into().unwrap_or_default()),
            31 => {
                return Err(RaTlsError::Extension(format!(
                    "{what}: indefinite length at byte {start} (only definite lengths are allowed)"
                )))
            }
            _ => {
                return Err(RaTlsError::Extension(format!(
                    "{what}: malformed header at byte {start}"
                )))
            }
        };
        Ok(value)
    }

    pub(crate) fn bytes(&mut self, what: &str) -> Result<&'a [u8], RaTlsError> {
        let n = self.expect(2, what)?;
        let n = usize::try_from(n).map_err(|_| self.fail(what))?;
        self.take(n, what)
    }

    pub(crate) fn text(&mut self, what: &str) -> Result<String, RaTlsError> {
        let n = self.expect(3, what)?;
        let n = usize::try_from(n).map_err(|_| self.fail(what))?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| RaTlsError::Extension(format!("{what}: not UTF-8")))
    }

    pub(crate) fn end(&self, what: &str) -> Result<(), RaTlsError> {
        if self.pos != self.buf.len() {
            return Err(RaTlsError::Extension(format!(
                "{what}: {} bytes after the end",
                self.buf.len() - self.pos
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_round_trips_and_starts_as_the_spec_shows() {
        let ev = vec![7u8; 300];
        let claims = encode_claims(&BTreeMap::from([(
            "pubkey-hash".to_string(),
            pubkey_hash_claim(b"spki"),
        )]));
        let value = encode_evidence(TAG_INTEL_QUOTE, &ev, &claims);
        // d9 ea 60 (tag 60000), 82 (array of 2), 59 01 2c (bstr of 300).
        assert_eq!(&value[..7], &[0xd9, 0xea, 0x60, 0x82, 0x59, 0x01, 0x2c]);
        let t = decode_evidence(&value).unwrap();
        assert_eq!(
            (t.tag, t.evidence, t.claims_buffer),
            (60000, &ev[..], &claims[..])
        );
        let c = decode_claims(t.claims_buffer).unwrap();
        check_pubkey_hash(&c["pubkey-hash"], b"spki").unwrap();
        assert!(matches!(
            check_pubkey_hash(&c["pubkey-hash"], b"other"),
            Err(RaTlsError::KeyMismatch)
        ));
    }

    #[test]
    fn malformed_cbor_is_refused_with_a_reason() {
        let good = encode_evidence(TAG_SIM, b"ev", &encode_claims(&BTreeMap::new()));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "a tag expected"),
            (good[..good.len() - 1].to_vec(), "past the end"),
            ([good.clone(), vec![0]].concat(), "after the end"),
            // An indefinite-length array.
            (vec![0xd9, 0xea, 0x60, 0x9f, 0x40, 0x40, 0xff], "indefinite"),
            // An array of 3.
            (vec![0xd9, 0xea, 0x60, 0x83, 0x40, 0x40, 0x40], "array of 3"),
            // A length that does not fit the buffer.
            (
                vec![
                    0xd9, 0xea, 0x60, 0x82, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
                "past the end",
            ),
        ];
        for (bytes, want) in cases {
            let err = decode_evidence(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{bytes:02x?}: {err}");
        }
        // Claims: duplicates and non-bytes values.
        let dup = [0xa2, 0x61, b'a', 0x40, 0x61, b'a', 0x40];
        assert!(decode_claims(&dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let int_value = [0xa1, 0x61, b'a', 0x01];
        assert!(decode_claims(&int_value).is_err());
    }

    #[test]
    fn every_hash_the_spec_names_is_accepted() {
        for (alg, h) in [
            (HASH_SHA384, sha2::Sha384::digest(b"k").to_vec()),
            (HASH_SHA512, sha2::Sha512::digest(b"k").to_vec()),
        ] {
            let mut claim = Vec::new();
            header(&mut claim, 4, 2);
            header(&mut claim, 0, alg);
            header(&mut claim, 2, h.len() as u64);
            claim.extend_from_slice(&h);
            check_pubkey_hash(&claim, b"k").unwrap();
        }
    }
}
