//! A small HTTP/1.1 client for one broker: one kept-alive connection (re-opened when
//! the broker closes it), the session cookie, optional TLS with configured CAs, and
//! bounded reply sizes.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

const MAX_REPLY: usize = 16 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("broker URL {0:?}: expected http://HOST:PORT or https://HOST:PORT")]
    Url(String),
    #[error("{0}: {1}")]
    Connect(String, String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}: {1}")]
    Exchange(String, String),
    #[error("{0}: timed out after {1:?}")]
    Timeout(String, Duration),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

pub struct Client {
    base: String,
    authority: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    cookie: Option<String>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Client, HttpError> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(HttpError::Url(url.into()));
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(HttpError::Url(url.into()));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:{}", if https { 443 } else { 80 })
        };
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            let pem = ca_pem.ok_or_else(|| {
                HttpError::Tls("an https:// broker needs the CA certificate (--cert-file)".into())
            })?;
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| HttpError::Tls(format!("CA certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| HttpError::Tls(format!("CA certificate: {e}")))?;
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let host = authority
                .rsplit_once(':')
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                .unwrap_or(&authority)
                .to_string();
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| HttpError::Tls(format!("server name: {e}")))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Client {
            base: format!("{}://{authority}", if https { "https" } else { "http" }),
            authority,
            tls,
            cookie: None,
            conn: None,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn forget_cookies(&mut self) {
        self.cookie = None;
    }

    /// The session cookie held (`kbs-session-id=…`), if any.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Sends `cookie` (`kbs-session-id=…`) from now on: a session carried to another
    /// broker replica.
    pub fn set_cookie(&mut self, cookie: &str) {
        self.cookie = Some(cookie.to_string());
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| HttpError::Connect(self.base.clone(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| HttpError::Tls(format!("{}: {e}", self.base)))?,
            ),
        };
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| HttpError::Connect(self.base.clone(), e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// One request; the connection is re-opened once if the kept-alive one was closed.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Result<Reply, HttpError> {
        let what = format!("{method} {}{path}", self.base);
        tokio::time::timeout(TIMEOUT, self.exchange(method, path, body, bearer, &what))
            .await
            .map_err(|_| HttpError::Timeout(what.clone(), TIMEOUT))?
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
        what: &str,
    ) -> Result<Reply, HttpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut send = match self.conn.take() {
                Some(s) if s.is_ready() => s,
                _ => self.connect().await?,
            };
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, &self.authority);
            if body.is_some() {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            if let Some(c) = &self.cookie {
                req = req.header(hyper::header::COOKIE, c);
            }
            if let Some(t) = bearer {
                req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = req
                .body(Full::new(Bytes::from(body.clone().unwrap_or_default())))
                .map_err(|e| HttpError::Exchange(what.into(), e.to_string()))?;
            let response = match send.send_request(req).await {
                Ok(r) => r,
                // A kept-alive connection the broker closed meanwhile: once more, anew.
                Err(e)
                    if attempt == 1
                        && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) =>
                {
                    continue
                }
                Err(e) => return Err(HttpError::Exchange(what.into(), e.to_string())),
            };
            let status = response.status().as_u16();
            for v in response.headers().get_all(hyper::header::SET_COOKIE) {
                if let Some(c) = v
                    .to_str()
                    .ok()
                    .and_then(|v| v.split(';').next())
                    .filter(|c| c.starts_with(kbs_protocol::SESSION_COOKIE))
                {
                    self.cookie = Some(c.to_string());
                }
            }
            let body = Limited::new(response.into_body(), MAX_REPLY)
                .collect()
                .await
                .map_err(|e| HttpError::Exchange(what.into(), e.to_string()))?
                .to_bytes();
            self.conn = Some(send);
            return Ok(Reply { status, body });
        }
    }
}
