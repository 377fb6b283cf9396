//! Finding and unwrapping a layer's key from its descriptor's annotations (§1.2,
//! §1.8): each `org.opencontainers.image.enc.keys.*` value is a comma-separated list
//! of std-base64 wraps of the same private options; they are tried in order (JWE
//! recipients first, then key-provider packets) until one opens.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

use super::cipher::DecryptReader;
use super::jwe::{Jwe, PrivateKey};
use super::options::{PrivateOptions, PublicOptions};
use super::packet::{kid_resource, Packet};
use super::{
    Error, ANNOTATION_JWE, ANNOTATION_PREFIX, ANNOTATION_PROVIDER_PREFIX, ANNOTATION_PUBOPTS,
};

/// A key-encryption key: the 32 raw bytes a KBS serves for a packet's `kid`.
/// Zeroized on drop; `Debug` does not show it.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// Errors: [`Error::Kek`] unless `bytes` is exactly 32 bytes long.
    pub fn new(bytes: &[u8]) -> Result<Kek, Error> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            // Not its length: the resource a host names could be any the enclave may read.
            return Err(Error::Kek("not a 32-byte KEK".to_string()));
        }
        k.copy_from_slice(bytes);
        Ok(Kek(k))
    }

    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The keys a decrypting enclave holds: JWE recipients' private keys, and KEKs fetched
/// from the KBS by `kid` (see [`kids_needed`]). `Debug` lists kinds and kids only.
#[derive(Default)]
pub struct Keys {
    private_keys: Vec<PrivateKey>,
    /// By resource (`repo/type/tag`): `kbs://host/…` and `kbs:///…` are one KEK.
    keks: BTreeMap<String, Kek>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("private_keys", &self.private_keys)
            .field("keks", &self.keks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keys {
    /// Adds a JWE recipient's private key.
    pub fn add_private_key(&mut self, key: PrivateKey) {
        self.private_keys.push(key);
    }

    /// Adds the KEK the KBS returned for `kid` (`kbs:///repo/type/tag`).
    ///
    /// Errors: [`Error::Kek`] for another kind of `kid` or a KEK that is not 32 bytes.
    pub fn add_kek(&mut self, kid: &str, kek: &[u8]) -> Result<(), Error> {
        let resource = kid_resource(kid).map_err(Error::Kek)?;
        let kek = Kek::new(kek).map_err(|e| Error::Kek(format!("{kid}: {e}")))?;
        self.keks.insert(resource, kek);
        Ok(())
    }
}

impl Keys {
    /// Opens one annotation packet (its JSON, the provider's bytes) with the KEK held
    /// for its `kid`, and returns what it seals (a layer's private options JSON), as a
    /// key provider answers `keyunwrap`. Nothing is parsed beyond the packet.
    ///
    /// Errors: [`Error::Kek`] for a packet that does not parse, a `kid` that is not a
    /// `kbs:///` resource or whose KEK is not held (naming the kid), a wrong KEK.
    pub fn open_packet(&self, packet_json: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let packet = Packet::parse(packet_json).map_err(Error::Kek)?;
        let resource = kid_resource(&packet.kid).map_err(Error::Kek)?;
        let kek = self.keks.get(&resource).ok_or_else(|| {
            Error::Kek(format!("no KEK for {} (held: {})", packet.kid, {
                let held: Vec<&str> = self.keks.keys().map(String::as_str).collect();
                if held.is_empty() {
                    "none".to_string()
                } else {
                    held.join(", ")
                }
            }))
        })?;
        packet
            .unwrap(kek)
            .map_err(|e| Error::Kek(format!("{}: {e}", packet.kid)))
    }
}

/// The ocicrypt annotations of one layer descriptor, kept as found: nothing is
/// decoded until [`LayerAnnotations::unwrap`], so each bad entry is reported there.
#[derive(Debug, Clone, Default)]
pub struct LayerAnnotations {
    jwe: Option<String>,
    /// (provider name, value)
    providers: Vec<(String, String)>,
    pubopts: Option<String>,
    /// Other `…enc.keys.<kind>` wraps (pgp, pkcs7, pkcs11), not supported.
    unsupported: Vec<String>,
}

impl LayerAnnotations {
    /// Picks the ocicrypt annotations out of a descriptor's annotations (any map of
    /// strings, e.g. `&BTreeMap<String, String>` or `&HashMap<String, String>`).
    pub fn from_pairs<I, K, V>(annotations: I) -> LayerAnnotations
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut out = LayerAnnotations::default();
        for (k, v) in annotations {
            let (k, v) = (k.as_ref(), v.as_ref().to_string());
            if k == ANNOTATION_JWE {
                out.jwe = Some(v);
            } else if k == ANNOTATION_PUBOPTS {
                out.pubopts = Some(v);
            } else if let Some(name) = k.strip_prefix(ANNOTATION_PROVIDER_PREFIX) {
                out.providers.push((name.to_string(), v));
            } else if let Some(kind) = k
                .strip_prefix(ANNOTATION_PREFIX)
                .and_then(|s| s.strip_prefix(".keys."))
            {
                out.unsupported.push(kind.to_string());
            }
        }
        out.providers.sort();
        out.unsupported.sort();
        out
    }

    /// Whether any key wrap annotation is present.
    pub fn has_keys(&self) -> bool {
        self.jwe.is_some() || !self.providers.is_empty() || !self.unsupported.is_empty()
    }

    fn packets(&self) -> impl Iterator<Item = (String, Result<Packet, String>)> + '_ {
        self.providers.iter().flat_map(|(name, value)| {
            entries(value).enumerate().map(move |(i, entry)| {
                let what = format!("provider.{name}[{i}]");
                (what, entry.and_then(|json| Packet::parse(&json)))
            })
        })
    }

    /// The `kid`s of the annotation packets this layer carries, as written, in order
    /// and without repeats (entries that are not packets are skipped here and
    /// reported by [`LayerAnnotations::unwrap`]).
    pub fn kids(&self) -> Vec<String> {
        let mut kids = Vec::new();
        for (_, p) in self.packets() {
            if let Ok(p) = p {
                if !kids.contains(&p.kid) {
                    kids.push(p.kid);
                }
            }
        }
        kids
    }

    /// Unwraps the layer key: every wrap is tried in order with the matching keys.
    /// `layer` (the encrypted blob's digest) names the layer in errors.
    ///
    /// Errors: [`Error::NotEncrypted`] without any key annotation; [`Error::NoHmac`]
    /// without `pubopts`; [`Error::Options`] for bad `pubopts`; [`Error::NoKey`]
    /// naming each wrap found (JWE recipients' `alg`/`kid`/curve, packet `kid`) and why
    /// it failed (no key of that kind, KEK not provided, wrong key, malformed).
    pub fn unwrap(
        &self,
        layer: &str,
        keys: &Keys,
    ) -> Result<(PrivateOptions, PublicOptions), Error> {
        if !self.has_keys() {
            return Err(Error::NotEncrypted {
                layer: layer.to_string(),
            });
        }
        let public = match &self.pubopts {
            None => {
                return Err(Error::NoHmac {
                    layer: layer.to_string(),
                })
            }
            Some(v) => PublicOptions::from_annotation(v)
                .map_err(|e| Error::Options(format!("layer {layer}: {e}")))?,
        };
        let mut tried = Vec::new();
        let mut any_key = false;
        let accept = |what: String, json: Zeroizing<Vec<u8>>, tried: &mut Vec<String>| {
            match PrivateOptions::from_json(&json) {
                Ok(p) => Some(p),
                Err(e) => {
                    tried.push(format!("{what}: opened, but {e}"));
                    None
                }
            }
        };
        for (i, entry) in self.jwe.iter().flat_map(|v| entries(v)).enumerate() {
            let jwe = match entry.and_then(|json| Jwe::parse(&json)) {
                Ok(j) => j,
                Err(e) => {
                    tried.push(format!("jwe[{i}]: {e}"));
                    continue;
                }
            };
            match jwe.decrypt(&keys.private_keys) {
                Ok(json) => {
                    any_key = true;
                    if let Some(p) = accept(format!("jwe[{i}]"), json, &mut tried) {
                        return Ok((p, public));
                    }
                }
                Err((applicable, reasons)) => {
                    any_key |= applicable;
                    if keys.private_keys.is_empty() {
                        tried.push(format!(
                            "jwe[{i}] {}: no private key configured",
                            jwe.describe().join(", ")
                        ));
                    } else {
                        tried.extend(reasons.into_iter().map(|r| format!("jwe[{i}] {r}")));
                    }
                }
            }
        }
        for (what, packet) in self.packets() {
            let packet = match packet {
                Ok(p) => p,
                Err(e) => {
                    tried.push(format!("{what}: {e}"));
                    continue;
                }
            };
            let desc = format!("{what} (kid {}, {})", packet.kid, packet.wrap_type());
            let kek = match kid_resource(&packet.kid) {
                Err(e) => {
                    tried.push(format!("{desc}: {e}"));
                    continue;
                }
                Ok(resource) => keys.keks.get(&resource),
            };
            let Some(kek) = kek else {
                tried.push(format!("{desc}: KEK for {} not provided", packet.kid));
                continue;
            };
            any_key = true;
            match packet.unwrap(kek) {
                Ok(json) => {
                    if let Some(p) = accept(desc.clone(), json, &mut tried) {
                        return Ok((p, public));
                    }
                }
                Err(e) => tried.push(format!("{desc}: {e}")),
            }
        }
        for kind in &self.unsupported {
            tried.push(format!("{kind}: this kind of key wrap is not supported"));
        }
        Err(Error::NoKey {
            layer: layer.to_string(),
            missing: !any_key,
            tried,
        })
    }

    /// [`LayerAnnotations::unwrap`], then a [`DecryptReader`] over the encrypted
    /// `blob`.
    pub fn open<R: Read>(
        &self,
        layer: &str,
        blob: R,
        keys: &Keys,
    ) -> Result<DecryptReader<R>, Error> {
        let (private, public) = self.unwrap(layer, keys)?;
        Ok(DecryptReader::new(blob, &private, &public, layer))
    }
}

/// Every `kid` the given layers' packets name, in order and without repeats: the
/// KEKs to fetch from the KBS before decrypting.
pub fn kids_needed<'a>(layers: impl IntoIterator<Item = &'a LayerAnnotations>) -> Vec<String> {
    let mut kids = Vec::new();
    for layer in layers {
        for kid in layer.kids() {
            if !kids.contains(&kid) {
                kids.push(kid);
            }
        }
    }
    kids
}

/// The entries of a comma-separated std-base64 list, decoded.
fn entries(value: &str) -> impl Iterator<Item = Result<Zeroizing<Vec<u8>>, String>> + '_ {
    value.split(',').filter(|s| !s.trim().is_empty()).map(|s| {
        STANDARD
            .decode(s.trim())
            .map(Zeroizing::new)
            .map_err(|_| "not standard base64".to_string())
    })
}
