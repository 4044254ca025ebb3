//! `GET /containers/{id}/changes` (`docker diff`) and `GET /containers/{id}/export`
//! (`docker export`), from the engine's layer views.

use super::containers::lookup;
use crate::blocking::blocking;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Response};
use serde_json::{Value, json};

pub async fn changes(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = lookup(&d, &id).await?;
    let d2 = d.clone();
    let list = blocking(move || d2.engine.changes(&c.record.id)).await?;
    Ok(Json(json!(
        list.iter()
            .map(|c| json!({"Path": c.path, "Kind": c.kind as u8}))
            .collect::<Vec<_>>()
    )))
}

pub async fn export(
    State(d): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let d2 = d.clone();
    // Mounted before the answer starts, so a failure is still a proper error response.
    let view = blocking(move || d2.engine.merged_view(&c.record.id)).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let w = std::io::BufWriter::with_capacity(256 * 1024, crate::stream::ChannelWriter(tx));
        // A client that goes away ends the copy; the view is unmounted when dropped.
        let _ = engine::layerview::export_tar(&view, w);
    });
    Ok(crate::stream::streamed(
        rx,
        HeaderValue::from_static("application/x-tar"),
    ))
}
