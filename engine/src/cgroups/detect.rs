//! Which cgroup hierarchies does this host have, and where is the engine in them?
//!
//! Everything here is a pure function of the text of /proc/self/mountinfo and
//! /proc/self/cgroup plus a path prefix, so tests can point it at a fake tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{CgroupError, Result};

/// v1 controllers we know how to place processes in. Mount options that are
/// not in this list (rw, relatime, xattr, clone_children, ...) are ignored.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "rdma",
    "misc",
];

/// Where cgroup filesystems live on a normal host.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One cgroup filesystem mount, as read from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub version: CgroupVersion,
    /// Where it is mounted (already rebased onto the injected prefix).
    pub mountpoint: PathBuf,
    /// The cgroup that is the root of this mount (mountinfo field 4); "/"
    /// unless the mount is a bind of a sub-cgroup or from a cgroup namespace.
    pub mount_root: String,
    /// v1 only: the controllers co-mounted here (e.g. ["cpu", "cpuacct"]).
    pub controllers: Vec<String>,
    /// v1 only: the `name=` of a named hierarchy such as systemd's.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// A v1 hierarchy that carries at least one real controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
    pub mount_root: String,
}

/// The host's cgroup setup, reduced to what placement needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Pure cgroup v2: controllers live in the cgroup2 mount.
    Unified {
        mountpoint: PathBuf,
        mount_root: String,
    },
    /// Legacy or hybrid: resource controllers are v1 mounts. `unified` is the
    /// controller-less cgroup2 mount of a hybrid host, if any (informational).
    Legacy {
        hierarchies: Vec<V1Hierarchy>,
        unified: Option<PathBuf>,
    },
}

impl CgroupLayout {
    pub fn version(&self) -> CgroupVersion {
        match self {
            CgroupLayout::Unified { .. } => CgroupVersion::V2,
            CgroupLayout::Legacy { .. } => CgroupVersion::V1,
        }
    }

    /// Which resource limits this host's cgroups can enforce (what `docker info` reports
    /// and warns about).
    pub fn features(&self) -> CgroupFeatures {
        match self {
            CgroupLayout::Legacy { hierarchies, .. } => {
                let dir = |c: &str| {
                    hierarchies
                        .iter()
                        .find(|h| h.controllers.iter().any(|x| x == c))
                        .map(|h| h.mountpoint.clone())
                };
                let has = |c: &str, file: &str| dir(c).is_some_and(|d| d.join(file).exists());
                CgroupFeatures {
                    memory: dir("memory").is_some(),
                    swap: has("memory", "memory.memsw.limit_in_bytes"),
                    cpu_cfs: has("cpu", "cpu.cfs_period_us"),
                    cpu_shares: has("cpu", "cpu.shares"),
                    cpuset: dir("cpuset").is_some(),
                    pids: dir("pids").is_some(),
                }
            }
            CgroupLayout::Unified { mountpoint, .. } => {
                let controllers = std::fs::read_to_string(mountpoint.join("cgroup.controllers"))
                    .unwrap_or_default();
                let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
                // Swap limits exist when the kernel gives memory cgroups a swap file;
                // the root has none, so look at the first child that has memory files.
                let swap = has("memory")
                    && std::fs::read_dir(mountpoint).is_ok_and(|rd| {
                        rd.flatten()
                            .filter(|e| e.path().join("memory.max").exists())
                            .take(1)
                            .any(|e| e.path().join("memory.swap.max").exists())
                    });
                CgroupFeatures {
                    memory: has("memory"),
                    swap,
                    cpu_cfs: has("cpu"),
                    cpu_shares: has("cpu"),
                    cpuset: has("cpuset"),
                    pids: has("pids"),
                }
            }
        }
    }
}

/// Resource limits the host can enforce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupFeatures {
    pub memory: bool,
    pub swap: bool,
    pub cpu_cfs: bool,
    pub cpu_shares: bool,
    pub cpuset: bool,
    pub pids: bool,
}

/// The calling process's own cgroups, from /proc/self/cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCgroups {
    /// The `0::<path>` line.
    pub unified: Option<String>,
    /// v1 controller (or `name=x`) → path inside that hierarchy.
    pub v1: BTreeMap<String, String>,
}

/// Detects the layout of the running host.
pub fn detect() -> Result<CgroupLayout> {
    let text = read_proc("/proc/self/mountinfo")?;
    detect_from(&text, Path::new("/"))
}

/// Reads /proc/self/cgroup for the running process.
pub fn own_cgroups() -> Result<OwnCgroups> {
    parse_proc_cgroup(&read_proc("/proc/self/cgroup")?)
}

fn read_proc(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, e))
}

/// Detects the layout from mountinfo text; mountpoints are rebased under
/// `prefix` ("/" on a real host, a tempdir in tests).
pub fn detect_from(mountinfo: &str, prefix: &Path) -> Result<CgroupLayout> {
    let mounts = parse_mountinfo(mountinfo, prefix)?;
    layout_from_mounts(&mounts, &rebase(prefix, Path::new(DEFAULT_CGROUP_ROOT)))
}

/// Decides unified vs legacy. A cgroup2 mount wins when it actually has
/// controllers or when no v1 controller is mounted; otherwise the v1
/// controllers are where limits take effect, so we must use them.
pub fn layout_from_mounts(mounts: &[CgroupMount], cgroup_root: &Path) -> Result<CgroupLayout> {
    let v2 = mounts
        .iter()
        .filter(|m| m.version == CgroupVersion::V2)
        .min_by_key(|m| m.mountpoint != cgroup_root);
    let hierarchies: Vec<V1Hierarchy> = mounts
        .iter()
        .filter(|m| m.version == CgroupVersion::V1 && !m.controllers.is_empty())
        .map(|m| V1Hierarchy {
            controllers: m.controllers.clone(),
            mountpoint: m.mountpoint.clone(),
            mount_root: m.mount_root.clone(),
        })
        .collect();

    if let Some(v2) = v2 {
        let has_controllers = std::fs::read_to_string(v2.mountpoint.join("cgroup.controllers"))
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false);
        if hierarchies.is_empty() || (has_controllers && v2.mountpoint == cgroup_root) {
            return Ok(CgroupLayout::Unified {
                mountpoint: v2.mountpoint.clone(),
                mount_root: v2.mount_root.clone(),
            });
        }
    }
    if hierarchies.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    Ok(CgroupLayout::Legacy {
        hierarchies,
        unified: v2.map(|m| m.mountpoint.clone()),
    })
}

/// Parses the cgroup and cgroup2 entries of /proc/<pid>/mountinfo.
pub fn parse_mountinfo(text: &str, prefix: &Path) -> Result<Vec<CgroupMount>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = |reason: &str| CgroupError::Parse {
            what: "mountinfo".into(),
            reason: format!("{reason}: {line:?}"),
        };
        // Fields: id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        let (pre, post) = line
            .split_once(" - ")
            .ok_or_else(|| bad("missing separator"))?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 6 || post.len() < 3 {
            return Err(bad("too few fields"));
        }
        let version = match post[0] {
            "cgroup" => CgroupVersion::V1,
            "cgroup2" => CgroupVersion::V2,
            _ => continue,
        };
        let mut controllers = Vec::new();
        let mut name = None;
        if version == CgroupVersion::V1 {
            for opt in post[2].split(',') {
                if let Some(n) = opt.strip_prefix("name=") {
                    name = Some(n.to_string());
                } else if V1_CONTROLLERS.contains(&opt) {
                    controllers.push(opt.to_string());
                }
            }
        }
        out.push(CgroupMount {
            version,
            mountpoint: rebase(prefix, Path::new(&unescape(pre[4]))),
            mount_root: unescape(pre[3]),
            controllers,
            name,
        });
    }
    Ok(out)
}

/// Parses /proc/<pid>/cgroup ("hierarchy-id:controllers:path" lines).
pub fn parse_proc_cgroup(text: &str) -> Result<OwnCgroups> {
    let mut own = OwnCgroups::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CgroupError::Parse {
                what: "/proc/self/cgroup".into(),
                reason: format!("bad line {line:?}"),
            });
        };
        if ctrls.is_empty() {
            own.unified = Some(path.to_string());
        } else {
            for c in ctrls.split(',') {
                own.v1.insert(c.to_string(), path.to_string());
            }
        }
    }
    Ok(own)
}

/// The directory of cgroup `cgroup_path` (as listed in /proc/self/cgroup)
/// inside a mount whose root is `mount_root`. If the path is not below the
/// mount root (the mount does not show our cgroup), the mountpoint is used.
pub fn dir_in_mount(mountpoint: &Path, mount_root: &str, cgroup_path: &str) -> PathBuf {
    let rel = Path::new(cgroup_path)
        .strip_prefix(mount_root)
        .unwrap_or(Path::new(""));
    mountpoint.join(rel)
}

fn rebase(prefix: &Path, p: &Path) -> PathBuf {
    prefix.join(p.strip_prefix("/").unwrap_or(p))
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            // Escapes are ASCII octal digits, so byte slicing stays on char boundaries.
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const HYBRID: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const COMOUNTED: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
";

    const PURE_V2: &str = "\
25 23 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_sample_is_legacy_with_separate_cpu_and_cpuacct() {
        let layout = detect_from(HYBRID, Path::new("/")).unwrap();
        let CgroupLayout::Legacy {
            hierarchies,
            unified,
        } = layout
        else {
            panic!("expected legacy, got {layout:?}");
        };
        assert_eq!(unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(hierarchies.len(), 8, "name=systemd must be excluded");
        let cpu = hierarchies
            .iter()
            .find(|h| h.controllers.contains(&"cpu".to_string()))
            .unwrap();
        assert_eq!(cpu.controllers, vec!["cpu"]);
        assert_eq!(cpu.mountpoint, PathBuf::from("/sys/fs/cgroup/cpu"));
        let mounts = parse_mountinfo(HYBRID, Path::new("/")).unwrap();
        assert!(mounts.iter().any(|m| m.name.as_deref() == Some("systemd")));
    }

    #[test]
    fn comounted_cpu_cpuacct() {
        let layout = detect_from(COMOUNTED, Path::new("/")).unwrap();
        let CgroupLayout::Legacy { hierarchies, .. } = layout else {
            panic!()
        };
        assert_eq!(hierarchies[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(
            hierarchies[0].mountpoint,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
    }

    #[test]
    fn pure_v2_sample_is_unified_and_rebased() {
        let layout = detect_from(PURE_V2, Path::new("/tmp/fake")).unwrap();
        assert_eq!(
            layout,
            CgroupLayout::Unified {
                mountpoint: PathBuf::from("/tmp/fake/sys/fs/cgroup"),
                mount_root: "/".into()
            }
        );
    }

    #[test]
    fn no_cgroups_is_an_error() {
        let err = detect_from("22 1 0:21 / /proc rw - proc proc rw\n", Path::new("/"));
        assert!(matches!(err, Err(CgroupError::NoHierarchy)));
    }

    #[test]
    fn malformed_mountinfo_is_an_error() {
        assert!(parse_mountinfo("garbage line", Path::new("/")).is_err());
    }

    #[test]
    fn escaped_mountpoint() {
        let m = parse_mountinfo(
            "1 2 0:1 / /a\\040b rw - cgroup2 cgroup2 rw\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(m[0].mountpoint, PathBuf::from("/a b"));
    }

    #[test]
    fn proc_cgroup_parsing_and_dir_resolution() {
        let own = parse_proc_cgroup(
            "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n",
        )
        .unwrap();
        assert_eq!(own.unified.as_deref(), Some("/"));
        assert_eq!(own.v1["memory"], "/process_api/abc");
        assert_eq!(own.v1["cpuacct"], "/x");
        assert_eq!(own.v1["name=systemd"], "/");
        assert_eq!(
            dir_in_mount(Path::new("/m"), "/", "/process_api/abc"),
            PathBuf::from("/m/process_api/abc")
        );
        // A mount of a sub-cgroup: paths are relative to its root.
        assert_eq!(
            dir_in_mount(Path::new("/m"), "/process_api", "/process_api/abc"),
            PathBuf::from("/m/abc")
        );
        assert_eq!(
            dir_in_mount(Path::new("/m"), "/other", "/x"),
            PathBuf::from("/m")
        );
    }
}
