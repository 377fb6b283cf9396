//! The command line of an enclave container's init. That process is rune's (a clone of
//! `rune create --bundle /host/path --pid-file … --log …`) and hosts the enclave runtime, so
//! without this the container and `docker top` would read host paths in its
//! `/proc/1/cmdline`. It is rewritten in place, as `setproctitle(3)` does, to
//! `rune-init` followed by the enclave program's argv.

/// Replaces this process's command line (the `arg_start..arg_end` area of
/// `/proc/self/stat`, fields 48 and 49 of proc(5)) with `rune-init` and `argv`, NUL
/// separated and cut to fit, and its name (`comm`) with `rune-init`. Best effort: a
/// failure leaves the old title.
pub fn set(argv: &[String]) {
    let _ = nix::sys::prctl::set_name(c"rune-init");
    let Some((start, end)) = arg_area() else {
        return;
    };
    let len = end.saturating_sub(start);
    if len == 0 {
        return;
    }
    let mut title: Vec<u8> = b"rune-init".to_vec();
    for a in argv {
        title.push(0);
        title.extend_from_slice(a.as_bytes());
    }
    // The area keeps its size; the title ends with at least one NUL.
    title.truncate(len - 1);
    title.resize(len, 0);
    // SAFETY: [start, end) is this process's own argument area, mapped and writable (the
    // kernel placed argv there at exec; proc(5) reports its bounds) and referenced by no
    // Rust object: std copied argv into owned Strings at start-up.
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
