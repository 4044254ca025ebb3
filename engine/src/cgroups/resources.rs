//! Translation of OCI `LinuxResources` (how Docker flags arrive) into cgroup
//! control-file writes, for v2 and v1.
//!
//! Only fields that are set are written, so the same functions serve both
//! `create` and `update`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::devices::apply_v1_devices;
use super::error::{CgroupError, Result};
use super::fsutil::{read_opt, write, write_if_exists};

/// cgroup v1 cpu.shares → v2 cpu.weight, the formula used by runc/crun and
/// systemd so that `--cpu-shares` means the same on both versions.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// v1 blkio weight (10..=1000) → v2 io.weight (1..=10000), as crun does.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// Memory limit value: -1 → unlimited, 0 → unset, other negatives invalid.
fn memory_value(field: &'static str, v: i64) -> Result<Option<Limit>> {
    match v {
        -1 => Ok(Some(Limit::Unlimited)),
        0 => Ok(None),
        v if v > 0 => Ok(Some(Limit::Bytes(v as u64))),
        v => Err(CgroupError::InvalidResource {
            field,
            reason: format!("{v} is negative"),
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Unlimited,
    Bytes(u64),
}

impl Limit {
    fn v2(self) -> String {
        match self {
            Limit::Unlimited => "max".into(),
            Limit::Bytes(b) => b.to_string(),
        }
    }
    fn v1(self) -> String {
        match self {
            Limit::Unlimited => "-1".into(),
            Limit::Bytes(b) => b.to_string(),
        }
    }
}

/// pids limit: OCI says ≤0 means unlimited.
fn pids_value(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    }
}

/// Maps a missing control file in a v2 cgroup to "controller not enabled".
fn v2_write(dir: &Path, controller: &'static str, file: &str, value: &str) -> Result<()> {
    write(dir, file, value).map_err(|e| {
        if e.is_not_found() && dir.exists() {
            CgroupError::ControllerUnavailable {
                controller,
                path: dir.to_path_buf(),
            }
        } else {
            e
        }
    })
}

// ---------------------------------------------------------------- v2

/// Writes `r` into the v2 cgroup `dir`.
pub(crate) fn apply_v2(dir: &Path, r: &LinuxResources) -> Result<()> {
    // Device rules are not control files on v2: V2Manager attaches a
    // BPF_CGROUP_DEVICE program for them (devices_v2.rs) before calling this.
    if let Some(m) = r.memory() {
        apply_v2_memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        apply_v2_cpu(dir, c)?;
    }
    if let Some(p) = r.pids() {
        v2_write(dir, "pids", "pids.max", &pids_value(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        apply_v2_io(dir, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        for l in h {
            let file = format!("hugetlb.{}.max", l.page_size());
            reject_slash("hugepage_limits", l.page_size())?;
            v2_write(dir, "hugetlb", &file, &l.limit().to_string())?;
        }
    }
    if let Some(u) = r.unified() {
        for (k, v) in u {
            // Raw passthrough (OCI "unified"): the key must name a control
            // file of this cgroup, never a path elsewhere.
            reject_slash("unified", k)?;
            if !k.contains('.') {
                return Err(CgroupError::InvalidResource {
                    field: "unified",
                    reason: format!("{k:?} is not a cgroup control file"),
                });
            }
            write(dir, k, v)?;
        }
    }
    Ok(())
}

fn reject_slash(field: &'static str, s: &str) -> Result<()> {
    if s.contains('/') || s.starts_with('.') || s.is_empty() {
        return Err(CgroupError::InvalidResource {
            field,
            reason: format!("{s:?} is not a file name"),
        });
    }
    Ok(())
}

fn apply_v2_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m
        .limit()
        .map(|v| memory_value("memory.limit", v))
        .transpose()?
        .flatten();
    if let Some(res) = m.reservation() {
        match memory_value("memory.reservation", res)? {
            Some(Limit::Bytes(b)) => v2_write(dir, "memory", "memory.low", &b.to_string())?,
            Some(Limit::Unlimited) => v2_write(dir, "memory", "memory.low", "0")?,
            None => {}
        }
    }
    if let Some(l) = limit {
        v2_write(dir, "memory", "memory.max", &l.v2())?;
    }
    if let Some(swap) = m.swap() {
        // OCI swap is memory+swap; v2 memory.swap.max is swap alone.
        let value = match memory_value("memory.swap", swap)? {
            None => None,
            Some(Limit::Unlimited) => Some("max".to_string()),
            Some(Limit::Bytes(total)) => {
                let mem = match limit {
                    Some(Limit::Bytes(b)) => b,
                    _ => {
                        // update with only --memory-swap: use the current limit.
                        let cur = read_opt(dir, "memory.max")?.unwrap_or_default();
                        cur.trim()
                            .parse::<u64>()
                            .map_err(|_| CgroupError::InvalidResource {
                                field: "memory.swap",
                                reason: "a swap limit requires a memory limit".into(),
                            })?
                    }
                };
                if total < mem {
                    return Err(CgroupError::InvalidResource {
                        field: "memory.swap",
                        reason: format!("memory+swap {total} is below the memory limit {mem}"),
                    });
                }
                Some((total - mem).to_string())
            }
        };
        if let Some(v) = value {
            // No memory.swap.max means no swap accounting: nothing to limit.
            if !write_if_exists(dir, "memory.swap.max", &v)? {
                tracing::debug!(dir = %dir.display(), "memory.swap.max missing, swap limit ignored");
            }
        }
    }
    Ok(())
}

fn apply_v2_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares().filter(|s| *s > 0) {
        v2_write(
            dir,
            "cpu",
            "cpu.weight",
            &shares_to_weight(shares).to_string(),
        )?;
    }
    let quota = c.quota().map(|q| {
        if q > 0 {
            q.to_string()
        } else {
            "max".to_string()
        }
    });
    match (quota, c.period()) {
        (Some(q), Some(p)) => v2_write(dir, "cpu", "cpu.max", &format!("{q} {p}"))?,
        (Some(q), None) => v2_write(dir, "cpu", "cpu.max", &q)?,
        (None, Some(p)) => {
            // cpu.max needs a quota token; keep whatever is configured.
            let cur = read_opt(dir, "cpu.max")?.unwrap_or_default();
            let q = cur.split_whitespace().next().unwrap_or("max").to_string();
            v2_write(dir, "cpu", "cpu.max", &format!("{q} {p}"))?;
        }
        (None, None) => {}
    }
    if let Some(b) = c.burst() {
        v2_write(dir, "cpu", "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        v2_write(dir, "cpu", "cpu.idle", &i.to_string())?;
    }
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        v2_write(dir, "cpuset", "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        v2_write(dir, "cpuset", "cpuset.mems", mems)?;
    }
    Ok(())
}

fn apply_v2_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // BFQ has its own weight knob with the v1 range; prefer it when the
    // scheduler exposes it, else io.weight (iocost) with the range converted.
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|w| *w > 0) {
        if bfq {
            write(dir, "io.bfq.weight", &w.to_string())?;
        } else if !write_if_exists(
            dir,
            "io.weight",
            &format!("default {}", blkio_weight_to_io_weight(w)),
        )? {
            tracing::debug!(dir = %dir.display(), "no io weight file, blkio weight ignored");
        }
    }
    if let Some(devs) = b.weight_device() {
        for d in devs {
            let Some(w) = d.weight() else { continue };
            let (file, value) = if bfq {
                (
                    "io.bfq.weight",
                    format!("{}:{} {}", d.major(), d.minor(), w),
                )
            } else {
                (
                    "io.weight",
                    format!(
                        "{}:{} {}",
                        d.major(),
                        d.minor(),
                        blkio_weight_to_io_weight(w)
                    ),
                )
            };
            if !write_if_exists(dir, file, &value)? {
                tracing::debug!(dir = %dir.display(), "no io weight file, weight_device ignored");
            }
        }
    }
    let throttles = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (devs, key) in throttles {
        for d in devs.iter().flatten() {
            let value = format!("{}:{} {}={}", d.major(), d.minor(), key, d.rate());
            v2_write(dir, "io", "io.max", &value)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- v1

/// controller name → directory of the container's cgroup in that hierarchy.
pub(crate) type V1Dirs = BTreeMap<String, PathBuf>;

fn v1_dir<'a>(dirs: &'a V1Dirs, controller: &'static str) -> Result<&'a Path> {
    dirs.get(controller)
        .map(PathBuf::as_path)
        .ok_or(CgroupError::ControllerUnavailable {
            controller,
            path: PathBuf::from(format!("<{controller} hierarchy not mounted>")),
        })
}

/// Writes `r` into the container's v1 cgroups.
pub(crate) fn apply_v1(dirs: &V1Dirs, r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        apply_v1_memory(v1_dir(dirs, "memory")?, m)?;
    }
    if let Some(c) = r.cpu() {
        apply_v1_cpu(dirs, c)?;
    }
    if let Some(p) = r.pids() {
        write(v1_dir(dirs, "pids")?, "pids.max", &pids_value(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        // blkio may be absent on exotic kernels; weights are best effort.
        if let Ok(dir) = v1_dir(dirs, "blkio") {
            apply_v1_blkio(dir, b)?;
        }
    }
    if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
        let dir = v1_dir(dirs, "hugetlb")?;
        for l in h {
            reject_slash("hugepage_limits", l.page_size())?;
            let file = format!("hugetlb.{}.limit_in_bytes", l.page_size());
            write(dir, &file, &l.limit().to_string())?;
        }
    }
    if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        apply_v1_devices(v1_dir(dirs, "devices")?, rules)?;
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::InvalidResource {
            field: "unified",
            reason: "cgroup v2 keys cannot be applied on a cgroup v1 host".into(),
        });
    }
    Ok(())
}

fn apply_v1_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    if let Some(res) = m.reservation()
        && let Some(l) = memory_value("memory.reservation", res)?
    {
        write(dir, "memory.soft_limit_in_bytes", &l.v1())?;
    }
    let limit = m
        .limit()
        .map(|v| memory_value("memory.limit", v))
        .transpose()?
        .flatten();
    let swap = m
        .swap()
        .map(|v| memory_value("memory.swap", v))
        .transpose()?
        .flatten();
    if let (Some(Limit::Bytes(l)), Some(Limit::Bytes(s))) = (limit, swap)
        && s < l
    {
        return Err(CgroupError::InvalidResource {
            field: "memory.swap",
            reason: format!("memory+swap {s} is below the memory limit {l}"),
        });
    }
    // The kernel requires limit_in_bytes <= memsw.limit_in_bytes at every
    // step, so the right order depends on whether limits go up or down:
    // try limit first, and if that is rejected, raise memsw first.
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    match (limit, swap.filter(|_| has_memsw)) {
        (Some(l), Some(s)) => {
            if let Err(e) = write(dir, "memory.limit_in_bytes", &l.v1()) {
                if !is_einval(&e) {
                    return Err(e);
                }
                write(dir, "memory.memsw.limit_in_bytes", &s.v1())?;
                write(dir, "memory.limit_in_bytes", &l.v1())?;
            } else {
                write(dir, "memory.memsw.limit_in_bytes", &s.v1())?;
            }
        }
        (Some(l), None) => write(dir, "memory.limit_in_bytes", &l.v1())?,
        (None, Some(s)) => write(dir, "memory.memsw.limit_in_bytes", &s.v1())?,
        (None, None) => {}
    }
    if swap.is_some() && !has_memsw {
        tracing::debug!(dir = %dir.display(), "no memsw accounting, swap limit ignored");
    }
    if let Some(sw) = m.swappiness() {
        if sw > 100 {
            return Err(CgroupError::InvalidResource {
                field: "memory.swappiness",
                reason: format!("{sw} is above 100"),
            });
        }
        write(dir, "memory.swappiness", &sw.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

fn is_einval(e: &CgroupError) -> bool {
    matches!(e, CgroupError::Io { source, .. } if source.raw_os_error() == Some(libc::EINVAL))
}

fn apply_v1_cpu(dirs: &V1Dirs, c: &LinuxCpu) -> Result<()> {
    let wants_cpu = c.shares().is_some_and(|s| s > 0)
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_period().is_some()
        || c.realtime_runtime().is_some();
    if wants_cpu {
        let dir = v1_dir(dirs, "cpu")?;
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            write(dir, "cpu.shares", &s.to_string())?;
        }
        if let Some(p) = c.period() {
            write(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = c.quota() {
            let q = if q > 0 { q } else { -1 };
            write(dir, "cpu.cfs_quota_us", &q.to_string())?;
        }
        if let Some(b) = c.burst() {
            write(dir, "cpu.cfs_burst_us", &b.to_string())?;
        }
        if let Some(i) = c.idle() {
            write(dir, "cpu.idle", &i.to_string())?;
        }
        // The period must be set before the runtime it bounds.
        if let Some(p) = c.realtime_period() {
            write(dir, "cpu.rt_period_us", &p.to_string())?;
        }
        if let Some(r) = c.realtime_runtime() {
            write(dir, "cpu.rt_runtime_us", &r.to_string())?;
        }
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let dir = v1_dir(dirs, "cpuset")?;
        if let Some(cpus) = cpus {
            write(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = mems {
            write(dir, "cpuset.mems", mems)?;
        }
    }
    Ok(())
}

fn apply_v1_blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ's blkio.weight is gone from modern kernels; BFQ exposes
    // blkio.bfq.weight with the same range. Neither → no weight support.
    let weight_file = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| dir.join(f).exists());
    if let Some(w) = b.weight().filter(|w| *w > 0) {
        match weight_file {
            Some(f) => write(dir, f, &w.to_string())?,
            None => tracing::debug!(dir = %dir.display(), "no blkio weight file, weight ignored"),
        }
    }
    if let Some(devs) = b.weight_device() {
        let file = ["blkio.weight_device", "blkio.bfq.weight_device"]
            .into_iter()
            .find(|f| dir.join(f).exists());
        for d in devs {
            let (Some(w), Some(f)) = (d.weight(), file) else {
                continue;
            };
            write(dir, f, &format!("{}:{} {}", d.major(), d.minor(), w))?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (devs, file) in throttles {
        for d in devs.iter().flatten() {
            write(
                dir,
                file,
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
