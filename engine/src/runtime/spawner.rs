//! The daemon's fork server for monitors. A daemon start used to fork the multi-threaded
//! daemon (copying its page tables) and exec a fresh `pelagos __monitor`, which then paid
//! the dynamic loader and the relocation of a large binary: about 2 ms of CPU and latency
//! on every container start. Instead the daemon execs one `pelagos __spawner` when it
//! starts; that process stays single-threaded and small, and forks a monitor for each
//! request. The monitor it forks is the same code as an exec'd one, and from the first
//! sync step on the start protocol is unchanged.
//!
//! Daemon <-> spawner, on the spawner channel (numbered like the steps in `sync`):
//!   F1 daemon -> spawner  `ForkMonitor` + fd: the monitor's end of a start channel. The
//!                         spawner forks; the child becomes the monitor on that channel and
//!                         the spawner closes its copy. There is no answer: the start
//!                         protocol (S1/S2) on the channel reports the outcome, and a failed
//!                         fork shows there as EOF.
//! EOF on the spawner channel (the daemon exited or dropped it) ends the spawner; monitors
//! it forked carry on, adopted by init.

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
pub(crate) fn get() -> Option<&'static Spawner> {
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
        cmd.pre_exec(super::exec_helper::control_fd_hook(theirs.as_raw_fd()));
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
        let mut g = self
            .inner
            .lock()
            .map_err(|_| Error::Internal("monitor spawner lock poisoned".into()))?;
        for attempt in 0..2 {
            if g.is_none() {
                *g = Some(launch()?);
            }
            let Some(r) = g.as_mut() else { continue };
            match sync::send(
                r.channel.as_fd(),
                &SyncMsg::ForkMonitor,
                Some(theirs.as_raw_fd()),
            ) {
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
        let start = match sync::recv(channel.as_fd()) {
            Ok(Some((SyncMsg::ForkMonitor, Some(fd)))) => fd,
            // Anything else is a daemon bug; skip it rather than fork on a bad request.
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break,
        };
        // SAFETY: this process never starts a thread, so the child may run anything.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => become_monitor(channel, start),
            // The child has its copy; a failed fork closes the channel, which the starter
            // sees as EOF.
            Ok(nix::unistd::ForkResult::Parent { .. }) | Err(_) => drop(start),
        }
    }
    // SAFETY: leaving the spawner.
    unsafe { libc::_exit(0) }
}

/// In a freshly forked child of the spawner: drop everything that is the spawner's and run
/// a monitor on `start`, exactly as an exec'd one would.
fn become_monitor(channel: OwnedFd, start: OwnedFd) -> ! {
    drop(channel);
    // SAFETY: restoring the default in a single-threaded child; the monitor waits for the
    // container's init and must not have its children reaped behind its back.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    // `start` arrived close-on-exec, so the container's init never inherits it; unlike
    // an exec'd monitor's fd 3 it need not sit at a fixed number.
    super::monitor::serve(start)
}
