//! The container's first process, from clone() to execve(). Runs in the new namespaces,
//! single-threaded, as a child of the monitor; reports failure on the sync socket (I3) and
//! signals success by exec'ing, which closes the CLOEXEC socket.

use super::StartRequest;
use super::mounts::{apply_mount, prefill_volume, secure_join};
use super::rootfs;
use super::sync::{self, SyncMsg};
use crate::error::{Error, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The child's ends of the stdio pipes (non-TTY mode); `None` means /dev/null.
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Never returns: either execs the container's command or exits with Docker's code.
pub fn run(req: &StartRequest, sock: OwnedFd, stdio: ChildStdio) -> ! {
    let err = match setup(req, sock.as_fd(), stdio) {
        Ok(prepared) => match exec_command(req, &sock, prepared) {
            Ok(never) => match never {},
            Err(e) => e,
        },
        Err(e) => e,
    };
    fail(sock.as_fd(), &err)
}

fn fail(sock: BorrowedFd<'_>, err: &Error) -> ! {
    let (message, exit_code) = match err {
        Error::StartFailed { message, exit_code } => (message.clone(), *exit_code),
        other => (other.to_string(), 128),
    };
    let _ = sync::send(sock, &SyncMsg::ExecFailed { message, exit_code }, None);
    // SAFETY: leaving the forked child without running the parent's atexit handlers.
    unsafe { libc::_exit(exit_code) }
}

pub fn has_namespace(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == t && n.path().is_none()))
}

/// I1: waits until the monitor has put us in our cgroup, then makes that cgroup the root
/// of our own cgroup namespace.
fn join_cgroup_namespace(spec: &Spec, sock: BorrowedFd<'_>) -> Result<()> {
    match sync::recv(sock)? {
        Some((SyncMsg::CgroupJoined, _)) => {}
        // The monitor cloned us single-threaded: moving this thread moves the process,
        // without the global lock a pid write to cgroup.procs takes.
        Some((SyncMsg::JoinCgroup { tasks }, _)) => crate::cgroups_glue::join_self(&tasks)?,
        other => {
            return Err(Error::Internal(format!(
                "sync: expected CgroupJoined, got {other:?}"
            )));
        }
    }
    if has_namespace(spec, LinuxNamespaceType::Cgroup) {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| Error::io("unshare cgroup namespace", e.into()))?;
    }
    Ok(())
}

/// What `setup` hands to the exec step.
struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    path: CString,
}

fn setup(req: &StartRequest, sock: BorrowedFd<'_>, stdio: ChildStdio) -> Result<Prepared> {
    let spec = &req.spec;
    // If the monitor dies, so does the container: nobody would log or reap it otherwise.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if nix::unistd::getppid().as_raw() == 1 {
        return Err(Error::Internal("monitor exited during start".into()));
    }
    // A cgroup v2 mount inside the container needs our cgroup namespace first; on v1 hosts
    // nothing we mount depends on it, so the mounts below run while the monitor moves us
    // into the cgroup (on v1 that migration waits for an RCU grace period: milliseconds).
    let early_cgroup = rootfs::host_is_cgroup2();
    if early_cgroup {
        join_cgroup_namespace(spec, sock)?;
    }
    if let Some(ns) = &req.netns_path {
        let f = std::fs::File::open(ns).map_err(|e| Error::path(ns, e))?;
        nix::sched::setns(f, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io("join network namespace", e.into()))?;
    } else if has_namespace(spec, LinuxNamespaceType::Network) {
        loopback_up()?;
    }

    let rootfs_path: PathBuf = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| Error::invalid("spec has no root"))?;
    rootfs::make_private()?;
    rootfs::mount_rootfs(&req.rootfs, &rootfs_path)?;
    for p in &req.prefill {
        prefill_volume(&rootfs_path, &p.container_path, &p.volume_dir)?;
    }
    let mut dev_mounted = false;
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        apply_mount(&rootfs_path, m)?;
        if m.destination() == Path::new("/dev") {
            dev_mounted = true;
            rootfs::populate_dev(&rootfs_path)?;
        }
    }
    if !dev_mounted {
        rootfs::populate_dev(&rootfs_path).ok();
    }

    // Stdio: a pty made inside the container's own devpts, or the monitor's pipes.
    nix::unistd::setsid().map_err(|e| Error::io("setsid", e.into()))?;
    if req.tty {
        let master = open_pty_master(&rootfs_path)?;
        let slave = open_pty_slave(&master)?;
        sync::send(sock, &SyncMsg::PtyMaster, Some(master.as_raw_fd()))?;
        drop(master);
        // SAFETY: TIOCSCTTY on the slave of the pty we just opened, in our own session.
        if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
            return Err(Error::io(
                "set controlling terminal",
                std::io::Error::last_os_error(),
            ));
        }
        for target in 0..3 {
            dup_onto(slave.as_raw_fd(), target)?;
        }
    } else {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(rootfs_path.join("dev/null"))
            .map_err(|e| Error::path("/dev/null", e))?;
        let pick = |o: &Option<OwnedFd>| o.as_ref().map_or(null.as_raw_fd(), |f| f.as_raw_fd());
        dup_onto(pick(&stdio.stdin), 0)?;
        dup_onto(pick(&stdio.stdout), 1)?;
        dup_onto(pick(&stdio.stderr), 2)?;
    }
    drop(stdio);

    if !early_cgroup {
        join_cgroup_namespace(spec, sock)?;
    }
    rootfs::pivot_root(&rootfs_path)?;
    let linux = spec.linux().as_ref();
    if let Some(sysctls) = linux.and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in sysctls {
            let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&p, v).map_err(|e| Error::invalid(format!("sysctl {k}={v}: {e}")))?;
        }
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        rootfs::mask_path(p)?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        rootfs::readonly_path(p)?;
    }
    // Docker creates a missing working directory (owned by root) before switching user,
    // and before a `--read-only` root is made read-only.
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd())
        && std::fs::metadata(cwd).is_err()
    {
        let p = secure_join(Path::new("/"), cwd)?;
        std::fs::create_dir_all(&p).map_err(|e| Error::path(&p, e))?;
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true))
    {
        rootfs::readonly_root()?;
    }
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(|e| Error::io("sethostname", e.into()))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        let c = CString::new(d).map_err(|_| Error::invalid("bad domainname"))?;
        // SAFETY: valid pointer and length.
        unsafe { libc::setdomainname(c.as_ptr(), d.len()) };
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("spec has no process"))?;
    for (res, lim) in rlimits(process) {
        set_rlimit(res, lim).map_err(|e| Error::invalid(format!("setrlimit {res}: {e}")))?;
    }
    if let Some(score) = process.oom_score_adj() {
        let _ = std::fs::write("/proc/self/oom_score_adj", score.to_string());
    }

    let cwd = process.cwd();

    let argv: Vec<CString> = process
        .args()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::invalid("argument contains a NUL byte"))?;
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let envp: Vec<CString> = env
        .iter()
        .filter_map(|e| CString::new(e.as_bytes()).ok())
        .collect();
    let Some(arg0) = process.args().as_ref().and_then(|a| a.first()).cloned() else {
        return Err(Error::StartFailed {
            message: "no command specified".into(),
            exit_code: 127,
        });
    };
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");

    // Resolve the executable before dropping privileges, as the user would see it.
    set_user_and_security(req)?;
    std::env::set_current_dir(cwd).map_err(|e| Error::StartFailed {
        message: format!(
            "chdir to cwd (\"{}\") set in config.json failed: {e}",
            cwd.display()
        ),
        exit_code: 128,
    })?;
    let path = find_executable(&arg0, path_var)?;
    Ok(Prepared { argv, envp, path })
}

fn set_user_and_security(req: &StartRequest) -> Result<()> {
    let spec = &req.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("no process"))?;
    let user = process.user();
    // Keep permitted capabilities across setuid so we can still install seccomp and then
    // set the final capability sets.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let groups: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| Error::io("setgroups", e.into()))?;
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| Error::io("setgid", e.into()))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| Error::io("setuid", e.into()))?;
    if let Some(umask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    }
    // After setuid the effective set is empty; raise it from the kept permitted set so we
    // may still load seccomp (CAP_SYS_ADMIN) and shape the bounding set (CAP_SETPCAP).
    let permitted = caps::read(None, caps::CapSet::Permitted)
        .map_err(|e| Error::Internal(format!("read capabilities: {e}")))?;
    caps::set(None, caps::CapSet::Effective, &permitted)
        .map_err(|e| Error::Internal(format!("raise capabilities: {e}")))?;
    if process.no_new_privileges() == Some(true) {
        // SAFETY: prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Error::io("no_new_privs", std::io::Error::last_os_error()));
        }
    }
    if let Some(blob) = &req.seccomp_bpf {
        let bytes = hex::decode(&blob.hex).map_err(|e| Error::Seccomp(e.to_string()))?;
        let prog = crate::seccomp::BpfProgram::from_bytes(&bytes, blob.flags)
            .map_err(|e| Error::Seccomp(e.to_string()))?;
        crate::seccomp::install(&prog).map_err(|e| Error::Seccomp(e.to_string()))?;
    }
    if let Some(c) = process.capabilities() {
        crate::capabilities::apply(c).map_err(|e| Error::Internal(format!("capabilities: {e}")))?;
    }
    Ok(())
}

fn exec_command(
    req: &StartRequest,
    sock: &OwnedFd,
    p: Prepared,
) -> Result<std::convert::Infallible> {
    if req.init {
        return run_reaper(sock, p);
    }
    close_extra_fds();
    let e = nix::unistd::execve(&p.path, &p.argv, &p.envp).unwrap_err();
    Err(exec_error(&p.argv, e))
}

fn exec_error(argv: &[CString], e: nix::Error) -> Error {
    let name = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    match e {
        nix::Error::EACCES | nix::Error::EPERM | nix::Error::ENOEXEC | nix::Error::EISDIR => {
            Error::StartFailed {
                message: format!("exec: \"{name}\": permission denied"),
                exit_code: 126,
            }
        }
        nix::Error::ENOENT => Error::StartFailed {
            message: format!("exec: \"{name}\": stat {name}: no such file or directory"),
            exit_code: 127,
        },
        other => Error::StartFailed {
            message: format!("exec: \"{name}\": {other}"),
            exit_code: 126,
        },
    }
}

/// Marks every descriptor above stderr close-on-exec, so nothing of the host (or of the
/// engine) leaks into the container (runc CVE-2024-21626).
pub fn close_extra_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) };
    if rc != 0 {
        for fd in 3..4096 {
            // SAFETY: setting FD_CLOEXEC on possibly-invalid fds is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// Finds the command like execvp would, but reports Docker's messages.
pub fn find_executable(arg0: &str, path_var: &str) -> Result<CString> {
    use std::os::unix::fs::PermissionsExt;
    let to_c = |s: &str| CString::new(s).map_err(|_| Error::invalid("command contains a NUL byte"));
    if arg0.contains('/') {
        return match std::fs::metadata(arg0) {
            Ok(_) => to_c(arg0),
            Err(e) => Err(Error::StartFailed {
                message: format!(
                    "exec: \"{arg0}\": stat {arg0}: {}",
                    if e.kind() == std::io::ErrorKind::NotFound {
                        "no such file or directory".to_string()
                    } else {
                        e.to_string()
                    }
                ),
                exit_code: 127,
            }),
        };
    }
    let mut found_not_exec = false;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = format!("{dir}/{arg0}");
        if let Ok(md) = std::fs::metadata(&cand) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return to_c(&cand);
            }
            found_not_exec = true;
        }
    }
    if found_not_exec {
        return Err(Error::StartFailed {
            message: format!("exec: \"{arg0}\": permission denied"),
            exit_code: 126,
        });
    }
    Err(Error::StartFailed {
        message: format!("exec: \"{arg0}\": executable file not found in $PATH"),
        exit_code: 127,
    })
}

/// `--init`: stay as PID 1, run the command as our child, forward signals, reap orphans,
/// and exit with the command's status. Non-dumpable, so no container process can open
/// our /proc/1/exe (the pelagos binary) for writing (runc CVE-2019-5736).
fn run_reaper(sock: &OwnedFd, p: Prepared) -> Result<std::convert::Infallible> {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("pipe", e.into()))?;
    // Block every signal before forking: a SIGCHLD from a command that exits at once
    // would otherwise be discarded (its default action is to ignore) and never waited for.
    let all = SigSet::all();
    let mut old = SigSet::empty();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), Some(&mut old));
    // SAFETY: we are single-threaded.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::io("fork", e.into()))? {
        ForkResult::Child => {
            drop(ready_r);
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            close_extra_fds();
            let e = nix::unistd::execve(&p.path, &p.argv, &p.envp).unwrap_err();
            let err = exec_error(&p.argv, e);
            fail(sock.as_fd(), &err)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            // EOF on the pipe: the child exec'd (or died); release the monitor.
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&ready_r, &mut b);
            drop(ready_r);
            // The reaper needs no descriptor at all: not the sync socket, not stdio, and
            // none of the monitor's (attach clients, log) that it inherited without exec.
            // SAFETY: closing every fd of this process, which uses none afterwards.
            unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
            reap_loop(child)
        }
    }
}

fn reap_loop(child: Pid) -> ! {
    let all = SigSet::all();
    loop {
        // Reap first, then wait: exits that happened before we got here are not missed.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    // SAFETY: leaving the reaper.
                    unsafe { libc::_exit(code) }
                }
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                    // SAFETY: leaving the reaper.
                    unsafe { libc::_exit(128 + s as i32) }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let sig = all.wait().unwrap_or(Signal::SIGCHLD);
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
        }
    }
}

fn dup_onto(fd: RawFd, target: RawFd) -> Result<()> {
    if fd == target {
        // Clear CLOEXEC: the fd must survive execve.
        // SAFETY: fcntl on a valid fd.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        return Ok(());
    }
    // SAFETY: dup2 onto a standard fd number.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(Error::io("dup2 stdio", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn open_pty_master(rootfs: &Path) -> Result<OwnedFd> {
    let ptmx = rootfs.join("dev/pts/ptmx");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&ptmx)
        .map_err(|e| Error::path(&ptmx, e))?;
    let fd = OwnedFd::from(f);
    // SAFETY: unlockpt on the master we just opened.
    if unsafe { libc::unlockpt(fd.as_raw_fd()) } != 0 {
        return Err(Error::io("unlockpt", std::io::Error::last_os_error()));
    }
    Ok(fd)
}

use std::os::unix::fs::OpenOptionsExt;

fn open_pty_slave(master: &OwnedFd) -> Result<OwnedFd> {
    // TIOCGPTPEER opens the slave through the master, independent of any path.
    // SAFETY: ioctl on a valid pty master.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::io("open pty slave", std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel returned a new fd that we own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn loopback_up() -> Result<()> {
    // SAFETY: a throwaway datagram socket and the SIOC[GS]IFFLAGS ioctls on "lo".
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(Error::io("socket", std::io::Error::last_os_error()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(s);
        if rc != 0 {
            return Err(Error::io("bring up loopback", err));
        }
    }
    Ok(())
}

/// The spec's rlimits as setrlimit(2) arguments (worked out before a fork: the child
/// only makes the calls).
pub fn rlimits(
    process: &oci_spec::runtime::Process,
) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    process
        .rlimits()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            (
                rlimit_resource(r.typ()),
                libc::rlimit {
                    rlim_cur: r.soft(),
                    rlim_max: r.hard(),
                },
            )
        })
        .collect()
}

/// setrlimit(2); without CAP_SYS_RESOURCE (a sandboxed engine) a hard limit cannot rise,
/// so it is clamped to what we have, as podman does, rather than refusing to start.
/// Only syscalls: safe between fork and exec.
pub fn set_rlimit(res: libc::__rlimit_resource_t, lim: libc::rlimit) -> std::io::Result<()> {
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(res, &lim) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EPERM) {
        return Err(e);
    }
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a struct we own.
    unsafe { libc::getrlimit(res, &mut cur) };
    let clamped = libc::rlimit {
        rlim_cur: lim.rlim_cur.min(cur.rlim_max),
        rlim_max: lim.rlim_max.min(cur.rlim_max),
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(res, &clamped) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType as R;
    (match t {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::__rlimit_resource_t
}

/// Clone flags for the namespaces the spec asks to create (those without a path).
pub fn clone_flags(spec: &Spec) -> CloneFlags {
    let mut f = CloneFlags::empty();
    for (t, flag) in [
        (LinuxNamespaceType::Mount, CloneFlags::CLONE_NEWNS),
        (LinuxNamespaceType::Pid, CloneFlags::CLONE_NEWPID),
        (LinuxNamespaceType::Uts, CloneFlags::CLONE_NEWUTS),
        (LinuxNamespaceType::Ipc, CloneFlags::CLONE_NEWIPC),
        (LinuxNamespaceType::Network, CloneFlags::CLONE_NEWNET),
    ] {
        if has_namespace(spec, t) {
            f |= flag;
        }
    }
    f
}
