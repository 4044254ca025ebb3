//! The numbered sync protocol spoken over socketpairs while a container starts.
//!
//! Starter (CLI or daemon helper) <-> monitor, on the "start" channel:
//!   S1 starter -> monitor  `Start(StartRequest)` [+ fd: the first attach client, optional]
//!   S2 monitor -> starter  `Started { pid }` | `Failed { message, exit_code }`
//! Monitor <-> container init, on the "init" channel (the socket is CLOEXEC in the init):
//!   I1 monitor -> init     `CgroupJoined`: the init is in its cgroup, may unshare cgroupns;
//!                          or, on cgroup v1, `JoinCgroup { tasks }`: the init moves itself
//!                          (writes 0 to each hierarchy's `tasks`), then may unshare
//!   I2 init -> monitor     `PtyMaster` [+ fd: the pty master], only with a TTY
//!   I3 init -> monitor     `ExecFailed { .. }`; or EOF, which means execve succeeded
//! Daemon <-> its monitor spawner: F1 `ForkMonitor` [+ fd: the monitor's start channel],
//! F2 `ForkExecHelper` [+ fds: control socket, stdout, stderr, stdin]; see `spawner`.
//! Exec helper -> its caller, on the control socket: `Started` | `ExecFailed`, then
//! `ExecExited { code }` as the helper ends.
//! On cgroup v1 hosts the init consumes I1 only after its mounts (just before pivot_root),
//! so the slow v1 migration overlaps with mount work; I2 may then be sent before I1 is read.
//!
//! Frames are a 4-byte little-endian length and a JSON body; file descriptors travel as
//! SCM_RIGHTS on the same sendmsg as their frame.

use crate::error::{Error, Result};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, Serialize, Deserialize)]
pub enum SyncMsg {
    Start(Box<super::StartRequest>),
    Started { pid: i32 },
    Failed { message: String, exit_code: i32 },
    CgroupJoined,
    JoinCgroup { tasks: Vec<std::path::PathBuf> },
    PtyMaster,
    ExecFailed { message: String, exit_code: i32 },
    ForkMonitor,
    ForkExecHelper { request: String },
    ExecExited { code: i32 },
}

const MAX_FRAME: usize = 16 << 20;

/// A connected pair of close-on-exec Unix stream sockets: the channel of every sync
/// protocol step and of the first attach client.
pub fn channel() -> Result<(OwnedFd, OwnedFd)> {
    nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::io("socketpair", e.into()))
}

/// The `pre_exec` hook that puts one end of a channel (`fd`) at `target` in the exec'd
/// process (a monitor's start channel, an exec helper's control socket, the spawner's
/// channel: all fd 3), without CLOEXEC. Only dup2/fcntl run between fork and exec
/// (async-signal-safe), so it may be used from any process.
pub fn fd_at_hook(fd: RawFd, target: RawFd) -> impl FnMut() -> std::io::Result<()> + Send + Sync {
    move || {
        if fd == target {
            // SAFETY: fcntl on a descriptor we own, between fork and exec.
            if unsafe { libc::fcntl(target, libc::F_SETFD, 0) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        // SAFETY: dup2 onto a descriptor number of our own, between fork and exec.
        } else if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

pub fn send(sock: BorrowedFd<'_>, msg: &SyncMsg, fd: Option<RawFd>) -> Result<()> {
    send_fds(sock, msg, fd.as_slice())
}

/// Sends one frame with up to [`MAX_FDS`] descriptors.
pub fn send_fds(sock: BorrowedFd<'_>, msg: &SyncMsg, fds: &[RawFd]) -> Result<()> {
    if fds.len() > MAX_FDS {
        return Err(Error::Internal(format!(
            "sync: {} fds in one frame",
            fds.len()
        )));
    }
    let body = serde_json::to_vec(msg).map_err(|e| Error::Internal(e.to_string()))?;
    let len = (body.len() as u32).to_le_bytes();
    let iov = [IoSlice::new(&len), IoSlice::new(&body)];
    let cmsgs: Vec<ControlMessage> = if fds.is_empty() {
        vec![]
    } else {
        vec![ControlMessage::ScmRights(fds)]
    };
    let mut sent = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| Error::io("sync: send", e.into()))?;
    // A stream socket may take a large frame in pieces; the fd went with the first piece.
    let total = 4 + body.len();
    while sent < total {
        let rest: Vec<u8> = len.iter().chain(body.iter()).skip(sent).copied().collect();
        let n = nix::sys::socket::send(sock.as_raw_fd(), &rest, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| Error::io("sync: send", e.into()))?;
        sent += n;
    }
    Ok(())
}

/// Receives one frame. `Ok(None)` means the peer closed the channel (EOF).
pub fn recv(sock: BorrowedFd<'_>) -> Result<Option<(SyncMsg, Option<OwnedFd>)>> {
    Ok(recv_fds(sock)?.map(|(m, fds)| (m, fds.into_iter().next())))
}

/// The most descriptors one frame carries (an exec helper's control socket and stdio).
pub const MAX_FDS: usize = 4;

/// Receives one frame and every descriptor that came with it, in order.
pub fn recv_fds(sock: BorrowedFd<'_>) -> Result<Option<(SyncMsg, Vec<OwnedFd>)>> {
    let mut len = [0u8; 4];
    let mut got_fds: Vec<OwnedFd> = Vec::new();
    let mut have = 0usize;
    while have < 4 {
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut len[have..])];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::io("sync: receive", e.into()))?;
        let n = msg.bytes;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for f in fds {
                        // SAFETY: the kernel just gave us this fd; we own it now.
                        got_fds.push(unsafe { OwnedFd::from_raw_fd(f) });
                    }
                }
            }
        }
        if n == 0 {
            if have == 0 {
                return Ok(None);
            }
            return Err(Error::Internal("sync: truncated frame".into()));
        }
        have += n;
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(Error::Internal(format!("sync: frame of {n} bytes")));
    }
    let mut body = vec![0u8; n];
    let mut off = 0;
    while off < n {
        let r = nix::unistd::read(sock, &mut body[off..])
            .map_err(|e| Error::io("sync: receive", e.into()))?;
        if r == 0 {
            return Err(Error::Internal("sync: truncated frame".into()));
        }
        off += r;
    }
    let msg = serde_json::from_slice(&body)
        .map_err(|e| Error::Internal(format!("sync: bad frame: {e}")))?;
    Ok(Some((msg, got_fds)))
}
