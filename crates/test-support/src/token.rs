//! A real token service for docker-registry's `auth: token` (distribution's token spec,
//! images.md §5 "Bearer challenge" and §6.1): ES256 JWTs whose header carries the signing
//! certificate in `x5c`, the certificate the registry trusts as `rootcertbundle`.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePrivateKey;

/// The `service` (JWT `aud`) the registry is configured with.
pub const SERVICE: &str = "test-registry";
/// The JWT `iss` the registry is configured with.
pub const ISSUER: &str = "test-token-service";

/// The token service: grants what is asked for (pull, push) to a client presenting the
/// configured Basic credentials, and answers 401 to anyone else.
pub struct TokenServer {
    addr: SocketAddr,
    cert_pem: String,
    issued: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Starts on an ephemeral loopback port; `user`/`pass` are required from clients.
    pub fn start(user: &str, pass: &str) -> io::Result<Self> {
        let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| io::Error::other(format!("pkcs8: {e}")))?;
        let kp = rcgen::KeyPair::try_from(der.as_bytes())
            .map_err(|e| io::Error::other(format!("key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(vec!["token.test".to_string()])
            .map_err(|e| io::Error::other(e.to_string()))?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params
            .self_signed(&kp)
            .map_err(|e| io::Error::other(format!("certificate: {e}")))?;
        let cert_der = cert.der().to_vec();
        let cert_pem = cert.pem();

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let issued = Arc::new(AtomicU32::new(0));
        let refused = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
        let (iss, refs, st) = (issued.clone(), refused.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let ok = serve(conn, &key, &cert_der, &expected).unwrap_or(false);
                if ok { &iss } else { &refs }.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(TokenServer {
            addr,
            cert_pem,
            issued,
            refused,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:port/token`, the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The signing certificate (PEM), the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u32 {
        self.issued.load(Ordering::SeqCst)
    }

    /// Requests refused (no or wrong credentials) so far.
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request; true when a token was issued.
fn serve(conn: TcpStream, key: &SigningKey, cert_der: &[u8], expected: &str) -> io::Result<bool> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let (line, headers) = crate::http::read_head(&mut r)?;
    let mut w = conn;
    let auth = headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str());
    if auth != Some(expected) {
        let body = br#"{"details":"credentials required"}"#;
        write!(
            w,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        w.write_all(body)?;
        return Ok(false);
    }
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if k == "scope" {
            // repository:<name>:<actions>
            let v = crate::http::percent_decode(v);
            let parts: Vec<&str> = v.splitn(3, ':').collect();
            if let [typ, name, actions] = parts[..] {
                access.push(serde_json::json!({
                    "type": typ,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }));
            }
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header =
        serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(cert_der)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "test", "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    // JWS ES256: the raw r||s signature (RFC 7518 §3.4), not DER.
    let sig: Signature = key.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(true)
}
