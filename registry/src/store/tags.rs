//! The tag index, `repositories.json`: repository name -> reference -> image ID, the same
//! shape Docker keeps. Tags and digest references live here only; image records do not
//! duplicate them, so there is one source of truth to keep consistent.

use super::fsutil::{read_json, write_json_atomic};
use crate::digest::Digest;
use crate::error::Result;
use crate::reference::Reference;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct TagIndex {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, Digest>>,
}

impl TagIndex {
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(TagIndex::default());
        }
        read_json(path)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_json_atomic(path, self)
    }

    pub fn get(&self, r: &Reference) -> Option<&Digest> {
        self.repositories.get(&r.name())?.get(&r.to_string())
    }

    /// Points `r` at `id`; returns the image it pointed at before, if another.
    pub fn set(&mut self, r: &Reference, id: &Digest) -> Option<Digest> {
        let old = self
            .repositories
            .entry(r.name())
            .or_default()
            .insert(r.to_string(), id.clone());
        old.filter(|o| o != id)
    }

    pub fn remove(&mut self, r: &Reference) -> Option<Digest> {
        let name = r.name();
        let repo = self.repositories.get_mut(&name)?;
        let old = repo.remove(&r.to_string());
        if repo.is_empty() {
            self.repositories.remove(&name);
        }
        old
    }

    /// Every reference to `id`, tags first then digests, each group sorted.
    pub fn refs_for(&self, id: &Digest) -> Vec<Reference> {
        let mut refs: Vec<Reference> = self
            .repositories
            .values()
            .flat_map(|repo| repo.iter())
            .filter(|(_, v)| *v == id)
            .filter_map(|(k, _)| Reference::parse(k).ok())
            .collect();
        refs.sort_by_key(|r| (r.digest().is_some(), r.to_string()));
        refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_remove_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repositories.json");
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        let r = Reference::parse("busybox").unwrap();
        let mut idx = TagIndex::load(&path).unwrap();
        assert_eq!(idx.set(&r, &a), None);
        assert_eq!(
            idx.set(&r, &a),
            None,
            "re-setting the same id is not a replacement"
        );
        assert_eq!(idx.set(&r, &b), Some(a.clone()));
        idx.save(&path).unwrap();
        let mut idx = TagIndex::load(&path).unwrap();
        assert_eq!(idx.get(&r), Some(&b));
        assert_eq!(idx.refs_for(&b), vec![r.clone()]);
        assert_eq!(idx.remove(&r), Some(b));
        assert!(idx.repositories.is_empty());
    }
}
