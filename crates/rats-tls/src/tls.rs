//! rustls integration: TLS 1.3 only, peers checked by [`crate::cert::verify`] inside
//! custom verifiers (never webpki, which refuses a critical evidence extension), our
//! certificate served through resolvers (which accept one), handshake signatures
//! checked against the attested certificate's own key.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rats::Attester;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName, ServerConfig,
    ServerConnection, SignatureScheme, StreamOwned,
};
use x509_parser::prelude::*;

use crate::cert::{self, Appraisal, CertOptions, PeerInfo};
use crate::RaTlsError;

/// The server name a client sends when it asks for no freshness.
pub const SERVER_NAME: &str = "rats-tls.invalid";
const NONCE_SUFFIX: &str = ".nonce.rats-tls.invalid";
const NONCE_CN_PREFIX: &str = "nonce:";
const NONCE_LEN: usize = 16;

/// One provider for every handshake: building it allocates its suite and algorithm
/// tables.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Our side: the attester and how our certificates are made. A certificate without a
/// nonce is reused until half its validity has passed; one with a nonce is made for
/// its handshake.
pub struct Identity {
    attester: Arc<dyn Attester + Send + Sync>,
    options: CertOptions,
    cached: Mutex<Option<(Instant, Arc<CertifiedKey>)>>,
}

impl Identity {
    pub fn new(attester: Arc<dyn Attester + Send + Sync>, options: CertOptions) -> Identity {
        Identity {
            attester,
            options,
            cached: Mutex::new(None),
        }
    }

    fn certified(&self, nonce: Option<&[u8]>) -> Result<Arc<CertifiedKey>, RaTlsError> {
        if nonce.is_none() {
            if let Some((made, key)) = lock(&self.cached).as_ref() {
                if made.elapsed() < self.options.validity / 2 {
                    return Ok(key.clone());
                }
            }
        }
        let c = cert::generate(self.attester.as_ref(), &self.options, nonce)?;
        let key = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_pkcs8)))
            .map_err(|e| RaTlsError::Generate(e.to_string()))?;
        let certified = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(c.cert_der)],
            key,
        ));
        if nonce.is_none() {
            *lock(&self.cached) = Some((Instant::now(), certified.clone()));
        }
        Ok(certified)
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// What we require of the peer.
#[derive(Debug, Clone)]
pub struct Expect {
    pub appraisal: Appraisal,
    /// Send a nonce and require the peer's evidence to carry it.
    pub fresh: bool,
    /// The nonce to send instead of a random one: a relay passes on its client's, so
    /// the evidence answers the party that will check it.
    pub nonce: Option<Vec<u8>>,
}

impl Expect {
    pub fn new(appraisal: Appraisal) -> Expect {
        Expect {
            appraisal,
            fresh: true,
            nonce: None,
        }
    }
}

fn random_nonce() -> Result<Vec<u8>, RaTlsError> {
    let mut n = vec![0u8; NONCE_LEN];
    getrandom::getrandom(&mut n).map_err(|e| RaTlsError::Tls(e.to_string()))?;
    Ok(n)
}

/// Checks the peer inside the handshake and keeps what it proved, or why it failed.
#[derive(Debug)]
struct PeerVerifier {
    appraisal: Appraisal,
    nonce: Option<Vec<u8>>,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    outcome: Mutex<Option<Result<PeerInfo, RaTlsError>>>,
}

impl PeerVerifier {
    fn new(expect: &Expect) -> Result<PeerVerifier, RaTlsError> {
        let nonce = match (&expect.nonce, expect.fresh) {
            (Some(n), _) if !n.is_empty() && n.len() <= 31 => Some(n.clone()),
            (Some(n), _) => {
                return Err(RaTlsError::Nonce(format!(
                    "a nonce of {} bytes (1 to 31 fit in a server name)",
                    n.len()
                )))
            }
            (None, true) => Some(random_nonce()?),
            (None, false) => None,
        };
        let hints = nonce
            .iter()
            .map(|n| {
                DistinguishedName::from(cn_name(&format!("{NONCE_CN_PREFIX}{}", hex::encode(n))))
            })
            .collect();
        Ok(PeerVerifier {
            appraisal: expect.appraisal.clone(),
            nonce,
            hints,
            provider: provider(),
            outcome: Mutex::new(None),
        })
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let result = cert::verify(end_entity.as_ref(), &self.appraisal, self.nonce.as_deref());
        let err = result.as_ref().err().map(|e| e.to_string());
        *lock(&self.outcome) = Some(result);
        match err {
            None => Ok(()),
            Some(e) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    std::io::Error::other(e),
                ))),
            )),
        }
    }

    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn take(&self) -> Option<Result<PeerInfo, RaTlsError>> {
        lock(&self.outcome).take()
    }
}

/// The handshake-signature methods both verifier traits share: TLS 1.3 only, checked
/// against the attested certificate's own key.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General(
                "attested sessions are TLS 1.3 only".into(),
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|_| ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// DER of the Name `CN=<cn>`, as a CertificateRequest carries it.
fn cn_name(cn: &str) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = body.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            out.extend_from_slice(&[0x81, n as u8]);
        }
        out.extend_from_slice(body);
        out
    }
    let atv = [tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, cn.as_bytes())].concat();
    let rdn = tlv(0x31, &tlv(0x30, &atv));
    tlv(0x30, &rdn)
}

/// The nonce a server asked for in its acceptable-issuer names.
fn nonce_from_hints(hints: &[&[u8]]) -> Option<Vec<u8>> {
    hints.iter().find_map(|der| {
        let (_, name) = X509Name::from_der(der).ok()?;
        let cn = name.iter_common_name().next()?.as_str().ok()?;
        hex::decode(cn.strip_prefix(NONCE_CN_PREFIX)?).ok()
    })
}

/// The nonce a client asked for in its server name.
fn nonce_from_sni(name: &str) -> Option<Vec<u8>> {
    hex::decode(name.strip_suffix(NONCE_SUFFIX)?).ok()
}

#[derive(Debug)]
struct ServerResolver(Arc<Identity>);

impl ResolvesServerCert for ServerResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let nonce = hello.server_name().and_then(nonce_from_sni);
        self.0
            .certified(nonce.as_deref())
            .map_err(|e| tracing::warn!("no certificate for this handshake: {e}"))
            .ok()
    }
}

#[derive(Debug)]
struct ClientResolver(Arc<Identity>);

impl ResolvesClientCert for ClientResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let nonce = nonce_from_hints(root_hint_subjects);
        self.0
            .certified(nonce.as_deref())
            .map_err(|e| tracing::warn!("no certificate for this handshake: {e}"))
            .ok()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn tls_err(e: impl std::fmt::Display) -> RaTlsError {
    RaTlsError::Tls(e.to_string())
}

/// A client's configuration for one handshake, and the verifier that will hold its
/// outcome.
struct ClientSide {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    verifier: Arc<PeerVerifier>,
}

fn client_side(identity: Option<Arc<Identity>>, expect: &Expect) -> Result<ClientSide, RaTlsError> {
    let verifier = Arc::new(PeerVerifier::new(expect)?);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone());
    let mut config = match identity {
        Some(id) => builder.with_client_cert_resolver(Arc::new(ClientResolver(id))),
        None => builder.with_no_client_auth(),
    };
    // A resumed session would skip the peer's evidence.
    config.resumption = rustls::client::Resumption::disabled();
    let name = match &verifier.nonce {
        Some(n) => format!("{}{NONCE_SUFFIX}", hex::encode(n)),
        None => SERVER_NAME.to_string(),
    };
    Ok(ClientSide {
        config: Arc::new(config),
        name: ServerName::try_from(name).map_err(tls_err)?,
        verifier,
    })
}

/// A server's configuration for one handshake.
struct ServerSide {
    config: Arc<ServerConfig>,
    verifier: Option<Arc<PeerVerifier>>,
}

fn server_side(identity: Arc<Identity>, expect: Option<&Expect>) -> Result<ServerSide, RaTlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?;
    let verifier = expect.map(PeerVerifier::new).transpose()?.map(Arc::new);
    let builder = match &verifier {
        Some(v) => builder.with_client_cert_verifier(v.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(ServerResolver(identity)));
    // A resumed session would skip the peer's evidence: no tickets, no session cache.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(ServerSide {
        config: Arc::new(config),
        verifier,
    })
}

/// The client's result: the server's proof, or why not (the verifier's own reason
/// before the TLS layer's).
fn client_outcome(v: &PeerVerifier, failed: Option<String>) -> Result<PeerInfo, RaTlsError> {
    match (v.take(), failed) {
        (Some(Err(e)), _) => Err(e),
        (_, Some(e)) => Err(RaTlsError::Tls(e)),
        (Some(Ok(info)), None) => Ok(info),
        (None, None) => Err(RaTlsError::Tls("the server sent no certificate".into())),
    }
}

fn server_outcome(
    v: Option<&PeerVerifier>,
    failed: Option<String>,
) -> Result<Option<PeerInfo>, RaTlsError> {
    match (v.and_then(PeerVerifier::take), failed) {
        (Some(Err(e)), _) => Err(e),
        (_, Some(e)) => Err(RaTlsError::Tls(e)),
        (Some(Ok(info)), None) => Ok(Some(info)),
        (None, None) if v.is_none() => Ok(None),
        (None, None) => Err(RaTlsError::Tls("the client sent no certificate".into())),
    }
}

/// Opens attested TLS as a client over `stream`: checks the server against `expect`,
/// attests ourselves with `identity` when the server asks (mutual mode).
pub fn connect<S: Read + Write>(
    stream: S,
    identity: Option<Arc<Identity>>,
    expect: &Expect,
) -> Result<(StreamOwned<ClientConnection, S>, PeerInfo), RaTlsError> {
    let side = client_side(identity, expect)?;
    let conn = ClientConnection::new(side.config, side.name).map_err(tls_err)?;
    let mut tls = StreamOwned::new(conn, stream);
    let mut failed = None;
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            failed = Some(e.to_string());
            break;
        }
    }
    Ok((tls, client_outcome(&side.verifier, failed)?))
}

/// Accepts attested TLS as a server over `stream`, attesting with `identity`; with
/// `expect`, the client must attest too (mutual mode) and its proof is returned.
pub fn accept<S: Read + Write>(
    stream: S,
    identity: Arc<Identity>,
    expect: Option<&Expect>,
) -> Result<(StreamOwned<ServerConnection, S>, Option<PeerInfo>), RaTlsError> {
    let side = server_side(identity, expect)?;
    let conn = ServerConnection::new(side.config).map_err(tls_err)?;
    let mut tls = StreamOwned::new(conn, stream);
    let mut failed = None;
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            failed = Some(e.to_string());
            break;
        }
    }
    let peer = server_outcome(side.verifier.as_deref(), failed)?;
    Ok((tls, peer))
}

/// The same over tokio streams. Evidence for our certificate is collected inside the
/// handshake, on the task's thread: cheap for `sim`, up to a second for a TDX quote
/// through configfs-tsm.
pub mod asynchronous {
    use super::*;
    use tokio::io::{AsyncRead, AsyncWrite};

    /// [`connect`](super::connect) over a tokio stream.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        stream: S,
        identity: Option<Arc<Identity>>,
        expect: &Expect,
    ) -> Result<(tokio_rustls::client::TlsStream<S>, PeerInfo), RaTlsError> {
        let side = client_side(identity, expect)?;
        let result = tokio_rustls::TlsConnector::from(side.config)
            .connect(side.name, stream)
            .await;
        match result {
            Ok(tls) => Ok((tls, client_outcome(&side.verifier, None)?)),
            Err(e) => Err(client_outcome(&side.verifier, Some(e.to_string()))
                .err()
                .unwrap_or_else(|| RaTlsError::Tls("handshake failed".into()))),
        }
    }

    /// [`accept`](super::accept) over a tokio stream.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        stream: S,
        identity: Arc<Identity>,
        expect: Option<&Expect>,
    ) -> Result<(tokio_rustls::server::TlsStream<S>, Option<PeerInfo>), RaTlsError> {
        let side = server_side(identity, expect)?;
        let result = tokio_rustls::TlsAcceptor::from(side.config)
            .accept(stream)
            .await;
        match result {
            Ok(tls) => Ok((tls, server_outcome(side.verifier.as_deref(), None)?)),
            Err(e) => Err(
                server_outcome(side.verifier.as_deref(), Some(e.to_string()))
                    .err()
                    .unwrap_or_else(|| RaTlsError::Tls("handshake failed".into())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_travel_in_names_both_ways() {
        let n = [0xabu8; NONCE_LEN];
        let sni = format!("{}{NONCE_SUFFIX}", hex::encode(n));
        assert!(
            ServerName::try_from(sni.clone()).is_ok(),
            "a valid DNS name"
        );
        assert_eq!(nonce_from_sni(&sni).unwrap(), n);
        assert_eq!(nonce_from_sni(SERVER_NAME), None);
        let dn = cn_name(&format!("{NONCE_CN_PREFIX}{}", hex::encode(n)));
        assert_eq!(nonce_from_hints(&[&dn]).unwrap(), n);
        assert_eq!(nonce_from_hints(&[b"junk"]), None);
    }
}
