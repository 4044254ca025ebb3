//! Where a container's cgroup lives, resolved once and then persisted.
//!
//! The resolved absolute paths are stored in the container state so that a
//! later `pelagos rm` (a different process, maybe in a different cgroup)
//! deletes exactly what `create` made instead of recomputing placement.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::detect::{CgroupLayout, CgroupVersion, OwnCgroups, dir_in_mount};
use super::error::{CgroupError, Result};

/// Name of the engine-owned directory that holds container cgroups.
pub const PELAGOS_DIR: &str = "pelagos";

/// One hierarchy's placement: `path` = `parent`/<container-id>.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Controllers served by this hierarchy (v1: the co-mounted set; v2: empty,
    /// read `cgroup.controllers` instead).
    pub controllers: Vec<String>,
    /// Mountpoint of the hierarchy; never written to except v2
    /// `cgroup.subtree_control` of the root.
    pub mountpoint: PathBuf,
    /// Directory holding the container cgroup.
    pub parent: PathBuf,
    /// True when `parent` is the engine's own `pelagos` directory, which we may
    /// configure even if an earlier engine process created it.
    pub parent_owned: bool,
    /// The container's own cgroup directory.
    pub path: PathBuf,
}

impl Placement {
    /// Creates missing directories from below the mountpoint down to `path`
    /// and returns the ones this call created, outermost first. Those plus the
    /// leaf (and an owned parent) are the only cgroups we configure.
    pub(crate) fn create_dirs(&self) -> Result<Vec<PathBuf>> {
        let rel = self
            .path
            .strip_prefix(&self.mountpoint)
            .map_err(|_| CgroupError::InvalidPath(self.path.display().to_string()))?;
        let mut created = Vec::new();
        let mut cur = self.mountpoint.clone();
        for comp in rel.components() {
            cur.push(comp);
            match std::fs::create_dir(&cur) {
                Ok(()) => created.push(cur.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CgroupError::io("mkdir", &cur, e)),
            }
        }
        Ok(created)
    }

    /// Whether `dir` may be configured by us, given the dirs created now.
    pub(crate) fn is_ours(&self, dir: &Path, created: &[PathBuf]) -> bool {
        dir == self.path
            || (self.parent_owned && dir == self.parent)
            || created.iter().any(|c| c == dir)
    }

    /// Directories strictly between the mountpoint and the leaf, outermost first.
    pub(crate) fn ancestors_below_mount(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .path
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(&self.mountpoint) && *a != self.mountpoint)
            .map(Path::to_path_buf)
            .collect();
        v.reverse();
        v
    }
}

/// The persisted cgroup location of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum CgroupPaths {
    V2 { placement: Placement },
    V1 { hierarchies: Vec<Placement> },
}

impl CgroupPaths {
    pub fn version(&self) -> CgroupVersion {
        match self {
            CgroupPaths::V2 { .. } => CgroupVersion::V2,
            CgroupPaths::V1 { .. } => CgroupVersion::V1,
        }
    }
}

/// Resolves where container `id` goes.
///
/// `parent` overrides the parent cgroup (Docker's `--cgroup-parent`): a path
/// relative to each hierarchy's root. Without it, v2 uses `/pelagos` under the
/// cgroup2 root and v1 uses `<engine's own cgroup>/pelagos` in every
/// hierarchy, so containers stay inside whatever cgroup the engine runs in.
pub fn resolve(
    layout: &CgroupLayout,
    own: &OwnCgroups,
    id: &str,
    parent: Option<&str>,
) -> Result<CgroupPaths> {
    validate_component(id)?;
    let parent_rel = parent.map(parse_parent).transpose()?;
    let parent_owned = parent_rel.is_none();
    match layout {
        CgroupLayout::Unified { mountpoint, .. } => {
            let parent = match &parent_rel {
                Some(rel) => mountpoint.join(rel),
                None => mountpoint.join(PELAGOS_DIR),
            };
            Ok(CgroupPaths::V2 {
                placement: Placement {
                    controllers: Vec::new(),
                    mountpoint: mountpoint.clone(),
                    path: parent.join(id),
                    parent,
                    parent_owned,
                },
            })
        }
        CgroupLayout::Legacy { hierarchies, .. } => {
            let placements = hierarchies
                .iter()
                .map(|h| {
                    let parent = match &parent_rel {
                        Some(rel) => h.mountpoint.join(rel),
                        None => {
                            // All co-mounted controllers report the same path.
                            let own_path = h
                                .controllers
                                .iter()
                                .find_map(|c| own.v1.get(c))
                                .map(String::as_str)
                                .unwrap_or("/");
                            dir_in_mount(&h.mountpoint, &h.mount_root, own_path).join(PELAGOS_DIR)
                        }
                    };
                    Placement {
                        controllers: h.controllers.clone(),
                        mountpoint: h.mountpoint.clone(),
                        path: parent.join(id),
                        parent,
                        parent_owned,
                    }
                })
                .collect();
            Ok(CgroupPaths::V1 {
                hierarchies: placements,
            })
        }
    }
}

/// A container id must be exactly one normal path component.
fn validate_component(s: &str) -> Result<()> {
    let mut comps = Path::new(s).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(_)), None) if !s.contains('/') => Ok(()),
        _ => Err(CgroupError::InvalidPath(s.to_string())),
    }
}

/// "/a/b", "a/b" → "a/b"; rejects "..", "." and empty components so an
/// override can never climb out of the hierarchy.
fn parse_parent(p: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for part in p.split('/').filter(|s| !s.is_empty()) {
        validate_component(part)?;
        if part == "." || part == ".." {
            return Err(CgroupError::InvalidPath(p.to_string()));
        }
        out.push(part);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::detect::{V1Hierarchy, parse_proc_cgroup};

    fn legacy() -> CgroupLayout {
        CgroupLayout::Legacy {
            hierarchies: vec![
                V1Hierarchy {
                    controllers: vec!["memory".into()],
                    mountpoint: "/cg/memory".into(),
                    mount_root: "/".into(),
                },
                V1Hierarchy {
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                    mountpoint: "/cg/cpu,cpuacct".into(),
                    mount_root: "/".into(),
                },
            ],
            unified: None,
        }
    }

    #[test]
    fn v1_default_follows_own_cgroup() {
        let own = parse_proc_cgroup("4:memory:/process_api/h\n2:cpu,cpuacct:/\n").unwrap();
        let CgroupPaths::V1 { hierarchies } = resolve(&legacy(), &own, "c1", None).unwrap() else {
            panic!()
        };
        assert_eq!(
            hierarchies[0].path,
            PathBuf::from("/cg/memory/process_api/h/pelagos/c1")
        );
        assert_eq!(
            hierarchies[1].path,
            PathBuf::from("/cg/cpu,cpuacct/pelagos/c1")
        );
        assert!(hierarchies[0].parent_owned);
        assert_eq!(
            hierarchies[0].ancestors_below_mount(),
            vec![
                PathBuf::from("/cg/memory/process_api"),
                PathBuf::from("/cg/memory/process_api/h"),
                PathBuf::from("/cg/memory/process_api/h/pelagos"),
            ]
        );
    }

    #[test]
    fn override_parent_and_v2_default() {
        let own = OwnCgroups::default();
        let CgroupPaths::V1 { hierarchies } =
            resolve(&legacy(), &own, "c1", Some("/my/parent")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            hierarchies[0].path,
            PathBuf::from("/cg/memory/my/parent/c1")
        );
        assert!(!hierarchies[0].parent_owned);

        let v2 = CgroupLayout::Unified {
            mountpoint: "/sys/fs/cgroup".into(),
            mount_root: "/".into(),
        };
        let CgroupPaths::V2 { placement } = resolve(&v2, &own, "abc", None).unwrap() else {
            panic!()
        };
        assert_eq!(placement.path, PathBuf::from("/sys/fs/cgroup/pelagos/abc"));
    }

    #[test]
    fn rejects_escapes() {
        let own = OwnCgroups::default();
        for id in ["", "..", ".", "a/b"] {
            assert!(resolve(&legacy(), &own, id, None).is_err(), "{id}");
        }
        assert!(resolve(&legacy(), &own, "ok", Some("/a/../b")).is_err());
    }

    #[test]
    fn paths_round_trip_through_json() {
        let own = OwnCgroups::default();
        let p = resolve(&legacy(), &own, "c1", None).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"version\":\"v1\""));
        let back: CgroupPaths = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
