//! Waiting for a cgroup v2 `cgroup.events` key to reach a value.
//!
//! The kernel raises a file-modified notification on `cgroup.events` whenever
//! `populated` or `frozen` changes, so inotify lets us sleep until the state
//! changes instead of polling the file in a loop.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::error::{CgroupError, Result};
use super::fsutil::{parse_flat_keyed, read};

/// Reads `key` from `dir/cgroup.events`.
pub(crate) fn events_value(dir: &Path, key: &str) -> Result<Option<u64>> {
    Ok(parse_flat_keyed(&read(dir, "cgroup.events")?)
        .get(key)
        .copied())
}

/// Blocks until `cgroup.events` in `dir` has `key == want` or `timeout` passes.
pub(crate) fn wait_events(
    dir: &Path,
    key: &'static str,
    want: u64,
    timeout: Duration,
) -> Result<()> {
    let file = dir.join("cgroup.events");
    let werr = |source| CgroupError::Wait {
        path: file.clone(),
        source,
    };
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(werr)?;
    // Watch before the first read so a change between read and poll is not lost.
    inotify
        .add_watch(&file, AddWatchFlags::IN_MODIFY)
        .map_err(werr)?;
    let deadline = Instant::now() + timeout;
    loop {
        if events_value(dir, key)? == Some(want) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CgroupError::Timeout {
                what: key,
                path: dir.to_path_buf(),
            });
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(werr(e)),
        }
        // Drain so the next poll only wakes on a new change.
        match inotify.read_events() {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => return Err(werr(e)),
        }
    }
}
