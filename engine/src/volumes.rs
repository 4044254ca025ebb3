//! Named and anonymous volumes (the `local` driver): a directory per volume under the data
//! root, with its metadata beside it.

use crate::error::{Error, Result};
use crate::fsutil::{read_json, remove_dir_all_if_exists, write_json_atomic};
use crate::paths::Roots;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub scope: String,
    /// Not Docker's: made for one container (`-v /path`, image VOLUME); removed with it
    /// by `rm -v` and `--rm`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
    journal: crate::events::Journal,
}

/// Docker's volume-name grammar.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {
            name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )))
    }
}

impl VolumeStore {
    pub fn open(roots: &Roots) -> Result<Self> {
        let dir = roots.volumes_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::path(&dir, e))?;
        Ok(VolumeStore {
            dir,
            journal: crate::events::Journal::new(roots),
        })
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("volume.json")
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates a volume, or returns the existing one of that name (Docker's semantics).
    /// The bool says whether it was created by this call.
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(Volume, bool)> {
        validate_name(name)?;
        if let Ok(v) = self.get(name) {
            return Ok((v, false));
        }
        let vdir = self.dir.join(name);
        let tmp = self.dir.join(format!(".tmp-{name}-{}", std::process::id()));
        let _ = remove_dir_all_if_exists(&tmp);
        fs::create_dir_all(tmp.join("_data")).map_err(|e| Error::path(&tmp, e))?;
        let v = Volume {
            name: name.to_string(),
            driver: "local".into(),
            mountpoint: self.data_dir(name).display().to_string(),
            created_at: crate::state::now_rfc3339(),
            labels,
            options,
            scope: "local".into(),
            anonymous,
        };
        write_json_atomic(&tmp.join("volume.json"), &v)?;
        match fs::rename(&tmp, &vdir) {
            Ok(()) => {
                self.journal
                    .simple("volume", "create", name, &[("driver", v.driver.clone())]);
                Ok((v, true))
            }
            // Lost a race with a concurrent create of the same name: theirs wins.
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
            {
                let _ = remove_dir_all_if_exists(&tmp);
                Ok((self.get(name)?, false))
            }
            Err(e) => {
                let _ = remove_dir_all_if_exists(&tmp);
                Err(Error::path(&vdir, e))
            }
        }
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        match read_json(&self.meta_path(name)) {
            Ok(v) => Ok(v),
            Err(Error::Path { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(Error::NoSuchVolume(name.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(|e| Error::path(&self.dir, e))? {
            let e = e.map_err(|e| Error::path(&self.dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(v) = self.get(&name) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes a volume. `in_use` lists the containers using it; Docker refuses then.
    pub fn remove(&self, name: &str, in_use: &[String]) -> Result<()> {
        self.get(name)?;
        if !in_use.is_empty() {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                in_use.join(", ")
            )));
        }
        let doomed = self.dir.join(format!(".removing-{name}"));
        fs::rename(self.dir.join(name), &doomed).map_err(|e| Error::path(&doomed, e))?;
        self.journal
            .simple("volume", "destroy", name, &[("driver", "local".into())]);
        remove_dir_all_if_exists(&doomed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let roots = Roots::new(d.path().join("data"), d.path().join("run"));
        let vs = VolumeStore::open(&roots).unwrap();
        let (v, created) = vs
            .create("data1", BTreeMap::new(), BTreeMap::new(), false)
            .unwrap();
        assert!(created);
        assert!(PathBuf::from(&v.mountpoint).is_dir());
        let (_, again) = vs
            .create("data1", BTreeMap::new(), BTreeMap::new(), false)
            .unwrap();
        assert!(!again);
        assert_eq!(vs.list().unwrap().len(), 1);
        assert!(vs.remove("data1", &["abc".into()]).is_err());
        vs.remove("data1", &[]).unwrap();
        assert!(matches!(vs.get("data1"), Err(Error::NoSuchVolume(_))));
        assert!(
            vs.create("/bad", BTreeMap::new(), BTreeMap::new(), false)
                .is_err()
        );
    }
}
