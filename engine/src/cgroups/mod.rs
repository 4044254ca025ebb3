//! Cgroups: v2 (target) with v1 fallback for hybrid hosts.
//!
//! `detect` finds the host layout, `paths` resolves (and persists) where a
//! container's cgroup lives, `resources` turns OCI `LinuxResources` into
//! control-file writes, `stats` reads usage back. `v2` and `v1` implement
//! [`CgroupManager`], the kernel boundary the runtime talks to.
//!
//! Safety rule throughout: we only mkdir/write/rmdir inside our own `pelagos`
//! subtree (plus enabling controllers in the v2 root's subtree_control).

mod destroy;
pub mod detect;
pub(crate) mod devices;
mod devices_v2;
mod error;
mod fsutil;
pub mod paths;
pub mod resources;
pub mod stats;
pub mod v1;
pub mod v2;
mod wait;

#[cfg(test)]
mod manager_tests;
#[cfg(test)]
mod root_tests;

use oci_spec::runtime::LinuxResources;

pub use detect::{CgroupLayout, CgroupVersion};
pub use error::{CgroupError, Result};
pub use paths::{CgroupPaths, Placement};
pub use stats::CgroupStats;

/// Operations on one container's cgroup(s).
///
/// Implementations hold only resolved paths, so a manager rebuilt from the
/// persisted [`CgroupPaths`] in another process behaves identically.
pub trait CgroupManager: std::fmt::Debug + Send + Sync {
    /// The resolved paths, to be stored in the container state.
    fn paths(&self) -> CgroupPaths;
    /// Creates the cgroup directories and applies `resources`.
    fn create(&self, resources: &LinuxResources) -> Result<()>;
    /// Moves process `pid` (and its threads) into the cgroup.
    fn add_process(&self, pid: i32) -> Result<()>;
    /// Applies changed limits to an existing cgroup (`docker update`).
    fn apply(&self, resources: &LinuxResources) -> Result<()>;
    /// Freezes all processes and waits until the kernel reports them frozen.
    fn freeze(&self) -> Result<()>;
    /// Thaws a frozen cgroup.
    fn thaw(&self) -> Result<()>;
    fn is_frozen(&self) -> Result<bool>;
    /// Pids (in our pid namespace) currently in the cgroup.
    fn pids(&self) -> Result<Vec<i32>>;
    fn stats(&self) -> Result<CgroupStats>;
    /// Whether the kernel OOM killer killed something in this cgroup.
    fn oom_killed(&self) -> Result<bool>;
    /// Kills everything left, waits for the cgroup to empty and removes the
    /// container's own directory (never the shared `pelagos` parent).
    /// Idempotent: an already removed cgroup is success.
    fn destroy(&self) -> Result<()>;
}

/// Builds the manager matching previously resolved (or persisted) paths.
pub fn open(paths: CgroupPaths) -> Box<dyn CgroupManager> {
    match paths {
        CgroupPaths::V2 { placement } => Box::new(v2::V2Manager::new(placement)),
        CgroupPaths::V1 { hierarchies } => Box::new(v1::V1Manager::new(hierarchies)),
    }
}

/// Resolves the cgroup paths of container `id` on this host.
/// `parent_override` is Docker's `--cgroup-parent`.
pub fn resolve_for_container(id: &str, parent_override: Option<&str>) -> Result<CgroupPaths> {
    let layout = detect::detect()?;
    let own = detect::own_cgroups()?;
    paths::resolve(&layout, &own, id, parent_override)
}

/// Detects the host, resolves placement for `id` and returns its manager.
/// Nothing is created until [`CgroupManager::create`].
pub fn new_for_container(
    id: &str,
    parent_override: Option<&str>,
) -> Result<Box<dyn CgroupManager>> {
    Ok(open(resolve_for_container(id, parent_override)?))
}
