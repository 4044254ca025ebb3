//! Images through the registry crate: list, inspect, tag, remove, pull (create) with
//! Docker's JSON progress stream, load.

use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::params::{Params, filters, flag};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use registry::{ImageRecord, Removed};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(pull))
        .route("/images/load", post(load))
        .route("/images/prune", post(prune))
        .route("/images/get", get(save))
        // Names contain slashes (`127.0.0.1:5000/a/b:tag`): one route, dispatched on the
        // last path segment.
        .route("/images/{*rest}", any(by_name))
}

fn list_entry(r: &ImageRecord, labels: &BTreeMap<String, String>, containers: usize) -> Value {
    json!({
        "Id": r.id.to_string(),
        "ParentId": "",
        "RepoTags": r.repo_tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": r.repo_digests.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "Created": r.created.map_or(0, |c| c.timestamp()),
        "Size": r.size,
        "SharedSize": -1,
        "VirtualSize": r.size,
        "Labels": labels,
        "Containers": containers,
    })
}

/// The labels of an image's config (none if the config cannot be read).
pub(crate) fn image_labels(
    images: &registry::ImageStore,
    r: &ImageRecord,
) -> BTreeMap<String, String> {
    images
        .config(r)
        .map(|c| c.config.labels)
        .unwrap_or_default()
}

fn created_nanos(r: &ImageRecord) -> Option<i64> {
    r.created.and_then(|c| c.timestamp_nanos_opt())
}

/// Docker's image-list filters, all of them resolved up front: `before`/`since` name an
/// image (404 if there is none), `until` is a time.
struct ListFilter {
    terms: BTreeMap<String, Vec<String>>,
    created_before: i64,
    created_after: i64,
}

impl ListFilter {
    fn parse(images: &registry::ImageStore, f: BTreeMap<String, Vec<String>>) -> ApiResult<Self> {
        let mut created_before = i64::MAX;
        let mut created_after = i64::MIN;
        for (k, vals) in &f {
            let Some(v) = vals.last() else { continue };
            match k.as_str() {
                "dangling" | "reference" | "label" => {}
                // The tightest of `before` and `until` wins, whatever the keys' order.
                "before" => {
                    let t = created_nanos(&images.resolve(v)?).unwrap_or(i64::MIN);
                    created_before = created_before.min(t);
                }
                "since" => {
                    let t = created_nanos(&images.resolve(v)?).unwrap_or(i64::MIN);
                    created_after = created_after.max(t);
                }
                "until" => {
                    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                    let t = engine::filters::parse_time(v, now)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?;
                    created_before = created_before.min(t);
                }
                other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
            }
        }
        Ok(ListFilter {
            terms: f,
            created_before,
            created_after,
        })
    }

    fn admits(&self, r: &ImageRecord, labels: &BTreeMap<String, String>) -> bool {
        // An image without a creation time passes no time bound (Docker skips it too).
        let bounded = self.created_before != i64::MAX || self.created_after != i64::MIN;
        let in_bounds = match created_nanos(r) {
            Some(t) => t < self.created_before && t > self.created_after,
            None => !bounded,
        };
        in_bounds
            && self.terms.iter().all(|(k, vals)| {
                vals.is_empty()
                    || if k == "label" {
                        engine::filters::labels_match(vals, labels)
                    } else {
                        vals.iter().any(|v| image_matches(r, k, v))
                    }
            })
    }
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
    let d2 = d.clone();
    let out = blocking(move || -> Result<Vec<Value>, ApiError> {
        let f = ListFilter::parse(&d2.images, f)?;
        let containers = d2.engine.containers.list()?;
        let mut out = Vec::new();
        // Dangling images are listed too, as `<none>`: Docker hides only images with
        // children (intermediate build images), and images here have none.
        for r in d2.images.list()? {
            let labels = image_labels(&d2.images, &r);
            if !f.admits(&r, &labels) {
                continue;
            }
            let n = containers
                .iter()
                .filter(|c| c.record.image == r.id.to_string())
                .count();
            out.push(list_entry(&r, &labels, n));
        }
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

async fn by_name(
    State(d): State<AppState>,
    Path(rest): Path<String>,
    q: Params,
    method: Method,
    headers: HeaderMap,
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
        (Method::POST, "push") => push(d, name, q, &headers).await,
        (Method::GET, "get") => save_names(d, vec![name]).await,
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
        let rows = d.images.history(&r)?;
        let tags: Vec<String> = r.repo_tags.iter().map(|t| t.familiar()).collect();
        Ok(json!(
            rows.iter()
                .enumerate()
                .map(|(i, h)| {
                    let created = h
                        .created
                        .as_deref()
                        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                        .map_or(0, |c| c.timestamp());
                    json!({
                        "Id": h.id.as_ref().map_or_else(|| "<missing>".to_string(), |d| d.to_string()),
                        "Created": created,
                        "CreatedBy": h.created_by,
                        "Tags": if i == 0 { json!(tags) } else { Value::Null },
                        "Size": h.size,
                        "Comment": h.comment,
                    })
                })
                .collect::<Vec<_>>()
        ))
    })
    .await?;
    Ok(Json(v).into_response())
}

/// `POST /images/{name}/push?tag=`: JSON progress like pull; errors after the 200 in-band.
/// Credentials come from `X-Registry-Auth`, else the daemon host's docker config.json.
async fn push(d: AppState, name: String, q: Params, h: &HeaderMap) -> ApiResult<Response<Body>> {
    let mut settings = d.registry.clone();
    settings.credentials = crate::registry_auth::from_headers(h);
    let reference = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.clone(),
    };
    let parsed = registry::Reference::parse(&reference)?;
    // An unknown local image is a status code, like Docker.
    {
        let d2 = d.clone();
        let r = reference.clone();
        blocking(move || d2.images.resolve(&r)).await?;
    }
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let (etx, mut erx) = mpsc::unbounded_channel::<Vec<u8>>();
    let d2 = d.clone();
    tokio::spawn(async move {
        let _ = etx.send(line(
            json!({"status": format!("The push refers to repository [{}]", parsed.name())}),
        ));
        let ptx = etx.clone();
        let mut on_event = |ev: registry::PushEvent| {
            let v = match ev {
                registry::PushEvent::Preparing { digest } => {
                    json!({"status": "Preparing", "progressDetail": {}, "id": short(&digest)})
                }
                registry::PushEvent::LayerExists { digest } => {
                    json!({"status": "Layer already exists", "progressDetail": {}, "id": short(&digest)})
                }
                registry::PushEvent::Mounted { digest, from } => {
                    json!({"status": format!("Mounted from {from}"), "progressDetail": {}, "id": short(&digest)})
                }
                registry::PushEvent::Pushed { digest, .. } => {
                    json!({"status": "Pushed", "progressDetail": {}, "id": short(&digest)})
                }
            };
            let _ = ptx.send(line(v));
        };
        match d2
            .images
            .push(&parsed.to_string(), &settings, &mut on_event)
            .await
        {
            Ok(p) => {
                let _ = etx.send(line(
                    json!({"status": format!("{}: digest: {} size: {}", p.tag, p.digest, p.size)}),
                ));
                let _ = etx.send(line(json!({"progressDetail": {}, "aux": {"Tag": p.tag, "Digest": p.digest.to_string(), "Size": p.size}})));
                d2.events.simple(
                    "image",
                    "push",
                    &parsed.familiar(),
                    &[("name", parsed.familiar())],
                );
            }
            Err(e) => {
                let _ = etx.send(inband(&ApiError::from(e)));
            }
        }
    });
    tokio::spawn(async move {
        while let Some(b) = erx.recv().await {
            if tx.send(Ok(b)).await.is_err() {
                return;
            }
        }
    });
    Ok(crate::stream::streamed(
        rx,
        HeaderValue::from_static("application/json"),
    ))
}

/// `GET /images/get?names=a&names=b`: a `docker save` tar, streamed.
async fn save(
    State(d): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response<Body>> {
    let names: Vec<String> = pairs
        .into_iter()
        .filter(|(k, v)| k == "names" && !v.is_empty())
        .map(|(_, v)| v)
        .collect();
    save_names(d, names).await
}

async fn save_names(d: AppState, names: Vec<String>) -> ApiResult<Response<Body>> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    // Unknown names are a 404 before any byte is sent.
    {
        let d2 = d.clone();
        let n = names.clone();
        blocking(move || -> Result<(), ApiError> {
            for x in &n {
                d2.images.resolve(x)?;
            }
            Ok(())
        })
        .await?;
    }
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let w = std::io::BufWriter::with_capacity(256 * 1024, crate::stream::ChannelWriter(tx));
        let _ = d.images.save(&names, w);
    });
    Ok(crate::stream::streamed(
        rx,
        HeaderValue::from_static("application/x-tar"),
    ))
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
    crate::stream::json_line(&v)
}

fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex[..hex.len().min(12)].to_string()
}

/// `POST /images/create?fromImage=&tag=`: a pull. Errors before any progress get a
/// status code (the CLI shows them as such); later ones go in-band.
async fn pull(
    State(d): State<AppState>,
    q: Params,
    headers: HeaderMap,
) -> ApiResult<Response<Body>> {
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
    let platform = match q
        .get("platform")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
    {
        Some(p) => Some(registry::Platform::parse(p)?),
        None => None,
    };
    let mut settings = d.registry.clone();
    settings.credentials = crate::registry_auth::from_headers(&headers);
    let opts = registry::PullOptions { platform, settings };
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Vec<u8>, ApiError>>();
    let d2 = d.clone();
    let tag = parsed.tag().unwrap_or("latest").to_string();
    let path = parsed.path().to_string();
    tokio::spawn(async move {
        let _ = tx.send(Ok(line(
            json!({"status": format!("Pulling from {path}"), "id": tag}),
        )));
        let ptx = tx.clone();
        let mut on_event = |ev: registry::PullEvent| {
            let v = match ev {
                registry::PullEvent::Resolved { .. } => return,
                registry::PullEvent::LayerExists { digest } => {
                    json!({"status": "Already exists", "progressDetail": {}, "id": short(&digest)})
                }
                registry::PullEvent::LayerQueued { digest, .. } => {
                    json!({"status": "Pulling fs layer", "progressDetail": {}, "id": short(&digest)})
                }
                registry::PullEvent::Downloading {
                    digest,
                    current,
                    total,
                } => {
                    json!({"status": "Downloading", "progressDetail": {"current": current, "total": total},
                            "id": short(&digest)})
                }
                registry::PullEvent::LayerDownloaded { digest, .. } => {
                    json!({"status": "Pull complete", "progressDetail": {}, "id": short(&digest)})
                }
            };
            let _ = ptx.send(Ok(line(v)));
        };
        let r = d2
            .images
            .pull(&parsed.to_string(), &opts, &mut on_event)
            .await;
        match r {
            Ok(pulled) => {
                let fam = pulled
                    .image
                    .tags
                    .first()
                    .map(|t| t.familiar())
                    .unwrap_or_else(|| parsed.familiar());
                let _ = tx.send(Ok(line(
                    json!({"status": format!("Digest: {}", pulled.digest)}),
                )));
                let status = if pulled.up_to_date {
                    format!("Status: Image is up to date for {fam}")
                } else {
                    format!("Status: Downloaded newer image for {fam}")
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
    Ok(crate::stream::streamed(
        brx,
        HeaderValue::from_static("application/json"),
    ))
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
        .join(format!("load-api-{}.tar", engine::ids::new_id()));
    let r = crate::stream::spool_body(req, &tmp).await;
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
    let admit = crate::prune_filter::PruneFilter::parse(&f, &["dangling"], true)?;
    // dangling=false means every unused image (`image prune -a`).
    let all = f
        .get("dangling")
        .and_then(|v| v.first())
        .is_some_and(|v| !crate::params::truthy(v));
    let d2 = d.clone();
    let pruned = blocking(move || -> Result<_, ApiError> {
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
        let images = &d2.images;
        let admit = |r: &ImageRecord| admit.admits(&image_labels(images, r), created_nanos(r));
        Ok(images.prune(all, &user_of, &admit)?)
    })
    .await?;
    let deleted: Vec<Value> = pruned
        .removed
        .iter()
        .map(|x| match x {
            Removed::Untagged(t) => json!({"Untagged": t.familiar()}),
            Removed::Deleted(id) => json!({"Deleted": id.to_string()}),
        })
        .collect();
    Ok(Json(
        json!({"ImagesDeleted": deleted, "SpaceReclaimed": pruned.reclaimed}),
    ))
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
