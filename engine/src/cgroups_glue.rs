//! The runtime's view of a container's cgroup: created by the monitor from the spec's
//! resources, rebuilt by other processes from the paths persisted in the state.

use crate::cgroups::{self, CgroupManager, CgroupPaths};
use crate::error::{Error, Result};
use crate::runtime::StartRequest;
use crate::state::ContainerState;

pub struct ContainerCgroup {
    mgr: Box<dyn CgroupManager>,
}

/// Writes "0" (the calling thread) to each v1 `tasks` file. The caller must be
/// single-threaded, or only the calling thread moves.
pub fn join_self(tasks_files: &[std::path::PathBuf]) -> Result<()> {
    for f in tasks_files {
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .and_then(|mut w| std::io::Write::write_all(&mut w, b"0"))
            .map_err(|e| Error::Cgroup(format!("join {}: {e}", f.display())))?;
    }
    Ok(())
}

fn cg_err(e: cgroups::CgroupError) -> Error {
    Error::Cgroup(e.to_string())
}

impl ContainerCgroup {
    /// Resolves and creates the container's cgroup with the spec's limits.
    pub fn create(req: &StartRequest) -> Result<Self> {
        let cg = Self::plan(req)?;
        cg.materialize(req)?;
        Ok(cg)
    }

    /// Where the container's cgroup goes, with nothing created yet.
    pub fn plan(req: &StartRequest) -> Result<Self> {
        let mgr =
            cgroups::new_for_container(&req.id, req.cgroup_parent.as_deref()).map_err(cg_err)?;
        Ok(ContainerCgroup { mgr })
    }

    /// Creates the planned cgroup with the request's limits; nothing is left on failure.
    pub fn materialize(&self, req: &StartRequest) -> Result<()> {
        let resources = req
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        self.mgr.create(&resources).map_err(|e| {
            let _ = self.mgr.destroy();
            cg_err(e)
        })
    }

    /// cgroup v2: the init can be born inside it, so it must exist before the clone.
    pub fn is_v2(&self) -> bool {
        matches!(self.mgr.paths(), CgroupPaths::V2 { .. })
    }

    pub fn from_paths(paths: CgroupPaths) -> Self {
        ContainerCgroup {
            mgr: cgroups::open(paths),
        }
    }

    pub fn from_state(st: &ContainerState) -> Result<Self> {
        let paths = st
            .cgroup
            .clone()
            .ok_or_else(|| Error::Internal("container has no cgroup recorded".into()))?;
        Ok(Self::from_paths(paths))
    }

    pub fn paths(&self) -> CgroupPaths {
        self.mgr.paths()
    }

    /// A directory fd of the container's cgroup when it is cgroup v2, for
    /// clone3(CLONE_INTO_CGROUP).
    pub fn v2_dir_fd(&self) -> Option<std::os::fd::OwnedFd> {
        match self.mgr.paths() {
            CgroupPaths::V2 { placement } => std::fs::File::open(&placement.path)
                .ok()
                .map(std::os::fd::OwnedFd::from),
            CgroupPaths::V1 { .. } => None,
        }
    }

    pub fn add_process(&self, pid: i32) -> Result<()> {
        self.mgr.add_process(pid).map_err(cg_err)
    }

    /// New limits on the live cgroup (`docker update`).
    pub fn apply(&self, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        self.mgr.apply(r).map_err(cg_err)
    }

    /// On cgroup v1, the `tasks` file of every hierarchy, for a single-threaded process to
    /// move itself with [`join_self`]; `None` on v2.
    ///
    /// Why: a write of a pid to `cgroup.procs` takes the kernel's global threadgroup
    /// rwsem for writing, which waits for an RCU grace period (measured 3-10 ms here, on
    /// every container start and exec). A thread moving *itself* through `tasks` ("0")
    /// skips that lock, and for a single-threaded process moving its one thread is moving
    /// the process.
    pub fn self_join_files(&self) -> Option<Vec<std::path::PathBuf>> {
        match self.mgr.paths() {
            CgroupPaths::V1 { hierarchies } => {
                Some(hierarchies.iter().map(|h| h.path.join("tasks")).collect())
            }
            CgroupPaths::V2 { .. } => None,
        }
    }

    /// Moves the calling process into the cgroup: through the v1 `tasks` files when it is
    /// single-threaded (see [`Self::self_join_files`]), else through `cgroup.procs`.
    pub fn add_self_single_threaded(&self) -> Result<()> {
        match self.self_join_files() {
            Some(files) => join_self(&files),
            None => self.add_process(std::process::id() as i32),
        }
    }

    pub fn freeze(&self) -> Result<()> {
        self.mgr.freeze().map_err(cg_err)
    }

    pub fn thaw(&self) -> Result<()> {
        self.mgr.thaw().map_err(cg_err)
    }

    pub fn oom_killed(&self) -> bool {
        self.mgr.oom_killed().unwrap_or(false)
    }

    pub fn pids(&self) -> Result<Vec<i32>> {
        self.mgr.pids().map_err(cg_err)
    }

    pub fn stats(&self) -> Result<cgroups::CgroupStats> {
        self.mgr.stats().map_err(cg_err)
    }

    pub fn destroy(&self) -> Result<()> {
        self.mgr.destroy().map_err(cg_err)
    }
}
