//! verdictd's integration tests, one test program (each file a module): built once, they
//! cost one link instead of twelve (`make test`'s time on 2 cores). Run one file's tests
//! with its module path, as `make test` does for the postgres backend:
//! `cargo test --release --workspace --test broker -- protocol:: rvps::`.

mod common;

mod audit;
mod bounds;
mod deploy;
mod dry_run;
mod image_event;
mod interop;
mod kek;
mod load;
mod postgres;
mod protocol;
mod rvps;
mod sim_measurements;
