//! What a wasm application sees of its enclave in `liberpal-wasm`: its preopened
//! directories (never the runtime's /proc, /sys or /dev, however the image or the
//! config leads there), and its own attestation: the read-only files in
//! `/dev/attestation` (its first preopen, descriptor 3) and the lib-rats import for
//! evidence bound to a nonce. Expected values: the binding formulas of the reference
//! design (WAMR lib-rats: `SHA-256(module hash ‖ user data)`; Enarx: the hash of the
//! key's DER), WASI preview 1's errno numbering (`wasi_snapshot_preview1.witx`: `perm` =
//! 63), openssl for the keys, and the tenant's `shelter verify` for the evidence.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use common::wasm::*;
use common::*;
use sha2::{Digest, Sha256};

/// Writes, as records of a 4-byte little-endian length then the bytes: the name of
/// preopen 3, the files `attestation_type`, `module_sha256`, `key.der`,
/// `public_key.der`, `report_data`, `evidence` read through it, then the WASI errno of
/// creating a file `new` in it (4 bytes). A failed open or read traps.
const DUMP: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $pname (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "attestation_type")
  (data (i32.const 1056) "module_sha256")
  (data (i32.const 1088) "key.der")
  (data (i32.const 1120) "public_key.der")
  (data (i32.const 1152) "report_data")
  (data (i32.const 1184) "evidence")
  (data (i32.const 1216) "new")
  ;; the record at 65536: length, then 65540.. the bytes
  (func $emit (param $len i32)
    (i32.store (i32.const 65536) (local.get $len))
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.add (local.get $len) (i32.const 4)))
    (if (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)) (then unreachable)))
  (func $dump (param $name i32) (param $nlen i32)
    ;; rights: fd_read (1 << 1) only
    (if (call $open (i32.const 3) (i32.const 0) (local.get $name) (local.get $nlen)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0))
      (then unreachable))
    (i32.store (i32.const 16) (i32.const 65540))
    (i32.store (i32.const 20) (i32.const 60000))
    (if (call $read (i32.load (i32.const 0)) (i32.const 16) (i32.const 1) (i32.const 24))
      (then unreachable))
    (call $emit (i32.load (i32.const 24))))
  (func (export "_start")
    (if (call $pname (i32.const 3) (i32.const 65540) (i32.const 16)) (then unreachable))
    (call $emit (i32.const 16))
    (call $dump (i32.const 1024) (i32.const 16))
    (call $dump (i32.const 1056) (i32.const 13))
    (call $dump (i32.const 1088) (i32.const 7))
    (call $dump (i32.const 1120) (i32.const 14))
    (call $dump (i32.const 1152) (i32.const 11))
    (call $dump (i32.const 1184) (i32.const 8))
    ;; oflags creat (1), rights fd_write (1 << 6)
    (i32.store (i32.const 65540)
      (call $open (i32.const 3) (i32.const 0) (i32.const 1216) (i32.const 3)
        (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0)))
    (call $emit (i32.const 4))))"#;

/// Calls `librats_collect` with the 5-byte user data "nonce" (or, with `malloc`
/// missing, as a module that exports no allocator) and writes the JSON it got (up to
/// its NUL) to stdout; exits with the negated return value when it fails.
fn collect_module(with_malloc: bool) -> String {
    let malloc = if with_malloc {
        // A bump allocator from 4096 up.
        r#"(global $next (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $at))
  (func (export "free") (param i32))"#
    } else {
        ""
    };
    format!(
        r#"(module
  (import "env" "librats_collect" (func $collect (param i32 i32 i32) (result i32)))
  (import "env" "librats_dispose_evidence_json" (func $dispose (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "nonce")
  {malloc}
  (func (export "_start")
    (local $rc i32) (local $json i32) (local $len i32)
    (local.set $rc (call $collect (i32.const 0) (i32.const 1024) (i32.const 5)))
    (if (local.get $rc) (then (call $exit (i32.sub (i32.const 0) (local.get $rc)))))
    (local.set $json (i32.load (i32.const 0)))
    (block $done (loop $scan
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $json) (local.get $len)))))
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (br $scan)))
    (i32.store (i32.const 16) (local.get $json))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (call $dispose (local.get $json))))"#
    )
}

/// The records [`DUMP`] writes.
fn records(mut out: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while out.len() >= 4 {
        let len = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
        v.push(out[4..4 + len].to_vec());
        out = &out[4 + len..];
    }
    assert!(out.is_empty(), "a partial record");
    v
}

/// Runs the bundle with a private platform key in `platform`; returns (code, stdout,
/// stderr).
fn run_with_platform(rune: &Rune, b: &Bundle, platform: &Path, id: &str) -> (i32, Vec<u8>, String) {
    let mut c = Command::new(RUNE);
    c.env("INCLAVARE_SIM_PLATFORM_DIR", platform)
        .arg("--root")
        .arg(rune.root.path())
        .args(["run", "--bundle", b.path().to_str().unwrap(), id]);
    let out = output_via_files(&mut c);
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `shelter verify` of `evidence` against `report_data`, with the measurement pinned.
fn shelter_verify(work: &Path, evidence: &[u8], report_data: &[u8], mr: &str) -> (i32, String) {
    let file = work.join("evidence.bin");
    std::fs::write(&file, evidence).unwrap();
    let policy = work.join("policy.toml");
    std::fs::write(
        &policy,
        format!("allow_software_tees = true\n[expected]\nsim_mr_enclave = [\"{mr}\"]\n"),
    )
    .unwrap();
    let mut verify = Command::new(shelter_bin());
    verify
        .args(["verify", "--evidence", file.to_str().unwrap()])
        .args(["--report-data", &hex::encode(report_data)])
        .args(["--policy", policy.to_str().unwrap()]);
    let (code, out, err) = run(&mut verify);
    (code, format!("{out}{err}"))
}

/// openssl's view of a DER key: `pkey -pubout` of the private key, or of the public.
fn openssl_public_der(work: &Path, der: &[u8], public: bool) -> Vec<u8> {
    let file = work.join(if public { "pub.der" } else { "key.der" });
    std::fs::write(&file, der).unwrap();
    let mut c = Command::new("openssl");
    c.arg("pkey");
    if public {
        c.arg("-pubin");
    }
    c.args(["-inform", "DER", "-in", file.to_str().unwrap()])
        .args(["-pubout", "-outform", "DER"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn wasm_app_reads_evidence_binding_its_module_and_key_which_shelter_accepts() {
    let test = "wasm_app_reads_evidence_binding_its_module_and_key_which_shelter_accepts";
    if !ready(test) || !tool_or_skip(test, "/usr/bin/openssl") {
        return;
    }
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let b = wasm_bundle(DUMP, &[], "");
    let rootfs = b.path().join("rootfs");
    let mr = sim_sign_rootfs(work.path(), &rootfs, "/app.wasm");
    let module = std::fs::read(rootfs.join("app.wasm")).unwrap();

    let mut seen = Vec::new();
    for n in 0..2 {
        let id = unique_id("wasm-att-files");
        let (code, stdout, stderr) = run_with_platform(&rune, &b, &platform, &id);
        assert_eq!(code, 0, "{stderr}");
        let r = records(&stdout);
        assert_eq!(r.len(), 8, "{r:?}");
        assert_eq!(r[0], b"/dev/attestation");
        assert_eq!(r[1], b"sim");
        assert_eq!(r[2], Sha256::digest(&module).as_slice());
        let (key, public, report_data, evidence) = (&r[3], &r[4], &r[5], &r[6]);
        // The pair is one key, as openssl reads it: PKCS#8 and SubjectPublicKeyInfo.
        assert_eq!(&openssl_public_der(work.path(), key, false), public);
        assert_eq!(&openssl_public_der(work.path(), public, true), public);
        // report_data = SHA-256(module_sha256 ‖ SHA-256(public key DER)) ‖ 32 zeros.
        let mut want = Sha256::new();
        want.update(Sha256::digest(&module));
        want.update(Sha256::digest(public));
        let mut want_rd = want.finalize().to_vec();
        want_rd.resize(64, 0);
        assert_eq!(report_data, &want_rd);
        let (code, said) = shelter_verify(work.path(), evidence, &want_rd, &mr);
        assert_eq!(code, 0, "{said}");
        assert!(said.starts_with("verdict: ACCEPTED"), "{said}");
        // Read-only: creating a file is refused with WASI's `perm` (63).
        assert_eq!(r[7], 63u32.to_le_bytes());
        seen.push(public.clone());
        assert_eq!(
            leftovers(rune.root.path(), &id),
            Vec::<String>::new(),
            "run {n}"
        );
    }
    // A key pair per process.
    assert_ne!(seen[0], seen[1]);

    // Evidence from the same enclave, bound to another key, is refused for this one.
    let id = unique_id("wasm-att-files");
    let (_, stdout, _) = run_with_platform(&rune, &b, &platform, &id);
    let other = records(&stdout);
    let mut want = Sha256::new();
    want.update(Sha256::digest(&module));
    want.update(Sha256::digest(&seen[0]));
    let mut first_rd = want.finalize().to_vec();
    first_rd.resize(64, 0);
    let (code, said) = shelter_verify(work.path(), &other[6], &first_rd, &mr);
    assert_ne!(code, 0, "{said}");
}

#[test]
fn wasm_app_gets_nonce_bound_evidence_through_librats_collect() {
    let test = "wasm_app_gets_nonce_bound_evidence_through_librats_collect";
    if !ready(test) {
        return;
    }
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let b = wasm_bundle(&collect_module(true), &[], "");
    let rootfs = b.path().join("rootfs");
    let mr = sim_sign_rootfs(work.path(), &rootfs, "/app.wasm");
    let module = std::fs::read(rootfs.join("app.wasm")).unwrap();

    let id = unique_id("wasm-att-collect");
    let (code, stdout, stderr) = run_with_platform(&rune, &b, &platform, &id);
    assert_eq!(code, 0, "{stderr}");
    let evidence = collected_evidence_is_accepted(work.path(), &stdout, &module, &mr);
    // Another nonce: refused.
    let mut h = Sha256::new();
    h.update(Sha256::digest(&module));
    h.update(b"other");
    let mut rd = h.finalize().to_vec();
    rd.resize(64, 0);
    let (code, said) = shelter_verify(work.path(), &evidence, &rd, &mr);
    assert_ne!(code, 0, "{said}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // A module that exports no allocator gets -ENOSYS (Linux's 38, asm-generic/errno.h).
    let b = wasm_bundle(&collect_module(false), &[], "debug");
    let id = unique_id("wasm-att-collect");
    let (code, _, stderr) = run_with_platform(&rune, &b, &platform, &id);
    assert_eq!(code, 38, "{stderr}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// The JSON `librats_collect` gave for the user data "nonce": `sim` evidence, its
/// length as said, which `shelter verify` accepts with `mr` pinned and WAMR's binding,
/// `SHA-256(module hash ‖ user data)`, recomputed. Returns the evidence.
fn collected_evidence_is_accepted(work: &Path, json: &[u8], module: &[u8], mr: &str) -> Vec<u8> {
    let json: serde_json::Value = serde_json::from_slice(json).unwrap();
    assert_eq!(json["type"], "sim");
    let evidence = base64::engine::general_purpose::STANDARD
        .decode(json["report_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(json["report_len"], evidence.len());
    let mut h = Sha256::new();
    h.update(Sha256::digest(module));
    h.update(b"nonce");
    let mut rd = h.finalize().to_vec();
    rd.resize(64, 0);
    let (code, said) = shelter_verify(work, &evidence, &rd, mr);
    assert_eq!(code, 0, "{said}");
    assert!(said.starts_with("verdict: ACCEPTED"), "{said}");
    evidence
}

/// Debian's clang with wasi-libc (packages clang-14, lld-14, wasi-libc,
/// libclang-rt-14-dev-wasm32, installed by the Makefile).
const CLANG: &str = "/usr/bin/clang-14";

/// The README's C example of the module's own attestation: the first C block after
/// the paragraph naming the link flags, as a user copies it.
fn readme_c_example() -> String {
    let readme = include_str!("../../../README.md");
    let from = readme
        .find("link with `-Wl,--export=malloc -Wl,--export=free`")
        .expect("the README names the link flags of its C example");
    let block = &readme[from..];
    let start = block.find("```c\n").expect("a C block follows") + 5;
    let end = start + block[start..].find("```").expect("the block ends");
    block[start..end]
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The README's C example, built as it says (clang for wasm32-wasi, wasi-libc, malloc
/// and free exported), runs signed in a wasm enclave: it reads its 544-byte evidence
/// file and gets nonce-bound evidence that the tenant's `shelter verify` accepts with
/// its `mr_enclave` pinned and the binding recomputed (WAMR's `SHA-256(module hash ‖
/// "nonce")`).
#[test]
fn readme_c_example_builds_with_wasi_libc_and_attests() {
    let test = "readme_c_example_builds_with_wasi_libc_and_attests";
    if !ready(test) || !tool_or_skip(test, CLANG) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("attest.c");
    std::fs::write(&source, readme_c_example()).unwrap();
    let wasm = work.path().join("attest.wasm");
    let built = Command::new(CLANG)
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-Wl,--export=malloc",
            "-Wl,--export=free",
        ])
        .arg("-o")
        .arg(&wasm)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "clang: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let module = std::fs::read(&wasm).unwrap();
    let rune = Rune::new();
    let platform = work.path().join("platform");
    let b = Bundle::new(&["/app.wasm"])
        .private_rootfs()
        .enclave(&wasm_pal(), "");
    put_module(&b, &module);
    let mr = sim_sign_rootfs(work.path(), &b.path().join("rootfs"), "/app.wasm");

    let id = unique_id("wasm-readme-c");
    let (code, stdout, stderr) = run_with_platform(&rune, &b, &platform, &id);
    assert_eq!(code, 0, "{stderr}");
    let stdout = String::from_utf8(stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("evidence: 544 bytes"), "{stdout}");
    let json = lines.next().expect("the JSON line");
    collected_evidence_is_accepted(work.path(), json.as_bytes(), &module, &mr);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// Writes the name of every preopened directory (descriptors 3, 4, … until
/// `fd_prestat_get` fails), one a line.
const PREOPENS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $pget (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $pname (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $fd i32) (local $len i32)
    (local.set $fd (i32.const 3))
    (block $done (loop $next
      (br_if $done (call $pget (local.get $fd) (i32.const 0)))
      (local.set $len (i32.load (i32.const 4)))
      (drop (call $pname (local.get $fd) (i32.const 256) (local.get $len)))
      (i32.store8 (i32.add (i32.const 256) (local.get $len)) (i32.const 10))
      (i32.store (i32.const 16) (i32.const 256))
      (i32.store (i32.const 20) (i32.add (local.get $len) (i32.const 1)))
      (drop (call $w (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br $next)))))"#;

/// An image's symlinks to /proc, /sys and /dev, a sysfs mounted elsewhere by the
/// config, and directories with a procfs or sysfs mounted beneath them are never
/// preopened (a preopened `/proc/self/mem` would be a way out of the
/// sandbox, and to the platform key in the runtime's memory); a symlink to an ordinary
/// directory still is.
#[test]
fn wasm_never_gets_proc_sys_or_dev_through_links_or_mounts() {
    let test = "wasm_never_gets_proc_sys_or_dev_through_links_or_mounts";
    if !ready(test) {
        return;
    }
    let rune = Rune::new();
    let mut b = wasm_bundle(PREOPENS, &[], "debug");
    let rootfs = b.path().join("rootfs");
    for (link, target) in [
        ("p", "/proc"),
        ("s", "/sys/fs"),
        ("d", "/dev"),
        ("lnk", "/etc"),
    ] {
        std::os::unix::fs::symlink(target, rootfs.join(link)).unwrap();
    }
    // The host's sysfs bound elsewhere by the config: refused by its file system type.
    let mounts = b.spec["mounts"].as_array_mut().unwrap();
    mounts.push(serde_json::json!({
        "destination": "/pp", "type": "bind", "source": "/sys", "options": ["rbind", "ro"]
    }));
    // Beneath ordinary directories (docker's `-v /proc:/host/proc` shape): the whole
    // directory is left out, as wasmtime's path checks do not stop at mount points. A
    // harmless tmpfs beneath one leaves it preopened.
    mounts.push(serde_json::json!({
        "destination": "/data/proc", "type": "proc", "source": "proc"
    }));
    mounts.push(serde_json::json!({
        "destination": "/host/sys", "type": "bind", "source": "/sys", "options": ["rbind", "ro"]
    }));
    mounts.push(serde_json::json!({
        "destination": "/scratch/tmp", "type": "tmpfs", "source": "tmpfs"
    }));
    b.save();
    let id = unique_id("wasm-preopens");
    let (code, stdout, stderr) = run_bundle(&rune, &b, &id);
    assert_eq!(code, Some(0), "{stderr}");
    let seen: Vec<&str> = stdout.lines().collect();
    for never in [
        "/p", "/s", "/d", "/pp", "/proc", "/sys", "/dev", "/data", "/host",
    ] {
        assert!(!seen.contains(&never), "{never} preopened: {seen:?}");
    }
    for expected in ["/dev/attestation", "/etc", "/lnk", "/bin", "/scratch"] {
        assert!(
            seen.contains(&expected),
            "{expected} not preopened: {seen:?}"
        );
    }
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}

/// A module that fetches `uri` from the broker at `url` (trusting the PEM CA
/// certificates `ca`, which its data holds; empty: none) with `kbs_get_resource`: first
/// with room for 4 bytes (the length comes back, nothing is written: exit 96 if the
/// buffer changed), then with room for 4 KiB; writes the resource to stdout. Exits with
/// the errno of a failed call, 99 when the two lengths differ.
fn kbs_module(url: &str, ca: &[u8], uri: &str) -> String {
    kbs_module_measuring(url, ca, uri, "")
}

/// [`kbs_module`], running `prelude` (WAT instructions) in `_start` first.
fn kbs_module_measuring(url: &str, ca: &[u8], uri: &str, prelude: &str) -> String {
    let (ul, il, cl) = (url.len(), uri.len(), ca.len());
    assert!(cl < 32768, "the CA fits in the module's data");
    let ca: String = ca.iter().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
  (import "env" "kbs_get_resource" (func $get (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "extend_runtime_measurement" (func $extend (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{url}")
  (data (i32.const 2048) "{uri}")
  (data (i32.const 3072) "example.org Loaded model-v1 bad domain")
  (data (i32.const 16384) "{ca}")
  (func $fetch (param $cap i32) (result i32) (local $n i32)
    (local.set $n (call $get (i32.const 1024) (i32.const {ul}) (i32.const 16384) (i32.const {cl})
                             (i32.const 2048) (i32.const {il}) (i32.const 4096) (local.get $cap)))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then (call $exit (i32.sub (i32.const 0) (local.get $n)))))
    (local.get $n))
  (func (export "_start") (local $n i32)
    {prelude}
    (i32.store (i32.const 4096) (i32.const 0x5a5a5a5a))
    (local.set $n (call $fetch (i32.const 4)))
    (if (i32.ne (i32.load (i32.const 4096)) (i32.const 0x5a5a5a5a))
      (then (call $exit (i32.const 96))))
    (if (i32.ne (local.get $n) (call $fetch (i32.const 4096)))
      (then (call $exit (i32.const 99))))
    (i32.store (i32.const 0) (i32.const 4096)) (i32.store (i32.const 4) (local.get $n))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    )
}

/// An attested wasm app gets a secret from a real verdictd through the PAL's
/// `kbs_get_resource` (RCAR with the module's sim evidence, over HTTPS with the CA the
/// module carries): verdictd releases it to the signed module it admits, and refuses it
/// to the same module when it admits another measurement (EACCES, the broker's reason on
/// the process's stderr). Refused before any request: a URI that is not
/// `kbs:///repo/type/tag` and a broker named by host name (EINVAL: a name would be
/// resolved with the image's NSS libraries). A module carrying another CA fails the
/// TLS handshake (EIO).
#[test]
fn wasm_app_gets_a_secret_from_verdictd_after_attesting() {
    let test = "wasm_app_gets_a_secret_from_verdictd_after_attesting";
    if !ready(test) {
        return;
    }
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let secret: &[u8] = b"the wasm app's secret\n";
    let resource = "default/key/wasm-app";
    let uri = format!("kbs:///{resource}");
    // The module names the broker and its CA, so both are made before the module is.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("https://{listen}");
    let tls = work.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    test_support::verdictd::write_tls(&tls, &tls.join("ca.pem")).unwrap();
    let ca = std::fs::read(tls.join("ca.pem")).unwrap();
    let start = |dir: &str, admit: &str| {
        let dir = work.path().join(dir);
        std::fs::create_dir(&dir).unwrap();
        for f in ["server.pem", "server.key", "ca.pem"] {
            std::fs::copy(tls.join(f), dir.join(f)).unwrap();
        }
        test_support::Verdictd::start_with(
            &dir,
            &test_support::VerdictdOptions {
                admit,
                resources: &[(resource, secret)],
                listen: Some(&listen),
                tls: true,
                ..Default::default()
            },
        )
        .unwrap()
    };

    // The host's network: verdictd listens on the host's loopback.
    let host_network = |mut b: Bundle| {
        b.spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
        b.save();
        b
    };
    let b = host_network(wasm_bundle(&kbs_module(&url, &ca, &uri), &[], ""));
    let mr = sim_sign_rootfs(work.path(), &b.path().join("rootfs"), "/app.wasm");
    let kbs = start("admits", &mr);
    let id = unique_id("wasm-kbs");
    let (code, stdout, stderr) = run_with_platform(&rune, &b, &platform, &id);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, secret);
    assert!(kbs.log().contains("released"), "{}", kbs.log());
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    drop(kbs);

    // verdictd admits another measurement: the module's evidence does not affirm, and
    // the resource policy releases nothing to it.
    let other = "ab".repeat(48);
    let kbs = start("refuses", &other);
    let id = unique_id("wasm-kbs");
    let (code, stdout, stderr) = run_with_platform(&rune, &b, &platform, &id);
    assert_eq!(code, libc::EACCES, "{stderr}");
    assert_eq!(stdout, b"");
    let line = stderr
        .lines()
        .find(|l| l.contains("kbs_get_resource"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.starts_with(&format!(
            "liberpal-wasm: kbs_get_resource {uri} from {url}: "
        )),
        "{line}"
    );
    assert!(line.contains("denies"), "{line}");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    // Refused before anything is sent, each with its one line.
    let attested = || kbs.log().matches("\"attested\"").count();
    let before = attested();
    assert!(before > 0, "{}", kbs.log());
    let other_ca = work.path().join("other-tls");
    std::fs::create_dir(&other_ca).unwrap();
    test_support::verdictd::write_tls(&other_ca, &other_ca.join("ca.pem")).unwrap();
    let other_ca = std::fs::read(other_ca.join("ca.pem")).unwrap();
    let by_name = format!("https://localhost:{port}");
    let cases: [(&str, &[u8], &str, i32, String); 3] = [
        (
            &url,
            &ca,
            "kbs:///two/parts",
            libc::EINVAL,
            format!("liberpal-wasm: kbs_get_resource kbs:///two/parts from {url}: not a kbs:///repo/type/tag resource\n"),
        ),
        (
            &by_name,
            &ca,
            &uri,
            libc::EINVAL,
            format!("liberpal-wasm: kbs_get_resource {uri} from {by_name}: the broker's host \"localhost\" is not an IP address"),
        ),
        (
            &url,
            &other_ca,
            &uri,
            libc::EIO,
            format!("liberpal-wasm: kbs_get_resource {uri} from {url}: "),
        ),
    ];
    for (url, ca, uri, errno, said) in cases {
        let b = host_network(wasm_bundle(&kbs_module(url, ca, uri), &[], ""));
        sim_sign_rootfs(work.path(), &b.path().join("rootfs"), "/app.wasm");
        let id = unique_id("wasm-kbs");
        let (code, _, stderr) = run_with_platform(&rune, &b, &platform, &id);
        assert_eq!(code, errno, "{url} {uri}: {stderr}");
        assert!(stderr.contains(&said), "{said}\n{stderr}");
        assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
    }
    // None of them attested to the broker.
    assert_eq!(attested(), before, "{}", kbs.log());
}

/// What a broker's policy can require of a wasm enclave: the module's own event
/// (`extend_runtime_measurement`, CC MR 4), the launch the PAL recorded (CC MR 1), and
/// the init-data the enclave was given (`ENCLAVE_INIT_DATA`, bound into the config id).
/// verdictd replays the log against the report's registers; its Rego policy releases the
/// secret only with all three: with the init-data the module gets it, without it EACCES.
/// An event that is not one (a space in the domain) is refused with EINVAL.
#[test]
fn wasm_events_and_init_data_reach_the_brokers_policy() {
    let test = "wasm_events_and_init_data_reach_the_brokers_policy";
    if !ready(test) {
        return;
    }
    const POLICY: &str = r#"package policy
import rego.v1
default allow := false
evidence := input.submods.cpu0["ear.veraison.annotated-evidence"]
allow if {
    input.submods.cpu0["ear.status"] == "affirming"
    "example.org Loaded model-v1" in evidence.sim.sim_event_log
    some line in evidence.sim.sim_event_log
    startswith(line, "github.com/inclavare-containers/rune Launch ")
    contains(line, "/app.wasm")
    evidence.init_data_claims.mode == "wasm"
}
"#;
    // A plain string in [data] (only aa.toml and cdh.toml are read as TOML, as
    // trustee reads them).
    const INIT_DATA: &str =
        "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\nmode = \"wasm\"\n";
    // extend("bad domain", …) must fail with -EINVAL (exit 97 otherwise); then
    // extend("example.org", "Loaded", "model-v1") must succeed (exit 98 otherwise).
    const PRELUDE: &str = r#"
    (if (i32.ne (call $extend (i32.const 3100) (i32.const 10) (i32.const 3084) (i32.const 6)
                              (i32.const 3091) (i32.const 8)) (i32.const -22))
      (then (call $exit (i32.const 97))))
    (if (i32.ne (call $extend (i32.const 3072) (i32.const 11) (i32.const 3084) (i32.const 6)
                              (i32.const 3091) (i32.const 8)) (i32.const 0))
      (then (call $exit (i32.const 98))))"#;
    let rune = Rune::new();
    let work = tempfile::tempdir().unwrap();
    let platform = work.path().join("platform");
    let secret: &[u8] = b"released to the measured module\n";
    let resource = "default/key/wasm-measured";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let module = kbs_module_measuring(&url, b"", &format!("kbs:///{resource}"), PRELUDE);
    let mut b = wasm_bundle(&module, &[], "");
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.save();
    let mr = sim_sign_rootfs(work.path(), &b.path().join("rootfs"), "/app.wasm");
    let kbs = test_support::Verdictd::start_with(
        &work.path().join("verdictd"),
        &test_support::VerdictdOptions {
            admit: &mr,
            resources: &[(resource, secret)],
            listen: Some(&listen),
            resource_policy: Some(POLICY),
            ..Default::default()
        },
    )
    .unwrap();

    // Without init-data: the policy's last condition fails.
    let id = unique_id("wasm-rtmr");
    let (code, stdout, stderr) = run_with_platform(&rune, &b, &platform, &id);
    assert_eq!(code, libc::EACCES, "{stderr}");
    assert_eq!(stdout, b"");
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());

    b.spec["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(format!("ENCLAVE_INIT_DATA={INIT_DATA}")));
    b.save();
    let id = unique_id("wasm-rtmr");
    let (code, stdout, stderr) = run_with_platform(&rune, &b, &platform, &id);
    assert_eq!(code, 0, "{stderr}\n{}", kbs.log());
    assert_eq!(stdout, secret);
    assert_eq!(leftovers(rune.root.path(), &id), Vec::<String>::new());
}
