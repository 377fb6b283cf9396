//! The C ABI of the Enclave Runtime PAL API, exactly as rune passes it: naturally
//! aligned structs of pointers (not the `packed` structs the v1/v2 spec text shows).

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};

/// `pal_init` argument of v1 and v2.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PalAttrV1 {
    pub args: *const c_char,
    pub log_level: *const c_char,
}

/// `pal_init` argument of v3: the v1 attr first, then a pre-built enclave (fd -1 and
/// addr 0 when there is none).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PalAttrV3 {
    pub attr_v1: PalAttrV1,
    pub fd: c_int,
    pub addr: u64,
}

/// The payload's stdio.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PalStdioFds {
    pub stdin: c_int,
    pub stdout: c_int,
    pub stderr: c_int,
}

/// `pal_create_process` argument (v2, v3).
#[repr(C)]
#[derive(Debug)]
pub struct PalCreateProcessArgs {
    /// `argv[0]`.
    pub path: *const c_char,
    /// NULL-terminated, `argv[0]` included.
    pub argv: *const *const c_char,
    /// NULL-terminated `K=V` list.
    pub env: *const *const c_char,
    pub stdio: *mut PalStdioFds,
    /// Out: the PAL-side pid.
    pub pid: *mut c_int,
}

/// `pal_exec` argument (v2, v3).
#[repr(C)]
#[derive(Debug)]
pub struct PalExecArgs {
    pub pid: c_int,
    pub exit_value: *mut c_int,
}

pub type GetVersionFn = unsafe extern "C" fn() -> c_int;
pub type InitFn = unsafe extern "C" fn(attr: *const c_void) -> c_int;
pub type CreateProcessFn = unsafe extern "C" fn(args: *mut PalCreateProcessArgs) -> c_int;
pub type ExecFn = unsafe extern "C" fn(args: *mut PalExecArgs) -> c_int;
pub type ExecV1Fn = unsafe extern "C" fn(
    path: *const c_char,
    argv: *const *const c_char,
    stdio: *mut PalStdioFds,
    exit_code: *mut c_int,
) -> c_int;
pub type KillFn = unsafe extern "C" fn(pid: c_int, sig: c_int) -> c_int;
pub type DestroyFn = unsafe extern "C" fn() -> c_int;
pub type GetLocalReportFn = unsafe extern "C" fn(
    target_info: *mut c_void,
    target_info_len: c_int,
    report: *mut c_void,
    report_len: *mut c_int,
) -> c_int;

/// The strings of a C `argv`/`envp`-style array (`pal_create_process_args`' `argv` and
/// `env`), as a PAL reads them; invalid UTF-8 is replaced (U+FFFD). NULL gives none.
///
/// # Safety
/// `p` must be NULL or point to a NULL-terminated array of NUL-terminated strings.
pub unsafe fn strings(mut p: *const *const c_char) -> Vec<String> {
    let mut out = Vec::new();
    if p.is_null() {
        return out;
    }
    // SAFETY: per the contract above, every element up to the NULL is a valid C string.
    unsafe {
        while !(*p).is_null() {
            out.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
            p = p.add(1);
        }
    }
    out
}

/// `pal_get_local_report` for a PAL whose report is bound to report data carried in the
/// first 64 bytes of the target info (the `sim` convention, pal-api.md §11): checks the
/// arguments (`-EINVAL`: a NULL pointer, or fewer than 64 bytes of target info), makes
/// the report from those 64 bytes with `make` (`-EAGAIN` when it gives none), copies it
/// out (`-ENOSPC` when `*report_len` is smaller) and sets `*report_len` to its length.
/// Returns 0 or the negative errno, as the PAL call does.
///
/// # Safety
/// `target_info` must be readable for `target_info_len` bytes, `report_len` valid, and
/// `report` writable for `*report_len` bytes.
pub unsafe fn local_report_from_target_info(
    target_info: *const c_void,
    target_info_len: c_int,
    report: *mut c_void,
    report_len: *mut c_int,
    make: impl FnOnce([u8; 64]) -> Option<Vec<u8>>,
) -> c_int {
    if target_info.is_null() || report.is_null() || report_len.is_null() || target_info_len < 64 {
        return -libc::EINVAL;
    }
    let mut data = [0u8; 64];
    // SAFETY: checked non-NULL, and at least 64 bytes long per the caller's length.
    let capacity = unsafe {
        data.copy_from_slice(std::slice::from_raw_parts(target_info as *const u8, 64));
        *report_len
    };
    let Some(bytes) = make(data) else {
        return -libc::EAGAIN;
    };
    if capacity < 0 || (capacity as usize) < bytes.len() {
        return -libc::ENOSPC;
    }
    // SAFETY: `report` holds `capacity` bytes, checked above to fit.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), report as *mut u8, bytes.len());
        *report_len = bytes.len() as c_int;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn local_reports_take_the_first_64_bytes_and_check_every_length() {
        let mut target = [0u8; 512];
        target[..3].copy_from_slice(b"abc");
        let mut out = [0u8; 100];
        let mut len: c_int = 100;
        let make = |d: [u8; 64]| Some(d[..10].to_vec());
        let call = |t: &[u8], out: &mut [u8], len: &mut c_int| unsafe {
            local_report_from_target_info(
                t.as_ptr() as *const c_void,
                t.len() as c_int,
                out.as_mut_ptr() as *mut c_void,
                len,
                make,
            )
        };
        assert_eq!(call(&target, &mut out, &mut len), 0);
        assert_eq!(len, 10);
        assert_eq!(&out[..3], b"abc");
        let mut small: c_int = 9;
        assert_eq!(call(&target, &mut out, &mut small), -libc::ENOSPC);
        assert_eq!(call(&target[..63], &mut out, &mut len), -libc::EINVAL);
        let none = unsafe {
            local_report_from_target_info(
                target.as_ptr() as *const c_void,
                512,
                out.as_mut_ptr() as *mut c_void,
                &mut len,
                |_| None,
            )
        };
        assert_eq!(none, -libc::EAGAIN);
    }

    #[test]
    fn layouts_match_the_c_abi_on_lp64() {
        assert_eq!(size_of::<PalAttrV1>(), 16);
        assert_eq!(
            (
                size_of::<PalAttrV3>(),
                offset_of!(PalAttrV3, fd),
                offset_of!(PalAttrV3, addr)
            ),
            (32, 16, 24)
        );
        assert_eq!(size_of::<PalStdioFds>(), 12);
        assert_eq!(size_of::<PalCreateProcessArgs>(), 40);
        assert_eq!(
            (
                size_of::<PalExecArgs>(),
                offset_of!(PalExecArgs, exit_value)
            ),
            (16, 8)
        );
        assert_eq!(align_of::<PalAttrV3>(), 8);
    }

    #[test]
    fn c_string_arrays_are_read_up_to_their_null() {
        let a = std::ffi::CString::new("a").unwrap();
        let b = std::ffi::CString::new("b c").unwrap();
        let array = [a.as_ptr(), b.as_ptr(), std::ptr::null()];
        // SAFETY: a NULL-terminated array of NUL-terminated strings, alive here.
        assert_eq!(unsafe { strings(array.as_ptr()) }, ["a", "b c"]);
        // SAFETY: NULL is allowed.
        assert!(unsafe { strings(std::ptr::null()) }.is_empty());
    }
}
