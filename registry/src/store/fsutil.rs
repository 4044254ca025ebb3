//! Atomic file writes, JSON helpers, random names and the store-wide advisory lock.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A random hex suffix for temp names, so concurrent processes never pick the same one.
pub fn random_suffix() -> String {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_err() {
        // Uniqueness, not secrecy, is what matters here; pid + time is a fine fallback.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{:x}{nanos:x}", std::process::id());
    }
    hex::encode(buf)
}

/// A temp-file name `<prefix>p<pid>-<random>`: the pid lets a later process tell a dead
/// writer's leftovers (a killed pull or load) from a live one's work in progress.
pub fn temp_name(prefix: &str) -> String {
    format!("{prefix}p{}-{}", std::process::id(), random_suffix())
}

/// True when `name` is a [`temp_name`] with `prefix` whose process no longer exists.
pub fn temp_owner_is_dead(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('p')) else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    pid > 0
        && matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

/// Removes the `prefix` temp entries in `dir` left by processes that died, and any older
/// than `max_age` (a pid may have been reused).
pub fn clean_temps(dir: &Path, prefix: &str, max_age: std::time::Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(prefix) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if old || temp_owner_is_dead(&name, prefix) {
            let path = entry.path();
            if path.is_dir() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// Writes `bytes` so readers see the old or the new file, never a torn one: a temp file in
/// the same directory, fsync, then rename over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", random_suffix()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        // Image metadata is not re-derivable after a crash, unlike container state.
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(Error::path(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::path(path, e)
    })
}

pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Internal(format!("serialising {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::path(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("{}: corrupt JSON: {e}", path.display())))
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::path(path, e))
}

/// Removes a directory tree so it disappears from view at once: rename it to a hidden name
/// first, then delete at leisure. A crash mid-delete leaves only a `.del-*` name that
/// nothing reads.
pub fn remove_tree_atomically(path: &Path) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Err(Error::Internal(format!("{} has no parent", path.display())));
    };
    let doomed: PathBuf = parent.join(format!(".del-{}", random_suffix()));
    match fs::rename(path, &doomed) {
        Ok(()) => fs::remove_dir_all(&doomed).map_err(|e| Error::path(&doomed, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::path(path, e)),
    }
}

/// An exclusive `flock` on the store's lock file, held for the life of the value. It
/// serialises metadata updates between concurrent CLI processes; the kernel drops it if the
/// process dies.
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::path(path, e))?;
        loop {
            // SAFETY: flock on a valid fd we own.
            let ret = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if ret == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::path(path, e));
            }
        }
        Ok(StoreLock { _file: file })
    }
}
