//! The minimal docker reference the policy needs: scopes and signed identities
//! (containers/image `docker/reference`, docker's normalization).
//!
//! Internal on purpose: the registry module has its own reference type, and the two are
//! to be unified at merge. Only what scope lookup and identity matching need is here.

use std::fmt;

/// Docker Hub's canonical host; `index.docker.io` and a bare name map to it.
const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalized docker reference: `host[:port]/path[:tag][@algo:hex]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerRef {
    /// Registry host, with `:port` when given (`docker.io` after normalization).
    pub domain: String,
    /// Repository path without the host (`library/busybox`).
    pub path: String,
    pub tag: Option<String>,
    /// `algo:hex`, e.g. `sha256:…`.
    pub digest: Option<String>,
}

impl DockerRef {
    /// Parses like containers/image's `reference.ParseNormalizedNamed`: a missing host
    /// means Docker Hub (single names gain `library/`); no tag is added.
    pub fn parse_normalized(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty reference".into());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is a `:` after the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                check_tag(t)?;
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        let (domain, path) = split_domain(name);
        check_domain(&domain)?;
        check_path(&path)?;
        Ok(DockerRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Parses an image reference as the docker transport does: normalized, `:latest`
    /// when neither tag nor digest is given, and not both at once.
    pub fn parse_image(s: &str) -> Result<Self, String> {
        let mut r = Self::parse_normalized(s)?;
        if r.tag.is_some() && r.digest.is_some() {
            return Err("a reference with both a tag and a digest is not supported".into());
        }
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        Ok(r)
    }

    /// `host[:port]/path`, the repository name.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// Policy scopes from the most to the least specific, as containers/image's
    /// `docker/policyconfiguration` lists them: the full reference, the repository,
    /// each parent namespace up to `host[:port]`, then `*.`-wildcards of the port-less
    /// host's parent domains.
    pub fn scopes(&self) -> Vec<String> {
        let mut out = vec![self.to_string()];
        let mut name = self.name();
        out.push(name.clone());
        while let Some(i) = name.rfind('/') {
            name.truncate(i);
            out.push(name.clone());
        }
        let mut host = self.domain.split(':').next().unwrap_or_default();
        while let Some(i) = host.find('.') {
            host = &host[i + 1..];
            out.push(format!("*.{host}"));
        }
        out
    }
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component is a host when it has a `.` or `:` or is
/// `localhost` (or has upper case, which a path may not).
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    (domain, path)
}

fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("invalid registry host {d:?}"))
    }
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (distribution-spec).
fn check_path(p: &str) -> Result<(), String> {
    if p.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository name {p:?} must be lowercase"));
    }
    for comp in p.split('/') {
        if !path_component_ok(comp) {
            return Err(format!("invalid repository path component {comp:?}"));
        }
    }
    Ok(())
}

fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or any number of `-`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag {t:?}"))
    }
}

/// Digests: `sha256:` with 64 lower-case hex digits or `sha512:` with 128.
pub(crate) fn check_digest(d: &str) -> Result<(), String> {
    let ok = match d.split_once(':') {
        Some(("sha256", h)) => h.len() == 64,
        Some(("sha512", h)) => h.len() == 128,
        _ => false,
    } && d.split_once(':').is_some_and(|(_, h)| {
        h.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid digest {d:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings: containers-policy.json(5) and docker's normalization rules.
    #[test]
    fn normalizes_like_docker() {
        let r = DockerRef::parse_image("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = DockerRef::parse_image("index.docker.io/user/app:1").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1");
        let r = DockerRef::parse_image("localhost:5000/a/b").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/a/b:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = DockerRef::parse_image(&format!("127.0.0.1:5000/test/app@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.name(), "127.0.0.1:5000/test/app");
        assert!(DockerRef::parse_image("Busybox").is_err());
        assert!(DockerRef::parse_image("a/b:").is_err());
        assert!(DockerRef::parse_image("a//b").is_err());
        assert!(DockerRef::parse_image("a/b@sha256:12").is_err());
        assert!(DockerRef::parse_image(&format!("a/b:t@{d}")).is_err());
        assert!(DockerRef::parse_normalized("example.com/x")
            .unwrap()
            .is_name_only());
    }

    #[test]
    fn scopes_follow_containers_image_order() {
        let r = DockerRef::parse_image("example.com:8443/ns/sub/app:v1").unwrap();
        assert_eq!(
            r.scopes(),
            [
                "example.com:8443/ns/sub/app:v1",
                "example.com:8443/ns/sub/app",
                "example.com:8443/ns/sub",
                "example.com:8443/ns",
                "example.com:8443",
                "*.com",
            ]
        );
    }
}
