//! Attested TLS: TLS 1.3 whose peer proves, inside its certificate, which enclave it is.
//!
//! Certificates follow the CCC *Interoperable RA-TLS* format, so they interoperate with
//! rats-tls, librats, rats-rs, Gramine and the Intel SGX SDK:
//!
//! - a fresh key (P-256 by default) and a self-signed X.509 v3 certificate;
//! - extension 2.23.133.5.4.9 (non-critical unless asked) holding the CBOR
//!   `TAG([bstr evidence, bstr claims])`, the tag naming the evidence type;
//! - `claims`: a CBOR map with `pubkey-hash` = `[hash-alg, H(SubjectPublicKeyInfo)]`,
//!   an optional `nonce`, and the application's own claims;
//! - the evidence's report data is `SHA-256(claims) ‖ 32 zero bytes`, checked over all
//!   64 bytes.
//!
//! **Freshness.** A certificate alone can be replayed. When the verifier asks for
//! freshness it sends a random nonce *in the handshake*: a client puts it in the
//! ClientHello's server name (`<hex>.nonce.rats-tls.invalid`), a server in the
//! acceptable-issuer names of its CertificateRequest (`CN=nonce:<hex>`). The peer then
//! makes a certificate whose `nonce` claim is that value, and the verifier refuses any
//! other. Evidence is thus collected per handshake when freshness is on.
//!
//! **Endorsements.** On request ([`CertOptions::endorsements`]) an Intel quote's DCAP
//! collateral is carried in extension 2.23.133.5.4.2 ([`endorsements`]); a verifier
//! without collateral of its own uses it. It needs no trust in the peer: each entry is
//! signed by Intel and checked up to the pinned root.
//!
//! Modules: [`dice`] (the extension's CBOR), [`endorsements`] (the collateral array), [`cert`] (making and checking
//! certificates), [`tls`] (rustls verifiers, resolvers, `connect` and `accept`, and
//! their tokio forms in [`tls::asynchronous`]), [`net`] (`tcp://` and `unix://`
//! addresses), [`eaa`] (the messages of `shelter` and `inclavared`).

pub mod cert;
pub mod dice;
pub mod eaa;
pub mod endorsements;
pub mod net;
pub mod tls;

pub use cert::{
    generate, inspect, verify, Appraisal, AttestedCert, CertOptions, KeyAlgorithm, PeerInfo,
};
pub use tls::{accept, connect, Identity};

/// Why attested TLS failed. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum RaTlsError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("certificate: no evidence extension (2.23.133.5.4.9): not an attested certificate")]
    NoExtension,
    #[error("certificate: a legacy RA-TLS format that is recognised but not verified: {0}")]
    Legacy(String),
    #[error("evidence extension: {0}")]
    Extension(String),
    #[error("evidence extension: the claims' pubkey-hash is not this certificate's key")]
    KeyMismatch,
    #[error("freshness: {0}")]
    Nonce(String),
    #[error("evidence: {0}")]
    Evidence(#[from] rats::RatsError),
    #[error("the policy refused the peer: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("attester: {0}")]
    Attester(String),
    #[error("making the certificate: {0}")]
    Generate(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
