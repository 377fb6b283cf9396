//! A sealed value as read back from verdictd's database (`verdictd::seal`): any value
//! and wrapped data key, as a database operator could have altered them, opens or is
//! refused without panicking; a value sealed here with the input as plaintext opens to
//! it, and to nothing once the input also changes a byte of it.
#![no_main]
use verdictd::seal::{open, Kek, WRAPPED_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let kek = Kek::new(&[9; 32]);
    let (wrapped, value) = data.split_at(data.len().min(WRAPPED_LEN));
    let _ = open(Some(&kek), "a/b/c", value, Some(wrapped));
    let _ = open(None, "a/b/c", value, Some(wrapped));
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
