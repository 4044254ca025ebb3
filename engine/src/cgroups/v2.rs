//! cgroup v2 implementation of [`CgroupManager`].

use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::CgroupManager;
use super::destroy::{remove_if_empty, remove_tree};
use super::devices_v2::apply_v2_devices;
use super::error::{CgroupError, Result};
use super::fsutil::{read_flat_keyed, read_opt, read_pids_recursive, write};
use super::paths::{CgroupPaths, Placement};
use super::resources::apply_v2;
use super::stats::{CgroupStats, read_v2};
use super::wait::{events_value, wait_events};

/// Controllers a container may need; enabled in our parents when available.
const WANTED: &[&str] = &["cpuset", "cpu", "io", "memory", "pids", "hugetlb"];

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct V2Manager {
    placement: Placement,
}

impl V2Manager {
    pub fn new(placement: Placement) -> Self {
        V2Manager { placement }
    }

    fn placement(&self) -> &Placement {
        &self.placement
    }

    fn dir(&self) -> &Path {
        &self.placement.path
    }
}

/// Enables the wanted controllers that `dir` offers in its subtree_control,
/// one at a time so one refusal (e.g. cpu with RT tasks in the root) does
/// not block the others.
fn enable_controllers(dir: &Path) -> Result<()> {
    let available = read_opt(dir, "cgroup.controllers")?.unwrap_or_default();
    let enabled = read_opt(dir, "cgroup.subtree_control")?.unwrap_or_default();
    for c in WANTED {
        let has = |s: &str| s.split_whitespace().any(|x| x == *c);
        if has(&available)
            && !has(&enabled)
            && let Err(e) = write(dir, "cgroup.subtree_control", &format!("+{c}"))
        {
            tracing::warn!(error = %e, "cannot enable cgroup controller {c}");
        }
    }
    Ok(())
}

/// Control-file limits plus the device policy, which v2 enforces through an
/// attached BPF program instead of a file. Devices go first: the policy
/// matters more than any limit. No rules (e.g. an update that only changes
/// memory) leaves any existing program untouched.
fn apply_v2_all(dir: &Path, resources: &LinuxResources) -> Result<()> {
    if let Some(rules) = resources.devices().as_ref().filter(|d| !d.is_empty()) {
        apply_v2_devices(dir, rules)?;
    }
    apply_v2(dir, resources)
}

impl CgroupManager for V2Manager {
    fn paths(&self) -> CgroupPaths {
        CgroupPaths::V2 {
            placement: self.placement.clone(),
        }
    }

    fn create(&self, resources: &LinuxResources) -> Result<()> {
        let p = self.placement();
        let created = p.create_dirs()?;
        // Controllers flow top-down: each level must enable them for the next.
        // We only touch the root and levels that are ours.
        enable_controllers(&p.mountpoint)?;
        for dir in p.ancestors_below_mount() {
            if p.is_ours(&dir, &created) {
                enable_controllers(&dir)?;
            }
        }
        apply_v2_all(self.dir(), resources)
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        write(self.dir(), "cgroup.procs", &pid.to_string())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        apply_v2_all(self.dir(), resources)
    }

    fn freeze(&self) -> Result<()> {
        write(self.dir(), "cgroup.freeze", "1")?;
        wait_events(self.dir(), "frozen", 1, FREEZE_TIMEOUT)
    }

    fn thaw(&self) -> Result<()> {
        write(self.dir(), "cgroup.freeze", "0")?;
        wait_events(self.dir(), "frozen", 0, FREEZE_TIMEOUT)
    }

    fn is_frozen(&self) -> Result<bool> {
        Ok(events_value(self.dir(), "frozen")? == Some(1))
    }

    fn pids(&self) -> Result<Vec<i32>> {
        read_pids_recursive(self.dir())
    }

    fn stats(&self) -> Result<CgroupStats> {
        read_v2(self.dir())
    }

    fn oom_killed(&self) -> Result<bool> {
        Ok(read_flat_keyed(self.dir(), "memory.events")?
            .get("oom_kill")
            .is_some_and(|n| *n > 0))
    }

    fn destroy(&self) -> Result<()> {
        let dir = self.dir();
        if remove_if_empty([dir]) {
            return Ok(());
        }
        // cgroup.kill (5.14+) kills the whole subtree atomically, with no pid
        // reuse race and even when frozen; fall back to per-pid SIGKILL.
        let waited = match write(dir, "cgroup.kill", "1") {
            Ok(()) => wait_events(dir, "populated", 0, EMPTY_TIMEOUT),
            Err(e) if e.is_not_found() && dir.exists() => kill_until_empty(dir),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        match waited {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        remove_tree(dir, Duration::from_secs(2))
    }
}

/// Pre-5.14 fallback: SIGKILL every pid listed, again after each short wait
/// because a task may fork between our read and our kill. Frozen v2 tasks
/// still die from fatal signals, so no thaw is needed.
fn kill_until_empty(dir: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + EMPTY_TIMEOUT;
    loop {
        for pid in read_pids_recursive(dir)? {
            // ESRCH just means it already exited.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        match wait_events(dir, "populated", 0, Duration::from_millis(100)) {
            Err(CgroupError::Timeout { .. }) if std::time::Instant::now() < deadline => {}
            other => return other,
        }
    }
}
