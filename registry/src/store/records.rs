//! Image records, one JSON file per image ID under `imagedb/`. A record holds what is not
//! in the config blob or the tag index: the layer list in store terms, sizes, provenance.

use super::fsutil::{read_json, write_json_atomic};
use crate::digest::Digest;
use crate::error::{Error, Result};
use std::fs;
use std::path::PathBuf;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredImage {
    pub id: Digest,
    /// Diff-ids, bottom to top.
    pub layers: Vec<Digest>,
    /// From the config; kept raw so odd timestamps survive.
    #[serde(default)]
    pub created: Option<String>,
    pub size: u64,
    /// The OCI manifest the image came with, if any (kept as a blob).
    #[serde(default)]
    pub manifest_digest: Option<Digest>,
    /// When this store first recorded the image (RFC 3339).
    #[serde(default)]
    pub loaded_at: Option<String>,
    /// The layer blobs exactly as they arrived (compressed or not), parallel to `layers`.
    /// Push and save send these bytes, so digests stay what the registry or archive said.
    /// Empty for images recorded before blobs were kept.
    #[serde(default)]
    pub layer_blobs: Vec<LayerBlob>,
}

/// One layer blob kept in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

pub struct ImageDb {
    dir: PathBuf,
}

impl ImageDb {
    pub fn new(dir: PathBuf) -> Self {
        ImageDb { dir }
    }

    fn path(&self, id: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", id.hex()))
    }

    pub fn get(&self, id: &Digest) -> Result<Option<StoredImage>> {
        let path = self.path(id);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    pub fn put(&self, image: &StoredImage) -> Result<()> {
        write_json_atomic(&self.path(&image.id), image)
    }

    pub fn remove(&self, id: &Digest) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::path(&path, e)),
        }
    }

    pub fn ids(&self) -> Result<Vec<Digest>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::path(&self.dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::path(&self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Temp files from atomic writes start with '.', and are skipped here.
            if let Some(hex) = name.strip_suffix(".json")
                && let Ok(id) = Digest::from_hex(hex)
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    pub fn all(&self) -> Result<Vec<StoredImage>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            if let Some(img) = self.get(&id)? {
                out.push(img);
            }
        }
        Ok(out)
    }
}
