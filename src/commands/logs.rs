//! `logs`: print a container's log, optionally following it (engine::logstream does the
//! reading and following).

use super::Ctx;
use crate::cli::LogsArgs;
use crate::errors::{CliError, CliResult};
use engine::logs::{Record, Stream};
use engine::logstream::{Flow, LogQuery, read_logs};
use std::io::Write;

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
    let now = engine::logs::now_nanos();
    let q = LogQuery {
        since: a.since.as_deref().map(|s| parse_time(s, now)).transpose()?,
        until: a.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        tail: match a.tail.as_str() {
            "all" | "" => None,
            n => Some(
                n.parse()
                    .map_err(|_| CliError::Usage(format!("invalid value for tail: {n}")))?,
            ),
        },
        follow: a.follow,
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let out = std::cell::RefCell::new(std::io::BufWriter::with_capacity(256 * 1024, stdout.lock()));
    let mut err = stderr.lock();
    let mut printer = Printer {
        timestamps: a.timestamps,
        at_line_start: [true; 3],
    };
    let mut failure: Option<std::io::Error> = None;
    let mut fail = |e: std::io::Error| {
        failure.get_or_insert(e);
        Flow::Stop
    };
    let mut flush_failure: Option<std::io::Error> = None;
    read_logs(
        &engine,
        &a.container,
        &q,
        |r| match printer.print(r, &mut *out.borrow_mut(), &mut err) {
            Ok(()) => Flow::Continue,
            Err(e) => fail(e),
        },
        || match out.borrow_mut().flush() {
            Ok(()) => Flow::Continue,
            Err(e) => {
                flush_failure.get_or_insert(e);
                Flow::Stop
            }
        },
    )?;
    match failure.or(flush_failure) {
        Some(e) => broken_pipe_ok(e),
        None => Ok(0),
    }
}

fn broken_pipe_ok(e: std::io::Error) -> CliResult<i32> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(0)
    } else {
        Err(CliError::Other(anyhow::anyhow!("write: {e}")))
    }
}
