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

type ExecReader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type ExecWriter = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// A running helper's process (if our child) and our ends of its stdio.
struct Helper {
    /// An exec'd helper; none when the spawner forked it. Dropped, tokio reaps it.
    child: Option<tokio::process::Child>,
    stdin: Option<ExecWriter>,
    stdout: Option<ExecReader>,
    stderr: Option<ExecReader>,
}

struct Launched {
    child: Option<tokio::process::Child>,
    control: OwnedFd,
    stdin: Option<ExecWriter>,
    stdout: Option<ExecReader>,
    stderr: Option<ExecReader>,
    failure: Option<(String, i32)>,
    pid: i32,
}

/// Starts the helper (forked by the daemon's spawner, else exec'd) and waits for its
/// verdict (started, or why not).
async fn launch(d: &AppState, e: &ExecEntry, opts: ExecOptions) -> ApiResult<Launched> {
    let detach = opts.detach;
    let req = ExecHelperRequest {
        roots: d.roots.clone(),
        container: e.container_id.clone(),
        opts,
    };
    let json = serde_json::to_string(&req).map_err(|e| ApiError::internal(e.to_string()))?;
    let (ours, theirs) = sync::channel()?;
    let h = match engine::runtime::spawner::get() {
        Some(s) => match fork_helper(s, &json, &theirs, e.attach_stdin && !detach, detach) {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!("exec helper through the spawner: {err}; exec'ing it");
                exec_helper(&json, &theirs, e.attach_stdin, detach)?
            }
        },
        None => exec_helper(&json, &theirs, e.attach_stdin, detach)?,
    };
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
        child: h.child,
        control,
        stdin: h.stdin,
        stdout: h.stdout,
        stderr: h.stderr,
        failure,
        pid,
    })
}

/// The helper forked by the spawner: our ends of its stdio pipes (/dev/null for a detached
/// exec's output).
fn fork_helper(
    s: &engine::runtime::spawner::Spawner,
    json: &str,
    theirs: &OwnedFd,
    with_stdin: bool,
    detach: bool,
) -> engine::error::Result<Helper> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| engine::error::Error::io("pipe", e.into()))
    };
    let null = || {
        std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| engine::error::Error::io("open /dev/null", e))
    };
    let reader = |fd: OwnedFd| -> engine::error::Result<ExecReader> {
        tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
            .map(|r| Box::new(r) as ExecReader)
            .map_err(|e| engine::error::Error::io("exec output pipe", e))
    };
    let (stdin, stdout, stderr, theirs_in, theirs_out, theirs_err) = if detach {
        (None, None, None, None, null()?, null()?)
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin, theirs_in) = if with_stdin {
            let (in_r, in_w) = pipe()?;
            let w = tokio::net::unix::pipe::Sender::from_owned_fd(in_w)
                .map_err(|e| engine::error::Error::io("exec input pipe", e))?;
            (Some(Box::new(w) as ExecWriter), Some(in_r))
        } else {
            (None, None)
        };
        (
            stdin,
            Some(reader(out_r)?),
            Some(reader(err_r)?),
            theirs_in,
            out_w,
            err_w,
        )
    };
    s.fork_exec_helper(json, theirs, theirs_in.as_ref(), &theirs_out, &theirs_err)?;
    Ok(Helper {
        child: None,
        stdin,
        stdout,
        stderr,
    })
}

/// The helper as a fresh `pelagos __exec` process with piped stdio.
fn exec_helper(
    json: &str,
    theirs: &OwnedFd,
    attach_stdin: bool,
    detach: bool,
) -> ApiResult<Helper> {
    use std::process::Stdio;
    let mut cmd = tokio::process::Command::new(engine::runtime::spawn::monitor_exe());
    cmd.arg(EXEC_HELPER_ARG).arg(json);
    let piped = |on: bool| {
        if on && !detach {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    cmd.stdin(piped(attach_stdin))
        .stdout(piped(true))
        .stderr(piped(true))
        .kill_on_drop(false);
    // SAFETY: the hook only runs dup2/fcntl (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(sync::fd_at_hook(
            theirs.as_raw_fd(),
            engine::runtime::exec_helper::CONTROL_FD,
        ));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("spawn exec helper: {e}")))?;
    Ok(Helper {
        stdin: child.stdin.take().map(|w| Box::new(w) as ExecWriter),
        stdout: child.stdout.take().map(|r| Box::new(r) as ExecReader),
        stderr: child.stderr.take().map(|r| Box::new(r) as ExecReader),
        child: Some(child),
    })
}

/// The exec's exit code: what the helper reports as it ends (`ExecExited`), or, if it died
/// without a word, its exit status when it is our child.
async fn exit_code(control: OwnedFd, child: Option<tokio::process::Child>) -> i32 {
    let reported = tokio::task::spawn_blocking(move || {
        loop {
            match sync::recv(control.as_fd()) {
                Ok(Some((SyncMsg::ExecExited { code }, _))) => return Some(code),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    match (reported, child) {
        (Some(code), _) => code,
        (None, Some(mut c)) => match c.wait().await {
            Ok(s) => s.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9)
            }),
            Err(_) => 126,
        },
        (None, None) => 126,
    }
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
    // The control socket: resizes go out on one copy, the exit code comes in on another.
    let control = l
        .control
        .try_clone()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Ok(mut st) = e.state.lock() {
        st.pid = l.pid;
        st.control = Some(std::os::unix::net::UnixStream::from(control));
    }
    let child = l.child.take();
    if detach {
        if let Some((msg, code)) = l.failure {
            if let Ok(mut st) = e.state.lock() {
                st.running = false;
                st.exit_code = Some(code);
            }
            return Err(ApiError::internal(msg));
        }
        // A detached exec's code is kept for inspect (docker-py's exec_run(detach=True)
        // polls it).
        let e2 = e.clone();
        tokio::spawn(async move {
            let code = exit_code(l.control, child).await;
            if let Ok(mut st) = e2.state.lock() {
                st.running = false;
                st.exit_code = Some(code);
                st.control = None;
            }
        });
        return Ok(StatusCode::OK.into_response());
    }
    let (out_tx, out_rx) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let stdin_tx: Option<InTx> = l.stdin.take().map(|mut w| {
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
    let stdout = l.stdout.take();
    let stderr = l.stderr.take();
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
        let status = exit_code(l.control, child).await;
        let code = match &failure {
            Some((_, code)) => *code,
            None => status,
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
