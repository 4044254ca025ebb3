//! Assembling the container's root: the overlay (or plain directory), device nodes,
//! pivot_root, and Docker's masked and read-only paths.

use super::RootfsPlan;
use super::mounts::{remount_bind, secure_join};
use crate::error::{Error, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn host_is_cgroup2() -> bool {
    static V2: OnceLock<bool> = OnceLock::new();
    *V2.get_or_init(|| {
        nix::sys::statfs::statfs("/sys/fs/cgroup")
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false)
    })
}

/// Makes every mount in our new namespace private, so nothing we mount propagates back
/// to the host (and host unmounts do not reach in).
pub fn make_private() -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::io("make / private", e.into()))
}

pub fn mount_rootfs(plan: &RootfsPlan, target: &Path) -> Result<()> {
    match plan {
        RootfsPlan::Dir(dir) => mount(
            Some(dir.as_path()),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::io(format!("bind rootfs {}", dir.display()), e.into())),
        RootfsPlan::Overlay {
            lowers,
            upper,
            work,
            volatile,
        } => mount_overlay(lowers, upper, work, target, *volatile),
    }
}

/// Mounts overlayfs. The new mount API adds lower layers one by one (`lowerdir+`, Linux
/// 6.8+), so images with hundreds of layers never hit the one-page limit of the legacy
/// option string; older kernels get the legacy string built from paths relative to the
/// layers' common parent, which fits about 60 layers.
///
/// `volatile` (only for layers that are thrown away: `--rm` containers, build steps) skips
/// every sync of the upper layer, including the one at unmount, which syncs the whole
/// filesystem the upper lives on. Such a mount leaves `work/incompat/volatile` behind and
/// overlayfs refuses to mount that work directory again until it is gone; for a
/// disposable layer, being mounted again in the same boot (`docker restart` of an `--rm`
/// container), it is removed first. The legacy path mounts without it.
pub(crate) fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> Result<()> {
    if volatile {
        let mark = work.join("work/incompat/volatile");
        let _ = std::fs::remove_dir_all(&mark);
        if let Some(incompat) = mark.parent() {
            let _ = std::fs::remove_dir(incompat);
        }
    }
    match mount_overlay_fsconfig(lowers, upper, work, target, volatile) {
        Ok(()) => Ok(()),
        Err(FsConfigError::Unsupported) => mount_overlay_legacy(lowers, upper, work, target),
        Err(FsConfigError::Failed(e)) => Err(e),
    }
}

enum FsConfigError {
    Unsupported,
    Failed(Error),
}

fn mount_overlay_fsconfig(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> Result<(), FsConfigError> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

    let cstr = |s: &str| CString::new(s).map_err(|_| FsConfigError::Unsupported);
    let path_c = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| FsConfigError::Unsupported)
    };
    let name = cstr("overlay")?;
    // SAFETY: plain syscalls with valid NUL-terminated strings; the fds they return are
    // owned immediately.
    let fs_fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    if fs_fd < 0 {
        return Err(FsConfigError::Unsupported);
    }
    let fs_fd = unsafe { OwnedFd::from_raw_fd(fs_fd as i32) };
    let set = |key: &str, val: &CString, fatal: bool| -> Result<(), FsConfigError> {
        let k = cstr(key)?;
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs_fd.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                val.as_ptr(),
                0,
            )
        };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            return Err(if fatal {
                FsConfigError::Failed(Error::io(format!("overlay option {key}"), err))
            } else {
                FsConfigError::Unsupported
            });
        }
        Ok(())
    };
    for (i, l) in lowers.iter().enumerate() {
        // The first lowerdir+ tells us whether the kernel knows the key at all.
        set("lowerdir+", &path_c(l)?, i > 0)?;
    }
    set("upperdir", &path_c(upper)?, true)?;
    set("workdir", &path_c(work)?, true)?;
    // Docker's defaults: no inode index (it breaks reusing lowers across containers).
    let off = cstr("off")?;
    let _ = set("index", &off, false);
    if volatile {
        const FSCONFIG_SET_FLAG: libc::c_uint = 0;
        let key = cstr("volatile")?;
        // SAFETY: a flag key takes no value; a kernel without it refuses, which we accept.
        unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs_fd.as_raw_fd(),
                FSCONFIG_SET_FLAG,
                key.as_ptr(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        };
    }
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs_fd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if rc < 0 {
        return Err(FsConfigError::Failed(Error::io(
            "create overlay",
            std::io::Error::last_os_error(),
        )));
    }
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs_fd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mnt < 0 {
        return Err(FsConfigError::Failed(Error::io(
            "fsmount overlay",
            std::io::Error::last_os_error(),
        )));
    }
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let empty = cstr("")?;
    let tgt = path_c(target)?;
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            tgt.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(FsConfigError::Failed(Error::io(
            "move overlay mount",
            std::io::Error::last_os_error(),
        )));
    }
    Ok(())
}

fn mount_overlay_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<()> {
    // Relative lower paths keep the option string short; chdir to their common parent.
    let parent = lowers
        .first()
        .and_then(|l| l.parent())
        .and_then(|p| p.parent())
        .map(Path::to_path_buf);
    let rel: Option<Vec<String>> = parent.as_ref().map(|par| {
        lowers
            .iter()
            .map(|l| {
                l.strip_prefix(par)
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|_| l.display().to_string())
            })
            .collect()
    });
    let lowerdir = match &rel {
        Some(r) => r.join(":"),
        None => lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    };
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},index=off",
        upper.display(),
        work.display()
    );
    let old_cwd = std::env::current_dir().ok();
    if let Some(p) = &parent {
        std::env::set_current_dir(p).map_err(|e| Error::path(p, e))?;
    }
    let res = mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::io("mount overlay", e.into()));
    if let Some(c) = old_cwd {
        let _ = std::env::set_current_dir(c);
    }
    res
}

/// The standard device nodes of a Docker container, as (path, kind, major, minor, mode).
const DEFAULT_DEVICES: &[(&str, SFlag, u64, u64)] = &[
    ("null", SFlag::S_IFCHR, 1, 3),
    ("zero", SFlag::S_IFCHR, 1, 5),
    ("full", SFlag::S_IFCHR, 1, 7),
    ("random", SFlag::S_IFCHR, 1, 8),
    ("urandom", SFlag::S_IFCHR, 1, 9),
    ("tty", SFlag::S_IFCHR, 5, 0),
];

/// Populates a freshly mounted /dev tmpfs: device nodes, the /proc-backed fd links, ptmx.
pub fn populate_dev(rootfs: &Path) -> Result<()> {
    let dev = rootfs.join("dev");
    let old = nix::sys::stat::umask(Mode::empty());
    let res = (|| {
        for (name, kind, major, minor) in DEFAULT_DEVICES {
            let p = dev.join(name);
            let _ = fs::remove_file(&p);
            mknod(
                &p,
                *kind,
                Mode::from_bits_truncate(0o666),
                makedev(*major, *minor),
            )
            .map_err(|e| Error::io(format!("mknod {}", p.display()), e.into()))?;
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
            ("core", "/proc/kcore"),
        ] {
            let p = dev.join(name);
            if fs::symlink_metadata(&p).is_err() {
                std::os::unix::fs::symlink(target, &p).map_err(|e| Error::path(&p, e))?;
            }
        }
        Ok(())
    })();
    nix::sys::stat::umask(old);
    res
}

/// Switches the root to `rootfs` and detaches the old root, leaving no path to the host's
/// filesystem. Uses the pivot_root(".", ".") idiom, which needs no temporary directory.
pub fn pivot_root(rootfs: &Path) -> Result<()> {
    let old_root = fs::File::open("/").map_err(|e| Error::path("/", e))?;
    let new_root = fs::File::open(rootfs).map_err(|e| Error::path(rootfs, e))?;
    nix::unistd::fchdir(&new_root).map_err(|e| Error::io("chdir rootfs", e.into()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| Error::io("pivot_root", e.into()))?;
    // The old root is now stacked under the new one at "/": make it a slave so unmounting
    // it cannot propagate to the host, then detach it.
    nix::unistd::fchdir(&old_root).map_err(|e| Error::io("chdir old root", e.into()))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::io("make old root slave", e.into()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::io("detach old root", e.into()))?;
    nix::unistd::chdir("/").map_err(|e| Error::io("chdir /", e.into()))?;
    Ok(())
}

/// Hides a path: /dev/null over files, an empty read-only tmpfs over directories.
pub fn mask_path(path: &str) -> Result<()> {
    let p = secure_join(Path::new("/"), Path::new(path))?;
    let Ok(md) = fs::metadata(&p) else {
        return Ok(());
    };
    let res = if md.is_dir() {
        mount(
            Some("tmpfs"),
            &p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            &p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    res.map_err(|e| Error::io(format!("mask {path}"), e.into()))
}

pub fn readonly_path(path: &str) -> Result<()> {
    let p = secure_join(Path::new("/"), Path::new(path))?;
    if fs::symlink_metadata(&p).is_err() {
        return Ok(());
    }
    mount(
        Some(&p),
        &p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::io(format!("bind {path}"), e.into()))?;
    remount_bind(&p, MsFlags::MS_RDONLY)
}

/// `--read-only`: the root becomes a read-only bind of itself.
pub fn readonly_root() -> Result<()> {
    remount_bind(Path::new("/"), MsFlags::MS_RDONLY)
}
