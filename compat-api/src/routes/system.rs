//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`, `/auth`.

use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::events::matches;
use crate::params::{Params, filters};
use crate::server::{API_VERSION, MIN_API_VERSION};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Response, header};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/events", get(events))
        .route("/system/df", get(df))
        .route("/auth", post(auth))
}

async fn ping() -> Response<Body> {
    let mut r = Response::new(Body::from("OK"));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // No BuildKit: the CLI uses the classic builder.
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    r
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

async fn version() -> Json<Value> {
    let kernel = kernel_version();
    Json(json!({
        "Platform": {"Name": "Pelagos Engine"},
        "Components": [{
            "Name": "Engine",
            "Version": VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "Arch": arch(),
                "BuildTime": "",
                "Experimental": "false",
                "GitCommit": "",
                "GoVersion": "",
                "KernelVersion": kernel,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
            }
        }],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

/// `PRETTY_NAME` and `VERSION_ID` from os-release.
fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (get("PRETTY_NAME"), get("VERSION_ID"))
}

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<i64>().ok())
                })
        })
        .map_or(0, |kb| kb * 1024)
}

fn backing_fs(path: &std::path::Path) -> String {
    match nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0) {
        Ok(0xEF53) => "extfs".into(),
        Ok(0x5846_5342) => "xfs".into(),
        Ok(0x9123_683E) => "btrfs".into(),
        Ok(0x0102_1994) => "tmpfs".into(),
        Ok(0x6573_5546) => "fuse".into(),
        Ok(other) => format!("0x{other:x}"),
        Err(_) => String::new(),
    }
}

/// Docker's `RegistryConfig`: loopback is always insecure; daemon.json's
/// `insecure-registries` are CIDRs or hosts, its `registry-mirrors` serve docker.io.
fn registry_config(r: &registry::RegistrySettings) -> Value {
    let mut cidrs = vec!["127.0.0.0/8".to_string(), "::1/128".to_string()];
    let mut index = serde_json::Map::new();
    let mirrors: Vec<String> = r
        .registry_mirrors
        .iter()
        .map(|m| format!("https://{m}/"))
        .collect();
    index.insert(
        "docker.io".into(),
        json!({"Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true}),
    );
    for i in &r.insecure_registries {
        if i.contains('/') {
            cidrs.push(i.clone());
        } else {
            index.insert(
                i.clone(),
                json!({"Name": i, "Mirrors": [], "Secure": false, "Official": false}),
            );
        }
    }
    json!({"InsecureRegistryCIDRs": cidrs, "IndexConfigs": index, "Mirrors": mirrors})
}

async fn info(State(d): State<AppState>) -> ApiResult<Json<Value>> {
    let d2 = d.clone();
    let (containers, images) = blocking(move || -> Result<_, ApiError> {
        let c = d2.engine.containers.list()?;
        let i = d2.images.list()?;
        Ok((c, i))
    })
    .await?;
    let running = containers
        .iter()
        .filter(|c| c.state.status == engine::state::Status::Running)
        .count();
    let paused = containers
        .iter()
        .filter(|c| c.state.status == engine::state::Status::Paused)
        .count();
    let (os, os_version) = os_release();
    let layout = engine::cgroups::detect::detect().ok();
    let cgroup_version = match layout.as_ref().map(|l| l.version()) {
        Some(engine::cgroups::CgroupVersion::V2) => "2",
        _ => "1",
    };
    let cg = layout.map(|l| l.features()).unwrap_or_default();
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |r| r.count());
    let security = if cgroup_version == "2" {
        json!(["name=seccomp,profile=builtin", "name=cgroupns"])
    } else {
        json!(["name=seccomp,profile=builtin"])
    };
    let metrics = tokio::runtime::Handle::current().metrics();
    Ok(Json(json!({
        "ID": d.id,
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": images.len(),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", backing_fs(&d.roots.data)], ["Supports d_type", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": null, "Log": ["pelagos"]},
        "MemoryLimit": cg.memory,
        "SwapLimit": cg.swap,
        "CpuCfsPeriod": cg.cpu_cfs,
        "CpuCfsQuota": cg.cpu_cfs,
        "CPUShares": cg.cpu_shares,
        "CPUSet": cg.cpuset,
        "PidsLimit": cg.pids,
        "IPv4Forwarding": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() == "1").unwrap_or(false),
        "Debug": false,
        "NFd": fds,
        "OomKillDisable": cgroup_version == "1",
        "NGoroutines": metrics.num_alive_tasks(),
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "pelagos",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "NEventsListener": d.events.listeners(),
        "KernelVersion": kernel_version(),
        "OperatingSystem": os,
        "OSVersion": os_version,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(&d.registry),
        "NCPU": ncpu,
        "MemTotal": mem_total(),
        "GenericResources": null,
        "DockerRootDir": d.roots.data,
        "HttpProxy": std::env::var("HTTP_PROXY").unwrap_or_default(),
        "HttpsProxy": std::env::var("HTTPS_PROXY").unwrap_or_default(),
        "NoProxy": std::env::var("NO_PROXY").unwrap_or_default(),
        "Name": d.name,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": {"pelagos": {"path": "pelagos"}},
        "DefaultRuntime": "pelagos",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "pelagos",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": security,
        "Warnings": null,
    })))
}

/// Docker's `since`/`until`: unix seconds, possibly fractional; returns nanoseconds.
fn event_time(s: Option<&String>) -> ApiResult<Option<i64>> {
    match s.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<f64>()
            .map(|f| Some((f * 1e9) as i64))
            .or_else(|_| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.timestamp_nanos_opt())
                    .map_err(|_| ApiError::bad_request(format!("invalid time {v:?}")))
            }),
    }
}

async fn events(State(d): State<AppState>, q: Params) -> ApiResult<Response<Body>> {
    let f = filters(&q)?;
    let since = event_time(q.get("since"))?;
    let until = event_time(q.get("until"))?;
    // Subscribe before taking the backlog: nothing published in between is lost (a
    // duplicate is filtered out by its journal sequence number).
    let mut rx = d.events.subscribe();
    // Docker replays its buffer when either bound is given (`until` alone: everything
    // buffered up to it).
    let backlog: Vec<_> = if since.is_some() || until.is_some() {
        let s = since.unwrap_or(i64::MIN);
        d.events
            .backlog()
            .await
            .into_iter()
            .filter(|e| e.time_nano >= s && until.is_none_or(|u| e.time_nano <= u))
            .collect()
    } else {
        Vec::new()
    };
    let last_replayed = backlog.last().map(|e| e.seq).unwrap_or(0);
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let line = |e: &crate::events::Event| {
        let mut v = serde_json::to_vec(e).unwrap_or_default();
        v.push(b'\n');
        v
    };
    let now = engine::logs::now_nanos();
    let listener = d.events.listener();
    tokio::spawn(async move {
        let _listener = listener;
        for e in backlog.iter().filter(|e| matches(e, &f)) {
            if tx.send(Ok(line(e))).await.is_err() {
                return;
            }
        }
        if until.is_some_and(|u| u <= now) {
            return;
        }
        let deadline = until.map(|u| {
            tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64)
        });
        loop {
            let next = async {
                match deadline {
                    Some(dl) => tokio::time::timeout_at(dl, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            tokio::select! {
                r = next => match r {
                    None => return,
                    Some(Ok(e)) => {
                        if e.seq <= last_replayed || !matches(&e, &f) {
                            continue;
                        }
                        if tx.send(Ok(line(&e))).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                    Some(Err(_)) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream = crate::stream::futures_stream(body_rx);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn df(State(d): State<AppState>) -> ApiResult<Json<Value>> {
    let d2 = d.clone();
    let v = blocking(move || -> Result<Value, ApiError> {
        let images = d2.images.list()?;
        let containers = d2.engine.containers.list()?;
        let volumes = d2.engine.volumes.list()?;
        // Layers shared between images are counted once, as Docker does.
        let layers_size = d2
            .images
            .usage(&|id| containers.iter().any(|c| c.record.image == id))?
            .size;
        let imgs: Vec<Value> = images
            .iter()
            .map(|i| {
                let users = containers
                    .iter()
                    .filter(|c| c.record.image == i.id.to_string())
                    .count();
                json!({
                    "Id": i.id.to_string(),
                    "ParentId": "",
                    "RepoTags": i.repo_tags.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    "RepoDigests": i.repo_digests.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    "Created": i.created.map_or(0, |c| c.timestamp()),
                    "Size": i.size,
                    "SharedSize": -1,
                    "VirtualSize": i.size,
                    "Labels": crate::routes::images::image_labels(&d2.images, i),
                    "Containers": users,
                })
            })
            .collect();
        let ctrs: Vec<Value> = containers
            .iter()
            .map(|c| {
                let mut s = crate::routes::containers::summary(&d2.roots, c);
                s["SizeRw"] = json!(dir_size(&d2.engine.paths(&c.record.id).upper()));
                s
            })
            .collect();
        let vols: Vec<Value> = volumes
            .iter()
            .map(|v| {
                let users = containers
                    .iter()
                    .filter(|c| c.record.mounts.iter().any(|m| m.kind == "volume" && m.name == v.name))
                    .count();
                let mut j = crate::routes::volumes::volume_json(v);
                j["UsageData"] = json!({"Size": dir_size(std::path::Path::new(&v.mountpoint)), "RefCount": users});
                j
            })
            .collect();
        Ok(json!({
            "LayersSize": layers_size,
            "Images": imgs,
            "Containers": ctrs,
            "Volumes": vols,
            "BuildCache": [],
        }))
    })
    .await?;
    Ok(Json(v))
}

/// Bytes under `p` (not following symlinks); 0 if unreadable.
pub fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// `docker login`: credentials are checked against the registry by the registry crate.
async fn auth(
    State(d): State<AppState>,
    crate::params::JsonBody(body): crate::params::JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let user = body["username"].as_str().unwrap_or_default().to_string();
    let pass = body["password"].as_str().unwrap_or_default().to_string();
    let server = body["serveraddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if user.is_empty() {
        return Err(ApiError::bad_request("username is required"));
    }
    registry::store::check_login(&server, &user, &pass, &d.registry).await?;
    Ok(Json(
        json!({"IdentityToken": "", "Status": "Login Succeeded"}),
    ))
}
