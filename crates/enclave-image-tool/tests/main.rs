//! enclave-image's integration tests, one test program (each file a module): one link
//! instead of four (`make test`'s time on 2 cores). One file's tests: `cargo test
//! --release --workspace --test image_tool -- sign::`.

mod common;

mod encrypt;
mod kbs;
mod keyprovider;
mod sign;
