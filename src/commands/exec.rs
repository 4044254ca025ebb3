//! `exec`: run a command in a running container; the process's exit code is ours.

use super::Ctx;
use crate::cli::ExecArgs;
use crate::errors::CliResult;
use crate::run_opts::{expand_env, read_env_file};
use crate::terminal;
use engine::runtime::exec::{self, ExecOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

pub fn exec(ctx: &Ctx, a: ExecArgs) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(expand_env(&a.env));
    let opts = ExecOptions {
        cmd: a.cmd.clone(),
        env,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty: a.tty,
        interactive: a.interactive,
        detach: a.detach,
        privileged: a.privileged,
    };
    // The exec child is forked here: no threads may exist yet.
    let p = exec::start(&engine, &a.container, &opts)?;
    if a.detach {
        return Ok(0);
    }
    if let Some(master) = p.pty {
        relay_pty(master, a.interactive);
    }
    Ok(exec::wait(p.pid)?)
}

/// Copies the caller's terminal to the pty master and back until the process closes it.
fn relay_pty(master: OwnedFd, interactive: bool) {
    let _raw = if interactive && terminal::stdin_is_tty() {
        terminal::RawMode::enable()
    } else {
        None
    };
    if let Some((rows, cols)) = terminal::size(std::io::stdout().as_fd()) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our pty master.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let mut reader = std::fs::File::from(master);
    if interactive && let Ok(mut writer) = reader.try_clone() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || writer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            // EOT so a line-discipline reader sees end of input.
            let _ = writer.write_all(&[4]);
        });
    }
    let mut buf = [0u8; 32 * 1024];
    let stdout = std::io::stdout();
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut o = stdout.lock();
                if o.write_all(&buf[..n]).and_then(|_| o.flush()).is_err() {
                    break;
                }
            }
        }
    }
}
