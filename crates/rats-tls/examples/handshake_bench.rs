//! Mutual TLS 1.3 handshakes per second: attested (`sim` evidence, both sides) next to
//! plain rustls with ordinary CA-issued certificates, interleaved in one run.
//!
//! `cargo run --release -p rats-tls --example handshake_bench [RUNS] [BATCH]`.
//! Each handshake runs over a fresh Unix socket pair with the server on its own
//! thread, in every case alike. The `sim` reports are made in process, as
//! `liberpal-sim` makes them; inside an enclave one local socket round trip is added.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use rats::{Attester, Evidence, Policy, RatsError, Tee};
use rats_tls::tls::{Expect, Identity};
use rats_tls::{Appraisal, CertOptions};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Sim(sim_tee::PlatformKey);

impl Attester for Sim {
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, RatsError> {
        let r = sim_tee::Report::unsigned(false, [1; 48], [2; 48], 1, 1, *report_data);
        Ok(Evidence {
            tee: Tee::Sim,
            bytes: self.0.sign_report(r).to_bytes().to_vec(),
            collateral: None,
        })
    }
}

fn attested(fresh: bool) -> impl Fn() {
    let identity = |_| {
        Arc::new(Identity::new(
            Arc::new(Sim(sim_tee::PlatformKey::generate().unwrap())),
            CertOptions::default(),
        ))
    };
    let (server_id, client_id) = (identity(0), identity(1));
    let policy = Policy {
        allow_software_tees: true,
        ..Policy::default()
    };
    let expect = Expect {
        appraisal: Appraisal::new(policy),
        fresh,
        nonce: None,
    };
    move || {
        let (a, b) = UnixStream::pair().unwrap();
        let (sid, e) = (server_id.clone(), expect.clone());
        let t = std::thread::spawn(move || {
            rats_tls::accept(a, sid, Some(&e)).unwrap();
        });
        rats_tls::connect(b, Some(client_id.clone()), &expect).unwrap();
        t.join().unwrap();
    }
}

fn plain() -> impl Fn() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap();
        (
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let roots = Arc::new(roots);
    let (schain, skey) = leaf("localhost");
    let (cchain, ckey) = leaf("client");
    let server = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider.clone(),
                )
                .build()
                .unwrap(),
            )
            .with_single_cert(schain, skey)
            .unwrap(),
    );
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(cchain, ckey)
            .unwrap(),
    );
    move || {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let sc = server.clone();
        let t = std::thread::spawn(move || {
            let mut s = rustls::ServerConnection::new(sc).unwrap();
            while s.is_handshaking() {
                s.complete_io(&mut a).unwrap();
            }
        });
        let mut c =
            rustls::ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).unwrap();
        while c.is_handshaking() {
            c.complete_io(&mut b).unwrap();
        }
        t.join().unwrap();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    type Case = (&'static str, Box<dyn Fn()>);
    let cases: Vec<Case> = vec![
        ("plain rustls, CA-issued certificates", Box::new(plain())),
        (
            "attested, sim, fresh nonce each way",
            Box::new(attested(true)),
        ),
        (
            "attested, sim, no nonce (cached certificates)",
            Box::new(attested(false)),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..runs + 5 {
        for (i, (_, f)) in cases.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            if round >= 5 {
                times[i].push(start.elapsed().as_secs_f64() / batch as f64);
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\n### attested TLS: mutual TLS 1.3 handshakes, P-256\n");
    println!(
        "{runs} batches of {batch} after 5 warm-up batches, interleaved; load average {}\n",
        load.split_whitespace().next().unwrap_or("?")
    );
    println!("| handshake | median ms | handshakes/s | vs plain |");
    println!("|---|---:|---:|---:|");
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        })
        .collect();
    for (i, (name, _)) in cases.iter().enumerate() {
        println!(
            "| {name} | {:.3} | {:.0} | {:.2} |",
            medians[i] * 1e3,
            1.0 / medians[i],
            medians[i] / medians[0]
        );
    }
}
