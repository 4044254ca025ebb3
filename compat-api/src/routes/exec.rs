//! Exec: create, start (hijacked or detached), resize, inspect. The process is started by
//! a `pelagos __exec` helper (engine::runtime::exec_helper) because entering a container's
//! namespaces needs a fork, which a multi-threaded daemon must not do.

use super::attach::{InTx, hijack};
use super::containers::lookup;
use crate::error::{ApiError, ApiResult};
use crate::params::{JsonBody, Params, int};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bollard_stubs::models::{ExecConfig, ExecStartConfig};
use engine::runtime::exec::ExecOptions;
use engine::runtime::exec_helper::{EXEC_HELPER_ARG, ExecHelperRequest};
use engine::runtime::sync::{self, SyncMsg};
use serde_json::{Value, json};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/resize", post(resize))
        .route("/exec/{id}/json", get(inspect))
}

#[derive(Default)]
struct ExecState {
    running: bool,
    started: bool,
    exit_code: Option<i32>,
    pid: i32,
    /// The helper's control socket, for resize frames.
    control: Option<std::os::unix::net::UnixStream>,
}

pub struct ExecEntry {
    id: String,
    container_id: String,
    opts: ExecOptions,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    state: Mutex<ExecState>,
}

/// The exec IDs of a container, for its inspect output (`null` when none).
pub fn ids_for(d: &AppState, container: &str) -> Value {
    let ids: Vec<String> = d
        .execs
        .lock()
        .map(|m| {
            m.values()
                .filter(|e| e.container_id == container)
                .map(|e| e.id.clone())
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        Value::Null
    } else {
        json!(ids)
    }
}

/// Forgets the exec sessions of a removed container.
pub fn forget_container(d: &AppState, container: &str) {
    if let Ok(mut m) = d.execs.lock() {
        m.retain(|_, e| e.container_id != container);
    }
}

fn get_exec(d: &AppState, id: &str) -> ApiResult<Arc<ExecEntry>> {
    d.execs
        .lock()
        .ok()
        .and_then(|m| m.get(id).cloned())
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
}

pub async fn create(
    State(d): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExecConfig>,
) -> ApiResult<Response<Body>> {
    let c = lookup(&d, &id).await?;
    if !c.state.is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.record.id
        )));
    }
    if c.state.status == engine::state::Status::Paused {
        return Err(ApiError::conflict(format!(
            "Container {} is paused, unpause the container before exec",
            c.record.id
        )));
    }
    let cmd = body.cmd.clone().unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let exec_id = engine::ids::new_id();
    let attach_stdin = body.attach_stdin.unwrap_or(false);
    let entry = ExecEntry {
        id: exec_id.clone(),
        container_id: c.record.id.clone(),
        opts: ExecOptions {
            cmd: cmd.clone(),
            env: body.env.clone().unwrap_or_default(),
            user: body.user.clone().filter(|u| !u.is_empty()),
            workdir: body.working_dir.clone().filter(|w| !w.is_empty()),
            tty: body.tty.unwrap_or(false),
            interactive: attach_stdin,
            detach: false,
            privileged: body.privileged.unwrap_or(false),
        },
        attach_stdin,
        attach_stdout: body.attach_stdout.unwrap_or(false),
        attach_stderr: body.attach_stderr.unwrap_or(false),
        state: Mutex::new(ExecState::default()),
    };
    if let Ok(mut m) = d.execs.lock() {
        m.insert(exec_id.clone(), Arc::new(entry));
    }
    d.events.container(
        &format!("exec_create: {}", cmd.join(" ")),
        &c.record,
        &[("execID", exec_id.clone())],
    );
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))).into_response())
}

struct Launched {
    child: tokio::process::Child,
    control: OwnedFd,
    failure: Option<(String, i32)>,
    pid: i32,
}

/// Starts the helper and waits for its verdict (started, or why not).
async fn launch(d: &AppState, e: &ExecEntry, opts: ExecOptions) -> ApiResult<Launched> {
    use std::process::Stdio;
    let detach = opts.detach;
    let req = ExecHelperRequest {
        roots: d.roots.clone(),
        container: e.container_id.clone(),
        opts,
    };
    let json = serde_json::to_string(&req).map_err(|e| ApiError::internal(e.to_string()))?;
    let (ours, theirs) = sync::channel()?;
    let theirs_raw = theirs.as_raw_fd();
    let mut cmd = tokio::process::Command::new(engine::runtime::spawn::monitor_exe());
    cmd.arg(EXEC_HELPER_ARG).arg(json);
    let piped = |on: bool| {
        if on && !detach {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    cmd.stdin(piped(e.attach_stdin))
        .stdout(piped(true))
        .stderr(piped(true))
        .kill_on_drop(false);
    // SAFETY: the hook only runs dup2/fcntl (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(engine::runtime::exec_helper::control_fd_hook(theirs_raw));
    }
    let child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("spawn exec helper: {e}")))?;
    drop(theirs);
    let (control, msg) = tokio::task::spawn_blocking(move || {
        let m = sync::recv(ours.as_fd());
        (ours, m)
    })
    .await?;
    let (failure, pid) = match msg? {
        Some((SyncMsg::Started { pid }, _)) => (None, pid),
        Some((SyncMsg::ExecFailed { message, exit_code }, _)) => (Some((message, exit_code)), 0),
        _ => (Some(("exec helper died".to_string(), 126)), 0),
    };
    Ok(Launched {
        child,
        control,
        failure,
        pid,
    })
}

async fn start(
    State(d): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response<Body>> {
    // The body is read here and the head kept: the upgrade handle lives in its extensions.
    let (parts, body) = req.into_parts();
    let JsonBody(body) =
        JsonBody::<ExecStartConfig>::from_request(Request::from_parts(parts.clone(), body), &())
            .await?;
    let req = Request::from_parts(parts, Body::empty());
    let e = get_exec(&d, &id)?;
    {
        let mut st = e
            .state
            .lock()
            .map_err(|_| ApiError::internal("exec state poisoned"))?;
        if st.started {
            return Err(ApiError::conflict(format!(
                "Exec {id} has already been started"
            )));
        }
        st.started = true;
        st.running = true;
    }
    let c = lookup(&d, &e.container_id).await?;
    if !c.state.is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.record.id
        )));
    }
    let detach = body.detach.unwrap_or(false);
    // Framing follows the start request's Tty (the CLI decodes by its own flag).
    let tty = body.tty.unwrap_or(e.opts.tty);
    let mut opts = e.opts.clone();
    opts.detach = detach;
    opts.tty = tty;
    let mut l = launch(&d, &e, opts).await?;
    d.events.container(
        &format!("exec_start: {}", e.opts.cmd.join(" ")),
        &c.record,
        &[("execID", e.id.clone())],
    );
    if let Ok(mut st) = e.state.lock() {
        st.pid = l.pid;
        st.control = Some(std::os::unix::net::UnixStream::from(l.control));
    }
    if detach {
        let e2 = e.clone();
        tokio::spawn(async move {
            let _ = l.child.wait().await;
            if let Ok(mut st) = e2.state.lock() {
                st.running = false;
            }
        });
        if let Some((msg, _)) = l.failure {
            return Err(ApiError::internal(msg));
        }
        return Ok(StatusCode::OK.into_response());
    }
    let (out_tx, out_rx) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let stdin_tx: Option<InTx> = l.child.stdin.take().map(|mut w| {
        let (tx, mut rx) = mpsc::channel::<Option<Vec<u8>>>(16);
        tokio::spawn(async move {
            while let Some(Some(chunk)) = rx.recv().await {
                if w.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // Half-close from the client: the process reads EOF.
        });
        tx
    });
    let stdout = l.child.stdout.take();
    let stderr = l.child.stderr.take();
    let failure = l.failure.take();
    let e2 = e.clone();
    tokio::spawn(async move {
        if let Some((msg, _)) = &failure {
            let _ = out_tx
                .send((if tty { 1 } else { 2 }, format!("{msg}\r\n").into_bytes()))
                .await;
        }
        let a = copy_out(stdout, 1, out_tx.clone(), e2.attach_stdout || tty);
        let b = copy_out(stderr, 2, out_tx.clone(), e2.attach_stderr);
        tokio::join!(a, b);
        let status = l.child.wait().await;
        let code = match (&failure, status) {
            (Some((_, code)), _) => *code,
            (None, Ok(s)) => s.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9)
            }),
            (None, Err(_)) => 126,
        };
        // ExitCode is set before the stream closes: the CLI asks for it right after.
        if let Ok(mut st) = e2.state.lock() {
            st.running = false;
            st.exit_code = Some(code);
            st.control = None;
        }
        drop(out_tx);
    });
    Ok(hijack(req, tty, out_rx, stdin_tx))
}

async fn copy_out<R: tokio::io::AsyncRead + Unpin>(
    r: Option<R>,
    stream: u8,
    tx: mpsc::Sender<(u8, Vec<u8>)>,
    forward: bool,
) {
    let Some(mut r) = r else { return };
    let mut buf = vec![0u8; 32 * 1024];
    let mut forward = forward;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                // Keep draining even when the client left, so the process never blocks.
                if forward && tx.send((stream, buf[..n].to_vec())).await.is_err() {
                    forward = false;
                }
            }
        }
    }
}

async fn resize(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult<Response<Body>> {
    let e = get_exec(&d, &id)?;
    let h = int(&q, "h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = int(&q, "w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let mut p = Vec::with_capacity(4);
    p.extend_from_slice(&h.to_be_bytes());
    p.extend_from_slice(&w.to_be_bytes());
    let frame = engine::runtime::attach::encode(engine::runtime::attach::FrameKind::Resize, &p);
    if let Ok(st) = e.state.lock()
        && let Some(c) = &st.control
    {
        use std::io::Write;
        let mut c: &std::os::unix::net::UnixStream = c;
        let _ = c.write_all(&frame);
    }
    Ok(StatusCode::OK.into_response())
}

async fn inspect(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let e = get_exec(&d, &id)?;
    let (running, exit_code, pid) = e
        .state
        .lock()
        .map(|s| (s.running, s.exit_code, s.pid))
        .unwrap_or((false, None, 0));
    let (entry, args) = match e.opts.cmd.split_first() {
        Some((a, rest)) => (a.clone(), rest.to_vec()),
        None => (String::new(), vec![]),
    };
    Ok(Json(json!({
        "ID": e.id,
        "Running": running,
        "ExitCode": exit_code,
        "ProcessConfig": {
            "tty": e.opts.tty,
            "entrypoint": entry,
            "arguments": args,
            "privileged": e.opts.privileged,
            "user": e.opts.user.clone().unwrap_or_default(),
            "workingDir": e.opts.workdir.clone().unwrap_or_default(),
        },
        "OpenStdin": e.attach_stdin,
        "OpenStderr": e.attach_stderr,
        "OpenStdout": e.attach_stdout,
        "CanRemove": false,
        "ContainerID": e.container_id,
        "DetachKeys": "",
        "Pid": pid,
    })))
}
