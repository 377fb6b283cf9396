//! A sealed value as read back from verdictd's database (`verdictd::seal`): any value
//! and wrapped data key, as a database operator could have altered them, opens or is
//! refused without panicking, and so does its re-wrapping under another KEK (as
//! `rotate-kek` does); a value sealed here with the input as plaintext opens to it, and
//! to nothing once the input also changes a byte of it.
#![no_main]
use verdictd::seal::{open, Kek, WRAPPED_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let kek = Kek::new(&[9; 32]);
    let (wrapped, value) = data.split_at(data.len().min(WRAPPED_LEN));
    let _ = open(Some(&kek), "a/b/c", value, Some(wrapped));
    let _ = open(None, "a/b/c", value, Some(wrapped));
    // Re-wrapped by `verdictd rotate-kek`: refused, or re-wrapped to what opens as the
    // original did.
    let next = Kek::new(&[10; 32]);
    if let Ok(rewrapped) = next.rewrap(&kek, "a/b/c", wrapped) {
        assert_eq!(
            open(Some(&next), "a/b/c", value, Some(&rewrapped)).ok(),
            open(Some(&kek), "a/b/c", value, Some(wrapped)).ok()
        );
    }
    let (sealed, dek) = kek.seal("a/b/c", data);
    assert_eq!(
        open(Some(&kek), "a/b/c", &sealed, Some(&dek)).unwrap().as_slice(),
        data
    );
    if let Some(&first) = data.first() {
        let mut altered = sealed.clone();
        let at = first as usize % altered.len();
        altered[at] ^= 1;
        assert!(open(Some(&kek), "a/b/c", &altered, Some(&dek)).is_err());
    }
});
