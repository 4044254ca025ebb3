//! `GET /containers/{id}/logs`: the engine's log reader, framed like Docker (8-byte
//! multiplexed headers unless the container has a TTY), each frame sent as it is read.

use super::attach::frame;
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
                let mut data = Vec::with_capacity(r.data.len() + 32);
                if timestamps && at_line_start[idx] {
                    let ts = chrono::DateTime::from_timestamp_nanos(r.ts_nanos);
                    data.extend_from_slice(
                        ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                            .as_bytes(),
                    );
                    data.push(b' ');
                }
                data.extend_from_slice(&r.data);
                at_line_start[idx] = !r.partial;
                match tx.blocking_send(Ok(frame(tty, r.stream as u8, &data))) {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::Stop,
                }
            },
            || {
                if tx2.is_closed() {
                    Flow::Stop
                } else {
                    Flow::Continue
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
