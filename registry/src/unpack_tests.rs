//! Hostile and ordinary layer tars, built in the test with raw headers so the tar crate's
//! own path sanitising cannot hide what the unpacker sees.

use super::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use tar::{Builder, EntryType, Header};

struct Entry<'a> {
    name: &'a [u8],
    kind: EntryType,
    link: &'a [u8],
    data: &'a [u8],
    mode: u32,
}

fn file<'a>(name: &'a [u8], data: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: EntryType::Regular,
        link: b"",
        data,
        mode: 0o644,
    }
}

fn dir(name: &[u8]) -> Entry<'_> {
    Entry {
        name,
        kind: EntryType::Directory,
        link: b"",
        data: b"",
        mode: 0o755,
    }
}

fn symlink<'a>(name: &'a [u8], target: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: EntryType::Symlink,
        link: target,
        data: b"",
        mode: 0o777,
    }
}

fn hardlink<'a>(name: &'a [u8], target: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: EntryType::Link,
        link: target,
        data: b"",
        mode: 0o644,
    }
}

fn build(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..e.name.len()].copy_from_slice(e.name);
            old.linkname[..e.link.len()].copy_from_slice(e.link);
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A sandbox: `root` is the layer root, `outside` a sibling that must stay empty.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    Sandbox {
        root,
        outside,
        _tmp: tmp,
    }
}

impl Sandbox {
    fn unpack(&self, entries: &[Entry<'_>]) -> Result<UnpackStats> {
        unpack_layer(&build(entries)[..], &self.root)
    }

    fn assert_outside_untouched(&self) {
        let parent = self.root.parent().unwrap();
        let mut names: Vec<_> = fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["outside", "root"],
            "something was written beside the root"
        );
        assert_eq!(
            fs::read_dir(&self.outside).unwrap().count(),
            0,
            "outside was written"
        );
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn rejects_dotdot_escape() {
    let s = sandbox();
    let err = s.unpack(&[file(b"../outside/evil", b"x")]).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("escapes"), "{err}");
    let err = s
        .unpack(&[file(b"a/../../outside/evil", b"x")])
        .unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");
    s.assert_outside_untouched();
}

#[test]
fn contains_harmless_dotdot_and_absolute_paths() {
    let s = sandbox();
    s.unpack(&[
        file(b"a/../b", b"b"),
        file(b"/abs/file", b"abs"),
        file(b"./c", b"c"),
    ])
    .unwrap();
    assert_eq!(fs::read(s.root.join("b")).unwrap(), b"b");
    assert_eq!(fs::read(s.root.join("abs/file")).unwrap(), b"abs");
    assert_eq!(fs::read(s.root.join("c")).unwrap(), b"c");
    s.assert_outside_untouched();
}

#[test]
fn rejects_writing_through_a_symlink() {
    let s = sandbox();
    let relative = s.unpack(&[symlink(b"link", b"../outside"), file(b"link/pwned", b"x")]);
    let err = relative.unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    s.assert_outside_untouched();

    let s = sandbox();
    let abs = s.outside.to_str().unwrap().as_bytes().to_vec();
    let err = s
        .unpack(&[symlink(b"abs", &abs), file(b"abs/pwned", b"x")])
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    // A directory entry through the link is refused the same way.
    let err = s
        .unpack(&[symlink(b"abs2", &abs), dir(b"abs2/d")])
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    s.assert_outside_untouched();
}

#[test]
fn symlink_to_etc_does_not_expose_host_files() {
    let s = sandbox();
    let before = fs::read("/etc/passwd").unwrap();
    let err = s
        .unpack(&[symlink(b"etc", b"/etc"), file(b"etc/passwd", b"pwned")])
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(fs::read("/etc/passwd").unwrap(), before);
    // The symlink itself is kept verbatim: it is only ever resolved inside a container.
    assert_eq!(
        fs::read_link(s.root.join("etc")).unwrap(),
        Path::new("/etc")
    );
}

#[test]
fn a_file_replacing_a_symlink_does_not_follow_it() {
    let s = sandbox();
    let target = s.outside.join("victim");
    let t = target.to_str().unwrap().as_bytes().to_vec();
    s.unpack(&[symlink(b"f", &t), file(b"f", b"data")]).unwrap();
    assert!(!target.exists());
    assert_eq!(fs::read(s.root.join("f")).unwrap(), b"data");
    assert!(
        !fs::symlink_metadata(s.root.join("f"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    s.assert_outside_untouched();
}

#[test]
fn hardlinks_are_confined_to_the_layer() {
    let s = sandbox();
    let nlink_before = fs::metadata("/etc/passwd").unwrap().nlink();
    let err = s.unpack(&[hardlink(b"pw", b"/etc/passwd")]).unwrap_err();
    assert!(err.to_string().contains("not in this layer"), "{err}");
    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), nlink_before);
    assert!(!s.root.join("pw").exists());

    let err = s.unpack(&[hardlink(b"x", b"../../x")]).unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");

    // Through a symlink planted in the same layer.
    let err = s
        .unpack(&[symlink(b"l", b"/etc"), hardlink(b"h", b"l/passwd")])
        .unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    s.assert_outside_untouched();
}

#[test]
fn hardlink_inside_the_layer_shares_the_inode() {
    let s = sandbox();
    s.unpack(&[
        file(b"bin/busybox", b"elf"),
        hardlink(b"bin/sh", b"/bin/busybox"),
    ])
    .unwrap();
    let a = fs::metadata(s.root.join("bin/busybox")).unwrap();
    let b = fs::metadata(s.root.join("bin/sh")).unwrap();
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn preserves_metadata() {
    if !is_root() {
        eprintln!("skipped: needs root for chown");
        return;
    }
    let s = sandbox();
    let mut suid = file(b"usr/bin/su", b"su");
    suid.mode = 0o4755;
    let mut d = dir(b"data");
    d.mode = 0o1777;
    let stats = s
        .unpack(&[
            d,
            file(b"data/x", b"12345"),
            suid,
            symlink(b"lnk", b"data/x"),
        ])
        .unwrap();
    assert_eq!(stats.size, 7);
    let m = fs::metadata(s.root.join("usr/bin/su")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(m.mtime(), 1_600_000_000);
    let d = fs::metadata(s.root.join("data")).unwrap();
    assert_eq!(d.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(d.mtime(), 1_600_000_000, "dir mtime survives its children");
    // Implicitly created parents get 0755 root:root like Docker.
    let usr = fs::metadata(s.root.join("usr")).unwrap();
    assert_eq!(usr.permissions().mode() & 0o7777, 0o755);
    let l = fs::symlink_metadata(s.root.join("lnk")).unwrap();
    assert_eq!((l.uid(), l.gid(), l.mtime()), (1234, 5678, 1_600_000_000));
}

#[test]
fn whiteouts_and_opaque_dirs() {
    if !is_root() {
        eprintln!("skipped: needs root for mknod and trusted xattrs");
        return;
    }
    let s = sandbox();
    s.unpack(&[
        file(b"etc/.wh.motd", b""),
        dir(b"var/cache"),
        file(b"var/cache/.wh..wh..opq", b""),
        file(b"var/cache/new", b"n"),
        file(b".wh..wh.plnk", b""),
    ])
    .unwrap();
    let wh = fs::symlink_metadata(s.root.join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!s.root.join("etc/.wh.motd").exists());
    assert!(!s.root.join(".wh..wh.plnk").exists());
    assert!(!s.root.join("var/cache/.wh..wh..opq").exists());
    assert_eq!(
        opaque_xattr(&s.root.join("var/cache")).as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(s.root.join("var/cache/new")).unwrap(), b"n");
}

#[test]
fn rejects_bad_whiteout_names() {
    let s = sandbox();
    assert!(s.unpack(&[file(b"a/.wh...", b"")]).is_err());
    s.assert_outside_untouched();
}

#[test]
fn device_nodes() {
    if !is_root() {
        eprintln!("skipped: needs root for mknod");
        return;
    }
    let s = sandbox();
    let mut b = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_path("dev/null").unwrap();
    h.set_entry_type(EntryType::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_mode(0o666);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    unpack_layer(&b.into_inner().unwrap()[..], &s.root).unwrap();
    let m = fs::symlink_metadata(s.root.join("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), libc::makedev(1, 3));
    assert_eq!(m.permissions().mode() & 0o777, 0o666);
}

#[test]
fn later_entries_replace_earlier_ones() {
    let s = sandbox();
    s.unpack(&[dir(b"x"), file(b"x/inner", b"1"), file(b"x", b"now a file")])
        .unwrap();
    assert_eq!(fs::read(s.root.join("x")).unwrap(), b"now a file");
}

#[test]
fn pax_times_parse() {
    let t = parse_pax_time(b"1600000000.5").unwrap();
    assert_eq!((t.secs, t.nanos), (1_600_000_000, 500_000_000));
    assert!(parse_pax_time(b"abc").is_none());
}

fn opaque_xattr(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let key = CString::new(OPAQUE_XATTR).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: valid C strings and a buffer of the given size.
    let n =
        unsafe { libc::lgetxattr(p.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn huge_file_counts_unpack_with_bounded_memory() {
    // 60 000 entries in one directory and deep nesting: the unpacker holds only per-entry
    // state (no per-entry bookkeeping that grows with the archive), and stays contained.
    let s = sandbox();
    let names: Vec<Vec<u8>> = (0..60_000)
        .map(|i| format!("many/f{i}").into_bytes())
        .collect();
    let mut entries = vec![dir(b"many")];
    entries.extend(names.iter().map(|n| file(n, b"")));
    let deep: Vec<u8> = "d/".repeat(40).into_bytes();
    let mut deep_file = deep.clone();
    deep_file.extend_from_slice(b"leaf");
    entries.push(file(&deep_file, b"leaf"));
    let stats = s.unpack(&entries).unwrap();
    assert_eq!(stats.size, 4);
    assert_eq!(fs::read_dir(s.root.join("many")).unwrap().count(), 60_000);
    assert_eq!(
        fs::read(s.root.join(String::from_utf8(deep_file).unwrap())).unwrap(),
        b"leaf"
    );
    s.assert_outside_untouched();
}
