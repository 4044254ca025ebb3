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

/// `POST /containers/{id}/update` body: Docker's Resources plus RestartPolicy.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UpdateBody {
    memory: Option<i64>,
    memory_swap: Option<i64>,
    memory_reservation: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_shares: Option<i64>,
    cpu_period: Option<i64>,
    cpu_quota: Option<i64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    pids_limit: Option<i64>,
    blkio_weight: Option<u16>,
    restart_policy: Option<RestartBody>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RestartBody {
    name: String,
    maximum_retry_count: i64,
}

pub async fn update(
    State(d): State<AppState>,
    Path(id): Path<String>,
    crate::params::JsonBody(b): crate::params::JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    // The docker CLI sends every field, zero meaning "unchanged"; so does Docker's daemon
    // read them (a zero never clears a limit through update).
    let set = |v: Option<i64>| v.filter(|x| *x != 0);
    let u = engine::update::ResourceUpdate {
        memory: set(b.memory),
        memory_swap: set(b.memory_swap),
        memory_reservation: set(b.memory_reservation),
        nano_cpus: set(b.nano_cpus),
        cpu_shares: set(b.cpu_shares),
        cpu_period: set(b.cpu_period),
        cpu_quota: set(b.cpu_quota),
        cpuset_cpus: b.cpuset_cpus.filter(|s| !s.is_empty()),
        cpuset_mems: b.cpuset_mems.filter(|s| !s.is_empty()),
        pids_limit: set(b.pids_limit),
        blkio_weight: b.blkio_weight.filter(|w| *w != 0),
        restart_policy: b.restart_policy.filter(|r| !r.name.is_empty()).map(|r| {
            engine::model::RestartPolicy {
                name: r.name,
                maximum_retry_count: r.maximum_retry_count,
            }
        }),
    };
    let c = lookup(&d, &id).await?;
    let d2 = d.clone();
    let cid = c.record.id.clone();
    blocking(move || d2.engine.update(&cid, &u)).await?;
    Ok(Json(json!({"Warnings": []})))
}
