//! What a file's header says it is, for the enclave runtimes and `sim-sign`: a
//! WebAssembly core module (what `liberpal-wasm` runs), a component, an ELF file, or
//! something else.
//!
//! WebAssembly core spec §5.5.16 "Modules": magic `\0asm`, then version 1 as a 32-bit
//! little-endian number. The component-model binary format (component-model
//! `Binary.md`) keeps the magic and splits the next four bytes into a 16-bit version
//! (0x0d while in development) and a 16-bit layer, 1 for components.

/// The kind of a file, by its first 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A core module (version 1, layer 0).
    CoreModule,
    /// A component-model binary (layer 1).
    Component,
    /// The `\0asm` magic with a version and layer neither of the above.
    UnknownVersion,
    /// An ELF file: a native program, or wasmtime's precompiled `.cwasm`.
    Elf,
    /// Anything else.
    Other,
}

/// Classifies `bytes` by their header.
pub fn kind(bytes: &[u8]) -> Kind {
    if bytes.starts_with(b"\x7fELF") {
        return Kind::Elf;
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Kind::Other;
    }
    match (&bytes[4..6], &bytes[6..8]) {
        ([1, 0], [0, 0]) => Kind::CoreModule,
        (_, [1, 0]) => Kind::Component,
        _ => Kind::UnknownVersion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_classified() {
        assert_eq!(kind(b"\0asm\x01\0\0\0"), Kind::CoreModule);
        assert_eq!(kind(b"\0asm\x0d\0\x01\0"), Kind::Component);
        assert_eq!(kind(b"\0asm\x02\0\0\0"), Kind::UnknownVersion);
        assert_eq!(kind(b"\x7fELF\x02\x01\x01\0"), Kind::Elf);
        assert_eq!(kind(b"\0asm"), Kind::Other);
        assert_eq!(kind(b"#!/bin/sh\n"), Kind::Other);
        assert_eq!(kind(b""), Kind::Other);
    }
}
