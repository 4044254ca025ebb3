//! The daemon's fork server for monitors and exec helpers. A daemon start used to fork the
//! multi-threaded daemon (copying its page tables) and exec a fresh `pelagos __monitor`,
//! which then paid the dynamic loader and the relocation of a large binary: about 2.5 ms
//! of CPU and latency on every container start, and the same again for every `docker
//! exec` (`pelagos __exec`). Instead the daemon execs one `pelagos __spawner` when it
//! starts; that process stays single-threaded and small, and forks a monitor or an exec
//! helper for each request. What it forks runs the same code as an exec'd one.
//!
//! Daemon <-> spawner, on the spawner channel (numbered like the steps in `sync`):
//!   F1 daemon -> spawner  `ForkMonitor` + fd: the monitor's end of a start channel. The
//!                         spawner forks; the child becomes the monitor on that channel.
//!                         There is no answer: the start protocol (S1/S2) on the channel
//!                         reports the outcome, and a failed fork shows there as EOF.
//!   F2 daemon -> spawner  `ForkExecHelper { request }` + fds: the helper's control
//!                         socket, stdout, stderr and (optional) stdin. The child puts the
//!                         stdio on 0-2 and runs the helper, which reports on the control
//!                         socket (`Started`/`ExecFailed`, then `ExecExited`): its exit
//!                         status goes to the spawner, not to the daemon.
//! In the spawner, the descriptors are closed after the fork. EOF on the spawner channel
//! (the daemon exited or dropped it) ends the spawner; what it forked carries on.

use super::sync::{self, SyncMsg};
use crate::error::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The argument that turns the pelagos binary into the fork server.
pub const SPAWNER_ARG: &str = "__spawner";
/// Where the spawner finds its channel.
const CHANNEL_FD: RawFd = 3;

/// The daemon's handle on its running spawner.
pub struct Spawner {
    inner: Mutex<Option<Running>>,
}

struct Running {
    channel: OwnedFd,
    child: Child,
}

static SPAWNER: OnceLock<Spawner> = OnceLock::new();

/// Makes this process (the daemon) start monitors through a spawner from now on, and
/// launches it. `PELAGOS_SPAWNER=0` keeps the exec path (for comparisons).
pub fn install() {
    if std::env::var_os("PELAGOS_SPAWNER").is_some_and(|v| v == "0") {
        return;
    }
    let s = SPAWNER.get_or_init(|| Spawner {
        inner: Mutex::new(None),
    });
    if let Ok(mut g) = s.inner.lock()
        && g.is_none()
    {
        match launch() {
            Ok(r) => *g = Some(r),
            Err(e) => tracing::warn!("monitor spawner: {e}; monitors will be exec'd"),
        }
    }
}

/// The installed spawner, if this process uses one.
pub fn get() -> Option<&'static Spawner> {
    SPAWNER.get()
}

fn launch() -> Result<Running> {
    let (ours, theirs) = sync::channel()?;
    let mut cmd = Command::new(super::spawn::monitor_exe());
    cmd.arg(SPAWNER_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the hook only runs dup2/fcntl (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(sync::fd_at_hook(theirs.as_raw_fd(), CHANNEL_FD));
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("spawn monitor spawner", e))?;
    Ok(Running {
        channel: ours,
        child,
    })
}

impl Spawner {
    /// F1: has the spawner fork a monitor on `theirs` (the monitor's end of a start
    /// channel). A spawner that died is launched again once; an error means the caller
    /// should exec the monitor itself.
    pub(crate) fn fork_monitor(&self, theirs: &OwnedFd) -> Result<()> {
        self.send(&SyncMsg::ForkMonitor, &[theirs.as_raw_fd()])
    }

    fn send(&self, msg: &SyncMsg, fds: &[RawFd]) -> Result<()> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| Error::Internal("monitor spawner lock poisoned".into()))?;
        for attempt in 0..2 {
            if g.is_none() {
                *g = Some(launch()?);
            }
            let Some(r) = g.as_mut() else { continue };
            match sync::send_fds(r.channel.as_fd(), msg, fds) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Gone (killed, crashed): reap it and try a new one.
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    *g = None;
                    if attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        Err(Error::Internal("monitor spawner unavailable".into()))
    }

    /// F2: has the spawner fork an exec helper for `request` (an `ExecHelperRequest` as
    /// JSON) with `control` as its control socket and the given stdio (stdin optional).
    /// The helper reports `Started`/`ExecFailed` and, as it ends, `ExecExited` on
    /// `control`. An error means the caller should exec the helper itself.
    pub fn fork_exec_helper(
        &self,
        request: &str,
        control: &OwnedFd,
        stdin: Option<&OwnedFd>,
        stdout: &OwnedFd,
        stderr: &OwnedFd,
    ) -> Result<()> {
        let mut fds = vec![control.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
        fds.extend(stdin.map(|f| f.as_raw_fd()));
        self.send(
            &SyncMsg::ForkExecHelper {
                request: request.to_string(),
            },
            &fds,
        )
    }
}

/// Entry point of `pelagos __spawner`. Never returns.
pub fn main() -> ! {
    // SAFETY: fd 3 was placed there by the daemon for us alone.
    let channel = unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) };
    // SAFETY: closes only descriptors above our channel, none of which we use.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (CHANNEL_FD + 1) as u32,
            u32::MAX,
            0u32,
        )
    };
    let _ = nix::fcntl::fcntl(
        &channel,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    // Our children are monitors that live on after we exit; the kernel reaps them so no
    // zombie waits on us.
    // SAFETY: setting a disposition in a single-threaded process.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    loop {
        let (msg, fds) = match sync::recv_fds(channel.as_fd()) {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => break,
        };
        // Anything else is a daemon bug; skip it rather than fork on a bad request.
        let ok = match &msg {
            SyncMsg::ForkMonitor => fds.len() == 1,
            SyncMsg::ForkExecHelper { .. } => (3..=4).contains(&fds.len()),
            _ => false,
        };
        if !ok {
            continue;
        }
        // SAFETY: this process never starts a thread, so the child may run anything.
        // In the parent the descriptors are dropped: the child has its copies, and a
        // failed fork closes them, which the caller sees as EOF.
        if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
            drop(channel);
            // SAFETY: restoring the default in a single-threaded child; a monitor or an
            // exec helper waits for its own children.
            unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
            match msg {
                SyncMsg::ForkExecHelper { request } => become_exec_helper(&request, fds),
                _ => become_monitor(fds),
            }
        }
    }
    // SAFETY: leaving the spawner.
    unsafe { libc::_exit(0) }
}

/// In a freshly forked child of the spawner: run a monitor on the start channel, exactly
/// as an exec'd one would.
fn become_monitor(fds: Vec<OwnedFd>) -> ! {
    // `start` arrived close-on-exec, so the container's init never inherits it; unlike
    // an exec'd monitor's fd 3 it need not sit at a fixed number.
    let Some(start) = fds.into_iter().next() else {
        // SAFETY: leaving a child that has nothing to do.
        unsafe { libc::_exit(1) }
    };
    super::monitor::serve(start)
}

/// In a freshly forked child of the spawner: put the exec's stdio on 0, 1 and 2 (stdin
/// from /dev/null when none came) and run the exec helper on the control socket.
fn become_exec_helper(request: &str, fds: Vec<OwnedFd>) -> ! {
    let mut fds = fds.into_iter();
    let (Some(control), Some(stdout), Some(stderr)) = (fds.next(), fds.next(), fds.next()) else {
        // SAFETY: leaving a child that has nothing to do.
        unsafe { libc::_exit(126) }
    };
    let stdin = fds
        .next()
        .or_else(|| std::fs::File::open("/dev/null").ok().map(OwnedFd::from));
    for (fd, target) in [(stdin.as_ref(), 0), (Some(&stdout), 1), (Some(&stderr), 2)] {
        // SAFETY: dup2 onto our own standard descriptors; dup2 clears close-on-exec, as
        // the exec'd process needs.
        if let Some(fd) = fd
            && unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0
        {
            unsafe { libc::_exit(126) }
        }
    }
    drop((stdin, stdout, stderr));
    super::exec_helper::serve(control, request)
}
