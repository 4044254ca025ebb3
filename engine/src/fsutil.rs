//! Small file-system helpers shared by the engine: atomic writes and advisory locks.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Writes `bytes` to `path` so readers see either the old or the new content, never a torn
/// file: write a temp file beside it, then rename over. No fsync: state files are re-derivable
/// after a crash (a dead monitor reads as exited) and fsync costs milliseconds on the hot path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| Error::path(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::path(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::path(path, e)
    })
}

pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Json(e.to_string()))?;
    write_atomic(path, &bytes)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::path(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("{}: corrupt JSON: {e}", path.display())))
}

/// An exclusive advisory lock held until dropped (flock on a lock file).
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn exclusive(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::path(path, e))?;
        // SAFETY: flock on a valid fd we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(Error::path(path, std::io::Error::last_os_error()));
        }
        Ok(FileLock { _file: file })
    }

    /// Locks the directory itself (flock works on any open file), so taking the lock
    /// creates no file.
    pub fn directory(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::path(path, e))?;
        // SAFETY: flock on a valid fd we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(Error::path(path, std::io::Error::last_os_error()));
        }
        Ok(FileLock { _file: file })
    }
}

/// Asks the filesystem to spread `dir`'s subdirectories over its block groups (ext2/3/4's
/// "top of directory hierarchies" flag, `chattr +T`), as it does for /home. Each container
/// directory then lands in its own group, with its files. Without it every container's
/// files churn through one group, and ext4 without a journal, which will not reuse an
/// inode freed in the last minutes, scans past all of those on each new file: that was
/// the largest single kernel cost of a container's create-start-remove. Best effort: other
/// filesystems have no such flag and need none.
pub fn spread_subdirectories(dir: &Path) {
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
    const FS_TOPDIR_FL: libc::c_long = 0x0002_0000;
    let Ok(f) = File::open(dir) else { return };
    let mut flags: libc::c_long = 0;
    // SAFETY: the flags ioctls read or write one long through a valid pointer.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) == 0 && flags & FS_TOPDIR_FL == 0
        {
            flags |= FS_TOPDIR_FL;
            libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags);
        }
    }
}

/// Removes a directory tree, treating "already gone" as success.
pub fn remove_dir_all_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::path(path, e)),
    }
}
