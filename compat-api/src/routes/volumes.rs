//! Volumes: list, inspect, create, remove, prune (the engine's `local` volumes).

use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::params::{JsonBody, Params, filters, flag};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use engine::volumes::Volume;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

pub fn volume_json(v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": v.options,
        "Scope": v.scope,
    })
}

fn matches(
    v: &Volume,
    f: &BTreeMap<String, Vec<String>>,
    dangling: Option<bool>,
    used: bool,
) -> bool {
    f.iter().all(|(k, vals)| {
        vals.is_empty()
            || if k == "label" {
                engine::filters::labels_match(vals, &v.labels)
            } else {
                vals.iter().any(|val| match k.as_str() {
                    "name" => v.name.contains(val.as_str()),
                    "driver" => &v.driver == val,
                    "dangling" => dangling.is_none_or(|dg| dg != used),
                    _ => true,
                })
            }
    })
}

async fn list(State(d): State<AppState>, q: Params) -> ApiResult<Json<Value>> {
    let f = filters(&q)?;
    let dangling = f
        .get("dangling")
        .and_then(|v| v.first())
        .map(|v| crate::params::truthy(v));
    let d2 = d.clone();
    let vols = blocking(move || -> Result<Vec<Value>, ApiError> {
        let containers = d2.engine.containers.list()?;
        Ok(d2
            .engine
            .volumes
            .list()?
            .iter()
            .filter(|v| {
                let used = containers.iter().any(|c| {
                    c.record
                        .mounts
                        .iter()
                        .any(|m| m.kind == "volume" && m.name == v.name)
                });
                matches(v, &f, dangling, used)
            })
            .map(volume_json)
            .collect())
    })
    .await?;
    Ok(Json(json!({"Volumes": vols, "Warnings": []})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateBody {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Driver")]
    driver: String,
    #[serde(rename = "DriverOpts")]
    driver_opts: Option<BTreeMap<String, String>>,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

async fn create(
    State(d): State<AppState>,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<Response<Body>> {
    if !b.driver.is_empty() && b.driver != "local" {
        return Err(ApiError::not_found(format!(
            "error looking up volume plugin {}: plugin \"{}\" not found",
            b.driver, b.driver
        )));
    }
    let name = if b.name.is_empty() {
        engine::ids::new_id()
    } else {
        b.name.clone()
    };
    let d2 = d.clone();
    let (v, _created) = blocking(move || {
        d2.engine.volumes.create(
            &name,
            b.labels.unwrap_or_default(),
            b.driver_opts.unwrap_or_default(),
            false,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(volume_json(&v))).into_response())
}

async fn inspect(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let d2 = d.clone();
    let v = blocking(move || d2.engine.volumes.get(&name)).await?;
    Ok(Json(volume_json(&v)))
}

async fn remove(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let force = flag(&q, "force");
    let d2 = d.clone();
    let n = name.clone();
    let r = blocking(move || -> Result<(), ApiError> {
        let users = d2.engine.volume_users(&n)?;
        Ok(d2.engine.volumes.remove(&n, &users)?)
    })
    .await;
    match r {
        Ok(()) => {}
        Err(e) if force && e.kind == engine::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(d): State<AppState>, q: Params) -> ApiResult<Json<Value>> {
    let f = filters(&q)?;
    let admit = crate::prune_filter::PruneFilter::parse(&f, &["all"], false)?;
    // API >= 1.42: only anonymous volumes unless all=true.
    let all = f
        .get("all")
        .and_then(|v| v.first())
        .is_some_and(|v| crate::params::truthy(v));
    let d2 = d.clone();
    let (deleted, reclaimed) = blocking(move || -> Result<_, ApiError> {
        let containers = d2.engine.containers.list()?;
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for v in d2.engine.volumes.list()? {
            if !all && !v.anonymous {
                continue;
            }
            let used = containers.iter().any(|c| {
                c.record
                    .mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.name == v.name)
            });
            if used || !admit.admits(&v.labels, None) {
                continue;
            }
            let size = super::system::dir_size(std::path::Path::new(&v.mountpoint));
            if d2.engine.volumes.remove(&v.name, &[]).is_ok() {
                reclaimed += size;
                deleted.push(v.name);
            }
        }
        Ok((deleted, reclaimed))
    })
    .await?;
    Ok(Json(
        json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}
