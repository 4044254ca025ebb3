//! A container's filesystem as image layers + writable layer: `docker diff` (changes) and
//! `docker export` (a read-only merged view to tar).
//!
//! Both work the same for running and stopped containers and never touch the container's
//! own mounts: changes read the writable (upper) layer directly, and export mounts a
//! private read-only overlay whose lowers are the upper layer on top of the image layers
//! (overlayfs honours the upper's whiteouts when it is a lower). Sharing lowers is safe;
//! mounting the live upper dir a second time as an upper would not be.

use crate::error::{Error, Result};
use crate::lifecycle::Engine;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Docker's change kinds (`GET /containers/{id}/changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

impl ChangeKind {
    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute path inside the container.
    pub path: String,
    pub kind: ChangeKind,
}

/// What the runtime itself puts in the writable layer (mount points and the files it
/// bind-mounts over); Docker keeps these in a separate init layer, so `docker diff` never
/// shows them.
const RUNTIME_PATHS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/.dockerenv",
];

fn is_runtime_path(p: &str) -> bool {
    RUNTIME_PATHS
        .iter()
        .any(|r| p == *r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
}

/// An overlay whiteout: a character device 0/0.
fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// The changes recorded in `upper` relative to `lowers` (any order), sorted by path.
/// A directory is listed (as modified) only when something under it changed, as in
/// `docker diff`.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut found: BTreeMap<String, ChangeKind> = BTreeMap::new();
    walk(upper, "", lowers, &mut found)?;
    // Parents of every change are modified (unless added or deleted themselves).
    let paths: Vec<String> = found.keys().cloned().collect();
    for p in paths {
        let mut cur = Path::new(&p).parent();
        while let Some(dir) = cur {
            let d = dir.to_string_lossy().to_string();
            if d == "/" || d.is_empty() {
                break;
            }
            found.entry(d).or_insert(ChangeKind::Modified);
            cur = dir.parent();
        }
    }
    Ok(found
        .into_iter()
        .map(|(path, kind)| Change { path, kind })
        .collect())
}

fn walk(
    dir: &Path,
    rel: &str,
    lowers: &[PathBuf],
    found: &mut BTreeMap<String, ChangeKind>,
) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::path(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::path(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{rel}/{name}");
        if is_runtime_path(&path) {
            continue;
        }
        let md = entry.metadata().map_err(|e| Error::path(entry.path(), e))?;
        let in_lower = lowers
            .iter()
            .any(|l| std::fs::symlink_metadata(l.join(path.trim_start_matches('/'))).is_ok());
        if is_whiteout(&md) {
            found.insert(path, ChangeKind::Deleted);
        } else if md.is_dir() {
            if !in_lower {
                found.insert(path.clone(), ChangeKind::Added);
            }
            walk(&entry.path(), &path, lowers, found)?;
        } else {
            found.insert(
                path,
                if in_lower {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                },
            );
        }
    }
    Ok(())
}

/// A read-only merged view of a container's filesystem, unmounted (and its mount point
/// removed) on drop.
pub struct MergedView {
    root: PathBuf,
    mounted: bool,
}

impl MergedView {
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for MergedView {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&self.root);
        }
    }
}

impl Engine {
    /// `docker diff`.
    pub fn changes(&self, what: &str) -> Result<Vec<Change>> {
        let c = self.containers.lookup(what)?;
        if c.record.layers.is_empty() && c.record.host_config.rootfs.is_some() {
            return Err(Error::invalid(
                "changes are not tracked for a container made with --rootfs",
            ));
        }
        let lowers: Vec<PathBuf> = c.record.layers.iter().map(PathBuf::from).collect();
        changes(&self.paths(&c.record.id).upper(), &lowers)
    }

    /// `docker export`: the container's filesystem (image layers + writable layer, without
    /// volumes or the runtime's mounts) as a directory to read.
    pub fn merged_view(&self, what: &str) -> Result<MergedView> {
        let c = self.containers.lookup(what)?;
        if let Some(dir) = &c.record.host_config.rootfs {
            return Ok(MergedView {
                root: PathBuf::from(dir),
                mounted: false,
            });
        }
        let p = self.paths(&c.record.id);
        let root = p.run_dir.join(format!(
            "export-{}",
            crate::ids::new_id().get(..12).unwrap_or("x")
        ));
        std::fs::create_dir_all(&root).map_err(|e| Error::path(&root, e))?;
        // Top-most first: the writable layer, then the image layers top to bottom.
        let mut lowers = vec![p.upper()];
        lowers.extend(c.record.layers.iter().rev().map(PathBuf::from));
        let data = format!(
            "lowerdir={}",
            lowers
                .iter()
                .map(|l| l.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        );
        let mounted = nix::mount::mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOSUID,
            Some(data.as_str()),
        );
        if let Err(e) = mounted {
            let _ = std::fs::remove_dir(&root);
            return Err(Error::io("mount the export view", e.into()));
        }
        Ok(MergedView {
            root,
            mounted: true,
        })
    }
}

/// Writes the view as a tar stream (no symlink following; the runtime's mount points are
/// left as the empty directories they are in the image).
pub fn export_tar(view: &MergedView, out: impl std::io::Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let root = view.root();
    let rd = std::fs::read_dir(root).map_err(|e| Error::path(root, e))?;
    let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let p = root.join(&n);
        let md = std::fs::symlink_metadata(&p).map_err(|e| Error::path(&p, e))?;
        let r = if md.is_dir() {
            b.append_dir_all(&n, &p)
        } else {
            b.append_path_with_name(&p, &n)
        };
        r.map_err(|e| Error::io(format!("export {}", p.display()), e))?;
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("export", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_from_an_upper_layer() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        let l = lower.path();
        let u = upper.path();
        std::fs::create_dir_all(l.join("etc")).unwrap();
        std::fs::write(l.join("etc/motd"), "hi").unwrap();
        std::fs::write(l.join("etc/gone"), "x").unwrap();
        std::fs::create_dir_all(l.join("tmp")).unwrap();
        // Modified, added, deleted (a 0/0 char device needs root: skipped otherwise).
        std::fs::create_dir_all(u.join("etc")).unwrap();
        std::fs::write(u.join("etc/motd"), "changed").unwrap();
        std::fs::create_dir_all(u.join("tmp/new/deep")).unwrap();
        std::fs::write(u.join("tmp/new/deep/f"), "x").unwrap();
        std::fs::write(u.join("etc/hostname"), "runtime").unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            nix::sys::stat::mknod(
                &u.join("etc/gone"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                0,
            )
            .unwrap();
        }
        let got: Vec<String> = changes(u, &[l.to_path_buf()])
            .unwrap()
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect();
        let mut want = vec!["C /etc"];
        if root {
            want.push("D /etc/gone");
        }
        want.extend([
            "C /etc/motd",
            "C /tmp",
            "A /tmp/new",
            "A /tmp/new/deep",
            "A /tmp/new/deep/f",
        ]);
        assert_eq!(got, want);
    }
}
