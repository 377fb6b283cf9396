//! Secrets from a key broker, for the module: the host import `env.kbs_get_resource`.
//!
//! WASI preview 1 has no sockets, so the module cannot speak the KBS protocol itself;
//! the enclave runtime does it for the module, inside the enclave (the same trust as the
//! rest of the PAL: nothing outside it sees the secret). The call runs RCAR (KBS
//! protocol 0.4.0, as `attestation-agent`) with `sim` evidence carrying the enclave's
//! measurement (the module's `mr_enclave`), its event log and init-data, then GETs the resource, which the broker
//! encrypts to a key made for this process; the plaintext goes straight into the
//! module's memory.
//!
//! ```c
//! // Fetches the KBS resource `uri` ("kbs:///repo/type/tag") from the broker at `url`
//! // (https://IP:PORT with `ca_pem` the PEM CA certificates to trust, or http://IP:PORT
//! // with ca_len 0; the host an IP address), attesting this enclave first. Writes the
//! // resource at `out` when it fits in `capacity` bytes, and returns its length either
//! // way (a length over `capacity`: nothing written, call again with room). Negative
//! // errno on failure, the reason on the process's stderr:
//! //   -EINVAL  url or uri not UTF-8, a host that is not an IP address, not a
//! //            kbs:///repo/type/tag uri, https without a CA
//! //   -EFAULT  a pointer outside the module's memory
//! //   -EACCES  the broker refused: attestation, resource policy, or no such resource
//! //            (verdictd and trustee answer a missing resource with 401)
//! //   -ENOENT  a path the broker does not serve (404)
//! //   -EAGAIN  no evidence (the platform key is missing)
//! //   -EFBIG   a resource over 2 GiB
//! //   -EIO     the broker is unreachable, or answered outside the protocol
//! int32_t kbs_get_resource(const char *url, uint32_t url_len,
//!                          const char *ca_pem, uint32_t ca_len,
//!                          const char *uri, uint32_t uri_len,
//!                          uint8_t *out, uint32_t capacity);
//! ```
//!
//! **Which broker** is the module's choice (its arguments), not the host's: a module
//! that must get its secrets from one broker names it and its CA in its own code or
//! data, which its measurement covers. One taken from argv or the environment is one
//! the host chose. Only `https` with that CA makes the answer the broker's: the secret
//! is encrypted to a key of this process either way, but over `http` anyone on the path
//! can answer as the broker and hand the module a value of their choosing. The
//! attestation (the broker's token) is kept for the process's later calls to the same
//! broker.

use std::sync::Arc;

use attestation_agent::{Agent, AgentError};
use nix::errno::Errno;
use wasmtime::{Caller, Extern, Linker};

use crate::guest::Host;
use crate::module::{one_line, Refusal};

/// A process's client of one broker (URL and CA), kept between calls.
pub(crate) struct Client {
    url: String,
    ca: Vec<u8>,
    agent: Agent,
}

/// Adds `env.kbs_get_resource` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<(), Refusal> {
    linker
        .func_wrap(
            "env",
            "kbs_get_resource",
            |mut caller: Caller<'_, Host>,
             url: u32,
             url_len: u32,
             ca: u32,
             ca_len: u32,
             uri: u32,
             uri_len: u32,
             out: u32,
             capacity: u32|
             -> i32 {
                match get(
                    &mut caller,
                    (url, url_len),
                    (ca, ca_len),
                    (uri, uri_len),
                    (out, capacity),
                ) {
                    Ok(len) => len,
                    Err(e) => -(e as i32),
                }
            },
        )
        .map_err(|e| Refusal::new(Errno::ENOMEM, format!("kbs import: {}", one_line(&e))))?;
    Ok(())
}

/// The guest's bytes at `(ptr, len)`.
pub(crate) fn read(
    caller: &mut Caller<'_, Host>,
    (ptr, len): (u32, u32),
) -> Result<Vec<u8>, Errno> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(Errno::EFAULT);
    };
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(Errno::EFAULT)?;
    memory
        .data(&*caller)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(Errno::EFAULT)
}

/// One line on the calling process's stderr.
pub(crate) fn tell(caller: &Caller<'_, Host>, msg: &str) {
    crate::tell(caller.data().stderr.as_ref(), msg);
}

/// Checks that the broker's URL names its host by IP address. A name would be resolved
/// here, inside the container's root, by glibc's NSS: with the image's
/// `/etc/nsswitch.conf` and its `libnss_*.so` libraries, native code of the image's
/// choosing loaded into the enclave runtime.
fn ip_literal(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("not an http:// or https:// URL")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.parse::<std::net::IpAddr>().map(drop).map_err(|_| {
        format!("the broker's host {host:?} is not an IP address (a name would be resolved with the image's NSS configuration and libraries)")
    })
}

fn utf8(caller: &Caller<'_, Host>, bytes: Vec<u8>, what: &str) -> Result<String, Errno> {
    String::from_utf8(bytes).map_err(|_| {
        tell(
            caller,
            &format!("kbs_get_resource: the {what} is not UTF-8"),
        );
        Errno::EINVAL
    })
}

fn get(
    caller: &mut Caller<'_, Host>,
    url: (u32, u32),
    ca: (u32, u32),
    uri: (u32, u32),
    (out, capacity): (u32, u32),
) -> Result<i32, Errno> {
    let bytes = read(caller, url)?;
    let url = utf8(caller, bytes, "url")?;
    let ca = read(caller, ca)?;
    let bytes = read(caller, uri)?;
    let uri = utf8(caller, bytes, "uri")?;
    let stderr = caller
        .data()
        .stderr
        .as_ref()
        .and_then(|f| f.try_clone().ok());
    let fail = |e: &str, errno: Errno| {
        crate::tell(
            stderr.as_ref(),
            &format!("kbs_get_resource {uri} from {url}: {e}"),
        );
        errno
    };
    // Refused before anything is sent: a host that is not an IP address; a URI naming
    // a broker of its own (the url names it); a resource-plugin path that is not
    // repo/type/tag.
    ip_literal(&url).map_err(|e| fail(&e, Errno::EINVAL))?;
    if !uri
        .split_once("://")
        .is_some_and(|(_, rest)| rest.starts_with('/'))
    {
        return Err(fail(
            "not a kbs:///repo/type/tag resource (the broker is the url's, not the uri's)",
            Errno::EINVAL,
        ));
    }
    match attestation_agent::ResourceUri::parse(&uri) {
        Ok(r) if r.plugin != "resource" || r.path.len() == 3 => {}
        Ok(_) => return Err(fail("not a kbs:///repo/type/tag resource", Errno::EINVAL)),
        Err(e) => return Err(fail(&e.to_string(), Errno::EINVAL)),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&e.to_string(), Errno::EAGAIN))?;
    let client = &mut caller.data_mut().kbs;
    if !matches!(client, Some(c) if c.url == url && c.ca == ca) {
        let reporter: attestation_agent::SimReporter = Arc::new(crate::rtmr::Runtime);
        let ca_pem = (!ca.is_empty()).then_some(ca.as_slice());
        // What the client refuses here is the module's url or CA.
        let agent = Agent::with_sim_reporter(&url, ca_pem, reporter)
            .map_err(|e| fail(&e.to_string(), Errno::EINVAL))?;
        *client = Some(Client {
            url: url.clone(),
            ca,
            agent,
        });
    }
    let agent = &mut client.as_mut().expect("set above").agent;
    let secret = runtime
        .block_on(agent.get_resource(&uri))
        .map_err(|e| fail(&e.to_string(), errno(&e)))?;
    let len = i32::try_from(secret.len())
        .map_err(|_| fail("the resource is over 2 GiB", Errno::EFBIG))?;
    if secret.len() <= capacity as usize {
        let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
            return Err(Errno::EFAULT);
        };
        memory
            .write(&mut *caller, out as usize, &secret)
            .map_err(|_| Errno::EFAULT)?;
    }
    Ok(len)
}

/// The errno a failed call returns.
fn errno(e: &AgentError) -> Errno {
    match e {
        AgentError::Kbs {
            status: 401 | 403, ..
        } => Errno::EACCES,
        AgentError::Kbs { status: 404, .. } => Errno::ENOENT,
        AgentError::BadUri(_) => Errno::EINVAL,
        AgentError::Attester(_) => Errno::EAGAIN,
        _ => Errno::EIO,
    }
}
