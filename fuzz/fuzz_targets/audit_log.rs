//! An audit log as `verdictd audit verify` reads it back from the local-fs file or the
//! database (`verdictd::audit::verify`), as whoever could edit it left it: any lines,
//! each parsed as an entry or kept as unreadable, replay to a verdict without panicking,
//! and never to "intact" with an unreadable line in it.
#![no_main]
use verdictd::audit::{verify, Entry, Head};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::VerifyingKey::from_bytes(&[
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
        0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
        0xf7, 0x07, 0x51, 0x1a,
    ])
    .unwrap();
    let entries: Vec<Result<Entry, String>> = data
        .split(|&b| b == b'\n')
        .map(|line| serde_json::from_slice::<Entry>(line).map_err(|e| e.to_string()))
        .collect();
    let unreadable = entries.iter().any(Result::is_err);
    let verdict = verify::replay(entries.clone(), vec![key], None);
    assert!(!(unreadable && verdict.is_ok()));
    if let Err(broken) = &verdict {
        assert!(!broken.to_string().contains('\n'));
    }
    let head = Head {
        seq: data.len() as u64,
        hash: [0; 32],
        pending: 0,
        checkpoint_ms: 0,
    };
    let _ = verify::replay(entries, vec![], Some(head));
});
