//! ocicrypt's key-provider requests as `enclave-image keyprovider` reads them from its
//! caller, carrying an annotation packet from an (untrusted) image: the request JSON
//! (strings or number arrays, nulls, parameters), then the packet opened with a fixed KEK.
#![no_main]

use std::sync::OnceLock;

use enclave_image::ocicrypt::Keys;
use enclave_image_tool::keyprovider::{parse_param, parse_request, Request, DEFAULT_PROVIDER};
use libfuzzer_sys::fuzz_target;

/// The KEK of seeds/keyprovider_request/unwrap.json's packet.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = Keys::default();
        k.add_kek("kbs:///default/image-kek/app", &[0x42; 32])
            .expect("fixed KEK");
        k
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_param(data);
    let _ = keys().open_packet(data);
    if let Ok(Request::Unwrap { packet, .. }) = parse_request(data, DEFAULT_PROVIDER) {
        let _ = keys().open_packet(&packet);
    }
});
