//! `containerd-shim-rune-v2`, the containerd shim v2 for rune (`io.containerd.rune.v2`).
//!
//! So far: its configuration file. The task service comes next.

pub mod config;

pub use config::{Config, ConfigError, SignatureMethod};
