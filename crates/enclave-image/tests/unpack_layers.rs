//! Layer unpacking against real producers and consumers: layers made by umoci (and Python's
//! tarfile for what umoci does not write), applied in order and compared with `umoci unpack`
//! of the same image; zstd layers made by the zstd CLI; malicious layers made with Python's
//! tarfile at test time, each refused with one line (or confined to the root), with the root
//! and a sentinel directory beside it left as they were.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use enclave_image::unpack::{apply_layer, unpack_layer, UnpackError, UnpackOptions};
use sha2::{Digest, Sha256};

fn is_root() -> bool {
    rustix_euid() == 0
}

fn rustix_euid() -> u32 {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (ownership and device nodes)");
            return;
        }
    };
}

fn run(dir: &Path, cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One line per path: type, mode, owner, link target, content digest, link count.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(top: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for ent in fs::read_dir(dir).unwrap() {
        let p = ent.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let rel = p.strip_prefix(top).unwrap().to_string_lossy().into_owned();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            format!(
                "file {} nlink={}",
                hex::encode(Sha256::digest(fs::read(&p).unwrap())),
                m.nlink()
            )
        } else if ft.is_fifo() {
            "fifo".into()
        } else {
            format!("dev {:x}", m.rdev())
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.insert(
            rel,
            format!("{what} mode={mode:o} owner={}:{}", m.uid(), m.gid()),
        );
        if ft.is_dir() {
            walk(top, &p, out);
        }
    }
}

fn sha256_file(p: &Path) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(fs::read(p).unwrap()))
    )
}

struct Layer {
    media_type: String,
    blob: PathBuf,
    diff_id: String,
}

/// Layers of `img:<tag>` in an OCI layout, in order, with their diff_ids.
fn layers(layout: &Path) -> Vec<Layer> {
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(blob(manifest["config"]["digest"].as_str().unwrap()));
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    layers
        .iter()
        .zip(diff_ids)
        .map(|(l, d)| Layer {
            media_type: l["mediaType"].as_str().unwrap().into(),
            blob: blob(l["digest"].as_str().unwrap()),
            diff_id: d.as_str().unwrap().into(),
        })
        .collect()
}

fn write(p: &Path, data: &str, mode: u32, uid: u32, gid: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Builds a three-layer image with umoci: a base, a layer deleting `etc/motd` and adding a
/// hardlink and a symlink (§6.2), and a Python-made layer with an opaque directory whose new
/// entry precedes the marker.
fn build_image(t: &Path) {
    run(t, "umoci", &["init", "--layout", "img"]);
    run(t, "umoci", &["new", "--image", "img:v1"]);
    run(t, "umoci", &["unpack", "--image", "img:v1", "b"]);
    let r = t.join("b/rootfs");
    write(
        &r.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
        0o644,
        0,
        0,
    );
    write(&r.join("etc/motd"), "hello\n", 0o644, 0, 0);
    write(&r.join("etc/shadow"), "root:*:1::::::\n", 0o640, 0, 42);
    write(&r.join("data/a"), "A content\n", 0o644, 0, 0);
    write(&r.join("data/keep/f"), "old\n", 0o600, 1000, 1000);
    write(&r.join("usr/bin/tool"), "#!/bin/sh\n", 0o4755, 0, 0);
    write(&r.join("opt/old/x"), "x\n", 0o644, 0, 0);
    write(&r.join("opt/y"), "y\n", 0o644, 0, 0);
    write(&r.join("home/u/.profile"), "PS1=$\n", 0o640, 1000, 1000);
    std::os::unix::fs::chown(r.join("home/u"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(
        r.join("data/keep"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    run(t, "mkfifo", &[r.join("data/fifo").to_str().unwrap()]);
    run(t, "umoci", &["repack", "--image", "img:v1", "b"]);
    fs::remove_dir_all(t.join("b")).unwrap();

    run(t, "umoci", &["unpack", "--image", "img:v1", "b"]);
    let r = t.join("b/rootfs");
    fs::remove_file(r.join("etc/motd")).unwrap();
    fs::hard_link(r.join("data/a"), r.join("data/hl")).unwrap();
    std::os::unix::fs::symlink("../etc/passwd", r.join("data/sl")).unwrap();
    write(&r.join("data/keep/f"), "new\n", 0o600, 1000, 1000);
    fs::set_permissions(
        r.join("data/keep"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    run(t, "umoci", &["repack", "--image", "img:v1", "b"]);

    run(
        t,
        "python3",
        &[
            "-c",
            r#"
import tarfile, io
with tarfile.open('opq.tar', 'w', format=tarfile.PAX_FORMAT) as t:
    d = tarfile.TarInfo('opt'); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
    data = b'new\n'
    f = tarfile.TarInfo('opt/new'); f.size = len(data); f.mode = 0o644; t.addfile(f, io.BytesIO(data))
    w = tarfile.TarInfo('opt/.wh..wh..opq'); t.addfile(w, io.BytesIO(b''))
    data = b'with xattr\n'
    f = tarfile.TarInfo('opt/xa'); f.size = len(data); f.mode = 0o644
    f.pax_headers = {'SCHILY.xattr.user.test': 'v1'}
    t.addfile(f, io.BytesIO(data))
"#,
        ],
    );
    run(
        t,
        "umoci",
        &["raw", "add-layer", "--image", "img:v1", "opq.tar"],
    );
}

#[test]
fn layers_match_umoci_unpack_gzip_and_zstd() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let t = t.path();
    build_image(t);
    run(t, "umoci", &["unpack", "--image", "img:v1", "ref"]);
    let expected = snapshot(&t.join("ref/rootfs"));
    // The fixture must show what it claims to, in umoci's own result.
    assert!(!expected.contains_key("etc/motd"));
    assert!(expected["data/sl"].starts_with("symlink -> ../etc/passwd"));
    assert!(expected["data/hl"].contains("nlink=2"));
    assert!(
        expected.contains_key("opt/new")
            && !expected.contains_key("opt/old")
            && !expected.contains_key("opt/y")
    );

    let layers = layers(&t.join("img"));
    assert_eq!(layers.len(), 3);
    let opts = UnpackOptions {
        allow_devices: true,
        ..Default::default()
    };

    // gzip, as umoci wrote them.
    fs::create_dir_all(t.join("mine/rootfs")).unwrap();
    for l in &layers {
        assert_eq!(l.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
        unpack_layer(
            File::open(&l.blob).unwrap(),
            &l.media_type,
            &l.diff_id,
            &t.join("mine/rootfs"),
            &opts,
        )
        .unwrap();
    }
    assert_eq!(snapshot(&t.join("mine/rootfs")), expected);
    let ino = |p: &str| fs::metadata(t.join("mine/rootfs").join(p)).unwrap().ino();
    assert_eq!(ino("data/a"), ino("data/hl"));
    let xa = rustix::fs::getxattr(
        t.join("mine/rootfs/opt/xa"),
        "user.test",
        &mut [0u8; 16][..],
    );
    assert_eq!(
        xa.ok(),
        Some(2),
        "PAX xattr applied (tmpfs and ext4 take user.*)"
    );

    // The same layers recompressed by the zstd CLI; the first as two concatenated frames.
    fs::create_dir_all(t.join("z/rootfs")).unwrap();
    for (i, l) in layers.iter().enumerate() {
        let tar = t.join(format!("l{i}.tar"));
        fs::write(&tar, run(t, "gzip", &["-dc", l.blob.to_str().unwrap()])).unwrap();
        let zst = t.join(format!("l{i}.tar.zst"));
        if i == 0 {
            let bytes = fs::read(&tar).unwrap();
            let (a, b) = bytes.split_at(bytes.len() / 2);
            fs::write(t.join("half1"), a).unwrap();
            fs::write(t.join("half2"), b).unwrap();
            let mut z = run(t, "zstd", &["-q", "-c", "half1"]);
            z.extend(run(t, "zstd", &["-q", "-c", "half2"]));
            fs::write(&zst, z).unwrap();
        } else {
            run(
                t,
                "zstd",
                &[
                    "-q",
                    "-19",
                    tar.to_str().unwrap(),
                    "-o",
                    zst.to_str().unwrap(),
                ],
            );
        }
        assert_eq!(sha256_file(&tar), l.diff_id);
        let s = unpack_layer(
            File::open(&zst).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
            &l.diff_id,
            &t.join("z/rootfs"),
            &opts,
        )
        .unwrap();
        assert_eq!(s.tar_bytes, fs::metadata(&tar).unwrap().len());
    }
    assert_eq!(snapshot(&t.join("z/rootfs")), expected);
    // No staging directory left beside the roots.
    for d in ["mine", "z"] {
        let names: Vec<_> = fs::read_dir(t.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("rootfs")]);
    }
}

/// A reader that fails at EOF, as the ocicrypt reader does on a bad HMAC.
struct FailAtEof<R>(R);
impl<R: Read> Read for FailAtEof<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(io::Error::other("HMAC mismatch for layer sha256:feed")),
            n => Ok(n),
        }
    }
}

/// Owners only a PAX record can carry (ids over 2097151, the ustar octal limit; Python's
/// tarfile writes them there): applied as GNU tar applies them.
#[test]
fn pax_owners_are_applied_as_gnu_tar_applies_them() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let t = t.path();
    run(
        t,
        "python3",
        &[
            "-c",
            r#"
import tarfile, io
with tarfile.open('big.tar', 'w', format=tarfile.PAX_FORMAT) as t:
    d = tarfile.TarInfo('d'); d.type = tarfile.DIRTYPE; d.mode = 0o755; d.uid = 3000000; d.gid = 3000001; t.addfile(d)
    data = b'x\n'
    f = tarfile.TarInfo('d/f'); f.size = len(data); f.mode = 0o640; f.uid = 4000000; f.gid = 12; t.addfile(f, io.BytesIO(data))
    f = tarfile.TarInfo('small'); f.size = len(data); f.mode = 0o644; f.uid = 1000; f.gid = 1000; t.addfile(f, io.BytesIO(data))
"#,
        ],
    );
    for d in ["gnu", "mine"] {
        fs::create_dir(t.join(d)).unwrap();
    }
    run(t, "tar", &["--same-owner", "-xpf", "big.tar", "-C", "gnu"]);
    let expected = snapshot(&t.join("gnu"));
    assert!(expected["d/f"].contains("4000000:12"), "{expected:?}");
    unpack_layer(
        File::open(t.join("big.tar")).unwrap(),
        "application/vnd.oci.image.layer.v1.tar",
        &sha256_file(&t.join("big.tar")),
        &t.join("mine"),
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(snapshot(&t.join("mine")), expected);
}

#[test]
fn diff_id_mismatch_and_late_reader_failure_leave_root_unchanged() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let t = t.path();
    build_image(t);
    let layers = layers(&t.join("img"));
    let root = t.join("out/rootfs");
    fs::create_dir_all(&root).unwrap();
    let opts = UnpackOptions {
        allow_devices: true,
        ..Default::default()
    };
    unpack_layer(
        File::open(&layers[0].blob).unwrap(),
        &layers[0].media_type,
        &layers[0].diff_id,
        &root,
        &opts,
    )
    .unwrap();
    let before = snapshot(&t.join("out"));
    let l = &layers[1];

    let err = unpack_layer(
        File::open(&l.blob).unwrap(),
        &l.media_type,
        &layers[0].diff_id,
        &root,
        &opts,
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::DiffIdMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&l.diff_id) && !err.to_string().contains('\n'),
        "{err}"
    );
    assert_eq!(snapshot(&t.join("out")), before);

    let err = unpack_layer(
        FailAtEof(File::open(&l.blob).unwrap()),
        &l.media_type,
        &l.diff_id,
        &root,
        &opts,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "reading the layer stream: HMAC mismatch for layer sha256:feed"
    );
    assert_eq!(snapshot(&t.join("out")), before);

    // Flipped byte in the compressed blob: gzip's CRC or the diff_id catches it.
    let mut bytes = fs::read(&l.blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let err = unpack_layer(&bytes[..], &l.media_type, &l.diff_id, &root, &opts).unwrap_err();
    assert!(!err.to_string().contains('\n'), "{err}");
    assert_eq!(snapshot(&t.join("out")), before);
    // Such bytes from a reader that fails at its EOF, as a tampered ciphertext decrypts to
    // corrupt gzip: whichever check gives up first (tar, diff_id, or gzip's own CRC-32 in
    // its trailer, RFC 1952, before the reader's EOF), the reader's verdict is reported.
    let mut bad_crc = fs::read(&l.blob).unwrap();
    let crc = bad_crc.len() - 8;
    bad_crc[crc] ^= 0x01;
    for tampered in [&bytes, &bad_crc] {
        let err = unpack_layer(
            FailAtEof(&tampered[..]),
            &l.media_type,
            &l.diff_id,
            &root,
            &opts,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading the layer stream: HMAC mismatch for layer sha256:feed"
        );
        assert_eq!(snapshot(&t.join("out")), before);
    }

    // Limits.
    let small = UnpackOptions {
        max_uncompressed_bytes: 4096,
        ..opts.clone()
    };
    let err = unpack_layer(
        File::open(&l.blob).unwrap(),
        &l.media_type,
        &l.diff_id,
        &root,
        &small,
    )
    .unwrap_err();
    assert!(
        matches!(err, UnpackError::TooLarge { limit: 4096 }),
        "{err}"
    );
    let few = UnpackOptions {
        max_entries: 2,
        ..opts.clone()
    };
    let err = unpack_layer(
        File::open(&l.blob).unwrap(),
        &l.media_type,
        &l.diff_id,
        &root,
        &few,
    )
    .unwrap_err();
    assert!(
        matches!(err, UnpackError::TooManyEntries { limit: 2 }),
        "{err}"
    );
    assert_eq!(snapshot(&t.join("out")), before);
}

/// Writes one malicious tar per case into `dir`, with Python's tarfile.
const MALICIOUS: &str = r#"
import tarfile, io, sys
out, sentinel = sys.argv[1], sys.argv[2]
def f(name, data=b'pwned\n', **kw):
    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644
    for k, v in kw.items(): setattr(ti, k, v)
    return ti, io.BytesIO(data)
def link(name, target, kind=tarfile.SYMTYPE):
    ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = target; return ti, None
def d(name, mode=0o755):
    ti = tarfile.TarInfo(name); ti.type = tarfile.DIRTYPE; ti.mode = mode; return ti, None
cases = {
  'dotdot': [f('ok'), f('../x')],
  'dotdot_inner': [f('a/../../x')],
  'bare_wh': [f('ok'), f('etc/.wh.')],
  'hardlink_out': [f('ok'), link('hl', '../sentinel/file', tarfile.LNKTYPE)],
  'hardlink_abs': [f('ok'), link('hl', '/etc/passwd', tarfile.LNKTYPE)],
  'hardlink_via_symlink': [link('lnk', '../sentinel'), link('hl', 'lnk/file', tarfile.LNKTYPE)],
  'device': [f('ok'), (lambda ti: (ti, None))(tarfile.TarInfo('dev/null2'))],
  'fifo': [f('ok'), (lambda ti: (ti, None))(tarfile.TarInfo('p'))],
  'unknown_type': [f('ok'), (lambda ti: (ti, None))(tarfile.TarInfo('weird'))],
  'pax_size': [f('smuggle', b'hello', pax_headers={'size': '1024'}), f('after')],
  'pax_bad_uid': [f('x', pax_headers={'uid': 'zero'})],
  'root_not_dir': [f('./')],
  # Confined, not refused:
  'abs_name': [f('/abs')],
  'symlink_then_file': [link('sl', '../sentinel/file'), f('sl')],
  'symlink_dir_then_file': [link('d', '../sentinel'), f('d/f')],
  'abs_symlink_dir_then_file': [link('d', sentinel), f('d/f')],
  'dotdot_symlink': [link('sl', '..'), f('sl/x/y')],
  'symlink_dir_chmod': [link('d', '../sentinel'), d('d', 0o777)],
  'hardlink_then_file': [f('etc/passwd-copy'), link('hl', 'etc/passwd', tarfile.LNKTYPE), f('hl', b'changed\n')],
  'duplicates': [f('a', b'1'), d('a'), f('a/b'), f('a', b'2')],
  'whiteouts': [f('etc/.wh.passwd'), f('etc/passwd', b'new\n'), d('gone/'), f('.wh.gone'), f('etc/.wh..wh..opq'), f('etc/group')],
}
cases['device'][1][0].type = tarfile.CHRTYPE; cases['device'][1][0].devmajor = 1; cases['device'][1][0].devminor = 3
cases['fifo'][1][0].type = tarfile.FIFOTYPE
cases['unknown_type'][1][0].type = b'Z'
for name, entries in cases.items():
    with tarfile.open(f'{out}/{name}.tar', 'w', format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, data)
"#;

struct Bed {
    _t: tempfile::TempDir,
    top: PathBuf,
    root: PathBuf,
    tars: PathBuf,
}

/// A root with a lower layer (`etc/passwd`, `etc/hosts`, `gone/x`), a sentinel directory
/// beside it, and the malicious tars in a directory of their own.
fn bed() -> Bed {
    let t = tempfile::tempdir().unwrap();
    let top = t.path().join("bed");
    let root = top.join("root");
    let tars = t.path().join("tars");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("gone")).unwrap();
    fs::create_dir_all(&tars).unwrap();
    fs::write(root.join("etc/passwd"), "orig\n").unwrap();
    fs::write(root.join("etc/hosts"), "localhost\n").unwrap();
    fs::write(root.join("gone/x"), "x\n").unwrap();
    fs::create_dir_all(top.join("sentinel")).unwrap();
    fs::write(top.join("sentinel/file"), "secret\n").unwrap();
    fs::set_permissions(
        top.join("sentinel"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let sentinel = top.join("sentinel");
    run(
        t.path(),
        "python3",
        &[
            "-c",
            MALICIOUS,
            tars.to_str().unwrap(),
            sentinel.to_str().unwrap(),
        ],
    );
    Bed {
        _t: t,
        top,
        root,
        tars,
    }
}

#[test]
fn malicious_layers_are_refused_with_one_line_and_nothing_changes() {
    let b = bed();
    let opts = UnpackOptions {
        preserve_ownership: is_root(),
        ..Default::default()
    };
    for (case, mention) in [
        ("dotdot", "\"../x\": name contains `..`"),
        ("dotdot_inner", "\"a/../../x\""),
        ("bare_wh", "\"etc/.wh.\": whiteout names nothing"),
        (
            "hardlink_out",
            "\"hl\": hardlink target \"../sentinel/file\"",
        ),
        (
            "hardlink_abs",
            "\"hl\": hardlink target \"/etc/passwd\" is absolute",
        ),
        (
            "hardlink_via_symlink",
            "\"hl\": hardlink target \"lnk/file\" does not exist",
        ),
        ("device", "\"dev/null2\": device node refused"),
        ("fifo", "\"p\": fifo refused"),
        ("unknown_type", "\"weird\": unsupported tar entry type 'Z'"),
        (
            "pax_size",
            "\"smuggle\": PAX size 1024 disagrees with the header's size 5",
        ),
        ("pax_bad_uid", "\"x\": PAX header: malformed uid"),
        ("root_not_dir", "must be a directory"),
    ] {
        let before = snapshot(&b.top);
        let err = apply_layer(
            File::open(b.tars.join(format!("{case}.tar"))).unwrap(),
            &b.root,
            &opts,
        )
        .expect_err(case)
        .to_string();
        assert!(err.contains(mention), "{case}: {err}");
        assert!(!err.contains('\n'), "{case}: {err}");
        // Root unchanged (`ok` of the same layer not published), sentinel untouched, staging gone.
        assert_eq!(snapshot(&b.top), before, "{case}");
    }
}

#[test]
fn link_tricks_stay_inside_the_root() {
    let b = bed();
    let opts = UnpackOptions {
        preserve_ownership: is_root(),
        ..Default::default()
    };
    let sentinel_before: BTreeMap<_, _> = snapshot(&b.top)
        .into_iter()
        .filter(|(k, _)| k.starts_with("sentinel"))
        .collect();
    let apply = |case: &str| {
        apply_layer(
            File::open(b.tars.join(format!("{case}.tar"))).unwrap(),
            &b.root,
            &opts,
        )
        .unwrap_or_else(|e| panic!("{case}: {e}"))
    };
    let read = |p: &str| fs::read_to_string(b.root.join(p)).unwrap();
    let kind = |p: &str| fs::symlink_metadata(b.root.join(p)).unwrap().file_type();

    apply("abs_name");
    assert_eq!(read("abs"), "pwned\n");
    // RUSTSEC-2018-0002: the file replaces the symlink, never writes through it.
    apply("symlink_then_file");
    assert!(kind("sl").is_file());
    // Parents through a symlink to `../sentinel` or to the sentinel's absolute path resolve
    // inside the root, as the workload will see them.
    apply("symlink_dir_then_file");
    assert_eq!(read("sentinel/f"), "pwned\n");
    fs::remove_dir_all(b.root.join("sentinel")).unwrap();
    apply("abs_symlink_dir_then_file");
    let abs = b.top.join("sentinel");
    assert_eq!(
        fs::read_to_string(b.root.join(abs.strip_prefix("/").unwrap()).join("f")).unwrap(),
        "pwned\n"
    );
    // RUSTSEC-2021-0080: `sl -> ..` then `sl/x/y` stays in the root.
    apply("dotdot_symlink");
    assert_eq!(read("x/y"), "pwned\n");
    // RUSTSEC-2026-0067: a directory entry over a symlink replaces it; no chmod through it.
    apply("symlink_dir_chmod");
    assert!(kind("d").is_dir());
    assert_eq!(
        fs::metadata(b.root.join("d")).unwrap().mode() & 0o7777,
        0o777
    );
    // A file entry over a hardlink replaces the link: the other name keeps its content.
    apply("hardlink_then_file");
    assert_eq!(read("hl"), "changed\n");
    assert_eq!(read("etc/passwd"), "orig\n");
    // Duplicates: the last entry wins.
    apply("duplicates");
    assert_eq!(read("a"), "2");
    // Whiteouts act on the lower layers only, whatever the order in the tar.
    apply("whiteouts");
    assert_eq!(read("etc/passwd"), "new\n");
    assert_eq!(read("etc/group"), "pwned\n");
    assert!(
        !b.root.join("etc/hosts").exists(),
        "opaque etc hides lower etc/hosts"
    );
    assert!(
        !b.root.join("gone/x").exists() && b.root.join("gone").is_dir(),
        "lower gone/ removed, this layer's kept"
    );

    let sentinel_after: BTreeMap<_, _> = snapshot(&b.top)
        .into_iter()
        .filter(|(k, _)| k.starts_with("sentinel"))
        .collect();
    assert_eq!(sentinel_after, sentinel_before);
    let names: Vec<_> = fs::read_dir(&b.top)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only root and sentinel beside each other: {names:?}"
    );
}

#[test]
fn devices_with_allow_devices() {
    need_root!();
    let b = bed();
    let opts = UnpackOptions {
        allow_devices: true,
        ..Default::default()
    };
    apply_layer(
        File::open(b.tars.join("device.tar")).unwrap(),
        &b.root,
        &opts,
    )
    .unwrap();
    let m = fs::symlink_metadata(b.root.join("dev/null2")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    apply_layer(File::open(b.tars.join("fifo.tar")).unwrap(), &b.root, &opts).unwrap();
    assert!(fs::symlink_metadata(b.root.join("p"))
        .unwrap()
        .file_type()
        .is_fifo());
}

/// A root that is a tmpfs of its own, as enclave-boot's is, with a host directory
/// (`volume`, holding `precious`) bind-mounted at `vol` inside it, and
/// `.rune/staging` for staging as enclave-boot stages. Unmounted on drop.
struct MountedVolume {
    t: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl MountedVolume {
    fn new() -> MountedVolume {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("volume");
        fs::create_dir_all(&root).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs", root.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        let bed = MountedVolume {
            t,
            root: root.clone(),
            outside: outside.clone(),
        };
        fs::create_dir_all(root.join("vol")).unwrap();
        fs::create_dir_all(root.join(".rune/staging")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("precious"), "volume data\n").unwrap();
        let status = Command::new("mount")
            .args([
                "--bind",
                outside.to_str().unwrap(),
                root.join("vol").to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
        bed
    }

    fn opts(&self) -> UnpackOptions {
        UnpackOptions {
            staging_parent: Some(self.root.join(".rune/staging")),
            ..Default::default()
        }
    }

    /// Writes a tar with Python's tarfile; `entries` is Python using the helpers of
    /// [`MALICIOUS`] (`f`, `link`, `d`), e.g. `[f('a'), link('l', '/vol')]`.
    fn tar(&self, name: &str, entries: &str) -> PathBuf {
        let tar = self.t.path().join(format!("{name}.tar"));
        let script = format!(
            "{}\nwith tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:\n    for ti, data in {entries}: t.addfile(ti, data)\n",
            HELPERS
        );
        run(
            self.t.path(),
            "python3",
            &["-c", &script, tar.to_str().unwrap()],
        );
        tar
    }
}

impl Drop for MountedVolume {
    fn drop(&mut self) {
        for m in [self.root.join("vol"), self.root.clone()] {
            let _ = Command::new("umount").arg(&m).status();
        }
    }
}

/// The tar helpers of [`MALICIOUS`], on their own.
const HELPERS: &str = r#"
import tarfile, io, sys
def f(name, data=b'pwned\n', **kw):
    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644
    for k, v in kw.items(): setattr(ti, k, v)
    return ti, io.BytesIO(data)
def link(name, target, kind=tarfile.SYMTYPE):
    ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = target; return ti, None
def d(name, mode=0o755):
    ti = tarfile.TarInfo(name); ti.type = tarfile.DIRTYPE; ti.mode = mode; return ti, None
"#;

/// Whiteouts and opaque markers act on the image's lower layers only (OCI image-spec
/// "Whiteouts"): what the runtime mounted in the root before the image was unpacked (a
/// volume, `/dev`, a bind-mounted file) is the container's and stays, as with runtimes
/// that mount over an unpacked image; so does a staging directory inside the root
/// (enclave-boot's `/.rune/staging`). A root-level opaque marker, a whiteout of the
/// mount point and whiteouts inside it leave the volume's files alone and still hide
/// the lower layers' files. (A mount point is told by its filesystem: the root is a tmpfs
/// of its own, as enclave-boot's is.)
#[test]
fn whiteouts_do_not_reach_through_mount_points() {
    need_root!();
    let bed = MountedVolume::new();
    let (root, outside) = (&bed.root, &bed.outside);
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), "lower\n").unwrap();
    let tar = bed.tar(
        "layer",
        "[f(n, b'') for n in ['.wh..wh..opq', 'vol/.wh.precious', 'vol/.wh..wh..opq', \
         '.wh.vol', '.rune/.wh.staging', '.wh..rune']] + [f('new', b'from the layer\\n')]",
    );
    apply_layer(File::open(&tar).unwrap(), root, &bed.opts()).unwrap();
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "volume data\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("vol/precious")).unwrap(),
        "volume data\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("new")).unwrap(),
        "from the layer\n"
    );
    assert!(
        !root.join("etc/passwd").exists(),
        "the lower layer's file is hidden"
    );
    assert!(
        root.join(".rune/staging").is_dir(),
        "the staging directory stays"
    );
}

/// Image files never reach a host volume mounted in the root (issue 16: the image's
/// plaintext is never written to the host's disk; review G6). The expected outcome is
/// what the OCI runtime spec's mounts give runc over an unpacked image: a mount covers
/// what the image has at and below its destination, so the image's `vol/…` is never
/// seen and the host directory never changes. Entries at or below a mount point are
/// therefore skipped, not refused: images routinely carry files where runtimes mount
/// (`/etc/hosts`, `/dev/…`, a `VOLUME` directory with defaults), and refusing them
/// would refuse those images. The rest of the layer applies.
///
/// A path that reaches the mount only through a lower layer's symlink (`l -> /vol`,
/// then `l/x` in a later layer) would need the file moved onto the volume's
/// filesystem: `rename(2)` refuses that (EXDEV), the layer fails in one line naming
/// the entry, and nothing of it is published. In one layer, the same symlink and file
/// stage as `vol/x` (paths resolve inside the layer first) and are skipped as above.
/// In every case the host directory is byte-for-byte, mode and owner what it was.
#[test]
fn image_files_never_reach_a_mounted_volume() {
    need_root!();
    let bed = MountedVolume::new();
    let (root, outside) = (&bed.root, &bed.outside);
    let volume_before = snapshot(outside);
    let opts = bed.opts();

    // Entries at and below the mount point, and a directory entry that would chmod it.
    let tar = bed.tar(
        "below",
        "[f('ok', b'ok\\n'), d('vol', 0o700), f('vol/new-file'), \
         f('vol/precious', b'overwritten\\n'), f('vol/sub/deep'), \
         link('vol/hl', 'ok', tarfile.LNKTYPE)]",
    );
    let stats = apply_layer(File::open(&tar).unwrap(), root, &opts).unwrap();
    assert_eq!(stats.entries, 6);
    assert_eq!(snapshot(outside), volume_before);
    assert_eq!(fs::read_to_string(root.join("ok")).unwrap(), "ok\n");
    assert_eq!(
        fs::read_to_string(root.join("vol/precious")).unwrap(),
        "volume data\n"
    );

    // A symlink to the mount point and a file through it, in one layer.
    let tar = bed.tar(
        "same_layer",
        "[link('l', '/vol'), f('l/x'), link('r', 'vol'), f('r/y/z')]",
    );
    apply_layer(File::open(&tar).unwrap(), root, &opts).unwrap();
    assert_eq!(snapshot(outside), volume_before);
    assert_eq!(fs::read_link(root.join("l")).unwrap(), Path::new("/vol"));

    // The symlink in a lower layer, files through it in the next: to the mount point,
    // and to a directory the volume does not have (which would be made on it).
    let tar = bed.tar(
        "lower_links",
        "[link('l2', '/vol'), link('l3', '/vol/made-here/deeper')]",
    );
    apply_layer(File::open(&tar).unwrap(), root, &opts).unwrap();
    for (case, name, entries) in [
        ("through", "l2", "[f('ok2'), f('l2/x'), f('l2/sub/y')]"),
        ("through_missing", "l3", "[f('ok2'), f('l3/x')]"),
    ] {
        let root_before = snapshot(root);
        let tar = bed.tar(case, entries);
        let err = apply_layer(File::open(&tar).unwrap(), root, &opts)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("publishing \"{name}\": ")),
            "{case}: {err}"
        );
        assert!(err.contains("another filesystem"), "{case}: {err}");
        assert!(!err.contains('\n'), "{case}: {err}");
        assert_eq!(snapshot(outside), volume_before, "{case}");
        // `ok2` may have moved in before the refused entry (publishing is not atomic
        // against a filesystem's refusal; the module docs say so): nothing else did.
        let mut after = snapshot(root);
        after.remove("ok2");
        assert_eq!(after, root_before, "{case}");
    }
    assert_eq!(
        fs::read_dir(root.join(".rune/staging")).unwrap().count(),
        0,
        "no staging left"
    );
}
