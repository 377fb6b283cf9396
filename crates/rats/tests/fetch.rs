//! The collateral fetcher against a PCCS-shaped service on loopback that serves the
//! real SGX fixture's collateral the way Intel's services do (DER CRLs, signed JSON
//! bodies, URL-encoded issuer chains in headers): fetched collateral verifies the real
//! quote; the cache answers a second time and when the service is gone; 503s are
//! retried; offline without a cache is one clear error.
#![cfg(feature = "fetch")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rats::fetch::Fetcher;
use rats::{Collateral, Input, QuoteCollateralV3, RatsError, Tee};

/// 2025-06-20T00:00:00Z: inside the fixture collateral's window.
const IN_WINDOW: u64 = 1_750_377_600;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a stand-in service answers: status line, one header, body.
type Reply = (&'static str, Option<(&'static str, String)>, Vec<u8>);

/// An HTTP service on loopback answering each request by `route(request number, path)`.
struct Service {
    port: u16,
    requests: Arc<AtomicUsize>,
    paths: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(route: impl Fn(usize, &str) -> Reply + Send + 'static) -> Service {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, p, s) = (requests.clone(), paths.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let mut line = String::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                reader.read_line(&mut line).unwrap();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let n = r.fetch_add(1, Ordering::SeqCst);
                p.lock().unwrap().push(path.clone());
                let (status, header, body) = route(n, &path);
                let mut head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                if let Some((k, v)) = header {
                    head.push_str(&format!("{k}: {}\r\n", url_encode(&v)));
                }
                head.push_str("\r\n");
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        Service {
            port,
            requests,
            paths,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
    }
}

/// A PCCS serving the fixture collateral as Intel's services do. `fail_first`
/// requests get 503.
fn start_pccs(c: QuoteCollateralV3, fail_first: usize) -> Service {
    Service::start(move |n, path| {
        if n < fail_first {
            ("503 Service Unavailable", None, b"busy".to_vec())
        } else if path.starts_with("/sgx/certification/v4/pckcrl?ca=processor&encoding=der") {
            (
                "200 OK",
                Some(("SGX-PCK-CRL-Issuer-Chain", c.pck_crl_issuer_chain.clone())),
                c.pck_crl.clone(),
            )
        } else if path.starts_with("/sgx/certification/v4/tcb?fmspc=") {
            (
                "200 OK",
                Some(("TCB-Info-Issuer-Chain", c.tcb_info_issuer_chain.clone())),
                rats::dcap::signed_document("tcbInfo", &c.tcb_info, &c.tcb_info_signature)
                    .into_bytes(),
            )
        } else if path == "/sgx/certification/v4/qe/identity" {
            (
                "200 OK",
                Some((
                    "SGX-Enclave-Identity-Issuer-Chain",
                    c.qe_identity_issuer_chain.clone(),
                )),
                rats::dcap::signed_document(
                    "enclaveIdentity",
                    &c.qe_identity,
                    &c.qe_identity_signature,
                )
                .into_bytes(),
            )
        } else if path == "/sgx/certification/v4/rootcacrl" {
            // A PCCS answers with the hex of the DER.
            ("200 OK", None, hex::encode(&c.root_ca_crl).into_bytes())
        } else {
            ("404 Not Found", None, Vec::new())
        }
    })
}

fn fixture_collateral() -> QuoteCollateralV3 {
    serde_json::from_slice(&data("sgx_quote_collateral.json")).unwrap()
}

fn fast(f: Fetcher) -> Fetcher {
    Fetcher {
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
        ..f
    }
}

fn verify_with(c: QuoteCollateralV3) -> rats::Verified {
    let input = Input {
        report_data: None,
        collateral: Some(Collateral::Dcap(Box::new(c))),
        now: IN_WINDOW,
    };
    rats::verify(&data("sgx_quote"), Some(Tee::SgxEcdsa), &input).unwrap()
}

#[test]
fn fetched_collateral_verifies_the_real_quote_and_is_cached() {
    let pccs = start_pccs(fixture_collateral(), 0);
    let cache = tempfile::tempdir().unwrap();
    let fetcher = fast(Fetcher::with_cache(cache.path().join("collateral")));
    let c = fetcher
        .dcap_collateral(&pccs.url(), &data("sgx_quote"))
        .unwrap();
    let v = verify_with(c);
    assert_eq!(
        v.tcb_status.as_deref(),
        Some("ConfigurationAndSWHardeningNeeded")
    );
    // The FMSPC and CA came from the quote's PCK certificate.
    let paths = pccs.paths.lock().unwrap().clone();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/sgx/certification/v4/tcb?fmspc=")),
        "{paths:?}"
    );
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 4);
    // Cached answers are files of the owner only.
    for e in std::fs::read_dir(cache.path().join("collateral")).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let mode = e.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Again: all from the cache.
    fetcher
        .dcap_collateral(&pccs.url(), &data("sgx_quote"))
        .unwrap();
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 4);
    let url = pccs.url();
    pccs.stop();
    // The service gone and the cache stale: the stale answer still verifies.
    let stale = Fetcher {
        max_age: Duration::ZERO,
        attempts: 2,
        ..fetcher.clone()
    };
    let c = stale.dcap_collateral(&url, &data("sgx_quote")).unwrap();
    verify_with(c);
    // No cache and no service: one line naming the URL and the reason.
    let err = fast(Fetcher::default())
        .dcap_collateral(&url, &data("sgx_quote"))
        .unwrap_err();
    assert!(matches!(err, RatsError::Fetch(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("offline?"), "{text}");
    assert!(!text.contains('\n'));
}

#[test]
fn busy_services_are_retried_with_backoff() {
    let pccs = start_pccs(fixture_collateral(), 2);
    let fetcher = fast(Fetcher::default());
    let c = fetcher
        .dcap_collateral(&pccs.url(), &data("sgx_quote"))
        .unwrap();
    verify_with(c);
    // Two 503s, then the four documents.
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 6);
    pccs.stop();

    // Always busy: the last status is the error.
    let pccs = start_pccs(fixture_collateral(), usize::MAX);
    let err = fetcher
        .dcap_collateral(&pccs.url(), &data("sgx_quote"))
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 3);
    pccs.stop();

    // Not a quote: refused before any request.
    let err = fetcher
        .dcap_collateral("http://127.0.0.1:9", b"junk")
        .unwrap_err();
    assert!(matches!(err, RatsError::Malformed { .. }), "{err}");
}

/// The KDS path carries the chip id and the reported TCB; the VCEK fetched verifies
/// the real report against AMD's pinned roots.
#[test]
fn the_vcek_for_a_real_snp_report_comes_from_the_kds() {
    // 2025-01-01, when the SNP fixture's VCEK is valid.
    const AT: u64 = 1_735_689_600;
    let report = data("test-report.bin");
    let vcek = data("test-vcek.der");
    let kds = Service::start(move |_, path| {
        if path.starts_with("/vcek/v1/Milan/") && path.contains("?blSPL=") {
            ("200 OK", None, vcek.clone())
        } else {
            ("404 Not Found", None, Vec::new())
        }
    });
    let fetcher = fast(Fetcher::default());
    let c = fetcher
        .amd_vcek(&kds.url(), &report, Some("Milan"))
        .unwrap();
    let input = Input {
        report_data: None,
        collateral: Some(Collateral::Snp(c)),
        now: AT,
    };
    let v = rats::verify(&report, Some(Tee::SevSnp), &input).unwrap();
    let paths = kds.paths.lock().unwrap().clone();
    // hwid = the report's 64-byte chip id in hex.
    let chip_id = v.claims["snp_chip_id"].canonical()[0].clone();
    assert!(paths[0].contains(&chip_id), "{paths:?}");
    assert!(paths[0].contains("&snpSPL=") && paths[0].contains("&ucodeSPL="));
    // Another product's path: the KDS has nothing; said with the URL.
    let err = fetcher
        .amd_vcek(&kds.url(), &report, Some("Genoa"))
        .unwrap_err();
    assert!(
        err.to_string().contains("HTTP 404") && err.to_string().contains("/Genoa/"),
        "{err}"
    );
    // A version 2 report does not say which product it came from.
    let err = fetcher.amd_vcek(&kds.url(), &report, None).unwrap_err();
    assert!(err.to_string().contains("say which product"), "{err}");
    kds.stop();
    // Not a report.
    assert!(matches!(
        fetcher.amd_vcek("http://127.0.0.1:9", &[0; 100], None),
        Err(RatsError::Malformed { .. })
    ));
}

/// A VLEK's ASVK and ARK come from the KDS's `/vlek/v1/{product}/cert_chain` (PEM, the
/// ASVK first). Served here with AMD's Milan ASK and ARK in their place: the ARK is
/// AMD's, so the fetched pair verifies the real (VCEK-signed) report as a supplied
/// chain; anything but two certificates is an error naming the URL.
#[test]
fn a_vleks_chain_comes_from_the_kds() {
    use sev::certs::snp::builtin::milan;
    const AT: u64 = 1_735_689_600;
    let report = data("test-report.bin");
    let bundle = [milan::ASK, milan::ARK].concat();
    let kds = Service::start(move |_, path| match path {
        "/vlek/v1/Milan/cert_chain" => ("200 OK", None, bundle.clone()),
        "/vlek/v1/Genoa/cert_chain" => ("200 OK", None, milan::ARK.to_vec()),
        _ => ("404 Not Found", None, Vec::new()),
    });
    let fetcher = fast(Fetcher::default());
    let (asvk, ark) = fetcher
        .amd_vlek_chain(&kds.url(), &report, Some("Milan"))
        .unwrap();
    assert_eq!(
        sev::certs::snp::Certificate::from_pem(&ark).unwrap(),
        milan::ark().unwrap()
    );
    let input = Input {
        report_data: None,
        collateral: Some(Collateral::Snp(rats::snp::SnpCollateral {
            vek: data("test-vcek.der"),
            vlek: None,
            ark: Some(ark),
            ask: Some(asvk),
        })),
        now: AT,
    };
    rats::verify(&report, Some(Tee::SevSnp), &input).unwrap();
    let err = fetcher
        .amd_vlek_chain(&kds.url(), &report, Some("Genoa"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 certificates, not the ASVK and the ARK") && err.contains("/Genoa/"),
        "{err}"
    );
    let err = fetcher
        .amd_vlek_chain(&kds.url(), &report, Some("Turin"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 404"), "{err}");
    assert_eq!(
        kds.paths.lock().unwrap()[0],
        "/vlek/v1/Milan/cert_chain",
        "the path AMD's KDS serves VLEK chains on"
    );
    kds.stop();
    // A VLEK-signed report gets no VCEK from the KDS, and the error says what to do.
    let mut vlek_signed = report.clone();
    vlek_signed[0x48] |= 1 << 2;
    assert!(rats::snp::signed_with_vlek(&vlek_signed));
    let err = fetcher
        .amd_vcek("http://127.0.0.1:9", &vlek_signed, Some("Milan"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("give the VLEK"), "{err}");
}
