//! The runtime's view of a container's cgroup: created by the monitor from the spec's
//! resources, rebuilt by other processes from the paths persisted in the state.

use crate::cgroups::{self, CgroupManager, CgroupPaths};
use crate::error::{Error, Result};
use crate::runtime::StartRequest;
use crate::state::ContainerState;

pub struct ContainerCgroup {
    mgr: Box<dyn CgroupManager>,
}

fn cg_err(e: cgroups::CgroupError) -> Error {
    Error::Cgroup(e.to_string())
}

impl ContainerCgroup {
    /// Resolves and creates the container's cgroup with the spec's limits.
    pub fn create(req: &StartRequest) -> Result<Self> {
        let mgr =
            cgroups::new_for_container(&req.id, req.cgroup_parent.as_deref()).map_err(cg_err)?;
        let resources = req
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        mgr.create(&resources).map_err(|e| {
            let _ = mgr.destroy();
            cg_err(e)
        })?;
        Ok(ContainerCgroup { mgr })
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
