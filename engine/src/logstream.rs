//! Reading a container's log the way `docker logs` asks for it (since/until/tail/follow),
//! shared by the CLI and the API. Following waits on inotify for the log and state files
//! instead of polling.

use crate::error::{Error, Result};
use crate::lifecycle::Engine;
use crate::logs::{LogReader, Record, log_files};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Unix nanoseconds; records before are skipped.
    pub since: Option<i64>,
    /// Unix nanoseconds; records after are skipped.
    pub until: Option<i64>,
    /// Only the last N lines.
    pub tail: Option<usize>,
    pub follow: bool,
}

/// What the sink tells the reader after each record.
pub enum Flow {
    Continue,
    /// The reader went away (closed pipe, disconnected client): stop quietly.
    Stop,
}

/// Feeds every selected record of container `id` to `sink`, in order; with `follow`, keeps
/// going until the container is no longer running. `flush` is called whenever the reader
/// has caught up with the writer.
pub fn read_logs(
    engine: &Engine,
    id: &str,
    q: &LogQuery,
    mut sink: impl FnMut(&Record) -> Flow,
    mut flush: impl FnMut() -> Flow,
) -> Result<()> {
    let c = engine.containers.lookup(id)?;
    let paths = engine.paths(&c.record.id);
    let keep = |r: &Record| {
        q.since.is_none_or(|s| r.ts_nanos >= s) && q.until.is_none_or(|u| r.ts_nanos <= u)
    };
    let follow = q.follow && c.state.is_running();
    // Watch before reading so nothing written in between is missed.
    let inotify = if follow {
        let ino =
            Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| Error::io("inotify", e.into()))?;
        ino.add_watch(
            &paths.log_dir(),
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
        )
        .map_err(|e| Error::io("inotify", e.into()))?;
        ino.add_watch(&paths.dir, AddWatchFlags::IN_MOVED_TO)
            .map_err(|e| Error::io("inotify", e.into()))?;
        Some(ino)
    } else {
        None
    };
    macro_rules! emit {
        ($r:expr) => {
            if let Flow::Stop = sink($r) {
                return Ok(());
            }
        };
    }
    let files = log_files(&paths.log_file());
    let mut current: Option<(LogReader, u64)> = None;
    let mut ring: VecDeque<Record> = VecDeque::new();
    let mut lines_in_ring = 0usize;
    for (i, f) in files.iter().enumerate() {
        let Some(mut reader) = LogReader::open(f)? else {
            continue;
        };
        while let Some(r) = reader.next_record()? {
            if !keep(&r) {
                continue;
            }
            match q.tail {
                None => emit!(&r),
                Some(n) => {
                    if !r.partial {
                        lines_in_ring += 1;
                    }
                    ring.push_back(r);
                    while lines_in_ring > n {
                        // Drop whole lines from the front.
                        while let Some(front) = ring.pop_front() {
                            if !front.partial {
                                lines_in_ring -= 1;
                                break;
                            }
                        }
                    }
                }
            }
        }
        if i + 1 == files.len() {
            let ino = std::fs::metadata(f).map(|m| m.ino()).unwrap_or(0);
            current = Some((reader, ino));
        }
    }
    for r in ring.drain(..) {
        emit!(&r);
    }
    if let Flow::Stop = flush() {
        return Ok(());
    }
    let Some(inotify) = inotify else {
        return Ok(());
    };
    let log_path = paths.log_file();
    loop {
        if let Some((reader, _)) = current.as_mut() {
            while let Some(r) = reader.next_record()? {
                if keep(&r) {
                    emit!(&r);
                }
            }
        }
        if let Flow::Stop = flush() {
            return Ok(());
        }
        // Rotated: the path now names a new file; switch once the old one is drained.
        let ino_now = std::fs::metadata(&log_path).map(|m| m.ino()).unwrap_or(0);
        if current.as_ref().is_none_or(|(_, ino)| *ino != ino_now)
            && let Some(r) = LogReader::open(&log_path)?
        {
            current = Some((r, ino_now));
            continue;
        }
        let running = engine
            .containers
            .load(&c.record.id)
            .map(|c| c.state.is_running())
            .unwrap_or(false);
        if !running {
            // The monitor flushes the log before it records the exit: drain once more.
            if let Some((reader, _)) = current.as_mut() {
                while let Some(r) = reader.next_record()? {
                    if keep(&r) {
                        emit!(&r);
                    }
                }
            }
            flush();
            return Ok(());
        }
        let _ = inotify.read_events();
    }
}
