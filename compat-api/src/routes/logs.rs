//! `GET /containers/{id}/logs`: the engine's log reader, framed like Docker (8-byte
//! multiplexed headers unless the container has a TTY), sent in batches that are flushed
//! whenever the reader has caught up.

use super::containers::lookup;
use crate::error::{ApiError, ApiResult};
use crate::params::{Params, flag};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Response, header};
use engine::logs::Stream;
use engine::logstream::{Flow, LogQuery, read_logs};

/// Unix seconds with an optional fraction; 0 means unset.
fn time_param(q: &Params, key: &str) -> ApiResult<Option<i64>> {
    match q.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => {
            let secs: f64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v}")))?;
            Ok((secs != 0.0).then_some((secs * 1e9) as i64))
        }
    }
}

pub async fn logs(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let stdout = flag(&q, "stdout");
    let stderr = flag(&q, "stderr");
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let c = lookup(&d, &id).await?;
    let tail = match q.get("tail").map(|s| s.trim()) {
        None | Some("") | Some("all") => None,
        Some(n) => match n.parse::<i64>() {
            Ok(n) if n < 0 => None,
            Ok(n) => Some(n as usize),
            Err(_) => return Err(ApiError::bad_request(format!("invalid tail value: {n}"))),
        },
    };
    let query = LogQuery {
        since: time_param(&q, "since")?,
        until: time_param(&q, "until")?,
        tail,
        follow: flag(&q, "follow"),
    };
    let timestamps = flag(&q, "timestamps");
    let tty = c.record.config.tty;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(32);
    let d2 = d.clone();
    let cid = c.record.id.clone();
    tokio::task::spawn_blocking(move || {
        let mut at_line_start = [true; 3];
        // Frames are batched into chunks of up to BATCH bytes: one body chunk (and one
        // channel message) per log line made a 200 MB log cost millions of small writes.
        // The batch goes out whenever the reader catches up with the writer, so `-f`
        // still shows each line as it is logged.
        const BATCH: usize = 64 * 1024;
        let batch = std::cell::RefCell::new(Vec::with_capacity(BATCH + 4096));
        let send = |tx: &tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>| {
            let chunk =
                std::mem::replace(&mut *batch.borrow_mut(), Vec::with_capacity(BATCH + 4096));
            if chunk.is_empty() {
                return Flow::Continue;
            }
            match tx.blocking_send(Ok(chunk)) {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Stop,
            }
        };
        let tx2 = tx.clone();
        let _ = read_logs(
            &d2.engine,
            &cid,
            &query,
            |r| {
                let want = match r.stream {
                    Stream::Stdout => stdout,
                    Stream::Stderr => stderr,
                };
                if !want {
                    return Flow::Continue;
                }
                let idx = r.stream as usize;
                let ts = (timestamps && at_line_start[idx]).then(|| {
                    let t = chrono::DateTime::from_timestamp_nanos(r.ts_nanos);
                    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true) + " "
                });
                at_line_start[idx] = !r.partial;
                {
                    // Written straight into the batch: header, timestamp, line.
                    let mut b = batch.borrow_mut();
                    let ts = ts.as_deref().unwrap_or("").as_bytes();
                    if !tty {
                        b.extend_from_slice(&[r.stream as u8, 0, 0, 0]);
                        b.extend_from_slice(&((ts.len() + r.data.len()) as u32).to_be_bytes());
                    }
                    b.extend_from_slice(ts);
                    b.extend_from_slice(&r.data);
                }
                if batch.borrow().len() >= BATCH {
                    send(&tx)
                } else {
                    Flow::Continue
                }
            },
            || {
                if tx2.is_closed() {
                    Flow::Stop
                } else {
                    send(&tx2)
                }
            },
        );
    });
    let mut r = Response::new(Body::from_stream(crate::stream::futures_stream(rx)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        if tty {
            HeaderValue::from_static("application/vnd.docker.raw-stream")
        } else {
            HeaderValue::from_static("application/vnd.docker.multiplexed-stream")
        },
    );
    Ok(r)
}
