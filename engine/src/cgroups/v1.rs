//! cgroup v1 implementation of [`CgroupManager`], for legacy and hybrid hosts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::CgroupManager;
use super::destroy::{remove_if_empty, remove_tree};
use super::error::{CgroupError, Result};
use super::fsutil::{read, read_flat_keyed, read_opt, read_pids_recursive, write};
use super::paths::{CgroupPaths, Placement};
use super::resources::{V1Dirs, apply_v1};
use super::stats::{CgroupStats, V1StatDirs, read_v1};

/// v1 has no change notification for freezer.state or emptiness, so these
/// waits are short bounded polls with back-off.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct V1Manager {
    hierarchies: Vec<Placement>,
}

impl V1Manager {
    pub fn new(hierarchies: Vec<Placement>) -> Self {
        V1Manager { hierarchies }
    }

    /// controller → the container's directory in that controller's hierarchy.
    fn dirs(&self) -> V1Dirs {
        self.hierarchies
            .iter()
            .flat_map(|h| h.controllers.iter().map(|c| (c.clone(), h.path.clone())))
            .collect()
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.path.as_path())
    }

    fn freezer(&self) -> Result<&Path> {
        self.dir_of("freezer")
            .ok_or_else(|| CgroupError::ControllerUnavailable {
                controller: "freezer",
                path: PathBuf::from("<freezer hierarchy not mounted>"),
            })
    }

    fn freezer_state(&self) -> Result<Option<String>> {
        let Some(dir) = self.dir_of("freezer") else {
            return Ok(None);
        };
        Ok(read_opt(dir, "freezer.state")?.map(|s| s.trim().to_string()))
    }

    /// Union of the pids in all hierarchies (they normally agree, but a
    /// process moved by someone else would otherwise be missed by destroy).
    fn all_pids(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for h in &self.hierarchies {
            pids.extend(read_pids_recursive(&h.path)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }
}

/// A new cpuset cgroup starts with empty cpus/mems and refuses tasks until
/// they are set, so copy them from the nearest ancestor that has them.
fn init_cpuset(dir: &Path, mountpoint: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if !read(dir, file)?.trim().is_empty() {
            continue;
        }
        let value = dir
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(mountpoint))
            .find_map(|a| read(a, file).ok().filter(|v| !v.trim().is_empty()));
        if let Some(v) = value {
            write(dir, file, v.trim())?;
        }
    }
    Ok(())
}

/// Polls `f` with back-off until it returns true or `timeout` passes.
fn poll_until(
    timeout: Duration,
    what: &'static str,
    path: &Path,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(1);
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Timeout {
                what,
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl CgroupManager for V1Manager {
    fn paths(&self) -> CgroupPaths {
        CgroupPaths::V1 {
            hierarchies: self.hierarchies.clone(),
        }
    }

    fn create(&self, resources: &LinuxResources) -> Result<()> {
        for h in &self.hierarchies {
            let created = h.create_dirs()?;
            if h.controllers.iter().any(|c| c == "cpuset") {
                let chain = h
                    .ancestors_below_mount()
                    .into_iter()
                    .chain([h.path.clone()]);
                for dir in chain.filter(|d| h.is_ours(d, &created)) {
                    init_cpuset(&dir, &h.mountpoint)?;
                }
            }
        }
        apply_v1(&self.dirs(), resources)
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        for h in &self.hierarchies {
            write(&h.path, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        apply_v1(&self.dirs(), resources)
    }

    fn freeze(&self) -> Result<()> {
        let dir = self.freezer()?;
        write(dir, "freezer.state", "FROZEN")?;
        let res = poll_until(FREEZE_TIMEOUT, "FROZEN", dir, || {
            let state = read(dir, "freezer.state")?;
            match state.trim() {
                "FROZEN" => Ok(true),
                // A racing thaw (or a self-thawing task) can leave it THAWED;
                // asking again is what the kernel docs recommend.
                "THAWED" => write(dir, "freezer.state", "FROZEN").map(|()| false),
                _ => Ok(false),
            }
        });
        if res.is_err() {
            // Do not leave the container half-frozen on failure.
            let _ = write(dir, "freezer.state", "THAWED");
        }
        res
    }

    fn thaw(&self) -> Result<()> {
        let dir = self.freezer()?;
        write(dir, "freezer.state", "THAWED")?;
        poll_until(FREEZE_TIMEOUT, "THAWED", dir, || {
            Ok(read(dir, "freezer.state")?.trim() == "THAWED")
        })
    }

    fn is_frozen(&self) -> Result<bool> {
        Ok(self.freezer_state()?.as_deref() == Some("FROZEN"))
    }

    fn pids(&self) -> Result<Vec<i32>> {
        self.all_pids()
    }

    fn stats(&self) -> Result<CgroupStats> {
        read_v1(&V1StatDirs {
            cpu: self.dir_of("cpu"),
            cpuacct: self.dir_of("cpuacct"),
            memory: self.dir_of("memory"),
            pids: self.dir_of("pids"),
            blkio: self.dir_of("blkio"),
        })
    }

    fn oom_killed(&self) -> Result<bool> {
        let Some(dir) = self.dir_of("memory") else {
            return Ok(false);
        };
        Ok(read_flat_keyed(dir, "memory.oom_control")?
            .get("oom_kill")
            .is_some_and(|n| *n > 0))
    }

    fn destroy(&self) -> Result<()> {
        if remove_if_empty(self.hierarchies.iter().map(|h| h.path.as_path())) {
            return Ok(());
        }
        let first = self
            .hierarchies
            .first()
            .map(|h| h.path.clone())
            .unwrap_or_default();
        // v1 has no cgroup.kill: SIGKILL by pid, repeatedly, because a task
        // may fork between our read and our kill.
        poll_until(EMPTY_TIMEOUT, "empty cgroup", &first, || {
            let pids = self.all_pids()?;
            for pid in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Frozen v1 tasks do not act on SIGKILL until thawed.
            if matches!(self.freezer_state()?.as_deref(), Some(s) if s != "THAWED")
                && let Some(dir) = self.dir_of("freezer")
            {
                write(dir, "freezer.state", "THAWED")?;
            }
            Ok(pids.is_empty())
        })?;
        for h in &self.hierarchies {
            remove_tree(&h.path, Duration::from_secs(2))?;
        }
        Ok(())
    }
}
