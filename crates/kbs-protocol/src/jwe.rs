//! The resource reply: a flattened JWE (RFC 7516) whose content is encrypted with
//! `A256GCM` under a random key, itself encrypted to the TEE's public key.
//!
//! Every field is base64url without padding and `aad` is absent. The GCM additional
//! data is the base64url of the protected header's compact JSON in the order
//! `{"alg","enc","epk":{"crv","kty","x","y"}}`: the stock guest re-serialises the
//! header to compute it, so another order would fail its tag check.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Oaep, Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::{ProtectedHeader, ProtocolError, Response, TeePubKey};

pub const A256GCM: &str = "A256GCM";
pub const ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
pub const RSA_OAEP_256: &str = "RSA-OAEP-256";
pub const RSA1_5: &str = "RSA1_5";

/// The curves `ECDH-ES+A256KW` is offered on: P-256 (the stock guest's) and P-521.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P521,
}

impl Curve {
    /// The JWK `crv`.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P521 => "P-521",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P521 => 66,
        }
    }
}

/// A validated public point, SEC1 uncompressed (`04 ‖ x ‖ y`).
struct EcPoint {
    curve: Curve,
    sec1: Vec<u8>,
}

impl EcPoint {
    fn parse(crv: &str, x: &str, y: &str) -> Result<EcPoint, ProtocolError> {
        let curve = match crv {
            "P-256" => Curve::P256,
            "P-521" => Curve::P521,
            other => {
                return Err(ProtocolError::Unsupported(format!(
                    "curve {other:?} (P-256 and P-521 are supported)"
                )))
            }
        };
        let (x, y) = (b64(x, "x")?, b64(y, "y")?);
        let n = curve.coordinate_len();
        if x.len() != n || y.len() != n {
            return Err(ProtocolError::Malformed(format!(
                "{} coordinates must be {n} bytes",
                curve.name()
            )));
        }
        let sec1 = [&[4u8][..], &x, &y].concat();
        let on_curve = match curve {
            Curve::P256 => p256::PublicKey::from_sec1_bytes(&sec1).is_ok(),
            Curve::P521 => p521::PublicKey::from_sec1_bytes(&sec1).is_ok(),
        };
        if !on_curve {
            return Err(ProtocolError::Malformed(format!(
                "the EC point is not on {}",
                curve.name()
            )));
        }
        Ok(EcPoint { curve, sec1 })
    }

    /// The JWK members `crv, kty, x, y` (sorted, as serde_json's map keeps them).
    fn jwk(&self) -> Value {
        let n = self.curve.coordinate_len();
        json!({
            "crv": self.curve.name(),
            "kty": "EC",
            "x": URL_SAFE_NO_PAD.encode(&self.sec1[1..1 + n]),
            "y": URL_SAFE_NO_PAD.encode(&self.sec1[1 + n..]),
        })
    }
}

/// A `tee-pubkey` ready for key management.
enum Recipient {
    Ec(EcPoint),
    Rsa(RsaPublicKey, &'static str),
}

fn recipient(key: &TeePubKey) -> Result<Recipient, ProtocolError> {
    match key {
        TeePubKey::EC { crv, alg, x, y } if alg == ECDH_ES_A256KW => {
            Ok(Recipient::Ec(EcPoint::parse(crv, x, y)?))
        }
        TeePubKey::RSA { alg, k_mod, k_exp } if alg == RSA_OAEP_256 || alg == RSA1_5 => {
            let n = BigUint::from_bytes_be(&b64(k_mod, "n")?);
            let e = BigUint::from_bytes_be(&b64(k_exp, "e")?);
            let key = RsaPublicKey::new(n, e)
                .map_err(|e| ProtocolError::Malformed(format!("RSA tee-pubkey: {e}")))?;
            let alg = if alg == RSA_OAEP_256 {
                RSA_OAEP_256
            } else {
                RSA1_5
            };
            Ok(Recipient::Rsa(key, alg))
        }
        TeePubKey::EC { alg, .. } => Err(ProtocolError::Unsupported(format!(
            "EC key algorithm {alg:?} (expected {ECDH_ES_A256KW})"
        ))),
        TeePubKey::RSA { alg, .. } => Err(ProtocolError::Unsupported(format!(
            "RSA key algorithm {alg:?} (expected {RSA_OAEP_256} or {RSA1_5})"
        ))),
        TeePubKey::AKP { alg, .. } => Err(ProtocolError::Unsupported(format!(
            "AKP key algorithm {alg:?}"
        ))),
    }
}

/// ECDH with a fresh ephemeral key: (the ephemeral public point, the KEK).
fn ephemeral_agreement(peer: &EcPoint) -> Result<(EcPoint, Zeroizing<[u8; 32]>), ProtocolError> {
    match peer.curve {
        Curve::P256 => {
            // ring: its table-driven P-256 is several times faster than RustCrypto's,
            // and this runs on every resource request.
            use ring::agreement;
            let rng = ring::rand::SystemRandom::new();
            let fail = |what: &str| ProtocolError::Encrypt(format!("ECDH: {what}"));
            let mine = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
                .map_err(|_| fail("key generation"))?;
            let epk = mine
                .compute_public_key()
                .map_err(|_| fail("public key"))?
                .as_ref()
                .to_vec();
            let kek = agreement::agree_ephemeral(
                mine,
                &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &peer.sec1),
                kek,
            )
            .map_err(|_| fail("agreement"))??;
            Ok((
                EcPoint {
                    curve: Curve::P256,
                    sec1: epk,
                },
                kek,
            ))
        }
        Curve::P521 => {
            let theirs = p521::PublicKey::from_sec1_bytes(&peer.sec1)
                .map_err(|_| ProtocolError::Encrypt("P-521 point".into()))?;
            let mine = p521::ecdh::EphemeralSecret::random(&mut OsRng);
            let shared = mine.diffie_hellman(&theirs);
            let epk = mine
                .public_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec();
            Ok((
                EcPoint {
                    curve: Curve::P521,
                    sec1: epk,
                },
                kek(shared.raw_secret_bytes())?,
            ))
        }
    }
}

/// Checks that secrets can be encrypted to `key` (a supported algorithm, a valid
/// point or modulus) without encrypting anything.
pub fn check_key(key: &TeePubKey) -> Result<(), ProtocolError> {
    recipient(key).map(|_| ())
}

/// Encrypts `plaintext` to the TEE key the evidence was bound to.
pub fn encrypt(to: &TeePubKey, plaintext: &[u8]) -> Result<Response, ProtocolError> {
    let mut cek = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(cek.as_mut());
    let (alg, encrypted_key, other_fields) = match recipient(to)? {
        Recipient::Ec(peer) => {
            let (epk, kek) = ephemeral_agreement(&peer)?;
            let wrapped = aes_kw::KekAes256::from(*kek)
                .wrap_vec(cek.as_ref())
                .map_err(|e| ProtocolError::Encrypt(format!("key wrap: {e}")))?;
            let mut other = Map::new();
            other.insert("epk".into(), epk.jwk());
            (ECDH_ES_A256KW, wrapped, other)
        }
        Recipient::Rsa(key, alg) => {
            let wrapped = if alg == RSA_OAEP_256 {
                key.encrypt(&mut OsRng, Oaep::new::<sha2::Sha256>(), cek.as_ref())
            } else {
                key.encrypt(&mut OsRng, Pkcs1v15Encrypt, cek.as_ref())
            }
            .map_err(|e| ProtocolError::Encrypt(format!("RSA: {e}")))?;
            (alg, wrapped, Map::new())
        }
    };
    let protected = ProtectedHeader {
        alg: alg.into(),
        enc: A256GCM.into(),
        other_fields,
    };
    let aad = protected
        .generate_aad()
        .map_err(|_| ProtocolError::Encrypt("protected header".into()))?;
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let mut ciphertext = plaintext.to_vec();
    let tag = Aes256Gcm::new(cek.as_ref().into())
        .encrypt_in_place_detached(Nonce::from_slice(&iv), &aad, &mut ciphertext)
        .map_err(|_| ProtocolError::Encrypt("AES-GCM".into()))?;
    Ok(Response {
        protected,
        encrypted_key,
        aad: None,
        iv: iv.to_vec(),
        ciphertext,
        tag: tag.to_vec(),
    })
}

/// The TEE's key pair: the private half stays in the enclave; the public half travels
/// in the attestation as `tee-pubkey` and is what secrets are encrypted to.
pub enum TeeKeyPair {
    /// P-256, with its public point kept (deriving it is the costly half).
    Ec {
        secret: p256::SecretKey,
        public: p256::PublicKey,
    },
    P521(Box<p521::SecretKey>),
    Rsa {
        key: Box<RsaPrivateKey>,
        /// `RSA-OAEP-256` or `RSA1_5`.
        alg: &'static str,
    },
}

impl TeeKeyPair {
    /// A fresh P-256 key (the stock client's default).
    pub fn generate() -> TeeKeyPair {
        let from_ring = p256_from_ring();
        let (secret, public) = from_ring.unwrap_or_else(|| {
            let secret = p256::SecretKey::random(&mut OsRng);
            let public = secret.public_key();
            (secret, public)
        });
        TeeKeyPair::Ec { secret, public }
    }

    /// A fresh P-521 key.
    pub fn generate_p521() -> TeeKeyPair {
        TeeKeyPair::P521(Box::new(p521::SecretKey::random(&mut OsRng)))
    }

    /// An RSA key (as `--tee-key-file` gives the stock client), used with `alg`.
    pub fn rsa(key: RsaPrivateKey, oaep: bool) -> TeeKeyPair {
        TeeKeyPair::Rsa {
            key: Box::new(key),
            alg: if oaep { RSA_OAEP_256 } else { RSA1_5 },
        }
    }

    /// The JWK sent as `tee-pubkey`.
    pub fn public_key(&self) -> TeePubKey {
        match self {
            TeeKeyPair::Ec { public, .. } => {
                let p = public.to_encoded_point(false);
                TeePubKey::EC {
                    crv: Curve::P256.name().into(),
                    alg: ECDH_ES_A256KW.into(),
                    x: URL_SAFE_NO_PAD.encode(p.x().expect("uncompressed point")),
                    y: URL_SAFE_NO_PAD.encode(p.y().expect("uncompressed point")),
                }
            }
            TeeKeyPair::P521(k) => {
                let p = k.public_key().to_encoded_point(false);
                TeePubKey::EC {
                    crv: Curve::P521.name().into(),
                    alg: ECDH_ES_A256KW.into(),
                    x: URL_SAFE_NO_PAD.encode(p.x().expect("uncompressed point")),
                    y: URL_SAFE_NO_PAD.encode(p.y().expect("uncompressed point")),
                }
            }
            TeeKeyPair::Rsa { key, alg } => TeePubKey::RSA {
                alg: (*alg).into(),
                k_mod: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                k_exp: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            },
        }
    }

    /// Decrypts a resource reply. The additional data is recomputed from the parsed
    /// header, as the stock guest does, so a reply it would refuse is refused here.
    pub fn decrypt(&self, r: &Response) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
        if r.protected.enc != A256GCM {
            return Err(ProtocolError::Unsupported(format!(
                "content encryption {:?} (expected {A256GCM})",
                r.protected.enc
            )));
        }
        if r.iv.len() != 12 || r.tag.len() != 16 {
            return Err(ProtocolError::Malformed(format!(
                "iv of {} bytes and tag of {} (expected 12 and 16)",
                r.iv.len(),
                r.tag.len()
            )));
        }
        let cek: Zeroizing<Vec<u8>> = match (self, r.protected.alg.as_str()) {
            (TeeKeyPair::Ec { .. } | TeeKeyPair::P521(_), ECDH_ES_A256KW) => {
                let epk = r
                    .protected
                    .other_fields
                    .get("epk")
                    .ok_or_else(|| ProtocolError::Malformed("no epk in the header".into()))?;
                let field = |name: &str| -> Result<&str, ProtocolError> {
                    epk.get(name).and_then(Value::as_str).ok_or_else(|| {
                        ProtocolError::Malformed(format!("epk has no string {name:?}"))
                    })
                };
                let peer = EcPoint::parse(field("crv")?, field("x")?, field("y")?)?;
                let kek = match (self, peer.curve) {
                    (TeeKeyPair::Ec { secret, .. }, Curve::P256) => {
                        let p = p256::PublicKey::from_sec1_bytes(&peer.sec1)
                            .map_err(|_| ProtocolError::Malformed("epk".into()))?;
                        let shared =
                            p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), p.as_affine());
                        kek(shared.raw_secret_bytes())?
                    }
                    (TeeKeyPair::P521(secret), Curve::P521) => {
                        let p = p521::PublicKey::from_sec1_bytes(&peer.sec1)
                            .map_err(|_| ProtocolError::Malformed("epk".into()))?;
                        let shared =
                            p521::ecdh::diffie_hellman(secret.to_nonzero_scalar(), p.as_affine());
                        kek(shared.raw_secret_bytes())?
                    }
                    (_, curve) => {
                        return Err(ProtocolError::Malformed(format!(
                            "epk is on {}, not on this key's curve",
                            curve.name()
                        )))
                    }
                };
                Zeroizing::new(
                    aes_kw::KekAes256::from(*kek)
                        .unwrap_vec(&r.encrypted_key)
                        .map_err(|e| ProtocolError::Decrypt(format!("key unwrap: {e}")))?,
                )
            }
            (TeeKeyPair::Rsa { key, alg }, found) if *alg == found => Zeroizing::new(
                match found {
                    RSA_OAEP_256 => key.decrypt(Oaep::new::<sha2::Sha256>(), &r.encrypted_key),
                    _ => key.decrypt(Pkcs1v15Encrypt, &r.encrypted_key),
                }
                .map_err(|e| ProtocolError::Decrypt(format!("RSA: {e}")))?,
            ),
            (_, found) => {
                return Err(ProtocolError::Unsupported(format!(
                    "key management {found:?} for this key"
                )))
            }
        };
        if cek.len() != 32 {
            return Err(ProtocolError::Decrypt(format!(
                "content key of {} bytes (expected 32)",
                cek.len()
            )));
        }
        let aad = r
            .protected
            .generate_aad()
            .map_err(|_| ProtocolError::Malformed("protected header".into()))?;
        let mut plaintext = Zeroizing::new(r.ciphertext.clone());
        Aes256Gcm::new(cek.as_slice().into())
            .decrypt_in_place_detached(
                Nonce::from_slice(&r.iv),
                &aad,
                &mut plaintext,
                Tag::from_slice(&r.tag),
            )
            .map_err(|_| {
                ProtocolError::Decrypt("AES-GCM tag mismatch (tampered or not for this key)".into())
            })?;
        Ok(plaintext)
    }
}

/// A P-256 key made by ring, and its public point.
fn p256_from_ring() -> Option<(p256::SecretKey, p256::PublicKey)> {
    // ring makes the key and its public point (table-driven, about ten times
    // faster than RustCrypto); both are read out of its PKCS#8 as they are, since
    // RustCrypto's own PKCS#8 decoder would derive the point again to check it.
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).ok()?;
    let info = pkcs8::PrivateKeyInfo::try_from(doc.as_ref()).ok()?;
    let ec = sec1::EcPrivateKey::try_from(info.private_key).ok()?;
    let secret = p256::SecretKey::from_slice(ec.private_key).ok()?;
    let public = p256::PublicKey::from_sec1_bytes(ec.public_key?).ok()?;
    Some((secret, public))
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, ProtocolError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| ProtocolError::Malformed(format!("{what} is not base64url: {e}")))
}

/// The key-encryption key for `ECDH-ES+A256KW`: the Concat KDF of RFC 7518 §4.6.2 with
/// SHA-256, AlgorithmID = "ECDH-ES+A256KW", empty PartyU and PartyV, 256 bits.
fn kek(z: &[u8]) -> Result<Zeroizing<[u8; 32]>, ProtocolError> {
    let mut out = Zeroizing::new([0u8; 32]);
    concat_kdf(z, ECDH_ES_A256KW, b"", b"", out.as_mut())?;
    Ok(out)
}

/// The Concat KDF of RFC 7518 §4.6.2 (NIST SP 800-56A, SHA-256): derives `out.len()`
/// bytes from the shared secret `z` for algorithm `alg` (the `enc` for direct ECDH-ES,
/// else the `alg` such as `ECDH-ES+A128KW`), with the decoded `apu` and `apv`.
/// Also used for ocicrypt's JWE recipients (`enclave-image`).
pub fn concat_kdf(
    z: &[u8],
    alg: &str,
    apu: &[u8],
    apv: &[u8],
    out: &mut [u8],
) -> Result<(), ProtocolError> {
    let mut info = Vec::with_capacity(16 + alg.len() + apu.len() + apv.len());
    for field in [alg.as_bytes(), apu, apv] {
        info.extend_from_slice(&(field.len() as u32).to_be_bytes());
        info.extend_from_slice(field);
    }
    info.extend_from_slice(&((out.len() * 8) as u32).to_be_bytes());
    concat_kdf::derive_key_into::<sha2::Sha256>(z, &info, out)
        .map_err(|e| ProtocolError::Encrypt(format!("concat KDF: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7518 Appendix C: ECDH-ES between the RFC's keys, Concat KDF for A128GCM with
    /// PartyU "Alice" and PartyV "Bob", gives VqqN6vgjbSBcIijNcacQGg.
    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        let d = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
        let alice =
            p256::SecretKey::from_slice(&d("0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo")).unwrap();
        let bob = EcPoint::parse(
            "P-256",
            "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
            "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck",
        )
        .unwrap();
        let bob = p256::PublicKey::from_sec1_bytes(&bob.sec1).unwrap();
        let z = p256::ecdh::diffie_hellman(alice.to_nonzero_scalar(), bob.as_affine());
        let mut key = [0u8; 16];
        concat_kdf(z.raw_secret_bytes(), "A128GCM", b"Alice", b"Bob", &mut key).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(key), "VqqN6vgjbSBcIijNcacQGg");
    }

    #[test]
    fn ec_round_trip_and_header_order() {
        let pair = TeeKeyPair::generate();
        let r = encrypt(&pair.public_key(), b"a secret").unwrap();
        assert_eq!(r.encrypted_key.len(), 40);
        let wire = serde_json::to_value(&r).unwrap();
        let header = URL_SAFE_NO_PAD
            .decode(wire["protected"].as_str().unwrap())
            .unwrap();
        let header = String::from_utf8(header).unwrap();
        assert!(
            header.starts_with(
                r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":""#
            ),
            "{header}"
        );
        assert!(wire.get("aad").is_none());
        // Through the wire and back, as a client sees it.
        let back: Response = serde_json::from_value(wire).unwrap();
        assert_eq!(pair.decrypt(&back).unwrap().as_slice(), b"a secret");
        // Another key cannot read it.
        assert!(TeeKeyPair::generate().decrypt(&back).is_err());
    }

    #[test]
    fn a_generated_p256_key_is_consistent() {
        // ring made the key and its point; RustCrypto derives the same point.
        let (secret, public) = p256_from_ring().expect("ring's PKCS#8 is read");
        assert_eq!(secret.public_key(), public);
    }

    #[test]
    fn p521_round_trips_and_curves_do_not_mix() {
        let pair = TeeKeyPair::generate_p521();
        let TeePubKey::EC { crv, x, .. } = pair.public_key() else {
            panic!("EC expected");
        };
        assert_eq!(
            (crv.as_str(), URL_SAFE_NO_PAD.decode(x).unwrap().len()),
            ("P-521", 66)
        );
        check_key(&pair.public_key()).unwrap();
        let r = encrypt(&pair.public_key(), b"p521 secret").unwrap();
        assert_eq!(r.protected.other_fields["epk"]["crv"], "P-521");
        assert_eq!(pair.decrypt(&r).unwrap().as_slice(), b"p521 secret");
        // A P-256 key is not asked to decrypt to a P-521 epk, nor the reverse.
        let err = TeeKeyPair::generate().decrypt(&r).unwrap_err();
        assert!(err.to_string().contains("curve"), "{err}");
        let r256 = encrypt(&TeeKeyPair::generate().public_key(), b"x").unwrap();
        assert!(pair.decrypt(&r256).is_err());
        // Off the curve.
        let off = TeePubKey::EC {
            crv: "P-521".into(),
            alg: ECDH_ES_A256KW.into(),
            x: URL_SAFE_NO_PAD.encode([1u8; 66]),
            y: URL_SAFE_NO_PAD.encode([1u8; 66]),
        };
        assert!(matches!(check_key(&off), Err(ProtocolError::Malformed(_))));
    }

    #[test]
    fn rsa_round_trips() {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        for oaep in [true, false] {
            let pair = TeeKeyPair::rsa(key.clone(), oaep);
            let r = encrypt(&pair.public_key(), b"rsa secret").unwrap();
            assert_eq!(r.protected.alg, if oaep { RSA_OAEP_256 } else { RSA1_5 });
            assert!(r.protected.other_fields.is_empty());
            assert_eq!(pair.decrypt(&r).unwrap().as_slice(), b"rsa secret");
        }
    }

    #[test]
    fn tampering_is_detected() {
        let pair = TeeKeyPair::generate();
        let good = encrypt(&pair.public_key(), b"payload").unwrap();
        let mut r = good.clone();
        r.ciphertext[0] ^= 1;
        assert!(pair.decrypt(&r).is_err());
        let mut r = good.clone();
        r.tag[3] ^= 1;
        assert!(pair.decrypt(&r).is_err());
        let mut r = good.clone();
        r.encrypted_key[5] ^= 1;
        assert!(pair.decrypt(&r).is_err());
        // A header change alters the additional data.
        let mut r = good.clone();
        r.protected
            .other_fields
            .insert("kid".into(), Value::String("x".into()));
        assert!(pair.decrypt(&r).is_err());
        let mut r = good;
        r.iv.pop();
        assert!(pair.decrypt(&r).is_err());
    }

    #[test]
    fn bad_keys_are_refused() {
        let bad = TeePubKey::EC {
            crv: "P-384".into(),
            alg: ECDH_ES_A256KW.into(),
            x: "AA".into(),
            y: "AA".into(),
        };
        assert!(matches!(
            encrypt(&bad, b"x"),
            Err(ProtocolError::Unsupported(_))
        ));
        let off_curve = TeePubKey::EC {
            crv: "P-256".into(),
            alg: ECDH_ES_A256KW.into(),
            x: URL_SAFE_NO_PAD.encode([1u8; 32]),
            y: URL_SAFE_NO_PAD.encode([1u8; 32]),
        };
        assert!(matches!(
            encrypt(&off_curve, b"x"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            check_key(&off_curve),
            Err(ProtocolError::Malformed(_))
        ));
    }
}
