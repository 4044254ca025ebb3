//! Unpacks one layer tar into a directory that overlayfs can use as a lower layer.
//!
//! Security: the tar is untrusted. Every entry path is cleaned lexically (a leading `/` is
//! dropped like Docker does; `..` that would climb above the root rejects the layer), and
//! every parent directory is reached with `openat(O_NOFOLLOW|O_DIRECTORY)` from the root, so
//! a symlink planted earlier in the same layer can never redirect a write: traversing one is
//! an error. Hard-link targets go through the same resolution. Device nodes (char/block)
//! are created as the tar says: we unpack as root into a private directory and the nodes are
//! only reachable inside containers, where the device cgroup / capabilities decide access.
//!
//! Whiteouts are converted to overlayfs form: `.wh.<name>` becomes a 0/0 character device
//! `<name>`, and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.

use crate::error::{Error, Result};
use crate::fsys;
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use tar::EntryType;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";

/// What an unpack produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Bytes of regular-file content: the layer's size as `docker images` counts it.
    pub size: u64,
    pub entries: u64,
}

/// Unpacks a tar that may be gzip'd (a build context, an ADD archive) like
/// [`unpack_layer`].
pub fn unpack_tar_or_gzip<R: Read>(reader: R, root: &Path) -> Result<UnpackStats> {
    use std::io::BufRead;
    let mut r = io::BufReader::new(reader);
    let gz = r
        .fill_buf()
        .map_err(|e| Error::io("reading an archive", e))?
        .starts_with(&[0x1f, 0x8b]);
    if gz {
        unpack_layer(flate2::read::MultiGzDecoder::new(r), root)
    } else {
        unpack_layer(r, root)
    }
}

/// Unpacks the (uncompressed) layer tar `reader` into the existing directory `root`.
pub fn unpack_layer<R: Read>(reader: R, root: &Path) -> Result<UnpackStats> {
    let root_fd = fsys::open_dir(root).map_err(|e| Error::path(root, e))?;
    let mut archive = tar::Archive::new(reader);
    let mut stats = UnpackStats::default();
    // Directory mtimes are set last: creating children inside a directory bumps its mtime.
    let mut dir_times: Vec<(Vec<Vec<u8>>, Mtime)> = Vec::new();
    // The last parent directory opened, by components: tar streams list a directory's
    // entries together, so most entries reuse it instead of re-walking from the root (an
    // `openat` per component per entry dominated unpack time). An entry can only change
    // its own path and what is below it, so the cache is dropped when an entry's path is
    // a prefix of the cached one (and on whiteouts, which change a sibling's path).
    let mut cache: Option<(Vec<Vec<u8>>, OwnedFd)> = None;
    let entries = archive
        .entries()
        .map_err(|e| Error::io("reading layer tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading layer tar", e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_path(&raw).ok_or_else(|| {
            Error::unsafe_entry(&shown, "path escapes the layer root through '..'")
        })?;
        stats.entries += 1;
        if cache.as_ref().is_some_and(|(p, _)| p.starts_with(&comps)) {
            cache = None;
        }
        let Some((name, parents)) = comps.split_last() else {
            // The root directory itself: its attributes belong to the container rootfs
            // top, not to this layer, so it is skipped.
            continue;
        };
        let wrap = |e: io::Error| Error::io(format!("unpacking layer entry {shown:?}"), e);

        if name.starts_with(WHITEOUT_PREFIX) {
            cache = None;
            let dir = walk(&root_fd, parents, true, &shown)?;
            if name.as_slice() == OPAQUE_MARKER {
                let key = CString::new(OPAQUE_XATTR).map_err(|e| Error::Internal(e.to_string()))?;
                fsys::set_xattr_fd(dir.as_fd(), &key, b"y").map_err(wrap)?;
            } else if name.starts_with(WHITEOUT_META_PREFIX) {
                // Other `.wh..wh.` names are AUFS bookkeeping (hard-link dirs); Docker
                // skips them too.
            } else {
                let real = &name[WHITEOUT_PREFIX.len()..];
                if real.is_empty() || real == b"." || real == b".." {
                    return Err(Error::unsafe_entry(&shown, "whiteout of an invalid name"));
                }
                let cname = fsys::c_name(real).map_err(wrap)?;
                remove_existing(&dir, &cname, root, parents, real).map_err(wrap)?;
                fsys::mknod_at(dir.as_fd(), &cname, libc::S_IFCHR, 0).map_err(wrap)?;
            }
            continue;
        }

        if cache.as_ref().is_none_or(|(p, _)| p.as_slice() != parents) {
            cache = Some((parents.to_vec(), walk(&root_fd, parents, true, &shown)?));
        }
        let Some((_, dir)) = &cache else {
            return Err(Error::Internal("unpack directory cache".into()));
        };
        let cname = fsys::c_name(name).map_err(wrap)?;
        let header = entry.header().clone();
        let meta = EntryMeta::read(&mut entry, &header).map_err(wrap)?;
        let kind = header.entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_existing(dir, &cname, root, parents, name).map_err(wrap)?;
                let mut file = fsys::create_file_at(dir.as_fd(), &cname, 0o600).map_err(wrap)?;
                stats.size += io::copy(&mut entry, &mut file).map_err(wrap)?;
            }
            EntryType::Directory => {
                let existing = fsys::stat_at(dir.as_fd(), &cname).map_err(wrap)?;
                match existing {
                    Some(st) if fsys::is_dir(&st) => {}
                    Some(_) => {
                        fsys::unlink_at(dir.as_fd(), &cname).map_err(wrap)?;
                        fsys::mkdir_at(dir.as_fd(), &cname, 0o700).map_err(wrap)?;
                    }
                    None => fsys::mkdir_at(dir.as_fd(), &cname, 0o700).map_err(wrap)?,
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Error::unsafe_entry(&shown, "symlink without a target"))?;
                remove_existing(dir, &cname, root, parents, name).map_err(wrap)?;
                // The target is stored verbatim: it is never followed while unpacking, and
                // inside the container it resolves against the container's own root.
                let target = fsys::c_name(&target).map_err(wrap)?;
                fsys::symlink_at(&target, dir.as_fd(), &cname).map_err(wrap)?;
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let shown_target = String::from_utf8_lossy(&raw_target).into_owned();
                let tcomps = clean_path(&raw_target).ok_or_else(|| {
                    Error::unsafe_entry(
                        &shown,
                        format!("hard link target {shown_target:?} escapes the layer root"),
                    )
                })?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(Error::unsafe_entry(&shown, "hard link to the layer root"));
                };
                let tdir = walk(&root_fd, tparents, false, &shown)?;
                let tcname = fsys::c_name(tname).map_err(wrap)?;
                if fsys::stat_at(tdir.as_fd(), &tcname)
                    .map_err(wrap)?
                    .is_none()
                {
                    return Err(Error::unsafe_entry(
                        &shown,
                        format!("hard link target {shown_target:?} is not in this layer"),
                    ));
                }
                if tcomps == comps {
                    continue;
                }
                remove_existing(dir, &cname, root, parents, name).map_err(wrap)?;
                fsys::link_at(tdir.as_fd(), &tcname, dir.as_fd(), &cname).map_err(wrap)?;
                // A hard link shares its target's inode and metadata: nothing more to set.
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let type_bits = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                remove_existing(dir, &cname, root, parents, name).map_err(wrap)?;
                fsys::mknod_at(
                    dir.as_fd(),
                    &cname,
                    type_bits | (meta.mode & 0o7777),
                    libc::makedev(major, minor),
                )
                .map_err(wrap)?;
            }
            other => {
                tracing::debug!(entry = %shown, kind = ?other, "skipping unsupported tar entry type");
                continue;
            }
        }
        apply_meta(dir, &cname, kind, &meta).map_err(wrap)?;
        if kind == EntryType::Directory {
            dir_times.push((comps.clone(), meta.mtime));
        }
    }
    for (comps, mtime) in dir_times.iter().rev() {
        if let Some((name, parents)) = comps.split_last()
            && let Ok(dir) = walk(&root_fd, parents, false, "")
            && let Ok(cname) = fsys::c_name(name)
        {
            // Best effort: a later entry may have replaced the directory.
            let _ = fsys::set_mtime_at(dir.as_fd(), &cname, mtime.secs, mtime.nanos);
        }
    }
    Ok(stats)
}

/// Lexically cleans a tar path into components: empty and `.` parts vanish, a leading `/`
/// is ignored, `..` pops. `None` if `..` would climb above the root.
fn clean_path(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            p => out.push(p.to_vec()),
        }
    }
    Some(out)
}

/// Opens the directory `comps` below the root without following any symlink, creating
/// missing directories (0755, like Docker) when `create` is set.
fn walk(root: &OwnedFd, comps: &[Vec<u8>], create: bool, shown: &str) -> Result<OwnedFd> {
    let wrap = |e: io::Error| Error::io(format!("unpacking layer entry {shown:?}"), e);
    let mut cur = root.try_clone().map_err(wrap)?;
    for comp in comps {
        let c = fsys::c_name(comp).map_err(wrap)?;
        let next = match fsys::open_dir_at(cur.as_fd(), &c) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fsys::mkdir_at(cur.as_fd(), &c, 0o755).map_err(wrap)?;
                fsys::open_dir_at(cur.as_fd(), &c).map_err(wrap)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::unsafe_entry(
                    shown,
                    format!(
                        "directory {:?} is not in this layer",
                        String::from_utf8_lossy(comp)
                    ),
                ));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                return Err(Error::unsafe_entry(
                    shown,
                    format!(
                        "parent {:?} is a symlink or not a directory",
                        String::from_utf8_lossy(comp)
                    ),
                ));
            }
            Err(e) => return Err(wrap(e)),
        };
        cur = next;
    }
    Ok(cur)
}

/// Clears whatever sits at `dir/name` so a new entry can take its place (later entries in a
/// tar replace earlier ones).
fn remove_existing(
    dir: &OwnedFd,
    cname: &CString,
    root: &Path,
    parents: &[Vec<u8>],
    name: &[u8],
) -> io::Result<()> {
    match fsys::stat_at(dir.as_fd(), cname)? {
        None => Ok(()),
        Some(st) if fsys::is_dir(&st) => {
            // Every parent was verified to be a real directory and this tree is private to
            // the unpacker, so a path-based removal cannot be redirected; std's
            // remove_dir_all does not follow symlinks inside the tree.
            use std::os::unix::ffi::OsStrExt;
            let mut p = root.to_path_buf();
            for c in parents {
                p.push(std::ffi::OsStr::from_bytes(c));
            }
            p.push(std::ffi::OsStr::from_bytes(name));
            std::fs::remove_dir_all(p)
        }
        Some(_) => fsys::unlink_at(dir.as_fd(), cname),
    }
}

#[derive(Debug, Clone, Copy)]
struct Mtime {
    secs: i64,
    nanos: u32,
}

/// Ownership, mode, time and xattrs of one entry, with PAX overrides applied.
struct EntryMeta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Mtime,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl EntryMeta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>, header: &tar::Header) -> io::Result<Self> {
        let mut meta = EntryMeta {
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            mode: header.mode().unwrap_or(0o644),
            mtime: Mtime {
                secs: header.mtime().unwrap_or(0) as i64,
                nanos: 0,
            },
            xattrs: Vec::new(),
        };
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                match key {
                    "uid" => meta.uid = parse_num(value).unwrap_or(meta.uid),
                    "gid" => meta.gid = parse_num(value).unwrap_or(meta.gid),
                    "mtime" => {
                        if let Some(t) = parse_pax_time(value) {
                            meta.mtime = t;
                        }
                    }
                    k => {
                        if let Some(name) = k.strip_prefix(XATTR_PAX_PREFIX)
                            && let Ok(c) = CString::new(name)
                        {
                            meta.xattrs.push((c, value.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(meta)
    }
}

fn parse_num(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// PAX times are decimal seconds with an optional fraction.
fn parse_pax_time(v: &[u8]) -> Option<Mtime> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    Some(Mtime { secs, nanos })
}

fn apply_meta(dir: &OwnedFd, cname: &CString, kind: EntryType, meta: &EntryMeta) -> io::Result<()> {
    fsys::chown_at(dir.as_fd(), cname, meta.uid, meta.gid)?;
    // chmod after chown: chown clears setuid/setgid bits. Symlinks have no mode on Linux.
    if kind != EntryType::Symlink {
        fsys::chmod_at(dir.as_fd(), cname, meta.mode & 0o7777)?;
    }
    for (key, value) in &meta.xattrs {
        if let Err(e) = fsys::set_xattr_at(dir.as_fd(), cname, key, value) {
            // Filesystems without xattr support (or user.* on symlinks) cannot keep them;
            // Docker drops them the same way rather than failing the pull.
            if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) {
                tracing::warn!(xattr = ?key, error = %e, "dropping xattr");
            } else {
                return Err(e);
            }
        }
    }
    if kind != EntryType::Directory {
        fsys::set_mtime_at(dir.as_fd(), cname, meta.mtime.secs, meta.mtime.nanos)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
