//! Shared helpers for integration tests (dev-dependency only; see README.md).
//!
//! Real parts, privately: a containerd (optionally with its CRI plugin), a `docker-registry` on an ephemeral loopback port with its
//! storage in the test's temporary directory (anonymous, htpasswd or bearer-token auth,
//! the token service included), a fault-injecting proxy, wrappers for skopeo and umoci,
//! the busybox OCI layout, the tenant's layer encryption for a KBS-held key, and a
//! leftover check; for confidential images, a real `verdictd`, the signed boot program
//! laid out as `make install` does, the tenant's `enclave-image` tool, and the marker
//! search; a private PostgreSQL server ([`postgres`]); a client of the CRI
//! streaming server's exec URLs ([`remotecommand`]). Everything started is stopped by
//! pid when its handle drops.

pub mod balancer;
pub mod boot;
pub mod cni;
pub mod containerd;
pub mod encrypt;
pub mod http;
pub mod marker;
pub mod postgres;
pub mod registry;
pub mod remotecommand;
pub mod tenant;
pub mod token;
pub mod tools;
pub mod verdictd;

pub use balancer::RoundRobin;
pub use boot::{boot_program, install_boot, release_artifact, signed_boot, sim_sign};
pub use cni::CniBridge;
pub use containerd::{Containerd, CriConfig, CriRuntime, CRI_NAMESPACE};
pub use encrypt::{encrypt_layout_with_kek, EncryptedImage};
pub use http::{free_port, Fault, FaultProxy, StaticFiles};
pub use marker::{marker_found, marker_layout, random_marker, PlaintextTraces};
pub use postgres::Postgres;
pub use registry::{Auth, Pushed, Registry};
pub use remotecommand::{ExecStream, Streamed};
pub use tenant::{enclave_image, publish, Confidential, ConfidentialImage, TenantKeys};
pub use token::TokenServer;
pub use tools::{
    busybox_oci_tar, image_traces, is_root, leftovers, openssl_self_signed, pause_oci_tar, run,
    sha256_digest, skopeo, skopeo_env, workspace_root, Gpg, ImageBuilder,
};
pub use verdictd::{Verdictd, VerdictdOptions};
