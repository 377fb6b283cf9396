//! Registry credentials from a containers-auth.json (or docker `config.json`, the same
//! `auths` shape), as containers/image looks them up (`pkg/docker/config/config.go`):
//! the most specific key first — `registry/repository`, each parent namespace, then
//! `registry` — then, failing that, keys written as URLs (`https://index.docker.io/v1/`,
//! normalized to their host, docker.io's aliases as one).
//!
//! Only `auth` (std-base64 of `user:password`) is used, as image-rs does
//! (`image-rs/src/auth/`). An `identitytoken` (OAuth2 refresh token) is refused, and
//! credential helpers cannot run where this is used (an enclave): `credHelpers` is
//! ignored. Secrets never appear in errors.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

use super::{Credentials, Error, ImageRef};

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
}

/// docker.io's names, as containers/image normalizes them (`normalizeRegistry`).
fn normalize_registry(r: &str) -> &str {
    match r {
        "registry-1.docker.io" | "docker.io" => "index.docker.io",
        other => other,
    }
}

/// A key written as a URL names its host only (`normalizeAuthFileKey`).
fn normalize_key(key: &str) -> &str {
    let stripped = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"));
    match stripped {
        Some(s) => normalize_registry(s.split('/').next().unwrap_or(s)),
        None => normalize_registry(key),
    }
}

/// The credentials `auth_file` (a containers-auth.json's bytes; `what` names it in
/// errors) holds for `image`: [`Credentials::Anonymous`] when no key matches, or when the
/// matching entry's `auth` is empty (docker's marker for a credential helper).
///
/// Errors: [`Error::Config`] when the file is not such JSON, or the matching entry's
/// `auth` is not std-base64 of `user:password`, or it has only an `identitytoken`.
pub fn credentials_from_auth_file(
    what: &str,
    auth_file: &[u8],
    image: &ImageRef,
) -> Result<Credentials, Error> {
    let bad = |reason: String| Error::Config(format!("registry credentials {what}: {reason}"));
    let file: AuthFile = serde_json::from_slice(auth_file)
        // Line and column only: serde's message would quote the offending value, which
        // can be a base64 `user:password`, onto the container's stderr.
        .map_err(|e| {
            bad(format!(
                "not a containers-auth.json (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
    let registry = image.registry();
    let mut key = image.name();
    let found = loop {
        if let Some(e) = file.auths.get(&key) {
            break Some((key, e));
        }
        match key.rfind('/') {
            Some(i) => key.truncate(i),
            None => break None,
        }
    };
    let found = found.or_else(|| {
        let want = normalize_registry(registry);
        let mut keys: Vec<&String> = file.auths.keys().collect();
        // containers/image takes any matching entry; the first in order is stable.
        keys.sort();
        keys.into_iter()
            .find(|k| normalize_key(k) == want)
            .map(|k| (k.clone(), &file.auths[k]))
    });
    let Some((key, entry)) = found else {
        return Ok(Credentials::Anonymous);
    };
    if entry.auth.is_empty() {
        if !entry.identitytoken.is_empty() {
            return Err(bad(format!(
                "entry {key:?} has only an identitytoken (OAuth2), which is not supported: give \"auth\""
            )));
        }
        return Ok(Credentials::Anonymous);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.trim())
        .map_err(|_| bad(format!("entry {key:?}: \"auth\" is not base64")))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| bad(format!("entry {key:?}: \"auth\" is not UTF-8")))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| bad(format!("entry {key:?}: \"auth\" is not user:password")))?;
    Ok(Credentials::Basic {
        user: user.to_string(),
        password: password.trim_matches('\0').to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(file: &str, image: &str) -> Result<String, String> {
        let r = ImageRef::parse(image).unwrap();
        match credentials_from_auth_file("t", file.as_bytes(), &r) {
            Ok(Credentials::Basic { user, password }) => Ok(format!("{user}:{password}")),
            Ok(other) => Ok(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    // The lookup order and normalization of containers-auth.json(5) and
    // containers/image's `findCredentialsInFile`.
    #[test]
    fn the_most_specific_key_wins_then_url_keys_by_host() {
        let file = format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/ns":{{"auth":"{}"}},"quay.io/ns/app":{{"auth":"{}"}},
               "https://index.docker.io/v1/":{{"auth":"{}"}},"127.0.0.1:5000":{{"auth":"{}"}}}}}}"#,
            b64("reg:1"),
            b64("ns:2"),
            b64("app:3"),
            b64("hub:4"),
            b64("local:5:with:colons")
        );
        assert_eq!(creds(&file, "quay.io/ns/app:v1"), Ok("app:3".into()));
        assert_eq!(creds(&file, "quay.io/ns/other"), Ok("ns:2".into()));
        assert_eq!(creds(&file, "quay.io/else/x"), Ok("reg:1".into()));
        assert_eq!(creds(&file, "busybox"), Ok("hub:4".into()));
        assert_eq!(
            creds(&file, "127.0.0.1:5000/test/app"),
            Ok("local:5:with:colons".into())
        );
        assert_eq!(creds(&file, "example.com/app"), Ok("Anonymous".into()));
        assert_eq!(
            creds(r#"{"auths":{"example.com":{"auth":""}}}"#, "example.com/a"),
            Ok("Anonymous".into())
        );
    }

    #[test]
    fn bad_entries_are_named_without_their_secrets() {
        for (file, want) in [
            ("{\"auths\": []}", "not a containers-auth.json"),
            (
                r#"{"auths":{"example.com":{"auth":"%%s3cret"}}}"#,
                "entry \"example.com\": \"auth\" is not base64",
            ),
            (
                r#"{"auths":{"example.com":{"identitytoken":"s3cret"}}}"#,
                "has only an identitytoken",
            ),
        ] {
            let e = creds(file, "example.com/a").unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        let no_colon = format!(
            r#"{{"auths":{{"example.com":{{"auth":"{}"}}}}}}"#,
            b64("s3cret")
        );
        let e = creds(&no_colon, "example.com/a").unwrap_err();
        assert!(
            e.contains("not user:password") && !e.contains("s3cret"),
            "{e}"
        );
    }
}
