//! Tiny helpers for reading and writing cgroupfs control files.
//!
//! cgroupfs files are written with a single write(2) each: the kernel parses
//! each write separately, so buffered multi-write helpers would break values.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use super::error::{CgroupError, Result};

/// Writes `value` to `dir/file` in one write(2) without truncation/creation
/// semantics beyond what cgroupfs needs.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    tracing::trace!(path = %path.display(), value, "cgroup write");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| CgroupError::io("open", &path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| CgroupError::io("write", &path, e))
}

/// Writes only if the control file exists; returns whether it did. Used for
/// optional knobs (memsw, bfq weights) whose absence is a host property, not
/// an error.
pub(crate) fn write_if_exists(dir: &Path, file: &str, value: &str) -> Result<bool> {
    if !dir.join(file).exists() {
        return Ok(false);
    }
    write(dir, file, value).map(|()| true)
}

pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|e| CgroupError::io("read", &path, e))
}

/// Reads a file if it exists; missing files are `None`.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    match read(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses a single number; "max" (v2) means unlimited and maps to `None`.
pub(crate) fn parse_limit(text: &str, path_hint: &Path) -> Result<Option<u64>> {
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    // v1 reports "unlimited" as a huge page-aligned value; also treat negative
    // values (-1 in some v1 files) as unlimited.
    if t.starts_with('-') {
        return Ok(None);
    }
    t.parse::<u64>().map(Some).map_err(|e| CgroupError::Parse {
        what: path_hint.display().to_string(),
        reason: format!("{t:?}: {e}"),
    })
}

/// Reads a single-number file; missing file → `None`, "max" → `None`.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    match read_opt(dir, file)? {
        Some(s) => parse_limit(&s, &dir.join(file)),
        None => Ok(None),
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events, ...).
/// Lines that do not parse are skipped: kernels add new keys with
/// non-numeric values from time to time and stats must not fail on that.
pub(crate) fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse::<u64>().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// Reads a flat keyed file; a missing file yields an empty map.
pub(crate) fn read_flat_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>> {
    Ok(read_opt(dir, file)?
        .map(|s| parse_flat_keyed(&s))
        .unwrap_or_default())
}

/// The pids listed in `cgroup.procs`; a missing cgroup has no pids.
pub(crate) fn read_pids(dir: &Path) -> Result<Vec<i32>> {
    let Some(text) = read_opt(dir, "cgroup.procs")? else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .collect())
}

/// Pids of `dir` and all its descendant cgroups (a container may create
/// sub-cgroups of its own).
pub(crate) fn read_pids_recursive(dir: &Path) -> Result<Vec<i32>> {
    let mut pids = read_pids(dir)?;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pids),
        Err(e) => return Err(CgroupError::io("readdir", dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(read_pids_recursive(&entry.path())?);
        }
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_skips_garbage() {
        let m = parse_flat_keyed("a 1\nb x\n\nc 3 extra\n");
        assert_eq!(m.get("a"), Some(&1));
        assert_eq!(m.get("b"), None);
        assert_eq!(m.get("c"), Some(&3));
    }

    #[test]
    fn limit_parsing() {
        let p = Path::new("x");
        assert_eq!(parse_limit("max\n", p).unwrap(), None);
        assert_eq!(parse_limit("-1", p).unwrap(), None);
        assert_eq!(parse_limit("42\n", p).unwrap(), Some(42));
        assert!(parse_limit("zz", p).is_err());
    }
}
