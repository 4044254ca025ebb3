//! Daemon-side connections to container monitors, speaking the engine's attach protocol.
//!
//! A container started through the API gets the daemon as its monitor's *first client*
//! (connected before the process runs, so no output and no exit is missed). That
//! connection carries the output of a `docker run` attach made before the start, its stdin
//! and resize frames, and the monitor's `Exit` frame. The monitor itself publishes the
//! `die` event that `wait` listens for (through the event journal); the daemon publishes
//! it only for a monitor that died without saying. Containers started elsewhere (the
//! CLI, a previous daemon) are watched through their attach socket on demand.

use crate::state::{AppState, Daemon};
use engine::runtime::AttachStreams;
use engine::runtime::attach::{Decoder, FrameKind, encode};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

/// The write half of a monitor connection (stdin, stdin close, resize frames).
pub type Writer = Arc<tokio::sync::Mutex<OwnedWriteHalf>>;

/// Output frames for one attach client: (stream, bytes); stream 1 stdout, 2 stderr.
pub type Output = mpsc::Sender<(u8, Vec<u8>)>;

/// An attach made before the container started.
pub struct PendingAttach {
    pub streams: AttachStreams,
    pub output: Output,
    pub input: oneshot::Sender<Writer>,
}

pub async fn send_frame(w: &Writer, kind: FrameKind, payload: &[u8]) -> std::io::Result<()> {
    w.lock().await.write_all(&encode(kind, payload)).await
}

/// Sends a resize to a running container's TTY; Docker's CLI ignores failures.
pub async fn resize(d: &AppState, id: &str, h: u16, w: u16) -> std::io::Result<()> {
    let mut p = Vec::with_capacity(4);
    p.extend_from_slice(&h.to_be_bytes());
    p.extend_from_slice(&w.to_be_bytes());
    let writer = d.watched.lock().ok().and_then(|m| m.get(id).cloned());
    match writer {
        Some(wr) => send_frame(&wr, FrameKind::Resize, &p).await,
        None => {
            let mut s = UnixStream::connect(d.engine.paths(id).attach_socket()).await?;
            let hello = serde_json::to_vec(&AttachStreams::default()).unwrap_or_default();
            s.write_all(&encode(FrameKind::Hello, &hello)).await?;
            s.write_all(&encode(FrameKind::Resize, &p)).await
        }
    }
}

/// Takes over our end of the first-client socketpair of a container just started.
pub fn supervise_started(
    d: &AppState,
    id: &str,
    ours: OwnedFd,
    pending: Option<PendingAttach>,
    record: Option<engine::model::ContainerRecord>,
) -> std::io::Result<()> {
    let std_stream = std::os::unix::net::UnixStream::from(ours);
    std_stream.set_nonblocking(true)?;
    let stream = UnixStream::from_std(std_stream)?;
    let (output, input) = match pending {
        Some(p) => (Some(p.output), Some(p.input)),
        None => (None, None),
    };
    watch(d, id, stream, output, input, record);
    Ok(())
}

/// Connects to a running container's attach socket: for `docker attach`/`start -a`
/// (with streams) or just to learn about its exit (no streams).
pub async fn connect(
    d: &AppState,
    id: &str,
    streams: AttachStreams,
) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(d.engine.paths(id).attach_socket()).await?;
    let hello = serde_json::to_vec(&streams).unwrap_or_default();
    s.write_all(&encode(FrameKind::Hello, &hello)).await?;
    Ok(s)
}

/// Makes sure a running container's exit will be published as a `die` event, even if
/// its monitor dies.
pub async fn ensure_watched(d: &AppState, id: &str) {
    if d.watched.lock().is_ok_and(|m| m.contains_key(id)) {
        return;
    }
    if let Ok(s) = connect(d, id, AttachStreams::default()).await {
        let record = d.engine.containers.load(id).ok().map(|c| c.record);
        watch(d, id, s, None, None, record);
    }
}

/// Reads a monitor connection: forwards output until the Exit frame; without one (the
/// monitor died), publishes the `die` itself.
fn watch(
    d: &AppState,
    id: &str,
    stream: UnixStream,
    output: Option<Output>,
    input: Option<oneshot::Sender<Writer>>,
    // The record for that `die`, captured by the caller before the container could exit.
    meta: Option<engine::model::ContainerRecord>,
) {
    let (mut rd, wr) = stream.into_split();
    let writer: Writer = Arc::new(tokio::sync::Mutex::new(wr));
    if let Ok(mut m) = d.watched.lock() {
        m.insert(id.to_string(), writer.clone());
    }
    if let Some(tx) = input {
        let _ = tx.send(writer.clone());
    }
    let mine = writer.clone();
    let d = d.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let mut output = output;
        let mut dec = Decoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut exit: Option<i32> = None;
        'read: loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            dec.push(&buf[..n]);
            loop {
                match dec.next_frame() {
                    Ok(Some((FrameKind::Stdout, p))) => forward(&mut output, 1, p).await,
                    Ok(Some((FrameKind::Stderr, p))) => forward(&mut output, 2, p).await,
                    Ok(Some((FrameKind::Exit, p))) if p.len() == 4 => {
                        exit = Some(i32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                        break 'read;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'read,
                }
            }
        }
        drop(output);
        if let Ok(mut m) = d.watched.lock()
            && m.get(&id).is_some_and(|w| Arc::ptr_eq(w, &mine))
        {
            // Only our own entry: a restart may already have registered the next run's.
            m.remove(&id);
        }
        publish_exit(&d, &id, meta, exit);
    });
}

async fn forward(output: &mut Option<Output>, stream: u8, p: Vec<u8>) {
    if let Some(o) = output
        && o.send((stream, p)).await.is_err()
    {
        // The attach client left; the container keeps running.
        *output = None;
    }
}

/// A monitor that went away without its Exit frame died before it could record and
/// publish the exit: the daemon publishes the `die` for it (with the code the
/// reconciled state gives, 255 for a lost monitor). Normal exits are the monitor's own.
fn publish_exit(
    d: &Daemon,
    id: &str,
    meta: Option<engine::model::ContainerRecord>,
    exit: Option<i32>,
) {
    let Some(r) = meta else { return };
    if exit.is_some() {
        return;
    }
    let Ok(current) = d.engine.containers.load(id) else {
        return;
    };
    if current.state.is_running() {
        return;
    }
    d.engine.containers.journal().container(
        "die",
        &r,
        &[("exitCode", current.state.exit_code.to_string())],
    );
}
