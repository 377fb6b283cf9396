//! A CoRIM with reference triples, in exactly the shape Trustee's RVPS `corim` extractor
//! reads (`confidential-containers/trustee:rvps/src/extractors/corim/`, on
//! `veraison/corim-rs`; CDDL in `ietf-rats-wg/draft-ietf-rats-corim`):
//!
//! ```text
//! 501({0: id, 1: [506(<< {1: {0: comid-id},
//!     4: {0: [[{0: {1: vendor, 2: model}}, [{0: mkey, 1: {2: [[alg, digest]]}}, …]]]} >>)]})
//! ```
//!
//! Trustee names each value `vendor/model/mkey/digests` (e.g.
//! `inclavare/sim/mr_enclave/digests`) and stores the digests as a list of lowercase hex.
//! [`Corim::to_cbor`] encodes (deterministic: definite lengths, shortest heads, keys in
//! the order above); [`decode`] reads any CoRIM Trustee's extractor reads, signed or not
//! ([`mod@decode`]).

mod decode;

pub use decode::{decode, CorimError, ReferenceValue, MAX_BYTES, VENDOR};

/// IANA "Named Information Hash Algorithm" id of SHA-384 (CoRIM `digests` algorithm).
pub const SHA384: u64 = 7;
/// IANA id of SHA-256.
pub const SHA256: u64 = 1;

/// A CBOR data item (RFC 8949), the subset CoRIM needs.
enum Cbor {
    Uint(u64),
    Text(String),
    Bytes(Vec<u8>),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Tag(u64, Box<Cbor>),
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

impl Cbor {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Cbor::Uint(n) => head(out, 0, *n),
            Cbor::Bytes(b) => {
                head(out, 2, b.len() as u64);
                out.extend_from_slice(b);
            }
            Cbor::Text(t) => {
                head(out, 3, t.len() as u64);
                out.extend_from_slice(t.as_bytes());
            }
            Cbor::Array(items) => {
                head(out, 4, items.len() as u64);
                items.iter().for_each(|i| i.encode(out));
            }
            Cbor::Map(pairs) => {
                head(out, 5, pairs.len() as u64);
                for (k, v) in pairs {
                    k.encode(out);
                    v.encode(out);
                }
            }
            Cbor::Tag(t, inner) => {
                head(out, 6, *t);
                inner.encode(out);
            }
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.to_string())
}

/// One measurement: `mkey` with its digests (`[algorithm id, bytes]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// The measurement key (a text mkey), e.g. `mr_enclave`.
    pub mkey: String,
    /// `(IANA algorithm id, digest)` pairs.
    pub digests: Vec<(u64, Vec<u8>)>,
}

/// An unsigned CoRIM holding one CoMID with one reference triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corim {
    /// corim-map key 0.
    pub id: String,
    /// The CoMID's tag-id.
    pub comid_id: String,
    /// The environment's class vendor, e.g. `inclavare`.
    pub vendor: String,
    /// The environment's class model, e.g. `sim`.
    pub model: String,
    /// The measurements of the environment.
    pub measurements: Vec<Measurement>,
}

impl Corim {
    /// The CBOR bytes: tag 501 (`tagged-unsigned-corim-map`) whose one tag is a 506
    /// (`tagged-concise-mid-tag`) byte string.
    pub fn to_cbor(&self) -> Vec<u8> {
        let measurements = self
            .measurements
            .iter()
            .map(|m| {
                let digests = m
                    .digests
                    .iter()
                    .map(|(alg, d)| Cbor::Array(vec![Cbor::Uint(*alg), Cbor::Bytes(d.clone())]))
                    .collect();
                Cbor::Map(vec![
                    (Cbor::Uint(0), text(&m.mkey)),
                    (
                        Cbor::Uint(1),
                        Cbor::Map(vec![(Cbor::Uint(2), Cbor::Array(digests))]),
                    ),
                ])
            })
            .collect();
        let environment = Cbor::Map(vec![(
            Cbor::Uint(0),
            Cbor::Map(vec![
                (Cbor::Uint(1), text(&self.vendor)),
                (Cbor::Uint(2), text(&self.model)),
            ]),
        )]);
        let triple = Cbor::Array(vec![environment, Cbor::Array(measurements)]);
        let comid = Cbor::Map(vec![
            (
                Cbor::Uint(1),
                Cbor::Map(vec![(Cbor::Uint(0), text(&self.comid_id))]),
            ),
            (
                Cbor::Uint(4),
                Cbor::Map(vec![(Cbor::Uint(0), Cbor::Array(vec![triple]))]),
            ),
        ]);
        Cbor::Tag(
            501,
            Box::new(Cbor::Map(vec![
                (Cbor::Uint(0), text(&self.id)),
                (
                    Cbor::Uint(1),
                    Cbor::Array(vec![Cbor::Tag(506, Box::new(Cbor::Bytes(comid.to_vec())))]),
                ),
            ])),
        )
        .to_vec()
    }

    /// The ids Trustee's extractor stores these values under: `vendor/model/mkey/digests`.
    pub fn trustee_ids(&self) -> Vec<String> {
        self.measurements
            .iter()
            .map(|m| format!("{}/{}/{}/digests", self.vendor, self.model, m.mkey))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// measurement.md §3.3 "Minimal accepted CoRIM" (129 bytes), checked there by
    /// parsing it with corim-rs at Trustee's pinned revision: id
    /// `inclavare/sim/mr_enclave/digests`, SHA-384 of `example enclave`.
    #[test]
    fn encodes_the_reference_corim_byte_for_byte() {
        let expected = "d901f5a2006772762d64656d6f0181d901fa586da201a1006a636f6d69642d64656d6f04a1008182a100a20169696e636c617661726502\
6373696d81a2006a6d725f656e636c61766501a1028182075830e005e6b57c26738aac651f41f724a83fc9dd922b2fff16416226f4ee5c\
fb261324656b2f6706fcb571bfab4bcf210f62";
        use sha2::Digest as _;
        let digest = sha2::Sha384::digest(b"example enclave").to_vec();
        let c = Corim {
            id: "rv-demo".into(),
            comid_id: "comid-demo".into(),
            vendor: "inclavare".into(),
            model: "sim".into(),
            measurements: vec![Measurement {
                mkey: "mr_enclave".into(),
                digests: vec![(SHA384, digest)],
            }],
        };
        let bytes = c.to_cbor();
        assert_eq!(bytes.len(), 129);
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(c.trustee_ids(), ["inclavare/sim/mr_enclave/digests"]);
    }

    /// What `shelter rv bundle` writes reads back as the `sample` form names it (the
    /// decoder's expected values come from elsewhere: `tests/corim.rs`).
    #[test]
    fn what_we_encode_decodes_to_the_sample_names() {
        let c = Corim {
            id: "rv".into(),
            comid_id: "sha256:00".into(),
            vendor: VENDOR.into(),
            model: "sim".into(),
            measurements: ["mr_enclave", "mr_signer"]
                .iter()
                .map(|k| Measurement {
                    mkey: k.to_string(),
                    digests: vec![(SHA384, vec![0x5a; 48])],
                })
                .collect(),
        };
        let got: Vec<_> = decode(&c.to_cbor())
            .unwrap()
            .into_iter()
            .map(|v| (v.id, v.sample_name.unwrap(), v.value))
            .collect();
        let value = serde_json::json!(["5a".repeat(48)]);
        assert_eq!(
            got,
            [
                (
                    c.trustee_ids()[0].clone(),
                    "sim_mr_enclave".into(),
                    value.clone()
                ),
                (c.trustee_ids()[1].clone(), "sim_mr_signer".into(), value),
            ]
        );
    }

    #[test]
    fn heads_are_shortest() {
        for (n, want) in [
            (0u64, "00"),
            (23, "17"),
            (24, "1818"),
            (255, "18ff"),
            (256, "190100"),
            (65536, "1a00010000"),
            (1 << 32, "1b0000000100000000"),
        ] {
            assert_eq!(hex::encode(Cbor::Uint(n).to_vec()), want, "{n}");
        }
    }
}
