//! The starter's side of launching a monitor: have the daemon's spawner fork one, or exec a
//! fresh `pelagos __monitor` (either way the monitor is small and never a fork of a
//! multi-threaded daemon), hand it the request on the start channel (S1) and wait for its
//! verdict (S2).

use super::StartRequest;
use super::sync::{self, SyncMsg};
use crate::error::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The argument that turns the pelagos binary into a monitor.
pub const MONITOR_ARG: &str = "__monitor";

/// The binary to exec as monitor: `PELAGOS_MONITOR_EXE` (tests), else ourselves.
pub fn monitor_exe() -> PathBuf {
    std::env::var_os("PELAGOS_MONITOR_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// Execs `pelagos __monitor` with `theirs` at its fd 3 and waits for it to fork the real
/// monitor and exit.
fn exec_monitor(theirs: &OwnedFd) -> Result<()> {
    let mut cmd = Command::new(monitor_exe());
    cmd.arg(MONITOR_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the hook only runs dup2/fcntl (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(sync::fd_at_hook(
            theirs.as_raw_fd(),
            super::monitor::START_FD,
        ));
    }
    let mut child = cmd.spawn().map_err(|e| Error::io("spawn monitor", e))?;
    // The exec'd process forks the real monitor and exits at once.
    let _ = child.wait();
    Ok(())
}

/// Starts the container described by `req`. Returns the container init's host PID once it
/// has exec'd the command, or the start failure (command not found, ...).
pub fn start(req: &StartRequest, first_client: Option<OwnedFd>) -> Result<i32> {
    let (ours, theirs) = sync::channel()?;
    // The daemon forks monitors through its spawner; the CLI (and a daemon whose spawner
    // cannot be had) execs one.
    let forked = super::spawner::get().is_some_and(|s| match s.fork_monitor(&theirs) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("monitor spawner: {e}; exec'ing the monitor");
            false
        }
    });
    if !forked {
        exec_monitor(&theirs)?;
    }
    drop(theirs);
    sync::send(
        ours.as_fd(),
        &SyncMsg::Start(Box::new(req.clone())),
        first_client.as_ref().map(|f| f.as_raw_fd()),
    )?;
    drop(first_client);
    match sync::recv(ours.as_fd())? {
        Some((SyncMsg::Started { pid }, _)) => Ok(pid),
        Some((SyncMsg::Failed { message, exit_code }, _)) => {
            Err(Error::StartFailed { message, exit_code })
        }
        Some((other, _)) => Err(Error::Internal(format!("monitor sent {other:?}"))),
        None => Err(Error::Internal("monitor died during start".into())),
    }
}
