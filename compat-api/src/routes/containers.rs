//! Container endpoints: create, list, inspect, lifecycle, wait, rename, resize, prune.
//! Streams (attach, logs), archives, top/stats and exec live in their own modules.

use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::params::{JsonBody, Params, filters, flag, int};
use crate::state::AppState;
use crate::supervise::{self, PendingAttach};
use crate::translate::{CreateBody, create_options};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, head, post};
use engine::ErrorKind;
use engine::runtime::AttachStreams;
use engine::store::Container;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/attach", post(super::attach::attach))
        .route("/containers/{id}/logs", get(super::logs::logs))
        .route("/containers/{id}/top", get(super::stats::top))
        .route("/containers/{id}/changes", get(super::layers::changes))
        .route("/containers/{id}/export", get(super::layers::export))
        .route("/containers/{id}/update", post(super::layers::update))
        .route("/containers/{id}/stats", get(super::stats::stats))
        .route("/containers/{id}/exec", post(super::exec::create))
        .route(
            "/containers/{id}/archive",
            head(super::archive::stat)
                .get(super::archive::get)
                .put(super::archive::put),
        )
}

fn no_content() -> Response<Body> {
    StatusCode::NO_CONTENT.into_response()
}

/// Docker's 404 wording for containers is `No such container: <what the client said>`.
pub async fn lookup(d: &AppState, what: &str) -> ApiResult<Container> {
    let d = d.clone();
    let what = what.to_string();
    blocking(move || d.engine.containers.lookup(&what)).await
}

fn publish(d: &AppState, action: &str, c: &Container, extra: &[(&str, String)]) {
    d.events.container(action, &c.record, extra);
}

async fn create(
    State(d): State<AppState>,
    q: Params,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<Response<Body>> {
    let name = q.get("name").cloned().or_else(|| body.name.clone());
    if let Some(n) = &name
        && !n.is_empty()
    {
        engine::ids::validate_name(n)?;
    }
    let image_ref = body
        .config
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("config cannot be empty in order to create a container")
        })?;
    let d2 = d.clone();
    let rec = blocking(move || -> Result<_, ApiError> {
        let image = engine::ImageInfo::from_store(&d2.images, &image_ref).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                ApiError::not_found(format!("No such image: {image_ref}"))
            } else {
                e.into()
            }
        })?;
        let opts = create_options(name, &body, image)?;
        Ok(d2.engine.create(opts)?)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": rec.id, "Warnings": []})),
    )
        .into_response())
}

/// The list's `Ports`: one entry per published binding, and exposed-only ports without
/// host side, as Docker lists them.
fn list_ports(settings: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(ports) = settings["Ports"].as_object() else {
        return out;
    };
    for (key, bindings) in ports {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(private) = port.parse::<u16>() else {
            continue;
        };
        match bindings.as_array() {
            Some(list) if !list.is_empty() => {
                for b in list {
                    let public = b["HostPort"].as_str().and_then(|p| p.parse::<u16>().ok());
                    out.push(json!({"IP": b["HostIp"], "PrivatePort": private,
                                    "PublicPort": public, "Type": proto}));
                }
            }
            _ => out.push(json!({"PrivatePort": private, "Type": proto})),
        }
    }
    out
}

/// The `containers/json` entry for one container.
pub fn summary(roots: &engine::Roots, c: &Container) -> Value {
    let r = &c.record;
    let argv = engine::spec::command_line(r);
    let created = chrono::DateTime::parse_from_rfc3339(&r.created).map_or(0, |t| t.timestamp());
    let mounts: Vec<Value> = r
        .mounts
        .iter()
        .map(|m| {
            json!({"Type": m.kind, "Name": m.name, "Source": m.source, "Destination": m.destination,
                   "Driver": m.driver, "Mode": m.mode, "RW": m.rw, "Propagation": m.propagation})
        })
        .collect();
    let net = if r.host_config.network_mode.is_empty() {
        "none".to_string()
    } else {
        r.host_config.network_mode.clone()
    };
    let settings = engine::netglue::settings_json(roots, r, c.state.is_running());
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.config.image,
        "ImageID": r.image,
        "Command": argv.join(" "),
        "Created": created,
        "Ports": list_ports(&settings),
        "Labels": r.config.labels,
        "State": c.state.status.as_str(),
        "Status": engine::inspect::status_text(c, chrono::Utc::now()),
        "HostConfig": {"NetworkMode": net},
        "NetworkSettings": {"Networks": settings["Networks"]},
        "Mounts": mounts,
    })
}

async fn list(State(d): State<AppState>, q: Params) -> ApiResult<Json<Vec<Value>>> {
    let all = flag(&q, "all");
    let limit = int(&q, "limit")?.filter(|l| *l > 0);
    let size = flag(&q, "size");
    let f = filters(&q)?;
    for k in f.keys() {
        if !matches!(
            k.as_str(),
            "label"
                | "name"
                | "status"
                | "id"
                | "exited"
                | "ancestor"
                | "network"
                | "health"
                | "volume"
                | "before"
                | "since"
                | "is-task"
                | "publish"
                | "expose"
        ) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let d2 = d.clone();
    let mut list = blocking(move || d2.engine.containers.list()).await?;
    // Newest first, like Docker.
    list.sort_by(|a, b| b.record.created.cmp(&a.record.created));
    // `before`/`since` name a container (ID or name; 404 if there is none): only those
    // created before (after) it are listed.
    let mut created_before = i64::MAX;
    let mut created_after = i64::MIN;
    for (key, bound) in [
        ("before", &mut created_before),
        ("since", &mut created_after),
    ] {
        if let Some(v) = f.get(key).and_then(|v| v.last()) {
            *bound = engine::filters::created_nanos(&lookup(&d, v).await?.record.created);
        }
    }
    let explicit_status = f.contains_key("status") || f.contains_key("exited");
    let out: Vec<Value> = list
        .iter()
        // A limit lists stopped containers too (`docker ps -n 3`, `docker ps -l`).
        .filter(|c| all || limit.is_some() || explicit_status || c.state.is_running())
        .filter(|c| engine::inspect::passes_filters(c, &f))
        .filter(|c| {
            let t = engine::filters::created_nanos(&c.record.created);
            t < created_before && t > created_after
        })
        .take(limit.map_or(usize::MAX, |l| l as usize))
        .map(|c| {
            let mut s = summary(&d.roots, c);
            if size {
                s["SizeRw"] = json!(super::system::dir_size(
                    &d.engine.paths(&c.record.id).upper()
                ));
            }
            s
        })
        .collect();
    Ok(Json(out))
}

async fn inspect(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = lookup(&d, &id).await?;
    let mut v = engine::inspect::container_json(&c, &d.engine.paths(&c.record.id));
    v["ExecIDs"] = super::exec::ids_for(&d, &c.record.id);
    Ok(Json(v))
}

/// Starts `id`, making this daemon the monitor's first client (with a pending `docker
/// run` attach, if any).
pub async fn start_container(d: &AppState, id: &str) -> ApiResult<()> {
    let pending = d.pending_attach.lock().ok().and_then(|mut m| m.remove(id));
    let streams = pending.as_ref().map(|p| p.streams).unwrap_or_default();
    let record_before = d.engine.containers.load(id).ok().map(|c| c.record);
    let (ours, theirs) = engine::runtime::sync::channel()?;
    let d2 = d.clone();
    let target = id.to_string();
    let result =
        tokio::task::spawn_blocking(move || d2.engine.start(&target, Some((theirs, streams))))
            .await?;
    match result {
        Ok(_pid) => {
            supervise::supervise_started(d, id, ours, pending, record_before.clone())
                .map_err(|e| ApiError::internal(format!("watch container: {e}")))?;
            Ok(())
        }
        Err(err) => {
            let e = ApiError::from(err);
            // The engine or the monitor has published the `die` (a failed start is an
            // exit for waiters), and the store the `destroy` of whatever it removed.
            if let Some(r) = &record_before {
                // An auto-remove container goes away with its failed start (its monitor
                // may be removing it too; either way it is gone when we answer).
                if r.host_config.auto_remove {
                    let d2 = d.clone();
                    let target = id.to_string();
                    let _ =
                        tokio::task::spawn_blocking(move || d2.engine.remove(&target, true, true))
                            .await;
                }
            }
            Err(e)
        }
    }
}

async fn start(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    if c.state.is_running() {
        return Err(ApiError::new(ErrorKind::NotModified, "already started"));
    }
    start_container(&d, &c.record.id).await?;
    Ok(no_content())
}

fn timeout_param(q: &Params) -> ApiResult<Option<i64>> {
    match int(q, "t")? {
        Some(t) => Ok(Some(t)),
        None => int(q, "timeout"),
    }
}

async fn stop(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let timeout = timeout_param(&q)?;
    if c.state.is_running() {
        supervise::ensure_watched(&d, &c.record.id).await;
    }
    let d2 = d.clone();
    let cid = c.record.id.clone();
    blocking(move || d2.engine.stop(&cid, timeout)).await?;
    Ok(no_content())
}

async fn restart(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let timeout = timeout_param(&q)?;
    if c.state.is_running() {
        supervise::ensure_watched(&d, &c.record.id).await;
        let d2 = d.clone();
        let cid = c.record.id.clone();
        match blocking(move || d2.engine.stop_for_restart(&cid, timeout)).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotModified => {}
            Err(e) => return Err(e),
        }
    }
    start_container(&d, &c.record.id).await?;
    publish(&d, "restart", &c, &[]);
    Ok(no_content())
}

async fn kill(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let signal = q.get("signal").cloned().filter(|s| !s.is_empty());
    if c.state.is_running() {
        supervise::ensure_watched(&d, &c.record.id).await;
    }
    let d2 = d.clone();
    let cid = c.record.id.clone();
    let sig = signal.clone();
    blocking(move || d2.engine.kill(&cid, sig.as_deref())).await?;
    Ok(no_content())
}

async fn pause(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let d2 = d.clone();
    let cid = c.record.id.clone();
    blocking(move || d2.engine.pause(&cid)).await?;
    Ok(no_content())
}

async fn unpause(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let d2 = d.clone();
    let cid = c.record.id.clone();
    blocking(move || d2.engine.unpause(&cid)).await?;
    Ok(no_content())
}

#[derive(Clone, Copy, PartialEq)]
enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// `wait`: the 200 headers go out at once (the CLI starts the container only after it
/// has them), the body `{"StatusCode":N,"Error":null}` when the condition is met.
async fn wait(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let cond = match q.get("condition").map(String::as_str).unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: {other:?}"
            )));
        }
    };
    // Subscribe before looking: an exit between the two cannot be missed.
    let mut rx = d.events.subscribe();
    let c = lookup(&d, &id).await?;
    let cid = c.record.id.clone();
    let (tx, body_rx) = tokio::sync::mpsc::channel(1);
    let d2 = d.clone();
    tokio::spawn(async move {
        let body = |code: i32| {
            let mut v =
                serde_json::to_vec(&json!({"Error": null, "StatusCode": code})).unwrap_or_default();
            v.push(b'\n');
            Ok::<_, std::io::Error>(v)
        };
        if cond == WaitCondition::NotRunning && !c.state.is_running() {
            let _ = tx.send(body(c.state.exit_code)).await;
            return;
        }
        if c.state.is_running() {
            supervise::ensure_watched(&d2, &cid).await;
        }
        let mut exit: Option<i32> = None;
        loop {
            match rx.recv().await {
                Ok(e) if e.actor.id == cid => match e.action.as_str() {
                    "die" => {
                        let code = e
                            .actor
                            .attributes
                            .get("exitCode")
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        if cond != WaitCondition::Removed {
                            let _ = tx.send(body(code)).await;
                            return;
                        }
                        exit = Some(code);
                    }
                    "destroy" if cond == WaitCondition::Removed => {
                        let code = match exit {
                            Some(c) => c,
                            None => c.state.exit_code,
                        };
                        let _ = tx.send(body(code)).await;
                        return;
                    }
                    _ => {}
                },
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(crate::stream::streamed(
        body_rx,
        HeaderValue::from_static("application/json"),
    ))
}

async fn remove(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let force = flag(&q, "force");
    let volumes = flag(&q, "v");
    if c.state.is_running() && force {
        supervise::ensure_watched(&d, &c.record.id).await;
    }
    let d2 = d.clone();
    let cid = c.record.id.clone();
    blocking(move || d2.engine.remove(&cid, force, volumes)).await?;
    forget(&d, &c.record.id);
    Ok(no_content())
}

async fn rename(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let new = q
        .get("name")
        .cloned()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Neither old nor new names may be empty"))?;
    let c = lookup(&d, &id).await?;
    let d2 = d.clone();
    let cid = c.record.id.clone();
    let n = new.trim_start_matches('/').to_string();
    blocking(move || -> Result<(), ApiError> {
        engine::ids::validate_name(&n)?;
        Ok(d2.engine.containers.rename(&cid, &n)?)
    })
    .await?;
    Ok(no_content())
}

async fn resize(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    let h = int(&q, "h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = int(&q, "w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    if !c.state.is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.record.id
        )));
    }
    let _ = supervise::resize(&d, &c.record.id, h, w).await;
    Ok(StatusCode::OK.into_response())
}

async fn prune(State(d): State<AppState>, q: Params) -> ApiResult<Json<Value>> {
    let f = crate::prune_filter::PruneFilter::parse(&filters(&q)?, &[], true)?;
    let d2 = d.clone();
    let (deleted, reclaimed) = blocking(move || -> Result<_, ApiError> {
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for c in d2.engine.containers.list()? {
            if c.state.is_running() {
                continue;
            }
            let created = engine::filters::created_nanos(&c.record.created);
            if !f.admits(&c.record.config.labels, Some(created)) {
                continue;
            }
            let size = super::system::dir_size(&d2.engine.paths(&c.record.id).upper());
            if d2.engine.remove(&c.record.id, false, false).is_ok() {
                reclaimed += size;
                deleted.push(c);
            }
        }
        Ok((deleted, reclaimed))
    })
    .await?;
    for c in &deleted {
        forget(&d, &c.record.id);
    }
    d.events.simple(
        "container",
        "prune",
        "",
        &[("reclaimed", reclaimed.to_string())],
    );
    let ids: Vec<&String> = deleted.iter().map(|c| &c.record.id).collect();
    Ok(Json(
        json!({"ContainersDeleted": ids, "SpaceReclaimed": reclaimed}),
    ))
}

/// Drops what the daemon keeps in memory for a removed container (its pending attach and
/// exec sessions).
fn forget(d: &AppState, id: &str) {
    if let Ok(mut m) = d.pending_attach.lock() {
        m.remove(id);
    }
    super::exec::forget_container(d, id);
}

/// Registers a `docker run` attach made before the start.
pub fn add_pending(d: &AppState, id: &str, p: PendingAttach) {
    if let Ok(mut m) = d.pending_attach.lock() {
        m.insert(id.to_string(), p);
    }
}

pub fn attach_streams(q: &Params) -> AttachStreams {
    AttachStreams {
        stdin: flag(q, "stdin"),
        stdout: flag(q, "stdout"),
        stderr: flag(q, "stderr"),
    }
}
