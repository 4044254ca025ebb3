//! `exec`: a new process in a running container. It joins every namespace and the cgroup
//! of the container's init and gets the container's capabilities, seccomp filter and user
//! rules. The caller must be single-threaded (the CLI, or the daemon's spawn helper).

use super::init::{close_extra_fds, find_executable};
use super::sync::{self, SyncMsg};
use crate::cgroups_glue::ContainerCgroup;
use crate::error::{Error, Result};
use crate::lifecycle::Engine;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::Spec;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    /// Keep stdin attached (otherwise /dev/null).
    pub interactive: bool,
    pub detach: bool,
    pub privileged: bool,
}

/// A started exec process.
pub struct ExecProcess {
    /// Host PID of the process (our child unless detached).
    pub pid: Pid,
    /// The pty master when `tty`.
    pub pty: Option<OwnedFd>,
}

/// The namespaces an exec joins, in the order they are entered (mount last: after it,
/// host paths are gone).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

struct Plan {
    argv: Vec<CString>,
    envp: Vec<CString>,
    path_var: String,
    cwd: PathBuf,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    caps: oci_spec::runtime::LinuxCapabilities,
    no_new_privs: bool,
    seccomp: Option<crate::seccomp::BpfProgram>,
    /// The container's rlimits: Docker's exec'd processes get them too (`--ulimit`).
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
}

pub fn start(engine: &Engine, what: &str, opts: &ExecOptions) -> Result<ExecProcess> {
    let c = engine.containers.lookup(what)?;
    if !c.state.is_running() || c.state.pid <= 0 {
        return Err(Error::Conflict(format!(
            "Container {} is not running",
            c.record.id
        )));
    }
    if c.state.status == crate::state::Status::Paused {
        return Err(Error::Conflict(format!(
            "Container {} is paused, unpause the container before exec",
            c.record.id
        )));
    }
    if opts.cmd.is_empty() {
        return Err(Error::invalid("No exec command specified"));
    }
    let paths = engine.paths(&c.record.id);
    let spec: Spec = crate::fsutil::read_json(&paths.spec())?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Internal("container spec has no process".into()))?;
    let pid = c.state.pid;

    // Everything that reads host files or allocates happens here, before the fork.
    let (uid, gid, groups, home) = match &opts.user {
        Some(u) => {
            let root = PathBuf::from(format!("/proc/{pid}/root"));
            let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok();
            let group = std::fs::read_to_string(root.join("etc/group")).ok();
            let r = super::user::resolve(u, &[], passwd.as_deref(), group.as_deref())?;
            (r.uid, r.gid, r.additional_gids, Some(r.home))
        }
        None => (
            process.user().uid(),
            process.user().gid(),
            process.user().additional_gids().clone().unwrap_or_default(),
            None,
        ),
    };
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if let Some(h) = home {
        env.retain(|e| !e.starts_with("HOME="));
        env.push(format!("HOME={h}"));
    }
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let caps = if opts.privileged {
        crate::capabilities::to_oci(&crate::capabilities::all_capabilities())
    } else {
        process.capabilities().clone().unwrap_or_default()
    };
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) if !opts.privileged => Some(
            crate::seccomp::compile_cached(s, &engine.roots.seccomp_cache_dir())
                .map_err(|e| Error::Seccomp(e.to_string()))?,
        ),
        _ => None,
    };
    let to_c = |v: &[String]| -> Result<Vec<CString>> {
        v.iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| Error::invalid("NUL byte in argument")))
            .collect()
    };
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::spec::DEFAULT_PATH)
        .to_string();
    let plan = Plan {
        argv: to_c(&opts.cmd)?,
        envp: to_c(&env)?,
        path_var,
        cwd: opts
            .workdir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| process.cwd().clone()),
        uid,
        gid,
        groups,
        caps,
        no_new_privs: process.no_new_privileges() == Some(true),
        seccomp,
        rlimits: super::init::rlimits(process),
    };
    let cgroup = c.state.cgroup.clone().map(ContainerCgroup::from_paths);
    let mut ns_files = Vec::new();
    for (name, flag) in NAMESPACES {
        let p = format!("/proc/{pid}/ns/{name}");
        let f = File::open(&p).map_err(|e| Error::path(&p, e))?;
        ns_files.push((f, *flag));
    }
    let pidns = File::open(format!("/proc/{pid}/ns/pid"))
        .map_err(|e| Error::io("open pid namespace", e))?;
    let null = if opts.detach || !opts.interactive {
        Some(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open("/dev/null")
                .map_err(|e| Error::path("/dev/null", e))?,
        )
    } else {
        None
    };
    let (ours, theirs) = sync::channel()?;

    // Our next child is born in the container's PID namespace; we stay where we are, and
    // switch back right after the fork (threads cannot be created while they differ).
    let own_pidns =
        File::open("/proc/self/ns/pid").map_err(|e| Error::io("open own pid namespace", e))?;
    nix::sched::setns(pidns.as_fd(), CloneFlags::CLONE_NEWPID)
        .map_err(|e| Error::io("join pid namespace", e.into()))?;
    // SAFETY: the caller is single-threaded; the child only runs `child_main`.
    let forked = unsafe { nix::unistd::fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        let _ = nix::sched::setns(own_pidns.as_fd(), CloneFlags::CLONE_NEWPID);
    }
    match forked.map_err(|e| Error::io("fork", e.into()))? {
        ForkResult::Child => {
            drop(ours);
            let err = match child_main(&plan, cgroup.as_ref(), ns_files, &theirs, opts, null) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let (message, exit_code) = match err {
                Error::StartFailed { message, exit_code } => (message, exit_code),
                other => (other.to_string(), 126),
            };
            let _ = sync::send(
                theirs.as_fd(),
                &SyncMsg::ExecFailed { message, exit_code },
                None,
            );
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(exit_code) }
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let mut pty = None;
            loop {
                match sync::recv(ours.as_fd())? {
                    None => break,
                    Some((SyncMsg::PtyMaster, fd)) => pty = fd,
                    Some((SyncMsg::ExecFailed { message, exit_code }, _)) => {
                        let _ = nix::sys::wait::waitpid(child, None);
                        return Err(Error::StartFailed { message, exit_code });
                    }
                    Some((other, _)) => {
                        return Err(Error::Internal(format!("exec: unexpected {other:?}")));
                    }
                }
            }
            Ok(ExecProcess { pid: child, pty })
        }
    }
}

/// Waits for an exec'd process and returns Docker's exit code for it.
pub fn wait(pid: Pid) -> Result<i32> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::io("wait exec", e.into())),
        }
    }
}

fn child_main(
    plan: &Plan,
    cgroup: Option<&ContainerCgroup>,
    ns_files: Vec<(File, CloneFlags)>,
    sock: &OwnedFd,
    opts: &ExecOptions,
    null: Option<File>,
) -> Result<std::convert::Infallible> {
    // Non-dumpable while we are the pelagos binary inside the container, so no container
    // process can open our /proc/PID/exe (runc CVE-2019-5736); execve resets it.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if let Some(cg) = cgroup {
        // We are the single-threaded child of a single-threaded helper.
        cg.add_self_single_threaded()?;
    }
    for (f, flag) in ns_files {
        nix::sched::setns(f.as_fd(), flag)
            .map_err(|e| Error::io(format!("join namespace {flag:?}"), e.into()))?;
    }
    nix::unistd::setsid().map_err(|e| Error::io("setsid", e.into()))?;
    if opts.tty && !opts.detach {
        let master = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open("/dev/pts/ptmx")
            .map_err(|e| Error::path("/dev/pts/ptmx", e))?;
        // SAFETY: unlockpt / TIOCGPTPEER / TIOCSCTTY on the pty we just opened.
        let slave = unsafe {
            libc::unlockpt(master.as_raw_fd());
            libc::ioctl(
                master.as_raw_fd(),
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY,
            )
        };
        if slave < 0 {
            return Err(Error::io("open pty", std::io::Error::last_os_error()));
        }
        sync::send(sock.as_fd(), &SyncMsg::PtyMaster, Some(master.as_raw_fd()))?;
        drop(master);
        // SAFETY: make the slave our controlling terminal and stdio.
        unsafe {
            libc::ioctl(slave, libc::TIOCSCTTY, 0);
            for t in 0..3 {
                libc::dup2(slave, t);
            }
            if slave > 2 {
                libc::close(slave);
            }
        }
    } else if let Some(n) = &null {
        let fd = n.as_raw_fd();
        // SAFETY: dup2 onto stdio.
        unsafe {
            if opts.detach {
                for t in 0..3 {
                    libc::dup2(fd, t);
                }
            } else {
                libc::dup2(fd, 0);
            }
        }
    }
    // Docker checks the working directory exists rather than creating it for exec.
    std::env::set_current_dir(&plan.cwd).map_err(|e| Error::StartFailed {
        message: format!(
            "chdir to cwd (\"{}\") set in config.json failed: {e}",
            plan.cwd.display()
        ),
        exit_code: 126,
    })?;
    let arg0 = plan
        .argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = find_executable(&arg0, &plan.path_var)?;
    // While still root with every capability: a hard limit may need to rise.
    for (res, lim) in &plan.rlimits {
        super::init::set_rlimit(*res, *lim)
            .map_err(|e| Error::invalid(format!("setrlimit {res}: {e}")))?;
    }
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let groups: Vec<Gid> = plan.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| Error::io("setgroups", e.into()))?;
    let gid = Gid::from_raw(plan.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| Error::io("setgid", e.into()))?;
    let uid = Uid::from_raw(plan.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| Error::io("setuid", e.into()))?;
    let permitted = caps::read(None, caps::CapSet::Permitted)
        .map_err(|e| Error::Internal(format!("read capabilities: {e}")))?;
    caps::set(None, caps::CapSet::Effective, &permitted)
        .map_err(|e| Error::Internal(format!("raise capabilities: {e}")))?;
    if plan.no_new_privs {
        crate::seccomp::set_no_new_privs().map_err(|e| Error::Seccomp(e.to_string()))?;
    }
    if let Some(p) = &plan.seccomp {
        crate::seccomp::install(p).map_err(|e| Error::Seccomp(e.to_string()))?;
    }
    crate::capabilities::apply(&plan.caps).map_err(|e| Error::Internal(e.to_string()))?;
    close_extra_fds();
    // As Docker's exec'd processes do: no signal ignored (the exec helper is a Rust
    // program, which ignores SIGPIPE), none blocked.
    super::monitor::reset_signals();
    // Let the sync socket close on exec: that EOF tells the parent we are running.
    let e = nix::unistd::execve(&path, &plan.argv, &plan.envp).unwrap_err();
    Err(Error::StartFailed {
        message: format!("exec: \"{arg0}\": {e}"),
        exit_code: 126,
    })
}
