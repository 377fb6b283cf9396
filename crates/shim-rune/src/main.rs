//! `containerd-shim-rune-v2`: containerd's shim for rune (`io.containerd.rune.v2`).

use std::io::Write;

use shim_rune::flags::{self, Action};
use shim_rune::shim::{info_bytes, version_text, RuneShim, RUNTIME_NAME};

// One thread serves a shim's few containers; the work is in the `rune` processes.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    cli_exit::init();
    let mut argv = std::env::args_os();
    let program = argv
        .next()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "containerd-shim-rune-v2".into());
    let args: Vec<_> = argv.collect();
    match flags::parse(&args) {
        // As Go's flag package: the usage on stderr; 0 when asked for, 2 after an error.
        Ok(Action::Help) => flags::exit_with_stderr(&flags::usage(&program), 0),
        Err(e) => flags::exit_with_stderr(&format!("{e}\n{}", flags::usage(&program)), 2),
        Ok(Action::Version) => print!("{}", version_text()),
        Ok(Action::Info) => match info_bytes() {
            Ok(bytes) => {
                if let Err(e) = std::io::stdout().write_all(&bytes) {
                    cli_exit::exit_on_error("containerd-shim-rune-v2", &e.into());
                }
            }
            Err(e) => cli_exit::exit_on_error("containerd-shim-rune-v2", &anyhow::anyhow!(e)),
        },
        Ok(Action::Run) => {
            containerd_shim::asynchronous::run::<RuneShim>(RUNTIME_NAME, None).await;
        }
    }
}
