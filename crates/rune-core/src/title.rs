//! The command line of a container's init. That process is rune's (a clone of
//! `rune create --bundle /host/path --pid-file … --log …`), so without this the container,
//! `ps` and `docker top` would read host paths in its `/proc/<pid>/cmdline`. It is
//! rewritten in place, as `setproctitle(3)` does: `<rune as invoked> init` while the
//! container waits for `start` (runc's init reads `<runc as invoked> init`), and for an
//! enclave container, whose init then hosts the enclave runtime, `rune-init` followed by
//! the enclave program's argv.

use std::sync::OnceLock;

/// This process's argument area and its `argv[0]`, found once. [`prepare`] finds them
/// in the runtime before the init is cloned, which inherits them: the init may have no
/// `/proc` of its own, and its argument area is overwritten.
static ORIGINAL: OnceLock<(Option<(usize, usize)>, String)> = OnceLock::new();

fn original() -> &'static (Option<(usize, usize)>, String) {
    ORIGINAL.get_or_init(|| {
        let argv0 = std::env::args_os()
            .next()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rune".into());
        (arg_area(), argv0)
    })
}

/// Finds the argument area now, for the processes cloned from this one.
pub fn prepare() {
    original();
}

/// The title of an init waiting for `start`, as runc's: `argv[0]` as rune was invoked,
/// then `init`; named `rune-init`.
pub fn set_waiting() {
    let argv0 = original().1.clone();
    write(&[&argv0, "init"]);
}

/// The title of an enclave container's init running its enclave program: `rune-init`
/// and `argv`, named `rune-init`.
pub fn set(argv: &[String]) {
    let words: Vec<&str> = std::iter::once("rune-init")
        .chain(argv.iter().map(String::as_str))
        .collect();
    write(&words);
}

/// Replaces this process's command line (the `arg_start..arg_end` area of
/// `/proc/self/stat`, fields 48 and 49 of proc(5)) with `words`, NUL separated and cut
/// to fit, and its name (`comm`) with `rune-init`. Best effort: a failure leaves the old
/// title.
fn write(words: &[&str]) {
    let _ = nix::sys::prctl::set_name(c"rune-init");
    let Some((start, end)) = original().0 else {
        return;
    };
    let len = end.saturating_sub(start);
    if len == 0 {
        return;
    }
    let mut title: Vec<u8> = words.join("\0").into_bytes();
    // The area keeps its size; the title ends with at least one NUL.
    title.truncate(len - 1);
    title.resize(len, 0);
    // SAFETY: [start, end) is this process's own argument area, mapped and writable (the
    // kernel placed argv there at exec; proc(5) reports its bounds, and a clone keeps
    // them) and referenced by no Rust object: clap parsed argv into owned Strings at
    // start-up and nothing reads it later.
    unsafe { std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, len) };
}

/// `arg_start` and `arg_end` from `/proc/self/stat`.
fn arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces and ')': field 3 is first.
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split(' ').collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    Some((field(48)?, field(49)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_argument_area_of_this_process() {
        let (start, end) = super::arg_area().expect("arg_start/arg_end in /proc/self/stat");
        let cmdline = std::fs::read("/proc/self/cmdline").unwrap();
        assert_eq!(end - start, cmdline.len());
    }
}
