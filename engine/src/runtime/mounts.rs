//! Applying OCI mount entries inside the container's mount namespace, with destinations
//! resolved so a symlink planted in the image can never redirect a mount onto the host.

use crate::error::{Error, Result};
use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;
use std::fs;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Flags, propagation and leftover data parsed from an OCI mount's option list.
#[derive(Debug, PartialEq)]
pub struct ParsedOptions {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
    pub read_only: bool,
}

pub fn parse_options(options: &[String]) -> ParsedOptions {
    let mut p = ParsedOptions {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        recursive: false,
        read_only: false,
    };
    for o in options {
        match o.as_str() {
            "ro" => {
                p.flags |= MsFlags::MS_RDONLY;
                p.read_only = true;
            }
            "rw" => {
                p.flags.remove(MsFlags::MS_RDONLY);
                p.read_only = false;
            }
            "nosuid" => p.flags |= MsFlags::MS_NOSUID,
            "suid" => p.flags.remove(MsFlags::MS_NOSUID),
            "nodev" => p.flags |= MsFlags::MS_NODEV,
            "dev" => p.flags.remove(MsFlags::MS_NODEV),
            "noexec" => p.flags |= MsFlags::MS_NOEXEC,
            "exec" => p.flags.remove(MsFlags::MS_NOEXEC),
            "relatime" => p.flags |= MsFlags::MS_RELATIME,
            "noatime" => p.flags |= MsFlags::MS_NOATIME,
            "strictatime" => p.flags |= MsFlags::MS_STRICTATIME,
            "sync" => p.flags |= MsFlags::MS_SYNCHRONOUS,
            "bind" => p.bind = true,
            "rbind" => {
                p.bind = true;
                p.recursive = true;
            }
            "private" => p.propagation = MsFlags::MS_PRIVATE,
            "rprivate" => p.propagation = MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "shared" => p.propagation = MsFlags::MS_SHARED,
            "rshared" => p.propagation = MsFlags::MS_SHARED | MsFlags::MS_REC,
            "slave" => p.propagation = MsFlags::MS_SLAVE,
            "rslave" => p.propagation = MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "unbindable" => p.propagation = MsFlags::MS_UNBINDABLE,
            "runbindable" => p.propagation = MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            // Docker's own markers, meaningless to the kernel.
            "z" | "Z" | "nocopy" | "copy" | "tmpcopyup" => {}
            other => p.data.push(other.to_string()),
        }
    }
    p
}

/// Resolves `unsafe_path` inside `root` as if `root` were `/`: symlinks are followed but
/// can never climb above `root`. Components that do not exist yet are appended as-is.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = components_of(unsafe_path);
    pending.reverse();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp.as_os_str() == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&comp);
        match fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(Error::invalid(format!(
                        "too many symlinks resolving {}",
                        unsafe_path.display()
                    )));
                }
                let target = fs::read_link(&candidate).map_err(|e| Error::path(&candidate, e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut parts = components_of(&target);
                parts.reverse();
                pending.extend(parts);
            }
            _ => resolved.push(comp),
        }
    }
    Ok(root.join(resolved))
}

fn components_of(p: &Path) -> Vec<PathBuf> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(PathBuf::from(s)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

/// Creates the mountpoint for a mount: a file when the source is a non-directory bind
/// source, a directory otherwise.
fn create_mountpoint(dest: &Path, source_is_file: bool) -> Result<()> {
    if source_is_file {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::path(parent, e))?;
        }
        if fs::symlink_metadata(dest).is_err() {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o644)
                .open(dest)
                .map_err(|e| Error::path(dest, e))?;
        }
    } else {
        fs::create_dir_all(dest).map_err(|e| Error::path(dest, e))?;
    }
    Ok(())
}

fn sys_mount(
    src: Option<&Path>,
    dest: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(src, dest, fstype, flags, data).map_err(|e| {
        Error::io(
            format!(
                "mount {} on {} ({})",
                src.map(|s| s.display().to_string()).unwrap_or_default(),
                dest.display(),
                fstype.unwrap_or("bind")
            ),
            e.into(),
        )
    })
}

/// Mounts one OCI mount entry below `rootfs`.
pub fn apply_mount(rootfs: &Path, m: &Mount) -> Result<()> {
    let dest_in = m.destination();
    let dest = secure_join(rootfs, dest_in)?;
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "none" });
    let source = m.source().as_deref();

    if opts.bind || typ == "bind" {
        let src = source.ok_or_else(|| {
            Error::invalid(format!("bind mount {} has no source", dest_in.display()))
        })?;
        let md = fs::metadata(src).map_err(|_| {
            Error::invalid(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                src.display()
            ))
        })?;
        create_mountpoint(&dest, !md.is_dir())?;
        let mut flags = MsFlags::MS_BIND;
        if opts.recursive {
            flags |= MsFlags::MS_REC;
        }
        sys_mount(Some(src), &dest, None, flags, None)?;
        // Bind mounts ignore most flags on the first call: apply them with a remount.
        let extra = opts.flags
            & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        if !extra.is_empty() {
            remount_bind(&dest, extra)?;
        }
        if !opts.propagation.is_empty() {
            sys_mount(None, &dest, None, opts.propagation, None)?;
        }
        return Ok(());
    }

    create_mountpoint(&dest, false)?;
    let data = opts.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    let src = source
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(typ));
    match typ {
        "cgroup" | "cgroup2" => {
            // Only a cgroup2 mount makes sense from inside a cgroup namespace; on a v1/hybrid
            // host we leave /sys/fs/cgroup empty rather than expose the host hierarchy.
            if !crate::runtime::rootfs::host_is_cgroup2() {
                return Ok(());
            }
            sys_mount(
                Some(Path::new("cgroup2")),
                &dest,
                Some("cgroup2"),
                opts.flags,
                None,
            )
        }
        "mqueue" => {
            // mqueue refuses some flag combinations on older kernels; retry without them.
            sys_mount(Some(&src), &dest, Some(typ), opts.flags, data)
                .or_else(|_| sys_mount(Some(&src), &dest, Some(typ), MsFlags::empty(), data))
        }
        "sysfs" => sys_mount(Some(&src), &dest, Some(typ), opts.flags, data).or_else(|e| {
            // Without our own network namespace the kernel refuses a new sysfs; fall back to
            // a read-only recursive bind of the host's, as runc does.
            if opts.read_only {
                sys_mount(
                    Some(Path::new("/sys")),
                    &dest,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )?;
                remount_bind(
                    &dest,
                    MsFlags::MS_RDONLY | (opts.flags & !MsFlags::MS_RDONLY),
                )
            } else {
                Err(e)
            }
        }),
        _ => sys_mount(Some(&src), &dest, Some(typ), opts.flags, data),
    }?;
    if !opts.propagation.is_empty() {
        sys_mount(None, &dest, None, opts.propagation, None)?;
    }
    Ok(())
}

/// Re-mounts a bind mount with extra flags, keeping the flags the kernel locked on it
/// (nosuid/nodev/noexec inherited from the source must be kept or the remount fails).
pub fn remount_bind(dest: &Path, extra: MsFlags) -> Result<()> {
    let locked = statvfs_flags(dest);
    sys_mount(
        None,
        dest,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra | locked,
        None,
    )
}

fn statvfs_flags(p: &Path) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let Ok(st) = statvfs(p) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            out |= b;
        }
    }
    out
}

/// Copies the image's content at a volume's path into the (empty) volume directory, the way
/// Docker seeds a volume on first use. Ownership, modes and symlinks are preserved.
pub fn prefill_volume(rootfs: &Path, container_path: &str, volume_dir: &Path) -> Result<()> {
    let src = secure_join(rootfs, Path::new(container_path))?;
    let Ok(md) = fs::symlink_metadata(&src) else {
        return Ok(());
    };
    if !md.is_dir() {
        return Ok(());
    }
    let empty = fs::read_dir(volume_dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    copy_tree(&src, volume_dir)?;
    copy_owner_mode(&md, volume_dir)
}

fn copy_owner_mode(md: &fs::Metadata, dst: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))
        .map_err(|e| Error::path(dst, e))?;
    if !md.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| Error::path(dst, e))?;
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    for entry in fs::read_dir(src).map_err(|e| Error::path(src, e))? {
        let entry = entry.map_err(|e| Error::path(src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = fs::symlink_metadata(&from).map_err(|e| Error::path(&from, e))?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).map_err(|e| Error::path(&to, e))?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            let t = fs::read_link(&from).map_err(|e| Error::path(&from, e))?;
            std::os::unix::fs::symlink(t, &to).map_err(|e| Error::path(&to, e))?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(|e| Error::path(&to, e))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            // Whiteouts and special files are not volume content.
            continue;
        }
        copy_owner_mode(&md, &to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let o = parse_options(&[
            "nosuid".into(),
            "strictatime".into(),
            "mode=755".into(),
            "size=65536k".into(),
            "rbind".into(),
            "ro".into(),
            "rprivate".into(),
        ]);
        assert!(o.flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
        assert!(o.bind && o.recursive && o.read_only);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }

    #[test]
    fn secure_join_stays_inside_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("a/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", r.join("a/up")).unwrap();
        std::os::unix::fs::symlink("loop2", r.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(
            secure_join(r, Path::new("/a/b/c")).unwrap(),
            r.join("a/b/c")
        );
        assert_eq!(
            secure_join(r, Path::new("/a/abs/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            secure_join(r, Path::new("/a/up/etc")).unwrap(),
            r.join("etc")
        );
        assert_eq!(secure_join(r, Path::new("../../x")).unwrap(), r.join("x"));
        assert!(secure_join(r, Path::new("/loop1/x")).is_err());
    }
}
