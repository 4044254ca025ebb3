//! Resource usage of a container cgroup, the same shape on v1 and v2.
//!
//! Feeds `pelagos stats` and the Docker stats API. Missing files yield zeros
//! or `None` rather than errors: a host without, say, blkio accounting should
//! still report CPU and memory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::Result;
use super::fsutil::{read_flat_keyed, read_opt, read_u64_opt};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    pub usage_total_ns: u64,
    pub usage_user_ns: u64,
    pub usage_system_ns: u64,
    /// v1 only (cpuacct.usage_percpu); empty on v2.
    pub per_cpu_ns: Vec<u64>,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_time_ns: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    pub usage: u64,
    /// Peak usage (v1 max_usage_in_bytes, v2 memory.peak), if the kernel has it.
    pub max_usage: Option<u64>,
    /// `None` = unlimited.
    pub limit: Option<u64>,
    /// v1 failcnt; v2 the `max` count of memory.events.
    pub failcnt: u64,
    pub oom_kills: u64,
    /// memory.stat verbatim (v1 keys such as `cache`, `total_inactive_file`;
    /// v2 keys such as `file`, `inactive_file`), for Docker's
    /// "usage minus cache" calculation.
    pub stat: BTreeMap<String, u64>,
}

impl MemoryStats {
    /// Usage minus page cache that could be reclaimed, as `docker stats` shows.
    pub fn usage_without_cache(&self) -> u64 {
        let cache = self
            .stat
            .get("total_inactive_file")
            .or_else(|| self.stat.get("inactive_file"))
            .copied()
            .unwrap_or(0);
        self.usage.saturating_sub(cache)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    pub current: u64,
    /// `None` = unlimited.
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioStats {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub devices: Vec<BlkioDevice>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioDevice {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

// ---------------------------------------------------------------- v2

pub(crate) fn read_v2(dir: &Path) -> Result<CgroupStats> {
    let cpu = read_flat_keyed(dir, "cpu.stat")?;
    let usec = |k: &str| cpu.get(k).copied().unwrap_or(0).saturating_mul(1000);
    let events = read_flat_keyed(dir, "memory.events")?;
    Ok(CgroupStats {
        cpu: CpuStats {
            usage_total_ns: usec("usage_usec"),
            usage_user_ns: usec("user_usec"),
            usage_system_ns: usec("system_usec"),
            per_cpu_ns: Vec::new(),
            nr_periods: cpu.get("nr_periods").copied().unwrap_or(0),
            nr_throttled: cpu.get("nr_throttled").copied().unwrap_or(0),
            throttled_time_ns: usec("throttled_usec"),
        },
        memory: MemoryStats {
            usage: read_u64_opt(dir, "memory.current")?.unwrap_or(0),
            max_usage: read_u64_opt(dir, "memory.peak")?,
            limit: read_u64_opt(dir, "memory.max")?,
            failcnt: events.get("max").copied().unwrap_or(0),
            oom_kills: events.get("oom_kill").copied().unwrap_or(0),
            stat: read_flat_keyed(dir, "memory.stat")?,
        },
        pids: PidsStats {
            current: read_u64_opt(dir, "pids.current")?.unwrap_or(0),
            limit: read_u64_opt(dir, "pids.max")?,
        },
        blkio: parse_io_stat(&read_opt(dir, "io.stat")?.unwrap_or_default()),
    })
}

/// io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device.
pub(crate) fn parse_io_stat(text: &str) -> BlkioStats {
    let mut out = BlkioStats::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((major, minor)) = it.next().and_then(parse_devno) else {
            continue;
        };
        let mut dev = BlkioDevice {
            major,
            minor,
            ..Default::default()
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.parse::<u64>().unwrap_or(0);
            match k {
                "rbytes" => dev.read_bytes = v,
                "wbytes" => dev.write_bytes = v,
                _ => {}
            }
        }
        add_device(&mut out, dev);
    }
    out
}

fn add_device(out: &mut BlkioStats, dev: BlkioDevice) {
    out.read_bytes = out.read_bytes.saturating_add(dev.read_bytes);
    out.write_bytes = out.write_bytes.saturating_add(dev.write_bytes);
    out.devices.push(dev);
}

fn parse_devno(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

// ---------------------------------------------------------------- v1

/// The per-controller directories of a v1 container; `None` = not mounted.
pub(crate) struct V1StatDirs<'a> {
    pub cpu: Option<&'a Path>,
    pub cpuacct: Option<&'a Path>,
    pub memory: Option<&'a Path>,
    pub pids: Option<&'a Path>,
    pub blkio: Option<&'a Path>,
}

pub(crate) fn read_v1(d: &V1StatDirs<'_>) -> Result<CgroupStats> {
    let mut s = CgroupStats::default();
    if let Some(dir) = d.cpuacct {
        s.cpu.usage_total_ns = read_u64_opt(dir, "cpuacct.usage")?.unwrap_or(0);
        match (
            read_u64_opt(dir, "cpuacct.usage_user")?,
            read_u64_opt(dir, "cpuacct.usage_sys")?,
        ) {
            (Some(u), Some(sys)) => {
                s.cpu.usage_user_ns = u;
                s.cpu.usage_system_ns = sys;
            }
            _ => {
                // Older kernels only have cpuacct.stat, in USER_HZ ticks.
                let st = read_flat_keyed(dir, "cpuacct.stat")?;
                let tick = ns_per_tick();
                s.cpu.usage_user_ns = st.get("user").copied().unwrap_or(0).saturating_mul(tick);
                s.cpu.usage_system_ns = st.get("system").copied().unwrap_or(0).saturating_mul(tick);
            }
        }
        s.cpu.per_cpu_ns = read_opt(dir, "cpuacct.usage_percpu")?
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
    }
    if let Some(dir) = d.cpu {
        let st = read_flat_keyed(dir, "cpu.stat")?;
        s.cpu.nr_periods = st.get("nr_periods").copied().unwrap_or(0);
        s.cpu.nr_throttled = st.get("nr_throttled").copied().unwrap_or(0);
        s.cpu.throttled_time_ns = st.get("throttled_time").copied().unwrap_or(0);
    }
    if let Some(dir) = d.memory {
        let oom = read_flat_keyed(dir, "memory.oom_control")?;
        s.memory = MemoryStats {
            usage: read_u64_opt(dir, "memory.usage_in_bytes")?.unwrap_or(0),
            max_usage: read_u64_opt(dir, "memory.max_usage_in_bytes")?,
            limit: read_u64_opt(dir, "memory.limit_in_bytes")?.filter(|l| *l < V1_UNLIMITED),
            failcnt: read_u64_opt(dir, "memory.failcnt")?.unwrap_or(0),
            oom_kills: oom.get("oom_kill").copied().unwrap_or(0),
            stat: read_flat_keyed(dir, "memory.stat")?,
        };
    }
    if let Some(dir) = d.pids {
        s.pids = PidsStats {
            current: read_u64_opt(dir, "pids.current")?.unwrap_or(0),
            limit: read_u64_opt(dir, "pids.max")?,
        };
    }
    if let Some(dir) = d.blkio {
        // The throttle files count all I/O on modern (non-CFQ) kernels.
        for f in [
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes",
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.io_service_bytes_recursive",
        ] {
            if let Some(text) = read_opt(dir, f)? {
                s.blkio = parse_blkio_service_bytes(&text);
                break;
            }
        }
    }
    Ok(s)
}

/// v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes (about 2^63);
/// anything this large is unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// "8:0 Read 123" / "8:0 Write 45" / "Total 168" lines.
pub(crate) fn parse_blkio_service_bytes(text: &str) -> BlkioStats {
    let mut per_dev: BTreeMap<(u64, u64), BlkioDevice> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dev, op, val] = f.as_slice() else {
            continue;
        };
        let (Some((major, minor)), Ok(v)) = (parse_devno(dev), val.parse::<u64>()) else {
            continue;
        };
        let e = per_dev.entry((major, minor)).or_insert(BlkioDevice {
            major,
            minor,
            ..Default::default()
        });
        match *op {
            "Read" => e.read_bytes = v,
            "Write" => e.write_bytes = v,
            _ => {}
        }
    }
    let mut out = BlkioStats::default();
    for dev in per_dev.into_values() {
        add_device(&mut out, dev);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn v2_stats_from_fake_tree() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("cpu.stat"), "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\n").unwrap();
        fs::write(d.join("memory.current"), "1000\n").unwrap();
        fs::write(d.join("memory.max"), "max\n").unwrap();
        fs::write(d.join("memory.stat"), "anon 600\ninactive_file 300\n").unwrap();
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(d.join("pids.current"), "3\n").unwrap();
        fs::write(d.join("pids.max"), "16\n").unwrap();
        fs::write(
            d.join("io.stat"),
            "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n",
        )
        .unwrap();
        let s = read_v2(d).unwrap();
        assert_eq!(s.cpu.usage_total_ns, 10_000);
        assert_eq!(s.cpu.usage_user_ns, 6_000);
        assert_eq!(s.cpu.throttled_time_ns, 7_000);
        assert_eq!(s.cpu.nr_throttled, 2);
        assert_eq!(s.memory.limit, None);
        assert_eq!(s.memory.max_usage, None);
        assert_eq!(s.memory.oom_kills, 1);
        assert_eq!(s.memory.usage_without_cache(), 700);
        assert_eq!(s.pids.limit, Some(16));
        assert_eq!(s.blkio.read_bytes, 101);
        assert_eq!(s.blkio.write_bytes, 202);
        assert_eq!(s.blkio.devices.len(), 2);
    }

    #[test]
    fn v1_stats_from_fake_tree() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("cpuacct.usage"), "5000\n").unwrap();
        fs::write(d.join("cpuacct.usage_user"), "3000\n").unwrap();
        fs::write(d.join("cpuacct.usage_sys"), "2000\n").unwrap();
        fs::write(d.join("cpuacct.usage_percpu"), "4000 1000 \n").unwrap();
        fs::write(
            d.join("cpu.stat"),
            "nr_periods 9\nnr_throttled 1\nthrottled_time 77\n",
        )
        .unwrap();
        fs::write(d.join("memory.usage_in_bytes"), "2000\n").unwrap();
        fs::write(d.join("memory.max_usage_in_bytes"), "2500\n").unwrap();
        fs::write(d.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::write(d.join("memory.failcnt"), "0\n").unwrap();
        fs::write(
            d.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(
            d.join("memory.stat"),
            "cache 500\ntotal_inactive_file 400\n",
        )
        .unwrap();
        fs::write(d.join("pids.current"), "1\n").unwrap();
        fs::write(d.join("pids.max"), "max\n").unwrap();
        fs::write(
            d.join("blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\nTotal 30\n",
        )
        .unwrap();
        let dirs = V1StatDirs {
            cpu: Some(d),
            cpuacct: Some(d),
            memory: Some(d),
            pids: Some(d),
            blkio: Some(d),
        };
        let s = read_v1(&dirs).unwrap();
        assert_eq!(s.cpu.usage_total_ns, 5000);
        assert_eq!(s.cpu.usage_system_ns, 2000);
        assert_eq!(s.cpu.per_cpu_ns, vec![4000, 1000]);
        assert_eq!(s.cpu.throttled_time_ns, 77);
        assert_eq!(s.memory.limit, None, "huge v1 limit means unlimited");
        assert_eq!(s.memory.max_usage, Some(2500));
        assert_eq!(s.memory.oom_kills, 2);
        assert_eq!(s.memory.usage_without_cache(), 1600);
        assert_eq!(s.pids.limit, None);
        assert_eq!((s.blkio.read_bytes, s.blkio.write_bytes), (10, 20));
    }
}
