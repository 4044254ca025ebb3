//! `POST /build`: Docker's classic builder (what `docker build` uses without buildx, and
//! devcontainers and testcontainers use directly). The body (the context as a tar, maybe
//! gzip'd) is spooled to disk and unpacked with the confined layer unpacker; the build runs
//! in the engine. As with dockerd, a failure before any output is an HTTP error, later
//! ones go in-band as `errorDetail`.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/build", post(build))
        .route("/commit", post(commit))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`, the body an
/// optional Config whose Cmd, Entrypoint, Env, Labels, WorkingDir and User win.
async fn commit(
    State(d): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
    body: axum::body::Bytes,
) -> ApiResult<(axum::http::StatusCode, axum::Json<Value>)> {
    let container = param(&q, "container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("container is required"))?
        .to_string();
    let tag = match param(&q, "repo").filter(|r| !r.is_empty()) {
        Some(repo) => {
            let t = param(&q, "tag").filter(|t| !t.is_empty());
            let full = match t {
                Some(t) => format!("{repo}:{t}"),
                None => repo.to_string(),
            };
            Some(registry::Reference::parse(&full)?)
        }
        None => None,
    };
    let config = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid config: {e}")))?;
        (!v.is_null()).then_some(v)
    };
    let opts = engine::build::CommitOptions {
        tag,
        comment: param(&q, "comment").unwrap_or("").to_string(),
        author: param(&q, "author").unwrap_or("").to_string(),
        changes: q
            .iter()
            .filter(|(k, v)| k == "changes" && !v.is_empty())
            .flat_map(|(_, v)| v.lines().map(str::to_string).collect::<Vec<_>>())
            .collect(),
        pause: param(&q, "pause").is_none_or(crate::params::truthy),
        config,
    };
    let d2 = d.clone();
    let rec = crate::blocking::blocking(move || -> ApiResult<registry::ImageRecord> {
        Ok(engine::build::commit(
            &d2.engine, &d2.images, &container, &opts,
        )?)
    })
    .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(json!({"Id": rec.id.to_string()})),
    ))
}

fn line(v: Value) -> Vec<u8> {
    crate::stream::json_line(&v)
}

/// A JSON map parameter (`buildargs`, `labels`); null values (an ARG named without a
/// value) are left out.
fn json_map(q: &[(String, String)], key: &str) -> ApiResult<BTreeMap<String, String>> {
    let Some((_, raw)) = q.iter().rev().find(|(k, v)| k == key && !v.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let m: BTreeMap<String, Option<String>> = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))?;
    Ok(m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

enum Msg {
    Text(String),
    Done(Result<registry::ImageRecord, engine::Error>),
}

async fn build(
    State(d): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
    req: Request,
) -> ApiResult<Response<Body>> {
    if param(&q, "remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "remote build contexts are not supported: send the context as the request body",
        ));
    }
    let tags = q
        .iter()
        .filter(|(k, v)| k == "t" && !v.is_empty())
        .map(|(_, v)| registry::Reference::parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    let truthy = |k: &str| param(&q, k).is_some_and(crate::params::truthy);
    let mut opts = engine::build::BuildOptions {
        dockerfile: param(&q, "dockerfile").unwrap_or("Dockerfile").to_string(),
        tags,
        build_args: json_map(&q, "buildargs")?,
        target: param(&q, "target")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        labels: json_map(&q, "labels")?,
        pull: truthy("pull"),
        quiet: truthy("q"),
        network_mode: param(&q, "networkmode")
            .filter(|n| *n != "default")
            .unwrap_or("")
            .to_string(),
        ..Default::default()
    };

    // The context: spooled, then unpacked under the data root; both go when we are done.
    let dir = d
        .roots
        .data
        .join("build")
        .join(engine::build::scratch_name("ctx"));
    let tar = dir.with_extension("tar");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::internal(format!("build context: {e}")))?;
    let cleanup = Cleanup(vec![dir.clone(), tar.clone()]);
    crate::stream::spool_body(req, &tar).await?;
    opts.context = dir.join("context");
    // Bounded: a client reading slowly slows the build down instead of queueing its
    // output in the daemon; a client gone cancels it.
    let (tx, mut rx) = mpsc::channel::<Msg>(256);
    let d2 = d.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _cleanup = cleanup;
        let result = unpack_context(&tar, &opts.context).and_then(|()| {
            let fetch = |reference: &str| -> engine::Result<()> {
                let popts = registry::PullOptions {
                    platform: None,
                    settings: d2.registry.clone(),
                };
                let mut quiet = |_: registry::PullEvent| {};
                handle
                    .block_on(d2.images.pull(reference, &popts, &mut quiet))
                    .map(|_| ())
                    .map_err(Into::into)
            };
            let mut out = |s: &str| tx.blocking_send(Msg::Text(s.to_string())).is_ok();
            engine::build::build(&d2.engine, &d2.images, &opts, &fetch, &mut out)
        });
        let _ = tx.blocking_send(Msg::Done(result));
    });

    // Nothing written yet: an early failure is a plain HTTP error, as with dockerd.
    let first = rx
        .recv()
        .await
        .ok_or_else(|| ApiError::internal("the build ended without a result"))?;
    if let Msg::Done(Err(e)) = first {
        return Err(e.into());
    }
    let (btx, brx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let d3 = d.clone();
    let quiet = truthy("q");
    tokio::spawn(async move {
        let mut next = Some(first);
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => return,
                },
            };
            let bytes = match msg {
                Msg::Text(s) => line(json!({"stream": s})),
                Msg::Done(Ok(rec)) => finished(&d3, &rec, quiet),
                Msg::Done(Err(e)) => {
                    let code = match &e {
                        engine::Error::BuildFailed { code, .. } => *code,
                        _ => 1,
                    };
                    let m = ApiError::from(e).message;
                    line(json!({"errorDetail": {"code": code, "message": m}, "error": m}))
                }
            };
            if btx.send(Ok(bytes)).await.is_err() {
                return;
            }
        }
    });
    Ok(crate::stream::streamed(
        brx,
        HeaderValue::from_static("application/json"),
    ))
}

/// The end of a successful build as the classic builder prints it (and the tag events);
/// quiet, only the image ID.
fn finished(d: &AppState, rec: &registry::ImageRecord, quiet: bool) -> Vec<u8> {
    let id = rec.id.to_string();
    let short = &rec.id.hex()[..12];
    let mut out = Vec::new();
    if !quiet {
        out.extend(line(json!({"stream": format!(" ---> {short}\n")})));
    }
    out.extend(line(json!({"aux": {"ID": id}})));
    if quiet {
        out.extend(line(json!({"stream": format!("{id}\n")})));
    } else {
        out.extend(line(
            json!({"stream": format!("Successfully built {short}\n")}),
        ));
    }
    for t in &rec.repo_tags {
        if !quiet {
            out.extend(line(
                json!({"stream": format!("Successfully tagged {}\n", t.familiar())}),
            ));
        }
        d.events
            .simple("image", "tag", &id, &[("name", t.familiar())]);
    }
    out
}

/// Unpacks the context tar (plain or gzip'd) with the registry's confined unpacker: no
/// entry lands outside the context directory. A body that is no archive is the
/// Dockerfile itself (`docker build - < Dockerfile`), with an empty context.
fn unpack_context(tar: &std::path::Path, dir: &std::path::Path) -> engine::Result<()> {
    use std::io::BufRead;
    std::fs::create_dir_all(dir).map_err(|e| engine::Error::path(dir, e))?;
    let f = std::fs::File::open(tar).map_err(|e| engine::Error::path(tar, e))?;
    let mut r = std::io::BufReader::with_capacity(64 * 1024, f);
    let head = r.fill_buf().map(|b| b.to_vec()).unwrap_or_default();
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let is_tar = head.len() >= 262 && &head[257..262] == b"ustar";
    if !gz && !is_tar && !head.is_empty() {
        let target = dir.join("Dockerfile");
        return std::fs::copy(tar, &target)
            .map(|_| ())
            .map_err(|e| engine::Error::path(&target, e));
    }
    registry::unpack::unpack_tar_or_gzip(TarEnd::new(r), dir)
        .map(|_| ())
        .map_err(|e| engine::Error::invalid(format!("the build context is not a valid tar: {e}")))
}

/// Completes a tar stream that stops right after its last entry's data: the docker CLI
/// sends `-f` Dockerfiles from outside the context that way (no padding, no end-of-archive
/// blocks), which Go's tar reader, and so dockerd, accepts. After the real end come the
/// zeros of the padding to the next block and the two end blocks, nothing more.
struct TarEnd<R> {
    inner: R,
    read: u64,
    tail: Option<u64>,
}

impl<R> TarEnd<R> {
    fn new(inner: R) -> Self {
        TarEnd {
            inner,
            read: 0,
            tail: None,
        }
    }
}

impl<R: std::io::Read> std::io::Read for TarEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.tail.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.read += n as u64;
                return Ok(n);
            }
            self.tail = Some((512 - self.read % 512) % 512 + 1024);
        }
        let left = self.tail.unwrap_or(0);
        let n = (buf.len() as u64).min(left) as usize;
        buf[..n].fill(0);
        self.tail = Some(left - n as u64);
        Ok(n)
    }
}

/// Removes the spooled context and its unpacked copy however the build ends.
struct Cleanup(Vec<std::path::PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
            let _ = engine::fsutil::remove_dir_all_if_exists(p);
        }
    }
}
