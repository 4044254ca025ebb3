//! `save`: writes images as a `docker save` archive in the layout Docker >= 25 writes,
//! which `docker load` and `pelagos load` both read: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) plus the legacy `manifest.json` pointing into the same
//! blobs. Blobs are the stored ones, so digests survive a save/load round trip.

use super::ImageStore;
use super::manifest::MEDIA_OCI_INDEX;
use crate::digest::Digest;
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::io::Write;

struct SavedImage {
    config: Digest,
    layers: Vec<Digest>,
    manifest_digest: Digest,
    manifest_size: u64,
    manifest_media_type: String,
    /// The references asked for that name a tag (saving by ID records none, as Docker).
    tags: Vec<crate::Reference>,
}

impl ImageStore {
    /// Writes `names` (references or IDs) into one archive.
    pub fn save(&self, names: &[String], out: impl Write) -> Result<()> {
        if names.is_empty() {
            return Err(Error::InvalidArgument(
                "save needs at least one image".into(),
            ));
        }
        let index = self.load_index()?;
        let mut images: Vec<SavedImage> = Vec::new();
        for name in names {
            let (id, matched) = self.resolve_in(&index, name)?;
            let stored = self
                .images
                .get(&id)?
                .ok_or_else(|| Error::NoSuchImage(name.clone()))?;
            let manifest = self.manifest_for(&stored, name)?;
            self.blobs.put(&manifest.digest, &manifest.bytes)?;
            let tag = matched.filter(|r| r.digest().is_none());
            if let Some(existing) = images.iter_mut().find(|i| i.config == id) {
                existing.tags.extend(tag);
                continue;
            }
            images.push(SavedImage {
                config: id,
                layers: stored
                    .layer_blobs
                    .iter()
                    .map(|b| b.digest.clone())
                    .collect(),
                manifest_size: manifest.bytes.len() as u64,
                manifest_digest: manifest.digest,
                manifest_media_type: manifest.media_type,
                tags: tag.into_iter().collect(),
            });
        }
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, dir, std::io::empty())
                .map_err(|e| Error::io("writing archive", e))?;
        }
        let mut written = BTreeSet::new();
        for img in &images {
            for blob in img.layers.iter().chain([&img.config, &img.manifest_digest]) {
                if !written.insert(blob.clone()) {
                    continue;
                }
                let mut f = self.blobs.open(blob)?;
                tar.append_file(format!("blobs/sha256/{}", blob.hex()), &mut f)
                    .map_err(|e| Error::io(format!("writing blob {blob}"), e))?;
            }
        }
        let manifests: Vec<serde_json::Value> = images
            .iter()
            .flat_map(|img| {
                let entry = |tag: Option<&crate::Reference>| {
                    let mut v = serde_json::json!({
                        "mediaType": img.manifest_media_type,
                        "digest": img.manifest_digest.to_string(),
                        "size": img.manifest_size,
                    });
                    if let Some(t) = tag {
                        v["annotations"] = serde_json::json!({
                            "io.containerd.image.name": t.to_string(),
                            "org.opencontainers.image.ref.name": t.tag().unwrap_or("latest"),
                        });
                    }
                    v
                };
                if img.tags.is_empty() {
                    vec![entry(None)]
                } else {
                    img.tags.iter().map(|t| entry(Some(t))).collect()
                }
            })
            .collect();
        let legacy: Vec<serde_json::Value> = images
            .iter()
            .map(|img| {
                serde_json::json!({
                    "Config": format!("blobs/sha256/{}", img.config.hex()),
                    "RepoTags": img.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
                    "Layers": img
                        .layers
                        .iter()
                        .map(|l| format!("blobs/sha256/{}", l.hex()))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        let files: [(&str, serde_json::Value); 3] = [
            (
                "oci-layout",
                serde_json::json!({"imageLayoutVersion": "1.0.0"}),
            ),
            (
                "index.json",
                serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": MEDIA_OCI_INDEX,
                    "manifests": manifests,
                }),
            ),
            ("manifest.json", serde_json::Value::Array(legacy)),
        ];
        for (name, doc) in files {
            let bytes = serde_json::to_vec(&doc).map_err(|e| Error::Internal(e.to_string()))?;
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(bytes.len() as u64);
            tar.append_data(&mut h, name, bytes.as_slice())
                .map_err(|e| Error::io("writing archive", e))?;
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::io("writing archive", e))
    }
}
