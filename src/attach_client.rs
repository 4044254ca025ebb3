//! The client side of the attach protocol: relay the caller's stdio to a container's
//! monitor until the container exits, and return its exit code.

use crate::terminal;
use engine::runtime::attach::{FrameKind, read_frame, write_frame};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

pub struct AttachOptions {
    pub stdin: bool,
    pub tty: bool,
    /// For --sig-proxy: forward these signals to the container.
    pub proxy_to: Option<(engine::Engine, String)>,
}

/// Relays until the exit frame; returns the exit code (or None if the monitor went away
/// without one, e.g. on detach).
pub fn relay(stream: UnixStream, opts: AttachOptions) -> std::io::Result<Option<i32>> {
    let _raw = if opts.tty && terminal::stdin_is_tty() {
        terminal::RawMode::enable()
    } else {
        None
    };
    if opts.tty {
        let mut w = stream.try_clone()?;
        if let Some((rows, cols)) = terminal::size(std::io::stdout().as_fd()) {
            send_resize(&mut w, rows, cols);
        }
        spawn_winch_forwarder(w);
    }
    if let Some((engine, id)) = opts.proxy_to.filter(|_| !opts.tty) {
        spawn_signal_proxy(engine, id);
    }
    if opts.stdin {
        let mut w = stream.try_clone()?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = write_frame(&mut w, FrameKind::StdinClose, &[]);
                        break;
                    }
                    Ok(n) => {
                        if write_frame(&mut w, FrameKind::Stdin, &buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    let mut r = std::io::BufReader::with_capacity(64 * 1024, stream);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    while let Some((kind, payload)) = read_frame(&mut r)? {
        match kind {
            FrameKind::Stdout => {
                let mut o = stdout.lock();
                o.write_all(&payload)?;
                o.flush()?;
            }
            FrameKind::Stderr => {
                let mut e = stderr.lock();
                e.write_all(&payload)?;
                e.flush()?;
            }
            FrameKind::Exit if payload.len() == 4 => {
                return Ok(Some(i32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ])));
            }
            _ => {}
        }
    }
    Ok(None)
}

fn send_resize(w: &mut UnixStream, rows: u16, cols: u16) {
    let mut p = Vec::with_capacity(4);
    p.extend_from_slice(&rows.to_be_bytes());
    p.extend_from_slice(&cols.to_be_bytes());
    let _ = write_frame(w, FrameKind::Resize, &p);
}

/// SIGWINCH -> resize frames. The signal is blocked in every thread and taken with
/// sigwait in this one, so no async handler is needed.
fn spawn_winch_forwarder(mut w: UnixStream) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    let _ = set.thread_block();
    std::thread::spawn(move || {
        while let Ok(_sig) = set.wait() {
            if let Some((rows, cols)) = terminal::size(std::io::stdout().as_fd()) {
                send_resize(&mut w, rows, cols);
            }
        }
    });
}

/// --sig-proxy: signals the CLI receives go to the container's main process.
fn spawn_signal_proxy(engine: engine::Engine, id: String) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    let _ = set.thread_block();
    std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            let _ = engine.kill(&id, Some(sig.as_str()));
        }
    });
}
