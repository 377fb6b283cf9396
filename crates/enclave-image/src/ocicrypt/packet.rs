//! Confidential Containers' annotation packet (guest-components' CDH
//! `image/annotation_packet/`, §2.1–§2.2): the private options JSON sealed with a
//! key-encryption key (KEK) that a KBS holds under the resource named by `kid`.
//!
//! v1 has exactly `kid`, `wrapped_data`, `iv`, `wrap_type` (strings; byte fields
//! std-base64). v2 adds `version` (`0.1.0`), `provider` (`kbs`), `provider_settings`
//! and `annotations`, all defaulted, so a v1 packet parses as v2. `A256GCM`: 12-byte
//! iv, `wrapped_data` = ciphertext ‖ 16-byte tag, no additional data. `A256CTR`:
//! 16-byte iv as the initial 128-bit big-endian counter block, unauthenticated: refused
//! when opening (the host could alter it).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kbs_protocol::resource_uri::ResourceUri;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keys::Kek;
use super::options::PrivateOptions;
use super::Error;

const VERSION: &str = "0.1.0";

fn default_version() -> String {
    VERSION.into()
}

fn default_provider() -> String {
    "kbs".into()
}

#[derive(Deserialize)]
struct PacketJson {
    #[serde(default = "default_version")]
    version: String,
    kid: String,
    wrapped_data: String,
    #[serde(default = "default_provider")]
    provider: String,
    iv: Option<String>,
    wrap_type: Option<String>,
}

#[derive(Serialize)]
struct PacketV1<'a> {
    kid: &'a str,
    wrapped_data: String,
    iv: String,
    wrap_type: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WrapType {
    A256Gcm,
    A256Ctr,
}

/// A parsed packet.
pub(super) struct Packet {
    /// The `kid` as written.
    pub(super) kid: String,
    wrapped: Vec<u8>,
    iv: Vec<u8>,
    wrap_type: WrapType,
}

/// The KBS resource a `kid` names, as `repo/type/tag`: `kbs://[HOST[:PORT]]/repo/type/tag`
/// (the host is ignored, the configured KBS is asked), the `resource` plugin, exactly
/// three segments, no query.
pub(super) fn kid_resource(kid: &str) -> Result<String, String> {
    if !kid
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("kbs://"))
    {
        return Err(format!(
            "kid {kid:?} is not a kbs:///<repo>/<type>/<tag> resource URI"
        ));
    }
    let uri = ResourceUri::parse(kid).map_err(|e| e.to_string())?;
    if uri.path.len() != 3 || uri.query.is_some() {
        return Err(format!(
            "kid {kid:?} must name exactly <repo>/<type>/<tag> without a query"
        ));
    }
    Ok(uri.path.join("/"))
}

impl Packet {
    /// Parses the packet JSON (the annotation entry, already std-base64-decoded).
    pub(super) fn parse(json: &[u8]) -> Result<Packet, String> {
        let p: PacketJson =
            serde_json::from_slice(json).map_err(|e| format!("not an annotation packet: {e}"))?;
        if p.version != VERSION {
            return Err(format!(
                "packet version {:?} (expected {VERSION})",
                p.version
            ));
        }
        if p.provider != "kbs" {
            return Err(format!(
                "kid {:?}: provider {:?} (only kbs is supported)",
                p.kid, p.provider
            ));
        }
        let wrap_type = match p.wrap_type.as_deref() {
            Some("A256GCM") => WrapType::A256Gcm,
            Some("A256CTR") => WrapType::A256Ctr,
            Some(other) => return Err(format!("kid {:?}: wrap_type {other:?}", p.kid)),
            None => return Err(format!("kid {:?}: no wrap_type", p.kid)),
        };
        let iv = STANDARD
            .decode(p.iv.as_deref().unwrap_or_default())
            .map_err(|_| format!("kid {:?}: iv is not standard base64", p.kid))?;
        let want = if wrap_type == WrapType::A256Gcm {
            12
        } else {
            16
        };
        if iv.len() != want {
            return Err(format!(
                "kid {:?}: iv is {} bytes, {} needs {want}",
                p.kid,
                iv.len(),
                p.wrap_type.unwrap_or_default()
            ));
        }
        let wrapped = STANDARD
            .decode(&p.wrapped_data)
            .map_err(|_| format!("kid {:?}: wrapped_data is not standard base64", p.kid))?;
        Ok(Packet {
            kid: p.kid,
            wrapped,
            iv,
            wrap_type,
        })
    }

    /// `A256GCM` or `A256CTR`.
    pub(super) fn wrap_type(&self) -> &'static str {
        match self.wrap_type {
            WrapType::A256Gcm => "A256GCM",
            WrapType::A256Ctr => "A256CTR",
        }
    }

    /// Opens the wrapped private options with the KEK (`A256GCM` only; `A256CTR` is
    /// refused, see below).
    pub(super) fn unwrap(&self, kek: &Kek) -> Result<Zeroizing<Vec<u8>>, String> {
        match self.wrap_type {
            WrapType::A256Gcm => Aes256Gcm::new(kek.bytes().into())
                .decrypt(Nonce::from_slice(&self.iv), self.wrapped.as_slice())
                .map(Zeroizing::new)
                .map_err(|_| "wrong KEK: A256GCM tag mismatch".to_string()),
            // guest-components opens A256CTR too ("not recommended as it is not AEAD").
            // We do not: the packet comes from the untrusted host, which could flip bits
            // of the wrapped options and learn the layer key from how parsing fails.
            WrapType::A256Ctr => Err(
                "an A256CTR-wrapped layer key is refused: A256CTR is not authenticated, so the host could alter it unnoticed (wrap with A256GCM, as coco_keyprovider does)"
                    .to_string(),
            ),
        }
    }
}

/// Wraps a layer's private options for a KBS-held KEK, as coco_keyprovider does
/// (v1 packet, `A256GCM`, random 12-byte iv), and returns the value of the
/// [`ANNOTATION_PROVIDER_ATTESTATION_AGENT`](super::ANNOTATION_PROVIDER_ATTESTATION_AGENT)
/// annotation: std-base64 of the packet JSON.
///
/// Errors: [`Error::Kek`] for a `kid` that is not `kbs:///repo/type/tag`,
/// [`Error::Encrypt`] when no random iv can be had.
pub fn wrap_packet(kek: &Kek, kid: &str, options: &PrivateOptions) -> Result<String, Error> {
    Ok(STANDARD.encode(seal_packet(kek, kid, &options.to_json())?))
}

/// Seals `plaintext` (a layer's private options JSON, as a key provider receives it in
/// `optsdata`) into a v1 packet for `kid` and returns the packet JSON
/// `{"kid","wrapped_data","iv","wrap_type":"A256GCM"}`: the bytes a key provider hands
/// back, which ocicrypt std-base64-encodes into the annotation.
///
/// Errors: as [`wrap_packet`].
pub fn seal_packet(kek: &Kek, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    kid_resource(kid).map_err(Error::Kek)?;
    let mut iv = [0u8; 12];
    getrandom::getrandom(&mut iv).map_err(|e| Error::Encrypt(format!("random iv: {e}")))?;
    let sealed = Aes256Gcm::new(kek.bytes().into())
        .encrypt(Nonce::from_slice(&iv), plaintext)
        .map_err(|_| Error::Encrypt("A256GCM".into()))?;
    let packet = PacketV1 {
        kid,
        wrapped_data: STANDARD.encode(sealed),
        iv: STANDARD.encode(iv),
        wrap_type: "A256GCM",
    };
    Ok(serde_json::to_vec(&packet).expect("strings serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_are_kbs_resource_triples() {
        assert_eq!(
            kid_resource("kbs:///default/key/test").unwrap(),
            "default/key/test"
        );
        assert_eq!(kid_resource("KBS://10.0.0.1:8080/a/b/c").unwrap(), "a/b/c");
        for (bad, why) in [
            ("/default/image-kek/0a1b", "not a kbs:///"),
            ("default/key/test", "not a kbs:///"),
            ("kbs+pkcs11:///a/b/c", "not a kbs:///"),
            ("kbs:///kbs:///default/key/1", "empty path segment"),
            ("kbs:///a/b", "exactly"),
            ("kbs:///a/b/c?x=1", "without a query"),
            ("kbs:///a/../c", "'..'"),
        ] {
            let err = kid_resource(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn v1_and_v2_packets_parse_and_bad_ones_are_named() {
        let v1 = br#"{"kid":"kbs:///default/key/test","wrapped_data":"AAAA","iv":"AAAAAAAAAAAAAAAA","wrap_type":"A256GCM"}"#;
        let p = Packet::parse(v1).unwrap();
        assert_eq!(
            (p.kid.as_str(), p.wrap_type(), p.iv.len()),
            ("kbs:///default/key/test", "A256GCM", 12)
        );
        let v2 = br#"{"version":"0.1.0","provider":"kbs","kid":"kbs:///a/b/c","wrapped_data":"AAAA","iv":"AAAAAAAAAAAAAAAAAAAAAA==","wrap_type":"A256CTR","provider_settings":{},"annotations":{}}"#;
        assert_eq!(Packet::parse(v2).unwrap().wrap_type(), "A256CTR");
        for (bad, why) in [
            (
                r#"{"version":"0.2.0","kid":"k","wrapped_data":""}"#,
                "version \"0.2.0\"",
            ),
            (
                r#"{"provider":"aliyun","kid":"k","wrapped_data":""}"#,
                "provider \"aliyun\"",
            ),
            (
                r#"{"kid":"k","wrapped_data":"","iv":"AAAA","wrap_type":"A128GCM"}"#,
                "wrap_type \"A128GCM\"",
            ),
            (
                r#"{"kid":"k","wrapped_data":"","iv":"AAAA","wrap_type":"A256GCM"}"#,
                "iv is 3 bytes",
            ),
            (r#"{"kid":"k","wrapped_data":""}"#, "no wrap_type"),
            (r#"{"wrapped_data":""}"#, "not an annotation packet"),
        ] {
            let err = Packet::parse(bad.as_bytes()).err().unwrap();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
