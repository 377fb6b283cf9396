//! Collateral fetchers (feature `fetch`): DCAP collateral from Intel's PCS or a PCCS,
//! and SEV-SNP VCEKs from AMD's Key Distribution Service.
//!
//! The verifiers never call this; a caller fetches, then verifies offline. Nothing
//! fetched is trusted for being fetched: every document is signed by Intel and
//! checked up to the pinned root when the quote is verified, so TLS here only keeps
//! the lookups private (a PCCS is often plain HTTP on the local network).
//!
//! - **Cache**: with a cache directory, each answer is kept (0600, written whole) and
//!   served for [`Fetcher::max_age`]; when the service cannot be reached an older
//!   answer is served, with a warning, rather than nothing.
//! - **Backoff**: connection failures, 429 and 5xx are retried after 0.2 s, 0.4 s, …
//!   ([`Fetcher::attempts`] tries), honouring a short `Retry-After`.
//! - **Offline**: the error names the URL and the reason, in one line.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dcap_qvl::quote::Quote;
use serde::{Deserialize, Serialize};

use crate::dcap::{crl_der, split_signed_document};
use crate::{QuoteCollateralV3, RatsError};

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";
/// Where Intel publishes the SGX Root CA's CRL (the root certificate's CRL
/// distribution point); PCS has no endpoint for it, a PCCS does.
pub const INTEL_ROOT_CA_CRL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// AMD's Key Distribution Service.
pub const AMD_KDS: &str = "https://kdsintf.amd.com";
/// Debian's bundle of the web's certificate authorities, for `https://`.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

const MAX_BODY: usize = 4 << 20;

/// An HTTP(S) GET client for collateral services, with a cache and retries.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// Where answers are kept; `None`: no cache.
    pub cache_dir: Option<PathBuf>,
    /// How long a cached answer is served without asking again.
    pub max_age: Duration,
    /// Tries per request.
    pub attempts: u32,
    /// The first retry's delay; each next one doubles.
    pub backoff: Duration,
    /// Connect and read timeout.
    pub timeout: Duration,
    /// PEM bundle of the authorities trusted for `https://`.
    pub roots: PathBuf,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher {
            cache_dir: None,
            max_age: Duration::from_secs(24 * 3600),
            attempts: 3,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
            roots: PathBuf::from(SYSTEM_ROOTS),
        }
    }
}

/// An answer: status, headers (names lower-case) and body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

mod b64 {
    use base64::Engine as _;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

fn fetch_error(url: &str, reason: impl std::fmt::Display) -> RatsError {
    RatsError::Fetch(format!("{url}: {reason}"))
}

impl Fetcher {
    /// A fetcher that keeps answers in `cache_dir`.
    pub fn with_cache(cache_dir: impl Into<PathBuf>) -> Fetcher {
        Fetcher {
            cache_dir: Some(cache_dir.into()),
            ..Fetcher::default()
        }
    }

    /// DCAP collateral for `quote` from a PCS or PCCS at `base` (for example
    /// [`INTEL_PCS`] or `https://pccs.local:8081`), ready for [`crate::verify`].
    pub fn dcap_collateral(
        &self,
        base: &str,
        quote: &[u8],
    ) -> Result<QuoteCollateralV3, RatsError> {
        let bad = |reason: String| RatsError::Collateral {
            tee: "dcap",
            reason,
        };
        let parsed = Quote::parse(quote).map_err(|e| RatsError::Malformed {
            tee: "dcap",
            reason: format!("{e:#}"),
        })?;
        let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
            .map_err(|e| bad(format!("FMSPC from the PCK certificate: {e:#}")))?;
        let ca = dcap_qvl::intel::quote_ca(&parsed)
            .map_err(|e| bad(format!("PCK CA from the PCK certificate: {e:#}")))?;
        let tee = if parsed.header.is_sgx() { "sgx" } else { "tdx" };
        let base = base
            .trim_end_matches('/')
            .trim_end_matches("/sgx/certification/v4")
            .trim_end_matches("/tdx/certification/v4");
        let url = |tee: &str, path: &str| format!("{base}/{tee}/certification/v4/{path}");

        let pckcrl_url = url("sgx", &format!("pckcrl?ca={}&encoding=der", ca.as_id_str()));
        let pckcrl = self.get_ok(&pckcrl_url)?;
        let tcb_url = url(tee, &format!("tcb?fmspc={}", hex::encode_upper(fmspc)));
        let tcb = self.get_ok(&tcb_url)?;
        let qe_url = url(tee, "qe/identity");
        let qe = self.get_ok(&qe_url)?;
        let root_url = if base.starts_with(INTEL_PCS) {
            INTEL_ROOT_CA_CRL.to_string()
        } else {
            url("sgx", "rootcacrl")
        };
        let root = self.get_ok(&root_url)?;

        let chain = |r: &Response, url: &str, names: &[&str]| -> Result<String, RatsError> {
            let v = names
                .iter()
                .find_map(|n| r.header(n))
                .ok_or_else(|| fetch_error(url, format!("no {} header", names[0])))?;
            percent_decode(v)
                .ok_or_else(|| fetch_error(url, format!("{} is not URL-encoded", names[0])))
        };
        let (tcb_info, tcb_info_signature) =
            split_signed_document(&tcb.body, "tcbInfo").map_err(|e| fetch_error(&tcb_url, e))?;
        let (qe_identity, qe_identity_signature) =
            split_signed_document(&qe.body, "enclaveIdentity")
                .map_err(|e| fetch_error(&qe_url, e))?;
        Ok(QuoteCollateralV3 {
            pck_crl_issuer_chain: chain(&pckcrl, &pckcrl_url, &["SGX-PCK-CRL-Issuer-Chain"])?,
            root_ca_crl: crl_der(&root.body).map_err(|e| fetch_error(&root_url, e))?,
            pck_crl: crl_der(&pckcrl.body).map_err(|e| fetch_error(&pckcrl_url, e))?,
            tcb_info_issuer_chain: chain(
                &tcb,
                &tcb_url,
                &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
            )?,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: chain(&qe, &qe_url, &["SGX-Enclave-Identity-Issuer-Chain"])?,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        })
    }

    /// The VCEK of the chip and TCB that signed an SEV-SNP `report`, from AMD's KDS
    /// (or a cache of it) at `base`. `product` (`Milan`, `Genoa`, `Turin`) is needed
    /// for version 2 reports, which do not carry the CPU's family and model. The ASK
    /// and ARK are not fetched: the verifier pins AMD's roots. (A VLEK cannot be
    /// fetched by chip: it comes with the report's certificate table.)
    pub fn amd_vcek(
        &self,
        base: &str,
        report: &[u8],
        product: Option<&str>,
    ) -> Result<crate::snp::SnpCollateral, RatsError> {
        use sev::firmware::guest::AttestationReport;
        use sev::parser::ByteParser as _;
        let malformed = |reason: String| RatsError::Malformed {
            tee: "sev_snp",
            reason,
        };
        let r = AttestationReport::from_bytes(report).map_err(|e| malformed(e.to_string()))?;
        if r.key_info.signing_key() != 0 {
            return Err(RatsError::Collateral {
                tee: "sev_snp",
                reason: "the report is signed with a VLEK, which AMD's KDS does not hand out \
                         by chip: give the VLEK (or the host's certificate table) as collateral; \
                         the KDS then supplies its ASVK and ARK"
                    .into(),
            });
        }
        let product = snp_product(&r, product)?;
        let tcb = r.reported_tcb;
        let (hwid, fmc) = if product == "Turin" {
            (
                hex::encode(&r.chip_id[..8]),
                format!("&fmcSPL={}", tcb.fmc.unwrap_or(0)),
            )
        } else {
            (hex::encode(r.chip_id), String::new())
        };
        let url = format!(
            "{}/vcek/v1/{product}/{hwid}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}{fmc}",
            base.trim_end_matches('/'),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        );
        let answer = self.get_ok(&url)?;
        Ok(crate::snp::SnpCollateral {
            vek: answer.body,
            ..Default::default()
        })
    }

    /// The ASVK and ARK that certify VLEKs of the product of an SEV-SNP `report`, from
    /// AMD's KDS (`/vlek/v1/{product}/cert_chain`: the ASVK, then the ARK, in PEM). The
    /// verifier still requires the ARK to be one of AMD's built-in roots.
    pub fn amd_vlek_chain(
        &self,
        base: &str,
        report: &[u8],
        product: Option<&str>,
    ) -> Result<(Vec<u8>, Vec<u8>), RatsError> {
        use sev::firmware::guest::AttestationReport;
        use sev::parser::ByteParser as _;
        let r = AttestationReport::from_bytes(report).map_err(|e| RatsError::Malformed {
            tee: "sev_snp",
            reason: e.to_string(),
        })?;
        let product = snp_product(&r, product)?;
        let url = format!(
            "{}/vlek/v1/{product}/cert_chain",
            base.trim_end_matches('/')
        );
        let answer = self.get_ok(&url)?;
        let pems = pem_certificates(&answer.body);
        match pems.as_slice() {
            [asvk, ark] => Ok((asvk.clone(), ark.clone())),
            other => Err(fetch_error(
                &url,
                format!("{} certificates, not the ASVK and the ARK", other.len()),
            )),
        }
    }

    /// A GET that must answer 200.
    pub fn get_ok(&self, url: &str) -> Result<Response, RatsError> {
        let r = self.get(url)?;
        if r.status != 200 {
            return Err(fetch_error(url, format!("HTTP {}", r.status)));
        }
        Ok(r)
    }

    /// A GET through the cache, with retries.
    pub fn get(&self, url: &str) -> Result<Response, RatsError> {
        let cached = self.cached(url);
        if let Some((age, r)) = &cached {
            if *age <= self.max_age {
                return Ok(r.clone());
            }
        }
        let mut delay = self.backoff;
        let mut last = None;
        for attempt in 1..=self.attempts.max(1) {
            match self.get_once(url) {
                Ok(r) if r.status == 429 || r.status >= 500 => {
                    if let Some(s) = r.header("retry-after").and_then(|s| s.trim().parse().ok()) {
                        delay = delay.max(Duration::from_secs(s).min(Duration::from_secs(10)));
                    }
                    last = Some(fetch_error(url, format!("HTTP {}", r.status)));
                }
                Ok(r) => {
                    if r.status == 200 {
                        self.store(url, &r);
                    }
                    return Ok(r);
                }
                Err(e) => last = Some(e),
            }
            if attempt < self.attempts {
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
        let err = last.unwrap_or_else(|| fetch_error(url, "no attempt made"));
        match cached {
            Some((age, r)) => {
                tracing::warn!(%url, age_secs = age.as_secs(), error = %err, "serving a stale cached answer");
                Ok(r)
            }
            None => Err(err),
        }
    }

    fn cache_path(&self, url: &str) -> Option<PathBuf> {
        use sha2::Digest;
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(hex::encode(sha2::Sha256::digest(url.as_bytes()))))
    }

    fn cached(&self, url: &str) -> Option<(Duration, Response)> {
        let path = self.cache_path(url)?;
        let bytes = std::fs::read(&path).ok()?;
        let age = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or(Duration::MAX);
        serde_json::from_slice(&bytes).ok().map(|r| (age, r))
    }

    fn store(&self, url: &str, r: &Response) {
        let Some(path) = self.cache_path(url) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(r).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "collateral cache not written");
        }
    }

    fn get_once(&self, url: &str) -> Result<Response, RatsError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(fetch_error(url, "only http:// and https:// are supported"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_authority(authority, if tls { 443 } else { 80 })
            .map_err(|e| fetch_error(url, e))?;
        let host = host.as_str();
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| fetch_error(url, format!("cannot resolve {host} ({e}): offline?")))?
            .next()
            .ok_or_else(|| fetch_error(url, format!("{host} has no address")))?;
        let tcp = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| fetch_error(url, format!("cannot connect to {addr} ({e}): offline?")))?;
        tcp.set_read_timeout(Some(self.timeout)).ok();
        tcp.set_write_timeout(Some(self.timeout)).ok();
        // HTTP/1.0 with Connection: close: the body ends with the connection, and no
        // chunked encoding comes back.
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: */*\r\nUser-Agent: rats/{}\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        let raw = if tls {
            let config = self.tls_config().map_err(|e| fetch_error(url, e))?;
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| fetch_error(url, e))?;
            let conn =
                rustls::ClientConnection::new(config, name).map_err(|e| fetch_error(url, e))?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            exchange(&mut s, request.as_bytes())
        } else {
            let mut s = tcp;
            exchange(&mut s, request.as_bytes())
        }
        .map_err(|e| fetch_error(url, e))?;
        parse_response(&raw).map_err(|e| fetch_error(url, e))
    }

    /// The client configuration for `self.roots`, read once per process (a fetch of
    /// DCAP collateral makes four requests; the bundle holds over a hundred CAs).
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        use rustls::pki_types::pem::PemObject as _;
        type Configs = std::sync::Mutex<Vec<(PathBuf, Arc<rustls::ClientConfig>)>>;
        static CONFIGS: std::sync::OnceLock<Configs> = std::sync::OnceLock::new();
        let configs = CONFIGS.get_or_init(Default::default);
        let mut configs = configs
            .lock()
            .map_err(|_| "TLS configuration lock".to_string())?;
        if let Some((_, c)) = configs.iter().find(|(p, _)| *p == self.roots) {
            return Ok(c.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&self.roots)
            .map_err(|e| format!("{}: {e}", self.roots.display()))?;
        for c in certs.flatten() {
            let _ = roots.add(c);
        }
        if roots.is_empty() {
            return Err(format!("{}: no certificates", self.roots.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        configs.push((self.roots.clone(), config.clone()));
        Ok(config)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("bad port {p:?}"));
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed IPv6 address in {authority:?}"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), port(p)?)),
            None if after.is_empty() => Ok((host.to_string(), default_port)),
            None => Err(format!("bad authority {authority:?}")),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, p)) => Ok((host.to_string(), port(p)?)),
        None => Ok((authority.to_string(), default_port)),
    }
}

fn exchange(s: &mut (impl Read + Write), request: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(request).map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_BODY {
                    return Err(format!("answer over {MAX_BODY} bytes"));
                }
            }
            // A TLS peer that closes without close_notify: what came is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(raw)
}

/// Reads an HTTP/1.x answer (status line, headers, body cut at Content-Length).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(n) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < n {
            return Err(format!("body cut short: {} of {n} bytes", body.len()));
        }
        body.truncate(n);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Decodes a URL-encoded header value (PCS sends PEM chains so).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The product an SEV-SNP report came from: given, or read from the CPUID of v3+
/// reports.
fn snp_product(
    r: &sev::firmware::guest::AttestationReport,
    product: Option<&str>,
) -> Result<String, RatsError> {
    let malformed = |reason: String| RatsError::Malformed {
        tee: "sev_snp",
        reason,
    };
    Ok(match product {
        Some(p) => p.to_string(),
        None => match (r.cpuid_fam_id, r.cpuid_mod_id) {
            (Some(0x19), Some(0x00..=0x0f)) => "Milan".into(),
            (Some(0x19), Some(0x10..=0x1f | 0xa0..=0xaf)) => "Genoa".into(),
            (Some(0x1a), Some(0x00..=0x11)) => "Turin".into(),
            (Some(f), Some(m)) => {
                return Err(malformed(format!(
                    "CPU family {f:#x} model {m:#x}: not an SEV-SNP product AMD's KDS serves"
                )))
            }
            _ => {
                return Err(malformed(format!(
                    "a version {} report does not name its CPU: say which product (Milan, Genoa, Turin)",
                    r.version
                )))
            }
        },
    })
}

/// The PEM certificate blocks of a bundle, each as its own PEM text.
pub fn pem_certificates(bundle: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(bundle);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]).into_bytes());
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_bundle_is_read_once() {
        let f = Fetcher::default();
        if !f.roots.exists() {
            println!("skipped: no CA bundle at {}", f.roots.display());
            return;
        }
        assert!(Arc::ptr_eq(
            &f.tls_config().unwrap(),
            &f.tls_config().unwrap()
        ));
        let empty = Fetcher {
            roots: PathBuf::from("/dev/null"),
            ..Fetcher::default()
        };
        assert!(empty.tls_config().unwrap_err().contains("no certificates"));
    }

    #[test]
    fn authorities_are_split() {
        let ok = |a: &str| split_authority(a, 443).unwrap();
        assert_eq!(ok("pccs.local"), ("pccs.local".into(), 443));
        assert_eq!(ok("127.0.0.1:8081"), ("127.0.0.1".into(), 8081));
        assert_eq!(ok("[::1]"), ("::1".into(), 443));
        assert_eq!(ok("[::1]:8081"), ("::1".into(), 8081));
        for bad in ["host:x", "[::1", "[::1]x", "host:99999"] {
            assert!(split_authority(bad, 443).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_and_encoded_headers_are_read() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b%20c\r\n\r\nabcdef")
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(percent_decode(r.header("x-a").unwrap()).unwrap(), "b c");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(percent_decode("%zz").is_none());
        assert_eq!(
            percent_decode("-----BEGIN%20CERTIFICATE-----%0A").unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
    }
}
