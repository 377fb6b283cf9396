//! How much the PAL says on stderr: the `log_level` rune passes to `pal_init`
//! (`pal_attr_v1.log_level`, from `ENCLAVE_RUNTIME_LOGLEVEL`; pal-api.md §1: one of
//! `trace debug info warning error fatal panic off`, anything else counting as `info`).
//!
//! | level | lines |
//! |---|---|
//! | `off` | only why `pal_init` or `pal_create_process` failed (the call's result) |
//! | `error`, `fatal`, `panic` | and traps, failed host calls |
//! | `warning` | and what the program runs without (its attestation files) |
//! | `info` (the default) | and the enclave's identity, init-data and a pulled module |
//! | `debug`, `trace` | and each module's compilation (time, cache), process start and end |

use std::sync::atomic::{AtomicU8, Ordering};

/// A line's importance, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Why `pal_init` or `pal_create_process` failed: the call's result, which rune
    /// folds into its one error line, so shown at every level, `off` included.
    Refusal = 0,
    Error = 1,
    Warning = 2,
    Info = 3,
    Debug = 4,
}

/// The least important level shown; 0 shows nothing.
static SHOWN: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// The level `pal_init` was given (NULL or unknown: `info`).
pub(crate) fn set(log_level: Option<&str>) {
    SHOWN.store(parse(log_level), Ordering::Relaxed);
}

fn parse(log_level: Option<&str>) -> u8 {
    match log_level.map(str::trim) {
        Some("off") => 0,
        Some("panic" | "fatal" | "error") => Level::Error as u8,
        Some("warning") => Level::Warning as u8,
        Some("debug" | "trace") => Level::Debug as u8,
        _ => Level::Info as u8,
    }
}

/// Whether lines of `level` are shown.
pub(crate) fn enabled(level: Level) -> bool {
    level as u8 <= SHOWN.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pal_api_levels_map_onto_ours() {
        assert_eq!(parse(Some("off")), 0);
        for l in ["panic", "fatal", "error"] {
            assert_eq!(parse(Some(l)), Level::Error as u8, "{l}");
        }
        assert_eq!(parse(Some("warning")), Level::Warning as u8);
        assert_eq!(parse(Some("info")), Level::Info as u8);
        assert_eq!(parse(Some("debug")), Level::Debug as u8);
        assert_eq!(parse(Some("trace")), Level::Debug as u8);
        // rune replaces unknown levels by `info`; a PAL called by another runtime
        // does the same, and for a NULL one.
        assert_eq!(parse(Some("loud")), Level::Info as u8);
        assert_eq!(parse(None), Level::Info as u8);
    }
}
