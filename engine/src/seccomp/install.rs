//! Load a compiled filter into the calling thread with seccomp(2).
//!
//! Runs inside the forked container init. Nothing here allocates: the `sock_fprog` is built
//! on the stack over the program's existing instruction buffer and errors carry a raw errno.
//!
//! The kernel accepts a filter only if the caller has `no_new_privs` set or holds
//! CAP_SYS_ADMIN. Docker's order (runc): with `--security-opt no-new-privileges`, set NNP
//! and install the filter as the very last step before `execve`, so the init's own setup
//! syscalls are not filtered; otherwise install it while still holding CAP_SYS_ADMIN,
//! i.e. before the capability sets are reduced — then the syscalls the init still makes
//! (capset, prctl, setuid..., execve) must be allowed by the profile, which they are in
//! Docker's default profile.

use super::compile::{BpfProgram, SockFilter};
use super::error::{Result, SeccompError};

/// `SECCOMP_SET_MODE_FILTER` from `linux/seccomp.h`.
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// Install `prog` for the calling thread (and its future children). A single-threaded init
/// needs no TSYNC; flags requested in the OCI section are passed through.
pub fn install(prog: &BpfProgram) -> Result<()> {
    let insns: &[SockFilter] = prog.instructions();
    let len = u16::try_from(insns.len())
        .map_err(|_| SeccompError::InvalidProgram("more than 65535 instructions"))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program; SockFilter is layout-identical to sock_filter.
        filter: insns.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: fprog points to `len` valid instructions that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(prog.flags()),
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Install(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: lets a process without CAP_SYS_ADMIN install a filter,
/// and is what `--security-opt no-new-privileges` asks for.
pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(SeccompError::Install(std::io::Error::last_os_error()));
    }
    Ok(())
}
