//! `docker update`: new resource limits (and restart policy) for a container, applied to
//! its live cgroup when it runs and kept in its record for the next start.

use crate::cgroups_glue::ContainerCgroup;
use crate::error::{Error, Result};
use crate::lifecycle::Engine;
use crate::model::RestartPolicy;

/// Fields left `None` keep their value. Units as in Docker's API (bytes, nano-CPUs, ...).
#[derive(Debug, Clone, Default)]
pub struct ResourceUpdate {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub restart_policy: Option<RestartPolicy>,
}

/// Docker's minimum for a memory limit.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

impl Engine {
    pub fn update(&self, what: &str, u: &ResourceUpdate) -> Result<()> {
        let id = self.containers.resolve(what)?;
        let _lock = self.containers.lock(&id)?;
        let c = self.containers.load(&id)?;
        let mut rec = c.record.clone();
        let hc = &mut rec.host_config;
        if let Some(m) = u.memory {
            if m != 0 && m < MIN_MEMORY {
                return Err(Error::invalid("Minimum memory limit allowed is 6MB"));
            }
            hc.memory = m;
        }
        if let Some(s) = u.memory_swap {
            hc.memory_swap = s;
        }
        if hc.memory > 0 && hc.memory_swap > 0 && hc.memory_swap < hc.memory {
            return Err(Error::invalid(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
            ));
        }
        if let Some(r) = u.memory_reservation {
            hc.memory_reservation = r;
        }
        if let Some(n) = u.nano_cpus {
            hc.nano_cpus = n;
        }
        if let Some(s) = u.cpu_shares {
            hc.cpu_shares = s;
        }
        if let Some(p) = u.cpu_period {
            hc.cpu_period = p;
        }
        if let Some(q) = u.cpu_quota {
            hc.cpu_quota = q;
        }
        if hc.nano_cpus > 0
            && (u.cpu_period.is_some_and(|p| p > 0) || u.cpu_quota.is_some_and(|q| q > 0))
        {
            return Err(Error::invalid(
                "Conflicting options: Nano CPUs cannot be set at the same time as CPU Period or CPU Quota",
            ));
        }
        if let Some(s) = &u.cpuset_cpus {
            hc.cpuset_cpus = s.clone();
        }
        if let Some(s) = &u.cpuset_mems {
            hc.cpuset_mems = s.clone();
        }
        if let Some(p) = u.pids_limit {
            // Docker: 0 and -1 both mean unlimited.
            hc.pids_limit = (p > 0).then_some(p);
        }
        if let Some(w) = u.blkio_weight {
            if w != 0 && !(10..=1000).contains(&w) {
                return Err(Error::invalid(format!(
                    "invalid blkio weight {w}: the range is 10 to 1000"
                )));
            }
            hc.blkio_weight = w;
        }
        if let Some(r) = &u.restart_policy {
            crate::runtime::restart::validate(r, false)?;
            if rec.host_config.auto_remove && r.name != "no" && !r.name.is_empty() {
                return Err(Error::invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
            rec.host_config.restart_policy = r.clone();
        }
        if c.state.is_running() {
            let resources =
                crate::spec::update_resources(&rec).map_err(|e| Error::Internal(e.to_string()))?;
            ContainerCgroup::from_state(&c.state)?
                .apply(&resources)
                .map_err(|e| Error::invalid(format!("Cannot update container {id}: {e}")))?;
        }
        self.containers.save_record(&rec)?;
        self.containers.journal().container("update", &rec, &[]);
        Ok(())
    }
}
