//! The exec helper: a fresh `pelagos __exec REQUEST` process that runs one exec for a
//! multi-threaded caller (the daemon). `exec::start` forks and then switches namespaces,
//! which is only safe in a single-threaded process, so the daemon never does it itself.
//!
//! The caller sets the helper's stdio (the exec's stdin/stdout/stderr; with a TTY the
//! helper relays them to the pty) and passes a control socket as fd 3:
//!   helper -> caller  `Started { pid }` | `ExecFailed { message, exit_code }` (sync frames)
//!   caller -> helper  attach `Resize` frames (TTY only)
//! The helper exits with the exec's exit code once the process has exited.

use super::attach::{FrameKind, read_frame};
use super::exec::{self, ExecOptions};
use super::sync::{self, SyncMsg};
use crate::error::Error;
use crate::lifecycle::Engine;
use crate::paths::Roots;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// The argument that turns the pelagos binary into an exec helper.
pub const EXEC_HELPER_ARG: &str = "__exec";
/// Where the helper finds its control socket.
pub const CONTROL_FD: i32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecHelperRequest {
    pub roots: Roots,
    pub container: String,
    pub opts: ExecOptions,
}

/// Entry point of `pelagos __exec REQUEST_JSON`. Never returns.
pub fn main() -> ! {
    // SAFETY: fd 3 was placed there by the caller for us alone.
    let control = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    let _ = nix::fcntl::fcntl(
        &control,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let request = std::env::args().nth(2).unwrap_or_default();
    serve(control, &request)
}

/// Runs the exec described by `request` (an [`ExecHelperRequest`] as JSON) with this
/// process's stdio as the exec's, reports on `control`, and exits with the exec's code.
/// Exec'd as `pelagos __exec`, or forked by the daemon's spawner.
pub(crate) fn serve(control: OwnedFd, request: &str) -> ! {
    let _ = nix::sys::prctl::set_name(c"pelagos-exec");
    let code = match run(&control, request) {
        Ok(code) => code,
        Err(e) => {
            let (message, exit_code) = match e {
                Error::StartFailed { message, exit_code } => (message, exit_code),
                other => (other.to_string(), 126),
            };
            let _ = sync::send(
                control.as_fd(),
                &SyncMsg::ExecFailed { message, exit_code },
                None,
            );
            exit_code
        }
    };
    // The caller may not be our parent (a spawner forked us): it learns the code here.
    let _ = sync::send(control.as_fd(), &SyncMsg::ExecExited { code }, None);
    std::process::exit(code)
}

fn run(control: &OwnedFd, request: &str) -> crate::error::Result<i32> {
    if request.is_empty() {
        return Err(Error::invalid("exec helper: no request"));
    }
    let req: ExecHelperRequest =
        serde_json::from_str(request).map_err(|e| Error::invalid(format!("exec helper: {e}")))?;
    let engine = Engine::open(req.roots.clone())?;
    // The exec child is forked here, while this process is still single-threaded.
    let p = exec::start(&engine, &req.container, &req.opts)?;
    sync::send(
        control.as_fd(),
        &SyncMsg::Started {
            pid: p.pid.as_raw(),
        },
        None,
    )?;
    // Detached too, the helper stays until the process ends (its output goes to
    // /dev/null): the exit code is what `exec inspect` reports, as Docker's shim keeps it.
    let output = p
        .pty
        .map(|master| relay_pty(master, control, req.opts.interactive));
    let code = exec::wait(p.pid)?;
    if let Some(t) = output {
        let _ = t.join();
    }
    Ok(code)
}

/// stdin -> pty, pty -> stdout, control-socket resize frames -> TIOCSWINSZ. Returns the
/// output thread, which ends when the pty closes.
fn relay_pty(master: OwnedFd, control: &OwnedFd, interactive: bool) -> std::thread::JoinHandle<()> {
    let master = std::fs::File::from(master);
    if let Ok(ctl) = control.try_clone() {
        let raw = master.as_raw_fd();
        let mut ctl = std::os::unix::net::UnixStream::from(ctl);
        std::thread::spawn(move || {
            while let Ok(Some((kind, p))) = read_frame(&mut ctl) {
                if kind == FrameKind::Resize && p.len() == 4 {
                    let ws = libc::winsize {
                        ws_row: u16::from_be_bytes([p[0], p[1]]),
                        ws_col: u16::from_be_bytes([p[2], p[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ on the pty master, which outlives this process's
                    // use of it (the thread dies with the process).
                    unsafe { libc::ioctl(raw, libc::TIOCSWINSZ, &ws) };
                }
            }
        });
    }
    if interactive && let Ok(mut w) = master.try_clone() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    let mut r = master;
    std::thread::spawn(move || {
        let mut buf = [0u8; 32 * 1024];
        let mut out = std::io::stdout().lock();
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                        break;
                    }
                }
            }
        }
    })
}
