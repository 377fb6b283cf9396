//! The agent in a real `sim` enclave: `liberpal-sim.so` loaded as rune loads it, a
//! shell as the enclave's program running `attestation-agent extend` and `token` against
//! a real verdictd. The event goes to the enclave runtime (not the agent process, which
//! ends), extends RTMR3 of every later report, and the broker replays the log into the
//! signed registers and shows it, with the init-data the enclave was launched with.

use std::io::Read;
use std::os::fd::AsRawFd;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

const DOC: &str =
    "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"policy.txt\" = \"tenant-a\"\n";

#[test]
fn extend_from_the_cli_is_replayed_by_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(sim_tee::PLATFORM_DIR_ENV, dir.path().join("platform"));
    let so = test_support::release_artifact("pal-sim", "liberpal_sim.so").unwrap();
    // The enclave's program, signed: the shell.
    let manifest = dir.path().join("sh.manifest.json");
    let mr = test_support::sim_sign(
        &dir.path().join("sign.key"),
        std::path::Path::new("/bin/sh"),
        "/bin/sh",
        &manifest,
    )
    .unwrap();
    let kbs = test_support::Verdictd::start(
        &dir.path().join("verdictd"),
        &mr,
        &[("default/key/app", b"the key")],
    )
    .unwrap();

    let pal = pal::Pal::open(&so).unwrap();
    pal.init(
        &format!(
            "manifest={} init_data={}",
            manifest.display(),
            STANDARD.encode(DOC)
        ),
        "info",
    )
    .unwrap();
    let aa = env!("CARGO_BIN_EXE_attestation-agent");
    let url = kbs.url();
    let script = format!(
        "set -e; {aa} extend --domain example.org --operation Loaded --content 'model v3'; \
         {aa} extend --domain example.org --operation 'bad op' --content x 2>&1 || echo refused; \
         {aa} event-log; {aa} --url {url} --tee sim token; \
         {aa} --url {url} --tee sim get-resource kbs:///default/key/app"
    );
    let (r, w) = nix::unistd::pipe().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut r = std::fs::File::from(r);
    let argv: Vec<String> = ["/bin/sh", "-c", &script].map(String::from).to_vec();
    let env = vec!["PATH=/usr/bin:/bin".to_string()];
    let stdio = pal::StdioFds {
        stdin: null.as_raw_fd(),
        stdout: w.as_raw_fd(),
        stderr: w.as_raw_fd(),
    };
    let code = pal.run_with(&argv, &env, stdio, |_| {}).unwrap();
    drop(w);
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    pal.destroy().unwrap();
    assert_eq!(code, 0, "{out}\n{}", kbs.log());
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("attestation-agent: ") && lines[0].contains("\"bad op\""),
        "{out}"
    );
    assert_eq!(lines[1], "refused");
    // The runtime's record of the shell's launch first (CC MR 1), then the event.
    assert!(
        lines[2].starts_with(
            "1 github.com/inclavare-containers/rune Launch {\"argv\":[\"/bin/sh\",\"-c\",\"set -e; "
        ),
        "{out}"
    );
    assert_eq!(lines[3], "4 example.org Loaded model v3");
    let token = lines[4];
    assert!(
        lines[5].starts_with("kbs:///default/key/app: sha256:"),
        "{out}"
    );

    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let cpu0 = &claims["submods"]["cpu0"];
    assert_eq!(cpu0["ear.status"], "affirming", "{cpu0}");
    let a = &cpu0["ear.veraison.annotated-evidence"];
    let log = &a["sim"]["uefi_event_logs"];
    assert_eq!(log.as_array().map(Vec::len), Some(2), "{a}");
    // The launch, as a policy reads it: argv, env, cwd and ids parsed from its JSON.
    let launch = &log[0];
    assert_eq!(launch["index"], 1);
    assert_eq!(launch["digest_matches_event"], true);
    let data = &launch["details"]["data"];
    assert_eq!(data["domain"], "github.com/inclavare-containers/rune");
    assert_eq!(data["operation"], "Launch");
    assert_eq!(data["content"]["argv"], serde_json::json!(argv));
    assert_eq!(data["content"]["env"], serde_json::json!(env));
    assert_eq!(
        data["content"]["cwd"],
        std::env::current_dir().unwrap().to_str().unwrap()
    );
    assert_eq!(data["content"]["uid"], nix::unistd::geteuid().as_raw());
    assert_eq!(a["sim"]["sim_rtmr0_count"], 1);
    assert_eq!(log[1]["details"]["data"]["content"], "model v3");
    assert_eq!(log[1]["index"], 4);
    assert_eq!(a["sim"]["sim_rtmr3_count"], 1);
    // RTMR3 by the formula: SHA-384(0^48 ‖ SHA-384("LEAA" ‖ u32le(n) ‖ text)).
    use sha2::Digest;
    let text = "example.org Loaded model v3";
    let tagged = [
        &b"LEAA"[..],
        &(text.len() as u32).to_le_bytes(),
        text.as_bytes(),
    ]
    .concat();
    let rtmr3 = sha2::Sha384::digest([&[0u8; 48][..], &sha2::Sha384::digest(&tagged)].concat());
    assert_eq!(a["sim"]["sim_rtmr3"], hex::encode(rtmr3));
    // The init-data: its SHA-384 zero-padded in the config id, its claims parsed.
    let mut id = sha2::Sha384::digest(DOC.as_bytes()).to_vec();
    id.resize(64, 0);
    assert_eq!(a["init_data"], hex::encode(id));
    assert_eq!(a["init_data_claims"]["policy.txt"], "tenant-a");
}
