//! `containerd-shim-rune-v2`: containerd's shim for rune (`io.containerd.rune.v2`).

use std::io::Write;

use shim_rune::shim::{info_bytes, version_text, RuneShim, RUNTIME_NAME};

// One thread serves a shim's few containers; the work is in the `rune` processes.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    cli_exit::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| a == "-v" || a == "--version" || a == "-version")
    {
        print!("{}", version_text());
        return;
    }
    if args.iter().any(|a| a == "-info" || a == "--info") {
        match info_bytes() {
            Ok(bytes) => {
                let _ = std::io::stdout().write_all(&bytes);
                return;
            }
            Err(e) => {
                cli_exit::exit_on_error("containerd-shim-rune-v2", &anyhow::anyhow!(e));
            }
        }
    }
    containerd_shim::asynchronous::run::<RuneShim>(RUNTIME_NAME, None).await;
}
