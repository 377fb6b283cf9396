//! A small attested-TLS server meant to run inside an enclave container (the upstream
//! of `inclavared`): it attests with the enclave's own evidence (`sim` inside a
//! `liberpal-sim` enclave, configfs-tsm in a TDX/SNP guest) and answers each request
//! line with its message.
//!
//! `enclave_server --listen tcp://127.0.0.1:PORT [--message TEXT] [--mutual]`
//! With `--mutual` a client must attest too; this sample accepts software evidence
//! from clients, which a real application's policy would not.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rats_tls::net::{Address, Listener};
use rats_tls::tls::{Expect, Identity};
use rats_tls::{Appraisal, CertOptions};

fn main() {
    let mut listen: Option<Address> = None;
    let mut message = "hello from the enclave".to_string();
    let mut mutual = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()),
            "--message" => message = args.next().unwrap_or_default(),
            "--mutual" => mutual = true,
            other => {
                eprintln!("enclave_server: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let Some(listen) = listen else {
        eprintln!("enclave_server: --listen tcp://HOST:PORT or unix:///PATH is required");
        std::process::exit(2);
    };
    let identity = Arc::new(Identity::new(
        Arc::from(rats::auto_attester()),
        CertOptions::default(),
    ));
    let expect = mutual.then(|| {
        Expect::new(Appraisal::new(rats::Policy {
            allow_software_tees: true,
            ..Default::default()
        }))
    });
    let listener = match Listener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("enclave_server: listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("enclave_server: listening on {listen}");
    loop {
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("enclave_server: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_timeout(Some(Duration::from_secs(10)));
        let (identity, expect, message) = (identity.clone(), expect.clone(), message.clone());
        std::thread::spawn(
            move || match rats_tls::accept(stream, identity, expect.as_ref()) {
                Ok((tls, _)) => {
                    let mut r = BufReader::new(tls);
                    let mut line = String::new();
                    let _ = r.by_ref().take(4096).read_line(&mut line);
                    let mut tls = r.into_inner();
                    let _ = tls.write_all(message.as_bytes());
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
                Err(e) => eprintln!("enclave_server: {e}"),
            },
        );
    }
}
