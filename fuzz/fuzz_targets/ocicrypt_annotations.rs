//! A layer descriptor's ocicrypt annotations, from the (untrusted) registry: JWE JSON
//! (flattened and general) and CoCo annotation packets, unwrapped with fixed keys; the
//! options JSON; private key files.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use enclave_image::ocicrypt::{
    Keys, LayerAnnotations, PrivateKey, PrivateOptions, PublicOptions, ANNOTATION_JWE,
    ANNOTATION_PROVIDER_ATTESTATION_AGENT, ANNOTATION_PUBOPTS,
};
use libfuzzer_sys::fuzz_target;

/// A throwaway P-256 key (seeds/ocicrypt_annotations/jwe_p256_skopeo.json is
/// skopeo's JWE to it) and the KEK of seeds/ocicrypt_annotations/packet_v1.json.
const P256: &[u8] = b"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgCwnuAM3Nj9IT+DRN
Q/nslg6riTQ3luTG0E6QI5uteKihRANCAATbmdXsSqtQx7PAFgAJWtVnWxe7BMfz
EYf7/9n/PjDydA0G0sL/lbroPtf1KjZxKf3ADlZgraxoc029Ua9wgofH
-----END PRIVATE KEY-----
";
const PUBOPTS: &str = "eyJjaXBoZXIiOiJBRVNfMjU2X0NUUl9ITUFDX1NIQTI1NiIsImhtYWMiOiJDQ3U3dU5KajJyR1lFRkFQMTRkMXo1MXpIeDZBbk51Y21lTnZRK0dpQm80PSIsImNpcGhlcm9wdGlvbnMiOnt9fQ==";

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = Keys::default();
        k.add_private_key(PrivateKey::from_pem_or_der(P256).expect("fixed key"));
        k.add_kek("kbs:///default/key/test", &[0x42; 32]).expect("fixed KEK");
        k
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = PrivateOptions::from_json(data);
    let _ = PrivateKey::from_pem_or_der(data);
    // The bytes as the JSON inside each kind of wrap.
    let b64 = STANDARD.encode(data);
    for name in [ANNOTATION_JWE, ANNOTATION_PROVIDER_ATTESTATION_AGENT] {
        let layer = LayerAnnotations::from_pairs([(name, b64.as_str()), (ANNOTATION_PUBOPTS, PUBOPTS)]);
        let _ = layer.kids();
        let _ = layer.unwrap("sha256:fuzz", keys());
    }
    // The bytes as the annotation values themselves (lists, bad base64, pubopts).
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicOptions::from_annotation(text);
        let layer = LayerAnnotations::from_pairs([
            (ANNOTATION_JWE, text),
            (ANNOTATION_PROVIDER_ATTESTATION_AGENT, text),
            (ANNOTATION_PUBOPTS, text),
        ]);
        let _ = layer.unwrap("sha256:fuzz", keys());
    }
});
