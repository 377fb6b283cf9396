//! A module file from an untrusted image, as liberpal-wasm checks it before anything
//! runs (header, wasmtime's validation, `_start`, imports against WASI preview 1): a
//! one-line refusal or acceptance, never a panic.
#![no_main]
use std::sync::OnceLock;

static CHECKER: OnceLock<pal_wasm::Checker> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sim_tee::wasm::kind(data);
    let checker = CHECKER.get_or_init(|| pal_wasm::Checker::new().expect("engine"));
    if let Err(r) = checker.check("/fuzz.wasm", data) {
        assert!(!r.message.contains('\n'), "{}", r.message);
    }
});
