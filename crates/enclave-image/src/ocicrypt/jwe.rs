//! JWE recipients of `org.opencontainers.image.enc.keys.jwe` (containers/ocicrypt:
//! keywrap/jwe/keywrapper_jwe.go, RFC 7516/7518, §1.6): the JSON serialisation,
//! flattened (skopeo with one recipient) or general with `recipients[]` (skopeo with
//! several, which also writes a top-level `encrypted_key`), whose plaintext is the
//! private options JSON.
//!
//! Key management: `RSA-OAEP` (SHA-1), `RSA-OAEP-256`, `ECDH-ES+A128KW`, `+A192KW`,
//! `+A256KW` on P-256, P-384 and P-521. Content: `A128GCM`, `A192GCM`, `A256GCM` (what
//! ocicrypt writes); the CBC-HMAC `enc` values are not implemented.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::Error;

type Aes192Gcm = AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

/// A recipient's private key for JWE-wrapped layer keys: RSA, or EC on P-256, P-384
/// or P-521. `Debug` shows the kind only.
pub struct PrivateKey(Inner);

enum Inner {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    P521(p521::SecretKey),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.kind())
    }
}

impl PrivateKey {
    /// Reads a private key as ocicrypt's `--decryption-key` files hold it: PEM
    /// (`RSA PRIVATE KEY`, `EC PRIVATE KEY`, `PRIVATE KEY`; other blocks such as
    /// `EC PARAMETERS` are skipped) or DER (PKCS#8, PKCS#1 or SEC1).
    ///
    /// Errors: [`Error::PrivateKey`] for encrypted PKCS#8, other algorithms or curves,
    /// and bytes that are none of these.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<PrivateKey, Error> {
        let text = std::str::from_utf8(bytes)
            .ok()
            .filter(|t| t.contains("-----BEGIN "));
        let Some(text) = text else {
            return Self::from_der(bytes);
        };
        let mut rest = text;
        while let Some(at) = rest.find("-----BEGIN ") {
            let block = &rest[at..];
            let Some(end) = block.find("-----END ") else {
                break;
            };
            let close = block[end + 9..]
                .find("-----")
                .map(|i| end + 9 + i + 5)
                .unwrap_or(block.len());
            let (label, der) = pem_rfc7468::decode_vec(&block.as_bytes()[..close])
                .map_err(|e| Error::PrivateKey(format!("PEM: {e}")))?;
            let der = Zeroizing::new(der);
            match label {
                "RSA PRIVATE KEY" => return Self::rsa(RsaPrivateKey::from_pkcs1_der(&der).ok()),
                "EC PRIVATE KEY" => return Self::from_sec1(&der),
                "PRIVATE KEY" => return Self::from_pkcs8(&der),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(Error::PrivateKey(
                        "encrypted PKCS#8 is not supported (decrypt it first)".into(),
                    ))
                }
                _ => rest = &block[close..],
            }
        }
        Err(Error::PrivateKey(
            "no RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY PEM block".into(),
        ))
    }

    fn rsa(key: Option<RsaPrivateKey>) -> Result<PrivateKey, Error> {
        key.map(|k| PrivateKey(Inner::Rsa(Box::new(k))))
            .ok_or_else(|| Error::PrivateKey("not a valid RSA private key".into()))
    }

    fn from_der(der: &[u8]) -> Result<PrivateKey, Error> {
        Self::from_pkcs8(der)
            .or_else(|_| Self::rsa(RsaPrivateKey::from_pkcs1_der(der).ok()))
            .or_else(|_| Self::from_sec1(der))
            .map_err(|_| Error::PrivateKey("neither PEM nor PKCS#8, PKCS#1 or SEC1 DER".into()))
    }

    fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, Error> {
        if let Ok(k) = RsaPrivateKey::from_pkcs8_der(der) {
            return Ok(PrivateKey(Inner::Rsa(Box::new(k))));
        }
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            return Ok(PrivateKey(Inner::P256(k)));
        }
        if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
            return Ok(PrivateKey(Inner::P384(k)));
        }
        if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
            return Ok(PrivateKey(Inner::P521(k)));
        }
        Err(Error::PrivateKey(
            "PKCS#8 key is not RSA or EC on P-256, P-384 or P-521".into(),
        ))
    }

    fn from_sec1(der: &[u8]) -> Result<PrivateKey, Error> {
        if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
            return Ok(PrivateKey(Inner::P256(k)));
        }
        if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
            return Ok(PrivateKey(Inner::P384(k)));
        }
        if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
            return Ok(PrivateKey(Inner::P521(k)));
        }
        Err(Error::PrivateKey(
            "SEC1 key is not on P-256, P-384 or P-521".into(),
        ))
    }

    /// `RSA-<bits>`, `P-256`, `P-384` or `P-521`.
    pub fn kind(&self) -> String {
        match &self.0 {
            Inner::Rsa(k) => format!("RSA-{}", k.size() * 8),
            Inner::P256(_) => "P-256".into(),
            Inner::P384(_) => "P-384".into(),
            Inner::P521(_) => "P-521".into(),
        }
    }

    fn curve(&self) -> Option<&'static str> {
        match &self.0 {
            Inner::Rsa(_) => None,
            Inner::P256(_) => Some("P-256"),
            Inner::P384(_) => Some("P-384"),
            Inner::P521(_) => Some("P-521"),
        }
    }

    /// ECDH with `epk` (SEC1 uncompressed), the raw shared secret; `None` if the point
    /// is not on this key's curve.
    fn agree(&self, epk: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        macro_rules! ecdh {
            ($c:ident, $k:expr) => {{
                let p = $c::PublicKey::from_sec1_bytes(epk).ok()?;
                let z = $c::ecdh::diffie_hellman($k.to_nonzero_scalar(), p.as_affine());
                Some(Zeroizing::new(z.raw_secret_bytes().to_vec()))
            }};
        }
        match &self.0 {
            Inner::Rsa(_) => None,
            Inner::P256(k) => ecdh!(p256, k),
            Inner::P384(k) => ecdh!(p384, k),
            Inner::P521(k) => ecdh!(p521, k),
        }
    }
}

type Header = BTreeMap<String, Value>;

/// The JWE JSON serialisation, both shapes (RFC 7516 §7.2).
#[derive(Deserialize)]
struct JweJson {
    protected: Option<String>,
    unprotected: Option<BTreeMap<String, Value>>,
    header: Option<BTreeMap<String, Value>>,
    encrypted_key: Option<String>,
    recipients: Option<Vec<RecipientJson>>,
    aad: Option<String>,
    iv: String,
    ciphertext: String,
    tag: String,
}

#[derive(Deserialize)]
struct RecipientJson {
    header: Option<BTreeMap<String, Value>>,
    encrypted_key: Option<String>,
}

fn b64url(s: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("{what} is not base64url"))
}

/// One recipient's view: its merged header and encrypted key.
struct Recipient {
    header: BTreeMap<String, Value>,
    encrypted_key: Vec<u8>,
}

impl Recipient {
    fn get(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// `alg A[, kid K][, epk CURVE]`, for error messages.
    fn describe(&self) -> String {
        let mut s = format!("alg {}", self.get("alg").unwrap_or("(none)"));
        if let Some(kid) = self.get("kid") {
            s.push_str(&format!(", kid {kid:?}"));
        }
        if let Some(crv) = self
            .header
            .get("epk")
            .and_then(|e| e.get("crv"))
            .and_then(Value::as_str)
        {
            s.push_str(&format!(", epk {crv}"));
        }
        s
    }
}

/// A parsed JWE, ready to be tried with keys.
pub(super) struct Jwe {
    recipients: Vec<Recipient>,
    enc: String,
    aad: Vec<u8>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

impl Jwe {
    /// Parses the JSON (the annotation entry, already std-base64-decoded).
    pub(super) fn parse(json: &[u8]) -> Result<Jwe, String> {
        let j: JweJson = serde_json::from_slice(json).map_err(|e| format!("not JWE JSON: {e}"))?;
        let mut shared = BTreeMap::new();
        if let Some(p) = &j.protected {
            let bytes = b64url(p, "protected")?;
            let h: BTreeMap<String, Value> = serde_json::from_slice(&bytes)
                .map_err(|_| "protected header is not a JSON object".to_string())?;
            shared.extend(h);
        }
        for (k, v) in j.unprotected.iter().flatten() {
            if shared.insert(k.clone(), v.clone()).is_some() {
                return Err(format!("header parameter {k:?} appears twice"));
            }
        }
        let mut recipients = Vec::new();
        // The general form wins; skopeo's extra top-level encrypted_key repeats the
        // first recipient's.
        let listed: Vec<(Option<&Header>, Option<&String>)> = match &j.recipients {
            Some(r) if !r.is_empty() => r
                .iter()
                .map(|r| (r.header.as_ref(), r.encrypted_key.as_ref()))
                .collect(),
            _ => vec![(j.header.as_ref(), j.encrypted_key.as_ref())],
        };
        for (header, key) in listed {
            let mut merged = shared.clone();
            for (k, v) in header.into_iter().flatten() {
                if merged.insert(k.clone(), v.clone()).is_some() {
                    return Err(format!("header parameter {k:?} appears twice"));
                }
            }
            let encrypted_key = b64url(key.map_or("", |s| s.as_str()), "encrypted_key")?;
            recipients.push(Recipient {
                header: merged,
                encrypted_key,
            });
        }
        let enc = recipients[0]
            .get("enc")
            .ok_or("no \"enc\" header parameter")?
            .to_string();
        for r in &recipients {
            if r.get("enc") != Some(enc.as_str()) {
                return Err("recipients disagree on \"enc\"".into());
            }
            if r.header.contains_key("zip") || r.header.contains_key("crit") {
                return Err("\"zip\" and \"crit\" are not supported".into());
            }
        }
        // RFC 7516 §5.1 step 14: ASCII(BASE64URL(protected)) [ '.' BASE64URL(aad) ].
        let mut aad = j.protected.clone().unwrap_or_default().into_bytes();
        if let Some(extra) = &j.aad {
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        Ok(Jwe {
            recipients,
            enc,
            aad,
            iv: b64url(&j.iv, "iv")?,
            ciphertext: b64url(&j.ciphertext, "ciphertext")?,
            tag: b64url(&j.tag, "tag")?,
        })
    }

    /// One line per recipient: `recipient[i] (alg …)`.
    pub(super) fn describe(&self) -> Vec<String> {
        self.recipients
            .iter()
            .enumerate()
            .map(|(i, r)| format!("recipient[{i}] ({})", r.describe()))
            .collect()
    }

    /// Tries every recipient with every key of the matching kind. Ok: the plaintext;
    /// Err: one reason per recipient (and whether any key was even applicable).
    pub(super) fn decrypt(
        &self,
        keys: &[PrivateKey],
    ) -> Result<Zeroizing<Vec<u8>>, (bool, Vec<String>)> {
        let mut reasons = Vec::new();
        let mut any_tried = false;
        for (i, r) in self.recipients.iter().enumerate() {
            let why = match self.recipient_cek(r, keys) {
                Ok(cek) => match self.open(&cek) {
                    Ok(plain) => return Ok(plain),
                    Err(e) => {
                        any_tried = true;
                        e
                    }
                },
                Err((tried, e)) => {
                    any_tried |= tried;
                    e
                }
            };
            reasons.push(format!("recipient[{i}] ({}): {why}", r.describe()));
        }
        Err((any_tried, reasons))
    }

    /// The content key for recipient `r`: Err((a key of the right kind existed, why)).
    fn recipient_cek(
        &self,
        r: &Recipient,
        keys: &[PrivateKey],
    ) -> Result<Zeroizing<Vec<u8>>, (bool, String)> {
        let alg = r.get("alg").ok_or((false, "no \"alg\"".to_string()))?;
        match alg {
            "RSA-OAEP" | "RSA-OAEP-256" => {
                let rsa: Vec<&RsaPrivateKey> = keys
                    .iter()
                    .filter_map(|k| match &k.0 {
                        Inner::Rsa(k) => Some(&**k),
                        _ => None,
                    })
                    .collect();
                if rsa.is_empty() {
                    return Err((false, "no RSA private key configured".into()));
                }
                for k in &rsa {
                    let out = if alg == "RSA-OAEP" {
                        k.decrypt(Oaep::new::<sha1::Sha1>(), &r.encrypted_key)
                    } else {
                        k.decrypt(Oaep::new::<sha2::Sha256>(), &r.encrypted_key)
                    };
                    if let Ok(cek) = out {
                        return Ok(Zeroizing::new(cek));
                    }
                }
                Err((
                    true,
                    format!(
                        "wrong key: {alg} decryption failed with each of the {} RSA key(s)",
                        rsa.len()
                    ),
                ))
            }
            "ECDH-ES+A128KW" | "ECDH-ES+A192KW" | "ECDH-ES+A256KW" => {
                let epk = r
                    .header
                    .get("epk")
                    .ok_or((false, "no \"epk\"".to_string()))?;
                let field = |n: &str| epk.get(n).and_then(Value::as_str);
                let (Some(crv), Some(x), Some(y)) = (field("crv"), field("x"), field("y")) else {
                    return Err((false, "epk is not an EC JWK".into()));
                };
                let on_curve: Vec<&PrivateKey> =
                    keys.iter().filter(|k| k.curve() == Some(crv)).collect();
                if on_curve.is_empty() {
                    return Err((false, format!("no {crv} private key configured")));
                }
                let x = b64url(x, "epk x").map_err(|e| (false, e))?;
                let y = b64url(y, "epk y").map_err(|e| (false, e))?;
                let point = [&[4u8][..], &x, &y].concat();
                let apu = r
                    .get("apu")
                    .map(|s| b64url(s, "apu"))
                    .transpose()
                    .map_err(|e| (false, e))?;
                let apv = r
                    .get("apv")
                    .map(|s| b64url(s, "apv"))
                    .transpose()
                    .map_err(|e| (false, e))?;
                let kw_len = match alg {
                    "ECDH-ES+A128KW" => 16,
                    "ECDH-ES+A192KW" => 24,
                    _ => 32,
                };
                for k in on_curve {
                    let z = k
                        .agree(&point)
                        .ok_or((false, format!("epk is not a point on {crv}")))?;
                    let mut kek = Zeroizing::new(vec![0u8; kw_len]);
                    kbs_protocol::jwe::concat_kdf(
                        &z,
                        alg,
                        apu.as_deref().unwrap_or_default(),
                        apv.as_deref().unwrap_or_default(),
                        &mut kek,
                    )
                    .map_err(|e| (true, e.to_string()))?;
                    let cek = match kw_len {
                        16 => aes_kw::KekAes128::try_from(kek.as_slice())
                            .ok()
                            .and_then(|w| w.unwrap_vec(&r.encrypted_key).ok()),
                        24 => aes_kw::KekAes192::try_from(kek.as_slice())
                            .ok()
                            .and_then(|w| w.unwrap_vec(&r.encrypted_key).ok()),
                        _ => aes_kw::KekAes256::try_from(kek.as_slice())
                            .ok()
                            .and_then(|w| w.unwrap_vec(&r.encrypted_key).ok()),
                    };
                    if let Some(cek) = cek {
                        return Ok(Zeroizing::new(cek));
                    }
                }
                Err((
                    true,
                    format!("wrong key: AES key unwrap failed with each {crv} key"),
                ))
            }
            other => Err((false, format!("unsupported alg {other:?}"))),
        }
    }

    fn open(&self, cek: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let want = match self.enc.as_str() {
            "A128GCM" => 16,
            "A192GCM" => 24,
            "A256GCM" => 32,
            other => return Err(format!("unsupported enc {other:?}")),
        };
        if cek.len() != want {
            return Err(format!(
                "content key is {} bytes, {} needs {want}",
                cek.len(),
                self.enc
            ));
        }
        if self.iv.len() != 12 || self.tag.len() != 16 {
            return Err("GCM iv must be 12 bytes and tag 16".into());
        }
        let mut buf = Zeroizing::new(self.ciphertext.clone());
        let (nonce, tag) = (Nonce::from_slice(&self.iv), Tag::from_slice(&self.tag));
        let r = match want {
            16 => Aes128Gcm::new(cek.into())
                .decrypt_in_place_detached(nonce, &self.aad, &mut buf, tag),
            24 => Aes192Gcm::new(cek.into())
                .decrypt_in_place_detached(nonce, &self.aad, &mut buf, tag),
            _ => Aes256Gcm::new(cek.into())
                .decrypt_in_place_detached(nonce, &self.aad, &mut buf, tag),
        };
        r.map_err(|_| format!("{} tag mismatch (content altered)", self.enc))?;
        Ok(buf)
    }
}
