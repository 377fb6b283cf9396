//! Runtime measurements of a wasm enclave, as `liberpal-sim` keeps them
//! ([`sim_tee::rtmr::Measurements`]: the Confidential Containers event log and RTMR0..3,
//! reset at `pal_init`, shared by every process of the enclave, carried by every report).
//!
//! - Before a process starts (at `pal_create_process`, before its `/dev/attestation`
//!   files are made, so its own evidence covers it) the PAL records rune's `Launch`
//!   event at CC MR 1: argv and the environment the module gets, and the runelet's
//!   working directory and ids. The module cannot extend CC MR 1.
//! - The module extends CC MR 4 (RTMR3) through one import in module `env`, shaped as
//!   guest-components' `extend_runtime_measurement(domain, operation, content)`:
//!
//! ```c
//! // Records the event (domain, operation, content: UTF-8 without spaces in domain and
//! // operation, as the CC event log's lines need) and extends CC MR 4. Returns 0, or a
//! // negative errno: -EINVAL (not UTF-8, or not a valid event), -ENOSPC (the log is
//! // full), -EFAULT (a pointer outside the module's memory).
//! int32_t extend_runtime_measurement(const char *domain, uint32_t domain_len,
//!                                    const char *operation, uint32_t operation_len,
//!                                    const char *content, uint32_t content_len);
//! ```
//!
//! `kbs_get_resource` sends the log with the evidence (and the init-data document the
//! runtime arg `init_data=` gave, bound into the report's config id), so a broker
//! replays it against the report's registers and may require its events.

use nix::errno::Errno;
use sim_tee::measurement::eventlog::{Event, EventLog, EventLogError, RUNTIME_MR_INDEX};
use wasmtime::{Caller, Linker};

use crate::guest::Host;
use crate::module::{one_line, Refusal};

/// Records the launch of `argv` with the module's environment `env` (CC MR 1).
pub(crate) fn record_launch(argv: &[String], env: &[(String, String)]) -> Result<(), Refusal> {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let event =
        sim_tee::rtmr::launch_event(argv, &env).map_err(|e| Refusal::new(Errno::E2BIG, e))?;
    crate::with_enclave(|e| e.measurements.extend(sim_tee::measurement::eventlog::LAUNCH_MR_INDEX, &event))
        .map_err(|e| Refusal::new(Errno::EINVAL, e))?
        .map_err(|e| {
            Refusal::new(
                Errno::ENOSPC,
                format!(
                    "{}: its launch (argv, environment, working directory, ids) cannot be measured: {e}",
                    argv[0]
                ),
            )
        })
}

/// Adds `env.extend_runtime_measurement` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<(), Refusal> {
    linker
        .func_wrap(
            "env",
            "extend_runtime_measurement",
            |mut caller: Caller<'_, Host>,
             domain: u32,
             domain_len: u32,
             operation: u32,
             operation_len: u32,
             content: u32,
             content_len: u32|
             -> i32 {
                match extend(
                    &mut caller,
                    (domain, domain_len),
                    (operation, operation_len),
                    (content, content_len),
                ) {
                    Ok(()) => 0,
                    Err(e) => -(e as i32),
                }
            },
        )
        .map_err(|e| {
            Refusal::new(
                Errno::ENOMEM,
                format!("measurement import: {}", one_line(&e)),
            )
        })?;
    Ok(())
}

fn extend(
    caller: &mut Caller<'_, Host>,
    domain: (u32, u32),
    operation: (u32, u32),
    content: (u32, u32),
) -> Result<(), Errno> {
    let text = |caller: &mut Caller<'_, Host>, at: (u32, u32)| -> Result<String, Errno> {
        String::from_utf8(crate::kbs::read(caller, at)?).map_err(|_| Errno::EINVAL)
    };
    let (domain, operation, content) = (
        text(caller, domain)?,
        text(caller, operation)?,
        text(caller, content)?,
    );
    let stderr = caller
        .data()
        .stderr
        .as_ref()
        .and_then(|f| f.try_clone().ok());
    let fail = |e: EventLogError| {
        crate::tell(stderr.as_ref(), &format!("extend_runtime_measurement: {e}"));
        match e {
            EventLogError::Log(_) => Errno::ENOSPC,
            _ => Errno::EINVAL,
        }
    };
    let event = Event::new(&domain, &operation, &content).map_err(fail)?;
    crate::with_enclave(|e| e.measurements.extend(RUNTIME_MR_INDEX, &event))
        .map_err(|_| Errno::EINVAL)?
        .map_err(fail)
}

/// The enclave's evidence for an [`attestation_agent::Agent`] running in this PAL.
pub(crate) struct Runtime;

impl attestation_agent::SimRuntime for Runtime {
    fn report(&self, report_data: [u8; 64]) -> Result<Vec<u8>, String> {
        crate::signed_report(report_data)
    }

    fn event_log(&self) -> Result<EventLog, String> {
        crate::with_enclave(|e| e.measurements.log().clone())
    }

    fn init_data(&self) -> Option<String> {
        crate::with_enclave(|e| e.init_data.as_ref().map(|d| d.text.clone()))
            .ok()
            .flatten()
    }
}
