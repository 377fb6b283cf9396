#!/bin/bash
# Cargo runs every rustc call of a workspace member through this (.cargo/config.toml,
# `build.rustc-workspace-wrapper`; `cargo clippy` puts its own driver in its place).
#
# enclave-boot runs first in an enclave's empty root, before the image is there, so its
# binary links glibc statically. Only the binary's own rustc call takes `+crt-static`:
# libc's `#[link(..., cfg(target_feature = "crt-static"))]` attributes are decided at that
# final link, so the binary reuses the workspace's dependencies as they are built for
# everything else (a `--target` build with RUSTFLAGS rebuilt all of them: ~6 min here).
#
# bash, not sh: dash drops environment variables whose names are not identifiers, such as
# the `CARGO_BIN_EXE_enclave-boot` integration tests are compiled with.
rustc=$1
shift
case " $* " in
*" --crate-name enclave_boot "*" --crate-type bin "*)
	exec "$rustc" "$@" -C target-feature=+crt-static ;;
esac
exec "$rustc" "$@"
