//! Confidential images: an enclave container whose program comes from an image that is
//! pulled, signature-checked, decrypted and unpacked **inside** the enclave.
//!
//! The container asks for it with `ENCLAVE_IMAGE` (or the `enclave.image` annotation)
//! next to `ENCLAVE_TYPE`. The host-side image (the bundle's rootfs) is then only a
//! boot image: rune gives the container an empty, memory-backed root private to its
//! mount namespace instead (the vendored libcontainer mounts a tmpfs over the rootfs
//! when it sees [`ROOTFS_TMPFS_ANNOTATION`]; `noswap` where the kernel takes it),
//! bind-mounts the boot program
//! (`enclave-boot`, installed beside the PAL) and its signed manifest into it, and makes
//! the boot program the enclave's program. The boot program attests to the KBS, pulls
//! the image into that root and hands over to the image's entrypoint in the same
//! enclave. Nothing of the image is ever written under the bundle or any host directory.
//!
//! | variable | annotation | meaning |
//! |---|---|---|
//! | `ENCLAVE_IMAGE` | `enclave.image` | the image reference, e.g. `registry.example/app:1` |
//! | `ENCLAVE_KBS_URL` | `enclave.kbs.url` | the KBS (verdictd or trustee) giving keys and policy |
//! | `ENCLAVE_KBS_CA` | `enclave.kbs.ca` | host path of PEM CA certificates for an `https://` KBS |
//! | `ENCLAVE_IMAGE_POLICY` | `enclave.image.policy` | `kbs:///…` resource holding the containers-policy.json |
//! | `ENCLAVE_IMAGE_DECRYPTION_KEYS` | `enclave.image.decryption.keys` | comma-separated `kbs:///…` resources holding JWE private keys (PEM or DER) |
//! | `ENCLAVE_IMAGE_LOOKASIDE` | `enclave.image.lookaside` | `http(s)://` base of the simple-signing lookaside store |
//! | `ENCLAVE_IMAGE_REGISTRY_AUTH` | `enclave.image.registry.auth` | `kbs:///…` resource holding the registry's credentials (a containers-auth.json / docker config.json `auths` file) |
//! | `ENCLAVE_IMAGE_REGISTRY_CA` | `enclave.image.registry.ca` | `kbs:///…` resource holding PEM CA certificates for an HTTPS registry |
//! | `ENCLAVE_IMAGE_INSECURE` | `enclave.image.insecure` | comma-separated registries reached over plain HTTP |
//! | `ENCLAVE_IMAGE_ROOT_SIZE` | `enclave.image.root.size` | the root tmpfs's `size=` (default: tmpfs's, half the RAM) |
//! | `ENCLAVE_IMAGE_MAX_LAYER_SIZE` | `enclave.image.max.layer.size` | the largest layer pulled, bytes with an optional k/m/g (1024) suffix (default 4g); a larger one is refused before it is downloaded |
//! | `ENCLAVE_IMAGE_BOOT` | `enclave.image.boot` | host path of the boot program (default: `enclave-boot` beside the PAL) |

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{LinuxNamespaceType, MountBuilder, Spec};

use crate::enclave::{setting, EnclaveConfig};
use crate::error::{Result, RuneError};

const IMAGE: (&str, &str) = ("ENCLAVE_IMAGE", "enclave.image");
const KBS_URL: (&str, &str) = ("ENCLAVE_KBS_URL", "enclave.kbs.url");
const KBS_CA: (&str, &str) = ("ENCLAVE_KBS_CA", "enclave.kbs.ca");
const POLICY: (&str, &str) = ("ENCLAVE_IMAGE_POLICY", "enclave.image.policy");
const DECRYPTION_KEYS: (&str, &str) = (
    "ENCLAVE_IMAGE_DECRYPTION_KEYS",
    "enclave.image.decryption.keys",
);
const LOOKASIDE: (&str, &str) = ("ENCLAVE_IMAGE_LOOKASIDE", "enclave.image.lookaside");
const REGISTRY_AUTH: (&str, &str) = ("ENCLAVE_IMAGE_REGISTRY_AUTH", "enclave.image.registry.auth");
const REGISTRY_CA: (&str, &str) = ("ENCLAVE_IMAGE_REGISTRY_CA", "enclave.image.registry.ca");
const INSECURE: (&str, &str) = ("ENCLAVE_IMAGE_INSECURE", "enclave.image.insecure");
const ROOT_SIZE: (&str, &str) = ("ENCLAVE_IMAGE_ROOT_SIZE", "enclave.image.root.size");
const BOOT: (&str, &str) = ("ENCLAVE_IMAGE_BOOT", "enclave.image.boot");
const MAX_LAYER_SIZE: (&str, &str) = (
    "ENCLAVE_IMAGE_MAX_LAYER_SIZE",
    "enclave.image.max.layer.size",
);
const SETTINGS: [(&str, &str); 12] = [
    IMAGE,
    KBS_URL,
    KBS_CA,
    POLICY,
    DECRYPTION_KEYS,
    LOOKASIDE,
    REGISTRY_AUTH,
    REGISTRY_CA,
    INSECURE,
    ROOT_SIZE,
    BOOT,
    MAX_LAYER_SIZE,
];

/// Where the boot program appears in the container.
pub const BOOT_PROGRAM: &str = "/.rune/enclave-boot";
/// Where the boot program's signed manifest appears in the container.
pub const BOOT_MANIFEST: &str = "/.rune/enclave-boot.manifest.json";
/// Where the KBS's CA certificates appear in the container.
pub const BOOT_KBS_CA: &str = "/.rune/kbs-ca.pem";
/// The file name of the boot program beside the PAL, and of its manifest.
pub const BOOT_FILE: &str = "enclave-boot";
pub const BOOT_MANIFEST_FILE: &str = "enclave-boot.manifest.json";
/// The annotation the vendored libcontainer reads: mount a tmpfs with these options
/// over the rootfs, in the container's mount namespace, before the spec's mounts.
pub use libcontainer::rootfs::ROOTFS_TMPFS_ANNOTATION;

/// What an enclave container asked for with `ENCLAVE_IMAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// The image reference as given (checked against the distribution grammar).
    pub reference: String,
    pub kbs_url: Option<String>,
    /// Host path of the KBS's CA certificates.
    pub kbs_ca: Option<PathBuf>,
    /// `kbs:///repo/type/tag` of the containers-policy.json.
    pub policy: Option<String>,
    /// `kbs:///repo/type/tag` resources holding JWE recipients' private keys.
    pub decryption_keys: Vec<String>,
    /// `http(s)://` base URL of a simple-signing lookaside store.
    pub lookaside: Option<String>,
    /// `kbs:///repo/type/tag` of the registry's credentials (containers-auth.json).
    pub registry_auth: Option<String>,
    /// `kbs:///repo/type/tag` of PEM CA certificates for an HTTPS registry.
    pub registry_ca: Option<String>,
    /// Registries (`host[:port]`) allowed over plain HTTP.
    pub insecure: Vec<String>,
    /// tmpfs `size=` of the root (bytes, or with a k/m/g/% suffix).
    pub root_size: Option<String>,
    /// The largest layer pulled, in bytes (the boot program's default when `None`).
    pub max_layer_size: Option<u64>,
    /// Host paths of the boot program and its signed manifest.
    pub boot: PathBuf,
    pub manifest: PathBuf,
}

/// Reads the confidential-image settings of an enclave container: `None` when it has no
/// `ENCLAVE_IMAGE`. Every setting is checked here, so a bad one fails `create` in one
/// line before anything exists.
pub fn config_from_spec(
    spec: &Spec,
    enclave: Option<&EnclaveConfig>,
) -> Result<Option<ImageConfig>> {
    check_setting_names(spec, enclave.is_some())?;
    let get = |pair| setting(spec, pair);
    let Some(reference) = get(IMAGE) else {
        return Ok(None);
    };
    let bad = |what: String| RuneError::Enclave(format!("enclave image: {what}"));
    let Some(enclave) = enclave else {
        return Err(bad(
            "ENCLAVE_IMAGE needs an enclave (set ENCLAVE_TYPE, e.g. sim)".into(),
        ));
    };
    if reference.starts_with("oci:") || reference.starts_with("oci-archive:") {
        // enclave-boot would read such a source from a path the host controls, and its
        // signature policy would judge it as `docker.io/library/oci`.
        return Err(bad(format!(
            "reference {reference:?}: an OCI layout or archive is not a source for a confidential image (the host controls its path); push it to a registry"
        )));
    }
    check_reference(&reference).map_err(|why| bad(format!("reference {reference:?}: {why}")))?;
    let kbs_url = get(KBS_URL);
    if let Some(url) = &kbs_url {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                bad(format!(
                    "KBS URL {url:?}: must start with http:// or https://"
                ))
            })?;
        if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
            return Err(bad(format!("KBS URL {url:?}: no host")));
        }
    }
    let kbs_ca = get(KBS_CA).map(PathBuf::from);
    if let Some(ca) = &kbs_ca {
        if !ca.is_absolute() || !ca.is_file() {
            return Err(bad(format!(
                "KBS CA {}: not an absolute path of a file on the host",
                ca.display()
            )));
        }
    }
    let policy = get(POLICY);
    if let Some(p) = &policy {
        check_resource_uri(p).map_err(|why| bad(format!("policy {p:?}: {why}")))?;
        if kbs_url.is_none() {
            return Err(bad(format!(
                "policy {p} is a KBS resource, but no KBS is configured (set ENCLAVE_KBS_URL)"
            )));
        }
    }
    let list = |pair| -> Vec<String> {
        get(pair)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let decryption_keys = list(DECRYPTION_KEYS);
    for k in &decryption_keys {
        check_resource_uri(k).map_err(|why| bad(format!("decryption key {k:?}: {why}")))?;
    }
    if let (Some(k), None) = (decryption_keys.first(), &kbs_url) {
        return Err(bad(format!(
            "decryption key {k} is a KBS resource, but no KBS is configured (set ENCLAVE_KBS_URL)"
        )));
    }
    let lookaside = get(LOOKASIDE);
    if let Some(l) = &lookaside {
        let rest = l
            .strip_prefix("http://")
            .or_else(|| l.strip_prefix("https://"))
            .unwrap_or_default();
        if rest.is_empty() || rest.starts_with('/') || l.chars().any(char::is_whitespace) {
            return Err(bad(format!(
                "lookaside {l:?}: expected an http:// or https:// URL"
            )));
        }
        if policy.is_none() {
            return Err(bad(format!(
                "lookaside {l} is only read to check signatures: set ENCLAVE_IMAGE_POLICY too"
            )));
        }
    }
    // Never host files: the host could lend the enclave its own registry (or a
    // man-in-the-middle's CA); both come from the KBS after attestation.
    let registry_auth = get(REGISTRY_AUTH);
    let registry_ca = get(REGISTRY_CA);
    for (what, uri) in [
        ("registry credentials", &registry_auth),
        ("registry CA", &registry_ca),
    ] {
        if let Some(u) = uri {
            check_resource_uri(u).map_err(|why| bad(format!("{what} {u:?}: {why}")))?;
            if kbs_url.is_none() {
                return Err(bad(format!(
                    "{what} {u} is a KBS resource, but no KBS is configured (set ENCLAVE_KBS_URL)"
                )));
            }
        }
    }
    let insecure = list(INSECURE);
    if let Some(h) = insecure
        .iter()
        .find(|h| h.contains('/') || h.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(bad(format!(
            "insecure registry {h:?}: expected host[:port]"
        )));
    }
    let registry = registry_of(&reference);
    if let Some(auth) = &registry_auth {
        // The credentials would go in clear text to whoever answers for that name.
        if let Some(h) = insecure
            .iter()
            .find(|h| *h == registry || (registry == "docker.io" && *h == "index.docker.io"))
        {
            return Err(bad(format!(
                "registry credentials {auth} are never sent over plain HTTP: remove {h} from ENCLAVE_IMAGE_INSECURE"
            )));
        }
    }
    let root_size = get(ROOT_SIZE);
    if let Some(s) = &root_size {
        let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || s.len() - digits.len() > 1
        {
            return Err(bad(format!(
                "root size {s:?}: expected bytes with an optional k, m, g or % suffix"
            )));
        }
    }
    let max_layer_size = match get(MAX_LAYER_SIZE) {
        None => None,
        Some(s) => Some(parse_bytes(&s).ok_or_else(|| {
            bad(format!(
                "max layer size {s:?}: expected bytes with an optional k, m or g suffix"
            ))
        })?),
    };
    let boot = match get(BOOT) {
        Some(p) => PathBuf::from(p),
        None => enclave
            .runtime_path
            .parent()
            .unwrap_or(Path::new("/"))
            .join(BOOT_FILE),
    };
    if !boot.is_absolute() || !boot.is_file() {
        return Err(bad(format!(
            "boot program {} not found (install it beside the PAL with `make install`, or set ENCLAVE_IMAGE_BOOT)",
            boot.display()
        )));
    }
    if let Some(interp) =
        elf_interpreter(&boot).map_err(|e| bad(format!("boot program {}: {e}", boot.display())))?
    {
        // It starts in the enclave's still-empty root, where no loader exists.
        return Err(bad(format!(
            "boot program {} is dynamically linked (interpreter {interp}), but it starts in an empty root: use the static build (`make install`, or target/release/enclave-boot as `make build` links it)",
            boot.display()
        )));
    }
    if kbs_url.is_some() && enclave.args.split_whitespace().any(|a| a == "debug") {
        // Not refused (a broker may admit debug enclaves in development), but verdictd's
        // and trustee's defaults refuse every key to one: say so before the 401.
        tracing::warn!(
            "enclave image: the enclave is a debug enclave (runtime arg debug, as `rune spec --enclave` writes it): a broker refuses keys to debug enclaves by default; remove debug from enclave.runtime.args"
        );
    }
    let manifest = boot.with_file_name(BOOT_MANIFEST_FILE);
    if !manifest.is_file() {
        return Err(bad(format!(
            "the boot program's signed manifest {} is missing (sign it with sim-sign)",
            manifest.display()
        )));
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true))
    {
        return Err(bad(
            "a read-only root is not supported: the image is unpacked into the root when the container starts".into(),
        ));
    }
    Ok(Some(ImageConfig {
        reference,
        kbs_url,
        kbs_ca,
        policy,
        decryption_keys,
        lookaside,
        registry_auth,
        registry_ca,
        insecure,
        root_size,
        max_layer_size,
        boot,
        manifest,
    }))
}

/// `N`, `Nk`, `Nm` or `Ng` (powers of 1024, either case) in bytes; `None` when
/// malformed or out of range.
fn parse_bytes(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Whether this kernel's tmpfs takes the `noswap` option (Linux 6.4+), asked of a
/// filesystem context (`fsopen`, `fsconfig`): nothing is mounted. An older kernel
/// answers `EINVAL` (unknown parameter), one without the new mount API `ENOSYS`.
fn tmpfs_takes_noswap() -> bool {
    use rustix::mount::{fsconfig_set_flag, fsopen, FsOpenFlags};
    fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)
        .and_then(|fc| fsconfig_set_flag(&fc, "noswap"))
        .is_ok()
}

/// Refuses a setting rune does not know, which would otherwise be ignored silently (a
/// misspelled `ENCLAVE_IMAGE_POLICI` runs the image unchecked): every `enclave.*`
/// annotation, and in an enclave container every `ENCLAVE_*` variable (rune takes them
/// all out of the workload's environment; in a plain container they are the workload's
/// own). The error names the setting and lists the known ones.
fn check_setting_names(spec: &Spec, enclave: bool) -> Result<()> {
    let known = || crate::enclave::SETTINGS.iter().chain(SETTINGS.iter());
    let env: &[String] = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().as_deref())
        .unwrap_or(&[]);
    if enclave {
        let unknown = env
            .iter()
            .map(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k))
            .find(|k| crate::enclave::is_enclave_var(k) && !known().any(|(v, _)| v == k));
        if let Some(name) = unknown {
            let names: Vec<&str> = known().map(|(v, _)| *v).collect();
            return Err(RuneError::Enclave(format!(
                "unknown enclave setting {name} in process.env (known: {})",
                names.join(", ")
            )));
        }
    }
    // The first in order: the same line for the same spec.
    let unknown = spec.annotations().as_ref().and_then(|a| {
        a.keys()
            .filter(|k| k.starts_with("enclave.") && !known().any(|(_, n)| n == k))
            .min()
    });
    if let Some(name) = unknown {
        let names: Vec<&str> = known().map(|(_, n)| *n).collect();
        return Err(RuneError::Enclave(format!(
            "unknown enclave annotation {name} (known: {})",
            names.join(", ")
        )));
    }
    Ok(())
}

impl ImageConfig {
    /// Rewrites `spec` (a private copy; the bundle is never written) and the PAL's args
    /// so that the boot program runs first in the enclave, in an empty memory-backed
    /// root, with the container's own `process.args` after `--`.
    pub fn apply(&self, spec: &mut Spec, enclave: &mut EnclaveConfig) -> Result<()> {
        let err = |e: String| RuneError::Enclave(format!("enclave image: {e}"));
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        let mut tmpfs = String::from("mode=755");
        // The plaintext root's pages never go to the host's swap where the kernel can
        // promise it: tmpfs `noswap` (Linux 6.4+), which the kernel refuses in a mount
        // made inside a user namespace. Elsewhere (Debian 12's 6.1) the README says to
        // run on nodes without swap.
        let user_ns = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
        if !user_ns && tmpfs_takes_noswap() {
            tmpfs.push_str(",noswap");
        }
        if let Some(size) = &self.root_size {
            tmpfs.push_str(",size=");
            tmpfs.push_str(size);
        }
        annotations.insert(ROOTFS_TMPFS_ANNOTATION.to_string(), tmpfs);
        spec.set_annotations(Some(annotations));

        let bind = |source: &Path, destination: &str| {
            MountBuilder::default()
                .destination(destination)
                .typ("bind")
                .source(source)
                .options(vec![
                    "rbind".to_string(),
                    "ro".to_string(),
                    "rprivate".to_string(),
                ])
                .build()
                .map_err(|e| err(format!("mount {destination}: {e}")))
        };
        // The boot files go first: later mounts (the user's) may not hide them.
        let mut mounts = vec![
            bind(&self.boot, BOOT_PROGRAM)?,
            bind(&self.manifest, BOOT_MANIFEST)?,
        ];
        if let Some(ca) = &self.kbs_ca {
            mounts.push(bind(ca, BOOT_KBS_CA)?);
        }
        mounts.extend(spec.mounts().clone().unwrap_or_default());
        spec.set_mounts(Some(mounts));

        let mut process = spec.process().clone().unwrap_or_default();
        let mut args = vec![
            BOOT_PROGRAM.to_string(),
            "--image".into(),
            self.reference.clone(),
        ];
        if let Some(url) = &self.kbs_url {
            args.extend(["--kbs".into(), url.clone()]);
        }
        if self.kbs_ca.is_some() {
            args.extend(["--kbs-ca".into(), BOOT_KBS_CA.into()]);
        }
        if let Some(p) = &self.policy {
            args.extend(["--policy".into(), p.clone()]);
        }
        for k in &self.decryption_keys {
            args.extend(["--decryption-key".into(), k.clone()]);
        }
        if let Some(l) = &self.lookaside {
            args.extend(["--lookaside".into(), l.clone()]);
        }
        if let Some(r) = &self.registry_auth {
            args.extend(["--registry-auth".into(), r.clone()]);
        }
        if let Some(r) = &self.registry_ca {
            args.extend(["--registry-ca".into(), r.clone()]);
        }
        for h in &self.insecure {
            args.extend(["--insecure-registry".into(), h.clone()]);
        }
        if let Some(n) = self.max_layer_size {
            args.extend(["--max-layer-size".into(), n.to_string()]);
        }
        args.push("--".into());
        args.extend(process.args().clone().unwrap_or_default());
        process.set_args(Some(args));
        spec.set_process(Some(process));

        if !enclave
            .args
            .split_whitespace()
            .any(|a| a.starts_with("manifest="))
        {
            if !enclave.args.is_empty() {
                enclave.args.push(' ');
            }
            enclave.args.push_str("manifest=");
            enclave.args.push_str(BOOT_MANIFEST);
        }
        Ok(())
    }
}

/// The ELF program interpreter (`PT_INTERP`) of the 64-bit little-endian executable at
/// `path`, `None` for a static (or static-pie) one (ELF-64 object file format, program
/// header table). Reads the header and program headers only, bounded.
fn elf_interpreter(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::{Error, ErrorKind, Read, Seek, SeekFrom};
    let invalid = |why: &str| Error::new(ErrorKind::InvalidData, why.to_string());
    let mut f = std::fs::File::open(path)?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h)
        .map_err(|_| invalid("not an ELF executable"))?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Err(invalid("not a 64-bit little-endian ELF executable"));
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(&h, 32), u16_at(&h, 54), u16_at(&h, 56));
    if phentsize < 56 || phnum > 256 {
        return Err(invalid("malformed program header table"));
    }
    let mut table = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
    f.seek(SeekFrom::Start(phoff))?;
    f.read_exact(&mut table)
        .map_err(|_| invalid("truncated program header table"))?;
    for ph in table.chunks(usize::from(phentsize)) {
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes(ph[..4].try_into().unwrap()) == PT_INTERP {
            let (off, size) = (u64_at(ph, 8), u64_at(ph, 32).min(4096));
            let mut name = vec![0u8; size as usize];
            f.seek(SeekFrom::Start(off))?;
            f.read_exact(&mut name)
                .map_err(|_| invalid("truncated interpreter name"))?;
            let name = String::from_utf8_lossy(&name);
            return Ok(Some(name.trim_end_matches('\0').to_string()));
        }
    }
    Ok(None)
}

/// The registry (`host[:port]`) of a reference that passed [`check_reference`]: its
/// first component when that is a domain (a `.` or `:`, or `localhost`), else Docker
/// Hub's `docker.io` (distribution/reference `normalize.go` `splitDockerDomain`).
fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Checks a reference against the distribution grammar
/// (distribution/reference `reference.go`): `[domain/]path[:tag][@digest]`.
pub fn check_reference(r: &str) -> std::result::Result<(), &'static str> {
    if r.is_empty() {
        return Err("empty");
    }
    if r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("spaces and control characters are not allowed");
    }
    let (name_tag, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d.split_once(':').ok_or("digest must be algorithm:hex")?;
        let len = match algo {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err("digest algorithm must be sha256 or sha512"),
        };
        if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("digest hex has the wrong length or is not lowercase hex");
        }
    }
    // A tag's colon comes after the last slash (a domain may have a port).
    let (name, tag) = match name_tag.rfind(':') {
        Some(at) if !name_tag[at..].contains('/') => (&name_tag[..at], Some(&name_tag[at + 1..])),
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err("tag must be up to 128 of [A-Za-z0-9_.-], not starting with . or -");
        }
    }
    if name.len() > 255 {
        return Err("name longer than 255 characters");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let (host, port) = match first.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (first, None),
            };
            if host.is_empty()
                || !host.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
            {
                return Err("registry host is not a valid host name");
            }
            if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
                return Err("registry port must be a number");
            }
            parts.remove(0);
        }
    }
    for p in &parts {
        if !path_component(p) {
            return Err(
                "repository path components must be lowercase [a-z0-9] separated by ., _, __ or -",
            );
        }
    }
    Ok(())
}

fn path_component(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() || !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or one or more `-`, between alphanumerics.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// Checks a `kbs://[host]/repo/type/tag` resource URI (what the attestation agent
/// fetches).
fn check_resource_uri(u: &str) -> std::result::Result<(), &'static str> {
    let rest = u
        .strip_prefix("kbs://")
        .ok_or("must be kbs:///<repo>/<type>/<tag>")?;
    let path = &rest[rest.find('/').ok_or("must be kbs:///<repo>/<type>/<tag>")? + 1..];
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() != 3
        || segments.iter().any(|s| {
            s.is_empty() || *s == "." || *s == ".." || s.chars().any(|c| c.is_whitespace())
        })
    {
        return Err("must be kbs:///<repo>/<type>/<tag>");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_the_distribution_grammar() {
        // Valid and invalid examples from distribution/reference's reference_test.go.
        for ok in [
            "test_com",
            "test.com:tag",
            "test.com:5000",
            "test.com/repo:tag",
            "test:5000/repo",
            "test:5000/repo:tag",
            "localhost/repo",
            "127.0.0.1:5000/test/app:enc",
            "busybox@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "a/a__b/c-----d/e.f:v1.0-rc_2",
        ] {
            assert_eq!(check_reference(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Uppercase:tag",
            "test:5000/Uppercase/lowercase:tag",
            "aa/asdf$$^/aa",
            "repo:-tag",
            "repo@sha256:ffff",
            "a//b",
            "a/b_",
            "a/b___c",
            "a b",
        ] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }

    /// A sim enclave whose PAL would be in `dir`.
    fn sim_enclave(dir: &Path) -> EnclaveConfig {
        EnclaveConfig {
            typ: crate::enclave::EnclaveType::Sim,
            runtime_path: dir.join("liberpal-sim.so"),
            args: String::new(),
            log_level: "info".into(),
            init_data: None,
        }
    }

    /// An enclave spec with `env`, whose boot program and manifest exist (in `dir`).
    fn checked(dir: &Path, env: &[&str]) -> std::result::Result<ImageConfig, String> {
        let boot = dir.join(BOOT_FILE);
        std::fs::write(&boot, static_elf()).unwrap();
        std::fs::write(dir.join(BOOT_MANIFEST_FILE), b"{}").unwrap();
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        let mut all = Vec::new();
        if !env.iter().any(|e| e.starts_with("ENCLAVE_IMAGE_BOOT=")) {
            all.push(format!("ENCLAVE_IMAGE_BOOT={}", boot.display()));
        }
        if !env.iter().any(|e| e.starts_with("ENCLAVE_IMAGE=")) {
            all.insert(0, "ENCLAVE_IMAGE=127.0.0.1:5000/test/app:v1".to_string());
        }
        all.extend(env.iter().map(|s| s.to_string()));
        process.set_env(Some(all));
        spec.set_process(Some(process));
        let mut root = spec.root().clone().unwrap();
        root.set_readonly(Some(false));
        spec.set_root(Some(root));
        let enclave = sim_enclave(dir);
        config_from_spec(&spec, Some(&enclave))
            .map(Option::unwrap)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_oci_layout_or_archive_on_the_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for r in ["oci:/srv/layout:v1", "oci-archive:/srv/app.tar"] {
            let err = checked(dir.path(), &[&format!("ENCLAVE_IMAGE={r}")]).unwrap_err();
            assert!(err.contains("push it to a registry"), "{r}: {err}");
        }
        // A registry reference whose repository happens to be called `oci` is not one.
        assert!(checked(dir.path(), &["ENCLAVE_IMAGE=127.0.0.1:5000/oci:v1"]).is_ok());
    }

    #[test]
    fn decryption_keys_and_lookaside_are_checked_at_create() {
        let dir = tempfile::tempdir().unwrap();
        let kbs = "ENCLAVE_KBS_URL=http://127.0.0.1:8080";
        let policy = "ENCLAVE_IMAGE_POLICY=kbs:///default/policy/image";
        let c = checked(
            dir.path(),
            &[
                kbs,
                policy,
                "ENCLAVE_IMAGE_DECRYPTION_KEYS=kbs:///default/image-key/jwe, kbs:///default/image-key/ec",
                "ENCLAVE_IMAGE_LOOKASIDE=http://127.0.0.1:8081/sigstore",
            ],
        )
        .unwrap();
        assert_eq!(
            c.decryption_keys,
            [
                "kbs:///default/image-key/jwe",
                "kbs:///default/image-key/ec"
            ]
        );
        assert_eq!(
            c.lookaside.as_deref(),
            Some("http://127.0.0.1:8081/sigstore")
        );
        // They reach the boot program as its flags (see enclave-boot's CLI).
        let mut spec = Spec::default();
        let mut enclave = sim_enclave(dir.path());
        c.apply(&mut spec, &mut enclave).unwrap();
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        let flags = args.join(" ");
        assert!(
            flags.contains(" --decryption-key kbs:///default/image-key/jwe --decryption-key kbs:///default/image-key/ec --lookaside http://127.0.0.1:8081/sigstore "),
            "{flags}"
        );
        for (env, want) in [
            (
                vec![kbs, "ENCLAVE_IMAGE_DECRYPTION_KEYS=/etc/key.pem"],
                "enclave image: decryption key \"/etc/key.pem\": must be kbs:///<repo>/<type>/<tag>",
            ),
            (
                vec!["ENCLAVE_IMAGE_DECRYPTION_KEYS=kbs:///default/image-key/jwe"],
                "enclave image: decryption key kbs:///default/image-key/jwe is a KBS resource, but no KBS is configured (set ENCLAVE_KBS_URL)",
            ),
            (
                vec![kbs, policy, "ENCLAVE_IMAGE_LOOKASIDE=file:///sigstore"],
                "enclave image: lookaside \"file:///sigstore\": expected an http:// or https:// URL",
            ),
            (
                vec![kbs, "ENCLAVE_IMAGE_LOOKASIDE=http://127.0.0.1:8081"],
                "enclave image: lookaside http://127.0.0.1:8081 is only read to check signatures: set ENCLAVE_IMAGE_POLICY too",
            ),
        ] {
            let err = checked(dir.path(), &env).unwrap_err();
            assert!(err.ends_with(want), "{env:?}: {err}");
        }
    }

    /// An ELF-64 header without program headers: what a static program's loader check
    /// sees first.
    fn static_elf() -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        (h[4], h[5]) = (2, 1);
        h[54] = 56; // e_phentsize; e_phnum 0
        h
    }

    /// The interpreter as binutils' `readelf -l` names it; static programs have none.
    #[test]
    fn the_boot_program_must_be_static() {
        let readelf = |p: &str| {
            let out = std::process::Command::new("readelf")
                .args(["-l", p])
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            text.lines()
                .find_map(|l| l.split_once("[Requesting program interpreter: "))
                .map(|(_, rest)| rest.trim_end_matches(']').to_string())
        };
        for program in ["/bin/sh", "/bin/busybox"] {
            if !Path::new(program).exists() {
                continue;
            }
            assert_eq!(
                elf_interpreter(Path::new(program)).unwrap(),
                readelf(program),
                "{program}"
            );
        }
        assert!(readelf("/bin/sh").is_some());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BOOT_MANIFEST_FILE), b"{}").unwrap();
        let boot = dir.path().join("dynamic-boot");
        std::fs::copy("/bin/sh", &boot).unwrap();
        let err = checked(
            dir.path(),
            &[&format!("ENCLAVE_IMAGE_BOOT={}", boot.display())],
        )
        .unwrap_err();
        assert!(
            err.contains("is dynamically linked (interpreter /lib64/ld-linux-x86-64.so.2)"),
            "{err}"
        );
        std::fs::write(&boot, b"#!/bin/sh\n").unwrap();
        let err = checked(
            dir.path(),
            &[&format!("ENCLAVE_IMAGE_BOOT={}", boot.display())],
        )
        .unwrap_err();
        assert!(err.ends_with("not an ELF executable"), "{err}");
    }

    #[test]
    fn registry_credentials_and_ca_are_kbs_resources_checked_at_create() {
        let dir = tempfile::tempdir().unwrap();
        let kbs = "ENCLAVE_KBS_URL=http://127.0.0.1:8080";
        let c = checked(
            dir.path(),
            &[
                kbs,
                "ENCLAVE_IMAGE_REGISTRY_AUTH=kbs:///default/registry/auth",
                "ENCLAVE_IMAGE_REGISTRY_CA=kbs:///default/registry/ca",
            ],
        )
        .unwrap();
        let mut spec = Spec::default();
        let mut enclave = sim_enclave(dir.path());
        c.apply(&mut spec, &mut enclave).unwrap();
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        assert!(
            args.join(" ").contains(" --registry-auth kbs:///default/registry/auth --registry-ca kbs:///default/registry/ca "),
            "{args:?}"
        );
        for (env, want) in [
            (
                vec![kbs, "ENCLAVE_IMAGE_REGISTRY_AUTH=/root/.docker/config.json"],
                "enclave image: registry credentials \"/root/.docker/config.json\": must be kbs:///<repo>/<type>/<tag>",
            ),
            (
                vec!["ENCLAVE_IMAGE_REGISTRY_CA=kbs:///default/registry/ca"],
                "enclave image: registry CA kbs:///default/registry/ca is a KBS resource, but no KBS is configured (set ENCLAVE_KBS_URL)",
            ),
            // Credentials never go over plain HTTP (review16b F2).
            (
                vec![
                    kbs,
                    "ENCLAVE_IMAGE_REGISTRY_AUTH=kbs:///default/registry/auth",
                    "ENCLAVE_IMAGE_INSECURE=127.0.0.1:5000",
                ],
                "enclave image: registry credentials kbs:///default/registry/auth are never sent over plain HTTP: remove 127.0.0.1:5000 from ENCLAVE_IMAGE_INSECURE",
            ),
        ] {
            let err = checked(dir.path(), &env).unwrap_err();
            assert!(err.ends_with(want), "{env:?}: {err}");
        }
        // Docker Hub under its other name; another registry over plain HTTP is no
        // concern of the credentials (they go to the image's registry only).
        let hub = checked(
            dir.path(),
            &[
                kbs,
                "ENCLAVE_IMAGE=busybox",
                "ENCLAVE_IMAGE_REGISTRY_AUTH=kbs:///default/registry/auth",
                "ENCLAVE_IMAGE_INSECURE=index.docker.io",
            ],
        )
        .unwrap_err();
        assert!(
            hub.ends_with("remove index.docker.io from ENCLAVE_IMAGE_INSECURE"),
            "{hub}"
        );
        checked(
            dir.path(),
            &[
                kbs,
                "ENCLAVE_IMAGE_REGISTRY_AUTH=kbs:///default/registry/auth",
                "ENCLAVE_IMAGE_INSECURE=127.0.0.1:5001",
            ],
        )
        .unwrap();
        // A misspelling is refused, not ignored (the pull would go out anonymously).
        let err = checked(
            dir.path(),
            &[
                kbs,
                "ENCLAVE_IMAGE_REGISTRY_AUTHS=kbs:///default/registry/auth",
            ],
        )
        .unwrap_err();
        assert!(
            err.contains("unknown enclave setting ENCLAVE_IMAGE_REGISTRY_AUTHS"),
            "{err}"
        );
    }

    #[test]
    fn unknown_settings_are_refused_naming_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let err = checked(
            dir.path(),
            &["ENCLAVE_IMAGE_POLICI=kbs:///default/policy/image"],
        )
        .unwrap_err();
        assert!(
            err.contains("unknown enclave setting ENCLAVE_IMAGE_POLICI in process.env (known: ENCLAVE_TYPE, "),
            "{err}"
        );
        assert!(err.contains(", ENCLAVE_IMAGE_POLICY, "), "{err}");
        // Known names pass (every one the module's table documents).
        assert!(checked(dir.path(), &["ENCLAVE_IMAGE_ROOT_SIZE=64m"]).is_ok());
    }

    #[test]
    fn resource_uris_need_three_segments() {
        assert!(check_resource_uri("kbs:///default/policy/image").is_ok());
        assert!(check_resource_uri("kbs://127.0.0.1:8080/default/policy/image").is_ok());
        assert!(check_resource_uri("kbs:///default/policy").is_err());
        assert!(check_resource_uri("https://x/default/policy/image").is_err());
        assert!(check_resource_uri("kbs:///default/../image").is_err());
    }
}
