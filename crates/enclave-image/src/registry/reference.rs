//! Image references, normalized as docker and containers/image do
//! (distribution/reference grammar; images.md §5 "Normalization").

use std::fmt;
use std::str::FromStr;

use super::Error;

/// The registry that a reference without a host names.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIAS: &str = "index.docker.io";

/// A fully normalized image reference: `registry/repository[:tag][@digest]`.
///
/// `busybox` becomes `docker.io/library/busybox:latest`; `host:port/ns/app` keeps the
/// host and port; a reference with a digest and no tag gets no tag. Display prints the
/// normalized form, which is the identity containers-policy.json scopes match against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalizes `input`.
    ///
    /// Errors: [`Error::Reference`] naming the input and what is wrong (empty, upper-case
    /// repository, bad tag, digest that is not `sha256:<64 hex>` / `sha512:<128 hex>`, …).
    pub fn parse(input: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Reference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("empty reference"));
        }
        if input.len() > 4096 {
            return Err(bad("longer than 4096 bytes"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|r| bad(&r))?;
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad(&format!(
                    "invalid tag {t:?} (allowed: [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})"
                )));
            }
        }
        // docker: the first component is a host if it has '.' or ':' or is "localhost".
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == DOCKER_HUB_ALIAS {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if !valid_host(&registry) {
            return Err(bad(&format!("invalid registry host {registry:?}")));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.is_empty() {
            return Err(bad("empty repository name"));
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lower-case"));
        }
        if !valid_repository(&repository) {
            return Err(bad(&format!("invalid repository name {repository:?}")));
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(bad("name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with `:port` if given (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path without the host (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`) when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, the name signatures' `docker-reference` repositories use.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at another tag (used for cosign's `sha256-<hex>.sig`).
    pub fn with_tag(&self, tag: &str) -> Result<Self, Error> {
        Self::parse(&format!("{}:{tag}", self.name()))
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> Result<Self, Error> {
        Self::parse(&format!("{}@{digest}", self.name()))
    }

    /// The oci-client reference; a digest wins over the tag when pulling.
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        // oci-client talks to index.docker.io for docker.io by itself.
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
                d.clone(),
            ),
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (t, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }
}

impl FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Checks `algo:hex` for the algorithms we can verify (sha256, sha512), lower-case hex.
pub(crate) fn check_digest(d: &str) -> Result<(), String> {
    let (algo, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("invalid digest {d:?} (want sha256:<hex>)"))?;
    let len = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {algo:?} in {d:?}")),
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "invalid digest {d:?} (want {algo}:<{len} lower-case hex>)"
        ));
    }
    Ok(())
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` per component, components separated by '/'.
fn valid_repository(r: &str) -> bool {
    r.split('/').all(|comp| {
        let b = comp.as_bytes();
        if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if is_alnum(b[i]) {
                i += 1;
                continue;
            }
            // A separator run: ".", "_", "__" or "-+", then an alphanumeric.
            let start = i;
            while i < b.len() && !is_alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
                return false;
            }
        }
        true
    })
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A DNS-ish host, an IPv4 address or `[v6]`, with an optional numeric port.
fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, tail.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(h), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(host) => {
            !host.is_empty()
                && host.split('.').all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values: docker's distribution/reference ParseNormalizedNamed behaviour
    // (`docker pull busybox` pulls docker.io/library/busybox:latest).
    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("ubuntu:22.04", "docker.io/library/ubuntu:22.04"),
            ("user/app", "docker.io/user/app:latest"),
            ("index.docker.io/library/x", "docker.io/library/x:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("127.0.0.1:5000/test/app:v1", "127.0.0.1:5000/test/app:v1"),
            ("quay.io/a/b/c:1.0-rc_1", "quay.io/a/b/c:1.0-rc_1"),
            ("[::1]:5000/app:v", "[::1]:5000/app:v"),
            ("my-registry:5000/app", "my-registry:5000/app:latest"),
        ];
        for (i, want) in cases {
            assert_eq!(ImageRef::parse(i).unwrap().to_string(), want, "{i}");
        }
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/test/app@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "test/app");
        let r = ImageRef::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1@{d}"));
    }

    #[test]
    fn rejects_bad_references() {
        let d = "sha256:".to_string() + &"a".repeat(63);
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "app/",
            "a..b/c",
            "host:port/app",
            "x/y@sha256:abc",
            "x@md5:00",
            &format!("x@{d}"),
            "bad host.io/x",
            "x:tag:tag",
        ] {
            let e = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid image reference"), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
