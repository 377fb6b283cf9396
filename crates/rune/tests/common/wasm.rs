//! WebAssembly modules for the `liberpal-wasm` tests: compiled from WAT with wabt's
//! `wat2wasm` at test time and put in a bundle's private rootfs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::*;

/// wabt's WAT compiler (Debian's `wabt`, installed by the Makefile).
pub const WAT2WASM: &str = "/usr/bin/wat2wasm";

/// Sleeps 60 s in one `poll_oneoff` on the monotonic clock: blocked in a host call,
/// where epoch interruption does not reach it (a module that stays up to be
/// attested or killed).
pub const SLEEP: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 60000000000))
    (drop (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)))))"#;

/// Compiles `wat` to `out` with wabt.
pub fn wat2wasm(wat: &str, out: &Path) {
    let src = out.with_extension("wat");
    std::fs::write(&src, wat).unwrap();
    let o = Command::new(WAT2WASM)
        .arg(&src)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "wat2wasm: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(src).unwrap();
}

/// Writes `bytes` at `/app.wasm` in the bundle's rootfs, executable (rune checks, as
/// runc does, that a program in the container's file system may be executed).
pub fn put_module(b: &Bundle, bytes: &[u8]) {
    put_module_at(b, "app.wasm", bytes);
}

/// Writes `bytes` at `/<name>` in the bundle's rootfs, executable.
pub fn put_module_at(b: &Bundle, name: &str, bytes: &[u8]) {
    let path = b.path().join("rootfs").join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A bundle with its own rootfs whose `/app.wasm` is `wat` compiled, run as
/// `/app.wasm args…` in a wasm enclave with runtime args `pal_args`.
pub fn wasm_bundle(wat: &str, args: &[&str], pal_args: &str) -> Bundle {
    let argv: Vec<&str> = std::iter::once("/app.wasm")
        .chain(args.iter().copied())
        .collect();
    let b = Bundle::new(&argv)
        .private_rootfs()
        .enclave(&wasm_pal(), pal_args);
    let tmp = tempfile::tempdir().unwrap();
    let wasm = tmp.path().join("app.wasm");
    wat2wasm(wat, &wasm);
    put_module(&b, &std::fs::read(&wasm).unwrap());
    b
}

pub fn run_bundle(rune: &Rune, b: &Bundle, id: &str) -> (Option<i32>, String, String) {
    let out = rune.cmd(&["run", "--bundle", b.path().to_str().unwrap(), id]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ready(test: &str) -> bool {
    root_or_skip(test) && tool_or_skip(test, WAT2WASM)
}
