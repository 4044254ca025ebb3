//! Turning `-v`, `--mount`, `--tmpfs` and the image's VOLUMEs into the container's mounts,
//! creating the named and anonymous volumes they need.

use crate::error::{Error, Result};
use crate::model::{HostConfig, MountPoint};
use crate::volumes::VolumeStore;
use std::collections::BTreeMap;
use std::path::Path;

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn check_target(t: &str) -> Result<()> {
    if !t.starts_with('/') {
        return Err(Error::invalid(format!(
            "invalid mount config: mount path must be absolute: {t}"
        )));
    }
    if t == "/" {
        return Err(Error::invalid(
            "invalid specification: destination can't be '/'",
        ));
    }
    Ok(())
}

/// Parses one `-v` string: `src:dst[:opts]`, `name:dst[:opts]` or `dst`.
fn parse_bind(spec: &str) -> Result<(Option<String>, String, Vec<String>)> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => (None, *dst, ""),
        [src, dst] => (Some(*src), *dst, ""),
        [src, dst, opts] => (Some(*src), *dst, *opts),
        _ => {
            return Err(Error::invalid(format!(
                "invalid volume specification: '{spec}'"
            )));
        }
    };
    if dst.is_empty() || src.is_some_and(str::is_empty) {
        return Err(Error::invalid(format!(
            "invalid volume specification: '{spec}'"
        )));
    }
    let opts: Vec<String> = opts
        .split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    for o in &opts {
        if !(["ro", "rw", "z", "Z", "nocopy", "copy"].contains(&o.as_str())
            || PROPAGATIONS.contains(&o.as_str()))
        {
            return Err(Error::invalid(format!(
                "invalid mode: {o} in volume specification '{spec}'"
            )));
        }
    }
    Ok((src.map(str::to_string), dst.to_string(), opts))
}

fn volume_mount(
    vols: &VolumeStore,
    name: Option<&str>,
    target: &str,
    read_only: bool,
    nocopy: bool,
    labels: BTreeMap<String, String>,
    created: &mut Vec<String>,
) -> Result<MountPoint> {
    let anonymous = name.is_none();
    let name = name.map(str::to_string).unwrap_or_else(crate::ids::new_id);
    let (v, was_created) = vols.create(&name, labels, BTreeMap::new(), anonymous)?;
    if was_created {
        created.push(name.clone());
    }
    Ok(MountPoint {
        kind: "volume".into(),
        name: v.name,
        source: v.mountpoint,
        destination: target.to_string(),
        driver: "local".into(),
        mode: if nocopy { "nocopy".into() } else { "z".into() },
        rw: !read_only,
        propagation: String::new(),
        anonymous,
    })
}

/// Resolves every mount of a container being created. Volumes it creates are appended to
/// `created` so a failed create can remove them again.
pub fn resolve(
    hc: &HostConfig,
    image_volumes: &BTreeMap<String, serde_json::Value>,
    vols: &VolumeStore,
    created: &mut Vec<String>,
) -> Result<Vec<MountPoint>> {
    let mut out: Vec<MountPoint> = Vec::new();
    let push = |m: MountPoint, out: &mut Vec<MountPoint>| -> Result<()> {
        if out.iter().any(|o| o.destination == m.destination) {
            return Err(Error::invalid(format!(
                "Duplicate mount point: {}",
                m.destination
            )));
        }
        out.push(m);
        Ok(())
    };
    for b in &hc.binds {
        let (src, dst, opts) = parse_bind(b)?;
        check_target(&dst)?;
        let ro = opts.iter().any(|o| o == "ro");
        let prop = opts
            .iter()
            .find(|o| PROPAGATIONS.contains(&o.as_str()))
            .cloned()
            .unwrap_or_default();
        let m = match src {
            Some(s) if s.starts_with('/') => {
                // `-v` creates a missing host directory, as Docker does.
                if !Path::new(&s).exists() {
                    std::fs::create_dir_all(&s).map_err(|e| Error::path(&s, e))?;
                }
                MountPoint {
                    kind: "bind".into(),
                    source: s,
                    destination: dst,
                    mode: opts.join(","),
                    rw: !ro,
                    propagation: if prop.is_empty() {
                        "rprivate".into()
                    } else {
                        prop
                    },
                    ..Default::default()
                }
            }
            Some(name) => {
                let nocopy = opts.iter().any(|o| o == "nocopy");
                volume_mount(
                    vols,
                    Some(&name),
                    &dst,
                    ro,
                    nocopy,
                    BTreeMap::new(),
                    created,
                )?
            }
            None => volume_mount(vols, None, &dst, ro, false, BTreeMap::new(), created)?,
        };
        push(m, &mut out)?;
    }
    for m in &hc.mounts {
        check_target(&m.target)?;
        let mp = match m.kind.as_str() {
            "bind" => {
                if m.source.is_empty() || !m.source.starts_with('/') {
                    return Err(Error::invalid(format!(
                        "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
                        m.source
                    )));
                }
                let create = m.bind_options.as_ref().is_some_and(|b| b.create_mountpoint);
                if !Path::new(&m.source).exists() {
                    if create {
                        std::fs::create_dir_all(&m.source)
                            .map_err(|e| Error::path(&m.source, e))?;
                    } else {
                        return Err(Error::invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            m.source
                        )));
                    }
                }
                let prop = m
                    .bind_options
                    .as_ref()
                    .map(|b| b.propagation.clone())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rprivate".into());
                if !PROPAGATIONS.contains(&prop.as_str()) {
                    return Err(Error::invalid(format!("invalid propagation mode: {prop}")));
                }
                MountPoint {
                    kind: "bind".into(),
                    source: m.source.clone(),
                    destination: m.target.clone(),
                    rw: !m.read_only,
                    propagation: prop,
                    ..Default::default()
                }
            }
            "volume" => {
                let o = m.volume_options.clone().unwrap_or_default();
                let name = (!m.source.is_empty()).then_some(m.source.as_str());
                volume_mount(
                    vols,
                    name,
                    &m.target,
                    m.read_only,
                    o.no_copy,
                    o.labels,
                    created,
                )?
            }
            "tmpfs" => {
                let mut opts = vec![];
                if let Some(t) = &m.tmpfs_options {
                    if t.size_bytes > 0 {
                        opts.push(format!("size={}", t.size_bytes));
                    }
                    if t.mode != 0 {
                        opts.push(format!("mode={:o}", t.mode));
                    }
                }
                MountPoint {
                    kind: "tmpfs".into(),
                    destination: m.target.clone(),
                    mode: opts.join(","),
                    rw: !m.read_only,
                    ..Default::default()
                }
            }
            other => {
                return Err(Error::invalid(format!("mount type unknown: {other:?}")));
            }
        };
        push(mp, &mut out)?;
    }
    for (dst, opts) in &hc.tmpfs {
        check_target(dst)?;
        let mut ro = false;
        let mut kept = vec![];
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => ro = true,
                "rw" => ro = false,
                _ => kept.push(o.to_string()),
            }
        }
        push(
            MountPoint {
                kind: "tmpfs".into(),
                destination: dst.clone(),
                mode: kept.join(","),
                rw: !ro,
                ..Default::default()
            },
            &mut out,
        )?;
    }
    // The image's VOLUMEs not covered by a user mount get anonymous volumes.
    for dst in image_volumes.keys() {
        if out.iter().any(|m| &m.destination == dst) {
            continue;
        }
        check_target(dst)?;
        let m = volume_mount(vols, None, dst, false, false, BTreeMap::new(), created)?;
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_strings() {
        assert_eq!(
            parse_bind("/a:/b:ro,rshared").unwrap(),
            (
                Some("/a".into()),
                "/b".into(),
                vec!["ro".into(), "rshared".into()]
            )
        );
        assert_eq!(parse_bind("/data").unwrap(), (None, "/data".into(), vec![]));
        assert!(parse_bind("/a:/b:bogus").is_err());
        assert!(parse_bind("a:b:c:d").is_err());
    }

    #[test]
    fn resolve_creates_volumes_and_rejects_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let roots = crate::paths::Roots::new(d.path().join("data"), d.path().join("run"));
        let vols = VolumeStore::open(&roots).unwrap();
        let hc = HostConfig {
            binds: vec!["named1:/n".into(), "/anon".into()],
            tmpfs: BTreeMap::from([("/t".to_string(), "size=1m,ro".to_string())]),
            ..Default::default()
        };
        let img = BTreeMap::from([("/imgvol".to_string(), serde_json::json!({}))]);
        let mut created = vec![];
        let m = resolve(&hc, &img, &vols, &mut created).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(created.len(), 3);
        assert!(m.iter().any(|x| x.name == "named1" && !x.anonymous));
        assert!(
            m.iter()
                .any(|x| x.destination == "/t" && !x.rw && x.mode == "size=1m")
        );
        let dup = HostConfig {
            binds: vec!["a1:/x".into(), "b1:/x".into()],
            ..Default::default()
        };
        assert!(resolve(&dup, &BTreeMap::new(), &vols, &mut vec![]).is_err());
        let missing = HostConfig {
            mounts: vec![crate::model::MountSpec {
                kind: "bind".into(),
                source: "/nonexistent/pelagos-test".into(),
                target: "/x".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = resolve(&missing, &BTreeMap::new(), &vols, &mut vec![]).unwrap_err();
        assert!(
            e.to_string().contains("bind source path does not exist"),
            "{e}"
        );
    }
}
