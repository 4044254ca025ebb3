//! Images through the registry crate: list, inspect, tag, remove, pull (create) with
//! Docker's JSON progress stream, load.

use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::params::{Params, filters, flag};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use registry::{ImageRecord, Removed};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(pull))
        .route("/images/load", post(load))
        .route("/images/prune", post(prune))
        // Names contain slashes (`127.0.0.1:5000/a/b:tag`): one route, dispatched on the
        // last path segment.
        .route("/images/{*rest}", any(by_name))
}

fn list_entry(r: &ImageRecord, containers: usize) -> Value {
    json!({
        "Id": r.id.to_string(),
        "ParentId": "",
        "RepoTags": r.repo_tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": r.repo_digests.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "Created": r.created.map_or(0, |c| c.timestamp()),
        "Size": r.size,
        "SharedSize": -1,
        "VirtualSize": r.size,
        "Labels": {},
        "Containers": containers,
    })
}

fn image_matches(r: &ImageRecord, k: &str, v: &str) -> bool {
    match k {
        "dangling" => crate::params::truthy(v) == r.is_dangling(),
        "reference" => {
            let (repo_pat, tag_pat) = v
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .unwrap_or((v, ""));
            r.repo_tags.iter().any(|t| {
                let fam = t.familiar();
                let (repo, tag) = fam.rsplit_once(':').unwrap_or((&fam, "latest"));
                glob(repo_pat, repo) && (tag_pat.is_empty() || glob(tag_pat, tag))
            })
        }
        _ => true,
    }
}

/// Shell-style `*` matching, enough for `reference=busy*`.
fn glob(pat: &str, s: &str) -> bool {
    match pat.split_once('*') {
        None => pat == s,
        Some((pre, rest)) => {
            s.starts_with(pre)
                && (0..=s.len() - pre.len())
                    .any(|i| s.is_char_boundary(pre.len() + i) && glob(rest, &s[pre.len() + i..]))
        }
    }
}

async fn list(State(d): State<AppState>, q: Params) -> ApiResult<Json<Vec<Value>>> {
    let f = filters(&q)?;
    let all = flag(&q, "all");
    let d2 = d.clone();
    let out = blocking(move || -> Result<Vec<Value>, ApiError> {
        let containers = d2.engine.containers.list()?;
        Ok(d2
            .images
            .list()?
            .iter()
            .filter(|r| all || !r.is_dangling() || f.contains_key("dangling"))
            .filter(|r| {
                f.iter()
                    .all(|(k, vals)| vals.is_empty() || vals.iter().any(|v| image_matches(r, k, v)))
            })
            .map(|r| {
                let n = containers
                    .iter()
                    .filter(|c| c.record.image == r.id.to_string())
                    .count();
                list_entry(r, n)
            })
            .collect())
    })
    .await?;
    Ok(Json(out))
}

async fn by_name(
    State(d): State<AppState>,
    Path(rest): Path<String>,
    q: Params,
    method: Method,
) -> ApiResult<Response<Body>> {
    let (name, action) = match rest.rsplit_once('/') {
        Some((n, a)) if matches!(a, "json" | "tag" | "push" | "history" | "get") => {
            (n.to_string(), a)
        }
        _ => (rest.clone(), ""),
    };
    match (method, action) {
        (Method::GET, "json") => inspect(d, name).await,
        (Method::GET, "history") => history(d, name).await,
        (Method::POST, "tag") => tag(d, name, q).await,
        (Method::POST, "push") => Err(ApiError::internal(
            "push is not supported by this engine yet",
        )),
        (Method::DELETE, "") => remove(d, name, q).await,
        _ => Err(ApiError::not_found("page not found")),
    }
}

async fn inspect(d: AppState, name: String) -> ApiResult<Response<Body>> {
    let v = blocking(move || -> Result<Value, ApiError> {
        let r = d.images.resolve(&name)?;
        Ok(d.images.inspect(&r)?)
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn history(d: AppState, name: String) -> ApiResult<Response<Body>> {
    let v = blocking(move || -> Result<Value, ApiError> {
        let r = d.images.resolve(&name)?;
        let raw = d.images.raw_config(&r)?;
        let cfg: Value = serde_json::from_slice(&raw).unwrap_or_default();
        let mut out = Vec::new();
        let hist = cfg["history"].as_array().cloned().unwrap_or_default();
        for (i, h) in hist.iter().enumerate().rev() {
            let created = h["created"]
                .as_str()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map_or(0, |c| c.timestamp());
            out.push(json!({
                "Id": if i + 1 == hist.len() { r.id.to_string() } else { "<missing>".to_string() },
                "Created": created,
                "CreatedBy": h["created_by"].as_str().unwrap_or(""),
                "Tags": if i + 1 == hist.len() { json!(r.repo_tags.iter().map(|t| t.familiar()).collect::<Vec<_>>()) } else { Value::Null },
                "Size": 0,
                "Comment": h["comment"].as_str().unwrap_or(""),
            }));
        }
        Ok(json!(out))
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn tag(d: AppState, name: String, q: Params) -> ApiResult<Response<Body>> {
    let repo = q
        .get("repo")
        .cloned()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("repository name is required"))?;
    let target = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo,
    };
    let d2 = d.clone();
    let src = name.clone();
    let t = blocking(move || d2.images.tag(&src, &target)).await?;
    d.events
        .simple("image", "tag", &name, &[("name", t.familiar())]);
    Ok(StatusCode::CREATED.into_response())
}

async fn remove(d: AppState, name: String, q: Params) -> ApiResult<Response<Body>> {
    let force = flag(&q, "force");
    let d2 = d.clone();
    let removed = blocking(move || -> Result<Vec<Removed>, ApiError> {
        let containers = d2.engine.containers.list()?;
        let user_of = |image_id: &str| {
            containers
                .iter()
                .find(|c| c.record.image == image_id)
                .map(|c| registry::ImageUser {
                    container_id: c.record.id.clone(),
                    running: c.state.is_running(),
                })
        };
        Ok(d2.images.remove_with_users(&name, force, &user_of)?)
    })
    .await?;
    let out: Vec<Value> = removed
        .iter()
        .map(|r| match r {
            Removed::Untagged(t) => {
                d.events.simple("image", "untag", &t.familiar(), &[]);
                json!({"Untagged": t.familiar()})
            }
            Removed::Deleted(id) => {
                d.events.simple("image", "delete", &id.to_string(), &[]);
                json!({"Deleted": id.to_string()})
            }
        })
        .collect();
    Ok(Json(out).into_response())
}

fn line(v: Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    b
}

fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex[..hex.len().min(12)].to_string()
}

/// `POST /images/create?fromImage=&tag=`: a pull. Errors before any progress get a
/// status code (the CLI shows them as such); later ones go in-band.
async fn pull(State(d): State<AppState>, q: Params) -> ApiResult<Response<Body>> {
    if q.get("fromSrc").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request("image import is not supported yet"));
    }
    let from = q
        .get("fromImage")
        .cloned()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
    let reference = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None if from.contains('@') || from.rsplit('/').next().is_some_and(|l| l.contains(':')) => {
            from
        }
        None => format!("{from}:latest"),
    };
    let parsed = registry::Reference::parse(&reference)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Vec<u8>, ApiError>>();
    let d2 = d.clone();
    let tag = parsed.tag().unwrap_or("latest").to_string();
    let path = parsed.path().to_string();
    tokio::spawn(async move {
        let _ = tx.send(Ok(line(
            json!({"status": format!("Pulling from {path}"), "id": tag}),
        )));
        let mut manifest = String::new();
        let mut fetched = 0usize;
        let ptx = tx.clone();
        let mut on_event = |ev: registry::PullEvent| match ev {
            registry::PullEvent::Resolved { manifest: m } => manifest = m,
            registry::PullEvent::LayerExists { digest } => {
                let _ = ptx.send(Ok(line(
                    json!({"status": "Already exists", "progressDetail": {}, "id": short(&digest)}),
                )));
            }
            registry::PullEvent::LayerDownloaded { digest, .. } => {
                fetched += 1;
                let _ = ptx.send(Ok(line(
                    json!({"status": "Pull complete", "progressDetail": {}, "id": short(&digest)}),
                )));
            }
        };
        let r = d2
            .images
            .pull(&parsed.to_string(), &[], &mut on_event)
            .await;
        match r {
            Ok(loaded) => {
                let fam = loaded
                    .tags
                    .first()
                    .map(|t| t.familiar())
                    .unwrap_or_else(|| parsed.familiar());
                let _ = tx.send(Ok(line(json!({"status": format!("Digest: {manifest}")}))));
                let status = if fetched > 0 {
                    format!("Status: Downloaded newer image for {fam}")
                } else {
                    format!("Status: Image is up to date for {fam}")
                };
                let _ = tx.send(Ok(line(json!({"status": status}))));
                d2.events.simple(
                    "image",
                    "pull",
                    &parsed.familiar(),
                    &[("name", parsed.familiar())],
                );
            }
            Err(e) => {
                let _ = tx.send(Err(e.into()));
            }
        }
    });
    // The first line is ours ("Pulling from"); the second tells whether the registry
    // answered at all. Failing that early still gets a real status code.
    let first = rx.recv().await;
    let second = rx.recv().await;
    let mut early: Vec<Vec<u8>> = Vec::new();
    for m in [first, second].into_iter().flatten() {
        match m {
            Ok(b) => early.push(b),
            Err(e) => {
                if early.len() <= 1 {
                    return Err(e);
                }
                early.push(inband(&e));
            }
        }
    }
    let (btx, brx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::spawn(async move {
        for b in early {
            if btx.send(Ok(b)).await.is_err() {
                return;
            }
        }
        while let Some(m) = rx.recv().await {
            let b = match m {
                Ok(b) => b,
                Err(e) => inband(&e),
            };
            if btx.send(Ok(b)).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Body::from_stream(super::system::futures_stream(brx)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// An error after the 200: Docker's in-band form.
fn inband(e: &ApiError) -> Vec<u8> {
    line(json!({"errorDetail": {"message": e.message}, "error": e.message}))
}

/// `POST /images/load`: the tar body is spooled to disk (the loader needs to seek), then
/// loaded; malformed archives leave nothing behind (the registry crate's guarantee).
async fn load(State(d): State<AppState>, q: Params, req: Request) -> ApiResult<Response<Body>> {
    let quiet = flag(&q, "quiet");
    let tmp = d
        .images
        .root()
        .join("tmp")
        .join(format!("api-load-{}.tar", engine::ids::new_id()));
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
    let mut body = req.into_body().into_data_stream();
    use futures_core::Stream;
    let mut written = 0u64;
    let spool = async {
        loop {
            let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_next(cx)).await;
            match next {
                None => break,
                Some(Ok(chunk)) => {
                    written += chunk.len() as u64;
                    f.write_all(&chunk)
                        .await
                        .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
                }
                Some(Err(e)) => return Err(ApiError::bad_request(format!("reading body: {e}"))),
            }
        }
        f.flush()
            .await
            .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
        Ok::<_, ApiError>(())
    };
    let r = spool.await;
    let path = tmp.clone();
    let d2 = d.clone();
    let result = match r {
        Ok(()) => {
            blocking(move || -> Result<_, ApiError> {
                let file =
                    std::fs::File::open(&path).map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(d2.images.load_archive(std::io::BufReader::new(file))?)
            })
            .await
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&tmp).await;
    let loaded = result?;
    let _ = written;
    let mut out = Vec::new();
    for img in &loaded {
        if img.tags.is_empty() {
            out.extend(line(
                json!({"stream": format!("Loaded image ID: {}\n", img.id)}),
            ));
        }
        for t in &img.tags {
            out.extend(line(
                json!({"stream": format!("Loaded image: {}\n", t.familiar())}),
            ));
            d.events.simple("image", "load", &t.familiar(), &[]);
        }
    }
    if quiet {
        // Docker still reports what was loaded with quiet=1 (the CLI prints it).
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn prune(State(d): State<AppState>, q: Params) -> ApiResult<Json<Value>> {
    let f = filters(&q)?;
    let only_dangling = f
        .get("dangling")
        .and_then(|v| v.first())
        .is_none_or(|v| crate::params::truthy(v));
    let d2 = d.clone();
    let deleted = blocking(move || -> Result<Vec<Value>, ApiError> {
        let containers = d2.engine.containers.list()?;
        let mut out = Vec::new();
        for r in d2.images.list()? {
            if only_dangling && !r.is_dangling() {
                continue;
            }
            let id = r.id.to_string();
            if containers.iter().any(|c| c.record.image == id) {
                continue;
            }
            if let Ok(removed) = d2.images.remove(&id, true, &|_| false) {
                for x in removed {
                    out.push(match x {
                        Removed::Untagged(t) => json!({"Untagged": t.familiar()}),
                        Removed::Deleted(id) => json!({"Deleted": id.to_string()}),
                    });
                }
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(json!({"ImagesDeleted": deleted, "SpaceReclaimed": 0})))
}

#[cfg(test)]
mod tests {
    #[test]
    fn globbing() {
        assert!(super::glob("busy*", "busybox"));
        assert!(super::glob("*box", "busybox"));
        assert!(!super::glob("busy*", "alpine"));
    }
}
