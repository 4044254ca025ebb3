//! Resolving `-u user[:group]` and `--group-add` against the image's /etc/passwd and
//! /etc/group, as Docker does, before the container starts.

use super::RootfsPlan;
use crate::error::{Error, Result};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) and `group_add`.
pub fn resolve(
    user: &str,
    group_add: &[String],
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = passwd.unwrap_or("");
    let group_file = group.unwrap_or("");
    let mut out = ResolvedUser {
        home: "/".into(),
        ..Default::default()
    };
    let mut user_name: Option<&str> = None;
    if u.is_empty() {
        if let Some(e) = passwd_entries(passwd).find(|e| e.uid == 0) {
            out.gid = e.gid;
            out.home = e.home.to_string();
            user_name = Some(e.name);
        }
    } else if let Ok(uid) = u.parse::<u32>() {
        out.uid = uid;
        if let Some(e) = passwd_entries(passwd).find(|e| e.uid == uid) {
            out.gid = e.gid;
            out.home = e.home.to_string();
            user_name = Some(e.name);
        }
    } else {
        let e = passwd_entries(passwd)
            .find(|e| e.name == u)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                ))
            })?;
        out.uid = e.uid;
        out.gid = e.gid;
        out.home = e.home.to_string();
        user_name = Some(e.name);
    }
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        out.gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                group_entries(group_file)
                    .find(|e| e.name == g)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "unable to find group {g}: no matching entries in group file"
                        ))
                    })?
                    .gid
            }
        };
    }
    if let Some(name) = user_name {
        for e in group_entries(group_file) {
            if e.members.contains(&name) && !out.additional_gids.contains(&e.gid) {
                out.additional_gids.push(e.gid);
            }
        }
    }
    for extra in group_add {
        let gid = match extra.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                group_entries(group_file)
                    .find(|e| e.name == extra)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "Unable to find group {extra}: no matching entries in group file"
                        ))
                    })?
                    .gid
            }
        };
        if !out.additional_gids.contains(&gid) {
            out.additional_gids.push(gid);
        }
    }
    Ok(out)
}

/// Reads a file of the container's root filesystem without mounting it: the writable
/// layer first, then the image layers top-down; a whiteout hides lower copies.
pub fn read_rootfs_file(plan: &RootfsPlan, rel: &str) -> Option<String> {
    let rel = rel.trim_start_matches('/');
    let dirs: Vec<&Path> = match plan {
        RootfsPlan::Dir(d) => vec![d.as_path()],
        RootfsPlan::Overlay { lowers, upper, .. } => std::iter::once(upper.as_path())
            .chain(lowers.iter().map(|p| p.as_path()))
            .collect(),
    };
    for d in dirs {
        let p = d.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_char_device() => return None,
            Ok(md) if md.is_file() => return std::fs::read_to_string(&p).ok(),
            _ => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\naudio:x:29:\n";

    #[test]
    fn default_is_root() {
        let r = resolve("", &[], Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn by_name_with_supplementary_groups() {
        let r = resolve("app", &[], Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));
        assert_eq!(r.additional_gids, vec![2000]);
        assert_eq!(r.home, "/home/app");
    }

    #[test]
    fn numeric_and_groups() {
        let r = resolve(
            "1234:audio",
            &["extra".into(), "77".into()],
            Some(PASSWD),
            Some(GROUP),
        )
        .unwrap();
        assert_eq!((r.uid, r.gid), (1234, 29));
        assert_eq!(r.additional_gids, vec![2000, 77]);
        let r = resolve("1000:5", &[], Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 5));
    }

    #[test]
    fn unknown_user_is_an_error() {
        let e = resolve("ghost", &[], Some(PASSWD), Some(GROUP)).unwrap_err();
        assert!(e.to_string().contains("unable to find user ghost"), "{e}");
        assert!(resolve("app:nogrp", &[], Some(PASSWD), Some(GROUP)).is_err());
        assert!(resolve("", &["nogrp".into()], Some(PASSWD), Some(GROUP)).is_err());
    }
}
