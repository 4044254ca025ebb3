//! Hijacked streams: `POST /containers/{id}/attach` here, and the pump shared with exec
//! start. With `Upgrade: tcp` the answer is 101 and the connection becomes a raw byte
//! stream both ways; without it, 200 and the output written raw until close (no stdin).

use super::containers::{add_pending, attach_streams, lookup};
use crate::error::ApiResult;
use crate::params::{Params, flag};
use crate::state::AppState;
use crate::supervise::{self, PendingAttach, Writer};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Response, StatusCode, Version, header};
use engine::logs::Stream;
use engine::logstream::{Flow, LogQuery, read_logs};
use engine::runtime::AttachStreams;
use engine::runtime::attach::{Decoder, FrameKind};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Output chunks: (stream 1 stdout / 2 stderr, bytes).
pub type OutRx = mpsc::Receiver<(u8, Vec<u8>)>;
/// Stdin chunks from the client; `None` is its half-close.
pub type InTx = mpsc::Sender<Option<Vec<u8>>>;

fn content_type(tty: bool) -> HeaderValue {
    if tty {
        HeaderValue::from_static("application/vnd.docker.raw-stream")
    } else {
        HeaderValue::from_static("application/vnd.docker.multiplexed-stream")
    }
}

/// Answers a hijack request and runs the pump once the connection is ours. `stdin` gets
/// what the client writes (only with an upgrade).
pub fn hijack(req: Request, tty: bool, output: OutRx, stdin: Option<InTx>) -> Response<Body> {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    if !upgrade {
        // No Upgrade (dockerode, old docker-py): the output as a streamed body.
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut output = output;
            while let Some((s, b)) = output.recv().await {
                if tx.send(Ok(frame(tty, s, &b))).await.is_err() {
                    return;
                }
            }
        });
        let mut r = Response::new(Body::from_stream(crate::stream::futures_stream(rx)));
        // Docker hijacks anyway and writes the stream raw until it closes the connection:
        // no chunking, no Content-Length. hyper only frames a streamed body that way
        // (close-delimited, then closes) for an HTTP/1.0 response, so the status line says
        // HTTP/1.0; clients reading "until EOF" (dockerode, docker-py) see the same bytes.
        *r.version_mut() = Version::HTTP_10;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, content_type(tty));
        return r;
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            pump(TokioIo::new(up), tty, output, stdin).await;
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type(tty));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    r
}

/// Docker's framing: raw with a TTY, else an 8-byte header `[stream,0,0,0,len BE]`.
pub fn frame(tty: bool, stream: u8, data: &[u8]) -> Vec<u8> {
    if tty {
        return data.to_vec();
    }
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

async fn pump<IO>(io: IO, tty: bool, mut output: OutRx, stdin: Option<InTx>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    // Half-close (or gone): the process sees EOF on stdin.
                    if let Some(tx) = &stdin {
                        let _ = tx.send(None).await;
                    }
                    return;
                }
                Ok(n) => {
                    if let Some(tx) = &stdin
                        && tx.send(Some(buf[..n].to_vec())).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    while let Some((s, b)) = output.recv().await {
        // Every chunk goes out at once: interactive sessions and `logs -f` need it.
        if wr.write_all(&frame(tty, s, &b)).await.is_err() || wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
    reader.abort();
}

/// Forwards stdin chunks as attach frames to a monitor connection.
pub fn stdin_to_monitor(writer: oneshot::Receiver<Writer>) -> InTx {
    let (tx, mut rx) = mpsc::channel::<Option<Vec<u8>>>(16);
    tokio::spawn(async move {
        let Ok(w) = writer.await else { return };
        while let Some(chunk) = rx.recv().await {
            let r = match chunk {
                Some(b) => supervise::send_frame(&w, FrameKind::Stdin, &b).await,
                None => {
                    let _ = supervise::send_frame(&w, FrameKind::StdinClose, &[]).await;
                    return;
                }
            };
            if r.is_err() {
                return;
            }
        }
    });
    tx
}

pub async fn attach(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
    req: Request,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let streams = attach_streams(&q);
    let tty = c.record.config.tty;
    // Docker's `stream` defaults to false: without it only the `logs` replay (if asked) is
    // sent and the connection closes.
    let live = flag(&q, "stream");
    let (out_tx, out_rx) = mpsc::channel(64);
    // With `logs=1` the stored log goes out first (`docker start -a` of an exited
    // container, compose `up`); live output waits in its own channel until it is done.
    let live_tx = if flag(&q, "logs") {
        let (live_tx, live_rx) = mpsc::channel(64);
        replay_then_forward(&d, &c.record.id, streams, out_tx, live.then_some(live_rx));
        live_tx
    } else {
        out_tx
    };
    if !live {
        drop(live_tx);
        return Ok(hijack(req, tty, out_rx, None));
    }
    let (w_tx, w_rx) = oneshot::channel();
    if c.state.is_running() {
        let s = supervise::connect(&d, &c.record.id, streams)
            .await
            .map_err(|e| crate::error::ApiError::internal(format!("attach: {e}")))?;
        let (mut rd, wr) = s.into_split();
        let _ = w_tx.send(std::sync::Arc::new(tokio::sync::Mutex::new(wr)));
        tokio::spawn(async move {
            let mut dec = Decoder::default();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                dec.push(&buf[..n]);
                while let Ok(Some((kind, p))) = dec.next_frame() {
                    let s = match kind {
                        FrameKind::Stdout => 1,
                        FrameKind::Stderr => 2,
                        FrameKind::Exit => return,
                        _ => continue,
                    };
                    if live_tx.send((s, p)).await.is_err() {
                        return;
                    }
                }
            }
        });
    } else {
        add_pending(
            &d,
            &c.record.id,
            PendingAttach {
                streams,
                output: live_tx,
                input: w_tx,
            },
        );
    }
    let stdin = streams.stdin.then(|| stdin_to_monitor(w_rx));
    Ok(hijack(req, tty, out_rx, stdin))
}

/// Sends the container's stored log (the chosen streams, no follow) into `out`, then
/// forwards `live` (if any) after it, so the replay always precedes live output.
fn replay_then_forward(
    d: &AppState,
    id: &str,
    streams: AttachStreams,
    out: mpsc::Sender<(u8, Vec<u8>)>,
    live: Option<mpsc::Receiver<(u8, Vec<u8>)>>,
) {
    let d = d.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let tx = out.clone();
        let replay = tokio::task::spawn_blocking(move || {
            let q = LogQuery {
                since: None,
                until: None,
                tail: None,
                follow: false,
            };
            let _ = read_logs(
                &d.engine,
                &id,
                &q,
                |r| {
                    let want = match r.stream {
                        Stream::Stdout => streams.stdout,
                        Stream::Stderr => streams.stderr,
                    };
                    if want && tx.blocking_send((r.stream as u8, r.data.clone())).is_err() {
                        return Flow::Stop;
                    }
                    Flow::Continue
                },
                || Flow::Continue,
            );
        });
        let _ = replay.await;
        let Some(mut live) = live else { return };
        while let Some(m) = live.recv().await {
            if out.send(m).await.is_err() {
                return;
            }
        }
    });
}
