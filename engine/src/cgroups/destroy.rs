//! Removal of a container cgroup directory and any sub-cgroups the container
//! made itself (everything below the leaf is the container's, hence ours).

use std::path::Path;
use std::time::{Duration, Instant};

use super::error::{CgroupError, Result};

/// The usual teardown: the container's init has exited, and with it (a PID namespace)
/// every task, so each directory goes at its first rmdir, with no pid list read and no
/// signal sent. Returns whether all of them are gone; one still busy (tasks left, a frozen
/// task, a sub-cgroup of the container's own) needs the full teardown.
pub(crate) fn remove_if_empty<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> bool {
    let mut all = true;
    for d in dirs {
        match std::fs::remove_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => all = false,
        }
    }
    all
}

/// Removes `dir` and its descendant cgroups, deepest first. A missing
/// directory is success. EBUSY (tasks still exiting) is retried with a short
/// bounded back-off until `timeout`.
pub(crate) fn remove_tree(dir: &Path, timeout: Duration) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io("readdir", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CgroupError::io("readdir", dir, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| CgroupError::io("stat", entry.path(), e))?
            .is_dir();
        if is_dir {
            remove_tree(&entry.path(), timeout)?;
        }
    }
    rmdir_retry(dir, timeout)
}

fn rmdir_retry(dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(CgroupError::io("rmdir", dir, e)),
        }
    }
}
