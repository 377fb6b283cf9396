//! Storing a KEK in a KBS through its admin API (kbs-protocol.md §1, §9; what
//! coco_keyprovider's `--kbs` does, guest-components `coco_keyprovider/src/enc_mods/kbs.rs`):
//! `POST <kbs>/kbs/v0/resource/<repo>/<type>/<tag>` with the raw bytes as body and
//! `Authorization: Bearer <admin JWT>`. The JWT is signed with the tenant's admin key
//! (Ed25519 → `EdDSA`, P-256 → `ES256`, RSA → `RS256`, PKCS#8 PEM, as verdictd's
//! `[admin] public_keys` and Trustee's `bearer_jwt` accept) and carries
//! `{"iss":"enclave-image","role":ROLE,"aud":["kbs"],"iat","exp"}`, valid 5 minutes.

use std::time::{SystemTime, UNIX_EPOCH};

use attestation_agent::http::Client;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kbs_protocol::resource_uri::ResourceUri;

/// How long the admin token is valid, in seconds.
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// Errors of this module, one line each.
#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    /// The admin key is not a PEM private key of a kind the KBS verifies.
    #[error("admin key: {0}")]
    AdminKey(String),
    /// A `kid` that is not `kbs:///repo/type/tag`.
    #[error("key id {kid:?}: {reason}")]
    Kid {
        /// As given.
        kid: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting or talking to the KBS failed.
    #[error("KBS {0}")]
    Http(String),
    /// The KBS refused the request.
    #[error("KBS {url}: POST {path}: HTTP {status}{detail}")]
    Refused {
        /// The KBS URL.
        url: String,
        /// The request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// `: <error type>: <detail>` from the KBS's JSON error body, if any.
        detail: String,
    },
}

/// The admin-API path of the resource a `kid` names: `/kbs/v0/resource/repo/type/tag`.
///
/// Errors: [`KbsError::Kid`] unless `kid` is `kbs://[HOST]/repo/type/tag` with no query
/// (the resource plugin; the host part is ignored, as the guest components ignore it).
pub fn resource_path(kid: &str) -> Result<String, KbsError> {
    let bad = |reason: String| KbsError::Kid {
        kid: kid.to_string(),
        reason,
    };
    if !kid
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("kbs://"))
    {
        return Err(bad("not a kbs:///<repo>/<type>/<tag> URI".into()));
    }
    let uri = ResourceUri::parse(kid).map_err(|e| bad(e.to_string()))?;
    if uri.plugin != "resource" || uri.path.len() != 3 || uri.query.is_some() {
        return Err(bad(
            "must name exactly <repo>/<type>/<tag>, without a query".into(),
        ));
    }
    Ok(format!("/kbs/v0/resource/{}", uri.path.join("/")))
}

const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Signs an admin token with `key_pem` for `role`.
///
/// Errors: [`KbsError::AdminKey`] for anything but an unencrypted Ed25519, P-256 or RSA
/// private key in PEM (PKCS#8; also SEC1 `EC PRIVATE KEY` and PKCS#1 `RSA PRIVATE KEY`).
pub fn admin_token(key_pem: &[u8], role: &str) -> Result<String, KbsError> {
    let bad = |m: String| KbsError::AdminKey(m);
    let (label, der) = crate::pem::private_key_der(key_pem).map_err(bad)?;
    if label.contains("ENCRYPTED") {
        return Err(bad("encrypted private keys are not supported".into()));
    }
    let (alg, key) = if label == "RSA PRIVATE KEY" || contains(&der, OID_RSA) {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(key_pem))
    } else if contains(&der, OID_ED25519) {
        (Algorithm::EdDSA, EncodingKey::from_ed_pem(key_pem))
    } else if label == "EC PRIVATE KEY" || contains(&der, OID_EC_PUBLIC_KEY) {
        if !contains(&der, OID_P256) {
            return Err(bad("an EC key must be on P-256".into()));
        }
        (Algorithm::ES256, EncodingKey::from_ec_pem(key_pem))
    } else {
        return Err(bad(format!("{label} is not an Ed25519, P-256 or RSA key")));
    };
    let key = key.map_err(|e| bad(e.to_string()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "iss": "enclave-image",
        "role": role,
        "aud": ["kbs"],
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECS,
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).map_err(|e| bad(e.to_string()))
}

/// Where and how to reach a KBS's admin API.
pub struct Admin<'a> {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub url: &'a str,
    /// CA certificates (PEM) of an `https://` KBS.
    pub ca_pem: Option<&'a [u8]>,
    /// The admin private key (PEM).
    pub key_pem: &'a [u8],
    /// The JWT's `role` claim (verdictd's `[admin] roles`, default `admin`).
    pub role: &'a str,
}

impl Admin<'_> {
    /// Stores `value` as the resource `kid` names (replacing what the KBS held there).
    ///
    /// Errors: [`KbsError::Kid`], [`KbsError::AdminKey`], [`KbsError::Http`] when the
    /// KBS cannot be reached, [`KbsError::Refused`] for any answer but 200.
    pub async fn put_resource(&self, kid: &str, value: &[u8]) -> Result<(), KbsError> {
        let path = resource_path(kid)?;
        let token = admin_token(self.key_pem, self.role)?;
        let mut client =
            Client::new(self.url, self.ca_pem).map_err(|e| KbsError::Http(e.to_string()))?;
        let reply = client
            .request("POST", &path, Some(value.to_vec()), Some(&token))
            .await
            .map_err(|e| KbsError::Http(e.to_string()))?;
        if reply.status == 200 {
            return Ok(());
        }
        // KBS errors are JSON: {"type":"…/ErrorKind","detail":"…"} (kbs-protocol.md §7).
        let detail = serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .map(|v| {
                let kind = v["type"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("");
                let detail = v["detail"].as_str().unwrap_or("");
                format!(": {kind}: {detail}")
            })
            .unwrap_or_default();
        Err(KbsError::Refused {
            url: self.url.trim_end_matches('/').to_string(),
            path,
            status: reply.status,
            detail: detail.split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_map_to_resource_paths() {
        assert_eq!(
            resource_path("kbs:///default/image-kek/app").unwrap(),
            "/kbs/v0/resource/default/image-kek/app"
        );
        assert_eq!(
            resource_path("kbs://10.0.0.1:8080/a/b/c").unwrap(),
            "/kbs/v0/resource/a/b/c"
        );
        for bad in [
            "/default/image-kek/x",
            "kbs:///a/b",
            "kbs:///a/b/c?x=1",
            "kbs+pkcs11:///a/b/c",
        ] {
            assert!(resource_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_keys_of_other_kinds_are_named() {
        let e = admin_token(b"not pem", "admin").unwrap_err().to_string();
        assert!(e.starts_with("admin key: no PEM private key block"), "{e}");
        let enc =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = admin_token(enc, "admin").unwrap_err().to_string();
        assert!(e.contains("encrypted private keys"), "{e}");
    }
}
