//! `enclave-boot`: the first program of an enclave whose image is pulled inside it (see
//! the library). This file parses rune's arguments, runs the pull and hands over; a
//! failure is one line on stderr (`enclave-boot: error: …`, after the progress lines) and
//! exit status 125 (docker's "the container could not be prepared"), 126 or 127 when the
//! image's program cannot be executed or found.

use std::path::PathBuf;

use clap::Parser;
use enclave_boot::boot::{self, Options, Progress};
use enclave_boot::handover::{self, HandoverError};

#[derive(Parser)]
#[command(
    name = "enclave-boot",
    version,
    about = "Pull, verify, decrypt and unpack a container image inside the enclave, then run it"
)]
struct Cli {
    /// The image: REGISTRY/REPO[:TAG][@DIGEST], or oci:DIR[:TAG] / oci-archive:FILE[:TAG]
    #[arg(long, required_unless_present = "exec")]
    image: Option<String>,
    /// Run ARGS in the started image's configuration (`rune exec`): no pull
    #[arg(long, conflicts_with = "image")]
    exec: bool,
    /// The KBS (verdictd or trustee) holding the layer keys and the policy
    #[arg(long)]
    kbs: Option<String>,
    /// PEM CA certificates of an https:// KBS
    #[arg(long)]
    kbs_ca: Option<PathBuf>,
    /// kbs:///REPO/TYPE/TAG of the containers-policy.json
    #[arg(long)]
    policy: Option<String>,
    /// kbs:///REPO/TYPE/TAG of a JWE recipient's private key, PEM or DER (repeatable)
    #[arg(long = "decryption-key")]
    decryption_keys: Vec<String>,
    /// kbs:///REPO/TYPE/TAG of the registry's credentials (containers-auth.json)
    #[arg(long)]
    registry_auth: Option<String>,
    /// kbs:///REPO/TYPE/TAG of PEM CA certificates for an HTTPS registry
    #[arg(long)]
    registry_ca: Option<String>,
    /// A registry (HOST[:PORT]) reached over plain HTTP (repeatable)
    #[arg(long = "insecure-registry")]
    insecure: Vec<String>,
    /// Base URL of a simple-signing lookaside store
    #[arg(long)]
    lookaside: Option<String>,
    /// The largest layer pulled, in bytes (a larger one is refused before its download)
    #[arg(long)]
    max_layer_size: Option<u64>,
    /// Where to unpack the image
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The container's command, overriding the image's Cmd (docker's rule)
    #[arg(last = true)]
    args: Vec<String>,
}

fn main() {
    cli_exit::init();
    let cli = cli_exit::parse::<Cli>();
    let Some(image) = cli.image else {
        // `rune exec`: the process the PAL started is this signed program; it becomes
        // the requested one, in the image's environment, cwd and user.
        let own: Vec<(String, String)> = std::env::vars().collect();
        let err = match handover::for_exec(&cli.root, cli.args, &own) {
            Ok(launch) => match handover::record(&launch) {
                Ok(_) => handover::exec(&launch),
                Err(e) => e,
            },
            Err(e) => fail(125, &e.to_string()),
        };
        fail(exit_code(&err), &err.to_string())
    };
    let opts = Options {
        image,
        kbs: cli.kbs,
        kbs_ca: cli.kbs_ca,
        policy: cli.policy,
        decryption_keys: cli.decryption_keys,
        registry_auth: cli.registry_auth,
        registry_ca: cli.registry_ca,
        insecure: cli.insecure,
        lookaside: cli.lookaside,
        max_layer_size: cli.max_layer_size,
        root: cli.root,
        args: cli.args,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => fail(125, &format!("runtime: {e}")),
    };
    let mut progress = Progress::new(std::io::stderr());
    let prepared = runtime.block_on(boot::prepare(&opts, &mut progress));
    drop(runtime);
    let launch = match prepared {
        Ok((launch, _digest)) => launch,
        Err(e) => fail(125, &e.to_string()),
    };
    if let Err(e) = handover::save(&opts.root, &launch) {
        fail(125, &e.to_string());
    }
    match handover::record(&launch) {
        Ok(Some(event)) => progress.line(format_args!("evidence records {}", event.text())),
        Ok(None) => progress.line("not in a sim enclave: the launch is not in the evidence"),
        Err(e) => fail(125, &e.to_string()),
    }
    let err = handover::exec(&launch);
    fail(exit_code(&err), &err.to_string())
}

/// docker's codes: 127 the program is not found, 126 it cannot be executed, 125 the
/// container could not be prepared.
fn exit_code(err: &HandoverError) -> i32 {
    match err {
        HandoverError::Exec(_, why)
            if why.contains("not found") || why.contains("no such file") =>
        {
            127
        }
        HandoverError::Exec(..) => 126,
        _ => 125,
    }
}

fn fail(code: i32, msg: &str) -> ! {
    // One write (see `boot::Progress::line`).
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("enclave-boot: error: {msg}\n").as_bytes(),
    );
    std::process::exit(code)
}
