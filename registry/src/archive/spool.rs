//! Random access to an image archive that arrives as a stream: the (possibly gzip'd) tar is
//! copied once to a temp file, indexed by path, and entries are then read in place with
//! positioned reads. Nothing is held in memory beyond the index.

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Links inside an archive (docker save deduplicates layers with symlinks) are followed at
/// most this many hops.
const MAX_LINK_HOPS: usize = 16;
/// JSON documents (manifests, configs, indexes) larger than this are refused.
pub const MAX_JSON_BYTES: u64 = 32 << 20;

#[derive(Debug, Clone)]
enum Node {
    File { offset: u64, size: u64 },
    Link(String),
}

pub struct SpooledArchive {
    file: File,
    nodes: HashMap<String, Node>,
}

impl SpooledArchive {
    /// Spools `reader` into a new file at `spool_path` and indexes it.
    pub fn new(reader: impl Read, spool_path: &Path) -> Result<Self> {
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(spool_path)
            .map_err(|e| Error::path(spool_path, e))?;
        let mut buffered = BufReader::new(reader);
        let head = buffered
            .fill_buf()
            .map_err(|e| Error::io("reading image archive", e))?;
        if head.is_empty() {
            return Err(Error::archive("empty input"));
        }
        let copied = if head.starts_with(&[0x1f, 0x8b]) {
            io::copy(&mut MultiGzDecoder::new(buffered), &mut file)
        } else {
            io::copy(&mut buffered, &mut file)
        };
        copied.map_err(|e| Error::io("spooling image archive", e))?;
        file.seek(io::SeekFrom::Start(0))
            .map_err(|e| Error::io("spooling image archive", e))?;
        let nodes = index(&file)?;
        Ok(SpooledArchive { file, nodes })
    }

    fn resolve(&self, path: &str) -> Result<(u64, u64)> {
        let mut cur = clean(path);
        for _ in 0..MAX_LINK_HOPS {
            match self.nodes.get(&cur) {
                Some(Node::File { offset, size }) => return Ok((*offset, *size)),
                Some(Node::Link(target)) => cur = target.clone(),
                None => {
                    return Err(Error::archive(format!(
                        "{path} is missing from the archive"
                    )));
                }
            }
        }
        Err(Error::archive(format!("{path}: too many levels of links")))
    }

    pub fn contains(&self, path: &str) -> bool {
        self.resolve(path).is_ok()
    }

    /// A reader over one entry's content.
    pub fn open(&self, path: &str) -> Result<EntryReader<'_>> {
        let (offset, size) = self.resolve(path)?;
        Ok(EntryReader {
            file: &self.file,
            pos: offset,
            end: offset + size,
        })
    }

    /// Reads a small (JSON) entry whole.
    pub fn read_small(&self, path: &str) -> Result<Vec<u8>> {
        let (_, size) = self.resolve(path)?;
        if size > MAX_JSON_BYTES {
            return Err(Error::archive(format!(
                "{path} is too large ({size} bytes)"
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open(path)?
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(format!("reading {path} from the archive"), e))?;
        Ok(buf)
    }

    /// Streams an entry through sha256 and compares with `expected`.
    pub fn verify(&self, path: &str, expected: &Digest) -> Result<()> {
        let (actual, _) = HashingReader::new(self.open(path)?)
            .finish()
            .map_err(|e| Error::io(format!("reading {path} from the archive"), e))?;
        if &actual != expected {
            return Err(Error::DigestMismatch {
                what: path.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }
}

pub struct EntryReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for EntryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Lexical clean of an in-archive path: no leading `/` or `./`, no `.` parts, `..` pops
/// (never above the archive root: these paths only index our own map).
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn index(file: &File) -> Result<HashMap<String, Node>> {
    // The tar crate quotes raw header bytes in its messages; a garbage file would put
    // binary noise on the user's terminal. Keep printable text only, and not much of it.
    let wrap = |e: io::Error| {
        let text: String = e
            .to_string()
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(120)
            .collect();
        Error::archive(format!("not a valid tar archive: {text}"))
    };
    let mut archive = tar::Archive::new(file);
    let mut nodes = HashMap::new();
    for entry in archive.entries_with_seek().map_err(wrap)? {
        let entry = entry.map_err(wrap)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = clean(&path);
        let kind = entry.header().entry_type();
        let link = || {
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default()
        };
        let node = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => Node::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
            tar::EntryType::Symlink => {
                let target = link();
                let base = match path.rsplit_once('/') {
                    Some((dir, _)) if !target.starts_with('/') => format!("{dir}/{target}"),
                    _ => target,
                };
                Node::Link(clean(&base))
            }
            // Hard-link names are relative to the archive root.
            tar::EntryType::Link => Node::Link(clean(&link())),
            _ => continue,
        };
        nodes.insert(path, node);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_files_and_links() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "a/layer.tar", &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "b/layer.tar", "../a/layer.tar")
            .unwrap();
        let bytes = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let spool = SpooledArchive::new(&bytes[..], &dir.path().join("s")).unwrap();
        assert_eq!(spool.read_small("./b/layer.tar").unwrap(), b"hello");
        assert!(!spool.contains("c"));
        spool
            .verify("a/layer.tar", &Digest::of_bytes(b"hello"))
            .unwrap();
        assert!(
            spool
                .verify("a/layer.tar", &Digest::of_bytes(b"x"))
                .is_err()
        );
    }
}
