//! The client side, for the shim's carriers.
//!
//! Each call is one HTTP/1.1 request on its own connection, bounded by [`TIMEOUT`].
//! The `*_blocking` forms run the request on a private single-threaded runtime, for
//! callers on a blocking thread (the shim's carriers run there).

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::keys::{self, KeyError};
use crate::wire::{SignaturePayload, Standard, API_PREFIX, DEFAULT_PORT, MAX_BODY};

/// How long one request may take, connection included (Inclavare's client used 10 s).
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Address(String),
    #[error("unreachable ({0})")]
    Unreachable(std::io::Error),
    #[error("no reply within {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error("{0}")]
    Http(String),
    #[error("{path} answered {status}: {message}")]
    Status {
        path: String,
        status: StatusCode,
        message: String,
    },
    #[error("{path}: malformed reply ({reason})")]
    Reply { path: String, reason: String },
    #[error("{0}")]
    Key(#[from] KeyError),
}

/// A signature server's address, e.g. `http://10.0.0.5:9080`.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    port: u16,
    /// Anything before [`API_PREFIX`] in the configured address.
    prefix: String,
}

impl Client {
    /// Parses `http://host[:port][/prefix]`; a bare `host:port` means http. The port
    /// defaults to [`DEFAULT_PORT`].
    pub fn new(address: &str) -> Result<Client, ClientError> {
        let address = address.trim();
        let full = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let bad = |why: &str| ClientError::Address(format!("address {address:?}: {why}"));
        let uri: Uri = full.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(bad(&format!(
                "scheme {other} is not supported (use http:// on a network only the nodes reach)"
            )))
            }
            None => return Err(bad("no scheme")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let prefix = uri.path().trim_end_matches('/').to_string();
        let prefix = prefix
            .strip_suffix(API_PREFIX)
            .unwrap_or(&prefix)
            .to_string();
        Ok(Client {
            host,
            port: uri.port_u16().unwrap_or(DEFAULT_PORT),
            prefix,
        })
    }

    /// The public key (PEM) the server signs with for `standard`.
    pub async fn public_key(&self, standard: Standard) -> Result<String, ClientError> {
        let path = format!("{}{}", self.prefix, standard.public_key_path());
        let body = self.request(Method::GET, &path, Bytes::new()).await?;
        serde_json::from_slice::<String>(&body).map_err(|e| ClientError::Reply {
            path,
            reason: e.to_string(),
        })
    }

    /// Signs `data` with the server's `standard` key. Returns the signature and the
    /// public key (PEM), after checking that one verifies under the other.
    pub async fn sign(
        &self,
        standard: Standard,
        data: &[u8],
    ) -> Result<(Vec<u8>, String), ClientError> {
        let path = format!("{}{}", self.prefix, standard.sign_path());
        let body = self
            .request(Method::POST, &path, Bytes::copy_from_slice(data))
            .await?;
        parse_sign_reply(standard, data, &body)
            .map_err(|reason| ClientError::Reply { path, reason })
    }

    /// [`Client::public_key`] of the Ed25519 key, raw.
    pub fn ed25519_public_blocking(&self) -> Result<[u8; 32], ClientError> {
        let pem = blocking(self.public_key(Standard::Ed25519))?;
        Ok(keys::ed25519_from_pem(&pem)?)
    }

    /// [`Client::sign`] with Ed25519; also checks the signer is `expected`, the key the
    /// caller built its message around.
    pub fn sign_ed25519_blocking(
        &self,
        data: &[u8],
        expected: &[u8; 32],
    ) -> Result<[u8; 64], ClientError> {
        let (sig, pem) = blocking(self.sign(Standard::Ed25519, data))?;
        let signer = keys::ed25519_from_pem(&pem)?;
        if &signer != expected {
            return Err(ClientError::Http(
                "the server signed with another key than the one it published".into(),
            ));
        }
        sig.try_into()
            .map_err(|_| ClientError::Http("an Ed25519 signature is 64 bytes".into()))
    }

    /// [`Client::public_key`] of the RSA key, PEM.
    pub fn pkcs1_public_blocking(&self) -> Result<String, ClientError> {
        blocking(self.public_key(Standard::Pkcs1))
    }

    /// [`Client::sign`] with PKCS#1 (SGX signing material).
    pub fn sign_pkcs1_blocking(&self, data: &[u8]) -> Result<(Vec<u8>, String), ClientError> {
        blocking(self.sign(Standard::Pkcs1, data))
    }

    async fn request(&self, method: Method, path: &str, body: Bytes) -> Result<Bytes, ClientError> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ClientError::Unreachable)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(body))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| ClientError::Http(format!("reading the reply: {e}")))?
            .to_bytes();
        conn.abort();
        if !status.is_success() {
            let message = String::from_utf8_lossy(&body);
            return Err(ClientError::Status {
                path: path.to_string(),
                status,
                message: message.lines().next().unwrap_or("").trim().to_string(),
            });
        }
        Ok(body)
    }
}

/// Reads a [`SignaturePayload`] reply to signing `data` with `standard`: the signature
/// and the public key (PEM), once one verifies under the other. The reply comes from
/// the network, so anything in it may be wrong.
pub fn parse_sign_reply(
    standard: Standard,
    data: &[u8],
    body: &[u8],
) -> Result<(Vec<u8>, String), String> {
    let payload: SignaturePayload = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(payload.signature.trim())
        .map_err(|e| format!("signature: {e}"))?;
    match standard {
        Standard::Ed25519 => keys::verify_ed25519(&payload.public_key, data, &sig).map(|_| ()),
        Standard::Pkcs1 => keys::verify_pkcs1(&payload.public_key, data, &sig).map(|_| ()),
    }
    .map_err(|e| e.to_string())?;
    Ok((sig, payload.public_key))
}

/// Runs `fut` to completion on a private runtime, within [`TIMEOUT`].
fn blocking<T>(fut: impl Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Http(format!("runtime: {e}")))?;
    rt.block_on(async {
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| ClientError::Timeout)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_inclavare_wrote_them() {
        let c = Client::new("http://127.0.0.1:9080").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("127.0.0.1", 9080, "")
        );
        let c = Client::new("10.0.0.5").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.5", DEFAULT_PORT));
        let c = Client::new("http://[::1]:7/sign/api/v1/signature/").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("::1", 7, "/sign")
        );
        for bad in ["https://x:1", "http://", "ftp://x", "http://a b"] {
            assert!(Client::new(bad).is_err(), "{bad}");
        }
    }
}
