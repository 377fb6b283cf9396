//! aesmd's answers, from the untrusted host: the protobuf response, the quote it
//! returns (length from its own fields, truncation) and the check that it carries our
//! REPORT. Typed errors, never a panic or a huge allocation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = aesm::decode_response("fuzz", data);
    let _ = aesm::select_ecdsa_key(data);
    if let Ok(len) = aesm::quote_len(data) {
        assert!(len <= data.len());
        let report = [0u8; aesm::REPORT_SIZE];
        let _ = aesm::check_quote_matches(&data[..len], &report);
    }
    let _ = aesm::report_of_quote(data);
});
