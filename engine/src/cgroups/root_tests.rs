//! Tests against the real kernel. They need root and a mounted hierarchy and
//! skip (pass with a note) otherwise. Each uses a unique container id so
//! parallel runs never share a cgroup.

use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::*;

const MIB: i64 = 1024 * 1024;

fn unique_id(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("test-{tag}-{}-{nanos}", std::process::id())
}

/// A manager for a fresh id, or None (skip) when not root / no cgroups.
fn manager(tag: &str) -> Option<Box<dyn CgroupManager>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return None;
    }
    match new_for_container(&unique_id(tag), None) {
        Ok(m) => {
            let needed = ["memory", "pids", "cpu", "freezer"];
            if let CgroupPaths::V1 { hierarchies } = m.paths() {
                let has = |c: &str| {
                    hierarchies
                        .iter()
                        .any(|h| h.controllers.iter().any(|x| x == c))
                };
                if let Some(missing) = needed.iter().find(|c| !has(c)) {
                    eprintln!("skipping: v1 controller {missing} not mounted");
                    return None;
                }
            }
            Some(m)
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

fn leaf_dirs(m: &dyn CgroupManager) -> Vec<std::path::PathBuf> {
    match m.paths() {
        CgroupPaths::V2 { placement } => vec![placement.path],
        CgroupPaths::V1 { hierarchies } => hierarchies.into_iter().map(|h| h.path).collect(),
    }
}

fn memory(limit: i64, swap: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(swap)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Forks a child that blocks until a byte arrives on the returned pipe, then
/// runs `then`. Only async-signal-safe calls happen in the child, because
/// the test harness is multi-threaded.
fn fork_child(then: fn() -> !) -> (libc::pid_t, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only calls read/_exit/mmap/pause (async-signal-safe).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut b = 0u8;
        // SAFETY: reading one byte into a valid buffer.
        unsafe { libc::read(fds[0], (&mut b as *mut u8).cast(), 1) };
        then();
    }
    // SAFETY: closing our copy of the read end.
    unsafe { libc::close(fds[0]) };
    (pid, fds[1])
}

fn release(fd: libc::c_int) {
    // SAFETY: writing one byte from a valid buffer, then closing our fd.
    unsafe {
        libc::write(fd, b"x".as_ptr().cast(), 1);
        libc::close(fd);
    }
}

fn wait_status(pid: libc::pid_t) -> libc::c_int {
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

fn allocate_64mib() -> ! {
    let len = 64 * 1024 * 1024;
    // SAFETY: anonymous private mapping, touched page by page below.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            libc::_exit(2);
        }
        let base = p.cast::<u8>();
        let mut off = 0;
        while off < len {
            std::ptr::write_volatile(base.add(off), 1);
            off += 4096;
        }
        libc::_exit(0)
    }
}

#[test]
fn lifecycle_limits_stats_freeze_destroy() {
    let Some(m) = manager("life") else { return };
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * MIB)
                .swap(64 * MIB)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(16i64).build().unwrap())
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1i64)
                .minor(3i64)
                .access("rwm")
                .build()
                .unwrap(),
        ])
        .cpu(
            LinuxCpuBuilder::default()
                .quota(50_000i64)
                .period(100_000u64)
                .shares(512u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.create(&res).unwrap();
    if let CgroupPaths::V1 { hierarchies } = m.paths() {
        // Deny-all then allow /dev/null: the kernel's view is exactly that.
        let dev = hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == "devices"));
        if let Some(h) = dev {
            let list = std::fs::read_to_string(h.path.join("devices.list")).unwrap();
            assert_eq!(list.trim(), "c 1:3 rwm");
        }
    }
    // Persisted paths must rebuild an equivalent manager.
    let json = serde_json::to_string(&m.paths()).unwrap();
    let m2 = open(serde_json::from_str(&json).unwrap());

    let (pid, go) = fork_child(pause_forever);
    m.add_process(pid).unwrap();
    release(go);
    assert_eq!(m2.pids().unwrap(), vec![pid]);

    let s = m2.stats().unwrap();
    assert_eq!(s.memory.limit, Some(64 * 1024 * 1024));
    assert_eq!(s.pids.limit, Some(16));
    assert_eq!(s.pids.current, 1);
    assert!(!m.oom_killed().unwrap());

    // update: raising needs memsw first on v1, lowering needs limit first.
    m.apply(&memory(128 * MIB, 256 * MIB)).unwrap();
    assert_eq!(m.stats().unwrap().memory.limit, Some(128 * 1024 * 1024));
    m.apply(&memory(32 * MIB, 32 * MIB)).unwrap();
    assert_eq!(m.stats().unwrap().memory.limit, Some(32 * 1024 * 1024));

    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());

    // Destroy a frozen cgroup: the kill must still land.
    m.freeze().unwrap();
    m2.destroy().unwrap();
    let status = wait_status(pid);
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    for d in leaf_dirs(m.as_ref()) {
        assert!(!d.exists(), "{} still exists", d.display());
        // The shared pelagos parent stays.
        assert!(d.parent().is_some_and(|p| p.exists()));
    }
    m.destroy().unwrap();
}

#[test]
fn oom_kill_is_detected() {
    let Some(m) = manager("oom") else { return };
    m.create(&memory(16 * MIB, 16 * MIB)).unwrap();
    let (pid, go) = fork_child(allocate_64mib);
    m.add_process(pid).unwrap();
    release(go);
    let status = wait_status(pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "child was not OOM-killed: status {status:#x}"
    );
    assert!(m.oom_killed().unwrap());
    assert!(m.stats().unwrap().memory.oom_kills >= 1);
    m.destroy().unwrap();
    for d in leaf_dirs(m.as_ref()) {
        assert!(!d.exists());
    }
}
