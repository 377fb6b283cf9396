//! `enclave-boot`: the first program of an enclave whose image is pulled inside it.
//!
//! rune starts it (see `rune_core::image`) in an empty, memory-backed root private to
//! the container's mount namespace. It resolves the image's manifest, attests to the
//! tenant's KBS with the manifest digest recorded in its evidence (CoCo's `PullImage`
//! event), fetches the signature policy and the layer keys, pulls the image, checks its
//! signatures and
//! every digest, decrypts and unpacks the layers into that root, then becomes the
//! image's program in the same enclave ([`handover`]).
//!
//! It is in the trusted computing base: keep it small.

pub mod boot;
pub mod handover;
