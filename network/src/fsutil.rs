//! Atomic writes and advisory locks (the same discipline as the engine's fsutil).

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Readers see the old or the new content, never a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal(format!("{} has no parent", path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::path(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| Error::path(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::path(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::path(path, e)
    })
}

pub fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let b = serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(path, &b)
}

/// None when the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Internal(format!("{}: corrupt JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::path(path, e)),
    }
}

pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::path(path, e)),
    }
}

/// An exclusive flock held until dropped.
pub struct Lock {
    _file: File,
}

impl Lock {
    /// The lock when nobody holds it now; `None` when another process does.
    pub fn try_exclusive(path: &Path) -> Result<Option<Self>> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| Error::path(d, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::path(path, e))?;
        // SAFETY: flock on a valid fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(Lock { _file: file }));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        Err(Error::path(path, e))
    }

    /// The open file under the lock (the DNS server writes its pid into it).
    pub fn file(&self) -> &File {
        &self._file
    }

    pub fn exclusive(path: &Path) -> Result<Self> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| Error::path(d, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::path(path, e))?;
        loop {
            // SAFETY: flock on a valid fd we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Lock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::path(path, e));
            }
        }
    }
}
