//! KBS resource URIs, parsed as guest-components parses them.

/// A resource URI that does not parse; `why` says which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource URI {uri:?}: {why}")]
pub struct UriError {
    /// The URI as given.
    pub uri: String,
    /// The rule it broke.
    pub why: &'static str,
}

/// A resource URI, parsed as guest-components parses it
/// (G:`attestation-agent/deps/resource_uri/src/lib.rs`, `docs/RESOURCE_URI.md`):
/// `kbs[+PLUGIN]://[HOST[:PORT]]/SEGMENT[/SEGMENT…][?QUERY]`. The host and port are
/// ignored for fetching (the agent's `--url` names the broker); `kbs://` is the
/// `resource` plugin; the query is kept and sent with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUri {
    /// `resource` for `kbs://`, else the name after `kbs+`.
    pub plugin: String,
    /// The path segments (for the `resource` plugin: repo, type, tag).
    pub path: Vec<String>,
    /// What follows `?`, if anything (without the `?`).
    pub query: Option<String>,
}

impl ResourceUri {
    /// Parses a resource URI; a bare `repo/type/tag` is taken as `kbs:///repo/type/tag`.
    pub fn parse(uri: &str) -> Result<ResourceUri, UriError> {
        let bad = |why: &'static str| UriError {
            uri: uri.to_string(),
            why,
        };
        if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("spaces and control characters are not allowed"));
        }
        let (plugin, rest) = match uri.split_once("://") {
            Some((scheme, rest)) => {
                let plugin = match scheme.to_ascii_lowercase().as_str() {
                    "kbs" => "resource".to_string(),
                    s if s.starts_with("kbs+") => {
                        let name = &s[4..];
                        if name.is_empty() {
                            return Err(bad("scheme kbs+ requires a plugin name, e.g. kbs+pkcs11"));
                        }
                        name.to_string()
                    }
                    _ => return Err(bad("scheme must be kbs or kbs+<plugin>")),
                };
                (plugin, rest)
            }
            None if !uri.contains(':') => ("resource".to_string(), uri),
            None => return Err(bad("expected kbs://<addr-of-kbs>/<repo>/<type>/<tag>")),
        };
        // After the authority (ignored): the path, then ?query, then #fragment.
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_string())),
            None => (rest, None),
        };
        let path = if uri.contains("://") {
            match rest.find('/') {
                Some(at) => &rest[at + 1..],
                None => return Err(bad("expected kbs://<addr-of-kbs>/<repo>/<type>/<tag>")),
            }
        } else {
            rest
        };
        let path: Vec<String> = path.split('/').map(String::from).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(bad(
                "empty path segment: expected kbs://<addr-of-kbs>/<repo>/<type>/<tag>",
            ));
        }
        if path.iter().any(|s| s == "." || s == "..") {
            return Err(bad("'.' and '..' segments are not allowed"));
        }
        Ok(ResourceUri {
            plugin,
            path,
            query,
        })
    }

    /// The request path on the broker: `/kbs/v0/<plugin>/<segments>[?query]`.
    pub fn request_path(&self) -> String {
        let mut p = format!("/kbs/v0/{}/{}", self.plugin, self.path.join("/"));
        if let Some(q) = &self.query {
            p.push('?');
            p.push_str(q);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of guest-components' own tests
    /// (G:attestation-agent/deps/resource_uri/src/lib.rs) and of its RESOURCE_URI.md.
    #[test]
    fn resource_uris_parse_as_guest_components_parses_them() {
        let path = |uri: &str| ResourceUri::parse(uri).unwrap().request_path();
        assert_eq!(
            path("kbs:///alice/cosign-key/213"),
            "/kbs/v0/resource/alice/cosign-key/213"
        );
        assert_eq!(
            path("kbs://127.0.0.1:8080/default/key/demo"),
            "/kbs/v0/resource/default/key/demo"
        );
        assert_eq!(
            path("kbs://example.cckbs.org:8081/alice/decryption-key/1"),
            "/kbs/v0/resource/alice/decryption-key/1"
        );
        assert_eq!(
            path("kbs:///repo/type/tag?param1=value1&param2=value2"),
            "/kbs/v0/resource/repo/type/tag?param1=value1&param2=value2"
        );
        assert_eq!(
            path("kbs+pkcs11:///repo/type/tag"),
            "/kbs/v0/pkcs11/repo/type/tag"
        );
        assert_eq!(path("kbs+resource:///a/b/c"), "/kbs/v0/resource/a/b/c");
        assert_eq!(
            path("kbs+custom://example.com:8080/repo/type/tag"),
            "/kbs/v0/custom/repo/type/tag"
        );
        assert_eq!(
            path("kbs:///repo/nested/type/tag/extra"),
            "/kbs/v0/resource/repo/nested/type/tag/extra"
        );
        assert_eq!(
            path("default/key/demo"),
            "/kbs/v0/resource/default/key/demo"
        );
        let uri = ResourceUri::parse("kbs:///r/t/g?x=1").unwrap();
        assert_eq!(uri.query.as_deref(), Some("x=1"));
        assert_eq!(uri.path, ["r", "t", "g"]);
        for (bad, why) in [
            ("http:///repo/type/tag", "scheme must be kbs"),
            ("kbs+:///repo/type/tag", "requires a plugin name"),
            ("kbs://host", "expected kbs://"),
            ("kbs:///a//c", "empty path segment"),
            ("kbs:///a/../c", "'..'"),
            ("kbs:///a b/c", "spaces"),
        ] {
            let err = ResourceUri::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
