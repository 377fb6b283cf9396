//! Arbitrary bytes as a layer's tar stream, applied to a fresh root: an error or a layer
//! inside the root, never a panic, and nothing created beside the root (no escape, no
//! staging directory left).
#![no_main]
use enclave_image::unpack::{apply_layer, UnpackOptions};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().unwrap();
    let top = t.path().join("top");
    let root = top.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(top.join("sentinel"), b"s").unwrap();
    let opts = UnpackOptions {
        allow_devices: false,
        preserve_ownership: false,
        max_uncompressed_bytes: 4 << 20,
        max_entries: 10_000,
        staging_parent: None,
    };
    let _ = apply_layer(data, &root, &opts);
    let mut names: Vec<_> = std::fs::read_dir(&top)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["root", "sentinel"],
        "something was made beside the root"
    );
    assert_eq!(std::fs::read(top.join("sentinel")).unwrap(), b"s");
    let outside: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
    assert_eq!(outside.len(), 1, "something was made beside top");
});
