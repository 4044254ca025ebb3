//! Container logs: every byte of stdout and stderr, in order, with a timestamp and stream
//! per line, in a compact binary record format that reads back at disk speed.
//!
//! Record: `len: u32 LE | stream: u8 (1 stdout, 2 stderr) | partial: u8 | ts: i64 LE ns` then
//! `len` bytes. `partial` = 1 when the bytes do not end a line (a long line is split across
//! records at read-buffer boundaries; the reader simply concatenates). Rotation renames
//! `container.log` -> `container.log.1` -> ... and starts a new file.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const HEADER: usize = 14;
const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: Stream,
    pub partial: bool,
    pub ts_nanos: i64,
    pub data: Vec<u8>,
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub struct LogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_size: u64,
    max_file: u32,
}

impl LogWriter {
    pub fn open(path: &Path, max_size: u64, max_file: u32) -> Result<Self> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(|e| Error::path(d, e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::path(path, e))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(128 * 1024, f),
            size,
            max_size,
            max_file: max_file.max(1),
        })
    }

    /// Appends a chunk read from one stream, split into one record per line.
    pub fn write_chunk(&mut self, stream: Stream, chunk: &[u8]) -> Result<()> {
        let ts = now_nanos();
        let mut rest = chunk;
        while !rest.is_empty() {
            let (line, partial) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..=i], false),
                None => (rest, true),
            };
            self.write_record(stream, partial, ts, line)?;
            rest = &rest[line.len()..];
        }
        Ok(())
    }

    fn write_record(&mut self, stream: Stream, partial: bool, ts: i64, data: &[u8]) -> Result<()> {
        let mut hdr = [0u8; HEADER];
        hdr[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
        hdr[4] = stream as u8;
        hdr[5] = u8::from(partial);
        hdr[6..].copy_from_slice(&ts.to_le_bytes());
        let io = |e| Error::path(&self.path, e);
        self.out.write_all(&hdr).map_err(io)?;
        self.out
            .write_all(data)
            .map_err(|e| Error::path(&self.path, e))?;
        self.size += (HEADER + data.len()) as u64;
        if self.max_size > 0 && self.size >= self.max_size && !partial {
            self.rotate()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::path(&self.path, e))
    }

    fn rotate(&mut self) -> Result<()> {
        self.flush()?;
        if self.max_file <= 1 {
            // Docker with max-file=1 truncates in place.
            let f = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&self.path)
                .map_err(|e| Error::path(&self.path, e))?;
            drop(f);
        } else {
            let _ = fs::remove_file(rotated(&self.path, self.max_file - 1));
            for i in (1..self.max_file - 1).rev() {
                let _ = fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
            fs::rename(&self.path, rotated(&self.path, 1))
                .map_err(|e| Error::path(&self.path, e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::path(&self.path, e))?;
        self.out = BufWriter::with_capacity(128 * 1024, f);
        self.size = 0;
        Ok(())
    }
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// All log files of a container, oldest first.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut i = 1;
    while rotated(path, i).exists() {
        out.push(rotated(path, i));
        i += 1;
    }
    out.reverse();
    out.push(path.to_path_buf());
    out
}

/// Reads records from one log file, remembering its offset so a follower can resume.
pub struct LogReader {
    inner: BufReader<File>,
    pub offset: u64,
}

impl LogReader {
    pub fn open(path: &Path) -> Result<Option<Self>> {
        match File::open(path) {
            Ok(f) => Ok(Some(LogReader {
                inner: BufReader::with_capacity(256 * 1024, f),
                offset: 0,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::path(path, e)),
        }
    }

    /// The next complete record; `None` at the (current) end of the file. A record still
    /// being written is not returned until complete.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        use std::io::{BufRead, Seek, SeekFrom};
        let avail = self
            .inner
            .fill_buf()
            .map_err(|e| Error::io("read log", e))?
            .len();
        if avail == 0 {
            return Ok(None);
        }
        let mut hdr = [0u8; HEADER];
        if !read_full(&mut self.inner, &mut hdr)? {
            self.inner
                .seek(SeekFrom::Start(self.offset))
                .map_err(|e| Error::io("seek log", e))?;
            return Ok(None);
        }
        let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        if len > MAX_RECORD {
            return Err(Error::Internal(format!(
                "corrupt log record of {len} bytes"
            )));
        }
        let mut data = vec![0u8; len];
        if !read_full(&mut self.inner, &mut data)? {
            self.inner
                .seek(SeekFrom::Start(self.offset))
                .map_err(|e| Error::io("seek log", e))?;
            return Ok(None);
        }
        self.offset += (HEADER + len) as u64;
        let stream = if hdr[4] == 2 {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&hdr[6..14]);
        Ok(Some(Record {
            stream,
            partial: hdr[5] == 1,
            ts_nanos: i64::from_le_bytes(ts),
            data,
        }))
    }
}

/// Reads exactly `buf.len()` bytes; false if the file ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        let n = r
            .read(&mut buf[off..])
            .map_err(|e| Error::io("read log", e))?;
        if n == 0 {
            return Ok(false);
        }
        off += n;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path) -> Vec<Record> {
        let mut out = vec![];
        for f in log_files(path) {
            let mut r = LogReader::open(&f).unwrap().unwrap();
            while let Some(rec) = r.next_record().unwrap() {
                out.push(rec);
            }
        }
        out
    }

    #[test]
    fn lines_split_and_order_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 0, 1).unwrap();
        w.write_chunk(Stream::Stdout, b"a\nbb\nccc").unwrap();
        w.write_chunk(Stream::Stderr, b"err\n").unwrap();
        w.write_chunk(Stream::Stdout, b"c\n").unwrap();
        w.flush().unwrap();
        let recs = read_all(&p);
        let got: Vec<(u8, bool, &[u8])> = recs
            .iter()
            .map(|r| (r.stream as u8, r.partial, r.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, false, &b"a\n"[..]),
                (1, false, b"bb\n"),
                (1, true, b"ccc"),
                (2, false, b"err\n"),
                (1, false, b"c\n"),
            ]
        );
    }

    #[test]
    fn rotation_keeps_max_files_and_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 200, 3).unwrap();
        for i in 0..100 {
            w.write_chunk(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        w.flush().unwrap();
        assert_eq!(log_files(&p).len(), 3);
        let recs = read_all(&p);
        let nums: Vec<u32> = recs
            .iter()
            .map(|r| {
                String::from_utf8_lossy(&r.data)
                    .trim()
                    .trim_start_matches("line ")
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(*nums.last().unwrap(), 99);
    }

    #[test]
    fn partial_record_is_not_returned() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 0, 1).unwrap();
        w.write_chunk(Stream::Stdout, b"one\n").unwrap();
        w.flush().unwrap();
        // Simulate a writer caught mid-record.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[10, 0, 0, 0, 1]).unwrap();
        let mut r = LogReader::open(&p).unwrap().unwrap();
        assert!(r.next_record().unwrap().is_some());
        assert!(r.next_record().unwrap().is_none());
        assert_eq!(r.offset, (HEADER + 4) as u64);
    }
}
