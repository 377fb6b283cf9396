//! A marker the tenant puts into an image, and the search proving that its plaintext
//! never reached the host's disk.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{busybox_oci_tar, ImageBuilder};

/// A fresh random marker, `confidential-<24 hex>`, so that no file (a test's source or
/// binary, another run) holds it by chance.
pub fn random_marker() -> String {
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    format!("confidential-{}", hex::encode(b))
}

/// The busybox image plus one layer holding `marker` (and a newline) in `/etc/marker`,
/// with Cmd `cmd`, as the OCI layout `dir/layout` tagged `latest` (built with umoci, see
/// [`ImageBuilder`]); returns `<layout>:latest` (skopeo's `oci:` syntax without the
/// prefix).
pub fn marker_layout(dir: &Path, marker: &str, cmd: &[&str]) -> Result<String, String> {
    let layout = dir.join("layout");
    let busybox = busybox_oci_tar().map_err(|e| format!("busybox image: {e}"))?;
    let image = ImageBuilder::new()
        .base(&busybox)
        .file("etc/marker", format!("{marker}\n").as_bytes())
        .cmd(cmd)
        .build(&layout, "latest")?;
    Ok(image.trim_start_matches("oci:").to_string())
}

/// `places` without the repository's build directory (`target/`) where it lies under one
/// (a clone under `/tmp`): its gigabytes of build output are no host state, and grepping
/// them at every check took most of the image tests' time. Host-side state of every test
/// (rune roots, bundles, daemons, registries) is in temporary directories outside it;
/// `target/tenant*` is the tenant's side on purpose. Only the folders leading to
/// `target/` are opened up, their entries taken as they are (a symlink is passed on as
/// one, which `grep -r` does not follow).
fn scanned(places: &[&Path]) -> Vec<PathBuf> {
    let target = crate::tools::workspace_root().join("target");
    let skip = target.canonicalize().unwrap_or(target);
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = places
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
        .collect();
    assert!(
        !todo.contains(&skip),
        "{}: the build directory is not a place to scan",
        skip.display()
    );
    while let Some(p) = todo.pop() {
        if p == skip {
            continue;
        }
        if skip.starts_with(&p) {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(path);
                } else {
                    out.push(path);
                }
            }
        } else {
            out.push(p);
        }
    }
    out
}

/// Files under `places` that hold `marker` (GNU `grep -rlF`: symlinks not followed,
/// devices, fifos and sockets skipped), outside the repository's `target/`. Empty
/// means the plaintext is nowhere there.
pub fn marker_found(places: &[&Path], marker: &str) -> Vec<String> {
    grep_files(&scanned(places), &["-e".as_ref(), marker.as_ref()])
}

/// `grep -rlF --devices=skip PATTERNS -- places`: the files holding a pattern, as full
/// paths. grep runs once per parent directory of the places, in it, given the places'
/// names: an opened-up folder's entries include other tests' temporary directories, and
/// with their full paths on its command line a running grep would count as a process
/// left in them (`leftovers`). Status 2 (a file vanished while searching) still lists
/// the hits found.
fn grep_files(places: &[PathBuf], patterns: &[&std::ffi::OsStr]) -> Vec<String> {
    let mut by_parent: std::collections::BTreeMap<&Path, Vec<&std::ffi::OsStr>> =
        std::collections::BTreeMap::new();
    for p in places {
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => by_parent.entry(parent).or_default().push(name),
            _ => by_parent.entry(p).or_default().push(".".as_ref()),
        }
    }
    let mut found = Vec::new();
    for (parent, names) in by_parent {
        let out = Command::new("grep")
            .env("LC_ALL", "C")
            .current_dir(parent)
            .args(["-rlF", "--devices=skip"])
            .args(patterns)
            .arg("--")
            .args(names)
            .output()
            .expect("run grep");
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| parent.join(l).display().to_string()),
        );
    }
    found
}

/// What of an image's plaintext could reach the host besides the marker's own bytes: a
/// run of the compressed (gzip) layer blob that carries it, as a content store or a
/// staging file would hold it, and the layer's digests, compressed and uncompressed
/// (the diff_id), as content stores and snapshotters name what they hold.
#[derive(Debug, Clone)]
pub struct PlaintextTraces {
    /// The marker (file contents).
    pub marker: String,
    /// 32 bytes from the middle of the plaintext gzip blob, holding neither NUL nor
    /// newline (so that grep takes them as one pattern).
    pub blob_run: Vec<u8>,
    /// `sha256:` of the plaintext layer blob and its diff_id.
    pub digests: Vec<String>,
    /// The tenant's plaintext layout these come from: never counted as found (it may
    /// lie under a scanned place, as a clone of the repository under /tmp puts it).
    pub source: std::path::PathBuf,
}

impl PlaintextTraces {
    /// From the tenant's plain OCI layout `layout` (image `tag`, built by
    /// [`marker_layout`]: the marker is in the last layer), before any encryption: the
    /// layer blob and diff_id are the ones umoci wrote.
    pub fn of_layout(layout: &Path, tag: &str, marker: &str) -> Result<Self, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let json =
            |b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string());
        let blob = |d: &str| {
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let index = json(read(&layout.join("index.json"))?)?;
        let entry = index["manifests"]
            .as_array()
            .and_then(|m| {
                m.iter().find(|d| {
                    d["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
                })
            })
            .ok_or_else(|| format!("{}: no image {tag}", layout.display()))?;
        let manifest = json(read(&blob(entry["digest"].as_str().unwrap_or_default()))?)?;
        let layer = manifest["layers"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|l| l["digest"].as_str())
            .ok_or("the manifest has no layer")?
            .to_string();
        let config = json(read(&blob(
            manifest["config"]["digest"].as_str().unwrap_or_default(),
        ))?)?;
        let diff_id = config["rootfs"]["diff_ids"]
            .as_array()
            .and_then(|d| d.last())
            .and_then(|d| d.as_str())
            .ok_or("the config has no diff_ids")?
            .to_string();
        let gz = read(&blob(&layer))?;
        let start = (gz.len() / 2..gz.len().saturating_sub(32))
            .find(|&i| !gz[i..i + 32].iter().any(|b| matches!(b, 0 | b'\n')))
            .ok_or("no 32-byte run without NUL or newline in the layer blob")?;
        Ok(PlaintextTraces {
            marker: marker.to_string(),
            blob_run: gz[start..start + 32].to_vec(),
            digests: vec![layer, diff_id],
            source: layout
                .canonicalize()
                .unwrap_or_else(|_| layout.to_path_buf()),
        })
    }

    /// Where any of it is under `places`: files holding the marker or the blob run (GNU
    /// grep, bytes as they are, symlinks not followed, devices, fifos and sockets
    /// skipped), and files or directories whose name holds a digest's hex, outside the
    /// tenant's own layout ([`PlaintextTraces::source`]) and the repository's `target/`.
    /// Empty means none of the plaintext is there.
    pub fn found(&self, places: &[&Path]) -> Vec<String> {
        use std::os::unix::ffi::OsStrExt as _;
        let places = scanned(places);
        if places.is_empty() {
            return Vec::new();
        }
        let patterns = [
            "-e".as_ref(),
            self.marker.as_ref(),
            "-e".as_ref(),
            std::ffi::OsStr::from_bytes(&self.blob_run),
        ];
        let mut found: Vec<String> = grep_files(&places, &patterns)
            .into_iter()
            .filter(|l| !Path::new(l).starts_with(&self.source))
            .map(|l| format!("plaintext in {l}"))
            .collect();
        let hexes: Vec<&str> = self
            .digests
            .iter()
            .map(|d| d.split_once(':').map_or(d.as_str(), |(_, h)| h))
            .collect();
        // A root that an opened-up folder gave (an entry of /tmp, say) is checked by
        // name as its siblings would have been.
        for root in &places {
            let name = root.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some(h) = hexes
                .iter()
                .find(|h| name.as_deref().is_some_and(|n| n.contains(**h)))
            {
                found.push(format!("digest {h} names {}", root.display()));
            }
        }
        let mut stack = places;
        while let Some(d) = stack.pop() {
            if d.starts_with(&self.source) {
                continue;
            }
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(h) = hexes.iter().find(|h| name.contains(**h)) {
                    found.push(format!("digest {h} names {}", e.path().display()));
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        found
    }
}
