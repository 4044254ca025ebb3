//! `logs`: print a container's log, optionally following it. Following waits on inotify
//! for the log and state files instead of polling.

use super::Ctx;
use crate::cli::LogsArgs;
use crate::errors::{CliError, CliResult};
use engine::logs::{LogReader, Record, Stream, log_files};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

/// Docker's --since/--until: RFC 3339, Unix seconds (with fraction), or a duration ago.
pub fn parse_time(s: &str, now: i64) -> CliResult<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_nanos_opt().unwrap_or(0));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .map_err(|_| CliError::Usage(format!("invalid value for time: {s}")))?;
    let mult = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(CliError::Usage(format!("invalid value for time: {s}"))),
    };
    Ok(now - (n * mult) as i64)
}

struct Printer {
    timestamps: bool,
    at_line_start: [bool; 3],
}

impl Printer {
    fn print(
        &mut self,
        r: &Record,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> std::io::Result<()> {
        let w: &mut dyn Write = if r.stream == Stream::Stderr { err } else { out };
        let idx = r.stream as usize;
        if self.timestamps && self.at_line_start[idx] {
            let ts = chrono::DateTime::from_timestamp_nanos(r.ts_nanos);
            write!(
                w,
                "{} ",
                ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            )?;
        }
        w.write_all(&r.data)?;
        self.at_line_start[idx] = !r.partial;
        Ok(())
    }
}

pub fn logs(ctx: &Ctx, a: LogsArgs) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let c = engine.containers.lookup(&a.container)?;
    let paths = engine.paths(&c.record.id);
    let now = engine::logs::now_nanos();
    let since = a.since.as_deref().map(|s| parse_time(s, now)).transpose()?;
    let until = a.until.as_deref().map(|s| parse_time(s, now)).transpose()?;
    let tail: Option<usize> = match a.tail.as_str() {
        "all" | "" => None,
        n => Some(
            n.parse()
                .map_err(|_| CliError::Usage(format!("invalid value for tail: {n}")))?,
        ),
    };
    let keep =
        |r: &Record| since.is_none_or(|s| r.ts_nanos >= s) && until.is_none_or(|u| r.ts_nanos <= u);
    let follow = a.follow && c.state.is_running();
    // Watch before reading so nothing written in between is missed.
    let inotify = if follow {
        let ino = Inotify::init(InitFlags::IN_CLOEXEC)
            .map_err(|e| CliError::Other(anyhow::anyhow!("inotify: {e}")))?;
        ino.add_watch(
            &paths.log_dir(),
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
        )
        .map_err(|e| CliError::Other(anyhow::anyhow!("inotify: {e}")))?;
        ino.add_watch(&paths.dir, AddWatchFlags::IN_MOVED_TO)
            .map_err(|e| CliError::Other(anyhow::anyhow!("inotify: {e}")))?;
        Some(ino)
    } else {
        None
    };

    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let mut err = stderr.lock();
    let mut printer = Printer {
        timestamps: a.timestamps,
        at_line_start: [true; 3],
    };
    let io = |e: std::io::Error| CliError::Other(anyhow::anyhow!("write: {e}"));
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
            match tail {
                None => {
                    if let Err(e) = printer.print(&r, &mut out, &mut err) {
                        return broken_pipe_ok(e);
                    }
                }
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
        if let Err(e) = printer.print(&r, &mut out, &mut err) {
            return broken_pipe_ok(e);
        }
    }
    out.flush().map_err(io)?;
    let Some(inotify) = inotify else {
        return Ok(0);
    };
    let log_path = paths.log_file();
    loop {
        // Drain what is there now.
        if let Some((reader, _)) = current.as_mut() {
            while let Some(r) = reader.next_record()? {
                if keep(&r)
                    && let Err(e) = printer.print(&r, &mut out, &mut err)
                {
                    return broken_pipe_ok(e);
                }
            }
        }
        out.flush().map_err(io)?;
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
                        let _ = printer.print(&r, &mut out, &mut err);
                    }
                }
            }
            out.flush().map_err(io)?;
            return Ok(0);
        }
        let _ = inotify.read_events();
    }
}

fn broken_pipe_ok(e: std::io::Error) -> CliResult<i32> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(0)
    } else {
        Err(CliError::Other(anyhow::anyhow!("write: {e}")))
    }
}
