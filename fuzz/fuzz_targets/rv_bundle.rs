//! A reference-value bundle POSTed to verdictd (an RVPS message of type `dsse`, the DSSE
//! envelope in it, the in-toto statement it signs): opening never panics, and the
//! statement parser behind a good signature is reached too.
#![no_main]
use chrono::TimeZone;
use reference_values::{dsse::Envelope, SigningKey, IN_TOTO_PAYLOAD_TYPE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
    let trusted = [key.public()];
    let now = chrono::Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let _ = reference_values::open(data, &trusted, now);
    let _ = reference_values::open_envelope(data, &trusted, now);
    let signed = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, data, &key);
    let bytes = serde_json::to_vec(&signed).expect("an envelope serialises");
    let _ = reference_values::open_envelope(&bytes, &trusted, now);
});
