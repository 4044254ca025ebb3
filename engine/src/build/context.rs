//! The build context: `.dockerignore` rules, COPY source patterns, and copying files into
//! a root filesystem without ever leaving it.

use crate::error::{Error, Result};
use crate::runtime::mounts::secure_join;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `.dockerignore` rules: patterns relative to the context root, later rules win, `!`
/// re-includes; a pattern that matches a directory excludes what is below it.
#[derive(Debug, Default, Clone)]
pub struct Ignore {
    rules: Vec<(bool, String)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.strip_prefix('!') {
                Some(p) => (false, clean(p.trim())),
                None => (true, clean(l)),
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        Ignore { rules }
    }

    pub fn load(context: &Path) -> Result<Ignore> {
        Ok(Ignore::parse(
            &read_small_file(context, ".dockerignore", 1 << 20)?.unwrap_or_default(),
        ))
    }

    /// Whether the context-relative path `rel` is excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        let rel = clean(rel);
        let mut out = false;
        for (exclude, pat) in &self.rules {
            // The path or one of its parents matches.
            let mut hit = false;
            let mut p = rel.as_str();
            loop {
                if glob(pat, p) {
                    hit = true;
                    break;
                }
                match p.rfind('/') {
                    Some(i) => p = &p[..i],
                    None => break,
                }
            }
            if hit {
                out = *exclude;
            }
        }
        out
    }
}

/// Reads a small regular file of `root` (a Dockerfile, `.dockerignore`, an image's
/// `/etc/passwd`) with every symlink resolved inside `root`; a device, FIFO, socket or
/// file above `limit` bytes is refused rather than read. None when there is no such file.
pub fn read_small_file(root: &Path, rel: &str, limit: u64) -> Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let p = secure_join(root, Path::new(rel))?;
    let md = match std::fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    if !md.is_file() || md.len() > limit {
        return Err(Error::invalid(format!(
            "{rel}: not a regular file of at most {limit} bytes"
        )));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&p)
        .map_err(|e| Error::path(&p, e))?;
    let mut s = String::new();
    f.take(limit)
        .read_to_string(&mut s)
        .map_err(|e| Error::path(&p, e))?;
    Ok(Some(s))
}

/// A context-relative path without `./`, leading or trailing `/`, or `.` components.
pub fn clean(p: &str) -> String {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Shell-style matching of a whole path: `*` and `?` stay within one component, `[...]`
/// classes, and `**` spans any number of components.
pub fn glob(pat: &str, path: &str) -> bool {
    let pc: Vec<&str> = pat.split('/').collect();
    let xc: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    match_components(&pc, &xc)
}

fn match_components(p: &[&str], x: &[&str]) -> bool {
    match p.split_first() {
        None => x.is_empty(),
        Some((&"**", rest)) => (0..=x.len()).any(|i| match_components(rest, &x[i..])),
        Some((first, rest)) => {
            !x.is_empty()
                && component(first.as_bytes(), x[0].as_bytes())
                && match_components(rest, &x[1..])
        }
    }
}

fn component(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| component(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && component(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().position(|&c| c == b']') else {
                return !s.is_empty() && s[0] == b'[' && component(rest, &s[1..]);
            };
            let (class, after) = (&rest[..end], &rest[end + 1..]);
            let (negate, class) = match class.split_first() {
                Some((b'^' | b'!', c)) => (true, c),
                _ => (false, class),
            };
            let Some(&c) = s.first() else { return false };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && component(after, &s[1..])
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            !s.is_empty() && s[0] == rest[0] && component(&rest[1..], &s[1..])
        }
        Some((c, rest)) => !s.is_empty() && s[0] == *c && component(rest, &s[1..]),
    }
}

/// The context paths a COPY/ADD source names (a path or a pattern), sorted; errors as
/// Docker's when nothing matches.
pub fn sources(context: &Path, src: &str, ignore: &Ignore) -> Result<Vec<(PathBuf, String)>> {
    let rel = clean(src);
    let has_glob = rel.contains(['*', '?', '[']);
    if !has_glob {
        let p = secure_join(context, Path::new(&rel))?;
        if std::fs::symlink_metadata(&p).is_err() || (!rel.is_empty() && ignore.excludes(&rel)) {
            return Err(missing(src));
        }
        return Ok(vec![(p, rel)]);
    }
    // The walk starts at the pattern's literal directory, resolved inside the root (an
    // image's `/etc -> /` cannot lead it out); entries are never followed through symlinks.
    let comps: Vec<&str> = rel.split('/').collect();
    let literal = comps
        .iter()
        .take_while(|c| !c.contains(['*', '?', '[']))
        .count();
    let base = comps[..literal].join("/");
    let start = secure_join(context, Path::new(&base))?;
    let mut found = Vec::new();
    if start.is_dir() {
        collect(&start, "", &mut |r| {
            let full = if base.is_empty() {
                r.to_string()
            } else {
                format!("{base}/{r}")
            };
            if glob(&rel, &full) && !ignore.excludes(&full) {
                found.push((start.join(r), full));
            }
        })?;
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    if found.is_empty() {
        return Err(missing(src));
    }
    Ok(found)
}

fn missing(src: &str) -> Error {
    Error::BuildFailed {
        message: format!(
            "COPY failed: file not found in build context or excluded by .dockerignore: stat {src}: file does not exist"
        ),
        code: 1,
    }
}

fn collect(root: &Path, rel: &str, f: &mut dyn FnMut(&str)) -> Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let rd = std::fs::read_dir(&dir).map_err(|e| Error::path(&dir, e))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        f(&r);
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect(root, &r, f)?;
        }
    }
    Ok(())
}

/// Ownership and mode applied to what a COPY writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    /// `--chmod`: replaces the mode of files and directories copied.
    pub mode: Option<u32>,
}

/// Copies `src` (a file, symlink or directory; a directory's contents are copied) to the
/// absolute container path `dst` inside `root`. Every path written is resolved inside
/// `root` (symlinks in the image cannot lead out). `ignore` filters context-relative
/// paths below `src_rel` (None for sources outside the context, as with `--from`).
pub fn copy(
    src: &Path,
    src_rel: &str,
    root: &Path,
    dst: &str,
    attrs: Attrs,
    ignore: Option<&Ignore>,
) -> Result<()> {
    let md = std::fs::symlink_metadata(src).map_err(|e| Error::path(src, e))?;
    let target = secure_join(root, Path::new(dst))?;
    if md.is_dir() {
        make_dirs(root, dst, attrs)?;
        copy_tree(src, src_rel, root, dst, attrs, ignore)
    } else {
        if let Some(parent) = Path::new(dst).parent() {
            make_dirs(root, &parent.to_string_lossy(), attrs)?;
        }
        copy_one(src, &md, &target, attrs)
    }
}

fn copy_tree(
    src: &Path,
    src_rel: &str,
    root: &Path,
    dst: &str,
    attrs: Attrs,
    ignore: Option<&Ignore>,
) -> Result<()> {
    let rd = std::fs::read_dir(src).map_err(|e| Error::path(src, e))?;
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if src_rel.is_empty() {
            name.clone()
        } else {
            format!("{src_rel}/{name}")
        };
        if ignore.is_some_and(|i| i.excludes(&rel)) {
            continue;
        }
        let from = e.path();
        let to = format!("{}/{name}", dst.trim_end_matches('/'));
        let md = std::fs::symlink_metadata(&from).map_err(|e| Error::path(&from, e))?;
        let target = secure_join(root, Path::new(&to))?;
        if md.is_dir() {
            match std::fs::create_dir(&target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::path(&target, e)),
            }
            set_attrs(&target, md.mode() & 0o7777, attrs)?;
            copy_tree(&from, &rel, root, &to, attrs, ignore)?;
        } else {
            copy_one(&from, &md, &target, attrs)?;
        }
    }
    Ok(())
}

fn copy_one(src: &Path, md: &std::fs::Metadata, target: &Path, attrs: Attrs) -> Result<()> {
    // Whatever was there (a file, a symlink) is replaced, never written through.
    if std::fs::symlink_metadata(target).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(target).map_err(|e| Error::path(target, e))?;
    }
    if md.file_type().is_symlink() {
        let link = std::fs::read_link(src).map_err(|e| Error::path(src, e))?;
        std::os::unix::fs::symlink(&link, target).map_err(|e| Error::path(target, e))?;
        return std::os::unix::fs::lchown(target, Some(attrs.uid), Some(attrs.gid))
            .map_err(|e| Error::path(target, e));
    }
    if !md.is_file() {
        // Devices, sockets and fifos in a context are not copied, as with Docker's tar.
        return Ok(());
    }
    std::fs::copy(src, target).map_err(|e| Error::path(target, e))?;
    set_attrs(target, md.mode() & 0o7777, attrs)
}

fn set_attrs(p: &Path, mode: u32, attrs: Attrs) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(attrs.uid), Some(attrs.gid))
        .map_err(|e| Error::path(p, e))?;
    std::fs::set_permissions(
        p,
        std::fs::Permissions::from_mode(attrs.mode.unwrap_or(mode)),
    )
    .map_err(|e| Error::path(p, e))
}

/// Creates the directory `dst` and its missing parents inside `root` (new ones 0755,
/// owned as `attrs` says, as Docker does for a COPY destination).
pub fn make_dirs(root: &Path, dst: &str, attrs: Attrs) -> Result<()> {
    let mut cur = String::new();
    for c in dst.split('/').filter(|c| !c.is_empty()) {
        cur.push('/');
        cur.push_str(c);
        let p = secure_join(root, Path::new(&cur))?;
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(Error::BuildFailed {
                    message: format!("cannot copy to {dst}: {cur} is not a directory"),
                    code: 1,
                });
            }
            Err(_) => {
                std::fs::create_dir(&p).map_err(|e| Error::path(&p, e))?;
                std::os::unix::fs::lchown(&p, Some(attrs.uid), Some(attrs.gid))
                    .map_err(|e| Error::path(&p, e))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| Error::path(&p, e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_are_read_inside_the_root_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("Dockerfile"), "FROM x\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("escape")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            read_small_file(root, "Dockerfile", 100).unwrap().as_deref(),
            Some("FROM x\n")
        );
        // The absolute link resolves inside the root, where there is no such file.
        assert_eq!(read_small_file(root, "escape", 100).unwrap(), None);
        assert!(read_small_file(root, "fifo", 100).is_err());
        assert!(read_small_file(root, "Dockerfile", 3).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "d/a.txt"));
        assert!(glob("**/*.txt", "d/e/a.txt"));
        assert!(glob("**/*.txt", "a.txt"));
        assert!(glob("d/?.[a-c]", "d/x.b"));
        assert!(!glob("d/?.[!a-c]", "d/x.b"));
        assert!(glob("src", "src"));
    }

    #[test]
    fn dockerignore_rules() {
        let i = Ignore::parse("# c\nnode_modules\n*.log\n!keep.log\n/build/\n");
        assert!(i.excludes("node_modules"));
        assert!(i.excludes("node_modules/x/y.js"));
        assert!(i.excludes("a.log"));
        assert!(!i.excludes("keep.log"));
        assert!(i.excludes("build/out"));
        assert!(!i.excludes("src/main.rs"));
    }

    #[test]
    fn copies_trees_files_and_links_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let (ctx, root) = (d.path().join("ctx"), d.path().join("root"));
        std::fs::create_dir_all(ctx.join("dir/sub")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(ctx.join("dir/a"), "a").unwrap();
        std::fs::write(ctx.join("dir/sub/b"), "b").unwrap();
        std::fs::write(ctx.join("dir/skip.log"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ctx.join("dir/link")).unwrap();
        // An image symlink pointing out of the root must not be followed.
        std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
        let ig = Ignore::parse("dir/*.log");
        let me = Attrs {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            mode: None,
        };
        copy(&ctx.join("dir"), "dir", &root, "/opt/app", me, Some(&ig)).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("opt/app/sub/b")).unwrap(),
            "b"
        );
        assert!(!root.join("opt/app/skip.log").exists());
        assert_eq!(
            std::fs::read_link(root.join("opt/app/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        copy(
            &ctx.join("dir/a"),
            "dir/a",
            &root,
            "/escape/tmp/a",
            me,
            None,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(root.join("tmp/a")).unwrap(), "a");
        let found = sources(&ctx, "dir/*", &ig).unwrap();
        let names: Vec<&str> = found.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(names, ["dir/a", "dir/link", "dir/sub"]);
        assert!(sources(&ctx, "nope", &ig).is_err());
        // A pattern's directory is resolved inside the root: a link to / leads nowhere.
        std::os::unix::fs::symlink("/", ctx.join("up")).unwrap();
        assert!(sources(&ctx, "up/etc/host*", &ig).is_err());
        let deep = sources(&ctx, "dir/sub/*", &ig).unwrap();
        assert_eq!(deep.len(), 1);
        assert_eq!(deep[0].1, "dir/sub/b");
        assert_eq!(deep[0].0, ctx.join("dir/sub/b"));
    }
}
