//! The per-container monitor: a small process, detached from whoever started the
//! container, that is the parent of the container's init. It creates the cgroup, clones
//! the init, writes every byte of output to the log, serves attach clients, and records
//! the exit (code, time, OOM) before cleaning up.

use super::attach::{Decoder, FrameKind, encode};
use super::init::{self, ChildStdio};
use super::sync::{self, SyncMsg};
use super::{AttachStreams, StartRequest};
use crate::cgroups_glue::ContainerCgroup;
use crate::error::{Error, Result};
use crate::logs::{LogWriter, Stream};
use crate::paths::ContainerPaths;
use crate::state::{self, ContainerState, Status};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

/// The fd on which a freshly exec'd monitor finds its start channel.
pub const START_FD: RawFd = 3;

/// Entry point of `pelagos __monitor`. Never returns.
pub fn main() -> ! {
    // SAFETY: fd 3 was placed there by the starter and is ours from now on.
    let start = unsafe { OwnedFd::from_raw_fd(START_FD) };
    // Whatever else the starter's process leaked to us (a test harness's pipes, ...) must
    // not be held open for the container's lifetime.
    // SAFETY: closes only descriptors above our start channel, none of which we use.
    unsafe { libc::syscall(libc::SYS_close_range, (START_FD + 1) as u32, u32::MAX, 0u32) };
    // Detach: the starter waits for this process; the real monitor is its child, which
    // init (or the nearest subreaper) adopts once we exit.
    // SAFETY: single-threaded at this point.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(_) => unsafe { libc::_exit(1) },
    }
    serve(start)
}

/// Runs the monitor for the start channel `start` in this process, already detached from
/// its starter (the exec'd monitor's child, or a child of the daemon's spawner), and exits.
pub(crate) fn serve(start: OwnedFd) -> ! {
    let _ = nix::unistd::setsid();
    // Exec'd or forked from the spawner, a monitor shows as one in `ps -o comm`.
    let _ = nix::sys::prctl::set_name(c"pelagos-monitor");
    let code = match run(start) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // SAFETY: leaving the monitor.
    unsafe { libc::_exit(code) }
}

fn run(start: OwnedFd) -> Result<()> {
    let (req, first_client) = match sync::recv(start.as_fd())? {
        Some((SyncMsg::Start(req), fd)) => (*req, fd),
        other => {
            return Err(Error::Internal(format!(
                "monitor: expected Start, got {other:?}"
            )));
        }
    };
    let paths = ContainerPaths::new(&req.roots, &req.id);
    // A new run starts "starting" again, not with the last run's verdict.
    let _ = std::fs::remove_file(super::health::health_file(&paths));
    match launch(&req, &paths) {
        Ok(launched) => {
            // A start (not a policy restart) counts restarts from zero, as Docker's does.
            record_running(&paths, &launched, Some(0))?;
            // Here, not in the starter: a quick process's `die` (ours too) must follow it.
            publish(&req, "start", &[]);
            sync::send(
                start.as_fd(),
                &SyncMsg::Started {
                    pid: launched.pid.as_raw(),
                },
                None,
            )?;
            drop(start);
            if req.health
                && let Err(e) = super::health::spawn_runner(&req.roots, &req.id)
            {
                tracing::warn!("healthcheck of {}: {e}", req.id);
            }
            supervise_with_restarts(&req, &paths, launched, first_client)
        }
        Err(e) => {
            let (message, exit_code) = record_failed_launch(&req, &paths, &e);
            let _ = sync::send(start.as_fd(), &SyncMsg::Failed { message, exit_code }, None);
            if req.auto_remove {
                let _ = crate::lifecycle::remove_after_exit(&req.roots, &req.net, &req.id);
            }
            Err(e)
        }
    }
}

/// Records a run that has begun; `restarts` is set on a policy restart (Docker counts
/// them in RestartCount).
fn record_running(paths: &ContainerPaths, l: &Launched, restarts: Option<u32>) -> Result<()> {
    let mut st = ContainerState::load(&paths.state()).unwrap_or_default();
    st.status = Status::Running;
    st.pid = l.pid.as_raw();
    st.started_at = state::now_rfc3339();
    st.finished_at = state::ZERO_TIME.into();
    st.exit_code = 0;
    st.error.clear();
    st.oom_killed = false;
    st.monitor_pid = std::process::id() as i32;
    st.monitor_start_time = state::process_start_time(st.monitor_pid).unwrap_or(0);
    st.boot_id = state::boot_id();
    st.cgroup = Some(l.cgroup.paths());
    if let Some(n) = restarts {
        st.restart_count = n;
    }
    st.save(&paths.state())
}

/// Runs the container until an exit its restart policy does not restart (or the user
/// stopped it), relaunching in between after Docker's back-off delay. Each run ends with
/// a `die`, each relaunch begins with a `start`.
fn supervise_with_restarts(
    req: &StartRequest,
    paths: &ContainerPaths,
    launched: Launched,
    first_client: Option<OwnedFd>,
) -> Result<()> {
    use super::restart;
    let mut launched = launched;
    let mut first_client = first_client;
    let mut delay: Option<std::time::Duration> = None;
    loop {
        let began = std::time::Instant::now();
        let cgroup = ContainerCgroup::from_paths(launched.cgroup.paths());
        let (code, mut clients) = supervise(req, paths, launched, first_client.take())?;
        let Ok(c) = crate::store::ContainerStore::open(&req.roots).and_then(|s| s.load(&req.id))
        else {
            finish_run(req, paths, &cgroup, code, &mut clients, RunEnd::Exited);
            return Ok(());
        };
        let restarts = c.state.restart_count;
        let policy = &c.record.host_config.restart_policy;
        if req.auto_remove
            || !restart::should_restart(
                policy,
                code,
                restart::STOPPED_BY_USER.is_set(paths),
                restarts,
            )
        {
            finish_run(req, paths, &cgroup, code, &mut clients, RunEnd::Exited);
            return Ok(());
        }
        let wait = restart::next_delay(delay, began.elapsed());
        delay = Some(wait);
        finish_run(req, paths, &cgroup, code, &mut clients, RunEnd::Restarting);
        if wait_unless_stopped(paths, wait) {
            finish_after_restart_wait(req, paths, code);
            return Ok(());
        }
        match launch(&with_current_limits(req, &c.record), paths) {
            Ok(l) => {
                record_running(paths, &l, Some(restarts + 1))?;
                publish(req, "start", &[]);
                launched = l;
            }
            Err(e) => {
                record_failed_launch(req, paths, &e);
                return Err(e);
            }
        }
    }
}

/// A launch that failed (at start or at a policy relaunch): the state says why, the
/// network goes, and the `die` is published. Returns Docker's message and exit code.
fn record_failed_launch(req: &StartRequest, paths: &ContainerPaths, e: &Error) -> (String, i32) {
    let (message, exit_code) = match e {
        Error::StartFailed { message, exit_code } => (message.clone(), *exit_code),
        other => (other.to_string(), 128),
    };
    if let Ok(mut st) = ContainerState::load(&paths.state()) {
        // A first start that failed leaves the container created, as in Docker.
        st.status = if st.started_at == state::ZERO_TIME {
            Status::Created
        } else {
            Status::Exited
        };
        st.exit_code = exit_code;
        st.error = message.clone();
        st.pid = 0;
        let _ = st.save(&paths.state());
    }
    if req.netns_path.is_some() {
        crate::netglue::teardown(&req.roots, &req.net, &req.id);
    }
    publish_die(req, exit_code);
    (message, exit_code)
}

/// The request for a policy relaunch: the limits the record has now (`update` may have
/// changed them since the start), the device rules as the start made them.
fn with_current_limits(req: &StartRequest, rec: &crate::model::ContainerRecord) -> StartRequest {
    let mut r = req.clone();
    if let Ok(now) = crate::spec::update_resources(rec)
        && let Some(linux) = r.spec.linux_mut().as_mut()
    {
        let mut res = linux.resources().clone().unwrap_or_default();
        res.set_memory(*now.memory())
            .set_cpu(now.cpu().clone())
            .set_pids(*now.pids())
            .set_block_io(now.block_io().clone());
        linux.set_resources(Some(res));
    }
    r
}

/// Sleeps the back-off delay; returns early, true, when the user stops the container
/// meanwhile (inotify on its directory sees the stop mark appear).
fn wait_unless_stopped(paths: &ContainerPaths, wait: std::time::Duration) -> bool {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let deadline = std::time::Instant::now() + wait;
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok();
    if let Some(i) = &ino {
        let _ = i.add_watch(
            &paths.dir,
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE_SELF,
        );
    }
    loop {
        if super::restart::STOPPED_BY_USER.is_set(paths) || !paths.dir.exists() {
            return true;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        match &ino {
            Some(i) => {
                let mut pfd = libc::pollfd {
                    fd: i.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(60_000) as i32 + 1) };
                let _ = i.read_events();
            }
            None => std::thread::sleep(left),
        }
    }
}

/// Stopped while waiting to restart: the container ends exited with its last code.
fn finish_after_restart_wait(req: &StartRequest, paths: &ContainerPaths, code: i32) {
    if req.netns_path.is_some() {
        crate::netglue::teardown(&req.roots, &req.net, &req.id);
    }
    if let Ok(mut st) = ContainerState::load(&paths.state()) {
        st.status = Status::Exited;
        st.exit_code = code;
        st.pid = 0;
        let _ = st.save(&paths.state());
    }
    let _ = std::fs::remove_file(paths.attach_socket());
}

struct Launched {
    pid: Pid,
    cgroup: ContainerCgroup,
    sigfd: SignalFd,
    /// Monitor-side ends: container stdin (write), stdout and stderr (read), or the pty.
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    pty: Option<OwnedFd>,
}

fn launch(req: &StartRequest, paths: &ContainerPaths) -> Result<Launched> {
    // Published ports go live here rather than in the starter: this process outlives the
    // start, so the nf_tables socket's slow release happens at our exit, which nobody
    // waits for (the exit is reported before). A failure is a failed start, torn down by
    // the caller like any other.
    if req.netns_path.is_some() {
        crate::netglue::publish_ports(&req.roots, &req.net, &req.id)?;
    }
    // SIGCHLD arrives through a signalfd; the init unblocks it again before exec.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|e| Error::io("block SIGCHLD", e.into()))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::io("signalfd", e.into()))?;

    // On cgroup v2 the init is born inside its cgroup, which must exist first. On v1 it
    // moves itself in after its mounts, so the cgroup (eight hierarchies, device rules:
    // about a millisecond) is made while the init mounts.
    let cgroup = ContainerCgroup::plan(req)?;
    let made_first = cgroup.is_v2();
    if made_first {
        cgroup.materialize(req)?;
    }
    let result = launch_in_cgroup(req, paths, &cgroup, made_first, sigfd);
    if result.is_err() {
        let _ = cgroup.destroy();
    }
    result.map(|(pid, sigfd, stdin, stdout, stderr, pty)| Launched {
        pid,
        cgroup,
        sigfd,
        stdin,
        stdout,
        stderr,
        pty,
    })
}

type LaunchParts = (
    Pid,
    SignalFd,
    Option<OwnedFd>,
    Option<OwnedFd>,
    Option<OwnedFd>,
    Option<OwnedFd>,
);

fn launch_in_cgroup(
    req: &StartRequest,
    _paths: &ContainerPaths,
    cgroup: &ContainerCgroup,
    made_first: bool,
    sigfd: SignalFd,
) -> Result<LaunchParts> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))
    };
    let (mut child_io, mut ours_in, mut ours_out, mut ours_err) = (
        ChildStdio {
            stdin: None,
            stdout: None,
            stderr: None,
        },
        None,
        None,
        None,
    );
    if !req.tty {
        let (r, w) = pipe()?;
        child_io.stdout = Some(w);
        ours_out = Some(r);
        let (r, w) = pipe()?;
        child_io.stderr = Some(w);
        ours_err = Some(r);
        if req.open_stdin {
            let (r, w) = pipe()?;
            child_io.stdin = Some(r);
            ours_in = Some(w);
        }
    }
    let (parent_sock, child_sock) = sync::channel()?;

    let flags = init::clone_flags(&req.spec);
    // On cgroup v2 the init is born inside its cgroup (clone3 CLONE_INTO_CGROUP): no
    // migration afterwards, which on a busy or v1 host costs an RCU grace period.
    let into = made_first.then(|| cgroup.v2_dir_fd()).flatten();
    let (rc, born_inside) = match into.as_ref() {
        Some(dir) => match clone_into_cgroup(flags, dir.as_raw_fd()) {
            Ok(rc) => (rc, true),
            Err(_) => (fork_like_clone(flags), false),
        },
        None => (fork_like_clone(flags), false),
    };
    drop(into);
    if rc < 0 {
        return Err(Error::io("clone", std::io::Error::last_os_error()));
    }
    if rc == 0 {
        drop(parent_sock);
        drop(ours_in);
        drop(ours_out);
        drop(ours_err);
        drop(sigfd);
        reset_signals();
        init::run(req, child_sock, child_io)
    }
    let pid = Pid::from_raw(rc as i32);
    drop(child_sock);
    drop(child_io);
    let fail = |e: Error| -> Error {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        e
    };
    // The init may already have failed and reported why (its socket then holds the
    // message); if we cannot place it, kill it and still prefer its own report.
    let made = if made_first {
        Ok(())
    } else {
        cgroup.materialize(req)
    };
    if let Err(e) = made {
        return Err(fail(e));
    }
    let i1 = match cgroup.self_join_files() {
        _ if born_inside => Ok(SyncMsg::CgroupJoined),
        Some(tasks) => Ok(SyncMsg::JoinCgroup { tasks }),
        None => cgroup
            .add_process(pid.as_raw())
            .map(|()| SyncMsg::CgroupJoined),
    };
    let setup = i1.and_then(|m| sync::send(parent_sock.as_fd(), &m, None));
    if setup.is_err() {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    }
    let mut pty = None;
    loop {
        match sync::recv(parent_sock.as_fd()) {
            Ok(None) => break,
            Ok(Some((SyncMsg::PtyMaster, fd))) => pty = fd,
            Ok(Some((SyncMsg::ExecFailed { message, exit_code }, _))) => {
                let _ = waitpid(pid, None);
                return Err(Error::StartFailed { message, exit_code });
            }
            Ok(Some((other, _))) => {
                return Err(fail(Error::Internal(format!("sync: unexpected {other:?}"))));
            }
            Err(e) => return Err(fail(e)),
        }
    }
    if let Err(e) = setup {
        return Err(fail(e));
    }
    // EOF without a failure report: execve succeeded (a fast command may already have
    // exited again; supervise reaps it).
    Ok((pid, sigfd, ours_in, ours_out, ours_err, pty))
}

/// clone(2) with fork semantics (the child continues here on a copy of our stack).
fn fork_like_clone(flags: nix::sched::CloneFlags) -> libc::c_long {
    // SAFETY: the monitor is single-threaded, so a fork-like clone is safe; the child only
    // runs init::run, which never returns.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() as libc::c_long) | libc::SIGCHLD as libc::c_long,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    }
}

/// clone3(2) with fork semantics, the child born in the cgroup2 directory `cgroup_fd`.
/// Errors (old kernel, not a cgroup2 fd) let the caller fall back to clone + migration.
fn clone_into_cgroup(
    flags: nix::sched::CloneFlags,
    cgroup_fd: RawFd,
) -> std::io::Result<libc::c_long> {
    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup_fd as u64,
    };
    // SAFETY: as fork_like_clone; `args` is a valid clone_args of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// How long a container runs before its monitor sheds its startup memory.
const SHED_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Drops what starting the container touched but supervising never needs again: freed heap
/// goes back to the kernel, and the file-backed pages of the binary and libraries (JSON
/// parsing, spec handling, ...) leave our RSS. They stay in the page cache and fault back
/// in for free if ever used again. This keeps a long-lived monitor near its loop's size.
fn shed_startup_memory() {
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let mut seen_text: Vec<&str> = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        // Private executable text always equals the file, and so do the read-only
        // segments mapped before it (headers, .rodata, .eh_frame). Read-only segments after
        // the text may be RELRO, relocated in memory and then sealed: never drop those.
        if inode == "0" {
            continue;
        }
        let text_seen = seen_text.contains(&inode);
        match perms {
            "r-xp" => {
                seen_text.push(inode);
            }
            "r--p" if !text_seen => {}
            _ => continue,
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        // SAFETY: advising the kernel about our own read-only file mappings; their content
        // is re-read from the file on the next access.
        // MADV_RANDOM turns off fault-around, so a later touch maps one page, not 16.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
        }
    }
}

/// The init (and an exec'd process) must start with default signal dispositions and
/// nothing blocked: the Rust runtime ignores SIGPIPE and we block SIGCHLD, and both would
/// leak across execve.
pub(crate) fn reset_signals() {
    for s in Signal::iterator() {
        if s != Signal::SIGKILL && s != Signal::SIGSTOP {
            // SAFETY: restoring default dispositions in a single-threaded child.
            unsafe {
                let _ = nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl);
            }
        }
    }
    // The real-time signals too (an inherited ignore of one survives execve). glibc's
    // sigaction refuses the two it reserves, so this goes to the kernel directly.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 32..=64 {
        // SAFETY: rt_sigaction with a valid default action and no old-action pointer.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    let _ = SigSet::all().thread_unblock();
}

struct Client {
    stream: UnixStream,
    decoder: Decoder,
    streams: Option<AttachStreams>,
}

fn supervise(
    req: &StartRequest,
    paths: &ContainerPaths,
    l: Launched,
    first_client: Option<OwnedFd>,
) -> Result<(i32, Vec<Client>)> {
    let mut log = LogWriter::open(&paths.log_file(), req.log.max_size, req.log.max_file)?;
    let sock_path = paths.attach_socket();
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path).ok();
    if let Some(l) = &listener {
        let _ = l.set_nonblocking(true);
    }
    let mut clients: Vec<Client> = Vec::new();
    if let Some(fd) = first_client {
        let stream = UnixStream::from(fd);
        // A client that stops reading (a suspended CLI) is dropped rather than allowed to
        // stall the container's output and its log.
        let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(10)));
        clients.push(Client {
            stream,
            decoder: Decoder::default(),
            streams: Some(req.initial_attach.unwrap_or_default()),
        });
    }
    let mut stdin = l.stdin;
    let mut out = l.pty.or(l.stdout);
    let mut err = l.stderr;
    let mut exit: Option<i32> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut exit_deadline: Option<std::time::Instant> = None;
    // Shedding costs a few hundred microseconds: a container that is still running a
    // moment from now pays it then, and a quick one (`run --rm ... true`) never does, so
    // its exit is recorded sooner.
    let mut shed_at = Some(std::time::Instant::now() + SHED_AFTER);

    loop {
        if exit.is_some() && out.is_none() && err.is_none() {
            break;
        }
        if let Some(d) = exit_deadline
            && std::time::Instant::now() >= d
        {
            break;
        }
        // Slot layout: 0 sigfd, 1 out, 2 err, 3 listener, 4.. clients. Absent fds are -1,
        // which poll(2) skips, so slot numbers stay fixed.
        let raw = |f: Option<&OwnedFd>| f.map_or(-1, |f| f.as_raw_fd());
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4 + clients.len());
        for fd in [
            l.sigfd.as_raw_fd(),
            raw(out.as_ref()),
            raw(err.as_ref()),
            listener.as_ref().map_or(-1, |s| s.as_raw_fd()),
        ]
        .into_iter()
        .chain(clients.iter().map(|c| c.stream.as_raw_fd()))
        {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout_ms = if exit.is_some() {
            100
        } else if let Some(at) = shed_at {
            let now = std::time::Instant::now();
            if now >= at {
                shed_startup_memory();
                shed_at = None;
                -1
            } else {
                (at - now).as_millis().clamp(1, i32::MAX as u128) as i32
            }
        } else {
            -1
        };
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("poll", e));
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
            .collect();

        if ready[0] {
            while let Ok(Some(_)) = l.sigfd.read_signal() {}
            loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, code)) if p == l.pid => exit = Some(code),
                    Ok(WaitStatus::Signaled(p, s, _)) if p == l.pid => exit = Some(128 + s as i32),
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            if exit.is_some() && exit_deadline.is_none() {
                // Output still in the pipes is drained; anything holding them open past
                // this (impossible with a PID namespace) cannot stall the exit forever.
                exit_deadline = Some(std::time::Instant::now() + std::time::Duration::from_secs(2));
            }
        }
        for (slot, stream) in [(1usize, Stream::Stdout), (2, Stream::Stderr)] {
            if !ready[slot] {
                continue;
            }
            let fd = if slot == 1 { &mut out } else { &mut err };
            let Some(f) = fd.as_ref() else { continue };
            match nix::unistd::read(f, &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => *fd = None,
                Ok(n) => {
                    let chunk = &buf[..n];
                    log.write_chunk(stream, chunk)?;
                    let frame = encode(
                        if stream == Stream::Stdout {
                            FrameKind::Stdout
                        } else {
                            FrameKind::Stderr
                        },
                        chunk,
                    );
                    clients.retain_mut(|c| {
                        let wants = c.streams.is_some_and(|s| {
                            if stream == Stream::Stdout {
                                s.stdout
                            } else {
                                s.stderr
                            }
                        });
                        !wants || c.stream.write_all(&frame).is_ok()
                    });
                }
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(_) => *fd = None,
            }
        }
        log.flush()?;
        if ready[3]
            && let Some(lst) = &listener
        {
            while let Ok((s, _)) = lst.accept() {
                let _ = s.set_write_timeout(Some(std::time::Duration::from_secs(10)));
                clients.push(Client {
                    stream: s,
                    decoder: Decoder::default(),
                    streams: None,
                });
            }
        }
        let mut i = clients.len();
        while i > 0 {
            i -= 1;
            if !ready.get(4 + i).copied().unwrap_or(false) {
                continue;
            }
            let keep = serve_client(req, &mut clients[i], &mut stdin, out.as_ref(), &mut buf);
            if !keep {
                let c = clients.remove(i);
                if c.streams.is_some_and(|s| s.stdin) && req.stdin_once {
                    stdin = None;
                }
            }
        }
    }
    log.flush()?;
    Ok((exit.unwrap_or(137), clients))
}

/// Handles input from one attach client. Returns false when the client is gone.
fn serve_client(
    req: &StartRequest,
    c: &mut Client,
    stdin: &mut Option<OwnedFd>,
    pty: Option<&OwnedFd>,
    buf: &mut [u8],
) -> bool {
    let n = match c.stream.read(buf) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    c.decoder.push(&buf[..n]);
    loop {
        match c.decoder.next_frame() {
            Ok(Some((FrameKind::Hello, p))) => {
                c.streams = Some(serde_json::from_slice(&p).unwrap_or(AttachStreams {
                    stdin: false,
                    stdout: true,
                    stderr: true,
                }));
            }
            Ok(Some((FrameKind::Stdin, p))) => {
                if c.streams.is_some_and(|s| s.stdin) {
                    let target = if req.tty { pty } else { stdin.as_ref() };
                    if let Some(fd) = target {
                        let _ = write_all_fd(fd.as_fd(), &p);
                    }
                }
            }
            Ok(Some((FrameKind::StdinClose, _))) => {
                if c.streams.is_some_and(|s| s.stdin) && !req.tty {
                    *stdin = None;
                }
            }
            Ok(Some((FrameKind::Resize, p))) if p.len() == 4 => {
                if let Some(m) = pty {
                    let ws = libc::winsize {
                        ws_row: u16::from_be_bytes([p[0], p[1]]),
                        ws_col: u16::from_be_bytes([p[2], p[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ on our pty master with a valid struct.
                    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The `die` event, from the one process that saw the exit.
fn publish_die(req: &StartRequest, code: i32) {
    publish(req, "die", &[("exitCode", code.to_string())]);
}

fn publish(req: &StartRequest, action: &str, extra: &[(&str, String)]) {
    // Only the record (name, image, labels as they are now): this runs on the start path.
    let paths = ContainerPaths::new(&req.roots, &req.id);
    if let Ok(record) = crate::fsutil::read_json::<crate::model::ContainerRecord>(&paths.record()) {
        crate::events::Journal::new(&req.roots).container(action, &record, extra);
    }
}

/// How a run ends: for good, or to be restarted by the policy.
#[derive(PartialEq, Clone, Copy)]
enum RunEnd {
    Exited,
    /// Recorded as "restarting" (the container counts as running, as in Docker); the
    /// network, the attach socket and the record stay.
    Restarting,
}

fn finish_run(
    req: &StartRequest,
    paths: &ContainerPaths,
    cgroup: &ContainerCgroup,
    code: i32,
    clients: &mut Vec<Client>,
    end: RunEnd,
) {
    let oom = cgroup.oom_killed();
    let _ = cgroup.destroy();
    // Before the exit is recorded, so whoever waits for it finds the addresses released
    // and the published ports gone.
    if end == RunEnd::Exited && req.netns_path.is_some() {
        crate::netglue::teardown(&req.roots, &req.net, &req.id);
    }
    if let Ok(mut st) = ContainerState::load(&paths.state()) {
        st.status = match end {
            RunEnd::Exited => Status::Exited,
            RunEnd::Restarting => Status::Restarting,
        };
        st.exit_code = code;
        st.oom_killed = oom;
        st.pid = 0;
        if end == RunEnd::Restarting {
            st.cgroup = None;
        }
        st.finished_at = state::now_rfc3339();
        let _ = st.save(&paths.state());
    }
    if end == RunEnd::Exited {
        let _ = std::fs::remove_file(paths.attach_socket());
    }
    // After the exit is recorded (a waiter woken by it finds the state exited), before
    // an auto-remove's `destroy` and before clients hear of it.
    publish_die(req, code);
    // Like `docker run --rm`, the attached client returns only once the container is gone.
    // Not when `restart` stopped it: Docker starts an `--rm` container again.
    if end == RunEnd::Exited && req.auto_remove && !super::restart::RESTARTING.is_set(paths) {
        let _ = crate::lifecycle::remove_after_exit(&req.roots, &req.net, &req.id);
    }
    let frame = encode(FrameKind::Exit, &code.to_be_bytes());
    for c in clients.iter_mut() {
        let _ = c.stream.write_all(&frame);
    }
    clients.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The init is born inside a cgroup2 directory with no migration. Runs on the cgroup2
    /// mount of this host (hybrid hosts have one too) in a directory the test creates.
    #[test]
    fn clone3_places_the_child_in_the_cgroup() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let Some(rel) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
            eprintln!("skipped: no cgroup2 hierarchy");
            return;
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(mnt) = mountinfo.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            post.starts_with("cgroup2 ")
                .then(|| pre.split(' ').nth(4).map(str::to_string))?
        }) else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        let name = format!("pelagos-clone3-test-{}", std::process::id());
        let dir = std::path::Path::new(&mnt)
            .join(rel.trim_start_matches('/'))
            .join(&name);
        std::fs::create_dir(&dir).unwrap();
        let fd = std::fs::File::open(&dir).unwrap();
        let rc = clone_into_cgroup(nix::sched::CloneFlags::empty(), fd.as_raw_fd()).unwrap();
        if rc == 0 {
            // SAFETY: the child only pauses until killed.
            loop {
                unsafe { libc::pause() };
            }
        }
        let cg = std::fs::read_to_string(format!("/proc/{rc}/cgroup")).unwrap();
        let _ = nix::sys::signal::kill(Pid::from_raw(rc as i32), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(rc as i32), None);
        std::fs::remove_dir(&dir).unwrap();
        let line = cg.lines().find(|l| l.starts_with("0::")).unwrap_or("");
        assert!(line.ends_with(&name), "child born in {line:?}, not {name}");
    }
}
