//! The processes of the enclave once made: `pal_exec` runs one on a thread of its own
//! and waits for its exit value, `pal_kill` ends one by epoch interruption.

use std::fs::File;
use std::os::raw::c_int;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use pal::ffi::PalExecArgs;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use crate::log::Level;
use crate::{
    errno, guarded, lock, module, tell, tell_at, Created, Runtime, Shared, BAD_EXIT, KILL_GRACE,
    TRAP_EXIT,
};

/// # Safety
/// `args` must point to a valid `pal_exec_args` whose `exit_value` is writable.
#[no_mangle]
pub unsafe extern "C" fn pal_exec(args: *mut PalExecArgs) -> c_int {
    if args.is_null() {
        return errno(Errno::EINVAL);
    }
    // SAFETY: checked non-NULL; the caller owns the struct for the call.
    let (pid, exit_out) = unsafe { ((*args).pid, (*args).exit_value) };
    if exit_out.is_null() {
        return errno(Errno::EINVAL);
    }
    guarded(|| match exec(pid) {
        Ok(code) => {
            // SAFETY: checked non-NULL above.
            unsafe { *exit_out = code };
            0
        }
        Err(e) => errno(e),
    })
}

fn exec(pid: i32) -> Result<i32, Errno> {
    let (process, rt) = {
        let mut guard = lock();
        let enclave = guard.as_mut().ok_or(Errno::EINVAL)?;
        let p = enclave.created.remove(&pid).ok_or(Errno::ESRCH)?;
        enclave.running.insert(pid, p.shared.clone());
        (p, enclave.rt.clone())
    };
    let shared = process.shared.clone();
    let stderr = process.stderr.as_ref().and_then(|f| f.try_clone().ok());
    let name = process.name.clone();
    let started = Instant::now();
    let line = format!("pid {pid}: {name} started");
    let spawned = std::thread::Builder::new()
        .name(format!("wasm-{pid}"))
        .spawn(move || {
            // Said on the guest's thread before it runs: before anything it writes.
            crate::say_at(Level::Debug, &line);
            run(process)
        });
    if let Err(e) = spawned {
        // Each process is a thread of the runelet: the container's pids limit bounds
        // how many run at once.
        tell(
            stderr.as_ref(),
            &format!("error: {name}: cannot start: {e} (each wasm process is a task under the container's pids limit)"),
        );
        forget(pid);
        return Err(Errno::EAGAIN);
    }
    let code = wait(&shared, &rt, stderr.as_ref(), &name);
    forget(pid);
    crate::say_at(
        Level::Debug,
        &format!(
            "pid {pid}: {name} ended with exit value {code} after {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        ),
    );
    Ok(code)
}

fn forget(pid: i32) {
    if let Some(e) = lock().as_mut() {
        e.running.remove(&pid);
    }
}

/// Waits for the process's exit value; for a killed process, at most [`KILL_GRACE`]
/// after the kill. Past its deadline (the runtime arg), the process is stopped as by a
/// kill, and reported as a trap with the deadline's message.
fn wait(shared: &Shared, rt: &Runtime, stderr: Option<&File>, name: &str) -> i32 {
    let started = Instant::now();
    let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(code) = s.exit {
            return code;
        }
        let timeout = match (s.killed_at, &rt.deadline) {
            (Some(at), _) => match KILL_GRACE.checked_sub(at.elapsed()) {
                Some(left) => left,
                None => match shared.killed.load(Ordering::SeqCst) {
                    0 => {
                        // Past its deadline and still in a host call.
                        if let Some(msg) = s.over_limit.take() {
                            tell(stderr, &format!("{name}: {msg}"));
                        }
                        return TRAP_EXIT;
                    }
                    sig => return 128 + sig,
                },
            },
            (None, Some(d)) => match d.limit.checked_sub(started.elapsed()) {
                Some(left) => left,
                None => {
                    shared.expired.store(true, Ordering::SeqCst);
                    s.over_limit.get_or_insert_with(|| d.message());
                    s.killed_at = Some(Instant::now());
                    rt.engine.increment_epoch();
                    continue;
                }
            },
            (None, None) => Duration::from_secs(3600),
        };
        s = shared
            .changed
            .wait_timeout(s, timeout)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// The guest's thread: instantiates, runs `_start`, records the exit value.
fn run(p: Created) {
    let Created {
        mut store,
        pre,
        shared,
        stderr,
        name,
    } = p;
    // A panic on this thread (a runtime thread that could not be made, under a small
    // pids limit) must still report an exit, or pal_exec would wait for ever.
    // The attestation files appear as the process starts, before `_start` (a process
    // made at `create` and never started wrote none). Without them it still runs.
    if let Some(files) = store.data_mut().attestation.as_mut() {
        if let Err(r) = files.publish() {
            tell_at(
                stderr.as_ref(),
                Level::Warning,
                &format!("{name}: no {}: {}", crate::attest::GUEST_DIR, r.message),
            );
            store.data_mut().attestation = None;
        }
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pre.instantiate(&mut store).and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        })
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(wasmtime::Error::msg(format!("the runtime failed: {why}")))
    });
    let killed = shared.killed.load(Ordering::SeqCst);
    let over_limit = shared
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .over_limit
        .take();
    // The cause decides, not how the guest's last call ended: a process past a limit
    // or killed reports that even when it got to return or `proc_exit` (a guest
    // blocked in a host call when the kill came, say) before the epoch stopped it.
    let code = if let Some(msg) = over_limit {
        tell(stderr.as_ref(), &format!("{name}: {msg}"));
        TRAP_EXIT
    } else if killed != 0 {
        128 + killed
    } else {
        match result {
            Ok(()) => 0,
            Err(e) => {
                if let Some(exit) = e.downcast_ref::<I32Exit>() {
                    exit.0
                } else if let Some(trap) = e.downcast_ref::<Trap>() {
                    tell(stderr.as_ref(), &format!("{name}: wasm trap: {trap}"));
                    TRAP_EXIT
                } else {
                    tell(
                        stderr.as_ref(),
                        &format!("{name}: {}", module::one_line(&e)),
                    );
                    BAD_EXIT
                }
            }
        }
    };
    // Stores hold the guest's descriptors (its stdio duplicates): closed before the
    // exit is reported, so a reader of the container's output sees its end.
    drop(store);
    drop(stderr);
    let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    s.exit = Some(code);
    shared.changed.notify_all();
}

/// Whether `sig`'s default action is to ignore or stop the process (signal(7)): such
/// signals do not end a guest.
fn harmless(sig: c_int) -> bool {
    [
        libc::SIGCHLD,
        libc::SIGCONT,
        libc::SIGURG,
        libc::SIGWINCH,
        libc::SIGSTOP,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ]
    .contains(&sig)
}

/// Signals a process of the enclave by PAL pid: -1 every process, 0 the first (the
/// lowest pid still there: the container's own process while it lives; pal-api.md's
/// "current process" of a one-process PAL), `n` that one. Signals whose default
/// action is to ignore or stop do nothing; any other ends the process with exit value
/// `128 + sig`.
#[no_mangle]
pub extern "C" fn pal_kill(pid: c_int, sig: c_int) -> c_int {
    guarded(|| {
        if !(1..=libc::SIGRTMAX()).contains(&sig) {
            return errno(Errno::EINVAL);
        }
        let guard = lock();
        let Some(enclave) = guard.as_ref() else {
            return errno(Errno::ESRCH);
        };
        let all = enclave
            .running
            .iter()
            .chain(enclave.created.iter().map(|(p, c)| (p, &c.shared)));
        let first = all.clone().map(|(p, _)| *p).min();
        let targets: Vec<Arc<Shared>> = all
            .filter(|(p, _)| match pid {
                ..=-1 => true,
                0 => Some(**p) == first,
                _ => **p == pid,
            })
            .map(|(_, s)| s.clone())
            .collect();
        if targets.is_empty() && pid > 0 {
            return errno(Errno::ESRCH);
        }
        if harmless(sig) {
            return 0;
        }
        for t in &targets {
            // The first cause is the one reported: a process past its deadline is
            // ending already, as a trap.
            if t.expired.load(Ordering::SeqCst) {
                continue;
            }
            // The first fatal signal is the one reported.
            if t.killed
                .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                let mut s = t.state.lock().unwrap_or_else(|p| p.into_inner());
                s.killed_at = Some(Instant::now());
                t.changed.notify_all();
            }
        }
        enclave.rt.engine.increment_epoch();
        // rune's kill of a container whose processes all ended (at delete) reaches
        // none: not worth a line.
        if !targets.is_empty() {
            crate::say_at(
                Level::Debug,
                &format!("signal {sig} for pid {pid}: {} process(es)", targets.len()),
            );
        }
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ignore_and_stop_signals_are_harmless() {
        assert!(harmless(libc::SIGCHLD) && harmless(libc::SIGWINCH) && harmless(libc::SIGCONT));
        assert!(!harmless(libc::SIGTERM) && !harmless(libc::SIGKILL) && !harmless(libc::SIGINT));
    }
}
