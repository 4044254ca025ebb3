//! A writable (overlay upper) directory as an image layer tar: overlay whiteouts (0/0
//! character devices) become `.wh.<name>` entries, opaque directories get a
//! `.wh..wh..opq` entry, and the runtime's own mount points (Docker's init layer) are
//! left out. Entries are sorted, so the same tree always gives the same diff-id.

use crate::error::{Error, Result};
use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What the runtime itself creates in a writable layer, never part of an image.
const RUNTIME_PATHS: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/mtab",
    ".dockerenv",
];

/// Writes `upper` as a layer tar to `out`.
pub fn write_layer(upper: &Path, out: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    walk(&mut b, upper, "")?;
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("finish layer tar", e))
}

fn walk<W: Write>(b: &mut tar::Builder<W>, dir: &Path, rel: &str) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::path(dir, e))?;
    let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let n = name.to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            n.clone()
        } else {
            format!("{rel}/{n}")
        };
        let full = dir.join(&name);
        let md = std::fs::symlink_metadata(&full).map_err(|e| Error::path(&full, e))?;
        if RUNTIME_PATHS.contains(&path.as_str()) {
            // The runtime's placeholders; an image's own /dev content is never written here.
            continue;
        }
        if md.file_type().is_socket() {
            // A socket left by a RUN (an agent's) is not content; Docker's tar skips it too.
            continue;
        }
        if is_whiteout(&md) {
            let wh = if rel.is_empty() {
                format!(".wh.{n}")
            } else {
                format!("{rel}/.wh.{n}")
            };
            append_empty(b, &wh, &md)?;
            continue;
        }
        b.append_path_with_name(&full, &path)
            .map_err(|e| Error::io(format!("layer entry {path}"), e))?;
        if md.is_dir() {
            if is_opaque(&full) {
                append_empty(b, &format!("{path}/.wh..wh..opq"), &md)?;
            }
            walk(b, &full, &path)?;
        }
    }
    Ok(())
}

fn append_empty<W: Write>(b: &mut tar::Builder<W>, name: &str, md: &Metadata) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, name, std::io::empty())
        .map_err(|e| Error::io(format!("layer entry {name}"), e))
}

fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut v = [0u8; 2];
    for name in [
        &b"trusted.overlay.opaque\0"[..],
        &b"user.overlay.opaque\0"[..],
    ] {
        // SAFETY: valid NUL-terminated strings and a buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                name.as_ptr() as *const libc::c_char,
                v.as_mut_ptr() as *mut libc::c_void,
                v.len(),
            )
        };
        if n == 1 && v[0] == b'y' {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_paths_are_left_out_and_entries_sorted() {
        let d = tempfile::tempdir().unwrap();
        let u = d.path();
        for p in ["proc", "dev/pts", "etc", "usr/b", "usr/a"] {
            std::fs::create_dir_all(u.join(p)).unwrap();
        }
        std::fs::write(u.join("etc/hosts"), "x").unwrap();
        std::fs::write(u.join("etc/motd"), "hi").unwrap();
        std::fs::write(u.join("usr/a/f"), "data").unwrap();
        let mut out = Vec::new();
        write_layer(u, &mut out).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["etc", "etc/motd", "usr", "usr/a", "usr/a/f", "usr/b"]
        );
        // Deterministic: the same tree, the same bytes.
        let mut again = Vec::new();
        write_layer(u, &mut again).unwrap();
        assert_eq!(out, again);
    }
}
